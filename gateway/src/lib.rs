//! The Flexdrive S3 gateway: an s3s service that authenticates clients,
//! keeps bucket and object metadata in the storage nodes' replicated tables,
//! and streams object data as chunks to and from three storage nodes each.
//! It holds no durable state of its own; run as many as you like.
//!
//! Three rooms:
//!
//! - [`s3`](crate::s3) (private) and the modules beside it (`server`,
//!   `acl`, `policy`, `checksum`, `keys`, `admin`): the S3 front, one file
//!   per operation family, and the admin API;
//! - [`store`]: the object model over the replicated tables: records and
//!   their keys, quorum reads and writes, the cluster's layout, chunk
//!   placement and streaming, the hybrid logical clock;
//! - [`workers`]: the background work that runs beside every storage node
//!   (lifecycle, repair, garbage collection, healing).

pub mod acl;
pub mod admin;
mod cache;
pub mod checksum;
mod health;
mod keys;
pub mod limits;
pub mod metrics;
pub mod policy;
mod reply;
mod s3;
mod server;
pub mod store;
pub mod workers;

pub use server::{GatewayConfig, RunningGateway, start};
pub use telemetry::ConnectionLimits;
