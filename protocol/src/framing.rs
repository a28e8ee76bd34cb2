//! Splitting what a client sends into commands, with every limit enforced as the bytes arrive:
//! [`crate::fragments`] finds lines and literals; this module bounds how long a line may grow
//! before its CRLF, discards an overlong command without buffering it (following its literal
//! announcements, so literal data is never read as commands), and starts afresh when the
//! limits change (at login) or after a large message, so that a session does not keep the
//! memory a past APPEND needed.

use imap_codec::fragmentizer::FragmentInfo;

use crate::fragments::{Byte, Fragments, advance};

/// The sizes a client's commands may have in the current state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sizes {
    /// Longest line of a command, without its literals.
    pub line: u32,
    /// Largest literal.
    pub literal: u32,
}

impl Sizes {
    /// The most one message (lines and literals) may hold in the fragmentizer.
    fn message(self) -> u32 {
        self.line.saturating_mul(2).saturating_add(self.literal)
    }
}

/// What [`Framer::overlong`] found.
pub(crate) struct Overlong {
    /// The tag of the command being discarded, if it could be read.
    pub tag: Option<String>,
}

/// A command larger than any buffer may hold; its remaining bytes are skipped, following the
/// same line grammar the fragmentizer follows.
struct Skip {
    tag: Option<String>,
    state: Byte,
    literal_left: u64,
}

/// Where skipping an overlong command got to.
pub(crate) enum Skipped {
    /// More bytes are needed.
    More,
    /// The command ended; answer it (the tag is in [`Overlong`]).
    Done(Overlong),
}

/// The framing of one connection.
pub(crate) struct Framer {
    pub frag: Fragments,
    sizes: Sizes,
    /// Where the line being received started, in the current message.
    line_start: usize,
    /// A literal is being received.
    in_literal: bool,
    /// An overlong command is being skipped.
    skip: Option<Skip>,
    /// The fragmentizer held a large message; replace it when it is next empty.
    grown: bool,
}

/// A message this large makes the fragmentizer's buffer worth giving back.
const KEEP_BUFFER_BYTES: usize = 256 * 1024;

impl Framer {
    pub fn new(sizes: Sizes) -> Framer {
        Framer {
            frag: Fragments::new(sizes.message()),
            sizes,
            line_start: 0,
            in_literal: false,
            skip: None,
            grown: false,
        }
    }

    /// Whether part of a command has arrived (or an overlong one is being skipped).
    pub fn receiving(&self) -> bool {
        self.skip.is_some() || !self.frag.message_bytes().is_empty()
    }

    /// The limits in force.
    pub fn sizes(&self) -> Sizes {
        self.sizes
    }

    /// Changes the limits; they apply from the next command on.
    pub fn set_sizes(&mut self, sizes: Sizes) {
        if sizes != self.sizes {
            self.sizes = sizes;
            self.grown = true;
        }
    }

    /// Call when the fragmentizer wants more bytes: gives its buffer back (or applies new
    /// limits) if it holds nothing now.
    pub fn idle_point(&mut self) {
        if self.grown && self.frag.message_bytes().is_empty() && self.skip.is_none() {
            self.frag = Fragments::new(self.sizes.message());
            self.grown = false;
            self.line_start = 0;
            self.in_literal = false;
        }
    }

    /// The next fragment, keeping track of where the current line starts.
    pub fn progress(&mut self) -> Option<FragmentInfo> {
        if self.skip.is_some() {
            return None;
        }
        if self.frag.is_message_complete() {
            // The previous message is done; the fragmentizer starts the next one.
            self.line_start = 0;
            self.in_literal = false;
            if self.frag.message_bytes().len() > KEEP_BUFFER_BYTES {
                self.grown = true;
            }
        }
        let f = self.frag.progress()?;
        match f {
            FragmentInfo::Line {
                end, announcement, ..
            } => {
                self.line_start = end;
                self.in_literal = announcement.is_some();
            }
            FragmentInfo::Literal { end, .. } => {
                self.line_start = end;
                self.in_literal = false;
            }
        }
        Some(f)
    }

    /// After [`Framer::progress`] said it needs more: whether the line being received is
    /// already over the limit. If so, the command is dropped from the buffer and the rest of it
    /// will be skipped as it arrives ([`Framer::feed`] reports when it ends).
    pub fn overlong(&mut self) -> bool {
        if self.in_literal || self.skip.is_some() {
            return false;
        }
        let bytes = self.frag.message_bytes();
        let partial = bytes.len().saturating_sub(self.line_start);
        if partial <= self.sizes.line as usize {
            return false;
        }
        // The line has no LF yet, so its last bytes say whether a literal is being announced.
        let state = advance(Byte::Other, bytes);
        let tag = self.frag.decode_tag().map(|t| t.as_ref().to_string());
        self.skip = Some(Skip {
            tag,
            state,
            literal_left: 0,
        });
        self.frag = Fragments::new(self.sizes.message());
        self.line_start = 0;
        self.in_literal = false;
        true
    }

    /// Takes bytes read from the client: skipped while an overlong command lasts, queued for
    /// the fragmentizer otherwise.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Skipped {
        let Some(skip) = self.skip.as_mut() else {
            self.frag.enqueue_bytes(bytes);
            return Skipped::More;
        };
        while !bytes.is_empty() {
            if skip.literal_left > 0 {
                let n = bytes
                    .len()
                    .min(usize::try_from(skip.literal_left).unwrap_or(usize::MAX));
                skip.literal_left -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            // Only a line's last bytes can announce a literal: jump from line end to line end.
            let Some(lf) = memchr::memchr(b'\n', bytes) else {
                skip.state = advance(skip.state, bytes);
                return Skipped::More;
            };
            skip.state = advance(skip.state, &bytes[..lf]);
            bytes = &bytes[lf + 1..];
            let announced = skip.state.announced();
            skip.state = Byte::Other;
            match announced {
                // The client waits for "+" before sending it: answering ends the command.
                Some((length, false)) => skip.literal_left = length,
                _ => {
                    let tag = self.skip.take().and_then(|s| s.tag);
                    self.frag.enqueue_bytes(bytes);
                    return Skipped::Done(Overlong { tag });
                }
            }
        }
        Skipped::More
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framer() -> Framer {
        Framer::new(Sizes {
            line: 16,
            literal: 16,
        })
    }

    /// Feeds `input` in small pieces; returns the overlong commands' tags and the
    /// complete messages, in order.
    fn run(f: &mut Framer, input: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for chunk in input.chunks(5) {
            if let Skipped::Done(o) = f.feed(chunk) {
                out.push(format!("overlong {}", o.tag.unwrap_or_default()));
            }
            loop {
                match f.progress() {
                    Some(_) if f.frag.is_message_complete() => {
                        out.push(String::from_utf8_lossy(f.frag.message_bytes()).into_owned())
                    }
                    Some(_) => {}
                    None => {
                        f.overlong();
                        break;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn overlong_lines_are_skipped_without_buffering() {
        let mut f = framer();
        let long = format!("a1 NOOP {}\r\nb2 NOOP\r\n", "x".repeat(10_000));
        assert_eq!(run(&mut f, long.as_bytes()), ["overlong a1", "b2 NOOP\r\n"]);
        assert!(f.frag.message_bytes().len() < 64);
    }

    #[test]
    fn literal_data_of_a_skipped_command_is_never_a_command() {
        let mut f = framer();
        let input = format!(
            "a1 APPEND {} {{12+}}\r\nb2 LOGOUT\r\n\r\nc3 NOOP\r\n",
            "y".repeat(100)
        );
        assert_eq!(
            run(&mut f, input.as_bytes()),
            ["overlong a1", "c3 NOOP\r\n"]
        );
        // A synchronizing literal is never sent: the answer ends the command.
        let mut f = framer();
        let input = format!("a1 APPEND {} {{12}}\r\nc3 NOOP\r\n", "y".repeat(100));
        assert_eq!(
            run(&mut f, input.as_bytes()),
            ["overlong a1", "c3 NOOP\r\n"]
        );
    }
}
