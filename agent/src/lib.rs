//! sluice: a log collection agent with Apache Flume's model and configuration format.
//!
//! Sources push batches through interceptors and a channel selector into channels inside
//! transactions; sink runners take batches from channels and commit only after delivery.
//! See `README.md` and `docs/` for the configuration reference.

// The modules form layers without an import cycle: docs/architecture.md, scripts/check-layers.
// Those `pub` are used by the binary (main.rs), the benches or the tests.
pub mod agent;
pub mod avro;
pub(crate) mod channels;
pub mod config;
pub mod event;
pub(crate) mod interceptors;
pub(crate) mod kafka;
pub(crate) mod lifecycle;
pub mod metrics;
pub mod pipeline;
pub(crate) mod processors;
pub(crate) mod registry;
pub(crate) mod selectors;
pub(crate) mod sinks;
pub(crate) mod sources;
pub mod tap;
pub(crate) mod tenants;
pub mod thrift;
pub mod topology;
pub mod urlencoded;
pub mod wasm;

pub use event::{Event, Headers};
