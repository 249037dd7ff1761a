//! Canned ACLs: GetBucketAcl, PutBucketAcl (`x-amz-acl` only) and
//! GetObjectAcl. An ACL here is one flag, `public-read` or private; the
//! owner always has full control. Which headers are accepted is checked in
//! `access`, before the operation runs.

use chunkstore::Table;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::access::is_public_read;
use super::bucket::owner;
use super::{Inner, check_key};
use crate::model::{self, BucketRecord, ObjectData, ObjectRecord};

/// The URI S3 names "everyone" by in grants.
const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";

/// The grants of a resource: its owner has full control, and everyone may
/// read it when it is public.
fn grants(owner_key: &str, public_read: bool) -> Grants {
    let owner = owner(owner_key);
    let mut grants = vec![Grant {
        grantee: Some(Grantee {
            display_name: owner.display_name,
            id: owner.id,
            type_: Type::from_static(Type::CANONICAL_USER),
            email_address: None,
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    }];
    if public_read {
        grants.push(Grant {
            grantee: Some(Grantee {
                display_name: None,
                id: None,
                type_: Type::from_static(Type::GROUP),
                email_address: None,
                uri: Some(ALL_USERS.into()),
            }),
            permission: Some(Permission::from_static(Permission::READ)),
        });
    }
    grants
}

impl Inner {
    /// The data of an object's version (`version_id`, or the current one).
    async fn object_data(
        &self,
        bucket: &BucketRecord,
        key: &str,
        version_id: Option<&str>,
    ) -> S3Result<Option<ObjectData>> {
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
            Some(id) => record.versions.into_iter().find(|v| v.version_id == id),
            None => record.versions.into_iter().next_back(),
        };
        Ok(version.and_then(|v| v.data))
    }

    /// Whether the object's current version was written `public-read`.
    pub(crate) async fn object_is_public(
        &self,
        bucket: &BucketRecord,
        key: &str,
    ) -> S3Result<bool> {
        Ok(self
            .object_data(bucket, key, None)
            .await?
            .is_some_and(|d| d.public_read))
    }

    pub(crate) async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        let bucket = self.bucket(&req.input.bucket).await?;
        Ok(S3Response::new(GetBucketAclOutput {
            grants: Some(grants(&bucket.owner, bucket.public_read)),
            owner: Some(owner(&bucket.owner)),
        }))
    }

    pub(crate) async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        let input = req.input;
        if input.access_control_policy.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "ACL documents are not supported; use a canned ACL (x-amz-acl: private or public-read)"
            ));
        }
        let Some(acl) = input.acl else {
            return Err(s3_error!(
                MissingSecurityHeader,
                "x-amz-acl is required (private or public-read)"
            ));
        };
        let public = is_public_read(Some(acl.as_str()));
        self.update_bucket(&input.bucket, |b| b.public_read = public)
            .await?;
        Ok(S3Response::new(PutBucketAclOutput {}))
    }

    pub(crate) async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let bucket = self.bucket(&input.bucket).await?;
        let data = self
            .object_data(&bucket, &input.key, input.version_id.as_deref())
            .await?
            .ok_or_else(|| match &input.version_id {
                Some(id) => s3_error!(NoSuchVersion, "no such version: {id}"),
                None => s3_error!(NoSuchKey, "no such key: {}", input.key),
            })?;
        // Objects do not record who wrote them; the bucket owner owns them.
        Ok(S3Response::new(GetObjectAclOutput {
            grants: Some(grants(&bucket.owner, data.public_read)),
            owner: Some(owner(&bucket.owner)),
            ..Default::default()
        }))
    }
}
