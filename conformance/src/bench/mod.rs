//! The load generator behind the `bench` binary: a lean signed S3 client
//! (`s3`), bounded PUT/GET/DELETE phases (`workload`), a fixed-memory latency
//! histogram (`histogram`) and the output formats (`report`). It talks to any
//! S3 endpoint over plain HTTP with path-style URLs.

pub mod histogram;
pub mod report;
pub mod s3;
pub mod workload;
