//! The journal's bytes: segment files of checksummed records. A record is a batch (its puts
//! carry their data inline) or an acked marker. Nothing here does I/O.
//!
//! ```text
//! segment  = magic "STRJNL\0\x01" record*
//! record   = len:u32le crc32(body):u32le body
//! body     = 1 jseq:u64le nops:u32le op*          a batch
//!          | 2 jseq:u64le                         every batch up to jseq is acked
//! op       = 1 klen:u16le key dlen:u64le data     put
//!          | 2 klen:u16le key                     delete
//!          | 3 klen:u16le key mlen:u32le meta dlen:u64le data
//!                                                 put with body metadata (`BodyMeta::encode`)
//!          | 4 klen:u16le key flen:u16le from     copy of what an earlier op of the batch
//!                                                 wrote to `from`
//!          | 5 klen:u16le key flen:u16le from mlen:u32le meta
//!                                                 copy with body metadata
//! ```

use std::ops::Range;

use strata_backend_api::{BodyMeta, Key, Op};

/// The first bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"STRJNL\x00\x01";

/// Bytes before a record's body.
const FRAME: usize = 8;
const KIND_BATCH: u8 = 1;
const KIND_ACKED: u8 = 2;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_PUT_META: u8 = 3;
const OP_COPY: u8 = 4;
const OP_COPY_META: u8 = 5;
/// Metadata longer than this is damage (it is a few short fields).
const MAX_META: usize = 1 << 16;
/// A record larger than this is damage, not data (a batch is bounded by the journal's size).
const MAX_RECORD: usize = 1 << 34;

/// One operation of a decoded batch; a put's data is a byte range of the record's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecOp {
    /// Data at `data` (offsets from the record's first byte).
    Put {
        /// The key.
        key: Key,
        /// Where its data is.
        data: Range<u64>,
        /// The body metadata recorded with it.
        meta: Option<BodyMeta>,
    },
    /// A delete.
    Delete {
        /// The key.
        key: Key,
    },
    /// A copy of what an earlier operation of the same record wrote to `from`.
    Copy {
        /// The key written.
        key: Key,
        /// The source key.
        from: Key,
        /// The body metadata recorded with it.
        meta: Option<BodyMeta>,
    },
}

impl RecOp {
    /// The key it writes or deletes.
    pub fn key(&self) -> &Key {
        match self {
            RecOp::Put { key, .. } | RecOp::Delete { key } | RecOp::Copy { key, .. } => key,
        }
    }
}

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A batch.
    Batch {
        /// Its journal number.
        jseq: u64,
        /// Its operations (puts and deletes only: copies are resolved before journaling).
        ops: Vec<RecOp>,
    },
    /// Every batch up to this number is acked by the store.
    Acked(u64),
}

/// Why a record could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum Bad {
    /// The bytes end inside it: a write that never completed (only legal at a journal's end).
    Torn,
    /// The bytes are all there but wrong.
    Corrupt(String),
}

/// Encodes a batch of puts, deletes and copies whose source an earlier op of the batch
/// writes, `metas[i]` being the metadata of op `i` (a put or a copy); returns the record and,
/// per op, where a put's data lies (offsets from the record's first byte).
pub fn encode_batch(
    jseq: u64,
    ops: &[Op],
    metas: &[Option<String>],
) -> (Vec<u8>, Vec<Option<Range<u64>>>) {
    let meta_of = |i: usize| metas.get(i).and_then(|m| m.as_deref());
    let data: usize = ops
        .iter()
        .enumerate()
        .map(|(i, op)| match op {
            Op::Put { key, data } => {
                11 + key.as_str().len() + data.len() + meta_of(i).map_or(0, |m| 4 + m.len())
            }
            Op::Copy { from, to } => {
                5 + to.as_str().len() + from.as_str().len() + meta_of(i).map_or(0, |m| 4 + m.len())
            }
            Op::Delete { key } | Op::Meta { key, .. } => 3 + key.as_str().len(),
        })
        .sum();
    let mut buf = Vec::with_capacity(FRAME + 13 + data);
    buf.extend_from_slice(&[0; FRAME]);
    buf.push(KIND_BATCH);
    buf.extend_from_slice(&jseq.to_le_bytes());
    buf.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    let mut places = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Put { key, data } => {
                let meta = meta_of(i);
                buf.push(if meta.is_some() { OP_PUT_META } else { OP_PUT });
                push_key(&mut buf, key);
                if let Some(m) = meta {
                    buf.extend_from_slice(&(m.len() as u32).to_le_bytes());
                    buf.extend_from_slice(m.as_bytes());
                }
                buf.extend_from_slice(&(data.len() as u64).to_le_bytes());
                let start = buf.len() as u64;
                buf.extend_from_slice(data);
                places.push(Some(start..buf.len() as u64));
            }
            Op::Delete { key } => {
                buf.push(OP_DELETE);
                push_key(&mut buf, key);
                places.push(None);
            }
            Op::Copy { from, to } => {
                let meta = meta_of(i);
                buf.push(if meta.is_some() {
                    OP_COPY_META
                } else {
                    OP_COPY
                });
                push_key(&mut buf, to);
                push_key(&mut buf, from);
                if let Some(m) = meta {
                    buf.extend_from_slice(&(m.len() as u32).to_le_bytes());
                    buf.extend_from_slice(m.as_bytes());
                }
                places.push(None);
            }
            Op::Meta { .. } => {
                unreachable!("metadata goes with its put or copy before journaling")
            }
        }
    }
    seal(&mut buf);
    (buf, places)
}

/// Encodes an acked marker.
pub fn encode_acked(jseq: u64) -> Vec<u8> {
    let mut buf = vec![0; FRAME];
    buf.push(KIND_ACKED);
    buf.extend_from_slice(&jseq.to_le_bytes());
    seal(&mut buf);
    buf
}

fn push_key(buf: &mut Vec<u8>, key: &Key) {
    buf.extend_from_slice(&(key.as_str().len() as u16).to_le_bytes());
    buf.extend_from_slice(key.as_str().as_bytes());
}

fn seal(buf: &mut [u8]) {
    let len = (buf.len() - FRAME) as u32;
    let crc = crc32fast::hash(&buf[FRAME..]);
    buf[..4].copy_from_slice(&len.to_le_bytes());
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the record at the start of `buf`; returns it and its length.
pub fn decode(buf: &[u8]) -> Result<(Record, usize), Bad> {
    if buf.len() < FRAME {
        return Err(Bad::Torn);
    }
    let len = u32::from_le_bytes(buf[..4].try_into().unwrap_or_default()) as usize;
    let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap_or_default());
    if len == 0 || len > MAX_RECORD {
        return Err(Bad::Corrupt(format!("impossible record length {len}")));
    }
    if buf.len() < FRAME + len {
        return Err(Bad::Torn);
    }
    let body = &buf[FRAME..FRAME + len];
    if crc32fast::hash(body) != crc {
        return Err(Bad::Corrupt("checksum mismatch".into()));
    }
    let mut r = Reader { buf: body, at: 0 };
    let record = match r.u8()? {
        KIND_BATCH => {
            let jseq = r.u64()?;
            let n = r.u32()? as usize;
            let mut ops = Vec::with_capacity(n.min(4096));
            for _ in 0..n {
                match r.u8()? {
                    op @ (OP_PUT | OP_PUT_META) => {
                        let key = r.key()?;
                        let meta = if op == OP_PUT_META {
                            Some(r.meta()?)
                        } else {
                            None
                        };
                        let dlen = r.u64()? as usize;
                        let start = r.at;
                        r.take(dlen)?;
                        let from = (FRAME + start) as u64;
                        ops.push(RecOp::Put {
                            key,
                            data: from..from + dlen as u64,
                            meta,
                        });
                    }
                    OP_DELETE => ops.push(RecOp::Delete { key: r.key()? }),
                    op @ (OP_COPY | OP_COPY_META) => {
                        let key = r.key()?;
                        let from = r.key()?;
                        // The source as the batch left it: written, not deleted.
                        let source = ops.iter().rev().find(|o| o.key() == &from);
                        if !matches!(source, Some(RecOp::Put { .. } | RecOp::Copy { .. })) {
                            return Err(Bad::Corrupt(format!(
                                "a copy of {from}, which the batch does not write"
                            )));
                        }
                        let meta = if op == OP_COPY_META {
                            Some(r.meta()?)
                        } else {
                            None
                        };
                        ops.push(RecOp::Copy { key, from, meta });
                    }
                    other => return Err(Bad::Corrupt(format!("unknown operation {other}"))),
                }
            }
            Record::Batch { jseq, ops }
        }
        KIND_ACKED => Record::Acked(r.u64()?),
        other => return Err(Bad::Corrupt(format!("unknown record kind {other}"))),
    };
    if r.at != body.len() {
        return Err(Bad::Corrupt("trailing bytes in a record".into()));
    }
    Ok((record, FRAME + len))
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| Bad::Corrupt("a field runs past its record".into()))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, Bad> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Bad> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().unwrap_or_default(),
        ))
    }

    fn u32(&mut self) -> Result<u32, Bad> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }

    fn u64(&mut self) -> Result<u64, Bad> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }

    fn meta(&mut self) -> Result<BodyMeta, Bad> {
        let mlen = self.u32()? as usize;
        if mlen > MAX_META {
            return Err(Bad::Corrupt(format!("metadata of {mlen} bytes")));
        }
        let text = std::str::from_utf8(self.take(mlen)?)
            .map_err(|_| Bad::Corrupt("metadata is not UTF-8".into()))?;
        BodyMeta::decode(text).map_err(Bad::Corrupt)
    }

    fn key(&mut self) -> Result<Key, Bad> {
        let n = self.u16()? as usize;
        let raw = self.take(n)?;
        let s = std::str::from_utf8(raw).map_err(|_| Bad::Corrupt("key is not UTF-8".into()))?;
        Key::new(s).map_err(|e| Bad::Corrupt(e.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn key(s: &str) -> Key {
        Key::new(s).unwrap()
    }

    #[test]
    fn batches_and_markers_round_trip_and_damage_is_named() {
        let ops = vec![
            Op::Put {
                key: key("a/1"),
                data: Bytes::from_static(b"hello"),
            },
            Op::Delete { key: key("a/2") },
            Op::Put {
                key: key("a/3"),
                data: Bytes::new(),
            },
        ];
        let meta = BodyMeta {
            user: "u".into(),
            mailbox: 4,
            mailbox_name: "INBOX".into(),
            guid: "0123456789abcdef0123456789abcdef".into(),
            internal_date: 1,
            zone_minutes: 0,
            saved: 2,
            size: 0,
        };
        let (rec, places) = encode_batch(7, &ops, &[None, None, Some(meta.encode())]);
        let (decoded, used) = decode(&rec).unwrap();
        assert_eq!(used, rec.len());
        let Record::Batch { jseq, ops: got } = decoded else {
            panic!("not a batch")
        };
        assert_eq!(jseq, 7);
        let RecOp::Put { data, .. } = &got[0] else {
            panic!()
        };
        assert_eq!(&rec[data.start as usize..data.end as usize], b"hello");
        assert_eq!(places[0], Some(data.clone()));
        assert_eq!(got[1], RecOp::Delete { key: key("a/2") });
        let RecOp::Put { meta: got_meta, .. } = &got[2] else {
            panic!()
        };
        assert_eq!(got_meta.as_ref(), Some(&meta));
        let marker = encode_acked(9);
        assert_eq!(decode(&marker).unwrap().0, Record::Acked(9));

        // A copy names its source and carries no data; one whose source the batch does not
        // write is damage.
        let copies = vec![
            Op::Put {
                key: key("a/1"),
                data: Bytes::from_static(b"hello"),
            },
            Op::Copy {
                from: key("a/1"),
                to: key("b/1"),
            },
            Op::Copy {
                from: key("b/1"),
                to: key("c/1"),
            },
        ];
        let (crec, places) = encode_batch(8, &copies, &[None, Some(meta.encode()), None]);
        assert_eq!(places[1..], [None, None]);
        let Record::Batch { ops: got, .. } = decode(&crec).unwrap().0 else {
            panic!("not a batch")
        };
        assert_eq!(
            got[1..],
            [
                RecOp::Copy {
                    key: key("b/1"),
                    from: key("a/1"),
                    meta: Some(meta.clone()),
                },
                RecOp::Copy {
                    key: key("c/1"),
                    from: key("b/1"),
                    meta: None,
                },
            ]
        );
        let orphan = [Op::Copy {
            from: key("a/9"),
            to: key("b/9"),
        }];
        let (orec, _) = encode_batch(9, &orphan, &[]);
        assert!(matches!(decode(&orec), Err(Bad::Corrupt(why)) if why.contains("a/9")));
        // Every strict prefix is a torn write, never a wrong record.
        for cut in 0..rec.len() {
            assert_eq!(decode(&rec[..cut]).unwrap_err(), Bad::Torn, "cut at {cut}");
        }
        let mut flipped = rec.clone();
        flipped[20] ^= 1;
        assert!(matches!(decode(&flipped), Err(Bad::Corrupt(_))));
    }
}
