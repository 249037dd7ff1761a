//! Durability in the background: the chunks-below-three-copies figure, repair
//! after the dead-node timeout, decommission, and the admin status.

use std::collections::HashMap;
use std::time::Duration;

use flexdrive::admin_client::AdminClient;
use gateway::admin::{NodeDetail, Status};
use gateway::workers::repair::RepairConfig;
use http::Method;

use crate::common::*;

/// Small chunks, so one object spreads over every node.
const CHUNK: usize = 64 * 1024;

/// How long a stopped node stays "down but not dead" in these tests: long
/// enough to see the figure, short enough for a test.
const DEAD_AFTER: Duration = Duration::from_secs(6);

fn fast_repair() -> RepairConfig {
    RepairConfig {
        interval: Duration::from_millis(500),
        dead_after: DEAD_AFTER,
        records_per_pass: 1000,
    }
}

fn admin(c: &TestCluster) -> AdminClient {
    AdminClient::new(&c.admin_endpoint(), ADMIN_TOKEN).expect("admin client")
}

async fn status(c: &TestCluster) -> Status {
    admin(c)
        .call_json(Method::GET, "/v1/status", None::<&()>)
        .await
        .expect("GET /v1/status")
}

/// Polls the status (bounded) until `done` holds; returns that status.
async fn wait_status(c: &TestCluster, what: &str, done: impl Fn(&Status) -> bool) -> Status {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(c).await;
        if done(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still not so after 60 s: {s:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// chunk file name -> indexes of the nodes (among `nodes`) holding it.
fn chunk_map(c: &TestCluster, nodes: &[usize]) -> HashMap<String, Vec<usize>> {
    let mut map: HashMap<String, Vec<usize>> = HashMap::new();
    for &i in nodes {
        for name in chunk_files(&c.node_dir(i)) {
            map.entry(name).or_default().push(i);
        }
    }
    map
}

/// The node holding the most chunk copies.
fn busiest_node(c: &TestCluster, nodes: usize) -> usize {
    (0..nodes)
        .max_by_key(|&i| chunk_files(&c.node_dir(i)).len())
        .expect("nodes")
}

fn member<'a>(s: &'a Status, id: &str) -> &'a gateway::admin::MemberInfo {
    s.members
        .iter()
        .find(|m| m.id == id)
        .unwrap_or_else(|| panic!("{id} not in the status: {s:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_brings_chunks_of_a_dead_node_back_to_three_copies() {
    bounded(Duration::from_secs(150), async {
        let mut c = TestCluster::start_with_repair(5, CHUNK, fast_repair()).await;
        c.create_bucket("repair").await;
        let body = data(20 * CHUNK + 7, 31);
        c.put("repair", "obj", body.clone()).await;
        let chunks: Vec<String> = chunk_map(&c, &[0, 1, 2, 3, 4]).into_keys().collect();
        assert_eq!(chunks.len(), 21);

        let victim = busiest_node(&c, 5);
        let victim_id = c.node_id(victim);
        c.embedded.kill_storage(victim).await;

        // Within the failure-detection time: down, and the figure shows it.
        let s = wait_status(&c, "killed node down and chunks below three", |s| {
            member(s, &victim_id).state == "down" && s.durability.chunks_below_three_copies > 0
        })
        .await;
        assert!(s.durability.chunks_below_three_copies <= 21);
        assert_eq!(member(&s, &victim_id).health, "down");

        // After the dead-node timeout: every chunk has three live copies again.
        wait_status(&c, "repair done", |s| {
            s.durability.complete
                && s.durability.chunks_below_three_copies == 0
                && s.durability.repair_queue == 0
        })
        .await;
        let live: Vec<usize> = (0..5).filter(|&i| i != victim).collect();
        let map = chunk_map(&c, &live);
        for chunk in &chunks {
            let copies = map.get(chunk).map_or(0, Vec::len);
            assert!(copies >= 3, "chunk {chunk} has {copies} live copies");
        }
        assert!(c.get("repair", "obj").await == body, "object changed");
        let s = status(&c).await;
        assert!(s.durability.chunks_repaired > 0);
        assert_eq!(s.partitions.with_quorum, s.partitions.total);
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decommission_drains_a_live_node_out_of_the_layout() {
    bounded(Duration::from_secs(150), async {
        let c = TestCluster::start_with_repair(5, CHUNK, fast_repair()).await;
        c.create_bucket("drain").await;
        let body = data(20 * CHUNK + 7, 32);
        c.put("drain", "obj", body.clone()).await;
        let all = [0, 1, 2, 3, 4];
        let chunks: Vec<String> = chunk_map(&c, &all).into_keys().collect();
        let leaving = busiest_node(&c, 5);
        let leaving_id = c.node_id(leaving);
        assert!(!chunk_files(&c.node_dir(leaving)).is_empty());

        let admin = admin(&c);
        let path = format!("/v1/nodes/{leaving_id}");
        let started: NodeDetail = admin
            .call_json(Method::POST, &format!("{path}/remove"), None::<&()>)
            .await
            .expect("remove");
        assert_ne!(started.node.layout.as_deref(), Some("active"));

        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let d: NodeDetail = admin
                .call_json(Method::GET, &path, None::<&()>)
                .await
                .expect("node detail");
            if d.node.layout.as_deref() == Some("removed") {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not drained: {d:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // Its copies live on the four others, three each; its own are deleted.
        let others: Vec<usize> = all.into_iter().filter(|&i| i != leaving).collect();
        let map = chunk_map(&c, &others);
        for chunk in &chunks {
            let copies = map.get(chunk).map_or(0, Vec::len);
            assert!(copies >= 3, "chunk {chunk} has {copies} copies elsewhere");
        }
        assert!(chunk_files(&c.node_dir(leaving)).is_empty());
        assert!(c.get("drain", "obj").await == body, "object changed");

        // New data goes to the others only.
        c.put("drain", "after", data(10 * CHUNK, 33)).await;
        assert!(chunk_files(&c.node_dir(leaving)).is_empty());
        let s = status(&c).await;
        assert_eq!(member(&s, &leaving_id).layout.as_deref(), Some("removed"));
        assert_eq!(s.durability.chunks_below_three_copies, 0);
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_every_member_and_refuses_to_drain_below_three_nodes() {
    bounded(Duration::from_secs(60), async {
        let c = TestCluster::start(3).await;
        let s = status(&c).await;
        let storage: Vec<_> = s.members.iter().filter(|m| m.role == "storage").collect();
        assert_eq!(storage.len(), 3, "{s:#?}");
        assert_eq!(s.members.iter().filter(|m| m.role == "gateway").count(), 1);
        for m in &storage {
            assert_eq!((m.state.as_str(), m.health.as_str()), ("alive", "ok"));
            assert_eq!(m.layout.as_deref(), Some("active"));
        }
        assert_eq!(s.partitions.total, 257);
        assert_eq!(s.partitions.with_quorum, 257);
        assert_eq!(s.gc.queue, 0);

        let refused = admin(&c)
            .call_json::<NodeDetail>(
                Method::POST,
                &format!("/v1/nodes/{}/remove", c.node_id(0)),
                None::<&()>,
            )
            .await
            .expect_err("a third node cannot leave");
        assert!(refused.to_string().contains("3 are needed"), "{refused}");

        // Buckets through the admin API.
        let created: gateway::admin::BucketInfo = admin(&c)
            .call_json(
                Method::POST,
                "/v1/buckets",
                Some(&gateway::admin::CreateBucket {
                    name: "admin-made".into(),
                }),
            )
            .await
            .expect("create bucket");
        assert_eq!((created.objects, created.bytes), (0, 0));
        c.put("admin-made", "k", b"hello".to_vec()).await;
        let info: gateway::admin::BucketInfo = admin(&c)
            .call_json(Method::GET, "/v1/buckets/admin-made", None::<&()>)
            .await
            .expect("bucket info");
        assert_eq!((info.objects, info.bytes, info.complete), (1, 5, true));
        c.stop().await;
    })
    .await;
}

/// A chunk file deleted on a live node (by hand, or lost with a restored
/// backup) is a missing copy: the worker makes it again without waiting for
/// any timeout (only three nodes: the copy goes back where it was missing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_missing_on_live_nodes_are_counted_and_made_again() {
    bounded(Duration::from_secs(120), async {
        let c = TestCluster::start_with_repair(3, CHUNK, fast_repair()).await;
        c.create_bucket("missing").await;
        let body = data(4 * CHUNK + 3, 41);
        c.put("missing", "obj", body.clone()).await;
        wait_status(
            &c,
            "a complete pass with every chunk at three copies",
            |s| s.durability.complete && s.durability.chunks_below_three_copies == 0,
        )
        .await;
        let repaired_before = status(&c).await.durability.chunks_repaired;
        // Two chunk files of node 0 go.
        let gone: Vec<String> = chunk_files(&c.node_dir(0)).into_iter().take(2).collect();
        for name in &gone {
            let path = c.node_dir(0).join("chunks").join(&name[..2]).join(name);
            std::fs::remove_file(path).expect("chunk file removed");
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let map = chunk_map(&c, &[0, 1, 2]);
            if gone
                .iter()
                .all(|name| map.get(name).map_or(0, Vec::len) == 3)
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "missing copies not made again: {map:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        wait_status(
            &c,
            "the repairs counted, every chunk at three copies",
            |s| {
                s.durability.chunks_repaired >= repaired_before + 2
                    && s.durability.complete
                    && s.durability.chunks_below_three_copies == 0
            },
        )
        .await;
        assert!(c.get("missing", "obj").await == body, "object changed");
        c.stop().await;
    })
    .await;
}
