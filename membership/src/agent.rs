//! The task that drives foca: one loop owns foca, the socket and the timers,
//! so foca never needs a lock and events reach it in order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use foca::{AccumulatingRuntime, Foca, OwnedNotification, PostcardCodec, Timer};
use foca_rand::SeedableRng;
use foca_rand::rngs::SmallRng;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};

use crate::auth::{Guard, wall_clock_ms};
use crate::broadcast::{self, LoadHandler, LoadTable, LoadVersion};
use crate::identity::NodeIdentity;
use crate::limits::{MAX_MEMBERS, MAX_PACKET_SIZE, MAX_SEED_ADDRS, MAX_TIMERS};
use crate::view::View;
use crate::{LoadReport, NodeId, Snapshot};

type Swim = Foca<NodeIdentity, PostcardCodec, SmallRng, LoadHandler>;

/// What the [`crate::Membership`] handle and the seed resolver send in.
pub(crate) struct Inputs {
    /// Fired by `shutdown`; dropped with the handle.
    pub(crate) stop: oneshot::Receiver<()>,
    /// Our latest load report; closed when the handle is dropped.
    pub(crate) load: watch::Receiver<Option<LoadReport>>,
    /// Resolved seed addresses to announce to.
    pub(crate) seeds: mpsc::Receiver<Vec<SocketAddr>>,
}

/// The gossip socket, and the guard that every datagram in and out passes.
pub(crate) struct Transport {
    pub(crate) socket: UdpSocket,
    /// Same socket, non-blocking, for sends that never wait.
    pub(crate) sender: std::net::UdpSocket,
    pub(crate) guard: Guard,
}

pub(crate) struct Agent {
    foca: Swim,
    runtime: AccumulatingRuntime<NodeIdentity>,
    socket: UdpSocket,
    /// Same socket, non-blocking, for sends that never wait.
    sender: std::net::UdpSocket,
    /// Authenticates every datagram in and out.
    guard: Guard,
    timers: Timers,
    view: View,
    loads: LoadTable,
    local_id: NodeId,
    local_load: Option<LoadReport>,
    load_version: LoadVersion,
    rebroadcast_every: Duration,
    snapshots: watch::Sender<Arc<Snapshot>>,
}

impl Agent {
    pub(crate) fn new(
        identity: NodeIdentity,
        config: foca::Config,
        transport: Transport,
        view: View,
        rebroadcast_every: Duration,
        snapshots: watch::Sender<Arc<Snapshot>>,
    ) -> Self {
        let loads = LoadTable::default();
        let local_id = identity.id.clone();
        let load_version = LoadVersion {
            incarnation: identity.bump,
            seq: 0,
        };
        let rng = SmallRng::seed_from_u64(rand::random());
        let handler = LoadHandler::new(loads.clone());
        let Transport {
            socket,
            sender,
            guard,
        } = transport;
        Self {
            foca: Foca::with_custom_broadcast(identity, config, rng, PostcardCodec, handler),
            runtime: AccumulatingRuntime::new(),
            socket,
            sender,
            guard,
            timers: Timers::default(),
            view,
            loads,
            local_id,
            local_load: None,
            load_version,
            rebroadcast_every,
            snapshots,
        }
    }

    pub(crate) async fn run(mut self, mut inputs: Inputs) {
        // One byte more than we accept, so an oversized datagram shows as
        // such instead of being silently truncated into something decodable.
        let mut buf = vec![0u8; MAX_PACKET_SIZE + 1];
        let mut rebroadcast = tokio::time::interval_at(
            Instant::now() + self.rebroadcast_every,
            self.rebroadcast_every,
        );
        rebroadcast.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut seeds_open = true;
        loop {
            let deadline = self.timers.next_deadline();
            // Unbiased on purpose: a flood of datagrams must not starve the
            // probe timers.
            tokio::select! {
                _ = &mut inputs.stop => break,
                changed = inputs.load.changed() => match changed {
                    Ok(()) => {
                        let report = inputs.load.borrow_and_update().clone();
                        self.set_load(report);
                    }
                    // The handle was dropped without `shutdown`.
                    Err(_) => break,
                },
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => self.on_datagram(buf.get(..len).unwrap_or_default(), from),
                    // ICMP port unreachable from a dead peer shows up here on
                    // some platforms; the socket itself is fine.
                    Err(error) => tracing::debug!(%error, "membership socket receive failed"),
                },
                () = sleep_until(deadline) => self.fire_timers(),
                addrs = inputs.seeds.recv(), if seeds_open => match addrs {
                    Some(addrs) => self.announce(addrs),
                    None => seeds_open = false,
                },
                _ = rebroadcast.tick() => self.broadcast_load(),
            }
            self.publish();
        }
        self.leave();
    }

    fn on_datagram(&mut self, data: &[u8], from: SocketAddr) {
        // Counted by reason; only what passes reaches foca.
        let payload = match self.guard.admit(data, wall_clock_ms()) {
            Ok(payload) => payload,
            Err(reason) => {
                tracing::debug!(%from, ?reason, "membership datagram dropped");
                return;
            }
        };
        // Errors are still expected from authenticated datagrams (a stale
        // peer) and, with legacy peers accepted, from anything unauthenticated
        // (port scans): foca has already dropped the packet.
        if let Err(error) = self.foca.handle_data(payload, &mut self.runtime) {
            tracing::debug!(%from, %error, "membership datagram dropped");
        }
        self.flush();
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        // Bounded by what is due now: timers foca schedules while handling
        // these are for later (or picked up on the next turn).
        let mut budget = self.timers.len();
        while budget > 0 {
            budget -= 1;
            let Some(timer) = self.timers.pop_due(now) else {
                break;
            };
            if let Err(error) = self.foca.handle_timer(timer, &mut self.runtime) {
                tracing::debug!(%error, "foca timer failed");
            }
            self.flush();
        }
    }

    fn announce(&mut self, addrs: Vec<SocketAddr>) {
        for addr in addrs.into_iter().take(MAX_SEED_ADDRS) {
            if let Err(error) = self
                .foca
                .announce(NodeIdentity::seed(addr), &mut self.runtime)
            {
                tracing::debug!(%addr, %error, "announce to seed failed");
            }
        }
        self.flush();
    }

    fn set_load(&mut self, report: Option<LoadReport>) {
        // The view picks it up in `publish`.
        self.local_load = report;
        self.broadcast_load();
    }

    /// Queues our current report under a new version; foca piggybacks it on
    /// its next messages and replaces any older one still queued.
    fn broadcast_load(&mut self) {
        let Some(report) = &self.local_load else {
            return;
        };
        self.load_version.seq = self.load_version.seq.wrapping_add(1);
        let result = broadcast::encode(&self.local_id, self.load_version, report)
            .map_err(anyhow::Error::from)
            .and_then(|data| Ok(self.foca.add_broadcast(&data)?));
        if let Err(error) = result {
            tracing::warn!(%error, "could not broadcast load report");
        }
    }

    /// Publishes a new snapshot if anything visible changed.
    fn publish(&mut self) {
        let now = Instant::now();
        let mut changed = {
            let mut loads = broadcast::lock(&self.loads);
            // Reports from members we forgot would otherwise fill the table.
            if loads.len() >= MAX_MEMBERS {
                loads.retain(|id, _| self.view.contains(id));
            }
            self.view
                .refresh(self.foca.iter_membership_state(), &loads, now)
        };
        changed |= self.view.set_local_load(self.local_load.clone());
        if changed {
            self.snapshots.send_replace(Arc::new(self.view.snapshot()));
        }
    }

    /// Tells a few members we are leaving, so they mark us Down at once.
    fn leave(&mut self) {
        if let Err(error) = self.foca.leave_cluster(&mut self.runtime) {
            tracing::debug!(%error, "leaving the cluster failed");
        }
        self.flush();
        tracing::debug!(member = ?self.foca.identity(), "left the cluster");
    }

    /// Sends, schedules and logs what foca asked for.
    fn flush(&mut self) {
        let now_ms = wall_clock_ms();
        while let Some((to, data)) = self.runtime.to_send() {
            for datagram in self.guard.outgoing(&data, now_ms) {
                debug_assert!(datagram.len() <= MAX_PACKET_SIZE);
                // Never wait on the socket: UDP is lossy anyway and SWIM retries.
                if let Err(error) = self.sender.send_to(&datagram, to.gossip_addr) {
                    tracing::debug!(to = %to.gossip_addr, %error, "membership send failed");
                }
            }
        }
        let now = Instant::now();
        while let Some((delay, timer)) = self.runtime.to_schedule() {
            self.timers.push(now + delay, timer);
        }
        while let Some(notification) = self.runtime.to_notify() {
            match notification {
                OwnedNotification::MemberUp(member) => tracing::info!(?member, "member up"),
                OwnedNotification::MemberDown(member) => tracing::info!(?member, "member down"),
                OwnedNotification::Rename(old, new) => {
                    tracing::info!(?old, ?new, "member replaced")
                }
                OwnedNotification::Rejoin(us) => {
                    tracing::warn!(?us, "cluster declared us down; rejoined")
                }
                OwnedNotification::Idle => tracing::info!("no other member reachable"),
                other => tracing::debug!(notification = ?other, "membership notification"),
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// foca timers by deadline; ties break by foca's own timer order, which is
/// the order foca needs them delivered in.
#[derive(Default)]
struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Timer<NodeIdentity>)>>,
}

impl Timers {
    fn push(&mut self, at: Instant, timer: Timer<NodeIdentity>) {
        if self.heap.len() >= MAX_TIMERS {
            tracing::error!(?timer, "too many pending membership timers, dropping one");
            return;
        }
        self.heap.push(Reverse((at, timer)));
    }

    fn len(&self) -> usize {
        self.heap.len()
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    fn pop_due(&mut self, now: Instant) -> Option<Timer<NodeIdentity>> {
        if self.next_deadline()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse((_, timer))| timer)
    }
}
