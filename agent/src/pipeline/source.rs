//! The source side of the pipeline: a [`PollableSource`] is driven by a
//! [`super::SourceRunner`] thread, Flume's `PollableSourceRunner`: `process` delivers at most
//! one batch and says whether to call again at once (`Ready`) or after a backoff (`Backoff`:
//! nothing to read, or the channel refused the batch). An [`EventDrivenSource`] runs its own
//! threads. A source acknowledges upstream (file position, offset, client reply) only after
//! [`ChannelProcessor::process_batch`] returned `Ok`.

use std::sync::Arc;
use std::time::Duration;

use super::{ChannelProcessor, ProcessError};
use crate::config::{ConfigError, MAX_MILLIS, Props};
use crate::lifecycle::StopSignal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollStatus {
    Ready,
    Backoff,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The source's own failure; `cause` is its error.
    #[error("source `{source_name}`: {cause}")]
    Failed {
        source_name: String,
        #[source]
        cause: super::Cause,
    },
    /// A failure without an underlying error.
    #[error("source `{source_name}`: {message}")]
    Other {
        source_name: String,
        message: String,
    },
}

pub trait PollableSource: Send {
    fn start(&mut self) -> Result<(), SourceError> {
        Ok(())
    }
    fn process(&mut self, processor: &ChannelProcessor) -> Result<PollStatus, SourceError>;
    /// The runner's backoff after `Backoff` or a failed batch: waits up to `delay`, returning
    /// early when `stop` is signalled. A source whose client must keep being served while it
    /// waits (the Kafka consumer's rebalances) overrides it and waits inside its client,
    /// returning as soon as there is something to do.
    fn backoff(&mut self, delay: Duration, stop: &StopSignal) {
        stop.sleep(delay);
    }
    fn stop(&mut self) {}
}

/// A source that runs its own threads (network servers, consumers) and calls
/// `process_batch` from them.
pub trait EventDrivenSource: Send {
    fn start(&mut self, processor: Arc<ChannelProcessor>) -> Result<(), SourceError>;
    /// Stops accepting input and returns once no batch is being processed.
    fn stop(&mut self);
}

/// `backoffSleepIncrement` / `maxBackoffSleep` of Flume's pollable sources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollConfig {
    /// `backoffSleepIncrement` in ms (default 1000).
    pub backoff_increment: Duration,
    /// `maxBackoffSleep` in ms (default 5000).
    pub max_backoff: Duration,
}

impl PollConfig {
    pub fn from_props(p: &Props) -> Result<Self, ConfigError> {
        Ok(Self {
            backoff_increment: p.millis("backoffSleepIncrement", 1000, 0..=MAX_MILLIS)?,
            max_backoff: p.millis("maxBackoffSleep", 5000, 0..=MAX_MILLIS)?,
        })
    }
}
