//! Conformance tests: each starts a real cluster in this process (storage
//! nodes with their own data dirs, a gateway, SWIM on loopback) and drives it
//! with the AWS SDK for Rust or raw signed HTTP.

mod common;

mod access;
mod acl;
mod attributes;
mod buckets;
mod checksums;
mod conditional;
mod connections;
mod cors;
mod durability;
mod errors;
mod gc;
mod layout;
mod lifecycle;
mod listing;
mod metrics;
mod multipart;
mod objects;
mod part_copy;
mod policy;
mod repair;
mod tagging;
mod versioning;
