//! What the Kafka source and sink share: turning Flume's `kafka.consumer.*` /
//! `kafka.producer.*` keys (Java client names) into librdkafka properties, TLS and SASL
//! (Java key and trust stores, JAAS), and routing librdkafka's log and error callbacks into
//! `tracing`.
//!
//! Mapping rules ([`keys::JAVA_KEYS`] lists every Java client key; docs/kafka.md has the
//! table):
//! - names librdkafka understands as they are pass through (`acks`, `linger.ms`,
//!   `session.timeout.ms`, ...), and so does any librdkafka property;
//! - Java names with another librdkafka spelling are renamed (`fetch.max.wait.ms` →
//!   `fetch.wait.max.ms`, `max.request.size` → `message.max.bytes`, `buffer.memory` →
//!   `queue.buffering.max.kbytes` in KiB, ...), and Java class-name values are translated
//!   (`partition.assignment.strategy`, `partitioner.class`);
//! - Java-only settings with no effect on the data (serializers, `max.poll.records`, metrics)
//!   are ignored with a warning saying why; settings the component owns
//!   (`enable.auto.commit`) or Java classes that would change behaviour are refused with the
//!   reason;
//! - stores, JAAS and the SASL mechanism are handled by [`security`].
//!
//! Every resulting property is checked with librdkafka's own parser at config time
//! (`create_native_config` does no I/O), so a misspelt key fails `sluice check` naming the
//! file, line and key.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::config::{ConfigError, Props};

pub mod keys;
mod security;
pub mod stores;

use keys::Treatment;

/// librdkafka properties whose `Debug` (shown by `sluice check`) hides secrets.
#[derive(Clone, Default)]
pub struct ClientProps(pub ClientConfig);

impl std::fmt::Debug for ClientProps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        let mut keys: Vec<(&String, &String)> = self.0.config_map().iter().collect();
        keys.sort();
        for (k, v) in keys {
            if k.contains("password") || k.contains("secret") || k == "ssl.key.pem" {
                m.entry(k, &"<redacted>");
            } else if k.ends_with(".pem") {
                m.entry(k, &format!("<PEM, {} bytes>", v.len()));
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
    Ignore(String),
    /// A key store, trust store or SASL key: read by [`security::apply`] with the others.
    Security,
}

/// Why a Kafka client property is refused.
#[derive(Debug, thiserror::Error)]
pub enum PropertyError {
    #[error("invalid value `{value}`; expected {expected}")]
    Invalid {
        value: String,
        expected: &'static str,
    },
    #[error(
        "StickyAssignor has no librdkafka equivalent; use CooperativeStickyAssignor \
         (cooperative-sticky), range or roundrobin"
    )]
    StickyAssignor,
    #[error("unknown assignor `{0}`")]
    UnknownAssignor(String),
    #[error(
        "`{0}` has no librdkafka equivalent; set kafka.producer.partitioner to one of \
         librdkafka's: murmur2_random (the Java client's placement of keyed records), \
         consistent_random (sluice's default), random, consistent, murmur2, fnv1a, fnv1a_random"
    )]
    Partitioner(String),
    #[error("cannot be set: {0}")]
    Refused(&'static str),
    #[error(
        "is neither a key of Kafka's Java client (docs/kafka.md lists them all) nor a \
         librdkafka property"
    )]
    Unknown,
    #[error("librdkafka (sluice's Kafka client) rejects it: {}", rejection(source))]
    Rejected { source: KafkaError },
}

/// librdkafka's own message for a config error, else the error.
fn rejection(e: &KafkaError) -> String {
    match e {
        KafkaError::ClientConfig(_, msg, _, _) => msg.clone(),
        other => other.to_string(),
    }
}

fn map_key(
    kind: ClientKind,
    key: &str,
    value: &str,
    all: &BTreeMap<String, String>,
) -> Result<Mapped, PropertyError> {
    let set = |k: &str, v: &str| Ok(Mapped::Set(k.to_string(), v.to_string()));
    let treatment = keys::lookup(key).map(|(_, t)| t);
    match treatment {
        None | Some(Treatment::Same) => return set(key, value),
        Some(Treatment::Rename(to)) => return set(to, value),
        Some(Treatment::Ignore(why)) => return Ok(Mapped::Ignore(why.to_string())),
        Some(Treatment::Refuse(why)) => return Err(PropertyError::Refused(why)),
        Some(Treatment::IfKnown) => {
            return match check(key, value) {
                Err(PropertyError::Unknown) => Ok(Mapped::Ignore(
                    "this librdkafka has no such property".to_string(),
                )),
                _ => set(key, value),
            };
        }
        Some(Treatment::Special) => {}
    }
    match key {
        "buffer.memory" => {
            let bytes: u64 = value.parse().map_err(|_| PropertyError::Invalid {
                value: value.to_string(),
                expected: "a number of bytes",
            })?;
            set(
                "queue.buffering.max.kbytes",
                &(bytes / 1024).max(1).to_string(),
            )
        }
        "auto.offset.reset" => set(key, if value == "none" { "error" } else { value }),
        "compression.gzip.level" | "compression.lz4.level" | "compression.zstd.level" => {
            let codec = key.split('.').nth(1).unwrap_or_default();
            match all.get("compression.type") {
                Some(t) if t.trim().eq_ignore_ascii_case(codec) => set("compression.level", value),
                _ => Ok(Mapped::Ignore(format!(
                    "compression.type is not {codec}, so its level does not apply"
                ))),
            }
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
        "partitioner.class" => match value.rsplit('.').next().unwrap_or(value) {
            // Java's default places keyed records by murmur2 and spreads the rest.
            "DefaultPartitioner" => set("partitioner", "murmur2_random"),
            // Keys ignored, as in Java (librdkafka spreads records at random).
            "UniformStickyPartitioner" => set("partitioner", "random"),
            _ => Err(PropertyError::Partitioner(value.to_string())),
        },
        "receive.buffer.bytes" | "send.buffer.bytes" => {
            // Java's -1 (the OS default) is librdkafka's 0.
            let v = if value.trim() == "-1" { "0" } else { value };
            set(&format!("socket.{key}"), v)
        }
        // The consumer's request timeout is librdkafka's network request timeout; the
        // producer's is the acknowledgement timeout, as in Java.
        "request.timeout.ms" if kind == ClientKind::Consumer => set("socket.timeout.ms", value),
        "request.timeout.ms" => set(key, value),
        "security.protocol" => set(key, &value.trim().to_ascii_lowercase()),
        "sasl.mechanism" => set(key, &value.trim().to_ascii_uppercase()),
        "ssl.cipher.suites" if value.contains("_WITH_") => Ok(Mapped::Ignore(
            "these are Java (IANA) cipher suite names; librdkafka takes OpenSSL's cipher list \
             syntax (e.g. ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256), set under \
             the same key"
                .to_string(),
        )),
        "ssl.cipher.suites" => set(key, value),
        "ssl.disableTLSHostnameVerification" => {
            let off = match value.trim().to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(PropertyError::Invalid {
                        value: value.to_string(),
                        expected: "true or false",
                    });
                }
            };
            set(
                "ssl.endpoint.identification.algorithm",
                if off { "none" } else { "https" },
            )
        }
        // Java disables host name verification with an empty value.
        "ssl.endpoint.identification.algorithm" if value.trim().is_empty() => set(key, "none"),
        "ssl.endpoint.identification.algorithm" => set(key, &value.trim().to_ascii_lowercase()),
        _ => Ok(Mapped::Security),
    }
}

/// Reads `<prefix>*` (e.g. `kafka.consumer.`) into `config`, mapped and checked, then the
/// TLS and SASL settings (key and trust stores read here, so errors show at load time).
pub fn apply_passthrough(
    p: &Props,
    prefix: &str,
    kind: ClientKind,
    config: &mut ClientConfig,
) -> Result<(), ConfigError> {
    let all: BTreeMap<String, String> = p.children(prefix).into_iter().collect();
    for (key, value) in &all {
        let full = format!("{prefix}{key}");
        match map_key(kind, key, value, &all).map_err(|m| p.error(&full, m.to_string()))? {
            Mapped::Ignore(why) => {
                tracing::warn!(
                    "{}: {}{full} is ignored: {why}.",
                    p.place(&full),
                    p.prefix()
                );
                p.show_as(&full, format!("{value} (ignored)"));
            }
            Mapped::Set(k, v) => {
                check(&k, &v).map_err(|m| p.error(&full, m.to_string()))?;
                if &k != key || &v != value {
                    p.show_as(&full, format!("{value} (librdkafka: {k} = {v})"));
                }
                config.set(k, v);
            }
            Mapped::Security => {}
        }
    }
    security::apply(p, prefix, &all, config)
}

/// Checks one property with librdkafka's parser (no I/O).
pub fn check(key: &str, value: &str) -> Result<(), PropertyError> {
    let mut c = ClientConfig::new();
    c.set(key, value);
    match c.create_native_config() {
        Ok(_) => Ok(()),
        Err(source) if rejection(&source).contains("No such configuration property") => {
            Err(PropertyError::Unknown)
        }
        Err(source) => Err(PropertyError::Rejected { source }),
    }
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
        let c = &self.component;
        // librdkafka retries every one of these (reconnecting with backoff); records wait in
        // the channel (sink) or in Kafka (source) meanwhile.
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication) => tracing::error!(
                component = %c,
                "Kafka authentication failed: {reason}. Check the sasl.* keys (mechanism, user \
                 name, password or sasl.jaas.config); nothing is lost, the client retries."
            ),
            Some(RDKafkaErrorCode::SSL) => tracing::error!(
                component = %c,
                "Kafka TLS handshake failed: {reason}. Check ssl.truststore.* (the CA that \
                 signed the broker's certificate), ssl.keystore.* (when the broker requires a \
                 client certificate) and ssl.endpoint.identification.algorithm; nothing is \
                 lost, the client retries."
            ),
            // Broker-down and similar transport errors: warn only.
            _ => tracing::warn!(component = %c, error = %error, "Kafka client: {reason}."),
        }
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

        for (k, v, why) in [
            (
                "kafka.consumer.enable.auto.commit",
                "true",
                "commits offsets itself",
            ),
            (
                "kafka.consumer.no.such.key",
                "1",
                "neither a key of Kafka's Java client",
            ),
            ("kafka.consumer.session.timeout.ms", "soon", "rejects it"),
            ("kafka.consumer.interceptor.classes", "a.B", "Java class"),
        ] {
            let p = props(&[(k, v)]);
            let e = apply(&p, ClientKind::Consumer).err().unwrap_or_default();
            assert!(e.contains(k) && e.contains(why), "{k}: {e}");
        }
    }

    /// Applies `p`'s `kafka.consumer.` / `kafka.producer.` keys; the error as text.
    fn apply(p: &Props, kind: ClientKind) -> Result<ClientConfig, String> {
        let prefix = match kind {
            ClientKind::Consumer => "kafka.consumer.",
            ClientKind::Producer => "kafka.producer.",
        };
        let mut c = ClientConfig::new();
        apply_passthrough(p, prefix, kind, &mut c).map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn java_only_keys_are_ignored_or_translated() -> Result<(), String> {
        let p = props(&[
            ("kafka.consumer.max.poll.records", "500"),
            ("kafka.consumer.receive.buffer.bytes", "-1"),
            ("kafka.consumer.request.timeout.ms", "40000"),
            ("kafka.consumer.default.api.timeout.ms", "60000"),
            ("kafka.consumer.ssl.disableTLSHostnameVerification", "true"),
            ("kafka.consumer.security.protocol", "SSL"),
        ]);
        let c = apply(&p, ClientKind::Consumer)?;
        assert_eq!(c.get("max.poll.records"), None);
        assert_eq!(c.get("default.api.timeout.ms"), None);
        assert_eq!(c.get("socket.receive.buffer.bytes"), Some("0"));
        assert_eq!(c.get("socket.timeout.ms"), Some("40000"));
        assert_eq!(c.get("ssl.endpoint.identification.algorithm"), Some("none"));
        assert_eq!(c.get("security.protocol"), Some("ssl"));
        assert_eq!(c.get("ssl.ca.location"), Some("probe"));

        let p = props(&[
            ("kafka.producer.compression.type", "zstd"),
            ("kafka.producer.compression.zstd.level", "7"),
            ("kafka.producer.compression.gzip.level", "3"),
            (
                "kafka.producer.partitioner.class",
                "org.apache.kafka.clients.producer.internals.DefaultPartitioner",
            ),
        ]);
        let c = apply(&p, ClientKind::Producer)?;
        assert_eq!(c.get("compression.level"), Some("7"));
        assert_eq!(c.get("partitioner"), Some("murmur2_random"));
        let p = props(&[(
            "kafka.producer.partitioner.class",
            "org.apache.kafka.clients.producer.RoundRobinPartitioner",
        )]);
        let e = apply(&p, ClientKind::Producer).err().unwrap_or_default();
        assert!(e.contains("murmur2_random"), "{e}");
        Ok(())
    }

    #[test]
    fn sasl_settings_are_checked() -> Result<(), String> {
        let jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required \
                    username=\"alice\" password=\"s3cret\";";
        let p = props(&[
            ("kafka.producer.security.protocol", "SASL_PLAINTEXT"),
            ("kafka.producer.sasl.mechanism", "SCRAM-SHA-512"),
            ("kafka.producer.sasl.jaas.config", jaas),
        ]);
        let c = apply(&p, ClientKind::Producer)?;
        assert_eq!(c.get("sasl.username"), Some("alice"));
        assert_eq!(c.get("sasl.password"), Some("s3cret"));
        assert_eq!(c.get("sasl.jaas.config"), None);
        let shown = format!("{:?}", ClientProps(c));
        assert!(!shown.contains("s3cret"), "{shown}");

        for (pairs, why) in [
            (
                vec![("kafka.producer.security.protocol", "SASL_SSL")],
                "GSSAPI",
            ),
            (
                vec![
                    ("kafka.producer.security.protocol", "SASL_SSL"),
                    ("kafka.producer.sasl.mechanism", "SCRAM-SHA-256"),
                ],
                "needs kafka.producer.sasl.username",
            ),
            (
                vec![
                    ("kafka.producer.security.protocol", "SASL_PLAINTEXT"),
                    ("kafka.producer.sasl.mechanism", "PLAIN"),
                    ("kafka.producer.sasl.jaas.config", jaas),
                ],
                "does not fit sasl.mechanism = PLAIN",
            ),
            (
                vec![
                    ("kafka.producer.security.protocol", "SSL"),
                    (
                        "kafka.producer.ssl.truststore.location",
                        "/no/such/truststore.jks",
                    ),
                ],
                "cannot read /no/such/truststore.jks",
            ),
        ] {
            let e = apply(&Props::from_pairs(&pairs), ClientKind::Producer)
                .err()
                .unwrap_or_default();
            assert!(e.contains(why), "{pairs:?}: {e}");
        }
        Ok(())
    }
}
