//! Types that cross the internal API. Bodies are postcard-encoded.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Random 128-bit chunk name; shown as 32 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChunkId(pub [u8; 16]);

impl ChunkId {
    pub fn random() -> ChunkId {
        ChunkId(rand::random())
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl FromStr for ChunkId {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut id = [0u8; 16];
        hex::decode_to_slice(s, &mut id)?;
        Ok(ChunkId(id))
    }
}

/// Who a chunk belongs to; written into the chunk file's header so that a
/// sweeper can ask the metadata whether the chunk is still referenced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkOwner {
    pub bucket_id: String,
    pub key: String,
    /// Version id of the object, or the upload id of a multipart part.
    pub version: String,
}

/// One chunk file as a node's listing shows it (`GET /chunks`), for the
/// garbage collector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedChunk {
    pub id: ChunkId,
    pub owner: ChunkOwner,
    pub size: u64,
    /// Seconds since the file was written, by the node's own clock.
    pub age_secs: u64,
}

/// The metadata tables a storage node keeps. Every table is a sorted map of
/// byte keys to [`Record`]s, merged as [`crate::merge`] says (last writer
/// wins, except object records).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Table {
    Buckets,
    Objects,
    Uploads,
    Parts,
    Keys,
    Layout,
}

impl Table {
    pub const ALL: [Table; 6] = [
        Table::Buckets,
        Table::Objects,
        Table::Uploads,
        Table::Parts,
        Table::Keys,
        Table::Layout,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Buckets => "buckets",
            Table::Objects => "objects",
            Table::Uploads => "uploads",
            Table::Parts => "parts",
            Table::Keys => "keys",
            Table::Layout => "layout",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// One metadata record. `value: None` is a tombstone. Replicas keep the
/// record with the highest `ts` (a hybrid logical clock); equal timestamps
/// are broken by comparing values, so every replica picks the same winner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub key: Vec<u8>,
    pub ts: u64,
    pub value: Option<Vec<u8>>,
}

impl Record {
    /// True when `self` should replace `other` under last-writer-wins.
    pub fn wins_over(&self, other: &Record) -> bool {
        (self.ts, &self.value) > (other.ts, &other.value)
    }
}

/// What a conditional write expects of an object's current version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    /// No current version, or the current one is a delete marker.
    Absent,
    /// The current version is not a delete marker and has this ETag.
    ETag(String),
}

/// Body of `POST /meta/{table}/cas`: check `expect` and merge `write`, in
/// one transaction on the partition's primary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CasRequest {
    pub expect: Expect,
    /// The record as the caller read it at quorum; merged in first, so the
    /// check is never made on a copy staler than what the caller saw.
    pub seen: Option<Record>,
    pub write: Record,
}

/// Answer of `POST /meta/{table}/cas`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CasOutcome {
    /// The expectation held; this is the record now stored.
    Written(Record),
    /// It did not; nothing was written. The current ETag, if any object is current.
    Refused { current_etag: Option<String> },
}

/// What `GET /status` answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node_id: String,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub chunk_count: u64,
    pub in_flight: u32,
    /// Corrupt chunk files waiting for a good copy.
    pub quarantined_chunks: u64,
}

/// Header names of the internal API. Every `x-fd-*` header is signed.
pub mod header {
    /// crc32c of a chunk's whole data, 8 lowercase hex digits: sent with a
    /// chunk PUT (the node verifies it before writing) and answered by GET.
    pub const CRC32C: &str = "x-fd-crc32c";
    /// Total size of the chunk in bytes, answered by GET.
    pub const SIZE: &str = "x-fd-size";
    /// Owner of a chunk on PUT (and answered by GET): hex of the
    /// postcard-encoded [`super::ChunkOwner`].
    pub const OWNER: &str = "x-fd-owner";
}

/// Status a node answers to a chunk GET when its stored copy fails its
/// checksum; the client maps it to `ClientError::Corrupt`.
pub const STATUS_CHUNK_CORRUPT: u16 = 409;
