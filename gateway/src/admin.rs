//! The admin API: JSON over HTTP on its own port, every request carrying
//! `Authorization: Bearer TOKEN`. `flexdrive admin` is its client; the
//! request and answer types below are shared with it.
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/keys` [`CreateKey`] | [`CreatedKey`] (the only time the secret is shown) |
//! | `GET /v1/keys` | [`KeyList`] |
//! | `DELETE /v1/keys/{access_key}` | 204 |
//! | `POST /v1/keys/{access_key}/allow` [`Allow`] | [`KeyInfo`] |
//!
//! Errors are [`ErrorBody`] with the HTTP status.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::keys::{KeyStore, Permissions};
use crate::limits::MAX_ADMIN_BODY;
use crate::model::KeyRecord;
use crate::s3::Gateway;

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

#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A short code: `Unauthorized`, `NotFound`, `InvalidArgument`, or an S3 code.
    pub error: String,
    pub message: String,
}

type Answer = Response<Full<Bytes>>;

struct AdminApi {
    token: String,
    keys: Arc<KeyStore>,
    gateway: Gateway,
}

/// Serves the admin API on `listener` until `stopped` turns true.
pub(crate) fn serve(
    listener: TcpListener,
    token: String,
    keys: Arc<KeyStore>,
    gateway: Gateway,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let api = Arc::new(AdminApi {
        token,
        keys,
        gateway,
    });
    tokio::spawn(async move {
        loop {
            let socket = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((socket, _)) => socket,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stopped.changed() => return,
            };
            let _ = socket.set_nodelay(true);
            let api = api.clone();
            let handler = hyper::service::service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(api.handle(req).await) }
            });
            tokio::spawn(async move {
                let conn = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if let Err(e) = conn.serve_connection(TokioIo::new(socket), handler).await {
                    tracing::debug!(error = %e, "admin connection ended with an error");
                }
            });
        }
    })
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
    let created = time::OffsetDateTime::from(UNIX_EPOCH + Duration::from_millis(key.created_ms))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
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
            (_, ["v1", "keys", ..]) => error(
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
                let mut answer = Response::new(Full::new(Bytes::new()));
                *answer.status_mut() = StatusCode::NO_CONTENT;
                answer
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

fn no_such_key(access_key: &str) -> Answer {
    error(
        StatusCode::NOT_FOUND,
        "NoSuchKey",
        format!("no access key {access_key}"),
    )
}

/// The request body as JSON of type T, or the error answer.
async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Answer> {
    let body = Limited::new(req.into_body(), MAX_ADMIN_BODY)
        .collect()
        .await
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
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for the admin API on {addr}: {e}"))
}
