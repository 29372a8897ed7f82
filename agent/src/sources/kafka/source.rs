use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _, Message};

use crate::avro::protocol::read_event;
use crate::event::{Event, Headers};
use crate::kafka::LogContext;
use crate::lifecycle::StopSignal;
use crate::metrics::KafkaSourceCounters;
use crate::pipeline::{ChannelProcessor, PollStatus, PollableSource, SourceError};

use super::client_errors::ClientErrors;
use super::committer::Committer;
use super::consumer_context::SourceContext;
use super::{COMMIT_WAIT, KafkaSourceConfig, Partition, Subscription, WAIT_SLICE};

/// Records read but not yet in the channel, with where each came from.
#[derive(Default)]
pub(super) struct Batch {
    /// `None` for a record that was skipped (undecodable) but whose offset still counts.
    pub(super) events: Vec<Option<Event>>,
    pub(super) origins: Vec<(Arc<str>, i32, i64)>,
}

impl Batch {
    /// Drops the records of `revoked` partitions; returns how many were dropped.
    pub(super) fn drop_partitions(&mut self, revoked: &[Partition]) -> usize {
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

/// Why the source could not start; the cause of its [`SourceError::Failed`].
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("cannot create the Kafka consumer: {0}")]
    Create(#[source] KafkaError),
    #[error("cannot subscribe: {0}")]
    Subscribe(#[source] KafkaError),
    #[error("cannot start the offset committer thread: {0}")]
    Committer(#[source] std::io::Error),
}

pub(crate) struct KafkaSource {
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
    pub(crate) fn new(
        name: &str,
        config: KafkaSourceConfig,
        counters: Arc<KafkaSourceCounters>,
    ) -> Self {
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

    fn failed(&self, cause: StartError) -> SourceError {
        SourceError::Failed {
            source_name: self.name.clone(),
            cause: Arc::new(cause),
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
            .map_err(|e| self.failed(StartError::Create(e)))?;
        let subscribed = match &self.config.subscription {
            Subscription::Topics(t) => {
                let names: Vec<&str> = t.iter().map(String::as_str).collect();
                consumer.subscribe(&names)
            }
            Subscription::Pattern(p) => consumer.subscribe(&[p.as_str()]),
        };
        subscribed.map_err(|e| self.failed(StartError::Subscribe(e)))?;
        tracing::info!(
            source = %self.name, subscription = ?self.config.subscription,
            group = self.config.client.0.get("group.id").unwrap_or_default(),
            "Kafka source subscribed."
        );
        let consumer = Arc::new(consumer);
        let committer = Committer::start(&self.name, consumer.clone())
            .map_err(|e| self.failed(StartError::Committer(e)))?;
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
