//! A storage node's replication work on its metadata, in the background:
//!
//! 1. **Transfers.** Where a live layout version makes this node a replica
//!    of a partition it did not hold in the readable version, it pulls the
//!    partition's records (every table) from a quorum of the readable
//!    replicas, page by page, at its epoch, and merges them durably. Only
//!    when a quorum of sources has been read to the end does it record the
//!    pull in its sync tracker, which tells the layout leader that the
//!    partition may be read here (see [`crate::layout`]).
//! 2. **Anti-entropy.** On every new epoch and every `full_push_interval`,
//!    it pushes every record of every partition it holds to the partition's
//!    other replicas (of every live version), so that replicas that missed
//!    writes while down catch up. Pages are bounded in bytes as well as in
//!    count. A push that fails is retried for that partition alone, after a
//!    backoff (with jitter) per destination node.
//! 3. **Compaction.** A partition pushed completely to every replica, with
//!    no transition in progress, has its tombstones and object purge entries
//!    older than the horizon removed here: every replica has them, so no
//!    stale copy is left to come back (each replica compacts on its own;
//!    until all have, they pass the entries back and forth harmlessly).
//! 4. **Forgetting.** Records of partitions this node holds in no live
//!    version are removed, once no transition is in progress, its epoch is
//!    the newest its peers know, and it has held that epoch for a while.
//!
//! Without a decided layout (epoch 0: a new cluster, or a 0.1 cluster
//! during a rolling upgrade) only anti-entropy runs, over the registry's
//! placement, as in 0.1.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::ClientError;
use crate::layout::{ALL_PARTITIONS, Placement, QUORUM};
use crate::layout_store::Fence;
use crate::merge::{Compacted, compact};
use crate::meta::MetaStore;
use crate::peers::Peers;
use crate::placement::partition_of;
use crate::wire::{Record, Table, ts_of_millis};

/// The partitioned tables (the layout table is the node's own).
pub const SYNCED_TABLES: [Table; 6] = [
    Table::Buckets,
    Table::Objects,
    Table::Uploads,
    Table::Parts,
    Table::Keys,
    Table::Leases,
];

/// Records read per page, at most (pages are bounded in bytes too).
const PAGE_RECORDS: usize = 1000;

/// Longest backoff before a failed push to a node is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// First backoff after a failed push.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);

/// How long a node must have held an epoch without a transition before it
/// forgets records of partitions it no longer holds: time for every
/// gateway to have learned that reads moved away from it.
const FORGET_AFTER: Duration = Duration::from_secs(60);

/// How often a node removed from the layout says so in its log.
const TELL_REMOVED_EVERY: Duration = Duration::from_secs(60);

/// Partitions transferred per round before the node looks at its layout
/// again (a new epoch may change what it owes).
const PULLS_PER_ROUND: usize = 64;

/// When the replication work runs, and how long deletions are remembered.
#[derive(Clone, Debug)]
pub struct ReplicationConfig {
    /// How often the node looks for work.
    pub check_interval: Duration,
    /// A full anti-entropy push even without a new epoch.
    pub full_push_interval: Duration,
    /// Tombstones and purge entries older than this are compacted once
    /// every replica has them.
    pub tombstone_horizon: Duration,
}

impl Default for ReplicationConfig {
    fn default() -> ReplicationConfig {
        ReplicationConfig {
            check_interval: Duration::from_secs(2),
            full_push_interval: Duration::from_secs(600),
            tombstone_horizon: Duration::from_secs(24 * 3600),
        }
    }
}

/// Backoff of pushes to one destination.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    delay: Duration,
    until: Instant,
}

struct Replicator {
    peers: Peers,
    meta: Arc<MetaStore>,
    scan_bytes: usize,
    config: ReplicationConfig,
    /// The placement of the last complete push, and when it ended.
    pushed: Option<(Arc<Placement>, Instant)>,
    /// Partitions whose last push failed somewhere, to push again.
    retry: BTreeSet<u16>,
    backoff: HashMap<String, Backoff>,
    /// The epoch this node holds, and since when (for forgetting).
    epoch_since: (u64, Instant),
    /// When this node last said it was removed from the layout.
    told_removed: Option<Instant>,
}

pub(crate) async fn run(
    peers: Peers,
    meta: Arc<MetaStore>,
    scan_bytes: usize,
    config: ReplicationConfig,
    mut stop: watch::Receiver<bool>,
) {
    let epoch = peers.layout.epoch();
    let mut replicator = Replicator {
        peers,
        meta,
        scan_bytes,
        config,
        pushed: None,
        retry: BTreeSet::new(),
        backoff: HashMap::new(),
        epoch_since: (epoch, Instant::now()),
        told_removed: None,
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(replicator.config.check_interval) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        replicator.round(&stop).await;
    }
}

/// A page of records of one partition, and the destinations they go to.
type Outgoing = BTreeMap<String, Vec<Record>>;

impl Replicator {
    fn me(&self) -> &str {
        &self.peers.node_id
    }

    async fn round(&mut self, stop: &watch::Receiver<bool>) {
        if let Some(why) = self.peers.layout.removed(self.me()) {
            // It holds nothing in any live version, so it pushes nothing;
            // it says so now and then, since it runs for nothing.
            if self
                .told_removed
                .is_none_or(|t| t.elapsed() >= TELL_REMOVED_EVERY)
            {
                tracing::error!("{why}");
                self.told_removed = Some(Instant::now());
            }
        }
        let placement = self.peers.layout.placement();
        if placement.epoch != self.epoch_since.0 {
            self.epoch_since = (placement.epoch, Instant::now());
        }
        if placement.is_empty() {
            return;
        }
        if placement.epoch > 0 {
            self.transfer(&placement, stop).await;
        }
        let placement = self.peers.layout.placement();
        let due = match &self.pushed {
            Some((done, at)) => {
                done.epoch != placement.epoch
                    || (placement.epoch == 0 && done.read_placement() != placement.read_placement())
                    || at.elapsed() >= self.config.full_push_interval
            }
            None => true,
        };
        if due {
            self.push(&placement, None, stop).await;
        } else if !self.retry.is_empty() {
            let only = std::mem::take(&mut self.retry);
            self.push(&placement, Some(only), stop).await;
        }
    }

    /// Pulls what this node owes under the live versions (bounded per round).
    async fn transfer(&mut self, placement: &Arc<Placement>, stop: &watch::Receiver<bool>) {
        let history = self.peers.layout.history();
        let owed = placement.pulls_owed(&history.synced, self.me());
        if owed.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut done = Vec::new();
        let mut records = 0;
        for (partition, version) in owed.into_iter().take(PULLS_PER_ROUND) {
            if *stop.borrow() || self.peers.layout.epoch() != placement.epoch {
                break;
            }
            match self.pull(placement, partition).await {
                Ok(n) => {
                    records += n;
                    done.push((partition, version));
                }
                Err(e) => {
                    tracing::debug!(partition, error = %e, "transfer incomplete; retried");
                }
            }
        }
        if !done.is_empty() {
            if let Err(e) = self.record_pulls(done.clone()).await {
                tracing::warn!(error = %e, "cannot record transfers; they are made again");
                return;
            }
            let elapsed = started.elapsed();
            tracing::info!(
                partitions = done.len(),
                records,
                records_per_sec = (records as f64 / elapsed.as_secs_f64().max(1e-3)) as u64,
                epoch = placement.epoch,
                "transferred partitions to this node"
            );
            self.announce_progress(placement).await;
        }
    }

    async fn record_pulls(&self, pulls: Vec<(u16, u64)>) -> anyhow::Result<()> {
        let (layout, me) = (self.peers.layout.clone(), self.me().to_string());
        tokio::task::spawn_blocking(move || layout.record_pulls(&me, &pulls)).await?
    }

    /// Tells the other nodes of the layout what this node has pulled (the
    /// leader decides from their trackers when reads may move).
    async fn announce_progress(&self, placement: &Placement) {
        let history = self.peers.layout.history();
        let pushes = placement
            .nodes()
            .into_iter()
            .filter(|id| *id != self.me())
            .filter_map(|id| self.peers.addr(id))
            .map(|addr| {
                let history = &history;
                async move {
                    if let Err(e) = self.peers.client.push_layout(addr, history).await {
                        tracing::debug!(%addr, error = %e, "cannot announce transfer progress");
                    }
                }
            });
        futures::future::join_all(pushes).await;
    }

    /// Reads every record of `partition` from a quorum of its readable
    /// replicas and merges them here. Returns the records merged.
    async fn pull(&self, placement: &Placement, partition: u16) -> Result<usize, String> {
        let sources: Vec<String> = placement
            .read_set(partition)
            .iter()
            .filter(|id| id.as_str() != self.me())
            .cloned()
            .collect();
        let mut complete = 0;
        let mut records = 0;
        let mut errors = Vec::new();
        for source in &sources {
            match self.pull_from(placement.epoch, source, partition).await {
                Ok(n) => {
                    complete += 1;
                    records += n;
                    if complete >= QUORUM {
                        return Ok(records);
                    }
                }
                Err(e) => errors.push(format!("{source}: {e}")),
            }
        }
        Err(format!(
            "{complete} of {QUORUM} sources read to the end ({})",
            errors.join("; ")
        ))
    }

    /// Every record of `partition` that `source` holds, merged here.
    async fn pull_from(
        &self,
        epoch: u64,
        source: &str,
        partition: u16,
    ) -> Result<usize, ClientError> {
        let (start, end) = partition_range(partition);
        let mut merged = 0;
        for table in SYNCED_TABLES {
            let mut position = start.clone();
            loop {
                let page = self
                    .peers
                    .call(source, epoch, |client, addr, epoch| {
                        let (position, end) = (position.clone(), end.clone());
                        async move {
                            client
                                .meta_scan(addr, epoch, table, &position, &end, PAGE_RECORDS as u32)
                                .await
                        }
                    })
                    .await?;
                let next = page.records.last().map(|r| key_after(&r.key));
                merged += page.records.len();
                self.merge_local(epoch, table, page.records).await?;
                match next {
                    Some(next) if page.more => position = next,
                    _ => break,
                }
            }
        }
        Ok(merged)
    }

    /// Merges records here, at `epoch` (refused if this node moved on).
    async fn merge_local(
        &self,
        epoch: u64,
        table: Table,
        records: Vec<Record>,
    ) -> Result<(), ClientError> {
        if records.is_empty() {
            return Ok(());
        }
        let (layout, meta) = (self.peers.layout.clone(), self.meta.clone());
        let here = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let cutoff = forget_before(self.config.tombstone_horizon);
        let result = tokio::task::spawn_blocking(move || {
            let _fenced = layout
                .fence(Some(epoch))
                .map_err(|f| ClientError::Fenced(here, f))?;
            meta.merge_after(table, &records, cutoff)
                .map_err(|e| ClientError::Status(here, 500, format!("{e:#}")))
        })
        .await
        .map_err(|e| ClientError::Status(here, 500, format!("merge task failed: {e}")))?;
        result.map(drop)
    }

    /// Pushes the records of the partitions this node holds (all, or only
    /// `only`) to their other replicas; compacts and forgets on the way.
    async fn push(
        &mut self,
        placement: &Arc<Placement>,
        only: Option<BTreeSet<u16>>,
        stop: &watch::Receiver<bool>,
    ) {
        let started = Instant::now();
        let mut failed: BTreeSet<u16> = BTreeSet::new();
        let mut pushed = 0usize;
        let whole = only.is_none();
        let forget = self.may_forget(placement).await;
        let cutoff = self.compaction_cutoff(placement);
        for table in SYNCED_TABLES {
            let mut position: Vec<u8> = match only.as_ref().and_then(|o| o.first()) {
                Some(p) => partition_range(*p).0,
                None => Vec::new(),
            };
            loop {
                if *stop.borrow() || self.peers.layout.epoch() != placement.epoch {
                    // A new epoch: the next round pushes under it.
                    return;
                }
                let page = {
                    let (meta, from, max_bytes) =
                        (self.meta.clone(), position.clone(), self.scan_bytes);
                    match tokio::task::spawn_blocking(move || {
                        meta.scan(table, &from, &[], PAGE_RECORDS, max_bytes)
                    })
                    .await
                    {
                        Ok(Ok(page)) => page,
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "anti-entropy: cannot read records");
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "anti-entropy: read task failed");
                            return;
                        }
                    }
                };
                let (records, more) = page;
                let Some(last) = records.last() else { break };
                position = key_after(&last.key);

                let mut by_partition: BTreeMap<u16, Vec<Record>> = BTreeMap::new();
                for record in records {
                    if let Some(p) = partition_of(&record.key) {
                        by_partition.entry(p).or_default().push(record);
                    }
                }
                let mut rewrites: Vec<(Record, Option<Record>)> = Vec::new();
                let mut outgoing: Outgoing = BTreeMap::new();
                let mut held: BTreeMap<u16, Vec<Record>> = BTreeMap::new();
                for (p, records) in by_partition {
                    if only.as_ref().is_some_and(|o| !o.contains(&p)) {
                        continue;
                    }
                    if !placement.holds(self.me(), p) {
                        if forget {
                            rewrites.extend(records.into_iter().map(|r| (r, None)));
                        }
                        continue;
                    }
                    for node in placement.write_nodes(p) {
                        if node != self.me() {
                            outgoing
                                .entry(node)
                                .or_default()
                                .extend(records.iter().cloned());
                        }
                    }
                    held.insert(p, records);
                }
                let refused = self.send(placement.epoch, table, outgoing).await;
                for (p, records) in held {
                    if placement.write_nodes(p).iter().any(|n| refused.contains(n)) {
                        failed.insert(p);
                        continue;
                    }
                    pushed += records.len();
                    // Every replica took these records: what they no longer
                    // need may go here.
                    if let Some(cutoff) = cutoff {
                        for record in records {
                            match compact(table, &record, cutoff) {
                                Compacted::Keep => {}
                                Compacted::Drop => rewrites.push((record, None)),
                                Compacted::Rewrite(shrunk) => rewrites.push((record, Some(shrunk))),
                            }
                        }
                    }
                }
                self.rewrite(table, rewrites).await;
                if !more {
                    break;
                }
                if let Some(only) = &only {
                    // Skip ahead to the next partition to retry.
                    let current = partition_of(&position).unwrap_or(u16::MAX);
                    if !only.contains(&current) {
                        match only.range(current..).next() {
                            Some(next) => position = partition_range(*next).0,
                            None => break,
                        }
                    }
                }
            }
        }
        if whole {
            self.pushed = Some((placement.clone(), Instant::now()));
        }
        let retried = !whole;
        self.retry = failed;
        tracing::debug!(
            records = pushed,
            failed = self.retry.len(),
            retried,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "anti-entropy pass"
        );
    }

    /// Sends each destination its records (skipping nodes still in
    /// backoff); returns the destinations that did not take them.
    async fn send(&mut self, epoch: u64, table: Table, outgoing: Outgoing) -> BTreeSet<String> {
        let now = Instant::now();
        let mut refused = BTreeSet::new();
        let mut sends = Vec::new();
        let peers = &self.peers;
        for (node, records) in outgoing {
            if self.backoff.get(&node).is_some_and(|b| b.until > now) {
                refused.insert(node);
                continue;
            }
            sends.push(async move {
                let result = peers
                    .call(&node, epoch, |client, addr, epoch| {
                        let records = &records;
                        async move { client.meta_put(addr, epoch, table, records).await }
                    })
                    .await;
                (node, result)
            });
        }
        let results = futures::future::join_all(sends).await;
        for (node, result) in results {
            match result {
                Ok(()) => {
                    self.backoff.remove(&node);
                }
                Err(e) => {
                    if !matches!(e, ClientError::Fenced(_, Fence::Stale { .. })) {
                        tracing::debug!(%node, error = %e, "anti-entropy push failed; backing off");
                    }
                    let delay = self
                        .backoff
                        .get(&node)
                        .map_or(FIRST_BACKOFF, |b| (b.delay * 2).min(MAX_BACKOFF));
                    let jitter = rand::rng().random_range(0.5..1.5);
                    self.backoff.insert(
                        node.clone(),
                        Backoff {
                            delay,
                            until: Instant::now() + delay.mul_f64(jitter),
                        },
                    );
                    refused.insert(node);
                }
            }
        }
        refused
    }

    /// The timestamp below which tombstones may go, if compaction may run
    /// now: a decided layout with no transition in progress.
    fn compaction_cutoff(&self, placement: &Placement) -> Option<u64> {
        if placement.epoch == 0 || placement.version_numbers().count() != 1 {
            return None;
        }
        Some(forget_before(self.config.tombstone_horizon))
    }

    /// Applies compactions and forgets, each only if the record is unchanged.
    async fn rewrite(&self, table: Table, rewrites: Vec<(Record, Option<Record>)>) {
        if rewrites.is_empty() {
            return;
        }
        let meta = self.meta.clone();
        let n = rewrites.len();
        match tokio::task::spawn_blocking(move || meta.rewrite_if_unchanged(table, &rewrites)).await
        {
            Ok(Ok(done)) => tracing::debug!(
                table = table.name(),
                done,
                of = n,
                "records compacted or forgotten"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot compact records"),
            Err(e) => tracing::warn!(error = %e, "compaction task failed"),
        }
    }

    /// Whether this node may forget records of partitions it holds in no
    /// live version: a decided layout, no transition, the epoch held for a
    /// while, and no peer knows a newer one.
    async fn may_forget(&self, placement: &Placement) -> bool {
        if placement.epoch == 0
            || placement.version_numbers().count() != 1
            || self.epoch_since.1.elapsed() < FORGET_AFTER
        {
            return false;
        }
        let asks = placement
            .nodes()
            .into_iter()
            .filter(|id| *id != self.me())
            .filter_map(|id| self.peers.addr(id))
            .map(|addr| async move { self.peers.client.layout(addr).await.ok() });
        let answers = futures::future::join_all(asks).await;
        answers.len() >= QUORUM.min(placement.nodes().len().saturating_sub(1))
            && answers.iter().all(|a| {
                a.as_ref()
                    .is_some_and(|s| s.history.epoch() <= placement.epoch)
            })
    }
}

/// The key range of one partition in every partitioned table.
pub fn partition_range(partition: u16) -> (Vec<u8>, Vec<u8>) {
    debug_assert!(partition < ALL_PARTITIONS);
    (
        partition.to_be_bytes().to_vec(),
        (partition + 1).to_be_bytes().to_vec(),
    )
}

fn key_after(key: &[u8]) -> Vec<u8> {
    [key, &[0]].concat()
}

/// The timestamp below which tombstones and purge entries are older than
/// `horizon`, by this node's clock.
pub(crate) fn forget_before(horizon: Duration) -> u64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    ts_of_millis(ms.saturating_sub(horizon.as_millis() as u64))
}
