//! A real storage node on 127.0.0.1, driven through `NodeClient` and raw HTTP.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chunkstore::auth;
use chunkstore::limits::MAX_CHUNK_SIZE;
use chunkstore::{
    CasOutcome, CasRequest, ChunkId, ChunkOwner, ClientError, Expect, NodeClient, Record,
    StorageConfig, StorageNode, Table,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "test-cluster-secret";

/// Every test finishes within this, or fails.
async fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("test took longer than 60 s");
}

async fn start(dir: &Path) -> StorageNode {
    let mut config = StorageConfig::new(dir.to_path_buf(), "127.0.0.1:0".parse().unwrap(), SECRET);
    config.capacity_bytes = Some(1 << 30);
    StorageNode::start(config).await.unwrap()
}

fn owner() -> ChunkOwner {
    ChunkOwner {
        bucket_id: "bucket-1".into(),
        key: "photos/cat.jpg".into(),
        version: "v1".into(),
    }
}

fn rec(key: &str, ts: u64, value: Option<&str>) -> Record {
    Record {
        key: key.as_bytes().to_vec(),
        ts,
        value: value.map(|v| v.as_bytes().to_vec()),
    }
}

fn chunk_file(dir: &Path, id: ChunkId) -> std::path::PathBuf {
    let name = id.to_string();
    dir.join("chunks").join(&name[..2]).join(name)
}

/// Sends one HTTP/1.1 request as is over a fresh connection; returns the
/// status and body.
async fn raw(addr: SocketAddr, req: http::Request<Bytes>) -> (u16, String) {
    let mut head = format!(
        "{} {} HTTP/1.1\r\n",
        req.method(),
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    if !req.headers().contains_key("host") {
        head.push_str(&format!("host: {addr}\r\n"));
    }
    for (name, value) in req.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    if !req.headers().contains_key("content-length") {
        head.push_str(&format!("content-length: {}\r\n", req.body().len()));
    }
    head.push_str("connection: close\r\n\r\n");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(req.body()).await.unwrap();
    let mut answer = Vec::new();
    // The node may close before reading a body it refuses; a reset then is fine.
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A request to `node` signed with the cluster secret at `time`.
fn signed(
    node: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    payload: &str,
    time: SystemTime,
) -> http::Request<Bytes> {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(format!("http://{node}{path}"));
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let mut req = builder.body(Bytes::copy_from_slice(body)).unwrap();
    auth::sign_request(&mut req, SECRET, payload, time).unwrap();
    req
}

#[tokio::test]
async fn chunk_put_get_range_delete_round_trip() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let node = start(dir.path()).await;
        let addr = node.http_addr();
        let client = NodeClient::new(SECRET);
        let id = ChunkId::random();
        let data = Bytes::from((0..100_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let crc = crc32c::crc32c(&data);

        client
            .put_chunk(addr, id, &owner(), data.clone(), crc)
            .await
            .unwrap();
        assert!(chunk_file(dir.path(), id).is_file());
        assert_eq!(client.get_chunk(addr, id, None).await.unwrap(), data);
        assert_eq!(
            client.get_chunk(addr, id, Some((1000, 500))).await.unwrap(),
            data.slice(1000..1500)
        );
        assert_eq!(
            client
                .get_chunk(addr, id, Some((100_000, 0)))
                .await
                .unwrap(),
            Bytes::new()
        );
        match client.get_chunk(addr, id, Some((99_999, 2))).await {
            Err(ClientError::Status(_, 416, _)) => {}
            other => panic!("range past the end: {other:?}"),
        }
        // Writing the same chunk again is fine.
        client
            .put_chunk(addr, id, &owner(), data.clone(), crc)
            .await
            .unwrap();

        let status = client.status(addr).await.unwrap();
        // The status request counts itself as in flight.
        assert_eq!(status.in_flight, 1);
        assert_eq!(node.status().in_flight, 0);
        assert_eq!(status.used_bytes, node.status().used_bytes);
        assert_eq!(status.node_id, node.id());
        assert_eq!(status.chunk_count, 1);
        assert!(status.used_bytes > 100_000);
        assert_eq!(status.capacity_bytes, 1 << 30);
        assert_eq!(status.free_bytes, (1 << 30) - status.used_bytes);

        client.delete_chunk(addr, id).await.unwrap();
        client.delete_chunk(addr, id).await.unwrap();
        assert!(!chunk_file(dir.path(), id).exists());
        assert!(matches!(
            client.get_chunk(addr, id, None).await,
            Err(ClientError::NotFound)
        ));
        assert_eq!(node.status().chunk_count, 0);
        node.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn chunks_records_and_node_id_survive_a_restart() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let client = NodeClient::new(SECRET);
        let id = ChunkId::random();
        let data = Bytes::from_static(b"durable bytes");

        let node = start(dir.path()).await;
        let node_id = node.id().to_string();
        assert_eq!(node_id.len(), 16);
        client
            .put_chunk(
                node.http_addr(),
                id,
                &owner(),
                data.clone(),
                crc32c::crc32c(&data),
            )
            .await
            .unwrap();
        client
            .meta_put(
                node.http_addr(),
                0,
                Table::Buckets,
                &[rec("b1", 7, Some("x"))],
            )
            .await
            .unwrap();
        node.shutdown().await;

        let node = start(dir.path()).await;
        assert_eq!(node.id(), node_id);
        assert_eq!(node.status().chunk_count, 1);
        let addr = node.http_addr();
        assert_eq!(client.get_chunk(addr, id, None).await.unwrap(), data);
        assert_eq!(
            client
                .meta_get(addr, 0, Table::Buckets, b"b1")
                .await
                .unwrap(),
            Some(rec("b1", 7, Some("x")))
        );
        node.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn flipped_byte_on_disk_reads_as_corrupt() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let node = start(dir.path()).await;
        let addr = node.http_addr();
        let client = NodeClient::new(SECRET);
        let id = ChunkId::random();
        let data = Bytes::from(vec![7u8; 4096]);
        client
            .put_chunk(addr, id, &owner(), data.clone(), crc32c::crc32c(&data))
            .await
            .unwrap();

        let path = chunk_file(dir.path(), id);
        let mut raw = std::fs::read(&path).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 0x80;
        std::fs::write(&path, raw).unwrap();

        assert!(matches!(
            client.get_chunk(addr, id, None).await,
            Err(ClientError::Corrupt(a)) if a == addr
        ));
        let ranged = client.get_chunk(addr, id, Some((0, 10))).await;
        assert!(matches!(ranged, Err(ClientError::Corrupt(_))), "{ranged:?}");
        // Left in place for scrub to find.
        assert!(path.exists());
        node.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn put_with_wrong_crc_is_rejected_and_writes_nothing() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let node = start(dir.path()).await;
        let addr = node.http_addr();
        let client = NodeClient::new(SECRET);
        let id = ChunkId::random();
        let data = Bytes::from_static(b"payload");
        match client
            .put_chunk(addr, id, &owner(), data.clone(), crc32c::crc32c(&data) ^ 1)
            .await
        {
            Err(ClientError::Status(_, 400, _)) => {}
            other => panic!("wrong crc accepted: {other:?}"),
        }
        assert!(!chunk_file(dir.path(), id).exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join("chunks/tmp"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(node.status().chunk_count, 0);
        node.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn meta_merge_is_last_writer_wins_and_scan_is_sorted_and_bounded() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let node = start(dir.path()).await;
        let addr = node.http_addr();
        let client = NodeClient::new(SECRET);
        let t = Table::Objects;

        client
            .meta_put(
                addr,
                0,
                t,
                &[rec("k2", 10, Some("new")), rec("k1", 1, Some("a"))],
            )
            .await
            .unwrap();
        // An older write does not overwrite a newer one.
        client
            .meta_put(addr, 0, t, &[rec("k2", 9, Some("old"))])
            .await
            .unwrap();
        assert_eq!(
            client.meta_get(addr, 0, t, b"k2").await.unwrap(),
            Some(rec("k2", 10, Some("new")))
        );
        // A newer tombstone wins, and reads back as a tombstone.
        client
            .meta_put(addr, 0, t, &[rec("k2", 11, None)])
            .await
            .unwrap();
        assert_eq!(
            client.meta_get(addr, 0, t, b"k2").await.unwrap(),
            Some(rec("k2", 11, None))
        );
        assert_eq!(client.meta_get(addr, 0, t, b"nope").await.unwrap(), None);
        // Tables are separate.
        assert_eq!(
            client.meta_get(addr, 0, Table::Parts, b"k1").await.unwrap(),
            None
        );

        client
            .meta_put(
                addr,
                0,
                t,
                &[rec("k4", 1, Some("d")), rec("k3", 1, Some("c"))],
            )
            .await
            .unwrap();
        let keys = |answer: chunkstore::ScanAnswer| {
            answer
                .records
                .into_iter()
                .map(|r| String::from_utf8(r.key).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(client.meta_scan(addr, 0, t, b"", b"", 100).await.unwrap()),
            ["k1", "k2", "k3", "k4"]
        );
        assert_eq!(
            keys(
                client
                    .meta_scan(addr, 0, t, b"k2", b"k4", 100)
                    .await
                    .unwrap()
            ),
            ["k2", "k3"]
        );
        assert_eq!(
            keys(client.meta_scan(addr, 0, t, b"k2", b"", 2).await.unwrap()),
            ["k2", "k3"]
        );
        assert!(
            client
                .meta_scan(addr, 0, t, b"k5", b"", 10)
                .await
                .unwrap()
                .records
                .is_empty()
        );
        // The local handle sees the same data.
        assert_eq!(
            node.meta().get(t, b"k3").unwrap(),
            Some(rec("k3", 1, Some("c")))
        );
        node.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn wrong_secret_is_forbidden_and_changes_nothing() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let node = start(dir.path()).await;
        let addr = node.http_addr();
        let intruder = NodeClient::new("not-the-secret");
        let id = ChunkId::random();
        let data = Bytes::from_static(b"intruder");
        match intruder
            .put_chunk(addr, id, &owner(), data.clone(), crc32c::crc32c(&data))
            .await
        {
            Err(ClientError::Status(_, 403, _)) => {}
            other => panic!("put with wrong secret: {other:?}"),
        }
        match intruder
            .meta_put(addr, 0, Table::Keys, &[rec("admin", 1, Some("x"))])
            .await
        {
            Err(ClientError::Status(_, 403, _)) => {}
            other => panic!("meta_put with wrong secret: {other:?}"),
        }
        assert!(matches!(
            intruder.meta_get(addr, 0, Table::Keys, b"admin").await,
            Err(ClientError::Status(_, 403, _))
        ));
        assert!(matches!(
            intruder.get_chunk(addr, id, None).await,
            Err(ClientError::Status(_, 403, _))
        ));

        let client = NodeClient::new(SECRET);
        assert!(!chunk_file(dir.path(), id).exists());
        assert!(matches!(
            client.get_chunk(addr, id, None).await,
            Err(ClientError::NotFound)
        ));
        assert_eq!(
            client
                .meta_get(addr, 0, Table::Keys, b"admin")
                .await
                .unwrap(),
            None
        );
        node.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn unsigned_raw_requests_are_forbidden_but_liveness_is_open() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let node = start(dir.path()).await;
        let addr = node.http_addr();
        let id = ChunkId::random();
        let put = http::Request::builder()
            .method("PUT")
            .uri(format!("/chunks/{id}"))
            .header("x-fd-crc32c", format!("{:08x}", crc32c::crc32c(b"abc")))
            .body(Bytes::from_static(b"abc"))
            .unwrap();
        let (status, _) = raw(addr, put).await;
        assert_eq!(status, 403);
        assert!(!chunk_file(dir.path(), id).exists());

        let get = http::Request::get("/status").body(Bytes::new()).unwrap();
        assert_eq!(raw(addr, get).await.0, 403);

        let live = http::Request::get("/health/live")
            .body(Bytes::new())
            .unwrap();
        assert_eq!(raw(addr, live).await, (200, "ok".to_string()));
        node.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn stale_signature_is_forbidden() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let node = start(dir.path()).await;
        let addr = node.http_addr();
        let body = postcard::to_stdvec(&vec![rec("k", 1, Some("v"))]).unwrap();
        let hash = auth::sha256_hex(&body);
        let path = "/meta/buckets/merge";

        let stale = SystemTime::now() - Duration::from_secs(16 * 60);
        let req = signed(addr, "POST", path, &[], &body, &hash, stale);
        assert_eq!(raw(addr, req).await.0, 403);
        assert_eq!(node.meta().get(Table::Buckets, b"k").unwrap(), None);

        // The same request signed now goes through: the raw path is sound.
        let req = signed(addr, "POST", path, &[], &body, &hash, SystemTime::now());
        assert_eq!(raw(addr, req).await.0, 204);
        assert!(node.meta().get(Table::Buckets, b"k").unwrap().is_some());
        node.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn body_that_does_not_match_its_signed_hash_is_forbidden() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let node = start(dir.path()).await;
        let addr = node.http_addr();
        let now = SystemTime::now();
        let good = postcard::to_stdvec(&vec![rec("k", 1, Some("v"))]).unwrap();
        let evil = postcard::to_stdvec(&vec![rec("k", 1, Some("w"))]).unwrap();

        let mut req = signed(
            addr,
            "POST",
            "/meta/keys/merge",
            &[],
            &good,
            &auth::sha256_hex(&good),
            now,
        );
        *req.body_mut() = Bytes::from(evil.clone());
        assert_eq!(raw(addr, req).await.0, 403);

        // Metadata bodies must be hashed; UNSIGNED-PAYLOAD is for chunks only.
        let req = signed(
            addr,
            "POST",
            "/meta/keys/merge",
            &[],
            &evil,
            auth::UNSIGNED_PAYLOAD,
            now,
        );
        assert_eq!(raw(addr, req).await.0, 403);
        assert_eq!(node.meta().get(Table::Keys, b"k").unwrap(), None);
        node.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn bad_input_gets_4xx_and_never_breaks_the_node() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let node = start(dir.path()).await;
        let addr = node.http_addr();
        let now = SystemTime::now();
        let get = |path: &str| signed(addr, "GET", path, &[], b"", auth::EMPTY_SHA256, now);

        assert_eq!(raw(addr, get("/chunks/not-hex")).await.0, 400);
        assert_eq!(raw(addr, get("/meta/nosuchtable/get?key=00")).await.0, 404);
        assert_eq!(raw(addr, get("/meta/objects/get?key=zz")).await.0, 400);
        assert_eq!(raw(addr, get("/meta/objects/get")).await.0, 400);
        assert_eq!(raw(addr, get("/meta/objects/scan?limit=-1")).await.0, 400);
        assert_eq!(raw(addr, get("/nothing/here")).await.0, 404);
        let id = ChunkId::random();
        assert_eq!(
            raw(addr, get(&format!("/chunks/{id}?offset=x&len=1")))
                .await
                .0,
            400
        );

        // Garbage records.
        let junk = b"\xff\xff\xff\xff\xff";
        let req = signed(
            addr,
            "POST",
            "/meta/objects/merge",
            &[],
            junk,
            &auth::sha256_hex(junk),
            now,
        );
        assert_eq!(raw(addr, req).await.0, 400);

        // A chunk without its owner header, and one with a garbled crc.
        let crc = format!("{:08x}", crc32c::crc32c(b"abc"));
        let path = format!("/chunks/{id}");
        let req = signed(
            addr,
            "PUT",
            &path,
            &[("x-fd-crc32c", &crc)],
            b"abc",
            auth::UNSIGNED_PAYLOAD,
            now,
        );
        assert_eq!(raw(addr, req).await.0, 400);
        let owner = hex::encode(postcard::to_stdvec(&owner()).unwrap());
        let req = signed(
            addr,
            "PUT",
            &path,
            &[("x-fd-crc32c", "xyz"), ("x-fd-owner", &owner)],
            b"abc",
            auth::UNSIGNED_PAYLOAD,
            now,
        );
        assert_eq!(raw(addr, req).await.0, 400);

        // A body announced larger than a chunk may be is refused unread.
        let mut req = signed(
            addr,
            "PUT",
            &path,
            &[("x-fd-crc32c", &crc), ("x-fd-owner", &owner)],
            b"",
            auth::UNSIGNED_PAYLOAD,
            now,
        );
        req.headers_mut()
            .insert("content-length", (MAX_CHUNK_SIZE + 1).into());
        assert_eq!(raw(addr, req).await.0, 413);
        assert!(!chunk_file(dir.path(), id).exists());

        // Still serving.
        let client = NodeClient::new(SECRET);
        assert_eq!(client.status(addr).await.unwrap().chunk_count, 0);
        node.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn unreachable_node_is_reported_as_unreachable() {
    bounded(async {
        // Bind then drop, so nothing listens on that port.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client = NodeClient::new(SECRET);
        assert!(matches!(
            client.status(addr).await,
            Err(ClientError::Unreachable(a, _)) if a == addr
        ));
    })
    .await;
}

/// An object record as gateways write it: one version with an ETag.
fn object_version(key: &str, id: &str, ts: u64, etag: &str) -> Record {
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
        key: key.as_bytes().to_vec(),
        ts,
        value: Some(rmp_serde::to_vec_named(&value).unwrap()),
    }
}

#[tokio::test]
async fn concurrent_conditional_creates_on_one_node_let_exactly_one_through() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let node = start(dir.path()).await;
        let addr = node.http_addr();
        let mut tasks = Vec::new();
        for n in 0..10u64 {
            // One client each, as if from ten gateways.
            let client = NodeClient::new(SECRET);
            tasks.push(tokio::spawn(async move {
                let req = CasRequest {
                    expect: Expect::Absent,
                    seen: None,
                    write: object_version("key", "null", 100 + n, &format!("etag{n}")),
                };
                client
                    .meta_cas_legacy(addr, Table::Objects, &req, false)
                    .await
                    .unwrap()
            }));
        }
        let mut written = 0;
        for t in tasks {
            match t.await.unwrap() {
                CasOutcome::Written(_) => written += 1,
                CasOutcome::Refused { current_etag } => assert!(current_etag.is_some()),
            }
        }
        assert_eq!(written, 1);

        let client = NodeClient::new(SECRET);
        let stored = client
            .meta_get(addr, 0, Table::Objects, b"key")
            .await
            .unwrap();
        // The winner's retry (its answer lost) is written again, not refused.
        let retry = CasRequest {
            expect: Expect::Absent,
            seen: None,
            write: stored.clone().unwrap(),
        };
        let outcome = client
            .meta_cas_legacy(addr, Table::Objects, &retry, false)
            .await
            .unwrap();
        assert!(matches!(outcome, CasOutcome::Written(_)), "{outcome:?}");
        let etag = match client
            .meta_cas_legacy(
                addr,
                Table::Objects,
                &CasRequest {
                    expect: Expect::Absent,
                    seen: None,
                    write: object_version("key", "null", 1000, "late"),
                },
                false,
            )
            .await
            .unwrap()
        {
            CasOutcome::Refused { current_etag } => current_etag.unwrap(),
            other => panic!("a second create went through: {other:?}"),
        };
        // If-Match on the current ETag replaces it.
        let replace = CasRequest {
            expect: Expect::ETag(etag),
            seen: stored,
            write: object_version("key", "null", 2000, "replaced"),
        };
        let outcome = client
            .meta_cas_legacy(addr, Table::Objects, &replace, false)
            .await
            .unwrap();
        assert!(matches!(outcome, CasOutcome::Written(_)), "{outcome:?}");
        // Conditions are defined on object records only.
        let err = client
            .meta_cas_legacy(addr, Table::Buckets, &replace, false)
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Status(_, 400, _)), "{err}");
        node.shutdown().await;
    })
    .await;
}
