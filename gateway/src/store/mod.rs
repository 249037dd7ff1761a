//! The object model over the replicated tables: what the S3 front and the
//! background workers both stand on.
//!
//! - [`model`]: the records (buckets, objects, uploads, parts, keys) and how
//!   their keys are laid out in partitions;
//! - [`table`]: quorum reads, writes, scans and conditional writes over the
//!   replicas of a partition;
//! - [`cluster`]: the layout (which storage nodes hold which partitions, in
//!   which layout version), liveness and load, chunk placement;
//! - [`data`]: object data as chunks, streamed to and from three nodes;
//! - [`erasure`]: storage classes, and the Reed–Solomon stripes of the
//!   erasure-coded ones;
//! - [`hlc`]: the hybrid logical clock every record is stamped with;
//! - [`lease`]: write leases, which keep the garbage collector away from
//!   the chunks of writes in progress.

pub mod cluster;
pub mod data;
pub mod erasure;
pub mod hlc;
pub mod lease;
pub mod model;
pub mod table;
