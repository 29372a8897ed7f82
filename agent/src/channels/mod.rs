//! Channels and their transactions.
//!
//! Flume's `Transaction` contract (begin; put or take; commit or rollback; close) is expressed
//! as two guards. [`PutTransaction`] buffers events, [`PutTransaction::prepare`] reserves room
//! (waiting up to the channel's keep-alive), [`PutTransaction::commit`] makes them visible; a
//! guard dropped before commit releases its reservation and discards its events. A
//! [`TakeTransaction`] owns the events it took; commit removes them for good, and dropping it
//! uncommitted (or [`TakeTransaction::rollback`]) puts them back at the head, in order.
//! Splitting put into prepare + commit lets the channel processor reserve room in every required
//! channel before committing any, so a full channel rolls the batch back everywhere.

pub mod file;
pub mod kafka;
pub mod memory;
pub mod spillable;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::event::Event;
use crate::metrics::{ChannelCounters, MetricSet};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ChannelError {
    #[error(
        "channel `{channel}` is full ({detail}); no room after waiting keep-alive {keep_alive:?}"
    )]
    Full {
        channel: String,
        detail: String,
        keep_alive: Duration,
    },
    #[error(
        "channel `{channel}`: transaction of {requested} events exceeds transactionCapacity \
         {capacity}; raise transactionCapacity or lower the batch size"
    )]
    TransactionCapacity {
        channel: String,
        requested: usize,
        capacity: usize,
    },
    #[error("channel `{channel}` is closed")]
    Closed { channel: String },
    #[error("channel `{channel}`: {message}")]
    Io { channel: String, message: String },
    /// An I/O failure with its cause (shared: the error is cloned to every waiting commit).
    #[error("channel `{channel}`: {what}: {cause}")]
    Failed {
        channel: String,
        what: String,
        #[source]
        cause: std::sync::Arc<std::io::Error>,
    },
}

/// A parsed channel (`a1.channels.c1.*`): opening it gives the running channel. Lives here, not
/// in the pipeline, because the pipeline's glue is built on channels.
pub trait ChannelSpec: fmt::Debug + Send + Sync {
    fn open(
        &self,
        name: &str,
    ) -> Result<ChannelRef, Box<dyn std::error::Error + Send + Sync + 'static>>;
    /// The directories a durable channel holds (locks) while open.
    fn dirs(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

/// Room held in a channel between prepare and commit.
#[derive(Debug)]
pub struct Reservation {
    pub events: usize,
    pub bytes: u64,
    /// Which part of a composite channel (the spillable memory channel) holds the room; 0
    /// for the others.
    pub part: u8,
    /// How long the reservation waited for room (a full memory channel's `keep-alive`);
    /// zero when there was room at once. The source's backpressure counter adds it.
    pub waited: Duration,
}

/// Identifies a take for channels that log it (the file channel); 0 for memory.
#[derive(Debug, Default)]
pub struct TakeTicket(pub u64);

/// The backend half of a channel; users go through [`PutTransaction`] and
/// [`TakeTransaction`], which make the calls in a valid order.
pub trait Channel: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn transaction_capacity(&self) -> usize;
    fn counters(&self) -> &Arc<ChannelCounters>;
    /// What the metrics registry reads: the Flume counters, plus any extras of the channel.
    fn metric_set(&self) -> Arc<dyn MetricSet> {
        self.counters().clone()
    }
    /// Reserves room for `events` events of `bytes` body bytes, waiting up to keep-alive.
    fn reserve(&self, events: usize, bytes: u64) -> Result<Reservation, ChannelError>;
    /// Makes `events` (exactly the reserved ones) visible to takers.
    fn commit_put(&self, reservation: Reservation, events: Vec<Event>) -> Result<(), ChannelError>;
    fn release(&self, reservation: Reservation);
    /// Takes up to `max` events into `out`, waiting up to `wait` when the channel is empty.
    fn take(
        &self,
        max: usize,
        wait: Duration,
        out: &mut Vec<Event>,
    ) -> Result<TakeTicket, ChannelError>;
    fn commit_take(&self, ticket: &TakeTicket, events: &[Event]) -> Result<(), ChannelError>;
    /// Puts `events` back at the head of the channel, in order.
    fn rollback_take(&self, ticket: TakeTicket, events: Vec<Event>);
    /// Events currently stored (including those in uncommitted takes).
    fn size(&self) -> usize;
    /// Stops accepting puts and wakes waiters; stored events stay for a drain or a restart.
    fn close(&self);
    /// Whether stored events survive a restart (they stay on disk when the channel is closed).
    fn is_durable(&self) -> bool {
        false
    }
}

pub type ChannelRef = Arc<dyn Channel>;

/// A put transaction: `put` events, then `commit`. Dropping it uncommitted rolls back.
pub struct PutTransaction<'a> {
    channel: &'a dyn Channel,
    events: Vec<Event>,
    bytes: u64,
    reservation: Option<Reservation>,
}

impl<'a> PutTransaction<'a> {
    pub fn begin(channel: &'a dyn Channel) -> Self {
        Self {
            channel,
            events: Vec::new(),
            bytes: 0,
            reservation: None,
        }
    }

    /// Starts a transaction holding `events` already.
    pub fn with_events(channel: &'a dyn Channel, events: Vec<Event>) -> Result<Self, ChannelError> {
        let mut t = Self::begin(channel);
        t.check_room(events.len())?;
        t.bytes = events.iter().map(|e| e.body_len() as u64).sum();
        t.channel
            .counters()
            .event_put_attempt
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        t.events = events;
        Ok(t)
    }

    fn check_room(&self, more: usize) -> Result<(), ChannelError> {
        let cap = self.channel.transaction_capacity();
        if self.reservation.is_some() {
            return Err(ChannelError::Io {
                channel: self.channel.name().to_string(),
                message: "put after prepare; a prepared transaction is sealed".into(),
            });
        }
        if self.events.len() + more > cap {
            return Err(ChannelError::TransactionCapacity {
                channel: self.channel.name().to_string(),
                requested: self.events.len() + more,
                capacity: cap,
            });
        }
        Ok(())
    }

    /// One event more (tests build batches this way; sources hand whole batches over).
    #[cfg(test)]
    pub fn put(&mut self, event: Event) -> Result<(), ChannelError> {
        self.check_room(1)?;
        self.channel
            .counters()
            .event_put_attempt
            .fetch_add(1, Ordering::Relaxed);
        self.bytes += event.body_len() as u64;
        self.events.push(event);
        Ok(())
    }

    /// Reserves room for the buffered events (waits up to the channel's keep-alive).
    pub fn prepare(&mut self) -> Result<(), ChannelError> {
        if self.reservation.is_none() {
            self.reservation = Some(self.channel.reserve(self.events.len(), self.bytes)?);
        }
        Ok(())
    }

    /// How long [`Self::prepare`] waited for room (zero before it ran).
    pub fn waited(&self) -> Duration {
        self.reservation
            .as_ref()
            .map_or(Duration::ZERO, |r| r.waited)
    }

    pub fn commit(mut self) -> Result<(), ChannelError> {
        self.prepare()?;
        let n = self.events.len() as u64;
        let events = std::mem::take(&mut self.events);
        let Some(r) = self.reservation.take() else {
            return Ok(());
        };
        self.channel.commit_put(r, events)?;
        self.channel
            .counters()
            .event_put_success
            .fetch_add(n, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for PutTransaction<'_> {
    fn drop(&mut self) {
        if let Some(r) = self.reservation.take() {
            self.channel.release(r);
        }
    }
}

/// A take transaction: the events are owned by the guard until commit (gone) or rollback
/// (back at the head of the channel). Dropping it uncommitted rolls back.
pub struct TakeTransaction<'a> {
    channel: &'a dyn Channel,
    events: Vec<Event>,
    ticket: Option<TakeTicket>,
}

impl<'a> TakeTransaction<'a> {
    /// Takes up to `max` events (capped at the channel's transactionCapacity), waiting up to
    /// `wait` for the first one.
    pub fn begin(
        channel: &'a dyn Channel,
        max: usize,
        wait: Duration,
    ) -> Result<Self, ChannelError> {
        let max = max.min(channel.transaction_capacity());
        let mut events = Vec::with_capacity(max.min(4096));
        let ticket = channel.take(max, wait, &mut events)?;
        let c = channel.counters();
        let attempts = events.len() + usize::from(events.len() < max);
        c.event_take_attempt
            .fetch_add(attempts as u64, Ordering::Relaxed);
        Ok(Self {
            channel,
            events,
            ticket: Some(ticket),
        })
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn commit(mut self) -> Result<(), ChannelError> {
        let Some(ticket) = self.ticket.as_ref() else {
            return Ok(());
        };
        let n = self.events.len() as u64;
        // On error the ticket stays, so Drop puts the events back.
        self.channel.commit_take(ticket, &self.events)?;
        self.ticket = None;
        self.events.clear();
        self.channel
            .counters()
            .event_take_success
            .fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    pub fn rollback(self) {}
}

impl Drop for TakeTransaction<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            let events = std::mem::take(&mut self.events);
            self.channel.rollback_take(t, events);
        }
    }
}
