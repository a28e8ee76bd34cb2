//! One cached object as a file: a header that names the key, the length and the BLAKE3 hash
//! of the bytes, then the bytes. A file cut short, written over or holding another key's bytes
//! fails its checks and is never answered.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::Path;

/// The first bytes of every cache file.
pub const MAGIC: &[u8; 8] = b"STRCACH1";

/// What a file's header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The key the bytes were read under.
    pub key: String,
    /// Their length.
    pub len: u64,
    /// Their BLAKE3 hash.
    pub hash: [u8; 32],
}

impl Header {
    /// Its encoded length.
    pub fn encoded_len(&self) -> u64 {
        header_len(&self.key)
    }
}

/// The encoded length of a header naming `key`: a file's length less this is what it holds.
pub fn header_len(key: &str) -> u64 {
    (MAGIC.len() + 2 + key.len() + 8 + 32) as u64
}

/// Writes `data`, read under `key`, to a new file at `path`.
pub fn write(path: &Path, key: &str, data: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(MAGIC.len() + 42 + key.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&(data.len() as u64).to_be_bytes());
    out.extend_from_slice(blake3::hash(data).as_bytes());
    let mut f = File::create(path)?;
    f.write_all(&out)?;
    f.write_all(data)?;
    Ok(())
}

/// Reads and checks the header of an open file: its magic, and that the file holds exactly
/// the bytes it announces.
pub fn header(f: &mut File) -> std::io::Result<Header> {
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    let file_len = f.metadata()?.len();
    let mut fixed = [0u8; 10];
    f.read_exact(&mut fixed).map_err(|_| bad("short header"))?;
    if &fixed[..8] != MAGIC {
        return Err(bad("not a cache file"));
    }
    let key_len = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
    let mut rest = vec![0u8; key_len + 40];
    f.read_exact(&mut rest).map_err(|_| bad("short header"))?;
    let key = String::from_utf8(rest[..key_len].to_vec()).map_err(|_| bad("key not UTF-8"))?;
    let len = u64::from_be_bytes(rest[key_len..key_len + 8].try_into().expect("8 bytes"));
    let hash: [u8; 32] = rest[key_len + 8..].try_into().expect("32 bytes");
    let h = Header { key, len, hash };
    if h.encoded_len().checked_add(len) != Some(file_len) {
        return Err(bad("length differs from the header's"));
    }
    Ok(h)
}

/// Opens the file at `path`, whose header must name `key`.
fn open_for(path: &Path, key: &str) -> std::io::Result<(File, Header)> {
    let mut f = File::open(path)?;
    let h = header(&mut f)?;
    if h.key != key {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "holds another key",
        ));
    }
    Ok((f, h))
}

/// Reads the whole object of a file whose header names `key`, checking its hash.
pub fn read_verified(path: &Path, key: &str) -> std::io::Result<Vec<u8>> {
    let (mut f, h) = open_for(path, key)?;
    let mut data = vec![0u8; h.len as usize];
    f.read_exact(&mut data)?;
    if blake3::hash(&data).as_bytes() != &h.hash {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "hash differs from the header's",
        ));
    }
    Ok(data)
}

/// Reads `range` (clamped to the object) of a file already verified whole.
pub fn read_range(path: &Path, key: &str, range: Range<u64>) -> std::io::Result<Vec<u8>> {
    let (mut f, h) = open_for(path, key)?;
    let start = range.start.min(h.len);
    let end = range.end.clamp(start, h.len);
    f.seek(SeekFrom::Start(h.encoded_len() + start))?;
    let mut data = vec![0u8; (end - start) as usize];
    f.read_exact(&mut data)?;
    Ok(data)
}
