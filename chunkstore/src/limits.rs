//! Every limit of the storage node and its client, in one place, with the
//! reason beside it.

use std::time::Duration;

/// Largest chunk a node stores or serves. Chunks default to 1 MiB; the cap
/// keeps a chunk read whole into memory (to verify its checksum) bounded.
pub const MAX_CHUNK_SIZE: u64 = 64 * 1024 * 1024;

/// Largest postcard header in a chunk file. It holds the owner (bucket id,
/// key of at most 1024 bytes, version); anything bigger is a corrupt file.
pub const MAX_CHUNK_HEADER_LEN: u32 = 16 * 1024;

/// Largest body of a metadata request (`merge`). Bounds the memory one
/// request can pin on a node.
pub const MAX_META_BODY: u64 = 64 * 1024 * 1024;

/// Largest metadata response the client accepts (a scan of up to
/// [`MAX_SCAN_LIMIT`] records). A node never builds a bigger one on purpose.
pub const MAX_META_RESPONSE: u64 = 256 * 1024 * 1024;

/// Most records one scan returns, whatever the caller asks: bounds the
/// response size and the time a read transaction stays open.
pub const MAX_SCAN_LIMIT: u32 = 10_000;

/// Most bytes (keys and values) one scan answer carries past its first
/// record: records grow with an object's chunks (about 110 bytes per 1 MiB
/// chunk, so a 2.4 GiB object's record is some 270 KB), and a page of them
/// must stay far below [`MAX_META_RESPONSE`] and [`MAX_META_BODY`] (an
/// anti-entropy push sends what a scan read). Nodes take a lower bound in
/// tests ([`crate::StorageConfig::scan_bytes`]).
pub const MAX_SCAN_BYTES: usize = 8 * 1024 * 1024;

/// How far ahead of a node's clock a record's timestamp may be: a writer
/// whose clock is further ahead is refused (400) rather than let its writes
/// win over every later one for as long as its clock is wrong. Gateways
/// follow timestamps at most 60 s ahead (their hybrid logical clock), so
/// this leaves 30 s for the clocks of writer and node to differ.
pub const MAX_RECORD_AHEAD: Duration = Duration::from_secs(90);

/// Conditional writes whose keys a primary serialises independently: keys
/// hash onto this many locks (a collision only serialises two unrelated
/// keys).
pub const PRIMARY_KEY_LOCKS: usize = 1024;

/// Chunks one `GET /chunks` answers at most (about 1 KiB each with the
/// longest keys, so a page stays near 10 MiB).
pub const MAX_CHUNK_LIST: u32 = 10_000;

/// How far the `x-amz-date` of a signed request may be from the node's clock,
/// either way. Same window as AWS; it limits replay of captured requests.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// Whole-request timeout on the client (connect, send, read the body). A
/// chunk of a few MiB on a LAN takes milliseconds; a stuck node must not hold
/// a gateway request forever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Connect timeout on the client: a dead node is detected quickly so the
/// gateway can fail over to another replica.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a node waits for the headers of the next request on a
/// connection, idle keep-alive time included (hyper's header read timeout),
/// before it closes the connection: drops slowloris clients and idle sockets.
pub const SERVER_HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the client keeps idle pooled connections. Well under
/// [`SERVER_HEADER_TIMEOUT`], so the client drops an idle connection before
/// the node closes it and never sends a request into a closing socket.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// Idle connections kept per node in the client's pool.
pub const POOL_MAX_IDLE_PER_HOST: usize = 64;

/// How long `shutdown` waits for requests in flight before it drops them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How much of an error body the client keeps in [`crate::ClientError::Status`].
pub const MAX_ERROR_TEXT: usize = 512;

/// Largest error body the client reads at all.
pub const MAX_ERROR_BODY: u64 = 64 * 1024;

/// Most connections a node serves at once; further ones wait in the listen
/// backlog. With request bodies capped at [`MAX_CHUNK_SIZE`], this bounds the
/// memory requests can pin (gateways keep far fewer, pooled).
pub const MAX_CONNECTIONS: usize = 1024;

/// Largest body a node reads on requests that should not have one (GET,
/// DELETE); a little slack for odd clients, no room for abuse.
pub const MAX_EMPTY_BODY: u64 = 4 * 1024;

/// Pause after a failed accept (e.g. out of file descriptors) before retrying,
/// so the accept loop does not spin.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How long a readiness result is reused: probes come every few seconds from
/// several sources, and each check writes and fsyncs a file.
pub const READY_CACHE: Duration = Duration::from_secs(2);

/// File in the data dir that the readiness check writes, fsyncs and removes.
pub const READY_PROBE_FILE: &str = ".ready-probe";

/// Largest body of `POST /chunks/doomed` (and `/forget`): about 240,000
/// chunk ids; callers send more in several requests.
pub const MAX_DOOM_BODY: u64 = 4 * 1024 * 1024;

/// Chunk ids a caller sends in one `POST /chunks/doomed`.
pub const DOOM_BATCH: usize = 100_000;
