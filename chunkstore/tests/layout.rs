//! Layout epochs on real storage nodes (127.0.0.1, real redb files): the
//! fence, conditional writes through the partition's primary, transfers to a
//! new replica, byte-bounded scans, compaction, and answer authentication.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use chunkstore::layout::{Committed, LayoutHistory, LayoutVersion, Placement};
use chunkstore::placement::{LayoutEntry, Member, NodeState};
use chunkstore::{
    CasOutcome, CasRequest, ClientError, Condition, ConditionalWrite, Expect, Fence, GuardedWrite,
    NodeClient, Record, ReplicationConfig, StorageConfig, StorageNode, Table,
};

const SECRET: &str = "layout-test-secret";

async fn bounded<F: Future<Output = ()>>(test: F) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("FLEXDRIVE_LOG"))
        .with_test_writer()
        .try_init();
    tokio::time::timeout(Duration::from_secs(90), test)
        .await
        .expect("test took longer than 90 s");
}

/// Nodes that look for replication work every 100 ms.
async fn start_nodes(dirs: &[tempfile::TempDir], scan_bytes: usize) -> Vec<StorageNode> {
    start_nodes_with(dirs, scan_bytes, Duration::from_secs(3600)).await
}

/// Nodes as [`start_nodes`], forgetting deletions after `horizon`.
async fn start_nodes_with(
    dirs: &[tempfile::TempDir],
    scan_bytes: usize,
    horizon: Duration,
) -> Vec<StorageNode> {
    let mut nodes = Vec::new();
    for dir in dirs {
        let mut config = StorageConfig::new(
            dir.path().to_path_buf(),
            "127.0.0.1:0".parse().unwrap(),
            SECRET,
        );
        config.scan_bytes = scan_bytes;
        config.replication = ReplicationConfig {
            check_interval: Duration::from_millis(100),
            full_push_interval: Duration::from_millis(300),
            tombstone_horizon: horizon,
        };
        nodes.push(StorageNode::start(config).await.unwrap());
    }
    nodes
}

fn dirs(n: usize) -> Vec<tempfile::TempDir> {
    (0..n).map(|_| tempfile::tempdir().unwrap()).collect()
}

fn members(nodes: &[&StorageNode]) -> Vec<Member> {
    let mut m: Vec<Member> = nodes
        .iter()
        .map(|n| Member {
            id: n.id().to_string(),
            zone: format!("zone-{}", n.id()),
        })
        .collect();
    m.sort();
    m
}

/// Writes every node's registry entry on every node of `all`, and the given
/// history on each of `told` (the others stay behind).
async fn install(all: &[StorageNode], told: &[&StorageNode], history: &LayoutHistory) {
    let client = NodeClient::new(SECRET);
    let registry: Vec<Record> = all
        .iter()
        .map(|n| {
            let entry = LayoutEntry {
                id: n.id().to_string(),
                zone: format!("zone-{}", n.id()),
                http_addr: n.http_addr(),
                state: NodeState::Active,
            };
            Record {
                key: entry.id.as_bytes().to_vec(),
                ts: 1,
                value: Some(rmp_serde::to_vec_named(&entry).unwrap()),
            }
        })
        .collect();
    for node in all {
        client
            .meta_put(node.http_addr(), 0, Table::Layout, &registry)
            .await
            .unwrap();
    }
    for node in told {
        client.push_layout(node.http_addr(), history).await.unwrap();
    }
}

fn history(epoch: u64, versions: Vec<Vec<Member>>, readable: u64) -> LayoutHistory {
    LayoutHistory {
        committed: Committed {
            epoch,
            versions: versions
                .into_iter()
                .enumerate()
                .map(|(i, members)| LayoutVersion {
                    number: i as u64 + 1,
                    members,
                })
                .collect(),
            readable,
            ..Committed::default()
        },
        ..LayoutHistory::default()
    }
}

fn addr_of(nodes: &[StorageNode], id: &str) -> SocketAddr {
    nodes.iter().find(|n| n.id() == id).unwrap().http_addr()
}

/// A key of partition `p` in the buckets table.
fn key(p: u16, name: &str) -> Vec<u8> {
    [&p.to_be_bytes()[..], name.as_bytes()].concat()
}

fn record(key: Vec<u8>, ts: u64, value: &str) -> Record {
    Record {
        key,
        ts,
        value: Some(value.as_bytes().to_vec()),
    }
}

#[tokio::test]
async fn requests_at_another_epoch_are_fenced_and_tell_the_node_epoch() {
    bounded(async {
        let dirs = dirs(3);
        let nodes = start_nodes(&dirs, usize::MAX).await;
        let all: Vec<&StorageNode> = nodes.iter().collect();
        install(&nodes, &all, &history(2, vec![members(&all)], 1)).await;
        let client = NodeClient::new(SECRET);
        let addr = nodes[0].http_addr();
        let k = key(3, "k");
        assert_eq!(
            client.meta_get(addr, 2, Table::Buckets, &k).await.unwrap(),
            None
        );
        match client.meta_get(addr, 1, Table::Buckets, &k).await {
            Err(ClientError::Fenced(_, Fence::Stale { node_epoch: 2 })) => {}
            other => panic!("a stale read passed: {other:?}"),
        }
        match client
            .meta_put(addr, 3, Table::Buckets, &[record(k.clone(), 5, "x")])
            .await
        {
            Err(ClientError::Fenced(_, Fence::Behind { node_epoch: 2 })) => {}
            other => panic!("a write from a newer epoch passed: {other:?}"),
        }
        // Nothing was written by the refused request.
        assert_eq!(nodes[0].meta().get(Table::Buckets, &k).unwrap(), None);
        // The layout table itself is not fenced: it is how layouts spread.
        assert!(client.layout(addr).await.unwrap().history.epoch() == 2);
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn exactly_one_of_racing_conditional_creates_wins_through_the_primary() {
    bounded(async {
        let dirs = dirs(3);
        let nodes = start_nodes(&dirs, usize::MAX).await;
        let all: Vec<&StorageNode> = nodes.iter().collect();
        let h = history(1, vec![members(&all)], 1);
        install(&nodes, &all, &h).await;
        let placement = Placement::new(&h.committed);
        let p = 42;
        let primary = placement.primary(p).unwrap().to_string();
        let k = key(p, "bucket-name");

        let mut tasks = Vec::new();
        for n in 0..12u64 {
            let client = NodeClient::new(SECRET);
            let addr = addr_of(&nodes, &primary);
            let write = ConditionalWrite {
                condition: Condition::Absent,
                write: record(k.clone(), 100 + n, &format!("owner-{n}")),
            };
            tasks.push(tokio::spawn(async move {
                client
                    .conditional(addr, 1, Table::Buckets, &write)
                    .await
                    .unwrap()
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            let outcome = task.await.unwrap();
            if outcome.written {
                winners.push(outcome.record.unwrap());
            } else {
                assert!(
                    outcome.record.is_some(),
                    "a refusal names the record that won"
                );
            }
        }
        assert_eq!(winners.len(), 1, "exactly one create wins");
        // The winner is on a quorum of the replicas, identical.
        let holding = nodes
            .iter()
            .filter(|n| n.meta().get(Table::Buckets, &k).unwrap().as_ref() == Some(&winners[0]))
            .count();
        assert!(holding >= 2, "{holding} replicas hold the winner");

        // Read-modify-write: only the writer that read the current record wins.
        let client = NodeClient::new(SECRET);
        let addr = addr_of(&nodes, &primary);
        let stale = ConditionalWrite {
            condition: Condition::Unchanged(winners[0].ts - 1),
            write: record(k.clone(), winners[0].ts + 10, "lost"),
        };
        assert!(
            !client
                .conditional(addr, 1, Table::Buckets, &stale)
                .await
                .unwrap()
                .written
        );
        let fresh = ConditionalWrite {
            condition: Condition::Unchanged(winners[0].ts),
            // Stamped below the current record: the primary stamps it above.
            write: record(k.clone(), 1, "updated"),
        };
        let outcome = client
            .conditional(addr, 1, Table::Buckets, &fresh)
            .await
            .unwrap();
        assert!(outcome.written);
        assert!(outcome.record.as_ref().unwrap().ts > winners[0].ts);

        // Any other replica refuses: it is not the primary at this epoch.
        let other = placement
            .read_set(p)
            .iter()
            .find(|id| **id != primary)
            .unwrap()
            .clone();
        match client
            .conditional(addr_of(&nodes, &other), 1, Table::Buckets, &fresh)
            .await
        {
            Err(ClientError::Fenced(_, Fence::NotPrimary { node_epoch: 1 })) => {}
            other => panic!("a second primary answered: {other:?}"),
        }
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await;
}

/// Parts racing the close of their upload: each part write is guarded by
/// the upload record being the one its writer read; the close is a
/// conditional write of that record. Every part written is on a quorum
/// before the close, every part after it is refused, and a guard in another
/// partition is refused outright.
#[tokio::test]
async fn guarded_writes_land_only_while_their_guard_is_unchanged() {
    bounded(async {
        let dirs = dirs(3);
        let nodes = start_nodes(&dirs, usize::MAX).await;
        let all: Vec<&StorageNode> = nodes.iter().collect();
        let h = history(1, vec![members(&all)], 1);
        install(&nodes, &all, &h).await;
        let placement = Placement::new(&h.committed);
        let p = 7;
        let primary = addr_of(&nodes, placement.primary(p).unwrap());
        let client = NodeClient::new(SECRET);
        let upload = key(p, "upload");
        let open = client
            .conditional(
                primary,
                1,
                Table::Uploads,
                &ConditionalWrite {
                    condition: Condition::Absent,
                    write: record(upload.clone(), 100, "open"),
                },
            )
            .await
            .unwrap()
            .record
            .unwrap();
        let part = |n: u64| GuardedWrite {
            guard_table: Table::Uploads,
            guard_key: upload.clone(),
            condition: Condition::Unchanged(open.ts),
            write: record(key(p, &format!("part-{n:03}")), 200 + n, "data"),
        };

        let mut tasks = Vec::new();
        for n in 0..20u64 {
            let client = client.clone();
            let write = part(n);
            tasks.push(tokio::spawn(async move {
                client
                    .guarded(primary, 1, Table::Parts, &write)
                    .await
                    .unwrap()
            }));
        }
        // The close, in the middle of the parts.
        let closed = client
            .conditional(
                primary,
                1,
                Table::Uploads,
                &ConditionalWrite {
                    condition: Condition::Unchanged(open.ts),
                    write: record(upload.clone(), 300, "closed"),
                },
            )
            .await
            .unwrap();
        assert!(closed.written);
        // What a quorum holds right after the close: the parts it admitted.
        let mut admitted_at_close = BTreeSet::new();
        for n in 0..20u64 {
            let k = key(p, &format!("part-{n:03}"));
            let holding = nodes
                .iter()
                .filter(|node| node.meta().get(Table::Parts, &k).unwrap().is_some())
                .count();
            if holding >= 2 {
                admitted_at_close.insert(n);
            }
        }
        let mut written = BTreeSet::new();
        for (n, task) in tasks.into_iter().enumerate() {
            let outcome = task.await.unwrap();
            if outcome.written {
                written.insert(n as u64);
            } else {
                assert_eq!(
                    outcome.record.as_ref().and_then(|r| r.value.as_deref()),
                    Some(&b"closed"[..]),
                    "a refused part names the guard that refused it"
                );
            }
        }
        assert_eq!(
            written, admitted_at_close,
            "every part acknowledged was on a quorum when the upload closed, and no other"
        );
        assert!(
            !client
                .guarded(primary, 1, Table::Parts, &part(99))
                .await
                .unwrap()
                .written
        );

        let elsewhere = GuardedWrite {
            guard_key: key(p + 1, "upload"),
            ..part(98)
        };
        match client.guarded(primary, 1, Table::Parts, &elsewhere).await {
            Err(ClientError::Status(_, 400, _)) => {}
            other => panic!("a guard in another partition was taken: {other:?}"),
        }
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await;
}

/// An object record as gateways write it: one version with an ETag.
fn object_version(key: Vec<u8>, id: &str, ts: u64, etag: &str) -> Record {
    #[derive(serde::Serialize)]
    struct Data<'a> {
        etag: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Version<'a> {
        version_id: &'a str,
        ts: u64,
        data: Option<Data<'a>>,
    }
    #[derive(serde::Serialize)]
    struct Object<'a> {
        versions: Vec<Version<'a>>,
    }
    let value = Object {
        versions: vec![Version {
            version_id: id,
            ts,
            data: Some(Data { etag }),
        }],
    };
    Record {
        key,
        ts,
        value: Some(rmp_serde::to_vec_named(&value).unwrap()),
    }
}

#[tokio::test]
async fn exactly_one_of_racing_creates_of_the_null_version_wins() {
    bounded(async {
        let dirs = dirs(3);
        let nodes = start_nodes(&dirs, usize::MAX).await;
        let all: Vec<&StorageNode> = nodes.iter().collect();
        let h = history(1, vec![members(&all)], 1);
        install(&nodes, &all, &h).await;
        let p = 77;
        let primary = Placement::new(&h.committed).primary(p).unwrap().to_string();
        // Unversioned buckets write every object as version `null`: racing
        // creates differ only in content and timestamp.
        let mut tasks = Vec::new();
        for n in 0..12u64 {
            let client = NodeClient::new(SECRET);
            let addr = addr_of(&nodes, &primary);
            let write = ConditionalWrite {
                condition: Condition::Absent,
                write: object_version(key(p, "race/1"), "null", 1000 - n, &format!("etag-{n}")),
            };
            tasks.push(tokio::spawn(async move {
                client
                    .conditional(addr, 1, Table::Objects, &write)
                    .await
                    .unwrap()
            }));
        }
        let mut written = 0;
        for task in tasks {
            written += usize::from(task.await.unwrap().written);
        }
        assert_eq!(written, 1, "exactly one create of the null version wins");
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await;
}

/// Conditional creates the 0.1 way, `n` of them, each sent to the node
/// `target(n)` picks: the winners' count, and every refusal names an ETag.
async fn legacy_creates(
    nodes: &[StorageNode],
    k: &[u8],
    count: u64,
    target: impl Fn(u64) -> usize,
) -> usize {
    let mut tasks = Vec::new();
    for n in 0..count {
        let client = NodeClient::new(SECRET);
        let addr = nodes[target(n)].http_addr();
        let req = CasRequest {
            expect: Expect::Absent,
            seen: None,
            write: object_version(k.to_vec(), "null", 1000 + n, &format!("etag-{n}")),
        };
        tasks.push(tokio::spawn(async move {
            client
                .meta_cas_legacy(addr, Table::Objects, &req, false)
                .await
                .unwrap()
        }));
    }
    let mut written = 0;
    for task in tasks {
        match task.await.unwrap() {
            CasOutcome::Written(_) => written += 1,
            CasOutcome::Refused { current_etag } => {
                assert!(current_etag.is_some(), "a refusal names the current ETag")
            }
        }
    }
    written
}

/// 0.1 gateways send a conditional write to the first replica they believe
/// alive; two that disagree send the same key's creates to two nodes. With
/// no layout decided, every node sends them on to the partition's first
/// replica, so one wins; while that replica is down, they fail rather than
/// win somewhere else.
#[tokio::test]
async fn without_a_layout_legacy_creates_sent_to_different_nodes_have_one_winner() {
    bounded(async {
        let dirs = dirs(3);
        let mut nodes = start_nodes(&dirs, usize::MAX).await;
        install(&nodes, &[], &LayoutHistory::default()).await;
        let p = 23;
        let k = key(p, "race/legacy");
        let written = legacy_creates(&nodes, &k, 12, |n| n as usize % 3).await;
        assert_eq!(written, 1, "exactly one create wins");

        let entries: Vec<LayoutEntry> = nodes
            .iter()
            .map(|n| LayoutEntry {
                id: n.id().to_string(),
                zone: format!("zone-{}", n.id()),
                http_addr: n.http_addr(),
                state: NodeState::Active,
            })
            .collect();
        let first = Placement::from_registry(&entries).read_set(p)[0].clone();
        let down = nodes.iter().position(|n| n.id() == first).unwrap();
        nodes.remove(down).shutdown().await;
        let other = key(p, "race/while-down");
        let client = NodeClient::new(SECRET);
        let req = CasRequest {
            expect: Expect::Absent,
            seen: None,
            write: object_version(other.clone(), "null", 5000, "lonely"),
        };
        match client
            .meta_cas_legacy(nodes[0].http_addr(), Table::Objects, &req, false)
            .await
        {
            Err(ClientError::Status(_, 503, _)) => {}
            other => panic!("a create was checked on a replica other than the first: {other:?}"),
        }
        for node in &nodes {
            assert_eq!(node.meta().get(Table::Objects, &other).unwrap(), None);
        }
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await;
}

/// During the upgrade's gateway restarts, 0.1 gateways' conditional writes
/// race the new gateways' on the same key: both go through the primary.
#[tokio::test]
async fn legacy_and_protocol_2_creates_race_through_one_primary() {
    bounded(async {
        let dirs = dirs(3);
        let nodes = start_nodes(&dirs, usize::MAX).await;
        let all: Vec<&StorageNode> = nodes.iter().collect();
        let h = history(1, vec![members(&all)], 1);
        install(&nodes, &all, &h).await;
        let p = 31;
        let primary = Placement::new(&h.committed).primary(p).unwrap().to_string();
        let k = key(p, "race/mixed");
        let new_creates: Vec<_> = (0..6u64)
            .map(|n| {
                let client = NodeClient::new(SECRET);
                let addr = addr_of(&nodes, &primary);
                let write = ConditionalWrite {
                    condition: Condition::Absent,
                    write: object_version(k.clone(), "null", 2000 + n, &format!("new-{n}")),
                };
                tokio::spawn(async move {
                    client
                        .conditional(addr, 1, Table::Objects, &write)
                        .await
                        .unwrap()
                        .written
                })
            })
            .collect();
        let mut written = legacy_creates(&nodes, &k, 6, |n| n as usize % 3).await;
        for task in new_creates {
            written += usize::from(task.await.unwrap());
        }
        assert_eq!(written, 1, "exactly one of the mixed creates wins");
        let holding = nodes
            .iter()
            .filter(|n| n.meta().get(Table::Objects, &k).unwrap().is_some())
            .count();
        assert!(holding >= 2, "the winner is on {holding} replicas");
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_conditional_write_that_landed_in_part_is_done_by_its_retry_not_refused() {
    bounded(async {
        let dirs = dirs(3);
        let nodes = start_nodes(&dirs, usize::MAX).await;
        let all: Vec<&StorageNode> = nodes.iter().collect();
        let h = history(1, vec![members(&all)], 1);
        install(&nodes, &all, &h).await;
        let placement = Placement::new(&h.committed);
        let p = 11;
        let primary = placement.primary(p).unwrap().to_string();
        let other = placement
            .read_set(p)
            .iter()
            .find(|id| **id != primary)
            .unwrap()
            .clone();
        let client = NodeClient::new(SECRET);
        let k = key(p, "race");
        let mine = record(k.clone(), 50, "first attempt");
        // The first attempt reached one replica before its primary was fenced.
        client
            .meta_put(
                addr_of(&nodes, &other),
                1,
                Table::Buckets,
                std::slice::from_ref(&mine),
            )
            .await
            .unwrap();
        let retry = ConditionalWrite {
            condition: Condition::Absent,
            write: mine.clone(),
        };
        let outcome = client
            .conditional(addr_of(&nodes, &primary), 1, Table::Buckets, &retry)
            .await
            .unwrap();
        assert!(
            outcome.written,
            "the retry was refused by its own first attempt"
        );
        let holding = nodes
            .iter()
            .filter(|n| {
                n.meta()
                    .get(Table::Buckets, &k)
                    .unwrap()
                    .and_then(|r| r.value)
                    .as_deref()
                    == Some(&b"first attempt"[..])
            })
            .count();
        assert!(holding >= 2, "on {holding} replicas");
        // Anybody else's create of the key is refused now.
        let theirs = ConditionalWrite {
            condition: Condition::Absent,
            write: record(k.clone(), 60, "second client"),
        };
        let outcome = client
            .conditional(addr_of(&nodes, &primary), 1, Table::Buckets, &theirs)
            .await
            .unwrap();
        assert!(!outcome.written);
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_primary_that_missed_a_new_epoch_cannot_write() {
    bounded(async {
        let dirs = dirs(3);
        let nodes = start_nodes(&dirs, usize::MAX).await;
        let all: Vec<&StorageNode> = nodes.iter().collect();
        let old = history(1, vec![members(&all)], 1);
        install(&nodes, &all, &old).await;
        let p = 7;
        let old_primary = Placement::new(&old.committed)
            .primary(p)
            .unwrap()
            .to_string();
        // Epoch 2 takes the primary role away from it; the other two learn
        // it, the old primary does not (as if it had been paused).
        let mut new = history(2, vec![members(&all)], 1);
        new.committed.unavailable = BTreeSet::from([old_primary.clone()]);
        let others: Vec<&StorageNode> = nodes.iter().filter(|n| n.id() != old_primary).collect();
        install(&nodes, &others, &new).await;
        let new_primary = Placement::new(&new.committed)
            .primary(p)
            .unwrap()
            .to_string();
        assert_ne!(new_primary, old_primary);

        let client = NodeClient::new(SECRET);
        let k = key(p, "contended");
        let stale = ConditionalWrite {
            condition: Condition::Absent,
            write: record(k.clone(), 10, "from the old primary"),
        };
        match client
            .conditional(addr_of(&nodes, &old_primary), 1, Table::Buckets, &stale)
            .await
        {
            Err(ClientError::Fenced(_, _)) => {}
            other => panic!("the old primary acted at a superseded epoch: {other:?}"),
        }
        // It caught up on the way, and nothing was written anywhere.
        let old_node = nodes.iter().find(|n| n.id() == old_primary).unwrap();
        assert_eq!(old_node.layout().epoch(), 2);
        for node in &nodes {
            assert_eq!(node.meta().get(Table::Buckets, &k).unwrap(), None);
        }
        let fresh = ConditionalWrite {
            condition: Condition::Absent,
            write: record(k.clone(), 11, "from the new primary"),
        };
        let outcome = client
            .conditional(addr_of(&nodes, &new_primary), 2, Table::Buckets, &fresh)
            .await
            .unwrap();
        assert!(outcome.written);
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_new_replica_pulls_its_partitions_from_a_quorum_before_it_counts_as_synced() {
    bounded(async {
        let dirs = dirs(4);
        // A tiny byte bound: a page holds one or two of a partition's three
        // records, so transfers page.
        let nodes = start_nodes(&dirs, 30).await;
        let (old, new) = nodes.split_at(3);
        let old_refs: Vec<&StorageNode> = old.iter().collect();
        let v1 = history(1, vec![members(&old_refs)], 1);
        install(&nodes, &old_refs, &v1).await;
        // Records on two of the three old replicas only, as quorum writes
        // leave them, in every partition.
        let client = NodeClient::new(SECRET);
        let mut written = Vec::new();
        let mut by_node: std::collections::BTreeMap<String, Vec<Record>> = Default::default();
        for p in 0..=256u16 {
            let replicas = Placement::new(&v1.committed).read_set(p).to_vec();
            for i in 0..3 {
                let r = record(key(p, &format!("k{i}")), 5, &format!("v{p}-{i}"));
                for id in replicas.iter().skip(i % 2).take(2) {
                    by_node.entry(id.clone()).or_default().push(r.clone());
                }
                written.push(r);
            }
        }
        for (id, records) in by_node {
            client
                .meta_put(addr_of(&nodes, &id), 1, Table::Objects, &records)
                .await
                .unwrap();
        }
        // Epoch 2 adds the fourth node.
        let all: Vec<&StorageNode> = nodes.iter().collect();
        let v2 = history(2, vec![members(&old_refs), members(&all)], 1);
        install(&nodes, &all, &v2).await;
        let d = new[0].id().to_string();
        let placement = Placement::new(&v2.committed);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(80);
        loop {
            let h = new[0].layout().history();
            if placement.pulls_owed(&h.synced, &d).is_empty() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "transfer did not finish"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Every record of every partition it owes is there.
        let mut expected = 0;
        for r in &written {
            let p = u16::from_be_bytes([r.key[0], r.key[1]]);
            if placement.replicas_in(2, p).contains(&d) && !placement.read_set(p).contains(&d) {
                expected += 1;
                assert_eq!(
                    new[0].meta().get(Table::Objects, &r.key).unwrap().as_ref(),
                    Some(r),
                    "partition {p}"
                );
            }
        }
        assert!(expected > 0);
        // And the other nodes heard of it: the leader reads their trackers.
        let heard = client.layout(old[0].http_addr()).await.unwrap().history;
        assert!(placement.transitions(&heard.synced)[0].partitions_synced == 257);
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_record_stamped_far_ahead_of_the_node_clock_is_refused() {
    bounded(async {
        let dirs = dirs(1);
        let nodes = start_nodes(&dirs, usize::MAX).await;
        let client = NodeClient::new(SECRET);
        let addr = nodes[0].http_addr();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let ahead = chunkstore::wire::ts_of_millis(now_ms + 600_000);
        let k = key(3, "skewed");
        match client
            .meta_put(
                addr,
                0,
                Table::Objects,
                &[record(k.clone(), ahead, "from the future")],
            )
            .await
        {
            Err(ClientError::Status(_, 400, why)) => assert!(why.contains("clock"), "{why}"),
            other => panic!("a record 10 minutes ahead was taken: {other:?}"),
        }
        assert_eq!(nodes[0].meta().get(Table::Objects, &k).unwrap(), None);
        let fine = chunkstore::wire::ts_of_millis(now_ms + 5_000);
        client
            .meta_put(addr, 0, Table::Objects, &[record(k.clone(), fine, "now")])
            .await
            .unwrap();
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn scans_are_bounded_in_bytes_and_page_to_the_end() {
    bounded(async {
        let dirs = dirs(1);
        let nodes = start_nodes(&dirs, 10 * 1024).await;
        let client = NodeClient::new(SECRET);
        let addr = nodes[0].http_addr();
        // 20 records of 4 KiB: a 10 KiB bound cuts pages at two or three.
        let big = "x".repeat(4096);
        let records: Vec<Record> = (0..20)
            .map(|i| record(key(1, &format!("k{i:02}")), 1, &big))
            .collect();
        client
            .meta_put(addr, 0, Table::Objects, &records)
            .await
            .unwrap();
        let mut position = key(1, "");
        let mut seen = 0;
        let mut pages = 0;
        loop {
            let page = client
                .meta_scan(addr, 0, Table::Objects, &position, &key(2, ""), 1000)
                .await
                .unwrap();
            assert!(
                page.records.len() <= 3,
                "{} records in a page",
                page.records.len()
            );
            seen += page.records.len();
            pages += 1;
            match page.records.last() {
                Some(last) if page.more => position = [last.key.as_slice(), &[0]].concat(),
                _ => break,
            }
        }
        assert_eq!(seen, 20);
        assert!(pages >= 7);
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn tombstones_every_replica_holds_are_compacted_after_the_horizon() {
    bounded(async {
        let dirs = dirs(3);
        let nodes = start_nodes_with(&dirs, usize::MAX, Duration::from_secs(1800)).await;
        let all: Vec<&StorageNode> = nodes.iter().collect();
        install(&nodes, &all, &history(1, vec![members(&all)], 1)).await;
        let client = NodeClient::new(SECRET);
        let now_ts = |offset_ms: i64| {
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            chunkstore::wire::ts_of_millis((ms + offset_ms) as u64)
        };
        // Two records every replica holds, deleted an hour ago and just now;
        // deletions are remembered for half an hour.
        let old_tomb = Record {
            key: key(9, "deleted-long-ago"),
            ts: now_ts(-3_600_000),
            value: None,
        };
        let new_tomb = Record {
            key: key(9, "deleted-just-now"),
            ts: now_ts(0),
            value: None,
        };
        let lived = [
            record(old_tomb.key.clone(), now_ts(-7_200_000), "old"),
            record(new_tomb.key.clone(), now_ts(-7_200_000), "young"),
        ];
        for node in &nodes {
            client
                .meta_put(node.http_addr(), 1, Table::Buckets, &lived)
                .await
                .unwrap();
        }
        for node in &nodes {
            client
                .meta_put(
                    node.http_addr(),
                    1,
                    Table::Buckets,
                    &[old_tomb.clone(), new_tomb.clone()],
                )
                .await
                .unwrap();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while nodes.iter().any(|n| {
            n.meta()
                .get(Table::Buckets, &old_tomb.key)
                .unwrap()
                .is_some()
        }) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the old tombstone stayed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for node in &nodes {
            assert!(
                node.meta()
                    .get(Table::Buckets, &new_tomb.key)
                    .unwrap()
                    .is_some()
            );
        }
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_tombstone_a_replica_lacks_is_not_compacted() {
    bounded(async {
        let dirs = dirs(3);
        let mut nodes = start_nodes_with(&dirs, usize::MAX, Duration::from_secs(1)).await;
        let all: Vec<&StorageNode> = nodes.iter().collect();
        install(&nodes, &all, &history(1, vec![members(&all)], 1)).await;
        let client = NodeClient::new(SECRET);
        // A record every replica has, long ago.
        let live = record(key(9, "deleted"), 1 << 16, "alive");
        for node in &nodes {
            client
                .meta_put(
                    node.http_addr(),
                    1,
                    Table::Buckets,
                    std::slice::from_ref(&live),
                )
                .await
                .unwrap();
        }
        // A replica goes away; then the record is deleted (long ago too, by
        // the timestamps): pushes to that replica fail, so nobody may forget
        // the tombstone, or the gone replica's copy would come back.
        let gone = nodes.pop().unwrap();
        gone.shutdown().await;
        let tomb = Record {
            key: live.key.clone(),
            ts: 2 << 16,
            value: None,
        };
        client
            .meta_put(
                nodes[0].http_addr(),
                1,
                Table::Buckets,
                std::slice::from_ref(&tomb),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        for node in &nodes {
            assert_eq!(
                node.meta().get(Table::Buckets, &tomb.key).unwrap(),
                Some(tomb.clone())
            );
        }
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await;
}

/// A plain HTTP server that answers every request 200 with `body`, as a
/// process that is not a node of the cluster would (no answer tag).
async fn impostor(body: Vec<u8>, with_protocol: bool) -> SocketAddr {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
                        if with_protocol {
                            resp.headers_mut()
                                .insert("x-fd-protocol", "2".parse().unwrap());
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn answers_without_a_valid_tag_are_refused() {
    bounded(async {
        // A forged record, well encoded.
        let forged = Some(record(key(256, "root-key"), 99, "attacker's secret"));
        let body = postcard::to_stdvec(&forged).unwrap();
        let client = NodeClient::new(SECRET);
        for with_protocol in [false, true] {
            let addr = impostor(body.clone(), with_protocol).await;
            match client
                .meta_get(addr, 1, Table::Keys, &key(256, "root-key"))
                .await
            {
                Err(ClientError::Status(_, 200, why)) => assert!(why.contains("answer")),
                other => panic!("a forged answer was taken: {other:?}"),
            }
        }
        // Only during a rolling upgrade, and only from a node that speaks 0.1.
        let legacy = NodeClient::new(SECRET).accepting_legacy_peers(true);
        let addr = impostor(body.clone(), false).await;
        assert!(legacy.meta_get(addr, 1, Table::Keys, b"..").await.is_ok());
        let addr = impostor(body, true).await;
        assert!(legacy.meta_get(addr, 1, Table::Keys, b"..").await.is_err());

        // A real node's answers carry a tag the client checks.
        let dirs = dirs(1);
        let nodes = start_nodes(&dirs, usize::MAX).await;
        assert_eq!(
            client
                .meta_get(nodes[0].http_addr(), 0, Table::Keys, b"k")
                .await
                .unwrap(),
            None
        );
        let stranger = NodeClient::new("another cluster's secret");
        assert!(stranger.status(nodes[0].http_addr()).await.is_err());
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await;
}
