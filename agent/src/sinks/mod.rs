//! Sinks: deliver batches taken from a channel.
//!
//! Each sink implements [`crate::pipeline::Sink`]: it only delivers; the pipeline's
//! [`crate::pipeline::SinkSlot`] owns the take transaction around it.

pub(crate) mod avro;
pub(crate) mod file_roll;
pub(crate) mod hdfs;
pub(crate) mod http;
pub(crate) mod kafka;
pub(crate) mod logger;
pub(crate) mod null;
pub(crate) mod thrift;

use crate::config::{ConfigError, MAX_BATCH, Props};

/// `batchSize` of sinks that have one.
pub(crate) fn batch_size(p: &Props, key: &str) -> Result<usize, ConfigError> {
    p.int(key, 100, 1..=MAX_BATCH)
}
