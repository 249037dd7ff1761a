//! The data path: cutting a body into chunks written to three nodes each,
//! in a bounded window, and streaming chunks back in order with read-ahead
//! and fail-over between replicas.

use std::io;
use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use chunkstore::{ChunkId, ChunkOwner};
use futures::stream::{FuturesOrdered, FuturesUnordered};
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};

use crate::checksum::{Algorithm, Hasher};
use crate::limits::{MAX_PLACEMENT_ATTEMPTS, READ_AHEAD, REPLICAS, WRITE_WINDOW};
use crate::store::cluster::{Cluster, NodeRef};
use crate::store::lease::WriteLease;
use crate::store::model::ChunkRef;
use crate::store::table::Tables;

/// What a body became once stored.
pub struct Written {
    pub chunks: Vec<ChunkRef>,
    pub size: u64,
    pub md5: [u8; 16],
    /// The checksums asked of [`DataPath::write`], by name, base64.
    pub checksums: Vec<(String, String)>,
    /// Keeps the garbage collector from the chunks until the record that
    /// lists them is committed: check [`WriteLease::holds`] right before,
    /// and keep it until after.
    pub lease: WriteLease,
}

#[derive(Clone)]
pub struct DataPath {
    cluster: Arc<Cluster>,
    /// Where write leases go.
    tables: Tables,
    chunk_size: usize,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl DataPath {
    pub fn new(tables: &Tables, chunk_size: usize) -> DataPath {
        DataPath {
            cluster: tables.cluster().clone(),
            tables: tables.clone(),
            chunk_size: chunk_size.max(1),
        }
    }

    /// Refuses a write up front when three copies cannot be made.
    pub fn check_writable(&self) -> S3Result<()> {
        let live = self.cluster.live_storage().len();
        if live < REPLICAS {
            return Err(s3_error!(
                ServiceUnavailable,
                "{live} storage nodes alive, {REPLICAS} needed to write"
            ));
        }
        Ok(())
    }

    /// Stores a body, computing MD5 and the `checksums` asked for as it
    /// streams. Every chunk is durable on three nodes when this returns Ok;
    /// on any error the chunks written so far are deleted.
    pub async fn write<S>(
        &self,
        mut body: S,
        owner: ChunkOwner,
        max_size: u64,
        checksums: &[Algorithm],
    ) -> S3Result<Written>
    where
        S: Stream<Item = Result<Bytes, BoxError>> + Unpin,
    {
        self.check_writable()?;
        let lease = WriteLease::start(&self.tables, &owner);
        let owner = Arc::new(owner);
        let mut md5 = Md5::new();
        let mut hasher = Hasher::new(checksums);
        let mut size: u64 = 0;
        let mut buf = BytesMut::new();
        let mut pending = FuturesOrdered::new();
        let mut done: Vec<ChunkRef> = Vec::new();

        let outcome: S3Result<()> = async {
            loop {
                let piece = match body.next().await {
                    None => break,
                    Some(Ok(piece)) => piece,
                    Some(Err(e)) => return Err(body_error(e)),
                };
                size += piece.len() as u64;
                if size > max_size {
                    return Err(s3_error!(
                        EntityTooLarge,
                        "body is larger than {max_size} bytes"
                    ));
                }
                md5.update(&piece);
                hasher.update(&piece);
                let mut piece = piece;
                while !piece.is_empty() {
                    let take = (self.chunk_size - buf.len()).min(piece.len());
                    buf.extend_from_slice(&piece.split_to(take));
                    if buf.len() == self.chunk_size {
                        if pending.len() >= WRITE_WINDOW
                            && let Some(r) = pending.next().await
                        {
                            done.push(r?);
                        }
                        let chunk = buf.split().freeze();
                        pending.push_back(self.spawn_write(chunk, owner.clone()));
                    }
                }
            }
            if !buf.is_empty() {
                pending.push_back(self.spawn_write(buf.split().freeze(), owner.clone()));
            }
            while let Some(r) = pending.next().await {
                done.push(r?);
            }
            Ok(())
        }
        .await;

        match outcome {
            Ok(()) => Ok(Written {
                chunks: done,
                size,
                md5: md5.finalize().into(),
                checksums: hasher.finalize(),
                lease,
            }),
            Err(e) => {
                // Chunks still in flight finish or fail on their own; the ones
                // that finished are removed so a failed PUT leaves nothing.
                while let Some(r) = pending.next().await {
                    if let Ok(c) = r {
                        done.push(c);
                    }
                }
                self.delete_chunks(done);
                Err(e)
            }
        }
    }

    /// Starts writing a chunk at once, while the body goes on streaming (a
    /// future in the window would only move when the window is awaited).
    fn spawn_write(
        &self,
        data: Bytes,
        owner: Arc<ChunkOwner>,
    ) -> impl Future<Output = S3Result<ChunkRef>> + use<> {
        let path = self.clone();
        let task = tokio::spawn(async move { path.write_chunk(data, owner).await });
        async move {
            task.await.unwrap_or_else(|e| {
                Err(s3_error!(
                    InternalError,
                    "a chunk write ended abnormally: {e}"
                ))
            })
        }
    }

    /// Writes one chunk to three distinct live nodes, replacing a node that
    /// fails with another one, a bounded number of times.
    async fn write_chunk(&self, data: Bytes, owner: Arc<ChunkOwner>) -> S3Result<ChunkRef> {
        let id = ChunkId::random();
        let crc32c = crc32c::crc32c(&data);
        let mut tried: Vec<NodeRef> = Vec::new();
        let mut stored: Vec<String> = Vec::new();
        let mut in_flight = FuturesUnordered::new();

        let launch = |node: NodeRef| {
            let cluster = self.cluster.clone();
            let data = data.clone();
            let owner = owner.clone();
            async move {
                let _guard = cluster.track(&node.id);
                let r = cluster
                    .client()
                    .put_chunk(node.addr, id, &owner, data, crc32c)
                    .await;
                (node, r)
            }
        };

        while tried.len() < REPLICAS {
            let Some(node) = self.cluster.place(&tried) else {
                break;
            };
            tried.push(node.clone());
            in_flight.push(launch(node));
        }
        while let Some((node, result)) = in_flight.next().await {
            match result {
                Ok(()) => stored.push(node.id),
                Err(e) => {
                    self.cluster.metrics().chunk_error(&node.id, "write");
                    tracing::warn!(node = %node.id, chunk = %id, error = %e, "chunk write failed; placing elsewhere");
                    if tried.len() < MAX_PLACEMENT_ATTEMPTS
                        && let Some(other) = self.cluster.place(&tried)
                    {
                        tried.push(other.clone());
                        in_flight.push(launch(other));
                    }
                }
            }
        }
        if stored.len() < REPLICAS {
            let partial = ChunkRef {
                id,
                size: data.len() as u64,
                crc32c,
                nodes: stored,
                stripe: None,
            };
            self.delete_chunks(vec![partial]);
            return Err(s3_error!(
                ServiceUnavailable,
                "could not store {REPLICAS} copies of a chunk"
            ));
        }
        Ok(ChunkRef {
            id,
            size: data.len() as u64,
            crc32c,
            nodes: stored,
            stripe: None,
        })
    }

    /// Frees chunks nothing should list any more: each copy goes on its
    /// node's deletion queue (durable), which the garbage collector drains,
    /// deleting a copy only once no record lists it there. So a chunk that
    /// another version, part or record still names is never deleted, and a
    /// crash of this gateway after queueing loses no delete. Sent in the
    /// background; a queue a node misses leaves an orphan for the sweep.
    pub fn delete_chunks(&self, chunks: Vec<ChunkRef>) {
        if chunks.is_empty() {
            return;
        }
        let mut by_node: std::collections::BTreeMap<String, Vec<chunkstore::ChunkId>> =
            std::collections::BTreeMap::new();
        for chunk in chunks {
            for node in chunk.nodes {
                by_node.entry(node).or_default().push(chunk.id);
            }
        }
        let cluster = self.cluster.clone();
        tokio::spawn(async move {
            for (node, ids) in by_node {
                let Some(addr) = cluster.addr_of(&node) else {
                    continue;
                };
                if let Err(e) = cluster.client().doom_chunks(addr, &ids).await {
                    tracing::debug!(%node, chunks = ids.len(), error = %e, "queueing chunk deletes failed");
                }
            }
        });
    }

    /// Streams `range` of the object made of `chunks`, in order, a few chunks
    /// ahead of the client. An unreadable chunk ends the stream with an error
    /// (the client sees a short body, never wrong bytes).
    pub fn read(
        &self,
        chunks: Vec<ChunkRef>,
        range: Range<u64>,
    ) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + Sync + 'static {
        let mut pieces = Vec::new();
        let mut offset = 0u64;
        for chunk in chunks {
            let (start, end) = (offset, offset + chunk.size);
            offset = end;
            if end <= range.start || start >= range.end {
                continue;
            }
            let from = range.start.max(start) - start;
            let to = range.end.min(end) - start;
            pieces.push((chunk, from, to));
        }

        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(1);
        let cluster = self.cluster.clone();
        tokio::spawn(async move {
            let mut fetched = futures::stream::iter(pieces)
                .map(|(chunk, from, to)| fetch_piece(cluster.clone(), chunk, from, to))
                .buffered(READ_AHEAD);
            while let Some(result) = fetched.next().await {
                let failed = result.is_err();
                if tx.send(result).await.is_err() || failed {
                    // The client went away, or the object cannot be read on.
                    return;
                }
            }
        });
        futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
    }
}

/// Reads bytes `from..to` of one chunk from the best replica that answers.
async fn fetch_piece(
    cluster: Arc<Cluster>,
    chunk: ChunkRef,
    from: u64,
    to: u64,
) -> Result<Bytes, io::Error> {
    if chunk.is_striped() {
        // Its files are shards, not copies: reading one as the chunk would
        // give other bytes. Stripes are read by decoding (docs/erasure.md).
        return Err(io::Error::other(format!(
            "chunk {} is erasure-coded; this gateway reads copies only",
            chunk.id
        )));
    }
    let whole = from == 0 && to == chunk.size;
    let range = if whole { None } else { Some((from, to - from)) };
    // Least-loaded live replica first; replicas not seen alive last.
    let live = cluster.live_storage();
    let mut replicas: Vec<(&String, u64)> = chunk
        .nodes
        .iter()
        .map(|id| {
            let score = live
                .iter()
                .find(|n| &n.id == id)
                .map(|n| n.score)
                .unwrap_or(u64::MAX);
            (id, score)
        })
        .collect();
    replicas.sort_by_key(|(_, s)| *s);
    let mut last_error = String::from("no replica");
    for (node, _) in replicas {
        let Some(addr) = cluster.addr_of(node) else {
            continue;
        };
        let _guard = cluster.track(node);
        match cluster.client().get_chunk(addr, chunk.id, range).await {
            Ok(bytes) if bytes.len() as u64 == to - from => {
                if whole && crc32c::crc32c(&bytes) != chunk.crc32c {
                    cluster.metrics().chunk_error(node, "read");
                    tracing::warn!(node = %node, chunk = %chunk.id, "chunk checksum mismatch; trying next replica");
                    last_error = format!("checksum mismatch on {node}");
                    continue;
                }
                return Ok(bytes);
            }
            Ok(bytes) => {
                cluster.metrics().chunk_error(node, "read");
                last_error = format!("short read from {node}: {} bytes", bytes.len());
            }
            Err(e) => {
                cluster.metrics().chunk_error(node, "read");
                tracing::warn!(node = %node, chunk = %chunk.id, error = %e, "chunk read failed; trying next replica");
                last_error = e.to_string();
            }
        }
    }
    Err(io::Error::other(format!(
        "chunk {} unreadable on every replica: {last_error}",
        chunk.id
    )))
}

/// What a failed request body means for the client. s3s checks signed
/// payloads (`x-amz-content-sha256`, aws-chunked signatures) while the body
/// streams and reports a mismatch as a stream error; its error types are
/// private, so they are told apart by their text.
fn body_error(e: BoxError) -> S3Error {
    let e = match e.downcast::<S3Error>() {
        Ok(s3) => return *s3,
        Err(other) => other,
    };
    let text = e.to_string();
    if text.contains("Sha256Mismatch") {
        let mut err = S3Error::with_message(
            S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
            "the body does not match x-amz-content-sha256",
        );
        err.set_status_code(http::StatusCode::BAD_REQUEST);
        err
    } else if text.contains("SignatureMismatch") {
        s3_error!(
            SignatureDoesNotMatch,
            "a chunk signature of the body does not match"
        )
    } else if text.contains("FormatError") || text.contains("TooLarge") || text.contains("TooMany")
    {
        s3_error!(InvalidRequest, "malformed aws-chunked body: {text}")
    } else {
        s3_error!(IncompleteBody, "request body: {text}")
    }
}
