use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;

use crate::config::{ConfigError, MAX_BATCH, Props};
use crate::kafka::{ClientKind, ClientProps, apply_passthrough, check, set_default};
use crate::metrics::{Combined, ComponentType, KafkaSinkCounters};
use crate::pipeline::{BoxError, Sink, SinkContext as BuildSinkContext, SinkSpec};

use super::sink::KafkaSink;
use super::{DEFAULT_IN_FLIGHT, DEFAULT_MESSAGE_TIMEOUT_MS, DEFAULT_TOPIC};

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
