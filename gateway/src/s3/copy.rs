//! CopyObject and UploadPartCopy: the data is read from the source chunks
//! and written as new chunks, so source and copy can be deleted
//! independently.

use std::ops::Range as ByteRange;

use chunkstore::ChunkOwner;
use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::acl::writer;
use super::bucket::timestamp;
use super::get::{Conditions, check_conditions};
use super::multipart::part_record;
use super::put::{ContentHeaders, NewVersion, chunk_owner};
use super::tagging::copy_tags;
use super::versions::pick_version;
use super::{Inner, check_key};
use crate::checksum::{self, Algorithm, DEFAULT_ALGORITHM, set_checksums};
use crate::limits::MAX_PUT_SIZE;
use crate::store::data::Written;
use crate::store::model::{BucketRecord, ObjectData, ObjectVersion};

/// The x-amz-copy-source-if-* of a CopyObject or UploadPartCopy input.
macro_rules! source_conditions {
    ($input:expr) => {
        Conditions {
            if_match: $input.copy_source_if_match.as_ref(),
            if_none_match: $input.copy_source_if_none_match.as_ref(),
            if_modified_since: $input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: $input.copy_source_if_unmodified_since.as_ref(),
        }
    };
}

/// A copy's source version, resolved from x-amz-copy-source.
struct Source {
    bucket: BucketRecord,
    key: String,
    /// The versionId named in x-amz-copy-source, if any.
    asked_version: Option<String>,
    version: ObjectVersion,
    data: ObjectData,
}

/// x-amz-copy-source-range: exactly `bytes=first-last` inside the source
/// (S3 takes no open or suffix ranges here, and refuses rather than clamps).
fn copy_range(header: &str, size: u64) -> S3Result<ByteRange<u64>> {
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let parsed = header
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .and_then(|(first, last)| Some((number(first)?, number(last)?)));
    let Some((first, last)) = parsed else {
        return Err(s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
        ));
    };
    if first > last || last >= size {
        return Err(s3_error!(
            InvalidArgument,
            "Range specified is not valid for source object of size: {size}"
        ));
    }
    Ok(first..last + 1)
}

impl Inner {
    /// The version x-amz-copy-source names, once its x-amz-copy-source-if-*
    /// conditions hold (evaluated as GET's, but every failure is a 412).
    async fn copy_source(
        &self,
        source: &CopySource,
        conditions: Conditions<'_>,
    ) -> S3Result<Source> {
        let CopySource::Bucket {
            bucket,
            key,
            version_id,
        } = source
        else {
            return Err(s3_error!(
                NotImplemented,
                "only bucket/key copy sources are supported"
            ));
        };
        let bucket = self.bucket(bucket).await?;
        let (_, record) = self.object_record(&bucket, key).await?;
        let version = pick_version(&record, key, version_id.as_deref()).map_err(|e| {
            match e.code() {
                S3ErrorCode::MethodNotAllowed => s3_error!(
                    InvalidRequest,
                    "The source of a copy request may not specifically refer to a delete marker by version id."
                ),
                _ => e,
            }
        })?;
        let data = version.data.clone().unwrap_or_default();
        check_conditions(&conditions, &data.etag, version.last_modified_ms).map_err(|e| match e
            .code()
        {
            S3ErrorCode::NotModified => s3_error!(
                PreconditionFailed,
                "x-amz-copy-source-if-none-match or x-amz-copy-source-if-modified-since"
            ),
            _ => e,
        })?;
        Ok(Source {
            bucket,
            key: key.to_string(),
            asked_version: version_id.as_deref().map(str::to_string),
            version,
            data,
        })
    }

    /// Writes bytes `range` of `source` as new chunks, hashed with `algorithms`.
    async fn copy_data(
        &self,
        source: &ObjectData,
        range: ByteRange<u64>,
        owner: ChunkOwner,
        algorithms: &[Algorithm],
    ) -> S3Result<Written> {
        self.data.check_writable()?;
        let len = range.end - range.start;
        let body = self.data.read(source.chunks.clone(), range);
        let body = futures::StreamExt::map(body, |r| {
            r.map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
        });
        let written = self
            .data
            .write(Box::pin(body), owner, MAX_PUT_SIZE.max(len), algorithms)
            .await?;
        if written.size != len {
            self.data.delete_chunks(written.chunks);
            return Err(s3_error!(
                InternalError,
                "source object could not be read completely"
            ));
        }
        Ok(written)
    }

    pub(crate) async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let dst_bucket = self.bucket(&input.bucket).await?;
        let source = self
            .copy_source(&input.copy_source, source_conditions!(input))
            .await?;
        let src = &source.data;

        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        // Copying a named version onto its own key is how S3 restores an old version.
        if !replace
            && source.asked_version.is_none()
            && source.bucket.name == input.bucket
            && source.key == input.key
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
        let owner = writer(req.credentials.as_ref(), &dst_bucket);
        // As in S3, a copy gets the ACL of its request, not its source's.
        let acl = self
            .new_object_acl(
                input.acl.as_ref().map(|a| a.as_str()),
                &req.headers,
                &owner,
                &dst_bucket,
            )
            .await?;
        let version_id = dst_bucket.versioning.new_version_id(self.tables.now());
        let chunks_owner = chunk_owner(&dst_bucket, &input.key, &version_id);
        let written = self
            .copy_data(src, 0..src.size, chunks_owner, &[algorithm])
            .await?;
        let lease = written.lease;
        let etag = hex::encode(written.md5);
        let data = ObjectData {
            size: written.size,
            etag: etag.clone(),
            content_type,
            headers,
            user_meta,
            checksums: written.checksums,
            part_sizes: Vec::new(),
            part_checksums: Vec::new(),
            chunks: written.chunks,
            tags,
            public_read: crate::acl::is_public_read(&acl),
            owner: Some(owner),
            acl: Some(acl),
        };
        let copied_checksums = checksum::to_dto(&data.checksums);
        let new = NewVersion {
            version_id,
            data,
            condition: None,
            owns_chunks: true,
        };
        self.still_leased(&lease, &new.data.chunks)?;
        let version = self.commit_version(&dst_bucket, &input.key, new).await?;
        drop(lease);
        let mut result = CopyObjectResult {
            e_tag: Some(ETag::Strong(etag)),
            last_modified: Some(timestamp(version.last_modified_ms)),
            ..Default::default()
        };
        set_checksums!(result, copied_checksums, typed);
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(result),
            version_id: dst_bucket.versioning.label_of_write(&version.version_id),
            copy_source_version_id: source.bucket.versioning.label(&source.version.version_id),
            ..Default::default()
        }))
    }

    pub(crate) async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket).await?;
        let upload = self
            .upload_for_part(&bucket, &input.key, &input.upload_id, input.part_number)
            .await?;
        let source = self
            .copy_source(&input.copy_source, source_conditions!(input))
            .await?;
        let range = match input.copy_source_range.as_deref() {
            Some(header) => copy_range(header, source.data.size)?,
            None => 0..source.data.size,
        };
        if range.end - range.start > MAX_PUT_SIZE {
            return Err(s3_error!(
                InvalidRequest,
                "The specified copy source is larger than the maximum allowable size for a copy source: {MAX_PUT_SIZE}"
            ));
        }
        // Hashed like an UploadPart without a checksum of its own.
        let algorithms = checksum::part_algorithms(upload.checksum, None)?;
        let owner = chunk_owner(&bucket, &input.key, &input.upload_id);
        let written = self
            .copy_data(&source.data, range, owner, &algorithms)
            .await?;
        let lease = written.lease.clone();
        let part = part_record(input.part_number, written);
        self.still_leased(&lease, &part.chunks)?;
        let part = self
            .store_part(&bucket, &input.key, &input.upload_id, part)
            .await?;
        drop(lease);
        let mut result = CopyPartResult {
            e_tag: Some(ETag::Strong(part.etag)),
            last_modified: Some(timestamp(part.last_modified_ms)),
            ..Default::default()
        };
        // As S3, the part's checksum only when the upload has an algorithm.
        if upload.checksum.is_some() {
            set_checksums!(result, checksum::to_dto(&part.checksums));
        }
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(result),
            copy_source_version_id: source.bucket.versioning.label(&source.version.version_id),
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges_must_be_first_last_inside_the_source() {
        assert_eq!(copy_range("bytes=0-9", 10).unwrap(), 0..10);
        assert_eq!(copy_range("bytes=3-3", 10).unwrap(), 3..4);
        for bad in [
            "0-9",
            "bytes=0-",
            "bytes=-5",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=0-1,2-3",
        ] {
            let e = copy_range(bad, 10).unwrap_err();
            assert_eq!(*e.code(), S3ErrorCode::InvalidArgument, "{bad}");
        }
        for outside in ["bytes=0-10", "bytes=5-4", "bytes=0-0"] {
            let size = if outside == "bytes=0-0" { 0 } else { 10 };
            let e = copy_range(outside, size).unwrap_err();
            assert_eq!(*e.code(), S3ErrorCode::InvalidArgument, "{outside}");
            assert!(e.message().unwrap().contains("not valid for source object"));
        }
    }
}
