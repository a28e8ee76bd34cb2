//! The stored form of a compressed object: a header, then frames that each decode on their own.
//!
//! ```text
//! magic "\0STRZ1" | frame size u32 | length u64 | frame count u32 | count × stored length u32
//! | frames
//! ```
//!
//! Integers are little-endian. Every frame but the last holds `frame size` bytes of the
//! original; a stored length with its top bit set is a frame kept as it was (zstd would not
//! have made it smaller). An object without the magic was stored before the layer was there and
//! is its own content. Nothing in a header is trusted: counts, lengths and every decoded
//! frame's size are checked, and each zstd frame carries its content's checksum, so damage is
//! reported, never returned as data or allocated for (a frame kept raw, being incompressible,
//! has no checksum, as a plain store's objects have none).

use std::ops::Range;

/// What every compressed object begins with; a NUL first, which no mail message has.
pub const MAGIC: &[u8; 6] = b"\0STRZ1";
/// The fixed part of a header.
pub const FIXED: usize = MAGIC.len() + 4 + 8 + 4;
/// Largest frame a header may name: what one decoded frame may cost in memory.
pub const MAX_FRAME: u32 = 4 << 20;
const RAW: u32 = 1 << 31;

/// A compressed object's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Original bytes per frame.
    pub frame_size: u32,
    /// The original's length.
    pub length: u64,
    /// Each frame's stored length, [`RAW`] marking one kept as it was.
    stored: Vec<u32>,
}

/// What the first bytes of an object say.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not compressed: stored before the layer was there.
    Plain,
    /// Compressed; its header is this many bytes, more than were given.
    Need(usize),
    /// Compressed, with this header.
    Header(Header),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("four bytes"))
}

/// The fixed part of a header: frame size, original length and frame count, checked.
fn fixed(prefix: &[u8]) -> Result<(u32, u64, u64), String> {
    let frame_size = u32_at(prefix, 6);
    let length = u64::from_le_bytes(prefix[10..18].try_into().expect("eight bytes"));
    let count = u32_at(prefix, 18) as u64;
    if frame_size == 0 || frame_size > MAX_FRAME {
        return Err(format!("frame size {frame_size} out of bounds"));
    }
    if count != length.div_ceil(frame_size as u64) {
        return Err(format!("{count} frames cannot hold {length} bytes"));
    }
    Ok((frame_size, length, count))
}

/// The original length of a compressed object from its first [`FIXED`] bytes (fewer if it is
/// shorter); `None` for an object stored plain.
pub fn original_length(prefix: &[u8]) -> Result<Option<u64>, String> {
    if !prefix.starts_with(MAGIC) {
        return Ok(None);
    }
    if prefix.len() < FIXED {
        return Err("header cut short".into());
    }
    Ok(Some(fixed(prefix)?.1))
}

impl Header {
    /// Reads a header from an object's first bytes (all of them if it is shorter).
    pub fn parse(prefix: &[u8]) -> Result<Parsed, String> {
        if !prefix.starts_with(MAGIC) {
            return Ok(Parsed::Plain);
        }
        if prefix.len() < FIXED {
            return Ok(Parsed::Need(FIXED));
        }
        let (frame_size, length, count) = fixed(prefix)?;
        let len = FIXED as u64 + 4 * count;
        if (prefix.len() as u64) < len {
            return Ok(Parsed::Need(
                usize::try_from(len).map_err(|e| e.to_string())?,
            ));
        }
        let stored = (0..count as usize)
            .map(|i| u32_at(prefix, FIXED + 4 * i))
            .collect::<Vec<_>>();
        if stored
            .iter()
            .any(|&s| s & !RAW > MAX_FRAME + (MAX_FRAME >> 4) + 64)
        {
            return Err("a frame is longer than any frame can be".into());
        }
        Ok(Parsed::Header(Header {
            frame_size,
            length,
            stored,
        }))
    }

    /// The header's own length.
    pub fn len(&self) -> usize {
        FIXED + 4 * self.stored.len()
    }

    /// Whether the original is empty.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// How long the whole stored object is.
    pub fn object_len(&self) -> u64 {
        self.len() as u64 + self.stored.iter().map(|&s| (s & !RAW) as u64).sum::<u64>()
    }

    /// Where frame `i` is in the stored object.
    fn span(&self, i: usize) -> Range<u64> {
        let start = self.len() as u64
            + self.stored[..i]
                .iter()
                .map(|&s| (s & !RAW) as u64)
                .sum::<u64>();
        start..start + (self.stored[i] & !RAW) as u64
    }

    /// The frames holding `range` of the original (clamped to its end), and where they are in
    /// the stored object.
    pub fn frames_for(&self, range: &Range<u64>) -> (Range<usize>, Range<u64>) {
        let end = range.end.min(self.length);
        let start = range.start.min(end);
        if start == end {
            return (0..0, 0..0);
        }
        let fs = self.frame_size as u64;
        let frames = (start / fs) as usize..end.div_ceil(fs) as usize;
        let at = self.span(frames.start).start..self.span(frames.end - 1).end;
        (frames, at)
    }

    /// Decodes `frames` from their stored bytes `data` (exactly those frames), checking each
    /// frame's size.
    pub fn decode(&self, frames: Range<usize>, data: &[u8]) -> Result<Vec<u8>, String> {
        let fs = self.frame_size as u64;
        let total: u64 = frames
            .clone()
            .map(|i| fs.min(self.length - i as u64 * fs))
            .sum();
        // Each frame decodes straight into its place.
        let mut out = vec![0u8; usize::try_from(total).map_err(|e| e.to_string())?];
        let mut zstd = zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?;
        let (mut at, mut to) = (0usize, 0usize);
        for i in frames {
            let stored = self.stored[i];
            let len = (stored & !RAW) as usize;
            let want = fs.min(self.length - i as u64 * fs) as usize;
            let Some(bytes) = data.get(at..at + len) else {
                return Err(format!("frame {i} is cut short"));
            };
            at += len;
            let place = &mut out[to..to + want];
            to += want;
            if stored & RAW != 0 {
                if len != want {
                    return Err(format!("raw frame {i} holds {len} bytes, not {want}"));
                }
                place.copy_from_slice(bytes);
                continue;
            }
            let n = zstd
                .decompress_to_buffer(bytes, place)
                .map_err(|e| format!("frame {i} does not decode: {e}"))?;
            if n != want {
                return Err(format!("frame {i} decodes to {n} bytes, not {want}"));
            }
        }
        if at != data.len() {
            return Err("bytes after the last frame".into());
        }
        Ok(out)
    }
}

/// `data` compressed at `level` in frames of `frame_size` bytes.
pub fn encode(data: &[u8], level: i32, frame_size: u32) -> Vec<u8> {
    let frame_size = frame_size.clamp(1, MAX_FRAME);
    let chunks: Vec<&[u8]> = data.chunks(frame_size as usize).collect();
    let mut stored = Vec::with_capacity(chunks.len());
    let mut body = Vec::with_capacity(data.len() / 2);
    // Each frame carries zstd's checksum of its content, so damage is caught when it is read.
    let checksum = zstd::stream::raw::CParameter::ChecksumFlag(true);
    let mut zstd = zstd::bulk::Compressor::new(level)
        .and_then(|mut c| c.set_parameter(checksum).map(|()| c))
        .ok();
    // One frame's output at a time, in a buffer no smaller than zstd's bound for a frame.
    let mut scratch = Vec::with_capacity(zstd::zstd_safe::compress_bound(frame_size as usize));
    for chunk in chunks {
        let compressed = zstd
            .as_mut()
            .map(|c| c.compress_to_buffer(chunk, &mut scratch));
        match compressed {
            Some(Ok(n)) if n < chunk.len() => {
                stored.push(n as u32);
                body.extend_from_slice(&scratch[..n]);
            }
            // Incompressible (or refused): kept as it is.
            _ => {
                stored.push(chunk.len() as u32 | RAW);
                body.extend_from_slice(chunk);
            }
        }
    }
    let mut out = Vec::with_capacity(FIXED + 4 * stored.len() + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&frame_size.to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
    for s in stored {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.extend_from_slice(&body);
    out
}

/// Decodes a whole stored object: its content, whether it was compressed or not.
pub fn decode_whole(object: &[u8]) -> Result<Vec<u8>, String> {
    match Header::parse(object)? {
        Parsed::Plain => Ok(object.to_vec()),
        Parsed::Need(n) => Err(format!(
            "header of {n} bytes in an object of {}",
            object.len()
        )),
        Parsed::Header(h) => {
            if h.object_len() != object.len() as u64 {
                return Err(format!(
                    "{} bytes stored where the header says {}",
                    object.len(),
                    h.object_len()
                ));
            }
            h.decode(0..h.stored.len(), &object[h.len()..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mail(n: usize) -> Vec<u8> {
        let mut m = b"From: a@example.org\r\nSubject: test\r\n\r\n".to_vec();
        while m.len() < n {
            m.extend_from_slice(b"a line of a message body, much like the others\r\n");
        }
        m.truncate(n);
        m
    }

    fn range_of(object: &[u8], range: Range<u64>) -> Vec<u8> {
        let Parsed::Header(h) = Header::parse(object).unwrap() else {
            panic!("not compressed")
        };
        let (frames, at) = h.frames_for(&range);
        if frames.is_empty() {
            return Vec::new();
        }
        let decoded = h
            .decode(frames.clone(), &object[at.start as usize..at.end as usize])
            .unwrap();
        let base = frames.start as u64 * h.frame_size as u64;
        let end = range.end.min(h.length);
        let start = range.start.min(end);
        decoded[(start - base) as usize..(end - base) as usize].to_vec()
    }

    #[test]
    fn mail_shrinks_and_comes_back() {
        let m = mail(300_000);
        let z = encode(&m, 3, 64 << 10);
        assert!(z.len() < m.len() / 5, "{} of {}", z.len(), m.len());
        assert_eq!(decode_whole(&z).unwrap(), m);
        assert_eq!(range_of(&z, 70_000..70_010), &m[70_000..70_010]);
        assert_eq!(range_of(&z, 299_990..400_000), &m[299_990..]);
        assert!(range_of(&z, 500_000..600_000).is_empty());
    }

    #[test]
    fn what_does_not_compress_is_kept_and_an_empty_object_has_no_frames() {
        let noise: Vec<u8> = (0..10_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        let z = encode(&noise, 3, 4096);
        assert!(z.len() <= noise.len() + FIXED + 4 * 3);
        assert_eq!(decode_whole(&z).unwrap(), noise);
        let empty = encode(b"", 3, 4096);
        assert_eq!(empty.len(), FIXED);
        assert_eq!(decode_whole(&empty).unwrap(), b"");
    }

    #[test]
    fn an_object_without_the_magic_is_its_own_content() {
        for plain in [&b""[..], b"\0", b"\0STRZ", b"From: x\r\n\r\nbody"] {
            assert_eq!(decode_whole(plain).unwrap(), plain);
        }
    }

    #[test]
    fn damage_is_reported_never_returned() {
        let m = mail(200_000);
        let z = encode(&m, 3, 64 << 10);
        // A flipped byte past the magic, in the header or a frame, is an error, unless it is
        // one zstd does not read (the content comes back whole): never other bytes.
        let mut caught = 0;
        for at in 6..z.len() {
            let mut bad = z.clone();
            bad[at] ^= 0x40;
            match decode_whole(&bad) {
                Err(_) => caught += 1,
                Ok(d) => assert_eq!(d, m, "a flip at {at} of {} changed the content", z.len()),
            }
        }
        assert!(
            caught > (z.len() - 6) * 9 / 10,
            "{caught} of {}",
            z.len() - 6
        );
        assert!(decode_whole(&z[..z.len() - 1]).is_err(), "cut short");
        let mut longer = z.clone();
        longer.push(0);
        assert!(decode_whole(&longer).is_err(), "bytes after the end");
        // A header claiming a huge original is refused before anything is allocated for it.
        let mut huge = z[..FIXED].to_vec();
        huge[10..18].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Header::parse(&huge).is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip_whole_and_by_range(
            data in proptest::collection::vec(any::<u8>(), 0..20_000),
            repeat in 1usize..8,
            frame in 1u32..5000,
            a in 0u64..25_000,
            len in 0u64..25_000,
        ) {
            // Repeated, so that some frames compress and some do not.
            let data: Vec<u8> = data.iter().copied().cycle().take(data.len() * repeat).collect();
            let z = encode(&data, 1, frame);
            prop_assert_eq!(decode_whole(&z).unwrap(), data.clone());
            let want = slice(&data, a..a + len);
            prop_assert_eq!(range_of(&z, a..a + len), want);
        }
    }

    fn slice(d: &[u8], r: Range<u64>) -> Vec<u8> {
        let end = (r.end as usize).min(d.len());
        let start = (r.start as usize).min(end);
        d[start..end].to_vec()
    }
}
