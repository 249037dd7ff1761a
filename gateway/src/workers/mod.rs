//! The cluster's background work, run beside every storage node as DESIGN
//! says: lifecycle rules, durability repair and garbage collection, and the
//! healing of this node's chunks that its scrubber found corrupt. The
//! workers live in this crate because they need the object model; the
//! storage role starts them next to its node.
//!
//! Every storage node runs the workers, and only the leader acts (but every
//! node heals its own chunks): the live
//! active node of the layout with the smallest id. So no two nodes copy or
//! delete the same chunk, and the figures (chunks below three copies, GC
//! queue) are counted once. When the leader goes down, the next one takes
//! over at its next tick and starts its passes from the beginning.
//!
//! Each node publishes a [`WorkerStatus`] (JSON) on its internal API
//! (`GET /workers/status`); the gateways' admin API shows the leader's, and
//! wakes the workers (`POST /workers/wake`) after `node remove` or `repair`.

pub mod gc;
mod heal;
pub mod layout;
pub mod lifecycle;
pub mod repair;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chunkstore::WorkerPort;
use chunkstore::placement::NodeState;
use membership::Snapshot;
use prometheus::{IntCounter, IntGauge};
use serde::{Deserialize, Serialize};
use telemetry::{Bundle, BundleBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::keys::KeyStore;
use crate::s3::Gateway;
use crate::store::cluster::Cluster;
use crate::store::data::DataPath;
use crate::store::hlc::{Hlc, wall_ms};
use crate::store::table::Tables;
use crate::workers::gc::{Collector, GcConfig, GcReport, GcShared};
use crate::workers::lifecycle::LifecycleConfig;
use crate::workers::repair::{Durability, DurabilityReport, RepairConfig};

/// How often a node republishes its workers' status.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// How often a node looks for quarantined chunks to heal.
const HEAL_INTERVAL: Duration = Duration::from_secs(30);

/// The workers' timing.
#[derive(Clone, Debug)]
pub struct BackgroundConfig {
    pub lifecycle: LifecycleConfig,
    pub repair: RepairConfig,
    pub gc: GcConfig,
    pub layout: layout::LayoutConfig,
    /// How often a node looks for quarantined chunks to heal.
    pub heal_interval: Duration,
    /// Accept untagged answers from 0.1 storage nodes (rolling upgrade only).
    pub legacy_peers: bool,
}

impl Default for BackgroundConfig {
    fn default() -> BackgroundConfig {
        BackgroundConfig {
            lifecycle: LifecycleConfig::default(),
            repair: RepairConfig::default(),
            gc: GcConfig::default(),
            layout: layout::LayoutConfig::default(),
            heal_interval: HEAL_INTERVAL,
            legacy_peers: false,
        }
    }
}

/// What the workers beside one storage node report (`GET /workers/status`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub node: String,
    /// Whether this node leads (only the leader's figures count).
    pub leader: bool,
    /// When this was published (ms since the epoch).
    pub published_ms: u64,
    pub durability: DurabilityReport,
    pub gc: GcReport,
}

/// The gauges of the background work, labelled with the storage node; only
/// the leader's are non-zero, so a sum over nodes is the cluster's figure.
#[derive(Clone)]
pub struct BackgroundMetrics {
    bundle: Bundle,
    chunks_below_three_copies: IntGauge,
    repair_queue: IntGauge,
    gc_queue: IntGauge,
    healed: IntCounter,
}

impl BackgroundMetrics {
    fn new(node_id: &str) -> BackgroundMetrics {
        let mut b = BundleBuilder::new().with_label("node", node_id);
        BackgroundMetrics {
            repair_queue: b.gauge(
                "flexdrive_repair_queue_length",
                "Chunks waiting to be copied to a new storage node (non-zero on the leading node only).",
            ),
            gc_queue: b.gauge(
                "flexdrive_gc_queue_length",
                "Unlisted chunks waiting for the garbage collector (non-zero on the leading node only).",
            ),
            chunks_below_three_copies: b.gauge(
                "flexdrive_chunks_below_three_copies",
                "Chunks with fewer than three live copies, the durability figure to watch (non-zero on the leading node only).",
            ),
            healed: b.counter(
                "flexdrive_chunks_healed_total",
                "Corrupt chunk copies of this node replaced from a good copy.",
            ),
            bundle: b.build(),
        }
    }

    /// The metrics, to register in the process's registry.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    fn set(&self, status: &WorkerStatus) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let (below, repair, gc) = if status.leader {
            (
                status.durability.chunks_below_three_copies,
                status.durability.repair_queue,
                status.gc.queue,
            )
        } else {
            (0, 0, 0)
        };
        self.chunks_below_three_copies.set(gauge(below));
        self.repair_queue.set(gauge(repair));
        self.gc_queue.set(gauge(gc));
    }
}

/// Whether `me` leads: the live storage node with the smallest id that is
/// active in the registry (or not in it yet: a new cluster has no registry
/// until its leader writes one), provided it sees a majority of the
/// layout's members alive. A node cut off from the others (just restarted,
/// or partitioned) sees itself alone and would otherwise believe it leads
/// and that everybody else is down.
#[derive(Clone)]
pub(crate) struct Leader {
    cluster: Arc<Cluster>,
    me: Arc<str>,
}

impl Leader {
    pub(crate) fn leads(&self) -> bool {
        let layout = self.cluster.layout();
        let live = self.cluster.live_storage();
        let smallest = live
            .iter()
            .filter(|n| layout.state(&n.id).is_none_or(|s| s == NodeState::Active))
            .map(|n| n.id.as_str())
            .min();
        if smallest != Some(&*self.me) {
            return false;
        }
        let members = layout.history().committed.acceptors();
        if members.is_empty() {
            // No layout yet: leading means proposing the first one, which
            // needs three nodes anyway.
            return live.len() >= crate::limits::REPLICAS;
        }
        let seen = members
            .iter()
            .filter(|id| live.iter().any(|n| &n.id == *id))
            .count();
        seen >= chunkstore::layout::majority(members.len())
    }

    pub(crate) fn me(&self) -> &str {
        &self.me
    }
}

/// The workers running beside one storage node.
pub struct Background {
    metrics: BackgroundMetrics,
    tasks: Vec<JoinHandle<()>>,
}

impl Background {
    pub fn metrics(&self) -> &BackgroundMetrics {
        &self.metrics
    }

    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts the workers beside storage node `node_id`, which publishes and is
/// woken through `port`.
pub fn start(
    node_id: &str,
    cluster_secret: &str,
    config: BackgroundConfig,
    membership: watch::Receiver<Arc<Snapshot>>,
    port: WorkerPort,
) -> Background {
    let client = chunkstore::NodeClient::new(cluster_secret)
        .accepting_legacy_peers(config.legacy_peers)
        .sending_as(node_id);
    let hlc = Arc::new(Hlc::following(client.clock().clone()));
    let cluster = Cluster::new(membership, client, hlc.clone());
    let tables = Tables::new(cluster.clone(), hlc);
    // Workers only delete and copy chunks; the chunk size is never used to cut.
    let data = DataPath::new(&tables, crate::limits::DEFAULT_CHUNK_SIZE);
    let keys = Arc::new(KeyStore::new(tables.clone()));
    let gateway = Gateway::new(tables.clone(), data, keys, "", "");
    let leader = Leader {
        cluster: cluster.clone(),
        me: Arc::from(node_id),
    };
    let metrics = BackgroundMetrics::new(node_id);
    let durability = Arc::new(Durability::default());
    let gc = Arc::new(GcShared::default());

    // The layout keeper also keeps this process's view of the layout fresh.
    let mut tasks = vec![tokio::spawn(layout::run(
        cluster.clone(),
        leader.clone(),
        config.layout,
    ))];
    tasks.push(tokio::spawn(
        gateway.lifecycle_worker(config.lifecycle, leader.clone()),
    ));
    tasks.push(tokio::spawn(crate::workers::repair::run(
        tables.clone(),
        cluster.clone(),
        config.repair,
        durability.clone(),
        leader.clone(),
        port.wakes(),
    )));
    tasks.push(tokio::spawn(crate::workers::heal::run(
        tables.clone(),
        cluster.clone(),
        node_id.to_string(),
        config.heal_interval,
        metrics.healed.clone(),
    )));
    let drain_leader = leader.clone();
    tasks.push(tokio::spawn(crate::workers::gc::drain(
        tables.clone(),
        cluster.clone(),
        config.gc.drain_interval,
        move || drain_leader.leads(),
    )));
    let collector = Collector::new(tables, cluster, config.gc, gc.clone());
    let gc_leader = leader.clone();
    tasks.push(tokio::spawn(crate::workers::gc::run(
        collector,
        move || gc_leader.leads(),
        port.wakes(),
    )));
    let node = node_id.to_string();
    let published = metrics.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            let status = WorkerStatus {
                node: node.clone(),
                leader: leader.leads(),
                published_ms: wall_ms(),
                durability: durability.report(),
                gc: gc.report(),
            };
            published.set(&status);
            match serde_json::to_vec(&status) {
                Ok(json) => port.publish(Bytes::from(json)),
                Err(e) => tracing::warn!(error = %e, "worker status encoding failed"),
            }
            tokio::time::sleep(STATUS_INTERVAL).await;
        }
    }));
    Background { metrics, tasks }
}

/// The leader's status as the live storage nodes report it; None while no
/// node reports that it leads (just after a change of leader).
pub async fn leader_status(cluster: &Cluster) -> Option<WorkerStatus> {
    let asks = cluster.live_storage().into_iter().map(|node| async move {
        let raw = cluster.client().worker_status(node.addr).await.ok()?;
        serde_json::from_slice::<WorkerStatus>(&raw).ok()
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .filter(|s| s.leader)
        .max_by_key(|s| s.published_ms)
}

/// Asks the workers of every live storage node for a pass now (the leader acts).
pub async fn wake(cluster: &Cluster) {
    let asks = cluster.live_storage().into_iter().map(|node| async move {
        if let Err(e) = cluster.client().wake_workers(node.addr).await {
            tracing::debug!(node = %node.id, error = %e, "cannot wake the workers");
        }
    });
    futures::future::join_all(asks).await;
}

#[cfg(test)]
mod tests {
    use chunkstore::layout::{Committed, LayoutHistory, LayoutVersion};
    use chunkstore::placement::Member as LayoutMember;
    use membership::{Member, MemberState, Role, Snapshot};

    use super::*;

    fn member(id: &str, state: MemberState) -> Member {
        Member {
            id: id.into(),
            role: Role::Storage,
            zone: "z".into(),
            gossip_addr: "127.0.0.1:1".parse().unwrap(),
            http_addr: "127.0.0.1:2".parse().unwrap(),
            state,
            load: None,
        }
    }

    /// `me` among five layout members, seeing the given ones alive.
    fn leader(me: &str, alive: &[&str]) -> Leader {
        let ids = ["a", "b", "c", "d", "e"];
        let snapshot = Snapshot {
            members: ids
                .iter()
                .map(|id| {
                    let state = if alive.contains(id) {
                        MemberState::Alive
                    } else {
                        MemberState::Down
                    };
                    member(id, state)
                })
                .collect(),
        };
        let (_tx, rx) = watch::channel(Arc::new(snapshot));
        let cluster = Cluster::new(rx, chunkstore::NodeClient::new("s"), Arc::new(Hlc::new()));
        cluster.adopt(&LayoutHistory {
            committed: Committed {
                epoch: 1,
                versions: vec![LayoutVersion {
                    number: 1,
                    members: ids
                        .iter()
                        .map(|id| LayoutMember {
                            id: id.to_string(),
                            zone: "z".into(),
                        })
                        .collect(),
                }],
                readable: 1,
                ..Committed::default()
            },
            ..LayoutHistory::default()
        });
        Leader {
            cluster,
            me: Arc::from(me),
        }
    }

    #[test]
    fn a_node_that_sees_no_majority_does_not_lead() {
        // Just restarted and alone: it would take everybody else for down.
        assert!(!leader("a", &["a"]).leads());
        assert!(!leader("a", &["a", "b"]).leads());
        assert!(leader("a", &["a", "b", "c"]).leads());
        // The smallest live id leads; the others do not.
        assert!(!leader("b", &["a", "b", "c"]).leads());
        assert!(leader("b", &["b", "c", "d"]).leads());
    }
}
