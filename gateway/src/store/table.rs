//! Replicated metadata tables: one generic layer that every table uses.
//! A record lives on the three replicas of its partition; writes succeed at
//! two acknowledgements, reads ask two, merge their answers (per table, see
//! `chunkstore::merge`) and repair a stale replica. Conditional writes go
//! through the partition's primary.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::future::Future;
use std::net::SocketAddr;

use chunkstore::merge::merge;
use chunkstore::{CasOutcome, CasRequest, ClientError, NodeClient, Record, Table};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use s3s::{S3Result, s3_error};

use crate::limits::QUORUM;
use crate::limits::{MAX_SCAN_ROUNDS, SCAN_BATCH};
use crate::store::cluster::Cluster;
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

impl Tables {
    pub fn new(cluster: Arc<Cluster>, hlc: Arc<Hlc>) -> Tables {
        Tables { cluster, hlc }
    }

    pub fn now(&self) -> u64 {
        self.hlc.now()
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

    /// Replaces a record read earlier (a tombstone when `value` is None) at
    /// the timestamp just after the one read, so that any write made since
    /// the read wins over this one: an update of some fields of a
    /// last-writer-wins record (a bucket's tags or configurations) never
    /// undoes a concurrent delete or re-create. Two such updates of the same
    /// read race, and one of them is lost; compare-and-set through the
    /// partition's primary is the complete answer.
    pub async fn rewrite(
        &self,
        table: Table,
        partition: u16,
        read: &Record,
        value: Option<Vec<u8>>,
    ) -> S3Result<()> {
        let record = Record {
            key: read.key.clone(),
            ts: read.ts + 1,
            value,
        };
        self.put_records(table, partition, vec![record]).await
    }

    /// Writes records of one partition to all its replicas; returns once a
    /// quorum has them durably. The slower replicas finish in the background.
    pub async fn put_records(
        &self,
        table: Table,
        partition: u16,
        records: Vec<Record>,
    ) -> S3Result<()> {
        self.replicate(table, partition, records, None, QUORUM)
            .await
    }

    /// A conditional write. It is checked and written on the partition's
    /// primary (the first live replica in layout order), whose one write
    /// transaction at a time serialises conditional writes of a key; the
    /// written record then goes to the other replicas, and this returns once
    /// a quorum (the primary included) holds it.
    pub async fn cas(&self, table: Table, partition: u16, req: CasRequest) -> S3Result<CasOutcome> {
        let nodes = self.cluster.partition_nodes(partition);
        let Some((id, addr, true)) = nodes.into_iter().next() else {
            self.cluster.metrics().quorum_failure("cas");
            return Err(s3_error!(
                ServiceUnavailable,
                "metadata partition {partition} has no live replica"
            ));
        };
        let outcome = {
            let _guard = self.cluster.track(&id);
            self.cluster
                .client()
                .meta_cas(addr, table, &req)
                .await
                .map_err(|e| {
                    self.cluster.metrics().quorum_failure("cas");
                    s3_error!(ServiceUnavailable, "conditional write on {id} failed: {e}")
                })?
        };
        if let CasOutcome::Written(record) = &outcome {
            self.hlc.observe(record.ts);
            self.replicate(
                table,
                partition,
                vec![record.clone()],
                Some(&id),
                QUORUM - 1,
            )
            .await?;
        }
        Ok(outcome)
    }

    /// Writes records to the replicas of a partition but `skip`, and returns
    /// once `needed` of them have them durably.
    async fn replicate(
        &self,
        table: Table,
        partition: u16,
        records: Vec<Record>,
        skip: Option<&str>,
        needed: usize,
    ) -> S3Result<()> {
        let nodes: Vec<_> = self
            .cluster
            .partition_nodes(partition)
            .into_iter()
            .filter(|(id, _, _)| Some(id.as_str()) != skip)
            .collect();
        if nodes.len() < needed {
            self.cluster.metrics().quorum_failure("write");
            return Err(s3_error!(
                ServiceUnavailable,
                "metadata partition {partition} has {} reachable replicas",
                nodes.len()
            ));
        }
        if needed == 0 {
            return Ok(());
        }
        let records = Arc::new(records);
        let (tx, mut rx) = tokio::sync::mpsc::channel(nodes.len());
        for (id, addr, _) in nodes {
            let tx = tx.clone();
            let records = records.clone();
            let cluster = self.cluster.clone();
            tokio::spawn(async move {
                let _guard = cluster.track(&id);
                let result = cluster.client().meta_put(addr, table, &records).await;
                if let Err(e) = &result {
                    tracing::warn!(node = %id, error = %e, "metadata write failed");
                }
                let _ = tx.send(result.is_ok()).await;
            });
        }
        drop(tx);
        let mut acks = 0;
        while let Some(ok) = rx.recv().await {
            if ok {
                acks += 1;
                if acks >= needed {
                    return Ok(());
                }
            }
        }
        self.cluster.metrics().quorum_failure("write");
        Err(s3_error!(
            ServiceUnavailable,
            "metadata write reached {acks} of {needed} replicas needed"
        ))
    }

    /// Reads a record at quorum; the answers are merged and replicas that
    /// lack the merge are repaired in the background. Tombstones come back
    /// as `None`.
    pub async fn get(&self, table: Table, partition: u16, key: &[u8]) -> S3Result<Option<Record>> {
        let answers = self
            .ask_quorum(partition, "read", |client, addr| async move {
                client.meta_get(addr, table, key).await
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
            .ask_quorum(partition, "scan", |client, addr| async move {
                client.meta_scan(addr, table, start, end, limit).await
            })
            .await?;

        // A replica that filled its limit may hold more keys than it sent; the
        // merged page is only complete up to the smallest last key of those.
        let cut: Option<Vec<u8>> = answers
            .iter()
            .filter(|(_, _, r)| r.len() >= limit as usize)
            .filter_map(|(_, _, r)| r.last().map(|rec| rec.key.clone()))
            .min();

        let mut merged: BTreeMap<Vec<u8>, Record> = BTreeMap::new();
        for (_, _, records) in &answers {
            for r in records {
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
        for (id, addr, records) in &answers {
            let have: BTreeMap<&[u8], &Record> =
                records.iter().map(|r| (r.key.as_slice(), r)).collect();
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

    /// Asks every replica of a partition at once and returns the first
    /// `QUORUM` answers (node id, address, answer), or 503 when fewer come.
    async fn ask_quorum<'a, T, F, Fut>(
        &self,
        partition: u16,
        what: &str,
        ask: F,
    ) -> S3Result<Vec<(String, SocketAddr, T)>>
    where
        F: Fn(NodeClient, SocketAddr) -> Fut,
        Fut: Future<Output = Result<T, ClientError>> + 'a,
    {
        let mut pending: FuturesUnordered<_> = self
            .cluster
            .partition_nodes(partition)
            .into_iter()
            .map(|(id, addr, _)| {
                let guard = self.cluster.track(&id);
                let answer = ask(self.cluster.client().clone(), addr);
                async move {
                    let result = answer.await;
                    drop(guard);
                    (id, addr, result)
                }
            })
            .collect();
        let mut answers = Vec::with_capacity(QUORUM);
        while let Some((id, addr, result)) = pending.next().await {
            match result {
                Ok(answer) => {
                    answers.push((id, addr, answer));
                    if answers.len() >= QUORUM {
                        return Ok(answers);
                    }
                }
                Err(e) => tracing::warn!(node = %id, error = %e, "metadata {what} failed"),
            }
        }
        self.cluster.metrics().quorum_failure(what);
        Err(s3_error!(
            ServiceUnavailable,
            "metadata {what} reached {} of {QUORUM} replicas needed",
            answers.len()
        ))
    }

    fn repair(&self, id: String, addr: SocketAddr, table: Table, records: Vec<Record>) {
        let cluster = self.cluster.clone();
        tokio::spawn(async move {
            tracing::debug!(node = %id, n = records.len(), "read repair");
            if let Err(e) = cluster.client().meta_put(addr, table, &records).await {
                tracing::debug!(node = %id, error = %e, "read repair failed");
            }
        });
    }
}
