//! Bucket policies (Put/Get/DeleteBucketPolicy, GetBucketPolicyStatus,
//! their evaluation on every request) and Public Access Block.

use aws_sdk_s3::types::{BucketCannedAcl, ObjectCannedAcl, PublicAccessBlockConfiguration};
use flexdrive::admin_client::AdminClient;

use crate::common::*;

fn policy(statements: &str) -> String {
    format!(r#"{{"Version": "2012-10-17", "Statement": [{statements}]}}"#)
}

fn public_read(bucket: &str) -> String {
    policy(&format!(
        r#"{{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::{bucket}/*"}}"#
    ))
}

async fn set_policy(c: &TestCluster, bucket: &str, text: &str) {
    c.client
        .put_bucket_policy()
        .bucket(bucket)
        .policy(text)
        .send()
        .await
        .expect("put bucket policy");
}

async fn anonymous(c: &TestCluster, method: &str, path: &str) -> u16 {
    raw_request(&c.endpoint, method, path, None, b"data", None)
        .await
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_policy_round_trips_and_deletes() {
    let c = TestCluster::start(3).await;
    c.create_bucket("site").await;
    let err = c
        .client
        .get_bucket_policy()
        .bucket("site")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "NoSuchBucketPolicy");
    assert_eq!(error_status(&err), 404);
    let status = c
        .client
        .get_bucket_policy_status()
        .bucket("site")
        .send()
        .await
        .unwrap();
    assert_eq!(status.policy_status().unwrap().is_public(), Some(false));

    let text = public_read("site");
    set_policy(&c, "site", &text).await;
    let got = c
        .client
        .get_bucket_policy()
        .bucket("site")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.policy(),
        Some(text.as_str()),
        "returned as it was given"
    );
    let status = c
        .client
        .get_bucket_policy_status()
        .bucket("site")
        .send()
        .await
        .unwrap();
    assert_eq!(status.policy_status().unwrap().is_public(), Some(true));

    c.client
        .delete_bucket_policy()
        .bucket("site")
        .send()
        .await
        .unwrap();
    let err = c
        .client
        .get_bucket_policy()
        .bucket("site")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "NoSuchBucketPolicy");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_policies_are_refused_with_malformed_policy() {
    let c = TestCluster::start(3).await;
    c.create_bucket("strict").await;
    let ok = r#""Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::strict/*""#;
    let cases = [
        ("not JSON", "{not json".to_string()),
        (
            "unknown version",
            format!(r#"{{"Version": "2099-01-01", "Statement": [{{"Effect": "Allow", {ok}}}]}}"#),
        ),
        ("no statement", r#"{"Version": "2012-10-17"}"#.to_string()),
        (
            "bad effect",
            policy(&format!(r#"{{"Effect": "Perhaps", {ok}}}"#)),
        ),
        (
            "Allow with NotPrincipal",
            policy(
                r#"{"Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::x:root"}, "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::strict"}"#,
            ),
        ),
        (
            "resource of another bucket",
            policy(
                r#"{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::other/*"}"#,
            ),
        ),
        (
            "action of another service",
            policy(
                r#"{"Effect": "Allow", "Principal": "*", "Action": "iam:CreateUser", "Resource": "arn:aws:s3:::strict"}"#,
            ),
        ),
        (
            "no principal",
            policy(
                r#"{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::strict/*"}"#,
            ),
        ),
        (
            "unknown condition operator",
            policy(&format!(
                r#"{{"Effect": "Allow", {ok}, "Condition": {{"StringAlmostEquals": {{"s3:prefix": "a"}}}}}}"#
            )),
        ),
        (
            "bad IP address",
            policy(&format!(
                r#"{{"Effect": "Allow", {ok}, "Condition": {{"IpAddress": {{"aws:SourceIp": "300.1.1.1"}}}}}}"#
            )),
        ),
    ];
    for (what, text) in cases {
        let err = c
            .client
            .put_bucket_policy()
            .bucket("strict")
            .policy(text)
            .send()
            .await
            .expect_err(what);
        assert_eq!(error_code(&err), "MalformedPolicy", "{what}");
        assert_eq!(error_status(&err), 400, "{what}");
    }
    let huge = policy(&format!(
        r#"{{"Sid": "{}", "Effect": "Allow", {ok}}}"#,
        "x".repeat(21 * 1024)
    ));
    let err = c
        .client
        .put_bucket_policy()
        .bucket("strict")
        .policy(huge)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "PolicyTooLarge");
    assert_eq!(error_status(&err), 400);
    let err = c
        .client
        .get_bucket_policy()
        .bucket("strict")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "NoSuchBucketPolicy", "nothing was stored");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_get_object_policy_lets_anonymous_clients_read_objects_only() {
    let c = TestCluster::start(3).await;
    c.create_bucket("www").await;
    c.put("www", "index.html", b"<h1>hi</h1>".to_vec()).await;
    assert_eq!(anonymous(&c, "GET", "/www/index.html").await, 403);
    set_policy(&c, "www", &public_read("www")).await;
    let page = raw_request(&c.endpoint, "GET", "/www/index.html", None, b"", None).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body, "<h1>hi</h1>");
    assert_eq!(anonymous(&c, "GET", "/www?list-type=2").await, 403);
    assert_eq!(anonymous(&c, "PUT", "/www/evil.html").await, 403);
    assert_eq!(anonymous(&c, "DELETE", "/www/index.html").await, 403);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_deny_refuses_even_the_owner_except_for_the_policy_itself() {
    let c = TestCluster::start(3).await;
    let admin = AdminClient::new(&c.admin_endpoint(), ADMIN_TOKEN).unwrap();
    let key = admin.create_key("owner").await.unwrap();
    let owner = s3_client(&c.endpoint, &key.access_key, &key.secret_key);
    owner.create_bucket().bucket("keep").send().await.unwrap();
    owner
        .put_object()
        .bucket("keep")
        .key("ledger")
        .body(b"1".to_vec().into())
        .send()
        .await
        .unwrap();
    let deny = policy(
        r#"{"Sid": "NoDeletes", "Effect": "Deny", "Principal": "*", "Action": ["s3:DeleteObject", "s3:PutBucketPolicy", "s3:GetBucketPolicy", "s3:DeleteBucketPolicy"],
            "Resource": ["arn:aws:s3:::keep", "arn:aws:s3:::keep/*"]}"#,
    );
    owner
        .put_bucket_policy()
        .bucket("keep")
        .policy(&deny)
        .send()
        .await
        .unwrap();
    let delete = || owner.delete_object().bucket("keep").key("ledger").send();
    let err = delete().await.unwrap_err();
    assert_eq!(error_code(&err), "AccessDenied");
    assert_eq!(error_status(&err), 403);
    let err = c
        .client
        .delete_object()
        .bucket("keep")
        .key("ledger")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "AccessDenied", "the root key too");
    // Reads are not denied; the owner still manages the policy.
    owner
        .get_object()
        .bucket("keep")
        .key("ledger")
        .send()
        .await
        .unwrap();
    owner
        .get_bucket_policy()
        .bucket("keep")
        .send()
        .await
        .unwrap();
    owner
        .delete_bucket_policy()
        .bucket("keep")
        .send()
        .await
        .unwrap();
    delete().await.expect("allowed again without the policy");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_with_a_prefix_or_source_ip_condition_grants_only_when_it_holds() {
    let c = TestCluster::start(3).await;
    c.create_bucket("shared").await;
    c.put("shared", "public/a", b"a".to_vec()).await;
    c.put("shared", "private/b", b"b".to_vec()).await;
    let admin = AdminClient::new(&c.admin_endpoint(), ADMIN_TOKEN).unwrap();
    let key = admin.create_key("guest").await.unwrap();
    let guest = s3_client(&c.endpoint, &key.access_key, &key.secret_key);
    set_policy(
        &c,
        "shared",
        &policy(&format!(
            r#"{{"Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::flexdrive:user/guest"}}, "Action": "s3:ListBucket",
                "Resource": "arn:aws:s3:::shared", "Condition": {{"StringEquals": {{"s3:prefix": "public/"}}}}}},
               {{"Effect": "Allow", "Principal": {{"AWS": "{}"}}, "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::shared/*", "Condition": {{"IpAddress": {{"aws:SourceIp": "127.0.0.0/8"}}}}}},
               {{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::shared/*", "Condition": {{"IpAddress": {{"aws:SourceIp": "192.0.2.0/24"}}}}}}"#,
            key.access_key
        )),
    )
    .await;
    let listed = guest
        .list_objects_v2()
        .bucket("shared")
        .prefix("public/")
        .send()
        .await
        .expect("prefix public/ is allowed");
    assert_eq!(listed.contents().len(), 1);
    let err = guest
        .list_objects_v2()
        .bucket("shared")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "AccessDenied");
    guest
        .get_object()
        .bucket("shared")
        .key("private/b")
        .send()
        .await
        .expect("from loopback, inside 127.0.0.0/8");
    // Anonymous requests come from 127.0.0.1 too, outside 192.0.2.0/24.
    assert_eq!(anonymous(&c, "GET", "/shared/public/a").await, 403);
    let status = c
        .client
        .get_bucket_policy_status()
        .bucket("shared")
        .send()
        .await
        .unwrap();
    assert_eq!(
        status.policy_status().unwrap().is_public(),
        Some(false),
        "a fixed source network is not public"
    );
    c.stop().await;
}

fn block(acls: bool, ignore: bool, policy: bool, restrict: bool) -> PublicAccessBlockConfiguration {
    PublicAccessBlockConfiguration::builder()
        .block_public_acls(acls)
        .ignore_public_acls(ignore)
        .block_public_policy(policy)
        .restrict_public_buckets(restrict)
        .build()
}

async fn set_block(c: &TestCluster, bucket: &str, config: PublicAccessBlockConfiguration) {
    c.client
        .put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(config)
        .send()
        .await
        .expect("put public access block");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_access_block_round_trips_and_deletes() {
    let c = TestCluster::start(3).await;
    c.create_bucket("guarded").await;
    let err = c
        .client
        .get_public_access_block()
        .bucket("guarded")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "NoSuchPublicAccessBlockConfiguration");
    assert_eq!(error_status(&err), 404);
    set_block(&c, "guarded", block(true, false, true, false)).await;
    let got = c
        .client
        .get_public_access_block()
        .bucket("guarded")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.public_access_block_configuration(),
        Some(&block(true, false, true, false))
    );
    c.client
        .delete_public_access_block()
        .bucket("guarded")
        .send()
        .await
        .unwrap();
    let err = c
        .client
        .get_public_access_block()
        .bucket("guarded")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "NoSuchPublicAccessBlockConfiguration");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_public_access_block_flag_takes_effect() {
    let c = TestCluster::start(3).await;
    c.create_bucket("pab").await;

    // BlockPublicAcls: setting a public ACL is refused, private is fine.
    set_block(&c, "pab", block(true, false, false, false)).await;
    let err = c
        .client
        .put_object()
        .bucket("pab")
        .key("o")
        .acl(ObjectCannedAcl::PublicRead)
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "AccessDenied");
    let err = c
        .client
        .put_bucket_acl()
        .bucket("pab")
        .acl(BucketCannedAcl::PublicRead)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "AccessDenied");
    c.client
        .put_object()
        .bucket("pab")
        .key("o")
        .acl(ObjectCannedAcl::Private)
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();

    // BlockPublicPolicy: a public policy is refused, a non-public one not.
    set_block(&c, "pab", block(false, false, true, false)).await;
    let err = c
        .client
        .put_bucket_policy()
        .bucket("pab")
        .policy(public_read("pab"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "AccessDenied");
    set_policy(
        &c,
        "pab",
        &policy(
            r#"{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::x:user/nobody"}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::pab/*"}"#,
        ),
    )
    .await;

    // IgnorePublicAcls: a public-read object is private again.
    set_block(&c, "pab", block(false, false, false, false)).await;
    c.client
        .put_object_acl()
        .bucket("pab")
        .key("o")
        .acl(aws_sdk_s3::types::ObjectCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous(&c, "GET", "/pab/o").await, 200);
    set_block(&c, "pab", block(false, true, false, false)).await;
    assert_eq!(anonymous(&c, "GET", "/pab/o").await, 403);

    // RestrictPublicBuckets: a public policy no longer grants to anyone
    // but the bucket owner.
    c.client
        .put_object_acl()
        .bucket("pab")
        .key("o")
        .acl(aws_sdk_s3::types::ObjectCannedAcl::Private)
        .send()
        .await
        .unwrap();
    set_block(&c, "pab", block(false, false, false, false)).await;
    set_policy(&c, "pab", &public_read("pab")).await;
    assert_eq!(anonymous(&c, "GET", "/pab/o").await, 200);
    set_block(&c, "pab", block(false, false, false, true)).await;
    assert_eq!(anonymous(&c, "GET", "/pab/o").await, 403);
    assert_eq!(c.get("pab", "o").await, b"x");
    c.stop().await;
}
