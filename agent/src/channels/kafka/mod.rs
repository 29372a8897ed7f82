//! `org.apache.flume.channel.kafka.KafkaChannel`: a channel whose events live in a Kafka
//! topic, so they survive the agent and another agent (sluice or Flume) can take them.
//!
//! Transactions:
//! - A put commit sends every event of the batch and returns only when each record was
//!   acknowledged (`acks = all` by default, as in Flume). Any failure (broker down, a refused
//!   record, `message.timeout.ms` passed) fails the commit: the source rolls back and retries,
//!   so records that reached Kafka before the failure are sent again (at least once).
//! - A take reads records with the channel's consumer (group `kafka.consumer.group.id`,
//!   default `flume`; created by the first take, so an agent that only puts never joins the
//!   group). A take commit commits the consumer offsets synchronously, after the sink
//!   delivered. Offsets never pass a record a sink still holds ([`offsets`]): sinks and
//!   pipelined batches may commit out of order. A failed offset commit is logged, counted and
//!   retried with the next commit; the delivered events are not taken again unless the agent
//!   dies first.
//! - A rolled-back take keeps its events in memory and hands them to the next take, first, in
//!   order (Flume's `failedEvents`). After a crash the uncommitted records are read again from
//!   Kafka: a SIGKILL between take and commit redelivers, it loses nothing.
//! - On a rebalance the revoked partitions' delivered offsets are committed; what was taken
//!   from them but not yet delivered no longer counts (their next owner reads it again), so a
//!   rebalance duplicates at most the batches in flight.
//!
//! Records: with `parseAsFlumeEvent` (default true) the value is Flume's Avro
//! `AvroFlumeEvent` (headers and body, byte-compatible with Flume's channel); otherwise the
//! value is the body and headers are not kept. The record key is the `key` header, and a
//! record's key becomes the `key` header. The partition is `partitionIdHeader`'s value (one that
//! is not a number is logged and ignored), else `defaultPartitionId`, else librdkafka's
//! partitioner. A record that is not a Flume event
//! while `parseAsFlumeEvent` is on is skipped with an error log and
//! `KafkaRecordDecodeFailCount` (Flume's channel fails every take on it, which stalls the
//! channel).
//!
//! The channel has no capacity of its own (the topic's retention is), so `ChannelSize` counts
//! only the events held by open takes and rolled-back takes waiting for redelivery.

mod channel;
mod config;
mod offsets;
#[cfg(test)]
mod tests;

pub use config::KafkaChannelConfig;
