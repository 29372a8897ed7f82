//! Every key of Kafka's Java consumer and producer (Kafka 3.x/4.x), and what sluice does with
//! it under `kafka.consumer.` / `kafka.producer.`. docs/kafka.md has the same table; a test
//! checks that every key here is listed there.

/// What happens to one Java client key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Treatment {
    /// librdkafka has the key under the same name and meaning.
    Same,
    /// librdkafka's name for it.
    Rename(&'static str),
    /// Passed on when this librdkafka knows the key, else ignored with a warning.
    IfKnown,
    /// No librdkafka meaning; ignored with a warning saying why.
    Ignore(&'static str),
    /// Refused with the reason.
    Refuse(&'static str),
    /// Translated by code (values change, or several keys combine).
    Special,
}

/// Which clients a key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum For {
    Both,
    Consumer,
    Producer,
}

use For::{Both, Consumer, Producer};
use Treatment::{IfKnown, Ignore, Refuse, Rename, Same, Special};

const JAVA_CLASS: &str = "a Java class, which sluice cannot load";
const SERDE: &str = "sluice passes keys and values as bytes (keys as UTF-8 text, like Flume's \
                     StringDeserializer)";
const METRICS: &str = "Java client metrics; sluice reports its own (docs/metrics.md)";
const LOGIN: &str = "tunes Java's SASL login modules, which librdkafka does not use";
const TLS_VERSION: &str = "OpenSSL negotiates the TLS version (1.2 or 1.3)";
const TRANSACTIONS: &str = "the Kafka sink does not use Kafka transactions: every record of a \
                            batch is acknowledged before the channel transaction commits";

/// `(key, client, treatment)`, sorted by key.
pub const JAVA_KEYS: &[(&str, For, Treatment)] = &[
    ("acks", Producer, Same),
    ("allow.auto.create.topics", Consumer, Same),
    (
        "auto.commit.interval.ms",
        Consumer,
        Ignore("offsets are committed after each channel transaction"),
    ),
    ("auto.include.jmx.reporter", Both, Ignore(METRICS)),
    ("auto.offset.reset", Consumer, Special),
    ("batch.size", Producer, Same),
    (
        "bootstrap.servers",
        Both,
        Refuse("set kafka.bootstrap.servers instead"),
    ),
    ("buffer.memory", Producer, Special),
    ("check.crcs", Consumer, Same),
    ("client.dns.lookup", Both, Same),
    ("client.id", Both, Same),
    ("client.rack", Both, Same),
    ("compression.gzip.level", Producer, Special),
    ("compression.lz4.level", Producer, Special),
    ("compression.type", Producer, Same),
    ("compression.zstd.level", Producer, Special),
    ("connections.max.idle.ms", Both, Same),
    (
        "default.api.timeout.ms",
        Consumer,
        Ignore("sluice bounds each consumer call itself"),
    ),
    (
        "delivery.timeout.ms",
        Producer,
        Rename("message.timeout.ms"),
    ),
    (
        "enable.auto.commit",
        Consumer,
        Refuse("sluice commits offsets itself, after the channel transaction"),
    ),
    (
        "enable.auto.offset.store",
        Consumer,
        Refuse("sluice stores offsets itself, after the channel transaction"),
    ),
    ("enable.idempotence", Producer, Same),
    ("enable.metrics.push", Both, IfKnown),
    (
        "exclude.internal.topics",
        Consumer,
        Ignore(
            "librdkafka has no such switch; name the topics or use a pattern that does not match `__` topics",
        ),
    ),
    ("fetch.max.bytes", Consumer, Same),
    ("fetch.max.wait.ms", Consumer, Rename("fetch.wait.max.ms")),
    ("fetch.min.bytes", Consumer, Same),
    ("group.id", Consumer, Same),
    ("group.instance.id", Consumer, Same),
    ("group.protocol", Consumer, Same),
    ("group.remote.assignor", Consumer, Same),
    ("heartbeat.interval.ms", Consumer, Same),
    ("interceptor.classes", Both, Refuse(JAVA_CLASS)),
    (
        "internal.leave.group.on.close",
        Consumer,
        Ignore("librdkafka always leaves the group on close"),
    ),
    ("isolation.level", Consumer, Same),
    ("key.deserializer", Consumer, Ignore(SERDE)),
    ("key.serializer", Producer, Ignore(SERDE)),
    ("linger.ms", Producer, Same),
    (
        "max.block.ms",
        Producer,
        Ignore(
            "the sink never blocks on a full producer queue; the batch waits and rolls back after message.timeout.ms",
        ),
    ),
    ("max.in.flight.requests.per.connection", Producer, Same),
    ("max.partition.fetch.bytes", Consumer, Same),
    ("max.poll.interval.ms", Consumer, Same),
    (
        "max.poll.records",
        Consumer,
        Ignore("batchSize bounds the records per channel transaction"),
    ),
    ("max.request.size", Producer, Rename("message.max.bytes")),
    ("metadata.max.age.ms", Both, Same),
    (
        "metadata.max.idle.ms",
        Producer,
        Ignore("librdkafka keeps metadata of the topics it produces to"),
    ),
    ("metadata.recovery.strategy", Both, IfKnown),
    ("metric.reporters", Both, Ignore(METRICS)),
    ("metrics.num.samples", Both, Ignore(METRICS)),
    ("metrics.recording.level", Both, Ignore(METRICS)),
    ("metrics.sample.window.ms", Both, Ignore(METRICS)),
    ("partition.assignment.strategy", Consumer, Special),
    (
        "partitioner.adaptive.partitioning.enable",
        Producer,
        Ignore("librdkafka's partitioners are not adaptive"),
    ),
    (
        "partitioner.availability.timeout.ms",
        Producer,
        Ignore("librdkafka's partitioners are not adaptive"),
    ),
    ("partitioner.class", Producer, Special),
    (
        "partitioner.ignore.keys",
        Producer,
        Ignore("set partitioner = random to spread keyed records"),
    ),
    ("receive.buffer.bytes", Both, Special),
    ("reconnect.backoff.max.ms", Both, Same),
    ("reconnect.backoff.ms", Both, Same),
    ("request.timeout.ms", Both, Special),
    ("retries", Producer, Same),
    ("retry.backoff.max.ms", Both, Same),
    ("retry.backoff.ms", Both, Same),
    (
        "sasl.client.callback.handler.class",
        Both,
        Refuse(JAVA_CLASS),
    ),
    ("sasl.jaas.config", Both, Special),
    ("sasl.kerberos.kinit.cmd", Both, Same),
    ("sasl.kerberos.min.time.before.relogin", Both, Same),
    ("sasl.kerberos.service.name", Both, Same),
    ("sasl.kerberos.ticket.renew.jitter", Both, Ignore(LOGIN)),
    (
        "sasl.kerberos.ticket.renew.window.factor",
        Both,
        Ignore(LOGIN),
    ),
    (
        "sasl.login.callback.handler.class",
        Both,
        Refuse(JAVA_CLASS),
    ),
    ("sasl.login.class", Both, Refuse(JAVA_CLASS)),
    ("sasl.login.connect.timeout.ms", Both, Ignore(LOGIN)),
    ("sasl.login.read.timeout.ms", Both, Ignore(LOGIN)),
    ("sasl.login.refresh.buffer.seconds", Both, Ignore(LOGIN)),
    ("sasl.login.refresh.min.period.seconds", Both, Ignore(LOGIN)),
    ("sasl.login.refresh.window.factor", Both, Ignore(LOGIN)),
    ("sasl.login.refresh.window.jitter", Both, Ignore(LOGIN)),
    ("sasl.login.retry.backoff.max.ms", Both, Ignore(LOGIN)),
    ("sasl.login.retry.backoff.ms", Both, Ignore(LOGIN)),
    ("sasl.mechanism", Both, Special),
    ("sasl.oauthbearer.clock.skew.seconds", Both, Ignore(LOGIN)),
    (
        "sasl.oauthbearer.expected.audience",
        Both,
        Ignore("a broker-side setting"),
    ),
    (
        "sasl.oauthbearer.expected.issuer",
        Both,
        Ignore("a broker-side setting"),
    ),
    (
        "sasl.oauthbearer.jwks.endpoint.refresh.ms",
        Both,
        Ignore("a broker-side setting"),
    ),
    (
        "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms",
        Both,
        Ignore("a broker-side setting"),
    ),
    (
        "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms",
        Both,
        Ignore("a broker-side setting"),
    ),
    (
        "sasl.oauthbearer.jwks.endpoint.url",
        Both,
        Ignore("a broker-side setting"),
    ),
    ("sasl.oauthbearer.scope.claim.name", Both, Ignore(LOGIN)),
    ("sasl.oauthbearer.sub.claim.name", Both, Ignore(LOGIN)),
    ("sasl.oauthbearer.token.endpoint.url", Both, Same),
    ("security.protocol", Both, Special),
    ("security.providers", Both, Refuse(JAVA_CLASS)),
    ("send.buffer.bytes", Both, Special),
    ("session.timeout.ms", Consumer, Same),
    (
        "socket.connection.setup.timeout.max.ms",
        Both,
        Ignore("librdkafka has one connection setup timeout, socket.connection.setup.timeout.ms"),
    ),
    ("socket.connection.setup.timeout.ms", Both, Same),
    ("ssl.cipher.suites", Both, Special),
    ("ssl.disableTLSHostnameVerification", Both, Special),
    ("ssl.enabled.protocols", Both, Ignore(TLS_VERSION)),
    ("ssl.endpoint.identification.algorithm", Both, Special),
    ("ssl.engine.factory.class", Both, Refuse(JAVA_CLASS)),
    ("ssl.key.password", Both, Special),
    (
        "ssl.keymanager.algorithm",
        Both,
        Ignore("a Java key manager factory; OpenSSL reads the key directly"),
    ),
    ("ssl.keystore.certificate.chain", Both, Special),
    ("ssl.keystore.key", Both, Special),
    ("ssl.keystore.location", Both, Special),
    ("ssl.keystore.password", Both, Special),
    ("ssl.keystore.type", Both, Special),
    ("ssl.protocol", Both, Ignore(TLS_VERSION)),
    (
        "ssl.provider",
        Both,
        Ignore("a Java security provider; sluice uses OpenSSL"),
    ),
    (
        "ssl.secure.random.implementation",
        Both,
        Ignore("OpenSSL's random generator is used"),
    ),
    (
        "ssl.trustmanager.algorithm",
        Both,
        Ignore("a Java trust manager factory; OpenSSL verifies certificates"),
    ),
    ("ssl.truststore.certificates", Both, Special),
    ("ssl.truststore.location", Both, Special),
    ("ssl.truststore.password", Both, Special),
    ("ssl.truststore.type", Both, Special),
    ("transaction.timeout.ms", Producer, Refuse(TRANSACTIONS)),
    ("transactional.id", Producer, Refuse(TRANSACTIONS)),
    ("value.deserializer", Consumer, Ignore(SERDE)),
    ("value.serializer", Producer, Ignore(SERDE)),
];

/// The treatment of a Java client key, if it is one.
pub fn lookup(key: &str) -> Option<(For, Treatment)> {
    JAVA_KEYS
        .binary_search_by(|(k, _, _)| (*k).cmp(key))
        .ok()
        .map(|i| (JAVA_KEYS[i].1, JAVA_KEYS[i].2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for w in JAVA_KEYS.windows(2) {
            assert!(w[0].0 < w[1].0, "{} / {}", w[0].0, w[1].0);
        }
    }

    #[test]
    fn same_and_renamed_keys_are_librdkafka_properties() {
        for (key, _, t) in JAVA_KEYS {
            let name = match t {
                Same => *key,
                Rename(to) => to,
                _ => continue,
            };
            let mut c = rdkafka::ClientConfig::new();
            c.set(name, "x");
            if let Err(e) = c.create_native_config() {
                assert!(
                    !e.to_string().contains("No such configuration property"),
                    "{key} -> {name}: {e}"
                );
            }
        }
    }

    #[test]
    fn docs_list_every_key() {
        let docs = include_str!("../../../docs/kafka.md");
        for (key, _, _) in JAVA_KEYS {
            assert!(
                docs.contains(&format!("`{key}`")),
                "docs/kafka.md does not list `{key}`"
            );
        }
    }
}
