//! Limits and tunables of the gateway, with the reason for each.

use std::time::Duration;

/// Chunk size objects are cut into: big enough that per-chunk overhead
/// (one request per replica, one checksum) is small, small enough that a
/// window of them fits comfortably in memory per request.
pub const DEFAULT_CHUNK_SIZE: usize = 1024 * 1024;

/// Chunks of one PUT in flight at once; memory per PUT is about
/// (WRITE_WINDOW + 1) x chunk size.
pub const WRITE_WINDOW: usize = 4;

/// Chunks of one GET fetched ahead of the client.
pub const READ_AHEAD: usize = 3;

/// Copies of every chunk and of every metadata record.
pub const REPLICAS: usize = 3;

/// Metadata acknowledgements that make a write durable; reads ask as many,
/// so a read always overlaps the last acknowledged write (2 + 2 > 3).
pub const QUORUM: usize = 2;

pub use chunkstore::placement::{PARTITIONS, SYSTEM_PARTITION};

/// Nodes tried for one chunk replica before the write gives up (503).
pub const MAX_PLACEMENT_ATTEMPTS: usize = 6;

/// Largest object a single PUT accepts (S3's own limit).
pub const MAX_PUT_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// Largest browser POST upload. s3s reads a POST's file into memory before
/// the handler sees it, so this bounds the memory of one POST request.
pub const MAX_POST_OBJECT_SIZE: u64 = 64 * 1024 * 1024;

/// Largest object key, in bytes (S3's own limit).
pub const MAX_KEY_LEN: usize = 1024;

/// Keys per listing page (S3's own limit).
pub const MAX_LIST_KEYS: usize = 1000;

/// Records asked of each replica per scan round-trip while listing.
pub const SCAN_BATCH: u32 = 1000;

/// Scan rounds one listing request may make before it returns a truncated
/// page (many common prefixes in a row can otherwise mean a long walk).
pub const MAX_SCAN_ROUNDS: usize = 64;

/// Multipart limits from S3: part numbers 1..=10000, every part but the
/// last at least 5 MiB.
pub const MAX_PART_NUMBER: i32 = 10_000;
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// Parts per page of ListParts and GetObjectAttributes (S3's own limit).
pub const MAX_LIST_PARTS: i32 = 1000;

/// Times a metadata operation is tried again after a node fenced it for
/// its layout epoch (each time with the layout brought up to date): epochs
/// change seldom, so more than a few in a row means something is wrong.
pub const MAX_FENCED_RETRIES: usize = 4;

/// Pause before the n-th such retry (n times this): short, since the layout
/// was brought up to date just before.
pub const FENCED_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Times a read-modify-write of a record (a bucket's configuration, a key's
/// grants) is made again when another change got in between.
pub const MAX_UPDATE_ATTEMPTS: usize = 8;

/// How long a conditional write whose primary does not answer waits for it
/// to answer again (a restart takes a second or two) or for a newer layout
/// epoch with another primary (the layout leader takes the role away from a
/// node that stays down 3 s and does not answer): a client sees a slower
/// answer rather than an error while a node restarts.
pub const PRIMARY_FAILOVER_WAIT: Duration = Duration::from_secs(10);

/// How often the layout is asked again while waiting for a newer epoch.
pub const LAYOUT_POLL: Duration = Duration::from_millis(500);

/// Least time between two refreshes of the layout prompted by membership
/// changes (every load report is one).
pub const LAYOUT_REFRESH_MIN: Duration = Duration::from_millis(250);

/// How often the gateway refreshes the layout from storage nodes.
pub const LAYOUT_REFRESH: Duration = Duration::from_secs(2);

/// Tags per object and per bucket, and tag key / value lengths in UTF-16
/// code units (S3's own limits; S3 counts UTF-16 positions).
pub const MAX_OBJECT_TAGS: usize = 10;
pub const MAX_BUCKET_TAGS: usize = 50;
pub const MAX_TAG_KEY_LEN: usize = 128;
pub const MAX_TAG_VALUE_LEN: usize = 256;

/// CORS rules per bucket (S3's own limit).
pub const MAX_CORS_RULES: usize = 100;

/// Lifecycle rules per bucket (S3's own limit).
pub const MAX_LIFECYCLE_RULES: usize = 1000;

/// Rule IDs (CORS and lifecycle) are at most this long (S3's own limit).
pub const MAX_RULE_ID_LEN: usize = 255;

/// How long a gateway answers CORS from the bucket rules it read last: a
/// browser request then costs no quorum read, and another gateway's change
/// shows within this time (this gateway's own changes show at once).
pub const CORS_CACHE_TTL: Duration = Duration::from_secs(5);

/// Buckets whose CORS rules one gateway keeps cached.
pub const CORS_CACHE_ENTRIES: usize = 1024;

/// Time between lifecycle passes by default. S3 itself applies lifecycle
/// rules about once a day; a shorter interval only makes expiry less late.
pub const LIFECYCLE_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// Object and upload records one lifecycle pass looks at, at most; the next
/// pass goes on where this one stopped, so a big bucket is covered over
/// several passes and one pass never holds a gateway busy for long.
pub const LIFECYCLE_RECORDS_PER_PASS: usize = 20_000;

/// How long a gateway trusts an access key it looked up: a key deleted
/// through another gateway stops working within this time, and a client
/// does not cost a quorum read per request.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

/// Access keys (known or unknown) one gateway keeps cached.
pub const KEY_CACHE_ENTRIES: usize = 1024;

/// Longest access key looked up; longer ones are refused unread.
pub const MAX_ACCESS_KEY_LEN: usize = 128;

/// Longest name of an access key.
pub const MAX_KEY_NAME_LEN: usize = 128;

/// Largest admin API request body (they are small JSON documents).
pub const MAX_ADMIN_BODY: usize = 64 * 1024;

/// Time between durability passes (counting chunks below three copies and
/// repairing them). A change of the cluster (a node down or back, a
/// decommission) starts a pass at once, so this only bounds how stale the
/// figure gets while nothing changes.
pub const REPAIR_INTERVAL: Duration = Duration::from_secs(60);

/// How often the durability worker looks at membership and the layout for
/// changes that start a pass early.
pub const REPAIR_VIEW_CHECK: Duration = Duration::from_secs(1);

/// How long a storage node must be down before its chunks are copied
/// elsewhere and it is drained out of the layout: long enough that a restart
/// or a short network cut does not move data.
pub const DEAD_NODE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Object and part records one durability pass looks at, at most; the next
/// pass goes on where this one stopped (as the lifecycle worker does).
pub const REPAIR_RECORDS_PER_PASS: usize = 20_000;

/// Chunks one pass copies at most; the rest wait for the next pass, so a
/// big repair never floods the storage nodes.
pub const REPAIR_CHUNKS_PER_PASS: usize = 2_000;

/// Chunk copies in flight at once during a repair.
pub const REPAIR_CONCURRENCY: usize = 4;

/// Copies tried for one missing replica (other targets, other sources)
/// before the chunk waits for the next pass.
pub const REPAIR_ATTEMPTS: usize = 3;

/// Time between the end of one garbage-collection sweep over every chunk
/// file and the start of the next.
pub const GC_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// Age an unlisted chunk file must reach before the collector deletes it
/// (if no write lease holds it): writes longer than [`LEASE_AFTER`] hold a
/// lease, so this only has to outlast [`LEASE_TTL`] with a wide margin.
pub const GC_GRACE: Duration = Duration::from_secs(15 * 60);

/// The shortest grace an operator may set: a write commits without a lease
/// for up to [`LEASE_TTL`], so its chunks must not be taken sooner.
pub const MIN_GC_GRACE: Duration = Duration::from_secs(2 * 60);

/// A write that runs this long takes a write lease (see `store::lease`).
pub const LEASE_AFTER: Duration = Duration::from_secs(5);

/// How long one write lease (or the start of a write) covers it.
pub const LEASE_TTL: Duration = Duration::from_secs(60);

/// How often a write renews its lease while its body streams.
pub const LEASE_RENEW: Duration = Duration::from_secs(15);

/// How soon a failed renewal is tried again.
pub const LEASE_RETRY: Duration = Duration::from_secs(2);

/// What a write keeps of each lease for clocks that differ and requests
/// that take time: it commits only within `LEASE_TTL - LEASE_MARGIN` of a
/// renewal.
pub const LEASE_MARGIN: Duration = Duration::from_secs(20);

/// Pause between two passes of one sweep, so that a sweep never keeps the
/// storage nodes busy.
pub const GC_PASS_PAUSE: Duration = Duration::from_secs(1);

/// Chunk files one collector pass looks at, at most.
pub const GC_CHUNKS_PER_PASS: usize = 5_000;

/// How long the partition placement must stay unchanged before the garbage
/// collector sweeps: three anti-entropy rounds (each node pushes its records
/// to the current replicas every 10 minutes and on every change).
pub const GC_SETTLE: Duration = Duration::from_secs(30 * 60);

/// Chunk files asked of a node per listing request.
pub const GC_LIST_PAGE: usize = 1_000;

/// Time between two drains of the storage nodes' deletion queues.
pub const GC_DRAIN_INTERVAL: Duration = Duration::from_secs(2);

/// Pages of a node's deletion queue one drain takes, at most.
pub const GC_DRAIN_PAGES: usize = 20;

/// Fewest active storage nodes a cluster keeps: a node is drained (by an
/// operator or after the dead-node timeout) only if this many stay.
pub const MIN_ACTIVE_NODES: usize = REPLICAS;

/// How long a request that reaches a gateway just started waits for it to
/// learn the layout (the embedded server listens a moment before), and how
/// often it looks.
pub const FIRST_LAYOUT_WAIT: Duration = Duration::from_secs(10);
pub const FIRST_LAYOUT_POLL: Duration = Duration::from_millis(50);

/// How long the gateway's readiness result is reused (it costs a metadata
/// quorum read); the chart probes every 5 s.
pub const READY_CACHE: Duration = Duration::from_secs(2);

/// Partitions without quorum the admin status names (the count is always whole).
pub const MAX_LISTED_PARTITIONS: usize = 32;

/// Object records `GET /v1/buckets/{name}` counts at most; past this the
/// answer says its numbers are a lower bound.
pub const ADMIN_BUCKET_SCAN_RECORDS: usize = 100_000;

/// How long a gateway serves reads (GET, HEAD, listings) and authorization
/// checks from a bucket record it read before: saves one quorum read per
/// small GET (a permission changed through another gateway applies here
/// within this time). Writes always read
/// the bucket at quorum, so a bucket deleted (or re-created) through another
/// gateway never receives writes under a stale id; reads may see the old
/// bucket for at most this long.
pub const BUCKET_CACHE_TTL: Duration = Duration::from_secs(1);

/// Bucket records kept for [`BUCKET_CACHE_TTL`].
pub const BUCKET_CACHE_ENTRIES: usize = 1024;

/// How long a Complete may take to choose an upload's parts before anyone
/// may reopen the upload (its gateway died half-way).
pub const COMPLETING_LEASE: Duration = Duration::from_secs(30);

/// How often a request waiting for a Complete of the same upload looks again.
pub const UPLOAD_STATE_POLL: Duration = Duration::from_millis(100);

/// Changes of an upload's state one request tries (each refusal means
/// another request changed it meanwhile).
pub const MAX_UPLOAD_STEPS: usize = 16;

/// How long a completed or aborted upload is remembered, so that a
/// repeated Complete or Abort (an SDK retrying) gets its answer.
pub const UPLOAD_OUTCOME_KEEP: Duration = Duration::from_secs(60 * 60);

/// Time for the whole body of an admin request (they are small JSON).
pub const ADMIN_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a DeleteBucket may take to check its bucket is empty before
/// writes waiting for it cancel it (its gateway died half-way).
pub const BUCKET_DELETE_LEASE: Duration = Duration::from_secs(30);

/// How often a write waiting for a DeleteBucket's outcome looks again.
pub const BUCKET_DELETE_POLL: Duration = Duration::from_millis(100);
