//! GetObject and HeadObject: conditions, ranges, part numbers, streaming.

use std::ops::Range as ByteRange;

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::Inner;
use super::bucket::timestamp;
use super::put::{format_http_date, parse_http_date};
use super::versions::pick_version;
use crate::checksum::{self, set_checksums};
use crate::store::model::{ObjectData, ObjectVersion};

/// What S3 answers for an object stored without a Content-Type.
const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// What a GET or HEAD resolved to before any byte is sent.
struct Resolved {
    version: ObjectVersion,
    /// `x-amz-version-id` of the answer.
    version_label: Option<String>,
    data: ObjectData,
    range: ByteRange<u64>,
    content_range: Option<String>,
    parts_count: Option<i32>,
}

/// If-* of a GET or HEAD, or x-amz-copy-source-if-* of a copy.
pub(super) struct Conditions<'a> {
    pub if_match: Option<&'a ETagCondition>,
    pub if_none_match: Option<&'a ETagCondition>,
    pub if_modified_since: Option<&'a Timestamp>,
    pub if_unmodified_since: Option<&'a Timestamp>,
}

fn etag_matches(condition: &ETagCondition, etag: &str) -> bool {
    match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == etag,
    }
}

fn seconds(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

/// RFC 7232 evaluation order, as S3 applies it: If-Match, then
/// If-Unmodified-Since (ignored when If-Match is present), then If-None-Match,
/// then If-Modified-Since (ignored when If-None-Match is present).
pub(super) fn check_conditions(
    c: &Conditions<'_>,
    etag: &str,
    last_modified_ms: u64,
) -> S3Result<()> {
    let modified = (last_modified_ms / 1000) as i64;
    if let Some(cond) = c.if_match {
        if !etag_matches(cond, etag) {
            return Err(s3_error!(PreconditionFailed, "If-Match did not match"));
        }
    } else if let Some(since) = c.if_unmodified_since
        && modified > seconds(since)
    {
        return Err(s3_error!(
            PreconditionFailed,
            "modified after If-Unmodified-Since"
        ));
    }
    let not_modified = match c.if_none_match {
        Some(cond) => etag_matches(cond, etag),
        None => c
            .if_modified_since
            .is_some_and(|since| modified <= seconds(since)),
    };
    if not_modified {
        // A 304 names the representation it stands for (RFC 9110 15.4.5).
        let mut err = s3_error!(NotModified);
        let mut headers = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(&format!("\"{etag}\"")) {
            headers.insert(http::header::ETAG, v);
        }
        if let Some(date) = format_http_date(&super::bucket::timestamp(last_modified_ms))
            && let Ok(v) = http::HeaderValue::from_str(&date)
        {
            headers.insert(http::header::LAST_MODIFIED, v);
        }
        err.set_headers(headers);
        return Err(err);
    }
    Ok(())
}

fn header(data: &ObjectData, name: &str) -> Option<String> {
    data.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

fn user_metadata(data: &ObjectData) -> Option<Metadata> {
    (!data.user_meta.is_empty()).then(|| data.user_meta.iter().cloned().collect())
}

/// The stored checksums when asked for (x-amz-checksum-mode: ENABLED) and
/// they describe the answer: as S3, none for a Range, nor for one part of a
/// multipart object.
fn answer_checksums(resolved: &Resolved, mode: Option<&ChecksumMode>, ranged: bool) -> Checksum {
    let enabled = mode.is_some_and(|m| m.as_str().eq_ignore_ascii_case(ChecksumMode::ENABLED));
    let one_part = resolved.parts_count.is_some() && !resolved.data.part_sizes.is_empty();
    if enabled && !ranged && !one_part {
        checksum::to_dto(&resolved.data.checksums)
    } else {
        Checksum::default()
    }
}

/// GetObjectInput and HeadObjectInput carry the same fields for what to
/// read, its conditions and the `response-*` overrides; one macro reads both.
macro_rules! resolve_input {
    ($gateway:ident, $input:ident) => {{
        let resolved = $gateway
            .resolve(
                &$input.bucket,
                &$input.key,
                $input.version_id.as_deref(),
                $input.range,
                $input.part_number,
                Conditions {
                    if_match: $input.if_match.as_ref(),
                    if_none_match: $input.if_none_match.as_ref(),
                    if_modified_since: $input.if_modified_since.as_ref(),
                    if_unmodified_since: $input.if_unmodified_since.as_ref(),
                },
            )
            .await?;
        let overrides = Overrides {
            content_type: $input.response_content_type,
            cache_control: $input.response_cache_control,
            content_disposition: $input.response_content_disposition,
            content_encoding: $input.response_content_encoding,
            content_language: $input.response_content_language,
            expires: $input.response_expires,
        };
        (resolved, overrides)
    }};
}

impl Inner {
    async fn resolve(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        range: Option<Range>,
        part_number: Option<i32>,
        conditions: Conditions<'_>,
    ) -> S3Result<Resolved> {
        let bucket = self.bucket_for_read(bucket).await?;
        let (_, record) = self.object_record(&bucket, key).await?;
        let version = pick_version(&record, key, version_id)?;
        let version_label = bucket.versioning.label(&version.version_id);
        let data = version.data.clone().unwrap_or_default();
        check_conditions(&conditions, &data.etag, version.last_modified_ms)?;

        let size = data.size;
        let (byte_range, content_range, parts_count) = match (range, part_number) {
            (Some(_), Some(_)) => {
                return Err(s3_error!(
                    InvalidRequest,
                    "Range and partNumber cannot be used together"
                ));
            }
            (Some(r), None) => {
                // A suffix range of an empty object checks as empty: no
                // byte of it is satisfiable either.
                let checked = r
                    .check(size)
                    .ok()
                    .filter(|checked| !checked.is_empty())
                    .ok_or_else(|| {
                        s3_error!(
                            InvalidRange,
                            "the range is not satisfiable for {size} bytes"
                        )
                    })?;
                let content_range = format!("bytes {}-{}/{size}", checked.start, checked.end - 1);
                (checked, Some(content_range), None)
            }
            (None, Some(n)) => {
                let parts: Vec<u64> = if data.part_sizes.is_empty() {
                    vec![size]
                } else {
                    data.part_sizes.clone()
                };
                if n < 1 || n as usize > parts.len() {
                    let mut e = S3Error::with_message(
                        S3ErrorCode::Custom("InvalidPartNumber".into()),
                        format!("the object has no part {n}"),
                    );
                    e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
                    return Err(e);
                }
                let start: u64 = parts[..n as usize - 1].iter().sum();
                let end = start + parts[n as usize - 1];
                let content_range = (parts.len() > 1 && end > start)
                    .then(|| format!("bytes {start}-{}/{size}", end - 1));
                (start..end, content_range, Some(parts.len() as i32))
            }
            (None, None) => (0..size, None, None),
        };
        Ok(Resolved {
            version,
            version_label,
            data,
            range: byte_range,
            content_range,
            parts_count,
        })
    }

    pub(crate) async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let ranged = input.range.is_some();
        let (resolved, overrides) = resolve_input!(self, input);
        let mut output = describe(&resolved, overrides);
        let checksums = answer_checksums(&resolved, input.checksum_mode.as_ref(), ranged);
        set_checksums!(output, checksums, typed);
        let body = self.data.read(resolved.data.chunks, resolved.range);
        output.body = Some(StreamingBlob::wrap(body));
        Ok(S3Response::new(output))
    }

    pub(crate) async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let ranged = input.range.is_some();
        let (resolved, overrides) = resolve_input!(self, input);
        let get = describe(&resolved, overrides);
        let mut output = HeadObjectOutput {
            content_length: get.content_length,
            content_range: get.content_range,
            accept_ranges: get.accept_ranges,
            e_tag: get.e_tag,
            last_modified: get.last_modified,
            parts_count: get.parts_count,
            content_type: get.content_type,
            cache_control: get.cache_control,
            content_disposition: get.content_disposition,
            content_encoding: get.content_encoding,
            content_language: get.content_language,
            expires: get.expires,
            metadata: get.metadata,
            version_id: get.version_id,
            ..Default::default()
        };
        let checksums = answer_checksums(&resolved, input.checksum_mode.as_ref(), ranged);
        set_checksums!(output, checksums, typed);
        Ok(S3Response::new(output))
    }
}

/// `response-*` query parameters, which replace stored headers in the answer.
struct Overrides {
    content_type: Option<String>,
    cache_control: Option<String>,
    content_disposition: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
    expires: Option<Timestamp>,
}

/// The headers of a GET answer (HEAD answers the same without a body).
fn describe(resolved: &Resolved, overrides: Overrides) -> GetObjectOutput {
    let data = &resolved.data;
    GetObjectOutput {
        content_length: Some((resolved.range.end - resolved.range.start) as i64),
        content_range: resolved.content_range.clone(),
        accept_ranges: Some("bytes".into()),
        e_tag: Some(ETag::Strong(data.etag.clone())),
        last_modified: Some(timestamp(resolved.version.last_modified_ms)),
        version_id: resolved.version_label.clone(),
        parts_count: resolved.parts_count,
        content_type: overrides
            .content_type
            .or_else(|| data.content_type.clone())
            .or_else(|| Some(DEFAULT_CONTENT_TYPE.into())),
        cache_control: overrides
            .cache_control
            .or_else(|| header(data, "cache-control")),
        content_disposition: overrides
            .content_disposition
            .or_else(|| header(data, "content-disposition")),
        content_encoding: overrides
            .content_encoding
            .or_else(|| header(data, "content-encoding")),
        content_language: overrides
            .content_language
            .or_else(|| header(data, "content-language")),
        expires: overrides
            .expires
            .or_else(|| header(data, "expires").and_then(|e| parse_http_date(&e))),
        metadata: user_metadata(data),
        // x-amz-tagging-count; S3 sends it only when the object has tags.
        tag_count: (!data.tags.is_empty()).then_some(data.tags.len() as i32),
        ..Default::default()
    }
}
