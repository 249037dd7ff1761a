//! Gauges read from a membership view at scrape time: members by role and
//! state, and the load every storage node gossips; and the counts of gossip
//! datagrams a member accepted or dropped.

use std::sync::{Arc, Mutex, PoisonError};

use membership::{GossipStats, MemberState, Role, Snapshot};
use prometheus::IntCounter;
use tokio::sync::watch;

use crate::bundle::{Bundle, BundleBuilder};

const ROLES: [(Role, &str); 2] = [(Role::Gateway, "gateway"), (Role::Storage, "storage")];
const STATES: [(MemberState, &str); 3] = [
    (MemberState::Alive, "alive"),
    (MemberState::Suspect, "suspect"),
    (MemberState::Down, "down"),
];

/// `flexdrive_members{role,state}` and `flexdrive_member_{capacity,used,free}_bytes{node}`
/// as `view` shows them. A process registers the bundle of one view only
/// (the gateway's in `flexdrive server`), so that members are not counted
/// once per role.
pub fn membership_metrics(view: watch::Receiver<Arc<Snapshot>>) -> Bundle {
    let mut b = BundleBuilder::new();
    let members = b.gauge_vec(
        "flexdrive_members",
        "Cluster members seen by this process, by role and SWIM state.",
        &["role", "state"],
    );
    let node = &["node"];
    let capacity = b.gauge_vec(
        "flexdrive_member_capacity_bytes",
        "Capacity a live storage node last reported through gossip.",
        node,
    );
    let used = b.gauge_vec(
        "flexdrive_member_used_bytes",
        "Chunk bytes a live storage node last reported through gossip.",
        node,
    );
    let free = b.gauge_vec(
        "flexdrive_member_free_bytes",
        "Free bytes a live storage node last reported through gossip.",
        node,
    );
    b.on_collect(move || {
        let snapshot = view.borrow().clone();
        for (role, role_name) in ROLES {
            for (state, state_name) in STATES {
                let n = snapshot
                    .members
                    .iter()
                    .filter(|m| m.role == role && m.state == state)
                    .count();
                members
                    .with_label_values(&[role_name, state_name])
                    .set(n as i64);
            }
        }
        // Down nodes' last reports are stale: only live ones are shown.
        for vec in [&capacity, &used, &free] {
            vec.reset();
        }
        for m in snapshot.live_storage() {
            let Some(load) = &m.load else { continue };
            let id = [m.id.as_str()];
            capacity
                .with_label_values(&id)
                .set(gauge_bytes(load.capacity_bytes));
            used.with_label_values(&id)
                .set(gauge_bytes(load.used_bytes));
            free.with_label_values(&id)
                .set(gauge_bytes(load.free_bytes));
        }
    });
    b.build()
}

/// `flexdrive_gossip_datagrams_accepted_total{auth}` and
/// `flexdrive_gossip_datagrams_dropped_total{reason}` of one member, read
/// from `stats` (e.g. `Membership::gossip_counters`) at scrape time. Like the
/// members gauges, register one member's per process.
pub fn gossip_metrics(stats: impl Fn() -> GossipStats + Send + Sync + 'static) -> Bundle {
    let mut b = BundleBuilder::new();
    let accepted = b.counter_vec(
        "flexdrive_gossip_datagrams_accepted_total",
        "Gossip datagrams handed to SWIM, by authentication (authenticated; legacy: \
         unauthenticated, from 0.1 processes while legacy peers are accepted).",
        &["auth"],
    );
    let dropped = b.counter_vec(
        "flexdrive_gossip_datagrams_dropped_total",
        "Gossip datagrams dropped before SWIM, by reason (unauthenticated, malformed, \
         oversized, bad_tag, stale_or_future, replay, cache_full).",
        &["reason"],
    );
    // Two scrapes at once must not both add the same increase.
    let scrape = Mutex::new(());
    b.on_collect(move || {
        let _one_at_a_time = scrape.lock().unwrap_or_else(PoisonError::into_inner);
        let now = stats();
        catch_up(
            &accepted.with_label_values(&["authenticated"]),
            now.accepted,
        );
        catch_up(
            &accepted.with_label_values(&["legacy"]),
            now.legacy_accepted,
        );
        for (reason, count) in now.dropped_by_reason() {
            catch_up(&dropped.with_label_values(&[reason]), count);
        }
    });
    b.build()
}

/// Brings a counter that mirrors `total` up to it (counters only go up).
fn catch_up(counter: &IntCounter, total: u64) {
    let behind = total.saturating_sub(counter.get());
    if behind > 0 {
        counter.inc_by(behind);
    }
}

/// Bytes as a gauge value (i64; no disk is 8 EiB).
pub fn gauge_bytes(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossip_counts_appear_by_reason_and_follow_the_member() {
        let current = Arc::new(Mutex::new(GossipStats::default()));
        let source = current.clone();
        let bundle = gossip_metrics(move || *source.lock().unwrap());
        let registry = prometheus::Registry::new();
        bundle.register(&registry).unwrap();

        let text = crate::encode(&registry);
        for reason in ["unauthenticated", "bad_tag", "replay", "cache_full"] {
            let series =
                format!("flexdrive_gossip_datagrams_dropped_total{{reason=\"{reason}\"}} 0");
            assert!(text.contains(&series), "{text}");
        }

        *current.lock().unwrap() = GossipStats {
            accepted: 40,
            legacy_accepted: 2,
            bad_tag: 3,
            ..GossipStats::default()
        };
        crate::encode(&registry);
        current.lock().unwrap().bad_tag = 5;
        let text = crate::encode(&registry);
        for series in [
            "flexdrive_gossip_datagrams_accepted_total{auth=\"authenticated\"} 40",
            "flexdrive_gossip_datagrams_accepted_total{auth=\"legacy\"} 2",
            "flexdrive_gossip_datagrams_dropped_total{reason=\"bad_tag\"} 5",
            "flexdrive_gossip_datagrams_dropped_total{reason=\"replay\"} 0",
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
    }
}
