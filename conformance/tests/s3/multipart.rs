use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use crate::common::*;

const MIB: usize = 1024 * 1024;

async fn upload_part(
    c: &TestCluster,
    bucket: &str,
    key: &str,
    upload_id: &str,
    n: i32,
    body: &[u8],
) -> CompletedPart {
    let out = c
        .client
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .part_number(n)
        .body(body.to_vec().into())
        .send()
        .await
        .expect("upload part");
    assert_eq!(out.e_tag(), Some(format!("\"{}\"", md5_hex(body)).as_str()));
    CompletedPart::builder()
        .part_number(n)
        .e_tag(out.e_tag().unwrap())
        .build()
}

async fn create(c: &TestCluster, bucket: &str, key: &str) -> String {
    c.client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .content_type("video/mp4")
        .metadata("origin", "camera")
        .send()
        .await
        .expect("create upload")
        .upload_id()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_mib_multipart_upload_assembles_the_parts_in_order() {
    let c = TestCluster::start(3).await;
    c.create_bucket("big").await;
    let body = data(50 * MIB + 12345, 7);
    let upload_id = create(&c, "big", "movie.mp4").await;

    let part_size = 8 * MIB;
    let mut parts = Vec::new();
    let mut md5s = Vec::new();
    for (i, piece) in body.chunks(part_size).enumerate() {
        parts.push(upload_part(&c, "big", "movie.mp4", &upload_id, i as i32 + 1, piece).await);
        md5s.extend(hex::decode(md5_hex(piece)).unwrap());
    }
    assert_eq!(parts.len(), 7);

    let listed = c
        .client
        .list_parts()
        .bucket("big")
        .key("movie.mp4")
        .upload_id(&upload_id)
        .send()
        .await
        .unwrap();
    let numbers: Vec<i32> = listed
        .parts()
        .iter()
        .filter_map(|p| p.part_number())
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(listed.parts()[0].size(), Some(part_size as i64));

    let uploads = c
        .client
        .list_multipart_uploads()
        .bucket("big")
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = uploads
        .uploads()
        .iter()
        .filter_map(|u| u.upload_id())
        .collect();
    assert_eq!(ids, [upload_id.as_str()]);

    let done = c
        .client
        .complete_multipart_upload()
        .bucket("big")
        .key("movie.mp4")
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let expected_etag = format!("\"{}-7\"", md5_hex(&md5s));
    assert_eq!(done.e_tag(), Some(expected_etag.as_str()));

    let got = c
        .client
        .get_object()
        .bucket("big")
        .key("movie.mp4")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("video/mp4"));
    assert_eq!(
        got.metadata().unwrap().get("origin").map(String::as_str),
        Some("camera")
    );
    assert_eq!(got.e_tag(), Some(expected_etag.as_str()));
    let bytes = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(bytes.len(), body.len());
    assert!(
        md5_hex(&bytes) == md5_hex(&body),
        "assembled object differs"
    );

    // A range across the first part boundary.
    let ranged = c
        .client
        .get_object()
        .bucket("big")
        .key("movie.mp4")
        .range(format!("bytes={}-{}", part_size - 10, part_size + 9))
        .send()
        .await
        .unwrap();
    let bytes = ranged.body.collect().await.unwrap().into_bytes();
    assert!(bytes.as_ref() == &body[part_size - 10..part_size + 10]);

    // GET by part number returns that part.
    let part2 = c
        .client
        .get_object()
        .bucket("big")
        .key("movie.mp4")
        .part_number(2)
        .send()
        .await
        .unwrap();
    assert_eq!(part2.parts_count(), Some(7));
    let bytes = part2.body.collect().await.unwrap().into_bytes();
    assert!(bytes.as_ref() == &body[part_size..2 * part_size]);

    // The upload is gone once completed.
    let uploads = c
        .client
        .list_multipart_uploads()
        .bucket("big")
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty());
    let err = c
        .client
        .list_parts()
        .bucket("big")
        .key("movie.mp4")
        .upload_id(&upload_id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "NoSuchUpload");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completing_with_bad_parts_is_refused_with_the_s3_error() {
    let c = TestCluster::start(3).await;
    c.create_bucket("parts").await;
    let upload_id = create(&c, "parts", "obj").await;
    let small = upload_part(&c, "parts", "obj", &upload_id, 1, &data(MIB, 1)).await;
    let last = upload_part(&c, "parts", "obj", &upload_id, 2, &data(1000, 2)).await;

    let complete = |parts: Vec<CompletedPart>| {
        c.client
            .complete_multipart_upload()
            .bucket("parts")
            .key("obj")
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
    };

    let err = complete(vec![small.clone(), last.clone()])
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "EntityTooSmall");
    assert_eq!(error_status(&err), 400);

    let wrong_etag = CompletedPart::builder()
        .part_number(1)
        .e_tag("\"0123456789abcdef0123456789abcdef\"")
        .build();
    let err = complete(vec![wrong_etag]).await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidPart");

    let missing = CompletedPart::builder()
        .part_number(9)
        .e_tag(small.e_tag().unwrap())
        .build();
    let err = complete(vec![missing]).await.unwrap_err();
    assert_eq!(error_code(&err), "InvalidPart");

    let err = complete(vec![last.clone(), small.clone()])
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "InvalidPartOrder");

    // A single small part is a valid (last) part.
    complete(vec![small]).await.unwrap();
    assert_eq!(c.get("parts", "obj").await.len(), MIB);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_upload_is_gone_and_its_parts_deleted() {
    let c = TestCluster::start(3).await;
    c.create_bucket("abort").await;
    let upload_id = create(&c, "abort", "obj").await;
    upload_part(&c, "abort", "obj", &upload_id, 1, &data(2 * MIB, 3)).await;
    let chunks_before: usize = (0..3).map(|i| chunk_files(&c.node_dir(i)).len()).sum();
    assert_eq!(chunks_before, 2 * 3);

    let abort = || {
        c.client
            .abort_multipart_upload()
            .bucket("abort")
            .key("obj")
            .upload_id(&upload_id)
            .send()
    };
    abort().await.unwrap();
    // An SDK retrying an Abort whose answer it lost: done already.
    abort().await.expect("abort again");
    let err = c
        .client
        .complete_multipart_upload()
        .bucket("abort")
        .key("obj")
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(CompletedPart::builder().part_number(1).build())
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "NoSuchUpload");
    let err = c
        .client
        .upload_part()
        .bucket("abort")
        .key("obj")
        .upload_id(&upload_id)
        .part_number(2)
        .body(b"late".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "NoSuchUpload");
    let err = c
        .client
        .abort_multipart_upload()
        .bucket("abort")
        .key("obj")
        .upload_id("no-such-upload")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "NoSuchUpload");

    // Chunk deletion runs in the background; give it a bounded moment.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left: usize = (0..3).map(|i| chunk_files(&c.node_dir(i)).len()).sum();
        if left == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} chunk files left after abort"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completing_again_after_success_answers_the_same_object() {
    let c = TestCluster::start(3).await;
    c.create_bucket("retry").await;
    let upload_id = create(&c, "retry", "obj").await;
    let parts = vec![
        upload_part(&c, "retry", "obj", &upload_id, 1, &data(5 * MIB, 1)).await,
        upload_part(&c, "retry", "obj", &upload_id, 2, &data(1000, 2)).await,
    ];
    let complete = || {
        c.client
            .complete_multipart_upload()
            .bucket("retry")
            .key("obj")
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts.clone()))
                    .build(),
            )
            .send()
    };
    let first = complete().await.expect("complete");
    // An SDK that lost the first answer sends it again: the same answer,
    // and the object it made stays whole.
    let again = complete().await.expect("complete again");
    assert_eq!(again.e_tag(), first.e_tag());
    assert!(first.e_tag().unwrap().ends_with("-2\""));
    let whole = [data(5 * MIB, 1), data(1000, 2)].concat();
    assert!(c.get("retry", "obj").await == whole, "the object changed");
    // A completed upload takes no parts and no abort.
    let err = c
        .client
        .upload_part()
        .bucket("retry")
        .key("obj")
        .upload_id(&upload_id)
        .part_number(3)
        .body(b"late".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "NoSuchUpload");
    let err = c
        .client
        .abort_multipart_upload()
        .bucket("retry")
        .key("obj")
        .upload_id(&upload_id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "NoSuchUpload");
    assert!(c.get("retry", "obj").await == whole, "the object changed");
    // Other parts than the ones that made the object: the upload is gone.
    let err = c
        .client
        .complete_multipart_upload()
        .bucket("retry")
        .key("obj")
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts[..1].to_vec()))
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), "NoSuchUpload");
    c.stop().await;
}

/// What one racing request answered: Ok, or its S3 error code.
fn outcome<T, E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    answer: &Result<T, aws_sdk_s3::error::SdkError<E, R>>,
) -> Result<(), String> {
    match answer {
        Ok(_) => Ok(()),
        Err(e) => Err(error_code(e)),
    }
}

/// Complete, Abort and a repeated Complete of one upload at the same moment
/// (and in every third round a re-upload of part 1 meanwhile): exactly one
/// of Complete and Abort wins, the loser answers NoSuchUpload, and a
/// completed object reads back whole, as the parts Complete named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_complete_abort_and_retry_have_exactly_one_winner() {
    let c = TestCluster::start(3).await;
    c.create_bucket("race").await;
    let first = data(5 * MIB, 11);
    let second = data(1024, 12);
    let other_first = data(5 * MIB, 13);
    let expected: Vec<u8> = [first.clone(), second.clone()].concat();
    let (mut completed, mut aborted) = (0, 0);
    for round in 0..30 {
        let key = format!("obj-{round}");
        let upload_id = create(&c, "race", &key).await;
        let parts = vec![
            upload_part(&c, "race", &key, &upload_id, 1, &first).await,
            upload_part(&c, "race", &key, &upload_id, 2, &second).await,
        ];
        let complete = || {
            c.client
                .complete_multipart_upload()
                .bucket("race")
                .key(&key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts.clone()))
                        .build(),
                )
                .send()
        };
        let abort = c
            .client
            .abort_multipart_upload()
            .bucket("race")
            .key(&key)
            .upload_id(&upload_id)
            .send();
        let reupload = async {
            if round % 3 != 0 {
                return None;
            }
            let answer = c
                .client
                .upload_part()
                .bucket("race")
                .key(&key)
                .upload_id(&upload_id)
                .part_number(1)
                .body(other_first.clone().into())
                .send()
                .await;
            Some(outcome(&answer))
        };
        let (one, aborting, two, reuploaded) =
            tokio::join!(complete(), abort, complete(), reupload);
        let (one, two) = (
            outcome(&one).map(|_| one.unwrap()),
            outcome(&two).map(|_| two.unwrap()),
        );
        let aborting = outcome(&aborting);
        let completes: Vec<_> = [&one, &two]
            .into_iter()
            .filter_map(|a| a.as_ref().ok())
            .collect();
        let context = format!(
            "round {round}: complete {:?} / {:?}, abort {aborting:?}, re-upload {reuploaded:?}",
            one.as_ref().map(|o| o.e_tag().map(str::to_string)),
            two.as_ref().map(|o| o.e_tag().map(str::to_string)),
        );
        match (completes.is_empty(), aborting.is_ok()) {
            (false, false) => {
                completed += 1;
                assert_eq!(aborting, Err("NoSuchUpload".into()), "{context}");
                let etags: Vec<_> = completes.iter().map(|o| o.e_tag()).collect();
                assert!(etags.windows(2).all(|w| w[0] == w[1]), "{context}");
                // Complete named part 1's first ETag: a re-upload that
                // landed before it would have made it fail.
                assert_ne!(reuploaded, Some(Ok(())), "{context}");
                let body = c.get("race", &key).await;
                assert!(
                    body == expected,
                    "{context}: the object reads back different"
                );
            }
            (true, true) => {
                aborted += 1;
                for answer in [&one, &two] {
                    let code = answer.as_ref().err().cloned().unwrap_or_default();
                    assert!(code == "NoSuchUpload" || code == "InvalidPart", "{context}");
                }
                let err = c
                    .client
                    .head_object()
                    .bucket("race")
                    .key(&key)
                    .send()
                    .await
                    .unwrap_err();
                assert_eq!(error_code(&err), "NotFound", "{context}");
            }
            (false, true) => panic!("{context}: Complete and Abort both won"),
            (true, false) => panic!("{context}: neither Complete nor Abort won"),
        }
        // Whichever won, the upload is not listed any more.
        let listed = c
            .client
            .list_multipart_uploads()
            .bucket("race")
            .prefix(&key)
            .send()
            .await
            .unwrap();
        assert!(listed.uploads().is_empty(), "round {round}: still listed");
    }
    println!("racing rounds: {completed} completed, {aborted} aborted");
    c.stop().await;
}
