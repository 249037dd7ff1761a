//! DeleteObject and DeleteObjects.

use chunkstore::Table;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::{Inner, check_key};
use crate::model::{self, BucketRecord, ObjectRecord};

/// S3 takes at most this many keys in one DeleteObjects request.
const MAX_DELETE_KEYS: usize = 1000;

impl Inner {
    /// Removes a key (a no-op for a key that does not exist, as in S3).
    async fn delete_key(&self, bucket: &BucketRecord, key: &str) -> S3Result<()> {
        let partition = model::bucket_partition(&bucket.id);
        let record_key = model::object_key(&bucket.id, key);
        let Some(existing) = self
            .tables
            .get(Table::Objects, partition, &record_key)
            .await?
            .and_then(|r| r.value)
            .and_then(|v| model::decode::<ObjectRecord>(&v))
        else {
            return Ok(());
        };
        self.tables
            .put(Table::Objects, partition, record_key, None)
            .await?;
        self.delete_versions_data(existing.versions);
        Ok(())
    }

    pub(crate) async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let bucket = self.bucket(&input.bucket).await?;
        self.delete_key(&bucket, &input.key).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
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
                Ok(()) => self.delete_key(&bucket, &object.key).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    if !quiet {
                        deleted.push(DeletedObject {
                            key: Some(object.key),
                            version_id: object.version_id,
                            ..Default::default()
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
