//! Access control for every S3 operation, in one place: s3s calls `check`
//! after verifying the signature and before reading the body. The root key
//! may do everything; other keys may do what their permission on the bucket
//! allows (read, write or owner, by operation); on top of that, anyone,
//! signed or not, may do what an ACL grant gives them (see `crate::acl`).
//! A bucket policy then has the last word (see `policy`): its explicit Deny
//! refuses, its Allow grants; a Public Access Block with IgnorePublicAcls
//! makes AllUsers and AuthenticatedUsers grants count for nothing.

use std::sync::Arc;

use s3s::access::{S3Access, S3AccessContext};
use s3s::dto::*;
use s3s::path::S3Path;
use s3s::{S3Request, S3Result, s3_error};

use super::{Gateway, Inner};
use crate::acl::{self, AclPermission, Requester, Resource};
use crate::keys::{Permissions, permissions};
use crate::store::model::{BucketRecord, KeyRecord};

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

/// Where an ACL grant lets an operation through: the permission it needs
/// in the bucket's ACL or in the object's (the version addressed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AclNeed {
    Bucket(AclPermission),
    Object(AclPermission),
}

/// Operations an ACL grant can allow, as AWS maps them: bucket READ lists,
/// bucket WRITE writes and deletes objects (multipart included), object
/// READ reads the object, READ_ACP / WRITE_ACP read and write the ACL;
/// FULL_CONTROL gives all four. Anything else (tagging, attributes, bucket
/// configuration) needs a key permission, as with AWS's IAM-only actions.
const ACL_OPERATIONS: &[(&str, AclNeed)] = &[
    ("HeadBucket", AclNeed::Bucket(AclPermission::Read)),
    ("ListObjects", AclNeed::Bucket(AclPermission::Read)),
    ("ListObjectsV2", AclNeed::Bucket(AclPermission::Read)),
    ("ListObjectVersions", AclNeed::Bucket(AclPermission::Read)),
    ("ListMultipartUploads", AclNeed::Bucket(AclPermission::Read)),
    ("PutObject", AclNeed::Bucket(AclPermission::Write)),
    ("PostObject", AclNeed::Bucket(AclPermission::Write)),
    ("CopyObject", AclNeed::Bucket(AclPermission::Write)),
    ("DeleteObject", AclNeed::Bucket(AclPermission::Write)),
    ("DeleteObjects", AclNeed::Bucket(AclPermission::Write)),
    (
        "CreateMultipartUpload",
        AclNeed::Bucket(AclPermission::Write),
    ),
    ("UploadPart", AclNeed::Bucket(AclPermission::Write)),
    ("UploadPartCopy", AclNeed::Bucket(AclPermission::Write)),
    (
        "CompleteMultipartUpload",
        AclNeed::Bucket(AclPermission::Write),
    ),
    (
        "AbortMultipartUpload",
        AclNeed::Bucket(AclPermission::Write),
    ),
    ("ListParts", AclNeed::Bucket(AclPermission::Write)),
    ("GetBucketAcl", AclNeed::Bucket(AclPermission::ReadAcp)),
    ("PutBucketAcl", AclNeed::Bucket(AclPermission::WriteAcp)),
    ("GetObject", AclNeed::Object(AclPermission::Read)),
    ("HeadObject", AclNeed::Object(AclPermission::Read)),
    ("GetObjectAcl", AclNeed::Object(AclPermission::ReadAcp)),
    ("PutObjectAcl", AclNeed::Object(AclPermission::WriteAcp)),
];

/// Operations that take an ACL (`x-amz-acl`, `x-amz-grant-*`), and on what.
const TAKES_ACL: &[(&str, Resource)] = &[
    ("CreateBucket", Resource::Bucket),
    ("PutBucketAcl", Resource::Bucket),
    ("PutObject", Resource::Object),
    ("CopyObject", Resource::Object),
    ("CreateMultipartUpload", Resource::Object),
    ("PutObjectAcl", Resource::Object),
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

fn acl_need(operation: &str) -> Option<AclNeed> {
    ACL_OPERATIONS
        .iter()
        .find(|(name, _)| *name == operation)
        .map(|(_, need)| *need)
}

/// Refuses a malformed ACL before the body is read: an unknown canned ACL
/// (InvalidArgument), a canned ACL with grant headers (InvalidRequest),
/// grant headers that do not parse. Grantees are checked by the operation.
fn check_acl_headers(operation: &str, headers: &http::HeaderMap) -> S3Result<()> {
    let Some((_, resource)) = TAKES_ACL.iter().find(|(name, _)| *name == operation) else {
        return Ok(());
    };
    let canned = match headers.get("x-amz-acl").map(|v| v.to_str()) {
        None => None,
        Some(Ok(name)) => Some(name),
        Some(Err(_)) => return Err(s3_error!(InvalidArgument, "x-amz-acl is not ASCII")),
    };
    acl::requested(canned, headers, *resource).map(|_| ())
}

/// Who signed a request, as the access check sees it.
enum Signer {
    Root,
    Key(Arc<KeyRecord>),
    Anonymous,
}

impl Signer {
    fn requester<'a>(&'a self, root: &'a str) -> Requester<'a> {
        match self {
            Signer::Root => Requester::Key(root),
            Signer::Key(k) => Requester::Key(&k.access_key),
            Signer::Anonymous => Requester::Anonymous,
        }
    }
}

/// The `versionId` of a request's query, if any.
fn query_version_id(uri: &http::Uri) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(name, _)| name == "versionId")
        .map(|(_, value)| value.into_owned())
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

    async fn signer(&self, credentials: Option<&s3s::auth::Credentials>) -> S3Result<Signer> {
        Ok(match credentials {
            None => Signer::Anonymous,
            Some(c) => match self.stored_key(&c.access_key).await? {
                None => Signer::Root,
                Some(key) => Signer::Key(key),
            },
        })
    }

    /// Whether the signer may run the operation: root always; a key with
    /// its permission on the bucket (see `keys::permissions`); anyone an
    /// ACL grant covers (see `ACL_OPERATIONS`).
    async fn authorize(
        &self,
        signer: &Signer,
        operation: &str,
        path: &S3Path,
        version_id: Option<&str>,
    ) -> S3Result<()> {
        let key = match signer {
            Signer::Root => return Ok(()),
            Signer::Key(key) => Some(key),
            Signer::Anonymous => None,
        };
        let Some(bucket) = path.get_bucket_name() else {
            // ListBuckets shows each key only its own buckets.
            return if key.is_some() { Ok(()) } else { Err(denied()) };
        };
        if operation == "CreateBucket" {
            return if key.is_some_and(|k| k.allow_create_bucket) {
                Ok(())
            } else {
                Err(denied())
            };
        }
        let bucket = self.bucket_for_read(bucket).await?;
        if key.is_some_and(|k| allows(permissions(k, &bucket), need(operation))) {
            return Ok(());
        }
        let who = signer.requester(&self.root_access_key);
        let granted = match acl_need(operation) {
            None => false,
            Some(AclNeed::Bucket(needed)) => {
                acl::allows(&counted(bucket.grants(), &bucket), who, needed)
            }
            Some(AclNeed::Object(needed)) => match path.get_object_key() {
                None => false,
                Some(object) => {
                    self.object_grants_allow(&bucket, object, version_id, who, needed)
                        .await?
                }
            },
        };
        if granted { Ok(()) } else { Err(denied()) }
    }

    /// Whether an object version's ACL gives `who` the permission; its
    /// owner always may read and change the ACL. For a missing object the
    /// bucket's READ decides, so that only those who may list the bucket
    /// learn that a key does not exist (404 rather than 403, as in S3).
    async fn object_grants_allow(
        &self,
        bucket: &BucketRecord,
        key: &str,
        version_id: Option<&str>,
        who: Requester<'_>,
        needed: AclPermission,
    ) -> S3Result<bool> {
        let Some(data) = self.version_data(bucket, key, version_id).await? else {
            let grants = counted(bucket.grants(), bucket);
            return Ok(acl::allows(&grants, who, AclPermission::Read));
        };
        let owner = data.owner_or(&bucket.owner);
        let acp = matches!(needed, AclPermission::ReadAcp | AclPermission::WriteAcp);
        let grants = counted(data.grants(&bucket.owner), bucket);
        Ok(acp && who == Requester::Key(owner) || acl::allows(&grants, who, needed))
    }

    /// Read permission on a copy's source, then the source bucket's policy.
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
        let base = granted(
            self.copy_source_rules(req, bucket, key, version_id.as_deref())
                .await,
        )?;
        if self
            .copy_source_policy(req, bucket, key, version_id.as_deref(), base)
            .await?
        {
            Ok(())
        } else {
            Err(denied())
        }
    }

    /// Read permission on a copy's source: a key's bucket permission, or
    /// READ in the source object's ACL.
    async fn copy_source_rules<T>(
        &self,
        req: &S3Request<T>,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> S3Result<()> {
        let signer = self.signer(req.credentials.as_ref()).await?;
        if let Signer::Root = signer {
            return Ok(());
        }
        let bucket = self.bucket_for_read(bucket).await?;
        if let Signer::Key(k) = &signer
            && permissions(k, &bucket).read
        {
            return Ok(());
        }
        let who = signer.requester(&self.root_access_key);
        if self
            .object_grants_allow(&bucket, key, version_id, who, AclPermission::Read)
            .await?
        {
            Ok(())
        } else {
            Err(denied())
        }
    }
}

/// The grants that count: without AllUsers and AuthenticatedUsers when the
/// bucket's Public Access Block says IgnorePublicAcls.
fn counted(grants: Vec<acl::AclGrant>, bucket: &BucketRecord) -> Vec<acl::AclGrant> {
    if !super::policy::ignores_public_acls(bucket) {
        return grants;
    }
    grants
        .into_iter()
        .filter(|g| {
            !matches!(
                g.grantee,
                acl::AclGrantee::AllUsers | acl::AclGrantee::AuthenticatedUsers
            )
        })
        .collect()
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
        let signer = inner.signer(cx.credentials()).await?;
        let version_id = query_version_id(cx.uri());
        let rules = inner
            .authorize(&signer, operation, cx.s3_path(), version_id.as_deref())
            .await;
        if !inner
            .apply_bucket_policy(cx, operation, granted(rules)?)
            .await?
        {
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
    fn acl_headers_are_checked_on_the_operations_that_take_them() {
        let mut h = http::HeaderMap::new();
        h.insert("x-amz-acl", "public-read-write".parse().unwrap());
        assert!(check_acl_headers("PutObject", &h).is_ok());
        h.insert("x-amz-acl", "log-delivery-write".parse().unwrap());
        assert!(check_acl_headers("PutObject", &h).is_err());
        assert!(check_acl_headers("PutBucketAcl", &h).is_ok());
        assert!(check_acl_headers("GetObject", &h).is_ok());
        h.insert("x-amz-grant-read", "uri=x".parse().unwrap());
        assert!(check_acl_headers("CreateBucket", &h).is_err());
    }

    #[test]
    fn acl_grants_cover_listing_writes_reads_and_acls_only() {
        assert_eq!(
            acl_need("ListObjectsV2"),
            Some(AclNeed::Bucket(AclPermission::Read))
        );
        assert_eq!(
            acl_need("DeleteObject"),
            Some(AclNeed::Bucket(AclPermission::Write))
        );
        assert_eq!(
            acl_need("GetObject"),
            Some(AclNeed::Object(AclPermission::Read))
        );
        assert_eq!(
            acl_need("PutObjectAcl"),
            Some(AclNeed::Object(AclPermission::WriteAcp))
        );
        assert_eq!(acl_need("PutBucketVersioning"), None);
        assert_eq!(acl_need("GetObjectTagging"), None);
    }
}
