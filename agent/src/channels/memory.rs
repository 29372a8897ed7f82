//! Flume's MemoryChannel: a bounded in-memory queue.
//!
//! Slots (`capacity`) and body bytes (`byteCapacity`) are held from reservation until the take
//! that removes the events commits, as in Flume, so a sink's rolled-back batch always has room
//! to go back. A put that finds no room waits up to `keep-alive` and then fails; the source
//! backs off and retries, nothing is dropped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{Channel, ChannelError, ChannelRef, ChannelSpec, Reservation, TakeTicket};
use crate::config::{ConfigError, MAX_BATCH, MAX_SECONDS, Props};
use crate::event::Event;
use crate::metrics::ChannelCounters;

/// `a1.channels.c1.*` for `type = memory`.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryChannelConfig {
    /// `capacity`: events stored at most (default 100).
    pub capacity: usize,
    /// `transactionCapacity`: events per put or take transaction (default 100).
    pub transaction_capacity: usize,
    /// `byteCapacity` after removing `byteCapacityBufferPercentage` (bytes of bodies).
    pub byte_capacity: u64,
    /// `keep-alive`: seconds a put waits for room (default 3).
    pub keep_alive: Duration,
}

impl MemoryChannelConfig {
    pub fn from_props(p: &Props) -> Result<Self, ConfigError> {
        let capacity = p.int("capacity", 100, 1..=1_000_000_000)?;
        let transaction_capacity = p.int("transactionCapacity", 100, 1..=MAX_BATCH)?;
        if transaction_capacity > capacity {
            return Err(p.error(
                "transactionCapacity",
                format!("{transaction_capacity} exceeds capacity {capacity}"),
            ));
        }
        let buffer_pct = p.int("byteCapacityBufferPercentage", 20u64, 0..=99)?;
        if buffer_pct >= 100 {
            return Err(p.error("byteCapacityBufferPercentage", "must be below 100"));
        }
        let byte_capacity = p.int("byteCapacity", default_byte_capacity(), 0..=u64::MAX)?;
        let byte_capacity = if byte_capacity == 0 {
            u64::MAX
        } else {
            byte_capacity / 100 * (100 - buffer_pct)
        };
        Ok(Self {
            capacity,
            transaction_capacity,
            byte_capacity,
            keep_alive: p.seconds("keep-alive", 3, 0..=MAX_SECONDS)?,
        })
    }
}

/// Flume defaults `byteCapacity` to 80% of the JVM heap; sluice uses 80% of physical memory.
pub(crate) fn default_byte_capacity() -> u64 {
    let total_kb = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    });
    total_kb.map_or(u64::MAX, |kb| kb * 1024 / 10 * 8)
}

#[derive(Default)]
struct State {
    queue: VecDeque<Event>,
    /// Slots held by prepared puts and uncommitted takes.
    held: usize,
    /// Body bytes of queued, prepared and in-flight events.
    bytes: u64,
    closed: bool,
}

pub struct MemoryChannel {
    name: String,
    config: MemoryChannelConfig,
    state: Mutex<State>,
    not_full: Condvar,
    not_empty: Condvar,
    /// Whether the queue holds events, readable without the lock: a taker that finds the queue
    /// empty watches it for a moment before sleeping (see `take`).
    ready: AtomicBool,
    counters: Arc<ChannelCounters>,
}

/// How long a taker that found the queue empty keeps watching it before it sleeps on the
/// condition variable. A sink that keeps up with its source finds the queue empty after
/// nearly every batch; when it is asleep, every put pays a futex wake (a system call and an
/// inter-processor interrupt, ~5 µs per batch in bench_wasm's profile, all of it on the
/// source's thread). Watching costs the taker's thread this long per empty take at most and
/// yields the CPU between looks, so an idle agent or a busy machine loses next to nothing.
const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(100);

impl ChannelSpec for MemoryChannelConfig {
    fn open(
        &self,
        name: &str,
    ) -> Result<ChannelRef, Box<dyn std::error::Error + Send + Sync + 'static>> {
        Ok(Arc::new(MemoryChannel::new(name, self.clone())))
    }
}

impl MemoryChannel {
    pub fn new(name: &str, config: MemoryChannelConfig) -> Self {
        let counters = ChannelCounters::new(config.capacity as u64);
        Self {
            name: name.to_string(),
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(config.capacity.min(1 << 16)),
                ..State::default()
            }),
            config,
            not_full: Condvar::new(),
            not_empty: Condvar::new(),
            ready: AtomicBool::new(false),
            counters,
        }
    }

    fn publish_size(&self, st: &State) {
        self.ready.store(!st.queue.is_empty(), Ordering::Release);
        self.counters
            .channel_size
            .store((st.queue.len() + st.held) as u64, Ordering::Relaxed);
    }
}

impl Channel for MemoryChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn transaction_capacity(&self) -> usize {
        self.config.transaction_capacity
    }

    fn counters(&self) -> &Arc<ChannelCounters> {
        &self.counters
    }

    fn reserve(&self, events: usize, bytes: u64) -> Result<Reservation, ChannelError> {
        let started = Instant::now();
        let deadline = started + self.config.keep_alive;
        let mut st = self.state.lock();
        let mut waited = false;
        loop {
            if st.closed {
                return Err(ChannelError::Closed {
                    channel: self.name.clone(),
                });
            }
            let used = st.queue.len() + st.held;
            let slots_ok = used + events <= self.config.capacity;
            // An event bigger than the whole byte capacity can never fit; let it in alone.
            let bytes_ok = st.bytes + bytes <= self.config.byte_capacity || st.bytes == 0;
            if slots_ok && bytes_ok {
                st.held += events;
                st.bytes += bytes;
                self.publish_size(&st);
                return Ok(Reservation {
                    events,
                    bytes,
                    part: 0,
                    waited: if waited {
                        started.elapsed()
                    } else {
                        Duration::ZERO
                    },
                });
            }
            waited = true;
            if self.not_full.wait_until(&mut st, deadline).timed_out() {
                let detail = if slots_ok {
                    format!(
                        "byteCapacity {} bytes in use of {}",
                        st.bytes, self.config.byte_capacity
                    )
                } else {
                    format!("{used} of capacity {} events", self.config.capacity)
                };
                return Err(ChannelError::Full {
                    channel: self.name.clone(),
                    detail,
                    keep_alive: self.config.keep_alive,
                });
            }
        }
    }

    fn commit_put(&self, reservation: Reservation, events: Vec<Event>) -> Result<(), ChannelError> {
        let mut st = self.state.lock();
        st.held -= reservation.events;
        let actual: u64 = events.iter().map(|e| e.body_len() as u64).sum();
        st.bytes = st.bytes - reservation.bytes + actual;
        st.queue.extend(events);
        self.publish_size(&st);
        drop(st);
        self.not_empty.notify_all();
        Ok(())
    }

    fn release(&self, reservation: Reservation) {
        let mut st = self.state.lock();
        st.held -= reservation.events;
        st.bytes -= reservation.bytes;
        self.publish_size(&st);
        drop(st);
        self.not_full.notify_all();
    }

    fn take(
        &self,
        max: usize,
        wait: Duration,
        out: &mut Vec<Event>,
    ) -> Result<TakeTicket, ChannelError> {
        let mut st = self.state.lock();
        if st.queue.is_empty() && !wait.is_zero() && !st.closed {
            drop(st);
            let start = Instant::now();
            let spin = SPIN_BEFORE_SLEEP.min(wait);
            while !self.ready.load(Ordering::Acquire) && start.elapsed() < spin {
                std::thread::yield_now();
            }
            st = self.state.lock();
            if st.queue.is_empty() && !st.closed {
                let left = wait.saturating_sub(start.elapsed());
                let _ = self.not_empty.wait_for(&mut st, left);
            }
        }
        let n = max.min(st.queue.len());
        out.extend(st.queue.drain(..n));
        st.held += n;
        self.publish_size(&st);
        Ok(TakeTicket(0))
    }

    fn commit_take(&self, _ticket: &TakeTicket, events: &[Event]) -> Result<(), ChannelError> {
        let bytes: u64 = events.iter().map(|e| e.body_len() as u64).sum();
        let mut st = self.state.lock();
        st.held -= events.len();
        st.bytes -= bytes;
        self.publish_size(&st);
        drop(st);
        self.not_full.notify_all();
        Ok(())
    }

    fn rollback_take(&self, _ticket: TakeTicket, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let mut st = self.state.lock();
        st.held -= events.len();
        for e in events.into_iter().rev() {
            st.queue.push_front(e);
        }
        self.publish_size(&st);
        drop(st);
        self.not_empty.notify_all();
    }

    fn size(&self) -> usize {
        let st = self.state.lock();
        st.queue.len() + st.held
    }

    fn close(&self) {
        self.state.lock().closed = true;
        self.counters.stopped();
        self.not_full.notify_all();
        self.not_empty.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::{PutTransaction, TakeTransaction};

    fn channel(capacity: usize, txn: usize) -> MemoryChannel {
        MemoryChannel::new(
            "c1",
            MemoryChannelConfig {
                capacity,
                transaction_capacity: txn,
                byte_capacity: u64::MAX,
                keep_alive: Duration::from_millis(20),
            },
        )
    }

    fn put(ch: &MemoryChannel, bodies: &[&str]) -> Result<(), ChannelError> {
        let mut t = PutTransaction::begin(ch);
        for b in bodies {
            t.put(Event::new(b.to_string()))?;
        }
        t.commit()
    }

    fn bodies(t: &TakeTransaction<'_>) -> Vec<String> {
        t.events()
            .iter()
            .map(|e| String::from_utf8_lossy(&e.body).into_owned())
            .collect()
    }

    #[test]
    fn take_rollback_restores_order_at_head() -> Result<(), ChannelError> {
        let ch = channel(10, 10);
        put(&ch, &["a", "b", "c", "d"])?;
        {
            let t = TakeTransaction::begin(&ch, 2, Duration::ZERO)?;
            assert_eq!(bodies(&t), ["a", "b"]);
            // dropped: rolled back
        }
        let t = TakeTransaction::begin(&ch, 10, Duration::ZERO)?;
        assert_eq!(bodies(&t), ["a", "b", "c", "d"]);
        t.commit()?;
        assert_eq!(ch.size(), 0);
        Ok(())
    }

    /// A waiting take returns what a put commits while it watches the queue and after it went
    /// to sleep on the condition variable, and an empty take returns empty after its wait.
    #[test]
    fn waiting_take_sees_puts_before_and_after_it_sleeps() -> Result<(), ChannelError> {
        let ch = channel(10, 10);
        let wait = Duration::from_secs(30);
        for delay in [Duration::ZERO, SPIN_BEFORE_SLEEP * 20] {
            std::thread::scope(|s| {
                let putter = s.spawn(|| {
                    std::thread::sleep(delay);
                    put(&ch, &["late"])
                });
                let t = TakeTransaction::begin(&ch, 10, wait)?;
                assert_eq!(bodies(&t), ["late"]);
                t.commit()?;
                putter.join().unwrap_or(Err(ChannelError::Closed {
                    channel: "putter panicked".into(),
                }))
            })?;
        }
        let t = TakeTransaction::begin(&ch, 10, Duration::from_millis(5))?;
        assert!(t.events().is_empty());
        Ok(())
    }

    #[test]
    fn full_channel_fails_after_keep_alive_and_keeps_contents() -> Result<(), ChannelError> {
        let ch = channel(3, 3);
        put(&ch, &["1", "2", "3"])?;
        let err = put(&ch, &["4"]);
        assert!(matches!(err, Err(ChannelError::Full { .. })), "{err:?}");
        assert_eq!(ch.size(), 3);
        // Taken but uncommitted events still hold their slots.
        let t = TakeTransaction::begin(&ch, 3, Duration::ZERO)?;
        assert!(matches!(put(&ch, &["4"]), Err(ChannelError::Full { .. })));
        t.commit()?;
        put(&ch, &["4"])?;
        Ok(())
    }

    #[test]
    fn transaction_capacity_is_enforced() {
        let ch = channel(10, 2);
        let err = put(&ch, &["1", "2", "3"]);
        assert!(
            matches!(err, Err(ChannelError::TransactionCapacity { .. })),
            "{err:?}"
        );
        assert_eq!(ch.size(), 0);
    }

    #[test]
    fn dropped_prepared_put_releases_room() -> Result<(), ChannelError> {
        let ch = channel(2, 2);
        {
            let mut t = PutTransaction::begin(&ch);
            t.put(Event::new("x"))?;
            t.put(Event::new("y"))?;
            t.prepare()?;
            assert_eq!(ch.size(), 2);
        }
        assert_eq!(ch.size(), 0);
        put(&ch, &["a", "b"])
    }

    #[test]
    fn byte_capacity_blocks_puts() -> Result<(), ChannelError> {
        let mut cfg = channel(100, 100).config;
        cfg.byte_capacity = 10;
        let ch = MemoryChannel::new("c1", cfg);
        put(&ch, &["12345", "12345"])?;
        let err = put(&ch, &["1"]);
        assert!(matches!(err, Err(ChannelError::Full { .. })), "{err:?}");
        Ok(())
    }

    #[test]
    fn config_defaults_and_errors() {
        let c = MemoryChannelConfig::from_props(&Props::from_pairs(&[]));
        assert!(matches!(
            c,
            Ok(MemoryChannelConfig {
                capacity: 100,
                transaction_capacity: 100,
                ..
            })
        ));
        let bad = MemoryChannelConfig::from_props(&Props::from_pairs(&[
            ("capacity", "10"),
            ("transactionCapacity", "20"),
        ]));
        assert!(bad.is_err());
    }
}
