//! Authenticated gossip on real UDP sockets: a process without the cluster
//! secret never becomes a member, a captured datagram cannot be replayed, and
//! during a rolling upgrade 0.1 processes and this release still see each
//! other. `Membership::start_unauthenticated` stands in for a 0.1 process (or
//! an impostor): it runs the same SWIM, without a MAC.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{DEADLINE, PROBE_PERIOD, all_alive, config, init_tracing, state_of, wait_for};
use membership::{Config, GossipStats, MemberState, Membership, Role};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// How long an outsider keeps trying: its seeder re-announces every three
/// probe periods, and foca announces on its own too.
const INTRUSION: Duration = Duration::from_secs(4);

async fn start(config: Config) -> Membership {
    init_tracing();
    Membership::start(config).await.expect("member starts")
}

/// Two storage nodes with the shared secret that see each other.
async fn two_members() -> (Membership, Membership) {
    let s1 = start(config("s1", Role::Storage, "zone-a", 9001, &[])).await;
    let s2 = start(config(
        "s2",
        Role::Storage,
        "zone-b",
        9002,
        &[s1.local_addr()],
    ))
    .await;
    for member in [&s1, &s2] {
        wait_for(member, "s1 and s2 alive", |v| all_alive(v, &["s1", "s2"])).await;
    }
    (s1, s2)
}

/// Waits until `member`'s gossip counts satisfy `holds` (bounded).
async fn wait_for_stats(
    member: &Membership,
    what: &str,
    holds: impl Fn(&GossipStats) -> bool,
) -> GossipStats {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let stats = member.gossip_stats();
        if holds(&stats) {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {DEADLINE:?}; counts: {stats:?}"
        );
        tokio::time::sleep(PROBE_PERIOD / 4).await;
    }
}

/// The outsider keeps announcing itself for [`INTRUSION`]; then neither
/// member knows it. A member's view never forgets anyone it saw (down ones
/// stay), so looking at the end covers the whole time.
async fn assert_never_admitted(members: [&Membership; 2], outsider: &Membership) {
    tokio::time::sleep(INTRUSION).await;
    for member in members {
        let view = member.snapshot();
        assert_eq!(state_of(&view, "intruder"), None, "{view:#?}");
        assert!(all_alive(&view, &["s1", "s2"]), "{view:#?}");
    }
    // Nobody answered it either: it knows only itself.
    let seen_by_outsider = outsider.snapshot();
    assert_eq!(seen_by_outsider.members.len(), 1, "{seen_by_outsider:#?}");
}

#[tokio::test]
async fn an_unauthenticated_process_never_becomes_a_member() {
    let (s1, s2) = two_members().await;
    let seeds = [s1.local_addr(), s2.local_addr()];
    init_tracing();
    let intruder = Membership::start_unauthenticated(config(
        "intruder",
        Role::Storage,
        "zone-x",
        9066,
        &seeds,
    ))
    .await
    .expect("intruder starts");

    assert_never_admitted([&s1, &s2], &intruder).await;
    for member in [&s1, &s2] {
        let stats = member.gossip_stats();
        // Several announces each, all refused before SWIM saw them.
        assert!(stats.unauthenticated >= 2, "{stats:?}");
        assert_eq!(stats.legacy_accepted, 0, "{stats:?}");
    }
    for member in [s1, s2, intruder] {
        member.shutdown().await;
    }
}

#[tokio::test]
async fn a_process_with_another_secret_never_becomes_a_member() {
    let (s1, s2) = two_members().await;
    let seeds = [s1.local_addr(), s2.local_addr()];
    let intruder = start(Config {
        cluster_secret: "not the cluster's secret".into(),
        ..config("intruder", Role::Storage, "zone-x", 9066, &seeds)
    })
    .await;

    assert_never_admitted([&s1, &s2], &intruder).await;
    for member in [&s1, &s2] {
        let stats = member.gossip_stats();
        assert!(stats.bad_tag >= 2, "{stats:?}");
    }
    for member in [s1, s2, intruder] {
        member.shutdown().await;
    }
}

#[tokio::test]
async fn a_replayed_datagram_is_dropped() {
    // s2 advertises a relay's address, so everything sent to s2 passes the
    // relay, which forwards it and keeps a copy: the position of an attacker
    // on the path.
    let relay = UdpSocket::bind("127.0.0.1:0").await.expect("bind relay");
    let relay_addr: SocketAddr = relay.local_addr().expect("relay address");
    let s2 = start(Config {
        advertise_addr: Some(relay_addr),
        ..config("s2", Role::Storage, "zone-b", 9002, &[])
    })
    .await;
    let s2_socket = s2.local_addr();
    let (copies, mut captured) = mpsc::channel::<Vec<u8>>(64);
    let relaying = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((len, _)) = relay.recv_from(&mut buf).await {
            let datagram = &buf[..len];
            let _ = relay.send_to(datagram, s2_socket).await;
            // Full once the test has what it needs.
            let _ = copies.try_send(datagram.to_vec());
        }
    });
    let s1 = start(config("s1", Role::Storage, "zone-a", 9001, &[relay_addr])).await;
    for member in [&s1, &s2] {
        wait_for(member, "s1 and s2 alive", |v| all_alive(v, &["s1", "s2"])).await;
    }

    // The first datagram s1 sent s2 (its announce) was delivered and taken;
    // every copy of it from now on is a replay.
    let first = captured.recv().await.expect("the relay saw s1's announce");
    assert!(first.starts_with(b"FDG1"), "an authenticated datagram");
    assert_eq!(s2.gossip_stats().replay, 0);
    const REPLAYS: u64 = 5;
    let attacker = UdpSocket::bind("127.0.0.1:0").await.expect("bind attacker");
    for _ in 0..REPLAYS {
        attacker.send_to(&first, s2_socket).await.expect("replay");
    }
    let stats = wait_for_stats(&s2, "replays counted", |s| s.replay >= REPLAYS).await;
    assert_eq!(stats.replay, REPLAYS, "{stats:?}");
    assert_eq!(stats.bad_tag + stats.stale_or_future, 0, "{stats:?}");
    assert!(stats.accepted > 0, "{stats:?}");

    relaying.abort();
    for member in [s1, s2] {
        member.shutdown().await;
    }
}

#[tokio::test]
async fn legacy_mode_joins_old_and_new() {
    // Mid-upgrade: s1 runs this release with legacy peers accepted, "old"
    // still runs 0.1, and s2 is already strict.
    let s1 = start(Config {
        accept_legacy: true,
        ..config("s1", Role::Storage, "zone-a", 9001, &[])
    })
    .await;
    let seed = [s1.local_addr()];
    init_tracing();
    let old =
        Membership::start_unauthenticated(config("old", Role::Storage, "zone-b", 9002, &seed))
            .await
            .expect("0.1 stand-in starts");
    let s2 = start(config("s2", Role::Storage, "zone-c", 9003, &seed)).await;

    wait_for(&s1, "s1 sees old and s2", |v| {
        all_alive(v, &["old", "s1", "s2"])
    })
    .await;
    // The plain copies reach the 0.1 process, the authenticated ones the strict member.
    wait_for(&old, "old sees s1", |v| {
        state_of(v, "s1") == Some(MemberState::Alive)
    })
    .await;
    wait_for(&s2, "s2 sees s1", |v| {
        state_of(v, "s1") == Some(MemberState::Alive)
    })
    .await;

    let legacy = s1.gossip_stats();
    assert!(legacy.legacy_accepted > 0, "{legacy:?}");
    assert!(legacy.accepted > 0, "{legacy:?}");
    let strict = wait_for_stats(&s2, "s2 drops s1's plain copies", |s| s.unauthenticated > 0).await;
    assert_eq!(strict.legacy_accepted, 0, "{strict:?}");
    for member in [s1, old, s2] {
        member.shutdown().await;
    }
}
