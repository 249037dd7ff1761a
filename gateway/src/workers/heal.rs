//! Healing: a chunk file that the storage node's scrubber found corrupt
//! waits in quarantine; the worker beside that node (every node heals its
//! own, leader or not) asks the records its header names which nodes hold
//! the chunk, and copies a good copy back from one of them (verified on the
//! way and fsynced, as a repair's copy is). The record does not change: the
//! copy is back where it is listed. A quarantined chunk that no record lists
//! on this node is just dropped; one whose header is damaged too, or whose
//! records cannot be read, stays and is retried.

use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounter;

use crate::store::cluster::Cluster;
use crate::store::table::Tables;
use crate::workers::gc::listed_copies;

pub(crate) async fn run(
    tables: Tables,
    cluster: Arc<Cluster>,
    me: String,
    interval: Duration,
    healed: IntCounter,
) {
    loop {
        tokio::time::sleep(interval).await;
        heal(&tables, &cluster, &me, &healed).await;
    }
}

async fn heal(tables: &Tables, cluster: &Cluster, me: &str, healed: &IntCounter) {
    let Some(here) = cluster.addr_of(me) else {
        return;
    };
    let client = cluster.client();
    let quarantined = match client.quarantined(here).await {
        Ok(q) => q,
        Err(e) => {
            tracing::debug!(error = %e, "heal: cannot list quarantined chunks");
            return;
        }
    };
    for chunk in quarantined {
        let Some(owner) = chunk.owner else {
            continue;
        };
        let listed = match listed_copies(tables, &owner).await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::debug!(chunk = %chunk.id, error = %e, "heal: records unreadable; retried later");
                continue;
            }
        };
        if !listed.contains(&(chunk.id, me.to_string())) {
            // Not listed here (deleted meanwhile, or an orphan): nothing to restore.
            if let Err(e) = client.release_quarantined(here, chunk.id).await {
                tracing::debug!(chunk = %chunk.id, error = %e, "heal: cannot drop the quarantined file");
            }
            continue;
        }
        if listed.striped.contains(&chunk.id) {
            // Another node's file is another shard, not a copy of this
            // one: a lost shard is rebuilt by decoding (docs/erasure.md).
            continue;
        }
        let sources = listed
            .files
            .iter()
            .filter(|(id, node)| *id == chunk.id && node != me && cluster.is_live(node))
            .filter_map(|(_, node)| cluster.addr_of(node));
        let mut restored = false;
        for from in sources {
            match client.copy_chunk(from, here, chunk.id).await {
                Ok(()) => {
                    restored = true;
                    break;
                }
                Err(e) => {
                    tracing::debug!(chunk = %chunk.id, %from, error = %e, "heal: copy failed; trying another replica");
                }
            }
        }
        if restored {
            tracing::info!(chunk = %chunk.id, "heal: corrupt copy replaced from a good one");
            healed.inc();
            if let Err(e) = client.release_quarantined(here, chunk.id).await {
                tracing::debug!(chunk = %chunk.id, error = %e, "heal: cannot drop the quarantined file");
            }
        }
    }
}
