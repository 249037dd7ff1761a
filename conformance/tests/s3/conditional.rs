use std::time::Duration;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use crate::common::*;

/// Each test's bound: a small cluster and a few dozen requests.
const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_racing_if_none_match_creates_wins() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("race").await;
        let mut tasks = Vec::new();
        for n in 0..10u64 {
            let client = c.client.clone();
            tasks.push(tokio::spawn(async move {
                let body = data(50_000, n);
                let result = client
                    .put_object()
                    .bucket("race")
                    .key("lock")
                    .if_none_match("*")
                    .body(body.clone().into())
                    .send()
                    .await;
                (body, result)
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                (body, Ok(_)) => winners.push(body),
                (_, Err(e)) => {
                    assert_eq!(error_code(&e), "PreconditionFailed");
                    assert_eq!(error_status(&e), 412);
                }
            }
        }
        assert_eq!(winners.len(), 1, "exactly one create wins");
        assert!(
            c.get("race", "lock").await == winners[0],
            "GET returns the winner"
        );
        c.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_refuses_an_existing_key_but_not_a_deleted_one() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("create").await;
        let put = |body: &'static [u8]| {
            c.client
                .put_object()
                .bucket("create")
                .key("k")
                .if_none_match("*")
                .body(body.to_vec().into())
                .send()
        };
        put(b"first").await.unwrap();
        let err = put(b"second").await.unwrap_err();
        assert_eq!(error_code(&err), "PreconditionFailed");
        assert_eq!(c.get("create", "k").await, b"first");
        c.client
            .delete_object()
            .bucket("create")
            .key("k")
            .send()
            .await
            .unwrap();
        put(b"third").await.unwrap();
        assert_eq!(c.get("create", "k").await, b"third");
        c.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_overwrites_only_the_expected_etag() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("swap").await;
        let put = |key: &'static str, etag: String, body: &'static [u8]| {
            c.client
                .put_object()
                .bucket("swap")
                .key(key)
                .if_match(etag)
                .body(body.to_vec().into())
                .send()
        };
        let err = put("missing", format!("\"{}\"", md5_hex(b"x")), b"y")
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "NoSuchKey");
        assert_eq!(error_status(&err), 404);

        c.put("swap", "k", b"v1".to_vec()).await;
        let v2 = put("k", format!("\"{}\"", md5_hex(b"v1")), b"v2")
            .await
            .unwrap();
        assert_eq!(v2.e_tag(), Some(format!("\"{}\"", md5_hex(b"v2")).as_str()));
        let err = put("k", format!("\"{}\"", md5_hex(b"v1")), b"v3")
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "PreconditionFailed");
        assert_eq!(error_status(&err), 412);
        assert_eq!(c.get("swap", "k").await, b"v2");
        c.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_multipart_with_if_none_match_on_an_existing_key_keeps_the_upload() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("mpu").await;
        c.put("mpu", "taken", b"already here".to_vec()).await;
        let upload_id = c
            .client
            .create_multipart_upload()
            .bucket("mpu")
            .key("taken")
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_string();
        let part = c
            .client
            .upload_part()
            .bucket("mpu")
            .key("taken")
            .upload_id(&upload_id)
            .part_number(1)
            .body(b"new body".to_vec().into())
            .send()
            .await
            .unwrap();
        let parts = CompletedMultipartUpload::builder()
            .parts(
                CompletedPart::builder()
                    .part_number(1)
                    .e_tag(part.e_tag().unwrap())
                    .build(),
            )
            .build();
        let complete = |conditional: bool| {
            let mut req = c
                .client
                .complete_multipart_upload()
                .bucket("mpu")
                .key("taken")
                .upload_id(&upload_id)
                .multipart_upload(parts.clone());
            if conditional {
                req = req.if_none_match("*");
            }
            req.send()
        };
        let err = complete(true).await.unwrap_err();
        assert_eq!(error_code(&err), "PreconditionFailed");
        assert_eq!(error_status(&err), 412);
        assert_eq!(c.get("mpu", "taken").await, b"already here");

        // The upload and its part are still there, and complete without a condition.
        let listed = c
            .client
            .list_parts()
            .bucket("mpu")
            .key("taken")
            .upload_id(&upload_id)
            .send()
            .await
            .unwrap();
        assert_eq!(listed.parts().len(), 1);
        complete(false).await.unwrap();
        assert_eq!(c.get("mpu", "taken").await, b"new body");
        c.stop().await;
    })
    .await
}
