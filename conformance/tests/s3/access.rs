//! Access keys from the admin API, per-bucket permissions, canned ACLs and
//! anonymous access.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{BucketCannedAcl, ObjectCannedAcl};
use flexdrive::admin_client::AdminClient;
use gateway::admin::{Allow, CreatedKey};
use http_body_util::Empty;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;

use crate::common::*;

/// How long after its deletion a key may still work (the gateway's key
/// cache TTL is 5 s), plus a margin.
const KEY_DELETION_DEADLINE: Duration = Duration::from_secs(10);

pub(crate) fn admin(c: &TestCluster) -> AdminClient {
    AdminClient::new(&c.admin_endpoint(), ADMIN_TOKEN).expect("admin client")
}

pub(crate) async fn new_key(c: &TestCluster, name: &str) -> (CreatedKey, Client) {
    let key = admin(c).create_key(name).await.expect("create key");
    let client = s3_client(&c.endpoint, &key.access_key, &key.secret_key);
    (key, client)
}

async fn allow(c: &TestCluster, key: &CreatedKey, bucket: &str, read: bool, write: bool) {
    let allow = Allow {
        bucket: bucket.into(),
        read,
        write,
        owner: false,
    };
    admin(c)
        .allow(&key.access_key, &allow)
        .await
        .expect("allow");
}

/// An unsigned request's status and body.
pub(crate) async fn anonymous(c: &TestCluster, method: &str, path: &str) -> Raw {
    raw_request(&c.endpoint, method, path, None, b"data", None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_creates_and_uses_its_own_bucket() {
    let c = TestCluster::start(3).await;
    let (_, client) = new_key(&c, "photos app").await;
    client.create_bucket().bucket("mine").send().await.unwrap();
    client
        .put_object()
        .bucket("mine")
        .key("a.txt")
        .body(b"hello".to_vec().into())
        .send()
        .await
        .unwrap();
    let got = client
        .get_object()
        .bucket("mine")
        .key("a.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"hello"
    );
    let listed = client
        .list_objects_v2()
        .bucket("mine")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.contents().len(), 1);
    client
        .delete_object()
        .bucket("mine")
        .key("a.txt")
        .send()
        .await
        .unwrap();
    client.delete_bucket().bucket("mine").send().await.unwrap();
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reads_and_writes_another_bucket_only_once_allowed() {
    let c = TestCluster::start(3).await;
    c.create_bucket("roots").await;
    c.put("roots", "secret.txt", b"root data".to_vec()).await;
    let (key, client) = new_key(&c, "reader").await;
    let get = || client.get_object().bucket("roots").key("secret.txt").send();
    let put = || {
        client
            .put_object()
            .bucket("roots")
            .key("new.txt")
            .body(b"x".to_vec().into())
            .send()
    };

    let err = get().await.unwrap_err();
    assert_eq!(error_code(&err), "AccessDenied");
    assert_eq!(error_status(&err), 403);
    let err = client
        .list_objects_v2()
        .bucket("roots")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "AccessDenied");

    allow(&c, &key, "roots", true, false).await;
    get().await.expect("read after allow read");
    client
        .list_objects_v2()
        .bucket("roots")
        .send()
        .await
        .expect("list after allow read");
    let err = put().await.unwrap_err();
    assert_eq!(error_code(&err), "AccessDenied");

    allow(&c, &key, "roots", false, true).await;
    put().await.expect("write after allow write");
    get().await.expect("read is kept when write is added");
    // Bucket configuration and deletion need owner.
    let err = client
        .delete_bucket()
        .bucket("roots")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "AccessDenied");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copying_needs_read_on_the_source_bucket() {
    let c = TestCluster::start(3).await;
    c.create_bucket("source").await;
    c.put("source", "a", b"abc".to_vec()).await;
    let (key, client) = new_key(&c, "copier").await;
    client.create_bucket().bucket("dest").send().await.unwrap();
    let copy = || {
        client
            .copy_object()
            .bucket("dest")
            .key("a")
            .copy_source("source/a")
            .send()
    };
    let err = copy().await.unwrap_err();
    assert_eq!(error_code(&err), "AccessDenied");
    allow(&c, &key, "source", true, false).await;
    copy().await.expect("copy after allow read on the source");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_key_stops_working() {
    let c = TestCluster::start(3).await;
    let (key, client) = new_key(&c, "short-lived").await;
    client.list_buckets().send().await.expect("key works");
    admin(&c).delete_key(&key.access_key).await.unwrap();
    let deadline = tokio::time::Instant::now() + KEY_DELETION_DEADLINE;
    loop {
        match client.list_buckets().send().await {
            Err(err) => {
                assert_eq!(error_code(&err), "InvalidAccessKeyId");
                break;
            }
            Ok(_) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "deleted key still works after {KEY_DELETION_DEADLINE:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let keys = admin(&c).list_keys().await.unwrap();
    assert!(keys.keys.iter().all(|k| k.access_key != key.access_key));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_buckets_shows_each_key_its_buckets_and_itself_as_owner() {
    let c = TestCluster::start(3).await;
    c.create_bucket("root-only").await;
    c.create_bucket("shared").await;
    let (key, client) = new_key(&c, "alice").await;
    client
        .create_bucket()
        .bucket("alices")
        .send()
        .await
        .unwrap();
    allow(&c, &key, "shared", true, false).await;

    let list = client.list_buckets().send().await.unwrap();
    let names: Vec<&str> = list.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["alices", "shared"]);
    let owner = list.owner().expect("owner");
    assert_eq!(owner.display_name(), Some("alice"));
    let again = client.list_buckets().send().await.unwrap();
    assert_eq!(again.owner().and_then(|o| o.id()), owner.id());

    let root = c.client.list_buckets().send().await.unwrap();
    let names: Vec<&str> = root.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["alices", "root-only", "shared"]);
    assert_ne!(root.owner().and_then(|o| o.id()), owner.id());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_read_only_what_is_public() {
    let c = TestCluster::start(3).await;
    c.create_bucket("private").await;
    c.put("private", "hidden", b"hidden".to_vec()).await;
    c.client
        .put_object()
        .bucket("private")
        .key("shown")
        .acl(ObjectCannedAcl::PublicRead)
        .body(b"shown".to_vec().into())
        .send()
        .await
        .unwrap();
    c.client
        .create_bucket()
        .bucket("public")
        .acl(BucketCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    c.put("public", "file", b"public data".to_vec()).await;

    let denied = anonymous(&c, "GET", "/private/hidden").await;
    assert_eq!(denied.status, 403);
    assert!(
        denied.body.contains("<Code>AccessDenied</Code>"),
        "{}",
        denied.body
    );
    assert_eq!(anonymous(&c, "GET", "/private").await.status, 403);
    let shown = anonymous(&c, "GET", "/private/shown").await;
    assert_eq!((shown.status, shown.body.as_str()), (200, "shown"));

    // A public-read bucket may be listed by anyone; its objects are read
    // by their own ACL (written private here), as in S3.
    assert_eq!(anonymous(&c, "GET", "/public/file").await.status, 403);
    assert_eq!(anonymous(&c, "HEAD", "/public").await.status, 200);
    let listing = anonymous(&c, "GET", "/public?list-type=2").await;
    assert_eq!(listing.status, 200);
    assert!(listing.body.contains("<Key>file</Key>"), "{}", listing.body);

    // Writes are never anonymous, public bucket or not.
    for path in ["/public/new", "/private/new", "/private/shown"] {
        assert_eq!(anonymous(&c, "PUT", path).await.status, 403, "PUT {path}");
    }
    assert_eq!(anonymous(&c, "DELETE", "/public/file").await.status, 403);
    assert_eq!(anonymous(&c, "GET", "/").await.status, 403);

    // The ACLs as S3 reports them, and made private again.
    let acl = c
        .client
        .get_bucket_acl()
        .bucket("public")
        .send()
        .await
        .unwrap();
    let permissions: Vec<&str> = acl
        .grants()
        .iter()
        .filter_map(|g| g.permission())
        .map(|p| p.as_str())
        .collect();
    assert_eq!(permissions, ["READ", "FULL_CONTROL"]);
    let acl = c
        .client
        .get_object_acl()
        .bucket("private")
        .key("hidden")
        .send()
        .await
        .unwrap();
    assert_eq!(acl.grants().len(), 1);
    c.client
        .put_bucket_acl()
        .bucket("public")
        .acl(BucketCannedAcl::Private)
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous(&c, "GET", "/public?list-type=2").await.status,
        403
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_its_token() {
    let c = TestCluster::start(3).await;
    let http = HttpClient::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let url = format!("{}/v1/keys", c.admin_endpoint());
    for token in [None, Some("wrong-token"), Some(ADMIN_TOKEN)] {
        let mut request = http::Request::get(&url);
        if let Some(t) = token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        let response = http
            .request(request.body(Empty::new()).unwrap())
            .await
            .unwrap();
        let expected = if token == Some(ADMIN_TOKEN) { 200 } else { 401 };
        assert_eq!(response.status().as_u16(), expected, "token {token:?}");
    }
    let wrong = AdminClient::new(&c.admin_endpoint(), "wrong-token").unwrap();
    assert!(wrong.create_key("nope").await.is_err());
    c.stop().await;
}
