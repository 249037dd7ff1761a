//! How a storage node speaks to the other storage nodes at its layout
//! epoch: the partition primary's quorum reads and writes, the transfer of
//! partitions to new replicas, anti-entropy. A peer that is behind is sent
//! this node's layout and asked again; a peer that is ahead makes this node
//! fetch the newer layout (and the call fails: the caller acted at an old
//! epoch).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::client::{ClientError, NodeClient};
use crate::layout_store::{Fence, LayoutStore};

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
