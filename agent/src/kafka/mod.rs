//! What the Kafka source and sink share: turning Flume's `kafka.consumer.*` /
//! `kafka.producer.*` keys (Java client names) into librdkafka properties, and routing
//! librdkafka's log and error callbacks into `tracing`.
//!
//! Mapping rules (docs/kafka.md has the table):
//! - names librdkafka understands as they are (most of them: `acks`, `linger.ms`,
//!   `session.timeout.ms`, `security.protocol`, `sasl.mechanism`, ...) pass through;
//! - Java names with another librdkafka spelling are renamed (`fetch.max.wait.ms` →
//!   `fetch.wait.max.ms`, `max.request.size` → `message.max.bytes`, `buffer.memory` →
//!   `queue.buffering.max.kbytes` in KiB, ...), and Java class-name values are translated
//!   (`partition.assignment.strategy`);
//! - serializer/deserializer classes are ignored (sluice moves bytes), and settings the
//!   component owns (`enable.auto.commit`) or that have no librdkafka meaning (JKS trust
//!   stores, JAAS, interceptor classes) are rejected with the librdkafka key to use instead.
//!
//! Every resulting property is checked with librdkafka's own parser at config time
//! (`create_native_config` does no I/O), so a misspelt key fails `sluice check` naming the
//! file, line and key.

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

use crate::config::{ConfigError, Props};

/// librdkafka properties whose `Debug` (shown by `sluice check`) hides secrets.
#[derive(Clone, Default)]
pub struct ClientProps(pub ClientConfig);

impl std::fmt::Debug for ClientProps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        let mut keys: Vec<(&String, &String)> = self.0.config_map().iter().collect();
        keys.sort();
        for (k, v) in keys {
            if k.contains("password") || k.contains("secret") {
                m.entry(k, &"<redacted>");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

/// Which client a pass-through key is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    Consumer,
    Producer,
}

/// What to do with one Java-client key.
enum Mapped {
    Set(String, String),
    Ignore(&'static str),
}

/// Keys the component sets itself; users may not override them.
const OWNED_CONSUMER: &[(&str, &str)] = &[
    (
        "enable.auto.commit",
        "sluice commits offsets itself, after the channel transaction",
    ),
    (
        "enable.auto.offset.store",
        "sluice stores offsets itself, after the channel transaction",
    ),
    ("bootstrap.servers", "set kafka.bootstrap.servers instead"),
];
const OWNED_PRODUCER: &[(&str, &str)] =
    &[("bootstrap.servers", "set kafka.bootstrap.servers instead")];

/// Why a Kafka client property is refused.
#[derive(Debug, thiserror::Error)]
pub enum PropertyError {
    #[error("invalid value `{value}`; expected a number of bytes")]
    NotBytes {
        value: String,
        source: std::num::ParseIntError,
    },
    #[error(
        "StickyAssignor has no librdkafka equivalent; use CooperativeStickyAssignor \
         (cooperative-sticky), range or roundrobin"
    )]
    StickyAssignor,
    #[error("unknown assignor `{0}`")]
    UnknownAssignor(String),
    #[error("librdkafka reads no Java trust store; convert it to PEM and set ssl.ca.location")]
    TrustStore,
    #[error(
        "librdkafka reads PKCS#12 key stores only (ssl.keystore.location), or PEM files via \
         ssl.certificate.location and ssl.key.location"
    )]
    KeyStoreType,
    #[error(
        "librdkafka takes no JAAS config; set sasl.username and sasl.password (PLAIN, SCRAM) or \
         the sasl.kerberos.* / sasl.oauthbearer.* keys"
    )]
    Jaas,
    #[error("Java classes cannot be loaded by sluice")]
    JavaClass,
    #[error("librdkafka rejects it: {}", rejection(source))]
    Rejected { source: KafkaError },
}

/// librdkafka's own message for a config error, else the error.
fn rejection(e: &KafkaError) -> String {
    match e {
        KafkaError::ClientConfig(_, msg, _, _) => msg.clone(),
        other => other.to_string(),
    }
}

fn map_key(kind: ClientKind, key: &str, value: &str) -> Result<Mapped, PropertyError> {
    let set = |k: &str, v: &str| Ok(Mapped::Set(k.to_string(), v.to_string()));
    match key {
        "key.deserializer" | "value.deserializer" | "key.serializer" | "value.serializer" => {
            Ok(Mapped::Ignore("sluice passes keys and values as bytes"))
        }
        "auto.commit.interval.ms" if kind == ClientKind::Consumer => Ok(Mapped::Ignore(
            "offsets are committed after each channel transaction",
        )),
        "fetch.max.wait.ms" => set("fetch.wait.max.ms", value),
        "max.request.size" => set("message.max.bytes", value),
        "receive.buffer.bytes" => set("socket.receive.buffer.bytes", value),
        "send.buffer.bytes" => set("socket.send.buffer.bytes", value),
        "delivery.timeout.ms" => set("message.timeout.ms", value),
        "buffer.memory" => {
            let bytes: u64 = value.parse().map_err(|source| PropertyError::NotBytes {
                value: value.to_string(),
                source,
            })?;
            set(
                "queue.buffering.max.kbytes",
                &(bytes / 1024).max(1).to_string(),
            )
        }
        "auto.offset.reset" => {
            let v = match value {
                "none" => "error",
                other => other,
            };
            set(key, v)
        }
        "partition.assignment.strategy" => {
            let mut out = Vec::new();
            for class in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let short = class.rsplit('.').next().unwrap_or(class);
                let name = match short {
                    "RangeAssignor" | "range" => "range",
                    "RoundRobinAssignor" | "roundrobin" => "roundrobin",
                    "CooperativeStickyAssignor" | "cooperative-sticky" => "cooperative-sticky",
                    "StickyAssignor" => return Err(PropertyError::StickyAssignor),
                    other => return Err(PropertyError::UnknownAssignor(other.to_string())),
                };
                out.push(name);
            }
            set(key, &out.join(","))
        }
        "ssl.truststore.location" | "ssl.truststore.password" | "ssl.truststore.type" => {
            Err(PropertyError::TrustStore)
        }
        "ssl.keystore.type" if !value.eq_ignore_ascii_case("PKCS12") => {
            Err(PropertyError::KeyStoreType)
        }
        "ssl.keystore.type" => Ok(Mapped::Ignore("PKCS#12 is librdkafka's key store format")),
        "sasl.jaas.config" => Err(PropertyError::Jaas),
        "interceptor.classes" | "partitioner.class" | "metric.reporters" => {
            Err(PropertyError::JavaClass)
        }
        _ => set(key, value),
    }
}

/// Reads `<prefix>*` (e.g. `kafka.consumer.`) into `config`, mapped and checked.
pub fn apply_passthrough(
    p: &Props,
    prefix: &str,
    kind: ClientKind,
    config: &mut ClientConfig,
) -> Result<(), ConfigError> {
    let owned = match kind {
        ClientKind::Consumer => OWNED_CONSUMER,
        ClientKind::Producer => OWNED_PRODUCER,
    };
    for (key, value) in p.children(prefix) {
        let full = format!("{prefix}{key}");
        if let Some((_, why)) = owned.iter().find(|(k, _)| *k == key) {
            return Err(p.error(&full, format!("cannot be set: {why}")));
        }
        match map_key(kind, &key, &value).map_err(|m| p.error(&full, m.to_string()))? {
            Mapped::Ignore(why) => {
                tracing::info!(key = %full, "Kafka client setting ignored: {why}.");
            }
            Mapped::Set(k, v) => {
                check(&k, &v).map_err(|m| p.error(&full, m.to_string()))?;
                config.set(k, v);
            }
        }
    }
    Ok(())
}

/// Checks one property with librdkafka's parser (no I/O).
pub fn check(key: &str, value: &str) -> Result<(), PropertyError> {
    let mut c = ClientConfig::new();
    c.set(key, value);
    c.create_native_config()
        .map(|_| ())
        .map_err(|source| PropertyError::Rejected { source })
}

/// Sets a property the component chose, after the user's (the user's value wins when `keep`).
pub fn set_default(config: &mut ClientConfig, key: &str, value: &str) {
    if config.get(key).is_none() {
        config.set(key, value);
    }
}

/// A client context that logs librdkafka through `tracing`, tagged with the component.
pub struct LogContext {
    pub component: String,
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let c = &self.component;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(component = %c, fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(component = %c, fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(component = %c, fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(component = %c, fac, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Broker-down and similar transport errors are retried by librdkafka; warn only.
        tracing::warn!(component = %self.component, error = %error, "Kafka client: {reason}.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Props {
        Props::from_pairs(pairs)
    }

    #[test]
    fn java_names_map_to_librdkafka() {
        let p = props(&[
            ("kafka.producer.max.request.size", "2000000"),
            ("kafka.producer.buffer.memory", "33554432"),
            ("kafka.producer.linger.ms", "5"),
            (
                "kafka.producer.value.serializer",
                "org.apache.kafka.common.serialization.ByteArraySerializer",
            ),
        ]);
        let mut c = ClientConfig::new();
        apply_passthrough(&p, "kafka.producer.", ClientKind::Producer, &mut c)
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.get("message.max.bytes"), Some("2000000"));
        assert_eq!(c.get("queue.buffering.max.kbytes"), Some("32768"));
        assert_eq!(c.get("linger.ms"), Some("5"));
        assert_eq!(c.get("value.serializer"), None);
    }

    #[test]
    fn secrets_are_not_shown() {
        let mut c = ClientConfig::new();
        c.set("sasl.password", "hunter2").set("sasl.username", "me");
        let shown = format!("{:?}", ClientProps(c));
        assert!(
            !shown.contains("hunter2") && shown.contains("me"),
            "{shown}"
        );
    }

    #[test]
    fn assignor_classes_and_rejections() {
        let p = props(&[(
            "kafka.consumer.partition.assignment.strategy",
            "org.apache.kafka.clients.consumer.RoundRobinAssignor",
        )]);
        let mut c = ClientConfig::new();
        assert!(apply_passthrough(&p, "kafka.consumer.", ClientKind::Consumer, &mut c).is_ok());
        assert_eq!(c.get("partition.assignment.strategy"), Some("roundrobin"));

        for (k, v) in [
            ("kafka.consumer.enable.auto.commit", "true"),
            ("kafka.consumer.ssl.truststore.location", "/x.jks"),
            ("kafka.consumer.no.such.key", "1"),
            ("kafka.consumer.session.timeout.ms", "soon"),
        ] {
            let p = props(&[(k, v)]);
            let e = apply_passthrough(&p, "kafka.consumer.", ClientKind::Consumer, &mut c)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(k), "{k}: {e}");
        }
    }
}
