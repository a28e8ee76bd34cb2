//! The node's own note of the epoch it writes a user's index under and how far it shipped
//! (`<user>.redb.ship` beside the index). The epoch is written before anything is shipped
//! under it, so after a crash the node recognises the chain's last objects as its own and
//! keeps its index (which holds at least what they hold). Without a note, the store's chain
//! wins over the local index.

use std::path::Path;

use strata_index::Modseq;

/// How far this node shipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Note {
    /// The epoch it shipped under.
    pub epoch: u64,
    /// The last position it wrote (acked).
    pub last: u64,
    /// The MODSEQ that object brought the chain to.
    pub modseq: Modseq,
}

/// Reads the note; `None` if there is none or it is unreadable.
pub fn read(path: &Path) -> Option<Note> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut note = Note::default();
    let mut seen = 0;
    for word in text.split_whitespace() {
        let (k, v) = word.split_once('=')?;
        let v: u64 = v.parse().ok()?;
        match k {
            "epoch" => note.epoch = v,
            "last" => note.last = v,
            "modseq" => note.modseq = Modseq(v),
            _ => continue,
        }
        seen += 1;
    }
    (seen == 3).then_some(note)
}

/// Writes the note, atomically and durably: the epoch in it is how this node recognises the
/// chain's last objects as its own after a crash (and keeps the changes its index has beyond
/// them).
pub fn write(path: &Path, note: &Note) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("ship.writing");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(
        format!(
            "epoch={} last={} modseq={}\n",
            note.epoch, note.last, note.modseq.0
        )
        .as_bytes(),
    )?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
