//! CopyObject: the data is read from the source chunks and written as new
//! chunks, so source and copy can be deleted independently.

use chunkstore::Table;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::bucket::timestamp;
use super::put::{ContentHeaders, chunk_owner};
use super::{Inner, check_key};
use crate::limits::MAX_PUT_SIZE;
use crate::model::{self, ObjectData, ObjectRecord};

impl Inner {
    pub(crate) async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let (src_bucket_name, src_key) = match &input.copy_source {
            CopySource::Bucket { bucket, key, .. } => (bucket.to_string(), key.to_string()),
            _ => {
                return Err(s3_error!(
                    NotImplemented,
                    "only bucket/key copy sources are supported"
                ));
            }
        };
        let src_bucket = self.bucket(&src_bucket_name).await?;
        let dst_bucket = if src_bucket_name == input.bucket {
            src_bucket.clone()
        } else {
            self.bucket(&input.bucket).await?
        };
        let source = self
            .tables
            .get(
                Table::Objects,
                model::bucket_partition(&src_bucket.id),
                &model::object_key(&src_bucket.id, &src_key),
            )
            .await?
            .and_then(|r| r.value)
            .and_then(|v| model::decode::<ObjectRecord>(&v))
            .and_then(|r| r.current_data().cloned())
            .ok_or_else(|| s3_error!(NoSuchKey, "no such source key: {src_key}"))?;
        let src = source.data.clone().unwrap_or_default();

        // x-amz-copy-source-if-* preconditions.
        let src_modified = (source.last_modified_ms / 1000) as i64;
        let secs = |t: &Timestamp| time::OffsetDateTime::from(t.clone()).unix_timestamp();
        let etag_is = |c: &ETagCondition| match c {
            ETagCondition::Any => true,
            ETagCondition::ETag(e) => e.value() == src.etag,
        };
        if let Some(c) = &input.copy_source_if_match {
            if !etag_is(c) {
                return Err(s3_error!(PreconditionFailed, "x-amz-copy-source-if-match"));
            }
        } else if let Some(t) = &input.copy_source_if_unmodified_since
            && src_modified > secs(t)
        {
            return Err(s3_error!(
                PreconditionFailed,
                "x-amz-copy-source-if-unmodified-since"
            ));
        }
        if let Some(c) = &input.copy_source_if_none_match {
            if etag_is(c) {
                return Err(s3_error!(
                    PreconditionFailed,
                    "x-amz-copy-source-if-none-match"
                ));
            }
        } else if let Some(t) = &input.copy_source_if_modified_since
            && src_modified <= secs(t)
        {
            return Err(s3_error!(
                PreconditionFailed,
                "x-amz-copy-source-if-modified-since"
            ));
        }

        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if !replace && src_bucket_name == input.bucket && src_key == input.key {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        let (content_type, headers, user_meta) = if replace {
            let c = ContentHeaders::new(
                input.content_type,
                input.cache_control,
                input.content_disposition,
                input.content_encoding,
                input.content_language,
                input.expires,
                input.metadata,
            );
            (c.content_type, c.headers, c.user_meta)
        } else {
            (
                src.content_type.clone(),
                src.headers.clone(),
                src.user_meta.clone(),
            )
        };

        self.data.check_writable()?;
        let body = self.data.read(src.chunks.clone(), 0..src.size);
        let owner = chunk_owner(&dst_bucket, &input.key, "null");
        let body = futures::StreamExt::map(body, |r| {
            r.map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
        });
        let written = self
            .data
            .write(Box::pin(body), owner, MAX_PUT_SIZE.max(src.size))
            .await?;
        if written.size != src.size {
            self.data.delete_chunks(written.chunks);
            return Err(s3_error!(
                InternalError,
                "source object could not be read completely"
            ));
        }
        let etag = hex::encode(written.md5);
        let data = ObjectData {
            size: written.size,
            etag: etag.clone(),
            content_type,
            headers,
            user_meta,
            checksums: Vec::new(),
            part_sizes: Vec::new(),
            chunks: written.chunks,
        };
        let version = self.commit_version(&dst_bucket, &input.key, data).await?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(etag)),
                last_modified: Some(timestamp(version.last_modified_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}
