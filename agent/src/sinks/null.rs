//! `null`: discards every event (for benchmarks and tests).

use crate::config::{ConfigError, Props};
use crate::event::Event;
use crate::pipeline::{BoxError, Sink, SinkContext, SinkError, SinkSpec};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NullConfig {
    /// `batchSize` (default 100).
    pub(crate) batch_size: usize,
}

impl NullConfig {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
        Ok(Self {
            batch_size: super::batch_size(p, "batchSize")?,
        })
    }
}

pub(crate) struct NullSink;

impl Sink for NullSink {
    fn deliver(&mut self, _events: &[Event]) -> Result<(), SinkError> {
        Ok(())
    }
}

impl SinkSpec for NullConfig {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn build(&self, cx: &SinkContext) -> Result<Box<dyn Sink>, BoxError> {
        let _ = cx;
        Ok(Box::new(NullSink))
    }
}
