//! The gateway's view of the cluster: the layout (every storage node that
//! holds data, alive or not), which of them are alive and how loaded, where a
//! metadata partition lives (rendezvous hashing) and where a new chunk goes
//! (power of two choices by load).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chunkstore::placement::{LayoutEntry, META_REPLICAS, NodeState, PARTITIONS, replicas};
use chunkstore::{NodeClient, Record, Table};
use membership::{MemberState, Role, Snapshot};
use rand::seq::IndexedRandom;
use tokio::sync::watch;

use crate::limits::{LAYOUT_REFRESH, REPLICAS};
use crate::metrics::GatewayMetrics;
use crate::store::hlc::Hlc;

/// The storage nodes that hold partitions, and the replica set of every
/// partition computed from them.
#[derive(Debug, Default)]
pub struct Layout {
    nodes: BTreeMap<String, (u64, LayoutEntry)>,
    /// Replica node ids per partition, index = partition (system partition last).
    replicas: Vec<Vec<String>>,
}

impl Layout {
    fn from_nodes(nodes: BTreeMap<String, (u64, LayoutEntry)>) -> Layout {
        let entries: Vec<&LayoutEntry> = nodes.values().map(|(_, e)| e).collect();
        let replicas = (0..=PARTITIONS)
            .map(|p| replicas(p, entries.iter().copied(), META_REPLICAS))
            .collect();
        Layout { nodes, replicas }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn entry(&self, id: &str) -> Option<&LayoutEntry> {
        self.nodes.get(id).map(|(_, e)| e)
    }

    /// A node's state in the layout; None when the layout does not know it.
    pub fn state(&self, id: &str) -> Option<NodeState> {
        self.entry(id).map(|e| e.state)
    }

    pub fn entries(&self) -> impl Iterator<Item = &LayoutEntry> {
        self.nodes.values().map(|(_, e)| e)
    }

    /// Every partition's replicas: equal placements mean no record moves.
    pub fn placement(&self) -> &[Vec<String>] {
        &self.replicas
    }

    pub fn partition_replicas(&self, partition: u16) -> &[String] {
        self.replicas
            .get(partition as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// A live storage node a request can go to.
#[derive(Clone, Debug)]
pub struct NodeRef {
    pub id: String,
    pub addr: SocketAddr,
    pub zone: String,
    /// Load: requests this gateway has in flight there, the node's own
    /// in-flight count and how full its disk is. Lower is better.
    pub score: u64,
}

pub struct Cluster {
    membership: watch::Receiver<Arc<Snapshot>>,
    layout: RwLock<Arc<Layout>>,
    /// Requests this gateway has in flight per node: the freshest load signal.
    in_flight: Mutex<HashMap<String, Arc<AtomicU32>>>,
    client: NodeClient,
    hlc: Arc<Hlc>,
    metrics: GatewayMetrics,
}

/// Counts a request to a node while it is alive.
pub struct InFlight(Arc<AtomicU32>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Cluster {
    pub fn new(
        membership: watch::Receiver<Arc<Snapshot>>,
        client: NodeClient,
        hlc: Arc<Hlc>,
    ) -> Arc<Cluster> {
        Arc::new(Cluster {
            membership,
            layout: RwLock::new(Arc::new(Layout::default())),
            in_flight: Mutex::new(HashMap::new()),
            client,
            hlc,
            metrics: GatewayMetrics::new(),
        })
    }

    /// The gateway's metrics, for every component to count into.
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.metrics
    }

    pub fn client(&self) -> &NodeClient {
        &self.client
    }

    pub fn layout(&self) -> Arc<Layout> {
        match self.layout.read() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.membership.borrow().clone()
    }

    pub fn track(&self, node_id: &str) -> InFlight {
        let counter = {
            let mut map = match self.in_flight.lock() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            map.entry(node_id.to_string()).or_default().clone()
        };
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter)
    }

    fn local_in_flight(&self, node_id: &str) -> u32 {
        let map = match self.in_flight.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.get(node_id)
            .map(|c| c.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Storage nodes alive now, with a load score (lower is better).
    pub fn live_storage(&self) -> Vec<NodeRef> {
        let snapshot = self.snapshot();
        snapshot
            .live_storage()
            .map(|m| {
                let (reported, fullness) = match &m.load {
                    Some(l) if l.capacity_bytes > 0 => (
                        u64::from(l.in_flight),
                        l.used_bytes.saturating_mul(16) / l.capacity_bytes,
                    ),
                    Some(l) => (u64::from(l.in_flight), 0),
                    None => (0, 0),
                };
                NodeRef {
                    id: m.id.clone(),
                    addr: m.http_addr,
                    zone: m.zone.clone(),
                    score: u64::from(self.local_in_flight(&m.id)) * 4 + reported + fullness,
                }
            })
            .collect()
    }

    /// Where a node is reachable now: membership first (it follows restarts),
    /// then the layout.
    pub fn addr_of(&self, node_id: &str) -> Option<SocketAddr> {
        let snapshot = self.snapshot();
        if let Some(m) = snapshot.get(node_id) {
            return Some(m.http_addr);
        }
        self.layout().entry(node_id).map(|e| e.http_addr)
    }

    pub fn is_live(&self, node_id: &str) -> bool {
        self.snapshot()
            .get(node_id)
            .is_some_and(|m| m.role == Role::Storage && m.state != MemberState::Down)
    }

    /// Replicas of a partition that could answer now, live ones first.
    pub fn partition_nodes(&self, partition: u16) -> Vec<(String, SocketAddr, bool)> {
        let layout = self.layout();
        let mut nodes: Vec<(String, SocketAddr, bool)> = layout
            .partition_replicas(partition)
            .iter()
            .filter_map(|id| {
                let addr = self.addr_of(id)?;
                Some((id.clone(), addr, self.is_live(id)))
            })
            .collect();
        nodes.sort_by_key(|(_, _, live)| !*live);
        nodes
    }

    /// Chooses a node for a new chunk replica among live nodes not in
    /// `exclude`: two random candidates, the less loaded wins; nodes in zones
    /// not yet used by this chunk are preferred.
    pub fn place(&self, exclude: &[NodeRef]) -> Option<NodeRef> {
        let layout = self.layout();
        // Draining and removed nodes take no new chunks.
        let candidates: Vec<NodeRef> = self
            .live_storage()
            .into_iter()
            .filter(|n| !exclude.iter().any(|e| e.id == n.id))
            .filter(|n| layout.state(&n.id).is_none_or(|s| s == NodeState::Active))
            .collect();
        let fresh_zone: Vec<&NodeRef> = candidates
            .iter()
            .filter(|n| !exclude.iter().any(|e| e.zone == n.zone))
            .collect();
        let pool: Vec<&NodeRef> = if fresh_zone.is_empty() {
            candidates.iter().collect()
        } else {
            fresh_zone
        };
        let mut rng = rand::rng();
        let picks: Vec<&&NodeRef> = pool.choose_multiple(&mut rng, 2).collect();
        picks
            .into_iter()
            .min_by_key(|n| n.score)
            .map(|n| (*n).clone())
    }

    /// Keeps the layout up to date until the process ends: every storage node
    /// seen through membership is added, the layout recorded on the live
    /// storage nodes (by any gateway, earlier) is merged in, so a restarted
    /// gateway still knows nodes that are down now, and every live node is
    /// given the entries it lacks.
    pub async fn maintain_layout(self: Arc<Self>) {
        self.keep_layout(true).await;
    }

    /// Keeps this process's view of the layout up to date without writing
    /// it (the storage nodes' background workers: gateways maintain it).
    pub async fn follow_layout(self: Arc<Self>) {
        self.keep_layout(false).await;
    }

    async fn keep_layout(self: Arc<Self>, write: bool) {
        let mut watch = self.membership.clone();
        loop {
            self.refresh(write).await;
            tokio::select! {
                _ = tokio::time::sleep(LAYOUT_REFRESH) => {}
                changed = watch.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// One round of [`Cluster::maintain_layout`].
    pub async fn refresh_layout(&self) {
        self.refresh(true).await;
    }

    async fn refresh(&self, write: bool) {
        let current = self.layout();
        let mut nodes = current.nodes.clone();
        let live = self.live_storage();

        // What the live storage nodes remember (a follower asks a few: the
        // writers make every node hold the whole layout).
        let asked = if write { live.len() } else { REPLICAS };
        let scans = live.iter().take(asked).map(|node| async move {
            match self
                .client
                .meta_scan(node.addr, Table::Layout, &[], &[], 10_000)
                .await
            {
                Ok(records) => Some(records),
                Err(e) => {
                    tracing::debug!(node = %node.id, error = %e, "layout scan failed");
                    None
                }
            }
        });
        let held = futures::future::join_all(scans).await;
        for records in held.iter().flatten() {
            merge_layout_records(&mut nodes, records);
        }

        if write {
            // What membership shows now.
            for node in &live {
                let state = nodes
                    .get(&node.id)
                    .map(|(_, e)| e.state)
                    .unwrap_or_default();
                if state == NodeState::Removed {
                    // Decommissioned: it stays out even while it still runs.
                    continue;
                }
                let entry = LayoutEntry {
                    id: node.id.clone(),
                    zone: node.zone.clone(),
                    http_addr: node.addr,
                    state,
                };
                if nodes.get(&node.id).map(|(_, e)| e) != Some(&entry) {
                    nodes.insert(node.id.clone(), (self.hlc.now(), entry));
                }
            }
            // Every live node gets what it lacks or holds older: a node that
            // missed a write (down, busy, or joined later) catches up here,
            // whichever gateway or round made the entry.
            for (node, records) in live.iter().zip(&held) {
                let Some(records) = records else { continue };
                let have: HashMap<&[u8], u64> =
                    records.iter().map(|r| (r.key.as_slice(), r.ts)).collect();
                let missing: Vec<Record> = nodes
                    .values()
                    .filter(|(ts, e)| have.get(e.id.as_bytes()).is_none_or(|held| held < ts))
                    .filter_map(|(ts, e)| match rmp_serde::to_vec_named(e) {
                        Ok(value) => Some(Record {
                            key: e.id.as_bytes().to_vec(),
                            ts: *ts,
                            value: Some(value),
                        }),
                        Err(err) => {
                            tracing::warn!(error = %err, "layout entry encoding failed");
                            None
                        }
                    })
                    .collect();
                if missing.is_empty() {
                    continue;
                }
                if let Err(e) = self
                    .client
                    .meta_put(node.addr, Table::Layout, &missing)
                    .await
                {
                    tracing::debug!(node = %node.id, error = %e, "layout write failed");
                }
            }
        }

        if nodes != current.nodes {
            tracing::info!(nodes = nodes.len(), "layout changed");
            self.install(nodes);
        }
    }

    /// Records a node's new state in the layout on every live storage node
    /// (at least [`REPLICAS`] must take it, or fewer if fewer are alive),
    /// and in this gateway's view at once.
    pub async fn set_node_state(&self, id: &str, state: NodeState) -> Result<(), String> {
        let layout = self.layout();
        let mut nodes = layout.nodes.clone();
        let Some((_, entry)) = nodes.get(id) else {
            return Err(format!("node {id} is not in the layout"));
        };
        let entry = LayoutEntry {
            state,
            ..entry.clone()
        };
        let ts = self.hlc.now();
        let value = rmp_serde::to_vec_named(&entry).map_err(|e| e.to_string())?;
        let record = Record {
            key: entry.id.as_bytes().to_vec(),
            ts,
            value: Some(value),
        };
        let live = self.live_storage();
        let mut acks = 0;
        for node in &live {
            match self
                .client
                .meta_put(node.addr, Table::Layout, std::slice::from_ref(&record))
                .await
            {
                Ok(()) => acks += 1,
                Err(e) => tracing::warn!(node = %node.id, error = %e, "layout write failed"),
            }
        }
        if acks < REPLICAS.min(live.len()) || acks == 0 {
            return Err(format!(
                "the layout change reached {acks} of {} live storage nodes",
                live.len()
            ));
        }
        tracing::info!(node = id, ?state, "layout: node state changed");
        nodes.insert(entry.id.clone(), (ts, entry));
        self.install(nodes);
        Ok(())
    }

    fn install(&self, nodes: BTreeMap<String, (u64, LayoutEntry)>) {
        let layout = Arc::new(Layout::from_nodes(nodes));
        match self.layout.write() {
            Ok(mut l) => *l = layout,
            Err(poisoned) => *poisoned.into_inner() = layout,
        }
    }
}

fn merge_layout_records(nodes: &mut BTreeMap<String, (u64, LayoutEntry)>, records: &[Record]) {
    for record in records {
        let Some(value) = &record.value else { continue };
        let Ok(entry) = rmp_serde::from_slice::<LayoutEntry>(value) else {
            continue;
        };
        let newer = nodes.get(&entry.id).is_none_or(|(ts, _)| record.ts > *ts);
        if newer {
            nodes.insert(entry.id.clone(), (record.ts, entry));
        }
    }
}
