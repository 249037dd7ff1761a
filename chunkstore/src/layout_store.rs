//! The storage node's own copy of the layout, kept durably in its `layout`
//! table, and the fence every metadata request passes.
//!
//! The `layout` table holds, as in 0.1, one registry record per storage
//! node (key: node id; value: a [`LayoutEntry`]; merged by last writer
//! wins), and beside them two records of the node's own under reserved
//! keys (a zero byte first, which no node id has): its
//! [`LayoutHistory`] and its Paxos [`Acceptor`] state. Those two are
//! written only here, never through a table merge.
//!
//! The fence: a metadata request carries the caller's epoch; a node at
//! another epoch refuses it (see [`Fence`]). Requests that pass the fence
//! run under a read lock, and a new epoch is installed under the write
//! lock, so everything accepted at the old epoch is committed before the
//! node answers anyone at the new one. That ordering is what makes a
//! transfer taken after a node learned an epoch contain every write the node
//! accepted before it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::layout::{Accept, Accepted, Acceptor, LayoutHistory, Placement, Prepare, Promise};
use crate::meta::MetaStore;
use crate::placement::LayoutEntry;
use crate::wire::{LayoutSnapshot, Record, Table};

/// Key of the node's layout history in the `layout` table.
pub const HISTORY_KEY: &[u8] = b"\0history";
/// Key of the node's acceptor state in the `layout` table.
pub const ACCEPTOR_KEY: &[u8] = b"\0acceptor";

/// Format of the two records above (MessagePack with field names, so a
/// later release can add fields).
const FORMAT: u32 = 1;

/// Whether a `layout` table key is one of the node's own records.
pub fn is_reserved(key: &[u8]) -> bool {
    key.first() == Some(&0)
}

#[derive(Serialize, Deserialize)]
struct Stored<T> {
    format: u32,
    value: T,
}

/// Why a metadata request did not pass the fence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fence {
    /// The caller's epoch is older than the node's: it must refresh its
    /// layout (from this node) and retry.
    Stale { node_epoch: u64 },
    /// The caller's epoch is newer: it must send the node its layout first.
    Behind { node_epoch: u64 },
    /// A conditional write sent to a node that is not the partition's
    /// primary at the caller's (and node's) epoch.
    NotPrimary { node_epoch: u64 },
}

impl Fence {
    pub fn node_epoch(&self) -> u64 {
        match self {
            Fence::Stale { node_epoch }
            | Fence::Behind { node_epoch }
            | Fence::NotPrimary { node_epoch } => *node_epoch,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Fence::Stale { .. } => "stale",
            Fence::Behind { .. } => "behind",
            Fence::NotPrimary { .. } => "not-primary",
        }
    }

    pub fn from_reason(reason: &str, node_epoch: u64) -> Option<Fence> {
        match reason {
            "stale" => Some(Fence::Stale { node_epoch }),
            "behind" => Some(Fence::Behind { node_epoch }),
            "not-primary" => Some(Fence::NotPrimary { node_epoch }),
            _ => None,
        }
    }
}

struct State {
    history: LayoutHistory,
    acceptor: Acceptor,
    placement: Arc<Placement>,
    registry: BTreeMap<String, (u64, LayoutEntry)>,
}

/// A node's layout: history, acceptor state and registry, durable.
pub struct LayoutStore {
    meta: Arc<MetaStore>,
    state: RwLock<State>,
}

/// What passed the fence: the placement at the caller's epoch, held (read
/// lock) until the request's own writes are committed.
pub struct Fenced<'a> {
    guard: RwLockReadGuard<'a, State>,
}

impl Fenced<'_> {
    pub fn placement(&self) -> &Placement {
        &self.guard.placement
    }

    pub fn epoch(&self) -> u64 {
        self.guard.history.epoch()
    }
}

impl LayoutStore {
    /// Reads the node's layout records (none on a new node, or one 0.1 wrote).
    pub fn open(meta: Arc<MetaStore>) -> anyhow::Result<LayoutStore> {
        let history: LayoutHistory = read_own(&meta, HISTORY_KEY)?.unwrap_or_default();
        let acceptor: Acceptor = read_own(&meta, ACCEPTOR_KEY)?.unwrap_or_default();
        let registry = read_registry(&meta)?;
        let placement = Arc::new(placement_of(&history, &registry));
        Ok(LayoutStore {
            meta,
            state: RwLock::new(State {
                history,
                acceptor,
                placement,
                registry,
            }),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn epoch(&self) -> u64 {
        self.read().history.epoch()
    }

    pub fn history(&self) -> LayoutHistory {
        self.read().history.clone()
    }

    pub fn placement(&self) -> Arc<Placement> {
        self.read().placement.clone()
    }

    /// Registry entries, by node id.
    pub fn registry(&self) -> BTreeMap<String, LayoutEntry> {
        self.read()
            .registry
            .iter()
            .map(|(id, (_, e))| (id.clone(), e.clone()))
            .collect()
    }

    /// Why this node must not serve, if it must not: the registry says it
    /// was removed from the layout (decommissioned, or down past the
    /// dead-node timeout), so what it holds is stale.
    pub fn removed(&self, me: &str) -> Option<String> {
        let state = self.read();
        let (_, entry) = state.registry.get(me)?;
        (entry.state == crate::placement::NodeState::Removed).then(|| {
            format!(
                "this node ({me}) was removed from the cluster's layout (decommissioned, or down \
                 longer than the dead-node timeout); its data is stale and is not served: stop it, \
                 empty its data directory and start it again to rejoin as a new node"
            )
        })
    }

    pub fn addr_of(&self, node: &str) -> Option<SocketAddr> {
        self.read().registry.get(node).map(|(_, e)| e.http_addr)
    }

    /// What `GET /layout` answers.
    pub fn snapshot(&self) -> LayoutSnapshot {
        let state = self.read();
        LayoutSnapshot {
            history: state.history.clone(),
            registry: state.registry.values().cloned().collect(),
        }
    }

    /// The fence: passes a caller at the node's epoch, and callers that
    /// carry none (0.1 processes during a rolling upgrade) or while the node
    /// has no decided layout. Hold the result while the request writes.
    pub fn fence(&self, caller_epoch: Option<u64>) -> Result<Fenced<'_>, Fence> {
        let guard = self.read();
        let node_epoch = guard.history.epoch();
        match caller_epoch {
            Some(caller) if node_epoch > 0 && caller < node_epoch => {
                Err(Fence::Stale { node_epoch })
            }
            Some(caller) if caller > node_epoch => Err(Fence::Behind { node_epoch }),
            _ => Ok(Fenced { guard }),
        }
    }

    /// Merges a history another process sent; durable before it returns.
    /// True when this node's copy changed.
    pub fn merge_history(&self, incoming: &LayoutHistory) -> anyhow::Result<bool> {
        let mut state = self.write();
        let mut merged = state.history.clone();
        if !merged.merge(incoming) {
            return Ok(false);
        }
        write_own(&self.meta, HISTORY_KEY, &merged)?;
        if merged.epoch() != state.history.epoch() {
            tracing::info!(
                epoch = merged.epoch(),
                versions = ?merged.committed.versions.iter().map(|v| v.number).collect::<Vec<_>>(),
                readable = merged.committed.readable,
                "layout: new epoch"
            );
            state.placement = Arc::new(placement_of(&merged, &state.registry));
        }
        state.history = merged;
        Ok(true)
    }

    /// Records that `node` pulled these partitions, each for its version;
    /// durable.
    pub fn record_pulls(&self, node: &str, pulls: &[(u16, u64)]) -> anyhow::Result<()> {
        let mut state = self.write();
        let mut history = state.history.clone();
        let mut raised = false;
        for &(partition, version) in pulls {
            raised |= history.synced.record(node, partition, version);
        }
        if raised {
            write_own(&self.meta, HISTORY_KEY, &history)?;
            state.history = history;
        }
        Ok(())
    }

    /// Phase 1 of Paxos at this node; the state is durable before the answer.
    pub fn prepare(&self, req: &Prepare) -> anyhow::Result<Promise> {
        let mut state = self.write();
        let epoch = state.history.epoch();
        let mut acceptor = state.acceptor.clone();
        let promise = acceptor.prepare(epoch, req);
        if acceptor != state.acceptor {
            write_own(&self.meta, ACCEPTOR_KEY, &acceptor)?;
            state.acceptor = acceptor;
        }
        Ok(promise)
    }

    /// Phase 2 of Paxos at this node; the state is durable before the answer.
    pub fn accept(&self, req: &Accept) -> anyhow::Result<Accepted> {
        let mut state = self.write();
        let epoch = state.history.epoch();
        let mut acceptor = state.acceptor.clone();
        let answer = acceptor.accept(epoch, req);
        if acceptor != state.acceptor {
            write_own(&self.meta, ACCEPTOR_KEY, &acceptor)?;
            state.acceptor = acceptor;
        }
        Ok(answer)
    }

    /// Re-reads the registry after a merge into the `layout` table.
    pub fn reload_registry(&self) -> anyhow::Result<()> {
        let registry = read_registry(&self.meta)?;
        let mut state = self.write();
        if registry != state.registry {
            if state.history.epoch() == 0 {
                state.placement = Arc::new(placement_of(&state.history, &registry));
            }
            state.registry = registry;
        }
        Ok(())
    }
}

/// Epoch 0 places partitions from the registry, as 0.1 did.
fn placement_of(
    history: &LayoutHistory,
    registry: &BTreeMap<String, (u64, LayoutEntry)>,
) -> Placement {
    if history.epoch() == 0 {
        Placement::from_registry(registry.values().map(|(_, e)| e))
    } else {
        Placement::new(&history.committed)
    }
}

fn read_own<T: serde::de::DeserializeOwned>(
    meta: &MetaStore,
    key: &[u8],
) -> anyhow::Result<Option<T>> {
    let Some(record) = meta.get(Table::Layout, key)? else {
        return Ok(None);
    };
    let Some(value) = record.value else {
        return Ok(None);
    };
    let stored: Stored<T> = rmp_serde::from_slice(&value)
        .with_context(|| format!("undecodable layout record {}", String::from_utf8_lossy(key)))?;
    anyhow::ensure!(
        stored.format <= FORMAT,
        "layout record {} has format {}, newer than this release reads ({FORMAT}): run the newer release",
        String::from_utf8_lossy(&key[1..]),
        stored.format
    );
    Ok(Some(stored.value))
}

fn write_own<T: Serialize>(meta: &MetaStore, key: &[u8], value: &T) -> anyhow::Result<()> {
    let bytes = rmp_serde::to_vec_named(&Stored {
        format: FORMAT,
        value,
    })?;
    meta.replace(Table::Layout, key, &bytes)
}

/// The registry records of the `layout` table: every record that decodes
/// as a node entry (newest per node).
fn read_registry(meta: &MetaStore) -> anyhow::Result<BTreeMap<String, (u64, LayoutEntry)>> {
    let mut registry = BTreeMap::new();
    let mut start: Vec<u8> = vec![1];
    loop {
        let (records, more) = meta.scan(Table::Layout, &start, &[], 1000, usize::MAX)?;
        for record in &records {
            if let Some((ts, entry)) = registry_entry(record) {
                registry.insert(entry.id.clone(), (ts, entry));
            }
        }
        match records.last() {
            Some(last) if more => start = [last.key.as_slice(), &[0]].concat(),
            _ => return Ok(registry),
        }
    }
}

/// A registry record's entry, if it is one.
pub fn registry_entry(record: &Record) -> Option<(u64, LayoutEntry)> {
    if is_reserved(&record.key) {
        return None;
    }
    let entry: LayoutEntry = rmp_serde::from_slice(record.value.as_deref()?).ok()?;
    (entry.id.as_bytes() == record.key.as_slice()).then_some((record.ts, entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Ballot, Committed, LayoutVersion};
    use crate::placement::{Member, NodeState};

    fn value(epoch: u64) -> Committed {
        Committed {
            epoch,
            versions: vec![LayoutVersion {
                number: 1,
                members: ["a", "b", "c"]
                    .iter()
                    .map(|id| Member {
                        id: id.to_string(),
                        zone: "z".into(),
                    })
                    .collect(),
            }],
            readable: 1,
            ..Committed::default()
        }
    }

    fn open(dir: &std::path::Path) -> (Arc<MetaStore>, LayoutStore) {
        let meta = Arc::new(MetaStore::open(&dir.join("meta.redb")).unwrap());
        let store = LayoutStore::open(meta.clone()).unwrap();
        (meta, store)
    }

    #[test]
    fn history_and_promises_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let ballot = Ballot {
            round: 3,
            proposer: "a".into(),
        };
        {
            let (_, store) = open(dir.path());
            assert!(
                store
                    .prepare(&Prepare {
                        slot: 1,
                        ballot: ballot.clone()
                    })
                    .unwrap()
                    .granted
            );
        }
        {
            let (_, store) = open(dir.path());
            // The promise is remembered: a lower ballot is refused.
            let lower = Ballot {
                round: 2,
                proposer: "z".into(),
            };
            assert!(
                !store
                    .prepare(&Prepare {
                        slot: 1,
                        ballot: lower
                    })
                    .unwrap()
                    .granted
            );
            let history = LayoutHistory {
                committed: value(1),
                ..LayoutHistory::default()
            };
            assert!(store.merge_history(&history).unwrap());
            assert!(!store.merge_history(&history).unwrap());
        }
        let (_, store) = open(dir.path());
        assert_eq!(store.epoch(), 1);
        assert_eq!(store.placement().read_set(0).len(), 3);
    }

    #[test]
    fn the_fence_passes_only_callers_at_the_node_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let (_, store) = open(dir.path());
        // No layout yet: everyone passes, but a caller ahead is told.
        assert!(store.fence(Some(0)).is_ok());
        assert!(store.fence(None).is_ok());
        assert_eq!(
            store.fence(Some(2)).err(),
            Some(Fence::Behind { node_epoch: 0 })
        );
        let history = LayoutHistory {
            committed: value(2),
            ..LayoutHistory::default()
        };
        store.merge_history(&history).unwrap();
        assert!(store.fence(Some(2)).is_ok());
        assert!(store.fence(None).is_ok(), "0.1 callers carry no epoch");
        assert_eq!(
            store.fence(Some(1)).err(),
            Some(Fence::Stale { node_epoch: 2 })
        );
        assert_eq!(
            store.fence(Some(3)).err(),
            Some(Fence::Behind { node_epoch: 2 })
        );
    }

    #[test]
    fn the_registry_is_read_beside_the_own_records() {
        let dir = tempfile::tempdir().unwrap();
        let (meta, store) = open(dir.path());
        store
            .merge_history(&LayoutHistory {
                committed: value(1),
                ..LayoutHistory::default()
            })
            .unwrap();
        let entry = LayoutEntry {
            id: "0123456789abcdef".into(),
            zone: "z".into(),
            http_addr: "127.0.0.1:9".parse().unwrap(),
            state: NodeState::Active,
        };
        meta.merge(
            Table::Layout,
            &[Record {
                key: entry.id.as_bytes().to_vec(),
                ts: 7,
                value: Some(rmp_serde::to_vec_named(&entry).unwrap()),
            }],
        )
        .unwrap();
        store.reload_registry().unwrap();
        assert_eq!(store.registry().get(&entry.id), Some(&entry));
        assert_eq!(store.snapshot().registry, vec![(7, entry)]);
    }
}
