//! How a storage node speaks to the other storage nodes at its layout
//! epoch: the partition primary's quorum reads and writes, the transfer of
//! partitions to new replicas, anti-entropy. A peer that is behind is sent
//! this node's layout and asked again; a peer that is ahead makes this node
//! fetch the newer layout (and the call fails: the caller acted at an old
//! epoch).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::client::{ClientError, NodeClient};
use crate::layout_store::{Fence, LayoutStore};
use crate::placement::NodeState;

/// How often a node asks every other node of the registry for its clock:
/// well within the time a process's clock counts (see `crate::clock`), so
/// that a node's estimate always includes its peers, not only whoever
/// happened to call it.
const CLOCK_PROBE_EVERY: Duration = Duration::from_secs(60);

/// The first probe, soon after start: the cluster's writes start too.
const FIRST_CLOCK_PROBE: Duration = Duration::from_secs(2);

/// A probe answer later than this is given up (it would be a poor sample).
const CLOCK_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub(crate) struct Peers {
    pub(crate) node_id: Arc<str>,
    pub(crate) layout: Arc<LayoutStore>,
    pub(crate) client: NodeClient,
}

impl Peers {
    pub(crate) fn addr(&self, node: &str) -> Option<SocketAddr> {
        self.layout.addr_of(node)
    }

    /// Runs `call` against peer `node` at `epoch`. On `behind`, gives the
    /// peer this node's layout and tries once more; on `stale`, takes the
    /// peer's newer layout and fails.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        node: &str,
        epoch: u64,
        call: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(NodeClient, SocketAddr, u64) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let Some(addr) = self.addr(node) else {
            return Err(ClientError::Unreachable(
                SocketAddr::from(([0, 0, 0, 0], 0)),
                format!("node {node} is not in the registry"),
            ));
        };
        match call(self.client.clone(), addr, epoch).await {
            Err(ClientError::Fenced(_, Fence::Behind { .. })) => {
                self.client
                    .push_layout(addr, &self.layout.history())
                    .await?;
                call(self.client.clone(), addr, epoch).await
            }
            Err(e @ ClientError::Fenced(_, Fence::Stale { .. })) => {
                self.catch_up(addr).await;
                Err(e)
            }
            other => other,
        }
    }

    /// Merges the layout `addr` holds into this node's.
    pub(crate) async fn catch_up(&self, addr: SocketAddr) {
        match self.client.layout(addr).await {
            Ok(snapshot) => {
                if let Err(e) = self.layout.merge_history(&snapshot.history) {
                    tracing::warn!(error = %e, "cannot store a newer layout");
                }
            }
            Err(e) => tracing::debug!(%addr, error = %e, "cannot fetch a newer layout"),
        }
    }
}

/// Asks every other node of the registry for its status now and then: the
/// answers carry the nodes' clocks, which the shared estimate learns.
pub(crate) async fn probe_clocks(peers: Peers, mut stop: watch::Receiver<bool>) {
    let mut wait = FIRST_CLOCK_PROBE;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        wait = CLOCK_PROBE_EVERY;
        let probes = peers
            .layout
            .registry()
            .into_values()
            .filter(|entry| entry.id != *peers.node_id && entry.state != NodeState::Removed)
            .map(|entry| {
                let client = peers.client.clone();
                async move {
                    // A node that does not answer gives no sample; nothing else to do.
                    let _ =
                        tokio::time::timeout(CLOCK_PROBE_TIMEOUT, client.status(entry.http_addr))
                            .await;
                }
            });
        futures::future::join_all(probes).await;
    }
}
