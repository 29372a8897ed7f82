//! The thread that drives one pollable source.

use std::sync::Arc;
use std::thread::JoinHandle;

use super::{PollConfig, PollStatus, PollableSource, SourceError};
use crate::channels::ChannelError;
use crate::channels::processor::{ChannelProcessor, ProcessError};
use crate::lifecycle::{Backoff, StopSignal};

pub struct SourceRunner {
    name: String,
    stop: StopSignal,
    thread: Option<JoinHandle<()>>,
}

impl SourceRunner {
    pub fn start(
        name: &str,
        mut source: Box<dyn PollableSource>,
        processor: Arc<ChannelProcessor>,
        poll: PollConfig,
    ) -> std::io::Result<Self> {
        let stop = StopSignal::new();
        let s = stop.clone();
        let n = name.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("source-{name}"))
            .spawn(move || {
                if let Err(e) = source.start() {
                    tracing::error!(source = %n, error = %e, "Source failed to start.");
                    return;
                }
                let mut backoff = Backoff::new(poll.backoff_increment, poll.max_backoff);
                while !s.is_stopped() {
                    match source.process(&processor) {
                        Ok(PollStatus::Ready) => backoff.reset(),
                        Ok(PollStatus::Backoff) => source.backoff(backoff.next_delay(), &s),
                        Err(e) => {
                            let delay = backoff.next_delay();
                            match &e {
                                SourceError::Process(ProcessError::Channel(
                                    ChannelError::Full { .. },
                                )) => tracing::warn!(
                                    source = %n, error = %e, retry_in = ?delay,
                                    "The channel is full; the source will retry the batch."
                                ),
                                _ => tracing::error!(
                                    source = %n, error = %e, retry_in = ?delay,
                                    "Source batch failed; it will be retried."
                                ),
                            }
                            source.backoff(delay, &s);
                        }
                    }
                }
                source.stop();
                processor.counters().stopped();
            })?;
        Ok(Self {
            name: name.to_string(),
            stop,
            thread: Some(thread),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Asks the source to stop after its current batch.
    pub fn signal_stop(&self) {
        self.stop.stop();
    }

    pub fn join(mut self) {
        self.signal_stop();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!(source = %self.name, "Source thread panicked.");
        }
    }
}

impl Drop for SourceRunner {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
