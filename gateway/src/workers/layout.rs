//! The layout leader: turns what membership and the registry say into
//! layout epochs.
//!
//! Every storage node runs this beside it; the leader (see
//! [`super::Leader`]) acts. Each tick it reads every live node's layout
//! (their sync trackers included), then:
//!
//! 1. keeps the registry: a storage node that joined gets an entry
//!    (active), a node that moved gets its new address or zone;
//! 2. works out the next decided value from the current one, one step at a
//!    time:
//!    - no layout yet, and at least three active nodes: version 1, readable
//!      at once (a 0.1 cluster's nodes already hold what the registry
//!      places on them);
//!    - the registry's active nodes differ from the newest version's
//!      members: a new version (at most [`MAX_LIVE_VERSIONS`] live);
//!    - every partition of a newer version has been pulled by its new
//!      replicas: reads move to it;
//!    - reads moved, and a quorum of every older replica set holds the
//!      epoch that said so: the older versions are retired;
//!    - a member down for `primary_failover` (and not answering a direct
//!      request either) is no partition's primary any more, and one alive
//!      again for `primary_recovery` is again;
//! 3. has that value decided by Paxos among the members of the live
//!    versions, and hands the result to every live node.
//!
//! Paxos makes one value per epoch whoever proposes, so a second node that
//! believes it leads (a paused leader, a split view) can slow things down
//! but never make two layouts. A node leads only while it sees a majority
//! of the layout's members alive, so a node cut off from the others does
//! not propose what its lonely view suggests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chunkstore::layout::{
    Accept, Ballot, Committed, LayoutVersion, MAX_LIVE_VERSIONS, Prepare, QUORUM, majority,
    value_to_propose,
};
use chunkstore::placement::{LayoutEntry, NodeState, active_members};
use tokio::time::Instant;

use super::Leader;
use crate::limits::REPLICAS;
use crate::store::cluster::{Cluster, NodeEpochs};
use crate::store::hlc::wall_ms;

/// When the leader looks, and how fast it moves primaries away from a node
/// that is down.
#[derive(Clone, Debug)]
pub struct LayoutConfig {
    pub tick: Duration,
    /// How long a member must be down before it stops being a primary
    /// (conditional writes of its partitions wait meanwhile).
    pub primary_failover: Duration,
    /// How long a member must be back before it is a primary again.
    pub primary_recovery: Duration,
    /// How long a member that membership shows down may take to answer a
    /// direct request before it is taken for down.
    pub probe_timeout: Duration,
}

impl Default for LayoutConfig {
    fn default() -> LayoutConfig {
        LayoutConfig {
            tick: Duration::from_secs(1),
            primary_failover: Duration::from_secs(3),
            primary_recovery: Duration::from_secs(10),
            probe_timeout: Duration::from_secs(2),
        }
    }
}

struct Keeper {
    cluster: Arc<Cluster>,
    leader: Leader,
    config: LayoutConfig,
    /// When each node was first seen down / alive in its current state.
    since: HashMap<String, (bool, Instant)>,
    /// The highest Paxos round seen, so a new ballot beats it.
    round: u64,
}

pub(crate) async fn run(cluster: Arc<Cluster>, leader: Leader, config: LayoutConfig) {
    let mut keeper = Keeper {
        cluster,
        leader,
        config,
        since: HashMap::new(),
        round: 0,
    };
    loop {
        tokio::time::sleep(keeper.config.tick).await;
        keeper.tick().await;
    }
}

impl Keeper {
    async fn tick(&mut self) {
        let leads = self.leader.leads();
        // Followers read a few nodes; the leader needs every node's trackers.
        let ask = if leads { usize::MAX } else { REPLICAS };
        let epochs = self.cluster.refresh(ask).await;
        self.track_liveness();
        if !leads {
            return;
        }
        if let Err(e) = self.register_members().await {
            tracing::debug!(error = %e, "registry upkeep incomplete");
            return;
        }
        let layout = self.cluster.layout();
        let current = layout.history().committed.clone();
        let down = self.confirm_down(&current).await;
        if let Some(next) = self.next_value(&epochs, &down) {
            self.decide(&current, next).await;
        }
    }

    /// For every member that membership has shown down long enough to stop
    /// being a primary: whether it also fails to answer a direct request.
    /// Membership can be wrong about a node (UDP lost, this node's own view
    /// cut off); taking the primary role away from a node that answers would
    /// only cost its partitions their conditional writes.
    async fn confirm_down(&self, current: &Committed) -> HashMap<String, bool> {
        let suspects: Vec<String> = current
            .acceptors()
            .into_iter()
            .filter(|id| !current.unavailable.contains(id))
            .filter(|id| self.held(id, false, self.config.primary_failover))
            .collect();
        let probes = suspects.into_iter().map(|id| async move {
            let answers = match self.cluster.addr_of(&id) {
                Some(addr) => matches!(
                    tokio::time::timeout(
                        self.config.probe_timeout,
                        self.cluster.client().status(addr)
                    )
                    .await,
                    Ok(Ok(_))
                ),
                None => false,
            };
            (id, !answers)
        });
        futures::future::join_all(probes)
            .await
            .into_iter()
            .collect()
    }

    fn track_liveness(&mut self) {
        let now = Instant::now();
        let layout = self.cluster.layout();
        for entry in layout.entries() {
            let live = self.cluster.is_live(&entry.id);
            let slot = self.since.entry(entry.id.clone()).or_insert((live, now));
            if slot.0 != live {
                *slot = (live, now);
            }
        }
    }

    /// Down (false) or alive (true) for at least `d`.
    fn held(&self, id: &str, live: bool, d: Duration) -> bool {
        self.since
            .get(id)
            .is_some_and(|(state, since)| *state == live && since.elapsed() >= d)
    }

    /// Gives joined nodes an entry and moved nodes their new address/zone.
    async fn register_members(&self) -> Result<(), String> {
        let layout = self.cluster.layout();
        let snapshot = self.cluster.snapshot();
        let mut changed = Vec::new();
        for m in snapshot.live_storage() {
            match layout.entry(&m.id) {
                None => changed.push(LayoutEntry {
                    id: m.id.clone(),
                    zone: m.zone.clone(),
                    http_addr: m.http_addr,
                    state: NodeState::Active,
                }),
                Some(e)
                    if e.state != NodeState::Removed
                        && (e.zone != m.zone || e.http_addr != m.http_addr) =>
                {
                    changed.push(LayoutEntry {
                        zone: m.zone.clone(),
                        http_addr: m.http_addr,
                        ..e.clone()
                    })
                }
                Some(_) => {}
            }
        }
        if !changed.is_empty() {
            tracing::info!(nodes = ?changed.iter().map(|e| &e.id).collect::<Vec<_>>(), "registry: nodes joined or moved");
            self.cluster.write_registry(changed).await?;
        }
        Ok(())
    }

    /// The next decided value, one step past the current one; None when
    /// nothing is to change.
    fn next_value(&self, epochs: &NodeEpochs, down: &HashMap<String, bool>) -> Option<Committed> {
        let layout = self.cluster.layout();
        let current = &layout.history().committed;
        let placement = layout.placement();
        let desired = active_members(layout.entries());
        let made_ms = wall_ms();
        if current.epoch == 0 {
            return (desired.len() >= REPLICAS).then(|| Committed {
                epoch: 1,
                versions: vec![LayoutVersion {
                    number: 1,
                    members: desired,
                }],
                readable: 1,
                unavailable: Default::default(),
                made_ms,
            });
        }
        let mut next = current.clone();
        next.epoch += 1;

        let newest = current.newest()?;
        if newest.members != desired
            && desired.len() >= REPLICAS
            && current.versions.len() < MAX_LIVE_VERSIONS
        {
            tracing::info!(
                version = newest.number + 1,
                members = desired.len(),
                "layout: proposing a new version"
            );
            next.versions.push(LayoutVersion {
                number: newest.number + 1,
                members: desired,
            });
        }

        let synced = placement.synced_through(&layout.history().synced);
        if synced > current.readable {
            tracing::info!(version = synced, "layout: transfer complete; moving reads");
            next.readable = synced;
        }

        // Retire versions older than the readable one once a quorum of each
        // of their replica sets holds this epoch (which says reads moved):
        // a reader still at an older epoch is then refused everywhere it
        // could read them.
        let oldest = current.versions.first()?.number;
        if oldest < current.readable {
            let knows = |id: &String| epochs.get(id).copied().flatten() >= Some(current.epoch);
            let retired: Vec<u64> = placement
                .version_numbers()
                .filter(|&v| v < current.readable)
                .collect();
            let acknowledged = retired.iter().all(|&v| {
                (0..chunkstore::layout::ALL_PARTITIONS).all(|p| {
                    placement
                        .replicas_in(v, p)
                        .iter()
                        .filter(|id| knows(id))
                        .count()
                        >= QUORUM
                })
            });
            if acknowledged {
                tracing::info!(versions = ?retired, "layout: retiring versions");
                next.versions.retain(|v| v.number >= current.readable);
            }
        }

        let members = next.acceptors();
        for id in &members {
            let unavailable = next.unavailable.contains(id);
            if !unavailable
                && id.as_str() != self.leader.me()
                && self.held(id, false, self.config.primary_failover)
                && down.get(id.as_str()).copied().unwrap_or(false)
            {
                tracing::warn!(node = %id, "layout: node down; its partitions get other primaries");
                next.unavailable.insert(id.clone());
            } else if unavailable && self.held(id, true, self.config.primary_recovery) {
                tracing::info!(node = %id, "layout: node back; primary again");
                next.unavailable.remove(id);
            }
        }
        next.unavailable.retain(|id| members.contains(id));
        // Every partition keeps a primary: marks that would leave one
        // without (all its readable replicas down) are not made, since no
        // other node could take the role anyway.
        let orphaned = {
            let placement = chunkstore::layout::Placement::new(&next);
            (0..chunkstore::layout::ALL_PARTITIONS).any(|p| placement.primary(p).is_none())
        };
        if orphaned {
            let added: Vec<String> = next
                .unavailable
                .difference(&current.unavailable)
                .cloned()
                .collect();
            for id in added {
                next.unavailable.remove(&id);
            }
        }

        let unchanged = next.versions == current.versions
            && next.readable == current.readable
            && next.unavailable == current.unavailable;
        if unchanged {
            return None;
        }
        next.made_ms = made_ms;
        Some(next)
    }

    /// Runs one Paxos instance for `next.epoch` among the acceptors of the
    /// current value; on success hands the decided value to every live node.
    async fn decide(&mut self, current: &Committed, next: Committed) {
        let slot = current.epoch + 1;
        debug_assert_eq!(next.epoch, slot);
        let acceptors: Vec<String> = if current.epoch == 0 {
            next.acceptors().into_iter().collect()
        } else {
            current.acceptors().into_iter().collect()
        };
        let needed = majority(acceptors.len());
        let addrs: Vec<(String, std::net::SocketAddr)> = acceptors
            .iter()
            .filter_map(|id| Some((id.clone(), self.cluster.addr_of(id)?)))
            .collect();
        self.round += 1;
        let ballot = Ballot {
            round: self.round,
            proposer: self.leader.me().to_string(),
        };
        let client = self.cluster.client().clone();
        let prepare = Prepare {
            slot,
            ballot: ballot.clone(),
        };
        let promises = futures::future::join_all(addrs.iter().map(|(id, addr)| {
            let (client, prepare) = (client.clone(), &prepare);
            async move { (id, *addr, client.prepare(*addr, prepare).await) }
        }))
        .await;
        let mut granted = Vec::new();
        for (id, addr, answer) in promises {
            match answer {
                Ok(p) if p.epoch >= slot => {
                    // Decided already: learn it instead.
                    self.cluster.refresh_from(addr).await;
                    return;
                }
                Ok(p) => {
                    if let Some(promised) = &p.promised {
                        self.round = self.round.max(promised.round);
                    }
                    if p.granted {
                        granted.push(p);
                    }
                }
                Err(e) => tracing::debug!(node = %id, error = %e, "paxos prepare failed"),
            }
        }
        if granted.len() < needed {
            tracing::debug!(
                slot,
                granted = granted.len(),
                needed,
                "layout: no majority promised; trying again"
            );
            return;
        }
        let value = value_to_propose(&granted, next);
        let accept = Accept {
            slot,
            ballot,
            value: value.clone(),
        };
        let answers = futures::future::join_all(addrs.iter().map(|(id, addr)| {
            let (client, accept) = (client.clone(), &accept);
            async move { (id, client.accept(*addr, accept).await) }
        }))
        .await;
        let mut accepted = 0;
        for (id, answer) in answers {
            match answer {
                Ok(a) => {
                    if let Some(promised) = &a.promised {
                        self.round = self.round.max(promised.round);
                    }
                    accepted += usize::from(a.granted);
                }
                Err(e) => tracing::debug!(node = %id, error = %e, "paxos accept failed"),
            }
        }
        if accepted < needed {
            tracing::debug!(slot, accepted, needed, "layout: not accepted by a majority");
            return;
        }
        tracing::info!(
            epoch = value.epoch,
            versions = ?value.versions.iter().map(|v| (v.number, v.members.len())).collect::<Vec<_>>(),
            readable = value.readable,
            unavailable = ?value.unavailable,
            "layout: epoch decided"
        );
        let mut history = self.cluster.layout().history().clone();
        history.merge(&chunkstore::layout::LayoutHistory {
            committed: value,
            synced: Default::default(),
        });
        self.cluster.adopt(&history);
        let live = self.cluster.live_storage();
        let pushes = live.iter().map(|node| {
            let (client, history) = (client.clone(), &history);
            async move {
                if let Err(e) = client.push_layout(node.addr, history).await {
                    tracing::debug!(node = %node.id, error = %e, "cannot hand a node the new layout");
                }
            }
        });
        futures::future::join_all(pushes).await;
    }
}
