//! The gateway's metrics: S3 requests (by operation and status), their
//! duration and bytes, chunk errors per storage node, metadata quorum
//! failures, and the repair / GC / durability gauges.
//!
//! Every gateway component reaches them through [`crate::store::cluster::Cluster::metrics`].
//! To add one, make it in [`GatewayMetrics::new`] with the builder (`b.gauge`,
//! `b.counter_vec`, ...) and keep the handle in a field.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::sync::Arc;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge};
use telemetry::{Bundle, BundleBuilder};

/// Operation label of requests s3s refused before naming an operation (bad
/// signature, malformed request) and of operations not in [`S3_OPERATIONS`].
pub const OTHER_OP: &str = "other";

/// Operation label of browser CORS preflights, which the gateway answers itself.
pub(crate) const PREFLIGHT_OP: &str = "CorsPreflight";

/// The S3 operation names (as s3s names them) that get a label of their own,
/// sorted: a fixed set, so the label's cardinality is bounded.
pub const S3_OPERATIONS: &[&str] = &[
    "AbortMultipartUpload",
    "CompleteMultipartUpload",
    "CopyObject",
    "CorsPreflight",
    "CreateBucket",
    "CreateMultipartUpload",
    "DeleteBucket",
    "DeleteBucketCors",
    "DeleteBucketLifecycle",
    "DeleteBucketTagging",
    "DeleteObject",
    "DeleteObjectTagging",
    "DeleteObjects",
    "GetBucketAcl",
    "GetBucketCors",
    "GetBucketLifecycleConfiguration",
    "GetBucketLocation",
    "GetBucketTagging",
    "GetBucketVersioning",
    "GetObject",
    "GetObjectAcl",
    "GetObjectAttributes",
    "GetObjectTagging",
    "HeadBucket",
    "HeadObject",
    "ListBuckets",
    "ListMultipartUploads",
    "ListObjectVersions",
    "ListObjects",
    "ListObjectsV2",
    "ListParts",
    "PostObject",
    "PutBucketAcl",
    "PutBucketCors",
    "PutBucketLifecycleConfiguration",
    "PutBucketTagging",
    "PutBucketVersioning",
    "PutObject",
    "PutObjectAcl",
    "PutObjectTagging",
    "UploadPart",
    "UploadPartCopy",
];

/// Upper bounds (seconds) of the request duration buckets: a small GET takes
/// milliseconds, a multi-GiB PUT minutes.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

#[derive(Clone)]
pub struct GatewayMetrics {
    bundle: Bundle,
    s3_requests: IntCounterVec,
    s3_duration: HistogramVec,
    s3_bytes_in: IntCounter,
    s3_bytes_out: IntCounter,
    chunk_errors: IntCounterVec,
    quorum_failures: IntCounterVec,
    fenced_retries: IntCounterVec,
    layout_epoch: IntGauge,
    connections: telemetry::ConnectionCounts,
}

impl GatewayMetrics {
    /// The metrics of a process whose clock is `hlc`.
    pub fn new(hlc: Arc<crate::store::hlc::Hlc>) -> GatewayMetrics {
        let mut b = BundleBuilder::new();
        let hlc_refused = b.counter(
            "flexdrive_hlc_future_timestamps_total",
            "Timestamps read from the cluster that were too far ahead of this process's clock to follow (a node's clock is wrong).",
        );
        b.on_collect(move || {
            let seen = hlc.refused();
            let counted = hlc_refused.get();
            if seen > counted {
                hlc_refused.inc_by(seen - counted);
            }
        });
        GatewayMetrics {
            connections: telemetry::ConnectionCounts {
                open: b.gauge(
                    "flexdrive_s3_connections_open",
                    "Connections the S3 port serves now.",
                ),
                refused: b.counter(
                    "flexdrive_s3_connections_refused_total",
                    "Connections to the S3 port answered 503 SlowDown and closed because the connection cap was reached.",
                ),
            },
            fenced_retries: b.counter_vec(
                "flexdrive_layout_fenced_retries_total",
                "Metadata operations tried again because a node was at another layout epoch, by operation.",
                &["op"],
            ),
            layout_epoch: b.gauge(
                "flexdrive_layout_epoch",
                "The layout epoch this process acts in (0: no layout decided yet).",
            ),
            s3_requests: b.counter_vec(
                "flexdrive_s3_requests_total",
                "S3 requests answered, by operation and HTTP status.",
                &["op", "status"],
            ),
            s3_duration: b.histogram_vec(
                "flexdrive_s3_request_duration_seconds",
                "Time from a request's arrival to the end of its answer's body, by operation.",
                &["op"],
                DURATION_BUCKETS,
            ),
            s3_bytes_in: b.counter(
                "flexdrive_s3_received_bytes_total",
                "Request body bytes received on the S3 port.",
            ),
            s3_bytes_out: b.counter(
                "flexdrive_s3_sent_bytes_total",
                "Response body bytes sent on the S3 port.",
            ),
            chunk_errors: b.counter_vec(
                "flexdrive_gateway_chunk_errors_total",
                "Chunk reads or writes to a storage node that failed, seen from this gateway.",
                &["node", "op"],
            ),
            quorum_failures: b.counter_vec(
                "flexdrive_metadata_quorum_failures_total",
                "Metadata reads, scans and writes that did not reach a quorum of replicas.",
                &["op"],
            ),
            bundle: b.build(),
        }
    }

    /// The metrics, to register in the process's registry.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// A metadata operation is tried again at a newer layout epoch.
    pub fn fenced_retry(&self, op: &str) {
        self.fenced_retries.with_label_values(&[op]).inc();
    }

    pub fn layout_epoch(&self, epoch: u64) {
        self.layout_epoch
            .set(i64::try_from(epoch).unwrap_or(i64::MAX));
    }

    /// A chunk read or write to `node` failed.
    pub(crate) fn chunk_error(&self, node: &str, op: &'static str) {
        self.chunk_errors.with_label_values(&[node, op]).inc();
    }

    /// A metadata operation (`read`, `scan`, `write`, `cas`) missed its quorum.
    pub(crate) fn quorum_failure(&self, op: &str) {
        self.quorum_failures.with_label_values(&[op]).inc();
    }

    /// The request for s3s, its body counting the bytes received. A request
    /// without a body (most GETs) keeps hyper's body as it is; the others
    /// pay one allocation for the wrapper.
    /// The request with its body counted and bounded per read by `body_idle`.
    pub(crate) fn meter_request(
        &self,
        req: http::Request<Incoming>,
        body_idle: std::time::Duration,
    ) -> s3s::HttpRequest {
        if req.body().is_end_stream() {
            return req.map(s3s::Body::from);
        }
        let bytes = self.s3_bytes_in.clone();
        req.map(|inner| {
            let metered = Metered {
                inner,
                bytes,
                timer: None,
            };
            s3s::Body::http_body(telemetry::IdleBody::new(metered, body_idle))
        })
    }

    /// The S3 port's connection counts.
    pub(crate) fn connections(&self) -> telemetry::ConnectionCounts {
        self.connections.clone()
    }

    /// Counts an answer of `op` and wraps its body so that the bytes sent
    /// and the duration (to the body's last byte) are recorded.
    pub(crate) fn meter_response<B>(
        &self,
        response: http::Response<B>,
        op: &str,
        started: Instant,
    ) -> http::Response<Metered<B>> {
        self.s3_requests
            .with_label_values(&[op, response.status().as_str()])
            .inc();
        let timer = Some((self.s3_duration.with_label_values(&[op]), started));
        let bytes = self.s3_bytes_out.clone();
        response.map(|inner| Metered {
            inner,
            bytes,
            timer,
        })
    }

    /// Counts a request s3s failed without an answer (the connection closes).
    pub(crate) fn count_failed(&self, op: &str) {
        self.s3_requests.with_label_values(&[op, "error"]).inc();
    }
}

tokio::task_local! {
    /// The operation of the S3 request this task serves, named by the access check.
    static S3_OP: Cell<&'static str>;
}

/// Runs `serve` (one S3 request) and returns its output with the operation
/// the access check named ([`OTHER_OP`] if none).
pub(crate) async fn with_op<F: Future>(serve: F) -> (F::Output, &'static str) {
    S3_OP
        .scope(Cell::new(OTHER_OP), async {
            let output = serve.await;
            (output, S3_OP.with(Cell::get))
        })
        .await
}

/// Names the operation of the request being served; called by s3s's access
/// check, which knows it. Outside [`with_op`] it does nothing.
pub(crate) fn set_op(name: &str) {
    let label = op_label(name);
    let _ = S3_OP.try_with(|op| op.set(label));
}

/// The label of an operation name: itself if in [`S3_OPERATIONS`], else [`OTHER_OP`].
pub fn op_label(name: &str) -> &'static str {
    S3_OPERATIONS
        .binary_search(&name)
        .map(|i| S3_OPERATIONS[i])
        .unwrap_or(OTHER_OP)
}

/// A body that counts the bytes of its data frames and, for an answer,
/// records the request's duration when it is dropped (sent or abandoned).
pub struct Metered<B> {
    inner: B,
    bytes: IntCounter,
    timer: Option<(Histogram, Instant)>,
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.bytes.inc_by(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Metered<B> {
    fn drop(&mut self) {
        if let Some((histogram, started)) = self.timer.take() {
            histogram.observe(started.elapsed().as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_labels_are_a_fixed_sorted_set() {
        assert!(S3_OPERATIONS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(op_label("GetObject"), "GetObject");
        assert_eq!(op_label("ListObjectsV2"), "ListObjectsV2");
        assert_eq!(op_label("SelectObjectContent"), OTHER_OP);
    }

    #[tokio::test]
    async fn the_access_check_names_the_operation_of_its_task() {
        let ((), op) = with_op(async { set_op("PutObject") }).await;
        assert_eq!(op, "PutObject");
        let ((), op) = with_op(async {}).await;
        assert_eq!(op, OTHER_OP);
        set_op("PutObject"); // outside a request: ignored
    }
}
