use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::kafka::LogContext;
use crate::metrics::KafkaSourceCounters;

use super::Partition;

/// The consumer's callbacks, and the offset state they share with `process`.
pub(super) struct SourceContext {
    pub(super) log: LogContext,
    pub(super) counters: Arc<KafkaSourceCounters>,
    /// Next offsets of batches that are in the channel but not yet committed.
    pub(super) uncommitted: Mutex<BTreeMap<Partition, i64>>,
    /// Held for a whole commit (collect, commit, clear), so the committer thread's commit and
    /// a revocation's commit-then-forget never interleave: a commit cannot reach the broker
    /// for a partition after its revocation handed it on.
    pub(super) committing: Mutex<()>,
    /// Partitions revoked since `process` last looked (shared with
    /// [`KafkaSource`](super::KafkaSource)).
    pub(super) revoked: Arc<Mutex<Vec<Partition>>>,
}

impl SourceContext {
    /// Commits `offsets` synchronously; on failure they stay in `uncommitted`.
    pub(super) fn commit(&self, consumer: &BaseConsumer<Self>, only: Option<&[Partition]>) {
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
