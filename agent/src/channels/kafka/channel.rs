use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::config::KafkaChannelConfig;
use super::offsets::{Offsets, Origin};
use crate::avro::protocol::{read_event, write_event};
use crate::channels::{Channel, ChannelError, ChannelRef, ChannelSpec, Reservation, TakeTicket};
use crate::config::MAX_BATCH;
use crate::event::{Event, Headers};
use crate::kafka::LogContext;
use crate::metrics::{ChannelCounters, MetricSet, Value};

/// The header that carries the record key, both ways (Flume's `KEY_HEADER`).
const KEY_HEADER: &str = "key";
/// How often a repeated consumer error or failed commit is logged.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Flume's `KafkaChannelCounter` extras, plus sluice's.
#[derive(Default)]
pub(crate) struct KafkaChannelStats {
    get_timer: AtomicU64,
    send_timer: AtomicU64,
    commit_timer: AtomicU64,
    rollback: AtomicU64,
    commit_fail: AtomicU64,
    decode_fail: AtomicU64,
    consume_error: AtomicU64,
    put_fail: AtomicU64,
}

struct KafkaChannelMetrics {
    counters: Arc<ChannelCounters>,
    stats: Arc<KafkaChannelStats>,
}

impl MetricSet for KafkaChannelMetrics {
    fn snapshot(&self) -> Vec<(&'static str, Value)> {
        let s = &self.stats;
        let c = |a: &AtomicU64| Value::Counter(a.load(Ordering::Relaxed));
        let mut v = self.counters.snapshot();
        v.extend([
            ("KafkaEventGetTimer", c(&s.get_timer)),
            ("KafkaEventSendTimer", c(&s.send_timer)),
            ("KafkaCommitTimer", c(&s.commit_timer)),
            ("RollbackCount", c(&s.rollback)),
            ("KafkaCommitFailCount", c(&s.commit_fail)),
            ("KafkaRecordDecodeFailCount", c(&s.decode_fail)),
            ("KafkaConsumeErrorCount", c(&s.consume_error)),
            ("KafkaPutFailCount", c(&s.put_fail)),
        ]);
        v
    }
}

/// What takes and commits share (locked briefly, never across a call to the broker).
#[derive(Default)]
struct TakeState {
    offsets: Offsets,
    /// Events of rolled-back takes, served before new records, in order.
    redeliver: VecDeque<(Event, Origin)>,
    /// The origins of each open take, by ticket.
    tickets: HashMap<u64, Vec<Origin>>,
    next_ticket: u64,
    /// Events in open takes.
    held: usize,
    /// A commit failed; the next idle take tries again.
    commit_pending: bool,
}

struct Shared {
    name: String,
    topic: String,
    state: Mutex<TakeState>,
    /// Serialises commits (compute, commit, record), so an older offset never reaches the
    /// broker after a newer one.
    commit_lock: Mutex<()>,
    counters: Arc<ChannelCounters>,
    stats: Arc<KafkaChannelStats>,
    last_log: Mutex<Option<Instant>>,
}

impl Shared {
    fn log_now(&self) -> bool {
        let mut last = self.last_log.lock();
        if last.is_some_and(|t| t.elapsed() < LOG_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    fn publish_size(&self, st: &TakeState) {
        self.counters
            .channel_size
            .store((st.redeliver.len() + st.held) as u64, Ordering::Relaxed);
    }

    /// Commits what the offsets allow (`only` some partitions); a failure keeps them for the
    /// next commit. Called with no lock held but `commit_lock` (taken here).
    fn commit(&self, consumer: &BaseConsumer<TakeContext>, only: Option<&[i32]>) {
        let _serial = self.commit_lock.lock();
        self.commit_locked(consumer, only);
    }

    fn commit_locked(&self, consumer: &BaseConsumer<TakeContext>, only: Option<&[i32]>) {
        let offsets = self.state.lock().offsets.committable(only);
        if offsets.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (p, off) in &offsets {
            let _ = tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*off));
        }
        let started = Instant::now();
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                let mut st = self.state.lock();
                st.offsets.committed(&offsets);
                st.commit_pending = false;
                self.stats
                    .commit_timer
                    .fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                self.state.lock().commit_pending = true;
                self.stats.commit_fail.fetch_add(1, Ordering::Relaxed);
                if self.log_now() {
                    tracing::warn!(
                        channel = %self.name, error = %e,
                        "Kafka channel: offset commit failed; it is retried with the next \
                         commit (the events were delivered; a crash before then delivers \
                         them again)."
                    );
                }
            }
        }
    }
}

/// The consumer's callbacks: librdkafka's log, and rebalances.
struct TakeContext {
    log: LogContext,
    shared: Arc<Shared>,
}

impl ClientContext for TakeContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.log.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ConsumerContext for TakeContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let parts = |tpl: &TopicPartitionList| -> Vec<i32> {
            tpl.elements().iter().map(|e| e.partition()).collect()
        };
        let s = &self.shared;
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let revoked = parts(tpl);
                tracing::info!(channel = %s.name, partitions = ?revoked,
                    "Kafka channel: partitions revoked; committing what was delivered.");
                let _serial = s.commit_lock.lock();
                if !consumer.assignment_lost() {
                    s.commit_locked(consumer, Some(&revoked));
                }
                let mut st = s.state.lock();
                for p in &revoked {
                    st.offsets.revoke(*p);
                }
                // Their next owner reads them again from the committed offset.
                let TakeState {
                    offsets, redeliver, ..
                } = &mut *st;
                redeliver.retain(|(_, o)| offsets.valid(o));
                s.publish_size(&st);
            }
            Rebalance::Assign(tpl) => {
                let assigned = parts(tpl);
                tracing::info!(channel = %s.name, partitions = ?assigned,
                    "Kafka channel: partitions assigned.");
                let mut st = s.state.lock();
                for p in assigned {
                    st.offsets.assign(p);
                }
            }
            Rebalance::Error(e) => {
                tracing::warn!(channel = %s.name, error = %e, "Kafka channel: rebalance error.");
            }
        }
    }
}

/// Delivery reports of one put commit.
#[derive(Default)]
struct PutWaiter {
    state: Mutex<PutState>,
    done: Condvar,
}

#[derive(Default)]
struct PutState {
    reported: usize,
    failure: Option<KafkaError>,
}

struct PutContext {
    log: LogContext,
}

impl ClientContext for PutContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.log.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ProducerContext for PutContext {
    type DeliveryOpaque = Arc<PutWaiter>;

    fn delivery(&self, result: &DeliveryResult<'_>, waiter: Arc<PutWaiter>) {
        let mut st = waiter.state.lock();
        st.reported += 1;
        if let Err((e, _)) = result
            && st.failure.is_none()
        {
            st.failure = Some(e.clone());
        }
        drop(st);
        waiter.done.notify_all();
    }
}

/// `org.apache.flume.channel.kafka.KafkaChannel`; see the module documentation.
pub struct KafkaChannel {
    config: KafkaChannelConfig,
    shared: Arc<Shared>,
    producer: ThreadedProducer<PutContext>,
    /// Created by the first take, so an agent that only puts never joins the group.
    consumer: Mutex<Option<Arc<BaseConsumer<TakeContext>>>>,
    /// One poll at a time (several sinks may take from the channel).
    poll_lock: Mutex<()>,
    closed: AtomicBool,
}

impl ChannelSpec for KafkaChannelConfig {
    fn open(
        &self,
        name: &str,
    ) -> Result<ChannelRef, Box<dyn std::error::Error + Send + Sync + 'static>> {
        Ok(Arc::new(KafkaChannel::new(name, self.clone())?))
    }
}

/// Why the channel's Kafka clients could not be created.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("cannot create the Kafka channel's producer: {0}")]
    Producer(#[source] KafkaError),
}

impl KafkaChannel {
    pub(crate) fn new(name: &str, config: KafkaChannelConfig) -> Result<Self, OpenError> {
        let producer: ThreadedProducer<PutContext> = config
            .producer
            .0
            .create_with_context(PutContext {
                log: LogContext {
                    component: format!("channel {name}"),
                },
            })
            .map_err(OpenError::Producer)?;
        Ok(Self {
            shared: Arc::new(Shared {
                name: name.to_string(),
                topic: config.topic.clone(),
                state: Mutex::default(),
                commit_lock: Mutex::new(()),
                counters: ChannelCounters::new(0),
                stats: Arc::default(),
                last_log: Mutex::new(None),
            }),
            config,
            producer,
            consumer: Mutex::new(None),
            poll_lock: Mutex::new(()),
            closed: AtomicBool::new(false),
        })
    }

    fn io(&self, message: String) -> ChannelError {
        ChannelError::Io {
            channel: self.shared.name.clone(),
            message,
        }
    }

    fn consumer(&self) -> Result<Arc<BaseConsumer<TakeContext>>, ChannelError> {
        let mut slot = self.consumer.lock();
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let context = TakeContext {
            log: LogContext {
                component: format!("channel {}", self.shared.name),
            },
            shared: self.shared.clone(),
        };
        let consumer: BaseConsumer<TakeContext> = self
            .config
            .consumer
            .0
            .create_with_context(context)
            .map_err(|e| self.io(format!("cannot create the Kafka consumer: {e}")))?;
        consumer.subscribe(&[&self.config.topic]).map_err(|e| {
            self.io(format!(
                "cannot subscribe to topic `{}`: {e}",
                self.config.topic
            ))
        })?;
        let consumer = Arc::new(consumer);
        *slot = Some(consumer.clone());
        Ok(consumer)
    }

    /// The event in a record, or `None` for a record that is not a Flume event while
    /// `parseAsFlumeEvent` is on (counted and logged; its offset still counts).
    fn decode(&self, m: &BorrowedMessage<'_>) -> Option<Event> {
        let payload = m.payload().unwrap_or_default();
        let mut event = if self.config.parse_as_flume_event {
            let mut r = crate::avro::decode::Reader::new(bytes::Bytes::copy_from_slice(payload));
            match read_event(&mut r) {
                Ok(e) => e,
                Err(e) => {
                    self.shared
                        .stats
                        .decode_fail
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        channel = %self.shared.name, topic = m.topic(), partition = m.partition(),
                        offset = m.offset(), error = %e,
                        "Kafka channel: record is not a Flume Avro event (parseAsFlumeEvent = \
                         true); skipped. Set parseAsFlumeEvent = false when other producers \
                         write plain bodies to this topic."
                    );
                    return None;
                }
            }
        } else {
            Event::with_headers(Headers::new(), bytes::Bytes::copy_from_slice(payload))
        };
        if let Some(k) = m.key() {
            match std::str::from_utf8(k) {
                Ok(k) => {
                    event.headers.insert(KEY_HEADER, k);
                }
                Err(_) => tracing::warn!(
                    channel = %self.shared.name, partition = m.partition(), offset = m.offset(),
                    "Kafka channel: record key is not UTF-8; the `key` header is left out."
                ),
            }
        }
        Some(event)
    }

    /// `partitionIdHeader`'s value, else `defaultPartitionId`. A value that is not a partition
    /// number is logged and ignored (as sluice's Kafka sink does): refusing the put would make
    /// the source retry the same batch for ever.
    fn partition_for(&self, e: &Event) -> Option<i32> {
        if let Some(h) = &self.config.partition_header
            && let Some(v) = e.headers.get(h)
        {
            match v.trim().parse::<i32>() {
                Ok(p) => return Some(p),
                Err(_) => {
                    if self.shared.log_now() {
                        tracing::warn!(
                            channel = %self.shared.name, header = %h, value = %v,
                            "Kafka channel: partitionIdHeader value is not a partition number; \
                             ignored."
                        );
                    }
                }
            }
        }
        self.config.default_partition
    }

    /// Sends `events` and waits for every acknowledgement.
    fn produce(&self, events: &[Event]) -> Result<(), ChannelError> {
        let started = Instant::now();
        let deadline = started + self.config.put_wait;
        let waiter = Arc::new(PutWaiter::default());
        let mut sent = 0usize;
        let mut send_error: Option<ChannelError> = None;
        let mut value = Vec::new();
        'events: for e in events {
            let partition = self.partition_for(e);
            let payload: &[u8] = if self.config.parse_as_flume_event {
                value.clear();
                write_event(&mut value, e);
                &value
            } else {
                &e.body
            };
            let mut record =
                BaseRecord::with_opaque_to(&self.config.topic, waiter.clone()).payload(payload);
            if let Some(k) = e.headers.get(KEY_HEADER) {
                record = record.key(k);
            }
            if let Some(p) = partition {
                record = record.partition(p);
            }
            loop {
                match self.producer.send(record) {
                    Ok(()) => {
                        sent += 1;
                        continue 'events;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                        if Instant::now() < deadline =>
                    {
                        record = r;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((err, _)) => {
                        send_error = Some(self.io(format!(
                            "cannot send to topic `{}`: {err}",
                            self.config.topic
                        )));
                        break 'events;
                    }
                }
            }
        }
        let mut st = waiter.state.lock();
        while st.reported < sent {
            if waiter.done.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        let result = if let Some(e) = send_error {
            Err(e)
        } else if let Some(f) = &st.failure {
            Err(self.io(format!(
                "Kafka did not accept the put ({f}); the source retries it"
            )))
        } else if st.reported < sent {
            Err(self.io(format!(
                "{} of {sent} records were not acknowledged within {:?}; the source retries \
                 the put",
                sent - st.reported,
                self.config.put_wait
            )))
        } else {
            Ok(())
        };
        drop(st);
        self.shared
            .stats
            .send_timer
            .fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        if result.is_err() {
            self.shared.stats.put_fail.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Polls up to `max` records into `out`, waiting up to `wait` for the first.
    fn poll_into(
        &self,
        consumer: &BaseConsumer<TakeContext>,
        max: usize,
        wait: Duration,
        out: &mut Vec<Event>,
        origins: &mut Vec<Origin>,
    ) {
        let _one = self.poll_lock.lock();
        let started = Instant::now();
        let deadline = started + wait;
        while out.len() < max {
            let left = if out.is_empty() {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            match consumer.poll(left) {
                None => {
                    if out.is_empty() && Instant::now() < deadline {
                        continue;
                    }
                    break;
                }
                Some(Ok(m)) => {
                    let event = self.decode(&m);
                    let mut st = self.shared.state.lock();
                    let origin = st.offsets.taken(m.partition(), m.offset());
                    match event {
                        Some(e) => {
                            out.push(e);
                            origins.push(origin);
                        }
                        None => st.offsets.done(&origin),
                    }
                }
                Some(Err(e)) => {
                    self.shared
                        .stats
                        .consume_error
                        .fetch_add(1, Ordering::Relaxed);
                    if self.shared.log_now() {
                        tracing::warn!(channel = %self.shared.name, error = %e,
                            "Kafka channel: consumer error; retrying.");
                    }
                    if out.is_empty() && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(10).min(wait));
                        continue;
                    }
                    break;
                }
            }
        }
        if !out.is_empty() {
            self.shared
                .stats
                .get_timer
                .fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    }
}

impl Channel for KafkaChannel {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn transaction_capacity(&self) -> usize {
        MAX_BATCH
    }

    fn counters(&self) -> &Arc<ChannelCounters> {
        &self.shared.counters
    }

    fn metric_set(&self) -> Arc<dyn MetricSet> {
        Arc::new(KafkaChannelMetrics {
            counters: self.shared.counters.clone(),
            stats: self.shared.stats.clone(),
        })
    }

    fn reserve(&self, events: usize, bytes: u64) -> Result<Reservation, ChannelError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ChannelError::Closed {
                channel: self.shared.name.clone(),
            });
        }
        Ok(Reservation {
            events,
            bytes,
            part: 0,
            waited: Duration::ZERO,
        })
    }

    fn commit_put(
        &self,
        _reservation: Reservation,
        events: Vec<Event>,
    ) -> Result<(), ChannelError> {
        if events.is_empty() {
            return Ok(());
        }
        self.produce(&events)
    }

    fn release(&self, _reservation: Reservation) {}

    fn take(
        &self,
        max: usize,
        wait: Duration,
        out: &mut Vec<Event>,
    ) -> Result<TakeTicket, ChannelError> {
        let mut origins = Vec::new();
        {
            let mut st = self.shared.state.lock();
            while out.len() < max
                && let Some((e, o)) = st.redeliver.pop_front()
            {
                if st.offsets.valid(&o) {
                    out.push(e);
                    origins.push(o);
                }
            }
        }
        let consumer = self.consumer()?;
        if out.len() < max {
            let wait = if out.is_empty() {
                wait.min(self.config.poll_timeout)
            } else {
                Duration::ZERO
            };
            self.poll_into(&consumer, max, wait, out, &mut origins);
        }
        let mut st = self.shared.state.lock();
        if origins.is_empty() {
            let retry = st.commit_pending;
            self.shared.publish_size(&st);
            drop(st);
            if retry {
                self.shared.commit(&consumer, None);
            }
            return Ok(TakeTicket(0));
        }
        st.next_ticket += 1;
        let id = st.next_ticket;
        st.held += origins.len();
        st.tickets.insert(id, origins);
        self.shared.publish_size(&st);
        Ok(TakeTicket(id))
    }

    fn commit_take(&self, ticket: &TakeTicket, _events: &[Event]) -> Result<(), ChannelError> {
        if ticket.0 == 0 {
            return Ok(());
        }
        {
            let mut st = self.shared.state.lock();
            let Some(origins) = st.tickets.remove(&ticket.0) else {
                return Ok(());
            };
            st.held -= origins.len();
            for o in &origins {
                st.offsets.done(o);
            }
            self.shared.publish_size(&st);
        }
        let consumer = self.consumer.lock().clone();
        if let Some(c) = consumer {
            self.shared.commit(&c, None);
        }
        Ok(())
    }

    fn rollback_take(&self, ticket: TakeTicket, events: Vec<Event>) {
        if ticket.0 == 0 {
            return;
        }
        let mut st = self.shared.state.lock();
        let Some(origins) = st.tickets.remove(&ticket.0) else {
            return;
        };
        st.held -= origins.len();
        self.shared
            .stats
            .rollback
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        for (e, o) in events.into_iter().zip(origins).rev() {
            if st.offsets.valid(&o) {
                st.redeliver.push_front((e, o));
            }
        }
        self.shared.publish_size(&st);
    }

    fn size(&self) -> usize {
        let st = self.shared.state.lock();
        st.redeliver.len() + st.held
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.shared.counters.stopped();
    }

    fn is_durable(&self) -> bool {
        true
    }
}

impl Drop for KafkaChannel {
    fn drop(&mut self) {
        if let Some(c) = self.consumer.lock().take() {
            self.shared.commit(&c, None);
        }
        let _ = self.producer.flush(Duration::from_secs(5));
    }
}
