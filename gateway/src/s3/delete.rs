//! DeleteObject and DeleteObjects.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::{Inner, check_key};
use crate::store::hlc::{ts_millis, wall_ms};
use crate::store::model::{BucketRecord, NULL_VERSION, ObjectVersion, Purged, Versioning};

/// S3 takes at most this many keys in one DeleteObjects request.
const MAX_DELETE_KEYS: usize = 1000;

/// What a delete did, as S3 reports it.
struct Deleted {
    version_id: Option<String>,
    delete_marker: bool,
}

impl Inner {
    /// DeleteObject's effect: a version by id is removed for good; without
    /// an id, a versioned bucket gets a delete marker and an unversioned one
    /// loses the key. Deleting what does not exist succeeds, as in S3.
    async fn delete_key(
        &self,
        bucket: &BucketRecord,
        key: &str,
        version_id: Option<&str>,
    ) -> S3Result<Deleted> {
        match (version_id, bucket.versioning) {
            (Some(id), _) => self.purge_version(bucket, key, id).await,
            (None, Versioning::Unversioned) => {
                self.purge_version(bucket, key, NULL_VERSION).await?;
                Ok(Deleted {
                    version_id: None,
                    delete_marker: false,
                })
            }
            (None, _) => self.add_delete_marker(bucket, key).await,
        }
    }

    /// Removes one version and frees its chunks.
    async fn purge_version(&self, bucket: &BucketRecord, key: &str, id: &str) -> S3Result<Deleted> {
        let (_, record) = self.object_record(bucket, key).await?;
        let Some(version) = record.version(id).cloned() else {
            return Ok(Deleted {
                version_id: Some(id.to_string()),
                delete_marker: false,
            });
        };
        // Later than the version's own ts: the read moved the clock past it.
        let ts = self.tables.now();
        let purge = Purged {
            version_id: id.to_string(),
            ts,
        };
        self.change_record(bucket, key, ts, Vec::new(), vec![purge])
            .await?;
        let delete_marker = version.data.is_none();
        self.delete_versions_data(vec![version]);
        Ok(Deleted {
            version_id: Some(id.to_string()),
            delete_marker,
        })
    }

    /// Makes a delete marker the current version (id `null` when versioning
    /// is suspended, which replaces the null version).
    async fn add_delete_marker(&self, bucket: &BucketRecord, key: &str) -> S3Result<Deleted> {
        // The read moves the clock past every version, so the marker is newest.
        let (_, record) = self.object_record(bucket, key).await?;
        let ts = self.tables.now();
        let marker = ObjectVersion {
            version_id: bucket.versioning.new_version_id(ts),
            ts,
            last_modified_ms: ts_millis(ts).max(wall_ms()),
            data: None,
            updated_ts: 0,
        };
        let version_id = marker.version_id.clone();
        self.change_record(bucket, key, ts, vec![marker], Vec::new())
            .await?;
        if let Some(replaced) = record.version(&version_id) {
            self.delete_versions_data(vec![replaced.clone()]);
        }
        Ok(Deleted {
            version_id: Some(version_id),
            delete_marker: true,
        })
    }

    pub(crate) async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let bucket = self.bucket(&input.bucket).await?;
        let deleted = self
            .delete_key(&bucket, &input.key, input.version_id.as_deref())
            .await?;
        Ok(S3Response::new(DeleteObjectOutput {
            delete_marker: deleted.delete_marker.then_some(true),
            version_id: deleted.version_id,
            ..Default::default()
        }))
    }

    pub(crate) async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket).await?;
        let objects = input.delete.objects;
        if objects.len() > MAX_DELETE_KEYS {
            return Err(s3_error!(
                MalformedXML,
                "at most {MAX_DELETE_KEYS} keys per DeleteObjects request"
            ));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for object in objects {
            let result = match check_key(&object.key) {
                Ok(()) => {
                    self.delete_key(&bucket, &object.key, object.version_id.as_deref())
                        .await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(done) => {
                    if !quiet {
                        let marker_id = done.version_id.filter(|_| done.delete_marker);
                        deleted.push(DeletedObject {
                            key: Some(object.key),
                            version_id: object.version_id,
                            delete_marker: done.delete_marker.then_some(true),
                            delete_marker_version_id: marker_id,
                        });
                    }
                }
                Err(e) => errors.push(Error {
                    code: Some(e.code().as_str().to_string()),
                    key: Some(object.key),
                    message: e.message().map(str::to_string),
                    version_id: object.version_id,
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }
}
