//! PutObject, and committing a new object version (shared with copy and
//! multipart completion).

use base64::Engine;
use chunkstore::{ChunkOwner, Record, Table};
use futures::StreamExt;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::acl::writer;
use super::conditional::WriteCondition;
use super::tagging::parse_tagging_header;
use super::versions::delta_record;
use super::{Inner, check_key};
use crate::acl::is_public_read;
use crate::checksum::{self, DEFAULT_ALGORITHM, Requested, requested_checksum, set_checksums};
use crate::limits::MAX_PUT_SIZE;
use crate::store::data::Written;
use crate::store::hlc::{ts_millis, wall_ms};
use crate::store::lease::WriteLease;
use crate::store::model::{self, BucketRecord, ChunkRef, ObjectData, ObjectRecord, ObjectVersion};

/// A version about to be committed.
pub(crate) struct NewVersion {
    pub version_id: String,
    pub data: ObjectData,
    pub condition: Option<WriteCondition>,
    /// The chunks were written for this version alone (not parts of an
    /// upload that outlives a failed completion), so a commit that fails
    /// before anything refers to them deletes them.
    pub owns_chunks: bool,
}

/// Content headers stored with an object, by their HTTP names.
pub(crate) struct ContentHeaders {
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
    pub user_meta: Vec<(String, String)>,
}

impl ContentHeaders {
    pub fn new(
        content_type: Option<String>,
        cache_control: Option<String>,
        content_disposition: Option<String>,
        content_encoding: Option<String>,
        content_language: Option<String>,
        expires: Option<Timestamp>,
        metadata: Option<Metadata>,
    ) -> ContentHeaders {
        let mut headers = Vec::new();
        let named = [
            ("cache-control", cache_control),
            ("content-disposition", content_disposition),
            (
                "content-encoding",
                content_encoding.and_then(without_aws_chunked),
            ),
            ("content-language", content_language),
            ("expires", expires.and_then(|t| format_http_date(&t))),
        ];
        for (name, value) in named {
            if let Some(v) = value {
                headers.push((name.to_string(), v));
            }
        }
        let mut user_meta: Vec<(String, String)> = metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        user_meta.sort();
        ContentHeaders {
            content_type,
            headers,
            user_meta,
        }
    }
}

/// `aws-chunked` describes the upload's framing, not the object: S3 does
/// not store it (and nothing when it was the only coding).
fn without_aws_chunked(encoding: String) -> Option<String> {
    let kept: Vec<&str> = encoding
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}

pub(crate) fn format_http_date(t: &Timestamp) -> Option<String> {
    let mut buf = Vec::new();
    t.format(TimestampFormat::HttpDate, &mut buf).ok()?;
    String::from_utf8(buf).ok()
}

pub(crate) fn parse_http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, s).ok()
}

/// The decoded Content-MD5 header, checked once the body is stored.
pub(crate) fn parse_content_md5(header: Option<&str>) -> S3Result<Option<[u8; 16]>> {
    let Some(b64) = header else { return Ok(None) };
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .and_then(|d| <[u8; 16]>::try_from(d).ok())
        .map(Some)
        .ok_or_else(|| s3_error!(InvalidDigest, "Content-MD5 is not a base64 MD5"))
}

pub(crate) fn chunk_owner(bucket: &BucketRecord, key: &str, version: &str) -> ChunkOwner {
    ChunkOwner {
        bucket_id: hex::encode(bucket.id),
        key: key.to_string(),
        version: version.to_string(),
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body as the data path reads it (an absent body is empty).
pub(crate) fn body_stream(
    body: Option<StreamingBlob>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, BoxError>> + Unpin {
    match body {
        Some(b) => b.map(|r| r.map_err(|e| -> BoxError { e })).left_stream(),
        None => futures::stream::empty().right_stream(),
    }
}

impl Inner {
    pub(crate) async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let bucket = self.bucket(&input.bucket).await?;
        if let Some(len) = input.content_length
            && (len < 0 || len as u64 > MAX_PUT_SIZE)
        {
            return Err(s3_error!(
                EntityTooLarge,
                "a single PUT takes at most {MAX_PUT_SIZE} bytes; use a multipart upload"
            ));
        }
        let expected_md5 = parse_content_md5(input.content_md5.as_deref())?;
        let requested = requested_checksum!(req, input)?;
        // S3 gives an object sent without a checksum a CRC64NVME one.
        let algorithm = requested
            .as_ref()
            .map_or(DEFAULT_ALGORITHM, |r| r.algorithm);
        let content = ContentHeaders::new(
            input.content_type,
            input.cache_control,
            input.content_disposition,
            input.content_encoding,
            input.content_language,
            input.expires,
            input.metadata,
        );
        let tags = parse_tagging_header(input.tagging.as_deref())?;
        let owner = writer(req.credentials.as_ref(), &bucket);
        let acl = self
            .new_object_acl(
                input.acl.as_ref().map(|a| a.as_str()),
                &req.headers,
                &owner,
                &bucket,
            )
            .await?;

        let condition =
            WriteCondition::from_request(input.if_match.as_ref(), input.if_none_match.as_ref())?;
        self.precheck(&bucket, &input.key, condition.as_ref())
            .await?;
        let version_id = bucket.versioning.new_version_id(self.tables.now());
        let chunks_owner = chunk_owner(&bucket, &input.key, &version_id);
        let written = self
            .data
            .write(
                body_stream(input.body),
                chunks_owner,
                MAX_PUT_SIZE,
                &[algorithm],
            )
            .await?;
        self.check_written(
            &written,
            input.content_length,
            expected_md5,
            requested.as_ref(),
        )?;
        let stored_checksums = checksum::to_dto(&written.checksums);
        let lease = written.lease;

        let etag = hex::encode(written.md5);
        let data = ObjectData {
            size: written.size,
            etag: etag.clone(),
            content_type: content.content_type,
            headers: content.headers,
            user_meta: content.user_meta,
            checksums: written.checksums,
            part_sizes: Vec::new(),
            part_checksums: Vec::new(),
            chunks: written.chunks,
            tags,
            public_read: is_public_read(&acl),
            owner: Some(owner),
            acl: Some(acl),
        };
        let new = NewVersion {
            version_id,
            data,
            condition,
            owns_chunks: true,
        };
        self.still_leased(&lease, &new.data.chunks)?;
        let version = self.commit_version(&bucket, &input.key, new).await?;
        drop(lease);
        let mut output = PutObjectOutput {
            e_tag: Some(ETag::Strong(etag)),
            version_id: bucket.versioning.label_of_write(&version.version_id),
            ..Default::default()
        };
        set_checksums!(output, stored_checksums, typed);
        Ok(S3Response::new(output))
    }

    /// Ok if a write may still commit the record listing `chunks` (see
    /// `store::lease`); otherwise its chunks are freed.
    pub(crate) fn still_leased(&self, lease: &WriteLease, chunks: &[ChunkRef]) -> S3Result<()> {
        lease
            .holds()
            .inspect_err(|_| self.data.delete_chunks(chunks.to_vec()))
    }

    /// Checks a stored body against what the request announced (length,
    /// Content-MD5, x-amz-checksum-*); on a mismatch its chunks are deleted
    /// and nothing refers to them.
    pub(crate) fn check_written(
        &self,
        written: &Written,
        content_length: Option<i64>,
        content_md5: Option<[u8; 16]>,
        checksum: Option<&Requested>,
    ) -> S3Result<()> {
        let error = if content_length.is_some_and(|len| len as u64 != written.size) {
            Some(s3_error!(
                IncompleteBody,
                "body had {} bytes, Content-Length said {content_length:?}",
                written.size
            ))
        } else if content_md5.is_some_and(|md5| md5 != written.md5) {
            Some(s3_error!(BadDigest, "Content-MD5 does not match the body"))
        } else {
            checksum.and_then(|c| c.verify(&written.checksums).err())
        };
        match error {
            Some(e) => {
                self.data.delete_chunks(written.chunks.clone());
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Makes `new` the current version of `key` (with a condition, only if
    /// it holds, atomically). A version it replaces (same id: `null`
    /// without versioning) has its chunks deleted once the record is durable.
    pub(crate) async fn commit_version(
        &self,
        bucket: &BucketRecord,
        key: &str,
        new: NewVersion,
    ) -> S3Result<ObjectVersion> {
        // Nothing refers to these chunks if the commit fails before writing.
        let own = if new.owns_chunks {
            new.data.chunks.clone()
        } else {
            Vec::new()
        };
        let unreferenced = |e: S3Error| {
            self.data.delete_chunks(own.clone());
            e
        };
        let (seen, previous) = self
            .object_record(bucket, key)
            .await
            .map_err(unreferenced)?;
        let ts = self.tables.now();
        let version = ObjectVersion {
            version_id: new.version_id,
            ts,
            last_modified_ms: ts_millis(ts).max(wall_ms()),
            data: Some(new.data),
            updated_ts: 0,
        };
        // If a quorum does not take the record it may still have reached one
        // replica, so the new chunks stay for the garbage collector rather
        // than being deleted under a record that could win later.
        self.write_version(bucket, key, &version, new.condition.as_ref(), seen)
            .await
            .map_err(|e| match e.code() {
                S3ErrorCode::ServiceUnavailable => e,
                _ if new.condition.is_some() => unreferenced(e),
                _ => e,
            })?;
        // A bucket deleted meanwhile holds a record nobody reaches.
        self.confirm_bucket(bucket)
            .await
            .map_err(|e| match e.code() {
                S3ErrorCode::NoSuchBucket => unreferenced(e),
                _ => e,
            })?;
        self.free_replaced(&previous, &version);
        Ok(version)
    }

    /// Writes `version` into `key`'s record, with a condition through the
    /// partition's primary; `seen` is the record as read before.
    pub(crate) async fn write_version(
        &self,
        bucket: &BucketRecord,
        key: &str,
        version: &ObjectVersion,
        condition: Option<&WriteCondition>,
        seen: Option<Record>,
    ) -> S3Result<()> {
        let partition = model::bucket_partition(&bucket.id);
        let write = delta_record(
            model::object_key(&bucket.id, key),
            version.ts,
            vec![version.clone()],
            Vec::new(),
        );
        match condition {
            None => {
                self.tables
                    .put_records(Table::Objects, partition, vec![write])
                    .await
            }
            Some(condition) => self.write_if(partition, condition, seen, write).await,
        }
    }

    /// Frees the chunks of the version `version` replaced in `previous`
    /// (the same id, older), except chunks `version` itself names: a commit
    /// repeated after it landed finds itself, not a version it replaced.
    pub(crate) fn free_replaced(&self, previous: &ObjectRecord, version: &ObjectVersion) {
        let Some(replaced) = previous
            .version(&version.version_id)
            .filter(|r| r.ts < version.ts)
        else {
            return;
        };
        let kept: std::collections::HashSet<_> = version
            .data
            .iter()
            .flat_map(|d| d.chunks.iter().map(|c| c.id))
            .collect();
        let freed = replaced
            .data
            .iter()
            .flat_map(|d| d.chunks.iter())
            .filter(|c| !kept.contains(&c.id))
            .cloned()
            .collect();
        self.data.delete_chunks(freed);
    }

    pub(crate) fn delete_versions_data(&self, versions: Vec<ObjectVersion>) {
        let chunks = versions
            .into_iter()
            .filter_map(|v| v.data)
            .flat_map(|d| d.chunks)
            .collect();
        self.data.delete_chunks(chunks);
    }
}

#[cfg(test)]
mod tests {
    use super::without_aws_chunked;

    #[test]
    fn aws_chunked_is_not_stored_as_a_content_encoding() {
        assert_eq!(
            without_aws_chunked("gzip, aws-chunked".into()),
            Some("gzip".into())
        );
        assert_eq!(without_aws_chunked("aws-chunked".into()), None);
        assert_eq!(
            without_aws_chunked("br,gzip".into()),
            Some("br, gzip".into())
        );
    }
}
