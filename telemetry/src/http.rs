//! The admin port: an accept loop any role's admin handler runs on, and
//! [`Ops`], the token-free endpoints every admin port answers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::connections::{ConnectionGate, ConnectionLimits};
use crate::health::Readiness;

/// A complete answer of the admin port.
pub type Answer = Response<Full<Bytes>>;

/// Pause after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// `/metrics`, `/health/live` and `/health/ready` of one process.
#[derive(Clone)]
pub struct Ops {
    registry: Registry,
    readiness: Arc<dyn Readiness>,
}

impl Ops {
    pub fn new(registry: Registry, readiness: Arc<dyn Readiness>) -> Ops {
        Ops {
            registry,
            readiness,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The answer to `GET` (or `HEAD`) `/metrics`, `/health/live` or
    /// `/health/ready`; None for any other request, which the caller routes.
    pub async fn answer<B>(&self, req: &Request<B>) -> Option<Answer> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return None;
        }
        match req.uri().path() {
            "/metrics" => Some(text(
                StatusCode::OK,
                prometheus::TEXT_FORMAT,
                encode(&self.registry),
            )),
            "/health/live" => Some(plain(StatusCode::OK, "ok\n".into())),
            "/health/ready" => Some(match self.readiness.check().await {
                Ok(()) => plain(StatusCode::OK, "ready\n".into()),
                Err(reason) => plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {reason}\n"),
                ),
            }),
            _ => None,
        }
    }
}

/// The registry in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    String::from_utf8(out).unwrap_or_default()
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(body)));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    answer
}

fn plain(status: StatusCode, body: String) -> Answer {
    text(status, "text/plain; charset=utf-8", body)
}

/// Binds an admin port (so a busy port is an error at start).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for the admin port on {addr}: {e}"))
}

/// Connections an admin port serves at once.
const ADMIN_MAX_CONNECTIONS: usize = 256;

/// Serves `handler` on `listener` (HTTP/1 and HTTP/2) until `stopped`
/// changes, with the bounds of [`ConnectionGate`] (at most
/// [`ADMIN_MAX_CONNECTIONS`] at once).
pub fn serve<F, Fut>(
    listener: TcpListener,
    handler: F,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Answer> + Send + 'static,
{
    let gate = ConnectionGate::new(
        ConnectionLimits {
            max_connections: ADMIN_MAX_CONNECTIONS,
            ..ConnectionLimits::default()
        },
        "text/plain; charset=utf-8",
        "too many connections to this port; retry\n",
        None,
    );
    tokio::spawn(async move {
        loop {
            let socket = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((socket, _)) => socket,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        continue;
                    }
                },
                _ = stopped.changed() => return,
            };
            let Some((socket, admitted)) = gate.admit(socket) else {
                continue;
            };
            let _ = socket.set_nodelay(true);
            let handler = handler.clone();
            let service = hyper::service::service_fn(move |req| {
                let answer = handler(req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let conn = gate.builder();
            tokio::spawn(async move {
                let _admitted = admitted;
                if let Err(e) = conn.serve_connection(TokioIo::new(socket), service).await {
                    tracing::debug!(error = %e, "admin connection ended with an error");
                }
            });
        }
    })
}

/// Serves only [`Ops`] (a storage node's admin port); anything else is 404.
pub fn serve_ops(
    listener: TcpListener,
    ops: Ops,
    stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    serve(
        listener,
        move |req| {
            let ops = ops.clone();
            async move {
                match ops.answer(&req).await {
                    Some(answer) => answer,
                    None => plain(
                        StatusCode::NOT_FOUND,
                        "this port serves /metrics, /health/live and /health/ready\n".into(),
                    ),
                }
            }
        },
        stopped,
    )
}
