//! The layout history: which storage nodes hold which metadata partitions,
//! as a chain of versions that changes one *epoch* at a time.
//!
//! A layout *version* is a set of members (node id and zone); every
//! partition's replicas in that version follow by rendezvous hashing
//! ([`crate::placement::replicas_of`]). A membership change that moves
//! partitions makes a new version; it does not replace the old one at
//! once. While several versions are live:
//!
//! - writes go to the replicas of every live version, and need a quorum in
//!   each of them;
//! - reads go to a quorum of the *readable* version, the newest one whose
//!   transfer is complete;
//! - a member of a newer version that did not hold a partition in the
//!   readable version *pulls* the partition's records from a quorum of the
//!   readable version's replicas, and records that in its sync tracker;
//! - once every such pull of a version is done, the version becomes
//!   readable; once a quorum of every older replica set has learned that,
//!   the older versions are retired and their former replicas drop what they
//!   no longer hold.
//!
//! Each step is a new [`Committed`] value, decided by single-decree Paxos
//! among the members of the live versions ([`Acceptor`]), so that two
//! proposers never make two different values of one epoch. Every metadata
//! request carries the caller's epoch and a node refuses a different one
//! (see `crate::fence`), so a caller with an old view finds out at once.
//! The step-by-step account, with why each step is safe, is in
//! `docs/layout.md`.
//!
//! This module is pure: types, merge rules and the placement they imply.
//! The storage node keeps its copy durably (`crate::layout_store`), the
//! gateways and the background workers keep theirs in memory.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::placement::{
    LayoutEntry, META_REPLICAS, Member, PARTITIONS, active_members, replicas_of,
};

/// Every partition, the system partition (the last) included.
pub const ALL_PARTITIONS: u16 = PARTITIONS + 1;

/// Most versions live at once: another change waits until the oldest
/// transition has finished. Bounds the write fan-out (every live version's
/// replicas) and the history's size.
pub const MAX_LIVE_VERSIONS: usize = 4;

/// Replicas that must answer a read or take a write, in every replica set.
pub const QUORUM: usize = 2;

/// One layout version: the nodes that hold partitions in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutVersion {
    pub number: u64,
    /// Sorted by id.
    pub members: Vec<Member>,
}

/// What consensus decides, one value per epoch. Epoch 0 is "no layout
/// decided yet" (a new cluster, or one written by 0.1, whose nodes placed
/// partitions from the registry alone).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub epoch: u64,
    /// Live versions, oldest first.
    pub versions: Vec<LayoutVersion>,
    /// The version reads go to: its transfer is complete.
    pub readable: u64,
    /// Nodes that serve as no partition's primary (down for a while): the
    /// next replica in order is the primary instead.
    pub unavailable: BTreeSet<String>,
    /// When the proposer made this value (ms since the Unix epoch, its clock).
    pub made_ms: u64,
}

impl Committed {
    pub fn version(&self, number: u64) -> Option<&LayoutVersion> {
        self.versions.iter().find(|v| v.number == number)
    }

    pub fn newest(&self) -> Option<&LayoutVersion> {
        self.versions.last()
    }

    /// Members of any live version: the acceptors of the next epoch.
    pub fn acceptors(&self) -> BTreeSet<String> {
        self.versions
            .iter()
            .flat_map(|v| v.members.iter().map(|m| m.id.clone()))
            .collect()
    }

    /// Whether the value is well formed: versions in increasing order, the
    /// readable one live and every version non-empty.
    pub fn is_valid(&self) -> bool {
        if self.epoch == 0 {
            return self.versions.is_empty();
        }
        !self.versions.is_empty()
            && self.versions.windows(2).all(|w| w[0].number < w[1].number)
            && self.versions.iter().all(|v| !v.members.is_empty())
            && self.version(self.readable).is_some()
    }
}

/// Pull progress: per node, per partition, the newest version for which
/// the node has pulled that partition's records from a quorum of the
/// readable version's replicas. Grows only; merged by maximum.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncTrackers {
    pub nodes: BTreeMap<String, BTreeMap<u16, u64>>,
}

impl SyncTrackers {
    pub fn get(&self, node: &str, partition: u16) -> u64 {
        self.nodes
            .get(node)
            .and_then(|p| p.get(&partition))
            .copied()
            .unwrap_or(0)
    }

    /// Records a pull; true if it raised the tracker.
    pub fn record(&mut self, node: &str, partition: u16, version: u64) -> bool {
        let slot = self
            .nodes
            .entry(node.to_string())
            .or_default()
            .entry(partition)
            .or_insert(0);
        let raised = version > *slot;
        *slot = (*slot).max(version);
        raised
    }
}

/// A node's whole view of the layout history: the decided value and the
/// pull progress. The registry of nodes (addresses, zones, states) is kept
/// beside it, one record per node, as in 0.1.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutHistory {
    pub committed: Committed,
    pub synced: SyncTrackers,
}

impl LayoutHistory {
    pub fn epoch(&self) -> u64 {
        self.committed.epoch
    }

    /// Merges another copy in: the later epoch's value (epochs form one
    /// chain, so the later one descends from the earlier) and every tracker's
    /// maximum. Trackers of nodes that hold nothing any more are dropped.
    /// True when this copy changed.
    pub fn merge(&mut self, other: &LayoutHistory) -> bool {
        let before = self.clone();
        if other.committed.epoch > self.committed.epoch && other.committed.is_valid() {
            self.committed = other.committed.clone();
        }
        for (node, partitions) in &other.synced.nodes {
            for (&p, &v) in partitions {
                self.synced.record(node, p, v);
            }
        }
        if self.committed.epoch > 0 {
            let members = self.committed.acceptors();
            self.synced.nodes.retain(|node, _| members.contains(node));
        }
        *self != before
    }
}

/// The replica sets a committed value implies, computed once per epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    pub epoch: u64,
    pub readable: u64,
    /// Per live version (oldest first): its number, and the replicas of
    /// every partition in score order (index = partition).
    versions: Vec<(u64, Vec<Vec<String>>)>,
    unavailable: BTreeSet<String>,
}

/// One transition in progress: a live version newer than the readable one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub version: u64,
    /// Partitions whose new replicas have all pulled their records.
    pub partitions_synced: u32,
    pub partitions_total: u32,
}

impl Placement {
    /// The placement of a decided layout (epoch 1 on).
    pub fn new(committed: &Committed) -> Placement {
        let versions = committed
            .versions
            .iter()
            .map(|v| (v.number, all_replicas(&v.members)))
            .collect();
        Placement {
            epoch: committed.epoch,
            readable: committed.readable,
            versions,
            unavailable: committed.unavailable.clone(),
        }
    }

    /// The placement of a cluster without a decided layout (epoch 0): one
    /// version, 0, of the registry's active nodes, as 0.1 placed partitions.
    pub fn from_registry<'a>(entries: impl IntoIterator<Item = &'a LayoutEntry>) -> Placement {
        let members = active_members(entries);
        let versions = if members.is_empty() {
            Vec::new()
        } else {
            vec![(0, all_replicas(&members))]
        };
        Placement {
            epoch: 0,
            readable: 0,
            versions,
            unavailable: BTreeSet::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    /// Live version numbers, oldest first.
    pub fn version_numbers(&self) -> impl Iterator<Item = u64> + '_ {
        self.versions.iter().map(|(n, _)| *n)
    }

    fn sets(&self, version: u64) -> Option<&Vec<Vec<String>>> {
        self.versions
            .iter()
            .find(|(n, _)| *n == version)
            .map(|(_, s)| s)
    }

    /// Replicas of `partition` in `version` (empty if not live).
    pub fn replicas_in(&self, version: u64, partition: u16) -> &[String] {
        self.sets(version)
            .and_then(|s| s.get(partition as usize))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Where reads of `partition` go: its replicas in the readable version.
    pub fn read_set(&self, partition: u16) -> &[String] {
        self.replicas_in(self.readable, partition)
    }

    /// Where writes of `partition` go: its replicas in every live version
    /// (each set needs its own quorum).
    pub fn write_sets(&self, partition: u16) -> impl Iterator<Item = &[String]> + '_ {
        self.versions.iter().map(move |(_, sets)| {
            sets.get(partition as usize)
                .map(Vec::as_slice)
                .unwrap_or(&[])
        })
    }

    /// Every node a write of `partition` goes to, once each: the readable
    /// replicas first, then the others.
    pub fn write_nodes(&self, partition: u16) -> Vec<String> {
        let mut nodes: Vec<String> = self.read_set(partition).to_vec();
        for set in self.write_sets(partition) {
            for id in set {
                if !nodes.contains(id) {
                    nodes.push(id.clone());
                }
            }
        }
        nodes
    }

    /// Whether `node` holds `partition` in some live version.
    pub fn holds(&self, node: &str, partition: u16) -> bool {
        self.write_sets(partition)
            .any(|set| set.iter().any(|id| id == node))
    }

    /// The partition's primary: the first readable replica that is not
    /// unavailable. Conditional writes of the partition go through it; it
    /// is a function of the epoch, so every caller at one epoch agrees.
    pub fn primary(&self, partition: u16) -> Option<&str> {
        self.read_set(partition)
            .iter()
            .find(|id| !self.unavailable.contains(*id))
            .map(String::as_str)
    }

    /// Every node that holds any partition in a live version.
    pub fn nodes(&self) -> BTreeSet<&str> {
        self.versions
            .iter()
            .flat_map(|(_, sets)| sets.iter().flatten())
            .map(String::as_str)
            .collect()
    }

    /// Every partition's readable replicas: equal placements mean no record
    /// moves.
    pub fn read_placement(&self) -> Vec<Vec<String>> {
        (0..ALL_PARTITIONS)
            .map(|p| self.read_set(p).to_vec())
            .collect()
    }

    /// Whether `node` must pull `partition` for `version`: it holds the
    /// partition there but not in the readable version, and its tracker is
    /// behind.
    fn owes(&self, trackers: &SyncTrackers, node: &str, version: u64, partition: u16) -> bool {
        self.replicas_in(version, partition)
            .iter()
            .any(|id| id == node)
            && !self.read_set(partition).iter().any(|id| id == node)
            && trackers.get(node, partition) < version
    }

    /// The partitions `node` must pull now, each with the newest version it
    /// is pulled for (one pull counts for every version up to that one).
    pub fn pulls_owed(&self, trackers: &SyncTrackers, node: &str) -> Vec<(u16, u64)> {
        let mut owed = Vec::new();
        for p in 0..ALL_PARTITIONS {
            let newest = self
                .version_numbers()
                .filter(|&v| v > self.readable)
                .filter(|&v| self.owes(trackers, node, v, p))
                .max();
            if let Some(v) = newest {
                owed.push((p, v));
            }
        }
        owed
    }

    /// Whether every new replica of `partition` in `version` has pulled it.
    fn partition_synced(&self, trackers: &SyncTrackers, version: u64, partition: u16) -> bool {
        self.replicas_in(version, partition)
            .iter()
            .all(|id| !self.owes(trackers, id, version, partition))
    }

    /// Each live version newer than the readable one, with how many
    /// partitions are synced.
    pub fn transitions(&self, trackers: &SyncTrackers) -> Vec<Transition> {
        self.version_numbers()
            .filter(|&v| v > self.readable)
            .map(|v| Transition {
                version: v,
                partitions_synced: (0..ALL_PARTITIONS)
                    .filter(|&p| self.partition_synced(trackers, v, p))
                    .count() as u32,
                partitions_total: u32::from(ALL_PARTITIONS),
            })
            .collect()
    }

    /// The newest live version whose every partition is synced (at least
    /// the readable one): where reads may move.
    pub fn synced_through(&self, trackers: &SyncTrackers) -> u64 {
        self.transitions(trackers)
            .into_iter()
            .filter(|t| t.partitions_synced == t.partitions_total)
            .map(|t| t.version)
            .max()
            .unwrap_or(self.readable)
            .max(self.readable)
    }
}

fn all_replicas(members: &[Member]) -> Vec<Vec<String>> {
    (0..ALL_PARTITIONS)
        .map(|p| replicas_of(p, members, META_REPLICAS))
        .collect()
}

/// A Paxos ballot: higher rounds win, the proposer's id breaks ties.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ballot {
    pub round: u64,
    pub proposer: String,
}

/// Phase 1 of deciding epoch `slot`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepare {
    pub slot: u64,
    pub ballot: Ballot,
}

/// An acceptor's answer to [`Prepare`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promise {
    pub granted: bool,
    /// The highest ballot this acceptor has promised for the slot.
    pub promised: Option<Ballot>,
    /// What it accepted for the slot, if anything: the proposer must
    /// propose the value of the highest such ballot among a majority.
    pub accepted: Option<(Ballot, Committed)>,
    /// The acceptor's own decided epoch: above `slot - 1`, the slot is
    /// decided already and the proposer must catch up first.
    pub epoch: u64,
}

/// Phase 2 of deciding epoch `slot`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accept {
    pub slot: u64,
    pub ballot: Ballot,
    pub value: Committed,
}

/// An acceptor's answer to [`Accept`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub granted: bool,
    pub promised: Option<Ballot>,
    pub epoch: u64,
}

/// One node's acceptor state for the next undecided epoch. Kept durably:
/// a promise or acceptance forgotten in a crash could let two values win.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acceptor {
    pub slot: u64,
    pub promised: Option<Ballot>,
    pub accepted: Option<(Ballot, Committed)>,
}

impl Acceptor {
    /// The state for `slot`, forgetting an older slot's.
    fn at(&mut self, slot: u64) {
        if self.slot != slot {
            *self = Acceptor {
                slot,
                promised: None,
                accepted: None,
            };
        }
    }

    /// Phase 1 at a node whose decided epoch is `epoch`. The state may
    /// change (persist it before answering).
    pub fn prepare(&mut self, epoch: u64, req: &Prepare) -> Promise {
        if req.slot != epoch + 1 {
            return Promise {
                granted: false,
                promised: None,
                accepted: None,
                epoch,
            };
        }
        self.at(req.slot);
        let granted = self.promised.as_ref().is_none_or(|p| req.ballot > *p);
        if granted {
            self.promised = Some(req.ballot.clone());
        }
        Promise {
            granted,
            promised: self.promised.clone(),
            accepted: self.accepted.clone(),
            epoch,
        }
    }

    /// Phase 2 at a node whose decided epoch is `epoch`. The state may
    /// change (persist it before answering).
    pub fn accept(&mut self, epoch: u64, req: &Accept) -> Accepted {
        let well_formed = req.value.epoch == req.slot && req.value.is_valid();
        if req.slot != epoch + 1 || !well_formed {
            return Accepted {
                granted: false,
                promised: None,
                epoch,
            };
        }
        self.at(req.slot);
        let granted = self.promised.as_ref().is_none_or(|p| req.ballot >= *p);
        if granted {
            self.promised = Some(req.ballot.clone());
            self.accepted = Some((req.ballot.clone(), req.value.clone()));
        }
        Accepted {
            granted,
            promised: self.promised.clone(),
            epoch,
        }
    }
}

/// The value a proposer must propose after a majority promised: the one
/// accepted under the highest ballot, if any acceptor accepted one, else
/// its own.
pub fn value_to_propose(promises: &[Promise], own: Committed) -> Committed {
    promises
        .iter()
        .filter_map(|p| p.accepted.as_ref())
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, v)| v.clone())
        .unwrap_or(own)
}

/// How many acceptors make a majority of `n`.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(ids: &[&str]) -> Vec<Member> {
        ids.iter()
            .map(|id| Member {
                id: id.to_string(),
                zone: format!("z-{id}"),
            })
            .collect()
    }

    fn committed(epoch: u64, versions: &[(u64, &[&str])], readable: u64) -> Committed {
        Committed {
            epoch,
            versions: versions
                .iter()
                .map(|(n, ids)| LayoutVersion {
                    number: *n,
                    members: members(ids),
                })
                .collect(),
            readable,
            unavailable: BTreeSet::new(),
            made_ms: 0,
        }
    }

    #[test]
    fn a_new_version_is_read_from_the_old_one_until_its_new_replicas_pulled() {
        let c = committed(
            2,
            &[(1, &["a", "b", "c"]), (2, &["a", "b", "c", "d", "e"])],
            1,
        );
        let placement = Placement::new(&c);
        let mut trackers = SyncTrackers::default();
        // Reads stay on the three old nodes; writes reach both versions.
        for p in 0..ALL_PARTITIONS {
            assert!(
                placement
                    .read_set(p)
                    .iter()
                    .all(|id| id != "d" && id != "e")
            );
            assert_eq!(placement.write_sets(p).count(), 2);
        }
        let owed_d = placement.pulls_owed(&trackers, "d");
        let owed_e = placement.pulls_owed(&trackers, "e");
        assert!(!owed_d.is_empty() && !owed_e.is_empty());
        assert!(placement.pulls_owed(&trackers, "a").is_empty());
        let transition = &placement.transitions(&trackers)[0];
        assert!(transition.partitions_synced < transition.partitions_total);
        assert_eq!(placement.synced_through(&trackers), 1);

        for (p, v) in owed_d {
            trackers.record("d", p, v);
        }
        assert_eq!(
            placement.synced_through(&trackers),
            1,
            "e has not pulled yet"
        );
        for (p, v) in owed_e {
            trackers.record("e", p, v);
        }
        assert_eq!(placement.synced_through(&trackers), 2);
        let transition = &placement.transitions(&trackers)[0];
        assert_eq!(transition.partitions_synced, transition.partitions_total);
    }

    #[test]
    fn one_pull_counts_for_every_version_up_to_the_one_it_was_made_for() {
        let c = committed(
            3,
            &[
                (1, &["a", "b", "c"]),
                (2, &["a", "b", "c", "d"]),
                (3, &["a", "b", "c", "d", "e"]),
            ],
            1,
        );
        let placement = Placement::new(&c);
        let mut trackers = SyncTrackers::default();
        for node in ["d", "e"] {
            for (p, v) in placement.pulls_owed(&trackers, node) {
                assert_eq!(v, if node == "e" { 3 } else { v });
                trackers.record(node, p, v);
            }
        }
        assert_eq!(placement.synced_through(&trackers), 3);
    }

    #[test]
    fn the_primary_is_the_first_readable_replica_that_is_not_unavailable() {
        let mut c = committed(1, &[(1, &["a", "b", "c", "d"])], 1);
        let placement = Placement::new(&c);
        let p = 7;
        let first = placement.read_set(p)[0].clone();
        assert_eq!(placement.primary(p), Some(first.as_str()));
        c.unavailable.insert(first.clone());
        let placement = Placement::new(&c);
        assert_eq!(
            placement.primary(p),
            Some(placement.read_set(p)[1].as_str())
        );
    }

    #[test]
    fn the_later_epoch_wins_and_trackers_merge_by_maximum() {
        let mut a = LayoutHistory {
            committed: committed(1, &[(1, &["a", "b", "c"])], 1),
            synced: SyncTrackers::default(),
        };
        let mut b = LayoutHistory {
            committed: committed(2, &[(1, &["a", "b", "c"]), (2, &["a", "b", "c", "d"])], 1),
            synced: SyncTrackers::default(),
        };
        b.synced.record("d", 3, 2);
        a.synced.record("d", 4, 2);
        a.synced.record("gone", 4, 2);
        let mut ab = a.clone();
        assert!(ab.merge(&b));
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, ba);
        assert_eq!(ab.epoch(), 2);
        assert_eq!(ab.synced.get("d", 3), 2);
        assert_eq!(ab.synced.get("d", 4), 2);
        assert!(!ab.synced.nodes.contains_key("gone"));
        assert!(!ab.clone().merge(&a), "merging again changes nothing");
    }

    #[test]
    fn an_invalid_value_is_never_merged_or_accepted() {
        let mut bad = committed(5, &[(1, &["a"])], 9);
        assert!(!bad.is_valid());
        let mut history = LayoutHistory::default();
        assert!(!history.merge(&LayoutHistory {
            committed: bad.clone(),
            synced: SyncTrackers::default(),
        }));
        bad.epoch = 1;
        let mut acceptor = Acceptor::default();
        let ballot = Ballot {
            round: 1,
            proposer: "a".into(),
        };
        assert!(
            !acceptor
                .accept(
                    0,
                    &Accept {
                        slot: 1,
                        ballot,
                        value: bad
                    }
                )
                .granted
        );
    }

    /// A proposer's round against in-memory acceptors.
    fn propose(
        acceptors: &mut [Acceptor],
        reachable: &[usize],
        ballot: Ballot,
        own: Committed,
    ) -> Option<Committed> {
        let slot = own.epoch;
        let promises: Vec<Promise> = reachable
            .iter()
            .map(|&i| {
                acceptors[i].prepare(
                    slot - 1,
                    &Prepare {
                        slot,
                        ballot: ballot.clone(),
                    },
                )
            })
            .filter(|p| p.granted)
            .collect();
        if promises.len() < majority(acceptors.len()) {
            return None;
        }
        let value = value_to_propose(&promises, own);
        let accepted = reachable
            .iter()
            .filter(|&&i| {
                acceptors[i]
                    .accept(
                        slot - 1,
                        &Accept {
                            slot,
                            ballot: ballot.clone(),
                            value: value.clone(),
                        },
                    )
                    .granted
            })
            .count();
        (accepted >= majority(acceptors.len())).then_some(value)
    }

    #[test]
    fn two_proposers_never_decide_two_values_for_one_epoch() {
        let x = committed(1, &[(1, &["a", "b", "c"])], 1);
        let y = committed(1, &[(1, &["a", "b", "c", "d"])], 1);
        let ballot = |round: u64, who: &str| Ballot {
            round,
            proposer: who.into(),
        };
        // Every interleaving of two proposers over five acceptors where
        // each reaches a different majority: the second learns the first's.
        let mut acceptors = vec![Acceptor::default(); 5];
        let first = propose(&mut acceptors, &[0, 1, 2], ballot(1, "p"), x.clone());
        assert_eq!(first, Some(x.clone()));
        let second = propose(&mut acceptors, &[2, 3, 4], ballot(2, "q"), y.clone());
        assert_eq!(second, Some(x.clone()), "the chosen value survives");

        // A stale ballot is refused once a higher one was promised.
        let mut acceptors = vec![Acceptor::default(); 3];
        assert!(propose(&mut acceptors, &[0, 1], ballot(5, "q"), y.clone()).is_some());
        assert!(propose(&mut acceptors, &[1, 2], ballot(4, "p"), x.clone()).is_none());

        // Accepted by a minority only: a later proposer may still choose its own.
        let mut acceptors = vec![Acceptor::default(); 3];
        assert!(propose(&mut acceptors, &[0], ballot(1, "p"), x.clone()).is_none());
        let later = propose(&mut acceptors, &[1, 2], ballot(2, "q"), y.clone());
        assert_eq!(later, Some(y));
    }

    #[test]
    fn an_acceptor_refuses_slots_other_than_the_next_one() {
        let mut acceptor = Acceptor::default();
        let ballot = Ballot {
            round: 1,
            proposer: "p".into(),
        };
        let promise = acceptor.prepare(3, &Prepare { slot: 3, ballot });
        assert!(!promise.granted);
        assert_eq!(promise.epoch, 3);
    }

    #[test]
    fn the_registry_places_partitions_as_0_1_did() {
        use crate::placement::NodeState;
        let entries: Vec<LayoutEntry> = ["a", "b", "c", "d"]
            .iter()
            .map(|id| LayoutEntry {
                id: id.to_string(),
                zone: format!("z-{id}"),
                http_addr: "127.0.0.1:1".parse().unwrap(),
                state: if *id == "d" {
                    NodeState::Draining
                } else {
                    NodeState::Active
                },
            })
            .collect();
        let placement = Placement::from_registry(&entries);
        for p in 0..ALL_PARTITIONS {
            assert_eq!(
                placement.read_set(p),
                crate::placement::replicas(p, &entries, META_REPLICAS).as_slice()
            );
        }
    }
}
