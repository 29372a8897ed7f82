use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use crate::avro::protocol::write_event;
use crate::event::Event;
use crate::kafka::LogContext;
use crate::metrics::KafkaSinkCounters;
use crate::pipeline::{Sink, SinkError};

use super::KafkaSinkConfig;
use super::delivery_reports::{Reports, SinkContext, permanent};

/// Why a batch (or the producer) failed; the cause of the sink's [`SinkError::Failed`].
#[derive(Debug, thiserror::Error)]
enum KafkaSinkError {
    #[error("cannot create the Kafka producer: {0}")]
    Create(#[source] KafkaError),
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
pub(super) fn topic_for<'a>(config: &'a KafkaSinkConfig, e: &'a Event) -> Cow<'a, str> {
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
pub(super) fn substitute(template: &str, e: &Event) -> String {
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
                write_event(&mut self.buf, e);
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
