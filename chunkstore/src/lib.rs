//! The Flexdrive storage node: chunk files on disk, metadata records in redb,
//! and the internal HTTP API (hyper, every request SigV4-signed with the
//! cluster secret) that serves both. It also defines that protocol's wire
//! types and the client gateways and other nodes use to speak it.

pub mod auth;
pub mod chunk;
pub mod client;
mod health;
pub mod limits;
pub mod merge;
pub mod meta;
pub mod metrics;
pub mod placement;
pub mod scrub;
pub mod server;
mod sync;
pub mod wire;

pub use chunk::QuarantinedChunk;
pub use client::{ClientError, NodeClient};
pub use scrub::ScrubConfig;
pub use server::{StorageConfig, StorageNode, WorkerPort};
pub use wire::{
    CasOutcome, CasRequest, ChunkId, ChunkOwner, Expect, ListedChunk, NodeStatus, Record, Table,
};
