//! This process's view of the cluster, folded from foca's membership state.
//!
//! foca tracks identities by gossip address and may forget down ones; the view
//! tracks members by node id and never drops one silently: a member missing
//! from foca is Down, and one back with the same id (any address) replaces its
//! Down entry.

use std::collections::{BTreeMap, HashMap};

use tokio::time::Instant;

use crate::broadcast::LoadVersion;
use crate::identity::NodeIdentity;
use crate::limits::MAX_MEMBERS;
use crate::{LoadReport, Member, MemberState, NodeId, Snapshot};

pub(crate) struct View {
    local: Member,
    others: BTreeMap<NodeId, Entry>,
}

struct Entry {
    member: Member,
    /// When it was last seen going Down, to forget the longest-down first.
    down_since: Option<Instant>,
}

impl View {
    pub(crate) fn new(local: Member) -> Self {
        debug_assert_eq!(local.state, MemberState::Alive);
        Self {
            local,
            others: BTreeMap::new(),
        }
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        id == self.local.id || self.others.contains_key(id)
    }

    pub(crate) fn len(&self) -> usize {
        1 + self.others.len()
    }

    /// Sets our own load; returns whether the view changed.
    pub(crate) fn set_local_load(&mut self, load: Option<LoadReport>) -> bool {
        let changed = self.local.load != load;
        self.local.load = load;
        changed
    }

    /// Folds foca's full membership state (down members included) and the
    /// latest load reports in; returns whether the view changed.
    pub(crate) fn refresh<'a>(
        &mut self,
        state: impl Iterator<Item = &'a foca::Member<NodeIdentity>>,
        loads: &HashMap<NodeId, (LoadVersion, LoadReport)>,
        now: Instant,
    ) -> bool {
        // foca may hold several identities for one node id (a restart on a
        // new port leaves the old address behind): keep the best one.
        let mut best: HashMap<&str, (&NodeIdentity, MemberState)> = HashMap::new();
        for member in state {
            let identity = member.id();
            // Stale copies of ourselves, gossiped about a previous run.
            if identity.id == self.local.id {
                continue;
            }
            let state = match member.state() {
                foca::State::Alive => MemberState::Alive,
                foca::State::Suspect => MemberState::Suspect,
                foca::State::Down => MemberState::Down,
            };
            let candidate = (identity, state);
            best.entry(identity.id.as_str())
                .and_modify(|current| {
                    if rank(candidate) > rank(*current) {
                        *current = candidate;
                    }
                })
                .or_insert(candidate);
        }

        let mut changed = false;
        for (id, (identity, state)) in &best {
            let member = Member {
                id: identity.id.clone(),
                role: identity.role,
                zone: identity.zone.clone(),
                gossip_addr: identity.gossip_addr,
                http_addr: identity.http_addr,
                state: *state,
                load: loads.get(*id).map(|(_, report)| report.clone()),
            };
            let down_since = (*state == MemberState::Down).then_some(now);
            match self.others.get_mut(*id) {
                Some(entry) if entry.member == member => {}
                Some(entry) => {
                    if entry.member.state != MemberState::Down || down_since.is_none() {
                        entry.down_since = down_since;
                    }
                    entry.member = member;
                    changed = true;
                }
                None => {
                    self.others
                        .insert(member.id.clone(), Entry { member, down_since });
                    changed = true;
                }
            }
        }
        // Members foca forgot (or whose address another node took) are gone.
        for (id, entry) in &mut self.others {
            if !best.contains_key(id.as_str()) && entry.member.state != MemberState::Down {
                entry.member.state = MemberState::Down;
                entry.down_since = Some(now);
                changed = true;
            }
        }
        changed | self.forget_longest_down()
    }

    /// Keeps at most [`MAX_MEMBERS`] by forgetting the longest-down members.
    fn forget_longest_down(&mut self) -> bool {
        let excess = self.len().saturating_sub(MAX_MEMBERS);
        if excess == 0 {
            return false;
        }
        let mut down: Vec<(Instant, NodeId)> = self
            .others
            .iter()
            .filter_map(|(id, e)| e.down_since.map(|since| (since, id.clone())))
            .collect();
        down.sort_unstable();
        for (_, id) in down.iter().take(excess) {
            tracing::debug!(node = %id, "forgetting long-down member");
            self.others.remove(id);
        }
        true
    }

    /// Every member sorted by id, this process included.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut members: Vec<Member> = Vec::with_capacity(self.len());
        let mut local = Some(&self.local);
        for entry in self.others.values() {
            if let Some(l) = local.filter(|l| l.id < entry.member.id) {
                members.push(l.clone());
                local = None;
            }
            members.push(entry.member.clone());
        }
        members.extend(local.cloned());
        debug_assert!(members.windows(2).all(|w| w[0].id < w[1].id));
        Snapshot { members }
    }
}

/// Active beats Down, then the most recent process start wins.
fn rank((identity, state): (&NodeIdentity, MemberState)) -> (bool, u64) {
    (state != MemberState::Down, identity.bump)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::Role;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn identity(id: &str, port: u16, bump: u64) -> NodeIdentity {
        NodeIdentity {
            id: id.into(),
            role: Role::Storage,
            zone: "z".into(),
            gossip_addr: addr(port),
            http_addr: addr(port + 1000),
            bump,
        }
    }

    fn local() -> View {
        View::new(Member {
            id: "m".into(),
            role: Role::Gateway,
            zone: "z".into(),
            gossip_addr: addr(1),
            http_addr: addr(2),
            state: MemberState::Alive,
            load: None,
        })
    }

    fn states(view: &View) -> Vec<(String, MemberState, u16)> {
        view.snapshot()
            .members
            .into_iter()
            .map(|m| (m.id, m.state, m.gossip_addr.port()))
            .collect()
    }

    #[test]
    fn members_are_sorted_with_the_local_one_alive() {
        let mut view = local();
        let state = [
            foca::Member::alive(identity("z", 10, 1)),
            foca::Member::alive(identity("a", 11, 1)),
        ];
        assert!(view.refresh(state.iter(), &HashMap::new(), Instant::now()));
        assert_eq!(
            states(&view),
            [
                ("a".into(), MemberState::Alive, 11),
                ("m".into(), MemberState::Alive, 1),
                ("z".into(), MemberState::Alive, 10),
            ]
        );
        assert!(!view.refresh(state.iter(), &HashMap::new(), Instant::now()));
    }

    #[test]
    fn restarted_member_replaces_its_down_entry() {
        let mut view = local();
        let now = Instant::now();
        let old = foca::Member::down(identity("a", 10, 1));
        view.refresh([old.clone()].iter(), &HashMap::new(), now);
        assert_eq!(states(&view)[0], ("a".into(), MemberState::Down, 10));
        let new = foca::Member::alive(identity("a", 20, 2));
        view.refresh([old, new].iter(), &HashMap::new(), now);
        assert_eq!(states(&view)[0], ("a".into(), MemberState::Alive, 20));
    }

    #[test]
    fn member_forgotten_by_foca_stays_down() {
        let mut view = local();
        let now = Instant::now();
        view.refresh(
            [foca::Member::alive(identity("a", 10, 1))].iter(),
            &HashMap::new(),
            now,
        );
        assert!(view.refresh(std::iter::empty(), &HashMap::new(), now));
        assert_eq!(states(&view)[0], ("a".into(), MemberState::Down, 10));
    }

    #[test]
    fn stale_copies_of_ourselves_are_ignored() {
        let mut view = local();
        let us = foca::Member::down(identity("m", 99, 1));
        assert!(!view.refresh([us].iter(), &HashMap::new(), Instant::now()));
        assert_eq!(states(&view), [("m".into(), MemberState::Alive, 1)]);
    }

    #[test]
    fn loads_attach_to_their_member() {
        let mut view = local();
        let report = LoadReport {
            free_bytes: 7,
            ..LoadReport::default()
        };
        let loads = HashMap::from([("a".to_owned(), (LoadVersion::default(), report.clone()))]);
        view.refresh(
            [foca::Member::alive(identity("a", 10, 1))].iter(),
            &loads,
            Instant::now(),
        );
        assert_eq!(view.snapshot().get("a").unwrap().load, Some(report));
    }
}
