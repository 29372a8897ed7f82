//! Flume's `SPILLABLEMEMORY` channel: events in memory while there is room, in an embedded
//! file channel (the overflow) beyond that.
//!
//! - A put goes to memory when `memoryCapacity` and `byteCapacity` leave room. When memory is
//!   full it waits up to `overflowTimeout` for room, then spills to the overflow; while the
//!   overflow holds events, a put that does not fit in memory spills at once. With
//!   `memoryCapacity = 0` every event goes to the overflow (a file channel); with
//!   `overflowCapacity = 0` it is a memory channel whose puts wait `overflowTimeout`.
//! - Order: a drain-order queue records, in commit order, how many consecutive events went to
//!   each part (Flume's `DrainOrderQueue`), and a take reads from the part at its head, at most
//!   that many. Events leave in the order they were committed (across both parts); a
//!   rolled-back take goes back to the head.
//! - A take transaction reads from one part: a take at a boundary between the parts returns
//!   the rest of the memory run (or overflow run) and the next take continues with the other.
//! - Durability: the overflow is a file channel (its keys: `checkpointDir`, `dataDirs`,
//!   `transactionCapacity`, `maxFileSize`, `fsyncPerTransaction`, ...), so what spilled
//!   survives a crash. **A kill -9 loses the memory part**, as in Flume. A graceful stop or a
//!   reload that replaces the channel moves the memory part into the overflow first, so it
//!   loses nothing (Flume loses the memory part then too).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::file::{FileChannel, FileChannelConfig};
use super::memory::{MemoryChannel, MemoryChannelConfig, default_byte_capacity};
use super::{Channel, ChannelError, ChannelRef, ChannelSpec, Reservation, TakeTicket};
use crate::config::{ConfigError, MAX_BATCH, MAX_SECONDS, Props};
use crate::event::Event;
use crate::metrics::{ChannelCounters, MetricSet, Value};

/// The most events either part may hold (Flume's keys are `int`s).
const MAX_CAPACITY: usize = 1_000_000_000;

/// `a1.channels.c1.*` for `type = SPILLABLEMEMORY`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SpillableConfig {
    /// The memory part (`memoryCapacity`, `byteCapacity`, `byteCapacityBufferPercentage`);
    /// `None` when `memoryCapacity = 0`.
    pub(crate) memory: Option<MemoryChannelConfig>,
    /// The overflow (`overflowCapacity` and the file channel keys); `None` when
    /// `overflowCapacity = 0`.
    pub(crate) overflow: Option<FileChannelConfig>,
    /// `overflowTimeout` (default 3 s): how long a put waits for room in memory before it
    /// spills.
    pub(crate) overflow_timeout: Duration,
    /// `transactionCapacity`.
    pub(crate) transaction_capacity: usize,
}

impl SpillableConfig {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
        let memory_capacity = p.int("memoryCapacity", 10_000usize, 0..=MAX_CAPACITY)?;
        let overflow_capacity = p.int("overflowCapacity", 100_000_000usize, 0..=MAX_CAPACITY)?;
        if memory_capacity == 0 && overflow_capacity == 0 {
            return Err(p.error(
                "overflowCapacity",
                "memoryCapacity and overflowCapacity are both 0: the channel could hold nothing",
            ));
        }
        let overflow_timeout = p.seconds("overflowTimeout", 3, 0..=MAX_SECONDS)?;
        // Flume turns byteCapacity into slots of avgEventSize bytes; sluice counts body bytes,
        // so these two are read for compatibility only.
        let _ = p.int("avgEventSize", 500u64, 1..=u64::MAX)?;
        let _ = p.int("overflowDeactivationThreshold", 5u64, 0..=100)?;
        let buffer_pct = p.int("byteCapacityBufferPercentage", 20u64, 0..=99)?;
        let byte_capacity = p.int("byteCapacity", default_byte_capacity(), 0..=u64::MAX)?;
        let byte_capacity = if byte_capacity == 0 {
            u64::MAX
        } else {
            byte_capacity / 100 * (100 - buffer_pct)
        };
        let (overflow, transaction_capacity) = if overflow_capacity > 0 {
            if p.get("capacity").is_some() {
                tracing::warn!(
                    "{}: {}capacity is ignored: the spillable memory channel's capacities are \
                     memoryCapacity and overflowCapacity.",
                    p.place("capacity"),
                    p.prefix()
                );
            }
            let mut f = FileChannelConfig::from_props(p)?;
            if f.transaction_capacity > overflow_capacity {
                return Err(p.error(
                    "transactionCapacity",
                    format!(
                        "{} exceeds overflowCapacity {overflow_capacity}",
                        f.transaction_capacity
                    ),
                ));
            }
            f.capacity = overflow_capacity;
            let t = f.transaction_capacity;
            (Some(f), t)
        } else {
            let t = p.int(
                "transactionCapacity",
                10_000.min(memory_capacity),
                1..=MAX_BATCH,
            )?;
            if t > memory_capacity {
                return Err(p.error(
                    "transactionCapacity",
                    format!(
                        "{t} exceeds memoryCapacity {memory_capacity} (and there is no overflow)"
                    ),
                ));
            }
            (None, t)
        };
        let memory = (memory_capacity > 0).then_some(MemoryChannelConfig {
            capacity: memory_capacity,
            transaction_capacity,
            byte_capacity,
            keep_alive: Duration::ZERO,
        });
        Ok(Self {
            memory,
            overflow,
            overflow_timeout,
            transaction_capacity,
        })
    }
}

impl ChannelSpec for SpillableConfig {
    fn open(
        &self,
        name: &str,
    ) -> Result<ChannelRef, Box<dyn std::error::Error + Send + Sync + 'static>> {
        Ok(Arc::new(SpillableChannel::open(name, self.clone())?))
    }

    fn dirs(&self) -> Vec<PathBuf> {
        self.overflow.as_ref().map(|f| f.dirs()).unwrap_or_default()
    }
}

/// Which part holds a run of events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Memory = 1,
    Overflow = 2,
}

impl Part {
    fn of(r: &Reservation) -> Option<Self> {
        match r.part {
            1 => Some(Part::Memory),
            2 => Some(Part::Overflow),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Order {
    /// Runs of consecutive events per part, oldest first.
    runs: VecDeque<(Part, usize)>,
    /// Open takes: ticket → the part and its own ticket.
    takes: HashMap<u64, (Part, TakeTicket)>,
    next_ticket: u64,
}

impl Order {
    fn push_back(&mut self, part: Part, n: usize) {
        match self.runs.back_mut() {
            Some((p, k)) if *p == part => *k += n,
            _ => self.runs.push_back((part, n)),
        }
    }

    fn push_front(&mut self, part: Part, n: usize) {
        match self.runs.front_mut() {
            Some((p, k)) if *p == part => *k += n,
            _ => self.runs.push_front((part, n)),
        }
    }

    /// Removes up to `n` events of `part` from the oldest runs of that part.
    fn remove(&mut self, part: Part, mut n: usize) {
        for run in self.runs.iter_mut().filter(|(p, _)| *p == part) {
            let k = run.1.min(n);
            run.1 -= k;
            n -= k;
            if n == 0 {
                break;
            }
        }
        self.runs.retain(|(_, k)| *k > 0);
    }
}

#[derive(Default)]
struct SpillStats {
    spilled: AtomicU64,
}

struct SpillableMetrics {
    counters: Arc<ChannelCounters>,
    stats: Arc<SpillStats>,
    memory: Option<Arc<ChannelCounters>>,
    overflow: Option<Arc<ChannelCounters>>,
}

impl MetricSet for SpillableMetrics {
    fn snapshot(&self) -> Vec<(&'static str, Value)> {
        let size = |c: &Option<Arc<ChannelCounters>>| {
            Value::Gauge(
                c.as_ref()
                    .map_or(0, |c| c.channel_size.load(Ordering::Relaxed)),
            )
        };
        let mut v = self.counters.snapshot();
        v.extend([
            ("MemoryChannelSize", size(&self.memory)),
            ("OverflowChannelSize", size(&self.overflow)),
            (
                "SpilledEventCount",
                Value::Counter(self.stats.spilled.load(Ordering::Relaxed)),
            ),
        ]);
        v
    }
}

pub(crate) struct SpillableChannel {
    name: String,
    memory: Option<MemoryChannel>,
    overflow: Option<FileChannel>,
    overflow_timeout: Duration,
    transaction_capacity: usize,
    order: Mutex<Order>,
    /// Signalled when a put commits (takers wait on it with `order`).
    not_empty: Condvar,
    counters: Arc<ChannelCounters>,
    stats: Arc<SpillStats>,
    closed: AtomicBool,
}

impl SpillableChannel {
    fn open(
        name: &str,
        config: SpillableConfig,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync + 'static>> {
        let overflow = match config.overflow.clone() {
            Some(f) => Some(FileChannel::open(name, f)?),
            None => None,
        };
        let capacity = config.memory.as_ref().map_or(0, |m| m.capacity)
            + config.overflow.as_ref().map_or(0, |f| f.capacity);
        let mut order = Order::default();
        // What the overflow replayed is older than anything put from now on.
        if let Some(f) = &overflow
            && f.size() > 0
        {
            order.push_back(Part::Overflow, f.size());
        }
        let ch = Self {
            name: name.to_string(),
            memory: config.memory.clone().map(|m| MemoryChannel::new(name, m)),
            overflow,
            overflow_timeout: config.overflow_timeout,
            transaction_capacity: config.transaction_capacity,
            order: Mutex::new(order),
            not_empty: Condvar::new(),
            counters: ChannelCounters::new(capacity as u64),
            stats: Arc::default(),
            closed: AtomicBool::new(false),
        };
        ch.publish_size();
        Ok(ch)
    }

    fn part(&self, part: Part) -> Option<&dyn Channel> {
        match part {
            Part::Memory => self.memory.as_ref().map(|m| m as &dyn Channel),
            Part::Overflow => self.overflow.as_ref().map(|f| f as &dyn Channel),
        }
    }

    fn publish_size(&self) {
        self.counters
            .channel_size
            .store(self.size() as u64, Ordering::Relaxed);
    }

    fn lost_part(&self) -> ChannelError {
        ChannelError::Io {
            channel: self.name.clone(),
            message: "transaction names a part this channel does not have".into(),
        }
    }

    /// Moves what the memory part holds into the overflow (on close), keeping the drain order
    /// consistent; stops at the first failure (what is left stays in memory).
    fn spill_memory(&self) {
        let (Some(m), Some(f)) = (&self.memory, &self.overflow) else {
            return;
        };
        let mut order = self.order.lock();
        let mut moved = 0usize;
        loop {
            let mut events = Vec::new();
            let ticket = match m.take(f.transaction_capacity(), Duration::ZERO, &mut events) {
                Ok(t) => t,
                Err(_) => break,
            };
            if events.is_empty() {
                break;
            }
            let n = events.len();
            let bytes = events.iter().map(|e| e.body_len() as u64).sum();
            let put = f
                .reserve(n, bytes)
                .and_then(|r| f.commit_put(r, events.clone()));
            match put {
                Ok(()) => {
                    let _ = m.commit_take(&ticket, &events);
                    moved += n;
                }
                Err(e) => {
                    m.rollback_take(ticket, events);
                    tracing::warn!(channel = %self.name, error = %e,
                        "Could not move the memory part into the overflow on close; \
                         the rest stays in memory.");
                    break;
                }
            }
        }
        if moved > 0 {
            order.remove(Part::Memory, moved);
            order.push_back(Part::Overflow, moved);
            tracing::info!(channel = %self.name, events = moved,
                "Moved the memory part into the overflow (file channel) on close.");
        }
    }
}

impl Channel for SpillableChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn transaction_capacity(&self) -> usize {
        self.transaction_capacity
    }

    fn counters(&self) -> &Arc<ChannelCounters> {
        &self.counters
    }

    fn metric_set(&self) -> Arc<dyn MetricSet> {
        Arc::new(SpillableMetrics {
            counters: self.counters.clone(),
            stats: self.stats.clone(),
            memory: self.memory.as_ref().map(|m| m.counters().clone()),
            overflow: self.overflow.as_ref().map(|f| f.counters().clone()),
        })
    }

    fn reserve(&self, events: usize, bytes: u64) -> Result<Reservation, ChannelError> {
        let deadline = Instant::now() + self.overflow_timeout;
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(ChannelError::Closed {
                    channel: self.name.clone(),
                });
            }
            let mut memory_full = None;
            if let Some(m) = &self.memory {
                match m.reserve(events, bytes) {
                    Ok(r) => {
                        return Ok(Reservation {
                            part: Part::Memory as u8,
                            waited: Duration::ZERO,
                            ..r
                        });
                    }
                    Err(e @ ChannelError::Full { .. }) => memory_full = Some(e),
                    Err(e) => return Err(e),
                }
            }
            let now = Instant::now();
            if let Some(f) = &self.overflow {
                let spilling = f.size() > 0;
                if self.memory.is_none() || spilling || now >= deadline {
                    let r = f.reserve(events, bytes)?;
                    return Ok(Reservation {
                        part: Part::Overflow as u8,
                        waited: Duration::ZERO,
                        ..r
                    });
                }
            } else if now >= deadline {
                return Err(match memory_full {
                    Some(ChannelError::Full { detail, .. }) => ChannelError::Full {
                        channel: self.name.clone(),
                        detail: format!(
                            "memory part: {detail}; no overflow (overflowCapacity = 0)"
                        ),
                        keep_alive: self.overflow_timeout,
                    },
                    Some(e) => e,
                    None => self.lost_part(),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn commit_put(&self, reservation: Reservation, events: Vec<Event>) -> Result<(), ChannelError> {
        let part = Part::of(&reservation).ok_or_else(|| self.lost_part())?;
        let store = self.part(part).ok_or_else(|| self.lost_part())?;
        let n = events.len();
        store.commit_put(
            Reservation {
                part: 0,
                waited: Duration::ZERO,
                ..reservation
            },
            events,
        )?;
        if part == Part::Overflow {
            self.stats.spilled.fetch_add(n as u64, Ordering::Relaxed);
        }
        self.order.lock().push_back(part, n);
        self.not_empty.notify_all();
        self.publish_size();
        Ok(())
    }

    fn release(&self, reservation: Reservation) {
        if let Some(store) = Part::of(&reservation).and_then(|p| self.part(p)) {
            store.release(Reservation {
                part: 0,
                waited: Duration::ZERO,
                ..reservation
            });
        }
    }

    fn take(
        &self,
        max: usize,
        wait: Duration,
        out: &mut Vec<Event>,
    ) -> Result<TakeTicket, ChannelError> {
        let mut order = self.order.lock();
        if order.runs.is_empty() && !wait.is_zero() {
            let _ = self.not_empty.wait_for(&mut order, wait);
        }
        // A run whose part returns nothing (the file channel dropped a damaged record) is
        // given up, so a stale count cannot hide the runs behind it.
        while let Some(&(part, n)) = order.runs.front() {
            let store = self.part(part).ok_or_else(|| self.lost_part())?;
            let before = out.len();
            let ticket = store.take(max.min(n), Duration::ZERO, out)?;
            let got = out.len() - before;
            if got == 0 {
                store.rollback_take(ticket, Vec::new());
                order.runs.pop_front();
                continue;
            }
            if let Some(front) = order.runs.front_mut() {
                front.1 -= got.min(front.1);
                if front.1 == 0 {
                    order.runs.pop_front();
                }
            }
            order.next_ticket += 1;
            let id = order.next_ticket;
            order.takes.insert(id, (part, ticket));
            drop(order);
            self.publish_size();
            return Ok(TakeTicket(id));
        }
        Ok(TakeTicket(0))
    }

    fn commit_take(&self, ticket: &TakeTicket, events: &[Event]) -> Result<(), ChannelError> {
        if ticket.0 == 0 {
            return Ok(());
        }
        let mut order = self.order.lock();
        let Some((part, inner)) = order.takes.get(&ticket.0) else {
            return Ok(());
        };
        let store = self.part(*part).ok_or_else(|| self.lost_part())?;
        // On error the entry stays, so the rollback that follows finds it.
        store.commit_take(inner, events)?;
        order.takes.remove(&ticket.0);
        drop(order);
        self.publish_size();
        Ok(())
    }

    fn rollback_take(&self, ticket: TakeTicket, events: Vec<Event>) {
        if ticket.0 == 0 {
            return;
        }
        let mut order = self.order.lock();
        let Some((part, inner)) = order.takes.remove(&ticket.0) else {
            return;
        };
        let n = events.len();
        if let Some(store) = self.part(part) {
            store.rollback_take(inner, events);
            if n > 0 {
                order.push_front(part, n);
            }
        }
        drop(order);
        self.not_empty.notify_all();
        self.publish_size();
    }

    fn size(&self) -> usize {
        self.memory.as_ref().map_or(0, |m| m.size())
            + self.overflow.as_ref().map_or(0, |f| f.size())
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.spill_memory();
        if let Some(m) = &self.memory {
            m.close();
        }
        if let Some(f) = &self.overflow {
            f.close();
        }
        self.counters.stopped();
        self.not_empty.notify_all();
    }

    fn is_durable(&self) -> bool {
        self.overflow.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::{PutTransaction, TakeTransaction};

    fn config(dir: &std::path::Path, pairs: &[(&str, &str)]) -> SpillableConfig {
        let cp = dir.join("cp").display().to_string();
        let data = dir.join("data").display().to_string();
        let mut all: Vec<(&str, &str)> = vec![
            ("checkpointDir", &cp),
            ("dataDirs", &data),
            ("minimumRequiredSpace", "1048576"),
        ];
        all.extend_from_slice(pairs);
        match SpillableConfig::from_props(&Props::from_pairs(&all)) {
            Ok(c) => c,
            Err(e) => panic!("config: {e}"),
        }
    }

    fn put(ch: &dyn Channel, bodies: &[String]) -> Result<(), ChannelError> {
        let events = bodies.iter().map(|b| Event::new(b.clone())).collect();
        PutTransaction::with_events(ch, events)?.commit()
    }

    fn take_all(ch: &dyn Channel) -> Result<Vec<String>, ChannelError> {
        let mut got = Vec::new();
        loop {
            let t = TakeTransaction::begin(ch, 7, Duration::ZERO)?;
            if t.is_empty() {
                return Ok(got);
            }
            got.extend(
                t.events()
                    .iter()
                    .map(|e| String::from_utf8_lossy(&e.body).to_string()),
            );
            t.commit()?;
        }
    }

    fn bodies(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("e{i}")).collect()
    }

    #[test]
    fn spills_beyond_memory_and_drains_in_order()
    -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let dir = tempfile::tempdir()?;
        let c = config(
            dir.path(),
            &[
                ("memoryCapacity", "10"),
                ("overflowTimeout", "0"),
                ("transactionCapacity", "10"),
            ],
        );
        let ch = SpillableChannel::open("c1", c)?;
        for chunk in 0..5 {
            put(&ch, &bodies(chunk * 5..chunk * 5 + 5))?;
        }
        assert!(ch.stats.spilled.load(Ordering::Relaxed) >= 15);
        // A rolled-back take goes back to the head.
        {
            let t = TakeTransaction::begin(&ch, 3, Duration::ZERO)?;
            assert_eq!(t.len(), 3);
        }
        assert_eq!(take_all(&ch)?, bodies(0..25));
        assert_eq!(ch.size(), 0);
        Ok(())
    }

    #[test]
    fn close_moves_memory_into_the_overflow() -> Result<(), Box<dyn std::error::Error + Send + Sync>>
    {
        let dir = tempfile::tempdir()?;
        let c = config(dir.path(), &[("memoryCapacity", "100")]);
        {
            let ch = SpillableChannel::open("c1", c.clone())?;
            put(&ch, &bodies(0..20))?;
            assert_eq!(ch.overflow.as_ref().map(|f| f.size()), Some(0));
            ch.close();
        }
        let ch = SpillableChannel::open("c1", c)?;
        assert_eq!(take_all(&ch)?, bodies(0..20));
        Ok(())
    }

    #[test]
    fn keys_and_ranges() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let err =
            |pairs: &[(&str, &str)]| match SpillableConfig::from_props(&Props::from_pairs(pairs)) {
                Ok(_) => String::new(),
                Err(e) => e.to_string(),
            };
        assert!(err(&[("memoryCapacity", "0"), ("overflowCapacity", "0")]).contains("both 0"));
        assert!(err(&[("memoryCapacity", "-1")]).contains("memoryCapacity"));
        assert!(
            err(&[("overflowCapacity", "100"), ("transactionCapacity", "200")])
                .contains("transactionCapacity")
        );
        assert!(
            err(&[
                ("memoryCapacity", "50"),
                ("overflowCapacity", "0"),
                ("transactionCapacity", "60")
            ])
            .contains("memoryCapacity 50")
        );
        let memory_only = config(
            dir.path(),
            &[("memoryCapacity", "100"), ("overflowCapacity", "0")],
        );
        assert!(memory_only.overflow.is_none());
        assert_eq!(memory_only.transaction_capacity, 100);
        let disk_only = config(dir.path(), &[("memoryCapacity", "0")]);
        assert!(disk_only.memory.is_none());
        assert_eq!(disk_only.overflow.map(|f| f.capacity), Some(100_000_000));
    }
}
