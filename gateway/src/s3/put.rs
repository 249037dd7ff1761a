//! PutObject, and committing a new object version (shared with copy and
//! multipart completion).

use base64::Engine;
use chunkstore::{ChunkOwner, Table};
use futures::StreamExt;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::{Inner, check_key};
use crate::data::Written;
use crate::hlc::{ts_millis, wall_ms};
use crate::limits::MAX_PUT_SIZE;
use crate::model::{self, BucketRecord, ObjectData, ObjectRecord, ObjectVersion};

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
            ("content-encoding", content_encoding),
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
        let content = ContentHeaders::new(
            input.content_type,
            input.cache_control,
            input.content_disposition,
            input.content_encoding,
            input.content_language,
            input.expires,
            input.metadata,
        );

        let owner = chunk_owner(&bucket, &input.key, "null");
        let written = self
            .data
            .write(body_stream(input.body), owner, MAX_PUT_SIZE)
            .await?;
        self.check_written(&written, input.content_length, expected_md5)?;

        let etag = hex::encode(written.md5);
        let data = ObjectData {
            size: written.size,
            etag: etag.clone(),
            content_type: content.content_type,
            headers: content.headers,
            user_meta: content.user_meta,
            checksums: Vec::new(),
            part_sizes: Vec::new(),
            chunks: written.chunks,
        };
        self.commit_version(&bucket, &input.key, data).await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }

    /// Checks a stored body against what the request announced; on a
    /// mismatch its chunks are deleted and nothing refers to them.
    pub(crate) fn check_written(
        &self,
        written: &Written,
        content_length: Option<i64>,
        content_md5: Option<[u8; 16]>,
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
            None
        };
        match error {
            Some(e) => {
                self.data.delete_chunks(written.chunks.clone());
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Makes `data` the current (and, without versioning, only) version of
    /// `key`; the replaced version's chunks are deleted once the new record
    /// is durable. On failure the new chunks are deleted.
    pub(crate) async fn commit_version(
        &self,
        bucket: &BucketRecord,
        key: &str,
        data: ObjectData,
    ) -> S3Result<ObjectVersion> {
        let partition = model::bucket_partition(&bucket.id);
        let record_key = model::object_key(&bucket.id, key);
        let previous = match self
            .tables
            .get(Table::Objects, partition, &record_key)
            .await
        {
            Ok(p) => p
                .and_then(|r| r.value)
                .and_then(|v| model::decode::<ObjectRecord>(&v)),
            Err(e) => {
                self.data.delete_chunks(data.chunks);
                return Err(e);
            }
        };
        let ts = self.tables.now();
        let version = ObjectVersion {
            version_id: "null".into(),
            ts,
            last_modified_ms: ts_millis(ts).max(wall_ms()),
            data: Some(data),
        };
        let record = ObjectRecord {
            versions: vec![version.clone()],
        };
        // If a quorum does not take the record it may still have reached one
        // replica, so the new chunks stay for the garbage collector rather
        // than being deleted under a record that could win later.
        self.tables
            .put_records(
                Table::Objects,
                partition,
                vec![chunkstore::Record {
                    key: record_key,
                    ts,
                    value: Some(model::encode(&record)),
                }],
            )
            .await?;
        if let Some(previous) = previous {
            self.delete_versions_data(previous.versions);
        }
        Ok(version)
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
