use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_get_the_s3_auth_errors() {
    let c = TestCluster::start(3).await;
    c.create_bucket("private").await;

    let wrong_secret = s3_client(&c.endpoint, ACCESS_KEY, "not-the-secret");
    let err = wrong_secret.list_buckets().send().await.unwrap_err();
    assert_eq!(error_code(&err), "SignatureDoesNotMatch");
    assert_eq!(error_status(&err), 403);

    let unknown = s3_client(&c.endpoint, "AKIAUNKNOWN", SECRET_KEY);
    let err = unknown.list_buckets().send().await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidAccessKeyId");
    assert_eq!(error_status(&err), 403);

    let raw = raw_request(&c.endpoint, "GET", "/private", None, b"", None).await;
    assert_eq!(raw.status, 403, "{}", raw.body);
    assert!(
        raw.body.contains("<Code>AccessDenied</Code>"),
        "{}",
        raw.body
    );

    // Nothing was created by the refused requests.
    let err = wrong_secret
        .put_object()
        .bucket("private")
        .key("k")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "SignatureDoesNotMatch");
    let list = c
        .client
        .list_objects_v2()
        .bucket("private")
        .send()
        .await
        .unwrap();
    assert!(list.contents().is_empty());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_xml_bodies_answer_malformed_xml() {
    let c = TestCluster::start(3).await;
    c.create_bucket("xml").await;
    c.put("xml", "keep", b"still here".to_vec()).await;
    let creds = Some((ACCESS_KEY, SECRET_KEY));

    let raw = raw_request(
        &c.endpoint,
        "POST",
        "/xml?delete",
        None,
        b"<Delete><Object><Key>keep",
        creds,
    )
    .await;
    assert_eq!(raw.status, 400, "{}", raw.body);
    assert!(
        raw.body.contains("<Code>MalformedXML</Code>"),
        "{}",
        raw.body
    );
    assert_eq!(c.get("xml", "keep").await, b"still here");

    let upload = c
        .client
        .create_multipart_upload()
        .bucket("xml")
        .key("mp")
        .send()
        .await
        .unwrap();
    let path = format!("/xml/mp?uploadId={}", upload.upload_id().unwrap());
    let raw = raw_request(
        &c.endpoint,
        "POST",
        &path,
        None,
        b"<CompleteMultipartUpload><Part>",
        creds,
    )
    .await;
    assert_eq!(raw.status, 400, "{}", raw.body);
    assert!(
        raw.body.contains("<Code>MalformedXML</Code>"),
        "{}",
        raw.body
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_md5_mismatch_is_refused_and_stores_nothing() {
    let c = TestCluster::start(3).await;
    c.create_bucket("digest").await;
    let err = c
        .client
        .put_object()
        .bucket("digest")
        .key("k")
        .content_md5("1B2M2Y8AsgTpgAmY7PhCfg==") // MD5 of the empty string
        .body(b"not empty".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "BadDigest");
    let err = c
        .client
        .head_object()
        .bucket("digest")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&err), 404);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_not_matching_its_signed_sha256_is_refused_and_stores_nothing() {
    let c = TestCluster::start(3).await;
    c.create_bucket("sha").await;
    let creds = Some((ACCESS_KEY, SECRET_KEY));
    // Signed for the SHA-256 of the empty body, sent with another body.
    let empty_sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let raw = raw_request_with_headers(
        &c.endpoint,
        "PUT",
        "/sha/k",
        None,
        &[("x-amz-content-sha256", empty_sha)],
        b"tampered body",
        creds,
    )
    .await;
    assert_eq!(raw.status, 400, "{}", raw.body);
    assert!(
        raw.body.contains("<Code>XAmzContentSHA256Mismatch</Code>"),
        "{}",
        raw.body
    );
    let err = c
        .client
        .head_object()
        .bucket("sha")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&err), 404);

    // The same request with the right hash is stored.
    let raw = raw_request(&c.endpoint, "PUT", "/sha/k", None, b"real body", creds).await;
    assert_eq!(raw.status, 200, "{}", raw.body);
    assert_eq!(c.get("sha", "k").await, b"real body");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_has_a_request_id_and_errors_repeat_it() {
    let c = TestCluster::start(3).await;
    c.create_bucket("ids").await;
    let creds = Some((ACCESS_KEY, SECRET_KEY));
    let ok = raw_request(&c.endpoint, "GET", "/ids", None, b"", creds).await;
    assert_eq!(ok.status, 200);
    assert!(ok.headers.contains_key("x-amz-request-id"));
    let missing = raw_request(&c.endpoint, "GET", "/ids/missing", None, b"", creds).await;
    assert_eq!(missing.status, 404);
    let id = missing.headers["x-amz-request-id"].to_str().unwrap();
    assert_ne!(id, ok.headers["x-amz-request-id"].to_str().unwrap());
    assert!(
        missing
            .body
            .contains(&format!("<RequestId>{id}</RequestId>")),
        "{}",
        missing.body
    );
    c.stop().await;
}
