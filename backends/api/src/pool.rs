//! Buffers for bodies read from local files, taken back for the next read once every `Bytes`
//! over them is dropped. A FETCH of 200 bodies allocated 200 fresh buffers, and with the
//! allocator returning freed memory to the system at once, each one's pages were faulted in
//! and zeroed again: about a third of a body FETCH's time. The pool keeps at most `max` bytes
//! of idle buffers (each at most a quarter of it), so what it holds stays bounded.

use std::sync::{Arc, Mutex, OnceLock, Weak};

use bytes::Bytes;

/// Idle read buffers the whole process keeps, across every store and user.
pub const READ_BUFFERS_MAX: usize = 16 << 20;

/// The process's pool of read buffers (at most [`READ_BUFFERS_MAX`] idle), which the stores
/// that read local files share.
pub fn read_buffers() -> &'static BufferPool {
    static POOL: OnceLock<BufferPool> = OnceLock::new();
    POOL.get_or_init(|| BufferPool::new(READ_BUFFERS_MAX))
}

/// A bounded pool of read buffers; cheap to clone (the clones share it).
#[derive(Clone)]
pub struct BufferPool {
    inner: Arc<Mutex<Idle>>,
}

struct Idle {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
    max: usize,
}

impl BufferPool {
    /// A pool keeping at most `max` bytes of idle buffers.
    pub fn new(max: usize) -> Self {
        BufferPool {
            inner: Arc::new(Mutex::new(Idle {
                buffers: Vec::new(),
                bytes: 0,
                max,
            })),
        }
    }

    /// An empty buffer with room for `len` bytes: the smallest idle one that fits, or a new one.
    pub fn take(&self, len: usize) -> Vec<u8> {
        let mut idle = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let best = idle
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        match best {
            Some(i) => {
                let b = idle.buffers.swap_remove(i);
                idle.bytes -= b.capacity();
                b
            }
            None => {
                drop(idle);
                Vec::with_capacity(len)
            }
        }
    }

    /// `buf` as `Bytes` that give it back to the pool when the last of them is dropped.
    pub fn bytes(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: Arc::downgrade(&self.inner),
        })
    }

    /// The bytes of idle buffers held now.
    pub fn idle_bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }
}

struct Pooled {
    buf: Vec<u8>,
    pool: Weak<Mutex<Idle>>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        let mut idle = pool.lock().unwrap_or_else(|p| p.into_inner());
        let cap = self.buf.capacity();
        if cap == 0 || cap > idle.max / 4 || idle.bytes + cap > idle.max {
            return;
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        idle.bytes += cap;
        idle.buffers.push(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_their_bytes_go_and_the_pool_stays_bounded() {
        let pool = BufferPool::new(1000);
        let mut b = pool.take(100);
        b.extend_from_slice(&[7; 100]);
        let ptr = b.as_ptr();
        let bytes = pool.bytes(b);
        let part = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pool.idle_bytes(), 0, "a slice still holds it");
        assert_eq!(&part[..], &[7; 10]);
        drop(part);
        assert!(pool.idle_bytes() >= 100);
        let again = pool.take(50);
        assert_eq!(again.as_ptr(), ptr, "the same buffer, reused");
        assert!(again.is_empty());
        assert_eq!(pool.idle_bytes(), 0);
        // Larger than a quarter of the pool: not kept.
        let big = pool.take(300);
        drop(pool.bytes(big));
        assert_eq!(pool.idle_bytes(), 0);
        // Never more than the bound, however many come back.
        let held: Vec<Bytes> = (0..20).map(|_| pool.bytes(pool.take(200))).collect();
        drop(held);
        assert!(pool.idle_bytes() <= 1000);
    }
}
