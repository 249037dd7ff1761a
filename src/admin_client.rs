//! The client side of the admin API (`flexdrive admin ...`): one request per
//! command, answers printed as lines for people or as the API's JSON.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use gateway::admin::{Allow, CreateKey, CreatedKey, ErrorBody, KeyInfo, KeyList};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How long one admin request may take before the command gives up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest answer read (key lists are the biggest).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// What `flexdrive admin key ...` asks for.
pub enum KeyAction {
    Create { name: String },
    List,
    Delete { access_key: String },
    Allow { access_key: String, allow: Allow },
}

pub struct AdminClient {
    /// Without a trailing slash.
    endpoint: String,
    token: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    pub fn new(endpoint: &str, token: &str) -> anyhow::Result<AdminClient> {
        let uri: http::Uri = endpoint
            .parse()
            .with_context(|| format!("admin endpoint {endpoint:?} is not a URL"))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            bail!("admin endpoint {endpoint:?} must look like http://HOST:PORT");
        }
        Ok(AdminClient {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// Sends one request; the answer's JSON body (empty for 204), or the
    /// API's error as one line.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> anyhow::Result<Bytes> {
        let url = format!("{}{path}", self.endpoint);
        let body = match body {
            Some(b) => Bytes::from(serde_json::to_vec(b)?),
            None => Bytes::new(),
        };
        let request = Request::builder()
            .method(method)
            .uri(&url)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .context("cannot build the admin request")?;
        let exchange = async {
            let response = self.http.request(request).await.with_context(|| {
                format!(
                    "cannot reach the admin API at {} (is flexdrive running with --admin-addr?)",
                    self.endpoint
                )
            })?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!("reading the admin API's answer: {e}"))?
                .to_bytes();
            anyhow::Ok((status, body))
        };
        let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .with_context(|| {
                format!("the admin API at {} did not answer in time", self.endpoint)
            })??;
        if status.is_success() {
            return Ok(body);
        }
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|e| e.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        if status == StatusCode::UNAUTHORIZED {
            bail!(
                "the admin API refused the token ({message}); pass --admin-token or FLEXDRIVE_ADMIN_TOKEN"
            );
        }
        bail!("admin API: {status}: {message}")
    }

    async fn call_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> anyhow::Result<T> {
        let bytes = self.call(method, path, body).await?;
        serde_json::from_slice(&bytes).context("the admin API answered something unexpected")
    }

    pub async fn create_key(&self, name: &str) -> anyhow::Result<CreatedKey> {
        let body = CreateKey {
            name: name.to_string(),
        };
        self.call_json(Method::POST, "/v1/keys", Some(&body)).await
    }

    pub async fn list_keys(&self) -> anyhow::Result<KeyList> {
        self.call_json(Method::GET, "/v1/keys", None::<&()>).await
    }

    pub async fn delete_key(&self, access_key: &str) -> anyhow::Result<()> {
        let path = format!("/v1/keys/{}", urlencoding::encode(access_key));
        self.call(Method::DELETE, &path, None::<&()>).await?;
        Ok(())
    }

    pub async fn allow(&self, access_key: &str, allow: &Allow) -> anyhow::Result<KeyInfo> {
        let path = format!("/v1/keys/{}/allow", urlencoding::encode(access_key));
        self.call_json(Method::POST, &path, Some(allow)).await
    }

    /// Runs one command and returns what to print: lines for people, or
    /// the API's JSON with `json`.
    pub async fn run(&self, action: KeyAction, json: bool) -> anyhow::Result<String> {
        Ok(match action {
            KeyAction::Create { name } => {
                let key = self.create_key(&name).await?;
                if json {
                    pretty(&key)
                } else {
                    format!(
                        "Access key:  {}\nSecret key:  {}\nName:        {}",
                        key.access_key, key.secret_key, key.name
                    )
                }
            }
            KeyAction::List => {
                let list = self.list_keys().await?;
                if json {
                    pretty(&list)
                } else if list.keys.is_empty() {
                    "no access keys (the root key is not listed)".to_string()
                } else {
                    list.keys
                        .iter()
                        .map(key_line)
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            }
            KeyAction::Delete { access_key } => {
                self.delete_key(&access_key).await?;
                if json {
                    pretty(&serde_json::json!({ "deleted": access_key }))
                } else {
                    format!("Deleted access key {access_key}")
                }
            }
            KeyAction::Allow { access_key, allow } => {
                let key = self.allow(&access_key, &allow).await?;
                if json { pretty(&key) } else { key_line(&key) }
            }
        })
    }
}

/// `FK...  name  created 2025-...  buckets: photos (read, write)`.
fn key_line(key: &KeyInfo) -> String {
    let buckets: Vec<String> = key
        .buckets
        .iter()
        .map(|b| {
            let what: Vec<&str> = [(b.read, "read"), (b.write, "write"), (b.owner, "owner")]
                .into_iter()
                .filter_map(|(on, name)| on.then_some(name))
                .collect();
            format!("{} ({})", b.bucket, what.join(", "))
        })
        .collect();
    let buckets = if buckets.is_empty() {
        "none".to_string()
    } else {
        buckets.join(", ")
    };
    format!(
        "{}  {}  created {}  buckets: {buckets}",
        key.access_key, key.name, key.created
    )
}

fn pretty<T: Serialize>(value: &T) -> String {
    // Plain structs of strings and bools always serialize.
    serde_json::to_string_pretty(value).unwrap_or_default()
}
