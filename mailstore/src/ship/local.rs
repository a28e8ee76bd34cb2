//! The node's own note of how far it shipped a user's index (`<user>.ship` beside the index):
//! a hint that saves reading the chain back at every open. It is checked against the store and
//! never trusted over it; a missing or unreadable note only costs a new base.

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

/// Writes the note (atomically; not fsynced: a note lost to a power cut costs a new base).
pub fn write(path: &Path, note: &Note) -> std::io::Result<()> {
    let tmp = path.with_extension("ship.writing");
    std::fs::write(
        &tmp,
        format!(
            "epoch={} last={} modseq={}\n",
            note.epoch, note.last, note.modseq.0
        ),
    )?;
    std::fs::rename(&tmp, path)
}
