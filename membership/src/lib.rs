//! SWIM membership for Flexdrive over UDP (foca): who is alive, their role,
//! zone, addresses and load. Every process joins one cluster; the live view is
//! published as a `tokio::sync::watch` of an immutable [`Snapshot`].
//!
//! One background task drives foca (SWIM failure detection and gossip) over a
//! UDP socket; another re-resolves the seeds so a DNS name (a Kubernetes
//! headless Service) keeps working as pods come and go. Storage nodes gossip
//! their [`LoadReport`] as foca custom broadcasts; every change becomes a new
//! snapshot. Nobody but this crate writes membership: the rest of Flexdrive
//! only reads snapshots.
//!
//! Every datagram carries a MAC under the cluster secret with a timestamp and
//! a nonce against replays (see `auth.rs`), so a process without the secret
//! never enters the membership; [`Membership::gossip_stats`] counts what was
//! dropped and why.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use membership::{Config, MemberState, Membership, Role};
//!
//! let member = Membership::start(Config {
//!     id: "storage-1".into(),
//!     role: Role::Storage,
//!     zone: "zone-a".into(),
//!     bind_addr: "127.0.0.1:0".parse()?,
//!     advertise_addr: None,
//!     http_addr: "127.0.0.1:8080".parse()?,
//!     seeds: vec![], // the first member; others list its address here
//!     probe_period: Duration::from_secs(1),
//!     cluster_secret: "the same secret on every process".into(),
//!     accept_legacy: false,
//! })
//! .await?;
//! let view = member.snapshot();
//! assert_eq!(view.get("storage-1").map(|m| m.state), Some(MemberState::Alive));
//! member.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod agent;
mod auth;
mod broadcast;
mod identity;
mod limits;
mod replay;
mod seeds;
mod stats;
mod timing;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::agent::{Agent, Inputs, Transport};
use crate::auth::{Guard, Mode};
use crate::identity::NodeIdentity;
use crate::limits::{
    LOAD_REBROADCAST_PERIODS, MAX_ID_LEN, MAX_PROBE_PERIOD, MAX_ZONE_LEN, MIN_PROBE_PERIOD,
    SEED_QUEUE, SEED_RETRY_FAST_PERIODS, SEED_RETRY_SLOW_PERIODS, SHUTDOWN_TIMEOUT,
};
use crate::seeds::Seeder;
use crate::timing::periods;
use crate::view::View;

pub use crate::stats::{GossipCounters, GossipStats};

/// Stable identity of a process (storage nodes persist theirs in the data dir).
pub type NodeId = String;

/// What a member does in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    Gateway,
    Storage,
}

/// Load a storage node gossips every few seconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub in_flight: u32,
    pub chunk_count: u64,
}

/// Liveness of a member as seen from this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    Alive,
    Suspect,
    Down,
}

/// One member of the cluster (this process included).
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub id: NodeId,
    pub role: Role,
    pub zone: String,
    pub gossip_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub state: MemberState,
    /// Latest load report received from this member, if any.
    pub load: Option<LoadReport>,
}

/// Immutable view of the cluster at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Every member seen since start, sorted by id; down members stay with `state: Down`.
    pub members: Vec<Member>,
}

impl Snapshot {
    pub fn get(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// Storage members currently alive (suspect members are still counted alive).
    pub fn live_storage(&self) -> impl Iterator<Item = &Member> {
        self.members
            .iter()
            .filter(|m| m.role == Role::Storage && m.state != MemberState::Down)
    }
}

/// How to join.
#[derive(Clone)]
pub struct Config {
    pub id: NodeId,
    pub role: Role,
    pub zone: String,
    /// UDP address to bind; port 0 picks a free port.
    pub bind_addr: SocketAddr,
    /// Address other members reach us at, when it differs from the bound one
    /// (binding 0.0.0.0 in a pod, say).
    pub advertise_addr: Option<SocketAddr>,
    /// This member's internal HTTP address, carried in its identity.
    pub http_addr: SocketAddr,
    /// `host:port` of members to announce to; DNS names are re-resolved periodically.
    pub seeds: Vec<String>,
    /// SWIM probe period; 1 s in production, shorter in tests.
    pub probe_period: Duration,
    /// Keys the MAC on every gossip datagram; the same on every process.
    pub cluster_secret: String,
    /// Rolling upgrade from 0.1 only: also accept unauthenticated gossip, and
    /// send every datagram a second time unauthenticated, so 0.1 processes
    /// and this release see each other. While it is on, anyone who reaches
    /// this member's gossip port can join the cluster through it.
    pub accept_legacy: bool,
}

impl std::fmt::Debug for Config {
    // By hand, so the secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("zone", &self.zone)
            .field("bind_addr", &self.bind_addr)
            .field("advertise_addr", &self.advertise_addr)
            .field("http_addr", &self.http_addr)
            .field("seeds", &self.seeds)
            .field("probe_period", &self.probe_period)
            .field("cluster_secret", &"<redacted>")
            .field("accept_legacy", &self.accept_legacy)
            .finish()
    }
}

/// A running member.
///
/// Dropping it leaves the cluster too (in the background); `shutdown` does so
/// and waits until the socket is released.
pub struct Membership {
    local_addr: SocketAddr,
    view: watch::Receiver<Arc<Snapshot>>,
    gossip: GossipCounters,
    load: watch::Sender<Option<LoadReport>>,
    stop: Option<oneshot::Sender<()>>,
    agent: Option<JoinHandle<()>>,
    seeder: Option<JoinHandle<()>>,
}

impl Membership {
    /// Binds the UDP socket, joins through the seeds and starts gossiping.
    pub async fn start(config: Config) -> anyhow::Result<Membership> {
        let mode = if config.accept_legacy {
            Mode::AcceptLegacy
        } else {
            Mode::Strict
        };
        Self::start_in(config, mode).await
    }

    /// Starts a member that gossips as Flexdrive 0.1 did: plain foca
    /// datagrams both ways, no MAC, `cluster_secret` and `accept_legacy`
    /// unused. For tests only, as a 0.1 process or an impostor.
    #[doc(hidden)]
    pub async fn start_unauthenticated(config: Config) -> anyhow::Result<Membership> {
        Self::start_in(config, Mode::Plain).await
    }

    async fn start_in(config: Config, mode: Mode) -> anyhow::Result<Membership> {
        validate(&config)?;
        let (socket, sender) = bind(config.bind_addr)?;
        let local_addr = socket
            .local_addr()
            .context("membership: reading the bound UDP address")?;
        let gossip_addr = config.advertise_addr.unwrap_or(local_addr);
        if gossip_addr.ip().is_unspecified() || gossip_addr.port() == 0 {
            bail!(
                "membership: {gossip_addr} cannot be reached by other members; \
                 set advertise_addr to this process's routable address and port"
            );
        }

        let identity = NodeIdentity::new(
            config.id.clone(),
            config.role,
            config.zone.clone(),
            gossip_addr,
            config.http_addr,
        );
        let local = Member {
            id: config.id.clone(),
            role: config.role,
            zone: config.zone.clone(),
            gossip_addr,
            http_addr: config.http_addr,
            state: MemberState::Alive,
            load: None,
        };
        let view = View::new(local);
        let (snapshots, view_rx) = watch::channel(Arc::new(view.snapshot()));
        let (load, load_rx) = watch::channel(None);
        let (stop, stop_rx) = oneshot::channel();
        let (seeds_tx, seeds_rx) = mpsc::channel(SEED_QUEUE);
        let gossip = GossipCounters::new();

        let agent = Agent::new(
            identity,
            timing::foca_config(config.probe_period, mode.foca_packet_size()),
            Transport {
                socket,
                sender,
                guard: Guard::new(mode, &config.cluster_secret, gossip.clone()),
            },
            view,
            periods(config.probe_period, LOAD_REBROADCAST_PERIODS),
            snapshots,
        );
        let inputs = Inputs {
            stop: stop_rx,
            load: load_rx,
            seeds: seeds_rx,
        };
        let agent = tokio::spawn(agent.run(inputs));

        // Without seeds we are the first member and wait to be announced to.
        let seeder = (!config.seeds.is_empty()).then(|| {
            tokio::spawn(
                Seeder {
                    seeds: config.seeds.clone(),
                    own: vec![gossip_addr, local_addr],
                    local_id: config.id.clone(),
                    fast: periods(config.probe_period, SEED_RETRY_FAST_PERIODS),
                    slow: periods(config.probe_period, SEED_RETRY_SLOW_PERIODS),
                    to_agent: seeds_tx,
                    view: view_rx.clone(),
                }
                .run(),
            )
        });

        tracing::info!(id = %config.id, %gossip_addr, seeds = ?config.seeds, ?mode, "membership started");
        if mode == Mode::AcceptLegacy {
            tracing::warn!(
                "accepting unauthenticated gossip from 0.1 processes: anyone who reaches the \
                 gossip port can join; turn legacy peers off once every process runs this release"
            );
        }
        Ok(Membership {
            local_addr,
            view: view_rx,
            gossip,
            load,
            stop: Some(stop),
            agent: Some(agent),
            seeder,
        })
    }

    /// The UDP address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The current view.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.view.borrow().clone()
    }

    /// A receiver that sees every new view.
    pub fn watch(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.view.clone()
    }

    /// What became of the gossip datagrams received so far: accepted, or
    /// dropped and why.
    pub fn gossip_stats(&self) -> GossipStats {
        self.gossip.stats()
    }

    /// A handle that reads the same counts as [`Membership::gossip_stats`]
    /// for as long as anyone holds it (a metrics bundle).
    pub fn gossip_counters(&self) -> GossipCounters {
        self.gossip.clone()
    }

    /// Replaces this member's load report; it is gossiped as a custom broadcast.
    pub fn set_load(&self, report: LoadReport) {
        // Latest wins: the agent only ever needs the newest report.
        self.load.send_replace(Some(report));
    }

    /// Leaves the cluster (so others see us go at once) and stops the tasks.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            // Err means the agent already ended; nothing to stop.
            let _ = stop.send(());
        }
        if let Some(seeder) = self.seeder.take() {
            seeder.abort();
        }
        if let Some(mut agent) = self.agent.take()
            && tokio::time::timeout(SHUTDOWN_TIMEOUT, &mut agent)
                .await
                .is_err()
        {
            tracing::warn!("membership agent did not stop in time; aborting it");
            agent.abort();
        }
    }

    /// Stops every task at once without leaving, as a crash would: the others
    /// only learn it through failure detection. For tests.
    #[doc(hidden)]
    pub fn kill(mut self) {
        for task in [self.agent.take(), self.seeder.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        // Dropping `stop` and `load` makes the agent leave and end on its own.
        if let Some(seeder) = self.seeder.take() {
            seeder.abort();
        }
    }
}

/// Binds the gossip socket: a tokio half to receive, and a plain
/// non-blocking clone to send. tokio's `try_send_to` reports WouldBlock until
/// the reactor has seen the socket writable once, which would drop our first
/// announces; the plain socket only refuses when the kernel buffer is full.
fn bind(addr: SocketAddr) -> anyhow::Result<(UdpSocket, std::net::UdpSocket)> {
    let bound = std::net::UdpSocket::bind(addr).with_context(|| {
        format!("membership: cannot bind UDP {addr}; is another process using it?")
    })?;
    bound
        .set_nonblocking(true)
        .context("membership: making the UDP socket non-blocking")?;
    let sender = bound
        .try_clone()
        .context("membership: cloning the UDP socket for sending")?;
    let receiver = UdpSocket::from_std(bound).context("membership: registering the UDP socket")?;
    Ok((receiver, sender))
}

/// Rejects configurations that would only fail later, on the network.
fn validate(config: &Config) -> anyhow::Result<()> {
    if config.id.is_empty() || config.id.len() > MAX_ID_LEN {
        bail!(
            "membership: node id {:?} must be 1 to {MAX_ID_LEN} bytes long",
            config.id
        );
    }
    if config.zone.len() > MAX_ZONE_LEN {
        bail!(
            "membership: zone {:?} is longer than {MAX_ZONE_LEN} bytes",
            config.zone
        );
    }
    if config.cluster_secret.is_empty() {
        bail!(
            "membership: cluster_secret is empty; gossip is authenticated with the cluster secret"
        );
    }
    if !(MIN_PROBE_PERIOD..=MAX_PROBE_PERIOD).contains(&config.probe_period) {
        bail!(
            "membership: probe_period {:?} must be between {MIN_PROBE_PERIOD:?} and {MAX_PROBE_PERIOD:?}",
            config.probe_period
        );
    }
    Ok(())
}
