//! sluice: a log collection agent with Apache Flume's model and configuration format.
//!
//! Sources push batches through interceptors and a channel selector into channels inside
//! transactions; sink runners take batches from channels and commit only after delivery.
//! See `README.md` and `docs/` for the configuration reference.

// Layered bottom to top (docs/architecture.md); a module uses only those above it here.
pub mod agent;
pub mod avro;
pub mod channels;
pub mod config;
pub mod event;
pub mod interceptors;
pub mod kafka;
pub mod lifecycle;
pub mod metrics;
pub mod pipeline;
pub mod processors;
pub mod registry;
pub mod selectors;
pub mod sinks;
pub mod sources;
pub mod tenants;
pub mod topology;
pub mod wasm;

pub use event::{Event, Headers};
