//! `org.apache.flume.source.kafka.KafkaSource`: consumes Kafka topics in a consumer group.
//!
//! Delivery contract (at least once, duplicates bounded by one batch per rebalance):
//! - One `process` reads up to `batchSize` records or for `batchDurationMillis`, hands them to
//!   the channel processor, and only after that returned `Ok` commits the next offsets.
//!   Auto-commit and auto offset store are off. The commit runs on a committer thread so its
//!   round trip overlaps reading the next batch, and the next batch enters the channel only
//!   once that commit finished: at most one batch is in the channel with uncommitted offsets.
//! - A batch the channel refused is kept and retried as is (no re-read), so a full channel
//!   neither loses nor duplicates records.
//! - Offsets of a batch that reached the channel but whose commit failed (broker down) are kept
//!   and committed before the next batch enters the channel, or on partition revocation. Until
//!   then the next batch is held (`KafkaCommitWaitCount`), so the bound of one uncommitted
//!   batch in the channel holds through a broker outage too.
//! - On revocation (librdkafka calls the rebalance callback from inside `poll`, on the runner
//!   thread) the records of revoked partitions that are not yet in the channel are dropped:
//!   the partition's next owner reads them again from the committed offset. So a rebalance
//!   duplicates at most the one batch whose commit raced it.
//!
//! Client errors and waits (broker outages, rebalances):
//! - Errors librdkafka queues for the application (`AllBrokersDown`, transport failures, an
//!   unknown topic) are drained inside the batch: each is counted (`KafkaConsumeErrorCount`),
//!   a repeated kind is logged at most every 10 s, and none ends the batch. librdkafka
//!   reconnects and rejoins by itself; what it needs from the source is to keep polling, since
//!   rebalances are served from `poll` behind the queued errors.
//! - An empty batch backs off only when the consumer has no assignment or the brokers look
//!   down (an error saying so and no record since); otherwise the batch's own wait in `poll`
//!   was the idle wait. The backoff itself ([`PollableSource::backoff`]) waits inside `poll`
//!   too, so a rebalance, the group rejoin after an outage or the first record of a new
//!   assignment ends it at once.
//! - While a batch is held (channel full, previous commit not done), the assigned partitions
//!   are paused and the backoff polls the consumer to serve rebalances without reading
//!   records; fetching resumes, after the last record read, once the batch is in the channel.
//!
//! Headers, as Flume sets them (never overwriting headers that came in a Flume-format body):
//! `timestamp` (the record's timestamp, or now if it has none), the topic under `topicHeader`
//! when `setTopicHeader`, `partition`, `offset`, and `key` when the record has one. Kafka record
//! headers are copied too. Keys and header values that are not UTF-8 are left out, logged and
//! counted (`KafkaHeaderDecodeFailCount`); a record that is not a valid Flume event while
//! `useFlumeEventFormat` is on is skipped, logged and counted (`KafkaRecordDecodeFailCount`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::avro::protocol::read_event;
use crate::config::{ConfigError, MAX_BATCH, MAX_MILLIS, Props};
use crate::event::{Event, Headers};
use crate::kafka::{ClientKind, ClientProps, LogContext, apply_passthrough, check, set_default};
use crate::lifecycle::StopSignal;
use crate::metrics::{Combined, ComponentType, KafkaSourceCounters};
use crate::pipeline::{
    BoxError, ChannelProcessor, PollConfig, PollStatus, PollableSource,
    SourceContext as BuildSourceContext, SourceError, SourceInstance, SourceSpec,
};

/// How often a repeated consumer error of one kind is logged.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How long `process` waits for the previous batch's commit before it holds the next batch
/// and backs off (the commit of a healthy broker takes milliseconds; one waiting for a
/// coordinator can take `session.timeout.ms`).
const COMMIT_WAIT: Duration = Duration::from_millis(100);
/// The longest single `poll` of a backoff wait, so a stop or a finished commit is noticed.
const WAIT_SLICE: Duration = Duration::from_millis(20);

/// What the source subscribes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subscription {
    /// `kafka.topics`: comma-separated names.
    Topics(Vec<String>),
    /// `kafka.topics.regex`, anchored with `^` as librdkafka requires.
    Pattern(String),
}

#[derive(Clone, Debug)]
pub struct KafkaSourceConfig {
    /// The librdkafka consumer properties: `kafka.bootstrap.servers`,
    /// `kafka.consumer.group.id` (default `flume`) and the mapped `kafka.consumer.*` keys.
    pub client: ClientProps,
    pub subscription: Subscription,
    /// `batchSize` (default 1000).
    pub batch_size: usize,
    /// `batchDurationMillis` (default 1000): the longest a batch waits to fill.
    pub batch_duration: Duration,
    /// `useFlumeEventFormat` (default false): values are Avro `AvroFlumeEvent`s.
    pub flume_format: bool,
    /// `setTopicHeader` (default true).
    pub set_topic_header: bool,
    /// `topicHeader` (default `topic`).
    pub topic_header: String,
    /// `backoffSleepIncrement` / `maxBackoffSleep`.
    pub poll: PollConfig,
}

impl KafkaSourceConfig {
    pub fn from_props(p: &Props) -> Result<Self, ConfigError> {
        let servers = p.required("kafka.bootstrap.servers")?;
        check("bootstrap.servers", &servers)
            .map_err(|m| p.error("kafka.bootstrap.servers", m.to_string()))?;
        let regex = p.get("kafka.topics.regex").filter(|v| !v.is_empty());
        let topics = p.get("kafka.topics").filter(|v| !v.is_empty());
        let subscription = match (regex, topics) {
            (Some(r), _) => Subscription::Pattern(if r.starts_with('^') {
                r.to_string()
            } else {
                format!("^{r}")
            }),
            (None, Some(t)) => Subscription::Topics(
                t.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
            (None, None) => {
                if p.get("topic").is_some() {
                    return Err(p.error("topic", "was removed in Flume 1.7; use kafka.topics"));
                }
                return Err(p.error(
                    "kafka.topics",
                    "at least one Kafka topic must be specified (kafka.topics or kafka.topics.regex)",
                ));
            }
        };
        for old in ["zookeeperConnect", "groupId"] {
            if p.get(old).is_some() {
                return Err(p.error(
                    old,
                    "was removed in Flume 1.7; use kafka.bootstrap.servers / kafka.consumer.group.id",
                ));
            }
        }
        let _ = p.get("migrateZookeeperOffsets");
        let mut client = ClientConfig::new();
        apply_passthrough(p, "kafka.consumer.", ClientKind::Consumer, &mut client)?;
        client.set("bootstrap.servers", servers);
        set_default(&mut client, "group.id", "flume");
        // librdkafka waits this long before fetching again once a partition's local queue is
        // over its thresholds; its 1000 ms default left the source waiting on empty queues
        // (bench_kafka: 115 k events/s at 1000 ms, 290 k at 10).
        set_default(&mut client, "fetch.queue.backoff.ms", "10");
        client.set("enable.auto.commit", "false");
        client.set("enable.auto.offset.store", "false");
        Ok(Self {
            client: ClientProps(client),
            subscription,
            batch_size: p.int("batchSize", 1000, 1..=MAX_BATCH)?,
            batch_duration: p.millis("batchDurationMillis", 1000, 1..=MAX_MILLIS)?,
            flume_format: p.bool("useFlumeEventFormat", false)?,
            set_topic_header: p.bool("setTopicHeader", true)?,
            topic_header: p.string("topicHeader", "topic"),
            poll: PollConfig::from_props(p)?,
        })
    }
}

type Partition = (String, i32);

/// The consumer's callbacks, and the offset state they share with `process`.
struct SourceContext {
    log: LogContext,
    counters: Arc<KafkaSourceCounters>,
    /// Next offsets of batches that are in the channel but not yet committed.
    uncommitted: Mutex<BTreeMap<Partition, i64>>,
    /// Held for a whole commit (collect, commit, clear), so the committer thread's commit and
    /// a revocation's commit-then-forget never interleave: a commit cannot reach the broker
    /// for a partition after its revocation handed it on.
    committing: Mutex<()>,
    /// Partitions revoked since `process` last looked (shared with [`KafkaSource`]).
    revoked: Arc<Mutex<Vec<Partition>>>,
}

impl SourceContext {
    /// Commits `offsets` synchronously; on failure they stay in `uncommitted`.
    fn commit(&self, consumer: &BaseConsumer<Self>, only: Option<&[Partition]>) {
        let _serial = self.committing.lock();
        self.commit_locked(consumer, only);
    }

    /// [`Self::commit`] for a caller that holds `committing`.
    fn commit_locked(&self, consumer: &BaseConsumer<Self>, only: Option<&[Partition]>) {
        // Collected under the lock, committed without it. The runner thread adds entries only
        // while no commit is in flight, and a rebalance (inside its `poll`) only removes them.
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in self.uncommitted.lock().iter() {
            if only.is_none_or(|o| o.iter().any(|(t, p)| t == topic && p == partition)) {
                let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
            }
        }
        if tpl.count() == 0 {
            return;
        }
        let started = Instant::now();
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                let mut pending = self.uncommitted.lock();
                for e in tpl.elements() {
                    let key = (e.topic().to_string(), e.partition());
                    // Only what was committed: a newer offset stays for the next commit.
                    if pending.get(&key).copied() == e.offset().to_raw() {
                        pending.remove(&key);
                    }
                }
                self.counters
                    .commit_timer
                    .fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                self.counters.commit_fail.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    source = %self.log.component, error = %e, partitions = tpl.count(),
                    "Offset commit failed; it will be retried (the records are in the channel)."
                );
            }
        }
    }
}

impl ClientContext for SourceContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.log.log(level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        // The same error comes back from `poll`, where it is counted and logged (repeats at
        // most every 10 s); logging every one here too filled the log during an outage.
        tracing::debug!(component = %self.log.component, error = %error, "Kafka client: {reason}.");
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let parts: Vec<Partition> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                self.counters.rebalance.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    source = %self.log.component, partitions = ?parts,
                    "Kafka partitions revoked; committing what reached the channel."
                );
                if consumer.assignment_lost() {
                    // The group already gave these partitions away (the session timed out, as
                    // in a broker outage): a commit would be refused, and librdkafka holds one
                    // that has no coordinator for up to `session.timeout.ms`, which would stall
                    // this poll and the rejoin. The records are in the channel; the next owner
                    // reads them again (at most one batch).
                    tracing::warn!(
                        source = %self.log.component, partitions = ?parts,
                        "Kafka partitions lost (session timed out); their uncommitted offsets \
                         are given up."
                    );
                    let mut pending = self.uncommitted.lock();
                    for p in &parts {
                        pending.remove(p);
                    }
                } else {
                    // Last chance to commit what is in the channel; afterwards the partition's
                    // new owner starts from the committed offset.
                    let serial = self.committing.lock();
                    self.commit_locked(consumer, Some(&parts));
                    let mut pending = self.uncommitted.lock();
                    for p in &parts {
                        pending.remove(p);
                    }
                    drop(pending);
                    drop(serial);
                }
                self.revoked.lock().extend(parts);
            }
            Rebalance::Assign(tpl) => {
                let parts: Vec<Partition> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                tracing::info!(source = %self.log.component, partitions = ?parts, "Kafka partitions assigned.");
            }
            Rebalance::Error(e) => {
                tracing::warn!(source = %self.log.component, error = %e, "Kafka rebalance error.");
            }
        }
    }
}

/// Records read but not yet in the channel, with where each came from.
#[derive(Default)]
struct Batch {
    /// `None` for a record that was skipped (undecodable) but whose offset still counts.
    events: Vec<Option<Event>>,
    origins: Vec<(Arc<str>, i32, i64)>,
}

impl Batch {
    /// Drops the records of `revoked` partitions; returns how many were dropped.
    fn drop_partitions(&mut self, revoked: &[Partition]) -> usize {
        let before = self.origins.len();
        let events = std::mem::take(&mut self.events);
        let origins = std::mem::take(&mut self.origins);
        for (event, origin) in events.into_iter().zip(origins) {
            let (t, p, _) = &origin;
            if !revoked
                .iter()
                .any(|(rt, rp)| rt.as_str() == &**t && rp == p)
            {
                self.events.push(event);
                self.origins.push(origin);
            }
        }
        before - self.origins.len()
    }
}

/// Commits offsets on its own thread, so a commit's round trip to the broker overlaps reading
/// the next batch.
struct Committer {
    request: Option<mpsc::Sender<()>>,
    done: mpsc::Receiver<()>,
    in_flight: bool,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    fn start(name: &str, consumer: Arc<BaseConsumer<SourceContext>>) -> std::io::Result<Self> {
        let (request, requests) = mpsc::channel::<()>();
        let (finished, done) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("commit-{name}"))
            .spawn(move || {
                while requests.recv().is_ok() {
                    consumer.context().commit(&consumer, None);
                    if finished.send(()).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self {
            request: Some(request),
            done,
            in_flight: false,
            thread: Some(thread),
        })
    }

    /// Starts committing everything in `uncommitted` (unless a commit is already running).
    fn request(&mut self) {
        if !self.in_flight
            && let Some(r) = &self.request
        {
            self.in_flight = r.send(()).is_ok();
        }
    }

    /// Waits for the running commit (if any) to succeed or fail.
    fn wait(&mut self) {
        if std::mem::take(&mut self.in_flight) {
            let _ = self.done.recv();
        }
    }

    /// Waits up to `timeout` for the running commit; true when none is running any more.
    fn wait_for(&mut self, timeout: Duration) -> bool {
        if self.in_flight {
            match self.done.recv_timeout(timeout) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => self.in_flight = false,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        !self.in_flight
    }

    /// True when a commit was running and has just ended.
    fn just_finished(&mut self) -> bool {
        self.in_flight && self.wait_for(Duration::ZERO)
    }

    fn stop(&mut self) {
        self.wait();
        self.request = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The consumer errors since the last record: counted, logged sparingly, and whether they
/// say the brokers are down.
#[derive(Default)]
struct ClientErrors {
    /// Errors since the last record, and when the first of them came.
    count: u64,
    first: Option<Instant>,
    /// Per kind of error: when it was last logged, and how many were not logged since.
    logged: Vec<(String, Instant, u64)>,
    /// When an error first said that no broker can be reached (cleared by the next record).
    down: Option<Instant>,
}

impl ClientErrors {
    fn error(&mut self, source: &str, e: &KafkaError) {
        let now = Instant::now();
        self.count += 1;
        self.first.get_or_insert(now);
        let code = e.rdkafka_error_code();
        if matches!(
            code,
            Some(
                RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::Resolve
            )
        ) {
            self.down.get_or_insert(now);
        }
        let kind = code.map_or_else(|| e.to_string(), |c| format!("{c:?}"));
        let unlogged = match self.logged.iter_mut().find(|(k, _, _)| *k == kind) {
            Some((_, at, unlogged)) if now.duration_since(*at) < ERROR_LOG_INTERVAL => {
                *unlogged += 1;
                tracing::debug!(source, error = %e, "Kafka consumer error.");
                return;
            }
            Some((_, at, unlogged)) => {
                *at = now;
                std::mem::take(unlogged)
            }
            None => {
                self.logged.push((kind, now, 0));
                0
            }
        };
        if matches!(e, KafkaError::MessageConsumptionFatal(_)) {
            tracing::error!(
                source, error = %e, errors_not_logged_since = unlogged,
                "Fatal Kafka consumer error."
            );
        } else {
            tracing::warn!(
                source, error = %e, errors_not_logged_since = unlogged,
                "Kafka consumer error; librdkafka retries by itself."
            );
        }
    }

    /// A record arrived: the brokers are reachable. (The log intervals stay.)
    fn record(&mut self, source: &str) {
        if self.count == 0 {
            return;
        }
        if let (Some(down), Some(first)) = (self.down, self.first) {
            tracing::info!(
                source, errors = self.count, brokers_unreachable_for = ?down.elapsed(),
                errors_for = ?first.elapsed(), "Kafka consumer receiving records again."
            );
        }
        self.count = 0;
        self.first = None;
        self.down = None;
    }

    fn brokers_down(&self) -> bool {
        self.down.is_some()
    }
}

pub struct KafkaSource {
    name: String,
    config: KafkaSourceConfig,
    counters: Arc<KafkaSourceCounters>,
    consumer: Option<Arc<BaseConsumer<SourceContext>>>,
    committer: Option<Committer>,
    /// A batch the channel refused, or held until the previous batch's offsets are committed;
    /// retried before anything new is read.
    pending: Option<Batch>,
    /// Records read during a backoff wait: the start of the next batch.
    carry: Batch,
    /// Partitions paused while a batch is held.
    paused: Vec<Partition>,
    errors: ClientErrors,
    /// Interned topic names for `Batch::origins`.
    topics: Vec<Arc<str>>,
    revoked: Arc<Mutex<Vec<Partition>>>,
}

impl KafkaSource {
    pub fn new(name: &str, config: KafkaSourceConfig, counters: Arc<KafkaSourceCounters>) -> Self {
        Self {
            name: name.to_string(),
            config,
            counters,
            consumer: None,
            committer: None,
            pending: None,
            carry: Batch::default(),
            paused: Vec::new(),
            errors: ClientErrors::default(),
            topics: Vec::new(),
            revoked: Arc::default(),
        }
    }

    fn err(&self, message: String) -> SourceError {
        SourceError::Other {
            source_name: self.name.clone(),
            message,
        }
    }

    fn topic(&mut self, name: &str) -> Arc<str> {
        if let Some(t) = self.topics.iter().find(|t| &***t == name) {
            return t.clone();
        }
        let t: Arc<str> = Arc::from(name);
        self.topics.push(t.clone());
        t
    }

    /// Drops what revoked partitions left in `batch`, the pending batch and the carry.
    fn apply_revocations(&mut self, batch: &mut Batch) {
        let revoked: Vec<Partition> = std::mem::take(&mut *self.revoked.lock());
        if revoked.is_empty() {
            return;
        }
        let mut dropped = batch.drop_partitions(&revoked);
        if let Some(p) = self.pending.as_mut() {
            dropped += p.drop_partitions(&revoked);
        }
        dropped += self.carry.drop_partitions(&revoked);
        if dropped > 0 {
            self.counters
                .dropped_on_revoke
                .fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::info!(
                source = %self.name, events = dropped,
                "Dropped records of revoked partitions that were not in the channel yet; \
                 their next owner reads them again."
            );
        }
    }

    fn record_event(&mut self, m: &BorrowedMessage<'_>) -> Option<Event> {
        let payload = m.payload().unwrap_or_default();
        let mut event = if self.config.flume_format {
            let mut r = crate::avro::decode::Reader::new(bytes::Bytes::copy_from_slice(payload));
            match read_event(&mut r) {
                Ok(e) => e,
                Err(e) => {
                    self.counters
                        .record_decode_fail
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        source = %self.name, topic = m.topic(), partition = m.partition(),
                        offset = m.offset(), error = %e,
                        "Record is not a Flume Avro event (useFlumeEventFormat = true); skipped."
                    );
                    return None;
                }
            }
        } else {
            Event::with_headers(Headers::new(), bytes::Bytes::copy_from_slice(payload))
        };
        let h = &mut event.headers;
        if let Some(kh) = m.headers() {
            for header in kh.iter() {
                if h.contains_key(header.key) {
                    continue;
                }
                match std::str::from_utf8(header.value.unwrap_or_default()) {
                    Ok(v) => {
                        h.insert(header.key, v);
                    }
                    Err(_) => {
                        self.counters
                            .header_decode_fail
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            source = %self.name, topic = m.topic(), partition = m.partition(),
                            offset = m.offset(), header = header.key,
                            "Kafka header value is not UTF-8; header left out."
                        );
                    }
                }
            }
        }
        if !h.contains_key("timestamp") {
            let ts = m.timestamp().to_millis().unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64)
            });
            h.insert("timestamp", ts.to_string());
        }
        if self.config.set_topic_header && !h.contains_key(&self.config.topic_header) {
            h.insert(self.config.topic_header.clone(), m.topic());
        }
        if !h.contains_key("partition") {
            h.insert("partition", m.partition().to_string());
        }
        if !h.contains_key("offset") {
            h.insert("offset", m.offset().to_string());
        }
        if let Some(key) = m.key() {
            match std::str::from_utf8(key) {
                Ok(k) => {
                    h.insert("key", k);
                }
                Err(_) => {
                    self.counters
                        .header_decode_fail
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        source = %self.name, topic = m.topic(), partition = m.partition(),
                        offset = m.offset(),
                        "Kafka record key is not UTF-8; `key` header left out."
                    );
                }
            }
        }
        Some(event)
    }

    /// Adds one polled record to `batch`.
    fn push(&mut self, batch: &mut Batch, m: &BorrowedMessage<'_>) {
        self.errors.record(&self.name);
        let origin = (self.topic(m.topic()), m.partition(), m.offset());
        let event = self.record_event(m);
        batch.events.push(event);
        batch.origins.push(origin);
    }

    fn client_error(&mut self, e: &KafkaError) {
        self.counters.consume_error.fetch_add(1, Ordering::Relaxed);
        self.errors.error(&self.name, e);
    }

    /// Reads up to `batchSize` records (starting with the carry), waiting at most
    /// `batchDurationMillis`. Client errors are counted and drained without ending the batch;
    /// a revocation seen in between ends it early, without the revoked partitions' records.
    fn read_batch(&mut self) -> Batch {
        let mut batch = std::mem::take(&mut self.carry);
        let Some(consumer) = self.consumer.clone() else {
            return batch;
        };
        let started = Instant::now();
        let deadline = started + self.config.batch_duration;
        while batch.events.len() < self.config.batch_size {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // `None` is the end of the wait, or a rebalance or commit event that poll served:
            // neither ends the batch.
            match consumer.poll(left) {
                None => {}
                Some(Err(e)) => self.client_error(&e),
                Some(Ok(m)) => self.push(&mut batch, &m),
            }
            // A rebalance ran inside that poll: keep only what still belongs to us (with a
            // cooperative assignor, records of kept partitions must not be dropped).
            if !self.revoked.lock().is_empty() {
                self.apply_revocations(&mut batch);
                break;
            }
        }
        self.counters
            .event_get_timer
            .fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        batch
    }

    /// Whether an empty batch should back off: only without an assignment or with the brokers
    /// down. Otherwise the batch already waited `batchDurationMillis` in `poll`.
    fn idle_backoff(&self, consumer: &BaseConsumer<SourceContext>) -> bool {
        self.errors.brokers_down() || consumer.assignment().map_or(true, |a| a.count() == 0)
    }

    /// Pauses `parts`, or every assigned partition, remembering them for [`Self::resume`].
    fn pause(&mut self, consumer: &BaseConsumer<SourceContext>, parts: Option<Partition>) {
        let mut tpl = TopicPartitionList::new();
        let mut add = |paused: &mut Vec<Partition>, topic: &str, partition: i32| {
            let key = (topic.to_string(), partition);
            tpl.add_partition(topic, partition);
            if !paused.contains(&key) {
                paused.push(key);
            }
        };
        match parts {
            Some((topic, partition)) => add(&mut self.paused, &topic, partition),
            None => {
                let Ok(assigned) = consumer.assignment() else {
                    return;
                };
                for e in assigned.elements() {
                    if !self
                        .paused
                        .iter()
                        .any(|(t, p)| t == e.topic() && *p == e.partition())
                    {
                        add(&mut self.paused, e.topic(), e.partition());
                    }
                }
            }
        }
        if tpl.count() > 0
            && let Err(e) = consumer.pause(&tpl)
        {
            tracing::debug!(source = %self.name, error = %e, "Cannot pause Kafka partitions.");
        }
    }

    /// Resumes what [`Self::pause`] paused: fetching restarts after the last record read.
    fn resume(&mut self, consumer: &BaseConsumer<SourceContext>) {
        if self.paused.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in self.paused.drain(..) {
            tpl.add_partition(&topic, partition);
        }
        if let Err(e) = consumer.resume(&tpl) {
            tracing::debug!(source = %self.name, error = %e, "Cannot resume Kafka partitions.");
        }
    }

    /// The backoff wait, spent in `poll` so rebalances (and the rejoin after an outage) are
    /// served while waiting. Ends early on stop, on a revocation, when a running commit ends,
    /// and — unless a batch is held — on the first record, which starts the next batch.
    /// While a batch is held the assigned partitions are paused, so records stay in Kafka.
    fn wait(&mut self, delay: Duration, stop: &StopSignal) {
        let Some(consumer) = self.consumer.clone() else {
            stop.sleep(delay);
            return;
        };
        let holding = self.pending.is_some();
        if holding {
            self.pause(&consumer, None);
        }
        let until = Instant::now() + delay;
        while !stop.is_stopped() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero()
                || self
                    .committer
                    .as_mut()
                    .is_some_and(Committer::just_finished)
            {
                return;
            }
            if self.carry.events.len() >= self.config.batch_size {
                // Only reachable if pausing failed: read nothing more.
                stop.sleep(left.min(WAIT_SLICE));
                continue;
            }
            let mut carry = std::mem::take(&mut self.carry);
            let mut read = None;
            match consumer.poll(left.min(WAIT_SLICE)) {
                None => {}
                Some(Err(e)) => self.client_error(&e),
                Some(Ok(m)) => {
                    read = Some((m.topic().to_string(), m.partition()));
                    self.push(&mut carry, &m);
                }
            }
            self.carry = carry;
            if !self.revoked.lock().is_empty() {
                let mut none = Batch::default();
                self.apply_revocations(&mut none);
                return;
            }
            match read {
                // A partition assigned since the pause (or not paused yet).
                Some(part) if holding => self.pause(&consumer, Some(part)),
                Some(_) => return,
                None => {}
            }
        }
    }
}

impl PollableSource for KafkaSource {
    fn start(&mut self) -> Result<(), SourceError> {
        let context = SourceContext {
            log: LogContext {
                component: format!("source {}", self.name),
            },
            counters: self.counters.clone(),
            uncommitted: Mutex::new(BTreeMap::new()),
            committing: Mutex::new(()),
            revoked: self.revoked.clone(),
        };
        let consumer: BaseConsumer<SourceContext> = self
            .config
            .client
            .0
            .create_with_context(context)
            .map_err(|e| self.err(format!("cannot create the Kafka consumer: {e}")))?;
        let subscribed = match &self.config.subscription {
            Subscription::Topics(t) => {
                let names: Vec<&str> = t.iter().map(String::as_str).collect();
                consumer.subscribe(&names)
            }
            Subscription::Pattern(p) => consumer.subscribe(&[p.as_str()]),
        };
        subscribed.map_err(|e| self.err(format!("cannot subscribe: {e}")))?;
        tracing::info!(
            source = %self.name, subscription = ?self.config.subscription,
            group = self.config.client.0.get("group.id").unwrap_or_default(),
            "Kafka source subscribed."
        );
        let consumer = Arc::new(consumer);
        let committer = Committer::start(&self.name, consumer.clone())
            .map_err(|e| self.err(format!("cannot start the offset committer thread: {e}")))?;
        self.consumer = Some(consumer);
        self.committer = Some(committer);
        Ok(())
    }

    fn process(&mut self, processor: &ChannelProcessor) -> Result<PollStatus, SourceError> {
        let (Some(consumer), Some(mut committer)) = (self.consumer.clone(), self.committer.take())
        else {
            return Err(self.err("the Kafka consumer is not running".into()));
        };
        let result = self.process_with(processor, &consumer, &mut committer);
        self.committer = Some(committer);
        result
    }

    fn backoff(&mut self, delay: Duration, stop: &StopSignal) {
        self.wait(delay, stop);
    }

    fn stop(&mut self) {
        if let Some(mut committer) = self.committer.take() {
            committer.stop();
        }
        if let Some(consumer) = self.consumer.take() {
            consumer.context().commit(&consumer, None);
            // Dropping the last reference closes the consumer: it leaves the group so its
            // partitions move now.
            drop(consumer);
        }
        tracing::info!(source = %self.name, "Kafka source stopped.");
    }
}

impl KafkaSource {
    fn process_with(
        &mut self,
        processor: &ChannelProcessor,
        consumer: &BaseConsumer<SourceContext>,
        committer: &mut Committer,
    ) -> Result<PollStatus, SourceError> {
        let ctx = consumer.context();
        // Offsets whose commit failed before (broker down): retry.
        if !ctx.uncommitted.lock().is_empty() {
            committer.request();
        }
        let mut empty = Batch::default();
        self.apply_revocations(&mut empty);
        let mut batch = match self.pending.take() {
            Some(p) if !p.origins.is_empty() => p,
            _ => {
                // Nothing held (any more): fetch everything again.
                self.resume(consumer);
                self.read_batch()
            }
        };
        if batch.origins.is_empty() {
            self.counters.empty.fetch_add(1, Ordering::Relaxed);
            // (A batch that did not wait, `batchDurationMillis` = 0, always backs off.)
            let waited = self.config.batch_duration >= Duration::from_millis(10);
            return Ok(if !waited || self.idle_backoff(consumer) {
                PollStatus::Backoff
            } else {
                PollStatus::Ready
            });
        }
        // The previous batch's commit must have ended, and succeeded, before this batch enters
        // the channel; until then the batch is held and the backoff serves the consumer. A
        // commit without a coordinator (broker down) waits up to `session.timeout.ms` in
        // librdkafka, so it is not waited for here.
        if !committer.wait_for(COMMIT_WAIT) || !ctx.uncommitted.lock().is_empty() {
            self.counters.commit_wait.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                source = %self.name, events = batch.origins.len(),
                "Batch held until the previous batch's offsets are committed."
            );
            self.pending = Some(batch);
            return Ok(PollStatus::Backoff);
        }
        let events: Vec<Event> = batch.events.iter().flatten().cloned().collect();
        if let Err(e) = processor.process_batch(events) {
            self.pending = Some(batch);
            return Err(e.into());
        }
        self.resume(consumer);
        // The next offset per partition of this batch, then into the shared map.
        let mut next: Vec<(Arc<str>, i32, i64)> = Vec::new();
        for (topic, partition, offset) in batch.origins.drain(..) {
            match next
                .iter_mut()
                .find(|(t, p, _)| *p == partition && Arc::ptr_eq(t, &topic))
            {
                Some(n) => n.2 = n.2.max(offset + 1),
                None => next.push((topic, partition, offset + 1)),
            }
        }
        {
            let mut offsets = ctx.uncommitted.lock();
            for (topic, partition, offset) in next {
                let n = offsets
                    .entry((topic.to_string(), partition))
                    .or_insert(offset);
                *n = (*n).max(offset);
            }
        }
        committer.request();
        Ok(PollStatus::Ready)
    }
}

impl SourceSpec for KafkaSourceConfig {
    fn build(&self, cx: &BuildSourceContext) -> Result<SourceInstance, BoxError> {
        let kafka = KafkaSourceCounters::new();
        cx.cx.register(
            ComponentType::Source,
            Arc::new(Combined(cx.counters.clone(), kafka.clone())),
        );
        Ok(SourceInstance::Polled(
            Box::new(KafkaSource::new(&cx.cx.name, self.clone(), kafka)),
            self.poll.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_topics() {
        let p = Props::from_pairs(&[
            ("kafka.bootstrap.servers", "127.0.0.1:9092"),
            ("kafka.topics", "a, b,c"),
        ]);
        let c = KafkaSourceConfig::from_props(&p).map_err(|e| e.to_string());
        let c = match c {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            c.subscription,
            Subscription::Topics(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(c.batch_size, 1000);
        assert_eq!(c.client.0.get("group.id"), Some("flume"));
        assert_eq!(c.client.0.get("enable.auto.commit"), Some("false"));
        assert!(c.set_topic_header);
    }

    #[test]
    fn revocation_drops_only_revoked_partitions() {
        let t: Arc<str> = Arc::from("t");
        let mut b = Batch::default();
        for (p, o) in [(0, 10), (1, 20), (0, 11), (2, 30)] {
            b.events.push(Some(Event::new(format!("{p}-{o}"))));
            b.origins.push((t.clone(), p, o));
        }
        let dropped = b.drop_partitions(&[("t".into(), 0), ("u".into(), 1)]);
        assert_eq!(dropped, 2);
        let left: Vec<i64> = b.origins.iter().map(|o| o.2).collect();
        assert_eq!(left, vec![20, 30]);
        assert_eq!(b.events.len(), 2);
    }

    #[test]
    fn client_errors_are_counted_rate_limited_and_clear_on_a_record() {
        let down = KafkaError::MessageConsumption(RDKafkaErrorCode::AllBrokersDown);
        let transport = KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure);
        let topic = KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition);
        let mut e = ClientErrors::default();
        e.error("r1", &topic);
        assert!(
            !e.brokers_down(),
            "an unknown topic says nothing about the brokers"
        );
        for _ in 0..5 {
            e.error("r1", &down);
            e.error("r1", &transport);
        }
        assert!(e.brokers_down());
        assert_eq!(e.count, 11);
        // Each kind logged once; its repeats within the interval are only counted.
        let unlogged: Vec<(&str, u64)> =
            e.logged.iter().map(|(k, _, n)| (k.as_str(), *n)).collect();
        assert_eq!(
            unlogged,
            vec![
                ("UnknownTopicOrPartition", 0),
                ("AllBrokersDown", 4),
                ("BrokerTransportFailure", 4)
            ]
        );
        e.record("r1");
        assert!(!e.brokers_down());
        assert_eq!(e.count, 0);
        // The interval survives the record: a flapping broker does not log every error.
        e.error("r1", &down);
        assert_eq!(e.logged[1].2, 5);
    }

    #[test]
    fn regex_is_anchored_and_topics_required() {
        let p = Props::from_pairs(&[
            ("kafka.bootstrap.servers", "h:1"),
            ("kafka.topics.regex", "logs-.*"),
        ]);
        let c = KafkaSourceConfig::from_props(&p)
            .ok()
            .map(|c| c.subscription);
        assert_eq!(c, Some(Subscription::Pattern("^logs-.*".into())));
        let p = Props::from_pairs(&[("kafka.bootstrap.servers", "h:1")]);
        let e = KafkaSourceConfig::from_props(&p)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("kafka.topics")));
    }
}
