//! `handover`: how fast a new storage node takes over its partitions.
//!
//! Starts four storage nodes in this process (real redb files in a temp
//! dir, real sockets on loopback), gives three of them a layout (epoch 1)
//! and writes N metadata records across every partition onto those
//! three, then decides epoch 2 with the fourth node added and times the
//! transition: until the new node has pulled every partition it now holds
//! from a quorum of the old replicas. Prints the records it holds then,
//! the time, and records per second.
//!
//! ```sh
//! cargo run --release -p conformance --bin handover -- --records 200000
//! ```

use std::time::{Duration, Instant};

use chunkstore::layout::{
    ALL_PARTITIONS, Committed, LayoutHistory, LayoutVersion, Placement, SyncTrackers,
};
use chunkstore::placement::{LayoutEntry, Member, NodeState};
use chunkstore::{NodeClient, Record, ReplicationConfig, StorageConfig, StorageNode, Table};
use clap::Parser;

const SECRET: &str = "handover-benchmark-cluster-secret";

#[derive(Parser)]
#[command(about = "Times the transfer of metadata partitions to a new storage node")]
struct Args {
    /// Records written before the new node joins.
    #[arg(long, default_value_t = 100_000)]
    records: usize,
    /// Bytes of each record's value (an object record with one version is a
    /// few hundred bytes).
    #[arg(long, default_value_t = 300)]
    value_bytes: usize,
    /// Longest wait for the transfer.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

fn member(node: &StorageNode) -> Member {
    Member {
        id: node.id().to_string(),
        zone: format!("zone-{}", node.id()),
    }
}

fn history(epoch: u64, versions: Vec<Vec<Member>>) -> LayoutHistory {
    LayoutHistory {
        committed: Committed {
            epoch,
            versions: versions
                .into_iter()
                .enumerate()
                .map(|(i, mut members)| {
                    members.sort();
                    LayoutVersion {
                        number: i as u64 + 1,
                        members,
                    }
                })
                .collect(),
            readable: 1,
            ..Committed::default()
        },
        synced: SyncTrackers::default(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut nodes = Vec::new();
    for i in 0..4 {
        let mut config = StorageConfig::new(
            dir.path().join(format!("node{i}")),
            "127.0.0.1:0".parse()?,
            SECRET,
        );
        config.replication = ReplicationConfig {
            check_interval: Duration::from_millis(100),
            ..ReplicationConfig::default()
        };
        nodes.push(StorageNode::start(config).await?);
    }
    let client = NodeClient::new(SECRET).sending_as("handover-benchmark");
    let registry: Vec<Record> = nodes
        .iter()
        .map(|n| {
            let entry = LayoutEntry {
                id: n.id().to_string(),
                zone: format!("zone-{}", n.id()),
                http_addr: n.http_addr(),
                state: NodeState::Active,
            };
            Ok(Record {
                key: entry.id.as_bytes().to_vec(),
                ts: 1,
                value: Some(rmp_serde::to_vec_named(&entry)?),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    for node in &nodes {
        client
            .meta_put(node.http_addr(), 0, Table::Layout, &registry)
            .await?;
    }
    let old: Vec<Member> = nodes[..3].iter().map(member).collect();
    let v1 = history(1, vec![old.clone()]);
    for node in &nodes {
        client.push_layout(node.http_addr(), &v1).await?;
    }

    // The records, on every replica of their partition, in batches.
    let placement = Placement::new(&v1.committed);
    let value = vec![b'v'; args.value_bytes];
    let started = Instant::now();
    let mut batches: std::collections::BTreeMap<String, Vec<Record>> = Default::default();
    for i in 0..args.records {
        let partition = (i % usize::from(ALL_PARTITIONS)) as u16;
        let key = [
            &partition.to_be_bytes()[..],
            format!("bench/{i:09}").as_bytes(),
        ]
        .concat();
        let record = Record {
            key,
            ts: 1 << 16,
            value: Some(value.clone()),
        };
        for id in placement.read_set(partition) {
            batches.entry(id.clone()).or_default().push(record.clone());
        }
        if (i + 1) % 2000 == 0 || i + 1 == args.records {
            for (id, records) in std::mem::take(&mut batches) {
                let node = nodes
                    .iter()
                    .find(|n| n.id() == id)
                    .expect("a node of the layout");
                client
                    .meta_put(node.http_addr(), 1, Table::Objects, &records)
                    .await?;
            }
        }
    }
    eprintln!(
        "handover: wrote {} records ({} B values) on 3 nodes in {:.1} s",
        args.records,
        args.value_bytes,
        started.elapsed().as_secs_f64()
    );

    // Epoch 2: the fourth node joins; time its pulls.
    let all: Vec<Member> = nodes.iter().map(member).collect();
    let v2 = history(2, vec![old, all]);
    let new_id = nodes[3].id().to_string();
    let placement = Placement::new(&v2.committed);
    let owed = placement
        .pulls_owed(&SyncTrackers::default(), &new_id)
        .len();
    let started = Instant::now();
    for node in &nodes {
        client.push_layout(node.http_addr(), &v2).await?;
    }
    let deadline = started + Duration::from_secs(args.timeout_secs);
    loop {
        let held = nodes[3].layout().history();
        if placement.pulls_owed(&held.synced, &new_id).is_empty() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the transfer did not finish in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    let meta = nodes[3].meta();
    let held = tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
        let mut count = 0;
        let mut start = Vec::new();
        loop {
            let (page, more) = meta.scan(Table::Objects, &start, &[], 10_000, usize::MAX)?;
            count += page.len();
            match page.last() {
                Some(last) if more => start = [last.key.as_slice(), &[0]].concat(),
                _ => return Ok(count),
            }
        }
    })
    .await??;
    println!(
        "handover: the new node pulled {owed} partitions and holds {held} records after {:.2} s: {:.0} records/s",
        took.as_secs_f64(),
        held as f64 / took.as_secs_f64()
    );
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}
