//! The scrubber: re-reads every chunk file of this node at a bounded rate
//! and verifies its checksum, so that a copy that rotted on disk is found
//! before a read needs it. A corrupt file moves to `chunks/corrupt/`
//! (quarantine); the background worker beside the node then copies a good
//! copy back from another replica (see the gateway crate's `heal`).

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::chunk::{ChunkError, ChunkStore};
use crate::metrics::StorageMetrics;

/// How fast and how often the scrubber reads.
#[derive(Clone, Debug)]
pub struct ScrubConfig {
    /// Bytes read per second at most.
    pub bytes_per_sec: u64,
    /// Rest between the end of one pass over every chunk and the next.
    pub pause: Duration,
    /// Wait before the first pass: a node that just started has transfers
    /// and repairs to make first.
    pub start_after: Duration,
}

impl Default for ScrubConfig {
    fn default() -> ScrubConfig {
        ScrubConfig {
            bytes_per_sec: 8 * 1024 * 1024,
            pause: Duration::from_secs(24 * 60 * 60),
            start_after: Duration::from_secs(60),
        }
    }
}

/// Chunk ids listed per directory read.
const PAGE: usize = 256;

pub(crate) async fn run(
    store: ChunkStore,
    config: ScrubConfig,
    metrics: StorageMetrics,
    mut stop: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = tokio::time::sleep(config.start_after) => {}
        _ = stop.changed() => return,
    }
    loop {
        if let Err(e) = pass(&store, &config, &metrics, &mut stop).await {
            match e {
                Stopped::Stop => return,
                Stopped::Io(e) => tracing::warn!(error = %e, "scrub pass failed; retried later"),
            }
        } else {
            metrics.scrub_pass_done();
        }
        tokio::select! {
            _ = tokio::time::sleep(config.pause) => {}
            _ = stop.changed() => return,
        }
    }
}

enum Stopped {
    Stop,
    Io(ChunkError),
}

async fn pass(
    store: &ChunkStore,
    config: &ScrubConfig,
    metrics: &StorageMetrics,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Stopped> {
    let started = Instant::now();
    let mut read: u64 = 0;
    let mut after = None;
    loop {
        let ids = store.list_ids(after, PAGE).await.map_err(Stopped::Io)?;
        let Some(last) = ids.last().copied() else {
            return Ok(());
        };
        for id in ids {
            match store.get(id, None).await {
                Ok(chunk) => {
                    read += chunk.size;
                    metrics.scrub_verified();
                }
                Err(ChunkError::Corrupt(why)) => {
                    tracing::warn!(chunk = %id, why, "scrub: corrupt chunk file; quarantined until a good copy replaces it");
                    metrics.scrub_corrupt();
                    if let Err(e) = store.quarantine(id).await {
                        tracing::warn!(chunk = %id, error = %e, "scrub: cannot quarantine");
                    }
                }
                // Deleted since it was listed.
                Err(ChunkError::NotFound) => {}
                Err(e) => tracing::warn!(chunk = %id, error = %e, "scrub: read failed"),
            }
            // Stay under the rate: sleep until `read` bytes are due.
            let due = Duration::from_secs_f64(read as f64 / config.bytes_per_sec.max(1) as f64);
            let wait = due.saturating_sub(started.elapsed());
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return Err(Stopped::Stop),
                }
            }
            if *stop.borrow() {
                return Err(Stopped::Stop);
            }
        }
        after = Some(last);
    }
}
