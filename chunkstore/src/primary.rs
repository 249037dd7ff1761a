//! Conditional writes on a partition's primary.
//!
//! Everything that must be serialised (`If-None-Match: *` and `If-Match`
//! writes, bucket creation, read-modify-writes of bucket configurations and
//! key grants, multipart upload state) is a [`ConditionalWrite`] sent to the
//! partition's primary at the caller's layout epoch. The primary is a
//! function of the epoch ([`crate::layout::Placement::primary`]), so all
//! callers at one epoch send to the same node, and a node refuses a
//! conditional write unless it is that primary at the caller's epoch.
//!
//! The primary takes the key's lock, reads the record from a quorum of the
//! readable replicas, checks the condition, and writes the result to a
//! quorum of every live version's replicas (the others first, itself last),
//! all at its epoch. Its reads and
//! writes pass the other replicas' fences: once a newer epoch (with another
//! primary) has reached a quorum of the readable replicas, an older primary
//! can neither read nor write at quorum, so two primaries never both
//! succeed. A write that reached fewer than a quorum answers 503; the copies
//! it left may surface later, as with any write that was not acknowledged.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::Mutex;

use crate::client::ClientError;
use crate::layout::{Placement, QUORUM};
use crate::layout_store::Fence;
use crate::limits::PRIMARY_KEY_LOCKS;
use crate::merge::{condition_holds, current_etag, holds, merge, merge_into};
use crate::meta::MetaStore;
use crate::peers::Peers;
use crate::placement::partition_of;
use crate::wire::{
    CasOutcome, CasRequest, Condition, ConditionalOutcome, ConditionalWrite, Expect, GuardedWrite,
    Record, Table,
};

/// How long a conditional write of a 0.1 caller waits for the node that
/// must check it to answer again (a restart takes a second or two) or for
/// a newer epoch with another primary (the layout leader replaces a primary
/// that stays down 3 s), before it answers 503; as a 0.2 gateway waits.
const LEGACY_FORWARD_PATIENCE: Duration = Duration::from_secs(10);
const LEGACY_FORWARD_PAUSE: Duration = Duration::from_millis(250);

/// Why one attempt at a 0.1 caller's conditional write failed.
enum Retry {
    /// The primary (or first replica) did not answer, or the layout moved.
    Again(String),
    Never(Refusal),
}

/// Why a conditional write was not carried out.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The caller must refresh its layout (or send it) and retry.
    Fenced(Fence),
    /// Too few replicas answered: 503 to the client.
    Unavailable(String),
    /// A request that can never succeed.
    Invalid(String),
}

pub(crate) struct Primary {
    peers: Peers,
    meta: Arc<MetaStore>,
    locks: Vec<Mutex<()>>,
    /// How long deletions are remembered (see `crate::sync`).
    horizon: std::time::Duration,
}

impl Primary {
    pub(crate) fn new(peers: Peers, meta: Arc<MetaStore>, horizon: std::time::Duration) -> Primary {
        Primary {
            peers,
            meta,
            locks: (0..PRIMARY_KEY_LOCKS).map(|_| Mutex::new(())).collect(),
            horizon,
        }
    }

    fn stripe_of(table: Table, key: &[u8]) -> usize {
        let mut h = DefaultHasher::new();
        (table.name(), key).hash(&mut h);
        (h.finish() % PRIMARY_KEY_LOCKS as u64) as usize
    }

    fn lock_of(&self, table: Table, key: &[u8]) -> &Mutex<()> {
        &self.locks[Self::stripe_of(table, key)]
    }

    /// The placement at `epoch` if this node is `partition`'s primary at
    /// that epoch, which is also its own.
    fn placement_as_primary(&self, epoch: u64, partition: u16) -> Result<Arc<Placement>, Refusal> {
        let fenced = self
            .peers
            .layout
            .fence(Some(epoch))
            .map_err(Refusal::Fenced)?;
        let node_epoch = fenced.epoch();
        if node_epoch == 0 {
            return Err(Refusal::Invalid(
                "no layout is decided yet; conditional writes wait for one".into(),
            ));
        }
        if fenced.placement().primary(partition) != Some(&*self.peers.node_id) {
            return Err(Refusal::Fenced(Fence::NotPrimary { node_epoch }));
        }
        drop(fenced);
        let placement = self.peers.layout.placement();
        if placement.epoch != epoch {
            return Err(Refusal::Fenced(Fence::Stale {
                node_epoch: placement.epoch,
            }));
        }
        Ok(placement)
    }

    /// Carries out a conditional write for a caller at `epoch`.
    pub(crate) async fn conditional(
        &self,
        table: Table,
        epoch: u64,
        req: ConditionalWrite,
    ) -> Result<ConditionalOutcome, Refusal> {
        let key = req.write.key.clone();
        let partition = partition_of(&key)
            .ok_or_else(|| Refusal::Invalid("a key of at least two bytes is needed".into()))?;
        let placement = self.placement_as_primary(epoch, partition)?;

        let _serialised = self.lock_of(table, &key).lock().await;
        let current = self.read_quorum(&placement, table, partition, &key).await?;
        // A retry of this very write, whose first attempt passed its
        // condition and landed on some replicas before its primary was
        // fenced: it is written (to a quorum now), not refused by itself.
        let retried = current
            .as_ref()
            .is_some_and(|c| holds(table, c, &req.write));
        if !retried && !condition_holds(table, &req.condition, current.as_ref()) {
            return Ok(ConditionalOutcome {
                written: false,
                record: current,
            });
        }
        let mut write = req.write;
        if table != Table::Objects
            && let Some(c) = &current
            && write.ts <= c.ts
            && !retried
        {
            // Last writer wins on these tables: the write that passed its
            // condition must win over the record it was checked against.
            write.ts = c.ts + 1;
        }
        let written = merge_into(table, current, &write);
        self.write_quorum(&placement, table, partition, &written)
            .await?;
        Ok(ConditionalOutcome {
            written: true,
            record: Some(written),
        })
    }

    /// A conditional write from a caller of 0.1 (a gateway during a rolling
    /// upgrade, or one that has no decided layout yet). 0.1 checked it on
    /// the node asked, which each gateway picks by its own view of who is
    /// alive: two gateways that disagree for a moment (a node just
    /// restarted) would let two racing creates both win. So it is checked
    /// where every other conditional write of the key is: on the primary
    /// once a layout is decided; before that, on the partition's first
    /// replica, the node 0.1 gateways pick while it is alive. `forwarded`:
    /// another node sent it here to be checked, so it is not sent on.
    ///
    /// While that node does not answer (a restart) this waits, bounded, as
    /// a 0.2 gateway does, re-reading the layout: a newer epoch names
    /// another primary. A retry is safe: a write that already landed is
    /// found written, not refused by itself.
    pub(crate) async fn legacy(
        &self,
        table: Table,
        req: CasRequest,
        forwarded: bool,
    ) -> Result<CasOutcome, Refusal> {
        if table != Table::Objects {
            return Err(Refusal::Invalid(
                "conditions are defined on object records only".into(),
            ));
        }
        let partition = partition_of(&req.write.key)
            .ok_or_else(|| Refusal::Invalid("a key of at least two bytes is needed".into()))?;
        let me = &*self.peers.node_id;
        let deadline = tokio::time::Instant::now() + LEGACY_FORWARD_PATIENCE;
        loop {
            let placement = self.peers.layout.placement();
            let attempt = if placement.epoch > 0 {
                self.legacy_on_primary(table, partition, &placement, &req)
                    .await
            } else {
                match placement.read_set(partition).first() {
                    Some(first) if !forwarded && first.as_str() != me => {
                        self.legacy_on(first, table, &req).await
                    }
                    _ => {
                        let (meta, req) = (self.meta.clone(), req.clone());
                        return local(move || meta.cas(table, &req).map_err(Local::Failed))
                            .await
                            .map_err(|e| Refusal::Unavailable(e.to_string()));
                    }
                }
            };
            match attempt {
                Ok(outcome) => return Ok(outcome),
                Err(Retry::Again(why)) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(%why, "conditional write of a 0.1 caller: trying again");
                    tokio::time::sleep(LEGACY_FORWARD_PAUSE).await;
                }
                Err(Retry::Again(why)) => return Err(Refusal::Unavailable(why)),
                Err(Retry::Never(refusal)) => return Err(refusal),
            }
        }
    }

    /// A 0.1 conditional write on the partition's primary at `placement`.
    async fn legacy_on_primary(
        &self,
        table: Table,
        partition: u16,
        placement: &Placement,
        req: &CasRequest,
    ) -> Result<CasOutcome, Retry> {
        // The primary reads a quorum itself: what the caller saw is in it if
        // it was ever acknowledged.
        let write = ConditionalWrite {
            condition: match &req.expect {
                Expect::Absent => Condition::Absent,
                Expect::ETag(etag) => Condition::ETag(etag.clone()),
            },
            write: req.write.clone(),
        };
        let Some(primary) = placement.primary(partition) else {
            return Err(Retry::Again(format!(
                "partition {partition} has no primary"
            )));
        };
        let outcome = if primary == &*self.peers.node_id {
            match self.conditional(table, placement.epoch, write).await {
                Ok(outcome) => outcome,
                Err(Refusal::Invalid(why)) => return Err(Retry::Never(Refusal::Invalid(why))),
                Err(Refusal::Fenced(fence)) => return Err(Retry::Again(format!("{fence:?}"))),
                Err(Refusal::Unavailable(why)) => return Err(Retry::Again(why)),
            }
        } else {
            self.peers
                .call(primary, placement.epoch, |client, addr, epoch| {
                    let write = &write;
                    async move { client.conditional(addr, epoch, table, write).await }
                })
                .await
                .map_err(|e| {
                    let why = format!("conditional write on the primary {primary}: {e}");
                    match e {
                        ClientError::Status(_, 400, _) => Retry::Never(Refusal::Invalid(why)),
                        _ => Retry::Again(why),
                    }
                })?
        };
        Ok(match outcome {
            ConditionalOutcome {
                written: true,
                record: Some(record),
            } => CasOutcome::Written(record),
            ConditionalOutcome { record, .. } => CasOutcome::Refused {
                current_etag: current_etag(record.as_ref()),
            },
        })
    }

    /// A 0.1 conditional write sent on to `node`, which checks it on its
    /// own (a 0.1 node, or a 0.2 node without a decided layout).
    async fn legacy_on(
        &self,
        node: &str,
        table: Table,
        req: &CasRequest,
    ) -> Result<CasOutcome, Retry> {
        let addr = self
            .peers
            .addr(node)
            .ok_or_else(|| Retry::Again(format!("node {node} is not in the registry")))?;
        self.peers
            .client
            .meta_cas_legacy(addr, table, req, true)
            .await
            .map_err(|e| {
                let why =
                    format!("conditional write on {node}, the partition's first replica: {e}");
                match e {
                    ClientError::Status(_, 400, _) => Retry::Never(Refusal::Invalid(why)),
                    _ => Retry::Again(why),
                }
            })
    }

    /// Carries out a guarded write for a caller at `epoch`: `req.write`
    /// only if the condition holds on the guard record, under the guard
    /// key's lock, so it is serialised with the guard's conditional writes.
    pub(crate) async fn guarded(
        &self,
        table: Table,
        epoch: u64,
        req: GuardedWrite,
    ) -> Result<ConditionalOutcome, Refusal> {
        let partition = partition_of(&req.write.key)
            .ok_or_else(|| Refusal::Invalid("a key of at least two bytes is needed".into()))?;
        if partition_of(&req.guard_key) != Some(partition) {
            return Err(Refusal::Invalid(
                "a guarded write and its guard must be in one partition".into(),
            ));
        }
        let placement = self.placement_as_primary(epoch, partition)?;
        // Both keys' locks, in stripe order (two guarded writes never wait
        // for each other crosswise); the written key's too, so a conditional
        // write of it (a repair) does not interleave.
        let mut stripes = vec![
            Self::stripe_of(req.guard_table, &req.guard_key),
            Self::stripe_of(table, &req.write.key),
        ];
        stripes.sort_unstable();
        stripes.dedup();
        let mut _serialised = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            _serialised.push(self.locks[stripe].lock().await);
        }
        let guard = self
            .read_quorum(&placement, req.guard_table, partition, &req.guard_key)
            .await?;
        if !condition_holds(req.guard_table, &req.condition, guard.as_ref()) {
            return Ok(ConditionalOutcome {
                written: false,
                record: guard,
            });
        }
        let mut write = req.write;
        if table != Table::Objects
            && let Some(current) = self
                .read_quorum(&placement, table, partition, &write.key)
                .await?
            && write.ts <= current.ts
        {
            // Last writer wins: the write that passed its guard must win
            // over what it replaces.
            write.ts = current.ts + 1;
        }
        self.write_quorum(&placement, table, partition, &write)
            .await?;
        Ok(ConditionalOutcome {
            written: true,
            record: guard,
        })
    }

    /// The record merged from a quorum of the readable replicas.
    async fn read_quorum(
        &self,
        placement: &Placement,
        table: Table,
        partition: u16,
        key: &[u8],
    ) -> Result<Option<Record>, Refusal> {
        let epoch = placement.epoch;
        let mut pending: FuturesUnordered<_> = placement
            .read_set(partition)
            .iter()
            .map(|node| async move {
                let answer = if node.as_str() == &*self.peers.node_id {
                    self.local_get(epoch, table, key).await
                } else {
                    self.peers
                        .call(node, epoch, |client, addr, epoch| async move {
                            client.meta_get(addr, epoch, table, key).await
                        })
                        .await
                };
                (node, answer)
            })
            .collect();
        let mut answers = 0;
        let mut merged: Option<Record> = None;
        let mut errors = Vec::new();
        while let Some((node, answer)) = pending.next().await {
            match answer {
                Ok(record) => {
                    answers += 1;
                    merged = match (merged, record) {
                        (Some(a), Some(b)) => Some(merge(table, &a, &b)),
                        (a, b) => a.or(b),
                    };
                    if answers >= QUORUM {
                        return Ok(merged);
                    }
                }
                Err(ClientError::Fenced(_, fence @ Fence::Stale { .. })) => {
                    return Err(Refusal::Fenced(fence));
                }
                Err(e) => errors.push(format!("{node}: {e}")),
            }
        }
        Err(Refusal::Unavailable(format!(
            "conditional write: {answers} of {QUORUM} replicas answered the read ({})",
            errors.join("; ")
        )))
    }

    /// Writes `record` until every live version's replicas have a quorum:
    /// first to the other replicas, and here only once they make the
    /// quorum complete with this copy. A write the others refuse (a clock
    /// far ahead, a newer epoch) or cannot take then leaves nothing behind
    /// here, where a later read would find it.
    async fn write_quorum(
        &self,
        placement: &Placement,
        table: Table,
        partition: u16,
        record: &Record,
    ) -> Result<(), Refusal> {
        let epoch = placement.epoch;
        let me = &*self.peers.node_id;
        let records = std::slice::from_ref(record);
        let mut pending: FuturesUnordered<_> = placement
            .write_nodes(partition)
            .into_iter()
            .filter(|node| node.as_str() != me)
            .map(|node| async move {
                let answer = self
                    .peers
                    .call(&node, epoch, |client, addr, epoch| async move {
                        client.meta_put(addr, epoch, table, records).await
                    })
                    .await;
                (node, answer)
            })
            .collect();
        let sets: Vec<&[String]> = placement.write_sets(partition).collect();
        let complete_with_local = |acked: &[String]| {
            sets.iter().all(|set| {
                let here = usize::from(set.iter().any(|id| id.as_str() == me));
                set.iter().filter(|id| acked.contains(id)).count() + here >= QUORUM
            })
        };
        let mut acked: Vec<String> = Vec::new();
        let mut errors = Vec::new();
        let mut stale = None;
        while !complete_with_local(&acked) {
            let Some((node, answer)) = pending.next().await else {
                break;
            };
            match answer {
                Ok(()) => acked.push(node),
                // Not a reason to stop: the other replicas may still make a
                // quorum, and a write they acknowledge at this epoch is one a
                // newer epoch's transfers and primary see (they learned it
                // after taking the write).
                Err(ClientError::Fenced(_, fence @ Fence::Stale { .. })) => stale = Some(fence),
                Err(e) => errors.push(format!("{node}: {e}")),
            }
        }
        if complete_with_local(&acked) {
            let here = sets
                .iter()
                .any(|set| set.iter().any(|id| id.as_str() == me));
            if !here {
                return Ok(());
            }
            match self.local_merge(epoch, table, record.clone()).await {
                Ok(()) => return Ok(()),
                Err(ClientError::Fenced(_, fence)) => return Err(Refusal::Fenced(fence)),
                Err(e) => errors.push(format!("{me} (here): {e}")),
            }
        }
        if let Some(fence) = stale {
            return Err(Refusal::Fenced(fence));
        }
        Err(Refusal::Unavailable(format!(
            "conditional write reached {} replicas, not a quorum of every replica set ({})",
            acked.len(),
            errors.join("; ")
        )))
    }

    async fn local_get(
        &self,
        epoch: u64,
        table: Table,
        key: &[u8],
    ) -> Result<Option<Record>, ClientError> {
        let (layout, meta, key) = (self.peers.layout.clone(), self.meta.clone(), key.to_vec());
        local(move || {
            let _fenced = layout.fence(Some(epoch)).map_err(Local::Fenced)?;
            meta.get(table, &key).map_err(Local::Failed)
        })
        .await
    }

    async fn local_merge(
        &self,
        epoch: u64,
        table: Table,
        record: Record,
    ) -> Result<(), ClientError> {
        let (layout, meta) = (self.peers.layout.clone(), self.meta.clone());
        let cutoff = crate::sync::forget_before(self.horizon);
        local(move || {
            let _fenced = layout.fence(Some(epoch)).map_err(Local::Fenced)?;
            meta.merge_after(table, std::slice::from_ref(&record), cutoff)
                .map(drop)
                .map_err(Local::Failed)
        })
        .await
    }
}

enum Local {
    Fenced(Fence),
    Failed(anyhow::Error),
}

/// Runs a fenced local metadata operation off the async threads, with the
/// same errors a peer's answer would give.
async fn local<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Local> + Send + 'static,
) -> Result<T, ClientError> {
    let here = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(Local::Fenced(fence))) => Err(ClientError::Fenced(here, fence)),
        Ok(Err(Local::Failed(e))) => Err(ClientError::Status(here, 500, format!("{e:#}"))),
        Err(e) => Err(ClientError::Status(
            here,
            500,
            format!("metadata task failed: {e}"),
        )),
    }
}
