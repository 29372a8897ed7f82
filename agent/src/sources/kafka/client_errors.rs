use std::time::Instant;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::ERROR_LOG_INTERVAL;

/// The consumer errors since the last record: counted, logged sparingly, and whether they
/// say the brokers are down.
#[derive(Default)]
pub(super) struct ClientErrors {
    /// Errors since the last record, and when the first of them came.
    pub(super) count: u64,
    pub(super) first: Option<Instant>,
    /// Per kind of error: when it was last logged, and how many were not logged since.
    pub(super) logged: Vec<(String, Instant, u64)>,
    /// When an error first said that no broker can be reached (cleared by the next record).
    pub(super) down: Option<Instant>,
}

impl ClientErrors {
    pub(super) fn error(&mut self, source: &str, e: &KafkaError) {
        let now = Instant::now();
        self.count += 1;
        self.first.get_or_insert(now);
        let code = e.rdkafka_error_code();
        if matches!(
            code,
            Some(
                RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::Resolve
            )
        ) {
            self.down.get_or_insert(now);
        }
        let kind = code.map_or_else(|| e.to_string(), |c| format!("{c:?}"));
        let unlogged = match self.logged.iter_mut().find(|(k, _, _)| *k == kind) {
            Some((_, at, unlogged)) if now.duration_since(*at) < ERROR_LOG_INTERVAL => {
                *unlogged += 1;
                tracing::debug!(source, error = %e, "Kafka consumer error.");
                return;
            }
            Some((_, at, unlogged)) => {
                *at = now;
                std::mem::take(unlogged)
            }
            None => {
                self.logged.push((kind, now, 0));
                0
            }
        };
        if matches!(e, KafkaError::MessageConsumptionFatal(_)) {
            tracing::error!(
                source, error = %e, errors_not_logged_since = unlogged,
                "Fatal Kafka consumer error."
            );
        } else {
            tracing::warn!(
                source, error = %e, errors_not_logged_since = unlogged,
                "Kafka consumer error; librdkafka retries by itself."
            );
        }
    }

    /// A record arrived: the brokers are reachable. (The log intervals stay.)
    pub(super) fn record(&mut self, source: &str) {
        if self.count == 0 {
            return;
        }
        if let (Some(down), Some(first)) = (self.down, self.first) {
            tracing::info!(
                source, errors = self.count, brokers_unreachable_for = ?down.elapsed(),
                errors_for = ?first.elapsed(), "Kafka consumer receiving records again."
            );
        }
        self.count = 0;
        self.first = None;
        self.down = None;
    }

    pub(super) fn brokers_down(&self) -> bool {
        self.down.is_some()
    }
}
