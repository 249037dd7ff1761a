//! `bench`: a bounded S3 load generator. Parses the command line, runs the
//! phases from `conformance::bench` and prints one line per phase (and a JSON
//! summary with `--json`). Exits non-zero if any request failed.
//!
//! ```text
//! cargo run --release -p conformance --bin bench -- \
//!     --endpoint http://127.0.0.1:9000 --workload all --concurrency 8 --duration 10
//! ```

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use conformance::bench::report::{format_size, human_line, json_summary, parse_size};
use conformance::bench::s3::{S3Client, S3Config};
use conformance::bench::workload::{
    BenchConfig, PhaseResult, Workload, ensure_bucket, random_block, run_workload,
};
use rand::RngCore;

/// Upper bound on `--concurrency` (each worker holds one connection).
const MAX_CONCURRENCY: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum WorkloadArg {
    /// PUT then GET of `--large-size` objects, reported in MiB/s.
    Large,
    /// PUT then GET of `--small-size` objects, reported in ops/s and latency.
    Small,
    /// large, then small.
    All,
}

/// Bounded S3 load generator: PUT then GET (then DELETE, the cleanup) of
/// large and small objects against any S3 endpoint (path-style, SigV4).
#[derive(Parser, Debug)]
#[command(name = "bench", version)]
struct Cli {
    /// S3 endpoint (plain http), path-style requests.
    #[arg(long, default_value = "http://127.0.0.1:9000")]
    endpoint: String,
    /// Access key id.
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key: String,
    /// Secret access key.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_key: String,
    /// SigV4 signing region.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Bucket to use; created if missing (and left in place).
    #[arg(long, default_value = "bench")]
    bucket: String,
    /// Which objects to exercise.
    #[arg(long, value_enum, default_value_t = WorkloadArg::All)]
    workload: WorkloadArg,
    /// Size of the large objects (e.g. 64MiB, 1GiB).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    large_size: u64,
    /// Size of the small objects (e.g. 4KiB).
    #[arg(long, default_value = "4KiB", value_parser = parse_size)]
    small_size: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Time limit of each PUT and GET phase, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Operation limit of each PUT and GET phase (whichever limit comes first).
    #[arg(long)]
    count: Option<u64>,
    /// Limit of one request, body included, in seconds; a timeout is an error.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// Keep the objects written (skip the DELETE phase).
    #[arg(long)]
    keep: bool,
    /// Print a JSON summary on stdout (the per-phase lines go to stderr).
    #[arg(long)]
    json: bool,
}

fn check(cli: &Cli) -> anyhow::Result<()> {
    if cli.concurrency == 0 || cli.concurrency > MAX_CONCURRENCY {
        bail!("--concurrency must be between 1 and {MAX_CONCURRENCY}");
    }
    if !(cli.duration > 0.0 && cli.duration.is_finite()) {
        bail!("--duration must be a positive number of seconds");
    }
    if !(cli.timeout > 0.0 && cli.timeout.is_finite()) {
        bail!("--timeout must be a positive number of seconds");
    }
    if cli.access_key.is_empty() || cli.secret_key.is_empty() {
        bail!(
            "empty credentials: pass --access-key/--secret-key or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        );
    }
    if cli.count == Some(0) {
        bail!("--count must be at least 1");
    }
    let b = &cli.bucket;
    let valid = (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.');
    if !valid {
        bail!("--bucket {b:?}: use 3-63 characters of a-z, 0-9, '-' and '.'");
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<u64> {
    check(&cli)?;
    let client = S3Client::new(&S3Config {
        endpoint: cli.endpoint.clone(),
        access_key: cli.access_key.clone(),
        secret_key: cli.secret_key.clone(),
        region: cli.region.clone(),
        max_idle: cli.concurrency,
    })?;
    let cfg = BenchConfig {
        bucket: cli.bucket.clone(),
        concurrency: cli.concurrency,
        duration: Duration::from_secs_f64(cli.duration),
        count: cli.count,
        request_timeout: Duration::from_secs_f64(cli.timeout),
        keep: cli.keep,
        prefix: format!("bench-{:016x}", rand::rng().next_u64()),
    };
    let large = Workload {
        name: "large",
        size: cli.large_size,
        throughput: true,
    };
    let small = Workload {
        name: "small",
        size: cli.small_size,
        throughput: false,
    };
    let workloads = match cli.workload {
        WorkloadArg::Large => vec![large],
        WorkloadArg::Small => vec![small],
        WorkloadArg::All => vec![large, small],
    };
    let largest = workloads.iter().map(|w| w.size).max().unwrap_or(0);

    ensure_bucket(&client, &cfg)
        .await
        .with_context(|| format!("preparing the benchmark against {}", cli.endpoint))?;
    let block = random_block(largest);
    eprintln!(
        "bench: {} bucket {} prefix {}/ conc={} duration={}s count={} sizes {}",
        cli.endpoint,
        cfg.bucket,
        cfg.prefix,
        cfg.concurrency,
        cli.duration,
        cli.count.map_or("-".to_string(), |c| c.to_string()),
        workloads
            .iter()
            .map(|w| format!("{}={}", w.name, format_size(w.size)))
            .collect::<Vec<_>>()
            .join(" ")
    );

    let json = cli.json;
    let mut print = |r: &PhaseResult| {
        if json {
            eprintln!("{}", human_line(r));
        } else {
            println!("{}", human_line(r));
        }
    };
    let mut phases = Vec::new();
    for w in &workloads {
        phases.extend(run_workload(&client, &cfg, w, &block, &mut print).await);
    }

    let errors: u64 = phases.iter().map(|p| p.errors).sum();
    for p in phases.iter().filter(|p| p.errors > 0) {
        for e in &p.error_samples {
            eprintln!("error: {} {}: {e}", p.op.as_str(), p.workload.name);
        }
    }
    if json {
        println!(
            "{}",
            json_summary(&cli.endpoint, &cfg.bucket, &cfg.prefix, &phases)
        );
    }
    let summary = format!("{errors} errors");
    if json {
        eprintln!("{summary}");
    } else {
        println!("{summary}");
    }
    Ok(errors)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::from(2)
        }
    }
}
