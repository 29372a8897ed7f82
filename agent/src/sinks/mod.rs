//! Sinks: deliver batches taken from a channel.
//!
//! A [`Sink`] only delivers; [`SinkSlot`] owns the take transaction around it (Flume's sink
//! `process()`): take up to `batchSize` events, deliver, commit only when the destination
//! accepted them, otherwise roll back so the batch is retried. Sink groups (`group/`) choose
//! which slot runs; the [`runner::SinkRunner`] thread drives a group.

pub mod avro;
pub mod file_roll;
pub mod group;
pub mod hdfs;
pub mod kafka;
pub mod logger;
pub mod null;
pub mod runner;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::channels::{ChannelError, ChannelRef, TakeTransaction};
use crate::event::Event;
use crate::metrics::SinkCounters;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
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
        if let Err(e) = self.sink.deliver(events) {
            c.event_write_fail.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        c.event_drain_success.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// One Flume `process()`: take, deliver, commit or roll back.
    pub fn process(&mut self, wait: Duration) -> Result<SinkStatus, SinkError> {
        self.ensure_started()?;
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
        if let Err(e) = self.sink.deliver(tx.events()) {
            c.event_write_fail.fetch_add(1, Ordering::Relaxed);
            tx.rollback();
            return Err(e);
        }
        tx.commit().map_err(|e| SinkError::Channel {
            sink: self.name.clone(),
            source: e,
        })?;
        c.event_drain_success.fetch_add(n, Ordering::Relaxed);
        Ok(SinkStatus::Ready)
    }

    pub fn stop(&mut self) {
        if self.started {
            self.sink.stop();
            self.started = false;
        }
        self.counters.stopped();
    }
}

/// `batchSize` of sinks that have one.
pub fn batch_size(
    p: &crate::config::Props,
    key: &str,
) -> Result<usize, crate::config::ConfigError> {
    p.positive_usize(key, 100)
}
