//! What the membership tests share: one config for a member on 127.0.0.1,
//! and bounded waits on what a user of the crate sees, the snapshots.

// Each test file uses its own part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use membership::{Config, MemberState, Membership, Role, Snapshot};

/// Short probe period so failure detection takes seconds, not tens of them.
pub const PROBE_PERIOD: Duration = Duration::from_millis(200);
/// How long any expected view may take to appear.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// The cluster secret every member shares unless a test says otherwise.
pub const SECRET: &str = "cluster secret of the membership tests";

pub fn http_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A strict member (authenticated gossip only) with [`SECRET`].
pub fn config(id: &str, role: Role, zone: &str, http_port: u16, seeds: &[SocketAddr]) -> Config {
    Config {
        id: id.into(),
        role,
        zone: zone.into(),
        bind_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        advertise_addr: None,
        http_addr: http_addr(http_port),
        seeds: seeds.iter().map(ToString::to_string).collect(),
        probe_period: PROBE_PERIOD,
        cluster_secret: SECRET.into(),
        accept_legacy: false,
    }
}

/// RUST_LOG=membership=debug,foca=debug shows what the cluster did.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Waits until `member`'s view satisfies `holds`, or fails the test after
/// [`DEADLINE`] showing the last view.
pub async fn wait_for(
    member: &Membership,
    what: &str,
    holds: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let mut views = member.watch();
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            let view = views.borrow_and_update().clone();
            if holds(&view) {
                return view;
            }
            if views.changed().await.is_err() {
                panic!("{what}: membership stopped; last view: {view:#?}");
            }
        }
    })
    .await;
    match found {
        Ok(view) => view,
        Err(_) => panic!(
            "{what}: not within {DEADLINE:?}; last view: {:#?}",
            member.snapshot()
        ),
    }
}

pub fn state_of(view: &Snapshot, id: &str) -> Option<MemberState> {
    view.get(id).map(|m| m.state)
}

pub fn all_alive(view: &Snapshot, ids: &[&str]) -> bool {
    view.members.len() == ids.len()
        && ids
            .iter()
            .all(|id| state_of(view, id) == Some(MemberState::Alive))
}
