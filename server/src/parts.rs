//! Collection of single-instance parts: for each store whose large parts are stored once, a
//! task that runs a collection every `collect_interval` (the first one interval after start,
//! so a restart loop does not list the store each time) until shutdown. Several nodes may
//! run it on one store: each run is safe alone.

use std::sync::Arc;

use tokio::sync::watch;

use crate::backends::Backends;

/// Starts a collector per store with single-instance parts.
pub fn spawn(
    backends: &Arc<Backends>,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    backends
        .single_instance()
        .into_iter()
        .map(|(name, sis, cfg)| {
            let mut stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(cfg.collect_interval) => {}
                        _ = stop.changed() => return,
                    }
                    let run = tokio::select! {
                        run = sis.collect() => run,
                        _ = stop.changed() => return,
                    };
                    match run {
                        Ok(c) => tracing::info!(
                            store = name,
                            parts = c.parts,
                            part_bytes = c.part_bytes,
                            references = c.references,
                            marked = c.marked,
                            unmarked = c.unmarked,
                            deleted = c.deleted,
                            deleted_bytes = c.deleted_bytes,
                            stale_references = c.stale_references,
                            "single-instance parts collected"
                        ),
                        Err(e) => tracing::warn!(
                            store = name,
                            error = %e,
                            "single-instance collection failed; it runs again later"
                        ),
                    }
                }
            })
        })
        .collect()
}
