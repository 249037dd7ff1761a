//! ListObjects and ListObjectsV2: a sorted scan of the bucket's partition,
//! merged from a quorum of replicas, with delimiter roll-up.

use chunkstore::Table;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::Inner;
use super::bucket::{owner as bucket_owner, timestamp};
use crate::limits::{MAX_LIST_KEYS, MAX_SCAN_ROUNDS, SCAN_BATCH};
use crate::store::model::{self, BucketRecord, OBJECT_KEY_PREFIX, ObjectRecord, ObjectVersion};

/// Where a listing starts.
pub(crate) enum Start {
    /// After this key (exclusive); with a delimiter, a marker that is a
    /// common prefix skips everything under it, as S3 does.
    After(String),
    /// At this raw scan position (a V2 token from a page cut short by the
    /// scan bound, before anything was listed).
    At(Vec<u8>),
}

pub(crate) struct Listing {
    pub objects: Vec<(String, ObjectVersion)>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// Where the next page starts.
    pub next: Option<Start>,
}

pub(crate) fn max_keys(value: Option<i32>) -> S3Result<usize> {
    match value {
        None => Ok(MAX_LIST_KEYS),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must be >= 0")),
        Some(n) => Ok((n as usize).min(MAX_LIST_KEYS)),
    }
}

/// The common prefix `key` rolls up into under `delimiter`, if any.
pub(crate) fn rolled_prefix(key: &str, prefix: &str, delimiter: Option<&str>) -> Option<String> {
    let d = delimiter?;
    key.get(prefix.len()..)?
        .find(d)
        .map(|i| key[..prefix.len() + i + d.len()].to_string())
}

/// Where a listing resumes after `marker`: with a delimiter, a marker that
/// is a common prefix skips everything under it, as S3 does. `full` turns
/// an object key into its record key.
pub(crate) fn after_marker(
    full: impl Fn(&str) -> Vec<u8>,
    marker: &str,
    prefix: &str,
    delimiter: Option<&str>,
) -> Vec<u8> {
    let skip_under = delimiter.is_some_and(|d| {
        marker.ends_with(d) && marker.starts_with(prefix) && marker.len() > prefix.len()
    });
    if skip_under {
        model::prefix_end(&full(marker))
    } else {
        model::key_after(&full(marker))
    }
}

fn encode_token(start: &Start) -> String {
    match start {
        Start::After(key) => format!("k{}", hex::encode(key.as_bytes())),
        Start::At(raw) => format!("r{}", hex::encode(raw)),
    }
}

fn decode_token(token: &str) -> S3Result<Start> {
    let invalid = || s3_error!(InvalidArgument, "the continuation token is not valid");
    let (kind, hexed) = token.split_at_checked(1).ok_or_else(invalid)?;
    let bytes = hex::decode(hexed).map_err(|_| invalid())?;
    match kind {
        "k" => Ok(Start::After(
            String::from_utf8(bytes).map_err(|_| invalid())?,
        )),
        "r" => Ok(Start::At(bytes)),
        _ => Err(invalid()),
    }
}

/// `encoding-type=url`: S3 percent-encodes names in the answer (clients such
/// as botocore ask for it by default and decode every key).
#[derive(Clone, Copy)]
pub(crate) struct Names {
    url: bool,
}

impl Names {
    pub fn from_request(encoding_type: Option<&EncodingType>) -> S3Result<Names> {
        match encoding_type.map(EncodingType::as_str) {
            None => Ok(Names { url: false }),
            Some(t) if t.eq_ignore_ascii_case("url") => Ok(Names { url: true }),
            Some(other) => Err(s3_error!(
                InvalidArgument,
                "Invalid Encoding Method specified in Request: {other}"
            )),
        }
    }

    pub fn name(self, s: &str) -> String {
        if !self.url {
            return s.to_string();
        }
        let mut out = String::with_capacity(s.len());
        for &b in s.as_bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    pub fn opt(self, s: Option<String>) -> Option<String> {
        s.map(|s| self.name(&s))
    }

    pub fn prefixes(self, prefixes: Vec<String>) -> Vec<CommonPrefix> {
        prefixes
            .into_iter()
            .map(|p| CommonPrefix {
                prefix: Some(self.name(&p)),
            })
            .collect()
    }
}

fn object_entry(names: Names, owner: Option<&Owner>, key: &str, version: &ObjectVersion) -> Object {
    let data = version.data.as_ref();
    Object {
        key: Some(names.name(key)),
        owner: owner.cloned(),
        e_tag: data.map(|d| ETag::Strong(d.etag.clone())),
        size: data.map(|d| d.size as i64),
        last_modified: Some(timestamp(version.last_modified_ms)),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        ..Default::default()
    }
}

impl Inner {
    pub(crate) async fn list(
        &self,
        bucket: &BucketRecord,
        prefix: &str,
        delimiter: Option<&str>,
        start: Option<Start>,
        max_keys: usize,
    ) -> S3Result<Listing> {
        let partition = model::bucket_partition(&bucket.id);
        let base = model::object_prefix(&bucket.id);
        let full = |k: &str| [base.as_slice(), k.as_bytes()].concat();
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let end = model::prefix_end(&full(prefix));
        let mut position = full(prefix);
        match start {
            Some(Start::After(marker)) => {
                position = position.max(after_marker(full, &marker, prefix, delimiter));
            }
            Some(Start::At(raw)) => position = position.max(raw),
            None => {}
        }

        let mut listing = Listing {
            objects: Vec::new(),
            prefixes: Vec::new(),
            truncated: false,
            next: None,
        };
        if max_keys == 0 {
            return Ok(listing);
        }
        let mut count = 0usize;
        for _ in 0..MAX_SCAN_ROUNDS {
            if !end.is_empty() && position >= end {
                return Ok(listing);
            }
            let page = self
                .tables
                .scan(Table::Objects, partition, &position, &end, SCAN_BATCH)
                .await?;
            let mut jumped = false;
            for record in &page.records {
                let Some(value) = &record.value else { continue };
                let Some(object) = model::decode::<ObjectRecord>(value) else {
                    continue;
                };
                let Some(current) = object.current_data() else {
                    continue;
                };
                let Ok(key) = std::str::from_utf8(&record.key[OBJECT_KEY_PREFIX..]) else {
                    continue;
                };
                let rolled = rolled_prefix(key, prefix, delimiter);
                if count == max_keys {
                    listing.truncated = true;
                    return Ok(listing);
                }
                count += 1;
                match rolled {
                    Some(common) => {
                        position = model::prefix_end(&full(&common));
                        listing.next = Some(Start::After(common.clone()));
                        listing.prefixes.push(common);
                        jumped = true;
                        break;
                    }
                    None => {
                        listing.next = Some(Start::After(key.to_string()));
                        listing.objects.push((key.to_string(), current.clone()));
                    }
                }
            }
            if jumped {
                if position.is_empty() {
                    return Ok(listing);
                }
                continue;
            }
            match page.next {
                Some(next) => position = next,
                None => return Ok(listing),
            }
        }
        // The scan bound was reached: hand back a page that continues here.
        listing.truncated = true;
        if listing.next.is_none() {
            listing.next = Some(Start::At(position));
        }
        Ok(listing)
    }

    pub(crate) async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let names = Names::from_request(input.encoding_type.as_ref())?;
        let bucket = self.bucket_for_read(&input.bucket).await?;
        let max = max_keys(input.max_keys)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let start = input
            .marker
            .clone()
            .filter(|m| !m.is_empty())
            .map(Start::After);
        let listing = self
            .list(&bucket, &prefix, input.delimiter.as_deref(), start, max)
            .await?;
        let owner = bucket_owner(&bucket.owner);
        // V1 has no raw position; a cut-short page resumes after its last entry.
        let next_marker = match (&listing.next, listing.truncated) {
            (Some(Start::After(k)), true) => Some(k.clone()),
            _ => None,
        };
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(bucket.name.clone()),
            // V1 answers the prefix as given, encoded or not (botocore
            // decodes V1's Marker and Delimiter, not its Prefix); the
            // marker element is always there, empty when none was given.
            prefix: Some(prefix),
            marker: Some(names.name(input.marker.as_deref().unwrap_or_default())),
            max_keys: Some(max as i32),
            is_truncated: Some(listing.truncated),
            contents: Some(
                listing
                    .objects
                    .iter()
                    .map(|(k, v)| object_entry(names, Some(&owner), k, v))
                    .collect(),
            ),
            common_prefixes: Some(names.prefixes(listing.prefixes)),
            delimiter: names.opt(input.delimiter.filter(|d| !d.is_empty())),
            next_marker: names.opt(next_marker),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    pub(crate) async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let names = Names::from_request(input.encoding_type.as_ref())?;
        let bucket = self.bucket_for_read(&input.bucket).await?;
        let max = max_keys(input.max_keys)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        // An empty token is no token (S3 answers the first page).
        let token = input
            .continuation_token
            .as_deref()
            .filter(|t| !t.is_empty());
        let start = match (token, &input.start_after) {
            (Some(token), _) => Some(decode_token(token)?),
            (None, Some(after)) if !after.is_empty() => Some(Start::After(after.clone())),
            _ => None,
        };
        let listing = self
            .list(&bucket, &prefix, input.delimiter.as_deref(), start, max)
            .await?;
        let next_token = listing
            .truncated
            .then(|| listing.next.as_ref().map(encode_token))
            .flatten();
        let key_count = (listing.objects.len() + listing.prefixes.len()) as i32;
        let owner = bucket_owner(&bucket.owner);
        let owner = input.fetch_owner.unwrap_or(false).then_some(&owner);
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(bucket.name.clone()),
            prefix: Some(names.name(&prefix)),
            max_keys: Some(max as i32),
            key_count: Some(key_count),
            continuation_token: input.continuation_token,
            is_truncated: Some(listing.truncated),
            next_continuation_token: next_token,
            contents: Some(
                listing
                    .objects
                    .iter()
                    .map(|(k, v)| object_entry(names, owner, k, v))
                    .collect(),
            ),
            common_prefixes: Some(names.prefixes(listing.prefixes)),
            delimiter: names.opt(input.delimiter.filter(|d| !d.is_empty())),
            encoding_type: input.encoding_type,
            start_after: names.opt(input.start_after),
            ..Default::default()
        }))
    }
}
