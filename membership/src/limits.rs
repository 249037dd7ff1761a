//! Every bound and fixed interval of the crate, with the reason beside it.

use std::time::Duration;

use crate::auth;

/// Largest datagram we send or accept: below a 1500-byte Ethernet MTU so
/// gossip is never fragmented.
pub(crate) const MAX_PACKET_SIZE: usize = 1400;

/// Largest foca message: the authentication envelope (header and tag) must
/// fit beside it within [`MAX_PACKET_SIZE`].
pub(crate) const MAX_FOCA_PACKET_SIZE: usize = MAX_PACKET_SIZE - auth::OVERHEAD;

/// How far an authenticated datagram's send time may be from our clock,
/// either way. The same skew the cluster's signed internal HTTP requests
/// accept (chunkstore's `MAX_CLOCK_SKEW`), so a node whose clock is minutes
/// off still gossips; it is also how long a datagram could be replayed, were
/// it not for the replay cache.
pub(crate) const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// Authenticated datagrams remembered to refuse replays. Entries leave once
/// older than [`MAX_CLOCK_SKEW`], when the clock check refuses them anyway. A
/// member receives a few tens of datagrams a second whatever the cluster size
/// (SWIM's fan-out is fixed), so a window holds tens of thousands; at about
/// 50 bytes each the cache stays near 10 MiB at its bound.
pub(crate) const MAX_REPLAY_ENTRIES: usize = 200_000;

/// Cluster size foca's LAN preset is tuned for (how often an update is
/// retransmitted, how long suspicion lasts). Flexdrive clusters are tens of
/// processes; both values grow only with log10 of it.
pub(crate) const CLUSTER_SIZE_HINT: u32 = 32;

/// Node ids and zones travel in every packet header (source and destination),
/// so they must stay small for updates to fit beside them.
pub(crate) const MAX_ID_LEN: usize = 128;
pub(crate) const MAX_ZONE_LEN: usize = 64;

/// Members remembered, down ones included. Beyond it the longest-down are
/// forgotten, so ids of processes that never come back cannot grow memory
/// forever. Also bounds the load table.
pub(crate) const MAX_MEMBERS: usize = 1024;

/// Pending foca timers. foca keeps a few per member (suspicion, removal) plus
/// a few periodic ones, so reaching this means a bug, not load.
pub(crate) const MAX_TIMERS: usize = 4 * MAX_MEMBERS + 64;

/// Seed addresses announced to per round: a headless Service resolves to
/// every pod, which must stay a bounded burst of packets.
pub(crate) const MAX_SEED_ADDRS: usize = 64;

/// Resolved seed rounds waiting for the agent; each round carries every
/// address, so one pending round is enough.
pub(crate) const SEED_QUEUE: usize = 1;

/// One DNS lookup may not hold up the next resolution round longer than this.
pub(crate) const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// Seed re-resolution while we know fewer members than seeds, in probe
/// periods (3 s with the production 1 s period): pods of a headless Service
/// appear one by one at startup.
pub(crate) const SEED_RETRY_FAST_PERIODS: u32 = 3;

/// Seed re-resolution otherwise (30 s in production), to heal partitions and
/// to find pods that were rescheduled.
pub(crate) const SEED_RETRY_SLOW_PERIODS: u32 = 30;

/// Re-broadcast of our load report, in probe periods (5 s in production), so
/// members that joined after the last change learn it too.
pub(crate) const LOAD_REBROADCAST_PERIODS: u32 = 5;

/// How long `shutdown` waits for the agent to send its leave messages.
pub(crate) const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// Accepted probe periods: shorter floods the network with probes, longer
/// takes minutes to notice a crash.
pub(crate) const MIN_PROBE_PERIOD: Duration = Duration::from_millis(10);
pub(crate) const MAX_PROBE_PERIOD: Duration = Duration::from_secs(60);
