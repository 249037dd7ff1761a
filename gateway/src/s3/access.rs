//! Access control for every S3 operation, in one place: s3s calls `check`
//! after verifying the signature and before reading the body. The root key
//! may do everything; other keys need a permission on the bucket (read,
//! write or owner, by operation); anonymous requests may only read what a
//! canned ACL `public-read` made public. A bucket policy then has the last
//! word (see `policy`): its explicit Deny refuses, its Allow grants.

use std::sync::Arc;

use s3s::access::{S3Access, S3AccessContext};
use s3s::dto::*;
use s3s::path::S3Path;
use s3s::{S3Request, S3Result, s3_error};

use super::{Gateway, Inner};
use crate::keys::{Permissions, permissions};
use crate::model::KeyRecord;

/// The permission an operation needs on its bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    Read,
    Write,
    /// Bucket configuration; also every operation not listed.
    Owner,
}

/// s3s operation names and what they need. CopyObject and UploadPartCopy
/// also need read on the source bucket (checked once the input is parsed).
const OPERATIONS: &[(&str, Need)] = &[
    ("GetObject", Need::Read),
    ("HeadObject", Need::Read),
    ("GetObjectAttributes", Need::Read),
    ("GetObjectTagging", Need::Read),
    ("GetObjectAcl", Need::Read),
    ("HeadBucket", Need::Read),
    ("GetBucketLocation", Need::Read),
    ("ListObjects", Need::Read),
    ("ListObjectsV2", Need::Read),
    ("ListObjectVersions", Need::Read),
    ("ListMultipartUploads", Need::Read),
    ("ListParts", Need::Read),
    ("PutObject", Need::Write),
    ("CopyObject", Need::Write),
    ("DeleteObject", Need::Write),
    ("DeleteObjects", Need::Write),
    ("PutObjectTagging", Need::Write),
    ("DeleteObjectTagging", Need::Write),
    ("PutObjectAcl", Need::Write),
    ("CreateMultipartUpload", Need::Write),
    ("UploadPart", Need::Write),
    ("UploadPartCopy", Need::Write),
    ("CompleteMultipartUpload", Need::Write),
    ("AbortMultipartUpload", Need::Write),
    ("PostObject", Need::Write),
];

/// What an anonymous request may do on a `public-read` bucket.
const PUBLIC_BUCKET_READS: &[&str] = &[
    "GetObject",
    "HeadObject",
    "HeadBucket",
    "ListObjects",
    "ListObjectsV2",
];

/// What an anonymous request may do on a `public-read` object.
const PUBLIC_OBJECT_READS: &[&str] = &["GetObject", "HeadObject"];

/// Operations that take a canned ACL header (`x-amz-acl`).
const TAKES_ACL: &[&str] = &[
    "CreateBucket",
    "PutObject",
    "CopyObject",
    "CreateMultipartUpload",
    "PutBucketAcl",
];

/// Canned ACLs we store: `public-read`, and the ones that mean private
/// here (one account, so the bucket owner has full control anyway).
const SUPPORTED_ACLS: &[&str] = &[
    "private",
    "public-read",
    "bucket-owner-full-control",
    "bucket-owner-read",
];

fn need(operation: &str) -> Need {
    OPERATIONS
        .iter()
        .find(|(name, _)| *name == operation)
        .map_or(Need::Owner, |(_, need)| *need)
}

fn allows(p: Permissions, need: Need) -> bool {
    match need {
        Need::Read => p.read,
        Need::Write => p.write,
        Need::Owner => p.owner,
    }
}

pub(crate) fn denied() -> s3s::S3Error {
    s3_error!(AccessDenied, "Access Denied")
}

/// Whether a canned ACL makes the resource public (None: private).
pub(crate) fn is_public_read(acl: Option<&str>) -> bool {
    acl == Some("public-read")
}

/// Refuses ACLs we cannot honour rather than ignoring them: explicit grants
/// (`x-amz-grant-*`) and canned ACLs other than the supported ones.
fn check_acl_headers(operation: &str, headers: &http::HeaderMap) -> S3Result<()> {
    if !TAKES_ACL.contains(&operation) {
        return Ok(());
    }
    if headers
        .keys()
        .any(|name| name.as_str().starts_with("x-amz-grant-"))
    {
        return Err(s3_error!(
            NotImplemented,
            "x-amz-grant-* headers are not supported; use a canned ACL (x-amz-acl: private or public-read)"
        ));
    }
    match headers.get("x-amz-acl").map(|v| v.to_str()) {
        None => Ok(()),
        Some(Ok(acl)) if SUPPORTED_ACLS.contains(&acl) => Ok(()),
        Some(_) => Err(s3_error!(
            NotImplemented,
            "only the canned ACLs private and public-read are supported"
        )),
    }
}

impl Inner {
    /// The stored record of the key that signed a request; None for root.
    pub(crate) async fn stored_key(&self, access_key: &str) -> S3Result<Option<Arc<KeyRecord>>> {
        if access_key == self.root_access_key {
            return Ok(None);
        }
        match self.keys.get(access_key).await? {
            Some(key) => Ok(Some(key)),
            // Deleted since s3s verified the signature.
            None => Err(s3_error!(InvalidAccessKeyId)),
        }
    }

    /// A request signed by a stored key.
    async fn authorize_key(&self, key: &KeyRecord, operation: &str, path: &S3Path) -> S3Result<()> {
        let Some(bucket) = path.get_bucket_name() else {
            // ListBuckets shows each key only its own buckets.
            return Ok(());
        };
        if operation == "CreateBucket" {
            return if key.allow_create_bucket {
                Ok(())
            } else {
                Err(denied())
            };
        }
        let bucket = self.bucket(bucket).await?;
        if allows(permissions(key, &bucket), need(operation)) {
            Ok(())
        } else {
            Err(denied())
        }
    }

    /// A request without a signature: reads of public things only.
    async fn authorize_anonymous(&self, operation: &str, path: &S3Path) -> S3Result<()> {
        if !PUBLIC_BUCKET_READS.contains(&operation) {
            return Err(denied());
        }
        let Some(name) = path.get_bucket_name() else {
            return Err(denied());
        };
        let bucket = self.bucket(name).await?;
        let ignore_acls = super::policy::ignores_public_acls(&bucket);
        if bucket.public_read && !ignore_acls {
            return Ok(());
        }
        if let Some(key) = path.get_object_key()
            && PUBLIC_OBJECT_READS.contains(&operation)
            && !ignore_acls
            && self.object_is_public(&bucket, key).await?
        {
            return Ok(());
        }
        Err(denied())
    }

    /// Read permission on a copy's source bucket, then its bucket policy.
    async fn authorize_copy_source<T>(
        &self,
        req: &S3Request<T>,
        source: &CopySource,
    ) -> S3Result<()> {
        let CopySource::Bucket {
            bucket,
            key,
            version_id,
        } = source
        else {
            // Access points are refused by the operation itself.
            return Ok(());
        };
        let base = granted(self.copy_source_rules(req, bucket).await)?;
        if self
            .copy_source_policy(req, bucket, key, version_id.as_deref(), base)
            .await?
        {
            Ok(())
        } else {
            Err(denied())
        }
    }

    /// Read permission on a copy's source bucket.
    async fn copy_source_rules<T>(&self, req: &S3Request<T>, bucket: &str) -> S3Result<()> {
        let Some(credentials) = &req.credentials else {
            return Err(denied());
        };
        let Some(key) = self.stored_key(&credentials.access_key).await? else {
            return Ok(());
        };
        let bucket = self.bucket(bucket).await?;
        if permissions(&key, &bucket).read {
            Ok(())
        } else {
            Err(denied())
        }
    }
}

/// An access decision of the rules before the bucket policy: Ok(false)
/// when they refuse, other errors (NoSuchBucket, ...) as they are.
fn granted(result: S3Result<()>) -> S3Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.code() == &s3s::S3ErrorCode::AccessDenied => Ok(false),
        Err(e) => Err(e),
    }
}

/// The `S3Access` given to s3s.
pub struct Access(pub(crate) Gateway);

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let inner = &self.0.inner;
        // Owned: the policy check below borrows the context mutably.
        let operation = cx.s3_op().name().to_owned();
        let operation = operation.as_str();
        // s3s names the operation only here; the S3 port's metrics take it.
        crate::metrics::set_op(operation);
        let rules = async {
            match cx.credentials() {
                Some(c) => match inner.stored_key(&c.access_key).await? {
                    Some(key) => inner.authorize_key(&key, operation, cx.s3_path()).await,
                    None => Ok(()),
                },
                None => inner.authorize_anonymous(operation, cx.s3_path()).await,
            }
        };
        let base = granted(rules.await)?;
        if !inner.apply_bucket_policy(cx, operation, base).await? {
            return Err(denied());
        }
        check_acl_headers(operation, cx.headers())
    }

    async fn delete_objects(&self, req: &mut S3Request<DeleteObjectsInput>) -> S3Result<()> {
        self.0.inner.delete_objects_policy(req).await
    }

    async fn copy_object(&self, req: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        self.0
            .inner
            .authorize_copy_source(req, &req.input.copy_source)
            .await
    }

    async fn upload_part_copy(&self, req: &mut S3Request<UploadPartCopyInput>) -> S3Result<()> {
        self.0
            .inner
            .authorize_copy_source(req, &req.input.copy_source)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_map_to_permissions_and_unknown_ones_need_owner() {
        assert_eq!(need("GetObject"), Need::Read);
        assert_eq!(need("ListObjectsV2"), Need::Read);
        assert_eq!(need("CompleteMultipartUpload"), Need::Write);
        assert_eq!(need("DeleteBucket"), Need::Owner);
        assert_eq!(need("PutBucketVersioning"), Need::Owner);
        assert_eq!(need("GetBucketCors"), Need::Owner);
        assert_eq!(need("SomethingNew"), Need::Owner);
    }

    #[test]
    fn only_supported_canned_acls_pass() {
        let mut h = http::HeaderMap::new();
        h.insert("x-amz-acl", "public-read".parse().unwrap());
        assert!(check_acl_headers("PutObject", &h).is_ok());
        h.insert("x-amz-acl", "public-read-write".parse().unwrap());
        assert!(check_acl_headers("PutObject", &h).is_err());
        assert!(check_acl_headers("GetObject", &h).is_ok());
        let mut h = http::HeaderMap::new();
        h.insert("x-amz-grant-read", "uri=x".parse().unwrap());
        assert!(check_acl_headers("CreateBucket", &h).is_err());
    }
}
