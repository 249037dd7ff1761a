//! Gauges read from a membership view at scrape time: members by role and
//! state, and the load every storage node gossips.

use std::sync::Arc;

use membership::{MemberState, Role, Snapshot};
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

/// Bytes as a gauge value (i64; no disk is 8 EiB).
pub fn gauge_bytes(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}
