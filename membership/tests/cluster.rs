//! Real clusters on 127.0.0.1: every member binds its own UDP port and the
//! tests only look at what a user of the crate sees, the snapshots.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::{PROBE_PERIOD, all_alive, config, http_addr, init_tracing, state_of, wait_for};
use membership::{LoadReport, MemberState, Membership, Role};

async fn start(
    id: &str,
    role: Role,
    zone: &str,
    http_port: u16,
    seeds: &[SocketAddr],
) -> Membership {
    init_tracing();
    Membership::start(config(id, role, zone, http_port, seeds))
        .await
        .expect("member starts")
}

/// Three storage nodes and a gateway, all seeded with the first one.
async fn four_member_cluster() -> Vec<Membership> {
    let first = start("s1", Role::Storage, "zone-a", 9001, &[]).await;
    let seed = [first.local_addr()];
    let mut members = vec![first];
    members.push(start("s2", Role::Storage, "zone-b", 9002, &seed).await);
    members.push(start("s3", Role::Storage, "zone-c", 9003, &seed).await);
    members.push(start("gw", Role::Gateway, "zone-a", 9004, &seed).await);
    for member in &members {
        wait_for(member, "all four alive", |v| {
            all_alive(v, &["gw", "s1", "s2", "s3"])
        })
        .await;
    }
    members
}

#[tokio::test]
async fn members_seeded_with_the_first_one_all_see_each_other() {
    let members = four_member_cluster().await;
    let expected = [
        ("gw", Role::Gateway, "zone-a", 9004, members[3].local_addr()),
        ("s1", Role::Storage, "zone-a", 9001, members[0].local_addr()),
        ("s2", Role::Storage, "zone-b", 9002, members[1].local_addr()),
        ("s3", Role::Storage, "zone-c", 9003, members[2].local_addr()),
    ];
    for member in &members {
        let view = member.snapshot();
        let seen: Vec<_> = view
            .members
            .iter()
            .map(|m| {
                (
                    m.id.as_str(),
                    m.role,
                    m.zone.as_str(),
                    m.http_addr.port(),
                    m.gossip_addr,
                )
            })
            .collect();
        assert_eq!(
            seen, expected,
            "sorted by id, with roles, zones and addresses"
        );
        assert_eq!(view.live_storage().count(), 3);
    }
    for member in members {
        member.shutdown().await;
    }
}

#[tokio::test]
async fn crashed_member_is_seen_down_and_kept_in_the_view() {
    let mut members = four_member_cluster().await;
    let crashed = members.remove(2); // s3
    crashed.kill();
    for member in &members {
        let view = wait_for(member, "s3 down", |v| {
            state_of(v, "s3") == Some(MemberState::Down)
        })
        .await;
        assert_eq!(view.members.len(), 4, "down members stay in the view");
        assert_eq!(view.live_storage().count(), 2);
    }
    for member in members {
        member.shutdown().await;
    }
}

#[tokio::test]
async fn member_that_shuts_down_is_seen_down() {
    let mut members = four_member_cluster().await;
    let leaving = members.remove(3); // gw
    leaving.shutdown().await;
    for member in &members {
        wait_for(member, "gw down", |v| {
            state_of(v, "gw") == Some(MemberState::Down)
        })
        .await;
    }
    for member in members {
        member.shutdown().await;
    }
}

#[tokio::test]
async fn load_report_reaches_every_member() {
    let members = four_member_cluster().await;
    let report = LoadReport {
        capacity_bytes: 1000,
        used_bytes: 400,
        free_bytes: 600,
        in_flight: 3,
        chunk_count: 42,
    };
    members[1].set_load(report.clone()); // s2
    for member in &members {
        wait_for(member, "s2 load", |v| {
            v.get("s2").and_then(|m| m.load.as_ref()) == Some(&report)
        })
        .await;
    }

    // A newer report replaces the older one everywhere.
    let newer = LoadReport {
        used_bytes: 500,
        free_bytes: 500,
        ..report
    };
    members[1].set_load(newer.clone());
    for member in &members {
        wait_for(member, "s2 newer load", |v| {
            v.get("s2").and_then(|m| m.load.as_ref()) == Some(&newer)
        })
        .await;
    }
    for member in members {
        member.shutdown().await;
    }
}

#[tokio::test]
async fn load_report_reaches_members_that_join_later() {
    let first = start("s1", Role::Storage, "zone-a", 9001, &[]).await;
    let report = LoadReport {
        capacity_bytes: 10,
        ..LoadReport::default()
    };
    first.set_load(report.clone());
    let late = start("s2", Role::Storage, "zone-a", 9002, &[first.local_addr()]).await;
    wait_for(&late, "s1 load", |v| {
        v.get("s1").and_then(|m| m.load.as_ref()) == Some(&report)
    })
    .await;
    first.shutdown().await;
    late.shutdown().await;
}

#[tokio::test]
async fn restarted_member_with_the_same_id_is_alive_at_its_new_address() {
    let mut members = four_member_cluster().await;
    let old = members.remove(2); // s3
    let old_addr = old.local_addr();
    old.kill();

    let seed = [members[0].local_addr()];
    let restarted = start("s3", Role::Storage, "zone-c", 9013, &seed).await;
    let new_addr = restarted.local_addr();
    assert_ne!(new_addr, old_addr);
    members.push(restarted);
    for member in &members {
        let view = wait_for(member, "s3 alive at its new address", |v| {
            v.get("s3")
                .is_some_and(|m| m.state == MemberState::Alive && m.gossip_addr == new_addr)
                && all_alive(v, &["gw", "s1", "s2", "s3"])
        })
        .await;
        assert_eq!(view.get("s3").map(|m| m.http_addr), Some(http_addr(9013)));
    }
    // Once the old incarnation is detected dead, the new one must still win.
    tokio::time::sleep(PROBE_PERIOD * 15).await;
    for member in &members {
        let view = member.snapshot();
        let s3 = view.get("s3").expect("s3 in view");
        assert_eq!((s3.state, s3.gossip_addr), (MemberState::Alive, new_addr));
    }
    for member in members {
        member.shutdown().await;
    }
}

#[tokio::test]
async fn garbage_datagrams_do_not_break_a_member() {
    let first = start("s1", Role::Storage, "zone-a", 9001, &[]).await;
    let second = start("s2", Role::Storage, "zone-b", 9002, &[first.local_addr()]).await;
    wait_for(&first, "both alive", |v| all_alive(v, &["s1", "s2"])).await;

    let attacker = UdpSocket::bind("127.0.0.1:0").expect("bind attacker socket");
    let mut payloads: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0xff; 2],
        vec![0x80; 64],   // endless varint
        vec![0x01; 1400], // exactly the size limit
        vec![0x01; 1401], // one byte over it
        vec![0x00; 9000], // larger than any buffer we keep
    ];
    for len in [3, 17, 200, 1399] {
        payloads.push((0..len).map(|_| rand::random::<u8>()).collect());
    }
    for payload in &payloads {
        for target in [first.local_addr(), second.local_addr()] {
            attacker.send_to(payload, target).expect("send garbage");
        }
    }

    // Both keep probing each other, and can still take a new member in.
    tokio::time::sleep(PROBE_PERIOD * 5).await;
    for member in [&first, &second] {
        let stats = member.gossip_stats();
        assert!(stats.dropped() >= payloads.len() as u64, "{stats:?}");
    }
    let third = start("s3", Role::Storage, "zone-c", 9003, &[first.local_addr()]).await;
    for member in [&first, &second, &third] {
        wait_for(member, "all three alive", |v| {
            all_alive(v, &["s1", "s2", "s3"])
        })
        .await;
    }
    for member in [first, second, third] {
        member.shutdown().await;
    }
}

#[tokio::test]
async fn configuration_mistakes_are_reported_at_start() {
    let mut empty_id = config("", Role::Storage, "z", 9001, &[]);
    empty_id.id.clear();
    assert!(Membership::start(empty_id).await.is_err());

    let mut unreachable = config("s1", Role::Storage, "z", 9001, &[]);
    unreachable.bind_addr = SocketAddr::from(([0, 0, 0, 0], 0));
    let error = Membership::start(unreachable)
        .await
        .err()
        .expect("rejected");
    assert!(error.to_string().contains("advertise_addr"), "{error}");

    let mut zero_period = config("s1", Role::Storage, "z", 9001, &[]);
    zero_period.probe_period = Duration::ZERO;
    assert!(Membership::start(zero_period).await.is_err());

    let mut no_secret = config("s1", Role::Storage, "z", 9001, &[]);
    no_secret.cluster_secret.clear();
    let error = Membership::start(no_secret).await.err().expect("rejected");
    assert!(error.to_string().contains("cluster_secret"), "{error}");
}

#[test]
fn membership_can_be_shared_between_tasks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Membership>();
}
