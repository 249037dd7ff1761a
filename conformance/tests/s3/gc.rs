//! Garbage collection: chunk files that no record lists are deleted once
//! they are older than the grace period; listed chunks never are.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use chunkstore::{ChunkId, ChunkOwner, NodeClient};
use flexdrive::admin_client::AdminClient;
use gateway::workers::BackgroundConfig;
use gateway::workers::gc::{GcConfig, GcReport};
use http::Method;

use crate::common::*;

const CHUNK: usize = 64 * 1024;

fn collecting(grace: Duration) -> BackgroundConfig {
    BackgroundConfig {
        gc: GcConfig {
            interval: Duration::from_millis(300),
            grace,
            pass_pause: Duration::from_millis(50),
            chunks_per_pass: 7,
            settle: Duration::ZERO,
            drain_interval: Duration::from_millis(200),
        },
        ..BackgroundConfig::default()
    }
}

fn internal_client(c: &TestCluster) -> NodeClient {
    let secret = std::fs::read_to_string(c.dir.path().join("cluster_secret")).expect("secret");
    NodeClient::new(secret.trim())
}

fn node_addr(c: &TestCluster, index: usize) -> SocketAddr {
    c.embedded.storage[index]
        .as_ref()
        .expect("running node")
        .node
        .http_addr()
}

async fn gc_report(c: &TestCluster) -> GcReport {
    AdminClient::new(&c.admin_endpoint(), ADMIN_TOKEN)
        .expect("admin client")
        .call_json(Method::GET, "/v1/gc", None::<&()>)
        .await
        .expect("GET /v1/gc")
}

/// Polls (bounded) until `done` holds for the GC report.
async fn wait_gc(c: &TestCluster, what: &str, done: impl Fn(&GcReport) -> bool) -> GcReport {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let report = gc_report(c).await;
        if done(&report) {
            return report;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still not so after 60 s: {report:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes a chunk file that no record lists onto node 0, owned by `owner`.
async fn plant_orphan(c: &TestCluster, owner: &ChunkOwner) -> ChunkId {
    let id = ChunkId::random();
    let data = Bytes::from(data(1000, 7));
    let crc = crc32c::crc32c(&data);
    internal_client(c)
        .put_chunk(node_addr(c, 0), id, owner, data, crc)
        .await
        .expect("orphan chunk written");
    id
}

/// The owner a stored object's chunks carry (read back from node 0).
async fn owner_of_stored_chunks(c: &TestCluster) -> ChunkOwner {
    let listed = internal_client(c)
        .list_chunks(node_addr(c, 0), None, 100)
        .await
        .expect("listing");
    listed.first().expect("a chunk on node 0").owner.clone()
}

/// Makes a chunk file on node 0 look written `age` ago.
fn backdate(c: &TestCluster, id: ChunkId, age: Duration) {
    let name = id.to_string();
    let path = c.node_dir(0).join("chunks").join(&name[..2]).join(&name);
    let file = std::fs::File::options()
        .write(true)
        .open(&path)
        .expect("chunk file");
    file.set_modified(std::time::SystemTime::now() - age)
        .expect("set mtime");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_chunks_past_the_grace_period_are_deleted_and_nothing_else() {
    bounded(Duration::from_secs(120), async {
        let grace = Duration::from_secs(600);
        let c = TestCluster::start_with_background(3, CHUNK, collecting(grace)).await;
        c.create_bucket("gc-bucket").await;
        let body = data(5 * CHUNK + 100, 1);
        c.put("gc-bucket", "kept", body.clone()).await;
        // An upload in progress: its part's chunks are listed by the part record.
        let upload = c
            .client
            .create_multipart_upload()
            .bucket("gc-bucket")
            .key("in-progress")
            .send()
            .await
            .expect("create upload");
        let upload_id = upload.upload_id().expect("upload id");
        let part_body = data(2 * CHUNK, 3);
        let part = c
            .client
            .upload_part()
            .bucket("gc-bucket")
            .key("in-progress")
            .upload_id(upload_id)
            .part_number(1)
            .body(part_body.clone().into())
            .send()
            .await
            .expect("upload part");
        let stored: HashSet<String> = (0..3).flat_map(|i| chunk_files(&c.node_dir(i))).collect();
        assert_eq!(stored.len(), 8, "six chunks of the object, two of the part");
        // Listed chunks are never collected, however old.
        for i in 0..3 {
            for name in chunk_files(&c.node_dir(i)) {
                let path = c.node_dir(i).join("chunks").join(&name[..2]).join(&name);
                std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_modified(std::time::SystemTime::now() - 2 * grace)
                    .unwrap();
            }
        }

        // Orphans: an unlisted chunk of the stored key (a failed overwrite)
        // and one of a key without a record (an abandoned PUT), both old;
        // and a young one (a write still in flight).
        let mut owner = owner_of_stored_chunks(&c).await;
        let of_stored_key = plant_orphan(&c, &owner).await;
        owner.key = "never-written".into();
        let of_missing_key = plant_orphan(&c, &owner).await;
        let young = plant_orphan(&c, &owner).await;
        backdate(&c, of_stored_key, 2 * grace);
        backdate(&c, of_missing_key, 2 * grace);

        let report = wait_gc(&c, "both old orphans deleted", |r| r.chunks_deleted >= 2).await;
        let report = wait_gc(&c, "a complete sweep after the deletes", |r| {
            r.last_complete_ms > report.last_complete_ms && r.queue >= 1
        })
        .await;
        assert_eq!(report.chunks_deleted, 2, "{report:#?}");
        assert_eq!(report.bytes_freed, 2000);
        assert_eq!(report.queue, 1, "the young orphan waits: {report:#?}");
        assert_eq!(report.grace_secs, 600);
        let mut left: HashSet<String> = (0..3).flat_map(|i| chunk_files(&c.node_dir(i))).collect();
        assert!(left.remove(&young.to_string()), "the young orphan stays");
        assert_eq!(left, stored, "exactly the old orphans went");
        assert_eq!(c.get("gc-bucket", "kept").await, body);
        let parts = aws_sdk_s3::types::CompletedMultipartUpload::builder()
            .parts(
                aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(1)
                    .e_tag(part.e_tag().expect("etag"))
                    .build(),
            )
            .build();
        c.client
            .complete_multipart_upload()
            .bucket("gc-bucket")
            .key("in-progress")
            .upload_id(upload_id)
            .multipart_upload(parts)
            .send()
            .await
            .expect("complete upload");
        assert_eq!(c.get("gc-bucket", "in-progress").await, part_body);
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sweep_runs_until_the_partition_placement_has_settled() {
    bounded(Duration::from_secs(120), async {
        let mut config = collecting(Duration::ZERO);
        config.gc.settle = Duration::from_secs(3600);
        let c = TestCluster::start_with_background(3, CHUNK, config).await;
        c.create_bucket("settling").await;
        c.put("settling", "k", data(100, 4)).await;
        let owner = owner_of_stored_chunks(&c).await;
        let orphan = plant_orphan(&c, &owner).await;
        backdate(&c, orphan, Duration::from_secs(86_400));
        // Long enough for many sweeps at the test's interval.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let report = gc_report(&c).await;
        assert_eq!(report.last_complete_ms, None, "{report:#?}");
        assert_eq!(report.chunks_deleted, 0);
        assert!(chunk_files(&c.node_dir(0)).contains(&orphan.to_string()));
        c.stop().await;
    })
    .await;
}

/// The deletion queue deletes a queued chunk only if no record lists it on
/// its node: a delete queued by mistake for a live object's chunks (or by a
/// retried request for chunks another version still names) deletes
/// nothing, while an unlisted chunk goes at once, with no grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_deletes_spare_every_chunk_a_record_lists() {
    bounded(Duration::from_secs(120), async {
        // A grace so long that only the queue can delete anything here.
        let c = TestCluster::start_with_background(
            3,
            CHUNK,
            collecting(Duration::from_secs(24 * 3600)),
        )
        .await;
        c.create_bucket("queued").await;
        let body = data(3 * CHUNK + 10, 5);
        c.put("queued", "live", body.clone()).await;
        let owner = owner_of_stored_chunks(&c).await;
        let client = internal_client(&c);
        let addr = node_addr(&c, 0);
        let live: Vec<ChunkId> = client
            .list_chunks(addr, None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(live.len(), 4);
        let orphan = plant_orphan(&c, &owner).await;
        let mut doomed = live.clone();
        doomed.push(orphan);
        client.doom_chunks(addr, &doomed).await.unwrap();
        assert_eq!(
            client.doomed_chunks(addr, None, 100).await.unwrap().len(),
            5
        );

        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let queued = client.doomed_chunks(addr, None, 100).await.unwrap();
            if queued.is_empty() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the queue still holds {queued:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let left: HashSet<String> = chunk_files(&c.node_dir(0)).into_iter().collect();
        assert!(
            !left.contains(&orphan.to_string()),
            "the orphan was deleted"
        );
        for id in &live {
            assert!(left.contains(&id.to_string()), "listed chunk {id} kept");
        }
        assert_eq!(c.get("queued", "live").await, body);
        c.stop().await;
    })
    .await;
}
