//! `org.apache.flume.sink.kafka.KafkaSink`: publishes each taken batch to Kafka.
//!
//! A batch is sent in full, then its delivery reports are awaited (acks per
//! `kafka.producer.acks`, Flume's default `1`); its take commits only when every record was
//! acknowledged. Up to `inFlightBatches` batches (default 8) are sent before the oldest one is
//! awaited, each in its own take transaction, so the producer never idles while a batch waits
//! for its acknowledgements (Flume's sink waits after every batch). Any retriable failure
//! (broker down, leader moving, unknown topic, timeout after `message.timeout.ms`) fails that
//! batch, which rolls back and is retried after the runner's backoff; batches in flight beside
//! it commit or roll back on their own. Records that reached Kafka before a failure are sent
//! again: at least once, duplicates bounded by the failed batches, order across batches not
//! kept after a failure.
//!
//! Records Kafka can never accept (larger than `message.max.bytes` / the broker's limit,
//! an invalid topic name, a partition the topic does not have) are dropped with an error log
//! and `KafkaEventDropCount`, so one bad event cannot stall the channel forever; the rest of
//! the batch is delivered. An unknown topic is retriable (it may be created): the batch rolls
//! back and is retried, with an error log and `RollbackCount` each time.
//!
//! Per event: topic = the `topicHeader` header when `allowTopicOverride`, else `kafka.topic`
//! with `%{header}` replaced; key = the `key` header; partition = `partitionIdHeader`'s value,
//! else `defaultPartitionId`, else librdkafka's partitioner (by key); timestamp = the
//! `timestampHeader` header (ms) if set; Kafka headers = the `header.<flume> = <kafka>`
//! mappings; value = the body, or an Avro `AvroFlumeEvent` (headers + body) when
//! `useFlumeEventFormat`.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};

use crate::avro::protocol::{ProtocolError, write_event};
use crate::config::{ConfigError, MAX_BATCH, Props};
use crate::event::Event;
use crate::kafka::{ClientKind, ClientProps, LogContext, apply_passthrough, check, set_default};
use crate::metrics::{Combined, ComponentType, KafkaSinkCounters};
use crate::pipeline::{BoxError, Sink, SinkContext as BuildSinkContext, SinkError, SinkSpec};

/// Flume's `DEFAULT_TOPIC`.
pub(crate) const DEFAULT_TOPIC: &str = "default-flume-topic";
/// Default `inFlightBatches`.
pub(crate) const DEFAULT_IN_FLIGHT: usize = 8;
/// sluice's default `message.timeout.ms` (Java's `delivery.timeout.ms` is 120 s, librdkafka's
/// 300 s): a batch waits at most this long before it rolls back, which also bounds shutdown.
const DEFAULT_MESSAGE_TIMEOUT_MS: u64 = 30_000;

#[derive(Clone, Debug)]
pub(crate) struct KafkaSinkConfig {
    /// librdkafka producer properties (`kafka.bootstrap.servers`, `kafka.producer.*`).
    pub(crate) client: ClientProps,
    /// `kafka.topic` (default `default-flume-topic`), may contain `%{header}`.
    pub(crate) topic: String,
    /// Whether `topic` contains `%{`.
    pub(crate) topic_has_escapes: bool,
    /// `flumeBatchSize` (default 100).
    pub(crate) batch_size: usize,
    /// `useFlumeEventFormat` (default false).
    pub(crate) flume_format: bool,
    /// `partitionIdHeader`.
    pub(crate) partition_header: Option<String>,
    /// `defaultPartitionId`.
    pub(crate) default_partition: Option<i32>,
    /// `allowTopicOverride` (default true).
    pub(crate) allow_topic_override: bool,
    /// `topicHeader` (default `topic`).
    pub(crate) topic_header: String,
    /// `timestampHeader`.
    pub(crate) timestamp_header: Option<String>,
    /// `header.<flume header> = <kafka header>`.
    pub(crate) header_map: Vec<(String, String)>,
    /// How long `deliver` waits for the batch's reports (`message.timeout.ms` + 5 s).
    pub(crate) wait: Duration,
    /// `inFlightBatches` (sluice, default 8): batches sent before the oldest one's
    /// acknowledgements are awaited; each is its own take transaction.
    pub(crate) in_flight: usize,
}

impl KafkaSinkConfig {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
        // Flume translates these pre-1.7 names; so does sluice.
        let servers = match (p.get("kafka.bootstrap.servers"), p.get("brokerList")) {
            (Some(s), _) | (None, Some(s)) if !s.is_empty() => s.to_string(),
            _ => return Err(p.error("kafka.bootstrap.servers", "is required")),
        };
        check("bootstrap.servers", &servers)
            .map_err(|m| p.error("kafka.bootstrap.servers", m.to_string()))?;
        let topic = match (p.get("kafka.topic"), p.get("topic")) {
            (Some(t), _) | (None, Some(t)) if !t.is_empty() => t.to_string(),
            _ => DEFAULT_TOPIC.to_string(),
        };
        let batch_size = match p.get("flumeBatchSize") {
            Some(_) => p.int("flumeBatchSize", 100, 1..=MAX_BATCH)?,
            None => p.int("batchSize", 100, 1..=MAX_BATCH)?,
        };
        let mut client = ClientConfig::new();
        if let Some(acks) = p.get("requiredAcks").filter(|v| !v.is_empty()) {
            client.set("acks", acks);
        }
        apply_passthrough(p, "kafka.producer.", ClientKind::Producer, &mut client)?;
        client.set("bootstrap.servers", servers);
        set_default(&mut client, "acks", "1");
        // The sink enqueues a whole batch at once and waits for its acknowledgements before
        // taking the next. librdkafka's default 5 ms linger adds 5 ms to every batch; 0 sends
        // each batch as many small requests. 1 ms gathers the batch into few requests
        // (bench_kafka, batch 1000: 124 k events/s at 5 ms, 174 k at 0, 323 k at 1).
        if client.get("queue.buffering.max.ms").is_none() {
            set_default(&mut client, "linger.ms", "1");
        }
        set_default(
            &mut client,
            "message.timeout.ms",
            &DEFAULT_MESSAGE_TIMEOUT_MS.to_string(),
        );
        let timeout_ms: u64 = client
            .get("message.timeout.ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MESSAGE_TIMEOUT_MS);
        let default_partition = match p.get("defaultPartitionId").filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => Some(v.parse::<i32>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                p.error(
                    "defaultPartitionId",
                    format!("invalid value `{v}`; expected a partition number"),
                )
            })?),
        };
        let header_map = p
            .children("header.")
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        Ok(Self {
            client: ClientProps(client),
            topic_has_escapes: topic.contains("%{"),
            topic,
            batch_size,
            flume_format: p.bool("useFlumeEventFormat", false)?,
            partition_header: p
                .get("partitionIdHeader")
                .filter(|v| !v.is_empty())
                .map(str::to_string),
            default_partition,
            allow_topic_override: p.bool("allowTopicOverride", true)?,
            topic_header: p.string("topicHeader", "topic"),
            timestamp_header: p
                .get("timestampHeader")
                .filter(|v| !v.is_empty())
                .map(str::to_string),
            header_map,
            wait: Duration::from_millis(timeout_ms) + Duration::from_secs(5),
            in_flight: p.int("inFlightBatches", DEFAULT_IN_FLIGHT, 1..=1024)?,
        })
    }
}

/// Delivery reports of one batch in flight.
#[derive(Default)]
struct Reports {
    /// The batch's ticket; reports of a batch no longer listed (abandoned) are ignored.
    generation: u64,
    /// Records handed to librdkafka (the batch is complete when each was reported).
    sent: usize,
    /// Records librdkafka refused to take for good (dropped, never reported).
    refused: usize,
    acked: usize,
    dropped: usize,
    failed: usize,
    /// The first retriable failure of the batch.
    failure: Option<KafkaError>,
    started: Option<Instant>,
}

struct SinkContext {
    log: LogContext,
    /// The batches in flight, oldest first.
    reports: Mutex<VecDeque<Reports>>,
    /// Signalled when a batch has all its reports (they arrive on librdkafka's poll thread).
    complete: Condvar,
}

impl ClientContext for SinkContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.log.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

/// Errors no retry can fix: the record is dropped.
fn permanent(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::UnknownPartition
        )
    )
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let mut reports = self.reports.lock();
        let Some(r) = reports.iter_mut().find(|r| r.generation == opaque as u64) else {
            return;
        };
        match result {
            Ok(_) => r.acked += 1,
            Err((e, m)) if permanent(e.rdkafka_error_code()) => {
                use rdkafka::message::Message;
                r.dropped += 1;
                tracing::error!(
                    sink = %self.log.component, topic = m.topic(), bytes = m.payload_len(),
                    error = %e, "Kafka refused the event for good; it is dropped."
                );
            }
            Err((e, _)) => {
                r.failed += 1;
                if r.failure.is_none() {
                    r.failure = Some(e.clone());
                }
            }
        }
        if r.sent > 0 && r.acked + r.dropped + r.failed >= r.sent {
            self.complete.notify_all();
        }
    }
}

/// Why a batch (or the producer) failed; the cause of the sink's [`SinkError::Failed`].
#[derive(Debug, thiserror::Error)]
enum KafkaSinkError {
    #[error("cannot create the Kafka producer: {0}")]
    Create(#[source] KafkaError),
    #[error("cannot encode a Flume event: {0}")]
    Encode(#[source] ProtocolError),
    #[error("cannot send to topic `{topic}`: {source}")]
    Send {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("delivery failed: {0}; the batch will be retried")]
    Delivery(#[source] KafkaError),
    #[error("unknown Kafka batch {0}")]
    UnknownBatch(u64),
    #[error("records were not acknowledged within {0:?}")]
    Unacknowledged(Duration),
}

pub(crate) struct KafkaSink {
    name: String,
    config: KafkaSinkConfig,
    counters: Arc<KafkaSinkCounters>,
    producer: Option<ThreadedProducer<SinkContext>>,
    generation: u64,
    buf: Vec<u8>,
}

impl KafkaSink {
    pub(crate) fn new(
        name: &str,
        config: KafkaSinkConfig,
        counters: Arc<KafkaSinkCounters>,
    ) -> Self {
        Self {
            name: name.to_string(),
            config,
            counters,
            producer: None,
            generation: 0,
            buf: Vec::new(),
        }
    }

    fn err(&self, message: String) -> SinkError {
        SinkError::Delivery {
            sink: self.name.clone(),
            message,
        }
    }

    /// Counts a failed batch; the sink's error for `cause`, which stays its source.
    fn fail(&self, cause: KafkaSinkError) -> SinkError {
        self.counters.rollback.fetch_add(1, Ordering::Relaxed);
        self.counters.delivery_fail.fetch_add(1, Ordering::Relaxed);
        match cause {
            KafkaSinkError::Unacknowledged(..) | KafkaSinkError::UnknownBatch(_) => {
                self.err(cause.to_string())
            }
            _ => SinkError::Failed {
                sink: self.name.clone(),
                cause: Arc::new(cause),
            },
        }
    }
}

/// The event's topic: its `topicHeader` header when overrides are allowed, else `kafka.topic`
/// with `%{header}` replaced. Borrows when it can: this runs once per event.
fn topic_for<'a>(config: &'a KafkaSinkConfig, e: &'a Event) -> Cow<'a, str> {
    if config.allow_topic_override
        && let Some(t) = e.headers.get(&config.topic_header)
    {
        return Cow::Borrowed(t);
    }
    if !config.topic_has_escapes {
        return Cow::Borrowed(&config.topic);
    }
    Cow::Owned(substitute(&config.topic, e))
}

/// Replaces `%{name}` with the header's value (empty when absent), like Flume's BucketPath.
fn substitute(template: &str, e: &Event) -> String {
    if !template.contains("%{") {
        return template.to_string();
    }
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find("%{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            return out;
        };
        out.push_str(e.headers.get(&after[..end]).unwrap_or_default());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

impl Sink for KafkaSink {
    fn start(&mut self) -> Result<(), SinkError> {
        let context = SinkContext {
            log: LogContext {
                component: format!("sink {}", self.name),
            },
            reports: Mutex::new(VecDeque::new()),
            complete: Condvar::new(),
        };
        let producer: ThreadedProducer<SinkContext> = self
            .config
            .client
            .0
            .create_with_context(context)
            .map_err(|e| SinkError::Failed {
                sink: self.name.clone(),
                cause: Arc::new(KafkaSinkError::Create(e)),
            })?;
        self.producer = Some(producer);
        tracing::info!(sink = %self.name, topic = %self.config.topic, "Kafka sink started.");
        Ok(())
    }

    fn deliver(&mut self, events: &[Event]) -> Result<(), SinkError> {
        let ticket = self.send(events)?;
        self.finish(ticket)
    }

    fn pipeline_depth(&self) -> usize {
        self.config.in_flight
    }

    fn send(&mut self, events: &[Event]) -> Result<u64, SinkError> {
        let Some(producer) = self.producer.take() else {
            return Err(self.err("the Kafka producer is not running".into()));
        };
        let result = self.send_batch(&producer, events);
        self.producer = Some(producer);
        result
    }

    fn finish(&mut self, ticket: u64) -> Result<(), SinkError> {
        let Some(producer) = self.producer.take() else {
            return Err(self.err("the Kafka producer is not running".into()));
        };
        let result = self.wait_batch(&producer, ticket);
        self.producer = Some(producer);
        result
    }

    fn stop(&mut self) {
        if let Some(p) = self.producer.take()
            && let Err(e) = p.flush(Duration::from_secs(10))
        {
            tracing::warn!(sink = %self.name, error = %e, "Kafka producer flush on stop failed.");
        }
    }
}

impl KafkaSink {
    fn send_batch(
        &mut self,
        producer: &ThreadedProducer<SinkContext>,
        events: &[Event],
    ) -> Result<u64, SinkError> {
        self.generation += 1;
        let generation = self.generation;
        let opaque = generation as usize;
        producer.context().reports.lock().push_back(Reports {
            generation,
            started: Some(Instant::now()),
            ..Reports::default()
        });
        let result = self.send_records(producer, events, opaque);
        let mut reports = producer.context().reports.lock();
        match result {
            Ok((sent, refused)) => {
                if let Some(r) = reports.iter_mut().find(|r| r.generation == generation) {
                    r.sent = sent;
                    r.refused = refused;
                }
                Ok(generation)
            }
            Err(e) => {
                // Abandoned: its records may still be acknowledged, the batch is retried whole.
                reports.retain(|r| r.generation != generation);
                Err(e)
            }
        }
    }

    /// Hands every record of the batch to librdkafka; returns how many it took and how many
    /// it refused for good.
    fn send_records(
        &mut self,
        producer: &ThreadedProducer<SinkContext>,
        events: &[Event],
        opaque: usize,
    ) -> Result<(usize, usize), SinkError> {
        let mut sent = 0usize;
        let mut refused = 0usize;
        for e in events {
            let topic = topic_for(&self.config, e);
            let payload: &[u8] = if self.config.flume_format {
                self.buf.clear();
                write_event(&mut self.buf, e)
                    .map_err(|err| self.fail(KafkaSinkError::Encode(err)))?;
                &self.buf
            } else {
                &e.body
            };
            let record = self.record(e, &topic, payload, opaque);
            if self.send_one(producer, record, &topic, payload.len())? {
                sent += 1;
            } else {
                refused += 1;
            }
        }
        Ok((sent, refused))
    }

    /// The record of `e` for `topic`: its key, partition, timestamp and mapped headers.
    fn record<'a>(
        &'a self,
        e: &'a Event,
        topic: &'a str,
        payload: &'a [u8],
        opaque: usize,
    ) -> BaseRecord<'a, str, [u8], usize> {
        let mut record: BaseRecord<'_, str, [u8], usize> =
            BaseRecord::with_opaque_to(topic, opaque).payload(payload);
        if let Some(k) = e.headers.get("key") {
            record = record.key(k);
        }
        let partition = self
            .config
            .partition_header
            .as_ref()
            .and_then(|h| e.headers.get(h))
            .and_then(|v| match v.trim().parse::<i32>() {
                Ok(n) if n >= 0 => Some(n),
                _ => {
                    tracing::warn!(sink = %self.name, value = v,
                        "partitionIdHeader value is not a partition number; ignored.");
                    None
                }
            })
            .or(self.config.default_partition);
        if let Some(pt) = partition {
            record = record.partition(pt);
        }
        if let Some(ts) = self
            .config
            .timestamp_header
            .as_ref()
            .and_then(|h| e.headers.get(h))
            .and_then(|v| v.trim().parse::<i64>().ok())
        {
            record = record.timestamp(ts);
        }
        if !self.config.header_map.is_empty() {
            let mut hs = OwnedHeaders::new();
            for (flume, kafka) in &self.config.header_map {
                if let Some(v) = e.headers.get(flume) {
                    hs = hs.insert(Header {
                        key: kafka,
                        value: Some(v),
                    });
                }
            }
            record = record.headers(hs);
        }
        record
    }

    /// Sends one record, waiting up to `kafka.producer` wait while librdkafka's queue is full;
    /// false when Kafka refused it for good (it is dropped).
    fn send_one(
        &self,
        producer: &ThreadedProducer<SinkContext>,
        mut record: BaseRecord<'_, str, [u8], usize>,
        topic: &str,
        bytes: usize,
    ) -> Result<bool, SinkError> {
        // Read the clock only when librdkafka's queue is full, not once per record.
        let mut deadline = None;
        loop {
            match producer.send(record) {
                Ok(()) => return Ok(true),
                Err((err, back))
                    if err.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
                        && Instant::now()
                            < *deadline
                                .get_or_insert_with(|| Instant::now() + self.config.wait) =>
                {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((err, _)) if permanent(err.rdkafka_error_code()) => {
                    tracing::error!(
                        sink = %self.name, topic = %topic, bytes, error = %err,
                        "Kafka cannot take this event (check message.max.bytes / the topic \
                         name); it is dropped."
                    );
                    return Ok(false);
                }
                Err((err, _)) => {
                    return Err(self.fail(KafkaSinkError::Send {
                        topic: topic.to_string(),
                        source: err,
                    }));
                }
            }
        }
    }

    /// Waits for the delivery reports of batch `generation`.
    fn wait_batch(
        &mut self,
        producer: &ThreadedProducer<SinkContext>,
        generation: u64,
    ) -> Result<(), SinkError> {
        let deadline = Instant::now() + self.config.wait;
        let ctx = producer.context();
        let mut reports = ctx.reports.lock();
        let finished = loop {
            let Some(i) = reports.iter().position(|r| r.generation == generation) else {
                drop(reports);
                return Err(self.fail(KafkaSinkError::UnknownBatch(generation)));
            };
            let r = &reports[i];
            if r.acked + r.dropped + r.failed >= r.sent
                && let Some(r) = reports.remove(i)
            {
                break r;
            }
            if Instant::now() >= deadline {
                reports.retain(|r| r.generation != generation);
                drop(reports);
                return Err(self.fail(KafkaSinkError::Unacknowledged(self.config.wait)));
            }
            ctx.complete.wait_until(&mut reports, deadline);
        };
        drop(reports);
        let dropped = finished.dropped + finished.refused;
        if dropped > 0 {
            self.counters
                .dropped
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
        if let Some(f) = finished.failure {
            return Err(self.fail(KafkaSinkError::Delivery(f)));
        }
        if let Some(started) = finished.started {
            self.counters
                .event_send_timer
                .fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl SinkSpec for KafkaSinkConfig {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn build(&self, cx: &BuildSinkContext) -> Result<Box<dyn Sink>, BoxError> {
        let kafka = KafkaSinkCounters::new();
        cx.cx.register(
            ComponentType::Sink,
            Arc::new(Combined(cx.counters.clone(), kafka.clone())),
        );
        Ok(Box::new(KafkaSink::new(&cx.cx.name, self.clone(), kafka)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults() {
        let p = Props::from_pairs(&[("kafka.bootstrap.servers", "127.0.0.1:9092")]);
        let c = KafkaSinkConfig::from_props(&p).ok();
        let c = c.as_ref();
        assert_eq!(c.map(|c| c.topic.as_str()), Some(DEFAULT_TOPIC));
        assert_eq!(c.map(|c| c.batch_size), Some(100));
        assert_eq!(c.and_then(|c| c.client.0.get("acks")), Some("1"));
        assert_eq!(c.and_then(|c| c.client.0.get("linger.ms")), Some("1"));
        assert_eq!(c.map(|c| c.allow_topic_override), Some(true));
        let p = Props::from_pairs(&[
            ("kafka.bootstrap.servers", "127.0.0.1:9092"),
            ("kafka.producer.linger.ms", "20"),
        ]);
        let c = KafkaSinkConfig::from_props(&p).ok();
        assert_eq!(
            c.as_ref().and_then(|c| c.client.0.get("linger.ms")),
            Some("20")
        );
    }

    #[test]
    fn topic_substitution() {
        let mut e = Event::new("x");
        e.headers.insert("app", "web");
        assert_eq!(substitute("logs-%{app}-%{none}", &e), "logs-web-");
        assert_eq!(substitute("plain", &e), "plain");
        assert_eq!(substitute("bad-%{app", &e), "bad-%{app");
    }
}
