use std::time::Duration;

use rdkafka::ClientConfig;

use crate::config::{ConfigError, MAX_MILLIS, Props};
use crate::kafka::{ClientKind, ClientProps, apply_passthrough, check, set_default};

/// Flume's `DEFAULT_TOPIC` for the channel.
pub(crate) const DEFAULT_TOPIC: &str = "flume-channel";
/// sluice's default `message.timeout.ms` for the channel's producer: a put commit waits at
/// most this long (plus a margin) for its acknowledgements before it fails.
const DEFAULT_MESSAGE_TIMEOUT_MS: u64 = 30_000;

/// `a1.channels.c1.*` for `org.apache.flume.channel.kafka.KafkaChannel`.
#[derive(Clone, Debug)]
pub struct KafkaChannelConfig {
    /// `kafka.topic` (default `flume-channel`).
    pub(crate) topic: String,
    /// Producer properties: `kafka.bootstrap.servers`, `kafka.producer.*`, `acks = all`.
    pub(crate) producer: ClientProps,
    /// Consumer properties: `kafka.bootstrap.servers`, `kafka.consumer.*` with
    /// `group.id` (default `flume`) and `auto.offset.reset` (default `earliest`).
    pub(crate) consumer: ClientProps,
    /// `parseAsFlumeEvent` (default true): values are Avro `AvroFlumeEvent`s (headers + body).
    pub(crate) parse_as_flume_event: bool,
    /// `pollTimeout` (default 500 ms): the longest one take waits for a first record.
    pub(crate) poll_timeout: Duration,
    /// `defaultPartitionId`.
    pub(crate) default_partition: Option<i32>,
    /// `partitionIdHeader`: overrides `defaultPartitionId` per event.
    pub(crate) partition_header: Option<String>,
    /// How long a put commit waits for its acknowledgements (`message.timeout.ms` + 5 s).
    pub(crate) put_wait: Duration,
}

impl KafkaChannelConfig {
    pub fn from_props(p: &Props) -> Result<Self, ConfigError> {
        // Flume translates these pre-1.7 names; so does sluice.
        let servers = match (p.get("kafka.bootstrap.servers"), p.get("brokerList")) {
            (Some(s), _) | (None, Some(s)) if !s.is_empty() => s.to_string(),
            _ => {
                return Err(p.error(
                    "kafka.bootstrap.servers",
                    "is required (the Kafka brokers that hold the channel's topic)",
                ));
            }
        };
        check("bootstrap.servers", &servers)
            .map_err(|m| p.error("kafka.bootstrap.servers", m.to_string()))?;
        let topic = match (p.get("kafka.topic"), p.get("topic")) {
            (Some(t), _) | (None, Some(t)) if !t.is_empty() => t.to_string(),
            _ => DEFAULT_TOPIC.to_string(),
        };
        if topic.contains("%{") {
            return Err(p.error(
                "kafka.topic",
                "the channel has one topic; header escapes are not expanded",
            ));
        }
        let group = match (p.get("kafka.consumer.group.id"), p.get("groupId")) {
            (Some(g), _) | (None, Some(g)) if !g.is_empty() => g.to_string(),
            _ => "flume".to_string(),
        };
        let read_smallest = match p.get("readSmallestOffset") {
            Some(_) => Some(p.bool("readSmallestOffset", false)?),
            None => None,
        };
        let _ = p.bool("migrateZookeeperOffsets", true)?;
        if let Some(zk) = p.get("zookeeperConnect").filter(|v| !v.is_empty()) {
            tracing::warn!(
                "{}: {}zookeeperConnect = {zk} is ignored: sluice does not migrate consumer \
                 offsets from ZooKeeper (Kafka 3 removed them); the group's offsets in Kafka \
                 are used.",
                p.place("zookeeperConnect"),
                p.prefix()
            );
        }

        let mut producer = ClientConfig::new();
        apply_passthrough(p, "kafka.producer.", ClientKind::Producer, &mut producer)?;
        producer.set("bootstrap.servers", &servers);
        // Flume's channel default: every in-sync replica acknowledges a put.
        set_default(&mut producer, "acks", "all");
        // A put commit sends its batch and waits; 1 ms gathers it into few requests (see the
        // Kafka sink's measurements).
        if producer.get("queue.buffering.max.ms").is_none() {
            set_default(&mut producer, "linger.ms", "1");
        }
        set_default(
            &mut producer,
            "message.timeout.ms",
            &DEFAULT_MESSAGE_TIMEOUT_MS.to_string(),
        );
        let timeout_ms: u64 = producer
            .get("message.timeout.ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MESSAGE_TIMEOUT_MS);

        let mut consumer = ClientConfig::new();
        apply_passthrough(p, "kafka.consumer.", ClientKind::Consumer, &mut consumer)?;
        consumer.set("bootstrap.servers", &servers);
        consumer.set("group.id", &group);
        if let Some(smallest) = read_smallest {
            set_default(
                &mut consumer,
                "auto.offset.reset",
                if smallest { "earliest" } else { "latest" },
            );
        }
        // Flume's channel default: a new group reads the topic from its start.
        set_default(&mut consumer, "auto.offset.reset", "earliest");
        set_default(&mut consumer, "fetch.queue.backoff.ms", "10");
        consumer.set("enable.auto.commit", "false");
        consumer.set("enable.auto.offset.store", "false");

        let default_partition = match p.get("defaultPartitionId").filter(|v| !v.is_empty()) {
            None => None,
            Some(_) => Some(p.int("defaultPartitionId", 0i32, 0..=i32::MAX)?),
        };
        Ok(Self {
            topic,
            producer: ClientProps(producer),
            consumer: ClientProps(consumer),
            parse_as_flume_event: p.bool("parseAsFlumeEvent", true)?,
            poll_timeout: p.millis("pollTimeout", 500, 1..=MAX_MILLIS)?,
            default_partition,
            partition_header: p
                .get("partitionIdHeader")
                .filter(|v| !v.is_empty())
                .map(str::to_string),
            put_wait: Duration::from_millis(timeout_ms) + Duration::from_secs(5),
        })
    }
}
