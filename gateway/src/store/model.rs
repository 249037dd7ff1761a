//! Metadata records the gateway keeps in the storage nodes' tables, and how
//! their keys are laid out. Values are MessagePack with field names, so a
//! later version can add fields (with `#[serde(default)]`) and still read
//! what an earlier one wrote.

use chunkstore::ChunkId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::checksum::UploadChecksum;
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
    /// PutBucketVersioning state; a bucket is never versioned until asked.
    #[serde(default)]
    pub versioning: Versioning,
    /// Bucket tags (PutBucketTagging), in the order given.
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// CORS rules (PutBucketCors); None when the bucket has no configuration.
    #[serde(default)]
    pub cors: Option<Vec<CorsRule>>,
    /// Lifecycle rules (PutBucketLifecycleConfiguration); None when unset.
    #[serde(default)]
    pub lifecycle: Option<Vec<LifecycleRule>>,
    /// AllUsers may READ (list) the bucket; kept equal to what `acl` says,
    /// for records written before `acl` existed.
    #[serde(default)]
    pub public_read: bool,
    /// Bucket policy (PutBucketPolicy), the JSON document as given; None
    /// when unset. Validated on the way in (see `policy`).
    #[serde(default)]
    pub policy: Option<String>,
    /// PutPublicAccessBlock; None when the bucket has no configuration.
    #[serde(default)]
    pub public_access_block: Option<PublicAccessBlock>,
    /// The bucket's ACL grants (see `crate::acl`); None in records written
    /// before ACLs were stored: the owner's FULL_CONTROL, plus AllUsers READ
    /// when `public_read`.
    #[serde(default)]
    pub acl: Option<Vec<AclGrant>>,
    /// A DeleteBucket is checking the bucket is empty, since this wall-clock
    /// time: writes that land meanwhile wait for its outcome (see
    /// `s3::bucket`). Anyone may clear it after a lease.
    #[serde(default)]
    pub deleting_since_ms: Option<u64>,
}

/// A bucket's Public Access Block configuration, as S3 defines it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicAccessBlock {
    /// Refuse requests that set a public ACL.
    #[serde(default)]
    pub block_public_acls: bool,
    /// Public ACLs give no access.
    #[serde(default)]
    pub ignore_public_acls: bool,
    /// Refuse PutBucketPolicy of a public policy.
    #[serde(default)]
    pub block_public_policy: bool,
    /// A public policy grants only to the bucket owner.
    #[serde(default)]
    pub restrict_public_buckets: bool,
}

impl BucketRecord {
    /// The bucket's ACL grants, old records included.
    pub fn grants(&self) -> Vec<AclGrant> {
        self.acl
            .clone()
            .unwrap_or_else(|| legacy_grants(&self.owner, self.public_read))
    }
}

/// One grant of an S3 access control list: a grantee and its permission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclGrant {
    pub grantee: AclGrantee,
    pub permission: AclPermission,
}

/// Who an ACL grant is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclGrantee {
    /// A key (the root key included), by its access key.
    Key(String),
    /// Everyone, signed or not (`.../groups/global/AllUsers`).
    AllUsers,
    /// Every request signed with a valid key (`.../global/AuthenticatedUsers`).
    AuthenticatedUsers,
    /// S3's log delivery group (`.../groups/s3/LogDelivery`); nothing here
    /// delivers logs, so such a grant is only stored and shown.
    LogDelivery,
}

/// What an ACL grant allows (S3's five permissions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclPermission {
    Read,
    Write,
    ReadAcp,
    WriteAcp,
    FullControl,
}

/// The ACL of a record written before ACLs were stored: the owner's full
/// control, and AllUsers READ if it was `public-read`.
pub fn legacy_grants(owner: &str, public_read: bool) -> Vec<AclGrant> {
    let mut grants = vec![AclGrant {
        grantee: AclGrantee::Key(owner.to_string()),
        permission: AclPermission::FullControl,
    }];
    if public_read {
        grants.push(AclGrant {
            grantee: AclGrantee::AllUsers,
            permission: AclPermission::Read,
        });
    }
    grants
}

/// `keys` table, system partition, key = access key. The root key is not
/// stored: it comes from the operator and may do everything.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub access_key: String,
    /// Stored as is: verifying SigV4 needs the secret itself.
    pub secret: String,
    pub name: String,
    pub created_ms: u64,
    #[serde(default)]
    pub allow_create_bucket: bool,
    /// Permissions on buckets this key did not create (creators own theirs).
    #[serde(default)]
    pub grants: Vec<BucketGrant>,
}

/// Without the secret, so that no log line can show it.
impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("access_key", &self.access_key)
            .field("name", &self.name)
            .field("allow_create_bucket", &self.allow_create_bucket)
            .field("grants", &self.grants)
            .finish_non_exhaustive()
    }
}

/// What a key may do on one bucket, by bucket id: a bucket deleted and
/// created again under the same name does not inherit the old grants.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketGrant {
    pub bucket_id: BucketId,
    /// The bucket's name when the grant was made, for display.
    pub bucket: String,
    pub read: bool,
    pub write: bool,
    pub owner: bool,
}

/// One CORS rule of a bucket, as S3 defines it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsRule {
    #[serde(default)]
    pub id: Option<String>,
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub max_age_seconds: Option<i32>,
}

/// One lifecycle rule of a bucket. Ages are in days (see
/// `lifecycle::LifecycleConfig::day`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleRule {
    pub id: String,
    pub enabled: bool,
    #[serde(default)]
    pub filter: LifecycleFilter,
    #[serde(default)]
    pub expiration_days: Option<u32>,
    /// Expire everything matching from this moment on (ms since the epoch).
    #[serde(default)]
    pub expiration_date_ms: Option<u64>,
    #[serde(default)]
    pub expired_object_delete_marker: bool,
    #[serde(default)]
    pub noncurrent_days: Option<u32>,
    #[serde(default)]
    pub abort_upload_days: Option<u32>,
}

/// Which objects a lifecycle rule applies to: all conditions must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleFilter {
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    #[serde(default)]
    pub size_greater_than: Option<i64>,
    #[serde(default)]
    pub size_less_than: Option<i64>,
    /// The rule used the legacy top-level `<Prefix>` instead of `<Filter>`;
    /// kept so GetBucketLifecycleConfiguration answers the same shape.
    #[serde(default)]
    pub legacy_prefix: bool,
}

/// A bucket's versioning state. Once enabled it can only be suspended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Versioning {
    #[default]
    Unversioned,
    Enabled,
    Suspended,
}

impl Versioning {
    /// The id a new version gets: a fresh one when enabled, else `null`.
    pub fn new_version_id(self, ts: u64) -> String {
        match self {
            Versioning::Enabled => new_version_id(ts),
            _ => NULL_VERSION.to_string(),
        }
    }

    /// The version id S3 reports in `x-amz-version-id` (none when unversioned).
    pub fn label(self, version_id: &str) -> Option<String> {
        (self != Versioning::Unversioned).then(|| version_id.to_string())
    }

    /// The version id a write answers with: only a versioned bucket's new
    /// id (a write under Suspended makes the `null` version, which S3 does
    /// not name in the answer).
    pub fn label_of_write(self, version_id: &str) -> Option<String> {
        (self == Versioning::Enabled).then(|| version_id.to_string())
    }
}

/// The version id of objects written while versioning is off or suspended.
pub const NULL_VERSION: &str = "null";

/// A unique version id that sorts by the time it was made: the HLC
/// timestamp, then random bits, in URL-safe hex.
pub fn new_version_id(ts: u64) -> String {
    format!("{ts:016x}{}", hex::encode(rand::random::<[u8; 8]>()))
}

/// `objects` table: one record per key, holding its versions oldest first.
/// Without versioning there is one version, `null`. Replicas merge these
/// records as a union of versions (see `chunkstore::merge`, which reads the
/// field names `versions`, `purged`, `version_id`, `ts`, `updated_ts`,
/// `data` and `etag`), so a write sends only what it adds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub versions: Vec<ObjectVersion>,
    /// Deleted versions: a version with this id and a ts up to this one is gone.
    #[serde(default)]
    pub purged: Vec<Purged>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purged {
    pub version_id: String,
    pub ts: u64,
}

impl ObjectRecord {
    /// The version a plain GET sees, unless it is a delete marker.
    pub fn current(&self) -> Option<&ObjectVersion> {
        self.versions.last()
    }

    pub fn current_data(&self) -> Option<&ObjectVersion> {
        self.current().filter(|v| v.data.is_some())
    }

    pub fn version(&self, version_id: &str) -> Option<&ObjectVersion> {
        self.versions.iter().find(|v| v.version_id == version_id)
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
    /// HLC timestamp of the last change to this version's mutable fields
    /// (tags); 0 if never changed. Replicas keep the copy with the newest.
    #[serde(default)]
    pub updated_ts: u64,
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
    /// Checksums by algorithm name (`crc32`, `sha256`, ...), base64; a
    /// multipart COMPOSITE value ends in `-N` (see `checksum`).
    #[serde(default)]
    pub checksums: Vec<(String, String)>,
    /// Sizes of the multipart parts in order; empty for a single PUT.
    #[serde(default)]
    pub part_sizes: Vec<u64>,
    /// The parts' checksums in the upload's algorithm, in order (as for
    /// GetObjectAttributes); empty unless the upload had a ChecksumAlgorithm.
    #[serde(default)]
    pub part_checksums: Vec<Vec<(String, String)>>,
    pub chunks: Vec<ChunkRef>,
    /// Object tags, in the order given.
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// AllUsers may READ this object; kept equal to what `acl` says, for
    /// records written before `acl` existed.
    #[serde(default)]
    pub public_read: bool,
    /// Access key of the key that wrote this version, its owner; None in
    /// records written before owners were stored (the bucket owner then).
    #[serde(default)]
    pub owner: Option<String>,
    /// The version's ACL grants; None in records written before ACLs were
    /// stored: the owner's FULL_CONTROL, plus AllUsers READ when `public_read`.
    #[serde(default)]
    pub acl: Option<Vec<AclGrant>>,
}

impl ObjectData {
    /// The version's owner: its writer, or for old records the bucket owner.
    pub fn owner_or<'a>(&'a self, bucket_owner: &'a str) -> &'a str {
        self.owner.as_deref().unwrap_or(bucket_owner)
    }

    /// The version's ACL grants, old records included.
    pub fn grants(&self, bucket_owner: &str) -> Vec<AclGrant> {
        self.acl
            .clone()
            .unwrap_or_else(|| legacy_grants(self.owner_or(bucket_owner), self.public_read))
    }
}

/// One chunk of an object and the nodes that hold it: full copies, or the
/// shards of a stripe (docs/erasure.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub size: u64,
    /// Of the whole chunk.
    pub crc32c: u32,
    /// With a stripe, shard `i` is on `nodes[i]`, in a file named by the
    /// chunk's id like a copy (one shard per node), so that every file is
    /// listed the same way for the garbage collector.
    pub nodes: Vec<String>,
    /// None: `nodes` hold full copies (every record before storage classes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe: Option<StripeRef>,
}

impl ChunkRef {
    pub fn is_striped(&self) -> bool {
        self.stripe.is_some()
    }
}

/// How an erasure-coded chunk is cut: `data` + `parity` shards of
/// `shard_size` bytes, and each shard's CRC32C, by shard index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripeRef {
    pub data: u8,
    pub parity: u8,
    pub shard_size: u32,
    pub shard_crc32c: Vec<u32>,
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
    /// Tags from `x-amz-tagging`, given to the object on completion.
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// Checksum the object gets on completion (CreateMultipartUpload's
    /// ChecksumAlgorithm and ChecksumType); None without one.
    #[serde(default)]
    pub checksum: Option<UploadChecksum>,
    /// Canned ACL `public-read` asked for at creation, for the completed object.
    #[serde(default)]
    pub public_read: bool,
    /// Who created the upload (the completed object's owner) and the ACL
    /// it asked for; None in records written before ACLs were stored.
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub acl: Option<Vec<AclGrant>>,
    /// Where the upload stands; records from before states read as open.
    #[serde(default)]
    pub state: UploadState,
}

/// The states of a multipart upload (see `crate::s3::completion`). Every
/// change of state is a conditional write of the upload record on its
/// partition's primary, and parts land only while the upload is open.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum UploadState {
    #[default]
    Open,
    /// A Complete is choosing the parts, since `since_ms` (wall clock):
    /// no part lands any more. Anyone may reopen it after a lease.
    Completing {
        since_ms: u64,
    },
    /// A Complete's decision, being committed; whoever finds it finishes it.
    Committing(Box<Completion>),
    /// Committed and the parts forgotten; a repeated Complete naming the
    /// same parts answers this version (its chunk list left out here).
    Completed(Box<Completion>),
    Aborted {
        at_ms: u64,
    },
}

/// What a Complete decided: the object version it commits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    /// The parts the Complete named: number and ETag.
    pub parts: Vec<(i32, String)>,
    pub version: ObjectVersion,
    /// The Complete's If-None-Match / If-Match, checked when committing.
    pub condition: Option<chunkstore::Condition>,
    /// When the decision was made (wall clock).
    pub decided_ms: u64,
}

/// `parts` table: one record per uploaded part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub part_number: i32,
    pub etag: String,
    pub size: u64,
    pub last_modified_ms: u64,
    pub chunks: Vec<ChunkRef>,
    /// Checksums of the part's body by algorithm name, base64 (as in ObjectData).
    #[serde(default)]
    pub checksums: Vec<(String, String)>,
}

/// A write lease (table `leases`): a write in progress whose chunks no
/// record lists yet. The garbage collector keeps the chunks of an owner
/// with a lease that has not expired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Until when the lease holds (ms since the epoch, the cluster's time).
    pub expires_ms: u64,
    /// When the write started (ms), for operators.
    pub started_ms: u64,
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

/// Key of an access key's record in the `keys` table.
pub fn access_key_key(access_key: &str) -> Vec<u8> {
    prefixed(SYSTEM_PARTITION, &[access_key.as_bytes()])
}

/// All access key records: the system partition's range of the `keys` table.
pub fn access_key_range() -> (Vec<u8>, Vec<u8>) {
    bucket_range()
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

/// Where the leases of the writes of one chunk owner are: bucket, then
/// version (or upload id) and key, each with its length, so that no owner's
/// prefix is another's.
pub fn lease_prefix(bucket: &BucketId, key: &str, version: &str) -> Vec<u8> {
    prefixed(
        bucket_partition(bucket),
        &[
            bucket,
            &(version.len() as u32).to_be_bytes(),
            version.as_bytes(),
            &(key.len() as u32).to_be_bytes(),
            key.as_bytes(),
        ],
    )
}

/// One write's lease: several writes of one owner (a part uploaded twice at
/// once) each hold their own.
pub fn lease_key(prefix: &[u8], write: u64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(&write.to_be_bytes());
    key
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
    fn a_chunk_without_a_stripe_is_encoded_as_before_and_a_stripe_round_trips() {
        #[derive(Serialize)]
        struct ChunkRefBefore {
            id: ChunkId,
            size: u64,
            crc32c: u32,
            nodes: Vec<String>,
        }
        let before = ChunkRefBefore {
            id: ChunkId([3; 16]),
            size: 10,
            crc32c: 7,
            nodes: vec!["a".into(), "b".into(), "c".into()],
        };
        let copies = ChunkRef {
            id: before.id,
            size: 10,
            crc32c: 7,
            nodes: before.nodes.clone(),
            stripe: None,
        };
        // Byte for byte: records of copies stay readable by the release before.
        assert_eq!(encode(&copies), encode(&before));
        assert_eq!(decode::<ChunkRef>(&encode(&before)), Some(copies.clone()));
        let striped = ChunkRef {
            stripe: Some(StripeRef {
                data: 4,
                parity: 2,
                shard_size: 3,
                shard_crc32c: vec![1, 2, 3, 4, 5, 6],
            }),
            ..copies
        };
        assert_eq!(decode::<ChunkRef>(&encode(&striped)), Some(striped));
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

    #[test]
    fn records_from_before_acls_read_as_owner_full_control_plus_public_read() {
        #[derive(Serialize)]
        struct OldBucket<'a> {
            id: BucketId,
            name: &'a str,
            created_ms: u64,
            owner: &'a str,
            public_read: bool,
        }
        let old = OldBucket {
            id: [1; 16],
            name: "b",
            created_ms: 0,
            owner: "K",
            public_read: true,
        };
        let bucket: BucketRecord = decode(&encode(&old)).unwrap();
        assert_eq!(bucket.acl, None);
        assert_eq!(bucket.grants(), legacy_grants("K", true));
        assert_eq!(bucket.grants()[1].grantee, AclGrantee::AllUsers);

        let data = ObjectData::default();
        assert_eq!(data.owner_or("K"), "K");
        assert_eq!(data.grants("K"), legacy_grants("K", false));
        let written = ObjectData {
            owner: Some("W".into()),
            acl: Some(Vec::new()),
            ..Default::default()
        };
        let written: ObjectData = decode(&encode(&written)).unwrap();
        assert_eq!(written.owner_or("K"), "W");
        assert!(written.grants("K").is_empty());
    }
}
