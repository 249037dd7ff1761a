//! Bucket lifecycle configuration, and the worker that applies it. The
//! clusters here run the worker every 200 ms with one-second "days".

use std::time::Duration;

use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleAndOperator, LifecycleRuleFilter,
    NoncurrentVersionExpiration, Tag,
};
use gateway::workers::lifecycle::LifecycleConfig;

use crate::common::*;

/// Every test here finishes well within this, or fails.
const LIMIT: Duration = Duration::from_secs(120);

/// How long a test waits for the worker to act on a one-second day.
const WORKER_WAIT: Duration = Duration::from_secs(30);

fn fast_lifecycle() -> LifecycleConfig {
    LifecycleConfig {
        interval: Duration::from_millis(200),
        day: Duration::from_secs(1),
        ..LifecycleConfig::default()
    }
}

fn prefix(p: &str) -> LifecycleRuleFilter {
    LifecycleRuleFilter::builder().prefix(p).build()
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build().unwrap()
}

fn expire_after(id: &str, filter: LifecycleRuleFilter, days: i32) -> LifecycleRule {
    LifecycleRule::builder()
        .id(id)
        .status(ExpirationStatus::Enabled)
        .filter(filter)
        .expiration(LifecycleExpiration::builder().days(days).build())
        .build()
        .unwrap()
}

fn rules(rules: Vec<LifecycleRule>) -> BucketLifecycleConfiguration {
    BucketLifecycleConfiguration::builder()
        .set_rules(Some(rules))
        .build()
        .unwrap()
}

async fn put_rules(
    c: &TestCluster,
    bucket: &str,
    config: BucketLifecycleConfiguration,
) -> Result<(), String> {
    c.client
        .put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(config)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| error_code(&e))
}

async fn exists(c: &TestCluster, bucket: &str, key: &str) -> bool {
    match c.client.head_object().bucket(bucket).key(key).send().await {
        Ok(_) => true,
        Err(e) if error_status(&e) == 404 => false,
        Err(e) => panic!("head {key}: {e:?}"),
    }
}

/// Chunk files on all storage nodes.
fn chunk_count(c: &TestCluster) -> usize {
    (0..3).map(|i| chunk_files(&c.node_dir(i)).len()).sum()
}

/// Polls `done` until it holds, for at most [`WORKER_WAIT`].
async fn eventually<F, Fut>(what: &str, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WORKER_WAIT;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_configuration_round_trips_and_deletes() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("lcconf").await;
        let err = c
            .client
            .get_bucket_lifecycle_configuration()
            .bucket("lcconf")
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "NoSuchLifecycleConfiguration");
        assert_eq!(error_status(&err), 404);

        let and = LifecycleRuleFilter::builder()
            .and(
                LifecycleRuleAndOperator::builder()
                    .prefix("tmp/")
                    .tags(tag("class", "scratch"))
                    .build(),
            )
            .build();
        let configured = vec![
            expire_after("logs", prefix("logs/"), 30),
            expire_after(
                "tagged",
                LifecycleRuleFilter::builder()
                    .tag(tag("expire", "yes"))
                    .build(),
                7,
            ),
            LifecycleRule::builder()
                .id("scratch")
                .status(ExpirationStatus::Disabled)
                .filter(and)
                .noncurrent_version_expiration(
                    NoncurrentVersionExpiration::builder()
                        .noncurrent_days(3)
                        .build(),
                )
                .build()
                .unwrap(),
            LifecycleRule::builder()
                .id("stale-uploads")
                .status(ExpirationStatus::Enabled)
                .filter(prefix(""))
                .abort_incomplete_multipart_upload(
                    AbortIncompleteMultipartUpload::builder()
                        .days_after_initiation(2)
                        .build(),
                )
                .build()
                .unwrap(),
        ];
        put_rules(&c, "lcconf", rules(configured.clone()))
            .await
            .expect("put lifecycle");
        let out = c
            .client
            .get_bucket_lifecycle_configuration()
            .bucket("lcconf")
            .send()
            .await
            .unwrap();
        assert_eq!(out.rules(), configured.as_slice());

        c.client
            .delete_bucket_lifecycle()
            .bucket("lcconf")
            .send()
            .await
            .expect("delete lifecycle");
        let err = c
            .client
            .get_bucket_lifecycle_configuration()
            .bucket("lcconf")
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "NoSuchLifecycleConfiguration");
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lifecycle_configurations_are_refused() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("lcbad").await;
        let no_action = LifecycleRule::builder()
            .id("idle")
            .status(ExpirationStatus::Enabled)
            .filter(prefix(""))
            .build()
            .unwrap();
        let abort_with_tag = LifecycleRule::builder()
            .id("abort")
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().tag(tag("a", "b")).build())
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(1)
                    .build(),
            )
            .build()
            .unwrap();
        for (config, code) in [
            (rules(vec![expire_after("zero", prefix(""), 0)]), "InvalidArgument"),
            (rules(vec![no_action]), "InvalidArgument"),
            (rules(vec![abort_with_tag]), "InvalidArgument"),
            (
                rules(vec![
                    expire_after("same", prefix("a/"), 1),
                    expire_after("same", prefix("b/"), 1),
                ]),
                "InvalidArgument",
            ),
        ] {
            assert_eq!(put_rules(&c, "lcbad", config).await, Err(code.to_string()));
        }

        let creds = Some((ACCESS_KEY, SECRET_KEY));
        for body in [
            // Both Filter and the legacy Prefix.
            "<LifecycleConfiguration><Rule><ID>x</ID><Prefix>a/</Prefix><Filter><Prefix>a/</Prefix></Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>",
            // An unknown Status.
            "<LifecycleConfiguration><Rule><ID>x</ID><Filter><Prefix>a/</Prefix></Filter><Status>Sometimes</Status><Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>",
            // Not XML.
            "<LifecycleConfiguration><Rule>",
        ] {
            let raw = raw_request(&c.endpoint, "PUT", "/lcbad?lifecycle", None, body.as_bytes(), creds).await;
            assert_eq!(raw.status, 400, "{}", raw.body);
            assert!(raw.body.contains("<Code>MalformedXML</Code>"), "{}", raw.body);
        }
        let err = c
            .client
            .get_bucket_lifecycle_configuration()
            .bucket("lcbad")
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "NoSuchLifecycleConfiguration");
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiration_deletes_matching_objects_and_keeps_the_rest() {
    bounded(LIMIT, async {
        let c = TestCluster::start_with_lifecycle(fast_lifecycle()).await;
        c.create_bucket("aging").await;
        c.put("aging", "logs/old.log", b"old".to_vec()).await;
        c.put("aging", "keep/report.pdf", b"keep".to_vec()).await;
        c.put("aging", "tmp/untagged", b"stays".to_vec()).await;
        c.client
            .put_object()
            .bucket("aging")
            .key("tmp/tagged")
            .tagging("expire=yes")
            .body(b"goes".to_vec().into())
            .send()
            .await
            .unwrap();
        assert_eq!(chunk_count(&c), 4 * 3);

        put_rules(
            &c,
            "aging",
            rules(vec![
                expire_after("logs", prefix("logs/"), 1),
                expire_after(
                    "tagged",
                    LifecycleRuleFilter::builder()
                        .tag(tag("expire", "yes"))
                        .build(),
                    1,
                ),
                // Far in the future: never applies here.
                expire_after("keep", prefix("keep/"), 3650),
            ]),
        )
        .await
        .unwrap();

        eventually("matching objects expire", || async {
            !exists(&c, "aging", "logs/old.log").await && !exists(&c, "aging", "tmp/tagged").await
        })
        .await;
        assert!(exists(&c, "aging", "keep/report.pdf").await);
        assert!(exists(&c, "aging", "tmp/untagged").await);
        assert_eq!(c.get("aging", "keep/report.pdf").await, b"keep");
        // The expired objects' chunks are freed on every replica.
        eventually("expired chunks are deleted", || async {
            chunk_count(&c) == 2 * 3
        })
        .await;
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_multipart_uploads_are_aborted_after_their_days() {
    bounded(LIMIT, async {
        let c = TestCluster::start_with_lifecycle(fast_lifecycle()).await;
        c.create_bucket("uploads").await;
        let upload = c
            .client
            .create_multipart_upload()
            .bucket("uploads")
            .key("big/file.bin")
            .send()
            .await
            .unwrap();
        let id = upload.upload_id().unwrap().to_string();
        c.client
            .upload_part()
            .bucket("uploads")
            .key("big/file.bin")
            .upload_id(&id)
            .part_number(1)
            .body(data(1000, 7).into())
            .send()
            .await
            .unwrap();
        assert_eq!(chunk_count(&c), 3);

        let rule = LifecycleRule::builder()
            .id("abort-stale")
            .status(ExpirationStatus::Enabled)
            .filter(prefix("big/"))
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(1)
                    .build(),
            )
            .build()
            .unwrap();
        put_rules(&c, "uploads", rules(vec![rule])).await.unwrap();

        eventually("the upload is aborted", || async {
            let list = c
                .client
                .list_multipart_uploads()
                .bucket("uploads")
                .send()
                .await
                .unwrap();
            list.uploads().is_empty()
        })
        .await;
        let err = c
            .client
            .list_parts()
            .bucket("uploads")
            .key("big/file.bin")
            .upload_id(&id)
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "NoSuchUpload");
        eventually("the part's chunks are deleted", || async {
            chunk_count(&c) == 0
        })
        .await;
        c.stop().await;
    })
    .await;
}
