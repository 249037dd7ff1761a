//! A storage node's metrics, every series labelled with its `node` id so
//! that several nodes can share one registry (`flexdrive server`).

use prometheus::{IntCounter, IntGauge};
use telemetry::{Bundle, BundleBuilder, gauge_bytes};

use crate::wire::NodeStatus;

/// Counters the request handlers bump; the disk gauges are sampled at scrape time.
#[derive(Clone)]
pub struct StorageMetrics {
    bundle: Bundle,
    pub(crate) chunk_reads: IntCounter,
    pub(crate) chunk_writes: IntCounter,
    pub(crate) chunk_read_failures: IntCounter,
    pub(crate) chunk_write_failures: IntCounter,
    scrub_verified: IntCounter,
    scrub_corrupt: IntCounter,
    scrub_passes: IntCounter,
}

impl StorageMetrics {
    /// `status` samples the node (None once it is gone).
    pub(crate) fn new(
        node_id: &str,
        status: impl Fn() -> Option<NodeStatus> + Send + Sync + 'static,
        clock: std::sync::Arc<crate::clock::ClusterClock>,
    ) -> StorageMetrics {
        let mut b = BundleBuilder::new().with_label("node", node_id);
        let chunk_reads = b.counter(
            "flexdrive_chunk_reads_total",
            "Chunk reads this storage node served.",
        );
        let chunk_writes = b.counter(
            "flexdrive_chunk_writes_total",
            "Chunks this storage node wrote durably.",
        );
        let failures = b.counter_vec(
            "flexdrive_chunk_failures_total",
            "Chunk reads or writes this storage node failed (missing, corrupt, i/o error, bad checksum).",
            &["op"],
        );
        let scrub_verified = b.counter(
            "flexdrive_scrub_verified_chunks_total",
            "Chunk files the scrubber read back whole and found intact.",
        );
        let scrub_corrupt = b.counter(
            "flexdrive_scrub_corrupt_chunks_total",
            "Chunk files the scrubber found corrupt (quarantined, then replaced from a good copy).",
        );
        let scrub_passes = b.counter(
            "flexdrive_scrub_passes_total",
            "Complete scrub passes over every chunk file of this node.",
        );
        let gauges: [IntGauge; 5] = [
            b.gauge(
                "flexdrive_storage_capacity_bytes",
                "Capacity of this storage node (--capacity, else its filesystem's size).",
            ),
            b.gauge(
                "flexdrive_storage_used_bytes",
                "Bytes of chunk files on this storage node.",
            ),
            b.gauge(
                "flexdrive_storage_free_bytes",
                "Free bytes on this storage node.",
            ),
            b.gauge("flexdrive_storage_chunks", "Chunks on this storage node."),
            b.gauge(
                "flexdrive_storage_quarantined_chunks",
                "Corrupt chunk files waiting for a good copy to replace them.",
            ),
        ];
        let skew = b.gauge(
            "flexdrive_storage_clock_skew_seconds",
            "How far this node's clock is ahead of (or, negative, behind) the clocks of the processes that call it: the median over their recent requests (0 within a few seconds).",
        );
        b.on_collect(move || {
            skew.set(-clock.offset_ms() / 1000);
            if let Some(s) = status() {
                let values = [
                    s.capacity_bytes,
                    s.used_bytes,
                    s.free_bytes,
                    s.chunk_count,
                    s.quarantined_chunks,
                ];
                for (gauge, value) in gauges.iter().zip(values) {
                    gauge.set(gauge_bytes(value));
                }
            }
        });
        StorageMetrics {
            chunk_read_failures: failures.with_label_values(&["read"]),
            chunk_write_failures: failures.with_label_values(&["write"]),
            chunk_reads,
            chunk_writes,
            scrub_verified,
            scrub_corrupt,
            scrub_passes,
            bundle: b.build(),
        }
    }

    /// The node's metrics, to register in the process's registry.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    pub(crate) fn scrub_verified(&self) {
        self.scrub_verified.inc();
    }

    pub(crate) fn scrub_corrupt(&self) {
        self.scrub_corrupt.inc();
    }

    pub(crate) fn scrub_pass_done(&self) {
        self.scrub_passes.inc();
    }

    /// Counts a chunk read or write by its outcome.
    pub(crate) fn count<T, E>(&self, write: bool, result: &Result<T, E>) {
        let counter = match (write, result.is_ok()) {
            (false, true) => &self.chunk_reads,
            (false, false) => &self.chunk_read_failures,
            (true, true) => &self.chunk_writes,
            (true, false) => &self.chunk_write_failures,
        };
        counter.inc();
    }
}
