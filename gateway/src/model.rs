//! Metadata records the gateway keeps in the storage nodes' tables, and how
//! their keys are laid out. Values are MessagePack with field names, so a
//! later version can add fields (with `#[serde(default)]`) and still read
//! what an earlier one wrote.

use chunkstore::ChunkId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::limits::{PARTITIONS, SYSTEM_PARTITION};
use chunkstore::placement::stable_hash;

pub type BucketId = [u8; 16];

/// `buckets` table, system partition, key = bucket name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub id: BucketId,
    pub name: String,
    pub created_ms: u64,
    /// Access key of the owner.
    pub owner: String,
}

/// `objects` table: one record per key, holding its versions oldest first.
/// Without versioning there is one version, `null`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub versions: Vec<ObjectVersion>,
}

impl ObjectRecord {
    /// The version a plain GET sees, unless it is a delete marker.
    pub fn current(&self) -> Option<&ObjectVersion> {
        self.versions.last()
    }

    pub fn current_data(&self) -> Option<&ObjectVersion> {
        self.current().filter(|v| v.data.is_some())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectVersion {
    pub version_id: String,
    /// HLC timestamp of the write that made this version.
    pub ts: u64,
    pub last_modified_ms: u64,
    /// None for a delete marker.
    pub data: Option<ObjectData>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectData {
    pub size: u64,
    /// Hex MD5 of the body, or `md5-of-part-md5s-N` for multipart uploads.
    pub etag: String,
    pub content_type: Option<String>,
    /// Other content headers (cache-control, content-disposition, ...), lowercase names.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// `x-amz-meta-*` without the prefix.
    #[serde(default)]
    pub user_meta: Vec<(String, String)>,
    /// Client checksums by algorithm name (`crc32`, `sha256`, ...), base64.
    #[serde(default)]
    pub checksums: Vec<(String, String)>,
    /// Sizes of the multipart parts in order; empty for a single PUT.
    #[serde(default)]
    pub part_sizes: Vec<u64>,
    pub chunks: Vec<ChunkRef>,
}

/// One chunk of an object and the nodes that hold its copies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub size: u64,
    pub crc32c: u32,
    pub nodes: Vec<String>,
}

/// `uploads` table: one record per multipart upload in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub key: String,
    pub upload_id: String,
    pub initiated_ms: u64,
    pub content_type: Option<String>,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub user_meta: Vec<(String, String)>,
}

/// `parts` table: one record per uploaded part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub part_number: i32,
    pub etag: String,
    pub size: u64,
    pub last_modified_ms: u64,
    pub chunks: Vec<ChunkRef>,
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding plain structs of strings and numbers into a Vec cannot fail.
    rmp_serde::to_vec_named(value).unwrap_or_default()
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    match rmp_serde::from_slice(bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "undecodable metadata record");
            None
        }
    }
}

/// The partition holding a bucket's objects, uploads and parts.
pub fn bucket_partition(id: &BucketId) -> u16 {
    (stable_hash(&[id]) % u64::from(PARTITIONS)) as u16
}

fn prefixed(partition: u16, parts: &[&[u8]]) -> Vec<u8> {
    let mut key = partition.to_be_bytes().to_vec();
    for p in parts {
        key.extend_from_slice(p);
    }
    key
}

pub fn bucket_key(name: &str) -> Vec<u8> {
    prefixed(SYSTEM_PARTITION, &[name.as_bytes()])
}

/// All bucket records: the range of the system partition.
pub fn bucket_range() -> (Vec<u8>, Vec<u8>) {
    (
        SYSTEM_PARTITION.to_be_bytes().to_vec(),
        (SYSTEM_PARTITION + 1).to_be_bytes().to_vec(),
    )
}

/// Key of an object record; objects of a bucket sort by key bytes, as S3 lists them.
pub fn object_key(bucket: &BucketId, key: &str) -> Vec<u8> {
    prefixed(bucket_partition(bucket), &[bucket, key.as_bytes()])
}

/// Length of the prefix in front of the object key in [`object_key`].
pub const OBJECT_KEY_PREFIX: usize = 2 + 16;

pub fn object_prefix(bucket: &BucketId) -> Vec<u8> {
    prefixed(bucket_partition(bucket), &[bucket])
}

/// Uploads sort by key, then upload id, as ListMultipartUploads returns them.
pub fn upload_key(bucket: &BucketId, key: &str, upload_id: &str) -> Vec<u8> {
    prefixed(
        bucket_partition(bucket),
        &[bucket, key.as_bytes(), &[0], upload_id.as_bytes()],
    )
}

pub fn part_key(bucket: &BucketId, upload_id: &str, part_number: i32) -> Vec<u8> {
    prefixed(
        bucket_partition(bucket),
        &[
            bucket,
            upload_id.as_bytes(),
            &(part_number as u32).to_be_bytes(),
        ],
    )
}

pub fn part_prefix(bucket: &BucketId, upload_id: &str) -> Vec<u8> {
    prefixed(bucket_partition(bucket), &[bucket, upload_id.as_bytes()])
}

/// The smallest key greater than every key starting with `prefix`, or empty
/// (unbounded) when there is none.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    Vec::new()
}

/// The smallest key greater than `key` itself.
pub fn key_after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

pub fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bounds_every_key_with_the_prefix() {
        assert_eq!(prefix_end(b"ab"), b"ac".to_vec());
        assert_eq!(prefix_end(&[1, 0xff]), vec![2]);
        assert_eq!(prefix_end(&[0xff, 0xff]), Vec::<u8>::new());
        let p = object_prefix(&[7; 16]);
        let k = object_key(&[7; 16], "zzz\u{10ffff}");
        assert!(k.starts_with(&p) && k < prefix_end(&p));
    }

    #[test]
    fn records_decode_after_fields_are_added() {
        #[derive(Serialize)]
        struct OldUpload {
            key: String,
            upload_id: String,
            initiated_ms: u64,
            content_type: Option<String>,
        }
        let old = OldUpload {
            key: "k".into(),
            upload_id: "u".into(),
            initiated_ms: 1,
            content_type: None,
        };
        let new: UploadRecord = decode(&encode(&old)).unwrap();
        assert_eq!(new.key, "k");
        assert!(new.user_meta.is_empty());
    }
}
