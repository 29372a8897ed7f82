//! `null`: discards every event (for benchmarks and tests).

use super::{Sink, SinkError};
use crate::config::{ConfigError, Props};
use crate::event::Event;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NullConfig {
    /// `batchSize` (default 100).
    pub batch_size: usize,
}

impl NullConfig {
    pub fn from_props(p: &Props) -> Result<Self, ConfigError> {
        Ok(Self {
            batch_size: super::batch_size(p, "batchSize")?,
        })
    }
}

pub struct NullSink;

impl Sink for NullSink {
    fn deliver(&mut self, _events: &[Event]) -> Result<(), SinkError> {
        Ok(())
    }
}
