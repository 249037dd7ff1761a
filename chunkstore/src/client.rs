//! Signed client for the internal API, used by gateways and by storage nodes
//! talking to each other. Connections are pooled and set TCP_NODELAY.

use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::auth::{self, EMPTY_SHA256, UNSIGNED_PAYLOAD};
use crate::chunk::QuarantinedChunk;
use crate::clock::ClusterClock;
use crate::layout::{Accept, Accepted, LayoutHistory, Prepare, Promise};
use crate::layout_store::Fence;
use crate::limits::{
    CONNECT_TIMEOUT, DOOM_BATCH, MAX_CHUNK_SIZE, MAX_ERROR_BODY, MAX_ERROR_TEXT, MAX_META_RESPONSE,
    MAX_SCAN_LIMIT, POOL_IDLE_TIMEOUT, POOL_MAX_IDLE_PER_HOST, REQUEST_TIMEOUT,
};
use crate::wire::{
    self, CasOutcome, CasRequest, ChunkId, ChunkOwner, ConditionalOutcome, ConditionalWrite,
    DoomedChunk, GuardedWrite, LayoutSnapshot, ListedChunk, NodeStatus, Record, Table, header,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not connect, or the connection broke.
    #[error("node {0} unreachable: {1}")]
    Unreachable(SocketAddr, String),
    /// The chunk is not on that node.
    #[error("not found")]
    NotFound,
    /// The node holds the chunk but its checksum does not match (corrupt copy),
    /// or the bytes received do not match the checksum the node sent.
    #[error("checksum mismatch on node {0}")]
    Corrupt(SocketAddr),
    /// A metadata request the node refused for its layout epoch.
    #[error("node {0} fenced the request ({1:?})")]
    Fenced(SocketAddr, Fence),
    /// Any other non-success answer.
    #[error("node {0} answered {1}: {2}")]
    Status(SocketAddr, u16, String),
}

/// Client for one cluster (one secret); cheap to clone.
#[derive(Clone)]
pub struct NodeClient {
    http: Client<HttpConnector, Full<Bytes>>,
    secret: Arc<str>,
    /// Accept answers without a tag from 0.1 nodes (rolling upgrade only).
    legacy_peers: bool,
    /// This process's name, sent with every request (see `header::SENDER`).
    sender: Option<Arc<str>>,
    /// The nodes' clocks as their answers give them.
    clock: Arc<ClusterClock>,
}

/// A page of a scan as one node answered it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanAnswer {
    pub records: Vec<Record>,
    /// The range holds more records than the page: go on after the last key.
    pub more: bool,
}

/// An answer: status, headers and the body read in full (bounded).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl NodeClient {
    pub fn new(cluster_secret: &str) -> NodeClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let http = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .build(connector);
        NodeClient {
            http,
            secret: Arc::from(cluster_secret),
            legacy_peers: false,
            sender: None,
            clock: Arc::new(ClusterClock::default()),
        }
    }

    /// Learns the nodes' clocks into `clock` (a storage node's own estimate,
    /// which its callers' requests feed as well).
    pub fn sharing_clock(mut self, clock: Arc<ClusterClock>) -> NodeClient {
        self.clock = clock;
        self
    }

    /// The cluster's time as the nodes' answers tell it.
    pub fn clock(&self) -> &Arc<ClusterClock> {
        &self.clock
    }

    /// Names this process in every request (a node id, a gateway's name).
    pub fn sending_as(mut self, name: &str) -> NodeClient {
        self.sender = Some(Arc::from(name));
        self
    }

    /// Also accepts answers from nodes that run 0.1 (untagged): only
    /// during a rolling upgrade from it.
    pub fn accepting_legacy_peers(mut self, legacy: bool) -> NodeClient {
        self.legacy_peers = legacy;
        self
    }

    /// Stores a chunk durably (fsync) on `node`. `crc32c` is the checksum of
    /// `data`; the node verifies it before it writes anything.
    pub async fn put_chunk(
        &self,
        node: SocketAddr,
        id: ChunkId,
        owner: &ChunkOwner,
        data: Bytes,
        crc32c: u32,
    ) -> Result<(), ClientError> {
        let owner = postcard::to_stdvec(owner)
            .map_err(|e| ClientError::Status(node, 0, format!("cannot encode owner: {e}")))?;
        let headers = [
            (wire::header::CRC32C, format!("{crc32c:08x}")),
            (wire::header::OWNER, hex::encode(owner)),
        ];
        // The body is not hashed into the signature: the signed crc32c header
        // covers it, and the node checks it before writing.
        let answer = self
            .send(
                node,
                Method::PUT,
                format!("/chunks/{id}"),
                &headers,
                data,
                UNSIGNED_PAYLOAD,
                MAX_ERROR_BODY,
            )
            .await?;
        expect_chunk(node, answer).map(drop)
    }

    /// Reads `len` bytes at `offset` of a chunk (the whole chunk when `range`
    /// is None). The node verifies the whole chunk's checksum before it
    /// answers; a whole-chunk read is verified again here.
    pub async fn get_chunk(
        &self,
        node: SocketAddr,
        id: ChunkId,
        range: Option<(u64, u64)>,
    ) -> Result<Bytes, ClientError> {
        self.get_verified(node, id, range)
            .await
            .map(|(answer, _)| answer.body)
    }

    /// Copies a whole chunk from `from` to `to` (durably), verified on the
    /// way, keeping the owner the source's file names: a repair's copy.
    pub async fn copy_chunk(
        &self,
        from: SocketAddr,
        to: SocketAddr,
        id: ChunkId,
    ) -> Result<(), ClientError> {
        let (answer, crc) = self.get_verified(from, id, None).await?;
        let owner: ChunkOwner = answer
            .headers
            .get(wire::header::OWNER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| hex::decode(v).ok())
            .and_then(|v| postcard::from_bytes(&v).ok())
            .ok_or_else(|| ClientError::Status(from, 200, "answer without x-fd-owner".into()))?;
        self.put_chunk(to, id, &owner, answer.body, crc).await
    }

    /// A chunk read (see [`NodeClient::get_chunk`]) and the whole chunk's crc32c.
    async fn get_verified(
        &self,
        node: SocketAddr,
        id: ChunkId,
        range: Option<(u64, u64)>,
    ) -> Result<(Answer, u32), ClientError> {
        let path = match range {
            None => format!("/chunks/{id}"),
            Some((offset, len)) => format!("/chunks/{id}?offset={offset}&len={len}"),
        };
        let answer = self.get(node, path, MAX_CHUNK_SIZE).await?;
        let answer = expect_chunk(node, answer)?;
        let crc = answer
            .headers
            .get(wire::header::CRC32C)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::server::parse_crc)
            .ok_or_else(|| ClientError::Status(node, 200, "answer without x-fd-crc32c".into()))?;
        let complete = match range {
            None => crc32c::crc32c(&answer.body) == crc,
            Some((_, len)) => answer.body.len() as u64 == len,
        };
        if !complete {
            return Err(ClientError::Corrupt(node));
        }
        Ok((answer, crc))
    }

    /// Deletes a chunk; deleting a missing chunk succeeds.
    pub async fn delete_chunk(&self, node: SocketAddr, id: ChunkId) -> Result<(), ClientError> {
        let answer = self
            .bodyless(node, Method::DELETE, format!("/chunks/{id}"))
            .await?;
        match expect_chunk(node, answer) {
            Ok(_) | Err(ClientError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes a chunk only if its file was written at least `min_age_secs`
    /// ago (by the node's clock), so that a copy written since the caller
    /// looked is kept. True if a file was removed.
    pub async fn delete_chunk_if_older(
        &self,
        node: SocketAddr,
        id: ChunkId,
        min_age_secs: u64,
    ) -> Result<bool, ClientError> {
        let path = format!("/chunks/{id}?older_than={min_age_secs}");
        let answer = self.bodyless(node, Method::DELETE, path).await?;
        match expect_chunk(node, answer) {
            Ok(answer) => Ok(answer.status == StatusCode::NO_CONTENT),
            Err(ClientError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Up to `limit` chunks of `node` with ids above `after`, in id order.
    pub async fn list_chunks(
        &self,
        node: SocketAddr,
        after: Option<ChunkId>,
        limit: u32,
    ) -> Result<Vec<ListedChunk>, ClientError> {
        let path = match after {
            Some(id) => format!("/chunks?after={id}&limit={limit}"),
            None => format!("/chunks?limit={limit}"),
        };
        let answer = self.get(node, path, MAX_META_RESPONSE).await?;
        decode(node, expect_success(node, answer)?)
    }

    /// Which of `ids` have a chunk file on `node`, in order.
    pub async fn chunks_present(
        &self,
        node: SocketAddr,
        ids: &[ChunkId],
    ) -> Result<Vec<bool>, ClientError> {
        let mut present = Vec::with_capacity(ids.len());
        for batch in ids.chunks(DOOM_BATCH) {
            let answer = self
                .post(
                    node,
                    None,
                    "/chunks/present".into(),
                    &batch,
                    MAX_META_RESPONSE,
                )
                .await?;
            let flags: Vec<bool> = decode(node, expect_success(node, answer)?)?;
            if flags.len() != batch.len() {
                return Err(ClientError::Status(
                    node,
                    200,
                    format!("{} answers for {} chunk ids", flags.len(), batch.len()),
                ));
            }
            present.extend(flags);
        }
        Ok(present)
    }

    /// Puts chunk ids on `node`'s deletion queue, durably.
    pub async fn doom_chunks(&self, node: SocketAddr, ids: &[ChunkId]) -> Result<(), ClientError> {
        for batch in ids.chunks(DOOM_BATCH) {
            let answer = self
                .post(node, None, "/chunks/doomed".into(), &batch, MAX_ERROR_BODY)
                .await?;
            expect_success(node, answer)?;
        }
        Ok(())
    }

    /// Up to `limit` chunks on `node`'s deletion queue above `after`.
    pub async fn doomed_chunks(
        &self,
        node: SocketAddr,
        after: Option<ChunkId>,
        limit: u32,
    ) -> Result<Vec<DoomedChunk>, ClientError> {
        let path = match after {
            Some(id) => format!("/chunks/doomed?after={id}&limit={limit}"),
            None => format!("/chunks/doomed?limit={limit}"),
        };
        let answer = self.get(node, path, MAX_META_RESPONSE).await?;
        decode(node, expect_success(node, answer)?)
    }

    /// Takes chunk ids off `node`'s deletion queue (a record still lists them).
    pub async fn forget_doomed(
        &self,
        node: SocketAddr,
        ids: &[ChunkId],
    ) -> Result<(), ClientError> {
        let answer = self
            .post(
                node,
                None,
                "/chunks/doomed/forget".into(),
                &ids,
                MAX_ERROR_BODY,
            )
            .await?;
        expect_success(node, answer)?;
        Ok(())
    }

    /// The chunk files `node`'s scrubber found corrupt.
    pub async fn quarantined(
        &self,
        node: SocketAddr,
    ) -> Result<Vec<QuarantinedChunk>, ClientError> {
        let answer = self
            .get(node, "/chunks/quarantine".into(), MAX_META_RESPONSE)
            .await?;
        decode(node, expect_success(node, answer)?)
    }

    /// Drops a quarantined file on `node` (a good copy is back).
    pub async fn release_quarantined(
        &self,
        node: SocketAddr,
        id: ChunkId,
    ) -> Result<(), ClientError> {
        let path = format!("/chunks/quarantine/{id}");
        let answer = self.bodyless(node, Method::DELETE, path).await?;
        expect_success(node, answer).map(drop)
    }

    /// What the background workers beside `node` last published.
    pub async fn worker_status(&self, node: SocketAddr) -> Result<Bytes, ClientError> {
        let answer = self
            .get(node, "/workers/status".into(), MAX_META_RESPONSE)
            .await?;
        expect_success(node, answer).map(|a| a.body)
    }

    /// Asks the background workers beside `node` for a pass now.
    pub async fn wake_workers(&self, node: SocketAddr) -> Result<(), ClientError> {
        let answer = self
            .bodyless(node, Method::POST, "/workers/wake".into())
            .await?;
        expect_success(node, answer).map(drop)
    }

    /// Merges records into a table, durably, at layout epoch `epoch`.
    pub async fn meta_put(
        &self,
        node: SocketAddr,
        epoch: u64,
        table: Table,
        records: &[Record],
    ) -> Result<(), ClientError> {
        let answer = self
            .post(
                node,
                Some(epoch),
                format!("/meta/{}/merge", table.name()),
                records,
                MAX_ERROR_BODY,
            )
            .await?;
        expect_success(node, answer).map(drop)
    }

    /// A conditional write through the partition's primary (`node`): the
    /// condition is checked against a quorum read and the write made at
    /// quorum, serialised with every other conditional write of the key.
    pub async fn conditional(
        &self,
        node: SocketAddr,
        epoch: u64,
        table: Table,
        req: &ConditionalWrite,
    ) -> Result<ConditionalOutcome, ClientError> {
        let answer = self
            .post(
                node,
                Some(epoch),
                format!("/meta/{}/cas", table.name()),
                req,
                MAX_META_RESPONSE,
            )
            .await?;
        decode(node, expect_success(node, answer)?)
    }

    /// A guarded write on the partition's primary (see [`GuardedWrite`]).
    pub async fn guarded(
        &self,
        node: SocketAddr,
        epoch: u64,
        table: Table,
        req: &GuardedWrite,
    ) -> Result<ConditionalOutcome, ClientError> {
        let answer = self
            .post(
                node,
                Some(epoch),
                format!("/meta/{}/guarded", table.name()),
                req,
                MAX_META_RESPONSE,
            )
            .await?;
        decode(node, expect_success(node, answer)?)
    }

    /// A conditional write the 0.1 way, for clusters that have no decided
    /// layout yet. `forwarded`: sent by a storage node to the node that
    /// must check it, which then does not forward it again.
    pub async fn meta_cas_legacy(
        &self,
        node: SocketAddr,
        table: Table,
        req: &CasRequest,
        forwarded: bool,
    ) -> Result<CasOutcome, ClientError> {
        // Without the protocol header: the node then checks it as 0.1 did.
        let body = postcard::to_stdvec(req)
            .map_err(|e| ClientError::Status(node, 0, format!("cannot encode cas body: {e}")))?;
        let hash = auth::sha256_hex(&body);
        let forwarded_header = [(header::FORWARDED, "1".to_string())];
        let answer = self
            .send_as(
                node,
                Method::POST,
                format!("/meta/{}/cas", table.name()),
                if forwarded { &forwarded_header } else { &[] },
                Bytes::from(body),
                &hash,
                MAX_META_RESPONSE,
                false,
            )
            .await?;
        decode(node, expect_success(node, answer)?)
    }

    /// POSTs a postcard body, signed with its hash.
    async fn post<T: serde::Serialize + ?Sized>(
        &self,
        node: SocketAddr,
        epoch: Option<u64>,
        path: String,
        body: &T,
        max_body: u64,
    ) -> Result<Answer, ClientError> {
        let body = postcard::to_stdvec(body)
            .map_err(|e| ClientError::Status(node, 0, format!("cannot encode {path} body: {e}")))?;
        let hash = auth::sha256_hex(&body);
        let epoch = epoch.map(|e| e.to_string());
        let headers: Vec<(&'static str, String)> =
            epoch.into_iter().map(|e| (header::EPOCH, e)).collect();
        self.send(
            node,
            Method::POST,
            path,
            &headers,
            Bytes::from(body),
            &hash,
            max_body,
        )
        .await
    }

    /// Reads one record at layout epoch `epoch`, tombstones included.
    pub async fn meta_get(
        &self,
        node: SocketAddr,
        epoch: u64,
        table: Table,
        key: &[u8],
    ) -> Result<Option<Record>, ClientError> {
        let path = format!("/meta/{}/get?key={}", table.name(), hex::encode(key));
        let answer = self
            .get_at(node, Some(epoch), path, MAX_META_RESPONSE)
            .await?;
        decode(node, expect_success(node, answer)?)
    }

    /// Records with `start <= key < end` in key order, tombstones included,
    /// at most `limit` of them (and a node's byte bound), at layout epoch
    /// `epoch`. An empty `end` means no upper bound.
    ///
    /// A node answers at most [`MAX_SCAN_LIMIT`] records per call whatever
    /// `limit` says; page on with the last key received while `more`.
    pub async fn meta_scan(
        &self,
        node: SocketAddr,
        epoch: u64,
        table: Table,
        start: &[u8],
        end: &[u8],
        limit: u32,
    ) -> Result<ScanAnswer, ClientError> {
        let limit = limit.min(MAX_SCAN_LIMIT);
        let path = format!(
            "/meta/{}/scan?start={}&end={}&limit={limit}",
            table.name(),
            hex::encode(start),
            hex::encode(end),
        );
        let answer = self
            .get_at(node, Some(epoch), path, MAX_META_RESPONSE)
            .await?;
        let answer = expect_success(node, answer)?;
        let more = match answer.headers.get(header::MORE) {
            Some(v) => v.as_bytes() == b"1",
            // 0.1 nodes cut pages by count only.
            None => false,
        };
        let records: Vec<Record> = decode(node, answer)?;
        let more = more || (records.len() >= limit as usize && limit > 0);
        Ok(ScanAnswer { records, more })
    }

    /// The node's layout history and registry.
    pub async fn layout(&self, node: SocketAddr) -> Result<LayoutSnapshot, ClientError> {
        let answer = self.get(node, "/layout".into(), MAX_META_RESPONSE).await?;
        decode(node, expect_success(node, answer)?)
    }

    /// Gives the node a layout history to merge; answers what it holds after.
    pub async fn push_layout(
        &self,
        node: SocketAddr,
        history: &LayoutHistory,
    ) -> Result<LayoutSnapshot, ClientError> {
        let answer = self
            .post(node, None, "/layout".into(), history, MAX_META_RESPONSE)
            .await?;
        decode(node, expect_success(node, answer)?)
    }

    /// Paxos phase 1 at `node`.
    pub async fn prepare(&self, node: SocketAddr, req: &Prepare) -> Result<Promise, ClientError> {
        let answer = self
            .post(node, None, "/layout/prepare".into(), req, MAX_META_RESPONSE)
            .await?;
        decode(node, expect_success(node, answer)?)
    }

    /// Paxos phase 2 at `node`.
    pub async fn accept(&self, node: SocketAddr, req: &Accept) -> Result<Accepted, ClientError> {
        let answer = self
            .post(node, None, "/layout/accept".into(), req, MAX_ERROR_BODY)
            .await?;
        decode(node, expect_success(node, answer)?)
    }

    pub async fn status(&self, node: SocketAddr) -> Result<NodeStatus, ClientError> {
        let answer = self.get(node, "/status".into(), MAX_ERROR_BODY).await?;
        decode(node, expect_success(node, answer)?)
    }

    /// A request without a body whose answer is short (or an error text).
    async fn bodyless(
        &self,
        node: SocketAddr,
        method: Method,
        path: String,
    ) -> Result<Answer, ClientError> {
        self.send(
            node,
            method,
            path,
            &[],
            Bytes::new(),
            EMPTY_SHA256,
            MAX_ERROR_BODY,
        )
        .await
    }

    async fn get(
        &self,
        node: SocketAddr,
        path: String,
        max_body: u64,
    ) -> Result<Answer, ClientError> {
        self.get_at(node, None, path, max_body).await
    }

    async fn get_at(
        &self,
        node: SocketAddr,
        epoch: Option<u64>,
        path: String,
        max_body: u64,
    ) -> Result<Answer, ClientError> {
        let epoch = epoch.map(|e| e.to_string());
        let headers: Vec<(&'static str, String)> =
            epoch.into_iter().map(|e| (header::EPOCH, e)).collect();
        self.send(
            node,
            Method::GET,
            path,
            &headers,
            Bytes::new(),
            EMPTY_SHA256,
            max_body,
        )
        .await
    }

    /// Signs and sends one request, and reads the answer's body (at most
    /// `max_body` bytes), all within [`REQUEST_TIMEOUT`].
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        node: SocketAddr,
        method: Method,
        path_and_query: String,
        headers: &[(&'static str, String)],
        body: Bytes,
        body_sha256: &str,
        max_body: u64,
    ) -> Result<Answer, ClientError> {
        self.send_as(
            node,
            method,
            path_and_query,
            headers,
            body,
            body_sha256,
            max_body,
            true,
        )
        .await
    }

    /// [`NodeClient::send`], saying the protocol version or (for the 0.1
    /// conditional write) not.
    #[allow(clippy::too_many_arguments)]
    async fn send_as(
        &self,
        node: SocketAddr,
        method: Method,
        path_and_query: String,
        headers: &[(&'static str, String)],
        body: Bytes,
        body_sha256: &str,
        max_body: u64,
        protocol: bool,
    ) -> Result<Answer, ClientError> {
        let local = |why: String| ClientError::Status(node, 0, why);
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://{node}{path_and_query}"));
        for (name, value) in headers {
            builder = builder.header(*name, value.as_str());
        }
        if protocol {
            builder = builder.header(header::PROTOCOL, wire::PROTOCOL.to_string());
            if let Some(sender) = &self.sender {
                builder = builder.header(header::SENDER, sender.as_ref());
            }
        }
        let mut req = builder
            .body(Full::new(body))
            .map_err(|e| local(format!("cannot build request: {e}")))?;
        auth::sign_request(&mut req, &self.secret, body_sha256, SystemTime::now())
            .map_err(|e| local(e.to_string()))?;
        let authorization = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default();

        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| ClientError::Unreachable(node, error_chain(&e)))?;
            let (parts, body) = resp.into_parts();
            // Error answers are short texts; anything longer is cut.
            let limit = if parts.status.is_success() {
                max_body
            } else {
                MAX_ERROR_BODY
            };
            let body = match Limited::new(body, limit as usize).collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return Err(ClientError::Status(
                        node,
                        parts.status.as_u16(),
                        format!("answer larger than {limit} bytes"),
                    ));
                }
                Err(e) => {
                    return Err(ClientError::Unreachable(
                        node,
                        format!("reading answer: {e}"),
                    ));
                }
            };
            let answer = Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            };
            self.authenticate(node, &authorization, &answer)?;
            Ok(answer)
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Unreachable(
                node,
                format!("no answer within {REQUEST_TIMEOUT:?}"),
            )),
        }
    }
}

impl NodeClient {
    /// Checks the answer's tag: a node of this release tags every answer to
    /// a signed request; only a 0.1 node (no protocol header), and only with
    /// `legacy_peers`, may answer without one.
    fn authenticate(
        &self,
        node: SocketAddr,
        authorization: &[u8],
        answer: &Answer,
    ) -> Result<(), ClientError> {
        let header_text = |name: &str| answer.headers.get(name).and_then(|v| v.to_str().ok());
        let Some(tag) = header_text(header::ANSWER_TAG) else {
            if self.legacy_peers && answer.headers.get(header::PROTOCOL).is_none() {
                return Ok(());
            }
            return Err(ClientError::Status(
                node,
                answer.status.as_u16(),
                "answer without an authentication tag (a 0.1 node, or not a Flexdrive node)".into(),
            ));
        };
        let content = auth::answer_content(header_text, &answer.body);
        if auth::verify_answer_tag(
            &self.secret,
            authorization,
            answer.status.as_u16(),
            &content,
            tag,
        ) {
            if let (Some(sender), Some(ms)) = (
                header_text(header::SENDER),
                header_text(header::TIME).and_then(|t| t.parse::<u64>().ok()),
            ) {
                let their_time = UNIX_EPOCH + Duration::from_millis(ms);
                self.clock.observe(sender, their_time, SystemTime::now());
            }
            Ok(())
        } else {
            Err(ClientError::Status(
                node,
                answer.status.as_u16(),
                "answer authentication failed (not from a node of this cluster)".into(),
            ))
        }
    }
}

/// Passes success answers through and maps the others to errors.
fn expect_success(node: SocketAddr, answer: Answer) -> Result<Answer, ClientError> {
    expect(node, answer, false)
}

/// Same for chunk endpoints, where 404 means "no such chunk" and
/// [`wire::STATUS_CHUNK_CORRUPT`] a corrupt copy. (On metadata endpoints a
/// missing key is a 200 with `None`; a 404 there is an unknown endpoint or
/// table, an error.)
fn expect_chunk(node: SocketAddr, answer: Answer) -> Result<Answer, ClientError> {
    expect(node, answer, true)
}

fn expect(node: SocketAddr, answer: Answer, chunk: bool) -> Result<Answer, ClientError> {
    let status = answer.status;
    if status.is_success() {
        return Ok(answer);
    }
    let fence = answer
        .headers
        .get(header::FENCE)
        .and_then(|v| v.to_str().ok())
        .zip(
            answer
                .headers
                .get(header::EPOCH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok()),
        )
        .and_then(|(reason, epoch)| Fence::from_reason(reason, epoch));
    if let Some(fence) = fence
        && status.as_u16() == wire::STATUS_FENCED
    {
        return Err(ClientError::Fenced(node, fence));
    }
    match status.as_u16() {
        404 if chunk => Err(ClientError::NotFound),
        wire::STATUS_CHUNK_CORRUPT if chunk => Err(ClientError::Corrupt(node)),
        code => {
            let text = String::from_utf8_lossy(&answer.body);
            let text: String = text.chars().take(MAX_ERROR_TEXT).collect();
            Err(ClientError::Status(node, code, text))
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    node: SocketAddr,
    answer: Answer,
) -> Result<T, ClientError> {
    postcard::from_bytes(&answer.body).map_err(|e| {
        ClientError::Status(
            node,
            answer.status.as_u16(),
            format!("undecodable answer: {e}"),
        )
    })
}

/// "client error (Connect): tcp connect error: Connection refused", not just
/// the outermost "client error (Connect)".
fn error_chain(e: &hyper_util::client::legacy::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
