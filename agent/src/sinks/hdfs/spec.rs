//! How the agent builds an HDFS sink from its parsed config.

use super::HdfsSink;
use super::config::HdfsConfig;
use crate::pipeline::{BoxError, Sink, SinkContext, SinkSpec};

impl SinkSpec for HdfsConfig {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn build(&self, cx: &SinkContext) -> Result<Box<dyn Sink>, BoxError> {
        Ok(Box::new(HdfsSink::new(
            &cx.cx.name,
            self.clone(),
            cx.counters.clone(),
        )))
    }
}
