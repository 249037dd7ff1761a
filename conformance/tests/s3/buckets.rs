use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_can_be_created_listed_located_and_deleted() {
    let c = TestCluster::start(3).await;
    c.create_bucket("photos").await;
    c.create_bucket("videos").await;

    let list = c.client.list_buckets().send().await.unwrap();
    let names: Vec<&str> = list.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["photos", "videos"]);
    assert!(list.buckets()[0].creation_date().is_some());
    assert!(list.owner().and_then(|o| o.id()).is_some());

    c.client
        .head_bucket()
        .bucket("photos")
        .send()
        .await
        .unwrap();
    let location = c
        .client
        .get_bucket_location()
        .bucket("photos")
        .send()
        .await
        .unwrap();
    assert!(
        location
            .location_constraint()
            .is_none_or(|l| l.as_str().is_empty())
    );

    // A listing caches the bucket record for reads; deleting it must drop that.
    c.client
        .list_objects_v2()
        .bucket("photos")
        .send()
        .await
        .unwrap();
    c.client
        .delete_bucket()
        .bucket("photos")
        .send()
        .await
        .unwrap();
    let err = c
        .client
        .head_bucket()
        .bucket("photos")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&err), 404);
    let err = c
        .client
        .list_objects_v2()
        .bucket("photos")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "NoSuchBucket");
    let list = c.client.list_buckets().send().await.unwrap();
    let names: Vec<&str> = list.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["videos"]);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreating_your_own_bucket_in_us_east_1_succeeds_and_keeps_it() {
    let c = TestCluster::start(3).await;
    c.create_bucket("twice").await;
    c.put("twice", "kept", b"still here".to_vec()).await;
    c.client
        .create_bucket()
        .bucket("twice")
        .send()
        .await
        .expect("S3's legacy us-east-1 answer: 200");
    assert_eq!(c.get("twice", "kept").await, b"still here");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_buckets_pages_with_max_buckets_and_filters_by_prefix() {
    let c = TestCluster::start(3).await;
    for name in ["page-a", "page-b", "page-c", "other-d"] {
        c.create_bucket(name).await;
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let out = c
            .client
            .list_buckets()
            .max_buckets(2)
            .prefix("page-")
            .set_continuation_token(token.clone())
            .send()
            .await
            .expect("list buckets");
        assert!(out.buckets().len() <= 2);
        seen.extend(
            out.buckets()
                .iter()
                .filter_map(|b| b.name().map(str::to_string)),
        );
        assert_eq!(out.prefix(), Some("page-"));
        token = out.continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["page-a", "page-b", "page-c"]);
    let err = c
        .client
        .list_buckets()
        .max_buckets(0)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "InvalidArgument");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_bucket_names_are_refused() {
    let c = TestCluster::start(3).await;
    for name in [
        "ab",
        "Upper-Case",
        "under_score",
        "-leading",
        "trailing-",
        "a..b",
        "192.168.1.1",
    ] {
        let raw = raw_request(
            &c.endpoint,
            "PUT",
            &format!("/{name}"),
            None,
            b"",
            Some((ACCESS_KEY, SECRET_KEY)),
        )
        .await;
        assert_eq!(raw.status, 400, "{name}: {}", raw.body);
        assert!(
            raw.body.contains("<Code>InvalidBucketName</Code>"),
            "{name}: {}",
            raw.body
        );
    }
    let list = c.client.list_buckets().send().await.unwrap();
    assert!(list.buckets().is_empty());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_bucket_with_objects_says_bucket_not_empty() {
    let c = TestCluster::start(3).await;
    c.create_bucket("full").await;
    c.put("full", "a", b"x".to_vec()).await;
    let err = c
        .client
        .delete_bucket()
        .bucket("full")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "BucketNotEmpty");
    assert_eq!(error_status(&err), 409);
    c.client
        .delete_object()
        .bucket("full")
        .key("a")
        .send()
        .await
        .unwrap();
    c.client
        .delete_bucket()
        .bucket("full")
        .send()
        .await
        .unwrap();
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_answers_no_such_bucket_everywhere() {
    let c = TestCluster::start(3).await;
    let err = c
        .client
        .get_object()
        .bucket("nothere")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "NoSuchBucket");
    let err = c
        .client
        .put_object()
        .bucket("nothere")
        .key("k")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "NoSuchBucket");
    let err = c
        .client
        .list_objects_v2()
        .bucket("nothere")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "NoSuchBucket");
    let err = c
        .client
        .delete_bucket()
        .bucket("nothere")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "NoSuchBucket");
    c.stop().await;
}

/// DeleteBucket racing PUTs into the bucket and an open multipart upload:
/// either the delete wins (every racing PUT answers NoSuchBucket, the
/// upload is gone) or it answers BucketNotEmpty and every PUT acknowledged
/// reads back. No PUT is ever acknowledged into a deleted bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_bucket_racing_writes_never_acknowledges_a_write_it_drops() {
    bounded(Duration::from_secs(240), async {
        let c = TestCluster::start(3).await;
        let (mut deleted, mut kept) = (0, 0);
        for round in 0..24u64 {
            let bucket = format!("racing-{round}");
            c.create_bucket(&bucket).await;
            let upload = c
                .client
                .create_multipart_upload()
                .bucket(&bucket)
                .key("upload")
                .send()
                .await
                .unwrap();
            let upload_id = upload.upload_id().unwrap().to_string();
            c.client
                .upload_part()
                .bucket(&bucket)
                .key("upload")
                .upload_id(&upload_id)
                .part_number(1)
                .body(data(1000, round).into())
                .send()
                .await
                .unwrap();
            // A few PUTs, started a little before or after the delete.
            let puts = (0..3u64).map(|i| {
                let (client, bucket) = (c.client.clone(), bucket.clone());
                async move {
                    tokio::time::sleep(Duration::from_millis((round % 8) * 6 + i * 2)).await;
                    let key = format!("k{i}");
                    let answer = client
                        .put_object()
                        .bucket(&bucket)
                        .key(&key)
                        .body(data(100, i).into())
                        .send()
                        .await;
                    (key, answer.map(drop).map_err(|e| error_code(&e)))
                }
            });
            let delete = async {
                c.client
                    .delete_bucket()
                    .bucket(&bucket)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| error_code(&e))
            };
            let (deleting, putting) = tokio::join!(delete, futures::future::join_all(puts));
            let context = format!("round {round}: delete {deleting:?}, puts {putting:?}");
            match deleting {
                Ok(()) => {
                    deleted += 1;
                    for (_, answer) in &putting {
                        assert_eq!(answer, &Err("NoSuchBucket".to_string()), "{context}");
                    }
                    let err = c
                        .client
                        .list_multipart_uploads()
                        .bucket(&bucket)
                        .send()
                        .await
                        .unwrap_err();
                    assert_eq!(error_code(&err), "NoSuchBucket", "{context}");
                }
                Err(code) => {
                    kept += 1;
                    assert!(
                        code == "BucketNotEmpty" || code == "OperationAborted",
                        "{context}"
                    );
                    for (key, answer) in &putting {
                        match answer {
                            Ok(()) => assert_eq!(
                                c.get(&bucket, key).await,
                                data(100, key[1..].parse().unwrap()),
                                "{context}"
                            ),
                            Err(e) => assert_eq!(e, "NoSuchBucket", "{context}"),
                        }
                    }
                    // A bucket found with objects keeps its upload (unless
                    // an object landed only after the uploads were aborted).
                    let listed = c
                        .client
                        .list_multipart_uploads()
                        .bucket(&bucket)
                        .send()
                        .await
                        .unwrap();
                    assert!(listed.uploads().len() <= 1, "{context}");
                }
            }
        }
        println!("delete-bucket rounds: {deleted} deleted, {kept} kept");
        c.stop().await;
    })
    .await;
}
