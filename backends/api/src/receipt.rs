//! Receipts: a commit returns once its batch is *soft-done* (durable locally, readable through
//! the backend); the receipt resolves when the batch is *acked* (the authoritative store has
//! it). Batches are numbered in commit order and acked in that order.

use std::sync::Mutex;

use tokio::sync::watch;

use crate::error::{BackendError, ErrorKind};

#[derive(Clone, Debug, Default)]
struct AckState {
    acked_upto: u64,
    failed: Option<(u64, BackendError)>,
}

/// Numbers batches and records how far acks have come. Backends own one.
#[derive(Debug)]
pub struct AckTracker {
    tx: watch::Sender<AckState>,
    issued: Mutex<u64>,
    backend: String,
}

impl AckTracker {
    /// A tracker with nothing issued.
    pub fn new(backend: impl Into<String>) -> Self {
        AckTracker {
            tx: watch::Sender::new(AckState::default()),
            issued: Mutex::new(0),
            backend: backend.into(),
        }
    }

    /// Numbers the next soft-done batch. Call it in commit order.
    pub fn issue(&self) -> Receipt {
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        *issued += 1;
        Receipt {
            seq: *issued,
            rx: self.tx.subscribe(),
            backend: self.backend.clone(),
        }
    }

    /// Numbers a batch that is acked as soon as it is soft-done (stores where the two moments
    /// are one, such as files on local disk).
    pub fn issue_acked(&self) -> Receipt {
        let receipt = self.issue();
        self.ack_upto(receipt.seq());
        receipt
    }

    /// Waits until every batch up to `seq` (or up to the last one issued, if `seq` is beyond
    /// it) is acked: the meaning of `Backend::flush`.
    pub async fn flush(&self, seq: u64) -> Result<(), BackendError> {
        self.wait(seq.min(self.last_issued())).await
    }

    /// The last number issued.
    pub fn last_issued(&self) -> u64 {
        *self.issued.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How far acks have come.
    pub fn acked_upto(&self) -> u64 {
        self.tx.borrow().acked_upto
    }

    /// Marks every batch up to `seq` acked. Acks only move forward.
    pub fn ack_upto(&self, seq: u64) {
        self.tx.send_if_modified(|st| {
            if seq > st.acked_upto {
                st.acked_upto = seq;
                true
            } else {
                false
            }
        });
    }

    /// Marks batches from `seq` on as never to be acked (the backend gave up on them).
    pub fn fail_from(&self, seq: u64, err: BackendError) {
        self.tx.send_modify(|st| {
            if st.failed.as_ref().is_none_or(|(s, _)| seq < *s) {
                st.failed = Some((seq, err));
            }
        });
    }

    /// Waits until batch `seq` is acked.
    pub async fn wait(&self, seq: u64) -> Result<(), BackendError> {
        wait(self.tx.subscribe(), seq, &self.backend).await
    }
}

async fn wait(
    mut rx: watch::Receiver<AckState>,
    seq: u64,
    backend: &str,
) -> Result<(), BackendError> {
    loop {
        {
            let st = rx.borrow_and_update();
            if st.acked_upto >= seq {
                return Ok(());
            }
            if let Some((from, err)) = &st.failed
                && *from <= seq
            {
                return Err(err.clone());
            }
        }
        if rx.changed().await.is_err() {
            return Err(BackendError::new(
                backend,
                ErrorKind::Unavailable,
                format!("closed before batch {seq} was acked"),
            ));
        }
    }
}

/// Proof that a batch is soft-done, and the way to wait until it is acked.
#[derive(Clone, Debug)]
pub struct Receipt {
    seq: u64,
    rx: watch::Receiver<AckState>,
    backend: String,
}

impl Receipt {
    /// The batch's number: batches are numbered, and acked, in commit order.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Whether the batch is acked now.
    pub fn is_acked(&self) -> bool {
        self.rx.borrow().acked_upto >= self.seq
    }

    /// Waits until the authoritative store has the batch.
    pub async fn acked(&self) -> Result<(), BackendError> {
        wait(self.rx.clone(), self.seq, &self.backend).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn acks_move_forward_in_order_and_failures_reach_later_batches() {
        let t = AckTracker::new("test");
        let r1 = t.issue();
        let r2 = t.issue();
        let r3 = t.issue();
        assert_eq!((r1.seq(), r2.seq(), r3.seq()), (1, 2, 3));
        assert!(!r1.is_acked());
        let waiter = tokio::spawn({
            let r2 = r2.clone();
            async move { r2.acked().await }
        });
        t.ack_upto(2);
        waiter.await.unwrap().unwrap();
        assert!(r1.is_acked() && r2.is_acked() && !r3.is_acked());
        t.ack_upto(1); // acks never go back
        assert_eq!(t.acked_upto(), 2);
        t.fail_from(
            3,
            BackendError::new("test", ErrorKind::Unavailable, "store gone"),
        );
        let e = r3.acked().await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(e.is_retryable());
        r2.acked().await.unwrap();
    }

    #[tokio::test]
    async fn a_closed_tracker_fails_waiters_instead_of_hanging() {
        let t = AckTracker::new("test");
        let r = t.issue();
        drop(t);
        assert_eq!(r.acked().await.unwrap_err().kind, ErrorKind::Unavailable);
    }
}
