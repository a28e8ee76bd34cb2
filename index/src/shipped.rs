//! The shipped form of a user's index: the objects of a *chain* (a base, then diffs, each at a
//! position `seq` of the chain) encoded for a store, decoded with every byte checked, and a chain
//! restored into a new index file.
//!
//! It is not the shipping itself (which store, when, fencing): that is the mail store's. The
//! layout is documented byte by byte in `docs/index-format.md`:
//!
//! ```text
//! magic "STRATA-INDEX-OBJ\0" (17) | format u32 | kind u8 | codec u8 | epoch u64 | seq u64
//! | from u64 | to u64 | raw length u64 | stored length u64 | payload | CRC-32 u32
//! ```
//!
//! Integers are little-endian; the CRC covers every byte before it. A base's payload is a dense
//! index file as of MODSEQ `to`; a diff's is a postcard [`Diff`] from `from` to `to`.

use std::io::Write;
use std::path::Path;

use crate::backup::{install, verify_copy};
use crate::diff::{self, Diff};
use crate::error::{IndexError, Result};
use crate::index::UserIndex;
use crate::model::Modseq;
use crate::repack::{apply_all_to_copy, dense_copy, sibling};
use crate::store::blocking;

const MAGIC: &[u8; 17] = b"STRATA-INDEX-OBJ\0";
const FORMAT: u32 = 1;
const HEADER: usize = 17 + 4 + 1 + 1 + 8 * 6;
const CODEC_NONE: u8 = 0;
const CODEC_ZSTD: u8 = 1;
/// zstd level: shipping runs beside the request path, so speed over ratio.
const ZSTD_LEVEL: i32 = 3;
/// The most a payload may claim to expand to (a guard against a forged length).
const MAX_RAW: u64 = 64 << 30;

/// What an object holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// A whole index as of one MODSEQ.
    Base,
    /// The rows changed between two MODSEQs.
    Diff,
}

/// A shipped object's header: where it sits in its chain and what it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectHeader {
    /// Base or diff.
    pub kind: ObjectKind,
    /// The writer's epoch (0 when the store has no fencing).
    pub epoch: u64,
    /// Its position in the chain.
    pub seq: u64,
    /// The MODSEQ a diff starts after (a base's own MODSEQ).
    pub from: Modseq,
    /// The MODSEQ it brings the index to.
    pub to: Modseq,
}

/// A decoded object.
#[derive(Debug)]
pub struct ChainObject {
    /// Its header.
    pub header: ObjectHeader,
    /// The encoded size.
    pub bytes: u64,
    body: Body,
}

#[derive(Debug)]
enum Body {
    Base(Vec<u8>),
    Diff(Diff),
}

/// Encodes an object.
fn encode(h: &ObjectHeader, raw: &[u8]) -> Vec<u8> {
    let packed = zstd::bulk::compress(raw, ZSTD_LEVEL).expect("compressing into memory");
    let (codec, payload) = if packed.len() < raw.len() {
        (CODEC_ZSTD, packed.as_slice())
    } else {
        (CODEC_NONE, raw)
    };
    let mut out = Vec::with_capacity(HEADER + payload.len() + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.push(match h.kind {
        ObjectKind::Base => 1,
        ObjectKind::Diff => 2,
    });
    out.push(codec);
    for n in [h.epoch, h.seq, h.from.0, h.to.0, raw.len() as u64] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Encodes a diff as the object at `seq` of a chain.
pub fn encode_diff(d: &Diff, epoch: u64, seq: u64) -> Vec<u8> {
    let raw = postcard::to_stdvec(d).expect("serializing into memory cannot fail");
    let h = ObjectHeader {
        kind: ObjectKind::Diff,
        epoch,
        seq,
        from: d.from,
        to: d.to,
    };
    encode(&h, &raw)
}

/// The bytes of an object's header, for [`peek_header`].
pub const HEADER_BYTES: usize = HEADER;

/// Reads the header from an object's first [`HEADER_BYTES`] bytes, unchecked: enough to decide
/// which objects to read, never to trust one (its CRC covers the whole object).
pub fn peek_header(prefix: &[u8]) -> std::result::Result<ObjectHeader, String> {
    if prefix.len() < HEADER || &prefix[..17] != MAGIC {
        return Err("not a Strata index object (bad magic)".into());
    }
    let u64_at = |at: usize| u64::from_le_bytes(prefix[at..at + 8].try_into().expect("8 bytes"));
    let kind = match prefix[21] {
        1 => ObjectKind::Base,
        2 => ObjectKind::Diff,
        k => return Err(format!("unknown object kind {k}")),
    };
    Ok(ObjectHeader {
        kind,
        epoch: u64_at(23),
        seq: u64_at(31),
        from: Modseq(u64_at(39)),
        to: Modseq(u64_at(47)),
    })
}

/// Reads only the header of an encoded object (after checking the whole object's CRC).
pub fn decode_header(raw: &[u8]) -> std::result::Result<ObjectHeader, String> {
    split(raw).map(|(h, _, _, _)| h)
}

fn split(raw: &[u8]) -> std::result::Result<(ObjectHeader, u8, u64, &[u8]), String> {
    if raw.len() < HEADER + 4 {
        return Err(format!("truncated: {} bytes", raw.len()));
    }
    if &raw[..17] != MAGIC {
        return Err("not a Strata index object (bad magic)".into());
    }
    let (body, crc) = raw.split_at(raw.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err("checksum mismatch (damaged or truncated)".into());
    }
    let u64_at = |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().expect("8 bytes"));
    let format = u32::from_le_bytes(raw[17..21].try_into().expect("4 bytes"));
    if format != FORMAT {
        return Err(format!("object format {format}; this build reads {FORMAT}"));
    }
    let kind = match raw[21] {
        1 => ObjectKind::Base,
        2 => ObjectKind::Diff,
        k => return Err(format!("unknown object kind {k}")),
    };
    let codec = raw[22];
    let h = ObjectHeader {
        kind,
        epoch: u64_at(23),
        seq: u64_at(31),
        from: Modseq(u64_at(39)),
        to: Modseq(u64_at(47)),
    };
    let raw_len = u64_at(55);
    let len = u64_at(63);
    let payload = &body[HEADER..];
    if payload.len() as u64 != len {
        return Err(format!(
            "payload is {} bytes, header says {len}",
            payload.len()
        ));
    }
    if raw_len > MAX_RAW {
        return Err(format!("claims {raw_len} bytes uncompressed"));
    }
    Ok((h, codec, raw_len, payload))
}

/// Decodes an object, checking its checksum, header and payload.
pub fn decode(raw: &[u8]) -> std::result::Result<ChainObject, String> {
    let (header, codec, raw_len, payload) = split(raw)?;
    let plain = match codec {
        CODEC_NONE => payload.to_vec(),
        CODEC_ZSTD => {
            let v = zstd::bulk::decompress(payload, raw_len as usize)
                .map_err(|e| format!("cannot decompress: {e}"))?;
            if v.len() as u64 != raw_len {
                return Err("decompressed length differs from the header's".into());
            }
            v
        }
        c => return Err(format!("unknown codec {c}")),
    };
    let body = match header.kind {
        ObjectKind::Base => {
            if header.from != header.to {
                return Err("a base covers one MODSEQ".into());
            }
            Body::Base(plain)
        }
        ObjectKind::Diff => {
            let d: Diff = postcard::from_bytes(&plain).map_err(|e| format!("bad diff: {e}"))?;
            if d.from != header.from || d.to != header.to {
                return Err("the diff's MODSEQs differ from the header's".into());
            }
            Body::Diff(d)
        }
    };
    Ok(ChainObject {
        header,
        bytes: raw.len() as u64,
        body,
    })
}

/// A base of the index as of now, encoded as the object at `seq`; `scratch` is a path beside
/// the index for the dense copy (removed after). Returns the base's MODSEQ and the object.
pub async fn encode_base(
    index: &UserIndex,
    scratch: &Path,
    epoch: u64,
    seq: u64,
) -> Result<(Modseq, Vec<u8>)> {
    let shared = index.shared().clone();
    let scratch = scratch.to_path_buf();
    blocking(&scratch.clone(), "shipping a base", move || {
        let snap = shared.snapshot()?;
        let result = (|| {
            dense_copy(&snap, &scratch, snap.log_floor())?;
            std::fs::read(&scratch).map_err(|e| IndexError::io(&scratch, e))
        })();
        let _ = std::fs::remove_file(&scratch);
        let file = result?;
        let h = ObjectHeader {
            kind: ObjectKind::Base,
            epoch,
            seq,
            from: snap.modseq(),
            to: snap.modseq(),
        };
        Ok((snap.modseq(), encode(&h, &file)))
    })
    .await
}

/// The diff of everything changed after `since`, as of now. Fails with `BackupMismatch` when
/// the change log no longer reaches back to `since` (then only a base will do).
pub async fn diff_since(index: &UserIndex, since: Modseq) -> Result<Diff> {
    let shared = index.shared().clone();
    blocking(index.path(), "shipping a diff", move || {
        let snap = shared.snapshot()?;
        diff::since(&snap, since)
    })
    .await
}

/// Builds a new index file at `dest` (which must not exist) from a chain's objects in order:
/// a base, then diffs that each start where the one before ends (a later base replaces what is
/// built so far). Refuses a chain with a gap or out of order; checks the result's invariants.
/// Returns the MODSEQ the index is at.
pub fn restore(objects: Vec<(String, ChainObject)>, dest: &Path) -> Result<Modseq> {
    if dest.exists() {
        return Err(IndexError::BackupMismatch(format!(
            "{} already exists; restore into a new path",
            dest.display()
        )));
    }
    let gap = |name: &str, why: String| IndexError::BackupMismatch(format!("{name}: {why}"));
    // The whole chain must hold together, positions consecutive and MODSEQs never going back,
    // before the objects from its last base on are used.
    let mut prev: Option<(u64, Modseq)> = None;
    for (name, o) in &objects {
        let h = &o.header;
        if let Some((seq, at)) = prev {
            if h.seq != seq + 1 {
                return Err(gap(name, format!("is at position {}, after {seq}", h.seq)));
            }
            let continues = match h.kind {
                ObjectKind::Base => h.to >= at,
                ObjectKind::Diff => h.from <= at && h.to >= at,
            };
            if !continues {
                return Err(gap(
                    name,
                    format!(
                        "covers MODSEQ {} to {}, which does not continue from {at}",
                        h.from, h.to
                    ),
                ));
            }
        } else if h.kind != ObjectKind::Base {
            return Err(gap(name, "the chain does not start with a base".into()));
        }
        prev = Some((h.seq, h.to));
    }
    let start = objects
        .iter()
        .rposition(|(_, o)| o.header.kind == ObjectKind::Base)
        .ok_or_else(|| IndexError::BackupMismatch("the chain has no base".into()))?;
    let mut objects = objects.into_iter().skip(start);
    let (base_name, base) = objects.next().expect("the base is there");
    let at = prev.map_or(Modseq(0), |(_, at)| at);
    let diffs: Vec<Diff> = objects
        .map(|(_, o)| match o.body {
            Body::Diff(d) => d,
            Body::Base(_) => unreachable!("no base after the last one"),
        })
        .collect();
    let Body::Base(file) = base.body else {
        unreachable!("found as a base")
    };
    let tmp = sibling(dest, "restoring");
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| IndexError::io(&tmp, e))?;
        f.write_all(&file).map_err(|e| IndexError::io(&tmp, e))?;
        drop(f);
        drop(file);
        let built = (|| {
            if !diffs.is_empty() {
                apply_all_to_copy(&tmp, &diffs)?;
            }
            verify_copy(&tmp)
        })();
        let modseq = built.map_err(|e: IndexError| {
            gap(
                &base_name,
                format!(
                    "and the {} diffs after it do not build an index: {e}",
                    diffs.len()
                ),
            )
        })?;
        if modseq != at {
            return Err(gap(
                &base_name,
                format!("and its diffs build MODSEQ {modseq}, the chain says {at}"),
            ));
        }
        Ok(modseq)
    })();
    install(&tmp, dest, result)
}
