//! The Flexdrive storage node: chunk files on disk, metadata records in redb,
//! and the internal HTTP API (hyper, every request SigV4-signed with the
//! cluster secret) that serves both. It also defines that protocol's wire
//! types and the client gateways and other nodes use to speak it.

pub mod auth;
pub mod chunk;
pub mod client;
mod clock;
mod health;
pub mod layout;
pub mod layout_store;
pub mod limits;
pub mod merge;
pub mod meta;
pub mod metrics;
mod peers;
pub mod placement;
mod primary;
pub mod scrub;
pub mod server;
pub mod sync;
pub mod wire;

pub use chunk::QuarantinedChunk;
pub use client::{ClientError, NodeClient, ScanAnswer};
pub use clock::ClusterClock;
pub use layout_store::{Fence, LayoutStore};
pub use scrub::ScrubConfig;
pub use server::{StorageConfig, StorageNode, WorkerPort};
pub use sync::ReplicationConfig;
pub use wire::{
    CasOutcome, CasRequest, ChunkId, ChunkOwner, Condition, ConditionalOutcome, ConditionalWrite,
    DoomedChunk, Expect, GuardedWrite, LayoutSnapshot, ListedChunk, NodeStatus, Record, Table,
};
