//! Replicated metadata tables: one generic layer that every table uses.
//! A record lives on the replicas of its partition, in every live layout
//! version: writes go to all of them and succeed once each version's
//! replica set has a quorum (two of three); reads ask the readable
//! version's replicas, take the first two answers, merge them (per table,
//! see `chunkstore::merge`) and repair a stale replica. Conditional writes
//! go through the partition's primary (see `chunkstore::primary`).
//!
//! Every request carries this process's layout epoch; a node at another
//! epoch refuses it (see `chunkstore::layout_store`). A refusal as stale
//! makes this process fetch the node's newer layout, one as behind makes it
//! hand the node its own, and the operation is tried again at the new
//! epoch, at most [`MAX_FENCED_RETRIES`] times.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use chunkstore::layout::QUORUM;
use chunkstore::limits::MAX_RECORD_AHEAD;
use chunkstore::merge::{condition_holds, merge};
use chunkstore::wire::{ts_millis, ts_of_millis};
use chunkstore::{
    CasOutcome, CasRequest, ClientError, Condition, ConditionalOutcome, ConditionalWrite, Expect,
    Fence, GuardedWrite, NodeClient, Record, Table,
};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use s3s::{S3Result, s3_error};

use crate::limits::{
    FENCED_RETRY_PAUSE, LAYOUT_POLL, MAX_FENCED_RETRIES, MAX_SCAN_ROUNDS, PRIMARY_FAILOVER_WAIT,
    SCAN_BATCH,
};
use crate::store::cluster::{Cluster, Layout};
use crate::store::hlc::Hlc;

#[derive(Clone)]
pub struct Tables {
    cluster: Arc<Cluster>,
    hlc: Arc<Hlc>,
}

/// A page of a scan merged from a quorum of replicas.
pub struct ScanPage {
    /// Records in key order, tombstones included.
    pub records: Vec<Record>,
    /// When the replicas had more: where the next page starts.
    pub next: Option<Vec<u8>>,
}

/// A request for a partition's primary.
#[derive(Clone, Copy)]
enum OnPrimary<'a> {
    Conditional(&'a ConditionalWrite),
    Guarded(&'a GuardedWrite),
}

/// What one attempt at the current epoch came to.
enum Attempt<T> {
    Done(T),
    /// A node fenced the request: the layout was brought up to date; again.
    Again,
}

impl Tables {
    pub fn new(cluster: Arc<Cluster>, hlc: Arc<Hlc>) -> Tables {
        Tables { cluster, hlc }
    }

    pub fn now(&self) -> u64 {
        self.hlc.now()
    }

    /// The time leases between gateways are judged by (ms since the
    /// epoch): this process's clock, or the storage nodes' when later, so
    /// that a gateway whose clock is behind neither stamps stale leases nor
    /// takes live ones for expired. (Not the HLC: it may have followed a
    /// record from a clock up to a minute ahead.)
    pub fn now_ms(&self) -> u64 {
        self.hlc.reference_ms()
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Writes a record (a tombstone when `value` is None) at a fresh timestamp.
    pub async fn put(
        &self,
        table: Table,
        partition: u16,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    ) -> S3Result<u64> {
        let ts = self.hlc.now();
        self.put_records(table, partition, vec![Record { key, ts, value }])
            .await?;
        Ok(ts)
    }

    /// Writes records of one partition to all its replicas; returns once a
    /// quorum of every live layout version's replicas has them durably. The
    /// slower replicas finish in the background.
    pub async fn put_records(
        &self,
        table: Table,
        partition: u16,
        records: Vec<Record>,
    ) -> S3Result<()> {
        self.check_clock(records.iter().map(|r| r.ts).max())?;
        let records = Arc::new(records);
        self.fenced("write", |layout| {
            let records = records.clone();
            async move { self.replicate(&layout, table, partition, records).await }
        })
        .await
    }

    /// Runs `attempt` at the current epoch until no node fences it (bounded).
    /// Each attempt gets one snapshot of the layout: its epoch and its
    /// replica sets belong together.
    async fn fenced<T, F, Fut>(&self, what: &str, attempt: F) -> S3Result<T>
    where
        F: Fn(Arc<Layout>) -> Fut,
        Fut: Future<Output = S3Result<Attempt<T>>>,
    {
        for tries in 0..=MAX_FENCED_RETRIES {
            if tries > 0 {
                // The layout was just brought up to date; a moment lets a
                // node that was handed it finish storing it.
                tokio::time::sleep(FENCED_RETRY_PAUSE * tries as u32).await;
            }
            match attempt(self.cluster.layout()).await? {
                Attempt::Done(v) => return Ok(v),
                Attempt::Again => self.cluster.metrics().fenced_retry(what),
            }
        }
        self.cluster.metrics().quorum_failure(what);
        Err(s3_error!(
            ServiceUnavailable,
            "the cluster's layout is changing; retry"
        ))
    }

    /// Brings the layout up to date after a node fenced a request.
    async fn after_fence(&self, addr: SocketAddr, fence: Fence) {
        match fence {
            Fence::Behind { .. } => {
                if let Err(e) = self.cluster.push_layout_to(addr).await {
                    tracing::debug!(%addr, error = %e, "cannot give a node the layout");
                }
            }
            Fence::Stale { .. } | Fence::NotPrimary { .. } => self.cluster.refresh_from(addr).await,
        }
    }

    /// A conditional write through the partition's primary: `write` is made
    /// only if `condition` holds on the record as a quorum holds it, and the
    /// check and the write are serialised with every other conditional write
    /// of the key, whichever gateway sends it.
    pub async fn conditional(
        &self,
        table: Table,
        partition: u16,
        condition: Condition,
        write: Record,
    ) -> S3Result<ConditionalOutcome> {
        self.check_clock(Some(write.ts))?;
        let req = ConditionalWrite { condition, write };
        self.on_primary(table, partition, OnPrimary::Conditional(&req))
            .await
    }

    /// A guarded write through the partition's primary: `write` (a record
    /// of `table`) is made only if `condition` holds on the record
    /// `guard_key` of `guard_table`, serialised with the conditional writes
    /// of that key. The outcome's record is the guard record.
    pub async fn guarded(
        &self,
        table: Table,
        partition: u16,
        guard: (Table, Vec<u8>),
        condition: Condition,
        write: Record,
    ) -> S3Result<ConditionalOutcome> {
        self.check_clock(Some(write.ts))?;
        let (guard_table, guard_key) = guard;
        let req = GuardedWrite {
            guard_table,
            guard_key,
            condition,
            write,
        };
        self.on_primary(table, partition, OnPrimary::Guarded(&req))
            .await
    }

    /// Refuses a write stamped further ahead of the storage nodes' clocks
    /// (as their answers tell them) than they accept, before it is sent
    /// anywhere: this process's clock is wrong, and a node whose clock is
    /// wrong too might keep a replica of a write the others refuse.
    fn check_clock(&self, newest: Option<u64>) -> S3Result<()> {
        let Some(ts) = newest else {
            return Ok(());
        };
        let cluster_ms = self.cluster.client().clock().now_ms();
        let limit = ts_of_millis(cluster_ms + MAX_RECORD_AHEAD.as_millis() as u64);
        if ts <= limit {
            return Ok(());
        }
        Err(s3_error!(
            ServiceUnavailable,
            "this process's clock is {} s ahead of the storage nodes' clocks: writes are refused until it is right (check NTP)",
            ts_millis(ts).saturating_sub(cluster_ms) / 1000
        ))
    }

    async fn on_primary(
        &self,
        table: Table,
        partition: u16,
        request: OnPrimary<'_>,
    ) -> S3Result<ConditionalOutcome> {
        let outcome = self
            .fenced("cas", |layout| async move {
                let epoch = layout.epoch();
                if epoch == 0 {
                    let outcome = match request {
                        OnPrimary::Conditional(req) => {
                            self.conditional_legacy(table, partition, req).await
                        }
                        OnPrimary::Guarded(req) => self.guarded_legacy(table, partition, req).await,
                    };
                    return outcome.map(Attempt::Done);
                }
                let Some(primary) = layout.placement().primary(partition) else {
                    return Err(s3_error!(
                        ServiceUnavailable,
                        "metadata partition {partition} has no primary"
                    ));
                };
                let Some(addr) = self.cluster.addr_of(primary) else {
                    return Err(s3_error!(
                        ServiceUnavailable,
                        "the primary of partition {partition} has no address"
                    ));
                };
                let answer = {
                    let _guard = self.cluster.track(primary);
                    let client = self.cluster.client();
                    match request {
                        OnPrimary::Conditional(req) => {
                            client.conditional(addr, epoch, table, req).await
                        }
                        OnPrimary::Guarded(req) => client.guarded(addr, epoch, table, req).await,
                    }
                };
                match answer {
                    Ok(outcome) => Ok(Attempt::Done(outcome)),
                    Err(ClientError::Fenced(_, fence)) => {
                        self.after_fence(addr, fence).await;
                        Ok(Attempt::Again)
                    }
                    Err(e) => {
                        // A primary that does not answer is replaced by a
                        // newer epoch once the leader sees it down (a few
                        // seconds): wait for that, bounded.
                        if matches!(e, ClientError::Unreachable(..))
                            && self.await_primary(epoch, addr).await
                        {
                            return Ok(Attempt::Again);
                        }
                        self.cluster.metrics().quorum_failure("cas");
                        Err(s3_error!(
                            ServiceUnavailable,
                            "conditional write on {primary} failed: {e}"
                        ))
                    }
                }
            })
            .await?;
        if let Some(record) = &outcome.record {
            self.hlc.observe(record.ts);
        }
        Ok(outcome)
    }

    /// Waits, at most [`PRIMARY_FAILOVER_WAIT`], until the primary at `addr`
    /// answers again (a restart) or a newer epoch than `epoch` names
    /// another (it is down); true if either happened.
    async fn await_primary(&self, epoch: u64, addr: SocketAddr) -> bool {
        let deadline = tokio::time::Instant::now() + PRIMARY_FAILOVER_WAIT;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(LAYOUT_POLL).await;
            self.cluster.refresh_unless_fresh(LAYOUT_POLL).await;
            if self.cluster.layout().epoch() > epoch {
                return true;
            }
            let probe = tokio::time::timeout(LAYOUT_POLL, self.cluster.client().status(addr));
            if matches!(probe.await, Ok(Ok(_))) {
                return true;
            }
        }
        false
    }

    /// A conditional write as 0.1 made it, while the cluster has no decided
    /// layout (a rolling upgrade from 0.1): on object records checked on the
    /// first live replica, then written at quorum.
    async fn conditional_legacy(
        &self,
        table: Table,
        partition: u16,
        req: &ConditionalWrite,
    ) -> S3Result<ConditionalOutcome> {
        let expect = match (&req.condition, table) {
            (Condition::Absent, Table::Objects) => Expect::Absent,
            (Condition::ETag(etag), Table::Objects) => Expect::ETag(etag.clone()),
            _ => {
                // Other tables' read-modify-writes: read, check and write,
                // not serialised, as 0.1 did.
                let current = self.get(table, partition, &req.write.key).await?;
                let written = condition_holds(table, &req.condition, current.as_ref());
                if written {
                    self.put_records(table, partition, vec![req.write.clone()])
                        .await?;
                }
                return Ok(ConditionalOutcome {
                    written,
                    record: if written {
                        Some(req.write.clone())
                    } else {
                        current
                    },
                });
            }
        };
        let seen = self.get(table, partition, &req.write.key).await?;
        let nodes = self.cluster.partition_nodes(partition);
        let Some((id, addr, true)) = nodes.into_iter().next() else {
            self.cluster.metrics().quorum_failure("cas");
            return Err(s3_error!(
                ServiceUnavailable,
                "metadata partition {partition} has no live replica"
            ));
        };
        let legacy = CasRequest {
            expect,
            seen,
            write: req.write.clone(),
        };
        let outcome = self
            .cluster
            .client()
            .meta_cas_legacy(addr, table, &legacy, false)
            .await
            .map_err(|e| s3_error!(ServiceUnavailable, "conditional write on {id} failed: {e}"))?;
        match outcome {
            CasOutcome::Written(record) => {
                self.put_records(table, partition, vec![record.clone()])
                    .await?;
                Ok(ConditionalOutcome {
                    written: true,
                    record: Some(record),
                })
            }
            CasOutcome::Refused { .. } => Ok(ConditionalOutcome {
                written: false,
                record: self.get(table, partition, &req.write.key).await?,
            }),
        }
    }

    /// A guarded write while the cluster has no decided layout (a rolling
    /// upgrade from 0.1): the guard is checked on a quorum read, then the
    /// record written, not serialised, as 0.1 did.
    async fn guarded_legacy(
        &self,
        table: Table,
        partition: u16,
        req: &GuardedWrite,
    ) -> S3Result<ConditionalOutcome> {
        let guard = self.get(req.guard_table, partition, &req.guard_key).await?;
        let written = condition_holds(req.guard_table, &req.condition, guard.as_ref());
        if written {
            self.put_records(table, partition, vec![req.write.clone()])
                .await?;
        }
        Ok(ConditionalOutcome {
            written,
            record: guard,
        })
    }

    /// Writes records to every replica of a partition at `epoch`, and
    /// returns once every live version's replica set has a quorum of them.
    async fn replicate(
        &self,
        layout: &Layout,
        table: Table,
        partition: u16,
        records: Arc<Vec<Record>>,
    ) -> S3Result<Attempt<()>> {
        let epoch = layout.epoch();
        let sets: Vec<Vec<String>> = layout
            .placement()
            .write_sets(partition)
            .map(<[String]>::to_vec)
            .collect();
        let nodes = self
            .cluster
            .located(&layout.placement().write_nodes(partition));
        if sets.is_empty() {
            self.cluster.metrics().quorum_failure("write");
            return Err(s3_error!(
                ServiceUnavailable,
                "the cluster has no layout yet (fewer than three storage nodes have joined)"
            ));
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel(nodes.len().max(1));
        for (id, addr, _) in nodes {
            let tx = tx.clone();
            let records = records.clone();
            let cluster = self.cluster.clone();
            tokio::spawn(async move {
                let _guard = cluster.track(&id);
                let result = cluster
                    .client()
                    .meta_put(addr, epoch, table, &records)
                    .await;
                if let Err(e) = &result
                    && !matches!(e, ClientError::Fenced(..))
                {
                    tracing::warn!(node = %id, error = %e, "metadata write failed");
                }
                let _ = tx.send((id, addr, result)).await;
            });
        }
        drop(tx);
        let mut acked: BTreeSet<String> = BTreeSet::new();
        let mut fenced = None;
        let mut refusal = None;
        while let Some((id, addr, result)) = rx.recv().await {
            match result {
                Ok(()) => {
                    acked.insert(id);
                    if sets
                        .iter()
                        .all(|set| set.iter().filter(|n| acked.contains(*n)).count() >= QUORUM)
                    {
                        return Ok(Attempt::Done(()));
                    }
                }
                Err(ClientError::Fenced(_, fence)) => fenced = Some((addr, fence)),
                Err(ClientError::Status(_, 400, why)) => refusal = Some(why),
                Err(_) => {}
            }
        }
        if let Some((addr, fence)) = fenced {
            self.after_fence(addr, fence).await;
            return Ok(Attempt::Again);
        }
        self.cluster.metrics().quorum_failure("write");
        Err(s3_error!(
            ServiceUnavailable,
            "metadata write reached {} replicas, not a quorum of every replica set{}",
            acked.len(),
            refusal
                .map(|why| format!(" (refused: {why})"))
                .unwrap_or_default()
        ))
    }

    /// Reads a record at quorum; the answers are merged and replicas that
    /// lack the merge are repaired in the background. Tombstones come back
    /// as `None`.
    pub async fn get(&self, table: Table, partition: u16, key: &[u8]) -> S3Result<Option<Record>> {
        let answers = self
            .ask_quorum(partition, "read", |client, addr, epoch| async move {
                client.meta_get(addr, epoch, table, key).await
            })
            .await?;
        let newest =
            answers
                .iter()
                .filter_map(|(_, _, r)| r.as_ref())
                .fold(None::<Record>, |acc, r| match acc {
                    Some(a) => Some(merge(table, &a, r)),
                    None => Some(r.clone()),
                });
        if let Some(newest) = &newest {
            self.hlc.observe(newest.ts);
            for (id, addr, record) in &answers {
                if record.as_ref() != Some(newest) {
                    self.repair(id.clone(), *addr, table, vec![newest.clone()]);
                }
            }
        }
        Ok(newest.filter(|r| r.value.is_some()))
    }

    /// Scans `start <= key < end` on a quorum of replicas and merges the
    /// answers. Tombstones are kept so callers can page past them.
    pub async fn scan(
        &self,
        table: Table,
        partition: u16,
        start: &[u8],
        end: &[u8],
        limit: u32,
    ) -> S3Result<ScanPage> {
        let answers = self
            .ask_quorum(partition, "scan", |client, addr, epoch| async move {
                client
                    .meta_scan(addr, epoch, table, start, end, limit)
                    .await
            })
            .await?;

        // A replica that had more may hold keys beyond those it sent (a count
        // or byte bound cut its page); the merged page is only complete up to
        // the smallest last key of those.
        let cut: Option<Vec<u8>> = answers
            .iter()
            .filter(|(_, _, a)| a.more)
            .filter_map(|(_, _, a)| a.records.last().map(|rec| rec.key.clone()))
            .min();

        let mut merged: BTreeMap<Vec<u8>, Record> = BTreeMap::new();
        for (_, _, answer) in &answers {
            for r in &answer.records {
                if cut.as_ref().is_some_and(|c| &r.key > c) {
                    continue;
                }
                let combined = match merged.get(&r.key) {
                    Some(existing) => merge(table, existing, r),
                    None => r.clone(),
                };
                merged.insert(r.key.clone(), combined);
            }
        }
        for (id, addr, answer) in &answers {
            let have: BTreeMap<&[u8], &Record> = answer
                .records
                .iter()
                .map(|r| (r.key.as_slice(), r))
                .collect();
            let stale: Vec<Record> = merged
                .values()
                .filter(|r| have.get(r.key.as_slice()) != Some(r))
                .cloned()
                .collect();
            if !stale.is_empty() {
                self.repair(id.clone(), *addr, table, stale);
            }
        }
        if let Some(max) = merged.values().map(|r| r.ts).max() {
            self.hlc.observe(max);
        }
        let next = cut.map(|c| crate::store::model::key_after(&c));
        Ok(ScanPage {
            records: merged.into_values().collect(),
            next,
        })
    }

    /// Every live record with `start <= key < end`, decoded, in key order;
    /// 503 when the range holds more than MAX_SCAN_ROUNDS pages, rather than
    /// a silently partial answer.
    pub async fn scan_all<T: serde::de::DeserializeOwned>(
        &self,
        table: Table,
        partition: u16,
        start: &[u8],
        end: &[u8],
    ) -> S3Result<Vec<T>> {
        let mut position = start.to_vec();
        let mut all = Vec::new();
        for _ in 0..MAX_SCAN_ROUNDS {
            let page = self
                .scan(table, partition, &position, end, SCAN_BATCH)
                .await?;
            all.extend(
                page.records
                    .iter()
                    .filter_map(|r| r.value.as_deref())
                    .filter_map(crate::store::model::decode::<T>),
            );
            match page.next {
                Some(next) => position = next,
                None => return Ok(all),
            }
        }
        Err(s3_error!(
            ServiceUnavailable,
            "too many {} records to read in one request; retry",
            table.name()
        ))
    }

    /// Asks every readable replica of a partition at once (at this epoch)
    /// and returns the first `QUORUM` answers (node id, address, answer), or
    /// 503 when fewer come.
    async fn ask_quorum<'a, T, F, Fut>(
        &self,
        partition: u16,
        what: &str,
        ask: F,
    ) -> S3Result<Vec<(String, SocketAddr, T)>>
    where
        F: Fn(NodeClient, SocketAddr, u64) -> Fut,
        Fut: Future<Output = Result<T, ClientError>> + 'a,
    {
        let ask = &ask;
        self.fenced(what, |layout| async move {
            let epoch = layout.epoch();
            let mut pending: FuturesUnordered<_> = self
                .cluster
                .located(layout.placement().read_set(partition))
                .into_iter()
                .map(|(id, addr, _)| {
                    let guard = self.cluster.track(&id);
                    let answer = ask(self.cluster.client().clone(), addr, epoch);
                    async move {
                        let result = answer.await;
                        drop(guard);
                        (id, addr, result)
                    }
                })
                .collect();
            let mut answers = Vec::with_capacity(QUORUM);
            let mut fenced = None;
            while let Some((id, addr, result)) = pending.next().await {
                match result {
                    Ok(answer) => {
                        answers.push((id, addr, answer));
                        if answers.len() >= QUORUM {
                            return Ok(Attempt::Done(answers));
                        }
                    }
                    Err(ClientError::Fenced(_, fence)) => fenced = Some((addr, fence)),
                    Err(e) => tracing::warn!(node = %id, error = %e, "metadata {what} failed"),
                }
            }
            if let Some((addr, fence)) = fenced {
                self.after_fence(addr, fence).await;
                return Ok(Attempt::Again);
            }
            self.cluster.metrics().quorum_failure(what);
            Err(s3_error!(
                ServiceUnavailable,
                "metadata {what} reached {} of {QUORUM} replicas needed",
                answers.len()
            ))
        })
        .await
    }

    fn repair(&self, id: String, addr: SocketAddr, table: Table, records: Vec<Record>) {
        let cluster = self.cluster.clone();
        let epoch = cluster.layout().epoch();
        tokio::spawn(async move {
            tracing::debug!(node = %id, n = records.len(), "read repair");
            if let Err(e) = cluster
                .client()
                .meta_put(addr, epoch, table, &records)
                .await
            {
                tracing::debug!(node = %id, error = %e, "read repair failed");
            }
        });
    }
}
