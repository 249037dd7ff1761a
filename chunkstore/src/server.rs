//! The storage node process: owns the data directory and serves the internal API.
//!
//! Endpoints (every one but `GET /health/live` SigV4-signed, see [`crate::auth`]):
//!
//! | request | answer |
//! |---|---|
//! | `PUT /chunks/{id}` + `x-fd-crc32c`, `x-fd-owner`, body = data | 204 once durable; 400 checksum mismatch |
//! | `GET /chunks/{id}[?offset=&len=]` | 200 bytes + `x-fd-crc32c`, `x-fd-size` of the whole chunk, `x-fd-owner`; 404; 409 corrupt; 416 bad range |
//! | `DELETE /chunks/{id}` | 204 (also when missing) |
//! | `DELETE /chunks/{id}?older_than=SECS` | 204 removed; 200 kept (absent, or written less than SECS ago) |
//! | `GET /chunks/quarantine` | 200 postcard `Vec<`[`crate::chunk::QuarantinedChunk`]`>`: files the scrubber found corrupt |
//! | `DELETE /chunks/quarantine/{id}` | 204; the quarantined file is gone (a good copy is back) |
//! | `POST /chunks/present` body postcard `Vec<ChunkId>` | 200 postcard `Vec<bool>`: which have a chunk file here (for the durability worker) |
//! | `POST /chunks/doomed` body postcard `Vec<ChunkId>` | 204 once the ids are on the node's deletion queue (durable) |
//! | `GET /chunks/doomed?after=<id>&limit=N` | 200 postcard `Vec<`[`DoomedChunk`]`>`: queued chunks, with their owners |
//! | `POST /chunks/doomed/forget` body postcard `Vec<ChunkId>` | 204; the ids are off the queue (still listed by a record) |
//! | `GET /chunks?after=<id>&limit=N` | 200 postcard `Vec<`[`ListedChunk`]`>` in id order (for the garbage collector) |
//! | `POST /meta/{table}/merge` body postcard `Vec<Record>` | 204 after commit |
//! | `POST /meta/{table}/cas` body postcard [`ConditionalWrite`] | 200 postcard [`ConditionalOutcome`]; only on the partition's primary (see [`crate::primary`]) |
//! | `POST /meta/{table}/guarded` body postcard [`GuardedWrite`] | 200 postcard [`ConditionalOutcome`] (the guard record); only on the partition's primary |
//! | `POST /meta/objects/cas` without `x-fd-protocol` (0.1) body postcard [`CasRequest`] | 200 postcard [`CasOutcome`](crate::wire::CasOutcome) once written; checked on the primary, or with no decided layout on the partition's first replica (see [`crate::primary`]) |
//! | `GET /meta/{table}/get?key=<hex>` | 200 postcard `Option<Record>` |
//! | `GET /meta/{table}/scan?start=<hex>&end=<hex>&limit=N` | 200 postcard `Vec<Record>`, `x-fd-more: 1` when the range holds more |
//! | `GET /layout` | 200 postcard [`LayoutSnapshot`] |
//! | `POST /layout` body postcard [`LayoutHistory`] | 200 postcard [`LayoutSnapshot`] after merging it durably |
//! | `POST /layout/prepare`, `/layout/accept` body postcard [`Prepare`], [`Accept`] | 200 postcard [`Promise`], [`Accepted`] (Paxos, see [`crate::layout`]) |
//! | `GET /status` | 200 postcard [`NodeStatus`] |
//! | `GET /workers/status` | 200 what the background workers beside this node last published ([`WorkerPort`]) |
//! | `POST /workers/wake` | 204; the workers start a pass now |
//! | `GET /health/live` | 200 `ok`, no signature needed |
//!
//! Metrics and `/health/ready` are served on the process's admin port
//! ([`StorageNode::metrics`], [`StorageNode::readiness`]).
//!
//! A request that fails verification answers 403 and changes nothing; a body
//! over its limit answers 413; unknown paths and tables 404; bad ids and
//! queries 400.
//!
//! Metadata requests (`/meta/...`, but for the `layout` table) carry the
//! caller's layout epoch in `x-fd-epoch`; a node at another epoch answers
//! 409 with its own epoch and `x-fd-fence` saying why (see
//! [`crate::layout_store`]). Every answer to a signed request carries
//! `x-fd-protocol` and an `x-fd-answer-tag` bound to the request (see
//! [`crate::auth::answer_tag`]), so a caller knows the answer came from a
//! node of the cluster.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::auth::{self, VerifiedPayload};
use crate::chunk::{ChunkError, ChunkStore};
use crate::client::NodeClient;
use crate::clock::ClusterClock;
use crate::layout::{Accept, LayoutHistory, Prepare};
use crate::layout_store::{Fence, LayoutStore, is_reserved};
use crate::limits::{
    ACCEPT_ERROR_PAUSE, MAX_CHUNK_LIST, MAX_CHUNK_SIZE, MAX_CONNECTIONS, MAX_DOOM_BODY,
    MAX_EMPTY_BODY, MAX_META_BODY, MAX_RECORD_AHEAD, MAX_SCAN_BYTES, MAX_SCAN_LIMIT,
    SERVER_HEADER_TIMEOUT, SHUTDOWN_GRACE,
};
use crate::meta::MetaStore;
use crate::metrics::StorageMetrics;
use crate::peers::Peers;
use crate::primary::{Primary, Refusal};
use crate::scrub::ScrubConfig;
use crate::sync::ReplicationConfig;
use crate::wire::{
    self, CasRequest, ChunkId, ChunkOwner, ConditionalWrite, DoomedChunk, GuardedWrite,
    LayoutSnapshot, ListedChunk, NodeStatus, Record, Table, header,
};

#[derive(Clone, Debug)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// Internal HTTP address to bind; port 0 picks a free port.
    pub http_addr: SocketAddr,
    pub cluster_secret: String,
    /// Capacity to report; None means the free space of the data dir's filesystem.
    pub capacity_bytes: Option<u64>,
    /// How fast and how often chunk files are re-read and verified.
    pub scrub: ScrubConfig,
    /// Most bytes of records one scan answer or anti-entropy batch carries
    /// (see [`MAX_SCAN_BYTES`]; tests lower it).
    pub scan_bytes: usize,
    /// Accept untagged answers from 0.1 nodes (rolling upgrade only).
    pub legacy_peers: bool,
    /// Timing of transfers, anti-entropy and compaction.
    pub replication: ReplicationConfig,
}

impl StorageConfig {
    /// A node in `data_dir` on `http_addr` with the defaults for the rest.
    pub fn new(data_dir: PathBuf, http_addr: SocketAddr, cluster_secret: &str) -> StorageConfig {
        StorageConfig {
            data_dir,
            http_addr,
            cluster_secret: cluster_secret.to_string(),
            capacity_bytes: None,
            scrub: ScrubConfig::default(),
            scan_bytes: MAX_SCAN_BYTES,
            legacy_peers: false,
            replication: ReplicationConfig::default(),
        }
    }
}

pub struct StorageNode {
    addr: SocketAddr,
    state: Arc<State>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    sync: tokio::task::JoinHandle<()>,
    scrub: tokio::task::JoinHandle<()>,
    clock_probe: tokio::task::JoinHandle<()>,
}

/// The link between a storage node and the background workers that run
/// beside it (lifecycle, repair, garbage collection: they live in the
/// gateway crate, which has the object model): the workers publish their
/// status here for the admin API to read, and the admin API wakes them.
#[derive(Clone)]
pub struct WorkerPort {
    status: Arc<Mutex<Bytes>>,
    wake: watch::Sender<u64>,
}

impl Default for WorkerPort {
    fn default() -> WorkerPort {
        WorkerPort {
            status: Arc::default(),
            wake: watch::channel(0).0,
        }
    }
}

impl WorkerPort {
    /// Replaces what `GET /workers/status` answers.
    pub fn publish(&self, status: Bytes) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = status;
    }

    pub fn status(&self) -> Bytes {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Asks the workers for a pass now.
    pub fn wake(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes on every [`WorkerPort::wake`].
    pub fn wakes(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }
}

/// What request handlers share.
struct State {
    node_id: String,
    secret: String,
    data_dir: PathBuf,
    capacity_bytes: Option<u64>,
    chunks: ChunkStore,
    meta: Arc<MetaStore>,
    layout: Arc<LayoutStore>,
    primary: Primary,
    scan_bytes: usize,
    /// How long deletions are remembered (see `crate::sync`).
    horizon: std::time::Duration,
    /// The cluster's time as the requests' signing times tell it.
    clock: Arc<ClusterClock>,
    in_flight: AtomicU32,
    metrics: StorageMetrics,
    workers: WorkerPort,
}

impl StorageNode {
    /// Creates or opens the data dir (node id, chunks, redb) and starts serving.
    pub async fn start(config: StorageConfig) -> anyhow::Result<StorageNode> {
        let data_dir = config.data_dir.clone();
        let (node_id, meta, layout) = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("create data dir {}", data_dir.display()))?;
            let node_id = load_or_create_node_id(&data_dir)?;
            let meta = Arc::new(MetaStore::open(&data_dir.join("meta.redb"))?);
            let layout = Arc::new(LayoutStore::open(meta.clone())?);
            anyhow::Ok((node_id, meta, layout))
        })
        .await??;
        // The node's clock estimate learns from its callers' requests and
        // from its peers' answers alike.
        let clock = Arc::new(ClusterClock::default());
        let client = NodeClient::new(&config.cluster_secret)
            .accepting_legacy_peers(config.legacy_peers)
            .sharing_clock(clock.clone());
        let peers = Peers {
            node_id: Arc::from(node_id.as_str()),
            layout: layout.clone(),
            client: client.clone(),
        };
        let chunks = ChunkStore::open(&config.data_dir)
            .await
            .with_context(|| format!("open chunk store in {}", config.data_dir.display()))?;
        let listener = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("bind storage node to {}", config.http_addr))?;
        let addr = listener.local_addr()?;

        let state = Arc::new_cyclic(|weak: &Weak<State>| {
            // Weak: the registry must not keep the node (and redb) alive.
            let weak = weak.clone();
            let metrics = StorageMetrics::new(
                &node_id,
                move || weak.upgrade().map(|s| s.status()),
                clock.clone(),
            );
            State {
                node_id,
                secret: config.cluster_secret,
                data_dir: config.data_dir,
                capacity_bytes: config.capacity_bytes,
                chunks,
                primary: Primary::new(
                    peers.clone(),
                    meta.clone(),
                    config.replication.tombstone_horizon,
                ),
                meta,
                layout,
                scan_bytes: config.scan_bytes.max(1),
                horizon: config.replication.tombstone_horizon,
                clock,
                in_flight: AtomicU32::new(0),
                metrics,
                workers: WorkerPort::default(),
            }
        });
        let (stop, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, state.clone(), stop_rx.clone()));
        let scrub = tokio::spawn(crate::scrub::run(
            state.chunks.clone(),
            config.scrub,
            state.metrics.clone(),
            stop_rx.clone(),
        ));
        let clock_probe = tokio::spawn(crate::peers::probe_clocks(peers.clone(), stop_rx.clone()));
        let sync = tokio::spawn(crate::sync::run(
            peers,
            state.meta.clone(),
            state.scan_bytes,
            config.replication,
            stop_rx,
        ));
        tracing::info!(node_id = %state.node_id, %addr, "storage node listening");
        Ok(StorageNode {
            addr,
            state,
            stop,
            server,
            sync,
            scrub,
            clock_probe,
        })
    }

    /// Stable id, persisted in the data dir.
    pub fn id(&self) -> &str {
        &self.state.node_id
    }

    /// The HTTP address actually bound.
    pub fn http_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's metadata store, for local wiring (layout records).
    pub fn meta(&self) -> Arc<MetaStore> {
        self.state.meta.clone()
    }

    /// The node's copy of the layout.
    pub fn layout(&self) -> Arc<LayoutStore> {
        self.state.layout.clone()
    }

    pub fn status(&self) -> NodeStatus {
        self.state.status()
    }

    /// This node's metrics, to register in the process's registry.
    pub fn metrics(&self) -> &StorageMetrics {
        &self.state.metrics
    }

    /// Where the background workers beside this node report and are woken.
    pub fn worker_port(&self) -> WorkerPort {
        self.state.workers.clone()
    }

    /// `/health/ready` of this node: its data dir takes a durable write and
    /// its metadata store reads (checked at most every [`crate::limits::READY_CACHE`]).
    pub fn readiness(&self) -> Arc<dyn telemetry::Readiness> {
        Arc::new(crate::health::StorageReadiness::new(
            self.state.data_dir.clone(),
            Arc::downgrade(&self.state.meta),
            Arc::downgrade(&self.state.layout),
            self.state.node_id.clone(),
        ))
    }

    /// Stops accepting, waits for requests in flight (bounded), closes redb.
    ///
    /// redb closes when the last `Arc<MetaStore>` is dropped: callers that
    /// took one with [`StorageNode::meta`] must drop it before reopening the
    /// same data dir.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.scrub.abort();
        let _ = self.scrub.await;
        self.clock_probe.abort();
        let _ = self.clock_probe.await;
        if let Err(e) = self.server.await {
            tracing::warn!("storage node server task failed: {e}");
        }
        // The anti-entropy task holds the metadata store; it stops between
        // batches, so end it outright if a push is slow.
        let mut sync = self.sync;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut sync)
            .await
            .is_err()
        {
            sync.abort();
            let _ = sync.await;
        }
        tracing::info!(node_id = %self.state.node_id, "storage node stopped");
    }
}

impl State {
    fn status(&self) -> NodeStatus {
        let used = self.chunks.used_bytes();
        let (capacity, free) = match self.capacity_bytes {
            Some(capacity) => (capacity, capacity.saturating_sub(used)),
            None => match rustix::fs::statvfs(&self.data_dir) {
                Ok(st) => (
                    st.f_blocks.saturating_mul(st.f_frsize),
                    st.f_bavail.saturating_mul(st.f_frsize),
                ),
                Err(e) => {
                    tracing::warn!("statvfs {}: {e}", self.data_dir.display());
                    (0, 0)
                }
            },
        };
        NodeStatus {
            node_id: self.node_id.clone(),
            capacity_bytes: capacity,
            used_bytes: used,
            free_bytes: free,
            chunk_count: self.chunks.chunk_count(),
            quarantined_chunks: self.chunks.quarantined_count(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }
}

/// Reads `<data_dir>/node_id`, or creates it (16 random hex digits) once,
/// durably, so a restarted node keeps its identity.
fn load_or_create_node_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("node_id");
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let id = s.trim();
            anyhow::ensure!(
                id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{} does not hold a node id (16 hex digits); restore it or remove the data dir",
                path.display()
            );
            return Ok(id.to_string());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    }
    let id = hex::encode(rand::random::<[u8; 8]>());
    let tmp = data_dir.join("node_id.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(id.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(id)
}

/// Accept loop; returns after a stop signal once connections are closed (or
/// the grace period is over).
async fn serve(listener: TcpListener, state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(SERVER_HEADER_TIMEOUT);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = async {
                // Take a connection slot first, so a full node stops accepting.
                let slot = slots.clone().acquire_owned().await;
                (listener.accept().await, slot)
            } => {
                let (accepted, slot) = accepted;
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        continue;
                    }
                };
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, "set TCP_NODELAY: {e}");
                }
                let state = state.clone();
                let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
                let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                connections.spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                    drop(slot);
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {SHUTDOWN_GRACE:?}; dropping them");
    }
    connections.shutdown().await;
}

type Resp = Response<Full<Bytes>>;

fn text(status: StatusCode, body: impl Into<String>) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body.into())));
    *resp.status_mut() = status;
    resp
}

/// A refused request: status and a short text for the body.
struct Reject {
    status: StatusCode,
    message: String,
    /// A request refused for its layout epoch.
    fence: Option<Fence>,
}

fn reject(status: StatusCode, message: impl Into<String>) -> Reject {
    Reject {
        status,
        message: message.into(),
        fence: None,
    }
}

fn fenced(fence: Fence) -> Reject {
    Reject {
        status: StatusCode::from_u16(wire::STATUS_FENCED).unwrap_or(StatusCode::CONFLICT),
        message: format!(
            "layout epoch: the node is at epoch {} ({})",
            fence.node_epoch(),
            fence.reason()
        ),
        fence: Some(fence),
    }
}

impl Reject {
    fn into_response(self) -> Resp {
        let mut resp = text(self.status, self.message);
        if let Some(fence) = self.fence {
            let headers = resp.headers_mut();
            headers.insert(header::EPOCH, http::HeaderValue::from(fence.node_epoch()));
            headers.insert(
                header::FENCE,
                http::HeaderValue::from_static(fence.reason()),
            );
        }
        resp
    }
}

fn empty(status: StatusCode) -> Resp {
    text(status, "")
}

fn postcard_body<T: serde::Serialize>(value: &T) -> Resp {
    match postcard::to_stdvec(value) {
        Ok(body) => Response::new(Full::new(Bytes::from(body))),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encode answer: {e}"),
        ),
    }
}

/// Counts a request in flight for as long as it lives.
struct InFlight<'a>(&'a AtomicU32);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a request asks for, parsed from method and path before the body is read.
enum Route {
    PutChunk(ChunkId),
    GetChunk(ChunkId),
    DeleteChunk(ChunkId),
    ListChunks,
    ListQuarantined,
    ReleaseQuarantined(ChunkId),
    Present,
    Doom,
    ListDoomed,
    ForgetDoomed,
    MetaMerge(Table),
    MetaCas(Table),
    MetaGuarded(Table),
    MetaGet(Table),
    MetaScan(Table),
    LayoutGet,
    LayoutPush,
    LayoutPrepare,
    LayoutAccept,
    Status,
    WorkerStatus,
    WorkerWake,
}

impl Route {
    fn body_limit(&self) -> u64 {
        match self {
            Route::PutChunk(_) => MAX_CHUNK_SIZE,
            Route::Doom | Route::ForgetDoomed | Route::Present => MAX_DOOM_BODY,
            Route::MetaMerge(_)
            | Route::MetaCas(_)
            | Route::MetaGuarded(_)
            | Route::LayoutPush
            | Route::LayoutPrepare
            | Route::LayoutAccept => MAX_META_BODY,
            _ => MAX_EMPTY_BODY,
        }
    }
}

fn route(method: &Method, path: &str) -> Result<Route, Reject> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let not_found = || reject(StatusCode::NOT_FOUND, "no such endpoint");
    let bad_method = || reject(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    match segments.as_slice() {
        ["chunks"] if method == Method::GET => Ok(Route::ListChunks),
        ["chunks"] => Err(bad_method()),
        ["chunks", "quarantine"] if method == Method::GET => Ok(Route::ListQuarantined),
        ["chunks", "quarantine"] => Err(bad_method()),
        ["chunks", "quarantine", id] if method == Method::DELETE => {
            let id: ChunkId = id
                .parse()
                .map_err(|_| reject(StatusCode::BAD_REQUEST, "bad chunk id"))?;
            Ok(Route::ReleaseQuarantined(id))
        }
        ["chunks", "quarantine", _] => Err(bad_method()),
        ["chunks", "present"] if method == Method::POST => Ok(Route::Present),
        ["chunks", "present"] => Err(bad_method()),
        ["chunks", "doomed"] if method == Method::GET => Ok(Route::ListDoomed),
        ["chunks", "doomed"] if method == Method::POST => Ok(Route::Doom),
        ["chunks", "doomed"] => Err(bad_method()),
        ["chunks", "doomed", "forget"] if method == Method::POST => Ok(Route::ForgetDoomed),
        ["chunks", "doomed", _] => Err(bad_method()),
        ["chunks", id] => {
            let id: ChunkId = id
                .parse()
                .map_err(|_| reject(StatusCode::BAD_REQUEST, "bad chunk id"))?;
            match *method {
                Method::PUT => Ok(Route::PutChunk(id)),
                Method::GET => Ok(Route::GetChunk(id)),
                Method::DELETE => Ok(Route::DeleteChunk(id)),
                _ => Err(bad_method()),
            }
        }
        ["meta", table, op] => {
            let table = Table::from_name(table).ok_or_else(not_found)?;
            match (*op, method) {
                ("merge", &Method::POST) => Ok(Route::MetaMerge(table)),
                ("cas", &Method::POST) if table != Table::Layout => Ok(Route::MetaCas(table)),
                ("cas", &Method::POST) => Err(reject(
                    StatusCode::BAD_REQUEST,
                    "the layout table takes no conditional writes",
                )),
                ("guarded", &Method::POST) if table != Table::Layout => {
                    Ok(Route::MetaGuarded(table))
                }
                ("get", &Method::GET) => Ok(Route::MetaGet(table)),
                ("scan", &Method::GET) => Ok(Route::MetaScan(table)),
                ("merge" | "get" | "scan" | "cas" | "guarded", _) => Err(bad_method()),
                _ => Err(not_found()),
            }
        }
        ["layout"] if method == Method::GET => Ok(Route::LayoutGet),
        ["layout"] if method == Method::POST => Ok(Route::LayoutPush),
        ["layout"] => Err(bad_method()),
        ["layout", "prepare"] if method == Method::POST => Ok(Route::LayoutPrepare),
        ["layout", "accept"] if method == Method::POST => Ok(Route::LayoutAccept),
        ["layout", "prepare" | "accept"] => Err(bad_method()),
        ["status"] if method == Method::GET => Ok(Route::Status),
        ["status"] => Err(bad_method()),
        ["workers", "status"] if method == Method::GET => Ok(Route::WorkerStatus),
        ["workers", "wake"] if method == Method::POST => Ok(Route::WorkerWake),
        ["workers", "status" | "wake"] => Err(bad_method()),
        _ => Err(not_found()),
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    state.in_flight.fetch_add(1, Ordering::Relaxed);
    let _in_flight = InFlight(&state.in_flight);
    if req.method() == Method::GET && req.uri().path() == "/health/live" {
        return Ok(text(StatusCode::OK, "ok"));
    }
    let authorization = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    let resp = handle_signed(&state, req)
        .await
        .unwrap_or_else(|r| r.into_response());
    Ok(tagged(&state, authorization.as_deref(), resp).await)
}

/// Adds the protocol version, this node's name and clock and, for a
/// request that carried a signature, the answer tag bound to it.
async fn tagged(state: &State, authorization: Option<&[u8]>, resp: Resp) -> Resp {
    let (mut parts, body) = resp.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    parts
        .headers
        .insert(header::PROTOCOL, http::HeaderValue::from(wire::PROTOCOL));
    if let Ok(name) = http::HeaderValue::from_str(&state.node_id) {
        parts.headers.insert(header::SENDER, name);
    }
    parts.headers.insert(
        header::TIME,
        http::HeaderValue::from(crate::clock::wall_ms()),
    );
    if let Some(authorization) = authorization {
        let text = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let content = auth::answer_content(text, &body);
        let tag = auth::answer_tag(
            &state.secret,
            authorization,
            parts.status.as_u16(),
            &content,
        );
        // Hex is always a valid header value.
        if let Ok(v) = http::HeaderValue::from_str(&tag) {
            parts.headers.insert(header::ANSWER_TAG, v);
        }
    }
    Response::from_parts(parts, Full::new(body))
}

async fn handle_signed(state: &Arc<State>, req: Request<Incoming>) -> Result<Resp, Reject> {
    let (parts, body) = req.into_parts();
    let now = SystemTime::now();
    let payload = auth::verify_request(&parts, &state.secret, now).map_err(|e| {
        tracing::debug!(uri = %parts.uri, "rejected request: {e}");
        reject(StatusCode::FORBIDDEN, format!("forbidden: {e}"))
    })?;
    if let Some(signed_at) = auth::signed_at(&parts)
        && let Some(sender) = parts
            .headers
            .get(header::SENDER)
            .and_then(|v| v.to_str().ok())
    {
        state.clock.observe(sender, signed_at, now);
    }
    let route = route(&parts.method, parts.uri.path())?;
    if payload == VerifiedPayload::Unsigned && !matches!(route, Route::PutChunk(_)) {
        // Only chunk bodies may skip the body hash: their signed crc32c
        // covers them. Any other body must be signed.
        return Err(reject(
            StatusCode::FORBIDDEN,
            "forbidden: UNSIGNED-PAYLOAD is only accepted for chunk bodies",
        ));
    }
    let body = read_body(&parts, body, route.body_limit()).await?;
    if !payload.matches(&body) {
        return Err(reject(
            StatusCode::FORBIDDEN,
            "forbidden: body does not match x-amz-content-sha256",
        ));
    }
    let query = Query::parse(parts.uri.query().unwrap_or(""))?;
    let epoch = match parts.headers.get(header::EPOCH) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| reject(StatusCode::BAD_REQUEST, "bad x-fd-epoch"))?,
        ),
        None => None,
    };
    let protocol_2 = parts.headers.contains_key(header::PROTOCOL);

    match route {
        Route::PutChunk(id) => {
            let result = put_chunk(state, &parts.headers, id, body).await;
            state.metrics.count(true, &result);
            result
        }
        Route::GetChunk(id) => {
            let result = get_chunk(state, &query, id).await;
            state.metrics.count(false, &result);
            result
        }
        Route::DeleteChunk(id) => {
            let older_than = query
                .get("older_than")
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| reject(StatusCode::BAD_REQUEST, "bad older_than"))
                })
                .transpose()?;
            match older_than {
                None => state.chunks.delete(id).await.map(|_| true),
                Some(secs) => {
                    let min_age = std::time::Duration::from_secs(secs);
                    state.chunks.delete_if_older(id, min_age).await
                }
            }
            .map(|removed| {
                if removed || older_than.is_none() {
                    empty(StatusCode::NO_CONTENT)
                } else {
                    text(StatusCode::OK, "kept")
                }
            })
            .map_err(chunk_error)
        }
        Route::MetaMerge(table) => {
            let records: Vec<Record> = postcard::from_bytes(&body)
                .map_err(|e| reject(StatusCode::BAD_REQUEST, format!("bad records: {e}")))?;
            if table == Table::Layout {
                if records.iter().any(|r| is_reserved(&r.key)) {
                    return Err(reject(
                        StatusCode::BAD_REQUEST,
                        "layout records under reserved keys are the node's own",
                    ));
                }
                let (meta, layout) = (state.meta.clone(), state.layout.clone());
                blocking_meta(move || {
                    meta.merge(table, &records)?;
                    layout.reload_registry()
                })
                .await?;
            } else {
                check_clock(&state.clock, &records)?;
                let (meta, layout) = (state.meta.clone(), state.layout.clone());
                let cutoff = crate::sync::forget_before(state.horizon);
                fenced_meta(move || {
                    let _fenced = layout.fence(epoch)?;
                    Ok(meta.merge_after(table, &records, cutoff)?)
                })
                .await?;
            }
            Ok(empty(StatusCode::NO_CONTENT))
        }
        Route::MetaCas(table) if protocol_2 => {
            let req: ConditionalWrite = postcard::from_bytes(&body).map_err(|e| {
                reject(
                    StatusCode::BAD_REQUEST,
                    format!("bad conditional write: {e}"),
                )
            })?;
            let epoch = epoch.ok_or_else(|| missing(header::EPOCH))?;
            check_clock(&state.clock, std::slice::from_ref(&req.write))?;
            match state.primary.conditional(table, epoch, req).await {
                Ok(outcome) => Ok(postcard_body(&outcome)),
                Err(Refusal::Fenced(fence)) => Err(fenced(fence)),
                Err(Refusal::Unavailable(why)) => Err(reject(StatusCode::SERVICE_UNAVAILABLE, why)),
                Err(Refusal::Invalid(why)) => Err(reject(StatusCode::BAD_REQUEST, why)),
            }
        }
        Route::MetaGuarded(table) => {
            let req: GuardedWrite = postcard::from_bytes(&body)
                .map_err(|e| reject(StatusCode::BAD_REQUEST, format!("bad guarded write: {e}")))?;
            if req.guard_table == Table::Layout {
                return Err(reject(
                    StatusCode::BAD_REQUEST,
                    "the layout table guards no writes",
                ));
            }
            let epoch = epoch.ok_or_else(|| missing(header::EPOCH))?;
            check_clock(&state.clock, std::slice::from_ref(&req.write))?;
            match state.primary.guarded(table, epoch, req).await {
                Ok(outcome) => Ok(postcard_body(&outcome)),
                Err(Refusal::Fenced(fence)) => Err(fenced(fence)),
                Err(Refusal::Unavailable(why)) => Err(reject(StatusCode::SERVICE_UNAVAILABLE, why)),
                Err(Refusal::Invalid(why)) => Err(reject(StatusCode::BAD_REQUEST, why)),
            }
        }
        Route::MetaCas(table) => {
            let req: CasRequest = postcard::from_bytes(&body)
                .map_err(|e| reject(StatusCode::BAD_REQUEST, format!("bad cas request: {e}")))?;
            let forwarded = parts.headers.contains_key(header::FORWARDED);
            match state.primary.legacy(table, req, forwarded).await {
                Ok(outcome) => Ok(postcard_body(&outcome)),
                Err(Refusal::Fenced(fence)) => Err(fenced(fence)),
                Err(Refusal::Unavailable(why)) => Err(reject(StatusCode::SERVICE_UNAVAILABLE, why)),
                Err(Refusal::Invalid(why)) => Err(reject(StatusCode::BAD_REQUEST, why)),
            }
        }
        Route::MetaGet(table) => {
            let key = query.hex("key")?.ok_or_else(|| missing("key"))?;
            let (meta, layout) = (state.meta.clone(), state.layout.clone());
            let record = fenced_meta(move || {
                let _fenced = (table != Table::Layout)
                    .then(|| layout.fence(epoch))
                    .transpose()?;
                Ok(meta.get(table, &key)?)
            })
            .await?;
            Ok(postcard_body(&record))
        }
        Route::MetaScan(table) => {
            let start = query.hex("start")?.unwrap_or_default();
            let end = query.hex("end")?.unwrap_or_default();
            let limit = match query.get("limit") {
                Some(l) => l
                    .parse::<u32>()
                    .map_err(|_| reject(StatusCode::BAD_REQUEST, "bad limit"))?,
                None => MAX_SCAN_LIMIT,
            }
            .min(MAX_SCAN_LIMIT);
            let (meta, layout, max_bytes) =
                (state.meta.clone(), state.layout.clone(), state.scan_bytes);
            let (records, more) = fenced_meta(move || {
                let _fenced = (table != Table::Layout)
                    .then(|| layout.fence(epoch))
                    .transpose()?;
                Ok(meta.scan(table, &start, &end, limit as usize, max_bytes)?)
            })
            .await?;
            let mut resp = postcard_body(&records);
            resp.headers_mut().insert(
                header::MORE,
                http::HeaderValue::from_static(if more { "1" } else { "0" }),
            );
            Ok(resp)
        }
        Route::LayoutGet => Ok(postcard_body(&state.layout.snapshot())),
        Route::LayoutPush => {
            let history: LayoutHistory = postcard::from_bytes(&body)
                .map_err(|e| reject(StatusCode::BAD_REQUEST, format!("bad layout: {e}")))?;
            let layout = state.layout.clone();
            let snapshot: LayoutSnapshot = blocking_meta(move || {
                layout.merge_history(&history)?;
                Ok(layout.snapshot())
            })
            .await?;
            Ok(postcard_body(&snapshot))
        }
        Route::LayoutPrepare => {
            let req: Prepare = postcard::from_bytes(&body)
                .map_err(|e| reject(StatusCode::BAD_REQUEST, format!("bad prepare: {e}")))?;
            let layout = state.layout.clone();
            let promise = blocking_meta(move || layout.prepare(&req)).await?;
            Ok(postcard_body(&promise))
        }
        Route::LayoutAccept => {
            let req: Accept = postcard::from_bytes(&body)
                .map_err(|e| reject(StatusCode::BAD_REQUEST, format!("bad accept: {e}")))?;
            let layout = state.layout.clone();
            let answer = blocking_meta(move || layout.accept(&req)).await?;
            Ok(postcard_body(&answer))
        }
        Route::ListChunks => {
            let (after, limit) = chunk_page(&query)?;
            let listed: Vec<ListedChunk> =
                state.chunks.list(after, limit).await.map_err(chunk_error)?;
            Ok(postcard_body(&listed))
        }
        Route::Doom | Route::ForgetDoomed => {
            let ids: Vec<ChunkId> = postcard::from_bytes(&body)
                .map_err(|e| reject(StatusCode::BAD_REQUEST, format!("bad chunk ids: {e}")))?;
            let meta = state.meta.clone();
            let doom = matches!(route, Route::Doom);
            blocking_meta(move || {
                if doom {
                    meta.doom(&ids, wall_ms())
                } else {
                    meta.undoom(&ids)
                }
            })
            .await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        Route::Present => {
            let ids: Vec<ChunkId> = postcard::from_bytes(&body)
                .map_err(|e| reject(StatusCode::BAD_REQUEST, format!("bad chunk ids: {e}")))?;
            let present = state.chunks.present(ids).await.map_err(chunk_error)?;
            Ok(postcard_body(&present))
        }
        Route::ListDoomed => {
            let (after, limit) = chunk_page(&query)?;
            let meta = state.meta.clone();
            let queued = blocking_meta(move || meta.doomed(after, limit)).await?;
            let now_ms = wall_ms();
            let mut listed = Vec::with_capacity(queued.len());
            let mut gone = Vec::new();
            for (id, queued_ms) in queued {
                match state.chunks.owner_of(id).await {
                    Ok(Some(owner)) => listed.push(DoomedChunk {
                        id,
                        owner,
                        queued_secs: now_ms.saturating_sub(queued_ms) / 1000,
                    }),
                    // Deleted already: nothing left to do for it.
                    Ok(None) => gone.push(id),
                    // An unreadable header: the scrubber's business.
                    Err(e) => tracing::debug!(chunk = %id, error = %e, "queued chunk unreadable"),
                }
            }
            if !gone.is_empty() {
                let meta = state.meta.clone();
                blocking_meta(move || meta.undoom(&gone)).await?;
            }
            Ok(postcard_body(&listed))
        }
        Route::ListQuarantined => {
            let quarantined = state.chunks.quarantined().await.map_err(chunk_error)?;
            Ok(postcard_body(&quarantined))
        }
        Route::ReleaseQuarantined(id) => {
            state
                .chunks
                .release_quarantined(id)
                .await
                .map_err(chunk_error)?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        Route::Status => Ok(postcard_body(&state.status())),
        Route::WorkerStatus => Ok(Response::new(Full::new(state.workers.status()))),
        Route::WorkerWake => {
            state.workers.wake();
            Ok(empty(StatusCode::NO_CONTENT))
        }
    }
}

/// Reads a body of at most `limit` bytes; 413 when it is bigger, before
/// reading it when the length is announced.
async fn read_body(
    parts: &http::request::Parts,
    body: Incoming,
    limit: u64,
) -> Result<Bytes, Reject> {
    let too_large = || {
        reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {limit} bytes"),
        )
    };
    let announced = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    match Limited::new(body, limit as usize).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(reject(
            StatusCode::BAD_REQUEST,
            format!("reading body: {e}"),
        )),
    }
}

async fn put_chunk(
    state: &State,
    headers: &http::HeaderMap,
    id: ChunkId,
    body: Bytes,
) -> Result<Resp, Reject> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| missing(name))
    };
    let crc = parse_crc(header(wire::header::CRC32C)?)
        .ok_or_else(|| reject(StatusCode::BAD_REQUEST, "bad x-fd-crc32c"))?;
    let owner: ChunkOwner = hex::decode(header(wire::header::OWNER)?)
        .ok()
        .and_then(|raw| postcard::from_bytes(&raw).ok())
        .ok_or_else(|| reject(StatusCode::BAD_REQUEST, "bad x-fd-owner"))?;
    match state.chunks.put(id, owner, body, crc).await {
        Ok(()) => Ok(empty(StatusCode::NO_CONTENT)),
        Err(e) => Err(chunk_error(e)),
    }
}

async fn get_chunk(state: &State, query: &Query, id: ChunkId) -> Result<Resp, Reject> {
    let number = |name: &str| -> Result<Option<u64>, Reject> {
        query
            .get(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| reject(StatusCode::BAD_REQUEST, format!("bad {name}")))
            })
            .transpose()
    };
    let (offset, len) = (number("offset")?, number("len")?);
    let range = match (offset, len) {
        (None, None) => None,
        (offset, Some(len)) => Some((offset.unwrap_or(0), len)),
        (Some(_), None) => {
            return Err(reject(StatusCode::BAD_REQUEST, "offset needs len"));
        }
    };
    let read = state.chunks.get(id, range).await.map_err(chunk_error)?;
    let mut resp = Response::new(Full::new(read.data));
    let headers = resp.headers_mut();
    // Eight hex digits always make a valid header value.
    if let Ok(v) = http::HeaderValue::from_str(&format!("{:08x}", read.crc32c)) {
        headers.insert(wire::header::CRC32C, v);
    }
    headers.insert(wire::header::SIZE, http::HeaderValue::from(read.size));
    // The owner goes along so that a repair's copy keeps it (hex is a valid value).
    if let Ok(owner) = postcard::to_stdvec(&read.owner)
        && let Ok(v) = http::HeaderValue::from_str(&hex::encode(owner))
    {
        headers.insert(wire::header::OWNER, v);
    }
    Ok(resp)
}

/// Refuses records stamped further ahead of the cluster's time (as this
/// node estimates it, see [`ClusterClock`]) than [`MAX_RECORD_AHEAD`]: their
/// writer's clock is wrong, and its records would win over every later
/// write until real time caught up.
fn check_clock(clock: &ClusterClock, records: &[Record]) -> Result<(), Reject> {
    let now_ms = clock.now_ms();
    let limit = wire::ts_of_millis(now_ms + MAX_RECORD_AHEAD.as_millis() as u64);
    match records.iter().map(|r| r.ts).max() {
        Some(ts) if ts > limit => Err(reject(
            StatusCode::BAD_REQUEST,
            format!(
                "record timestamp is {} s ahead of the cluster's clocks: the writer's clock is wrong (check NTP)",
                (wire::ts_millis(ts) - now_ms) / 1000
            ),
        )),
        _ => Ok(()),
    }
}

/// Parses the 8-hex-digit crc32c header.
pub(crate) fn parse_crc(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

fn missing(name: &str) -> Reject {
    reject(StatusCode::BAD_REQUEST, format!("missing {name}"))
}

fn chunk_error(e: ChunkError) -> Reject {
    let status = match &e {
        ChunkError::NotFound => StatusCode::NOT_FOUND,
        ChunkError::Corrupt(_) => {
            tracing::warn!("corrupt chunk: {e}");
            StatusCode::from_u16(wire::STATUS_CHUNK_CORRUPT).unwrap_or(StatusCode::CONFLICT)
        }
        ChunkError::ChecksumMismatch { .. } => StatusCode::BAD_REQUEST,
        ChunkError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        ChunkError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
        ChunkError::Io(_) => {
            tracing::error!("chunk i/o error: {e}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    reject(status, e.to_string())
}

/// Runs a redb call off the async threads; errors answer 500.
async fn blocking_meta<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, Reject> {
    let internal = |e: String| {
        tracing::error!("metadata error: {e}");
        reject(StatusCode::INTERNAL_SERVER_ERROR, e)
    };
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(internal(format!("{e:#}"))),
        Err(e) => Err(internal(format!("metadata task failed: {e}"))),
    }
}

/// What a fenced metadata operation can fail with.
enum MetaError {
    Fenced(Fence),
    Failed(anyhow::Error),
}

impl From<Fence> for MetaError {
    fn from(fence: Fence) -> MetaError {
        MetaError::Fenced(fence)
    }
}

impl From<anyhow::Error> for MetaError {
    fn from(e: anyhow::Error) -> MetaError {
        MetaError::Failed(e)
    }
}

/// Runs a redb call that passes the layout fence off the async threads; a
/// fenced request answers 409, errors 500.
async fn fenced_meta<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, MetaError> + Send + 'static,
) -> Result<T, Reject> {
    match blocking_meta(move || {
        Ok(match f() {
            Ok(v) => Ok(v),
            Err(MetaError::Fenced(fence)) => Err(fence),
            Err(MetaError::Failed(e)) => return Err(e),
        })
    })
    .await?
    {
        Ok(v) => Ok(v),
        Err(fence) => Err(fenced(fence)),
    }
}

/// Decoded query parameters.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: &str) -> Result<Query, Reject> {
        let mut pairs = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                urlencoding::decode(s)
                    .map(|c| c.into_owned())
                    .map_err(|_| reject(StatusCode::BAD_REQUEST, "bad query encoding"))
            };
            pairs.push((decode(k)?, decode(v)?));
        }
        Ok(Query(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn hex(&self, name: &str) -> Result<Option<Vec<u8>>, Reject> {
        self.get(name)
            .map(|v| {
                hex::decode(v).map_err(|_| reject(StatusCode::BAD_REQUEST, format!("bad {name}")))
            })
            .transpose()
    }
}

/// `after` and `limit` of a chunk listing (`GET /chunks`, `/chunks/doomed`).
fn chunk_page(query: &Query) -> Result<(Option<ChunkId>, usize), Reject> {
    let after = match query.get("after") {
        Some(a) => Some(
            a.parse::<ChunkId>()
                .map_err(|_| reject(StatusCode::BAD_REQUEST, "bad after"))?,
        ),
        None => None,
    };
    let limit = match query.get("limit") {
        Some(l) => l
            .parse::<u32>()
            .map_err(|_| reject(StatusCode::BAD_REQUEST, "bad limit"))?,
        None => MAX_CHUNK_LIST,
    }
    .min(MAX_CHUNK_LIST);
    Ok((after, limit as usize))
}

/// Milliseconds since the epoch by this node's clock.
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
