//! Write leases: how a write in progress keeps the garbage collector away
//! from chunks that no record lists yet.
//!
//! A write stores its body as chunks first and writes the record that lists
//! them last. In between, the collector sees unlisted chunks. It deletes
//! such a chunk only when its file is older than the grace period *and* its
//! owner (bucket, key, version or upload id) holds no lease that has not
//! expired (see `workers::gc`). So:
//!
//! - a write that ends within [`LEASE_AFTER`] (nearly all) writes no lease:
//!   its chunks are far younger than the grace period;
//! - a longer one writes a lease record ([`LeaseRecord`], table `leases`,
//!   one key per write) that expires [`LEASE_TTL`] later, and renews it
//!   every [`LEASE_RENEW`] while the body streams, however slowly;
//! - before its record is committed, the write checks that it is still
//!   covered ([`WriteLease::holds`]): within [`LEASE_TTL`] of its start
//!   (less [`LEASE_MARGIN`] for clocks and delays), or of the start of its
//!   last successful renewal. A write that could not renew in time fails
//!   with 503 and commits nothing, since the collector may have taken its
//!   chunks; the garbage collector's grace is always longer than
//!   [`LEASE_TTL`] (`limits::MIN_GC_GRACE`).
//!
//! The lease is removed (a tombstone) when the write ends either way; one
//! left by a gateway that died just expires. Without a decided layout
//! (epoch 0) the collector does not run, and no lease is written.

use std::sync::{Arc, Mutex};

use chunkstore::{ChunkOwner, Table};
use s3s::{S3Result, s3_error};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::limits::{LEASE_AFTER, LEASE_MARGIN, LEASE_RENEW, LEASE_RETRY, LEASE_TTL};
use crate::store::hlc::wall_ms;
use crate::store::model::{self, BucketId, LeaseRecord};
use crate::store::table::Tables;

/// The lease of one write; clones share it, and it ends when the last is
/// dropped.
#[derive(Clone)]
pub struct WriteLease {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    tables: Tables,
    partition: u16,
    key: Vec<u8>,
    started_ms: u64,
    state: Mutex<LeaseState>,
}

struct LeaseState {
    /// Until when this write may still commit (its chunks are safe).
    covered_until: Instant,
    /// Whether a lease record was written (and is to be removed).
    written: bool,
    /// Why a renewal failed for good, if it did.
    lost: Option<String>,
}

impl WriteLease {
    /// Starts covering the write of `owner`'s chunks.
    pub fn start(tables: &Tables, owner: &ChunkOwner) -> WriteLease {
        let mut bucket: BucketId = [0; 16];
        // An owner built from a bucket record always has a valid id; a bad
        // one only gives a lease under a key nobody reads.
        let _ = hex::decode_to_slice(&owner.bucket_id, &mut bucket);
        let prefix = model::lease_prefix(&bucket, &owner.key, &owner.version);
        let shared = Arc::new(Shared {
            tables: tables.clone(),
            partition: model::bucket_partition(&bucket),
            key: model::lease_key(&prefix, rand::random()),
            started_ms: wall_ms(),
            state: Mutex::new(LeaseState {
                covered_until: Instant::now() + LEASE_TTL - LEASE_MARGIN,
                written: false,
                lost: None,
            }),
        });
        let task = tokio::spawn(keep(shared.clone()));
        WriteLease {
            inner: Arc::new(Inner { shared, task }),
        }
    }

    /// Ok while the write may commit the record that lists its chunks.
    pub fn holds(&self) -> S3Result<()> {
        let state = self.inner.shared.lock();
        if let Some(why) = &state.lost {
            return Err(s3_error!(
                ServiceUnavailable,
                "the write's lease could not be renewed ({why}); nothing was stored"
            ));
        }
        if Instant::now() >= state.covered_until {
            return Err(s3_error!(
                ServiceUnavailable,
                "the write's lease ran out before it could be renewed; nothing was stored"
            ));
        }
        Ok(())
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, LeaseState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes and renews the lease from [`LEASE_AFTER`] on, until dropped.
async fn keep(shared: Arc<Shared>) {
    tokio::time::sleep(LEASE_AFTER).await;
    loop {
        let sent = Instant::now();
        if shared.tables.cluster().layout().epoch() == 0 {
            // No collector runs without a decided layout.
            shared.lock().covered_until = sent + LEASE_TTL - LEASE_MARGIN;
            tokio::time::sleep(LEASE_RENEW).await;
            continue;
        }
        let lease = LeaseRecord {
            expires_ms: shared.tables.now_ms() + LEASE_TTL.as_millis() as u64,
            started_ms: shared.started_ms,
        };
        let result = shared
            .tables
            .put(
                Table::Leases,
                shared.partition,
                shared.key.clone(),
                Some(model::encode(&lease)),
            )
            .await;
        let pause = match result {
            Ok(_) => {
                let mut state = shared.lock();
                state.covered_until = sent + LEASE_TTL - LEASE_MARGIN;
                state.written = true;
                LEASE_RENEW
            }
            Err(e) => {
                let mut state = shared.lock();
                if Instant::now() >= state.covered_until {
                    let why = e.message().unwrap_or("metadata write failed").to_string();
                    tracing::warn!(error = %why, "a write's lease ran out; the write will fail");
                    state.lost = Some(why);
                    return;
                }
                LEASE_RETRY
            }
        };
        tokio::time::sleep(pause).await;
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
        if !self.shared.lock().written {
            return;
        }
        // The tombstone is stamped after every renewal, so it wins however
        // they arrive; if it is lost, the lease just expires.
        let shared = self.shared.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = shared
                    .tables
                    .put(Table::Leases, shared.partition, shared.key.clone(), None)
                    .await
                {
                    tracing::debug!(error = %e, "a write's lease was not removed; it expires");
                }
            });
        }
    }
}

/// Whether any write of `owner` holds a lease that has not expired (by this
/// process's clock). Err when the leases cannot be read.
pub async fn leased(tables: &Tables, owner: &ChunkOwner) -> Result<bool, String> {
    let mut bucket: BucketId = [0; 16];
    hex::decode_to_slice(&owner.bucket_id, &mut bucket)
        .map_err(|e| format!("bad bucket id: {e}"))?;
    let prefix = model::lease_prefix(&bucket, &owner.key, &owner.version);
    let leases: Vec<LeaseRecord> = tables
        .scan_all(
            Table::Leases,
            model::bucket_partition(&bucket),
            &prefix,
            &model::prefix_end(&prefix),
        )
        .await
        .map_err(|e| e.message().unwrap_or("metadata read failed").to_string())?;
    let now_ms = tables.now_ms();
    Ok(leases.iter().any(|lease| lease.expires_ms > now_ms))
}
