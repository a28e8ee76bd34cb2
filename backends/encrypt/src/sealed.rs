//! The stored form of an encrypted object: a header, then sealed frames at fixed places.
//!
//! ```text
//! magic "\0STRE1" | key id u32 | frame size u32 | length u64 | salt [16] | frames
//! ```
//!
//! Integers are little-endian. Every object has its own ChaCha20-Poly1305 key, derived with
//! HKDF-SHA-256 from the keyring's key `key id` and the object's random salt, so nonces (the
//! frame's index) never repeat under one key. Frame `i` holds `frame size` bytes of the original
//! (the last one fewer) and its 16-byte tag, so it sits at `header + i × (frame size + 16)` and a
//! range is found without reading an index. Each frame's associated data is the header, its
//! index and whether it is the last, so frames cannot be moved, dropped, or taken from another
//! object, and the length cannot be changed.

use std::collections::BTreeMap;
use std::ops::Range;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};
use ring::hkdf::{HKDF_SHA256, Salt};

/// What every encrypted object begins with.
pub const MAGIC: &[u8; 6] = b"\0STRE1";
/// The header's length.
pub const HEADER: usize = MAGIC.len() + 4 + 4 + 8 + 16;
/// A frame's tag.
pub const TAG: usize = 16;
/// Largest frame a header may name.
pub const MAX_FRAME: u32 = 4 << 20;

/// The keys objects are sealed and opened with, by id.
#[derive(Clone)]
pub struct Keyring {
    keys: BTreeMap<u32, [u8; 32]>,
    /// The key new objects are sealed with.
    pub current: u32,
}

impl std::fmt::Debug for Keyring {
    // Never the keys themselves.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .field("current", &self.current)
            .finish()
    }
}

impl Keyring {
    /// Reads `ID:BASE64` lines (32-byte keys; `#` comments and blank lines skipped); new
    /// objects are sealed with `current`, or the highest id when it is `None`.
    pub fn parse(text: &str, current: Option<u32>) -> Result<Keyring, String> {
        use base64::Engine;
        let mut keys = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| format!("line {}: {why}", n + 1);
            let (id, key) = line
                .split_once(':')
                .ok_or_else(|| bad("expected ID:BASE64"))?;
            let id: u32 = id
                .trim()
                .parse()
                .map_err(|_| bad("the id is not a number"))?;
            let key: [u8; 32] = base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .ok()
                .and_then(|k| k.try_into().ok())
                .ok_or_else(|| bad("the key is not 32 bytes of base64"))?;
            if keys.insert(id, key).is_some() {
                return Err(bad(&format!("key {id} is listed twice")));
            }
        }
        let current = match current {
            Some(id) if keys.contains_key(&id) => id,
            Some(id) => return Err(format!("key {id} is not in the keyring")),
            None => *keys.keys().next_back().ok_or("the keyring holds no key")?,
        };
        Ok(Keyring { keys, current })
    }

    fn object_key(&self, id: u32, salt: &[u8]) -> Option<LessSafeKey> {
        let master = self.keys.get(&id)?;
        let prk = Salt::new(HKDF_SHA256, salt).extract(master);
        let okm = prk.expand(&[b"strata body"], &CHACHA20_POLY1305).ok()?;
        Some(LessSafeKey::new(UnboundKey::from(okm)))
    }
}

/// Why an object could not be opened.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Not an encrypted object, or its header is damaged.
    Header(String),
    /// Sealed with a key the keyring does not hold.
    UnknownKey(u32),
    /// A frame failed authentication under this key.
    Forged(u32, usize),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Header(why) => write!(f, "{why}"),
            OpenError::UnknownKey(id) => {
                write!(f, "sealed with key {id}, which the keyring does not hold")
            }
            OpenError::Forged(id, i) => {
                write!(f, "frame {i} fails authentication under key {id}")
            }
        }
    }
}

/// An encrypted object's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    bytes: [u8; HEADER],
    /// The key it was sealed with.
    pub key_id: u32,
    /// Original bytes per frame.
    pub frame_size: u32,
    /// The original's length.
    pub length: u64,
}

impl Header {
    /// Reads a header from an object's first bytes.
    pub fn parse(prefix: &[u8]) -> Result<Header, OpenError> {
        let bad = |why: &str| OpenError::Header(why.to_string());
        if !prefix.starts_with(MAGIC) {
            return Err(bad("not an encrypted object"));
        }
        let bytes: [u8; HEADER] = prefix
            .get(..HEADER)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("header cut short"))?;
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
        let frame_size = u32_at(10);
        if frame_size == 0 || frame_size > MAX_FRAME {
            return Err(bad("frame size out of bounds"));
        }
        Ok(Header {
            key_id: u32_at(6),
            frame_size,
            length: u64::from_le_bytes(bytes[14..22].try_into().expect("8")),
            bytes,
        })
    }

    fn frames(&self) -> u64 {
        self.length.div_ceil(self.frame_size as u64)
    }

    /// The whole stored object's length.
    pub fn object_len(&self) -> u64 {
        HEADER as u64 + self.length + self.frames() * TAG as u64
    }

    /// Where the frames holding `range` would be in an object of `frame_size` frames long
    /// enough to hold it (the last one whole): what to read before the header is known.
    pub fn for_range(frame_size: u32, range: &Range<u64>) -> (Range<u64>, Range<u64>) {
        let fs = frame_size as u64;
        if range.start >= range.end {
            return (0..0, 0..0);
        }
        let frames = range.start / fs..range.end.div_ceil(fs);
        let at = |i: u64| HEADER as u64 + i * (fs + TAG as u64);
        (frames.clone(), at(frames.start)..at(frames.end))
    }

    /// The frames holding `range` of the original (clamped), and where they are stored.
    pub fn frames_for(&self, range: &Range<u64>) -> (Range<u64>, Range<u64>) {
        let end = range.end.min(self.length);
        let start = range.start.min(end);
        if start == end {
            return (0..0, 0..0);
        }
        let fs = self.frame_size as u64;
        let frames = start / fs..end.div_ceil(fs);
        let at = |i: u64| HEADER as u64 + i * (fs + TAG as u64);
        let last_end =
            at(frames.end - 1) + (fs.min(self.length - (frames.end - 1) * fs)) + TAG as u64;
        (frames.clone(), at(frames.start)..last_end)
    }

    /// Opens `frames` from their stored bytes `data` (exactly those frames).
    pub fn open(
        &self,
        keys: &Keyring,
        frames: Range<u64>,
        data: &[u8],
    ) -> Result<Vec<u8>, OpenError> {
        let key = keys
            .object_key(self.key_id, &self.bytes[22..38])
            .ok_or(OpenError::UnknownKey(self.key_id))?;
        let fs = self.frame_size as u64;
        let mut out = Vec::with_capacity(data.len());
        let mut at = 0usize;
        for i in frames {
            let plain = fs.min(self.length - i * fs) as usize;
            let forged = || OpenError::Forged(self.key_id, i as usize);
            let sealed = data.get(at..at + plain + TAG).ok_or_else(forged)?;
            at += plain + TAG;
            let start = out.len();
            out.extend_from_slice(&sealed[..plain]);
            let tag = Tag::try_from(&sealed[plain..]).map_err(|_| forged())?;
            key.open_in_place_separate_tag(nonce(i), self.aad(i), tag, &mut out[start..], 0..)
                .map_err(|_| forged())?;
        }
        if at != data.len() {
            return Err(OpenError::Header("bytes after the last frame".into()));
        }
        Ok(out)
    }

    fn aad(&self, i: u64) -> Aad<[u8; HEADER + 9]> {
        let mut aad = [0u8; HEADER + 9];
        aad[..HEADER].copy_from_slice(&self.bytes);
        aad[HEADER..HEADER + 8].copy_from_slice(&i.to_le_bytes());
        aad[HEADER + 8] = u8::from(i + 1 == self.frames());
        Aad::from(aad)
    }
}

fn nonce(i: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&i.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

/// `data` sealed under the keyring's current key in frames of `frame_size` bytes.
pub fn seal(keys: &Keyring, data: &[u8], frame_size: u32) -> Vec<u8> {
    let frame_size = frame_size.clamp(1, MAX_FRAME);
    let mut bytes = [0u8; HEADER];
    bytes[..6].copy_from_slice(MAGIC);
    bytes[6..10].copy_from_slice(&keys.current.to_le_bytes());
    bytes[10..14].copy_from_slice(&frame_size.to_le_bytes());
    bytes[14..22].copy_from_slice(&(data.len() as u64).to_le_bytes());
    bytes[22..38].copy_from_slice(&rand::random::<[u8; 16]>());
    let header = Header::parse(&bytes).expect("a header just written");
    let key = keys
        .object_key(keys.current, &bytes[22..38])
        .expect("the current key is in the keyring");
    let mut out = Vec::with_capacity(header.object_len() as usize);
    out.extend_from_slice(&bytes);
    for (i, chunk) in data.chunks(frame_size as usize).enumerate() {
        let start = out.len();
        out.extend_from_slice(chunk);
        let tag = key
            .seal_in_place_separate_tag(nonce(i as u64), header.aad(i as u64), &mut out[start..])
            .expect("a frame is far below ChaCha20-Poly1305's limit");
        out.extend_from_slice(tag.as_ref());
    }
    out
}

/// Opens a whole stored object.
pub fn open_whole(keys: &Keyring, object: &[u8]) -> Result<Vec<u8>, OpenError> {
    let h = Header::parse(object)?;
    if h.object_len() != object.len() as u64 {
        return Err(OpenError::Header(format!(
            "{} bytes stored where the header says {}",
            object.len(),
            h.object_len()
        )));
    }
    h.open(keys, 0..h.frames(), &object[HEADER..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ring(ids: &[u32], current: Option<u32>) -> Keyring {
        use base64::Engine;
        let text: String = ids
            .iter()
            .map(|id| {
                let key = base64::engine::general_purpose::STANDARD.encode([*id as u8; 32]);
                format!("{id}:{key}\n")
            })
            .collect();
        Keyring::parse(&text, current).unwrap()
    }

    fn range_of(keys: &Keyring, object: &[u8], range: Range<u64>) -> Result<Vec<u8>, OpenError> {
        let h = Header::parse(object)?;
        let (frames, at) = h.frames_for(&range);
        if frames.is_empty() {
            return Ok(Vec::new());
        }
        let opened = h.open(
            keys,
            frames.clone(),
            &object[at.start as usize..at.end as usize],
        )?;
        let base = frames.start * h.frame_size as u64;
        let end = range.end.min(h.length);
        let start = range.start.min(end);
        Ok(opened[(start - base) as usize..(end - base) as usize].to_vec())
    }

    #[test]
    fn keys_rotate_old_objects_stay_readable_and_a_missing_key_is_named() {
        let old = ring(&[1], None);
        let sealed = seal(&old, b"hello, world", 5);
        assert!(!sealed.windows(5).any(|w| w == b"hello"));
        let rotated = ring(&[1, 2], None);
        assert_eq!(rotated.current, 2);
        assert_eq!(open_whole(&rotated, &sealed).unwrap(), b"hello, world");
        let newer = seal(&rotated, b"hello, world", 5);
        assert_eq!(Header::parse(&newer).unwrap().key_id, 2);
        assert_eq!(open_whole(&old, &newer), Err(OpenError::UnknownKey(2)));
        assert_eq!(
            open_whole(
                &ring(&[1, 2], Some(1)),
                &seal(&ring(&[1, 2], Some(1)), b"x", 5)
            )
            .unwrap(),
            b"x"
        );
        // Another key under the same id is a forgery, not mail.
        use base64::Engine;
        let other = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let wrong = Keyring::parse(&format!("1:{other}\n"), None).unwrap();
        assert_eq!(
            open_whole(&ring(&[1], None), &seal(&wrong, b"secret", 4)),
            Err(OpenError::Forged(1, 0))
        );
    }

    #[test]
    fn any_flipped_byte_and_any_cut_is_refused() {
        let keys = ring(&[3], None);
        let sealed = seal(&keys, &[42u8; 300], 100);
        for at in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[at] ^= 1;
            assert!(open_whole(&keys, &bad).is_err(), "a flip at {at} passed");
        }
        for len in 0..sealed.len() {
            assert!(
                open_whole(&keys, &sealed[..len]).is_err(),
                "cut at {len} passed"
            );
        }
        // Frames swapped between two objects, or within one, do not open.
        let other = seal(&keys, &[42u8; 300], 100);
        let mut mixed = sealed.clone();
        mixed[HEADER..HEADER + 116].copy_from_slice(&other[HEADER..HEADER + 116]);
        assert!(open_whole(&keys, &mixed).is_err());
        let mut swapped = sealed.clone();
        swapped.copy_within(HEADER..HEADER + 116, HEADER + 116);
        assert!(open_whole(&keys, &swapped).is_err());
    }

    #[test]
    fn keyrings_are_read_strictly() {
        for bad in ["", "# nothing\n", "x:AAAA\n", "1:AAAA\n", "1\n"] {
            assert!(Keyring::parse(bad, None).is_err(), "{bad:?}");
        }
        let k = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
        assert!(Keyring::parse(&format!("1:{k}\n1:{k}\n"), None).is_err());
        assert!(Keyring::parse(&format!("1:{k}\n"), Some(2)).is_err());
        assert!(!format!("{:?}", Keyring::parse(&format!("1:{k}\n"), None).unwrap()).contains(k));
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip_whole_and_by_range(
            data in proptest::collection::vec(any::<u8>(), 0..5_000),
            frame in 1u32..700,
            a in 0u64..6_000,
            len in 0u64..6_000,
        ) {
            let keys = ring(&[1], None);
            let sealed = seal(&keys, &data, frame);
            prop_assert_eq!(open_whole(&keys, &sealed).unwrap(), data.clone());
            let end = ((a + len) as usize).min(data.len());
            let start = (a as usize).min(end);
            prop_assert_eq!(range_of(&keys, &sealed, a..a + len).unwrap(), data[start..end].to_vec());
        }
    }
}
