//! Sinks: deliver batches taken from a channel.
//!
//! Each sink implements [`crate::pipeline::Sink`]: it only delivers; the pipeline's
//! [`crate::pipeline::SinkSlot`] owns the take transaction around it.

pub mod avro;
pub mod file_roll;
pub mod hdfs;
pub mod kafka;
pub mod logger;
pub mod null;

use crate::config::{ConfigError, MAX_BATCH, Props};

/// `batchSize` of sinks that have one.
pub fn batch_size(p: &Props, key: &str) -> Result<usize, ConfigError> {
    p.int(key, 100, 1..=MAX_BATCH)
}
