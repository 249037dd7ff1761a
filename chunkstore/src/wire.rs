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

/// A chunk file on a node's deletion queue (`GET /chunks/doomed`): deleted
/// by the garbage collector once no record lists it on that node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoomedChunk {
    pub id: ChunkId,
    pub owner: ChunkOwner,
    /// Seconds since it was queued, by the node's clock.
    pub queued_secs: u64,
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
    /// Write leases: a write whose chunks are stored but not yet listed by
    /// a record (a slow PUT or part) holds one, so the garbage collector
    /// leaves its chunks alone. Added after 0.1 (last, so that the encoded
    /// index of every older table stays).
    Leases,
}

impl Table {
    pub const ALL: [Table; 7] = [
        Table::Buckets,
        Table::Objects,
        Table::Uploads,
        Table::Parts,
        Table::Keys,
        Table::Layout,
        Table::Leases,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Buckets => "buckets",
            Table::Objects => "objects",
            Table::Uploads => "uploads",
            Table::Parts => "parts",
            Table::Keys => "keys",
            Table::Layout => "layout",
            Table::Leases => "leases",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// Low bits of a record timestamp that count events within one millisecond
/// (a hybrid logical clock: the high bits are milliseconds since the Unix
/// epoch).
pub const TS_LOGICAL_BITS: u32 = 16;

/// Milliseconds since the Unix epoch of a record timestamp.
pub fn ts_millis(ts: u64) -> u64 {
    ts >> TS_LOGICAL_BITS
}

/// The smallest timestamp of millisecond `ms`.
pub fn ts_of_millis(ms: u64) -> u64 {
    ms << TS_LOGICAL_BITS
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

/// What a conditional write expects of the record as it stands on the
/// partition's primary (`POST /meta/{table}/cas`, protocol 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// No live record; for object records, no current version or a delete
    /// marker.
    Absent,
    /// Object records only: the current version is not a delete marker and
    /// has this ETag.
    ETag(String),
    /// The live record is still the one the caller read, by its timestamp
    /// (0: none was live): an optimistic read-modify-write.
    Unchanged(u64),
}

/// Body of `POST /meta/{table}/cas` (protocol 2): check `condition` against
/// a quorum read and, if it holds, write `write` at quorum, all on the
/// partition's primary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionalWrite {
    pub condition: Condition,
    pub write: Record,
}

/// Body of `POST /meta/{table}/guarded` (protocol 2): write `write`, a
/// record of `{table}`, only if `condition` holds on the record `guard_key`
/// of `guard_table` (in the same partition), checked and written under the
/// guard key's lock on the partition's primary. So a write to one key is
/// serialised with the conditional writes of another: a multipart part
/// lands only while its upload is open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardedWrite {
    pub guard_table: Table,
    pub guard_key: Vec<u8>,
    pub condition: Condition,
    pub write: Record,
}

/// Answer of `POST /meta/{table}/cas` (protocol 2), and of
/// `POST /meta/{table}/guarded` (then `record` is the guard record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionalOutcome {
    /// Whether the condition held and the write is durable at quorum.
    pub written: bool,
    /// The record as it now stands (after the write, or the one that made
    /// the condition fail), tombstones included; None when there is none.
    pub record: Option<Record>,
}

/// What `GET /layout` and `POST /layout` answer: the node's layout history
/// and its registry of nodes (each entry with its timestamp).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutSnapshot {
    pub history: crate::layout::LayoutHistory,
    pub registry: Vec<(u64, crate::placement::LayoutEntry)>,
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
    /// The internal protocol a request or answer speaks ([`super::PROTOCOL`]);
    /// absent from 0.1 processes.
    pub const PROTOCOL: &str = "x-fd-protocol";
    /// The layout epoch the caller acts in (metadata requests), or the
    /// node's own (a fenced answer).
    pub const EPOCH: &str = "x-fd-epoch";
    /// Why a metadata request was fenced: `stale` (the caller's epoch is
    /// older than the node's), `behind` (newer: send the node the layout
    /// first), `not-primary` (a conditional write sent to a node that is not
    /// the partition's primary at that epoch).
    pub const FENCE: &str = "x-fd-fence";
    /// Answers of a scan: `1` when the range holds more records than were
    /// sent (a count or byte bound cut the page).
    pub const MORE: &str = "x-fd-more";
    /// The name of the process that sends a request (a node id, a
    /// gateway's name), or the node id on an answer: the receiver counts
    /// each process's clock once.
    pub const SENDER: &str = "x-fd-sender";
    /// On an answer: the answering node's clock when it answered (ms since
    /// the Unix epoch), so that callers learn the storage nodes' time.
    pub const TIME: &str = "x-fd-time";
    /// HMAC of an answer under the cluster secret, bound to the request's
    /// signature (see `crate::auth::answer_tag`).
    pub const ANSWER_TAG: &str = "x-fd-answer-tag";
    /// On a conditional write the 0.1 way: a storage node forwarded it to
    /// the node that must check it, which checks it itself rather than
    /// forwarding it again.
    pub const FORWARDED: &str = "x-fd-forwarded";
}

/// The internal protocol this release speaks. 0.1 sent no version (1):
/// no epochs, no answer tags, conditional writes checked on the node asked.
pub const PROTOCOL: u32 = 2;

/// Status of a fenced metadata request (see [`header::FENCE`]).
pub const STATUS_FENCED: u16 = 409;

/// Status a node answers to a chunk GET when its stored copy fails its
/// checksum; the client maps it to `ClientError::Corrupt`.
pub const STATUS_CHUNK_CORRUPT: u16 = 409;
