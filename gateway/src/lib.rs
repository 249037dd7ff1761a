//! The Flexdrive S3 gateway: an s3s service that authenticates clients,
//! keeps bucket and object metadata in the storage nodes' replicated tables,
//! and streams object data as chunks to and from three storage nodes each.
//! It holds no durable state of its own; run as many as you like.

pub mod acl;
pub mod admin;
pub mod background;
mod cache;
pub mod checksum;
pub mod cluster;
pub mod data;
pub mod gc;
mod heal;
mod health;
pub mod hlc;
mod keys;
pub mod lifecycle;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod repair;
mod reply;
mod s3;
mod server;
pub mod table;

pub use server::{GatewayConfig, RunningGateway, start};
