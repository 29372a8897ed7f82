//! The thread that drives one pollable source.

use std::sync::Arc;
use std::thread::JoinHandle;

use super::{ChannelProcessor, PollConfig, PollStatus, PollableSource, ProcessError, SourceError};
use crate::channels::ChannelError;
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
    ) -> Result<Self, SourceError> {
        // Started here, not on the thread: a source that cannot start (bad credentials, a
        // missing directory) is an error its caller sees and can roll back.
        source.start()?;
        let stop = StopSignal::new();
        let s = stop.clone();
        let n = name.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("source-{name}"))
            .spawn(move || {
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
            })
            .map_err(|e| SourceError::Other {
                source_name: name.to_string(),
                message: format!("cannot start thread: {e}"),
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

    /// If the thread ended without being asked to (a panic), why; reported once.
    pub fn failure(&mut self) -> Option<String> {
        crate::lifecycle::thread_failure(&self.stop, &mut self.thread)
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::channels::ChannelRef;
    use crate::channels::memory::{MemoryChannel, MemoryChannelConfig};
    use crate::pipeline::InterceptorChain;

    use crate::metrics::SourceCounters;

    struct Panics;

    impl PollableSource for Panics {
        fn process(&mut self, _: &ChannelProcessor) -> Result<PollStatus, SourceError> {
            panic!("boom in the source");
        }
    }

    struct FailsToStart;

    impl PollableSource for FailsToStart {
        fn start(&mut self) -> Result<(), SourceError> {
            Err(SourceError::Other {
                source_name: "r1".into(),
                message: "no such directory".into(),
            })
        }
        fn process(&mut self, _: &ChannelProcessor) -> Result<PollStatus, SourceError> {
            Ok(PollStatus::Backoff)
        }
    }

    fn processor() -> Arc<ChannelProcessor> {
        let channel: ChannelRef = Arc::new(MemoryChannel::new(
            "c1",
            MemoryChannelConfig {
                capacity: 10,
                transaction_capacity: 10,
                byte_capacity: u64::MAX,
                keep_alive: Duration::ZERO,
            },
        ));
        let selector = Box::new(crate::pipeline::selector::ToAll {
            channels: 1,
            optional: Vec::new(),
        });
        Arc::new(ChannelProcessor::new(
            "r1",
            InterceptorChain::default(),
            selector,
            vec![channel],
            SourceCounters::new(),
        ))
    }

    #[test]
    fn a_panicking_source_is_reported_once_with_its_message() {
        let poll = PollConfig {
            backoff_increment: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        };
        let mut runner = match SourceRunner::start("r1", Box::new(Panics), processor(), poll) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let why = loop {
            if let Some(why) = runner.failure() {
                break why;
            }
            assert!(Instant::now() < deadline, "the panic was not reported");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(why.contains("boom in the source"), "{why}");
        assert_eq!(runner.failure(), None);
    }

    #[test]
    fn a_source_that_cannot_start_is_an_error_of_start() {
        let poll = PollConfig {
            backoff_increment: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        };
        match SourceRunner::start("r1", Box::new(FailsToStart), processor(), poll) {
            Ok(_) => panic!("started"),
            Err(e) => assert!(e.to_string().contains("no such directory"), "{e}"),
        }
    }
}
