//! What time the cluster says it is, as this process sees it: every signed
//! request carries its sender's name (`x-fd-sender`) and time
//! (`x-amz-date`), every answer of a storage node its node id and clock
//! (`x-fd-sender`, `x-fd-time`, under the answer tag); the median, over the
//! processes heard from lately and this one itself, of how far their clocks
//! are from this one tells whether this process's clock is off.
//!
//! A storage node uses that estimate, not its own clock alone, to refuse
//! records stamped too far in the future: a node whose own clock is ahead
//! would otherwise accept the records of a writer whose clock is ahead as
//! well, and they would win over every later write. A gateway (or a
//! node's workers) uses the estimate it learns from the nodes' answers to
//! refuse such a write before sending it anywhere, so that no replica
//! keeps a part of it. One sample per process, so a process that talks a
//! lot weighs no more than one that talks little.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Senders remembered at most (processes of one cluster are far fewer).
const MAX_SENDERS: usize = 1024;

/// A sender not heard from for this long no longer counts.
const SENDER_TTL: Duration = Duration::from_secs(300);

/// Other senders needed before the estimate is used at all.
const MIN_SENDERS: usize = 2;

/// Offsets smaller than this are taken for zero: signing times have
/// one-second resolution and include the time a request was on its way.
const NOISE: Duration = Duration::from_secs(5);

/// An offset beyond this is logged as a wrong clock (and shown by the
/// `flexdrive_storage_clock_skew_seconds` gauge anyway).
const WARN_BEYOND: Duration = Duration::from_secs(60);

/// How long a computed estimate is used (every timestamp a gateway makes
/// asks for it) unless a sender's clock moved meanwhile.
const ESTIMATE_KEPT: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct ClusterClock {
    /// Per sender: its time minus this node's, in ms, and when last heard.
    senders: Mutex<HashMap<String, (i64, Instant)>>,
    /// The last estimate and when it was made; None once a sender moved.
    estimate: Mutex<Option<(Instant, i64)>>,
    last_warning: Mutex<Option<Instant>>,
}

/// This process's clock, ms since the Unix epoch (0 before it).
pub fn wall_ms() -> u64 {
    millis(SystemTime::now()).max(0) as u64
}

fn millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

impl ClusterClock {
    /// Records the time `sender` gave (a request's signing time, an
    /// answer's clock) as of `now`.
    pub fn observe(&self, sender: &str, signed_at: SystemTime, now: SystemTime) {
        let offset = millis(signed_at) - millis(now);
        let moved = {
            let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
            if senders.len() >= MAX_SENDERS && !senders.contains_key(sender) {
                let oldest = senders
                    .iter()
                    .min_by_key(|(_, (_, seen))| *seen)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    senders.remove(&oldest);
                }
            }
            let previous = senders.insert(sender.to_string(), (offset, Instant::now()));
            previous.is_none_or(|(was, _)| {
                (was - offset).unsigned_abs() >= NOISE.as_millis() as u64 / 2
            })
        };
        // (The senders' lock is released first: `offset_ms` takes the two
        // the other way round.)
        if moved {
            *self.estimate.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    /// How far the cluster's clocks are from this node's (median over the
    /// recent senders and this node, ms; positive: they are ahead). 0 until
    /// enough senders were heard, and within the noise.
    pub fn offset_ms(&self) -> i64 {
        let mut estimate = self.estimate.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, offset)) = *estimate
            && at.elapsed() < ESTIMATE_KEPT
        {
            return offset;
        }
        let offset = self.compute_offset_ms();
        *estimate = Some((Instant::now(), offset));
        offset
    }

    fn compute_offset_ms(&self) -> i64 {
        let mut offsets: Vec<i64> = {
            let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
            senders.retain(|_, (_, seen)| seen.elapsed() < SENDER_TTL);
            if senders.len() < MIN_SENDERS {
                return 0;
            }
            senders.values().map(|(offset, _)| *offset).collect()
        };
        offsets.push(0);
        offsets.sort_unstable();
        // The lower median: on a tie the earlier time, which refuses more
        // records from the future rather than fewer.
        let median = offsets[(offsets.len() - 1) / 2];
        if median.unsigned_abs() < NOISE.as_millis() as u64 {
            return 0;
        }
        self.warn(median);
        median
    }

    /// The cluster's time by this node's estimate (ms since the Unix epoch).
    pub fn now_ms(&self) -> u64 {
        let own = millis(SystemTime::now());
        (own + self.offset_ms()).max(0) as u64
    }

    fn warn(&self, median: i64) {
        if median.unsigned_abs() < WARN_BEYOND.as_millis() as u64 {
            return;
        }
        let mut last = self.last_warning.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
            return;
        }
        *last = Some(Instant::now());
        tracing::warn!(
            skew_secs = -median / 1000,
            "this process's clock differs from the clocks of the processes it talks to; check NTP (records are judged by their time)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_senders_win_however_much_a_few_talk() {
        let clock = ClusterClock::default();
        let now = SystemTime::now();
        assert_eq!(clock.offset_ms(), 0, "no estimate before enough senders");
        // This node is 10 minutes ahead of three of its callers; a fourth
        // (a gateway ahead too) agrees with it and talks a hundred times more.
        for _ in 0..100 {
            clock.observe("gateway-ahead", now, now);
        }
        for sender in ["node-a", "node-b", "gateway-c"] {
            clock.observe(sender, now - Duration::from_secs(600), now);
        }
        let offset = clock.offset_ms();
        assert!((offset + 600_000).abs() < 1000, "offset {offset}");
        assert!(clock.now_ms() < millis(SystemTime::now()) as u64 - 590_000);
    }

    #[test]
    fn a_node_with_the_right_time_is_not_moved_by_two_wrong_ones() {
        let clock = ClusterClock::default();
        let now = SystemTime::now();
        clock.observe("node-ahead", now + Duration::from_secs(600), now);
        clock.observe("gateway-ahead", now + Duration::from_secs(600), now);
        clock.observe("node-b", now, now);
        clock.observe("gateway-a", now, now);
        assert_eq!(clock.offset_ms(), 0);
    }

    #[test]
    fn a_tie_takes_the_earlier_time() {
        let clock = ClusterClock::default();
        let now = SystemTime::now();
        // Ahead itself, it heard from one caller ahead and two behind.
        clock.observe("gateway-ahead", now, now);
        clock.observe("node-a", now - Duration::from_secs(600), now);
        clock.observe("node-b", now - Duration::from_secs(600), now);
        assert!((clock.offset_ms() + 600_000).abs() < 1000);
    }

    #[test]
    fn small_differences_are_noise() {
        let clock = ClusterClock::default();
        let now = SystemTime::now();
        for sender in ["a", "b", "c"] {
            clock.observe(sender, now - Duration::from_secs(1), now);
        }
        assert_eq!(clock.offset_ms(), 0);
    }
}
