//! Hybrid logical clock: timestamps that follow wall time but never go
//! backwards, and move past any timestamp this gateway has seen, so that a
//! later write from any gateway wins last-writer-wins.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Low bits of a timestamp hold a counter for events in the same millisecond.
const LOGICAL_BITS: u32 = 16;

#[derive(Debug, Default)]
pub struct Hlc {
    last: AtomicU64,
}

impl Hlc {
    pub fn new() -> Hlc {
        Hlc::default()
    }

    /// A timestamp greater than every one issued or observed before.
    pub fn now(&self) -> u64 {
        let wall = wall_ms() << LOGICAL_BITS;
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

    /// Moves the clock past a timestamp read from the cluster.
    pub fn observe(&self, ts: u64) {
        self.last.fetch_max(ts, Ordering::AcqRel);
    }
}

/// Milliseconds since the Unix epoch of a timestamp.
pub fn ts_millis(ts: u64) -> u64 {
    ts >> LOGICAL_BITS
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
        let future = b + (10_000 << LOGICAL_BITS);
        hlc.observe(future);
        assert!(hlc.now() > future);
        assert!(ts_millis(a) > 1_600_000_000_000);
    }
}
