//! Phases of the benchmark: PUT, then GET of what was written, then DELETE of
//! it (the cleanup, measured too). Every phase is bounded by a count, a
//! deadline and a per-request timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use rand::RngCore;

use super::histogram::Histogram;
use super::s3::{S3Client, S3Error, with_timeout};

/// Hard cap on the operations of one phase, whatever `--count`/`--duration`
/// say: it bounds the list of written keys kept for the GET and DELETE phases.
pub const MAX_OPS_PER_PHASE: u64 = 10_000_000;
/// Largest block of random data generated up front; bigger objects repeat it.
pub const MAX_BLOCK: usize = 16 << 20;
/// Error messages kept per phase for the summary.
const MAX_ERROR_SAMPLES: usize = 5;

/// What to run and how hard.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub bucket: String,
    /// Parallel requests in flight.
    pub concurrency: usize,
    /// Time limit of the PUT and GET phases.
    pub duration: Duration,
    /// Operation limit of the PUT and GET phases.
    pub count: Option<u64>,
    /// Limit of one request, including reading the body.
    pub request_timeout: Duration,
    /// Leave the written objects in place (no DELETE phase).
    pub keep: bool,
    /// Key prefix unique to this run, so runs never touch each other's objects.
    pub prefix: String,
}

/// One object size to exercise; `throughput` picks MiB/s as the headline.
#[derive(Clone, Debug)]
pub struct Workload {
    pub name: &'static str,
    pub size: u64,
    pub throughput: bool,
}

/// The S3 operation a phase measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Put,
    Get,
    Delete,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Put => "PUT",
            Op::Get => "GET",
            Op::Delete => "DELETE",
        }
    }
}

/// Measurements of one phase.
#[derive(Clone, Debug)]
pub struct PhaseResult {
    pub workload: Workload,
    pub op: Op,
    pub concurrency: usize,
    /// Successful operations.
    pub ops: u64,
    pub errors: u64,
    /// Payload bytes moved by successful operations (0 for DELETE).
    pub bytes: u64,
    pub elapsed: Duration,
    /// Latency of successful operations, microseconds.
    pub latency: Histogram,
    pub error_samples: Vec<String>,
}

impl PhaseResult {
    pub fn secs(&self) -> f64 {
        self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.secs()
    }
    pub fn mib_per_sec(&self) -> f64 {
        self.bytes as f64 / (1024.0 * 1024.0) / self.secs()
    }
}

/// Random data generated once, sliced for every body.
pub fn random_block(largest_object: u64) -> Bytes {
    let len = (largest_object.min(MAX_BLOCK as u64) as usize).max(1);
    let mut buf = vec![0u8; len];
    rand::rng().fill_bytes(&mut buf);
    Bytes::from(buf)
}

/// Makes sure the bucket exists, creating it if needed.
pub async fn ensure_bucket(client: &S3Client, cfg: &BenchConfig) -> anyhow::Result<()> {
    let t = cfg.request_timeout;
    let exists = with_timeout(t, client.bucket_exists(&cfg.bucket))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach bucket {:?}: {e} (check --endpoint and the keys)",
                cfg.bucket
            )
        })?;
    if !exists {
        with_timeout(t, client.create_bucket(&cfg.bucket))
            .await
            .map_err(|e| anyhow::anyhow!("cannot create bucket {:?}: {e}", cfg.bucket))?;
    }
    Ok(())
}

/// Runs PUT, GET and (unless `keep`) DELETE for one workload, handing each
/// finished phase to `report` as soon as it ends.
pub async fn run_workload(
    client: &S3Client,
    cfg: &BenchConfig,
    workload: &Workload,
    block: &Bytes,
    report: &mut dyn FnMut(&PhaseResult),
) -> Vec<PhaseResult> {
    let mut results = Vec::new();
    let limit = cfg.count.unwrap_or(u64::MAX).min(MAX_OPS_PER_PHASE);
    let deadline = Some(cfg.duration);
    let key_of = {
        let prefix = format!("{}/{}", cfg.prefix, workload.name);
        move |i: u64| format!("{prefix}/{i:08}")
    };

    // PUT: fresh keys 0, 1, 2, ...
    let put = {
        let (client, bucket, block, key_of, size) = (
            client.clone(),
            cfg.bucket.clone(),
            block.clone(),
            key_of.clone(),
            workload.size,
        );
        op_fn(move |i| {
            let (client, bucket, block, key) =
                (client.clone(), bucket.clone(), block.clone(), key_of(i));
            Box::pin(async move { client.put_object(&bucket, &key, &block, size).await })
        })
    };
    let (result, mut written, attempted) =
        run_phase(cfg, workload, Op::Put, limit, deadline, put).await;
    report(&result);
    results.push(result);
    written.sort_unstable();
    let written: Arc<Vec<u64>> = Arc::new(written);

    // GET: cycle over what was written.
    if !written.is_empty() {
        let get = {
            let (client, bucket, key_of, size, written) = (
                client.clone(),
                cfg.bucket.clone(),
                key_of.clone(),
                workload.size,
                written.clone(),
            );
            op_fn(move |i| {
                let key = key_of(written[(i % written.len() as u64) as usize]);
                let (client, bucket) = (client.clone(), bucket.clone());
                Box::pin(async move { client.get_object(&bucket, &key, size).await })
            })
        };
        let (result, _, _) = run_phase(cfg, workload, Op::Get, limit, deadline, get).await;
        report(&result);
        results.push(result);
    }

    // DELETE: every key a PUT was attempted on, failed ones included (a PUT
    // that timed out may still have landed); no deadline, cleanup must finish.
    if !cfg.keep && attempted > 0 {
        let del = {
            let (client, bucket, key_of) = (client.clone(), cfg.bucket.clone(), key_of.clone());
            op_fn(move |i| {
                let key = key_of(i);
                let (client, bucket) = (client.clone(), bucket.clone());
                Box::pin(async move { client.delete_object(&bucket, &key).await })
            })
        };
        let (result, _, _) = run_phase(cfg, workload, Op::Delete, attempted, None, del).await;
        report(&result);
        results.push(result);
    }
    results
}

type OpFn = Arc<dyn Fn(u64) -> BoxFuture<'static, Result<(), S3Error>> + Send + Sync>;

fn op_fn(
    f: impl Fn(u64) -> BoxFuture<'static, Result<(), S3Error>> + Send + Sync + 'static,
) -> OpFn {
    Arc::new(f)
}

/// What one worker saw.
struct WorkerStats {
    latency: Histogram,
    ok: u64,
    errors: u64,
    samples: Vec<String>,
    done: Vec<u64>,
}

/// Runs `op(i)` for i = 0, 1, 2, ... on `cfg.concurrency` workers until
/// `limit` operations were issued or `duration` has passed. Returns the
/// phase's measurements, the indices that succeeded and how many indices
/// were attempted (always 0..attempted).
async fn run_phase(
    cfg: &BenchConfig,
    workload: &Workload,
    op: Op,
    limit: u64,
    duration: Option<Duration>,
    op_fn: OpFn,
) -> (PhaseResult, Vec<u64>, u64) {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = duration.map(|d| start + d);
    let mut workers = Vec::with_capacity(cfg.concurrency);
    for _ in 0..cfg.concurrency {
        let (next, op_fn, timeout) = (next.clone(), op_fn.clone(), cfg.request_timeout);
        workers.push(tokio::spawn(async move {
            let mut st = WorkerStats {
                latency: Histogram::default(),
                ok: 0,
                errors: 0,
                samples: Vec::new(),
                done: Vec::new(),
            };
            // Bounded: each turn claims one of at most `limit` indices.
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= limit {
                    break;
                }
                let t0 = Instant::now();
                match with_timeout(timeout, op_fn(i)).await {
                    Ok(()) => {
                        st.latency.record(t0.elapsed().as_micros() as u64);
                        st.ok += 1;
                        st.done.push(i);
                    }
                    Err(e) => {
                        st.errors += 1;
                        if st.samples.len() < MAX_ERROR_SAMPLES {
                            st.samples.push(e.0);
                        }
                    }
                }
            }
            st
        }));
    }
    let mut latency = Histogram::default();
    let (mut ok, mut errors, mut samples, mut done) = (0, 0, Vec::new(), Vec::new());
    for w in workers {
        match w.await {
            Ok(st) => {
                latency.merge(&st.latency);
                ok += st.ok;
                errors += st.errors;
                samples.extend(st.samples);
                done.extend(st.done);
            }
            Err(e) => {
                errors += 1;
                samples.push(format!("worker panicked: {e}"));
            }
        }
    }
    let elapsed = start.elapsed();
    samples.truncate(MAX_ERROR_SAMPLES);
    let bytes = if op == Op::Delete {
        0
    } else {
        ok * workload.size
    };
    let result = PhaseResult {
        workload: workload.clone(),
        op,
        concurrency: cfg.concurrency,
        ops: ok,
        errors,
        bytes,
        elapsed,
        latency,
        error_samples: samples,
    };
    // Every claimed index below `limit` was run: the deadline is checked
    // before claiming.
    let attempted = next.load(Ordering::Relaxed).min(limit);
    (result, done, attempted)
}
