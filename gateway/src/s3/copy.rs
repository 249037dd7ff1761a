//! CopyObject: the data is read from the source chunks and written as new
//! chunks, so source and copy can be deleted independently.

use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::access::is_public_read;
use super::bucket::timestamp;
use super::put::{ContentHeaders, NewVersion, chunk_owner};
use super::tagging::copy_tags;
use super::versions::pick_version;
use super::{Inner, check_key};
use crate::checksum::{self, Algorithm, DEFAULT_ALGORITHM, set_checksums};
use crate::limits::MAX_PUT_SIZE;
use crate::model::ObjectData;

impl Inner {
    pub(crate) async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let (src_bucket_name, src_key, src_version) = match &input.copy_source {
            CopySource::Bucket {
                bucket,
                key,
                version_id,
            } => (
                bucket.to_string(),
                key.to_string(),
                version_id.as_deref().map(str::to_string),
            ),
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
        let (_, src_record) = self.object_record(&src_bucket, &src_key).await?;
        let source = pick_version(&src_record, &src_key, src_version.as_deref()).map_err(|e| {
            match e.code() {
                S3ErrorCode::MethodNotAllowed => s3_error!(
                    InvalidRequest,
                    "The source of a copy request may not specifically refer to a delete marker by version id."
                ),
                _ => e,
            }
        })?;
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
        // Copying a named version onto its own key is how S3 restores an old version.
        if !replace
            && src_version.is_none()
            && src_bucket_name == input.bucket
            && src_key == input.key
        {
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
        let tags = copy_tags(
            input.tagging_directive.as_ref(),
            input.tagging.as_deref(),
            &src.tags,
        )?;

        // The copy is rehashed: with the algorithm asked for, else the
        // source's, else S3's default; always as a FULL_OBJECT value.
        let algorithm = match &input.checksum_algorithm {
            Some(a) => checksum::parse_algorithm(a)?,
            None => src
                .checksums
                .first()
                .and_then(|(name, _)| Algorithm::from_name(name))
                .unwrap_or(DEFAULT_ALGORITHM),
        };
        self.data.check_writable()?;
        let body = self.data.read(src.chunks.clone(), 0..src.size);
        let version_id = dst_bucket.versioning.new_version_id(self.tables.now());
        let owner = chunk_owner(&dst_bucket, &input.key, &version_id);
        let body = futures::StreamExt::map(body, |r| {
            r.map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
        });
        let written = self
            .data
            .write(
                Box::pin(body),
                owner,
                MAX_PUT_SIZE.max(src.size),
                &[algorithm],
            )
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
            checksums: written.checksums,
            part_sizes: Vec::new(),
            chunks: written.chunks,
            tags,
            // As in S3, a copy gets the ACL of its request, not its source's.
            public_read: is_public_read(input.acl.as_ref().map(|a| a.as_str())),
        };
        let copied_checksums = checksum::to_dto(&data.checksums);
        let new = NewVersion {
            version_id,
            data,
            condition: None,
            owns_chunks: true,
        };
        let version = self.commit_version(&dst_bucket, &input.key, new).await?;
        let mut result = CopyObjectResult {
            e_tag: Some(ETag::Strong(etag)),
            last_modified: Some(timestamp(version.last_modified_ms)),
            ..Default::default()
        };
        set_checksums!(result, copied_checksums, typed);
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(result),
            version_id: dst_bucket.versioning.label(&version.version_id),
            copy_source_version_id: src_bucket.versioning.label(&source.version_id),
            ..Default::default()
        }))
    }
}
