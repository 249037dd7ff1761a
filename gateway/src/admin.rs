//! The admin API: JSON over HTTP on its own port, every request carrying
//! `Authorization: Bearer TOKEN`. `flexdrive admin` is its client; the
//! request and answer types below are shared with it. The same port serves
//! `GET /metrics`, `/health/live` and `/health/ready` without a token
//! (see the `telemetry` crate).
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/keys` [`CreateKey`] | [`CreatedKey`] (the only time the secret is shown) |
//! | `GET /v1/keys` | [`KeyList`] |
//! | `DELETE /v1/keys/{access_key}` | 204 |
//! | `POST /v1/keys/{access_key}/allow` [`Allow`] | [`KeyInfo`] |
//! | `GET /v1/status` | [`Status`]: members, partitions, layout, durability, GC |
//! | `GET /v1/layout` | [`LayoutStatus`]: epoch, versions, transitions in progress |
//! | `GET /v1/nodes` | [`NodeList`] |
//! | `GET /v1/nodes/{id}` | [`NodeDetail`] (with drain progress) |
//! | `POST /v1/nodes/{id}/remove` | 202 [`NodeDetail`]: the node drains, then leaves the layout |
//! | `GET /v1/buckets` | [`BucketList`] |
//! | `GET /v1/buckets/{name}` | [`BucketInfo`] (objects and bytes from a bounded scan) |
//! | `POST /v1/buckets` [`CreateBucket`] | 201 [`BucketInfo`] (owned by the root key) |
//! | `DELETE /v1/buckets/{name}` | 204; 409 BucketNotEmpty |
//! | `GET /v1/repair` | [`DurabilityReport`] |
//! | `GET /v1/gc` | [`GcReport`] |
//!
//! Durability and GC figures come from the background workers of the
//! leading storage node (see [`crate::workers`]).
//!
//! Errors are [`ErrorBody`] with the HTTP status.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use chunkstore::placement::NodeState;
use membership::{MemberState, Role};

use crate::keys::{KeyStore, Permissions};
use crate::limits::{
    ADMIN_BODY_TIMEOUT, ADMIN_BUCKET_SCAN_RECORDS, MAX_ADMIN_BODY, MAX_LISTED_PARTITIONS,
    PARTITIONS, QUORUM,
};
use crate::s3::Gateway;
use crate::store::cluster::Cluster;
use crate::store::model::{BucketRecord, KeyRecord, Versioning};
use crate::workers::WorkerStatus;
use crate::workers::gc::GcReport;
use crate::workers::repair::{DrainProgress, DrainRefused, DurabilityReport};

/// `POST /v1/keys`.
#[derive(Debug, Serialize, Deserialize)]
pub struct CreateKey {
    pub name: String,
}

/// A new key, with its secret (no Debug, so it is never logged).
#[derive(Serialize, Deserialize)]
pub struct CreatedKey {
    pub access_key: String,
    pub secret_key: String,
    pub name: String,
}

/// A key without its secret.
#[derive(Debug, Serialize, Deserialize)]
pub struct KeyInfo {
    pub access_key: String,
    pub name: String,
    /// RFC 3339.
    pub created: String,
    pub allow_create_bucket: bool,
    /// Permissions on buckets other than the key's own.
    pub buckets: Vec<Allow>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
}

/// `POST /v1/keys/{access_key}/allow`: permissions to add on a bucket.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Allow {
    pub bucket: String,
    #[serde(default)]
    pub read: bool,
    #[serde(default)]
    pub write: bool,
    #[serde(default)]
    pub owner: bool,
}

/// One process of the cluster: a gateway, or a storage node (also one that
/// is down, or that only the layout still knows).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberInfo {
    pub id: String,
    /// `storage` or `gateway`.
    pub role: String,
    pub zone: String,
    /// `alive`, `suspect` or `down`, as membership sees it.
    pub state: String,
    /// Storage nodes: `active`, `draining` or `removed` in the layout.
    #[serde(default)]
    pub layout: Option<String>,
    /// `ok`, or what is wrong: `down`, `suspect`, `draining`, `removed`.
    pub health: String,
    #[serde(default)]
    pub gossip_addr: Option<String>,
    /// Internal HTTP address (storage) or S3 address (gateway).
    pub http_addr: String,
    #[serde(default)]
    pub capacity_bytes: Option<u64>,
    #[serde(default)]
    pub used_bytes: Option<u64>,
    #[serde(default)]
    pub free_bytes: Option<u64>,
    #[serde(default)]
    pub chunk_count: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct NodeList {
    pub nodes: Vec<MemberInfo>,
}

/// `GET /v1/nodes/{id}`: the node and, while it drains, what is left.
#[derive(Debug, Serialize, Deserialize)]
pub struct NodeDetail {
    pub node: MemberInfo,
    #[serde(default)]
    pub drain: Option<DrainProgress>,
    /// Whether the durability figures come from a complete pass over every
    /// record (else they are a lower bound).
    pub scan_complete: bool,
}

/// Metadata partitions and how many of their replicas are alive.
#[derive(Debug, Serialize, Deserialize)]
pub struct PartitionHealth {
    /// Partitions, the system partition included.
    pub total: u32,
    /// Partitions with a quorum of live replicas (reads and writes work).
    pub with_quorum: u32,
    /// Partitions with all three replicas alive.
    pub fully_replicated: u32,
    /// Partitions without quorum (the first few).
    pub without_quorum: Vec<u16>,
}

/// One bucket in `GET /v1/buckets`.
#[derive(Debug, Serialize, Deserialize)]
pub struct BucketSummary {
    pub name: String,
    /// RFC 3339.
    pub created: String,
    /// Access key of the owner.
    pub owner: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BucketList {
    pub buckets: Vec<BucketSummary>,
}

/// `GET /v1/buckets/{name}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct BucketInfo {
    pub name: String,
    pub created: String,
    pub owner: String,
    /// `unversioned`, `enabled` or `suspended`.
    pub versioning: String,
    /// Keys whose current version is not a delete marker.
    pub objects: u64,
    /// Bytes of every stored version.
    pub bytes: u64,
    /// False when the count stopped at its bound (the numbers are a lower bound).
    pub complete: bool,
}

/// `POST /v1/buckets`.
#[derive(Debug, Serialize, Deserialize)]
pub struct CreateBucket {
    pub name: String,
}

/// The layout: its epoch, live versions, where reads go, and each
/// transition's progress (`GET /v1/layout`, and part of the status).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LayoutStatus {
    /// The decided epoch (0: none yet).
    pub epoch: u64,
    /// Live versions, oldest first.
    pub versions: Vec<VersionInfo>,
    /// The version reads go to.
    pub readable: u64,
    /// Versions newer than the readable one, with the partitions whose new
    /// replicas have all pulled their records.
    pub transitions: Vec<chunkstore::layout::Transition>,
    /// Nodes that are no partition's primary (down for a while).
    pub unavailable: Vec<String>,
    /// When the current epoch was decided (RFC 3339).
    #[serde(default)]
    pub decided: Option<String>,
    /// Storage nodes that answered, by the epoch they hold.
    #[serde(default)]
    pub nodes_at_epoch: BTreeMap<u64, usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VersionInfo {
    pub number: u64,
    /// Node ids holding partitions in it.
    pub members: Vec<String>,
}

/// `GET /v1/status`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    pub members: Vec<MemberInfo>,
    pub partitions: PartitionHealth,
    #[serde(default)]
    pub layout: LayoutStatus,
    pub durability: DurabilityReport,
    pub gc: GcReport,
    /// The storage node whose workers' figures these are (None while no
    /// node reports that it leads).
    #[serde(default)]
    pub leader: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A short code: `Unauthorized`, `NotFound`, `InvalidArgument`, or an S3 code.
    pub error: String,
    pub message: String,
}

type Answer = Response<Full<Bytes>>;

/// What the admin API answers from.
pub(crate) struct AdminApi {
    pub(crate) token: String,
    pub(crate) keys: Arc<KeyStore>,
    pub(crate) gateway: Gateway,
    pub(crate) cluster: Arc<Cluster>,
    /// `/metrics` and `/health/*`, answered without the token.
    pub(crate) ops: telemetry::Ops,
}

/// Serves the admin API on `listener` until `stopped` turns true.
pub(crate) fn serve(
    listener: TcpListener,
    api: AdminApi,
    stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let api = Arc::new(api);
    telemetry::serve(
        listener,
        move |req| {
            let api = api.clone();
            async move { api.handle(req).await }
        },
        stopped,
    )
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Answer {
    // Plain structs of strings and bools always serialize.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut answer = Response::new(Full::new(Bytes::from(bytes)));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    answer
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Answer {
    json(
        status,
        &ErrorBody {
            error: code.to_string(),
            message: message.into(),
        },
    )
}

fn from_s3(e: s3s::S3Error) -> Answer {
    let status = e.status_code().unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = e.message().unwrap_or("").to_string();
    error(status, e.code().as_str(), message)
}

fn key_info(key: &KeyRecord) -> KeyInfo {
    let created = rfc3339(key.created_ms);
    KeyInfo {
        access_key: key.access_key.clone(),
        name: key.name.clone(),
        created,
        allow_create_bucket: key.allow_create_bucket,
        buckets: key
            .grants
            .iter()
            .map(|g| Allow {
                bucket: g.bucket.clone(),
                read: g.read,
                write: g.write,
                owner: g.owner,
            })
            .collect(),
    }
}

impl AdminApi {
    fn authorized<B>(&self, req: &Request<B>) -> bool {
        let given = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        bool::from(given.as_bytes().ct_eq(self.token.as_bytes()))
    }

    async fn handle(&self, req: Request<Incoming>) -> Answer {
        // Probes and scrapers carry no token.
        if let Some(answer) = self.ops.answer(&req).await {
            return answer;
        }
        if !self.authorized(&req) {
            return error(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "missing or wrong admin token (Authorization: Bearer TOKEN)",
            );
        }
        let path = req.uri().path().trim_end_matches('/').to_string();
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        let method = req.method().clone();
        match (&method, segments.as_slice()) {
            (&Method::POST, ["v1", "keys"]) => match read_json::<CreateKey>(req).await {
                Ok(body) => self.create_key(&body.name).await,
                Err(answer) => answer,
            },
            (&Method::GET, ["v1", "keys"]) => self.list_keys().await,
            (&Method::DELETE, ["v1", "keys", access_key]) => self.delete_key(access_key).await,
            (&Method::POST, ["v1", "keys", access_key, "allow"]) => {
                match read_json::<Allow>(req).await {
                    Ok(body) => self.allow(access_key, body).await,
                    Err(answer) => answer,
                }
            }
            (&Method::GET, ["v1", "status"]) => json(StatusCode::OK, &self.status().await),
            (&Method::GET, ["v1", "layout"]) => json(StatusCode::OK, &self.layout().await),
            (&Method::GET, ["v1", "nodes"]) => json(
                StatusCode::OK,
                &NodeList {
                    nodes: self.members(),
                },
            ),
            (&Method::GET, ["v1", "nodes", id]) => self.node(id, StatusCode::OK).await,
            (&Method::POST, ["v1", "nodes", id, "remove"]) => self.remove_node(id).await,
            (&Method::GET, ["v1", "buckets"]) => self.list_buckets().await,
            (&Method::POST, ["v1", "buckets"]) => match read_json::<CreateBucket>(req).await {
                Ok(body) => self.create_bucket(&body.name).await,
                Err(answer) => answer,
            },
            (&Method::GET, ["v1", "buckets", name]) => match self.gateway.bucket(name).await {
                Ok(bucket) => self.bucket_info(&bucket, StatusCode::OK).await,
                Err(e) => from_s3(e),
            },
            (&Method::DELETE, ["v1", "buckets", name]) => {
                match self.gateway.delete_bucket(name).await {
                    Ok(()) => {
                        tracing::info!(bucket = %name, "bucket deleted through the admin API");
                        no_content()
                    }
                    Err(e) => from_s3(e),
                }
            }
            (&Method::GET, ["v1", "repair"]) => {
                json(StatusCode::OK, &self.workers().await.durability)
            }
            (&Method::GET, ["v1", "gc"]) => json(StatusCode::OK, &self.workers().await.gc),
            (
                _,
                [
                    "v1",
                    "keys" | "nodes" | "status" | "layout" | "repair" | "gc" | "buckets",
                    ..,
                ],
            ) => error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("{method} is not allowed on {path}"),
            ),
            _ => error(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no admin endpoint {path}"),
            ),
        }
    }

    async fn create_key(&self, name: &str) -> Answer {
        match self.keys.create(name).await {
            Ok(key) => {
                tracing::info!(access_key = %key.access_key, name = %key.name, "access key created");
                json(
                    StatusCode::CREATED,
                    &CreatedKey {
                        access_key: key.access_key,
                        secret_key: key.secret,
                        name: key.name,
                    },
                )
            }
            Err(e) => from_s3(e),
        }
    }

    async fn list_keys(&self) -> Answer {
        match self.keys.list().await {
            Ok(keys) => json(
                StatusCode::OK,
                &KeyList {
                    keys: keys.iter().map(key_info).collect(),
                },
            ),
            Err(e) => from_s3(e),
        }
    }

    async fn delete_key(&self, access_key: &str) -> Answer {
        match self.keys.delete(access_key).await {
            Ok(true) => {
                tracing::info!(access_key, "access key deleted");
                no_content()
            }
            Ok(false) => no_such_key(access_key),
            Err(e) => from_s3(e),
        }
    }

    async fn allow(&self, access_key: &str, allow: Allow) -> Answer {
        let bucket = match self.gateway.bucket(&allow.bucket).await {
            Ok(b) => b,
            Err(e) => return from_s3(e),
        };
        let add = Permissions {
            read: allow.read,
            write: allow.write,
            owner: allow.owner,
        };
        match self.keys.allow(access_key, &bucket, add).await {
            Ok(Some(key)) => json(StatusCode::OK, &key_info(&key)),
            Ok(None) => no_such_key(access_key),
            Err(e) => from_s3(e),
        }
    }
}

impl AdminApi {
    /// Every member membership knows, then layout nodes it does not (a
    /// node down since before this gateway started): storage first, by id.
    fn members(&self) -> Vec<MemberInfo> {
        let snapshot = self.cluster.snapshot();
        let layout = self.cluster.layout();
        let layout_state = |id: &str| layout.state(id).map(state_name);
        let mut members: Vec<MemberInfo> = snapshot
            .members
            .iter()
            .map(|m| {
                let layout = if m.role == Role::Storage {
                    layout_state(&m.id)
                } else {
                    None
                };
                let state = match m.state {
                    MemberState::Alive => "alive",
                    MemberState::Suspect => "suspect",
                    MemberState::Down => "down",
                };
                let load = m.load.as_ref();
                MemberInfo {
                    id: m.id.clone(),
                    role: match m.role {
                        Role::Storage => "storage".into(),
                        Role::Gateway => "gateway".into(),
                    },
                    zone: m.zone.clone(),
                    state: state.into(),
                    health: health(state, layout.as_deref()),
                    layout,
                    gossip_addr: Some(m.gossip_addr.to_string()),
                    http_addr: m.http_addr.to_string(),
                    capacity_bytes: load.map(|l| l.capacity_bytes),
                    used_bytes: load.map(|l| l.used_bytes),
                    free_bytes: load.map(|l| l.free_bytes),
                    chunk_count: load.map(|l| l.chunk_count),
                }
            })
            .collect();
        for entry in layout.entries() {
            if snapshot.get(&entry.id).is_none() {
                let layout = Some(state_name(entry.state));
                members.push(MemberInfo {
                    id: entry.id.clone(),
                    role: "storage".into(),
                    zone: entry.zone.clone(),
                    state: "down".into(),
                    health: health("down", layout.as_deref()),
                    layout,
                    gossip_addr: None,
                    http_addr: entry.http_addr.to_string(),
                    capacity_bytes: None,
                    used_bytes: None,
                    free_bytes: None,
                    chunk_count: None,
                });
            }
        }
        members.sort_by(|a, b| (a.role != "storage", &a.id).cmp(&(b.role != "storage", &b.id)));
        members
    }

    fn partitions(&self) -> PartitionHealth {
        let layout = self.cluster.layout();
        let mut health = PartitionHealth {
            total: u32::from(PARTITIONS) + 1,
            with_quorum: 0,
            fully_replicated: 0,
            without_quorum: Vec::new(),
        };
        for p in 0..=PARTITIONS {
            let replicas = layout.partition_replicas(p);
            let live = replicas
                .iter()
                .filter(|id| self.cluster.is_live(id))
                .count();
            if live >= QUORUM {
                health.with_quorum += 1;
            } else if health.without_quorum.len() < MAX_LISTED_PARTITIONS {
                health.without_quorum.push(p);
            }
            if live >= crate::limits::REPLICAS {
                health.fully_replicated += 1;
            }
        }
        health
    }

    /// The leading storage node's worker status (empty, marked incomplete,
    /// while none reports).
    async fn workers(&self) -> WorkerStatus {
        crate::workers::leader_status(&self.cluster)
            .await
            .unwrap_or_default()
    }

    /// The layout as every live storage node's copy merged shows it.
    async fn layout(&self) -> LayoutStatus {
        let epochs = self.cluster.refresh(usize::MAX).await;
        let layout = self.cluster.layout();
        let history = layout.history();
        let committed = &history.committed;
        let mut nodes_at_epoch = BTreeMap::new();
        for epoch in epochs.values().flatten() {
            *nodes_at_epoch.entry(*epoch).or_default() += 1;
        }
        LayoutStatus {
            epoch: committed.epoch,
            versions: committed
                .versions
                .iter()
                .map(|v| VersionInfo {
                    number: v.number,
                    members: v.members.iter().map(|m| m.id.clone()).collect(),
                })
                .collect(),
            readable: committed.readable,
            transitions: layout.placement().transitions(&history.synced),
            unavailable: committed.unavailable.iter().cloned().collect(),
            decided: (committed.epoch > 0).then(|| rfc3339(committed.made_ms)),
            nodes_at_epoch,
        }
    }

    async fn status(&self) -> Status {
        let workers = self.workers().await;
        Status {
            layout: self.layout().await,
            members: self.members(),
            partitions: self.partitions(),
            durability: workers.durability,
            gc: workers.gc,
            leader: (!workers.node.is_empty()).then_some(workers.node),
        }
    }

    async fn node(&self, id: &str, status: StatusCode) -> Answer {
        let Some(node) = self.members().into_iter().find(|m| m.id == id) else {
            return error(
                StatusCode::NOT_FOUND,
                "NoSuchNode",
                format!("no node {id}; `flexdrive admin node list` shows the ids"),
            );
        };
        let report = self.workers().await.durability;
        let drain = report.draining.iter().find(|d| d.node == id).cloned();
        json(
            status,
            &NodeDetail {
                node,
                drain,
                scan_complete: report.complete,
            },
        )
    }

    async fn remove_node(&self, id: &str) -> Answer {
        match crate::workers::repair::start_drain(&self.cluster, id).await {
            Ok(()) => {
                tracing::info!(node = id, "decommission asked for: draining");
                crate::workers::wake(&self.cluster).await;
                self.node(id, StatusCode::ACCEPTED).await
            }
            Err(DrainRefused::NotInLayout) => self.node(id, StatusCode::CONFLICT).await,
            Err(e @ DrainRefused::LayoutWrite(_)) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                e.to_string(),
            ),
            Err(e) => error(StatusCode::CONFLICT, "CannotRemove", e.to_string()),
        }
    }
}

impl AdminApi {
    async fn list_buckets(&self) -> Answer {
        match self.gateway.all_buckets().await {
            Ok(buckets) => json(
                StatusCode::OK,
                &BucketList {
                    buckets: buckets
                        .into_iter()
                        .map(|b| BucketSummary {
                            created: rfc3339(b.created_ms),
                            name: b.name,
                            owner: b.owner,
                        })
                        .collect(),
                },
            ),
            Err(e) => from_s3(e),
        }
    }

    async fn create_bucket(&self, name: &str) -> Answer {
        match self.gateway.create_bucket_as_root(name).await {
            Ok(bucket) => {
                tracing::info!(bucket = %name, "bucket created through the admin API");
                self.bucket_info(&bucket, StatusCode::CREATED).await
            }
            Err(e) => from_s3(e),
        }
    }

    async fn bucket_info(&self, bucket: &BucketRecord, status: StatusCode) -> Answer {
        let (objects, bytes, complete) = match self
            .gateway
            .bucket_usage(bucket, ADMIN_BUCKET_SCAN_RECORDS)
            .await
        {
            Ok(usage) => usage,
            Err(e) => return from_s3(e),
        };
        let versioning = match bucket.versioning {
            Versioning::Unversioned => "unversioned",
            Versioning::Enabled => "enabled",
            Versioning::Suspended => "suspended",
        };
        json(
            status,
            &BucketInfo {
                name: bucket.name.clone(),
                created: rfc3339(bucket.created_ms),
                owner: bucket.owner.clone(),
                versioning: versioning.into(),
                objects,
                bytes,
                complete,
            },
        )
    }
}

fn no_content() -> Answer {
    let mut answer = Response::new(Full::new(Bytes::new()));
    *answer.status_mut() = StatusCode::NO_CONTENT;
    answer
}

/// A time in ms since the epoch as RFC 3339 (UTC).
pub fn rfc3339(ms: u64) -> String {
    time::OffsetDateTime::from(UNIX_EPOCH + Duration::from_millis(ms))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn state_name(state: NodeState) -> String {
    match state {
        NodeState::Active => "active",
        NodeState::Draining => "draining",
        NodeState::Removed => "removed",
    }
    .to_string()
}

/// `ok`, or the worst thing about a member.
fn health(state: &str, layout: Option<&str>) -> String {
    match (state, layout) {
        ("down" | "suspect", _) => state.to_string(),
        (_, Some(l @ ("draining" | "removed"))) => l.to_string(),
        _ => "ok".to_string(),
    }
}

fn no_such_key(access_key: &str) -> Answer {
    error(
        StatusCode::NOT_FOUND,
        "NoSuchKey",
        format!("no access key {access_key}"),
    )
}

/// The request body as JSON of type T, or the error answer.
async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Answer> {
    let collected = tokio::time::timeout(
        ADMIN_BODY_TIMEOUT,
        Limited::new(req.into_body(), MAX_ADMIN_BODY).collect(),
    )
    .await
    .map_err(|_| {
        error(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeout",
            format!("the request body did not arrive within {ADMIN_BODY_TIMEOUT:?}"),
        )
    })?;
    let body = collected
        .map_err(|e| {
            if e.is::<LengthLimitError>() {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "BodyTooLarge",
                    format!("admin requests are at most {MAX_ADMIN_BODY} bytes"),
                )
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    "IncompleteBody",
                    format!("reading the request body failed: {e}"),
                )
            }
        })?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            format!("request body is not the expected JSON: {e}"),
        )
    })
}

/// Binds the admin listener (so a busy port is an error at start).
pub(crate) async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    telemetry::bind(addr).await
}
