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
async fn creating_an_existing_bucket_says_already_owned_by_you() {
    let c = TestCluster::start(3).await;
    c.create_bucket("twice").await;
    let err = c
        .client
        .create_bucket()
        .bucket("twice")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "BucketAlreadyOwnedByYou");
    assert_eq!(error_status(&err), 409);
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
