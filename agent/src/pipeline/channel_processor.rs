//! Flume's `ChannelProcessor`: interceptors, then the selector, then one put transaction per
//! channel.
//!
//! Unlike Flume, which commits required channels one after another (so a failure on the second
//! leaves the batch committed in the first and duplicated on retry), sluice first reserves room
//! in every required channel and commits only when all reservations succeeded: a required
//! channel that is full rolls the batch back everywhere. Optional channels are attempted after
//! the required commit; their failures are counted and logged, never returned.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{ChannelSelector, InterceptorChain, InterceptorError, SelectorError};
use crate::channels::{ChannelError, ChannelRef, PutTransaction};
use crate::event::Event;
use crate::metrics::SourceCounters;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Interceptor(#[from] InterceptorError),
    #[error(transparent)]
    Selector(#[from] SelectorError),
    #[error(transparent)]
    Channel(#[from] ChannelError),
}

pub struct ChannelProcessor {
    source: String,
    interceptors: InterceptorChain,
    selector: Box<dyn ChannelSelector>,
    channels: Vec<ChannelRef>,
    counters: Arc<SourceCounters>,
}

impl ChannelProcessor {
    pub fn new(
        source: &str,
        interceptors: InterceptorChain,
        selector: Box<dyn ChannelSelector>,
        channels: Vec<ChannelRef>,
        counters: Arc<SourceCounters>,
    ) -> Self {
        Self {
            source: source.to_string(),
            interceptors,
            selector,
            channels,
            counters,
        }
    }

    pub fn counters(&self) -> &Arc<SourceCounters> {
        &self.counters
    }

    pub fn source_name(&self) -> &str {
        &self.source
    }

    /// Delivers one batch; `Ok` means every required channel committed it.
    pub fn process_batch(&self, events: Vec<Event>) -> Result<(), ProcessError> {
        let n = events.len() as u64;
        if n == 0 {
            return Ok(());
        }
        let c = &self.counters;
        c.event_received.fetch_add(n, Ordering::Relaxed);
        c.append_batch_received.fetch_add(1, Ordering::Relaxed);
        let result = self.deliver(events);
        match &result {
            Ok(()) => {
                c.event_accepted.fetch_add(n, Ordering::Relaxed);
                c.append_batch_accepted.fetch_add(1, Ordering::Relaxed);
            }
            Err(ProcessError::Channel(_)) => {
                c.channel_write_fail.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                c.generic_processing_fail.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    fn deliver(&self, events: Vec<Event>) -> Result<(), ProcessError> {
        let before = events.len();
        let events = if self.interceptors.is_empty() {
            events
        } else {
            self.interceptors.intercept(events)?
        };
        let dropped = before.saturating_sub(events.len());
        if dropped > 0 {
            self.counters
                .interceptor_dropped
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
        if events.is_empty() {
            return Ok(());
        }
        let routed = self.selector.route(events)?;

        let mut prepared = Vec::with_capacity(self.channels.len());
        for (ch, batch) in self.channels.iter().zip(routed.required) {
            if batch.is_empty() {
                continue;
            }
            let mut tx = PutTransaction::with_events(ch.as_ref(), batch)?;
            tx.prepare()?;
            prepared.push(tx);
        }
        for tx in prepared {
            tx.commit()?;
        }

        for (ch, batch) in self.channels.iter().zip(routed.optional) {
            if batch.is_empty() {
                continue;
            }
            let result = PutTransaction::with_events(ch.as_ref(), batch).and_then(|t| t.commit());
            if let Err(e) = result {
                self.counters
                    .optional_channel_write_fail
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(source = %self.source, error = %e, "Optional channel put failed; ignored.");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::channels::memory::{MemoryChannel, MemoryChannelConfig};
    use crate::channels::{Channel, TakeTransaction};
    use crate::pipeline::InterceptorChain;

    fn mem(name: &str, capacity: usize) -> Arc<MemoryChannel> {
        Arc::new(MemoryChannel::new(
            name,
            MemoryChannelConfig {
                capacity,
                transaction_capacity: 100,
                byte_capacity: u64::MAX,
                keep_alive: Duration::from_millis(10),
            },
        ))
    }

    /// `optional`: indices of the channels that are optional.
    fn processor(channels: &[Arc<MemoryChannel>], optional: &[usize]) -> ChannelProcessor {
        let sel = Box::new(crate::pipeline::selector::ToAll {
            channels: channels.len(),
            optional: optional.to_vec(),
        });
        let refs: Vec<ChannelRef> = channels.iter().map(|c| c.clone() as ChannelRef).collect();
        ChannelProcessor::new(
            "r1",
            InterceptorChain::default(),
            sel,
            refs,
            SourceCounters::new(),
        )
    }

    fn batch(n: usize) -> Vec<Event> {
        (0..n).map(|i| Event::new(i.to_string())).collect()
    }

    #[test]
    fn required_failure_rolls_back_every_channel() {
        let (c1, c2) = (mem("c1", 10), mem("c2", 3));
        let p = processor(&[c1.clone(), c2.clone()], &[]);
        let r = p.process_batch(batch(5));
        assert!(
            matches!(r, Err(ProcessError::Channel(ChannelError::Full { .. }))),
            "{r:?}"
        );
        assert_eq!(c1.size(), 0, "nothing committed to c1 when c2 was full");
        assert_eq!(c2.size(), 0);
        assert_eq!(p.counters().channel_write_fail.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn optional_failure_is_counted_and_ignored() -> Result<(), ProcessError> {
        let (c1, c2) = (mem("c1", 10), mem("c2", 3));
        let p = processor(&[c1.clone(), c2.clone()], &[1]);
        p.process_batch(batch(5))?;
        assert_eq!(c1.size(), 5);
        assert_eq!(c2.size(), 0);
        assert_eq!(
            p.counters()
                .optional_channel_write_fail
                .load(Ordering::Relaxed),
            1
        );
        let t = TakeTransaction::begin(c1.as_ref(), 10, Duration::ZERO)?;
        assert_eq!(t.len(), 5);
        Ok(())
    }
}
