//! Object and bucket tagging, as S3 stores, returns and refuses tags.

use std::time::Duration;

use aws_sdk_s3::types::{
    BucketVersioningStatus, CompletedMultipartUpload, CompletedPart, Tag, Tagging,
    TaggingDirective, VersioningConfiguration,
};

use crate::common::*;

/// Every test here finishes well within this, or fails.
const LIMIT: Duration = Duration::from_secs(120);

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build().expect("tag")
}

fn tagging(pairs: &[(&str, &str)]) -> Tagging {
    Tagging::builder()
        .set_tag_set(Some(pairs.iter().map(|(k, v)| tag(k, v)).collect()))
        .build()
        .expect("tagging")
}

fn pairs(tags: &[Tag]) -> Vec<(String, String)> {
    tags.iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn object_tags(c: &TestCluster, bucket: &str, key: &str) -> Vec<(String, String)> {
    let out = c
        .client
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("get object tagging");
    pairs(out.tag_set())
}

async fn tag_count(c: &TestCluster, bucket: &str, key: &str) -> Option<i32> {
    let out = c
        .client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("get object");
    out.tag_count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_tags_are_set_replaced_counted_and_deleted() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("tags").await;
        c.client
            .put_object()
            .bucket("tags")
            .key("doc")
            .tagging("project=blue&note=two%20words")
            .body(b"hello".to_vec().into())
            .send()
            .await
            .expect("put with x-amz-tagging");
        assert_eq!(
            object_tags(&c, "tags", "doc").await,
            owned(&[("project", "blue"), ("note", "two words")])
        );
        assert_eq!(tag_count(&c, "tags", "doc").await, Some(2));

        c.client
            .put_object_tagging()
            .bucket("tags")
            .key("doc")
            .tagging(tagging(&[("a", "1"), ("b", ""), ("c", "3")]))
            .send()
            .await
            .expect("put object tagging");
        assert_eq!(
            object_tags(&c, "tags", "doc").await,
            owned(&[("a", "1"), ("b", ""), ("c", "3")])
        );
        assert_eq!(tag_count(&c, "tags", "doc").await, Some(3));
        // Tagging changes no data.
        assert_eq!(c.get("tags", "doc").await, b"hello");

        c.client
            .delete_object_tagging()
            .bucket("tags")
            .key("doc")
            .send()
            .await
            .expect("delete object tagging");
        assert!(object_tags(&c, "tags", "doc").await.is_empty());
        assert_eq!(tag_count(&c, "tags", "doc").await, None);

        // An overwrite without x-amz-tagging has no tags.
        c.client
            .put_object_tagging()
            .bucket("tags")
            .key("doc")
            .tagging(tagging(&[("a", "1")]))
            .send()
            .await
            .unwrap();
        c.put("tags", "doc", b"new".to_vec()).await;
        assert!(object_tags(&c, "tags", "doc").await.is_empty());
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tag_sets_are_refused_with_invalid_tag_or_malformed_xml() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("badtags").await;
        c.put("badtags", "k", b"x".to_vec()).await;
        let put_tags = |t: Tagging| {
            c.client
                .put_object_tagging()
                .bucket("badtags")
                .key("k")
                .tagging(t)
                .send()
        };

        let eleven: Vec<(String, String)> = (0..11)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        let eleven_ref: Vec<(&str, &str)> = eleven
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let long_key = "k".repeat(129);
        let long_value = "v".repeat(257);
        for bad in [
            tagging(&eleven_ref),
            tagging(&[("dup", "1"), ("dup", "2")]),
            tagging(&[(long_key.as_str(), "v")]),
            tagging(&[("k", long_value.as_str())]),
        ] {
            let err = put_tags(bad).await.unwrap_err();
            assert_eq!(error_code(&err), "InvalidTag");
            assert_eq!(error_status(&err), 400);
        }
        // At the limits is fine.
        let max_key = "k".repeat(128);
        let max_value = "v".repeat(256);
        put_tags(tagging(&[(max_key.as_str(), max_value.as_str())]))
            .await
            .expect("128-character key, 256-character value");
        put_tags(tagging(&eleven_ref[..10])).await.expect("10 tags");

        // The header on PutObject is checked the same way, before anything is stored.
        let header: Vec<String> = (0..11).map(|i| format!("k{i}=v")).collect();
        let err = c
            .client
            .put_object()
            .bucket("badtags")
            .key("new")
            .tagging(header.join("&"))
            .body(b"x".to_vec().into())
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "InvalidTag");
        let err = c
            .client
            .head_object()
            .bucket("badtags")
            .key("new")
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_status(&err), 404);

        let creds = Some((ACCESS_KEY, SECRET_KEY));
        let raw = raw_request(
            &c.endpoint,
            "PUT",
            "/badtags/k?tagging",
            None,
            b"<Tagging><TagSet><Tag><Key>a</Key>",
            creds,
        )
        .await;
        assert_eq!(raw.status, 400, "{}", raw.body);
        assert!(
            raw.body.contains("<Code>MalformedXML</Code>"),
            "{}",
            raw.body
        );

        let err = c
            .client
            .get_object_tagging()
            .bucket("badtags")
            .key("missing")
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "NoSuchKey");
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_uploads_and_copies_carry_tags_by_directive() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("tagcopy").await;
        let upload = c
            .client
            .create_multipart_upload()
            .bucket("tagcopy")
            .key("mp")
            .tagging("kind=multipart")
            .send()
            .await
            .expect("create upload");
        let id = upload.upload_id().unwrap();
        let part = c
            .client
            .upload_part()
            .bucket("tagcopy")
            .key("mp")
            .upload_id(id)
            .part_number(1)
            .body(b"only part".to_vec().into())
            .send()
            .await
            .expect("upload part");
        c.client
            .complete_multipart_upload()
            .bucket("tagcopy")
            .key("mp")
            .upload_id(id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .parts(
                        CompletedPart::builder()
                            .part_number(1)
                            .e_tag(part.e_tag().unwrap())
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("complete");
        assert_eq!(
            object_tags(&c, "tagcopy", "mp").await,
            owned(&[("kind", "multipart")])
        );

        c.client
            .copy_object()
            .bucket("tagcopy")
            .key("copied")
            .copy_source("tagcopy/mp")
            .send()
            .await
            .expect("copy with the default directive");
        assert_eq!(
            object_tags(&c, "tagcopy", "copied").await,
            owned(&[("kind", "multipart")])
        );

        c.client
            .copy_object()
            .bucket("tagcopy")
            .key("replaced")
            .copy_source("tagcopy/mp")
            .tagging_directive(TaggingDirective::Replace)
            .tagging("kind=copy&x=y")
            .send()
            .await
            .expect("copy with REPLACE");
        assert_eq!(
            object_tags(&c, "tagcopy", "replaced").await,
            owned(&[("kind", "copy"), ("x", "y")])
        );
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_tags_round_trip_and_a_missing_set_is_no_such_tag_set() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("btags").await;
        let err = c
            .client
            .get_bucket_tagging()
            .bucket("btags")
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "NoSuchTagSet");
        assert_eq!(error_status(&err), 404);

        c.client
            .put_bucket_tagging()
            .bucket("btags")
            .tagging(tagging(&[("team", "storage"), ("cost", "42")]))
            .send()
            .await
            .expect("put bucket tagging");
        let out = c
            .client
            .get_bucket_tagging()
            .bucket("btags")
            .send()
            .await
            .unwrap();
        assert_eq!(
            pairs(out.tag_set()),
            owned(&[("team", "storage"), ("cost", "42")])
        );

        let many: Vec<(String, String)> = (0..51)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        let many_ref: Vec<(&str, &str)> =
            many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let err = c
            .client
            .put_bucket_tagging()
            .bucket("btags")
            .tagging(tagging(&many_ref))
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "InvalidTag");
        c.client
            .put_bucket_tagging()
            .bucket("btags")
            .tagging(tagging(&many_ref[..50]))
            .send()
            .await
            .expect("50 bucket tags");

        c.client
            .delete_bucket_tagging()
            .bucket("btags")
            .send()
            .await
            .expect("delete bucket tagging");
        let err = c
            .client
            .get_bucket_tagging()
            .bucket("btags")
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "NoSuchTagSet");

        let err = c
            .client
            .get_bucket_tagging()
            .bucket("nope")
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "NoSuchBucket");
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tagging_addresses_one_version_by_version_id() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("vtags").await;
        c.client
            .put_bucket_versioning()
            .bucket("vtags")
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .expect("enable versioning");
        let mut ids = Vec::new();
        for (body, tags) in [(b"one".to_vec(), "v=1"), (b"two".to_vec(), "v=2")] {
            let out = c
                .client
                .put_object()
                .bucket("vtags")
                .key("doc")
                .tagging(tags)
                .body(body.into())
                .send()
                .await
                .unwrap();
            ids.push(out.version_id().unwrap().to_string());
        }

        let out = c
            .client
            .put_object_tagging()
            .bucket("vtags")
            .key("doc")
            .version_id(&ids[0])
            .tagging(tagging(&[("v", "first")]))
            .send()
            .await
            .expect("tag the older version");
        assert_eq!(out.version_id(), Some(ids[0].as_str()));
        let older = c
            .client
            .get_object_tagging()
            .bucket("vtags")
            .key("doc")
            .version_id(&ids[0])
            .send()
            .await
            .unwrap();
        assert_eq!(pairs(older.tag_set()), owned(&[("v", "first")]));
        assert_eq!(older.version_id(), Some(ids[0].as_str()));
        // The current version keeps its own tags.
        assert_eq!(object_tags(&c, "vtags", "doc").await, owned(&[("v", "2")]));

        let err = c
            .client
            .get_object_tagging()
            .bucket("vtags")
            .key("doc")
            .version_id("0000000000000000ffffffffffffffff")
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "NoSuchVersion");
        c.stop().await;
    })
    .await;
}
