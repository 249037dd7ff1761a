//! A real cluster in this process (storage nodes, gateway, SWIM on loopback)
//! and the clients the tests drive it with.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use chunkstore::ScrubConfig;
use flexdrive::{Embedded, EmbeddedConfig, NodeTuning};
use gateway::workers::BackgroundConfig;
use gateway::workers::lifecycle::LifecycleConfig;
use gateway::workers::repair::RepairConfig;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};

pub const ACCESS_KEY: &str = "conformance-access";
pub const SECRET_KEY: &str = "conformance-secret-key-0123456789";
pub const REGION: &str = "us-east-1";
pub const ADMIN_TOKEN: &str = "conformance-admin-token-0123456789";

/// Fast failure detection, so tests that stop a node finish in seconds.
const PROBE_PERIOD: Duration = Duration::from_millis(200);

pub struct TestCluster {
    pub embedded: Embedded,
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    pub client: Client,
}

impl TestCluster {
    pub async fn start(storage_nodes: usize) -> TestCluster {
        TestCluster::start_with_chunk_size(storage_nodes, 1024 * 1024).await
    }

    pub async fn start_with_chunk_size(storage_nodes: usize, chunk_size: usize) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        TestCluster::start_in(dir, storage_nodes, chunk_size, BackgroundConfig::default()).await
    }

    /// Three storage nodes whose lifecycle workers run on `lifecycle`, and a gateway.
    pub async fn start_with_lifecycle(lifecycle: LifecycleConfig) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let background = BackgroundConfig {
            lifecycle,
            ..BackgroundConfig::default()
        };
        TestCluster::start_in(dir, 3, 1024 * 1024, background).await
    }

    /// Starts three storage nodes and a gateway again on a data dir that a
    /// stopped cluster used.
    pub async fn restart(dir: tempfile::TempDir) -> TestCluster {
        TestCluster::start_in(dir, 3, 1024 * 1024, BackgroundConfig::default()).await
    }

    /// `storage_nodes` storage nodes whose durability workers run on
    /// `repair` (short dead-node timeout and interval), and a gateway.
    pub async fn start_with_repair(
        storage_nodes: usize,
        chunk_size: usize,
        repair: RepairConfig,
    ) -> TestCluster {
        let background = BackgroundConfig {
            repair,
            ..BackgroundConfig::default()
        };
        TestCluster::start_with_background(storage_nodes, chunk_size, background).await
    }

    /// `storage_nodes` storage nodes whose background workers run on
    /// `background`, and a gateway.
    pub async fn start_with_background(
        storage_nodes: usize,
        chunk_size: usize,
        background: BackgroundConfig,
    ) -> TestCluster {
        TestCluster::start_configured(
            storage_nodes,
            chunk_size,
            background,
            ScrubConfig::default(),
        )
        .await
    }

    /// `storage_nodes` storage nodes that scrub as `scrub` says and whose
    /// background workers run on `background`, and a gateway.
    pub async fn start_configured(
        storage_nodes: usize,
        chunk_size: usize,
        background: BackgroundConfig,
        scrub: ScrubConfig,
    ) -> TestCluster {
        let nodes = NodeTuning {
            scrub,
            ..NodeTuning::default()
        };
        TestCluster::start_tuned(storage_nodes, chunk_size, background, nodes).await
    }

    /// `storage_nodes` storage nodes started with `nodes` (scrubbing, scan
    /// bounds, replication timing) whose background workers run on
    /// `background`, and a gateway.
    pub async fn start_tuned(
        storage_nodes: usize,
        chunk_size: usize,
        background: BackgroundConfig,
        nodes: NodeTuning,
    ) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        TestCluster::start_in_with(dir, storage_nodes, chunk_size, background, nodes).await
    }

    async fn start_in(
        dir: tempfile::TempDir,
        storage_nodes: usize,
        chunk_size: usize,
        background: BackgroundConfig,
    ) -> TestCluster {
        TestCluster::start_in_with(
            dir,
            storage_nodes,
            chunk_size,
            background,
            NodeTuning::default(),
        )
        .await
    }

    /// Three storage nodes and a gateway whose S3 port has `connections`.
    pub async fn start_with_connections(connections: gateway::ConnectionLimits) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        TestCluster::start_full(
            dir,
            3,
            1024 * 1024,
            BackgroundConfig::default(),
            NodeTuning::default(),
            connections,
        )
        .await
    }

    async fn start_in_with(
        dir: tempfile::TempDir,
        storage_nodes: usize,
        chunk_size: usize,
        background: BackgroundConfig,
        nodes: NodeTuning,
    ) -> TestCluster {
        TestCluster::start_full(
            dir,
            storage_nodes,
            chunk_size,
            background,
            nodes,
            gateway::ConnectionLimits::default(),
        )
        .await
    }

    async fn start_full(
        dir: tempfile::TempDir,
        storage_nodes: usize,
        chunk_size: usize,
        background: BackgroundConfig,
        nodes: NodeTuning,
        connections: gateway::ConnectionLimits,
    ) -> TestCluster {
        let embedded = Embedded::start(EmbeddedConfig {
            chunk_size,
            background,
            nodes,
            connections,
            ..embedded_config(dir.path(), storage_nodes)
        })
        .await
        .expect("cluster starts");
        let endpoint = format!("http://{}", embedded.s3_addr());
        let client = s3_client(&endpoint, ACCESS_KEY, SECRET_KEY);
        TestCluster {
            embedded,
            dir,
            endpoint,
            client,
        }
    }

    /// `http://HOST:PORT` of the admin API (token [`ADMIN_TOKEN`]).
    pub fn admin_endpoint(&self) -> String {
        format!("http://{}", self.embedded.admin_addr().expect("admin API"))
    }

    pub fn node_dir(&self, index: usize) -> PathBuf {
        self.dir.path().join(format!("node{}", index + 1))
    }

    /// The id storage node `index` keeps in its data dir.
    pub fn node_id(&self, index: usize) -> String {
        std::fs::read_to_string(self.node_dir(index).join("node_id"))
            .expect("node id")
            .trim()
            .to_string()
    }

    pub async fn create_bucket(&self, name: &str) {
        self.client
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .expect("create bucket");
    }

    pub async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .expect("put object");
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .expect("get object");
        out.body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .to_vec()
    }

    /// Waits (bounded) until the gateway sees `live` storage nodes alive.
    pub async fn wait_live_storage(&self, live: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let seen = self.embedded.snapshot().live_storage().count();
            if seen == live {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gateway still sees {seen} live storage nodes, expected {live}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(self) {
        self.embedded.shutdown().await;
    }
}

/// How the tests' clusters are started: `storage_nodes` storage nodes in
/// `dir`, the S3 and admin ports on free loopback ports, the test keys.
pub fn embedded_config(dir: &Path, storage_nodes: usize) -> EmbeddedConfig {
    EmbeddedConfig {
        data_dir: dir.to_path_buf(),
        s3_addr: "127.0.0.1:0".parse().unwrap(),
        storage_nodes,
        root_access_key: ACCESS_KEY.into(),
        root_secret_key: SECRET_KEY.into(),
        chunk_size: 1024 * 1024,
        region: REGION.into(),
        domains: vec!["localhost".into()],
        probe_period: PROBE_PERIOD,
        background: BackgroundConfig::default(),
        nodes: NodeTuning::default(),
        admin_addr: Some("127.0.0.1:0".parse().unwrap()),
        admin_token: Some(ADMIN_TOKEN.into()),
        connections: gateway::ConnectionLimits::default(),
    }
}

pub fn s3_client(endpoint: &str, access_key: &str, secret_key: &str) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(access_key, secret_key, None, None, "test"))
        .force_path_style(true)
        .build();
    Client::from_conf(config)
}

/// Runs a test body, failing it if it takes longer than `limit`.
pub async fn bounded(limit: Duration, test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(limit, test)
        .await
        .expect("test timed out");
}

/// Deterministic pseudo-random bytes (fast, and different per seed).
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest as _;
    hex::encode(md5::Md5::digest(bytes))
}

/// Values of the samples `name{...}` that carry every label in `labels`.
pub fn metric_samples(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (series_name, rest) = series.split_once('{').unwrap_or((series, "}"));
            let wanted = series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            wanted.then(|| value.parse().ok()).flatten()
        })
        .collect()
}

/// The sum of those samples.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_samples(text, name, labels).iter().sum()
}

/// A raw HTTP answer.
pub struct Raw {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

/// Sends a request signed with SigV4 (or unsigned when `credentials` is
/// None), for what the SDK will not send: malformed bodies, odd hosts.
pub async fn raw_request(
    endpoint: &str,
    method: &str,
    path_and_query: &str,
    host: Option<&str>,
    body: &[u8],
    credentials: Option<(&str, &str)>,
) -> Raw {
    raw_request_with_headers(
        endpoint,
        method,
        path_and_query,
        host,
        &[],
        body,
        credentials,
    )
    .await
}

/// [`raw_request`] with extra headers (signed along).
pub async fn raw_request_with_headers(
    endpoint: &str,
    method: &str,
    path_and_query: &str,
    host: Option<&str>,
    extra_headers: &[(&str, &str)],
    body: &[u8],
    credentials: Option<(&str, &str)>,
) -> Raw {
    let uri = format!("{endpoint}{path_and_query}");
    let parsed: http::Uri = uri.parse().expect("uri");
    let authority = parsed.authority().expect("authority").to_string();
    let host = host.map(str::to_string).unwrap_or(authority);
    let payload_hash = extra_headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-amz-content-sha256"))
        .map(|(_, value)| value.to_string())
        .unwrap_or_else(|| hex::encode(Sha256::digest(body)));
    let mut builder = http::Request::builder()
        .method(method)
        .uri(&uri)
        .header("host", &host)
        .header("x-amz-content-sha256", &payload_hash);
    for (name, value) in extra_headers {
        if !name.eq_ignore_ascii_case("x-amz-content-sha256") {
            builder = builder.header(*name, *value);
        }
    }
    let mut request = builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("request");
    if let Some((access_key, secret_key)) = credentials {
        let identity =
            aws_credential_types::Credentials::new(access_key, secret_key, None, None, "test")
                .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(REGION)
            .name("s3")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .expect("params")
            .into();
        let headers: Vec<(&str, &str)> = request
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
            .collect();
        // Sign against the Host header we send, not the socket address.
        let signed_uri = format!(
            "http://{host}{}",
            parsed.path_and_query().map(|p| p.as_str()).unwrap_or("/")
        );
        let signable = SignableRequest::new(
            method,
            &signed_uri,
            headers.into_iter(),
            SignableBody::Precomputed(payload_hash.clone()),
        )
        .expect("signable");
        let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
        instructions.apply_to_request_http1x(&mut request);
    }
    let client = HttpClient::builder(TokioExecutor::new()).build_http();
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .expect("request timed out")
        .expect("request failed");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Raw {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Every chunk file (by its 32-hex name) under a node's data dir.
pub fn chunk_files(node_dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![node_dir.join("chunks")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                // Temp files and quarantined corrupt copies are not chunks.
                if name != "tmp" && name != "corrupt" {
                    stack.push(path);
                }
            } else if name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                found.push(name);
            }
        }
    }
    found
}

/// The S3 error code of an SDK error.
pub fn error_code<E, R>(err: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    match err.as_service_error() {
        Some(e) => e.code().unwrap_or("<no code>").to_string(),
        None => format!("<not a service error: {err:?}>"),
    }
}

/// The HTTP status of an SDK error.
pub fn error_status<E>(
    err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> u16 {
    err.raw_response().map(|r| r.status().as_u16()).unwrap_or(0)
}
