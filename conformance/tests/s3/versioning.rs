use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_s3::types::{
    BucketVersioningStatus, Delete, ObjectIdentifier, VersioningConfiguration,
};

use crate::common::*;

/// Each test's bound: a small cluster and a few dozen requests.
const LIMIT: Duration = Duration::from_secs(120);

pub(crate) async fn set_versioning(c: &TestCluster, bucket: &str, status: BucketVersioningStatus) {
    c.client
        .put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(VersioningConfiguration::builder().status(status).build())
        .send()
        .await
        .expect("put bucket versioning");
}

async fn versioning_status(c: &TestCluster, bucket: &str) -> Option<BucketVersioningStatus> {
    let out = c.client.get_bucket_versioning().bucket(bucket).send().await;
    out.expect("get bucket versioning").status().cloned()
}

/// PUTs a body and returns the version id S3 answered.
pub(crate) async fn put_version(c: &TestCluster, bucket: &str, key: &str, body: &[u8]) -> String {
    let out = c
        .client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.to_vec().into())
        .send()
        .await
        .expect("put object");
    out.version_id().expect("x-amz-version-id").to_string()
}

/// DELETEs a key without a version id and returns the delete marker's id.
pub(crate) async fn delete_to_marker(c: &TestCluster, bucket: &str, key: &str) -> String {
    let out = c
        .client
        .delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await;
    let out = out.expect("delete object");
    out.version_id().expect("x-amz-version-id").to_string()
}

async fn get_version(c: &TestCluster, bucket: &str, key: &str, version: &str) -> Vec<u8> {
    let out = c
        .client
        .get_object()
        .bucket(bucket)
        .key(key)
        .version_id(version)
        .send()
        .await
        .expect("get version");
    assert_eq!(out.version_id(), Some(version));
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

/// Every (key, version id, is delete marker, is latest) of the bucket, one page.
async fn all_versions(c: &TestCluster, bucket: &str) -> Vec<(String, String, bool, bool)> {
    let out = c
        .client
        .list_object_versions()
        .bucket(bucket)
        .send()
        .await
        .expect("list object versions");
    assert_eq!(out.is_truncated(), Some(false));
    let mut all: Vec<(String, String, bool, bool)> = out
        .versions()
        .iter()
        .map(|v| {
            let key = v.key().unwrap().to_string();
            (
                key,
                v.version_id().unwrap().to_string(),
                false,
                v.is_latest().unwrap(),
            )
        })
        .chain(out.delete_markers().iter().map(|m| {
            let key = m.key().unwrap().to_string();
            (
                key,
                m.version_id().unwrap().to_string(),
                true,
                m.is_latest().unwrap(),
            )
        }))
        .collect();
    all.sort();
    all
}

fn total_chunks(c: &TestCluster) -> usize {
    (0..3).map(|i| chunk_files(&c.node_dir(i)).len()).sum()
}

/// Waits (bounded) until the nodes hold `want` chunk files: chunks of
/// deleted versions are removed in the background.
async fn wait_chunks(c: &TestCluster, want: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while total_chunks(c) != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} chunk files, expected {want}",
            total_chunks(c)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_versioning_is_empty_until_set_then_enabled_or_suspended() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("vstate").await;
        assert_eq!(versioning_status(&c, "vstate").await, None);
        let raw = raw_request(
            &c.endpoint,
            "GET",
            "/vstate?versioning",
            None,
            b"",
            Some((ACCESS_KEY, SECRET_KEY)),
        )
        .await;
        assert_eq!(raw.status, 200);
        assert!(!raw.body.contains("<Status>"), "{}", raw.body);

        set_versioning(&c, "vstate", BucketVersioningStatus::Enabled).await;
        assert_eq!(
            versioning_status(&c, "vstate").await,
            Some(BucketVersioningStatus::Enabled)
        );
        set_versioning(&c, "vstate", BucketVersioningStatus::Suspended).await;
        assert_eq!(
            versioning_status(&c, "vstate").await,
            Some(BucketVersioningStatus::Suspended)
        );

        let bad = raw_request(
            &c.endpoint,
            "PUT",
            "/vstate?versioning",
            None,
            b"<VersioningConfiguration><Status>Sometimes</Status></VersioningConfiguration>",
            Some((ACCESS_KEY, SECRET_KEY)),
        )
        .await;
        assert_eq!(bad.status, 400, "{}", bad.body);
        assert!(
            bad.body.contains("<Code>MalformedXML</Code>"),
            "{}",
            bad.body
        );
        c.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_version_stays_readable_by_its_id() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("vread").await;
        set_versioning(&c, "vread", BucketVersioningStatus::Enabled).await;
        let v1 = put_version(&c, "vread", "doc", b"first").await;
        let v2 = put_version(&c, "vread", "doc", b"second").await;
        assert_ne!(v1, v2);
        assert!(v1.bytes().all(|b| b.is_ascii_alphanumeric()), "{v1}");

        assert_eq!(c.get("vread", "doc").await, b"second");
        assert_eq!(get_version(&c, "vread", "doc", &v1).await, b"first");
        assert_eq!(get_version(&c, "vread", "doc", &v2).await, b"second");
        let head = c
            .client
            .head_object()
            .bucket("vread")
            .key("doc")
            .version_id(&v1)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_length(), Some(5));
        assert_eq!(head.version_id(), Some(v1.as_str()));

        let err = c
            .client
            .get_object()
            .bucket("vread")
            .key("doc")
            .version_id("0000000000000000ffffffffffffffff")
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "NoSuchVersion");
        assert_eq!(error_status(&err), 404);

        // Copy from an old version makes a new current version.
        let copy = c
            .client
            .copy_object()
            .bucket("vread")
            .key("doc")
            .copy_source(format!("vread/doc?versionId={v1}"))
            .send()
            .await
            .unwrap();
        assert_eq!(copy.copy_source_version_id(), Some(v1.as_str()));
        let v3 = copy.version_id().unwrap().to_string();
        assert_eq!(c.get("vread", "doc").await, b"first");
        let ids: Vec<String> = all_versions(&c, "vread")
            .await
            .into_iter()
            .map(|v| v.1)
            .collect();
        assert_eq!(ids.len(), 3);
        assert!(ids.contains(&v3));
        c.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_without_version_id_adds_a_marker_that_hides_the_key() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("vmark").await;
        set_versioning(&c, "vmark", BucketVersioningStatus::Enabled).await;
        let v1 = put_version(&c, "vmark", "k", b"kept").await;
        let del = c
            .client
            .delete_object()
            .bucket("vmark")
            .key("k")
            .send()
            .await
            .unwrap();
        assert_eq!(del.delete_marker(), Some(true));
        let marker = del.version_id().unwrap().to_string();
        assert_ne!(marker, v1);

        let creds = Some((ACCESS_KEY, SECRET_KEY));
        let get = raw_request(&c.endpoint, "GET", "/vmark/k", None, b"", creds).await;
        assert_eq!(get.status, 404, "{}", get.body);
        assert!(get.body.contains("<Code>NoSuchKey</Code>"), "{}", get.body);
        assert_eq!(get.headers["x-amz-delete-marker"], "true");
        assert_eq!(get.headers["x-amz-version-id"], marker.as_str());
        let path = format!("/vmark/k?versionId={marker}");
        let get = raw_request(&c.endpoint, "GET", &path, None, b"", creds).await;
        assert_eq!(get.status, 405, "{}", get.body);
        assert!(
            get.body.contains("<Code>MethodNotAllowed</Code>"),
            "{}",
            get.body
        );
        assert_eq!(get.headers["x-amz-delete-marker"], "true");

        let list = c
            .client
            .list_objects_v2()
            .bucket("vmark")
            .send()
            .await
            .unwrap();
        assert!(list.contents().is_empty());
        assert_eq!(
            all_versions(&c, "vmark").await,
            vec![
                ("k".to_string(), v1.clone(), false, false),
                ("k".to_string(), marker.clone(), true, true),
            ]
        );

        // Deleting the marker by id brings the object back.
        let del = c
            .client
            .delete_object()
            .bucket("vmark")
            .key("k")
            .version_id(&marker)
            .send()
            .await
            .unwrap();
        assert_eq!(del.delete_marker(), Some(true));
        assert_eq!(del.version_id(), Some(marker.as_str()));
        assert_eq!(c.get("vmark", "k").await, b"kept");
        c.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_version_frees_its_chunks_and_the_bucket_empties_only_then() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("vfree").await;
        set_versioning(&c, "vfree", BucketVersioningStatus::Enabled).await;
        let v1 = put_version(&c, "vfree", "big", &data(100_000, 1)).await;
        let v2 = put_version(&c, "vfree", "big", &data(100_000, 2)).await;
        wait_chunks(&c, 6).await;
        let marker = c
            .client
            .delete_object()
            .bucket("vfree")
            .key("big")
            .send()
            .await
            .unwrap();
        let marker = marker.version_id().unwrap().to_string();
        // Overwrites and markers free nothing: old versions stay readable.
        wait_chunks(&c, 6).await;
        assert_eq!(get_version(&c, "vfree", "big", &v1).await, data(100_000, 1));

        let err = c
            .client
            .delete_bucket()
            .bucket("vfree")
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "BucketNotEmpty");

        for id in [&v1, &v2] {
            c.client
                .delete_object()
                .bucket("vfree")
                .key("big")
                .version_id(id)
                .send()
                .await
                .unwrap();
        }
        wait_chunks(&c, 0).await;
        let err = c
            .client
            .delete_bucket()
            .bucket("vfree")
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "BucketNotEmpty", "the marker remains");
        c.client
            .delete_object()
            .bucket("vfree")
            .key("big")
            .version_id(&marker)
            .send()
            .await
            .unwrap();
        assert!(all_versions(&c, "vfree").await.is_empty());
        c.client
            .delete_bucket()
            .bucket("vfree")
            .send()
            .await
            .unwrap();
        c.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_versioning_replaces_the_null_version_and_keeps_the_others() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("vsusp").await;
        // Written before versioning: the null version.
        c.put("vsusp", "k", data(1000, 1)).await;
        set_versioning(&c, "vsusp", BucketVersioningStatus::Enabled).await;
        let kept = put_version(&c, "vsusp", "k", &data(1000, 2)).await;
        assert_eq!(get_version(&c, "vsusp", "k", "null").await, data(1000, 1));
        set_versioning(&c, "vsusp", BucketVersioningStatus::Suspended).await;
        wait_chunks(&c, 6).await;

        // A write under Suspended makes the null version; S3 does not name
        // it in the answer.
        let out = c
            .client
            .put_object()
            .bucket("vsusp")
            .key("k")
            .body(data(1000, 3).into())
            .send()
            .await
            .expect("put object");
        assert_eq!(out.version_id(), None);
        // The old null version's chunk is freed; the enabled-era one stays.
        wait_chunks(&c, 6).await;
        assert_eq!(c.get("vsusp", "k").await, data(1000, 3));
        assert_eq!(get_version(&c, "vsusp", "k", "null").await, data(1000, 3));
        assert_eq!(get_version(&c, "vsusp", "k", &kept).await, data(1000, 2));
        assert_eq!(
            all_versions(&c, "vsusp").await,
            vec![
                ("k".to_string(), kept.clone(), false, false),
                ("k".to_string(), "null".to_string(), false, true),
            ]
        );

        // A delete while suspended makes a null marker, replacing the null version.
        let del = c
            .client
            .delete_object()
            .bucket("vsusp")
            .key("k")
            .send()
            .await
            .unwrap();
        assert_eq!(del.delete_marker(), Some(true));
        assert_eq!(del.version_id(), Some("null"));
        wait_chunks(&c, 3).await;
        assert_eq!(
            all_versions(&c, "vsusp").await,
            vec![
                ("k".to_string(), kept, false, false),
                ("k".to_string(), "null".to_string(), true, true),
            ]
        );
        c.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_object_versions_pages_with_key_and_version_id_markers() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("vpage").await;
        set_versioning(&c, "vpage", BucketVersioningStatus::Enabled).await;
        let mut expected = Vec::new();
        for key in ["a", "b/1", "b/2", "c"] {
            let mut ids = Vec::new();
            for n in 0..3 {
                ids.push(put_version(&c, "vpage", key, format!("{key}{n}").as_bytes()).await);
            }
            // Listed newest first.
            expected.extend(ids.into_iter().rev().map(|id| (key.to_string(), id)));
        }

        let mut seen = Vec::new();
        let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
        for _ in 0..10 {
            let page = c
                .client
                .list_object_versions()
                .bucket("vpage")
                .max_keys(5)
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_marker.clone())
                .send()
                .await
                .unwrap();
            for v in page.versions() {
                let key = v.key().unwrap().to_string();
                let latest = seen
                    .last()
                    .map(|(k, _): &(String, String)| k != &key)
                    .unwrap_or(true);
                assert_eq!(v.is_latest(), Some(latest), "{key}");
                seen.push((key, v.version_id().unwrap().to_string()));
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            assert_eq!(page.versions().len(), 5);
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
        }
        assert_eq!(seen, expected);

        let rolled = c
            .client
            .list_object_versions()
            .bucket("vpage")
            .delimiter("/")
            .send()
            .await
            .unwrap();
        let prefixes: Vec<&str> = rolled
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix())
            .collect();
        assert_eq!(prefixes, ["b/"]);
        assert_eq!(rolled.versions().len(), 6);
        let under = c
            .client
            .list_object_versions()
            .bucket("vpage")
            .prefix("b/")
            .send()
            .await
            .unwrap();
        assert_eq!(under.versions().len(), 6);
        c.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_versioned_puts_of_one_key_all_become_versions() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("vrace").await;
        set_versioning(&c, "vrace", BucketVersioningStatus::Enabled).await;
        let mut tasks = Vec::new();
        for n in 0..20u64 {
            let client = c.client.clone();
            tasks.push(tokio::spawn(async move {
                let out = client
                    .put_object()
                    .bucket("vrace")
                    .key("hot")
                    .body(data(100, n).into())
                    .send()
                    .await
                    .expect("put");
                out.version_id().unwrap().to_string()
            }));
        }
        let mut written = HashSet::new();
        for t in tasks {
            written.insert(t.await.unwrap());
        }
        assert_eq!(written.len(), 20);
        let listed: HashSet<String> = all_versions(&c, "vrace")
            .await
            .into_iter()
            .map(|v| v.1)
            .collect();
        assert_eq!(listed, written);
        c.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_objects_removes_named_versions_and_marks_the_others() {
    bounded(LIMIT, async {
        let c = TestCluster::start(3).await;
        c.create_bucket("vbatch").await;
        set_versioning(&c, "vbatch", BucketVersioningStatus::Enabled).await;
        let v1 = put_version(&c, "vbatch", "one", b"1").await;
        put_version(&c, "vbatch", "two", b"2").await;
        let ids = vec![
            ObjectIdentifier::builder()
                .key("one")
                .version_id(&v1)
                .build()
                .unwrap(),
            ObjectIdentifier::builder().key("two").build().unwrap(),
        ];
        let out = c
            .client
            .delete_objects()
            .bucket("vbatch")
            .delete(Delete::builder().set_objects(Some(ids)).build().unwrap())
            .send()
            .await
            .unwrap();
        assert!(out.errors().is_empty());
        let one = out
            .deleted()
            .iter()
            .find(|d| d.key() == Some("one"))
            .unwrap();
        assert_eq!(one.version_id(), Some(v1.as_str()));
        assert_ne!(one.delete_marker(), Some(true));
        let two = out
            .deleted()
            .iter()
            .find(|d| d.key() == Some("two"))
            .unwrap();
        assert_eq!(two.delete_marker(), Some(true));
        let marker = two.delete_marker_version_id().unwrap().to_string();

        let all = all_versions(&c, "vbatch").await;
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(all.iter().all(|v| v.0 == "two"));
        assert!(all.contains(&("two".to_string(), marker, true, true)));
        c.stop().await;
    })
    .await
}
