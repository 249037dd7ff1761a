//! A small log-linear latency histogram (microseconds), in the spirit of
//! HdrHistogram: fixed memory, about 1.6 % relative precision, mergeable.

/// Values below this are counted exactly (one bucket per microsecond).
const LINEAR_LIMIT: u64 = 128;
/// Sub-buckets per power of two above `LINEAR_LIMIT` (2^6 = 64: ~1.6 % precision).
const SUB_BITS: u32 = 6;
const SUB_BUCKETS: u64 = 1 << SUB_BITS;
/// Enough buckets for any `u64` value: 128 exact + 57 powers of two x 64.
const BUCKETS: usize = LINEAR_LIMIT as usize + (64 - 7) * SUB_BUCKETS as usize;

/// Latency histogram in microseconds. Memory is fixed (`BUCKETS` counters).
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
            sum: 0,
        }
    }
}

fn bucket_of(v: u64) -> usize {
    if v < LINEAR_LIMIT {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= 7
    let top = v >> (exp - SUB_BITS); // in [64, 128)
    debug_assert!((SUB_BUCKETS..2 * SUB_BUCKETS).contains(&top));
    LINEAR_LIMIT as usize + (exp as usize - 7) * SUB_BUCKETS as usize + (top - SUB_BUCKETS) as usize
}

/// Highest value that falls into bucket `idx`.
fn bucket_upper(idx: usize) -> u64 {
    if (idx as u64) < LINEAR_LIMIT {
        return idx as u64;
    }
    let rel = idx as u64 - LINEAR_LIMIT;
    let exp = rel / SUB_BUCKETS + 7;
    let top = rel % SUB_BUCKETS + SUB_BUCKETS;
    let shift = exp - SUB_BITS as u64;
    let upper = (u128::from(top + 1) << shift) - 1;
    u64::try_from(upper).unwrap_or(u64::MAX)
}

impl Histogram {
    /// Records one value in microseconds.
    pub fn record(&mut self, micros: u64) {
        self.counts[bucket_of(micros)] += 1;
        self.total += 1;
        self.max = self.max.max(micros);
        self.sum += u128::from(micros);
    }

    /// Adds every value of `other` to `self`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// Number of recorded values.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Largest recorded value (exact).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Mean of the recorded values (exact), 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value at quantile `q` (0.0..=1.0): the upper edge of the bucket that
    /// holds the rank, never above the exact maximum. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (idx, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_upper(idx).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        for v in [
            0,
            1,
            127,
            128,
            129,
            255,
            256,
            1000,
            1 << 20,
            u64::MAX / 3,
            u64::MAX,
        ] {
            let b = bucket_of(v);
            assert!(b < BUCKETS, "{v}");
            assert!(bucket_upper(b) >= v, "{v}");
            if b > 0 {
                assert!(bucket_upper(b - 1) < v, "{v}");
            }
        }
    }

    #[test]
    fn quantiles_are_within_precision() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.02, "{p50}");
        assert_eq!(h.quantile(1.0), 10_000);
        assert_eq!(h.max(), 10_000);
    }
}
