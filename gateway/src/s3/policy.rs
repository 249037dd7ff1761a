//! Bucket policies and Public Access Block: Put/Get/DeleteBucketPolicy,
//! GetBucketPolicyStatus, Put/Get/DeletePublicAccessBlock, and applying
//! them in the access check (`access` calls [`Inner::apply_bucket_policy`]).
//! The policy language itself is `crate::policy`; this file gathers a
//! request's facts (action name, resource ARN, condition keys) for it.

use std::net::SocketAddr;

use chunkstore::Table;
use s3s::access::S3AccessContext;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::Inner;
use crate::policy::{Context, Decision, Policy, PolicyError, Principal, Request, S3_ARN_PREFIX};
use crate::store::model::{self, BucketRecord, ObjectRecord, PublicAccessBlock};

/// The client's address, put in each request's extensions by the server:
/// the policy key `aws:SourceIp`.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// Left by the access check in the extensions of an operation whose policy
/// decision needs its parsed input (DeleteObjects: the keys).
#[derive(Clone, Copy, Debug)]
struct Deferred {
    /// What the rules other than the policy say.
    base: bool,
}

/// s3s operation names and the policy actions they need (plain, and when
/// the request names a `versionId`). Operations not listed are `s3:<name>`.
const ACTIONS: &[(&str, &str, &str)] = &[
    ("GetObject", "s3:GetObject", "s3:GetObjectVersion"),
    ("HeadObject", "s3:GetObject", "s3:GetObjectVersion"),
    (
        "GetObjectAttributes",
        "s3:GetObjectAttributes",
        "s3:GetObjectVersionAttributes",
    ),
    (
        "GetObjectTagging",
        "s3:GetObjectTagging",
        "s3:GetObjectVersionTagging",
    ),
    (
        "PutObjectTagging",
        "s3:PutObjectTagging",
        "s3:PutObjectVersionTagging",
    ),
    (
        "DeleteObjectTagging",
        "s3:DeleteObjectTagging",
        "s3:DeleteObjectVersionTagging",
    ),
    ("GetObjectAcl", "s3:GetObjectAcl", "s3:GetObjectVersionAcl"),
    ("PutObjectAcl", "s3:PutObjectAcl", "s3:PutObjectVersionAcl"),
    ("DeleteObject", "s3:DeleteObject", "s3:DeleteObjectVersion"),
    ("DeleteObjects", "s3:DeleteObject", "s3:DeleteObjectVersion"),
    ("PutObject", "s3:PutObject", "s3:PutObject"),
    ("PostObject", "s3:PutObject", "s3:PutObject"),
    ("CopyObject", "s3:PutObject", "s3:PutObject"),
    ("CreateMultipartUpload", "s3:PutObject", "s3:PutObject"),
    ("UploadPart", "s3:PutObject", "s3:PutObject"),
    ("UploadPartCopy", "s3:PutObject", "s3:PutObject"),
    ("CompleteMultipartUpload", "s3:PutObject", "s3:PutObject"),
    (
        "AbortMultipartUpload",
        "s3:AbortMultipartUpload",
        "s3:AbortMultipartUpload",
    ),
    (
        "ListParts",
        "s3:ListMultipartUploadParts",
        "s3:ListMultipartUploadParts",
    ),
    (
        "ListMultipartUploads",
        "s3:ListBucketMultipartUploads",
        "s3:ListBucketMultipartUploads",
    ),
    ("ListObjects", "s3:ListBucket", "s3:ListBucket"),
    ("ListObjectsV2", "s3:ListBucket", "s3:ListBucket"),
    ("HeadBucket", "s3:ListBucket", "s3:ListBucket"),
    (
        "ListObjectVersions",
        "s3:ListBucketVersions",
        "s3:ListBucketVersions",
    ),
    ("ListBuckets", "s3:ListAllMyBuckets", "s3:ListAllMyBuckets"),
    (
        "DeleteBucketTagging",
        "s3:PutBucketTagging",
        "s3:PutBucketTagging",
    ),
    ("PutBucketCors", "s3:PutBucketCORS", "s3:PutBucketCORS"),
    ("DeleteBucketCors", "s3:PutBucketCORS", "s3:PutBucketCORS"),
    ("GetBucketCors", "s3:GetBucketCORS", "s3:GetBucketCORS"),
    (
        "PutBucketLifecycleConfiguration",
        "s3:PutLifecycleConfiguration",
        "s3:PutLifecycleConfiguration",
    ),
    (
        "DeleteBucketLifecycle",
        "s3:PutLifecycleConfiguration",
        "s3:PutLifecycleConfiguration",
    ),
    (
        "GetBucketLifecycleConfiguration",
        "s3:GetLifecycleConfiguration",
        "s3:GetLifecycleConfiguration",
    ),
    (
        "PutPublicAccessBlock",
        "s3:PutBucketPublicAccessBlock",
        "s3:PutBucketPublicAccessBlock",
    ),
    (
        "DeletePublicAccessBlock",
        "s3:PutBucketPublicAccessBlock",
        "s3:PutBucketPublicAccessBlock",
    ),
    (
        "GetPublicAccessBlock",
        "s3:GetBucketPublicAccessBlock",
        "s3:GetBucketPublicAccessBlock",
    ),
];

/// Operations the bucket owner (and root) may always do, whatever the
/// policy denies: AWS never locks the owner out of its own policy.
const POLICY_MANAGEMENT: &[&str] = &["GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy"];

/// Operations that take an ACL in `x-amz-acl` or `x-amz-grant-*`.
const SETS_ACL: &[&str] = &[
    "CreateBucket",
    "PutBucketAcl",
    "PutObject",
    "PutObjectAcl",
    "CopyObject",
    "CreateMultipartUpload",
];

/// Canned ACLs that make a resource public (AWS, "The meaning of public").
const PUBLIC_CANNED_ACLS: &[&str] = &["public-read", "public-read-write", "authenticated-read"];

/// Grantee groups that make a grant public.
const PUBLIC_GROUPS: &[&str] = &[
    "acs.amazonaws.com/groups/global/AllUsers",
    "acs.amazonaws.com/groups/global/AuthenticatedUsers",
];

/// The policy action an operation needs.
pub(crate) fn action(operation: &str, with_version_id: bool) -> String {
    match ACTIONS.iter().find(|(op, _, _)| *op == operation) {
        Some((_, plain, versioned)) => if with_version_id { versioned } else { plain }.to_string(),
        None => format!("s3:{operation}"),
    }
}

fn resource(bucket: &str, key: Option<&str>) -> String {
    match key {
        Some(key) => format!("{S3_ARN_PREFIX}{bucket}/{key}"),
        None => format!("{S3_ARN_PREFIX}{bucket}"),
    }
}

/// Whether public ACLs of this bucket give no access (IgnorePublicAcls).
pub(crate) fn ignores_public_acls(bucket: &BucketRecord) -> bool {
    bucket
        .public_access_block
        .is_some_and(|b| b.ignore_public_acls)
}

/// Whether a request sets a public ACL (for BlockPublicAcls).
fn sets_public_acl(operation: &str, headers: &http::HeaderMap) -> bool {
    if !SETS_ACL.contains(&operation) {
        return false;
    }
    let canned = headers
        .get("x-amz-acl")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|acl| PUBLIC_CANNED_ACLS.contains(&acl));
    let granted = headers.iter().any(|(name, value)| {
        name.as_str().starts_with("x-amz-grant-")
            && value
                .to_str()
                .is_ok_and(|v| PUBLIC_GROUPS.iter().any(|g| v.contains(g)))
    });
    canned || granted
}

fn query_param(uri: &http::Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `%XX` decoding of a path (`+` stays a plus, unlike a query string).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Who signed a request, for principals and `aws:userid` / `aws:username`.
struct Caller {
    access_key: String,
    name: String,
    canonical_id: String,
}

impl Caller {
    fn principal(caller: Option<&Caller>) -> Principal<'_> {
        match caller {
            None => Principal::Anonymous,
            Some(c) => Principal::Key {
                access_key: &c.access_key,
                name: &c.name,
                canonical_id: &c.canonical_id,
            },
        }
    }
}

/// The condition keys a request supplies, from its headers, query and
/// connection (see README, "Bucket policies", for the list).
fn request_context(
    headers: &http::HeaderMap,
    uri: &http::Uri,
    client: Option<SocketAddr>,
    caller: Option<&Caller>,
) -> Context {
    let mut cx = Context::default();
    if let Some(addr) = client {
        cx.set("aws:SourceIp", addr.ip().to_canonical().to_string());
    }
    let secure = uri.scheme_str() == Some("https");
    cx.set("aws:SecureTransport", secure.to_string());
    let now = time::OffsetDateTime::now_utc();
    cx.set("aws:EpochTime", now.unix_timestamp().to_string());
    if let Ok(t) = now.format(&time::format_description::well_known::Rfc3339) {
        cx.set("aws:CurrentTime", t);
    }
    if let Some(c) = caller {
        cx.set("aws:userid", c.access_key.clone());
        cx.set("aws:username", c.name.clone());
    }
    for (header, key) in [("referer", "aws:Referer"), ("user-agent", "aws:UserAgent")] {
        if let Some(v) = headers.get(header).and_then(|v| v.to_str().ok()) {
            cx.set(key, v);
        }
    }
    for (name, value) in headers {
        let name = name.as_str();
        if name.starts_with("x-amz-")
            && !name.starts_with("x-amz-meta-")
            && let Ok(v) = value.to_str()
        {
            cx.set(&format!("s3:{name}"), v);
        }
    }
    if let Some(source) = headers
        .get("x-amz-copy-source")
        .and_then(|v| v.to_str().ok())
    {
        let source = source.split('?').next().unwrap_or_default();
        cx.set(
            "s3:x-amz-copy-source",
            percent_decode(source.trim_start_matches('/')),
        );
    }
    if let Some(tagging) = headers.get("x-amz-tagging").and_then(|v| v.to_str().ok()) {
        let tags: Vec<(String, String)> = form_urlencoded::parse(tagging.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        for (k, v) in &tags {
            cx.set(&format!("s3:RequestObjectTag/{k}"), v.clone());
        }
        cx.set_all(
            "s3:RequestObjectTagKeys",
            tags.into_iter().map(|(k, _)| k).collect(),
        );
    }
    for (param, key) in [
        ("prefix", "s3:prefix"),
        ("delimiter", "s3:delimiter"),
        ("max-keys", "s3:max-keys"),
        ("versionId", "s3:versionid"),
    ] {
        if let Some(v) = query_param(uri, param) {
            cx.set(key, v);
        }
    }
    cx
}

fn policy_error(e: PolicyError) -> S3Error {
    match e {
        PolicyError::TooLarge => {
            let mut err = S3Error::with_message(
                S3ErrorCode::Custom("PolicyTooLarge".into()),
                format!("{e}: shorten the policy"),
            );
            err.set_status_code(http::StatusCode::BAD_REQUEST);
            err
        }
        PolicyError::Malformed(why) => s3_error!(MalformedPolicy, "{why}"),
    }
}

fn no_public_access_block() -> S3Error {
    let mut err = S3Error::with_message(
        S3ErrorCode::Custom("NoSuchPublicAccessBlockConfiguration".into()),
        "The public access block configuration was not found",
    );
    err.set_status_code(http::StatusCode::NOT_FOUND);
    err
}

fn denied(why: &'static str) -> S3Error {
    s3_error!(AccessDenied, "{why}")
}

/// The stored policy of a bucket, parsed; None without one. A stored policy
/// that no longer parses is logged and ignored.
fn stored_policy(bucket: &BucketRecord) -> Option<Policy> {
    let text = bucket.policy.as_deref()?;
    match Policy::parse(text, &bucket.name) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::error!(bucket = %bucket.name, error = %e, "stored bucket policy does not parse; ignored");
            None
        }
    }
}

impl Inner {
    async fn caller(&self, access_key: Option<&str>) -> S3Result<Option<Caller>> {
        let Some(access_key) = access_key else {
            return Ok(None);
        };
        let name = match self.stored_key(access_key).await? {
            Some(key) => key.name.clone(),
            None => access_key.to_string(),
        };
        Ok(Some(Caller {
            access_key: access_key.to_string(),
            name,
            canonical_id: hex::encode(access_key.as_bytes()),
        }))
    }

    /// The tags of an object's version (`version_id`, or the current one).
    async fn existing_tags(
        &self,
        bucket: &BucketRecord,
        key: &str,
        version_id: Option<&str>,
    ) -> S3Result<Vec<(String, String)>> {
        let record = self
            .tables
            .get(
                Table::Objects,
                model::bucket_partition(&bucket.id),
                &model::object_key(&bucket.id, key),
            )
            .await?
            .and_then(|r| r.value)
            .and_then(|v| model::decode::<ObjectRecord>(&v))
            .unwrap_or_default();
        let version = match version_id {
            Some(id) => record.version(id),
            None => record.current(),
        };
        Ok(version
            .and_then(|v| v.data.as_ref())
            .map(|d| d.tags.clone())
            .unwrap_or_default())
    }

    /// The policy's decision on one action on one resource of `bucket`,
    /// combined with `base` (what the other rules say): an explicit Deny
    /// refuses, an Allow grants, otherwise `base` stands.
    #[allow(clippy::too_many_arguments)]
    async fn decide(
        &self,
        bucket: &BucketRecord,
        policy: &Policy,
        operation: &str,
        key: Option<&str>,
        version_id: Option<&str>,
        caller: Option<&Caller>,
        mut cx: Context,
        base: bool,
    ) -> S3Result<bool> {
        if let Some(key) = key
            && policy.uses_key("s3:ExistingObjectTag/")
        {
            for (k, v) in self.existing_tags(bucket, key, version_id).await? {
                cx.set(&format!("s3:ExistingObjectTag/{k}"), v);
            }
        }
        let action = action(operation, version_id.is_some());
        let resource = resource(&bucket.name, key);
        let decision = policy.evaluate(&Request {
            principal: Caller::principal(caller),
            action: &action,
            resource: &resource,
            context: &cx,
        });
        let owner_or_root = caller
            .is_some_and(|c| c.access_key == self.root_access_key || c.access_key == bucket.owner);
        let pab = bucket.public_access_block.unwrap_or_default();
        Ok(match decision {
            Decision::Deny => owner_or_root && POLICY_MANAGEMENT.contains(&operation),
            // RestrictPublicBuckets: a public policy grants only to the
            // bucket owner (who has access anyway).
            Decision::Allow if pab.restrict_public_buckets && policy.is_public() => {
                base || owner_or_root
            }
            Decision::Allow => true,
            Decision::NotApplicable => base,
        })
    }

    /// The bucket policy and Public Access Block part of the access check:
    /// whether the request may go on, given `base`, what the other rules
    /// say. Refuses public ACLs under BlockPublicAcls.
    pub(crate) async fn apply_bucket_policy(
        &self,
        cx: &mut S3AccessContext<'_>,
        operation: &str,
        base: bool,
    ) -> S3Result<bool> {
        let Some(name) = cx.s3_path().get_bucket_name() else {
            return Ok(base);
        };
        if operation == "CreateBucket" {
            return Ok(base);
        }
        let bucket = match self.bucket_for_read(name).await {
            Ok(b) => b,
            Err(e) if e.code() == &S3ErrorCode::NoSuchBucket => return Ok(base),
            Err(e) => return Err(e),
        };
        if bucket
            .public_access_block
            .is_some_and(|b| b.block_public_acls)
            && sets_public_acl(operation, cx.headers())
        {
            return Err(denied(
                "public ACLs are blocked by this bucket's Public Access Block (BlockPublicAcls)",
            ));
        }
        let Some(policy) = stored_policy(&bucket) else {
            return Ok(base);
        };
        if operation == "DeleteObjects" {
            // The keys are in the body: decided in `delete_objects_policy`.
            cx.extensions_mut().insert(Deferred { base });
            return Ok(true);
        }
        let access_key = cx.credentials().map(|c| c.access_key.clone());
        let caller = self.caller(access_key.as_deref()).await?;
        let client = cx.extensions_mut().get::<ClientAddr>().map(|a| a.0);
        let context = request_context(cx.headers(), cx.uri(), client, caller.as_ref());
        let key = cx.s3_path().get_object_key().map(str::to_string);
        let version_id = query_param(cx.uri(), "versionId");
        self.decide(
            &bucket,
            &policy,
            operation,
            key.as_deref(),
            version_id.as_deref(),
            caller.as_ref(),
            context,
            base,
        )
        .await
    }

    /// DeleteObjects under a bucket policy: every key must be allowed
    /// (s3:DeleteObject, or s3:DeleteObjectVersion with a version id).
    pub(crate) async fn delete_objects_policy(
        &self,
        req: &S3Request<DeleteObjectsInput>,
    ) -> S3Result<()> {
        let Some(Deferred { base }) = req.extensions.get::<Deferred>().copied() else {
            return Ok(());
        };
        let bucket = self.bucket_for_read(&req.input.bucket).await?;
        let Some(policy) = stored_policy(&bucket) else {
            return if base {
                Ok(())
            } else {
                Err(super::access::denied())
            };
        };
        let access_key = req.credentials.as_ref().map(|c| c.access_key.clone());
        let caller = self.caller(access_key.as_deref()).await?;
        let client = req.extensions.get::<ClientAddr>().map(|a| a.0);
        let context = request_context(&req.headers, &req.uri, client, caller.as_ref());
        for object in &req.input.delete.objects {
            let allowed = self
                .decide(
                    &bucket,
                    &policy,
                    "DeleteObjects",
                    Some(&object.key),
                    object.version_id.as_deref(),
                    caller.as_ref(),
                    context.clone(),
                    base,
                )
                .await?;
            if !allowed {
                return Err(super::access::denied());
            }
        }
        Ok(())
    }

    /// The source of a copy under its bucket's policy (s3:GetObject, or
    /// s3:GetObjectVersion), given `base`, what the other rules say.
    pub(crate) async fn copy_source_policy<T>(
        &self,
        req: &S3Request<T>,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        base: bool,
    ) -> S3Result<bool> {
        let bucket = match self.bucket_for_read(bucket).await {
            Ok(b) => b,
            Err(e) if e.code() == &S3ErrorCode::NoSuchBucket => return Ok(base),
            Err(e) => return Err(e),
        };
        let Some(policy) = stored_policy(&bucket) else {
            return Ok(base);
        };
        let access_key = req.credentials.as_ref().map(|c| c.access_key.clone());
        let caller = self.caller(access_key.as_deref()).await?;
        let client = req.extensions.get::<ClientAddr>().map(|a| a.0);
        let context = request_context(&req.headers, &req.uri, client, caller.as_ref());
        self.decide(
            &bucket,
            &policy,
            "GetObject",
            Some(key),
            version_id,
            caller.as_ref(),
            context,
            base,
        )
        .await
    }

    pub(crate) async fn put_bucket_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket).await?;
        let policy = Policy::parse(&input.policy, &bucket.name).map_err(policy_error)?;
        if bucket
            .public_access_block
            .is_some_and(|b| b.block_public_policy)
            && policy.is_public()
        {
            return Err(denied(
                "this policy is public and the bucket's Public Access Block has BlockPublicPolicy",
            ));
        }
        let text = input.policy;
        self.update_bucket(&input.bucket, |b| b.policy = Some(text.clone()))
            .await?;
        Ok(S3Response::new(PutBucketPolicyOutput {}))
    }

    pub(crate) async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        let bucket = self.bucket(&req.input.bucket).await?;
        let Some(policy) = bucket.policy else {
            return Err(s3_error!(
                NoSuchBucketPolicy,
                "The bucket policy does not exist"
            ));
        };
        Ok(S3Response::new(GetBucketPolicyOutput {
            policy: Some(policy),
        }))
    }

    pub(crate) async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        self.update_bucket(&req.input.bucket, |b| b.policy = None)
            .await?;
        Ok(S3Response::new(DeleteBucketPolicyOutput {}))
    }

    /// IsPublic reflects the policy alone, as in AWS; a bucket without a
    /// policy is not public (AWS answers NoSuchBucketPolicy there).
    pub(crate) async fn get_bucket_policy_status(
        &self,
        req: S3Request<GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
        let bucket = self.bucket(&req.input.bucket).await?;
        let public = stored_policy(&bucket).is_some_and(|p| p.is_public());
        Ok(S3Response::new(GetBucketPolicyStatusOutput {
            policy_status: Some(PolicyStatus {
                is_public: Some(public),
            }),
        }))
    }

    pub(crate) async fn put_public_access_block(
        &self,
        req: S3Request<PutPublicAccessBlockInput>,
    ) -> S3Result<S3Response<PutPublicAccessBlockOutput>> {
        let c = req.input.public_access_block_configuration;
        let block = PublicAccessBlock {
            block_public_acls: c.block_public_acls.unwrap_or(false),
            ignore_public_acls: c.ignore_public_acls.unwrap_or(false),
            block_public_policy: c.block_public_policy.unwrap_or(false),
            restrict_public_buckets: c.restrict_public_buckets.unwrap_or(false),
        };
        self.update_bucket(&req.input.bucket, |b| b.public_access_block = Some(block))
            .await?;
        Ok(S3Response::new(PutPublicAccessBlockOutput {}))
    }

    pub(crate) async fn get_public_access_block(
        &self,
        req: S3Request<GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
        let bucket = self.bucket(&req.input.bucket).await?;
        let b = bucket
            .public_access_block
            .ok_or_else(no_public_access_block)?;
        Ok(S3Response::new(GetPublicAccessBlockOutput {
            public_access_block_configuration: Some(PublicAccessBlockConfiguration {
                block_public_acls: Some(b.block_public_acls),
                ignore_public_acls: Some(b.ignore_public_acls),
                block_public_policy: Some(b.block_public_policy),
                restrict_public_buckets: Some(b.restrict_public_buckets),
            }),
        }))
    }

    pub(crate) async fn delete_public_access_block(
        &self,
        req: S3Request<DeletePublicAccessBlockInput>,
    ) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
        self.update_bucket(&req.input.bucket, |b| b.public_access_block = None)
            .await?;
        Ok(S3Response::new(DeletePublicAccessBlockOutput {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_map_to_aws_action_names() {
        assert_eq!(action("GetObject", false), "s3:GetObject");
        assert_eq!(action("HeadObject", true), "s3:GetObjectVersion");
        assert_eq!(action("ListObjectsV2", false), "s3:ListBucket");
        assert_eq!(action("ListObjectVersions", false), "s3:ListBucketVersions");
        assert_eq!(action("CompleteMultipartUpload", false), "s3:PutObject");
        assert_eq!(action("DeleteBucketCors", false), "s3:PutBucketCORS");
        assert_eq!(action("GetBucketPolicy", false), "s3:GetBucketPolicy");
        assert_eq!(
            action("GetPublicAccessBlock", false),
            "s3:GetBucketPublicAccessBlock"
        );
    }

    #[test]
    fn public_acls_are_recognised_in_canned_acls_and_grants() {
        let mut h = http::HeaderMap::new();
        h.insert("x-amz-acl", "authenticated-read".parse().unwrap());
        assert!(sets_public_acl("PutObject", &h));
        assert!(!sets_public_acl("GetObject", &h));
        h.insert("x-amz-acl", "private".parse().unwrap());
        assert!(!sets_public_acl("PutBucketAcl", &h));
        h.insert(
            "x-amz-grant-read",
            "uri=\"http://acs.amazonaws.com/groups/global/AllUsers\""
                .parse()
                .unwrap(),
        );
        assert!(sets_public_acl("PutBucketAcl", &h));
    }

    #[test]
    fn request_facts_become_condition_keys() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-amz-copy-source",
            "/src/public/a%20b?versionId=1".parse().unwrap(),
        );
        h.insert(
            "x-amz-tagging",
            "security=public&team=a%26b".parse().unwrap(),
        );
        h.insert("x-amz-acl", "private".parse().unwrap());
        let uri: http::Uri = "/b?list-type=2&prefix=home%2F&max-keys=5".parse().unwrap();
        let addr: SocketAddr = "[::ffff:10.0.0.7]:5000".parse().unwrap();
        let caller = Caller {
            access_key: "FK1".into(),
            name: "alice".into(),
            canonical_id: "464b31".into(),
        };
        let cx = request_context(&h, &uri, Some(addr), Some(&caller));
        let policy = Policy::parse(
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*",
                "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/24"},
                              "StringEquals": {"s3:prefix": "home/", "s3:max-keys": "5", "s3:x-amz-acl": "private",
                                               "s3:x-amz-copy-source": "src/public/a b", "aws:username": "alice",
                                               "s3:RequestObjectTag/team": "a&b", "aws:userid": "FK1"},
                              "ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["security", "team"]},
                              "Bool": {"aws:SecureTransport": "false"}}}}"#,
            "b",
        )
        .unwrap();
        let decision = policy.evaluate(&Request {
            principal: Caller::principal(Some(&caller)),
            action: "s3:PutObject",
            resource: "arn:aws:s3:::b/k",
            context: &cx,
        });
        assert_eq!(decision, Decision::Allow);
    }
}
