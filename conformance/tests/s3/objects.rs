use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{Delete, MetadataDirective, ObjectIdentifier};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_round_trips_with_its_headers_and_metadata() {
    let c = TestCluster::start(3).await;
    c.create_bucket("docs").await;
    let body = data(3 * 1024 * 1024 + 17, 1);
    let put = c
        .client
        .put_object()
        .bucket("docs")
        .key("dir/report.pdf")
        .content_type("application/pdf")
        .cache_control("max-age=60")
        .content_disposition("attachment; filename=\"r.pdf\"")
        .metadata("author", "Ada")
        .metadata("Project", "flexdrive")
        .body(body.clone().into())
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.e_tag(),
        Some(format!("\"{}\"", md5_hex(&body)).as_str())
    );

    let got = c
        .client
        .get_object()
        .bucket("docs")
        .key("dir/report.pdf")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("application/pdf"));
    assert_eq!(got.cache_control(), Some("max-age=60"));
    assert_eq!(
        got.content_disposition(),
        Some("attachment; filename=\"r.pdf\"")
    );
    assert_eq!(got.content_length(), Some(body.len() as i64));
    assert_eq!(got.e_tag(), put.e_tag());
    let meta = got.metadata().unwrap();
    assert_eq!(meta.get("author").map(String::as_str), Some("Ada"));
    assert_eq!(meta.get("project").map(String::as_str), Some("flexdrive"));
    let bytes = got.body.collect().await.unwrap().into_bytes();
    assert!(bytes.as_ref() == body.as_slice(), "body differs");

    let head = c
        .client
        .head_object()
        .bucket("docs")
        .key("dir/report.pdf")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(body.len() as i64));
    assert_eq!(head.e_tag(), put.e_tag());
    assert!(head.last_modified().is_some());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_object_and_overwrite_behave() {
    let c = TestCluster::start(3).await;
    c.create_bucket("small").await;
    c.put("small", "empty", Vec::new()).await;
    assert!(c.get("small", "empty").await.is_empty());
    let head = c
        .client
        .head_object()
        .bucket("small")
        .key("empty")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(0));
    assert_eq!(head.e_tag(), Some("\"d41d8cd98f00b204e9800998ecf8427e\""));

    // Stored without a Content-Type, an object reads back as binary/octet-stream.
    let raw = raw_request(
        &c.endpoint,
        "PUT",
        "/small/untyped",
        None,
        b"?",
        Some((ACCESS_KEY, SECRET_KEY)),
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.body);
    let head = c
        .client
        .head_object()
        .bucket("small")
        .key("untyped")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("binary/octet-stream"));

    c.put("small", "k", b"first".to_vec()).await;
    c.put("small", "k", b"second, longer".to_vec()).await;
    assert_eq!(c.get("small", "k").await, b"second, longer");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_reads_return_exactly_the_requested_bytes() {
    let c = TestCluster::start_with_chunk_size(3, 64 * 1024).await;
    c.create_bucket("ranges").await;
    let body = data(300_000, 2);
    c.put("ranges", "obj", body.clone()).await;
    let cases: [(&str, std::ops::Range<usize>); 6] = [
        ("bytes=0-0", 0..1),
        ("bytes=10-99", 10..100),
        ("bytes=65530-65545", 65530..65546), // across a chunk boundary
        ("bytes=100000-", 100_000..300_000),
        ("bytes=-1000", 299_000..300_000),
        ("bytes=299999-400000", 299_999..300_000),
    ];
    for (range, expected) in cases {
        let got = c
            .client
            .get_object()
            .bucket("ranges")
            .key("obj")
            .range(range)
            .send()
            .await
            .unwrap();
        assert_eq!(
            got.content_range(),
            Some(format!("bytes {}-{}/300000", expected.start, expected.end - 1).as_str()),
            "{range}"
        );
        let bytes = got.body.collect().await.unwrap().into_bytes();
        assert!(
            bytes.as_ref() == &body[expected.clone()],
            "{range}: wrong bytes"
        );
    }
    let err = c
        .client
        .get_object()
        .bucket("ranges")
        .key("obj")
        .range("bytes=300000-300010")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "InvalidRange");
    assert_eq!(error_status(&err), 416);

    // No byte of an empty object is satisfiable, a suffix neither.
    c.put("ranges", "empty", Vec::new()).await;
    for range in ["bytes=-5", "bytes=0-0", "bytes=0-"] {
        let err = c
            .client
            .get_object()
            .bucket("ranges")
            .key("empty")
            .range(range)
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "InvalidRange", "{range}");
        assert_eq!(error_status(&err), 416, "{range}");
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_key_answers_no_such_key_and_delete_is_idempotent() {
    let c = TestCluster::start(3).await;
    c.create_bucket("keys").await;
    let err = c
        .client
        .get_object()
        .bucket("keys")
        .key("ghost")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "NoSuchKey");
    assert_eq!(error_status(&err), 404);
    let err = c
        .client
        .head_object()
        .bucket("keys")
        .key("ghost")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&err), 404);
    c.client
        .delete_object()
        .bucket("keys")
        .key("ghost")
        .send()
        .await
        .unwrap();

    c.put("keys", "real", b"here".to_vec()).await;
    c.client
        .delete_object()
        .bucket("keys")
        .key("real")
        .send()
        .await
        .unwrap();
    let err = c
        .client
        .get_object()
        .bucket("keys")
        .key("real")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "NoSuchKey");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_objects_removes_many_keys_and_reports_each() {
    let c = TestCluster::start(3).await;
    c.create_bucket("batch").await;
    for i in 0..5 {
        c.put("batch", &format!("k{i}"), vec![i as u8; 10]).await;
    }
    let ids: Vec<ObjectIdentifier> = ["k0", "k1", "k2", "missing"]
        .iter()
        .map(|k| ObjectIdentifier::builder().key(*k).build().unwrap())
        .collect();
    let out = c
        .client
        .delete_objects()
        .bucket("batch")
        .delete(Delete::builder().set_objects(Some(ids)).build().unwrap())
        .send()
        .await
        .unwrap();
    let mut deleted: Vec<&str> = out.deleted().iter().filter_map(|d| d.key()).collect();
    deleted.sort();
    assert_eq!(deleted, ["k0", "k1", "k2", "missing"]);
    assert!(out.errors().is_empty());
    let left = c
        .client
        .list_objects_v2()
        .bucket("batch")
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = left.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["k3", "k4"]);

    let quiet = c
        .client
        .delete_objects()
        .bucket("batch")
        .delete(
            Delete::builder()
                .objects(ObjectIdentifier::builder().key("k3").build().unwrap())
                .quiet(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(quiet.deleted().is_empty());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_object_copies_data_and_keeps_or_replaces_metadata() {
    let c = TestCluster::start(3).await;
    c.create_bucket("src-bucket").await;
    c.create_bucket("dst-bucket").await;
    let body = data(2 * 1024 * 1024 + 5, 3);
    c.client
        .put_object()
        .bucket("src-bucket")
        .key("orig")
        .content_type("text/plain")
        .metadata("color", "blue")
        .body(body.clone().into())
        .send()
        .await
        .unwrap();

    let copied = c
        .client
        .copy_object()
        .bucket("dst-bucket")
        .key("copy")
        .copy_source("src-bucket/orig")
        .send()
        .await
        .unwrap();
    assert_eq!(
        copied.copy_object_result().and_then(|r| r.e_tag()),
        Some(format!("\"{}\"", md5_hex(&body)).as_str())
    );
    let got = c
        .client
        .get_object()
        .bucket("dst-bucket")
        .key("copy")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("text/plain"));
    assert_eq!(
        got.metadata().unwrap().get("color").map(String::as_str),
        Some("blue")
    );
    assert!(got.body.collect().await.unwrap().into_bytes().as_ref() == body.as_slice());

    // The copy is independent: deleting the source leaves it readable.
    c.client
        .delete_object()
        .bucket("src-bucket")
        .key("orig")
        .send()
        .await
        .unwrap();
    assert!(c.get("dst-bucket", "copy").await == body);

    // Copy onto itself replaces metadata; without REPLACE it is refused.
    let err = c
        .client
        .copy_object()
        .bucket("dst-bucket")
        .key("copy")
        .copy_source("dst-bucket/copy")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "InvalidRequest");
    c.client
        .copy_object()
        .bucket("dst-bucket")
        .key("copy")
        .copy_source("dst-bucket/copy")
        .metadata_directive(MetadataDirective::Replace)
        .content_type("application/json")
        .metadata("color", "red")
        .send()
        .await
        .unwrap();
    let head = c
        .client
        .head_object()
        .bucket("dst-bucket")
        .key("copy")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/json"));
    assert_eq!(
        head.metadata().unwrap().get("color").map(String::as_str),
        Some("red")
    );
    assert!(c.get("dst-bucket", "copy").await == body);

    let err = c
        .client
        .copy_object()
        .bucket("dst-bucket")
        .key("x")
        .copy_source("src-bucket/orig")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "NoSuchKey");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_work_for_get_and_put_without_credentials() {
    let c = TestCluster::start(3).await;
    c.create_bucket("shared").await;
    let presign = PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();

    let put_url = c
        .client
        .put_object()
        .bucket("shared")
        .key("upload.txt")
        .presigned(presign.clone())
        .await
        .unwrap();
    let path = put_url.uri().strip_prefix(&c.endpoint).unwrap().to_string();
    let raw = raw_request(&c.endpoint, "PUT", &path, None, b"via presigned put", None).await;
    assert_eq!(raw.status, 200, "{}", raw.body);
    assert_eq!(c.get("shared", "upload.txt").await, b"via presigned put");

    let get_url = c
        .client
        .get_object()
        .bucket("shared")
        .key("upload.txt")
        .presigned(presign)
        .await
        .unwrap();
    let path = get_url.uri().strip_prefix(&c.endpoint).unwrap().to_string();
    let raw = raw_request(&c.endpoint, "GET", &path, None, b"", None).await;
    assert_eq!(raw.status, 200, "{}", raw.body);
    assert_eq!(raw.body, "via presigned put");

    // A URL presigned for one key does not open another.
    let bad = path.replace("/upload.txt", "/upload.txu");
    let raw = raw_request(&c.endpoint, "GET", &bad, None, b"", None).await;
    assert_eq!(raw.status, 403, "{}", raw.body);
    assert!(
        raw.body.contains("<Code>SignatureDoesNotMatch</Code>"),
        "{}",
        raw.body
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_hosted_style_addresses_the_bucket_by_host() {
    let c = TestCluster::start(3).await;
    c.create_bucket("vhost").await;
    c.put("vhost", "hello.txt", b"hi from vhost".to_vec()).await;
    let port = c.embedded.s3_addr().port();
    let host = format!("vhost.localhost:{port}");
    let raw = raw_request(
        &c.endpoint,
        "GET",
        "/hello.txt",
        Some(&host),
        b"",
        Some((ACCESS_KEY, SECRET_KEY)),
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.body);
    assert_eq!(raw.body, "hi from vhost");
    let raw = raw_request(
        &c.endpoint,
        "GET",
        "/?list-type=2",
        Some(&host),
        b"",
        Some((ACCESS_KEY, SECRET_KEY)),
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.body);
    assert!(raw.body.contains("<Key>hello.txt</Key>"), "{}", raw.body);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_put_expecting_continue_closes_the_connection_after_answering() {
    // botocore misreads every later answer on a connection whose 100-continue
    // request was answered at once; closing it keeps aws-cli and boto3 sane.
    let c = TestCluster::start(3).await;
    c.create_bucket("expect").await;
    let creds = Some((ACCESS_KEY, SECRET_KEY));
    let raw = raw_request_with_headers(
        &c.endpoint,
        "PUT",
        "/expect/empty",
        None,
        &[("expect", "100-continue"), ("content-length", "0")],
        b"",
        creds,
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.body);
    assert_eq!(
        raw.headers.get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    let raw = raw_request_with_headers(
        &c.endpoint,
        "PUT",
        "/expect/full",
        None,
        &[],
        b"data",
        creds,
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.body);
    assert!(raw.headers.get("connection").is_none());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_gets_answer_304_and_412_as_s3_does() {
    use aws_sdk_s3::primitives::DateTime;
    let c = TestCluster::start(3).await;
    c.create_bucket("cond").await;
    c.put("cond", "k", b"conditional".to_vec()).await;
    let etag = format!("\"{}\"", md5_hex(b"conditional"));
    let past = DateTime::from_secs(1_000_000_000);
    let future = DateTime::from_secs(4_000_000_000);

    let ok = c
        .client
        .get_object()
        .bucket("cond")
        .key("k")
        .if_match(&etag)
        .send()
        .await;
    assert!(ok.is_ok());
    let err = c
        .client
        .get_object()
        .bucket("cond")
        .key("k")
        .if_match("\"other\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&err), 412);
    let err = c
        .client
        .get_object()
        .bucket("cond")
        .key("k")
        .if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&err), 304);
    // A 304 names what it stands for: ETag and Last-Modified (RFC 9110).
    let raw = raw_request_with_headers(
        &c.endpoint,
        "GET",
        "/cond/k",
        None,
        &[("if-none-match", etag.as_str())],
        b"",
        Some((ACCESS_KEY, SECRET_KEY)),
    )
    .await;
    assert_eq!(raw.status, 304);
    assert_eq!(raw.headers["etag"], etag.as_str());
    assert!(raw.headers.contains_key("last-modified"));
    let err = c
        .client
        .head_object()
        .bucket("cond")
        .key("k")
        .if_modified_since(future)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&err), 304);
    let err = c
        .client
        .get_object()
        .bucket("cond")
        .key("k")
        .if_unmodified_since(past)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&err), 412);
    // If-Match that holds wins over a failing If-Unmodified-Since (RFC 7232, as S3).
    let both = c
        .client
        .get_object()
        .bucket("cond")
        .key("k")
        .if_match(&etag)
        .if_unmodified_since(past)
        .send()
        .await;
    assert!(both.is_ok());
    let fresh = c
        .client
        .get_object()
        .bucket("cond")
        .key("k")
        .if_modified_since(past)
        .send()
        .await;
    assert!(fresh.is_ok());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_overrides_replace_stored_headers_on_get() {
    let c = TestCluster::start(3).await;
    c.create_bucket("overrides").await;
    c.client
        .put_object()
        .bucket("overrides")
        .key("k")
        .content_type("text/plain")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();
    let got = c
        .client
        .get_object()
        .bucket("overrides")
        .key("k")
        .response_content_type("application/json")
        .response_content_disposition("attachment; filename=\"x.json\"")
        .response_cache_control("no-cache")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("application/json"));
    assert_eq!(
        got.content_disposition(),
        Some("attachment; filename=\"x.json\"")
    );
    assert_eq!(got.cache_control(), Some("no-cache"));
    c.stop().await;
}
