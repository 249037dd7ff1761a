//! Flexdrive's roles, wired from the crates: a storage node (chunkstore +
//! membership + load reports), a gateway (gateway + membership), and the
//! embedded default that runs one gateway and three storage nodes in one
//! process. `main.rs` only parses the command line and calls these.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chunkstore::{StorageConfig, StorageNode};
use gateway::workers::{Background, BackgroundConfig};
use gateway::{GatewayConfig, RunningGateway};
use membership::{LoadReport, Membership, Role, Snapshot};
use telemetry::prometheus::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub mod admin_client;

/// File in a `flexdrive server` data dir that holds the admin API token.
pub const ADMIN_TOKEN_FILE: &str = "admin_token";

/// How often a storage node gossips its load.
const LOAD_REPORT_INTERVAL: Duration = Duration::from_secs(2);

/// How long `server` waits for its own nodes to see each other.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Membership settings shared by every role.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    pub bind_addr: SocketAddr,
    pub advertise_addr: Option<SocketAddr>,
    pub seeds: Vec<String>,
    pub zone: String,
    pub probe_period: Duration,
    /// Rolling upgrade from 0.1: also accept, and send, unauthenticated gossip.
    pub legacy_peers: bool,
}

/// A running storage node with its membership and the background workers
/// beside it (lifecycle, repair, garbage collection; the leading node acts).
pub struct StorageRole {
    pub node: Arc<StorageNode>,
    pub membership: Arc<Membership>,
    background: Background,
    /// This node's metrics and its membership view's, for its own admin port.
    registry: Registry,
    admin: Option<AdminPort>,
    load_task: JoinHandle<()>,
}

/// An admin port that serves only `/metrics` and `/health/*`.
struct AdminPort {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl StorageRole {
    pub async fn start(
        config: StorageConfig,
        gossip: GossipConfig,
        mut background: BackgroundConfig,
    ) -> anyhow::Result<StorageRole> {
        let cluster_secret = config.cluster_secret.clone();
        background.legacy_peers = config.legacy_peers;
        let node = Arc::new(StorageNode::start(config).await?);
        let membership = Membership::start(membership::Config {
            id: node.id().to_string(),
            role: Role::Storage,
            zone: gossip.zone,
            bind_addr: gossip.bind_addr,
            advertise_addr: gossip.advertise_addr,
            http_addr: reachable(node.http_addr(), gossip.advertise_addr),
            seeds: gossip.seeds,
            probe_period: gossip.probe_period,
            cluster_secret: cluster_secret.clone(),
            accept_legacy: gossip.legacy_peers,
        })
        .await
        .context("starting membership")?;
        let membership = Arc::new(membership);
        let background = gateway::workers::start(
            node.id(),
            &cluster_secret,
            background,
            membership.watch(),
            node.worker_port(),
        );
        let registry = Registry::new();
        node.metrics().bundle().register(&registry)?;
        background.metrics().bundle().register(&registry)?;
        telemetry::membership_metrics(membership.watch()).register(&registry)?;
        let gossip_counters = membership.gossip_counters();
        telemetry::gossip_metrics(move || gossip_counters.stats()).register(&registry)?;
        let load_task = {
            let node = node.clone();
            let membership = membership.clone();
            tokio::spawn(async move {
                loop {
                    let s = node.status();
                    membership.set_load(LoadReport {
                        capacity_bytes: s.capacity_bytes,
                        used_bytes: s.used_bytes,
                        free_bytes: s.free_bytes,
                        in_flight: s.in_flight,
                        chunk_count: s.chunk_count,
                    });
                    tokio::time::sleep(LOAD_REPORT_INTERVAL).await;
                }
            })
        };
        Ok(StorageRole {
            node,
            membership,
            background,
            registry,
            admin: None,
            load_task,
        })
    }

    pub fn gossip_addr(&self) -> SocketAddr {
        self.membership.local_addr()
    }

    /// Adds this node's metrics to another registry (`flexdrive server`
    /// serves one for the whole process).
    fn register_metrics(&self, registry: &Registry) -> telemetry::prometheus::Result<()> {
        self.node.metrics().bundle().register(registry)?;
        self.background.metrics().bundle().register(registry)
    }

    fn unregister_metrics(&self, registry: &Registry) {
        let _ = self.node.metrics().bundle().unregister(registry);
        let _ = self.background.metrics().bundle().unregister(registry);
    }

    /// Serves this node's `/metrics`, `/health/live` and `/health/ready` on
    /// `addr` (port 0 picks one); returns the address bound.
    pub async fn serve_admin(&mut self, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
        anyhow::ensure!(self.admin.is_none(), "the admin port is already served");
        let listener = telemetry::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let ops = telemetry::Ops::new(self.registry.clone(), self.node.readiness());
        let task = telemetry::serve_ops(listener, ops, stopped);
        self.admin = Some(AdminPort { addr, stop, task });
        Ok(addr)
    }

    /// The admin port's address, once [`StorageRole::serve_admin`] has bound it.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.addr)
    }

    /// Leaves the cluster (or, with `crash`, just goes silent), then stops serving.
    async fn stop(self, crash: bool) {
        self.background.stop();
        if let Some(admin) = self.admin {
            let _ = admin.stop.send(true);
            let _ = admin.task.await;
        }
        self.load_task.abort();
        // The load task holds clones; once it has ended they are ours alone.
        let _ = self.load_task.await;
        match Arc::try_unwrap(self.membership) {
            Ok(m) if !crash => m.shutdown().await,
            Ok(m) => drop(m),
            Err(_) => tracing::warn!("membership still shared at shutdown"),
        }
        match Arc::try_unwrap(self.node) {
            Ok(node) => node.shutdown().await,
            Err(_) => tracing::warn!("storage node still shared at shutdown"),
        }
    }

    pub async fn shutdown(self) {
        self.stop(false).await;
    }
}

/// A running gateway with its membership.
pub struct GatewayRole {
    pub gateway: RunningGateway,
    pub membership: Membership,
}

impl GatewayRole {
    pub async fn start(config: GatewayConfig, gossip: GossipConfig) -> anyhow::Result<GatewayRole> {
        // The gateway's member id only has to be unique while it runs.
        let id = format!("gw-{}", hex::encode(rand::random::<[u8; 6]>()));
        let membership = Membership::start(membership::Config {
            id,
            role: Role::Gateway,
            zone: gossip.zone,
            bind_addr: gossip.bind_addr,
            advertise_addr: gossip.advertise_addr,
            http_addr: config.s3_addr,
            seeds: gossip.seeds,
            probe_period: gossip.probe_period,
            cluster_secret: config.cluster_secret.clone(),
            accept_legacy: gossip.legacy_peers,
        })
        .await
        .context("starting membership")?;
        let gateway = gateway::start(config, membership.watch()).await?;
        // Beside the members gauges the gateway registers from its view.
        let gossip_counters = membership.gossip_counters();
        telemetry::gossip_metrics(move || gossip_counters.stats()).register(gateway.registry())?;
        Ok(GatewayRole {
            gateway,
            membership,
        })
    }

    pub fn s3_addr(&self) -> SocketAddr {
        self.gateway.addr()
    }

    /// Waits until the gateway can write three copies: it sees the storage
    /// nodes alive, in the registry and in a decided layout (bounded).
    pub async fn wait_ready(&self, storage_nodes: usize, timeout: Duration) -> anyhow::Result<()> {
        let cluster = self.gateway.cluster();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let live = cluster.live_storage().len();
            let layout = cluster.layout();
            let registered = layout.len();
            let placed = layout.placement().nodes().len();
            if live >= storage_nodes
                && registered >= storage_nodes
                && layout.epoch() >= 1
                && placed >= storage_nodes.min(3)
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "gateway sees {live} live storage nodes, {registered} in the registry and layout epoch {} after {timeout:?}; expected {storage_nodes}",
                    layout.epoch()
                );
            }
            cluster.refresh_layout().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn shutdown(self) {
        self.gateway.shutdown().await;
        self.membership.shutdown().await;
    }
}

/// Settings of the embedded default.
#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    pub data_dir: PathBuf,
    pub s3_addr: SocketAddr,
    pub storage_nodes: usize,
    pub root_access_key: String,
    pub root_secret_key: String,
    pub chunk_size: usize,
    pub region: String,
    pub domains: Vec<String>,
    pub probe_period: Duration,
    /// Admin API address and bearer token (None: no admin API).
    pub admin_addr: Option<SocketAddr>,
    pub admin_token: Option<String>,
    /// Timing of the storage nodes' background workers (tests shorten the
    /// lifecycle day, the dead-node timeout and the GC grace period).
    pub background: BackgroundConfig,
    /// How every storage node scrubs, pages and replicates (tests shorten it).
    pub nodes: NodeTuning,
    /// Bounds on the S3 port's connections.
    pub connections: gateway::ConnectionLimits,
}

/// Settings of the storage nodes of an embedded cluster beyond where they
/// listen: tests lower bounds and shorten intervals here.
#[derive(Clone, Debug)]
pub struct NodeTuning {
    /// The scrubbing rate and pause.
    pub scrub: chunkstore::ScrubConfig,
    /// Most bytes of records per scan answer (see `chunkstore::limits::MAX_SCAN_BYTES`).
    pub scan_bytes: usize,
    /// Transfers, anti-entropy and compaction.
    pub replication: chunkstore::ReplicationConfig,
}

impl Default for NodeTuning {
    fn default() -> NodeTuning {
        NodeTuning {
            scrub: chunkstore::ScrubConfig::default(),
            scan_bytes: chunkstore::limits::MAX_SCAN_BYTES,
            replication: chunkstore::ReplicationConfig::default(),
        }
    }
}

/// One gateway and N storage nodes in this process, on loopback.
pub struct Embedded {
    pub gateway: GatewayRole,
    /// None once a node has been stopped (tests stop nodes on purpose).
    pub storage: Vec<Option<StorageRole>>,
    data_dir: PathBuf,
    cluster_secret: String,
    seeds: Vec<String>,
    probe_period: Duration,
    background: BackgroundConfig,
    nodes: NodeTuning,
}

impl Embedded {
    pub async fn start(config: EmbeddedConfig) -> anyhow::Result<Embedded> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
        let cluster_secret = load_or_create_secret(&config.data_dir.join("cluster_secret"))?;
        let loopback: SocketAddr = "127.0.0.1:0".parse()?;
        let mut storage: Vec<Option<StorageRole>> = Vec::new();
        let mut seeds: Vec<String> = Vec::new();
        for i in 1..=config.storage_nodes {
            let role = start_storage(
                &config.data_dir,
                i,
                &cluster_secret,
                &seeds,
                config.probe_period,
                config.background.clone(),
                config.nodes.clone(),
            )
            .await?;
            if seeds.is_empty() {
                seeds.push(role.gossip_addr().to_string());
            }
            storage.push(Some(role));
        }
        let gateway = GatewayRole::start(
            GatewayConfig {
                s3_addr: config.s3_addr,
                root_access_key: config.root_access_key,
                root_secret_key: config.root_secret_key,
                cluster_secret: cluster_secret.clone(),
                chunk_size: config.chunk_size,
                region: config.region,
                domains: config.domains,
                admin_addr: config.admin_addr,
                admin_token: config.admin_token,
                legacy_peers: false,
                connections: config.connections,
            },
            GossipConfig {
                bind_addr: loopback,
                advertise_addr: None,
                seeds: seeds.clone(),
                zone: "zone0".into(),
                probe_period: config.probe_period,
                // One process, one release: no 0.1 peer to accept.
                legacy_peers: false,
            },
        )
        .await?;
        // One registry for the process: the storage nodes' metrics join the gateway's.
        for role in storage.iter().flatten() {
            role.register_metrics(gateway.gateway.registry())?;
        }
        gateway
            .wait_ready(config.storage_nodes, STARTUP_TIMEOUT)
            .await?;
        Ok(Embedded {
            gateway,
            storage,
            data_dir: config.data_dir,
            cluster_secret,
            seeds,
            probe_period: config.probe_period,
            background: config.background,
            nodes: config.nodes,
        })
    }

    /// Starts one more storage node that joins the running cluster.
    pub async fn add_storage(&mut self) -> anyhow::Result<()> {
        let index = self.storage.len() + 1;
        let role = start_storage(
            &self.data_dir,
            index,
            &self.cluster_secret,
            &self.seeds,
            self.probe_period,
            self.background.clone(),
            self.nodes.clone(),
        )
        .await?;
        role.register_metrics(self.gateway.gateway.registry())?;
        self.storage.push(Some(role));
        Ok(())
    }

    pub fn s3_addr(&self) -> SocketAddr {
        self.gateway.s3_addr()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.gateway.gateway.admin_addr()
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.gateway.membership.snapshot()
    }

    /// Stops storage node `index` (0-based) as a crash would: no goodbye.
    pub async fn kill_storage(&mut self, index: usize) {
        if let Some(role) = self.storage.get_mut(index).and_then(Option::take) {
            // Its series leave /metrics; membership shows it down.
            role.unregister_metrics(self.gateway.gateway.registry());
            role.stop(true).await;
        }
    }

    pub async fn shutdown(self) {
        self.gateway.shutdown().await;
        for role in self.storage.into_iter().flatten() {
            role.shutdown().await;
        }
    }
}

async fn start_storage(
    data_dir: &Path,
    index: usize,
    cluster_secret: &str,
    seeds: &[String],
    probe_period: Duration,
    background: BackgroundConfig,
    nodes: NodeTuning,
) -> anyhow::Result<StorageRole> {
    let loopback: SocketAddr = "127.0.0.1:0".parse()?;
    let mut config = StorageConfig::new(
        data_dir.join(format!("node{index}")),
        loopback,
        cluster_secret,
    );
    config.scrub = nodes.scrub;
    config.scan_bytes = nodes.scan_bytes;
    config.replication = nodes.replication;
    StorageRole::start(
        config,
        GossipConfig {
            bind_addr: loopback,
            advertise_addr: None,
            seeds: seeds.to_vec(),
            zone: format!("zone{index}"),
            probe_period,
            legacy_peers: false,
        },
        background,
    )
    .await
    .with_context(|| format!("starting storage node {index}"))
}

/// The address others should use for a socket bound to `bound`: a wildcard
/// bind (0.0.0.0, as in a pod) is reached at the advertised gossip IP.
fn reachable(bound: SocketAddr, advertise: Option<SocketAddr>) -> SocketAddr {
    match advertise {
        Some(adv) if bound.ip().is_unspecified() => SocketAddr::new(adv.ip(), bound.port()),
        _ => bound,
    }
}

/// Reads a secret kept in the data dir, or creates it (readable by the owner only).
pub fn load_or_create_secret(path: &Path) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim().to_string();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    write_private(path, &secret)?;
    Ok(secret)
}

/// Writes a file only its owner can read, durably.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// A membership view that never changes, for wiring tests.
pub fn fixed_view(snapshot: Snapshot) -> watch::Receiver<Arc<Snapshot>> {
    watch::channel(Arc::new(snapshot)).1
}
