//! The client side of the admin API (`flexdrive admin ...`): one request per
//! command, answers printed as lines for people or as the API's JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use gateway::admin::{
    Allow, BucketInfo, BucketList, CreateBucket, CreateKey, CreatedKey, ErrorBody, KeyInfo,
    KeyList, LayoutStatus, MemberInfo, NodeDetail, NodeList, Status,
};
use gateway::workers::gc::GcReport;
use gateway::workers::repair::DurabilityReport;
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

/// How often `node remove` asks how the drain goes.
const DRAIN_POLL: Duration = Duration::from_secs(1);

/// What the cluster commands ask for.
pub enum ClusterAction {
    Status,
    /// The layout, following transitions for at most `wait`.
    Layout {
        wait: Duration,
    },
    NodeList,
    /// Decommission, waiting at most `wait` for the drain to finish.
    NodeRemove {
        id: String,
        wait: Duration,
    },
    Repair,
    Gc,
    BucketList,
    BucketInfo {
        name: String,
    },
    BucketCreate {
        name: String,
    },
    BucketDelete {
        name: String,
    },
}

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

    /// One request whose answer is JSON of type T (for tests and scripts).
    pub async fn call_json<T: DeserializeOwned>(
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

impl AdminClient {
    /// Runs a cluster command and returns what to print.
    pub async fn run_cluster(&self, action: ClusterAction, json: bool) -> anyhow::Result<String> {
        let get = |path: &'static str| self.call(Method::GET, path, None::<&()>);
        Ok(match action {
            ClusterAction::Status => {
                let status: Status = decode(&get("/v1/status").await?)?;
                if json {
                    pretty(&status)
                } else {
                    status_text(&status)
                }
            }
            ClusterAction::Layout { wait } => self.layout(wait, json).await?,
            ClusterAction::NodeList => {
                let list: NodeList = decode(&get("/v1/nodes").await?)?;
                if json {
                    pretty(&list)
                } else {
                    members_table(&list.nodes)
                }
            }
            ClusterAction::NodeRemove { id, wait } => self.remove_node(&id, wait, json).await?,
            ClusterAction::Repair => {
                let report: DurabilityReport = decode(&get("/v1/repair").await?)?;
                if json {
                    pretty(&report)
                } else {
                    durability_text(&report)
                }
            }
            ClusterAction::Gc => {
                let gc: GcReport = decode(&get("/v1/gc").await?)?;
                if json { pretty(&gc) } else { gc_text(&gc) }
            }
            ClusterAction::BucketList => {
                let list: BucketList = decode(&get("/v1/buckets").await?)?;
                if json {
                    pretty(&list)
                } else {
                    let rows = list
                        .buckets
                        .iter()
                        .map(|b| vec![b.name.clone(), b.created.clone(), b.owner.clone()])
                        .collect();
                    table(&["NAME", "CREATED", "OWNER"], rows)
                }
            }
            ClusterAction::BucketInfo { name } => {
                let path = format!("/v1/buckets/{}", urlencoding::encode(&name));
                let info: BucketInfo = self.call_json(Method::GET, &path, None::<&()>).await?;
                if json {
                    pretty(&info)
                } else {
                    bucket_text(&info)
                }
            }
            ClusterAction::BucketCreate { name } => {
                let body = CreateBucket { name };
                let info: BucketInfo = self
                    .call_json(Method::POST, "/v1/buckets", Some(&body))
                    .await?;
                if json {
                    pretty(&info)
                } else {
                    format!("Created bucket {} (owner: the root key)", info.name)
                }
            }
            ClusterAction::BucketDelete { name } => {
                let path = format!("/v1/buckets/{}", urlencoding::encode(&name));
                self.call(Method::DELETE, &path, None::<&()>).await?;
                if json {
                    pretty(&serde_json::json!({ "deleted": name }))
                } else {
                    format!("Deleted bucket {name}")
                }
            }
        })
    }

    /// The layout; with a `wait`, follows each transition with a progress
    /// bar on stderr until none is left (or the wait is over).
    async fn layout(&self, wait: Duration, json: bool) -> anyhow::Result<String> {
        let get = || async {
            let raw = self.call(Method::GET, "/v1/layout", None::<&()>).await?;
            decode::<LayoutStatus>(&raw)
        };
        let mut layout = get().await?;
        if !wait.is_zero() && !layout.transitions.is_empty() {
            let bars = indicatif::MultiProgress::new();
            if json {
                bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            let style = indicatif::ProgressStyle::with_template(
                "{spinner} version {prefix}: [{bar:30}] {pos}/{len} partitions synced ({elapsed})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            let mut shown: BTreeMap<u64, indicatif::ProgressBar> = BTreeMap::new();
            let deadline = tokio::time::Instant::now() + wait;
            while !layout.transitions.is_empty() && tokio::time::Instant::now() < deadline {
                for t in &layout.transitions {
                    let bar = shown.entry(t.version).or_insert_with(|| {
                        let bar =
                            bars.add(indicatif::ProgressBar::new(u64::from(t.partitions_total)));
                        bar.set_style(style.clone());
                        bar.set_prefix(t.version.to_string());
                        bar
                    });
                    bar.set_position(u64::from(t.partitions_synced));
                    bar.tick();
                }
                for (version, bar) in &shown {
                    if !layout.transitions.iter().any(|t| t.version == *version) {
                        bar.finish();
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                layout = get().await?;
            }
            for bar in shown.values() {
                bar.finish();
            }
        }
        Ok(if json {
            pretty(&layout)
        } else {
            layout_text(&layout)
        })
    }

    /// Asks for the decommission, then follows the drain (bounded by
    /// `wait`) with a progress bar on stderr.
    async fn remove_node(&self, id: &str, wait: Duration, json: bool) -> anyhow::Result<String> {
        let path = format!("/v1/nodes/{}", urlencoding::encode(id));
        let mut detail: NodeDetail = self
            .call_json(Method::POST, &format!("{path}/remove"), None::<&()>)
            .await?;
        let bar = if json {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(0)
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} draining {prefix} [{bar:30}] {pos}/{len} chunks moved ({elapsed}) {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_prefix(id.to_string());
        let deadline = tokio::time::Instant::now() + wait;
        let mut most_left = 0;
        while detail.node.layout.as_deref() != Some("removed") {
            let left = detail.drain.as_ref().map_or(0, |d| d.chunks_left);
            most_left = most_left.max(left);
            bar.set_length(most_left);
            bar.set_position(most_left - left);
            bar.set_message(if detail.scan_complete {
                String::new()
            } else {
                "(counting)".to_string()
            });
            if tokio::time::Instant::now() >= deadline {
                bar.abandon();
                bail!(
                    "node {id} is still draining after {wait:?} ({left} chunk copies left); \
                     it goes on in the background: `flexdrive admin node list` shows when it is removed"
                );
            }
            tokio::time::sleep(DRAIN_POLL).await;
            detail = self.call_json(Method::GET, &path, None::<&()>).await?;
        }
        bar.set_position(most_left);
        bar.finish_and_clear();
        Ok(if json {
            pretty(&detail)
        } else {
            format!("Node {id} is drained and removed from the layout; it can be stopped now")
        })
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(bytes).context("the admin API answered something unexpected")
}

/// Left-aligned columns, two spaces apart.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

/// Bytes for people: `1.5 GiB`.
fn bytes(n: Option<u64>) -> String {
    let Some(n) = n else { return "-".into() };
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

fn members_table(members: &[MemberInfo]) -> String {
    let rows = members
        .iter()
        .map(|m| {
            vec![
                m.id.clone(),
                m.role.clone(),
                m.zone.clone(),
                m.state.clone(),
                m.layout.clone().unwrap_or_else(|| "-".into()),
                m.health.clone(),
                m.http_addr.clone(),
                bytes(m.capacity_bytes),
                bytes(m.used_bytes),
                bytes(m.free_bytes),
                m.chunk_count.map_or("-".into(), |c| c.to_string()),
            ]
        })
        .collect();
    table(
        &[
            "ID", "ROLE", "ZONE", "STATE", "LAYOUT", "HEALTH", "ADDRESS", "CAPACITY", "USED",
            "FREE", "CHUNKS",
        ],
        rows,
    )
}

fn durability_text(r: &DurabilityReport) -> String {
    let mut out = vec![
        format!(
            "Chunks below three copies: {}{}",
            r.chunks_below_three_copies,
            if r.complete {
                ""
            } else {
                " (at least: the first pass since the last change is still counting)"
            }
        ),
        format!(
            "Repair queue: {}  (waiting for the dead-node timeout of {} s: {})",
            r.repair_queue, r.dead_node_timeout_secs, r.waiting_for_dead_timeout
        ),
        format!(
            "Repaired since start: {} chunks, {} failed attempts",
            r.chunks_repaired, r.repair_failures
        ),
    ];
    for d in &r.draining {
        out.push(format!(
            "Draining {}: {} chunk copies left",
            d.node, d.chunks_left
        ));
    }
    out.join("\n")
}

fn gc_text(g: &GcReport) -> String {
    let last = match g.last_complete_ms {
        Some(ms) => format!(
            "last complete sweep {} looked at {} chunk files",
            gateway::admin::rfc3339(ms),
            g.chunks_scanned
        ),
        None => "no complete sweep yet".to_string(),
    };
    let mut out = vec![
        format!(
            "GC queue: {}  (unlisted chunks younger than the grace period of {} s, or not deleted yet)",
            g.queue, g.grace_secs
        ),
        format!(
            "GC: {last}; deleted {} unlisted chunks ({} bytes) since the leader started",
            g.chunks_deleted, g.bytes_freed
        ),
    ];
    if g.unresolved > 0 {
        out.push(format!(
            "GC: {} chunks kept because their records could not be read",
            g.unresolved
        ));
    }
    out.join("\n")
}

/// A bar of `width` characters, `done` of `total` filled.
fn text_bar(done: u32, total: u32, width: usize) -> String {
    let filled = (done as usize * width)
        .checked_div(total as usize)
        .unwrap_or(width)
        .min(width);
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

fn layout_text(l: &LayoutStatus) -> String {
    if l.epoch == 0 {
        return "Layout: not decided yet (waiting for three storage nodes)".to_string();
    }
    let versions: Vec<String> = l
        .versions
        .iter()
        .map(|v| format!("{} ({} nodes)", v.number, v.members.len()))
        .collect();
    let mut out = vec![format!(
        "Layout: epoch {}{}, versions {}, reads from version {}",
        l.epoch,
        l.decided
            .as_deref()
            .map(|d| format!(" (decided {d})"))
            .unwrap_or_default(),
        versions.join(", "),
        l.readable
    )];
    if l.transitions.is_empty() {
        out.push("  no transition in progress".to_string());
    }
    for t in &l.transitions {
        out.push(format!(
            "  transition to version {}: {} {}/{} partitions synced",
            t.version,
            text_bar(t.partitions_synced, t.partitions_total, 30),
            t.partitions_synced,
            t.partitions_total
        ));
    }
    if !l.unavailable.is_empty() {
        out.push(format!(
            "  not primaries (down): {}",
            l.unavailable.join(", ")
        ));
    }
    let behind: usize = l
        .nodes_at_epoch
        .iter()
        .filter(|(e, _)| **e < l.epoch)
        .map(|(_, n)| n)
        .sum();
    if behind > 0 {
        out.push(format!(
            "  {behind} storage nodes have not learned this epoch yet"
        ));
    }
    out.join("\n")
}

fn status_text(s: &Status) -> String {
    let storage = s.members.iter().filter(|m| m.role == "storage").count();
    let down = s
        .members
        .iter()
        .filter(|m| m.role == "storage" && m.state == "down")
        .count();
    let p = &s.partitions;
    let mut out = vec![
        format!(
            "Members: {} ({storage} storage nodes, {down} down; {} gateways)",
            s.members.len(),
            s.members.len() - storage
        ),
        members_table(&s.members),
        String::new(),
        format!(
            "Partitions: {} of {} with quorum, {} with all three replicas alive",
            p.with_quorum, p.total, p.fully_replicated
        ),
    ];
    if !p.without_quorum.is_empty() {
        out.push(format!("  without quorum: {:?}", p.without_quorum));
    }
    out.push(layout_text(&s.layout));
    out.push(durability_text(&s.durability));
    out.push(gc_text(&s.gc));
    if let Some(leader) = &s.leader {
        out.push(format!("Background work led by storage node {leader}"));
    }
    out.join("\n")
}

fn bucket_text(b: &BucketInfo) -> String {
    format!(
        "Bucket:      {}\nCreated:     {}\nOwner:       {}\nVersioning:  {}\nObjects:     {}{}\nBytes:       {} ({})",
        b.name,
        b.created,
        b.owner,
        b.versioning,
        b.objects,
        if b.complete {
            ""
        } else {
            " (at least: the count stopped at its bound)"
        },
        b.bytes,
        bytes(Some(b.bytes)),
    )
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
