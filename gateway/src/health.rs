//! The gateway's readiness: it sees enough live storage nodes to write three
//! copies, every metadata partition has a quorum of live replicas, and a
//! quorum read of the system partition answers.

use std::sync::Arc;

use chunkstore::Table;
use futures::future::BoxFuture;
use telemetry::{CachedCheck, Readiness};

use crate::limits::{READY_CACHE, SYSTEM_PARTITION};
use crate::store::cluster::Cluster;
use crate::store::model::bucket_key;
use crate::store::table::Tables;

pub(crate) struct GatewayReadiness {
    cluster: Arc<Cluster>,
    tables: Tables,
    /// A quorum read per probe would load the system partition's replicas
    /// with every kubelet and load balancer probe of every gateway.
    cache: CachedCheck,
}

impl GatewayReadiness {
    pub(crate) fn new(cluster: Arc<Cluster>, tables: Tables) -> GatewayReadiness {
        GatewayReadiness {
            cluster,
            tables,
            cache: CachedCheck::new(READY_CACHE),
        }
    }

    async fn probe(&self) -> Result<(), String> {
        if let Some(why) = self.cluster.cannot_serve() {
            return Err(why);
        }
        // No bucket has an empty name: this reads nothing but still asks a quorum.
        self.tables
            .get(Table::Buckets, SYSTEM_PARTITION, &bucket_key(""))
            .await
            .map(drop)
            .map_err(|e| format!("metadata quorum read failed: {}", e.message().unwrap_or("")))
    }
}

impl Readiness for GatewayReadiness {
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.cache.get(|| self.probe()))
    }
}
