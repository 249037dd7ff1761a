//! Bounds on a listener's connections, shared by the S3 port and the admin
//! ports: a cap on open connections (past it a connection is answered 503
//! and closed at once), a deadline for a request's headers (which also
//! closes a keep-alive connection idle that long), and a per-read deadline
//! on request bodies, so a slow but moving upload goes on while a stalled
//! one (slowloris) gives its connection back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use prometheus::{IntCounter, IntGauge};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a refused connection may take to be told so.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Time for a request's headers, from when the connection waits for them.
    pub header_read: Duration,
    /// Time for each read of a request body.
    pub body_idle: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            header_read: Duration::from_secs(30),
            body_idle: Duration::from_secs(60),
        }
    }
}

/// Counts of one listener's connections.
#[derive(Clone)]
pub struct ConnectionCounts {
    pub open: IntGauge,
    pub refused: IntCounter,
}

/// Admits connections up to a cap; see the module comment.
#[derive(Clone)]
pub struct ConnectionGate {
    limits: ConnectionLimits,
    permits: Arc<Semaphore>,
    /// The full answer a connection over the cap gets.
    refusal: Arc<Vec<u8>>,
    counts: Option<ConnectionCounts>,
}

/// Held while a connection is served.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    open: Option<IntGauge>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(open) = &self.open {
            open.dec();
        }
    }
}

impl ConnectionGate {
    /// A gate whose refusal is `status_line` (e.g. `503 Service
    /// Unavailable`) with `body` of `content_type`.
    pub fn new(
        limits: ConnectionLimits,
        content_type: &str,
        body: &str,
        counts: Option<ConnectionCounts>,
    ) -> ConnectionGate {
        let refusal = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        ConnectionGate {
            limits,
            permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            refusal: Arc::new(refusal.into_bytes()),
            counts,
        }
    }

    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// A slot for an accepted connection, or None when every slot is taken:
    /// the connection is then answered 503 and closed in the background.
    pub fn admit(&self, mut socket: TcpStream) -> Option<(TcpStream, Admitted)> {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let open = self.counts.as_ref().map(|c| c.open.clone());
                if let Some(open) = &open {
                    open.inc();
                }
                Some((
                    socket,
                    Admitted {
                        _permit: permit,
                        open,
                    },
                ))
            }
            Err(_) => {
                if let Some(counts) = &self.counts {
                    counts.refused.inc();
                }
                let refusal = self.refusal.clone();
                tokio::spawn(async move {
                    let answer = async {
                        socket.write_all(&refusal).await?;
                        socket.shutdown().await
                    };
                    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, answer).await;
                });
                None
            }
        }
    }

    /// A connection builder (HTTP/1 and HTTP/2) with the header deadline.
    pub fn builder(&self) -> Builder<TokioExecutor> {
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read);
        builder
    }
}

/// A request body whose every frame must arrive within a deadline.
pub struct IdleBody<B> {
    inner: B,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<B> IdleBody<B> {
    pub fn new(inner: B, idle: Duration) -> IdleBody<B> {
        IdleBody {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

/// A request body stalled past its deadline.
#[derive(Debug)]
pub struct BodyStalled(pub Duration);

impl std::fmt::Display for BodyStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no request body data for {:?}", self.0)
    }
}

impl std::error::Error for BodyStalled {}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<B> Body for IdleBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + self.idle;
                self.deadline.as_mut().reset(next);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyStalled(self.idle))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
