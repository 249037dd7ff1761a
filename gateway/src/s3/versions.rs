//! Versioning: PutBucketVersioning, GetBucketVersioning, ListObjectVersions,
//! and the object-record helpers the other operations use to add and remove
//! versions. Records are merged by replicas as a union of versions, so a
//! write sends only what it adds (a version, a purge), never the whole record.

use chunkstore::{Record, Table};
use s3s::dto::*;
use s3s::{S3Error, S3Request, S3Response, S3Result, s3_error};

use super::Inner;
use super::bucket::{owner as bucket_owner, timestamp};
use super::list::{Names, after_marker, max_keys, rolled_prefix};
use crate::limits::{MAX_SCAN_ROUNDS, SCAN_BATCH};
use crate::store::model::{
    self, BucketRecord, OBJECT_KEY_PREFIX, ObjectRecord, ObjectVersion, Purged, Versioning,
};

/// The record that adds `versions` and `purged` to an object record.
pub(crate) fn delta_record(
    key: Vec<u8>,
    ts: u64,
    versions: Vec<ObjectVersion>,
    purged: Vec<Purged>,
) -> Record {
    let delta = ObjectRecord { versions, purged };
    Record {
        key,
        ts,
        value: Some(model::encode(&delta)),
    }
}

/// One entry of a version listing: a version or a delete marker.
struct Entry {
    key: String,
    version: ObjectVersion,
    latest: bool,
}

/// A page of ListObjectVersions.
#[derive(Default)]
struct VersionPage {
    entries: Vec<Entry>,
    prefixes: Vec<String>,
    truncated: bool,
    /// Where the next page starts: key marker and version id marker.
    next: Option<(String, Option<String>)>,
}

impl Inner {
    /// The object record of `key` as read at quorum (kept for a conditional
    /// write) and decoded; empty when there is none.
    pub(crate) async fn object_record(
        &self,
        bucket: &BucketRecord,
        key: &str,
    ) -> S3Result<(Option<Record>, ObjectRecord)> {
        let read = self
            .tables
            .get(
                Table::Objects,
                model::bucket_partition(&bucket.id),
                &model::object_key(&bucket.id, key),
            )
            .await?;
        let record = read
            .as_ref()
            .and_then(|r| r.value.as_deref())
            .and_then(model::decode::<ObjectRecord>)
            .unwrap_or_default();
        Ok((read, record))
    }

    /// Adds versions (new ones, delete markers) and purges to `key`'s record
    /// at quorum, at timestamp `ts`.
    pub(crate) async fn change_record(
        &self,
        bucket: &BucketRecord,
        key: &str,
        ts: u64,
        versions: Vec<ObjectVersion>,
        purged: Vec<Purged>,
    ) -> S3Result<()> {
        let record = delta_record(model::object_key(&bucket.id, key), ts, versions, purged);
        self.tables
            .put_records(
                Table::Objects,
                model::bucket_partition(&bucket.id),
                vec![record],
            )
            .await
    }

    pub(crate) async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let input = req.input;
        let state = match input
            .versioning_configuration
            .status
            .as_ref()
            .map(|s| s.as_str())
        {
            Some(BucketVersioningStatus::ENABLED) => Versioning::Enabled,
            Some(BucketVersioningStatus::SUSPENDED) => Versioning::Suspended,
            _ => {
                return Err(s3_error!(
                    MalformedXML,
                    "Status must be Enabled or Suspended"
                ));
            }
        };
        self.update_bucket(&input.bucket, |b| b.versioning = state)
            .await?;
        Ok(S3Response::new(PutBucketVersioningOutput {}))
    }

    pub(crate) async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let bucket = self.bucket(&req.input.bucket).await?;
        let status = match bucket.versioning {
            Versioning::Unversioned => None,
            Versioning::Enabled => Some(BucketVersioningStatus::ENABLED),
            Versioning::Suspended => Some(BucketVersioningStatus::SUSPENDED),
        };
        Ok(S3Response::new(GetBucketVersioningOutput {
            status: status.map(BucketVersioningStatus::from_static),
            mfa_delete: None,
        }))
    }

    pub(crate) async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let input = req.input;
        let names = Names::from_request(input.encoding_type.as_ref())?;
        let bucket = self.bucket_for_read(&input.bucket).await?;
        let max = max_keys(input.max_keys)?;
        let key_marker = input.key_marker.clone().filter(|m| !m.is_empty());
        let version_marker = input.version_id_marker.clone().filter(|m| !m.is_empty());
        if version_marker.is_some() && key_marker.is_none() {
            return Err(s3_error!(
                InvalidArgument,
                "A version-id marker cannot be specified without a key marker."
            ));
        }
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.as_deref().filter(|d| !d.is_empty());
        let page = self
            .list_versions(
                &bucket,
                &prefix,
                delimiter,
                key_marker.as_deref(),
                version_marker.as_deref(),
                max,
            )
            .await?;
        Ok(S3Response::new(version_output(
            &bucket, names, input, page, max,
        )))
    }

    /// Walks the bucket's records from the markers on, newest version of a
    /// key first, until `max` entries (versions, markers, common prefixes).
    async fn list_versions(
        &self,
        bucket: &BucketRecord,
        prefix: &str,
        delimiter: Option<&str>,
        key_marker: Option<&str>,
        version_marker: Option<&str>,
        max: usize,
    ) -> S3Result<VersionPage> {
        let partition = model::bucket_partition(&bucket.id);
        let base = model::object_prefix(&bucket.id);
        let full = |k: &str| [base.as_slice(), k.as_bytes()].concat();
        let end = model::prefix_end(&full(prefix));
        let mut position = full(prefix);
        match (key_marker, version_marker) {
            (Some(k), Some(_)) => position = position.max(full(k)),
            (Some(k), None) => position = position.max(after_marker(full, k, prefix, delimiter)),
            _ => {}
        }
        let mut page = VersionPage::default();
        if max == 0 {
            return Ok(page);
        }
        // The last key (or common prefix) wholly dealt with.
        let mut last_seen: Option<String> = None;
        for _ in 0..MAX_SCAN_ROUNDS {
            if !end.is_empty() && position >= end {
                return Ok(page);
            }
            let scanned = self
                .tables
                .scan(Table::Objects, partition, &position, &end, SCAN_BATCH)
                .await?;
            let mut jumped = false;
            for record in &scanned.records {
                let Some(object) = record
                    .value
                    .as_deref()
                    .and_then(model::decode::<ObjectRecord>)
                else {
                    continue;
                };
                let Ok(key) = std::str::from_utf8(&record.key[OBJECT_KEY_PREFIX..]) else {
                    continue;
                };
                if object.versions.is_empty() {
                    last_seen = Some(key.to_string());
                    continue;
                }
                if let Some(common) = rolled_prefix(key, prefix, delimiter) {
                    if page.entries.len() + page.prefixes.len() == max {
                        page.truncated = true;
                        return Ok(page);
                    }
                    position = model::prefix_end(&full(&common));
                    page.next = Some((common.clone(), None));
                    last_seen = Some(common.clone());
                    page.prefixes.push(common);
                    jumped = true;
                    break;
                }
                let resume = version_marker.filter(|_| Some(key) == key_marker);
                if !add_versions(&mut page, key, object, resume, max) {
                    return Ok(page);
                }
                last_seen = Some(key.to_string());
            }
            if jumped {
                if position.is_empty() {
                    return Ok(page);
                }
                continue;
            }
            match scanned.next {
                Some(next) => position = next,
                None => return Ok(page),
            }
        }
        // The scan bound was reached: the next page starts after the last
        // key dealt with, even if it listed nothing (deleted keys).
        page.truncated = true;
        if let Some(key) = last_seen {
            page.next = Some((key, None));
        }
        Ok(page)
    }
}

/// Adds a key's versions, newest first, after `resume` (a version id marker)
/// when given. Returns false once the page is full and more remain.
fn add_versions(
    page: &mut VersionPage,
    key: &str,
    object: ObjectRecord,
    resume: Option<&str>,
    max: usize,
) -> bool {
    let newest_first: Vec<ObjectVersion> = object.versions.into_iter().rev().collect();
    let skip = match resume {
        // An unknown marker skips the key, as there is no place to resume.
        Some(id) => newest_first
            .iter()
            .position(|v| v.version_id == id)
            .map_or(newest_first.len(), |i| i + 1),
        None => 0,
    };
    for (i, version) in newest_first.into_iter().enumerate().skip(skip) {
        if page.entries.len() + page.prefixes.len() == max {
            page.truncated = true;
            return false;
        }
        page.next = Some((key.to_string(), Some(version.version_id.clone())));
        page.entries.push(Entry {
            key: key.to_string(),
            version,
            latest: i == 0,
        });
    }
    true
}

fn version_output(
    bucket: &BucketRecord,
    names: Names,
    input: ListObjectVersionsInput,
    page: VersionPage,
    max: usize,
) -> ListObjectVersionsOutput {
    let owner = bucket_owner(&bucket.owner);
    let mut versions = Vec::new();
    let mut markers = Vec::new();
    for e in page.entries {
        let common = (
            Some(names.name(&e.key)),
            Some(e.version.version_id.clone()),
            Some(e.latest),
            Some(timestamp(e.version.last_modified_ms)),
            Some(owner.clone()),
        );
        match &e.version.data {
            Some(data) => versions.push(s3s::dto::ObjectVersion {
                key: common.0,
                version_id: common.1,
                is_latest: common.2,
                last_modified: common.3,
                owner: common.4,
                e_tag: Some(ETag::Strong(data.etag.clone())),
                size: Some(data.size as i64),
                storage_class: Some(ObjectVersionStorageClass::from_static(
                    ObjectVersionStorageClass::STANDARD,
                )),
                ..Default::default()
            }),
            None => markers.push(DeleteMarkerEntry {
                key: common.0,
                version_id: common.1,
                is_latest: common.2,
                last_modified: common.3,
                owner: common.4,
            }),
        }
    }
    let (next_key, next_version) = match page.next.filter(|_| page.truncated) {
        Some((k, v)) => (Some(k), v),
        None => (None, None),
    };
    ListObjectVersionsOutput {
        name: Some(bucket.name.clone()),
        prefix: Some(names.name(input.prefix.as_deref().unwrap_or(""))),
        delimiter: names.opt(input.delimiter),
        key_marker: names.opt(input.key_marker),
        version_id_marker: input.version_id_marker,
        max_keys: Some(max as i32),
        is_truncated: Some(page.truncated),
        next_key_marker: names.opt(next_key),
        next_version_id_marker: next_version,
        versions: Some(versions),
        delete_markers: Some(markers),
        common_prefixes: Some(names.prefixes(page.prefixes)),
        encoding_type: input.encoding_type,
        ..Default::default()
    }
}

/// The version a GET, HEAD or copy source addresses: `version_id` (`null`
/// included), or the current one. A delete marker answers as S3 does:
/// 404 NoSuchKey when current, 405 MethodNotAllowed when asked for by id,
/// both with `x-amz-delete-marker: true`.
pub(crate) fn pick_version(
    record: &ObjectRecord,
    key: &str,
    version_id: Option<&str>,
) -> S3Result<ObjectVersion> {
    let version = match version_id {
        Some(id) => record
            .version(id)
            .ok_or_else(|| s3_error!(NoSuchVersion, "no version {id} of {key}"))?,
        None => record
            .current()
            .ok_or_else(|| s3_error!(NoSuchKey, "no such key: {key}"))?,
    };
    if version.data.is_none() {
        let error = match version_id {
            Some(_) => s3_error!(MethodNotAllowed, "the version is a delete marker"),
            None => s3_error!(NoSuchKey, "no such key: {key}"),
        };
        return Err(with_marker_headers(error, version));
    }
    Ok(version.clone())
}

/// Adds the headers S3 sends with an error about a delete marker.
fn with_marker_headers(mut error: S3Error, marker: &ObjectVersion) -> S3Error {
    let mut headers = http::HeaderMap::new();
    // s3s sends these headers instead of its own, so the XML type goes too.
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    headers.insert(
        "x-amz-delete-marker",
        http::HeaderValue::from_static("true"),
    );
    if let Ok(id) = http::HeaderValue::from_str(&marker.version_id) {
        headers.insert("x-amz-version-id", id);
    }
    error.set_headers(headers);
    error
}
