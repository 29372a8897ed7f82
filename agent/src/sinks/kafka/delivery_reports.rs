use std::collections::VecDeque;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, ProducerContext};

use crate::kafka::LogContext;

/// Delivery reports of one batch in flight.
#[derive(Default)]
pub(super) struct Reports {
    /// The batch's ticket; reports of a batch no longer listed (abandoned) are ignored.
    pub(super) generation: u64,
    /// Records handed to librdkafka (the batch is complete when each was reported).
    pub(super) sent: usize,
    /// Records librdkafka refused to take for good (dropped, never reported).
    pub(super) refused: usize,
    pub(super) acked: usize,
    pub(super) dropped: usize,
    pub(super) failed: usize,
    /// The first retriable failure of the batch.
    pub(super) failure: Option<KafkaError>,
    pub(super) started: Option<Instant>,
}

pub(super) struct SinkContext {
    pub(super) log: LogContext,
    /// The batches in flight, oldest first.
    pub(super) reports: Mutex<VecDeque<Reports>>,
    /// Signalled when a batch has all its reports (they arrive on librdkafka's poll thread).
    pub(super) complete: Condvar,
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
pub(super) fn permanent(code: Option<RDKafkaErrorCode>) -> bool {
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
