//! This process's view of the cluster: the layout (the registry of storage
//! nodes, alive or not, and the layout history that says which of them hold
//! which partitions in which version), which nodes are alive and how
//! loaded, where a metadata partition is read and written, and where a new
//! chunk goes (power of two choices by load).
//!
//! The layout is read from the storage nodes (`GET /layout`), merged (the
//! later epoch wins, trackers by maximum, registry entries by timestamp)
//! and given back to nodes found behind. Only the storage nodes' layout
//! leader decides new epochs (`crate::workers::layout`); gateways follow.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chunkstore::layout::{LayoutHistory, Placement};
use chunkstore::layout_store::registry_entry;
use chunkstore::placement::{LayoutEntry, NodeState};
use chunkstore::{ClientError, LayoutSnapshot, NodeClient, Record, Table};
use membership::{MemberState, Role, Snapshot};
use rand::seq::{IndexedRandom, SliceRandom};
use tokio::sync::watch;

use crate::limits::{
    FIRST_LAYOUT_POLL, LAYOUT_REFRESH, LAYOUT_REFRESH_MIN, PARTITIONS, QUORUM, REPLICAS,
};
use crate::metrics::GatewayMetrics;
use crate::store::hlc::Hlc;

/// The registry of storage nodes and the layout history, with the
/// placement they imply.
#[derive(Debug, Default)]
pub struct Layout {
    nodes: BTreeMap<String, (u64, LayoutEntry)>,
    history: LayoutHistory,
    placement: Arc<Placement>,
}

impl Layout {
    fn new(nodes: BTreeMap<String, (u64, LayoutEntry)>, history: LayoutHistory) -> Layout {
        let placement = if history.epoch() == 0 {
            Placement::from_registry(nodes.values().map(|(_, e)| e))
        } else {
            Placement::new(&history.committed)
        };
        Layout {
            nodes,
            history,
            placement: Arc::new(placement),
        }
    }

    /// Storage nodes in the registry.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn entry(&self, id: &str) -> Option<&LayoutEntry> {
        self.nodes.get(id).map(|(_, e)| e)
    }

    /// A node's state in the registry; None when it does not know the node.
    pub fn state(&self, id: &str) -> Option<NodeState> {
        self.entry(id).map(|e| e.state)
    }

    pub fn entries(&self) -> impl Iterator<Item = &LayoutEntry> {
        self.nodes.values().map(|(_, e)| e)
    }

    /// The decided epoch (0: none yet; partitions follow the registry).
    pub fn epoch(&self) -> u64 {
        self.history.epoch()
    }

    pub fn history(&self) -> &LayoutHistory {
        &self.history
    }

    /// Where partitions are read and written at this epoch.
    pub fn placement(&self) -> &Arc<Placement> {
        &self.placement
    }

    /// The replicas a partition is read from (the readable version's).
    pub fn partition_replicas(&self, partition: u16) -> &[String] {
        self.placement.read_set(partition)
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
    /// When the last refresh of the layout ended.
    refreshed: Mutex<Option<tokio::time::Instant>>,
    /// Whether this gateway has known, once, enough of the cluster to serve.
    known_once: AtomicBool,
}

/// Counts a request to a node while it is alive.
pub struct InFlight(Arc<AtomicU32>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every node's answer of one refresh: its id and the epoch it holds
/// (None: it did not answer).
pub type NodeEpochs = BTreeMap<String, Option<u64>>;

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
            metrics: GatewayMetrics::new(hlc.clone()),
            hlc,
            refreshed: Mutex::new(None),
            known_once: AtomicBool::new(false),
        })
    }

    /// Right after the gateway starts, until it has learned the layout and
    /// seen enough storage nodes alive to serve, waits for that, at most
    /// `timeout`: a client that connects to a gateway just started gets its
    /// answer a moment later rather than a 503. Once known, never waits
    /// again (later outages answer at once, as they should).
    pub async fn await_first_layout(&self, timeout: std::time::Duration) {
        if self.known_once.load(Ordering::Relaxed) {
            return;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.cannot_serve().is_none() {
                self.known_once.store(true, Ordering::Relaxed);
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(FIRST_LAYOUT_POLL).await;
        }
    }

    /// Why this gateway cannot serve now, as far as its view of the cluster
    /// tells: fewer live storage nodes than a chunk needs, or a metadata
    /// partition without a quorum of live replicas.
    pub fn cannot_serve(&self) -> Option<String> {
        let live = self.live_storage().len();
        if live < REPLICAS {
            return Some(format!(
                "{live} storage nodes alive, {REPLICAS} needed to write three copies"
            ));
        }
        (0..=PARTITIONS).find_map(|partition| {
            let replicas = self.partition_nodes(partition);
            let reachable = replicas.iter().filter(|(_, _, live)| *live).count();
            (reachable < QUORUM).then(|| {
                format!(
                    "metadata partition {partition} has {reachable} live replicas, {QUORUM} needed"
                )
            })
        })
    }

    /// The gateway's metrics, for every component to count into.
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.metrics
    }

    pub fn client(&self) -> &NodeClient {
        &self.client
    }

    pub fn hlc(&self) -> &Arc<Hlc> {
        &self.hlc
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
    /// then the registry.
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

    /// The replicas a partition is read from, with their address and
    /// whether they are alive, live ones first.
    pub fn partition_nodes(&self, partition: u16) -> Vec<(String, SocketAddr, bool)> {
        self.located(self.layout().placement().read_set(partition))
    }

    /// Every replica a write of the partition goes to (of every live
    /// layout version), live ones first.
    pub fn write_nodes(&self, partition: u16) -> Vec<(String, SocketAddr, bool)> {
        self.located(&self.layout().placement().write_nodes(partition))
    }

    /// Nodes by id with their address and liveness, live ones first.
    pub fn located(&self, ids: &[String]) -> Vec<(String, SocketAddr, bool)> {
        let mut nodes: Vec<(String, SocketAddr, bool)> = ids
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

    /// Keeps this gateway's layout up to date until the process ends: a few
    /// live storage nodes are asked every [`LAYOUT_REFRESH`] and on every
    /// change of membership, and nodes found behind are given the newer one.
    pub async fn maintain_layout(self: Arc<Self>) {
        let mut watch = self.membership.clone();
        loop {
            self.refresh(REPLICAS).await;
            // Membership changes with every load report: at most one
            // refresh per LAYOUT_REFRESH_MIN however often it changes.
            tokio::time::sleep(LAYOUT_REFRESH_MIN).await;
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

    /// A refresh of the layout unless one ended less than `fresh` ago
    /// (many requests waiting for a newer epoch ask once between them).
    pub async fn refresh_unless_fresh(&self, fresh: std::time::Duration) {
        let recent = self
            .refreshed
            .lock()
            .map(|at| at.is_some_and(|at| at.elapsed() < fresh))
            .unwrap_or(false);
        if !recent {
            self.refresh(REPLICAS).await;
        }
    }

    /// One round of [`Cluster::maintain_layout`], asking every live node.
    pub async fn refresh_layout(&self) {
        self.refresh(usize::MAX).await;
    }

    /// Asks up to `ask` live storage nodes for their layout, merges what
    /// they hold, gives it back to those behind, and returns each asked
    /// node's epoch.
    pub async fn refresh(&self, ask: usize) -> NodeEpochs {
        let mut live = self.live_storage();
        live.shuffle(&mut rand::rng());
        live.truncate(ask);
        let answers = futures::future::join_all(
            live.iter()
                .map(|node| async move { (node, self.fetch_layout(node.addr).await) }),
        )
        .await;
        let current = self.layout();
        let mut nodes = current.nodes.clone();
        let mut history = current.history.clone();
        let mut epochs = NodeEpochs::new();
        for (node, answer) in &answers {
            epochs.insert(node.id.clone(), answer.as_ref().map(|s| s.history.epoch()));
            if let Some(snapshot) = answer {
                merge_registry(&mut nodes, &snapshot.registry);
                history.merge(&snapshot.history);
            }
        }
        // Nodes behind get what they lack now: the merged epoch (rather than
        // by a fenced request later) and the registry entries they miss or
        // hold older (a node that joined after an entry was written needs
        // its peers' addresses for transfers).
        for (node, answer) in &answers {
            let Some(snapshot) = answer else { continue };
            if snapshot.history.epoch() < history.epoch()
                && let Err(e) = self.client.push_layout(node.addr, &history).await
            {
                tracing::debug!(node = %node.id, error = %e, "cannot give a node the layout");
            }
            let held: HashMap<&str, u64> = snapshot
                .registry
                .iter()
                .map(|(ts, e)| (e.id.as_str(), *ts))
                .collect();
            let missing: Vec<Record> = nodes
                .values()
                .filter(|(ts, e)| held.get(e.id.as_str()).is_none_or(|held| held < ts))
                .filter_map(|(ts, e)| registry_record(*ts, e))
                .collect();
            if !missing.is_empty()
                && let Err(e) = self
                    .client
                    .meta_put(node.addr, 0, Table::Layout, &missing)
                    .await
            {
                tracing::debug!(node = %node.id, error = %e, "cannot give a node registry entries");
            }
        }
        self.install(nodes, history);
        if let Ok(mut at) = self.refreshed.lock() {
            *at = Some(tokio::time::Instant::now());
        }
        epochs
    }

    /// A node's layout; for a 0.1 node (no `/layout`), its registry records.
    async fn fetch_layout(&self, addr: SocketAddr) -> Option<LayoutSnapshot> {
        match self.client.layout(addr).await {
            Ok(snapshot) => Some(snapshot),
            Err(ClientError::Status(_, 404, _)) => {
                let page = self
                    .client
                    .meta_scan(addr, 0, Table::Layout, &[], &[], 10_000)
                    .await
                    .ok()?;
                Some(LayoutSnapshot {
                    history: LayoutHistory::default(),
                    registry: page.records.iter().filter_map(registry_entry).collect(),
                })
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, "layout fetch failed");
                None
            }
        }
    }

    /// Merges the layout `addr` holds (a node that answered "stale").
    pub async fn refresh_from(&self, addr: SocketAddr) {
        if let Some(snapshot) = self.fetch_layout(addr).await {
            let current = self.layout();
            let mut nodes = current.nodes.clone();
            let mut history = current.history.clone();
            merge_registry(&mut nodes, &snapshot.registry);
            history.merge(&snapshot.history);
            self.install(nodes, history);
        }
    }

    /// Gives `addr` this process's layout (a node that answered "behind").
    pub async fn push_layout_to(&self, addr: SocketAddr) -> Result<(), ClientError> {
        let history = self.layout().history.clone();
        let answer = self.client.push_layout(addr, &history).await?;
        // It may have held something newer of its own.
        let current = self.layout();
        let mut merged = current.history.clone();
        if merged.merge(&answer.history) {
            let mut nodes = current.nodes.clone();
            merge_registry(&mut nodes, &answer.registry);
            self.install(nodes, merged);
        }
        Ok(())
    }

    /// Takes a newly decided history (the layout leader's own).
    pub fn adopt(&self, history: &LayoutHistory) {
        let current = self.layout();
        let mut merged = current.history.clone();
        if merged.merge(history) {
            self.install(current.nodes.clone(), merged);
        }
    }

    /// Writes registry entries on every live storage node (at least
    /// [`REPLICAS`] must take them, or all if fewer are alive) and in this
    /// process's view at once. Each entry gets a timestamp past the one it
    /// replaces, so that a change made here wins whatever the clocks say.
    pub async fn write_registry(&self, entries: Vec<LayoutEntry>) -> Result<(), String> {
        let current = self.layout();
        let mut records = Vec::new();
        let mut stamped = Vec::new();
        for entry in entries {
            let previous = current.nodes.get(&entry.id).map_or(0, |(ts, _)| *ts);
            let ts = self.hlc.now().max(previous + 1);
            records.push(registry_record(ts, &entry).ok_or("cannot encode a registry entry")?);
            stamped.push((ts, entry));
        }
        if records.is_empty() {
            return Ok(());
        }
        let live = self.live_storage();
        let writes = live.iter().map(|node| {
            let records = &records;
            async move {
                let result = self
                    .client
                    .meta_put(node.addr, 0, Table::Layout, records)
                    .await;
                if let Err(e) = &result {
                    tracing::warn!(node = %node.id, error = %e, "registry write failed");
                }
                result.is_ok()
            }
        });
        let acks = futures::future::join_all(writes)
            .await
            .into_iter()
            .filter(|ok| *ok)
            .count();
        if acks < REPLICAS.min(live.len()) || acks == 0 {
            return Err(format!(
                "the change reached {acks} of {} live storage nodes",
                live.len()
            ));
        }
        let mut nodes = current.nodes.clone();
        for (ts, entry) in stamped {
            nodes.insert(entry.id.clone(), (ts, entry));
        }
        self.install(nodes, current.history.clone());
        Ok(())
    }

    /// Records a node's new state in the registry (see [`Cluster::write_registry`]).
    pub async fn set_node_state(&self, id: &str, state: NodeState) -> Result<(), String> {
        let layout = self.layout();
        let Some(entry) = layout.entry(id) else {
            return Err(format!("node {id} is not in the layout"));
        };
        let entry = LayoutEntry {
            state,
            ..entry.clone()
        };
        self.write_registry(vec![entry]).await?;
        tracing::info!(node = id, ?state, "layout: node state changed");
        Ok(())
    }

    fn install(&self, nodes: BTreeMap<String, (u64, LayoutEntry)>, history: LayoutHistory) {
        let current = self.layout();
        if nodes == current.nodes && history == current.history {
            return;
        }
        for (ts, _) in nodes.values() {
            self.hlc.observe(*ts);
        }
        if history.epoch() != current.history.epoch() {
            tracing::info!(epoch = history.epoch(), "layout: now at epoch");
        }
        let layout = Arc::new(Layout::new(nodes, history));
        self.metrics.layout_epoch(layout.epoch());
        match self.layout.write() {
            Ok(mut l) => *l = layout,
            Err(poisoned) => *poisoned.into_inner() = layout,
        }
    }
}

/// A registry entry as a record of the `layout` table.
fn registry_record(ts: u64, entry: &LayoutEntry) -> Option<Record> {
    Some(Record {
        key: entry.id.as_bytes().to_vec(),
        ts,
        value: Some(rmp_serde::to_vec_named(entry).ok()?),
    })
}

/// Merges registry entries: the later timestamp wins.
fn merge_registry(
    nodes: &mut BTreeMap<String, (u64, LayoutEntry)>,
    entries: &[(u64, LayoutEntry)],
) {
    for (ts, entry) in entries {
        let newer = nodes.get(&entry.id).is_none_or(|(held, _)| ts > held);
        if newer {
            nodes.insert(entry.id.clone(), (*ts, entry.clone()));
        }
    }
}
