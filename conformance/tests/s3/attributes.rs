//! GetObjectAttributes: ETag, Checksum, ObjectParts, StorageClass and
//! ObjectSize of an object or one of its versions.

use aws_sdk_s3::types::{
    BucketVersioningStatus, ChecksumAlgorithm, ChecksumType, CompletedPart, ObjectAttributes,
    StorageClass,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

use crate::common::*;
use crate::part_copy::complete;
use crate::versioning::{delete_to_marker, put_version, set_versioning};

const MIB: usize = 1024 * 1024;

const ALL: [ObjectAttributes; 5] = [
    ObjectAttributes::Etag,
    ObjectAttributes::Checksum,
    ObjectAttributes::ObjectParts,
    ObjectAttributes::StorageClass,
    ObjectAttributes::ObjectSize,
];

fn sha256_b64(bytes: &[u8]) -> String {
    BASE64.encode(Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_object_attributes_describes_a_single_put_object() {
    let c = TestCluster::start(3).await;
    c.create_bucket("attrs").await;
    let body = data(3000, 1);
    c.client
        .put_object()
        .bucket("attrs")
        .key("one")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .body(body.clone().into())
        .send()
        .await
        .unwrap();

    let attributes = |list: &[ObjectAttributes]| {
        c.client
            .get_object_attributes()
            .bucket("attrs")
            .key("one")
            .set_object_attributes(Some(list.to_vec()))
            .send()
    };
    let all = attributes(&ALL).await.expect("get object attributes");
    // S3 sends this ETag without quotes; s3s quotes every ETag it writes.
    assert_eq!(
        all.e_tag().map(|e| e.trim_matches('"')),
        Some(md5_hex(&body).as_str())
    );
    assert_eq!(all.object_size(), Some(3000));
    assert_eq!(all.storage_class(), Some(&StorageClass::Standard));
    let checksum = all.checksum().expect("Checksum");
    assert_eq!(checksum.checksum_sha256(), Some(sha256_b64(&body).as_str()));
    assert_eq!(checksum.checksum_type(), Some(&ChecksumType::FullObject));
    assert!(all.object_parts().is_none(), "a single PUT has no parts");
    assert!(all.last_modified().is_some());
    assert!(all.version_id().is_none());

    let size_only = attributes(&[ObjectAttributes::ObjectSize]).await.unwrap();
    assert_eq!(size_only.object_size(), Some(3000));
    assert!(size_only.e_tag().is_none() && size_only.checksum().is_none());

    let err = attributes(&[ObjectAttributes::from("Colour")])
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "InvalidArgument");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_object_attributes_pages_the_parts_of_a_multipart_object() {
    let c = TestCluster::start(3).await;
    c.create_bucket("attrs").await;
    let body = data(10 * MIB + 10, 2);
    let upload_id = c
        .client
        .create_multipart_upload()
        .bucket("attrs")
        .key("multi")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
    let mut parts = Vec::new();
    for (i, piece) in body.chunks(5 * MIB).enumerate() {
        let out = c
            .client
            .upload_part()
            .bucket("attrs")
            .key("multi")
            .upload_id(&upload_id)
            .part_number(i as i32 + 1)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .body(piece.to_vec().into())
            .send()
            .await
            .unwrap();
        parts.push(
            CompletedPart::builder()
                .part_number(i as i32 + 1)
                .e_tag(out.e_tag().unwrap())
                .checksum_sha256(sha256_b64(piece))
                .build(),
        );
    }
    complete(&c, "attrs", "multi", &upload_id, parts).await;

    let attributes = |marker: Option<i32>| {
        c.client
            .get_object_attributes()
            .bucket("attrs")
            .key("multi")
            .set_object_attributes(Some(ALL.to_vec()))
            .max_parts(2)
            .set_part_number_marker(marker.map(|m| m.to_string()))
    };
    let first = attributes(None).send().await.unwrap();
    assert_eq!(first.object_size(), Some(body.len() as i64));
    assert_eq!(
        first
            .e_tag()
            .map(|e| e.ends_with("-3\"") || e.ends_with("-3")),
        Some(true)
    );
    let checksum = first.checksum().unwrap();
    assert!(checksum.checksum_sha256().unwrap().ends_with("-3"));
    assert_eq!(checksum.checksum_type(), Some(&ChecksumType::Composite));
    let page = first.object_parts().expect("ObjectParts");
    assert_eq!(page.total_parts_count(), Some(3));
    assert_eq!(page.max_parts(), Some(2));
    assert_eq!(page.is_truncated(), Some(true));
    assert_eq!(page.next_part_number_marker(), Some("2"));
    let listed: Vec<(Option<i32>, Option<i64>, Option<String>)> = page
        .parts()
        .iter()
        .map(|p| {
            (
                p.part_number(),
                p.size(),
                p.checksum_sha256().map(str::to_string),
            )
        })
        .collect();
    let piece = |i: usize| &body[i * 5 * MIB..((i + 1) * 5 * MIB).min(body.len())];
    assert_eq!(
        listed,
        [
            (Some(1), Some(5 * MIB as i64), Some(sha256_b64(piece(0)))),
            (Some(2), Some(5 * MIB as i64), Some(sha256_b64(piece(1)))),
        ]
    );

    let rest = attributes(Some(2)).send().await.unwrap();
    let page = rest.object_parts().unwrap();
    assert_eq!(page.is_truncated(), Some(false));
    let numbers: Vec<Option<i32>> = page.parts().iter().map(|p| p.part_number()).collect();
    assert_eq!(numbers, [Some(3)]);
    assert_eq!(page.parts()[0].size(), Some(10));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_object_attributes_answers_like_get_for_missing_keys_and_delete_markers() {
    let c = TestCluster::start(3).await;
    c.create_bucket("attrs").await;
    let attributes = |bucket: &str, key: &str, version: Option<&str>| {
        c.client
            .get_object_attributes()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .object_attributes(ObjectAttributes::ObjectSize)
            .send()
    };
    let err = attributes("attrs", "missing", None).await.unwrap_err();
    assert_eq!(
        (error_code(&err).as_str(), error_status(&err)),
        ("NoSuchKey", 404)
    );
    let err = attributes("no-bucket", "k", None).await.unwrap_err();
    assert_eq!(error_code(&err), "NoSuchBucket");

    set_versioning(&c, "attrs", BucketVersioningStatus::Enabled).await;
    let v1 = put_version(&c, "attrs", "k", &data(700, 3)).await;
    let marker = delete_to_marker(&c, "attrs", "k").await;

    let err = attributes("attrs", "k", None).await.unwrap_err();
    assert_eq!(
        (error_code(&err).as_str(), error_status(&err)),
        ("NoSuchKey", 404)
    );
    let headers = err.raw_response().unwrap().headers();
    assert_eq!(headers.get("x-amz-delete-marker"), Some("true"));
    let err = attributes("attrs", "k", Some(&marker)).await.unwrap_err();
    assert_eq!(error_status(&err), 405);
    let err = attributes("attrs", "k", Some("0000000000000000ffffffffffffffff"))
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "NoSuchVersion");

    let old = attributes("attrs", "k", Some(&v1))
        .await
        .expect("an older version");
    assert_eq!(old.version_id(), Some(v1.as_str()));
    assert_eq!(old.object_size(), Some(700));
    c.stop().await;
}
