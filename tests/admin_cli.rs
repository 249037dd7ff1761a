//! The real binary: `flexdrive server` on free ports, then
//! `flexdrive admin key create` against it, and the printed key used for S3.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use conformance::bench::s3::{S3Client, S3Config};

const BIN: &str = env!("CARGO_BIN_EXE_flexdrive");

/// How long the server may take to print its endpoints.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one S3 request of this test may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Kills the server even when the test fails.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value after `label` on the first line of `text` that has it.
fn field(text: &str, label: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(|v| v.trim().to_string())
}

/// Reads the child's stdout until a line has `label` (bounded); the child
/// is killed when the returned guard drops.
fn banner(mut child: Child, label: &str) -> (Server, String) {
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    // Read on a thread so the wait is bounded.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut banner = String::new();
    while field(&banner, label).is_none() {
        let line = rx
            .recv_timeout(STARTUP_TIMEOUT)
            .unwrap_or_else(|_| panic!("flexdrive did not start; it printed:\n{banner}"));
        banner.push_str(&line);
        banner.push('\n');
    }
    (server, banner)
}

/// A plain HTTP/1.1 GET; the whole answer (status line, headers, body).
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(addr).expect("connect");
    socket.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    write!(
        socket,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).expect("read answer");
    answer
}

fn flexdrive(dir: &std::path::Path, admin: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["admin", "--admin-endpoint", admin, "--data-dir"])
        .arg(dir)
        .args(args)
        .env_remove("FLEXDRIVE_ADMIN_TOKEN")
        .env_remove("FLEXDRIVE_ADMIN_ENDPOINT")
        .output()
        .expect("run flexdrive admin")
}

#[test]
fn admin_key_create_prints_a_key_that_works() {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(BIN)
        .args([
            "server",
            "--s3-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("FLEXDRIVE_ADMIN_TOKEN")
        .env_remove("FLEXDRIVE_ROOT_ACCESS_KEY")
        .env_remove("FLEXDRIVE_ROOT_SECRET_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start flexdrive server");
    let (_server, banner) = banner(child, "Admin token:");
    let s3 = field(&banner, "S3 endpoint:").unwrap();
    let admin = field(&banner, "Admin API:").unwrap();

    // The token is read from the data dir, as for a local server.
    let created = flexdrive(dir.path(), &admin, &["key", "create", "cli test"]);
    let stdout = String::from_utf8_lossy(&created.stdout);
    assert!(
        created.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let access_key = field(&stdout, "Access key:").expect("access key printed");
    let secret_key = field(&stdout, "Secret key:").expect("secret key printed");
    assert_eq!(field(&stdout, "Name:").as_deref(), Some("cli test"));

    let client = S3Client::new(&S3Config {
        endpoint: s3,
        access_key: access_key.clone(),
        secret_key,
        region: "us-east-1".into(),
        max_idle: 1,
    })
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            client.create_bucket("cli-bucket").await.unwrap();
            client
                .put_object("cli-bucket", "k", &Bytes::from_static(b"hello"), 5)
                .await
                .unwrap();
            client.get_object("cli-bucket", "k", 5).await.unwrap();
        })
        .await
        .expect("S3 requests timed out");
    });

    let listed = flexdrive(dir.path(), &admin, &["key", "list", "--json"]);
    assert!(listed.status.success());
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&access_key));

    // The cluster at a glance: three storage nodes and the gateway, alive.
    let status = flexdrive(dir.path(), &admin, &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(
        text.contains("3 storage nodes, 0 down; 1 gateways"),
        "{text}"
    );
    assert!(
        text.contains("Partitions: 257 of 257 with quorum"),
        "{text}"
    );
    assert!(text.contains("Chunks below three copies: 0"), "{text}");
    let nodes = flexdrive(dir.path(), &admin, &["node", "list"]);
    let text = String::from_utf8_lossy(&nodes.stdout);
    assert!(nodes.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("HEALTH"),
        "{text}"
    );
    let storage = lines.iter().filter(|l| l.contains(" storage ")).count();
    assert_eq!(storage, 3, "{text}");
    assert!(
        lines
            .iter()
            .filter(|l| l.contains(" storage "))
            .all(|l| l.contains(" alive "))
    );
    let listed = flexdrive(dir.path(), &admin, &["node", "list", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(json["nodes"].as_array().map(Vec::len), Some(4), "{json}");

    let refused = Command::new(BIN)
        .args([
            "admin",
            "--admin-endpoint",
            &admin,
            "--admin-token",
            "wrong-token-0123456789",
        ])
        .args(["key", "list"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("refused the token"), "{stderr}");
}

#[test]
fn storage_takes_admin_addr_and_serves_metrics_and_health() {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(BIN)
        .args(["storage", "--data-dir"])
        .arg(dir.path())
        .args([
            "--http-addr",
            "127.0.0.1:0",
            "--gossip-addr",
            "127.0.0.1:0",
            "--cluster-secret",
            "admin-cli-test-cluster-secret",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .env_remove("FLEXDRIVE_ADMIN_ADDR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start flexdrive storage");
    let (_storage, banner) = banner(child, "Admin port:");
    let url = field(&banner, "Admin port:").unwrap();
    let addr = url
        .split_whitespace()
        .next()
        .and_then(|u| u.strip_prefix("http://"))
        .expect("admin address printed");

    let ready = http_get(addr, "/health/ready");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let metrics = http_get(addr, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("flexdrive_storage_capacity_bytes{node="),
        "{metrics}"
    );
}
