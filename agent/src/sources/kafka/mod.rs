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
//!
//! [`PollableSource::backoff`]: crate::pipeline::PollableSource::backoff

mod client_errors;
mod committer;
mod config;
mod consumer_context;
mod source;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub(crate) use config::{KafkaSourceConfig, Subscription};
pub(crate) use source::KafkaSource;

/// How often a repeated consumer error of one kind is logged.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How long `process` waits for the previous batch's commit before it holds the next batch
/// and backs off (the commit of a healthy broker takes milliseconds; one waiting for a
/// coordinator can take `session.timeout.ms`).
const COMMIT_WAIT: Duration = Duration::from_millis(100);
/// The longest single `poll` of a backoff wait, so a stop or a finished commit is noticed.
const WAIT_SLICE: Duration = Duration::from_millis(20);

/// A topic and partition number.
type Partition = (String, i32);
