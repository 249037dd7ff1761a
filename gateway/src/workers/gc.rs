//! The garbage collector: deletes chunk files that no record lists.
//!
//! Chunks of replaced and deleted versions, aborted uploads and failed
//! writes go on their nodes' deletion queues (durable, on the storage
//! nodes); [`drain`] empties them every few seconds, deleting a copy only if
//! no record lists it on that node (the same check as the sweep's), so a
//! chunk that another version or part still names is kept whatever asked
//! for its deletion. What the queues miss (a node was down, the gateway
//! stopped before queueing) and the chunks of writes that never got their
//! record (an abandoned PUT) are found by the sweep. The sweeper walks every
//! live node's chunk files in id order; each file's header names its owner
//! (bucket id, key, version or upload id), so the records to ask are known:
//! the upload's part records first, then the object record (a completing
//! upload writes the version before it forgets the parts, so that order never
//! misses a chunk that moves from one to the other). A chunk is kept when a
//! record lists it on that node. Otherwise it is deleted once its file is
//! older than the grace period and no write of its owner holds a write
//! lease (a write in flight holds one from a few seconds on, however slowly
//! its body comes: see `store::lease`), and only if the file is still that
//! old when the node deletes it, so a copy rewritten meanwhile by a repair
//! stays. Nothing is deleted on a read
//! that fails or a record that does not decode, and no sweep runs until the
//! partition placement has been stable for a while (records may still be
//! on their way to new replicas).
//!
//! Bounded: a pass looks at `chunks_per_pass` chunk files; the next pass
//! resumes after the last one. A complete sweep over every node waits
//! `interval` before the next one starts.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chunkstore::{ChunkId, ChunkOwner, ListedChunk, Table};
use serde::{Deserialize, Serialize};

use crate::limits::{
    GC_CHUNKS_PER_PASS, GC_DRAIN_INTERVAL, GC_DRAIN_PAGES, GC_GRACE, GC_INTERVAL, GC_LIST_PAGE,
    GC_PASS_PAUSE, GC_SETTLE,
};
use crate::store::cluster::Cluster;
use crate::store::hlc::wall_ms;
use crate::store::lease;
use crate::store::model::{self, BucketId, ObjectRecord, PartRecord};
use crate::store::table::Tables;

/// When the collector sweeps and how old an unlisted chunk must be.
#[derive(Clone, Debug)]
pub struct GcConfig {
    /// Time between the end of one complete sweep and the next.
    pub interval: Duration,
    /// Age an unlisted chunk file must reach before it is deleted.
    pub grace: Duration,
    /// Pause between two passes of one sweep.
    pub pass_pause: Duration,
    /// Chunk files one pass looks at, at most.
    pub chunks_per_pass: usize,
    /// How long the partition placement must stay unchanged before a sweep
    /// (see [`Collector::settled`]).
    pub settle: Duration,
    /// Time between two drains of the storage nodes' deletion queues.
    pub drain_interval: Duration,
}

impl Default for GcConfig {
    fn default() -> GcConfig {
        GcConfig {
            interval: GC_INTERVAL,
            grace: GC_GRACE,
            pass_pause: GC_PASS_PAUSE,
            chunks_per_pass: GC_CHUNKS_PER_PASS,
            settle: GC_SETTLE,
            drain_interval: GC_DRAIN_INTERVAL,
        }
    }
}

/// What the collector found (served by the admin API as `GET /v1/gc`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GcReport {
    /// Unlisted chunks still waiting: younger than the grace period, or
    /// whose delete failed (the last complete sweep's count while a sweep runs).
    pub queue: u64,
    /// Chunk files the last complete sweep looked at.
    pub chunks_scanned: u64,
    /// Chunks whose owner's records could not be read (kept, retried).
    pub unresolved: u64,
    /// Unlisted chunk files deleted since this node started collecting.
    pub chunks_deleted: u64,
    pub bytes_freed: u64,
    /// When the last complete sweep ended (ms since the epoch).
    pub last_complete_ms: Option<u64>,
    pub grace_secs: u64,
}

/// The collector's findings, shared with the status publisher.
#[derive(Default)]
pub struct GcShared {
    report: Mutex<GcReport>,
}

impl GcShared {
    pub fn report(&self) -> GcReport {
        self.report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn publish(&self, report: GcReport) {
        *self.report.lock().unwrap_or_else(|p| p.into_inner()) = report;
    }
}

/// Counts of one sweep.
#[derive(Clone, Debug, Default)]
struct Sweep {
    scanned: u64,
    waiting: u64,
    unresolved: u64,
}

/// Where the next pass starts: a node (by id) and the last chunk seen there.
#[derive(Clone, Debug, Default)]
struct Cursor {
    node: Option<String>,
    after: Option<ChunkId>,
}

pub(crate) struct Collector {
    tables: Tables,
    cluster: Arc<Cluster>,
    config: GcConfig,
    shared: Arc<GcShared>,
    cursor: Cursor,
    sweep: Sweep,
    last: Option<Sweep>,
    last_complete_ms: Option<u64>,
    deleted: u64,
    freed: u64,
    /// The layout epoch last seen, and since when.
    placement: Option<(u64, tokio::time::Instant)>,
}

impl Collector {
    pub(crate) fn new(
        tables: Tables,
        cluster: Arc<Cluster>,
        config: GcConfig,
        shared: Arc<GcShared>,
    ) -> Collector {
        Collector {
            tables,
            cluster,
            config,
            shared,
            cursor: Cursor::default(),
            sweep: Sweep::default(),
            last: None,
            last_complete_ms: None,
            deleted: 0,
            freed: 0,
            placement: None,
        }
    }

    /// Whether the layout has stayed the same for `settle`, with no
    /// transition in progress. Records are read from the readable version,
    /// whose replicas hold every record; the pause after a change only adds
    /// margin (gateways may still act at the old epoch for a moment).
    pub(crate) fn settled(&mut self) -> bool {
        let layout = self.cluster.layout();
        let placement = layout.placement();
        let now = tokio::time::Instant::now();
        if layout.epoch() == 0 || placement.version_numbers().count() != 1 {
            self.placement = None;
            return false;
        }
        match &self.placement {
            Some((seen, since)) if *seen == layout.epoch() => {
                now.duration_since(*since) >= self.config.settle
            }
            _ => {
                self.placement = Some((layout.epoch(), now));
                self.config.settle.is_zero()
            }
        }
    }

    /// Forgets a sweep in progress (another node leads now).
    pub(crate) fn reset(&mut self) {
        self.cursor = Cursor::default();
        self.sweep = Sweep::default();
        self.publish();
    }

    /// One bounded pass; true when it ended a sweep over every live node.
    pub(crate) async fn pass(&mut self) -> bool {
        let mut budget = self.config.chunks_per_pass;
        let mut nodes: Vec<(String, std::net::SocketAddr)> = self
            .cluster
            .live_storage()
            .into_iter()
            .map(|n| (n.id, n.addr))
            .collect();
        nodes.sort();
        let start = match &self.cursor.node {
            Some(id) => nodes.partition_point(|(n, _)| n < id),
            None => 0,
        };
        for (id, addr) in nodes.into_iter().skip(start) {
            if self.cursor.node.as_ref() != Some(&id) {
                self.cursor = Cursor {
                    node: Some(id.clone()),
                    after: None,
                };
            }
            loop {
                if budget == 0 {
                    self.publish();
                    return false;
                }
                let limit = budget.min(GC_LIST_PAGE) as u32;
                let page = match self
                    .cluster
                    .client()
                    .list_chunks(addr, self.cursor.after, limit)
                    .await
                {
                    Ok(page) => page,
                    Err(e) => {
                        // The node went away: on to the next; the sweep is
                        // still whole for the nodes that stay.
                        tracing::debug!(node = %id, error = %e, "gc: chunk listing failed");
                        break;
                    }
                };
                budget = budget.saturating_sub(page.len().max(1));
                let full = page.len() >= limit as usize;
                if let Some(last) = page.last().map(|c| c.id) {
                    self.collect(&id, addr, page).await;
                    self.cursor.after = Some(last);
                }
                if !full {
                    break;
                }
            }
        }
        let done = std::mem::take(&mut self.sweep);
        self.cursor = Cursor::default();
        self.last = Some(done);
        self.last_complete_ms = Some(wall_ms());
        self.publish();
        true
    }

    /// Deletes the chunks of one listing page that no record lists on `node`.
    async fn collect(&mut self, node: &str, addr: std::net::SocketAddr, page: Vec<ListedChunk>) {
        self.sweep.scanned += page.len() as u64;
        let mut by_owner: BTreeMap<(String, String, String), Vec<ListedChunk>> = BTreeMap::new();
        for chunk in page {
            let owner = &chunk.owner;
            let key = (
                owner.bucket_id.clone(),
                owner.key.clone(),
                owner.version.clone(),
            );
            by_owner.entry(key).or_default().push(chunk);
        }
        for ((bucket_id, key, version), chunks) in by_owner {
            let owner = ChunkOwner {
                bucket_id: bucket_id.clone(),
                key: key.clone(),
                version,
            };
            let listed = match listed_copies(&self.tables, &owner).await {
                Ok(listed) => listed,
                Err(e) => {
                    tracing::debug!(bucket_id, key, error = %e, "gc: owner's records unreadable; chunks kept");
                    self.sweep.unresolved += chunks.len() as u64;
                    continue;
                }
            };
            // Asked once per owner, and only when a chunk would go.
            let mut leased: Option<bool> = None;
            for chunk in chunks {
                if listed.contains(&(chunk.id, node.to_string())) {
                    continue;
                }
                if chunk.age_secs < self.config.grace.as_secs() {
                    self.sweep.waiting += 1;
                    continue;
                }
                if leased.is_none() {
                    leased = match lease::leased(&self.tables, &owner).await {
                        Ok(held) => Some(held),
                        Err(e) => {
                            tracing::debug!(bucket_id, key, error = %e, "gc: write leases unreadable; chunks kept");
                            Some(true)
                        }
                    };
                }
                if leased == Some(true) {
                    // A write in progress, however slow: its record comes.
                    self.sweep.waiting += 1;
                    continue;
                }
                match self
                    .cluster
                    .client()
                    .delete_chunk_if_older(addr, chunk.id, self.config.grace.as_secs())
                    .await
                {
                    Ok(true) => {
                        tracing::info!(%node, chunk = %chunk.id, bucket_id, key, "gc: deleted an unlisted chunk");
                        self.deleted += 1;
                        self.freed += chunk.size;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::debug!(%node, chunk = %chunk.id, error = %e, "gc: delete failed");
                        self.sweep.waiting += 1;
                    }
                }
            }
        }
    }

    fn publish(&self) {
        let counts = self.last.as_ref().unwrap_or(&self.sweep);
        self.shared.publish(GcReport {
            queue: counts.waiting,
            chunks_scanned: counts.scanned,
            unresolved: counts.unresolved,
            chunks_deleted: self.deleted,
            bytes_freed: self.freed,
            last_complete_ms: self.last_complete_ms,
            grace_secs: self.config.grace.as_secs(),
        });
    }
}

/// What the records of one owner list.
#[derive(Default)]
pub(crate) struct Listed {
    /// Every (chunk, node) a file is listed on: copies and shards alike.
    pub(crate) files: HashSet<(ChunkId, String)>,
    /// Chunks kept as stripes: their files are shards, not copies of each
    /// other, so none may stand in for another.
    pub(crate) striped: HashSet<ChunkId>,
}

impl Listed {
    pub(crate) fn contains(&self, file: &(ChunkId, String)) -> bool {
        self.files.contains(file)
    }
}

/// Every (chunk, node) that the records `owner` names list: the upload's
/// part records first, then the object record (see the module comment for
/// why in that order). Err when a record cannot be read or decoded.
pub(crate) async fn listed_copies(tables: &Tables, owner: &ChunkOwner) -> Result<Listed, String> {
    let mut id: BucketId = [0; 16];
    hex::decode_to_slice(&owner.bucket_id, &mut id).map_err(|e| format!("bad bucket id: {e}"))?;
    let partition = model::bucket_partition(&id);
    let mut listed = Listed::default();
    let mut add = |chunks: &[model::ChunkRef]| {
        for c in chunks {
            for n in &c.nodes {
                listed.files.insert((c.id, n.clone()));
            }
            if c.is_striped() {
                listed.striped.insert(c.id);
            }
        }
    };
    let prefix = model::part_prefix(&id, &owner.version);
    let parts: Vec<PartRecord> = tables
        .scan_all(
            Table::Parts,
            partition,
            &prefix,
            &model::prefix_end(&prefix),
        )
        .await
        .map_err(s3_text)?;
    for part in &parts {
        add(&part.chunks);
    }
    let record = tables
        .get(
            Table::Objects,
            partition,
            &model::object_key(&id, &owner.key),
        )
        .await
        .map_err(s3_text)?;
    if let Some(value) = record.and_then(|r| r.value) {
        let record: ObjectRecord = model::decode(&value).ok_or("undecodable object record")?;
        for data in record.versions.iter().filter_map(|v| v.data.as_ref()) {
            add(&data.chunks);
        }
    }
    Ok(listed)
}

fn s3_text(e: s3s::S3Error) -> String {
    e.message().unwrap_or("metadata read failed").to_string()
}

/// Drains every live storage node's deletion queue while `leads` says this
/// node leads, every `interval`, at most [`GC_DRAIN_PAGES`] pages per node
/// and round; until the task is dropped.
pub(crate) async fn drain(
    tables: Tables,
    cluster: Arc<Cluster>,
    interval: Duration,
    leads: impl Fn() -> bool,
) {
    loop {
        tokio::time::sleep(interval).await;
        if !leads() || cluster.layout().epoch() == 0 {
            continue;
        }
        for node in cluster.live_storage() {
            let mut after = None;
            for _ in 0..GC_DRAIN_PAGES {
                let page = match cluster
                    .client()
                    .doomed_chunks(node.addr, after, GC_LIST_PAGE as u32)
                    .await
                {
                    Ok(page) => page,
                    Err(e) => {
                        tracing::debug!(node = %node.id, error = %e, "gc: deletion queue unreadable");
                        break;
                    }
                };
                let full = page.len() >= GC_LIST_PAGE;
                after = page.last().map(|c| c.id);
                drain_page(&tables, &cluster, &node.id, node.addr, page).await;
                if !full {
                    break;
                }
            }
        }
    }
}

/// Deletes the queued chunks of one page that no record lists on `node`
/// and takes the listed ones off the queue; chunks whose records cannot be
/// read stay queued.
async fn drain_page(
    tables: &Tables,
    cluster: &Cluster,
    node: &str,
    addr: std::net::SocketAddr,
    page: Vec<chunkstore::DoomedChunk>,
) {
    let mut by_owner: BTreeMap<(String, String, String), Vec<ChunkId>> = BTreeMap::new();
    for chunk in page {
        let owner = chunk.owner;
        by_owner
            .entry((owner.bucket_id, owner.key, owner.version))
            .or_default()
            .push(chunk.id);
    }
    let mut still_listed = Vec::new();
    for ((bucket_id, key, version), ids) in by_owner {
        let owner = ChunkOwner {
            bucket_id,
            key,
            version,
        };
        let listed = match listed_copies(tables, &owner).await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::debug!(key = %owner.key, error = %e, "gc: owner's records unreadable; queued chunks kept");
                continue;
            }
        };
        for id in ids {
            if listed.contains(&(id, node.to_string())) {
                still_listed.push(id);
                continue;
            }
            match cluster.client().delete_chunk(addr, id).await {
                Ok(()) => tracing::debug!(%node, chunk = %id, "gc: deleted a queued chunk"),
                Err(e) => {
                    tracing::debug!(%node, chunk = %id, error = %e, "gc: queued delete failed")
                }
            }
        }
    }
    if !still_listed.is_empty() {
        tracing::info!(%node, chunks = still_listed.len(), "gc: queued chunks a record still lists are kept");
        if let Err(e) = cluster.client().forget_doomed(addr, &still_listed).await {
            tracing::debug!(%node, error = %e, "gc: cannot take kept chunks off the queue");
        }
    }
}

/// Runs sweeps while `leads` says this node leads, until the task is dropped.
pub(crate) async fn run(
    mut collector: Collector,
    leads: impl Fn() -> bool,
    mut wakes: tokio::sync::watch::Receiver<u64>,
) {
    let mut next_sweep = tokio::time::Instant::now();
    let mut sweeping = false;
    loop {
        let pause = if sweeping {
            collector.config.pass_pause
        } else {
            next_sweep.saturating_duration_since(tokio::time::Instant::now())
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            changed = wakes.changed() => {
                if changed.is_err() {
                    return;
                }
                next_sweep = tokio::time::Instant::now();
            }
        }
        if !leads() || !collector.settled() {
            if sweeping {
                collector.reset();
                sweeping = false;
            }
            next_sweep = tokio::time::Instant::now() + collector.config.pass_pause;
            continue;
        }
        if !sweeping && tokio::time::Instant::now() < next_sweep {
            continue;
        }
        sweeping = true;
        if collector.pass().await {
            sweeping = false;
            next_sweep = tokio::time::Instant::now() + collector.config.interval;
        }
    }
}
