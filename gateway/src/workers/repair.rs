//! The durability worker: counts the chunks that have fewer than three
//! copies on live storage nodes (the figure an operator watches), copies the
//! chunks of nodes that are gone to other nodes, and takes drained nodes out
//! of the layout. A copy counts only if its file is there: for every page of
//! records each live node is asked which of the chunks listed on it it has
//! (`POST /chunks/present`), and a copy missing on a live node (deleted by
//! hand, lost with a restored backup, quarantined as corrupt) is made again
//! at once, on that node or another, like a gone node's.
//!
//! A node is gone for repair when it has been down for the dead-node timeout
//! (it is then drained out of the layout, as DESIGN says, if enough active
//! nodes stay), or when it is being decommissioned (`node remove`: marked
//! draining in the layout, it takes no new chunks and holds no partitions;
//! the anti-entropy of the storage nodes moves its partitions). A draining
//! node whose chunks are all referenced elsewhere after a full pass over
//! every record is marked removed.
//!
//! Never losing data: a chunk is copied (verified, fsynced) to a new
//! least-loaded node first; then the record that lists it is updated at
//! quorum with the new copy in place of the gone one; only then is the old
//! copy forgotten (and deleted, on a draining node that still runs). An
//! object version is immutable, so its update goes through the object-record
//! merge with a raised `updated_ts`, as a tag change does. Both race with a
//! concurrent tag change of the same version (the newer `updated_ts` wins
//! whole): a lost repair shows as below three copies again and is redone on
//! the next pass; a lost tag change is the known limit of that merge.
//!
//! Where it runs: beside every storage node, and only the leading node acts
//! (see [`crate::workers`]); the others keep track of how long nodes are
//! down, so that a new leader does not restart the dead-node timeout.
//!
//! Bounded: a pass looks at `records_per_pass` records and copies
//! [`REPAIR_CHUNKS_PER_PASS`] chunks at most, [`REPAIR_CONCURRENCY`] at a
//! time, each tried [`REPAIR_ATTEMPTS`] times per missing copy; the next
//! pass resumes where this one stopped.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chunkstore::placement::NodeState;
use chunkstore::{ChunkId, Record, Table};
use futures::StreamExt;
use s3s::S3Result;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::limits::{
    DEAD_NODE_TIMEOUT, MAX_SCAN_ROUNDS, MIN_ACTIVE_NODES, REPAIR_ATTEMPTS, REPAIR_CHUNKS_PER_PASS,
    REPAIR_CONCURRENCY, REPAIR_INTERVAL, REPAIR_RECORDS_PER_PASS, REPAIR_VIEW_CHECK, REPLICAS,
    SCAN_BATCH,
};
use crate::store::cluster::{Cluster, Layout, NodeRef};
use crate::store::hlc::wall_ms;
use crate::store::model::{self, BucketRecord, ChunkRef, ObjectRecord, PartRecord};
use crate::store::table::Tables;
use crate::workers::Leader;
use crate::workers::lifecycle::bucket_page;

/// When the worker runs and when a down node counts as gone.
#[derive(Clone, Debug)]
pub struct RepairConfig {
    /// Longest time between passes while nothing changes.
    pub interval: Duration,
    /// How long a node is down before its chunks are copied elsewhere.
    pub dead_after: Duration,
    /// Object and part records one pass looks at, at most.
    pub records_per_pass: usize,
}

impl Default for RepairConfig {
    fn default() -> RepairConfig {
        RepairConfig {
            interval: REPAIR_INTERVAL,
            dead_after: DEAD_NODE_TIMEOUT,
            records_per_pass: REPAIR_RECORDS_PER_PASS,
        }
    }
}

/// A node being drained: copies still listed on it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DrainProgress {
    pub node: String,
    /// Chunk copies that records still list on the node.
    pub chunks_left: u64,
}

/// What the durability worker found last (served by the admin API).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DurabilityReport {
    /// Chunks with fewer than three copies on live storage nodes.
    pub chunks_below_three_copies: u64,
    /// Chunks with a copy on a gone node that still wait to be copied.
    pub repair_queue: u64,
    /// Chunks below three copies whose missing copies are on nodes down for
    /// less than the dead-node timeout (no copy is made for those yet).
    pub waiting_for_dead_timeout: u64,
    /// Chunks copied since this gateway started.
    pub chunks_repaired: u64,
    /// Chunk repairs that failed since this gateway started (retried).
    pub repair_failures: u64,
    /// False while the first pass over every record since the last change
    /// of the cluster is still going: the figures are then a lower bound.
    pub complete: bool,
    /// Records looked at by the last complete pass over every record.
    pub records_scanned: u64,
    /// When the last complete pass over every record ended (ms since the epoch).
    pub last_complete_ms: Option<u64>,
    pub dead_node_timeout_secs: u64,
    pub draining: Vec<DrainProgress>,
}

/// The worker's findings, shared with the status publisher.
#[derive(Default)]
pub struct Durability {
    report: Mutex<DurabilityReport>,
}

impl Durability {
    pub fn report(&self) -> DurabilityReport {
        match self.report.lock() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn publish(&self, report: DurabilityReport) {
        match self.report.lock() {
            Ok(mut r) => *r = report,
            Err(poisoned) => *poisoned.into_inner() = report,
        }
    }
}

/// Why a decommission cannot start.
#[derive(Debug, PartialEq)]
pub enum DrainRefused {
    NotInLayout,
    AlreadyRemoved,
    TooFewNodes { remaining: usize },
    LayoutWrite(String),
}

impl std::fmt::Display for DrainRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DrainRefused::NotInLayout => f.write_str("the node is not in the layout"),
            DrainRefused::AlreadyRemoved => f.write_str("the node has already been removed"),
            DrainRefused::TooFewNodes { remaining } => write!(
                f,
                "only {remaining} live active storage nodes would stay, {MIN_ACTIVE_NODES} are needed: add a node first"
            ),
            DrainRefused::LayoutWrite(e) => write!(f, "cannot record the change: {e}"),
        }
    }
}

/// Marks a node draining (idempotent); the leading node's worker then moves
/// its chunks (wake it with [`crate::workers::wake`]).
pub async fn start_drain(cluster: &Cluster, id: &str) -> Result<(), DrainRefused> {
    let layout = cluster.layout();
    match layout.state(id) {
        None => return Err(DrainRefused::NotInLayout),
        Some(NodeState::Removed) => return Err(DrainRefused::AlreadyRemoved),
        Some(NodeState::Draining) => return Ok(()),
        Some(NodeState::Active) => {}
    }
    let remaining = active_live(cluster, &layout, Some(id));
    if remaining < MIN_ACTIVE_NODES {
        return Err(DrainRefused::TooFewNodes { remaining });
    }
    cluster
        .set_node_state(id, NodeState::Draining)
        .await
        .map_err(DrainRefused::LayoutWrite)?;
    Ok(())
}

/// Active nodes of the layout that are alive, but `except`.
fn active_live(cluster: &Cluster, layout: &Layout, except: Option<&str>) -> usize {
    layout
        .entries()
        .filter(|e| e.state == NodeState::Active && Some(e.id.as_str()) != except)
        .filter(|e| cluster.is_live(&e.id))
        .count()
}

/// Copies listed on live nodes whose files are not there: (chunk, node).
type Missing = std::collections::HashSet<(ChunkId, String)>;

/// Which nodes count for what in one pass.
#[derive(Clone, Debug, Default, PartialEq)]
struct View {
    live: BTreeSet<String>,
    /// Copies here must be made elsewhere: down past the timeout, draining or removed.
    gone: BTreeSet<String>,
    draining: BTreeSet<String>,
}

impl View {
    fn live_copies(&self, chunk: &ChunkRef) -> usize {
        distinct(&chunk.nodes)
            .filter(|n| self.live.contains(*n))
            .count()
    }

    fn has_gone(&self, chunk: &ChunkRef) -> bool {
        chunk.nodes.iter().any(|n| self.gone.contains(n))
    }
}

fn distinct(nodes: &[String]) -> impl Iterator<Item = &String> {
    nodes
        .iter()
        .enumerate()
        .filter(move |(i, n)| !nodes[..*i].contains(n))
        .map(|(_, n)| n)
}

/// Counts of one pass over every record (a cycle).
#[derive(Clone, Debug, Default)]
struct Counts {
    below: u64,
    queue: u64,
    waiting: u64,
    records: u64,
    failures: u64,
    /// Copies listed on each draining node.
    on_draining: HashMap<String, u64>,
}

/// Where the next pass starts: a bucket, then its objects or its parts.
#[derive(Clone, Debug, Default)]
struct Cursor {
    bucket: String,
    parts: bool,
    position: Option<Vec<u8>>,
}

struct Worker {
    tables: Tables,
    cluster: Arc<Cluster>,
    config: RepairConfig,
    shared: Arc<Durability>,
    leader: Leader,
    leading: bool,
    down_since: HashMap<String, Instant>,
    view: View,
    cursor: Cursor,
    counts: Counts,
    /// The last complete cycle under the current view.
    last: Option<(Counts, u64)>,
    last_pass: Option<Instant>,
    repaired: u64,
    failed: u64,
}

/// Runs the worker until the task is dropped; it acts while `leader` says
/// this node leads, and passes at once when `wakes` changes.
pub(crate) async fn run(
    tables: Tables,
    cluster: Arc<Cluster>,
    config: RepairConfig,
    shared: Arc<Durability>,
    leader: Leader,
    mut wakes: watch::Receiver<u64>,
) {
    let mut worker = Worker {
        tables,
        cluster,
        config,
        shared,
        leader,
        leading: false,
        down_since: HashMap::new(),
        view: View::default(),
        cursor: Cursor::default(),
        counts: Counts::default(),
        last: None,
        last_pass: None,
        repaired: 0,
        failed: 0,
    };
    let tick = REPAIR_VIEW_CHECK.min(worker.config.interval);
    loop {
        let mut woken = false;
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            changed = wakes.changed() => {
                if changed.is_err() {
                    return;
                }
                woken = true;
            }
        }
        worker.tick(woken).await;
    }
}

impl Worker {
    async fn tick(&mut self, woken: bool) {
        let layout = self.cluster.layout();
        if layout.is_empty() {
            return;
        }
        self.track_down(&layout);
        if !self.leader.leads() {
            if self.leading {
                // Another node counts now: start afresh if this one leads again.
                self.leading = false;
                self.view = View::default();
                self.cursor = Cursor::default();
                self.counts = Counts::default();
                self.last = None;
                self.shared.publish(DurabilityReport::default());
            }
            return;
        }
        self.leading = true;
        self.drain_dead(&layout).await;
        let view = self.view(&self.cluster.layout());
        let changed = view != self.view;
        if changed {
            // The old figures belong to another cluster: count anew.
            self.view = view;
            self.cursor = Cursor::default();
            self.counts = Counts::default();
            self.last = None;
        }
        let due = changed
            || woken
            || self
                .last_pass
                .is_none_or(|t| t.elapsed() >= self.config.interval);
        if !due {
            return;
        }
        self.last_pass = Some(Instant::now());
        match self.pass().await {
            Ok(true) => self.finish_cycle().await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "durability pass failed; it is retried"),
        }
        self.publish();
    }

    fn track_down(&mut self, layout: &Layout) {
        let now = Instant::now();
        for entry in layout.entries() {
            if self.cluster.is_live(&entry.id) {
                self.down_since.remove(&entry.id);
            } else {
                self.down_since.entry(entry.id.clone()).or_insert(now);
            }
        }
    }

    fn dead(&self, id: &str) -> bool {
        self.down_since
            .get(id)
            .is_some_and(|t| t.elapsed() >= self.config.dead_after)
    }

    /// Drains active nodes down past the timeout, if enough active nodes stay.
    async fn drain_dead(&self, layout: &Layout) {
        let remaining = active_live(&self.cluster, layout, None);
        for entry in layout.entries() {
            if entry.state != NodeState::Active || !self.dead(&entry.id) {
                continue;
            }
            if remaining < MIN_ACTIVE_NODES {
                tracing::debug!(node = %entry.id, remaining, "dead node kept in the layout: too few active nodes");
                continue;
            }
            tracing::warn!(node = %entry.id, "storage node down past the dead-node timeout; draining it");
            if let Err(e) = self
                .cluster
                .set_node_state(&entry.id, NodeState::Draining)
                .await
            {
                tracing::warn!(node = %entry.id, error = %e, "cannot drain the dead node");
            }
        }
    }

    fn view(&self, layout: &Layout) -> View {
        let live = self
            .cluster
            .live_storage()
            .into_iter()
            .map(|n| n.id)
            .collect();
        let mut view = View {
            live,
            ..View::default()
        };
        for entry in layout.entries() {
            if entry.state != NodeState::Active || self.dead(&entry.id) {
                view.gone.insert(entry.id.clone());
            }
            if entry.state == NodeState::Draining {
                view.draining.insert(entry.id.clone());
            }
        }
        view
    }

    fn publish(&self) {
        let (counts, complete, when) = match &self.last {
            Some((c, when)) => (c, true, Some(*when)),
            None => (&self.counts, false, None),
        };
        let previous = self.shared.report();
        let mut draining: Vec<DrainProgress> = self
            .view
            .draining
            .iter()
            .map(|node| DrainProgress {
                node: node.clone(),
                chunks_left: counts.on_draining.get(node).copied().unwrap_or(0),
            })
            .collect();
        draining.sort_by(|a, b| a.node.cmp(&b.node));
        self.shared.publish(DurabilityReport {
            chunks_below_three_copies: counts.below,
            repair_queue: counts.queue,
            waiting_for_dead_timeout: counts.waiting,
            chunks_repaired: self.repaired,
            repair_failures: self.failed,
            complete,
            records_scanned: counts.records,
            last_complete_ms: when.or(previous.last_complete_ms),
            dead_node_timeout_secs: self.config.dead_after.as_secs(),
            draining,
        });
    }

    /// A pass over every record ended: keep its counts, and remove drained nodes.
    async fn finish_cycle(&mut self) {
        let counts = std::mem::take(&mut self.counts);
        self.cursor = Cursor::default();
        if counts.failures == 0 && counts.queue == 0 {
            let layout = self.cluster.layout();
            for node in &self.view.draining {
                if counts.on_draining.get(node).copied().unwrap_or(0) > 0 {
                    continue;
                }
                // Its partitions must have moved too: a node still in a
                // live layout version holds records others may need.
                if layout.placement().nodes().contains(node.as_str()) {
                    continue;
                }
                match self.cluster.set_node_state(node, NodeState::Removed).await {
                    Ok(()) => tracing::info!(%node, "node drained and removed from the layout"),
                    Err(e) => tracing::warn!(%node, error = %e, "cannot remove the drained node"),
                }
            }
        }
        self.last = Some((counts, wall_ms()));
    }

    /// One bounded pass; true when it reached the end of every bucket.
    async fn pass(&mut self) -> S3Result<bool> {
        let mut budget = Budget {
            records: self.config.records_per_pass,
            repairs: REPAIR_CHUNKS_PER_PASS,
        };
        let (start, _) = model::bucket_range();
        let from = self.cursor.clone();
        let mut position = model::bucket_key(&from.bucket).max(start);
        for _ in 0..MAX_SCAN_ROUNDS {
            let (buckets, next) = bucket_page(&self.tables, &position).await?;
            for bucket in &buckets {
                let resume = (bucket.name == from.bucket).then(|| from.clone());
                if let Some(stopped) = self.bucket_pass(bucket, resume, &mut budget).await? {
                    self.cursor = stopped;
                    return Ok(false);
                }
            }
            match next {
                Some(next) => position = next,
                None => break,
            }
        }
        Ok(true)
    }

    /// Checks one bucket's objects, then its parts. Returns a cursor when
    /// the budget ran out inside this bucket.
    async fn bucket_pass(
        &mut self,
        bucket: &BucketRecord,
        resume: Option<Cursor>,
        budget: &mut Budget,
    ) -> S3Result<Option<Cursor>> {
        let partition = model::bucket_partition(&bucket.id);
        let prefix = model::object_prefix(&bucket.id);
        let end = model::prefix_end(&prefix);
        let resume = resume.unwrap_or_default();
        for parts in [false, true] {
            if resume.parts && !parts {
                continue;
            }
            let table = if parts { Table::Parts } else { Table::Objects };
            let mut position = match &resume.position {
                Some(p) if resume.parts == parts => p.clone(),
                _ => prefix.clone(),
            };
            loop {
                if budget.records == 0 {
                    return Ok(Some(Cursor {
                        bucket: bucket.name.clone(),
                        parts,
                        position: Some(position),
                    }));
                }
                let limit = budget.records.min(SCAN_BATCH as usize) as u32;
                let page = self
                    .tables
                    .scan(table, partition, &position, &end, limit)
                    .await?;
                budget.records = budget.records.saturating_sub(page.records.len().max(1));
                let missing = self.missing_copies(table, &page.records).await;
                for record in &page.records {
                    self.check_record(table, partition, record, budget, &missing)
                        .await;
                }
                match page.next {
                    Some(next) => position = next,
                    None => break,
                }
            }
        }
        Ok(None)
    }

    /// The copies that records of one page list on live nodes but whose
    /// files are not there (deleted by hand, a restored backup, quarantined):
    /// one question per node. A node that does not answer is taken to have
    /// them (it is asked again next pass).
    async fn missing_copies(&self, table: Table, records: &[Record]) -> Missing {
        let mut asked: HashMap<String, Vec<ChunkId>> = HashMap::new();
        for record in records {
            let Some(value) = record.value.as_deref() else {
                continue;
            };
            for chunk in record_chunks(table, value) {
                for node in distinct(&chunk.nodes).filter(|n| self.view.live.contains(*n)) {
                    asked.entry(node.clone()).or_default().push(chunk.id);
                }
            }
        }
        let mut missing = Missing::new();
        for (node, ids) in asked {
            let Some(addr) = self.cluster.addr_of(&node) else {
                continue;
            };
            match self.cluster.client().chunks_present(addr, &ids).await {
                Ok(present) => {
                    for (id, here) in ids.into_iter().zip(present) {
                        if !here {
                            missing.insert((id, node.clone()));
                        }
                    }
                }
                Err(e) => tracing::debug!(%node, error = %e, "repair: presence check failed"),
            }
        }
        missing
    }

    /// Counts one record's chunks, repairing those with a gone or missing copy.
    async fn check_record(
        &mut self,
        table: Table,
        partition: u16,
        record: &Record,
        budget: &mut Budget,
        missing: &Missing,
    ) {
        let Some(chunks) = record.value.as_deref().map(|v| record_chunks(table, v)) else {
            return;
        };
        self.counts.records += 1;
        let view = self.view.clone();
        let lacking = |chunk: &ChunkRef| -> Vec<String> {
            distinct(&chunk.nodes)
                .filter(|n| missing.contains(&(chunk.id, (*n).clone())))
                .cloned()
                .collect()
        };
        let wanted: Vec<&ChunkRef> = chunks
            .iter()
            .filter(|c| view.has_gone(c) || !lacking(c).is_empty())
            .collect();
        let take = wanted.len().min(budget.repairs);
        budget.repairs -= take;
        let mut fixed: HashMap<ChunkId, Vec<String>> = HashMap::new();
        if take > 0 {
            let todo: Vec<(ChunkRef, Vec<String>)> = wanted
                .into_iter()
                .take(take)
                .map(|c| (c.clone(), lacking(c)))
                .collect();
            let copies: Vec<(ChunkRef, Copied)> = futures::stream::iter(todo)
                .map(|(chunk, lacks)| {
                    let cluster = self.cluster.clone();
                    let view = view.clone();
                    async move {
                        let outcome = repair_chunk(&cluster, &view, &chunk, &lacks).await;
                        (chunk, outcome)
                    }
                })
                .buffer_unordered(REPAIR_CONCURRENCY)
                .collect()
                .await;
            let mut fixes = HashMap::new();
            for (chunk, outcome) in copies {
                match outcome {
                    Ok(nodes) => {
                        fixes.insert(chunk.id, (chunk, nodes));
                    }
                    Err(made) => {
                        self.failed += 1;
                        self.counts.failures += 1;
                        self.forget_copies(chunk.id, &made).await;
                    }
                }
            }
            fixed = self.apply(table, partition, &record.key, fixes).await;
        }
        for chunk in &chunks {
            // A copy listed on a node that lacks its file is no copy.
            let nodes = match fixed.get(&chunk.id) {
                Some(nodes) => nodes.clone(),
                None => {
                    let lacks = lacking(chunk);
                    chunk
                        .nodes
                        .iter()
                        .filter(|n| !lacks.contains(n))
                        .cloned()
                        .collect()
                }
            };
            let after = ChunkRef {
                nodes,
                ..chunk.clone()
            };
            let below = view.live_copies(&after) < REPLICAS;
            let gone = view.has_gone(&after);
            self.counts.below += u64::from(below);
            self.counts.queue += u64::from(gone);
            self.counts.waiting += u64::from(below && !gone);
            for node in distinct(&after.nodes).filter(|n| view.draining.contains(*n)) {
                *self.counts.on_draining.entry(node.clone()).or_default() += 1;
            }
        }
    }

    /// Writes the new node lists into the record (read again now, so that
    /// only chunks still listed as planned change), then forgets the old
    /// copies. Returns the chunks whose new list is durable.
    async fn apply(
        &mut self,
        table: Table,
        partition: u16,
        key: &[u8],
        fixes: HashMap<ChunkId, (ChunkRef, Vec<String>)>,
    ) -> HashMap<ChunkId, Vec<String>> {
        let mut applied: HashMap<ChunkId, Vec<String>> = HashMap::new();
        let written = match self.tables.get(table, partition, key).await {
            Ok(Some(fresh)) => {
                let outcome = rewrite_record(table, &fresh, self.tables.now(), &fixes);
                match outcome {
                    Some((record, ids)) => {
                        // Object records merge by version; a part record is
                        // replaced only if it is still the one read (a part
                        // uploaded again meanwhile keeps its new chunks).
                        let put = if table == Table::Objects {
                            self.tables
                                .put_records(table, partition, vec![record])
                                .await
                                .map(|()| true)
                        } else {
                            self.tables
                                .conditional(
                                    table,
                                    partition,
                                    chunkstore::Condition::Unchanged(fresh.ts),
                                    record,
                                )
                                .await
                                .map(|o| o.written)
                        };
                        match put {
                            Ok(true) => ids,
                            Ok(false) => Vec::new(),
                            Err(e) => {
                                tracing::warn!(error = %e, "repair: record update failed");
                                Vec::new()
                            }
                        }
                    }
                    None => Vec::new(),
                }
            }
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, "repair: record read failed");
                Vec::new()
            }
        };
        for (id, (chunk, nodes)) in fixes {
            if written.contains(&id) {
                // The record is durable with the new copies: the old ones on
                // draining nodes may go.
                let dropped: Vec<String> = chunk
                    .nodes
                    .iter()
                    .filter(|n| !nodes.contains(n) && self.view.draining.contains(*n))
                    .cloned()
                    .collect();
                self.forget_copies(id, &dropped).await;
                self.repaired += 1;
                applied.insert(id, nodes);
            } else {
                // Deleted or changed meanwhile: the new copies are not listed.
                let made: Vec<String> = nodes
                    .iter()
                    .filter(|n| !chunk.nodes.contains(n))
                    .cloned()
                    .collect();
                self.forget_copies(id, &made).await;
            }
        }
        applied
    }

    /// Deletes copies best effort; one that fails stays for the garbage collector.
    async fn forget_copies(&self, id: ChunkId, nodes: &[String]) {
        for node in nodes {
            if let Some(addr) = self.cluster.addr_of(node)
                && let Err(e) = self.cluster.client().delete_chunk(addr, id).await
            {
                tracing::debug!(%node, chunk = %id, error = %e, "repair: delete of an old copy failed");
            }
        }
    }
}

/// What one pass may still do.
struct Budget {
    records: usize,
    repairs: usize,
}

/// The chunks an object record (every version) or a part record lists
/// that are kept as copies. Stripes are left out: a shard is not a copy of
/// its neighbours, so copying one in place of a lost one would put the
/// wrong shard there; stripes are rebuilt by decoding (docs/erasure.md).
fn record_chunks(table: Table, value: &[u8]) -> Vec<ChunkRef> {
    let mut chunks = listed_chunks(table, value);
    chunks.retain(|c| !c.is_striped());
    chunks
}

fn listed_chunks(table: Table, value: &[u8]) -> Vec<ChunkRef> {
    match table {
        Table::Objects => model::decode::<ObjectRecord>(value)
            .map(|r| {
                r.versions
                    .into_iter()
                    .filter_map(|v| v.data)
                    .flat_map(|d| d.chunks)
                    .collect()
            })
            .unwrap_or_default(),
        Table::Parts => model::decode::<PartRecord>(value)
            .map(|p| p.chunks)
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The record to write so that every chunk in `fixes` still listed on the
/// nodes planned gets its new list, and the ids that changed. Object
/// records send only the changed versions, with `updated_ts` raised to
/// `ts`, so the merge keeps everything else.
fn rewrite_record(
    table: Table,
    fresh: &Record,
    ts: u64,
    fixes: &HashMap<ChunkId, (ChunkRef, Vec<String>)>,
) -> Option<(Record, Vec<ChunkId>)> {
    let value = fresh.value.as_deref()?;
    let mut ids = Vec::new();
    let mut fix = |chunks: &mut Vec<ChunkRef>| {
        let mut touched = false;
        for c in chunks.iter_mut() {
            if let Some((planned, nodes)) = fixes.get(&c.id)
                && c.nodes == planned.nodes
            {
                c.nodes = nodes.clone();
                ids.push(c.id);
                touched = true;
            }
        }
        touched
    };
    let value = match table {
        Table::Objects => {
            let record = model::decode::<ObjectRecord>(value)?;
            let mut versions = Vec::new();
            for mut version in record.versions {
                if let Some(data) = version.data.as_mut()
                    && fix(&mut data.chunks)
                {
                    version.updated_ts = ts;
                    versions.push(version);
                }
            }
            model::encode(&ObjectRecord {
                versions,
                purged: Vec::new(),
            })
        }
        Table::Parts => {
            let mut part = model::decode::<PartRecord>(value)?;
            fix(&mut part.chunks);
            model::encode(&part)
        }
        _ => return None,
    };
    if ids.is_empty() {
        return None;
    }
    Some((
        Record {
            key: fresh.key.clone(),
            ts,
            value: Some(value),
        },
        ids,
    ))
}

/// Ok: a chunk's new node list. Err: the copies made before giving up.
type Copied = Result<Vec<String>, Vec<String>>;

/// Makes three copies of a chunk on nodes that are neither gone nor down,
/// copying from a live copy; `lacking` are listed nodes whose file is
/// missing: they hold no copy, and may take the new one. Ok: the new list
/// (live copies kept, new ones added). Err: the copies made before giving
/// up, to delete.
async fn repair_chunk(
    cluster: &Cluster,
    view: &View,
    chunk: &ChunkRef,
    lacking: &[String],
) -> Copied {
    let holds = |n: &String| view.live.contains(n) && !lacking.contains(n);
    let mut nodes: Vec<String> = distinct(&chunk.nodes)
        .filter(|n| holds(n) && !view.gone.contains(*n))
        .cloned()
        .collect();
    // Sources: live copies, the ones staying first, then draining ones.
    let sources: Vec<std::net::SocketAddr> = nodes
        .iter()
        .chain(distinct(&chunk.nodes).filter(|n| holds(n) && view.gone.contains(*n)))
        .filter_map(|n| cluster.addr_of(n))
        .collect();
    let layout = cluster.layout();
    let mut exclude: Vec<NodeRef> = distinct(&chunk.nodes)
        .filter(|id| !lacking.contains(id))
        .filter_map(|id| {
            let entry = layout.entry(id)?;
            Some(NodeRef {
                id: id.clone(),
                addr: entry.http_addr,
                zone: entry.zone.clone(),
                score: 0,
            })
        })
        .collect();
    let mut made = Vec::new();
    let mut attempts = 0;
    while nodes.len() < REPLICAS && attempts < REPAIR_ATTEMPTS * REPLICAS && !sources.is_empty() {
        let source = sources[attempts % sources.len()];
        attempts += 1;
        let Some(target) = cluster.place(&exclude) else {
            break;
        };
        exclude.push(target.clone());
        let copied = {
            let _guard = cluster.track(&target.id);
            cluster
                .client()
                .copy_chunk(source, target.addr, chunk.id)
                .await
        };
        match copied {
            Ok(()) => {
                made.push(target.id.clone());
                nodes.push(target.id);
            }
            Err(e) => {
                tracing::warn!(chunk = %chunk.id, node = %target.id, error = %e, "repair copy failed")
            }
        }
    }
    if nodes.len() >= REPLICAS {
        Ok(nodes)
    } else {
        Err(made)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: u8, nodes: &[&str]) -> ChunkRef {
        ChunkRef {
            id: ChunkId([id; 16]),
            size: 1,
            crc32c: 0,
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            stripe: None,
        }
    }

    #[test]
    fn stripes_are_left_to_decoding_not_copied_as_if_shards_were_copies() {
        let mut striped = chunk(2, &["a", "b", "c", "d", "e", "f"]);
        striped.stripe = Some(model::StripeRef {
            data: 4,
            parity: 2,
            shard_size: 1,
            shard_crc32c: vec![0; 6],
        });
        let record = ObjectRecord {
            versions: vec![model::ObjectVersion {
                version_id: "null".into(),
                ts: 1,
                last_modified_ms: 1,
                data: Some(model::ObjectData {
                    chunks: vec![chunk(1, &["a", "b", "c"]), striped],
                    ..Default::default()
                }),
                updated_ts: 0,
            }],
            purged: Vec::new(),
        };
        let value = model::encode(&record);
        assert_eq!(listed_chunks(Table::Objects, &value).len(), 2);
        let repaired: Vec<ChunkId> = record_chunks(Table::Objects, &value)
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(repaired, vec![ChunkId([1; 16])]);
    }

    #[test]
    fn copies_count_once_per_live_node() {
        let view = View {
            live: ["a", "b", "c"].iter().map(|s| s.to_string()).collect(),
            gone: ["d"].iter().map(|s| s.to_string()).collect(),
            draining: BTreeSet::new(),
        };
        assert_eq!(view.live_copies(&chunk(1, &["a", "b", "c"])), 3);
        assert_eq!(view.live_copies(&chunk(1, &["a", "a", "d"])), 1);
        assert!(view.has_gone(&chunk(1, &["a", "d"])));
        assert!(!view.has_gone(&chunk(1, &["a", "b"])));
    }

    #[test]
    fn a_rewrite_changes_only_versions_still_listing_the_planned_nodes() {
        use crate::store::model::{ObjectData, ObjectVersion};
        let version = |id: &str, c: ChunkRef| ObjectVersion {
            version_id: id.into(),
            ts: 1,
            last_modified_ms: 1,
            data: Some(ObjectData {
                chunks: vec![c],
                ..Default::default()
            }),
            updated_ts: 0,
        };
        let record = ObjectRecord {
            versions: vec![
                version("v1", chunk(1, &["a", "b", "d"])),
                version("v2", chunk(2, &["a", "b", "c"])),
            ],
            purged: Vec::new(),
        };
        let fresh = Record {
            key: b"k".to_vec(),
            ts: 5,
            value: Some(model::encode(&record)),
        };
        let mut fixes = HashMap::new();
        let new = vec!["a".to_string(), "b".into(), "e".into()];
        fixes.insert(ChunkId([1; 16]), (chunk(1, &["a", "b", "d"]), new.clone()));
        fixes.insert(ChunkId([2; 16]), (chunk(2, &["x", "y", "z"]), new.clone()));
        let (out, ids) = rewrite_record(Table::Objects, &fresh, 9, &fixes).unwrap();
        assert_eq!(ids, vec![ChunkId([1; 16])]);
        let out: ObjectRecord = model::decode(out.value.as_deref().unwrap()).unwrap();
        assert_eq!(out.versions.len(), 1);
        assert_eq!(out.versions[0].version_id, "v1");
        assert_eq!(out.versions[0].updated_ts, 9);
        assert_eq!(out.versions[0].data.as_ref().unwrap().chunks[0].nodes, new);
    }
}
