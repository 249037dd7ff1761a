//! A storage node's readiness: its data dir takes a durable write, its
//! metadata store (redb) reads, and it has not been removed from the
//! layout.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use futures::future::BoxFuture;
use telemetry::{CachedCheck, Readiness};

use crate::layout_store::LayoutStore;
use crate::limits::{READY_CACHE, READY_PROBE_FILE};
use crate::meta::MetaStore;
use crate::wire::Table;

pub(crate) struct StorageReadiness {
    data_dir: PathBuf,
    /// Weak: an admin port must not keep redb open after the node stops.
    meta: Weak<MetaStore>,
    layout: Weak<LayoutStore>,
    node_id: String,
    cache: Arc<CachedCheck>,
}

impl StorageReadiness {
    pub(crate) fn new(
        data_dir: PathBuf,
        meta: Weak<MetaStore>,
        layout: Weak<LayoutStore>,
        node_id: String,
    ) -> StorageReadiness {
        StorageReadiness {
            data_dir,
            meta,
            layout,
            node_id,
            cache: Arc::new(CachedCheck::new(READY_CACHE)),
        }
    }
}

impl Readiness for StorageReadiness {
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.cache.get(|| async {
            if let Some(why) = self
                .layout
                .upgrade()
                .and_then(|layout| layout.removed(&self.node_id))
            {
                return Err(why);
            }
            let dir = self.data_dir.clone();
            let meta = self.meta.clone();
            tokio::task::spawn_blocking(move || probe(&dir, &meta))
                .await
                .unwrap_or_else(|e| Err(format!("readiness check failed: {e}")))
        }))
    }
}

fn probe(data_dir: &Path, meta: &Weak<MetaStore>) -> Result<(), String> {
    let path = data_dir.join(READY_PROBE_FILE);
    let not_writable =
        |e: std::io::Error| format!("data dir {} is not writable: {e}", data_dir.display());
    let mut file = std::fs::File::create(&path).map_err(not_writable)?;
    file.write_all(b"ok").map_err(not_writable)?;
    file.sync_all().map_err(not_writable)?;
    drop(file);
    std::fs::remove_file(&path).map_err(not_writable)?;
    let meta = meta
        .upgrade()
        .ok_or_else(|| "the storage node is stopped".to_string())?;
    meta.get(Table::Layout, b"")
        .map_err(|e| format!("metadata store (redb) cannot be read: {e:#}"))?;
    Ok(())
}
