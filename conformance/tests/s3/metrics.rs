//! Metrics and health on the admin port: values that move with uploads and
//! downloads, members going down, readiness that follows the cluster, and a
//! storage node's own admin port.

use std::time::Duration;

use crate::common::{
    ADMIN_TOKEN, Raw, TestCluster, bounded, data, metric_samples as samples, metric_sum as sum,
    raw_request, raw_request_with_headers,
};

/// Longest wait for something that gossip or a readiness cache settles.
const SETTLE: Duration = Duration::from_secs(20);

async fn get(endpoint: &str, path: &str) -> Raw {
    raw_request(endpoint, "GET", path, None, b"", None).await
}

async fn scrape(endpoint: &str) -> String {
    let answer = get(endpoint, "/metrics").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

/// Polls `endpoint`'s `path` until `done` holds of the answer (bounded).
async fn wait_for(endpoint: &str, path: &str, what: &str, done: impl Fn(&Raw) -> bool) -> Raw {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let answer = get(endpoint, path).await;
        if done(&answer) {
            return answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {} {} after {SETTLE:?}",
            answer.status,
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_an_upload_and_a_download_with_their_bytes() {
    bounded(Duration::from_secs(120), async {
        let cluster = TestCluster::start(3).await;
        let admin = cluster.admin_endpoint();
        cluster.create_bucket("metered").await;
        let body = data(300 * 1024, 7);
        let before = scrape(&admin).await;

        cluster.put("metered", "object", body.clone()).await;
        assert_eq!(cluster.get("metered", "object").await, body);
        let after = scrape(&admin).await;

        let delta = |name: &str, labels: &[(&str, &str)]| {
            sum(&after, name, labels) - sum(&before, name, labels)
        };
        let put = [("op", "PutObject"), ("status", "200")];
        let get_ok = [("op", "GetObject"), ("status", "200")];
        assert_eq!(delta("flexdrive_s3_requests_total", &put), 1.0, "{after}");
        assert_eq!(
            delta("flexdrive_s3_requests_total", &get_ok),
            1.0,
            "{after}"
        );
        let len = body.len() as f64;
        assert!(
            delta("flexdrive_s3_received_bytes_total", &[]) >= len,
            "{after}"
        );
        assert!(
            delta("flexdrive_s3_sent_bytes_total", &[]) >= len,
            "{after}"
        );
        // One chunk, three copies, each on a different node.
        assert_eq!(delta("flexdrive_chunk_writes_total", &[]), 3.0, "{after}");
        assert_eq!(
            samples(&after, "flexdrive_chunk_writes_total", &[]).len(),
            3,
            "one series per storage node: {after}"
        );
        assert!(delta("flexdrive_chunk_reads_total", &[]) >= 1.0, "{after}");
        assert_eq!(sum(&after, "flexdrive_chunk_failures_total", &[]), 0.0);
        let alive = [("role", "storage"), ("state", "alive")];
        assert_eq!(sum(&after, "flexdrive_members", &alive), 3.0, "{after}");
        assert_eq!(
            sum(
                &after,
                "flexdrive_members",
                &[("role", "gateway"), ("state", "alive")]
            ),
            1.0
        );
        for gauge in [
            "flexdrive_repair_queue_length",
            "flexdrive_gc_queue_length",
            "flexdrive_chunks_below_three_copies",
            "flexdrive_storage_capacity_bytes",
        ] {
            assert!(
                !samples(&after, gauge, &[]).is_empty(),
                "{gauge} missing: {after}"
            );
        }
        // The duration is recorded when the answer's body is done.
        wait_for(&admin, "/metrics", "PutObject duration", |a| {
            sum(
                &a.body,
                "flexdrive_s3_request_duration_seconds_count",
                &[("op", "PutObject")],
            ) >= 1.0
        })
        .await;
        // Storage nodes gossip their load every few seconds.
        wait_for(&admin, "/metrics", "member capacity", |a| {
            let capacity = samples(&a.body, "flexdrive_member_capacity_bytes", &[]);
            capacity.len() == 3 && capacity.iter().all(|c| *c > 0.0)
        })
        .await;
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_storage_node_shows_down_and_the_gateway_is_not_ready() {
    bounded(Duration::from_secs(120), async {
        let mut cluster = TestCluster::start(3).await;
        let admin = cluster.admin_endpoint();
        let ready = wait_for(&admin, "/health/ready", "healthy cluster ready", |a| {
            a.status == 200
        })
        .await;
        assert_eq!(ready.body.trim(), "ready");
        // Only the /v1 API wants the token.
        assert_eq!(get(&admin, "/v1/keys").await.status, 401);

        cluster.embedded.kill_storage(2).await;
        wait_for(&admin, "/metrics", "killed node down", |a| {
            let state = |s| {
                sum(
                    &a.body,
                    "flexdrive_members",
                    &[("role", "storage"), ("state", s)],
                )
            };
            state("down") == 1.0 && state("alive") == 2.0
        })
        .await;
        let unready = wait_for(&admin, "/health/ready", "gateway unready", |a| {
            a.status == 503
        })
        .await;
        assert!(
            unready.body.contains("2 storage nodes alive"),
            "{}",
            unready.body
        );
        assert_eq!(unready.body.trim().lines().count(), 1, "{}", unready.body);
        assert_eq!(get(&admin, "/health/live").await.status, 200);
        // The token still works for the API on the same port.
        let keys = raw_request_with_headers(
            &admin,
            "GET",
            "/v1/keys",
            None,
            &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
            b"",
            None,
        )
        .await;
        assert_eq!(keys.status, 200, "{}", keys.body);
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_node_serves_its_own_metrics_and_health() {
    bounded(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("node");
        let loopback = "127.0.0.1:0".parse().unwrap();
        let mut role = flexdrive::StorageRole::start(
            {
                let mut config = chunkstore::StorageConfig::new(
                    data_dir.clone(),
                    loopback,
                    "metrics-test-cluster-secret",
                );
                config.capacity_bytes = Some(1 << 30);
                config
            },
            flexdrive::GossipConfig {
                bind_addr: loopback,
                advertise_addr: None,
                seeds: vec![],
                zone: "zone1".into(),
                probe_period: Duration::from_millis(200),
                legacy_peers: false,
            },
            Default::default(),
        )
        .await
        .expect("storage node starts");
        let addr = role.serve_admin(loopback).await.expect("admin port");
        let admin = format!("http://{addr}");
        assert_eq!(role.admin_addr(), Some(addr));

        let ready = get(&admin, "/health/ready").await;
        assert_eq!((ready.status, ready.body.trim()), (200, "ready"));
        assert_eq!(get(&admin, "/health/live").await.status, 200);
        assert_eq!(get(&admin, "/v1/keys").await.status, 404);
        let text = scrape(&admin).await;
        let node = [("node", role.node.id())];
        assert_eq!(
            sum(&text, "flexdrive_storage_capacity_bytes", &node),
            f64::from(1u32 << 30),
            "{text}"
        );
        assert_eq!(
            samples(&text, "flexdrive_chunk_writes_total", &node),
            vec![0.0]
        );
        let alive = [("role", "storage"), ("state", "alive")];
        assert_eq!(sum(&text, "flexdrive_members", &alive), 1.0, "{text}");

        // A data dir that takes no writes makes the node unready.
        std::fs::remove_dir_all(&data_dir).unwrap();
        let unready = wait_for(&admin, "/health/ready", "node unready", |a| a.status == 503).await;
        assert!(unready.body.contains("not writable"), "{}", unready.body);
        role.shutdown().await;
    })
    .await;
}
