use std::sync::Arc;

use futures::StreamExt;

use crate::common::*;

/// 2,500 keys: 2,000 under `logs/2025/...`, 500 at the top.
fn keys() -> Vec<String> {
    let mut keys: Vec<String> = (0..2000)
        .map(|i| format!("logs/{}/{i:05}.txt", 2024 + i % 2))
        .collect();
    keys.extend((0..500).map(|i| format!("top-{i:04}")));
    keys.sort();
    keys
}

async fn fill(c: &TestCluster, bucket: &str, keys: &[String]) {
    let client = Arc::new(c.client.clone());
    futures::stream::iter(keys.iter().cloned())
        .map(|key| {
            let client = client.clone();
            let bucket = bucket.to_string();
            async move {
                client
                    .put_object()
                    .bucket(bucket)
                    .key(&key)
                    .body(key.as_bytes().to_vec().into())
                    .send()
                    .await
                    .expect("put");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_through_2500_keys_in_order() {
    let c = TestCluster::start(3).await;
    c.create_bucket("many").await;
    let all = keys();
    fill(&c, "many", &all).await;

    // V2 with continuation tokens, 1000 per page.
    let mut listed = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = c
            .client
            .list_objects_v2()
            .bucket("many")
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        assert!(page.contents().len() <= 1000);
        assert_eq!(page.key_count(), Some(page.contents().len() as i32));
        listed.extend(page.contents().iter().map(|o| o.key().unwrap().to_string()));
        if page.is_truncated() == Some(true) {
            token = page.next_continuation_token().map(str::to_string);
            assert!(token.is_some());
        } else {
            break;
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(listed, all);

    // Small pages with max-keys and start-after.
    let page = c
        .client
        .list_objects_v2()
        .bucket("many")
        .max_keys(7)
        .start_after("top-0100")
        .send()
        .await
        .unwrap();
    let got: Vec<&str> = page.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(
        got,
        [
            "top-0101", "top-0102", "top-0103", "top-0104", "top-0105", "top-0106", "top-0107"
        ]
    );
    assert_eq!(page.is_truncated(), Some(true));

    // V1 with markers.
    let mut listed_v1 = Vec::new();
    let mut marker: Option<String> = None;
    for _ in 0..10 {
        let page = c
            .client
            .list_objects()
            .bucket("many")
            .max_keys(900)
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap();
        listed_v1.extend(page.contents().iter().map(|o| o.key().unwrap().to_string()));
        if page.is_truncated() != Some(true) {
            break;
        }
        marker = page
            .next_marker()
            .map(str::to_string)
            .or_else(|| listed_v1.last().cloned());
    }
    assert_eq!(listed_v1, all);

    // Sizes and ETags are those of the objects.
    let page = c
        .client
        .list_objects_v2()
        .bucket("many")
        .prefix("top-0000")
        .send()
        .await
        .unwrap();
    let object = &page.contents()[0];
    assert_eq!(object.size(), Some(8));
    assert_eq!(
        object.e_tag(),
        Some(format!("\"{}\"", md5_hex(b"top-0000")).as_str())
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delimiter_rolls_keys_up_into_common_prefixes() {
    let c = TestCluster::start(3).await;
    c.create_bucket("tree").await;
    let keys: Vec<String> = [
        "a.txt",
        "dir1/x",
        "dir1/y",
        "dir1/sub/z",
        "dir2/x",
        "dir3/",
        "zz/top",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    fill(&c, "tree", &keys).await;

    let top = c
        .client
        .list_objects_v2()
        .bucket("tree")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let files: Vec<&str> = top.contents().iter().filter_map(|o| o.key()).collect();
    let dirs: Vec<&str> = top
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(files, ["a.txt"]);
    assert_eq!(dirs, ["dir1/", "dir2/", "dir3/", "zz/"]);
    assert_eq!(top.key_count(), Some(5));

    let inner = c
        .client
        .list_objects_v2()
        .bucket("tree")
        .prefix("dir1/")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let files: Vec<&str> = inner.contents().iter().filter_map(|o| o.key()).collect();
    let dirs: Vec<&str> = inner
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(files, ["dir1/x", "dir1/y"]);
    assert_eq!(dirs, ["dir1/sub/"]);

    // Paging one entry at a time never repeats a common prefix.
    let mut seen = Vec::new();
    let mut token = None;
    for _ in 0..20 {
        let page = c
            .client
            .list_objects_v2()
            .bucket("tree")
            .delimiter("/")
            .max_keys(1)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        seen.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key())
                .map(str::to_string),
        );
        seen.extend(
            page.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix())
                .map(str::to_string),
        );
        token = page.next_continuation_token().map(str::to_string);
        if page.is_truncated() != Some(true) {
            break;
        }
    }
    assert_eq!(seen, ["a.txt", "dir1/", "dir2/", "dir3/", "zz/"]);

    // V1 marker that is a common prefix skips everything under it.
    let page = c
        .client
        .list_objects()
        .bucket("tree")
        .delimiter("/")
        .marker("dir1/")
        .send()
        .await
        .unwrap();
    let dirs: Vec<&str> = page
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(dirs, ["dir2/", "dir3/", "zz/"]);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_keys_disappear_from_listings() {
    let c = TestCluster::start(3).await;
    c.create_bucket("gone").await;
    let keys: Vec<String> = (0..30).map(|i| format!("k{i:02}")).collect();
    fill(&c, "gone", &keys).await;
    for k in keys.iter().step_by(2) {
        c.client
            .delete_object()
            .bucket("gone")
            .key(k)
            .send()
            .await
            .unwrap();
    }
    let page = c
        .client
        .list_objects_v2()
        .bucket("gone")
        .max_keys(10)
        .send()
        .await
        .unwrap();
    let got: Vec<&str> = page.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(
        got,
        [
            "k01", "k03", "k05", "k07", "k09", "k11", "k13", "k15", "k17", "k19"
        ]
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoding_type_url_percent_encodes_names_in_listings() {
    let c = TestCluster::start(3).await;
    c.create_bucket("names").await;
    c.put("names", "a+b c/é.txt", b"x".to_vec()).await;
    let creds = Some((ACCESS_KEY, SECRET_KEY));
    let raw = raw_request(
        &c.endpoint,
        "GET",
        "/names?list-type=2&encoding-type=url",
        None,
        b"",
        creds,
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.body);
    assert!(
        raw.body.contains("<Key>a%2Bb%20c/%C3%A9.txt</Key>"),
        "{}",
        raw.body
    );
    let raw = raw_request(
        &c.endpoint,
        "GET",
        "/names?delimiter=%2F&encoding-type=url",
        None,
        b"",
        creds,
    )
    .await;
    assert!(
        raw.body.contains("<Prefix>a%2Bb%20c/</Prefix>"),
        "{}",
        raw.body
    );
    // Without it, names come back as they are.
    let page = c
        .client
        .list_objects_v2()
        .bucket("names")
        .send()
        .await
        .unwrap();
    assert_eq!(page.contents()[0].key(), Some("a+b c/é.txt"));
    let raw = raw_request(
        &c.endpoint,
        "GET",
        "/names?list-type=2&encoding-type=base64",
        None,
        b"",
        creds,
    )
    .await;
    assert_eq!(raw.status, 400, "{}", raw.body);
    assert!(
        raw.body.contains("<Code>InvalidArgument</Code>"),
        "{}",
        raw.body
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_answers_echo_parameters_as_s3_does() {
    let c = TestCluster::start(3).await;
    c.create_bucket("echoes").await;
    c.put("echoes", "a+b", b"x".to_vec()).await;
    let creds = Some((ACCESS_KEY, SECRET_KEY));
    // V1: the prefix comes back as given even with encoding-type=url (only
    // keys, markers and delimiters are encoded), the marker is always there,
    // and an empty delimiter is no delimiter.
    let raw = raw_request(
        &c.endpoint,
        "GET",
        "/echoes?prefix=a%2B&delimiter=&encoding-type=url",
        None,
        b"",
        creds,
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.body);
    assert!(raw.body.contains("<Prefix>a+</Prefix>"), "{}", raw.body);
    assert!(
        raw.body.contains("<Marker></Marker>") || raw.body.contains("<Marker/>"),
        "{}",
        raw.body
    );
    assert!(!raw.body.contains("<Delimiter>"), "{}", raw.body);
    assert!(raw.body.contains("<Key>a%2Bb</Key>"), "{}", raw.body);
    // V2: an empty continuation token is no token.
    let raw = raw_request(
        &c.endpoint,
        "GET",
        "/echoes?list-type=2&continuation-token=",
        None,
        b"",
        creds,
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.body);
    assert!(raw.body.contains("<Key>a+b</Key>"), "{}", raw.body);
    c.stop().await;
}
