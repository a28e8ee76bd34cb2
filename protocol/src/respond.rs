//! Where handlers write their responses: a buffer in front of the connection, flushed when a
//! command ends and whenever it grows past a bound, so a FETCH of many bodies streams out instead
//! of piling up in memory.

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::encode::{Mark, Out};

/// Flush once this many bytes are buffered.
const FLUSH_AT: usize = 256 * 1024;

/// A response writer over the connection.
pub struct Responder<'w> {
    w: &'w mut (dyn AsyncWrite + Unpin + Send),
    /// The buffered response bytes.
    pub out: Out,
    /// The status of the last tagged response (for the command log).
    pub last_status: &'static str,
    /// Where in the response the last tagged response starts.
    last_tagged_at: Mark,
}

impl<'w> Responder<'w> {
    /// A writer over `w`.
    pub fn new(w: &'w mut (dyn AsyncWrite + Unpin + Send)) -> Self {
        Responder {
            w,
            out: Out::default(),
            last_status: "",
            last_tagged_at: Mark::default(),
        }
    }

    /// `* <text>`.
    pub fn untagged(&mut self, text: &str) {
        self.out.raw("* ").raw(text).crlf();
    }

    fn tagged(&mut self, tag: &str, status: &'static str, code: Option<&str>, text: &str) {
        self.last_status = status;
        self.last_tagged_at = self.out.mark();
        self.out.raw(tag).raw(" ").raw(status).raw(" ");
        if let Some(code) = code {
            self.out.raw("[").raw(code).raw("] ");
        }
        // Text must stay on one line whatever an error message holds.
        let text: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        self.out
            .raw(if text.is_empty() { "done" } else { &text })
            .crlf();
    }

    /// `<tag> OK [code] text`.
    pub fn tagged_ok(&mut self, tag: &str, code: Option<&str>, text: &str) {
        self.tagged(tag, "OK", code, text);
    }

    /// `<tag> NO [code] text`.
    pub fn tagged_no(&mut self, tag: &str, code: Option<&str>, text: &str) {
        self.tagged(tag, "NO", code, text);
    }

    /// `<tag> BAD [code] text`.
    pub fn tagged_bad(&mut self, tag: &str, code: Option<&str>, text: &str) {
        self.tagged(tag, "BAD", code, text);
    }

    /// Takes back the tagged response just written (still buffered: it is always the last
    /// thing a command writes) and answers NO instead.
    pub fn retract_ok(&mut self, tag: &str, code: Option<&str>, text: &str) {
        if self.last_status == "OK" && self.out.holds(self.last_tagged_at) {
            self.out.truncate(self.last_tagged_at);
            self.tagged_no(tag, code, text);
        }
    }

    /// `+ text`.
    pub fn continuation(&mut self, text: &str) {
        self.out.raw("+ ").raw(text).crlf();
    }

    /// Sends what is buffered.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.out.write_to(self.w).await?;
        }
        self.out.release();
        self.w.flush().await
    }

    /// Sends what is buffered if it is large.
    pub async fn flush_if_big(&mut self) -> std::io::Result<()> {
        if self.out.len() >= FLUSH_AT {
            // The own buffer's allocation is kept: a large FETCH fills it again and again.
            self.out.write_to(self.w).await?;
        }
        Ok(())
    }
}
