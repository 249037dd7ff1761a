//! What became of the gossip datagrams a member received: handed to SWIM, or
//! dropped and why. The agent counts; [`crate::Membership::gossip_stats`] and
//! the metrics read, through shared atomics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a received datagram never reached SWIM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// No authentication envelope, and legacy peers are not accepted (a 0.1
    /// process, or anything else that is not our gossip).
    Unauthenticated,
    /// Starts like an authenticated datagram but is too short to be one.
    Malformed,
    /// Larger than we accept (see `limits`).
    Oversized,
    /// The MAC does not match: another cluster secret, or tampering.
    BadTag,
    /// Sent more than the accepted clock skew away from our clock.
    StaleOrFuture,
    /// Received before within the window.
    Replay,
    /// The replay cache is at its bound.
    CacheFull,
}

/// Gossip datagram counts since the member started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GossipStats {
    /// Authenticated datagrams handed to SWIM.
    pub accepted: u64,
    /// Unauthenticated datagrams handed to SWIM (only with `accept_legacy`).
    pub legacy_accepted: u64,
    /// Dropped: no MAC, and legacy peers are not accepted (a 0.1 process, a
    /// legacy-mode member's plain copy, or anything that is not gossip).
    pub unauthenticated: u64,
    /// Dropped: starts like an authenticated datagram, too short to be one.
    pub malformed: u64,
    /// Dropped: larger than a gossip datagram may be.
    pub oversized: u64,
    /// Dropped: the MAC does not match (another cluster secret, or tampering).
    pub bad_tag: u64,
    /// Dropped: sent too far from our clock, either way.
    pub stale_or_future: u64,
    /// Dropped: already received.
    pub replay: u64,
    /// Dropped: the replay cache is at its bound.
    pub cache_full: u64,
}

impl GossipStats {
    /// Dropped datagrams by reason, under the names metrics use.
    pub fn dropped_by_reason(&self) -> [(&'static str, u64); 7] {
        [
            ("unauthenticated", self.unauthenticated),
            ("malformed", self.malformed),
            ("oversized", self.oversized),
            ("bad_tag", self.bad_tag),
            ("stale_or_future", self.stale_or_future),
            ("replay", self.replay),
            ("cache_full", self.cache_full),
        ]
    }

    /// Every dropped datagram, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_by_reason()
            .iter()
            .fold(0, |sum, (_, n)| sum.saturating_add(*n))
    }
}

/// A live handle on a member's gossip counts: cheap to clone, readable
/// from any thread (a metrics scrape) while the member runs.
#[derive(Clone)]
pub struct GossipCounters(Arc<Counts>);

#[derive(Default)]
struct Counts {
    accepted: AtomicU64,
    legacy_accepted: AtomicU64,
    unauthenticated: AtomicU64,
    malformed: AtomicU64,
    oversized: AtomicU64,
    bad_tag: AtomicU64,
    stale_or_future: AtomicU64,
    replay: AtomicU64,
    cache_full: AtomicU64,
}

impl GossipCounters {
    pub(crate) fn new() -> Self {
        Self(Arc::default())
    }

    /// The counts now.
    pub fn stats(&self) -> GossipStats {
        // Independent counters: a scrape needs no consistent cut across them.
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let c = &self.0;
        GossipStats {
            accepted: read(&c.accepted),
            legacy_accepted: read(&c.legacy_accepted),
            unauthenticated: read(&c.unauthenticated),
            malformed: read(&c.malformed),
            oversized: read(&c.oversized),
            bad_tag: read(&c.bad_tag),
            stale_or_future: read(&c.stale_or_future),
            replay: read(&c.replay),
            cache_full: read(&c.cache_full),
        }
    }

    pub(crate) fn accepted(&self, legacy: bool) {
        let counter = if legacy {
            &self.0.legacy_accepted
        } else {
            &self.0.accepted
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dropped(&self, reason: Dropped) {
        let c = &self.0;
        let counter = match reason {
            Dropped::Unauthenticated => &c.unauthenticated,
            Dropped::Malformed => &c.malformed,
            Dropped::Oversized => &c.oversized,
            Dropped::BadTag => &c.bad_tag,
            Dropped::StaleOrFuture => &c.stale_or_future,
            Dropped::Replay => &c.replay,
            Dropped::CacheFull => &c.cache_full,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for GossipCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.stats().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_lands_in_its_own_count() {
        let counters = GossipCounters::new();
        let reasons = [
            Dropped::Unauthenticated,
            Dropped::Malformed,
            Dropped::Oversized,
            Dropped::BadTag,
            Dropped::StaleOrFuture,
            Dropped::Replay,
            Dropped::CacheFull,
        ];
        for (times, reason) in reasons.into_iter().enumerate() {
            for _ in 0..=times {
                counters.dropped(reason);
            }
        }
        counters.accepted(false);
        counters.accepted(true);
        counters.accepted(true);
        let stats = counters.clone().stats();
        let counts: Vec<u64> = stats.dropped_by_reason().iter().map(|(_, n)| *n).collect();
        assert_eq!(counts, [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(stats.dropped(), 28);
        assert_eq!((stats.accepted, stats.legacy_accepted), (1, 2));
    }
}
