//! Metrics and health for every Flexdrive process.
//!
//! Each component (a storage node, a gateway, a membership view) makes its
//! metrics once, as a [`Bundle`]; the process registers the bundles it wants
//! in one `prometheus::Registry`, and its admin port serves that registry on
//! `GET /metrics` with `GET /health/live` and `GET /health/ready` beside it
//! ([`Ops`]), without a token. `flexdrive server` thus shows the metrics of
//! all its roles in one registry, storage node series labelled by `node`.
//!
//! ```
//! use telemetry::BundleBuilder;
//!
//! let mut b = BundleBuilder::new().with_label("node", "n1");
//! let queue = b.gauge("flexdrive_example_queue_length", "Items waiting.");
//! let bundle = b.build();
//! let registry = telemetry::prometheus::Registry::new();
//! bundle.register(&registry).unwrap();
//! queue.set(3);
//! assert!(telemetry::encode(&registry).contains("flexdrive_example_queue_length{node=\"n1\"} 3"));
//! ```

mod bundle;
mod connections;
mod health;
mod http;
mod members;

pub use bundle::{Bundle, BundleBuilder};
pub use connections::{BodyStalled, ConnectionCounts, ConnectionGate, ConnectionLimits, IdleBody};
pub use health::{CachedCheck, Readiness};
pub use http::{Answer, Ops, bind, encode, serve, serve_ops};
pub use members::{gauge_bytes, gossip_metrics, membership_metrics};
pub use prometheus;
