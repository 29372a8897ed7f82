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

mod config;
mod delivery_reports;
mod sink;
#[cfg(test)]
mod tests;

pub(crate) use config::KafkaSinkConfig;

/// Flume's `DEFAULT_TOPIC`.
pub(crate) const DEFAULT_TOPIC: &str = "default-flume-topic";
/// Default `inFlightBatches`.
pub(crate) const DEFAULT_IN_FLIGHT: usize = 8;
/// sluice's default `message.timeout.ms` (Java's `delivery.timeout.ms` is 120 s, librdkafka's
/// 300 s): a batch waits at most this long before it rolls back, which also bounds shutdown.
const DEFAULT_MESSAGE_TIMEOUT_MS: u64 = 30_000;
