//! S3 ACLs: canned ACLs, `x-amz-grant-*` headers and ACL documents on
//! buckets and objects, what their grants allow (to other keys, to every
//! signed request, to anonymous ones), and the errors of bad ACLs.

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{
    AccessControlPolicy, BucketCannedAcl, Grant, Grantee, ObjectCannedAcl, Owner, Permission, Type,
};

use crate::access::{anonymous, new_key};
use crate::common::*;

const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";

/// The canonical id and display name S3 shows for the key of `client`,
/// as ListBuckets reports it.
async fn identity(client: &Client) -> (String, String) {
    let owner = client
        .list_buckets()
        .send()
        .await
        .unwrap()
        .owner()
        .cloned()
        .expect("owner");
    (
        owner.id().unwrap().to_string(),
        owner.display_name().unwrap().to_string(),
    )
}

/// Grants as `PERMISSION grantee` strings, grantee by id or group URI.
fn shown(grants: &[Grant]) -> Vec<String> {
    grants
        .iter()
        .map(|g| {
            let grantee = g.grantee().expect("grantee");
            let who = grantee.id().or(grantee.uri()).unwrap_or("?");
            format!("{} {who}", g.permission().unwrap().as_str())
        })
        .collect()
}

async fn bucket_grants(client: &Client, bucket: &str) -> Vec<String> {
    let acl = client.get_bucket_acl().bucket(bucket).send().await.unwrap();
    shown(acl.grants())
}

async fn object_grants(client: &Client, bucket: &str, key: &str) -> Vec<String> {
    let acl = client
        .get_object_acl()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    shown(acl.grants())
}

fn grantee_id(id: &str) -> Grantee {
    Grantee::builder()
        .r#type(Type::CanonicalUser)
        .id(id)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canned_bucket_acls_give_the_grants_aws_documents_and_their_access() {
    let c = TestCluster::start(3).await;
    let (_, other) = new_key(&c, "other").await;
    let (root, _) = identity(&c.client).await;
    let cases = [
        (BucketCannedAcl::Private, vec![], (403, 403, 403)),
        (
            BucketCannedAcl::PublicRead,
            vec![format!("READ {ALL_USERS}")],
            (200, 200, 403),
        ),
        (
            BucketCannedAcl::PublicReadWrite,
            vec![format!("READ {ALL_USERS}"), format!("WRITE {ALL_USERS}")],
            (200, 200, 200),
        ),
        (
            BucketCannedAcl::AuthenticatedRead,
            vec![format!("READ {AUTHENTICATED_USERS}")],
            (403, 200, 403),
        ),
    ];
    for (canned, others, (anonymous_list, other_list, anonymous_put)) in cases {
        let bucket = format!("canned-{}", canned.as_str());
        c.client
            .create_bucket()
            .bucket(&bucket)
            .acl(canned.clone())
            .send()
            .await
            .unwrap();
        let mut expected = others;
        expected.push(format!("FULL_CONTROL {root}"));
        assert_eq!(
            bucket_grants(&c.client, &bucket).await,
            expected,
            "{canned:?}"
        );

        let listed = anonymous(&c, "GET", &format!("/{bucket}?list-type=2")).await;
        assert_eq!(listed.status, anonymous_list, "anonymous list, {canned:?}");
        let listed = other.list_objects_v2().bucket(&bucket).send().await;
        let status = listed.map_or_else(|e| error_status(&e), |_| 200);
        assert_eq!(status, other_list, "other key's list, {canned:?}");
        let put = anonymous(&c, "PUT", &format!("/{bucket}/anonymous")).await;
        assert_eq!(put.status, anonymous_put, "anonymous put, {canned:?}");
        // Grants on the bucket never reach its configuration.
        let err = other
            .put_bucket_acl()
            .bucket(&bucket)
            .acl(BucketCannedAcl::Private)
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "AccessDenied");
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canned_object_acls_decide_who_reads_the_object() {
    let c = TestCluster::start(3).await;
    let (_, other) = new_key(&c, "other").await;
    c.create_bucket("objects").await;
    let cases = [
        (ObjectCannedAcl::Private, 403, 403),
        (ObjectCannedAcl::PublicRead, 200, 200),
        (ObjectCannedAcl::PublicReadWrite, 200, 200),
        (ObjectCannedAcl::AuthenticatedRead, 403, 200),
        (ObjectCannedAcl::AwsExecRead, 403, 403),
        (ObjectCannedAcl::BucketOwnerRead, 403, 403),
        (ObjectCannedAcl::BucketOwnerFullControl, 403, 403),
    ];
    for (canned, anonymous_get, other_get) in cases {
        let key = canned.as_str().to_string();
        c.client
            .put_object()
            .bucket("objects")
            .key(&key)
            .acl(canned.clone())
            .body(b"data".to_vec().into())
            .send()
            .await
            .unwrap();
        let got = anonymous(&c, "GET", &format!("/objects/{key}")).await;
        assert_eq!(got.status, anonymous_get, "anonymous GET, {canned:?}");
        let got = other.get_object().bucket("objects").key(&key).send().await;
        let status = got.map_or_else(|e| error_status(&e), |_| 200);
        assert_eq!(status, other_get, "other key's GET, {canned:?}");
    }
    // READ on an object is not READ_ACP, and never a write.
    let err = other
        .get_object_acl()
        .bucket("objects")
        .key("public-read")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "AccessDenied");
    let err = other
        .delete_object()
        .bucket("objects")
        .key("public-read-write")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "AccessDenied");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_object_in_a_public_read_bucket_is_listed_but_not_read_anonymously() {
    let c = TestCluster::start(3).await;
    c.client
        .create_bucket()
        .bucket("public")
        .acl(BucketCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    c.put("public", "private", b"secret".to_vec()).await;
    c.client
        .put_object()
        .bucket("public")
        .key("shared")
        .acl(ObjectCannedAcl::PublicRead)
        .body(b"shared".to_vec().into())
        .send()
        .await
        .unwrap();
    let listing = anonymous(&c, "GET", "/public?list-type=2").await;
    assert_eq!(listing.status, 200);
    assert!(
        listing.body.contains("<Key>private</Key>"),
        "{}",
        listing.body
    );
    assert_eq!(anonymous(&c, "GET", "/public/private").await.status, 403);
    assert_eq!(anonymous(&c, "HEAD", "/public/private").await.status, 403);
    let shared = anonymous(&c, "GET", "/public/shared").await;
    assert_eq!((shared.status, shared.body.as_str()), (200, "shared"));
    // Who may list learns that a key is missing; others do not.
    assert_eq!(anonymous(&c, "GET", "/public/missing").await.status, 404);
    c.create_bucket("closed").await;
    assert_eq!(anonymous(&c, "GET", "/closed/missing").await.status, 403);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_users_and_authenticated_users_grants_cover_signed_requests_of_any_key() {
    let c = TestCluster::start(3).await;
    let (_, other) = new_key(&c, "other").await;
    c.create_bucket("root-bucket").await;
    for (key, canned) in [
        ("everyone", ObjectCannedAcl::PublicRead),
        ("signed", ObjectCannedAcl::AuthenticatedRead),
        ("nobody", ObjectCannedAcl::Private),
    ] {
        c.client
            .put_object()
            .bucket("root-bucket")
            .key(key)
            .acl(canned)
            .body(key.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }
    for key in ["everyone", "signed"] {
        let got = other
            .get_object()
            .bucket("root-bucket")
            .key(key)
            .send()
            .await
            .unwrap();
        let body = got.body.collect().await.unwrap().into_bytes();
        assert_eq!(body.as_ref(), key.as_bytes());
    }
    let err = other
        .get_object()
        .bucket("root-bucket")
        .key("nobody")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "AccessDenied");
    assert_eq!(
        anonymous(&c, "GET", "/root-bucket/everyone").await.status,
        200
    );
    assert_eq!(
        anonymous(&c, "GET", "/root-bucket/signed").await.status,
        403
    );
    // A copy reads its source through the same grants.
    other.create_bucket().bucket("others").send().await.unwrap();
    other
        .copy_object()
        .bucket("others")
        .key("copy")
        .copy_source("root-bucket/everyone")
        .send()
        .await
        .expect("copy of a public-read object");
    let err = other
        .copy_object()
        .bucket("others")
        .key("copy")
        .copy_source("root-bucket/nobody")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "AccessDenied");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_headers_give_exactly_the_named_permissions() {
    let c = TestCluster::start(3).await;
    let (_, other) = new_key(&c, "grantee").await;
    let (other_id, other_name) = identity(&other).await;
    let id = format!("id=\"{other_id}\"");
    c.client
        .create_bucket()
        .bucket("granted")
        .grant_write(&id)
        .grant_read_acp(format!("id={other_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        bucket_grants(&c.client, "granted").await,
        [format!("WRITE {other_id}"), format!("READ_ACP {other_id}")]
    );
    let acl = other
        .get_bucket_acl()
        .bucket("granted")
        .send()
        .await
        .expect("READ_ACP reads the bucket ACL");
    assert_eq!(
        acl.grants()[0].grantee().unwrap().display_name(),
        Some(other_name.as_str())
    );
    // WRITE: objects may be written, the bucket not listed.
    other
        .put_object()
        .bucket("granted")
        .key("from-other")
        .body(b"x".to_vec().into())
        .send()
        .await
        .expect("WRITE puts objects");
    let err = other
        .list_objects_v2()
        .bucket("granted")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "AccessDenied");
    // The writer owns what it wrote and has full control of it.
    assert_eq!(
        object_grants(&other, "granted", "from-other").await,
        [format!("FULL_CONTROL {other_id}")]
    );

    c.client
        .put_object()
        .bucket("granted")
        .key("readable")
        .grant_read(format!("{id}, uri=\"{ALL_USERS}\""))
        .body(b"r".to_vec().into())
        .send()
        .await
        .unwrap();
    assert_eq!(
        object_grants(&c.client, "granted", "readable").await,
        [format!("READ {other_id}"), format!("READ {ALL_USERS}")]
    );
    other
        .get_object()
        .bucket("granted")
        .key("readable")
        .send()
        .await
        .expect("READ reads the object");
    let err = other
        .put_object_acl()
        .bucket("granted")
        .key("readable")
        .acl(ObjectCannedAcl::Private)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "AccessDenied");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_object_acl_with_a_document_replaces_the_grants_of_its_owner() {
    let c = TestCluster::start(3).await;
    let (_, other) = new_key(&c, "reader").await;
    let (other_id, _) = identity(&other).await;
    let (root_id, root_name) = identity(&c.client).await;
    c.create_bucket("docs").await;
    c.put("docs", "doc", b"document".to_vec()).await;
    assert!(
        other
            .get_object()
            .bucket("docs")
            .key("doc")
            .send()
            .await
            .is_err()
    );

    let owner = Owner::builder()
        .id(&root_id)
        .display_name(&root_name)
        .build();
    let policy = |owner: Owner| {
        AccessControlPolicy::builder()
            .owner(owner)
            .grants(
                Grant::builder()
                    .grantee(grantee_id(&root_id))
                    .permission(Permission::FullControl)
                    .build(),
            )
            .grants(
                Grant::builder()
                    .grantee(grantee_id(&other_id))
                    .permission(Permission::Read)
                    .build(),
            )
            .build()
    };
    c.client
        .put_object_acl()
        .bucket("docs")
        .key("doc")
        .access_control_policy(policy(owner))
        .send()
        .await
        .unwrap();
    assert_eq!(
        object_grants(&c.client, "docs", "doc").await,
        [
            format!("READ {other_id}"),
            format!("FULL_CONTROL {root_id}")
        ]
    );
    let got = other
        .get_object()
        .bucket("docs")
        .key("doc")
        .send()
        .await
        .expect("read after the grant");
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"document"
    );
    // The document's owner must be the object's.
    let stranger = Owner::builder().id(&other_id).build();
    let err = c
        .client
        .put_object_acl()
        .bucket("docs")
        .key("doc")
        .access_control_policy(policy(stranger))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "AccessDenied");
    // And the same on a bucket.
    let bucket_policy = AccessControlPolicy::builder()
        .owner(Owner::builder().id(&root_id).build())
        .grants(
            Grant::builder()
                .grantee(
                    Grantee::builder()
                        .r#type(Type::Group)
                        .uri(ALL_USERS)
                        .build()
                        .unwrap(),
                )
                .permission(Permission::Read)
                .build(),
        )
        .build();
    c.client
        .put_bucket_acl()
        .bucket("docs")
        .access_control_policy(bucket_policy)
        .send()
        .await
        .unwrap();
    assert_eq!(
        bucket_grants(&c.client, "docs").await,
        [format!("READ {ALL_USERS}")]
    );
    assert_eq!(anonymous(&c, "GET", "/docs?list-type=2").await.status, 200);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_owner_canned_acls_grant_the_bucket_owner_on_objects_of_other_writers() {
    let c = TestCluster::start(3).await;
    let (_, writer) = new_key(&c, "writer").await;
    let (writer_id, writer_name) = identity(&writer).await;
    let (root_id, _) = identity(&c.client).await;
    c.client
        .create_bucket()
        .bucket("dropbox")
        .acl(BucketCannedAcl::PublicReadWrite)
        .send()
        .await
        .unwrap();
    for (canned, permission) in [
        (ObjectCannedAcl::BucketOwnerRead, "READ"),
        (ObjectCannedAcl::BucketOwnerFullControl, "FULL_CONTROL"),
    ] {
        let key = canned.as_str().to_string();
        writer
            .put_object()
            .bucket("dropbox")
            .key(&key)
            .acl(canned)
            .body(b"dropped".to_vec().into())
            .send()
            .await
            .unwrap();
        let acl = writer
            .get_object_acl()
            .bucket("dropbox")
            .key(&key)
            .send()
            .await
            .unwrap();
        let owner = acl.owner().expect("owner");
        assert_eq!(owner.id(), Some(writer_id.as_str()));
        assert_eq!(owner.display_name(), Some(writer_name.as_str()));
        assert_eq!(
            shown(acl.grants()),
            [
                format!("{permission} {root_id}"),
                format!("FULL_CONTROL {writer_id}")
            ]
        );
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_acls_are_refused_with_the_s3_errors() {
    let c = TestCluster::start(3).await;
    c.create_bucket("acls").await;
    let unknown = hex::encode("NOSUCHKEY");
    let put = |acl: Option<&str>, grant_read: Option<String>| {
        let mut put = c
            .client
            .put_object()
            .bucket("acls")
            .key("k")
            .body(b"x".to_vec().into());
        if let Some(acl) = acl {
            put = put.acl(ObjectCannedAcl::from(acl));
        }
        if let Some(grant) = grant_read {
            put = put.grant_read(grant);
        }
        put.send()
    };
    let err = put(None, Some(format!("id=\"{unknown}\"")))
        .await
        .unwrap_err();
    assert_eq!(
        (error_status(&err), error_code(&err).as_str()),
        (400, "InvalidArgument")
    );
    let err = put(None, Some("emailAddress=\"a@example.com\"".into()))
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "UnresolvableGrantByEmailAddress");
    let err = put(Some("public-read"), Some(format!("uri=\"{ALL_USERS}\"")))
        .await
        .unwrap_err();
    assert_eq!(
        (error_status(&err), error_code(&err).as_str()),
        (400, "InvalidRequest")
    );
    let err = put(Some("world-readable"), None).await.unwrap_err();
    assert_eq!(
        (error_status(&err), error_code(&err).as_str()),
        (400, "InvalidArgument")
    );
    let err = put(None, Some("uri=\"http://example.com/group\"".into()))
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "InvalidArgument");
    // Nothing was stored by the refused writes.
    let err = c
        .client
        .head_object()
        .bucket("acls")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&err), 404);

    let err = c
        .client
        .put_bucket_acl()
        .bucket("acls")
        .grant_full_control(format!("id={unknown}"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "InvalidArgument");
    c.stop().await;
}
