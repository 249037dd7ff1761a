//! ACLs: Get/PutBucketAcl, Get/PutObjectAcl, and the ACL a new bucket,
//! object or upload gets from its request (`x-amz-acl`, `x-amz-grant-*`).
//! Grants name keys by canonical id (see `crate::acl::canonical_id`); a
//! grantee that is not a known key is refused. What grants allow is applied
//! in `access`.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::{Inner, check_key};
use crate::acl::{
    AclGrant, AclGrantee, AclPermission, Canned, NamedGrantee, Requested, Resource, access_key_of,
    canonical_id, for_display, is_public_read, requested,
};
use crate::store::model::{BucketRecord, ObjectData, ObjectVersion};

impl Inner {
    /// The display name S3 shows for a key: its name (as given to `admin
    /// key create`), the access key itself for root or a deleted key.
    pub(crate) async fn display_name(&self, access_key: &str) -> S3Result<String> {
        if access_key == self.root_access_key {
            return Ok(access_key.to_string());
        }
        Ok(self
            .keys
            .get(access_key)
            .await?
            .map_or_else(|| access_key.to_string(), |k| k.name.clone()))
    }

    /// The Owner element S3 shows for a key (ListBuckets, ACLs).
    pub(crate) async fn owner_of(&self, access_key: &str) -> S3Result<Owner> {
        Ok(Owner {
            display_name: Some(self.display_name(access_key).await?),
            id: Some(canonical_id(access_key)),
        })
    }

    /// A grantee as a request names it, checked: an id must be the
    /// canonical id of the root key or a stored key, a URI one of S3's
    /// groups; nobody here has an email address.
    async fn resolve_grantee(&self, named: &NamedGrantee) -> S3Result<AclGrantee> {
        match named {
            NamedGrantee::Id(id) => {
                let key = access_key_of(id)
                    .ok_or_else(|| s3_error!(InvalidArgument, "Invalid id: {id}"))?;
                let known = key == self.root_access_key || self.keys.get(&key).await?.is_some();
                if known {
                    Ok(AclGrantee::Key(key))
                } else {
                    Err(s3_error!(InvalidArgument, "Invalid id: {id}"))
                }
            }
            NamedGrantee::Uri(uri) => AclGrantee::from_uri(uri)
                .ok_or_else(|| s3_error!(InvalidArgument, "Invalid group uri: {uri}")),
            NamedGrantee::Email(email) => Err(s3_error!(
                UnresolvableGrantByEmailAddress,
                "The e-mail address you provided does not match any account on record: {email}; \
                 grant to the canonical id (id=\"...\") instead"
            )),
        }
    }

    async fn resolve_grants(
        &self,
        named: Vec<(NamedGrantee, AclPermission)>,
    ) -> S3Result<Vec<AclGrant>> {
        let mut grants = Vec::with_capacity(named.len());
        for (grantee, permission) in named {
            grants.push(AclGrant {
                grantee: self.resolve_grantee(&grantee).await?,
                permission,
            });
        }
        Ok(grants)
    }

    /// The ACL a request's `x-amz-acl` (`canned`) and `x-amz-grant-*`
    /// headers ask for, on a resource owned by `owner` in a bucket owned by
    /// `bucket_owner`; None when the request names none.
    pub(crate) async fn requested_acl(
        &self,
        canned: Option<&str>,
        headers: &http::HeaderMap,
        resource: Resource,
        owner: &str,
        bucket_owner: &str,
    ) -> S3Result<Option<Vec<AclGrant>>> {
        Ok(match requested(canned, headers, resource)? {
            None => None,
            Some(Requested::Canned(c)) => Some(c.grants(owner, bucket_owner)),
            Some(Requested::Grants(named)) => Some(self.resolve_grants(named).await?),
        })
    }

    /// The ACL of a new object or upload written by `writer` (private when
    /// the request names none).
    pub(crate) async fn new_object_acl(
        &self,
        canned: Option<&str>,
        headers: &http::HeaderMap,
        writer: &str,
        bucket: &BucketRecord,
    ) -> S3Result<Vec<AclGrant>> {
        Ok(self
            .requested_acl(canned, headers, Resource::Object, writer, &bucket.owner)
            .await?
            .unwrap_or_else(|| Canned::Private.grants(writer, &bucket.owner)))
    }

    /// The grants of an AccessControlPolicy document for a resource owned
    /// by `owner`; the document's Owner, when given, must be that owner.
    async fn policy_grants(
        &self,
        policy: AccessControlPolicy,
        owner: &str,
    ) -> S3Result<Vec<AclGrant>> {
        if let Some(id) = policy.owner.and_then(|o| o.id)
            && id != canonical_id(owner)
        {
            return Err(s3_error!(
                AccessDenied,
                "the ACL's Owner must be the owner of the resource"
            ));
        }
        let mut named = Vec::new();
        for grant in policy.grants.unwrap_or_default() {
            let malformed = || {
                s3_error!(
                    MalformedACLError,
                    "every Grant needs a Grantee (ID, URI or EmailAddress) and a Permission"
                )
            };
            let permission = grant
                .permission
                .as_ref()
                .and_then(|p| AclPermission::parse(p.as_str()))
                .ok_or_else(malformed)?;
            let grantee = grant.grantee.ok_or_else(malformed)?;
            let grantee = match (grantee.id, grantee.uri, grantee.email_address) {
                (Some(id), _, _) => NamedGrantee::Id(id),
                (None, Some(uri), _) => NamedGrantee::Uri(uri),
                (None, None, Some(email)) => NamedGrantee::Email(email),
                (None, None, None) => return Err(malformed()),
            };
            named.push((grantee, permission));
        }
        self.resolve_grants(named).await
    }

    /// The new ACL of a PutBucketAcl / PutObjectAcl: a document, or a
    /// canned ACL or grant headers, not both.
    async fn put_acl(
        &self,
        policy: Option<AccessControlPolicy>,
        canned: Option<&str>,
        headers: &http::HeaderMap,
        resource: Resource,
        owner: &str,
        bucket_owner: &str,
    ) -> S3Result<Vec<AclGrant>> {
        let from_headers = self
            .requested_acl(canned, headers, resource, owner, bucket_owner)
            .await?;
        match (policy, from_headers) {
            (Some(_), Some(_)) => Err(s3_error!(
                UnexpectedContent,
                "This request does not support content when x-amz-acl or x-amz-grant-* headers are given"
            )),
            (Some(policy), None) => self.policy_grants(policy, owner).await,
            (None, Some(grants)) => Ok(grants),
            (None, None) => Err(s3_error!(
                MissingSecurityHeader,
                "give an ACL: x-amz-acl, x-amz-grant-* headers or an AccessControlPolicy document"
            )),
        }
    }

    /// Grants as S3 shows them: the owner's FULL_CONTROL first; keys with
    /// their canonical id and display name, groups by URI.
    async fn shown_grants(&self, grants: &[AclGrant], owner: &str) -> S3Result<Grants> {
        let mut shown = Vec::with_capacity(grants.len());
        for grant in for_display(grants, owner) {
            let grantee = match &grant.grantee {
                AclGrantee::Key(key) => Grantee {
                    display_name: Some(self.display_name(key).await?),
                    id: Some(canonical_id(key)),
                    type_: Type::from_static(Type::CANONICAL_USER),
                    email_address: None,
                    uri: None,
                },
                group => Grantee {
                    display_name: None,
                    id: None,
                    type_: Type::from_static(Type::GROUP),
                    email_address: None,
                    uri: group.uri().map(str::to_string),
                },
            };
            shown.push(Grant {
                grantee: Some(grantee),
                permission: Some(Permission::from(grant.permission.as_str().to_string())),
            });
        }
        Ok(shown)
    }

    /// The data of an object's version (`version_id`, or the current one);
    /// None when it is missing or a delete marker.
    pub(crate) async fn version_data(
        &self,
        bucket: &BucketRecord,
        key: &str,
        version_id: Option<&str>,
    ) -> S3Result<Option<ObjectData>> {
        let (_, record) = self.object_record(bucket, key).await?;
        let version = match version_id {
            Some(id) => record.version(id),
            None => record.current(),
        };
        Ok(version.and_then(|v| v.data.clone()))
    }

    /// The version of an object an ACL request addresses (`version_id`, or
    /// the current one); delete markers have no ACL.
    async fn acl_version(
        &self,
        bucket: &BucketRecord,
        key: &str,
        version_id: Option<&str>,
    ) -> S3Result<ObjectVersion> {
        check_key(key)?;
        let (_, record) = self.object_record(bucket, key).await?;
        let no_such_key = || s3_error!(NoSuchKey, "no such key: {key}");
        let version = match version_id {
            Some(id) => record
                .version(id)
                .ok_or_else(|| s3_error!(NoSuchVersion, "no such version: {id}"))?,
            None => record.current().ok_or_else(no_such_key)?,
        };
        match (&version.data, version_id) {
            (Some(_), _) => Ok(version.clone()),
            (None, Some(_)) => Err(s3_error!(
                MethodNotAllowed,
                "the version is a delete marker"
            )),
            (None, None) => Err(no_such_key()),
        }
    }

    pub(crate) async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        let bucket = self.bucket(&req.input.bucket).await?;
        Ok(S3Response::new(GetBucketAclOutput {
            grants: Some(self.shown_grants(&bucket.grants(), &bucket.owner).await?),
            owner: Some(self.owner_of(&bucket.owner).await?),
        }))
    }

    pub(crate) async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket).await?;
        let grants = self
            .put_acl(
                input.access_control_policy,
                input.acl.as_ref().map(|a| a.as_str()),
                &req.headers,
                Resource::Bucket,
                &bucket.owner,
                &bucket.owner,
            )
            .await?;
        let public = is_public_read(&grants);
        self.update_bucket(&input.bucket, |b| {
            b.public_read = public;
            b.acl = Some(grants.clone());
        })
        .await?;
        Ok(S3Response::new(PutBucketAclOutput {}))
    }

    pub(crate) async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket).await?;
        let version = self
            .acl_version(&bucket, &input.key, input.version_id.as_deref())
            .await?;
        let data = version.data.unwrap_or_default();
        let owner = data.owner_or(&bucket.owner);
        Ok(S3Response::new(GetObjectAclOutput {
            grants: Some(
                self.shown_grants(&data.grants(&bucket.owner), owner)
                    .await?,
            ),
            owner: Some(self.owner_of(owner).await?),
            ..Default::default()
        }))
    }

    pub(crate) async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket).await?;
        let mut version = self
            .acl_version(&bucket, &input.key, input.version_id.as_deref())
            .await?;
        let Some(data) = version.data.as_mut() else {
            return Err(s3_error!(NoSuchKey, "no such key: {}", input.key));
        };
        let owner = data.owner_or(&bucket.owner).to_string();
        let grants = self
            .put_acl(
                input.access_control_policy,
                input.acl.as_ref().map(|a| a.as_str()),
                &req.headers,
                Resource::Object,
                &owner,
                &bucket.owner,
            )
            .await?;
        data.public_read = is_public_read(&grants);
        data.owner = Some(owner);
        data.acl = Some(grants);
        // As for tags: the newest `updated_ts` of a version wins on merge,
        // so sending this version alone changes its ACL and nothing else.
        let ts = self.tables.now();
        version.updated_ts = ts;
        self.change_record(&bucket, &input.key, ts, vec![version], Vec::new())
            .await?;
        Ok(S3Response::new(PutObjectAclOutput::default()))
    }
}

/// Who owns what a request writes: its signer, or for an anonymous write
/// (allowed by a WRITE grant) the bucket owner.
pub(crate) fn writer(
    credentials: Option<&s3s::auth::Credentials>,
    bucket: &BucketRecord,
) -> String {
    credentials.map_or_else(|| bucket.owner.clone(), |c| c.access_key.clone())
}
