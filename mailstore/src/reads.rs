//! Reading many bodies for one request (a FETCH, a SEARCH, an import): answered in request
//! order, with a bounded number of reads and bytes in flight, consecutive reads from a store of
//! local files handed to it in groups, and a body a migration moved meanwhile read where it is
//! now. It is not a cache: every read goes to the store.

use std::collections::VecDeque;
use std::task::Poll;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, FuturesOrdered, StreamExt};
use strata_backend_api::{ErrorKind, Key, Read};
use strata_index::{BodyLocation, Parts};

use crate::bodies::BodyRead;
use crate::error::{Result, StoreError};
use crate::store::UserStore;

/// Bytes a request's reads may hold at once, read or in flight (one larger body is read
/// alone): what one FETCH or SEARCH pins, whatever `read_concurrency` allows.
pub const READ_BUDGET: u64 = 32 << 20;

/// Reads one group from a store of local files holds at most (one tiny read per task woke a
/// thread per file, which cost more than reading it).
const GROUP_READS: usize = 8;
/// And at most this many bytes, so a group's first answer does not wait on many large ones.
const GROUP_BYTES: u64 = 1 << 20;

/// The reads' answers in request order, at most `at_once` reads (and [`READ_BUDGET`] bytes)
/// started and not yet taken by the caller.
pub(crate) fn in_order(
    user: &UserStore,
    reads: Vec<BodyRead>,
    at_once: usize,
) -> BoxStream<'_, Result<Bytes>> {
    let mut pending = reads.into_iter().peekable();
    let mut in_flight: FuturesOrdered<BoxFuture<'_, Vec<Result<Bytes>>>> = FuturesOrdered::new();
    // Answers read and not yet taken, then the sizes of every read started, in answer order.
    let mut ready: VecDeque<Result<Bytes>> = VecDeque::new();
    let mut sizes: VecDeque<u64> = VecDeque::new();
    let mut held = 0u64;
    futures::stream::poll_fn(move |cx| {
        loop {
            let left = pending.len();
            let Some(first) = pending.peek() else { break };
            let grouped = user
                .stores()
                .get(first.location.store)
                .is_ok_and(|s| s.capabilities().local_reads);
            // A group starts once a whole one fits: refilling each freed slot on its own would
            // make every group after the first a group of one.
            let room = if grouped {
                GROUP_READS.min(left).min(at_once)
            } else {
                1
            };
            if !sizes.is_empty()
                && (at_once.saturating_sub(sizes.len()) < room
                    || held.saturating_add(first.size) > READ_BUDGET)
            {
                break;
            }
            let store = first.location.store;
            let mut group = Vec::new();
            let mut group_bytes = 0u64;
            while let Some(next) = pending.peek() {
                let fits = group.is_empty()
                    || (grouped
                        && next.location.store == store
                        && group.len() < GROUP_READS
                        && sizes.len() < at_once
                        && group_bytes.saturating_add(next.size) <= GROUP_BYTES
                        && held.saturating_add(next.size) <= READ_BUDGET);
                if !fits {
                    break;
                }
                let r = pending.next().expect("peeked");
                group_bytes = group_bytes.saturating_add(r.size);
                held = held.saturating_add(r.size);
                sizes.push_back(r.size);
                group.push(r);
            }
            in_flight.push_back(Box::pin(read_group(user, group)));
        }
        if ready.is_empty() {
            match in_flight.poll_next_unpin(cx) {
                Poll::Ready(Some(answers)) => ready.extend(answers),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
        let answer = ready
            .pop_front()
            .expect("a group answers each of its reads");
        held = held.saturating_sub(sizes.pop_front().unwrap_or(0));
        Poll::Ready(Some(answer))
    })
    .boxed()
}

/// One answer per read of `group` (all from one store), in order.
async fn read_group(user: &UserStore, group: Vec<BodyRead>) -> Vec<Result<Bytes>> {
    if group.len() == 1 {
        let r = group.into_iter().next().expect("one read");
        return vec![read_body(user, r).await];
    }
    let store = match user.stores().get(group[0].location.store) {
        Ok(s) => s.clone(),
        Err(e) => return group.iter().map(|_| Err(e.clone().into())).collect(),
    };
    let mut keys = Vec::with_capacity(group.len());
    for r in &group {
        match Key::new(r.location.key.clone()) {
            Ok(key) => keys.push(Read {
                key,
                range: r.range.clone(),
            }),
            // A key the store cannot hold: each read answers for itself.
            Err(_) => {
                return futures::future::join_all(group.into_iter().map(|r| read_body(user, r)))
                    .await;
            }
        }
    }
    let n = keys.len();
    let answers: Vec<_> = store.get_many(keys, n).collect().await;
    let mut out = Vec::with_capacity(n);
    for (r, a) in group.into_iter().zip(answers) {
        out.push(match a {
            Err(e) if e.kind == ErrorKind::NotFound => moved(user, r, e.into()).await,
            other => other.map_err(StoreError::from),
        });
    }
    out
}

/// Reads one body, following it if a migration moved it since the caller's snapshot.
pub(crate) async fn read_body(user: &UserStore, r: BodyRead) -> Result<Bytes> {
    match read_at(user, &r.location, r.range.clone()).await {
        Err(StoreError::Backend(e)) if e.kind == ErrorKind::NotFound => {
            moved(user, r, e.into()).await
        }
        other => other,
    }
}

/// Reads a body that was not where the caller's snapshot said: where the index says it is now,
/// or `missing` if it has not moved.
async fn moved(user: &UserStore, r: BodyRead, missing: StoreError) -> Result<Bytes> {
    let now = user.snapshot()?.content_parts(&r.guid, Parts::default())?;
    match now {
        Some(c) if c.location != r.location => read_at(user, &c.location, r.range).await,
        _ => Err(missing),
    }
}

async fn read_at(
    user: &UserStore,
    loc: &BodyLocation,
    range: Option<std::ops::Range<u64>>,
) -> Result<Bytes> {
    let key = Key::new(loc.key.clone())?;
    Ok(user.stores().get(loc.store)?.get(&key, range).await?)
}
