//! The `flexdrive` command: parses flags, `FLEXDRIVE_*` variables and an
//! optional TOML file (in that order of precedence) and starts a role.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use flexdrive::admin_client::{AdminClient, ClusterAction, KeyAction};
use flexdrive::{Embedded, EmbeddedConfig, GatewayRole, GossipConfig, StorageRole};
use serde::Deserialize;

const DEFAULT_S3_ADDR: &str = "127.0.0.1:9000";
const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9001";
const DEFAULT_ADMIN_ENDPOINT: &str = "http://127.0.0.1:9001";
/// Shortest admin token accepted from the operator.
const MIN_ADMIN_TOKEN_LEN: usize = 16;
const DEFAULT_CHUNK_SIZE: usize = 1024 * 1024;
const DEFAULT_REGION: &str = "us-east-1";
const DEFAULT_PROBE_PERIOD: Duration = Duration::from_secs(1);

#[derive(Parser)]
#[command(
    name = "flexdrive",
    version,
    about = "S3-compatible object store over a replicated chunk store"
)]
struct Cli {
    /// TOML file with settings (keys are the long flag names with '_').
    #[arg(long, global = true, env = "FLEXDRIVE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One gateway and three storage nodes in this process (the embedded default).
    Server(ServerArgs),
    /// One storage node: chunks and metadata partitions.
    Storage(StorageArgs),
    /// A stateless S3 endpoint.
    Gateway(GatewayArgs),
    /// Manage a running cluster through its admin API.
    Admin(AdminArgs),
}

#[derive(Args)]
struct AdminArgs {
    /// Admin API URL.
    #[arg(long, global = true, env = "FLEXDRIVE_ADMIN_ENDPOINT", default_value = DEFAULT_ADMIN_ENDPOINT)]
    admin_endpoint: String,
    /// Admin API token [default: read from the data dir of a local `flexdrive server`].
    #[arg(
        long,
        global = true,
        env = "FLEXDRIVE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
    /// Data dir of a local `flexdrive server`, to read its admin token from.
    #[arg(
        long,
        global = true,
        env = "FLEXDRIVE_DATA_DIR",
        default_value = "./data"
    )]
    data_dir: PathBuf,
    /// Print the admin API's JSON answers.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Members, partitions, layout, chunks below three copies, repair and GC queues.
    Status,
    /// The layout: epoch, live versions, where reads go, transitions in
    /// progress; with --wait, follows the transitions with progress bars
    /// until they are done.
    Layout {
        /// Longest wait for transitions to finish, in seconds (0: do not wait).
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// Storage nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Access keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Buckets.
    #[command(subcommand)]
    Bucket(BucketCommand),
    /// Chunks below three copies and the repair queue.
    Repair,
    /// Garbage collection queue.
    Gc,
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Every member: role, zone, state, addresses, capacity.
    List,
    /// Decommission a storage node: copy its chunks elsewhere, then take it
    /// out of the layout; waits with a progress bar until it is drained.
    Remove {
        id: String,
        /// Longest wait, in seconds (the drain goes on in the background after it).
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
}

#[derive(Subcommand)]
enum BucketCommand {
    List,
    /// Owner, versioning, object count and bytes.
    Info {
        name: String,
    },
    /// Create a bucket owned by the root key.
    Create {
        name: String,
    },
    /// Delete an empty bucket.
    Delete {
        name: String,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a key; prints its access key and secret key (shown only now).
    Create { name: String },
    /// List keys and their bucket permissions.
    List,
    /// Delete a key; it stops working within seconds.
    Delete { access_key: String },
    /// Add permissions on a bucket to a key.
    Allow {
        access_key: String,
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        read: bool,
        #[arg(long)]
        write: bool,
        /// Bucket configuration (versioning, tagging, CORS, lifecycle, ACL) and DeleteBucket.
        #[arg(long)]
        owner: bool,
    },
}

#[derive(Args, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ServerArgs {
    /// Where the nodes keep their data (one directory per node).
    #[arg(long, env = "FLEXDRIVE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// S3 listen address [default: 127.0.0.1:9000].
    #[arg(long, env = "FLEXDRIVE_S3_ADDR")]
    s3_addr: Option<SocketAddr>,
    /// Storage nodes to run [default: 3].
    #[arg(long, env = "FLEXDRIVE_STORAGE_NODES")]
    storage_nodes: Option<usize>,
    #[command(flatten)]
    #[serde(flatten)]
    workers: WorkerArgs,
    #[command(flatten)]
    #[serde(flatten)]
    s3: S3Args,
}

#[derive(Args, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct WorkerArgs {
    /// Seconds a storage node may be down before its chunks are copied elsewhere [default: 600].
    #[arg(long, env = "FLEXDRIVE_DEAD_NODE_TIMEOUT")]
    dead_node_timeout: Option<u64>,
    /// Seconds an unlisted chunk file is kept before the garbage collector deletes it, unless a write in progress holds it [default: 900; at least 120].
    #[arg(long, env = "FLEXDRIVE_GC_GRACE")]
    gc_grace: Option<u64>,
    /// Seconds between two garbage-collection sweeps over every chunk file [default: 3600].
    #[arg(long, env = "FLEXDRIVE_GC_INTERVAL")]
    gc_interval: Option<u64>,
    /// Seconds the layout must stay unchanged before the garbage collector sweeps (records settle on new replicas) [default: 1800].
    #[arg(long, env = "FLEXDRIVE_GC_SETTLE")]
    gc_settle: Option<u64>,
}

#[derive(Args, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct S3Args {
    /// Root access key [default: generated on first start and kept in the data dir].
    #[arg(long, env = "FLEXDRIVE_ROOT_ACCESS_KEY")]
    root_access_key: Option<String>,
    /// Root secret key.
    #[arg(long, env = "FLEXDRIVE_ROOT_SECRET_KEY", hide_env_values = true)]
    root_secret_key: Option<String>,
    /// Chunk size in bytes [default: 1 MiB].
    #[arg(long, env = "FLEXDRIVE_CHUNK_SIZE")]
    chunk_size: Option<usize>,
    /// Region reported to clients [default: us-east-1].
    #[arg(long, env = "FLEXDRIVE_REGION")]
    region: Option<String>,
    /// Base domain for virtual-hosted-style requests (repeatable) [default: localhost].
    #[arg(long = "domain", env = "FLEXDRIVE_DOMAINS", value_delimiter = ',')]
    domains: Vec<String>,
    /// Admin API, /metrics and /health/* listen address [server default: 127.0.0.1:9001; gateway: off].
    #[arg(long, env = "FLEXDRIVE_ADMIN_ADDR")]
    admin_addr: Option<SocketAddr>,
    /// Admin API bearer token [server default: generated on first start and kept in the data dir].
    #[arg(long, env = "FLEXDRIVE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Connections the S3 port serves at once; more are answered 503 SlowDown [default: 1024].
    #[arg(long, env = "FLEXDRIVE_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
}

#[derive(Args, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ClusterArgs {
    /// UDP address for SWIM gossip.
    #[arg(long, env = "FLEXDRIVE_GOSSIP_ADDR")]
    gossip_addr: Option<SocketAddr>,
    /// Gossip address others reach this process at, if not the bound one.
    #[arg(long, env = "FLEXDRIVE_ADVERTISE_ADDR")]
    advertise_addr: Option<SocketAddr>,
    /// host:port of members to join through (comma-separated; DNS names are re-resolved).
    #[arg(long, env = "FLEXDRIVE_SEEDS", value_delimiter = ',')]
    seeds: Vec<String>,
    /// Secret that signs internal requests; the same on every process of a cluster.
    #[arg(long, env = "FLEXDRIVE_CLUSTER_SECRET", hide_env_values = true)]
    cluster_secret: Option<String>,
    /// Failure domain of this process [default: default].
    #[arg(long, env = "FLEXDRIVE_ZONE")]
    zone: Option<String>,
    /// During a rolling upgrade from 0.1: also accept, and send, the unauthenticated gossip of processes that still run 0.1; turn it off once every process runs this release.
    #[arg(long, env = "FLEXDRIVE_LEGACY_PEERS", value_parser = clap::builder::BoolishValueParser::new())]
    legacy_peers: bool,
}

#[derive(Args, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct StorageArgs {
    #[arg(long, env = "FLEXDRIVE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Internal HTTP address (chunks and metadata).
    #[arg(long, env = "FLEXDRIVE_HTTP_ADDR")]
    http_addr: Option<SocketAddr>,
    /// Capacity to report, in bytes [default: the filesystem's size].
    #[arg(long, env = "FLEXDRIVE_CAPACITY")]
    capacity: Option<u64>,
    /// Address for /metrics, /health/live and /health/ready [default: off].
    #[arg(long, env = "FLEXDRIVE_ADMIN_ADDR")]
    admin_addr: Option<SocketAddr>,
    #[command(flatten)]
    #[serde(flatten)]
    workers: WorkerArgs,
    #[command(flatten)]
    #[serde(flatten)]
    cluster: ClusterArgs,
}

#[derive(Args, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct GatewayArgs {
    #[arg(long, env = "FLEXDRIVE_S3_ADDR")]
    s3_addr: Option<SocketAddr>,
    #[command(flatten)]
    #[serde(flatten)]
    s3: S3Args,
    #[command(flatten)]
    #[serde(flatten)]
    cluster: ClusterArgs,
}

/// The TOML file: one table per role, e.g. `[server] data_dir = "/var/lib/flexdrive"`.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    server: ServerArgs,
    storage: StorageArgs,
    gateway: GatewayArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLEXDRIVE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("flexdrive: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flexdrive: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = match &cli.config {
        Some(path) => read_config(path)?,
        None => FileConfig::default(),
    };
    match cli.command {
        Command::Server(args) => server(args, file.server).await,
        Command::Storage(args) => storage(args, file.storage).await,
        Command::Gateway(args) => gateway(args, file.gateway).await,
        Command::Admin(args) => admin(args).await,
    }
}

fn read_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {} is not valid", path.display()))
}

/// The S3 port's connection bounds: the defaults, with the operator's cap.
fn connection_limits(s3: &S3Args) -> anyhow::Result<gateway::ConnectionLimits> {
    let mut limits = gateway::ConnectionLimits::default();
    match s3.max_connections {
        Some(0) => bail!("--max-connections must be at least 1"),
        Some(n) => limits.max_connections = n,
        None => {}
    }
    Ok(limits)
}

fn merge_s3(flags: S3Args, file: S3Args) -> S3Args {
    S3Args {
        root_access_key: flags.root_access_key.or(file.root_access_key),
        root_secret_key: flags.root_secret_key.or(file.root_secret_key),
        chunk_size: flags.chunk_size.or(file.chunk_size),
        region: flags.region.or(file.region),
        domains: if flags.domains.is_empty() {
            file.domains
        } else {
            flags.domains
        },
        admin_addr: flags.admin_addr.or(file.admin_addr),
        admin_token: flags.admin_token.or(file.admin_token),
        max_connections: flags.max_connections.or(file.max_connections),
    }
}

fn merge_cluster(flags: ClusterArgs, file: ClusterArgs) -> ClusterArgs {
    ClusterArgs {
        gossip_addr: flags.gossip_addr.or(file.gossip_addr),
        advertise_addr: flags.advertise_addr.or(file.advertise_addr),
        seeds: if flags.seeds.is_empty() {
            file.seeds
        } else {
            flags.seeds
        },
        cluster_secret: flags.cluster_secret.or(file.cluster_secret),
        zone: flags.zone.or(file.zone),
        legacy_peers: flags.legacy_peers || file.legacy_peers,
    }
}

fn chunk_size(s3: &S3Args) -> anyhow::Result<usize> {
    let size = s3.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE);
    if !(4096..=64 * 1024 * 1024).contains(&size) {
        bail!("--chunk-size must be between 4096 and 67108864 bytes, got {size}");
    }
    Ok(size)
}

/// The storage nodes' background workers, with the operator's settings
/// (flags over the file's).
fn background(
    flags: &WorkerArgs,
    file: &WorkerArgs,
) -> anyhow::Result<gateway::workers::BackgroundConfig> {
    let mut config = gateway::workers::BackgroundConfig::default();
    if let Some(secs) = flags.dead_node_timeout.or(file.dead_node_timeout) {
        config.repair.dead_after = Duration::from_secs(secs);
    }
    if let Some(secs) = flags.gc_grace.or(file.gc_grace) {
        let least = gateway::limits::MIN_GC_GRACE.as_secs();
        if secs < least {
            bail!(
                "--gc-grace must be at least {least} seconds (a write commits without a lease for up to a minute), got {secs}"
            );
        }
        config.gc.grace = Duration::from_secs(secs);
    }
    if let Some(secs) = flags.gc_interval.or(file.gc_interval) {
        if secs == 0 {
            bail!("--gc-interval must be at least 1 second");
        }
        config.gc.interval = Duration::from_secs(secs);
    }
    if let Some(secs) = flags.gc_settle.or(file.gc_settle) {
        config.gc.settle = Duration::from_secs(secs);
    }
    Ok(config)
}

fn domains(s3: &S3Args) -> Vec<String> {
    if s3.domains.is_empty() {
        vec!["localhost".into()]
    } else {
        s3.domains.clone()
    }
}

fn gossip(cluster: &ClusterArgs) -> anyhow::Result<GossipConfig> {
    Ok(GossipConfig {
        bind_addr: cluster
            .gossip_addr
            .context("--gossip-addr (or FLEXDRIVE_GOSSIP_ADDR) is required")?,
        advertise_addr: cluster.advertise_addr,
        seeds: cluster.seeds.clone(),
        zone: cluster.zone.clone().unwrap_or_else(|| "default".into()),
        probe_period: DEFAULT_PROBE_PERIOD,
        legacy_peers: cluster.legacy_peers,
    })
}

fn cluster_secret(cluster: &ClusterArgs) -> anyhow::Result<String> {
    match &cluster.cluster_secret {
        Some(s) if s.len() >= 16 => Ok(s.clone()),
        Some(_) => bail!("--cluster-secret must be at least 16 characters"),
        None => bail!("--cluster-secret (or FLEXDRIVE_CLUSTER_SECRET) is required"),
    }
}

/// Root credentials: given, or kept in the data dir (generated once).
fn root_credentials(s3: &S3Args, data_dir: Option<&Path>) -> anyhow::Result<(String, String)> {
    match (&s3.root_access_key, &s3.root_secret_key, data_dir) {
        (Some(a), Some(s), _) => Ok((a.clone(), s.clone())),
        (Some(_), None, _) | (None, Some(_), _) => {
            bail!("set both FLEXDRIVE_ROOT_ACCESS_KEY and FLEXDRIVE_ROOT_SECRET_KEY, or neither")
        }
        (None, None, Some(dir)) => {
            let path = dir.join("root_credentials");
            if let Ok(text) = std::fs::read_to_string(&path)
                && let Some((a, s)) = text.trim().split_once(':')
            {
                return Ok((a.to_string(), s.to_string()));
            }
            let access = format!("FD{}", hex::encode_upper(rand::random::<[u8; 9]>()));
            let secret = hex::encode(rand::random::<[u8; 20]>());
            flexdrive::write_private(&path, &format!("{access}:{secret}\n"))?;
            Ok((access, secret))
        }
        (None, None, None) => {
            bail!("FLEXDRIVE_ROOT_ACCESS_KEY and FLEXDRIVE_ROOT_SECRET_KEY are required")
        }
    }
}

/// The operator's admin token, checked.
fn given_admin_token(s3: &S3Args) -> anyhow::Result<Option<String>> {
    match &s3.admin_token {
        Some(t) if t.len() < MIN_ADMIN_TOKEN_LEN => {
            bail!("--admin-token must be at least {MIN_ADMIN_TOKEN_LEN} characters")
        }
        t => Ok(t.clone()),
    }
}

async fn server(flags: ServerArgs, file: ServerArgs) -> anyhow::Result<()> {
    let s3 = merge_s3(flags.s3, file.s3);
    let data_dir = flags
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from("./data"));
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let (access_key, secret_key) = root_credentials(&s3, Some(&data_dir))?;
    let storage_nodes = flags.storage_nodes.or(file.storage_nodes).unwrap_or(3);
    if storage_nodes < 3 {
        bail!("--storage-nodes must be at least 3 (every chunk is kept in three copies)");
    }
    let s3_addr = match flags.s3_addr.or(file.s3_addr) {
        Some(a) => a,
        None => DEFAULT_S3_ADDR.parse()?,
    };
    let admin_addr = match s3.admin_addr {
        Some(a) => a,
        None => DEFAULT_ADMIN_ADDR.parse()?,
    };
    let admin_token = match given_admin_token(&s3)? {
        Some(t) => t,
        None => flexdrive::load_or_create_secret(&data_dir.join(flexdrive::ADMIN_TOKEN_FILE))?,
    };
    let embedded = Embedded::start(EmbeddedConfig {
        data_dir: data_dir.clone(),
        s3_addr,
        storage_nodes,
        root_access_key: access_key.clone(),
        root_secret_key: secret_key.clone(),
        chunk_size: chunk_size(&s3)?,
        region: s3.region.clone().unwrap_or_else(|| DEFAULT_REGION.into()),
        domains: domains(&s3),
        probe_period: DEFAULT_PROBE_PERIOD,
        admin_addr: Some(admin_addr),
        admin_token: Some(admin_token.clone()),
        background: background(&flags.workers, &file.workers)?,
        nodes: Default::default(),
        connections: connection_limits(&s3)?,
    })
    .await?;
    let endpoint = format!("http://{}", embedded.s3_addr());
    println!(
        "Flexdrive is running: 1 gateway, {storage_nodes} storage nodes, data in {}",
        data_dir.display()
    );
    println!("  S3 endpoint:  {endpoint}");
    println!("  Access key:   {access_key}");
    println!("  Secret key:   {secret_key}");
    if let Some(addr) = embedded.admin_addr() {
        println!("  Admin API:    http://{addr}");
        println!("  Admin token:  {admin_token}");
    }
    println!(
        "  Region:       {}",
        s3.region.as_deref().unwrap_or(DEFAULT_REGION)
    );
    println!(
        "Try: AWS_ACCESS_KEY_ID={access_key} AWS_SECRET_ACCESS_KEY={secret_key} aws --endpoint-url {endpoint} s3 ls"
    );
    wait_for_signal().await;
    eprintln!("flexdrive: shutting down");
    embedded.shutdown().await;
    Ok(())
}

async fn storage(flags: StorageArgs, file: StorageArgs) -> anyhow::Result<()> {
    let cluster = merge_cluster(flags.cluster, file.cluster);
    let data_dir = flags
        .data_dir
        .or(file.data_dir)
        .context("--data-dir (or FLEXDRIVE_DATA_DIR) is required")?;
    let http_addr = flags
        .http_addr
        .or(file.http_addr)
        .context("--http-addr (or FLEXDRIVE_HTTP_ADDR) is required")?;
    let admin_addr = flags.admin_addr.or(file.admin_addr);
    let mut role = StorageRole::start(
        {
            let mut config =
                chunkstore::StorageConfig::new(data_dir, http_addr, &cluster_secret(&cluster)?);
            config.capacity_bytes = flags.capacity.or(file.capacity);
            config.legacy_peers = cluster.legacy_peers;
            config
        },
        gossip(&cluster)?,
        background(&flags.workers, &file.workers)?,
    )
    .await?;
    println!(
        "Flexdrive storage node {} serving on {}, gossip on {}",
        role.node.id(),
        role.node.http_addr(),
        role.gossip_addr()
    );
    if let Some(addr) = admin_addr {
        let addr = role.serve_admin(addr).await?;
        println!("  Admin port:   http://{addr} (/metrics, /health/live, /health/ready)");
    }
    wait_for_signal().await;
    eprintln!("flexdrive: shutting down");
    role.shutdown().await;
    Ok(())
}

async fn gateway(flags: GatewayArgs, file: GatewayArgs) -> anyhow::Result<()> {
    let s3 = merge_s3(flags.s3, file.s3);
    let cluster = merge_cluster(flags.cluster, file.cluster);
    let (access_key, secret_key) = root_credentials(&s3, None)?;
    let s3_addr = match flags.s3_addr.or(file.s3_addr) {
        Some(a) => a,
        None => DEFAULT_S3_ADDR.parse()?,
    };
    let role = GatewayRole::start(
        gateway::GatewayConfig {
            s3_addr,
            root_access_key: access_key,
            root_secret_key: secret_key,
            cluster_secret: cluster_secret(&cluster)?,
            chunk_size: chunk_size(&s3)?,
            region: s3.region.clone().unwrap_or_else(|| DEFAULT_REGION.into()),
            domains: domains(&s3),
            admin_addr: s3.admin_addr,
            admin_token: match (s3.admin_addr, given_admin_token(&s3)?) {
                (Some(_), None) => {
                    bail!("--admin-addr needs --admin-token (or FLEXDRIVE_ADMIN_TOKEN)")
                }
                (_, token) => token,
            },
            legacy_peers: cluster.legacy_peers,
            connections: connection_limits(&s3)?,
        },
        gossip(&cluster)?,
    )
    .await?;
    println!("Flexdrive gateway: S3 endpoint http://{}", role.s3_addr());
    if let Some(addr) = role.gateway.admin_addr() {
        println!("  Admin API:    http://{addr}");
    }
    wait_for_signal().await;
    eprintln!("flexdrive: shutting down");
    role.shutdown().await;
    Ok(())
}

async fn admin(args: AdminArgs) -> anyhow::Result<()> {
    let token = match args.admin_token {
        Some(t) => t,
        None => {
            let path = args.data_dir.join(flexdrive::ADMIN_TOKEN_FILE);
            match std::fs::read_to_string(&path) {
                Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
                _ => bail!(
                    "no admin token: pass --admin-token (or FLEXDRIVE_ADMIN_TOKEN), or --data-dir of a local flexdrive server ({} is not readable)",
                    path.display()
                ),
            }
        }
    };
    let client = AdminClient::new(&args.admin_endpoint, &token)?;
    let command = match args.command {
        AdminCommand::Key(command) => command,
        AdminCommand::Status => {
            return print_cluster(&client, ClusterAction::Status, args.json).await;
        }
        AdminCommand::Layout { wait } => {
            let wait = Duration::from_secs(wait);
            return print_cluster(&client, ClusterAction::Layout { wait }, args.json).await;
        }
        AdminCommand::Node(NodeCommand::List) => {
            return print_cluster(&client, ClusterAction::NodeList, args.json).await;
        }
        AdminCommand::Node(NodeCommand::Remove { id, timeout }) => {
            let wait = Duration::from_secs(timeout);
            return print_cluster(&client, ClusterAction::NodeRemove { id, wait }, args.json).await;
        }
        AdminCommand::Bucket(command) => {
            let action = match command {
                BucketCommand::List => ClusterAction::BucketList,
                BucketCommand::Info { name } => ClusterAction::BucketInfo { name },
                BucketCommand::Create { name } => ClusterAction::BucketCreate { name },
                BucketCommand::Delete { name } => ClusterAction::BucketDelete { name },
            };
            return print_cluster(&client, action, args.json).await;
        }
        AdminCommand::Repair => {
            return print_cluster(&client, ClusterAction::Repair, args.json).await;
        }
        AdminCommand::Gc => return print_cluster(&client, ClusterAction::Gc, args.json).await,
    };
    let action = match command {
        KeyCommand::Create { name } => KeyAction::Create { name },
        KeyCommand::List => KeyAction::List,
        KeyCommand::Delete { access_key } => KeyAction::Delete { access_key },
        KeyCommand::Allow {
            access_key,
            bucket,
            read,
            write,
            owner,
        } => {
            if !(read || write || owner) {
                bail!("say what to allow: --read, --write and/or --owner");
            }
            KeyAction::Allow {
                access_key,
                allow: gateway::admin::Allow {
                    bucket,
                    read,
                    write,
                    owner,
                },
            }
        }
    };
    println!("{}", client.run(action, args.json).await?);
    Ok(())
}

async fn print_cluster(
    client: &AdminClient,
    action: ClusterAction,
    json: bool,
) -> anyhow::Result<()> {
    println!("{}", client.run_cluster(action, json).await?);
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
