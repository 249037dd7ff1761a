//! Layout transitions seen through S3 and the admin API: records larger
//! than a scan page list, transfer to new nodes and repair; the admin
//! status shows each transition and its end.

use std::time::Duration;

use flexdrive::NodeTuning;
use gateway::admin::LayoutStatus;
use gateway::workers::BackgroundConfig;
use gateway::workers::repair::RepairConfig;
use http::Method;

use crate::common::*;

/// The smallest chunk size: a 64 KiB object's record lists 16 chunks,
/// about 2 KB.
const SMALL_CHUNK: usize = 4096;

/// A scan page bound below one such record: every page holds one record.
const TINY_SCAN_BYTES: usize = 1024;

async fn layout(c: &TestCluster) -> LayoutStatus {
    flexdrive::admin_client::AdminClient::new(&c.admin_endpoint(), ADMIN_TOKEN)
        .expect("admin client")
        .call_json(Method::GET, "/v1/layout", None::<&()>)
        .await
        .expect("GET /v1/layout")
}

/// Waits (bounded) until the layout has one live version of `members`
/// nodes and no transition.
async fn wait_settled(c: &TestCluster, members: usize) -> LayoutStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let l = layout(c).await;
        if l.transitions.is_empty()
            && l.versions.len() == 1
            && l.versions[0].members.len() == members
        {
            return l;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "layout did not settle on {members} nodes: {l:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn keys_listed(c: &TestCluster, bucket: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .client
            .list_objects_v2()
            .bucket(bucket)
            .max_keys(7)
            .set_continuation_token(token)
            .send()
            .await
            .expect("list");
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            return keys;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_larger_than_a_scan_page_list_transfer_and_repair() {
    bounded(Duration::from_secs(240), async {
        let background = BackgroundConfig {
            repair: RepairConfig {
                interval: Duration::from_millis(500),
                dead_after: Duration::from_secs(5),
                records_per_pass: 1000,
            },
            ..BackgroundConfig::default()
        };
        let tuning = NodeTuning {
            scan_bytes: TINY_SCAN_BYTES,
            ..NodeTuning::default()
        };
        let mut c = TestCluster::start_tuned(3, SMALL_CHUNK, background, tuning).await;
        c.create_bucket("big").await;
        let mut bodies = Vec::new();
        for i in 0..24u64 {
            let body = data(64 * 1024 + i as usize, 500 + i);
            c.put("big", &format!("obj-{i:02}"), body.clone()).await;
            bodies.push(body);
        }
        let expected: Vec<String> = (0..24).map(|i| format!("obj-{i:02}")).collect();
        assert_eq!(
            keys_listed(&c, "big").await,
            expected,
            "listing pages through"
        );

        // A fourth node: partitions move to it, page by page.
        let before = layout(&c).await;
        c.embedded.add_storage().await.unwrap();
        c.wait_live_storage(4).await;
        let after = wait_settled(&c, 4).await;
        assert!(after.epoch > before.epoch, "{before:?} -> {after:?}");
        assert_eq!(
            keys_listed(&c, "big").await,
            expected,
            "listing after the transfer"
        );
        for (i, body) in bodies.iter().enumerate() {
            assert!(
                c.get("big", &format!("obj-{i:02}")).await == *body,
                "obj-{i:02}"
            );
        }

        // A node dies: its partitions and chunks move on; nothing is lost.
        let victim = 1;
        c.embedded.kill_storage(victim).await;
        c.wait_live_storage(3).await;
        wait_settled(&c, 3).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            let s: gateway::admin::Status =
                flexdrive::admin_client::AdminClient::new(&c.admin_endpoint(), ADMIN_TOKEN)
                    .unwrap()
                    .call_json(Method::GET, "/v1/status", None::<&()>)
                    .await
                    .unwrap();
            if s.durability.complete
                && s.durability.chunks_below_three_copies == 0
                && s.durability.repair_queue == 0
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "repair did not finish: {:#?}",
                s.durability
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(
            keys_listed(&c, "big").await,
            expected,
            "listing after the repair"
        );
        for (i, body) in bodies.iter().enumerate() {
            assert!(
                c.get("big", &format!("obj-{i:02}")).await == *body,
                "obj-{i:02}"
            );
        }
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_layout_shows_epochs_and_the_end_of_a_transition() {
    bounded(Duration::from_secs(120), async {
        let mut c = TestCluster::start(3).await;
        let first = layout(&c).await;
        assert!(first.epoch >= 1);
        assert_eq!(first.versions.len(), 1);
        assert_eq!(first.versions[0].members.len(), 3);
        assert!(first.transitions.is_empty());
        c.create_bucket("during").await;
        c.embedded.add_storage().await.unwrap();
        c.embedded.add_storage().await.unwrap();
        c.wait_live_storage(5).await;
        // Writes and reads go on while the layout moves.
        for i in 0..20u64 {
            let body = data(1000, i);
            c.put("during", &format!("k{i}"), body.clone()).await;
            assert!(c.get("during", &format!("k{i}")).await == body);
        }
        let settled = wait_settled(&c, 5).await;
        assert!(settled.epoch > first.epoch);
        assert!(settled.versions[0].number > first.versions[0].number);
        assert_eq!(settled.readable, settled.versions[0].number);
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_transitions_settle_on_the_newest_layout() {
    bounded(Duration::from_secs(180), async {
        let mut c = TestCluster::start(3).await;
        c.create_bucket("overlap").await;
        let mut bodies = Vec::new();
        for i in 0..30u64 {
            let body = data(2000 + i as usize, 900 + i);
            c.put("overlap", &format!("k{i:02}"), body.clone()).await;
            bodies.push(body);
        }
        // 3 -> 5, and 5 -> 7 before the first transition has ended.
        let first = layout(&c).await;
        c.embedded.add_storage().await.unwrap();
        c.embedded.add_storage().await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let l = layout(&c).await;
            if l.epoch > first.epoch && l.versions.len() > 1 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no second version: {l:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        c.embedded.add_storage().await.unwrap();
        c.embedded.add_storage().await.unwrap();
        c.wait_live_storage(7).await;
        // Reads and writes go on meanwhile.
        for i in 30..40u64 {
            let body = data(2000 + i as usize, 900 + i);
            c.put("overlap", &format!("k{i:02}"), body.clone()).await;
            bodies.push(body);
        }
        let settled = wait_settled(&c, 7).await;
        assert_eq!(settled.readable, settled.versions[0].number);
        let expected: Vec<String> = (0..40).map(|i| format!("k{i:02}")).collect();
        assert_eq!(keys_listed(&c, "overlap").await, expected);
        for (i, body) in bodies.iter().enumerate() {
            assert!(
                c.get("overlap", &format!("k{i:02}")).await == *body,
                "k{i:02}"
            );
        }
        c.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_racing_creates_wins_while_the_layout_changes() {
    bounded(Duration::from_secs(180), async {
        let mut c = TestCluster::start(3).await;
        c.create_bucket("races").await;
        let before = layout(&c).await;
        c.embedded.add_storage().await.unwrap();
        c.embedded.add_storage().await.unwrap();
        // Rounds of four racing creates until the layout has moved on and
        // settled (epochs change under them): at most 90 s, 1000 rounds.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        let mut rounds = 0;
        let mut settled_rounds = 0;
        while rounds < 1000 && settled_rounds < 5 && tokio::time::Instant::now() < deadline {
            let key = format!("race/{rounds}");
            let racers = (0..4u64).map(|n| {
                let client = c.client.clone();
                let key = key.clone();
                tokio::spawn(async move {
                    let body = data(3000, rounds * 10 + n);
                    let result = client
                        .put_object()
                        .bucket("races")
                        .key(&key)
                        .if_none_match("*")
                        .body(body.clone().into())
                        .send()
                        .await;
                    (body, result)
                })
            });
            let outcomes = futures::future::join_all(racers).await;
            let mut winners = Vec::new();
            let mut unsure = 0;
            for outcome in outcomes {
                match outcome.unwrap() {
                    (body, Ok(_)) => winners.push(body),
                    (_, Err(e)) if error_status(&e) == 412 => {}
                    (_, Err(e)) => {
                        assert_eq!(error_status(&e), 503, "{e:?}");
                        unsure += 1;
                    }
                }
            }
            assert!(
                winners.len() <= 1,
                "round {rounds}: {} creates won",
                winners.len()
            );
            if unsure == 0 {
                assert_eq!(winners.len(), 1, "round {rounds}: nobody won");
            }
            if let Some(winner) = winners.first() {
                assert!(
                    c.get("races", &key).await == *winner,
                    "round {rounds}: not the winner's body"
                );
            }
            let l = layout(&c).await;
            if l.epoch > before.epoch && l.transitions.is_empty() && l.versions.len() == 1 {
                settled_rounds += 1;
            }
            rounds += 1;
        }
        assert!(
            settled_rounds >= 5,
            "the layout did not settle within {rounds} rounds"
        );
        c.stop().await;
    })
    .await;
}
