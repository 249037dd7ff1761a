//! UploadPartCopy: parts of a multipart upload copied from (ranges of)
//! other objects, as S3 does it.

use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::{
    BucketVersioningStatus, ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

use crate::common::*;
use crate::versioning::{delete_to_marker, put_version, set_versioning};

const MIB: usize = 1024 * 1024;

async fn create_upload(c: &TestCluster, bucket: &str, key: &str, sha256: bool) -> String {
    c.client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .set_checksum_algorithm(sha256.then_some(ChecksumAlgorithm::Sha256))
        .send()
        .await
        .expect("create upload")
        .upload_id()
        .unwrap()
        .to_string()
}

/// Completes an upload with `parts`, which must succeed.
pub(crate) async fn complete(
    c: &TestCluster,
    bucket: &str,
    key: &str,
    upload_id: &str,
    parts: Vec<CompletedPart>,
) {
    c.client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .expect("complete upload");
}

fn quoted_md5(bytes: &[u8]) -> String {
    format!("\"{}\"", md5_hex(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_part_copy_assembles_an_object_from_ranges_of_other_objects() {
    let c = TestCluster::start(3).await;
    c.create_bucket("parts").await;
    let src = data(6 * MIB + 100, 1);
    let tail = data(1000, 2);
    c.put("parts", "src", src.clone()).await;
    c.put("parts", "tail", tail.clone()).await;
    let upload_id = create_upload(&c, "parts", "joined", true).await;

    let head = &src[100..5 * MIB + 100];
    let first = c
        .client
        .upload_part_copy()
        .bucket("parts")
        .key("joined")
        .upload_id(&upload_id)
        .part_number(1)
        .copy_source("parts/src")
        .copy_source_range(format!("bytes=100-{}", 5 * MIB + 99))
        .send()
        .await
        .expect("copy a range");
    let first = first.copy_part_result().expect("CopyPartResult");
    assert_eq!(first.e_tag(), Some(quoted_md5(head).as_str()));
    assert!(first.last_modified().is_some());
    let head_sha = BASE64.encode(Sha256::digest(head));
    assert_eq!(first.checksum_sha256(), Some(head_sha.as_str()));

    // Without a range the whole source is the part.
    let second = c
        .client
        .upload_part_copy()
        .bucket("parts")
        .key("joined")
        .upload_id(&upload_id)
        .part_number(2)
        .copy_source("parts/tail")
        .send()
        .await
        .expect("copy a whole object");
    let second = second.copy_part_result().expect("CopyPartResult");
    assert_eq!(second.e_tag(), Some(quoted_md5(&tail).as_str()));

    let listed = c
        .client
        .list_parts()
        .bucket("parts")
        .key("joined")
        .upload_id(&upload_id)
        .send()
        .await
        .unwrap();
    let sizes: Vec<i64> = listed.parts().iter().filter_map(|p| p.size()).collect();
    assert_eq!(sizes, [5 * MIB as i64, 1000]);

    let parts = [first, second]
        .iter()
        .enumerate()
        .map(|(i, r)| {
            CompletedPart::builder()
                .part_number(i as i32 + 1)
                .e_tag(r.e_tag().unwrap())
                .set_checksum_sha256(r.checksum_sha256().map(str::to_string))
                .build()
        })
        .collect();
    complete(&c, "parts", "joined", &upload_id, parts).await;
    let expected = [head, tail.as_slice()].concat();
    assert!(c.get("parts", "joined").await == expected);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_part_copy_refuses_bad_ranges_failed_conditions_and_missing_sources() {
    let c = TestCluster::start(3).await;
    c.create_bucket("parts").await;
    let src = data(1000, 3);
    c.put("parts", "src", src.clone()).await;
    let upload_id = create_upload(&c, "parts", "dst", false).await;
    let copy = |n: i32| {
        c.client
            .upload_part_copy()
            .bucket("parts")
            .key("dst")
            .upload_id(&upload_id)
            .part_number(n)
            .copy_source("parts/src")
    };

    for range in ["0-10", "bytes=0-", "bytes=0-1000", "bytes=10-5"] {
        let err = copy(1).copy_source_range(range).send().await.unwrap_err();
        assert_eq!(error_code(&err), "InvalidArgument", "{range}");
    }
    let past = DateTime::from_secs(946_684_800); // 2000-01-01
    let future = DateTime::from_secs(4_102_444_800); // 2100-01-01
    let failed = [
        copy(1).copy_source_if_match("\"0123456789abcdef0123456789abcdef\""),
        copy(1).copy_source_if_none_match(quoted_md5(&src)),
        copy(1).copy_source_if_modified_since(future),
        copy(1).copy_source_if_unmodified_since(past),
    ];
    for request in failed {
        let err = request.send().await.unwrap_err();
        assert_eq!(error_code(&err), "PreconditionFailed");
        assert_eq!(error_status(&err), 412);
    }
    let refused = [
        (copy(0), "InvalidArgument"),
        (copy(1).copy_source("parts/missing"), "NoSuchKey"),
        (copy(1).copy_source("nobucket/src"), "NoSuchBucket"),
        (copy(1).upload_id("no-such-upload"), "NoSuchUpload"),
    ];
    for (request, code) in refused {
        let err = request.send().await.unwrap_err();
        assert_eq!(error_code(&err), code);
    }

    // As S3: a matching If-Match wins over a failed If-Unmodified-Since.
    let done = copy(1)
        .copy_source_if_match(quoted_md5(&src))
        .copy_source_if_unmodified_since(past)
        .copy_source_range("bytes=0-499")
        .send()
        .await
        .expect("conditions hold");
    let result = done.copy_part_result().unwrap();
    assert_eq!(result.e_tag(), Some(quoted_md5(&src[..500]).as_str()));
    // No checksum in the answer of an upload without a ChecksumAlgorithm.
    assert!(result.checksum_crc64_nvme().is_none() && result.checksum_sha256().is_none());

    let listed = c
        .client
        .list_parts()
        .bucket("parts")
        .key("dst")
        .upload_id(&upload_id)
        .send()
        .await
        .unwrap();
    let numbers: Vec<i32> = listed
        .parts()
        .iter()
        .filter_map(|p| p.part_number())
        .collect();
    assert_eq!(numbers, [1]);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_part_copy_reads_the_source_version_named_by_version_id() {
    let c = TestCluster::start(3).await;
    c.create_bucket("vers").await;
    set_versioning(&c, "vers", BucketVersioningStatus::Enabled).await;
    let old = data(2000, 4);
    let v1 = put_version(&c, "vers", "k", &old).await;
    c.put("vers", "k", data(3000, 5)).await;
    let upload_id = create_upload(&c, "vers", "restored", false).await;

    let copied = c
        .client
        .upload_part_copy()
        .bucket("vers")
        .key("restored")
        .upload_id(&upload_id)
        .part_number(1)
        .copy_source(format!("vers/k?versionId={v1}"))
        .send()
        .await
        .expect("copy an old version");
    assert_eq!(copied.copy_source_version_id(), Some(v1.as_str()));
    let etag = copied
        .copy_part_result()
        .unwrap()
        .e_tag()
        .unwrap()
        .to_string();
    assert_eq!(etag, quoted_md5(&old));
    let part = CompletedPart::builder().part_number(1).e_tag(etag).build();
    complete(&c, "vers", "restored", &upload_id, vec![part]).await;
    assert!(c.get("vers", "restored").await == old);

    // A delete marker is no source: by key NoSuchKey, by its id InvalidRequest.
    let marker = delete_to_marker(&c, "vers", "k").await;
    let upload_id = create_upload(&c, "vers", "again", false).await;
    for (source, code) in [
        ("vers/k".to_string(), "NoSuchKey"),
        (format!("vers/k?versionId={marker}"), "InvalidRequest"),
    ] {
        let err = c
            .client
            .upload_part_copy()
            .bucket("vers")
            .key("again")
            .upload_id(&upload_id)
            .part_number(1)
            .copy_source(source)
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), code);
    }
    c.stop().await;
}
