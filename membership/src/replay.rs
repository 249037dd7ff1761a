//! The replay cache: which authenticated datagrams were already received.
//!
//! A datagram is known by its sender's timestamp and random nonce. Entries
//! are kept as long as the clock check would still accept their datagram
//! (`|now - sent_at| <= window`); past that the datagram is refused as stale,
//! so forgetting it reopens nothing. Remote clocks are not monotonic, hence an
//! ordered set rather than a queue: eviction always takes the oldest first.

use std::collections::BTreeSet;

use crate::auth::Nonce;

/// Why the cache refused a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Already received within the window.
    Replay,
    /// The cache is at its bound with entries that are all still live.
    Full,
}

pub(crate) struct ReplayCache {
    seen: BTreeSet<(u64, Nonce)>,
    capacity: usize,
    window_ms: u64,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize, window_ms: u64) -> Self {
        debug_assert!(capacity > 0);
        Self {
            seen: BTreeSet::new(),
            capacity,
            window_ms,
        }
    }

    /// Records a datagram the clock check accepted (`sent_at_ms` within the
    /// window of `now_ms`), or says why it must be dropped.
    pub(crate) fn insert(
        &mut self,
        sent_at_ms: u64,
        nonce: Nonce,
        now_ms: u64,
    ) -> Result<(), Refused> {
        debug_assert!(sent_at_ms.abs_diff(now_ms) <= self.window_ms);
        self.evict(now_ms);
        let key = (sent_at_ms, nonce);
        if self.seen.contains(&key) {
            return Err(Refused::Replay);
        }
        // Full means a key holder sends far more than gossip does. Refusing
        // new datagrams keeps memory bounded and loses only gossip, which
        // SWIM retries; evicting a live entry instead would let its datagram
        // be replayed.
        if self.seen.len() >= self.capacity {
            return Err(Refused::Full);
        }
        self.seen.insert(key);
        Ok(())
    }

    /// Forgets datagrams the clock check now refuses by itself.
    fn evict(&mut self, now_ms: u64) {
        let oldest_live = now_ms.saturating_sub(self.window_ms);
        while self
            .seen
            .first()
            .is_some_and(|(sent_at, _)| *sent_at < oldest_live)
        {
            self.seen.pop_first();
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: u64 = 1_000;

    fn nonce(n: u8) -> Nonce {
        [n; 12]
    }

    #[test]
    fn the_same_datagram_is_refused_the_second_time() {
        let mut cache = ReplayCache::new(10, WINDOW);
        assert_eq!(cache.insert(5_000, nonce(1), 5_000), Ok(()));
        assert_eq!(cache.insert(5_000, nonce(1), 5_001), Err(Refused::Replay));
        // Same nonce at another time, or another nonce at the same time: new.
        assert_eq!(cache.insert(5_001, nonce(1), 5_001), Ok(()));
        assert_eq!(cache.insert(5_000, nonce(2), 5_001), Ok(()));
    }

    #[test]
    fn entries_are_kept_exactly_as_long_as_the_window_accepts_them() {
        let mut cache = ReplayCache::new(10, WINDOW);
        cache.insert(5_000, nonce(1), 5_000).unwrap();
        // At the window's edge the datagram would still pass the clock check.
        assert_eq!(
            cache.insert(5_000, nonce(1), 5_000 + WINDOW),
            Err(Refused::Replay)
        );
        // One millisecond later it is stale, and the entry goes.
        cache.insert(6_001, nonce(2), 5_001 + WINDOW).unwrap();
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn datagrams_from_a_clock_ahead_stay_until_they_are_stale() {
        let mut cache = ReplayCache::new(10, WINDOW);
        cache.insert(5_900, nonce(1), 5_000).unwrap();
        cache.insert(5_000, nonce(2), 5_000).unwrap();
        cache.insert(6_000, nonce(3), 6_000).unwrap();
        assert_eq!(cache.len(), 3);
        // Evicting the entry sent at 5_000 must not take the one sent later
        // but received earlier.
        assert_eq!(cache.insert(5_900, nonce(1), 6_800), Err(Refused::Replay));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_full_cache_refuses_new_datagrams_until_entries_expire() {
        let mut cache = ReplayCache::new(3, WINDOW);
        for n in 0..3 {
            cache.insert(5_000, nonce(n), 5_000).unwrap();
        }
        assert_eq!(cache.insert(5_000, nonce(9), 5_000), Err(Refused::Full));
        // A replay is still told apart from a new datagram.
        assert_eq!(cache.insert(5_000, nonce(0), 5_000), Err(Refused::Replay));
        assert_eq!(cache.len(), 3);
        // Once the old entries are stale there is room again.
        assert_eq!(cache.insert(6_500, nonce(9), 6_500), Ok(()));
        assert_eq!(cache.len(), 1);
    }
}
