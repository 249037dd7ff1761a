//! Object checksums (x-amz-checksum-*), as S3 verifies, stores and returns them.

use std::future::Future;
use std::time::Duration;

use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

use crate::common::*;

/// Every test here finishes well within this, or fails.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// S3's documented example: the CRC32 of "hello\n".
const HELLO: &[u8] = b"hello\n";
const HELLO_CRC32: &str = "NjowIA==";

const MIB: usize = 1024 * 1024;

async fn bounded(test: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("test timed out");
}

async fn head_with_checksums(c: &TestCluster, bucket: &str, key: &str) -> HeadObjectOutput {
    c.client
        .head_object()
        .bucket(bucket)
        .key(key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .expect("head object")
}

/// Checks that a refused PUT stored nothing under `key`.
async fn assert_absent(c: &TestCluster, key: &str) {
    let err = c
        .client
        .head_object()
        .bucket("sums")
        .key(key)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&err), 404);
}

/// The value of `algorithm` among the checksum fields of an SDK answer.
macro_rules! checksum_value {
    ($out:expr, $algorithm:expr) => {
        match $algorithm {
            ChecksumAlgorithm::Crc32 => $out.checksum_crc32(),
            ChecksumAlgorithm::Crc32C => $out.checksum_crc32_c(),
            ChecksumAlgorithm::Crc64Nvme => $out.checksum_crc64_nvme(),
            ChecksumAlgorithm::Sha1 => $out.checksum_sha1(),
            _ => $out.checksum_sha256(),
        }
        .map(str::to_string)
    };
}

fn no_checksums(h: &HeadObjectOutput) -> bool {
    h.checksum_crc32().is_none()
        && h.checksum_crc32_c().is_none()
        && h.checksum_crc64_nvme().is_none()
        && h.checksum_sha1().is_none()
        && h.checksum_sha256().is_none()
        && h.checksum_type().is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_algorithm_round_trips_and_is_returned_only_in_checksum_mode() {
    bounded(async {
        let c = TestCluster::start(3).await;
        c.create_bucket("sums").await;
        let body = data(300_000, 1);
        let algorithms = [
            ChecksumAlgorithm::Crc32,
            ChecksumAlgorithm::Crc32C,
            ChecksumAlgorithm::Crc64Nvme,
            ChecksumAlgorithm::Sha1,
            ChecksumAlgorithm::Sha256,
        ];
        for algorithm in algorithms {
            let key = format!("obj-{}", algorithm.as_str());
            let put = c
                .client
                .put_object()
                .bucket("sums")
                .key(&key)
                .checksum_algorithm(algorithm.clone())
                .body(body.clone().into())
                .send()
                .await
                .expect("put with checksum");
            let sent = checksum_value!(put, algorithm.clone()).expect("checksum in PUT answer");

            let head = head_with_checksums(&c, "sums", &key).await;
            assert_eq!(checksum_value!(head, algorithm.clone()), Some(sent.clone()));
            assert_eq!(head.checksum_type(), Some(&ChecksumType::FullObject));

            // The SDK checks the body against the checksum it is given.
            let get = c
                .client
                .get_object()
                .bucket("sums")
                .key(&key)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await
                .expect("get with checksum mode");
            assert_eq!(checksum_value!(get, algorithm.clone()), Some(sent));
            let got = get.body.collect().await.expect("validated body");
            assert_eq!(got.into_bytes().as_ref(), body.as_slice());

            let plain = c
                .client
                .head_object()
                .bucket("sums")
                .key(&key)
                .send()
                .await
                .unwrap();
            assert!(no_checksums(&plain), "{plain:?}");
        }
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_get_returns_no_checksum() {
    bounded(async {
        let c = TestCluster::start(3).await;
        c.create_bucket("sums").await;
        c.put("sums", "k", data(10_000, 2)).await;
        let get = c
            .client
            .get_object()
            .bucket("sums")
            .key("k")
            .range("bytes=0-99")
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert!(get.checksum_crc32().is_none() && get.checksum_type().is_none());
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_default_upload_has_its_crc32_verified_and_stored() {
    bounded(async {
        let c = TestCluster::start(3).await;
        c.create_bucket("sums").await;
        c.put("sums", "hello", HELLO.to_vec()).await;
        let head = head_with_checksums(&c, "sums", "hello").await;
        assert_eq!(head.checksum_crc32(), Some(HELLO_CRC32));
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_header_is_verified_and_a_wrong_one_is_bad_digest_storing_nothing() {
    bounded(async {
        let c = TestCluster::start(3).await;
        c.create_bucket("sums").await;
        let creds = Some((ACCESS_KEY, SECRET_KEY));

        let wrong = raw_request_with_headers(
            &c.endpoint,
            "PUT",
            "/sums/wrong",
            None,
            &[("x-amz-checksum-crc32", "AAAAAA==")],
            HELLO,
            creds,
        )
        .await;
        assert_eq!(wrong.status, 400, "{}", wrong.body);
        assert!(
            wrong.body.contains("<Code>BadDigest</Code>")
                && wrong
                    .body
                    .contains("The CRC32 you specified did not match the calculated checksum."),
            "{}",
            wrong.body
        );
        assert_absent(&c, "wrong").await;

        let malformed = raw_request_with_headers(
            &c.endpoint,
            "PUT",
            "/sums/malformed",
            None,
            &[("x-amz-checksum-sha256", HELLO_CRC32)],
            HELLO,
            creds,
        )
        .await;
        assert_eq!(malformed.status, 400, "{}", malformed.body);
        assert!(malformed.body.contains("<Code>InvalidRequest</Code>"));

        let right = raw_request_with_headers(
            &c.endpoint,
            "PUT",
            "/sums/right",
            None,
            &[("x-amz-checksum-crc32", HELLO_CRC32)],
            HELLO,
            creds,
        )
        .await;
        assert_eq!(right.status, 200, "{}", right.body);
        assert_eq!(right.headers["x-amz-checksum-crc32"], HELLO_CRC32);
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_sent_without_checksum_gets_a_crc64nvme() {
    bounded(async {
        let c = TestCluster::start(3).await;
        c.create_bucket("sums").await;
        let raw = raw_request(
            &c.endpoint,
            "PUT",
            "/sums/plain",
            None,
            HELLO,
            Some((ACCESS_KEY, SECRET_KEY)),
        )
        .await;
        assert_eq!(raw.status, 200, "{}", raw.body);
        let head = head_with_checksums(&c, "sums", "plain").await;
        assert!(head.checksum_crc64_nvme().is_some());
        assert_eq!(head.checksum_type(), Some(&ChecksumType::FullObject));
        // The SDK validates the GET body against it.
        let get = c
            .client
            .get_object()
            .bucket("sums")
            .key("plain")
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(
            get.body.collect().await.unwrap().into_bytes().as_ref(),
            HELLO
        );
        c.stop().await;
    })
    .await;
}

/// An unsigned aws-chunked body with a checksum trailer, as the SDKs send.
fn chunked_with_trailer(body: &[u8], crc32: &str) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out.extend_from_slice(format!("\r\n0\r\nx-amz-checksum-crc32:{crc32}\r\n\r\n").as_bytes());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_trailer_is_verified_and_a_wrong_one_is_bad_digest_storing_nothing() {
    bounded(async {
        let c = TestCluster::start(3).await;
        c.create_bucket("sums").await;
        let decoded_length = HELLO.len().to_string();
        let headers = [
            ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", decoded_length.as_str()),
            ("x-amz-trailer", "x-amz-checksum-crc32"),
        ];
        let put = |key: &'static str, crc32: &'static str| {
            let endpoint = c.endpoint.clone();
            async move {
                raw_request_with_headers(
                    &endpoint,
                    "PUT",
                    &format!("/sums/{key}"),
                    None,
                    &headers,
                    &chunked_with_trailer(HELLO, crc32),
                    Some((ACCESS_KEY, SECRET_KEY)),
                )
                .await
            }
        };

        let wrong = put("wrong", "AAAAAA==").await;
        assert_eq!(wrong.status, 400, "{}", wrong.body);
        assert!(
            wrong.body.contains("<Code>BadDigest</Code>"),
            "{}",
            wrong.body
        );
        assert_absent(&c, "wrong").await;

        let right = put("right", HELLO_CRC32).await;
        assert_eq!(right.status, 200, "{}", right.body);
        assert_eq!(c.get("sums", "right").await, HELLO);
        let head = head_with_checksums(&c, "sums", "right").await;
        assert_eq!(head.checksum_crc32(), Some(HELLO_CRC32));
        c.stop().await;
    })
    .await;
}

/// Uploads `body` as parts of `part_size` with `algorithm`, and returns the
/// parts for Complete with their checksums, and the upload id.
async fn upload_in_parts(
    c: &TestCluster,
    key: &str,
    algorithm: ChecksumAlgorithm,
    checksum_type: Option<ChecksumType>,
    body: &[u8],
    part_size: usize,
) -> (String, Vec<CompletedPart>) {
    let upload_id = c
        .client
        .create_multipart_upload()
        .bucket("sums")
        .key(key)
        .checksum_algorithm(algorithm.clone())
        .set_checksum_type(checksum_type)
        .send()
        .await
        .expect("create upload")
        .upload_id()
        .unwrap()
        .to_string();
    let mut parts = Vec::new();
    for (i, piece) in body.chunks(part_size).enumerate() {
        let n = i as i32 + 1;
        let out = c
            .client
            .upload_part()
            .bucket("sums")
            .key(key)
            .upload_id(&upload_id)
            .part_number(n)
            .checksum_algorithm(algorithm.clone())
            .body(piece.to_vec().into())
            .send()
            .await
            .expect("upload part");
        let value = checksum_value!(out, algorithm.clone()).expect("part checksum");
        let part = CompletedPart::builder()
            .part_number(n)
            .e_tag(out.e_tag().unwrap());
        let part = match algorithm {
            ChecksumAlgorithm::Crc32 => part.checksum_crc32(value),
            _ => part.checksum_sha256(value),
        };
        parts.push(part.build());
    }
    (upload_id, parts)
}

async fn complete(
    c: &TestCluster,
    key: &str,
    upload_id: &str,
    parts: Vec<CompletedPart>,
) -> Result<
    aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput,
    aws_sdk_s3::error::SdkError<
        aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadError,
    >,
> {
    c.client
        .complete_multipart_upload()
        .bucket("sums")
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
}

/// Completes an upload, and checks the object's checksum and its type in the
/// answer and on HEAD.
async fn complete_expecting(
    c: &TestCluster,
    key: &str,
    upload_id: &str,
    parts: Vec<CompletedPart>,
    algorithm: ChecksumAlgorithm,
    expected: &str,
    checksum_type: ChecksumType,
) {
    let done = complete(c, key, upload_id, parts).await.expect("complete");
    assert_eq!(
        checksum_value!(done, algorithm.clone()).as_deref(),
        Some(expected)
    );
    assert_eq!(done.checksum_type(), Some(&checksum_type));
    let head = head_with_checksums(c, "sums", key).await;
    assert_eq!(checksum_value!(head, algorithm).as_deref(), Some(expected));
    assert_eq!(head.checksum_type(), Some(&checksum_type));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_sha256_upload_gets_the_composite_checksum_of_its_parts() {
    bounded(async {
        let c = TestCluster::start(3).await;
        c.create_bucket("sums").await;
        let body = data(5 * MIB + 1000, 3);
        let (upload_id, parts) =
            upload_in_parts(&c, "big", ChecksumAlgorithm::Sha256, None, &body, 5 * MIB).await;

        let listed = c
            .client
            .list_parts()
            .bucket("sums")
            .key("big")
            .upload_id(&upload_id)
            .send()
            .await
            .unwrap();
        assert_eq!(
            listed.checksum_algorithm(),
            Some(&ChecksumAlgorithm::Sha256)
        );
        let listed: Vec<_> = listed
            .parts()
            .iter()
            .map(|p| p.checksum_sha256().map(str::to_string))
            .collect();
        let sent: Vec<_> = parts
            .iter()
            .map(|p| p.checksum_sha256().map(str::to_string))
            .collect();
        assert_eq!(listed, sent);

        // SHA-256 over the concatenated raw SHA-256 of each part, then "-N".
        let mut digests = Vec::new();
        for piece in body.chunks(5 * MIB) {
            digests.extend(Sha256::digest(piece));
        }
        let expected = format!("{}-2", BASE64.encode(Sha256::digest(&digests)));

        let sha256 = ChecksumAlgorithm::Sha256;
        let composite = ChecksumType::Composite;
        complete_expecting(&c, "big", &upload_id, parts, sha256, &expected, composite).await;
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_crc32_uploads_get_composite_or_full_object_checksums() {
    bounded(async {
        let c = TestCluster::start(3).await;
        c.create_bucket("sums").await;
        let body = data(5 * MIB + 4321, 4);

        // The CRC32 of the whole body, computed by a plain PUT.
        let whole = c
            .client
            .put_object()
            .bucket("sums")
            .key("whole")
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(body.clone().into())
            .send()
            .await
            .unwrap();
        let (upload_id, parts) = upload_in_parts(
            &c,
            "full",
            ChecksumAlgorithm::Crc32,
            Some(ChecksumType::FullObject),
            &body,
            5 * MIB,
        )
        .await;
        let crc32 = ChecksumAlgorithm::Crc32;
        let of_whole = whole.checksum_crc32().unwrap();
        let full = ChecksumType::FullObject;
        complete_expecting(&c, "full", &upload_id, parts, crc32.clone(), of_whole, full).await;

        let (upload_id, parts) = upload_in_parts(
            &c,
            "composite",
            ChecksumAlgorithm::Crc32,
            None,
            &body,
            5 * MIB,
        )
        .await;
        // The CRC32 of the concatenated raw part CRC32s, computed by a plain PUT.
        let mut raw = Vec::new();
        for p in &parts {
            raw.extend(BASE64.decode(p.checksum_crc32().unwrap()).unwrap());
        }
        let of_parts = c
            .client
            .put_object()
            .bucket("sums")
            .key("of-parts")
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(raw.into())
            .send()
            .await
            .unwrap();
        let expected = format!("{}-2", of_parts.checksum_crc32().unwrap());
        let composite = ChecksumType::Composite;
        complete_expecting(
            &c,
            "composite",
            &upload_id,
            parts,
            crc32,
            &expected,
            composite,
        )
        .await;
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_with_a_wrong_or_missing_part_checksum_is_refused() {
    bounded(async {
        let c = TestCluster::start(3).await;
        c.create_bucket("sums").await;
        let (upload_id, parts) =
            upload_in_parts(&c, "k", ChecksumAlgorithm::Crc32, None, HELLO, MIB).await;
        let part = &parts[0];

        let wrong = CompletedPart::builder()
            .part_number(1)
            .e_tag(part.e_tag().unwrap())
            .checksum_crc32("AAAAAA==")
            .build();
        let err = complete(&c, "k", &upload_id, vec![wrong])
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "InvalidPart");
        assert_eq!(error_status(&err), 400);

        let missing = CompletedPart::builder()
            .part_number(1)
            .e_tag(part.e_tag().unwrap())
            .build();
        let err = complete(&c, "k", &upload_id, vec![missing])
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "InvalidRequest");

        // The upload is still there, and completes with the right checksum.
        let done = complete(&c, "k", &upload_id, parts).await.unwrap();
        assert!(done.checksum_crc32().unwrap().ends_with("-1"));
        c.stop().await;
    })
    .await;
}
