//! Anti-entropy: a storage node hands every metadata record it holds to the
//! replicas that should hold it under the current layout. It runs when the
//! layout changes (a node joined, or moved) and at a slow interval anyway,
//! so records written while a replica was down or before a node joined end
//! up on all three replicas of their partition.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::client::NodeClient;
use crate::meta::MetaStore;
use crate::placement::{LayoutEntry, META_REPLICAS, partition_of, replicas, stable_hash};
use crate::wire::{Record, Table};

/// How often the layout is checked for changes.
const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// A full push even without a layout change: repairs replicas that missed
/// writes while they were down.
const FULL_SYNC_INTERVAL: Duration = Duration::from_secs(600);

/// Records read and pushed per round trip.
const SYNC_BATCH: usize = 1000;

/// The partitioned tables (the layout table is written to every node).
const SYNCED_TABLES: [Table; 5] = [
    Table::Buckets,
    Table::Objects,
    Table::Uploads,
    Table::Parts,
    Table::Keys,
];

pub(crate) async fn run(
    node_id: String,
    meta: Arc<MetaStore>,
    client: NodeClient,
    mut stop: watch::Receiver<bool>,
) {
    let mut synced: Option<u64> = None;
    let mut last_full = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECK_INTERVAL) => {}
            _ = stop.changed() => return,
        }
        let layout = match read_layout(&meta).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "anti-entropy: cannot read the layout");
                continue;
            }
        };
        if layout.is_empty() {
            continue;
        }
        let fingerprint = fingerprint(&layout);
        let due = last_full.elapsed() >= FULL_SYNC_INTERVAL;
        if synced == Some(fingerprint) && !due {
            continue;
        }
        match push_all(&node_id, &meta, &client, &layout, &mut stop).await {
            Ok(pushed) => {
                tracing::info!(
                    records = pushed,
                    nodes = layout.len(),
                    "anti-entropy pass done"
                );
                synced = Some(fingerprint);
                last_full = tokio::time::Instant::now();
            }
            Err(e) => tracing::warn!(error = %e, "anti-entropy pass incomplete; retrying"),
        }
    }
}

async fn read_layout(meta: &Arc<MetaStore>) -> anyhow::Result<Vec<LayoutEntry>> {
    let meta = meta.clone();
    let records =
        tokio::task::spawn_blocking(move || meta.scan(Table::Layout, &[], &[], usize::MAX))
            .await??;
    Ok(records
        .iter()
        .filter_map(|r| r.value.as_deref())
        .filter_map(|v| rmp_serde::from_slice::<LayoutEntry>(v).ok())
        .collect())
}

fn fingerprint(layout: &[LayoutEntry]) -> u64 {
    let mut parts: Vec<String> = layout
        .iter()
        .map(|e| format!("{}|{}|{}|{:?}", e.id, e.zone, e.http_addr, e.state))
        .collect();
    parts.sort();
    let joined = parts.join(";");
    stable_hash(&[joined.as_bytes()])
}

/// Pushes every partitioned record to the other replicas of its partition.
async fn push_all(
    node_id: &str,
    meta: &Arc<MetaStore>,
    client: &NodeClient,
    layout: &[LayoutEntry],
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<usize> {
    let by_id: HashMap<&str, &LayoutEntry> = layout.iter().map(|e| (e.id.as_str(), e)).collect();
    let mut owners: HashMap<u16, Vec<String>> = HashMap::new();
    let mut pushed = 0;
    let mut failures = 0;
    for table in SYNCED_TABLES {
        let mut start: Vec<u8> = Vec::new();
        loop {
            if *stop.borrow() {
                anyhow::bail!("stopping");
            }
            let batch = {
                let meta = meta.clone();
                let from = start.clone();
                tokio::task::spawn_blocking(move || meta.scan(table, &from, &[], SYNC_BATCH))
                    .await??
            };
            let Some(last) = batch.last() else { break };
            start = [last.key.as_slice(), &[0]].concat();
            let full = batch.len() == SYNC_BATCH;

            // Records of this batch by destination node.
            let mut outgoing: BTreeMap<String, Vec<Record>> = BTreeMap::new();
            for record in batch {
                let Some(partition) = partition_of(&record.key) else {
                    continue;
                };
                let nodes = owners
                    .entry(partition)
                    .or_insert_with(|| replicas(partition, layout, META_REPLICAS));
                for node in nodes.iter().filter(|n| n.as_str() != node_id) {
                    outgoing
                        .entry(node.clone())
                        .or_default()
                        .push(record.clone());
                }
            }
            for (node, records) in outgoing {
                let Some(entry) = by_id.get(node.as_str()) else {
                    continue;
                };
                match client.meta_put(entry.http_addr, table, &records).await {
                    Ok(()) => pushed += records.len(),
                    Err(e) => {
                        failures += 1;
                        tracing::debug!(%node, error = %e, "anti-entropy push failed");
                    }
                }
            }
            if !full {
                break;
            }
        }
    }
    if failures > 0 {
        anyhow::bail!("{failures} pushes failed");
    }
    Ok(pushed)
}
