//! The sink side of the pipeline: a [`Sink`] only delivers; [`SinkSlot`] owns the take
//! transaction around it (Flume's sink `process()`): take up to `batchSize` events, deliver,
//! commit only when the destination accepted them, otherwise roll back so the batch is
//! retried. A [`super::SinkProcessor`] chooses which slot runs; the [`super::SinkRunner`]
//! thread drives the processor.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::channels::{ChannelError, ChannelRef, TakeTransaction};
use crate::event::Event;
use crate::metrics::SinkCounters;
use crate::tap;

/// A failure's cause, shared so errors stay cheap to clone.
pub type Cause = std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// The destination refused or failed the batch; `cause` is the sink's own error.
    #[error("sink `{sink}`: {cause}")]
    Failed {
        sink: String,
        #[source]
        cause: Cause,
    },
    /// A failure without an underlying error (a check of the sink's own).
    #[error("sink `{sink}`: {message}")]
    Delivery { sink: String, message: String },
    #[error("sink `{sink}`: {source}")]
    Channel { sink: String, source: ChannelError },
    #[error("sink group `{group}`: {message}")]
    Group { group: String, message: String },
}

/// What a sink run produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkStatus {
    /// A batch was delivered; call again.
    Ready,
    /// The channel was empty.
    Idle,
}

pub trait Sink: Send {
    fn start(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// Delivers the whole batch, or fails (the batch is then rolled back and retried).
    fn deliver(&mut self, events: &[Event]) -> Result<(), SinkError>;
    /// How many batches the sink can have in flight at once through [`Self::send`] and
    /// [`Self::finish`] (a sink whose acknowledgements come back asynchronously: Kafka).
    fn pipeline_depth(&self) -> usize {
        1
    }
    /// Starts delivering a batch. [`Self::finish`] with the returned ticket, called in the
    /// order of the sends, says whether all of it was delivered.
    fn send(&mut self, events: &[Event]) -> Result<u64, SinkError> {
        self.deliver(events).map(|()| 0)
    }
    /// Waits for the batch of `ticket`: `Ok` once every event of it was delivered.
    fn finish(&mut self, ticket: u64) -> Result<(), SinkError> {
        let _ = ticket;
        Ok(())
    }
    /// Called when the channel had nothing, so time-based work (rolls) still happens.
    fn idle(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    fn stop(&mut self) {}
}

/// A configured sink with its channel, batch size and counters.
pub struct SinkSlot {
    pub name: String,
    pub sink: Box<dyn Sink>,
    pub channel: ChannelRef,
    pub batch_size: usize,
    pub counters: Arc<SinkCounters>,
    started: bool,
}

/// At most this many batches per `process` of a sink with batches in flight.
const PIPELINE_ROUNDS: usize = 64;

/// How long a take waits for the first event of a batch when the channel is empty.
pub const TAKE_WAIT: Duration = Duration::from_millis(200);

impl SinkSlot {
    pub fn new(name: &str, sink: Box<dyn Sink>, channel: ChannelRef, batch_size: usize) -> Self {
        Self::with_counters(name, sink, channel, batch_size, SinkCounters::new())
    }

    /// For sinks that update connection counters themselves.
    pub fn with_counters(
        name: &str,
        sink: Box<dyn Sink>,
        channel: ChannelRef,
        batch_size: usize,
        counters: Arc<SinkCounters>,
    ) -> Self {
        Self {
            name: name.to_string(),
            sink,
            channel,
            batch_size,
            counters,
            started: false,
        }
    }

    /// Starts the sink on first use.
    pub fn ensure_started(&mut self) -> Result<(), SinkError> {
        if !self.started {
            if let Err(e) = self.sink.start() {
                self.counters
                    .connection_failed
                    .fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
            self.counters
                .connection_created
                .fetch_add(1, Ordering::Relaxed);
            self.started = true;
        }
        Ok(())
    }

    /// Delivers part of a batch whose take transaction a sink processor owns (the caller
    /// commits or rolls back), counting it like [`Self::process`] does.
    pub fn deliver_part(&mut self, events: &[Event]) -> Result<(), SinkError> {
        self.ensure_started()?;
        let n = events.len() as u64;
        let c = &self.counters;
        c.event_drain_attempt.fetch_add(n, Ordering::Relaxed);
        let started = Instant::now();
        if let Err(e) = self.sink.deliver(events) {
            c.event_write_fail.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        c.delivery_latency.record(started.elapsed());
        c.event_drain_success.fetch_add(n, Ordering::Relaxed);
        tap::publish(&self.name, tap::Point::Sink, events);
        Ok(())
    }

    /// One Flume `process()`: take, deliver, commit or roll back.
    pub fn process(&mut self, wait: Duration) -> Result<SinkStatus, SinkError> {
        self.ensure_started()?;
        let depth = self.sink.pipeline_depth();
        if depth > 1 {
            return self.process_pipelined(wait, depth);
        }
        let c = &self.counters;
        let tx =
            TakeTransaction::begin(self.channel.as_ref(), self.batch_size, wait).map_err(|e| {
                c.channel_read_fail.fetch_add(1, Ordering::Relaxed);
                SinkError::Channel {
                    sink: self.name.clone(),
                    source: e,
                }
            })?;
        let n = tx.len() as u64;
        if n == 0 {
            c.batch_empty.fetch_add(1, Ordering::Relaxed);
            self.sink.idle()?;
            return Ok(SinkStatus::Idle);
        }
        if tx.len() < self.batch_size {
            c.batch_underflow.fetch_add(1, Ordering::Relaxed);
        } else {
            c.batch_complete.fetch_add(1, Ordering::Relaxed);
        }
        c.event_drain_attempt.fetch_add(n, Ordering::Relaxed);
        let started = Instant::now();
        let delivered = self.sink.deliver(tx.events());
        self.settle(tx, delivered, started)?;
        Ok(SinkStatus::Ready)
    }

    /// Commits the take of a delivered batch, or rolls it back when delivery failed; a
    /// committed batch's latency (from `started`, when it was handed to the sink) is recorded.
    fn settle(
        &self,
        tx: TakeTransaction<'_>,
        delivered: Result<(), SinkError>,
        started: Instant,
    ) -> Result<(), SinkError> {
        let c = &self.counters;
        let n = tx.len() as u64;
        if let Err(e) = delivered {
            c.event_write_fail.fetch_add(1, Ordering::Relaxed);
            tx.rollback();
            return Err(e);
        }
        let tapped = tap::wants(&self.name).then(|| tx.events().to_vec());
        tx.commit().map_err(|e| SinkError::Channel {
            sink: self.name.clone(),
            source: e,
        })?;
        c.delivery_latency.record(started.elapsed());
        c.event_drain_success.fetch_add(n, Ordering::Relaxed);
        if let Some(events) = tapped {
            tap::publish(&self.name, tap::Point::Sink, &events);
        }
        Ok(())
    }

    /// [`Self::process`] for a sink with several batches in flight: each batch is its own take
    /// transaction, committed when the sink finished it (or rolled back), so the next batch is
    /// taken and sent while the previous ones wait for their acknowledgements. Ends after
    /// [`PIPELINE_ROUNDS`] batches, a short batch or an error, with nothing left in flight.
    fn process_pipelined(&mut self, wait: Duration, depth: usize) -> Result<SinkStatus, SinkError> {
        let channel = self.channel.clone();
        let c = self.counters.clone();
        let mut in_flight: VecDeque<(TakeTransaction<'_>, u64, Instant)> = VecDeque::new();
        let mut result = Ok(SinkStatus::Ready);
        let mut rounds = 0;
        while rounds < PIPELINE_ROUNDS {
            let first = rounds == 0;
            let tx = match TakeTransaction::begin(
                channel.as_ref(),
                self.batch_size,
                if first { wait } else { Duration::ZERO },
            ) {
                Ok(tx) => tx,
                Err(e) => {
                    c.channel_read_fail.fetch_add(1, Ordering::Relaxed);
                    result = Err(SinkError::Channel {
                        sink: self.name.clone(),
                        source: e,
                    });
                    break;
                }
            };
            rounds += 1;
            if tx.is_empty() {
                if first {
                    c.batch_empty.fetch_add(1, Ordering::Relaxed);
                    self.sink.idle()?;
                    return Ok(SinkStatus::Idle);
                }
                break;
            }
            let short = tx.len() < self.batch_size;
            if short {
                c.batch_underflow.fetch_add(1, Ordering::Relaxed);
            } else {
                c.batch_complete.fetch_add(1, Ordering::Relaxed);
            }
            c.event_drain_attempt
                .fetch_add(tx.len() as u64, Ordering::Relaxed);
            let started = Instant::now();
            match self.sink.send(tx.events()) {
                Ok(ticket) => in_flight.push_back((tx, ticket, started)),
                Err(e) => {
                    result = self.settle(tx, Err(e), started).map(|()| SinkStatus::Ready);
                    break;
                }
            }
            if in_flight.len() >= depth
                && let Some((tx, ticket, started)) = in_flight.pop_front()
                && let Err(e) = self.finish(tx, ticket, started)
            {
                result = Err(e);
                break;
            }
            if short {
                break;
            }
        }
        // Every batch still in flight ends here, each on its own: one that failed is rolled
        // back, the others are committed (rolling them back would only duplicate them).
        while let Some((tx, ticket, started)) = in_flight.pop_front() {
            if let Err(e) = self.finish(tx, ticket, started)
                && result.is_ok()
            {
                result = Err(e);
            }
        }
        result
    }

    /// Waits for one pipelined batch and commits or rolls back its take.
    fn finish(
        &mut self,
        tx: TakeTransaction<'_>,
        ticket: u64,
        started: Instant,
    ) -> Result<(), SinkError> {
        let delivered = self.sink.finish(ticket);
        self.settle(tx, delivered, started)
    }

    pub fn stop(&mut self) {
        if self.started {
            self.sink.stop();
            self.started = false;
        }
        self.counters.stopped();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::Mutex;

    use super::test_support::channel;
    use super::*;

    /// A sink with batches in flight whose `finish` of ticket `fail` fails once.
    struct PipeSink {
        fail: Option<u64>,
        next: u64,
        sent: Vec<(u64, Vec<String>)>,
        delivered: Arc<Mutex<Vec<String>>>,
    }

    impl Sink for PipeSink {
        fn deliver(&mut self, events: &[Event]) -> Result<(), SinkError> {
            let t = self.send(events)?;
            self.finish(t)
        }
        fn pipeline_depth(&self) -> usize {
            3
        }
        fn send(&mut self, events: &[Event]) -> Result<u64, SinkError> {
            self.next += 1;
            let bodies = events
                .iter()
                .map(|e| String::from_utf8_lossy(&e.body).into_owned())
                .collect();
            self.sent.push((self.next, bodies));
            Ok(self.next)
        }
        fn finish(&mut self, ticket: u64) -> Result<(), SinkError> {
            let i = self.sent.iter().position(|(t, _)| *t == ticket);
            let Some((_, bodies)) = i.map(|i| self.sent.remove(i)) else {
                return Err(SinkError::Delivery {
                    sink: "k1".into(),
                    message: format!("finish out of order: {ticket}"),
                });
            };
            if self.fail.take_if(|f| *f == ticket).is_some() {
                return Err(SinkError::Delivery {
                    sink: "k1".into(),
                    message: "batch 2 failed".into(),
                });
            }
            self.delivered.lock().extend(bodies);
            Ok(())
        }
    }

    #[test]
    fn pipelined_batches_commit_or_roll_back_each_on_its_own() {
        let ch = channel(10);
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let sink = PipeSink {
            fail: Some(2),
            next: 0,
            sent: Vec::new(),
            delivered: delivered.clone(),
        };
        let mut slot = SinkSlot::new("k1", Box::new(sink), ch.clone(), 2);
        // Batches 1..=5 of two events; the second fails after the fourth was sent.
        assert!(slot.process(Duration::ZERO).is_err());
        assert_eq!(*delivered.lock(), ["0", "1", "4", "5", "6", "7"]);
        // The failed batch is back at the head; the fifth was never taken.
        assert!(matches!(
            slot.process(Duration::ZERO),
            Ok(SinkStatus::Ready)
        ));
        let mut all = delivered.lock().clone();
        assert_eq!(all[6..], ["2", "3", "8", "9"]);
        all.sort_by_key(|s| s.parse::<u32>().unwrap_or(u32::MAX));
        let expected: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert_eq!(all, expected);
        assert_eq!(
            slot.counters.event_drain_success.load(Ordering::Relaxed),
            10
        );
        assert!(matches!(slot.process(Duration::ZERO), Ok(SinkStatus::Idle)));
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! An in-process sink that fails on command, for processor unit tests.
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use crate::channels::memory::{MemoryChannel, MemoryChannelConfig};
    use crate::channels::{ChannelRef, PutTransaction};
    use crate::event::Event;
    use crate::pipeline::{Sink, SinkError, SinkSlot};

    #[derive(Clone, Default)]
    pub struct Switch {
        pub failing: Arc<AtomicBool>,
        pub delivered: Arc<AtomicUsize>,
    }

    pub struct SwitchSink(pub String, pub Switch);

    impl Sink for SwitchSink {
        fn deliver(&mut self, events: &[Event]) -> Result<(), SinkError> {
            if self.1.failing.load(Ordering::SeqCst) {
                return Err(SinkError::Delivery {
                    sink: self.0.clone(),
                    message: "down".into(),
                });
            }
            self.1.delivered.fetch_add(events.len(), Ordering::SeqCst);
            Ok(())
        }
    }

    pub fn channel(events: usize) -> ChannelRef {
        let ch = Arc::new(MemoryChannel::new(
            "c1",
            MemoryChannelConfig {
                capacity: 10_000,
                transaction_capacity: 10_000,
                byte_capacity: u64::MAX,
                keep_alive: Duration::ZERO,
            },
        ));
        let mut tx = PutTransaction::begin(ch.as_ref());
        for i in 0..events {
            let _ = tx.put(Event::new(i.to_string()));
        }
        let _ = tx.commit();
        ch
    }

    pub fn slots(ch: &ChannelRef, n: usize, batch: usize) -> (Vec<SinkSlot>, Vec<Switch>) {
        let switches: Vec<Switch> = (0..n).map(|_| Switch::default()).collect();
        let slots = switches
            .iter()
            .enumerate()
            .map(|(i, sw)| {
                let name = format!("k{}", i + 1);
                SinkSlot::new(
                    &name,
                    Box::new(SwitchSink(name.clone(), sw.clone())),
                    ch.clone(),
                    batch,
                )
            })
            .collect();
        (slots, switches)
    }
}
