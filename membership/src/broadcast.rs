//! Load reports as foca custom broadcasts.
//!
//! Each report is keyed by its node id and a version; a newer version of the
//! same node invalidates older ones still queued for dissemination, so only
//! the latest report travels.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use crate::identity::NodeIdentity;
use crate::limits::{MAX_ID_LEN, MAX_MEMBERS};
use crate::{LoadReport, NodeId};

/// Orders the reports of one node: the incarnation (start time of the
/// process) first, so a restarted node's reports beat those of its previous
/// run, then a sequence number bumped on every broadcast.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct LoadVersion {
    pub(crate) incarnation: u64,
    pub(crate) seq: u64,
}

/// Latest report per node, shared between the broadcast handler (owned by
/// foca, which has no accessor for it) and the agent that builds snapshots.
pub(crate) type LoadTable = Arc<Mutex<HashMap<NodeId, (LoadVersion, LoadReport)>>>;

/// Locks the table; a poisoned lock still holds consistent plain data.
pub(crate) fn lock(
    table: &LoadTable,
) -> MutexGuard<'_, HashMap<NodeId, (LoadVersion, LoadReport)>> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Serialize, Deserialize)]
struct LoadBroadcast {
    node: NodeId,
    version: LoadVersion,
    report: LoadReport,
}

/// Encodes a report for [`foca::Foca::add_broadcast`].
pub(crate) fn encode(
    node: &str,
    version: LoadVersion,
    report: &LoadReport,
) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(&LoadBroadcast {
        node: node.to_owned(),
        version,
        report: report.clone(),
    })
}

/// Identifies a queued broadcast so a newer one can replace it.
pub(crate) struct LoadKey {
    node: NodeId,
    version: LoadVersion,
}

impl foca::Invalidates for LoadKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.node == other.node && self.version > other.version
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum BroadcastError {
    #[error("undecodable load report: {0}")]
    Decode(#[from] postcard::Error),
    #[error("load report for a node id longer than {MAX_ID_LEN} bytes")]
    IdTooLong,
}

/// Receives load reports (ours included) into the shared table.
pub(crate) struct LoadHandler {
    table: LoadTable,
}

impl LoadHandler {
    pub(crate) fn new(table: LoadTable) -> Self {
        Self { table }
    }
}

impl foca::BroadcastHandler<NodeIdentity> for LoadHandler {
    type Key = LoadKey;
    type Error = BroadcastError;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&NodeIdentity>,
    ) -> Result<Option<LoadKey>, BroadcastError> {
        let msg: LoadBroadcast = postcard::from_bytes(data)?;
        if msg.node.len() > MAX_ID_LEN {
            return Err(BroadcastError::IdTooLong);
        }
        let mut table = lock(&self.table);
        let full = table.len() >= MAX_MEMBERS;
        match table.get_mut(&msg.node) {
            // Already seen (or older): returning None stops foca from
            // disseminating it again.
            Some((version, _)) if *version >= msg.version => return Ok(None),
            Some(entry) => *entry = (msg.version, msg.report),
            None if full => {
                tracing::debug!(node = %msg.node, "load table full, report dropped");
                return Ok(None);
            }
            None => {
                table.insert(msg.node.clone(), (msg.version, msg.report));
            }
        }
        Ok(Some(LoadKey {
            node: msg.node,
            version: msg.version,
        }))
    }
}

#[cfg(test)]
mod tests {
    use foca::{BroadcastHandler, Invalidates};

    use super::*;

    fn version(incarnation: u64, seq: u64) -> LoadVersion {
        LoadVersion { incarnation, seq }
    }

    fn report(used: u64) -> LoadReport {
        LoadReport {
            used_bytes: used,
            ..LoadReport::default()
        }
    }

    #[test]
    fn newer_report_replaces_older_and_stale_ones_are_not_spread() {
        let table = LoadTable::default();
        let mut handler = LoadHandler::new(table.clone());
        let v2 = encode("n1", version(1, 2), &report(2)).unwrap();
        let v1 = encode("n1", version(1, 1), &report(1)).unwrap();
        assert!(handler.receive_item(&v2, None).unwrap().is_some());
        assert!(handler.receive_item(&v1, None).unwrap().is_none());
        assert!(handler.receive_item(&v2, None).unwrap().is_none());
        assert_eq!(lock(&table)["n1"].1, report(2));
    }

    #[test]
    fn restarted_node_reports_win_over_its_previous_run() {
        let table = LoadTable::default();
        let mut handler = LoadHandler::new(table.clone());
        let old = encode("n1", version(1, 100), &report(1)).unwrap();
        let new = encode("n1", version(2, 1), &report(2)).unwrap();
        handler.receive_item(&old, None).unwrap();
        assert!(handler.receive_item(&new, None).unwrap().is_some());
        assert_eq!(lock(&table)["n1"].1, report(2));
    }

    #[test]
    fn keys_invalidate_only_older_reports_of_the_same_node() {
        let key = |node: &str, seq| LoadKey {
            node: node.into(),
            version: version(1, seq),
        };
        assert!(key("a", 2).invalidates(&key("a", 1)));
        assert!(!key("a", 1).invalidates(&key("a", 2)));
        assert!(!key("a", 2).invalidates(&key("b", 1)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut handler = LoadHandler::new(LoadTable::default());
        for data in [&[][..], &[0xff; 3][..], &[0x80; 64][..]] {
            assert!(handler.receive_item(data, None).is_err());
        }
    }
}
