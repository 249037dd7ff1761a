//! Bounded connections on the S3 port: a connection cap answered with
//! `503 SlowDown`, a deadline for request headers, and a per-read deadline
//! for request bodies, on real sockets.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

fn limits(max_connections: usize) -> gateway::ConnectionLimits {
    gateway::ConnectionLimits {
        max_connections,
        header_read: Duration::from_secs(2),
        body_idle: Duration::from_secs(2),
    }
}

fn addr(c: &TestCluster) -> String {
    c.endpoint.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the connection (bounded); what it sent.
async fn until_closed(socket: &mut TcpStream, limit: Duration) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(limit, socket.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "the server kept the connection open for {limit:?}"
    );
    String::from_utf8_lossy(&got).into_owned()
}

/// The head of a signed PUT whose body is UNSIGNED-PAYLOAD of `length` bytes.
fn signed_put_head(c: &TestCluster, path: &str, length: usize) -> String {
    let host = addr(c);
    let length = length.to_string();
    let headers = [
        ("host", host.as_str()),
        ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ("content-length", length.as_str()),
    ];
    let identity =
        aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "t").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("s3")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let uri = format!("http://{host}{path}");
    let signable = SignableRequest::new(
        "PUT",
        &uri,
        headers.iter().copied(),
        SignableBody::UnsignedPayload,
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut head = format!("PUT {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    for (name, value) in instructions.headers() {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_get_slow_down_and_stalled_ones_are_closed() {
    bounded(Duration::from_secs(120), async {
        let c = TestCluster::start_with_connections(limits(4)).await;
        c.create_bucket("bounded").await;

        // Headers that never end: closed after the header deadline.
        let mut slow = TcpStream::connect(addr(&c)).await.unwrap();
        slow.write_all(b"GET /bounded/k HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        until_closed(&mut slow, Duration::from_secs(10)).await;

        // A body that stops after 10 of 100 bytes: closed after the body
        // deadline, and nothing is stored.
        let mut stalled = TcpStream::connect(addr(&c)).await.unwrap();
        stalled
            .write_all(signed_put_head(&c, "/bounded/stalled", 100).as_bytes())
            .await
            .unwrap();
        stalled.write_all(&[7u8; 10]).await.unwrap();
        until_closed(&mut stalled, Duration::from_secs(10)).await;
        let err = c
            .client
            .head_object()
            .bucket("bounded")
            .key("stalled")
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "NotFound");

        // A slow but moving body is fine: 3 s in all, a byte at a time.
        let mut moving = TcpStream::connect(addr(&c)).await.unwrap();
        moving
            .write_all(signed_put_head(&c, "/bounded/moving", 6).as_bytes())
            .await
            .unwrap();
        for byte in b"moving" {
            tokio::time::sleep(Duration::from_millis(500)).await;
            moving.write_all(&[*byte]).await.unwrap();
        }
        let mut answer = [0u8; 12];
        moving.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 200");
        assert_eq!(c.get("bounded", "moving").await, b"moving");
        drop(moving);

        // Four connections hold every slot: the fifth is told to slow down.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(TcpStream::connect(addr(&c)).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut fifth = TcpStream::connect(addr(&c)).await.unwrap();
        let refused = until_closed(&mut fifth, Duration::from_secs(5)).await;
        assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
        assert!(refused.contains("<Code>SlowDown</Code>"), "{refused}");
        let metrics = raw_request(&c.admin_endpoint(), "GET", "/metrics", None, b"", None).await;
        assert!(
            metric_sum(&metrics.body, "flexdrive_s3_connections_refused_total", &[]) >= 1.0,
            "the refusal is counted"
        );

        // Once they are gone, requests are served again.
        drop(held);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut probe = TcpStream::connect(addr(&c)).await.unwrap();
            probe
                .write_all(b"GET /bounded HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let answer = until_closed(&mut probe, Duration::from_secs(5)).await;
            if !answer.starts_with("HTTP/1.1 503") {
                // Anonymous, so refused, but by S3 and not by the cap.
                assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "slots never came back"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        c.stop().await;
    })
    .await;
}

/// `flexdrive server` listens a moment before its gateway knows the layout:
/// a request that arrives then waits for it rather than answering 503 (a
/// script that runs `aws s3 mb` right after starting the server).
#[tokio::test]
async fn a_request_reaching_a_gateway_just_started_waits_for_it_instead_of_503() {
    bounded(Duration::from_secs(90), async {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let s3_addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let config = flexdrive::EmbeddedConfig {
            s3_addr,
            ..embedded_config(dir.path(), 3)
        };
        let starting = tokio::spawn(flexdrive::Embedded::start(config));
        // The first moment the port accepts, as an impatient client would.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(s3_addr).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the S3 port never opened"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let endpoint = format!("http://{s3_addr}");
        let created = raw_request(
            &endpoint,
            "PUT",
            "/first-bucket",
            None,
            b"",
            Some((ACCESS_KEY, SECRET_KEY)),
        )
        .await;
        assert_eq!(created.status, 200, "{}", created.body);
        let embedded = starting.await.expect("start task").expect("cluster starts");
        let listed = raw_request(
            &endpoint,
            "GET",
            "/",
            None,
            b"",
            Some((ACCESS_KEY, SECRET_KEY)),
        )
        .await;
        assert!(
            listed.body.contains("<Name>first-bucket</Name>"),
            "{}",
            listed.body
        );
        embedded.shutdown().await;
    })
    .await;
}
