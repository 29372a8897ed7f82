use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;

use crate::config::{ConfigError, MAX_BATCH, MAX_MILLIS, Props};
use crate::kafka::{ClientKind, ClientProps, apply_passthrough, check, set_default};
use crate::metrics::{Combined, ComponentType, KafkaSourceCounters};
use crate::pipeline::{
    BoxError, PollConfig, SourceContext as BuildSourceContext, SourceInstance, SourceSpec,
};

use super::KafkaSource;

/// What the source subscribes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Subscription {
    /// `kafka.topics`: comma-separated names.
    Topics(Vec<String>),
    /// `kafka.topics.regex`, anchored with `^` as librdkafka requires.
    Pattern(String),
}

#[derive(Clone, Debug)]
pub(crate) struct KafkaSourceConfig {
    /// The librdkafka consumer properties: `kafka.bootstrap.servers`,
    /// `kafka.consumer.group.id` (default `flume`) and the mapped `kafka.consumer.*` keys.
    pub(crate) client: ClientProps,
    pub(crate) subscription: Subscription,
    /// `batchSize` (default 1000).
    pub(crate) batch_size: usize,
    /// `batchDurationMillis` (default 1000): the longest a batch waits to fill.
    pub(crate) batch_duration: Duration,
    /// `useFlumeEventFormat` (default false): values are Avro `AvroFlumeEvent`s.
    pub(crate) flume_format: bool,
    /// `setTopicHeader` (default true).
    pub(crate) set_topic_header: bool,
    /// `topicHeader` (default `topic`).
    pub(crate) topic_header: String,
    /// `backoffSleepIncrement` / `maxBackoffSleep`.
    pub(crate) poll: PollConfig,
}

impl KafkaSourceConfig {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
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
