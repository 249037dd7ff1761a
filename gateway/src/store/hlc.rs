//! Hybrid logical clock: timestamps that follow wall time but never go
//! backwards, and move past any timestamp this process has seen, so that a
//! later write from any gateway wins last-writer-wins.
//!
//! A timestamp from the cluster that is more than [`MAX_AHEAD`] ahead of
//! this process's clock is not followed: one node with a clock far in the
//! future would otherwise drag every timestamp of the cluster with it. Such
//! a timestamp is logged and counted (`flexdrive_hlc_future_timestamps_total`);
//! a write stamped that far ahead still wins over later ones until real time
//! catches up, which is what a clock that wrong costs (and why storage
//! nodes refuse such writes, and `Tables` refuses to send them).
//!
//! A process whose clock is behind the storage nodes' (the median of their
//! clocks, as their answers tell it: `chunkstore::ClusterClock`) stamps by
//! their time instead: its writes would otherwise lose to earlier writes
//! for as long as its clock is behind, though it acknowledged them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chunkstore::ClusterClock;

pub use chunkstore::wire::ts_millis;
use chunkstore::wire::ts_of_millis;

/// How far ahead of the local clock a remote timestamp may be and still be
/// followed: far more than NTP-synchronised clocks differ, far less than a
/// misconfigured clock (minutes, hours) would drag everybody.
pub const MAX_AHEAD: Duration = Duration::from_secs(60);

/// Least time between two log lines about refused timestamps.
const WARN_EVERY_MS: u64 = 10_000;

#[derive(Default)]
pub struct Hlc {
    last: AtomicU64,
    refused: AtomicU64,
    last_warning_ms: AtomicU64,
    /// The storage nodes' time, when this process talks to them.
    cluster: Option<Arc<ClusterClock>>,
}

impl Hlc {
    pub fn new() -> Hlc {
        Hlc::default()
    }

    /// A clock that never runs behind the storage nodes' `cluster` time.
    pub fn following(cluster: Arc<ClusterClock>) -> Hlc {
        Hlc {
            cluster: Some(cluster),
            ..Hlc::default()
        }
    }

    /// A timestamp greater than every one issued or followed before.
    pub fn now(&self) -> u64 {
        let wall = ts_of_millis(self.reference_ms());
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            let next = wall.max(prev + 1);
            match self
                .last
                .compare_exchange_weak(prev, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(actual) => prev = actual,
            }
        }
    }

    /// This process's clock, or the storage nodes' where that is later (ms);
    /// unlike [`Hlc::now`] it does not follow timestamps read from records.
    pub fn reference_ms(&self) -> u64 {
        let own = wall_ms();
        self.cluster.as_ref().map_or(own, |c| own.max(c.now_ms()))
    }

    /// Moves the clock past a timestamp read from the cluster, unless it is
    /// more than [`MAX_AHEAD`] in the future (then it is counted instead).
    pub fn observe(&self, ts: u64) {
        let now_ms = self.reference_ms();
        let limit = ts_of_millis(now_ms + MAX_AHEAD.as_millis() as u64);
        if ts > limit {
            self.refused.fetch_add(1, Ordering::Relaxed);
            let last = self.last_warning_ms.load(Ordering::Relaxed);
            if now_ms.saturating_sub(last) >= WARN_EVERY_MS
                && self
                    .last_warning_ms
                    .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                tracing::warn!(
                    ahead_ms = ts_millis(ts).saturating_sub(now_ms),
                    "a record carries a timestamp far ahead of this clock; not followed (is a node's clock wrong?)"
                );
            }
            return;
        }
        self.last.fetch_max(ts, Ordering::AcqRel);
    }

    /// Remote timestamps refused for being too far ahead, since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_increase_and_pass_observed_ones() {
        let hlc = Hlc::new();
        let a = hlc.now();
        let b = hlc.now();
        assert!(b > a);
        let future = b + ts_of_millis(10_000);
        hlc.observe(future);
        assert!(hlc.now() > future);
        assert!(ts_millis(a) > 1_600_000_000_000);
        assert_eq!(hlc.refused(), 0);
    }

    #[test]
    fn a_timestamp_far_ahead_is_not_followed() {
        let hlc = Hlc::new();
        let ten_minutes_ahead = ts_of_millis(wall_ms() + 600_000);
        hlc.observe(ten_minutes_ahead);
        let next = hlc.now();
        assert!(
            next < ts_of_millis(wall_ms() + 1000),
            "the clock jumped ahead"
        );
        assert_eq!(hlc.refused(), 1);
    }
}
