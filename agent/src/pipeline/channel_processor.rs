//! Flume's `ChannelProcessor`: interceptors, then the selector, then one put transaction per
//! channel.
//!
//! Unlike Flume, which commits required channels one after another (so a failure on the second
//! leaves the batch committed in the first and duplicated on retry), sluice first reserves room
//! in every required channel and commits only when all reservations succeeded: a required
//! channel that is full rolls the batch back everywhere. Optional channels are attempted after
//! the required commit; their failures are counted and logged, never returned.
//!
//! A source's dead-letter channel (`deadLetter.channel`) is one more required channel of every
//! batch that set events aside ([`DeadLetters`]): its share is reserved and committed with the
//! others, so a full dead-letter channel rolls the batch back like any full required channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::{
    ChannelSelector, DeadLetters, InterceptorChain, InterceptorError, Routed, SelectorError,
};
use crate::channels::{ChannelError, ChannelRef, PutTransaction};
use crate::event::Event;
use crate::metrics::SourceCounters;
use crate::tap;

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
    /// `deadLetter.channel`: where the hooks' rejected, unrouted or faulted events go.
    dead_letter: Option<ChannelRef>,
    /// `deadLetter.unrouted`: a router's events for no channel go there too.
    dead_letter_unrouted: bool,
    counters: Arc<SourceCounters>,
    /// Since when (µs after `epoch`, 0 = not blocked) a required channel refused a batch
    /// and no batch has been committed since: the backpressure counter's running interval.
    blocked_since: AtomicU64,
    /// Up to when (µs after `epoch`) the running interval is already in the counter: each
    /// refused retry adds the time since, so a source that stays stuck keeps counting.
    blocked_mark: AtomicU64,
    epoch: Instant,
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
            dead_letter: None,
            dead_letter_unrouted: false,
            counters,
            blocked_since: AtomicU64::new(0),
            blocked_mark: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Sets the dead-letter channel (`deadLetter.channel`) and whether a router's events for
    /// no channel go there (`deadLetter.unrouted`).
    pub fn with_dead_letter(mut self, channel: Option<ChannelRef>, unrouted: bool) -> Self {
        self.dead_letter = channel;
        self.dead_letter_unrouted = unrouted;
        self
    }

    /// Microseconds since `epoch`, at least 1 (0 means "not blocked").
    fn now_micros(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Adds the running interval's time since its mark to the counter.
    fn account_blocked(&self) {
        let now = self.now_micros();
        let prev = self.blocked_mark.swap(now, Ordering::Relaxed);
        if prev != 0 {
            self.counters
                .channel_blocked_micros
                .fetch_add(now.saturating_sub(prev), Ordering::Relaxed);
        }
    }

    /// A required channel was full: the blocked interval starts at `since` unless one runs
    /// already, which then counts up to now.
    fn blocked(&self, since: u64) {
        let c = &self.counters;
        match self
            .blocked_since
            .compare_exchange(0, since, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => {
                self.blocked_mark.store(since, Ordering::Relaxed);
                c.channel_blocked_since
                    .store(crate::metrics::now_millis(), Ordering::Relaxed);
                self.account_blocked();
            }
            Err(_) => self.account_blocked(),
        }
    }

    /// A batch committed: a running blocked interval ends (counted up to now); otherwise the
    /// time its puts waited for room (`waited`, µs) counts.
    fn unblocked(&self, waited: u64) {
        let since = self.blocked_since.swap(0, Ordering::Relaxed);
        if since != 0 {
            self.account_blocked();
            self.blocked_mark.store(0, Ordering::Relaxed);
            self.counters
                .channel_blocked_since
                .store(0, Ordering::Relaxed);
        } else if waited > 0 {
            self.counters
                .channel_blocked_micros
                .fetch_add(waited, Ordering::Relaxed);
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

    /// A required channel's share, with its room reserved; a full channel starts (or
    /// continues) the blocked interval.
    fn reserve<'c>(
        &self,
        ch: &'c ChannelRef,
        batch: Vec<Event>,
    ) -> Result<PutTransaction<'c>, ChannelError> {
        let mut tx = PutTransaction::with_events(ch.as_ref(), batch)?;
        if let Err(e) = tx.prepare() {
            if let ChannelError::Full { keep_alive, .. } = &e {
                // It waited `keep_alive` for room before refusing.
                let waited = u64::try_from(keep_alive.as_micros()).unwrap_or(u64::MAX);
                self.blocked(self.now_micros().saturating_sub(waited).max(1));
            }
            return Err(e);
        }
        Ok(tx)
    }

    fn deliver(&self, events: Vec<Event>) -> Result<(), ProcessError> {
        let before = events.len();
        let mut dead = DeadLetters::new(self.dead_letter.is_some(), self.dead_letter_unrouted);
        let events = if self.interceptors.is_empty() {
            events
        } else {
            self.interceptors
                .intercept_or_set_aside(events, &mut dead)?
        };
        let dropped = before.saturating_sub(events.len() + dead.len());
        if dropped > 0 {
            self.counters
                .interceptor_dropped
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
        if events.is_empty() && dead.is_empty() {
            return Ok(());
        }
        let tapping = tap::active();
        if tapping {
            tap::publish(&self.source, tap::Point::Source, &events);
        }
        let routed = if events.is_empty() {
            Routed::new(self.channels.len())
        } else {
            self.selector.route_or_set_aside(events, &mut dead)?
        };
        // What each channel is given (index: required lists, then optional ones), copied
        // only while a tap that wants that channel has room.
        let tapped: Vec<(usize, Vec<Event>)> = if tapping {
            routed
                .required
                .iter()
                .chain(&routed.optional)
                .enumerate()
                .filter(|(i, b)| {
                    !b.is_empty()
                        && self
                            .channels
                            .get(i % self.channels.len().max(1))
                            .is_some_and(|ch| tap::wants(ch.name()))
                })
                .map(|(i, b)| (i, b.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let mut failed_optional = Vec::new();
        let mut tapped_dead = Vec::new();

        let mut prepared = Vec::with_capacity(self.channels.len());
        for (ch, batch) in self.channels.iter().zip(routed.required) {
            if batch.is_empty() {
                continue;
            }
            prepared.push(self.reserve(ch, batch)?);
        }
        let dead_letters = dead.len() as u64;
        if let (Some(ch), false) = (&self.dead_letter, dead.is_empty()) {
            let batch = dead.into_events();
            if tapping && tap::wants(ch.name()) {
                tapped_dead = batch.clone();
            }
            prepared.push(self.reserve(ch, batch)?);
        }
        // Reserving room is where a put waits for a full channel (a memory channel's
        // keep-alive): the channel says how long it waited.
        let waited = prepared
            .iter()
            .map(|tx| tx.waited())
            .max()
            .unwrap_or_default();
        for tx in prepared {
            tx.commit()?;
        }
        if dead_letters > 0 {
            self.counters
                .dead_lettered
                .fetch_add(dead_letters, Ordering::Relaxed);
        }
        self.unblocked(u64::try_from(waited.as_micros()).unwrap_or(u64::MAX));

        for (i, (ch, batch)) in self.channels.iter().zip(routed.optional).enumerate() {
            if batch.is_empty() {
                continue;
            }
            let result = PutTransaction::with_events(ch.as_ref(), batch).and_then(|t| t.commit());
            if let Err(e) = result {
                if tapping {
                    failed_optional.push(self.channels.len() + i);
                }
                self.counters
                    .optional_channel_write_fail
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(source = %self.source, error = %e, "Optional channel put failed; ignored.");
            }
        }
        if let (Some(ch), false) = (&self.dead_letter, tapped_dead.is_empty()) {
            tap::publish(ch.name(), tap::Point::Channel, &tapped_dead);
        }
        for (i, batch) in tapped {
            if failed_optional.contains(&i) {
                continue;
            }
            if let Some(ch) = self.channels.get(i % self.channels.len().max(1)) {
                tap::publish(ch.name(), tap::Point::Channel, &batch);
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
    fn time_blocked_on_a_full_channel_is_counted_while_it_lasts() -> Result<(), ProcessError> {
        let c1 = mem("c1", 3);
        let p = processor(std::slice::from_ref(&c1), &[]);
        p.process_batch(batch(3))?;
        let blocked = || p.counters().channel_blocked_micros.load(Ordering::Relaxed);
        assert_eq!(blocked(), 0, "a put that did not wait is not blocked");
        for _ in 0..3 {
            assert!(p.process_batch(batch(1)).is_err(), "c1 is full");
        }
        assert_ne!(
            p.counters().channel_blocked_since.load(Ordering::Relaxed),
            0,
            "blocked since"
        );
        std::thread::sleep(Duration::from_millis(30));
        let before = blocked();
        assert!(p.process_batch(batch(1)).is_err(), "c1 is still full");
        assert!(blocked() >= before + 30_000, "each refused retry counts");
        let t = TakeTransaction::begin(c1.as_ref(), 10, Duration::ZERO)?;
        t.commit()?;
        p.process_batch(batch(1))?;
        assert!(blocked() >= 30_000, "{} µs", blocked());
        let after = blocked();
        assert_eq!(
            p.counters().channel_blocked_since.load(Ordering::Relaxed),
            0
        );
        p.process_batch(batch(1))?;
        assert_eq!(blocked(), after, "not blocked any more");
        Ok(())
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
