//! Splitting a client's bytes into IMAP lines and literals: the fragments of one message
//! (a command, an AUTHENTICATE response, IDLE's DONE) are gathered into one buffer, bounded
//! by a maximum size, for a decoder to read whole.
//!
//! It keeps imap-codec's fragmentizer's contract (same fragments, line endings, literal
//! announcements, truncation, poisoning) but moves bytes in slices: a literal is copied into
//! the message as it arrives and a line is searched for its LF with `memchr`, so a 5 MB APPEND
//! costs a few copies, not a loop over every byte. It is not a parser of commands: deciding
//! what a message means is the decoders' job, and limits per line are [`crate::framing`]'s.

use imap_codec::decode::Decoder;
use imap_codec::fragmentizer::{DecodeMessageError, FragmentInfo, LineEnding, LiteralAnnouncement};
use imap_codec::imap_types::core::{LiteralMode, Tag};
use imap_codec::imap_types::secret::Secret;

/// The last bytes of a line, as far as they may announce a literal (`{12}` or `{12+}`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Byte {
    Other,
    Open,
    Digits(u64),
    Plus(u64),
    Close { length: u64, sync: bool },
    Cr(Option<(u64, bool)>),
}

impl Byte {
    fn next(self, b: u8) -> Byte {
        match (self, b) {
            (_, b'\r') => match self {
                Byte::Close { length, sync } => Byte::Cr(Some((length, sync))),
                _ => Byte::Cr(None),
            },
            (_, b'{') => Byte::Open,
            (Byte::Open, b'0'..=b'9') => Byte::Digits(u64::from(b - b'0')),
            (Byte::Digits(n), b'0'..=b'9') => n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
                .filter(|n| *n <= u64::from(u32::MAX))
                .map_or(Byte::Other, Byte::Digits),
            (Byte::Digits(n), b'+') => Byte::Plus(n),
            (Byte::Digits(n), b'}') => Byte::Close {
                length: n,
                sync: true,
            },
            (Byte::Plus(n), b'}') => Byte::Close {
                length: n,
                sync: false,
            },
            _ => Byte::Other,
        }
    }

    /// What a line ending in this state announces: its literal's length and whether the client
    /// waits for a continuation first.
    pub(crate) fn announced(self) -> Option<(u64, bool)> {
        match self {
            Byte::Cr(a) => a,
            Byte::Close { length, sync } => Some((length, sync)),
            _ => None,
        }
    }
}

/// The state after `bytes` (which hold no LF): a literal announcement is at most 14 bytes
/// long and starts with `{`, which resets the state, so only the last bytes matter.
pub(crate) fn advance(state: Byte, bytes: &[u8]) -> Byte {
    const ANNOUNCEMENT: usize = 32;
    if bytes.len() > ANNOUNCEMENT {
        bytes[bytes.len() - ANNOUNCEMENT..]
            .iter()
            .fold(Byte::Other, |s, &b| s.next(b))
    } else {
        bytes.iter().fold(state, |s, &b| s.next(b))
    }
}

/// What the next bytes of the message are.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// A line that started at `start` in the message; `state` covers its bytes so far.
    Line { start: usize, state: Byte },
    /// A literal that started at `start`, with `left` bytes still to come.
    Literal { start: usize, left: u32 },
    /// The message is complete; the next [`Fragments::progress`] starts another.
    Done,
}

/// The fragments of the message being received, and the bytes received after them.
pub(crate) struct Fragments {
    /// Bytes received and not yet taken into a fragment: `pending[head..]`.
    pending: Vec<u8>,
    head: usize,
    /// The current message's bytes, at most `max` of them.
    message: Vec<u8>,
    max: usize,
    /// Bytes of the current message, counting those dropped past `max`.
    length: usize,
    poisoned: bool,
    expect: Expect,
}

impl Fragments {
    /// Gathers messages of at most `max` bytes; longer ones are cut there and cannot be
    /// decoded, but their fragments are still followed to their end.
    pub fn new(max: u32) -> Fragments {
        Fragments {
            pending: Vec::new(),
            head: 0,
            message: Vec::new(),
            max: max as usize,
            length: 0,
            poisoned: false,
            expect: Expect::Line {
                start: 0,
                state: Byte::Other,
            },
        }
    }

    /// Queues bytes read from the client.
    pub fn enqueue_bytes(&mut self, bytes: &[u8]) {
        if self.head == self.pending.len() {
            self.pending.clear();
            self.head = 0;
        } else if self.head > self.pending.len() / 2 {
            // Keep the queue from creeping forward forever behind pipelined commands.
            self.pending.drain(..self.head);
            self.head = 0;
        }
        self.pending.extend_from_slice(bytes);
    }

    /// Takes queued bytes until the next fragment ends; `None` when more bytes are needed.
    /// After the fragment that completes a message ([`Fragments::is_message_complete`]), the
    /// next call starts a new message.
    pub fn progress(&mut self) -> Option<FragmentInfo> {
        if let Expect::Done = self.expect {
            self.skip_message();
        }
        let available = &self.pending[self.head..];
        match self.expect {
            Expect::Line { start, state } => {
                let Some(lf) = memchr::memchr(b'\n', available) else {
                    let n = available.len();
                    self.expect = Expect::Line {
                        start,
                        state: advance(state, available),
                    };
                    self.take(n);
                    return None;
                };
                let state = advance(state, &available[..lf]);
                self.take(lf + 1);
                let ending = if matches!(state, Byte::Cr(_)) {
                    LineEnding::CrLf
                } else {
                    LineEnding::Lf
                };
                let announcement = state.announced().map(|(length, sync)| LiteralAnnouncement {
                    mode: if sync {
                        LiteralMode::Sync
                    } else {
                        LiteralMode::NonSync
                    },
                    // `Byte` stops counting past u32::MAX.
                    length: length as u32,
                });
                let end = self.length;
                self.expect = match announcement {
                    Some(a) => {
                        // One allocation for the literal rather than a doubling per read; only
                        // address space until the bytes come, and never past the maximum.
                        let room = self.max.saturating_sub(self.message.len());
                        self.message.reserve((a.length as usize).min(room));
                        Expect::Literal {
                            start: end,
                            left: a.length,
                        }
                    }
                    None => Expect::Done,
                };
                Some(FragmentInfo::Line {
                    start,
                    end,
                    announcement,
                    ending,
                })
            }
            Expect::Literal { start, left } => {
                let n = available.len().min(left as usize);
                self.take(n);
                let left = left - n as u32;
                if left > 0 {
                    self.expect = Expect::Literal { start, left };
                    return None;
                }
                let end = self.length;
                self.expect = Expect::Line {
                    start: end,
                    state: Byte::Other,
                };
                Some(FragmentInfo::Literal { start, end })
            }
            Expect::Done => unreachable!("a new message was started above"),
        }
    }

    /// Moves `n` queued bytes into the message, up to its maximum size.
    fn take(&mut self, n: usize) {
        let bytes = &self.pending[self.head..self.head + n];
        let room = self.max.saturating_sub(self.message.len());
        self.message.extend_from_slice(&bytes[..n.min(room)]);
        self.length += n;
        self.head += n;
    }

    /// Whether the last fragment completed a message.
    pub fn is_message_complete(&self) -> bool {
        matches!(self.expect, Expect::Done)
    }

    /// The current message's bytes so far (cut at the maximum size).
    pub fn message_bytes(&self) -> &[u8] {
        &self.message
    }

    /// Hands over the complete current message's bytes (so a literal in it need not be
    /// copied); the next message starts in a new buffer.
    pub fn take_message(&mut self) -> Vec<u8> {
        debug_assert!(self.is_message_complete());
        std::mem::take(&mut self.message)
    }

    /// Whether the current message is longer than the maximum and was cut.
    pub fn is_max_message_size_exceeded(&self) -> bool {
        self.length > self.max
    }

    /// Whether the current message was marked as not to be decoded.
    pub fn is_message_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Marks the current message as not to be decoded; its fragments are still followed, so
    /// its literal data is never taken for commands.
    pub fn poison_message(&mut self) {
        self.poisoned = true;
    }

    /// Drops the current message and starts the next one with the bytes queued now. Only
    /// right when the client agrees the message ended: a refused synchronizing literal.
    pub fn skip_message(&mut self) {
        self.message.clear();
        self.length = 0;
        self.poisoned = false;
        self.expect = Expect::Line {
            start: 0,
            state: Byte::Other,
        };
    }

    /// The current message's tag, if its first bytes hold one.
    pub fn decode_tag(&self) -> Option<Tag<'_>> {
        let bytes = &self.message;
        let sp = bytes.iter().position(|&b| b == b' ' || b == b'\n')?;
        if bytes[sp] != b' ' {
            return None;
        }
        Tag::try_from(&bytes[..sp]).ok()
    }

    /// Decodes the complete current message with `codec`, which must use all of it.
    pub fn decode_message<'a, C: Decoder>(
        &'a self,
        codec: &C,
    ) -> Result<C::Message<'a>, DecodeMessageError<'a, C>> {
        if self.is_max_message_size_exceeded() {
            return Err(DecodeMessageError::MessageTooLong {
                initial: Secret::new(&self.message),
            });
        }
        if self.poisoned {
            return Err(DecodeMessageError::MessagePoisoned {
                discarded: Secret::new(&self.message),
            });
        }
        match codec.decode(&self.message) {
            Ok(([], message)) => Ok(message),
            Ok((remainder, message)) => Err(DecodeMessageError::DecodingRemainder {
                message,
                remainder: Secret::new(remainder),
            }),
            Err(e) => Err(DecodeMessageError::DecodingFailure(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use imap_codec::fragmentizer::Fragmentizer;
    use proptest::prelude::*;

    use super::*;

    /// What a splitter reported, fragment by fragment, and each message as completed.
    #[derive(Debug, PartialEq)]
    enum Seen {
        Fragment(FragmentInfo, Vec<u8>),
        Message {
            bytes: Vec<u8>,
            cut: bool,
            tag: Option<String>,
        },
    }

    macro_rules! drive {
        ($f:expr, $input:expr, $chunks:expr) => {{
            let f = &mut $f;
            let mut seen = Vec::new();
            let mut rest: &[u8] = $input;
            let mut sizes = $chunks.iter().cycle();
            while !rest.is_empty() {
                let n = (*sizes.next().unwrap()).clamp(1, rest.len());
                f.enqueue_bytes(&rest[..n]);
                rest = &rest[n..];
                while let Some(info) = f.progress() {
                    seen.push(Seen::Fragment(info, f.fragment_bytes_of(info).to_vec()));
                    if f.is_message_complete() {
                        seen.push(Seen::Message {
                            bytes: f.message_bytes().to_vec(),
                            cut: f.is_max_message_size_exceeded(),
                            tag: f.decode_tag().map(|t| t.as_ref().to_string()),
                        });
                    }
                }
            }
            seen
        }};
    }

    trait FragmentBytes {
        fn fragment_bytes_of(&self, info: FragmentInfo) -> &[u8];
    }
    impl FragmentBytes for Fragmentizer {
        fn fragment_bytes_of(&self, info: FragmentInfo) -> &[u8] {
            self.fragment_bytes(info)
        }
    }
    impl FragmentBytes for Fragments {
        fn fragment_bytes_of(&self, info: FragmentInfo) -> &[u8] {
            let range = info.range();
            let bytes = self.message_bytes();
            &bytes[range.start.min(bytes.len())..range.end.min(bytes.len())]
        }
    }

    /// Pieces of IMAP traffic, ordinary and odd, glued into a stream.
    fn piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"a1 NOOP\r\n".to_vec()),
            Just(b"a2 LOGIN {3}\r\nbob {4+}\r\npass\r\n".to_vec()),
            Just(b"a3 APPEND INBOX {0}\r\n\r\n".to_vec()),
            Just(b"a4 APPEND INBOX ~{5}\r\nab\0\ncd\r\n".to_vec()),
            Just(b"bare LF\n".to_vec()),
            Just(b"{99999999999}\r\n".to_vec()),
            Just(b"x {12\r\n{+}\r\n{1}}\r\n{2+}\n".to_vec()),
            Just(b"\r\r\n".to_vec()),
            (0usize..300).prop_map(|n| format!(
                "a5 APPEND INBOX {{{n}+}}\r\n{}\r\n",
                "z".repeat(n)
            )
            .into_bytes()),
            proptest::collection::vec(
                prop_oneof![
                    Just(b'{'),
                    Just(b'}'),
                    Just(b'+'),
                    Just(b'\r'),
                    Just(b'\n'),
                    Just(b'1'),
                    Just(b'0'),
                    Just(b' '),
                    Just(b'a')
                ],
                0..40
            ),
        ]
    }

    proptest! {
        /// Same fragments, messages, truncation and tags as imap-codec's fragmentizer, however
        /// the bytes are cut into reads.
        #[test]
        fn splits_as_imap_codec_does(
            pieces in proptest::collection::vec(piece(), 1..12),
            chunks in proptest::collection::vec(1usize..64, 1..8),
            max in prop_oneof![Just(0u32), 1u32..64, Just(u32::MAX)],
        ) {
            let input = pieces.concat();
            let ours = drive!(Fragments::new(max), &input, chunks);
            let theirs = drive!(Fragmentizer::new(max), &input, chunks);
            prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn a_large_literal_is_one_fragment_and_the_message_can_be_taken() {
        let body = vec![b'x'; 5 << 20];
        let mut input = format!("a APPEND INBOX {{{}}}\r\n", body.len()).into_bytes();
        input.extend_from_slice(&body);
        input.extend_from_slice(b"\r\nb NOOP\r\n");
        let mut f = Fragments::new(u32::MAX);
        let mut fragments = Vec::new();
        for chunk in input.chunks(16 * 1024) {
            f.enqueue_bytes(chunk);
            while let Some(info) = f.progress() {
                fragments.push(info);
                if f.is_message_complete() {
                    break;
                }
            }
            if f.is_message_complete() {
                break;
            }
        }
        assert_eq!(fragments.len(), 3);
        let FragmentInfo::Literal { start, end } = fragments[1] else {
            panic!("{fragments:?}")
        };
        let message = f.take_message();
        assert_eq!(&message[start..end], &body[..]);
        // The next command is still queued and the buffer starts empty again.
        assert!(f.message_bytes().is_empty());
        assert!(f.progress().is_some());
        assert_eq!(f.message_bytes(), b"b NOOP\r\n");
    }
}
