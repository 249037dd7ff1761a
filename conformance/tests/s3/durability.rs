use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;

const MIB: usize = 1024 * 1024;

/// chunk file name -> indexes of the nodes that hold it.
fn chunk_map(c: &TestCluster, nodes: usize) -> HashMap<String, Vec<usize>> {
    let mut map: HashMap<String, Vec<usize>> = HashMap::new();
    for i in 0..nodes {
        for name in chunk_files(&c.node_dir(i)) {
            map.entry(name).or_default().push(i);
        }
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_chunk_is_on_exactly_three_different_nodes() {
    let c = TestCluster::start(5).await;
    c.create_bucket("durable").await;
    let body = data(10 * MIB + 1, 11);
    c.put("durable", "ten-mib", body.clone()).await;

    let map = chunk_map(&c, 5);
    assert_eq!(
        map.len(),
        11,
        "a 10 MiB + 1 byte object is 11 chunks of 1 MiB"
    );
    for (chunk, nodes) in &map {
        assert_eq!(nodes.len(), 3, "chunk {chunk} is on nodes {nodes:?}");
    }
    // Placement spreads chunks over all five nodes.
    let used: std::collections::HashSet<usize> = map.values().flatten().copied().collect();
    assert_eq!(used.len(), 5, "nodes used: {used:?}");

    // Deleting the object deletes every copy (in the background).
    c.client
        .delete_object()
        .bucket("durable")
        .key("ten-mib")
        .send()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !chunk_map(&c, 5).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "chunk files left after delete"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_reads_past_a_corrupt_chunk_copy() {
    let c = TestCluster::start(3).await;
    c.create_bucket("scrub").await;
    let body = data(2 * MIB + 100, 12);
    c.put("scrub", "obj", body.clone()).await;

    // Flip one byte of the data in every chunk copy on node 1.
    let mut corrupted = 0;
    let mut stack = vec![c.node_dir(0).join("chunks")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if entry.file_name().len() == 32 {
                let mut bytes = std::fs::read(&path).unwrap();
                let last = bytes.len() - 1;
                bytes[last] ^= 0xff;
                std::fs::write(&path, bytes).unwrap();
                corrupted += 1;
            }
        }
    }
    assert_eq!(corrupted, 3);
    for _ in 0..5 {
        assert!(
            c.get("scrub", "obj").await == body,
            "corrupt bytes reached the client"
        );
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrubber_quarantines_a_corrupt_copy_and_a_good_copy_replaces_it() {
    bounded(Duration::from_secs(120), async {
        let background = gateway::workers::BackgroundConfig {
            heal_interval: Duration::from_millis(200),
            ..Default::default()
        };
        let scrub = chunkstore::ScrubConfig {
            bytes_per_sec: 1 << 30,
            pause: Duration::from_millis(200),
            start_after: Duration::ZERO,
        };
        let c = TestCluster::start_configured(3, 64 * 1024, background, scrub).await;
        c.create_bucket("healing").await;
        let body = data(3 * 64 * 1024 + 10, 13);
        c.put("healing", "obj", body.clone()).await;

        // Rot one chunk file of node 0 (its data, not its header).
        let victim = chunk_files(&c.node_dir(0))
            .into_iter()
            .next()
            .expect("a chunk");
        let path = c
            .node_dir(0)
            .join("chunks")
            .join(&victim[..2])
            .join(&victim);
        let good = std::fs::read(&path).unwrap();
        let mut rotten = good.clone();
        let last = rotten.len() - 1;
        rotten[last] ^= 0x5a;
        std::fs::write(&path, &rotten).unwrap();

        // The scrubber finds it, the worker copies a good copy back.
        let admin = c.admin_endpoint();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let metrics = raw_request(&admin, "GET", "/metrics", None, b"", None)
                .await
                .body;
            let healed = std::fs::read(&path).is_ok_and(|b| b == good)
                && metric_sum(&metrics, "flexdrive_chunks_healed_total", &[]) >= 1.0
                && metric_sum(&metrics, "flexdrive_storage_quarantined_chunks", &[]) == 0.0;
            if healed {
                assert!(metric_sum(&metrics, "flexdrive_scrub_corrupt_chunks_total", &[]) >= 1.0);
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not healed after 60 s:\n{metrics}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            std::fs::read_dir(c.node_dir(0).join("chunks/corrupt"))
                .unwrap()
                .next()
                .is_none(),
            "the quarantine is empty"
        );
        assert_eq!(c.get("healing", "obj").await, body);
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_node_down_reads_work_and_writes_answer_503() {
    let mut c = TestCluster::start(3).await;
    c.create_bucket("degraded").await;
    let body = data(3 * MIB, 13);
    c.put("degraded", "before", body.clone()).await;

    c.embedded.kill_storage(2).await;
    c.wait_live_storage(2).await;

    // Every chunk and every record still has two live copies.
    assert!(c.get("degraded", "before").await == body);
    let list = c
        .client
        .list_objects_v2()
        .bucket("degraded")
        .send()
        .await
        .unwrap();
    assert_eq!(list.contents().len(), 1);

    // Three copies cannot be made: the write is refused, nothing half-written.
    let err = c
        .client
        .put_object()
        .bucket("degraded")
        .key("after")
        .body(data(MIB, 14).into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&err), 503);
    assert_eq!(error_code(&err), "ServiceUnavailable");
    let err = c
        .client
        .get_object()
        .bucket("degraded")
        .key("after")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "NoSuchKey");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_five_nodes_writes_go_on_when_one_is_down() {
    let mut c = TestCluster::start(5).await;
    c.create_bucket("spare").await;
    c.embedded.kill_storage(4).await;
    c.wait_live_storage(4).await;
    let body = data(4 * MIB, 15);
    c.put("spare", "obj", body.clone()).await;
    assert!(c.get("spare", "obj").await == body);
    for (chunk, nodes) in chunk_map(&c, 4) {
        assert_eq!(nodes.len(), 3, "chunk {chunk} on {nodes:?}");
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_join_later_receive_the_metadata_they_now_hold() {
    use chunkstore::{NodeClient, Table};
    use gateway::limits::SYSTEM_PARTITION;
    use gateway::store::model::{self, BucketRecord};

    let mut c = TestCluster::start(3).await;
    let buckets: Vec<String> = (0..8).map(|i| format!("bucket-{i}")).collect();
    for b in &buckets {
        c.create_bucket(b).await;
        c.put(b, "key", b.as_bytes().to_vec()).await;
    }
    for _ in 0..3 {
        c.embedded.add_storage().await.unwrap();
    }
    c.wait_live_storage(6).await;

    // Every replica of every record's partition under the new layout must
    // come to hold it, without any client reading it (no read repair).
    let secret = std::fs::read_to_string(c.dir.path().join("cluster_secret")).unwrap();
    let nodes = NodeClient::new(secret.trim());
    let cluster = c.embedded.gateway.gateway.cluster();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let layout = cluster.layout();
        let mut missing = Vec::new();
        // The transition is over: one live version, with all six nodes,
        // and reads go to it.
        let settled = layout.placement().version_numbers().count() == 1
            && layout.placement().nodes().len() == 6;
        if !settled {
            missing.push(format!("layout at epoch {} not settled", layout.epoch()));
        }
        if settled {
            for b in &buckets {
                let bucket_key = model::bucket_key(b);
                let mut bucket_id = None;
                for id in layout.partition_replicas(SYSTEM_PARTITION) {
                    let addr = cluster.addr_of(id).unwrap();
                    match nodes
                        .meta_get(addr, layout.epoch(), Table::Buckets, &bucket_key)
                        .await
                        .ok()
                        .flatten()
                    {
                        Some(r) => {
                            bucket_id = r
                                .value
                                .as_deref()
                                .and_then(model::decode::<BucketRecord>)
                                .map(|b| b.id)
                        }
                        None => missing.push(format!("bucket {b} on {id}")),
                    }
                }
                let Some(bucket_id) = bucket_id else { continue };
                let key = model::object_key(&bucket_id, "key");
                for id in layout.partition_replicas(model::bucket_partition(&bucket_id)) {
                    let addr = cluster.addr_of(id).unwrap();
                    if nodes
                        .meta_get(addr, layout.epoch(), Table::Objects, &key)
                        .await
                        .ok()
                        .flatten()
                        .is_none()
                    {
                        missing.push(format!("object in {b} on {id}"));
                    }
                }
            }
            if missing.is_empty() {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "layout has {} nodes; missing: {missing:?}",
            layout.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for b in &buckets {
        assert_eq!(c.get(b, "key").await, b.as_bytes());
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_restart_of_the_whole_server() {
    let c = TestCluster::start(3).await;
    c.create_bucket("persist").await;
    let body = data(2 * 1024 * 1024 + 3, 16);
    c.put("persist", "obj", body.clone()).await;
    c.put("persist", "small", b"tiny".to_vec()).await;
    let TestCluster { embedded, dir, .. } = c;
    embedded.shutdown().await;

    // Same data dir, new ports for every node: records and chunks are found
    // again through the node ids.
    let c = TestCluster::restart(dir).await;
    assert!(c.get("persist", "obj").await == body);
    assert_eq!(c.get("persist", "small").await, b"tiny");
    let list = c
        .client
        .list_objects_v2()
        .bucket("persist")
        .send()
        .await
        .unwrap();
    assert_eq!(list.contents().len(), 2);
    c.put("persist", "after", b"new".to_vec()).await;
    assert_eq!(c.get("persist", "after").await, b"new");
    c.stop().await;
}
