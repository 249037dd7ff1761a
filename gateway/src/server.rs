//! Serving the S3 API over HTTP: listener, s3s service, shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use membership::Snapshot;
use s3s::auth::{S3Auth, SecretKey};
use s3s::host::{S3Host, VirtualHost};
use s3s::service::S3ServiceBuilder;
use s3s::{S3Result, s3_error};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::health::GatewayReadiness;
use crate::keys::KeyStore;
use crate::limits::{FIRST_LAYOUT_WAIT, MAX_POST_OBJECT_SIZE};
use crate::s3::Gateway;
use crate::store::cluster::Cluster;
use crate::store::data::DataPath;
use crate::store::hlc::Hlc;
use crate::store::table::Tables;

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Address to serve S3 on; port 0 picks a free port.
    pub s3_addr: SocketAddr,
    pub root_access_key: String,
    pub root_secret_key: String,
    pub cluster_secret: String,
    pub chunk_size: usize,
    pub region: String,
    /// Base domains for virtual-hosted-style requests (`bucket.DOMAIN`);
    /// any other Host is served path-style.
    pub domains: Vec<String>,
    /// Where to serve the admin API (None: not at all); port 0 picks one.
    pub admin_addr: Option<SocketAddr>,
    /// Bearer token the admin API requires; needed with `admin_addr`.
    pub admin_token: Option<String>,
    /// Accept untagged answers from 0.1 storage nodes (rolling upgrade only).
    pub legacy_peers: bool,
    /// Bounds on the S3 port's connections.
    pub connections: telemetry::ConnectionLimits,
}

pub struct RunningGateway {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    cluster: Arc<Cluster>,
    registry: prometheus::Registry,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningGateway {
    /// The S3 address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin API address actually bound, if it is served.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn cluster(&self) -> Arc<Cluster> {
        self.cluster.clone()
    }

    /// The registry the admin port serves on `/metrics`; a process adds
    /// the metrics of its other roles here.
    pub fn registry(&self) -> &prometheus::Registry {
        &self.registry
    }

    /// Stops accepting and gives requests in flight a bounded time to finish.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!("gateway task did not stop in time");
            }
        }
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts a gateway that finds storage nodes through `membership`.
pub async fn start(
    config: GatewayConfig,
    membership: watch::Receiver<Arc<Snapshot>>,
) -> anyhow::Result<RunningGateway> {
    let client = chunkstore::NodeClient::new(&config.cluster_secret)
        .accepting_legacy_peers(config.legacy_peers)
        .sending_as(&format!(
            "gateway-{}",
            hex::encode(rand::random::<[u8; 6]>())
        ));
    let hlc = Arc::new(Hlc::following(client.clock().clone()));
    let cluster = Cluster::new(membership.clone(), client, hlc.clone());
    let tables = Tables::new(cluster.clone(), hlc);
    let data = DataPath::new(&tables, config.chunk_size);
    let keys = Arc::new(KeyStore::new(tables.clone()));
    let gateway = Gateway::new(
        tables.clone(),
        data,
        keys.clone(),
        &config.region,
        &config.root_access_key,
    );
    let admin = match (config.admin_addr, &config.admin_token) {
        (Some(addr), Some(token)) => Some((crate::admin::bind(addr).await?, token.clone())),
        (Some(_), None) => anyhow::bail!("the admin API needs a token (admin_token)"),
        (None, _) => None,
    };

    let mut builder = S3ServiceBuilder::new(gateway.clone());
    let mut s3_config = s3s::config::S3Config::default();
    s3_config.post_object_max_file_size = MAX_POST_OBJECT_SIZE;
    builder.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(
        s3_config,
    ))));
    builder.set_auth(KeyAuth {
        root_access_key: config.root_access_key.clone(),
        root_secret_key: config.root_secret_key.clone(),
        keys: keys.clone(),
    });
    builder.set_access(gateway.access());
    let listener = TcpListener::bind(config.s3_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for S3 on {}: {e}", config.s3_addr))?;
    let addr = listener.local_addr()?;
    let domains = Arc::new(Domains::new(&config.domains, addr.port()));
    builder.set_host(Domains::clone(&domains));
    let service = builder.build();
    let http_gateway = gateway.clone();

    // The process's metrics: this gateway's, its membership view's, and what
    // the process adds (the storage nodes of `flexdrive server`).
    let registry = prometheus::Registry::new();
    cluster.metrics().bundle().register(&registry)?;
    telemetry::membership_metrics(membership).register(&registry)?;
    let readiness = GatewayReadiness::new(cluster.clone(), tables.clone());
    let ops = telemetry::Ops::new(registry.clone(), Arc::new(readiness));
    let metrics = cluster.metrics().clone();

    let (stop, mut stopped) = watch::channel(false);
    let layout_task = tokio::spawn(cluster.clone().maintain_layout());
    let gate = telemetry::ConnectionGate::new(
        config.connections,
        "application/xml",
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            "<Error><Code>SlowDown</Code><Message>Too many connections to this gateway; reduce your request rate.</Message></Error>"
        ),
        Some(metrics.connections()),
    );
    let body_idle = config.connections.body_idle;
    let serving_cluster = cluster.clone();
    let accept_task = tokio::spawn(async move {
        let conn_builder = gate.builder();
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (socket, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Some((socket, admitted)) = gate.admit(socket) else {
                        continue;
                    };
                    // Without this every small response waits for the
                    // client's delayed ACK (about 40 ms).
                    let _ = socket.set_nodelay(true);
                    let service = service.clone();
                    let gateway = http_gateway.clone();
                    let domains = domains.clone();
                    let metrics = metrics.clone();
                    let cluster = serving_cluster.clone();
                    let handler = hyper::service::service_fn(move |req| {
                        let service = service.clone();
                        let gateway = gateway.clone();
                        let domains = domains.clone();
                        let metrics = metrics.clone();
                        let cluster = cluster.clone();
                        let started = Instant::now();
                        let counted = metrics.clone();
                        let answer = async move {
                            cluster.await_first_layout(FIRST_LAYOUT_WAIT).await;
                            // The policy key aws:SourceIp.
                            let mut req = req;
                            req.extensions_mut().insert(crate::s3::ClientAddr(peer));
                            // CORS is answered around s3s, which routes no OPTIONS.
                            let bucket = domains.request_bucket(&req);
                            if req.method() == http::Method::OPTIONS
                                && let Some(bucket) = &bucket
                            {
                                crate::metrics::set_op(crate::metrics::PREFLIGHT_OP);
                                return Ok(gateway.preflight(bucket, req.headers()).await);
                            }
                            let origin = req
                                .headers()
                                .get(http::header::ORIGIN)
                                .and_then(|o| o.to_str().ok())
                                .map(str::to_string);
                            let cors = bucket.zip(origin).map(|(b, o)| (b, o, req.method().clone()));
                            let continue_expected = ExpectsContinue::of(&req);
                            let req = crate::reply::sigv2_bucket_path(req);
                            let asked = crate::reply::Asked::of(&req);
                            let req = metrics.meter_request(req, body_idle);
                            let response = service.call(req).await?;
                            let mut response = crate::reply::adjust(asked, response).await;
                            if continue_expected.closes_after(response.status()) {
                                response.headers_mut().insert(
                                    http::header::CONNECTION,
                                    http::HeaderValue::from_static("close"),
                                );
                            }
                            if let Some((bucket, origin, method)) = cors {
                                gateway
                                    .add_cors_headers(&bucket, &origin, &method, response.headers_mut())
                                    .await;
                            }
                            Ok::<_, s3s::HttpError>(response)
                        };
                        async move {
                            match crate::metrics::with_op(answer).await {
                                (Ok(response), op) => Ok(counted.meter_response(response, op, started)),
                                (Err(e), op) => {
                                    counted.count_failed(op);
                                    Err(e)
                                }
                            }
                        }
                    });
                    let conn = conn_builder
                        .serve_connection(TokioIo::new(socket), handler)
                        .into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        let _admitted = admitted;
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "S3 connection ended with an error");
                        }
                    });
                }
                _ = stopped.changed() => break,
            }
        }
        drop(listener);
        if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("S3 connections still open after 5 s; closing them");
        }
    });
    let background_stop = {
        let mut stopped = stop.subscribe();
        tokio::spawn(async move {
            let _ = stopped.changed().await;
            layout_task.abort();
        })
    };
    let mut tasks = vec![accept_task, background_stop];
    let mut admin_addr = None;
    if let Some((listener, token)) = admin {
        admin_addr = Some(listener.local_addr()?);
        let stopped = stop.subscribe();
        let api = crate::admin::AdminApi {
            token,
            keys,
            gateway,
            cluster: cluster.clone(),
            ops,
        };
        tasks.push(crate::admin::serve(listener, api, stopped));
    }
    Ok(RunningGateway {
        addr,
        admin_addr,
        cluster,
        registry,
        stop,
        tasks,
    })
}

/// A request with `Expect: 100-continue` that gets its final answer without
/// a `100 Continue` first (an empty body, or an error decided before the
/// body is read): botocore (aws-cli, boto3) then either keeps a stale status
/// line on the connection or never sends the body the server may still be
/// waiting for, and misreads every later answer on that connection. Such a
/// connection is closed after its answer.
struct ExpectsContinue {
    expected: bool,
    empty: bool,
}

impl ExpectsContinue {
    fn of<B>(req: &http::Request<B>) -> ExpectsContinue {
        let headers = req.headers();
        ExpectsContinue {
            expected: headers
                .get(http::header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue")),
            empty: headers
                .get(http::header::CONTENT_LENGTH)
                .is_none_or(|v| v.as_bytes() == b"0"),
        }
    }

    fn closes_after(&self, status: http::StatusCode) -> bool {
        self.expected && (self.empty || status.is_client_error() || status.is_server_error())
    }
}

/// The root key, given by the operator, and the keys in the `keys` table.
struct KeyAuth {
    root_access_key: String,
    root_secret_key: String,
    keys: Arc<KeyStore>,
}

#[async_trait::async_trait]
impl S3Auth for KeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if access_key == self.root_access_key {
            return Ok(SecretKey::from(self.root_secret_key.as_str()));
        }
        match self.keys.get(access_key).await? {
            Some(key) => Ok(SecretKey::from(key.secret.as_str())),
            None => Err(s3_error!(InvalidAccessKeyId)),
        }
    }
}

/// Virtual-hosted-style for the configured base domains (with or without
/// the port); path-style for every other Host, so that a client reaching us
/// under a name we were not told about is not mistaken for a bucket.
#[derive(Clone)]
struct Domains {
    domains: Vec<String>,
}

impl Domains {
    fn new(domains: &[String], port: u16) -> Domains {
        let mut all = Vec::new();
        for d in domains {
            let d = d.trim().to_ascii_lowercase();
            if d.is_empty() {
                continue;
            }
            all.push(format!("{d}:{port}"));
            all.push(d);
        }
        Domains { domains: all }
    }
}

impl Domains {
    /// The bucket a request addresses, as s3s will see it: from a Host
    /// under a base domain, else the first path segment.
    fn request_bucket<B>(&self, req: &http::Request<B>) -> Option<String> {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host());
        if let Some(host) = host
            && let Ok(vh) = self.parse_host_header(host)
            && let Some(bucket) = vh.bucket()
        {
            return Some(bucket.to_string());
        }
        let first = req.uri().path().trim_start_matches('/').split('/').next()?;
        (!first.is_empty()).then(|| first.to_string())
    }
}

impl S3Host for Domains {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        for domain in &self.domains {
            if host.eq_ignore_ascii_case(domain) {
                return Ok(VirtualHost::new(domain.as_str()));
            }
            if host.len() > domain.len() + 1 {
                let (bucket, rest) = host.split_at(host.len() - domain.len());
                if rest.eq_ignore_ascii_case(domain)
                    && let Some(bucket) = bucket.strip_suffix('.')
                {
                    return Ok(VirtualHost::new(domain.as_str()).with_bucket(bucket));
                }
            }
        }
        Ok(VirtualHost::new(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_map_to_buckets_only_under_known_domains() {
        let d = Domains::new(&["s3.local".into()], 9000);
        let vh = d.parse_host_header("photos.s3.local:9000").unwrap();
        assert_eq!(vh.bucket(), Some("photos"));
        let vh = d.parse_host_header("photos.s3.local").unwrap();
        assert_eq!(vh.bucket(), Some("photos"));
        let vh = d.parse_host_header("s3.local:9000").unwrap();
        assert_eq!(vh.bucket(), None);
        let vh = d.parse_host_header("flexdrive-gateway:9000").unwrap();
        assert_eq!(vh.bucket(), None);
    }
}
