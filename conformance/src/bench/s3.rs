//! A lean S3 client for the benchmark: hyper 1 over plain HTTP/1.1 with
//! TCP_NODELAY, path-style URLs, SigV4 with `UNSIGNED-PAYLOAD`. It does only
//! what the benchmark needs, so that the numbers measure the server.

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Request body type: either a whole `Bytes` or a stream of slices of one.
pub type ReqBody = BoxBody<Bytes, Infallible>;

/// Largest slice of an error response body kept for the error message.
const MAX_ERROR_BODY: usize = 1024;
/// Size of one frame when a body is streamed from the random block.
const STREAM_FRAME: usize = 1 << 20;

/// Connection settings for [`S3Client::new`].
#[derive(Clone, Debug)]
pub struct S3Config {
    /// `http://host:port`, optionally with a path prefix.
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    /// Connections kept idle in the pool (set to the concurrency).
    pub max_idle: usize,
}

/// A signed, path-style S3 client over one pooled hyper client.
#[derive(Clone)]
pub struct S3Client {
    http: Client<HttpConnector, ReqBody>,
    /// Endpoint without a trailing slash, e.g. `http://127.0.0.1:9000`.
    base: String,
    identity: Identity,
    region: String,
}

/// A non-success answer or a transport failure, ready for the error summary.
#[derive(Debug)]
pub struct S3Error(pub String);

impl std::fmt::Display for S3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for S3Error {}

impl S3Client {
    /// Builds the client; fails on an endpoint that is not plain `http://`.
    pub fn new(cfg: &S3Config) -> anyhow::Result<Self> {
        let uri: Uri = cfg
            .endpoint
            .parse()
            .with_context(|| format!("--endpoint {:?} is not a URL", cfg.endpoint))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            bail!(
                "--endpoint {:?}: only plain http://host:port endpoints are supported \
                 (TLS is not supported: point it at the plain HTTP port)",
                cfg.endpoint
            );
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(cfg.max_idle)
            .build(connector);
        let identity: Identity = Credentials::new(
            cfg.access_key.clone(),
            cfg.secret_key.clone(),
            None,
            None,
            "flexdrive-bench",
        )
        .into();
        Ok(Self {
            http,
            base: cfg.endpoint.trim_end_matches('/').to_string(),
            identity,
            region: cfg.region.clone(),
        })
    }

    /// Sends one signed request and returns status and the response body
    /// stream. `path` starts with `/` and must already be URL-safe.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        content_length: u64,
    ) -> Result<http::Response<Incoming>, S3Error> {
        let url = format!("{}{}", self.base, path);
        let mut req = Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::CONTENT_LENGTH, content_length)
            .body(body)
            .map_err(|e| S3Error(format!("bad request {url}: {e}")))?;
        self.sign(&mut req)?;
        self.http
            .request(req)
            .await
            .map_err(|e| S3Error(format!("{url}: {}", error_chain(&e))))
    }

    fn sign(&self, req: &mut Request<ReqBody>) -> Result<(), S3Error> {
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| S3Error(format!("signing parameters: {e}")))?
            .into();
        let uri = req.uri().to_string();
        let headers: Vec<(&str, &str)> = req
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
            .collect();
        let signable = SignableRequest::new(
            req.method().as_str(),
            &uri,
            headers.into_iter(),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| S3Error(format!("signing {uri}: {e}")))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| S3Error(format!("signing {uri}: {e}")))?
            .into_parts();
        instructions.apply_to_request_http1x(req);
        Ok(())
    }

    /// True if the bucket exists and is ours, false on 404.
    pub async fn bucket_exists(&self, bucket: &str) -> Result<bool, S3Error> {
        let resp = self
            .send(Method::HEAD, &format!("/{bucket}"), empty(), 0)
            .await?;
        match resp.status() {
            s if s.is_success() => {
                drain(resp.into_body()).await?;
                Ok(true)
            }
            StatusCode::NOT_FOUND => {
                drain(resp.into_body()).await?;
                Ok(false)
            }
            _ => Err(error_of("HEAD bucket", bucket, resp).await),
        }
    }

    /// Creates the bucket; "already owned by you" counts as success.
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), S3Error> {
        let body = if self.region == "us-east-1" {
            Bytes::new()
        } else {
            Bytes::from(format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            ))
        };
        let len = body.len() as u64;
        let resp = self
            .send(Method::PUT, &format!("/{bucket}"), full(body), len)
            .await?;
        if resp.status().is_success() {
            drain(resp.into_body()).await?;
            return Ok(());
        }
        let err = error_of("CreateBucket", bucket, resp).await;
        if err.0.contains("BucketAlreadyOwnedByYou") {
            Ok(())
        } else {
            Err(err)
        }
    }

    /// PUT of `size` bytes taken from `block` (repeated if `size` is larger).
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        block: &Bytes,
        size: u64,
    ) -> Result<(), S3Error> {
        let resp = self
            .send(
                Method::PUT,
                &format!("/{bucket}/{key}"),
                body_from_block(block, size),
                size,
            )
            .await?;
        if !resp.status().is_success() {
            return Err(error_of("PUT", key, resp).await);
        }
        drain(resp.into_body()).await?;
        Ok(())
    }

    /// GET that reads the whole body and checks it is `expected` bytes long.
    pub async fn get_object(&self, bucket: &str, key: &str, expected: u64) -> Result<(), S3Error> {
        let resp = self
            .send(Method::GET, &format!("/{bucket}/{key}"), empty(), 0)
            .await?;
        if resp.status() != StatusCode::OK {
            return Err(error_of("GET", key, resp).await);
        }
        let got = drain(resp.into_body()).await?;
        if got != expected {
            return Err(S3Error(format!(
                "GET {key}: body was {got} bytes, expected {expected}"
            )));
        }
        Ok(())
    }

    /// DELETE of one object (a missing key is success, as in S3).
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), S3Error> {
        let resp = self
            .send(Method::DELETE, &format!("/{bucket}/{key}"), empty(), 0)
            .await?;
        if !resp.status().is_success() {
            return Err(error_of("DELETE", key, resp).await);
        }
        drain(resp.into_body()).await?;
        Ok(())
    }
}

fn empty() -> ReqBody {
    Empty::new().boxed()
}

fn full(b: Bytes) -> ReqBody {
    Full::new(b).boxed()
}

/// A body of `size` bytes made of zero-copy slices of `block`, wrapping
/// around when `size` exceeds the block: memory stays at one block.
pub fn body_from_block(block: &Bytes, size: u64) -> ReqBody {
    assert!(
        !block.is_empty() || size == 0,
        "empty block for a non-empty body"
    );
    if size <= block.len() as u64 {
        return full(block.slice(..size as usize));
    }
    let block = block.clone();
    let mut remaining = size;
    let mut pos = 0usize;
    let frames = std::iter::from_fn(move || {
        if remaining == 0 {
            return None;
        }
        let len = (STREAM_FRAME as u64)
            .min(remaining)
            .min((block.len() - pos) as u64) as usize;
        let frame = block.slice(pos..pos + len);
        remaining -= len as u64;
        pos = (pos + len) % block.len();
        Some(Ok(Frame::data(frame)))
    });
    StreamBody::new(futures::stream::iter(frames)).boxed()
}

/// Reads a response body to its end, returning its length in bytes.
async fn drain(mut body: Incoming) -> Result<u64, S3Error> {
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| S3Error(format!("reading body: {}", error_chain(&e))))?;
        if let Some(data) = frame.data_ref() {
            n += data.len() as u64;
        }
    }
    Ok(n)
}

/// Builds an error from a non-success response: status plus the S3 `Code`
/// (or the start of the body when it is not S3 XML).
async fn error_of(op: &str, what: &str, resp: http::Response<Incoming>) -> S3Error {
    let status = resp.status();
    let mut body = resp.into_body();
    let mut text = Vec::new();
    // Bounded: read at most a few frames until MAX_ERROR_BODY bytes.
    while text.len() < MAX_ERROR_BODY {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(d) = frame.data_ref() {
                    text.extend_from_slice(d);
                }
            }
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&text[..text.len().min(MAX_ERROR_BODY)]).to_string();
    let detail = match (text.find("<Code>"), text.find("</Code>")) {
        (Some(a), Some(b)) if a + 6 <= b => text[a + 6..b].to_string(),
        _ => text.trim().chars().take(120).collect(),
    };
    let sep = if detail.is_empty() { "" } else { " " };
    S3Error(format!(
        "{op} {what}: HTTP {}{sep}{detail}",
        status.as_u16()
    ))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Runs `fut` with a deadline, turning a timeout into an [`S3Error`].
pub async fn with_timeout<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, S3Error>>,
) -> Result<T, S3Error> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(S3Error(format!(
            "request timed out after {}s",
            limit.as_secs_f64()
        ))),
    }
}
