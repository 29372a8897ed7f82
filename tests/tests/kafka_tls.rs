//! Kafka source and sink over TLS and SASL_SSL against the real broker of the Kafka suite
//! (its SSL listener requires a client certificate; its SASL_SSL listener has a SCRAM and
//! PLAIN user), configured with Flume's own keys: Java key and trust stores made by
//! `keytool`, `sasl.jaas.config`, `ssl.disableTLSHostnameVerification`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use sluice_integration::kafka::{self, KafkaBroker, SASL_PASSWORD, SASL_USER};
use sluice_integration::tls::STORE_PASSWORD;
use sluice_integration::{Sluice, read_lines, run_sluice, wait_for};

const WAIT: Duration = Duration::from_secs(90);

fn broker() -> Result<std::sync::MutexGuard<'static, KafkaBroker>> {
    Ok(kafka::lock(kafka::shared()?))
}

/// Keys of a client on the SSL listener (mutual TLS), Flume style: JKS key store, `trust` as
/// the trust store.
fn ssl_keys(prefix: &str, b: &KafkaBroker, trust: &Path) -> String {
    format!(
        "\
{prefix}.security.protocol = SSL
{prefix}.ssl.truststore.location = {trust}
{prefix}.ssl.truststore.password = {STORE_PASSWORD}
{prefix}.ssl.keystore.location = {ks}
{prefix}.ssl.keystore.password = {STORE_PASSWORD}
{prefix}.ssl.key.password = {STORE_PASSWORD}
",
        trust = trust.display(),
        ks = b.stores.client_keystore_jks.display(),
    )
}

/// Keys of a SCRAM client on the SASL_SSL listener with `password`, through a JAAS entry as
/// Flume configs carry it.
fn sasl_jaas_keys(prefix: &str, b: &KafkaBroker, mechanism: &str, password: &str) -> String {
    format!(
        "\
{prefix}.security.protocol = SASL_SSL
{prefix}.sasl.mechanism = {mechanism}
{prefix}.sasl.jaas.config = org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{SASL_USER}\" password=\"{password}\";
{prefix}.ssl.truststore.location = {trust}
{prefix}.ssl.truststore.password = {STORE_PASSWORD}
",
        trust = b.stores.truststore_p12.display(),
    )
}

fn sink(name: &str, channel: &str, bootstrap: &str, topic: &str, keys: &str) -> String {
    format!(
        "\
a1.sinks.{name}.type = org.apache.flume.sink.kafka.KafkaSink
a1.sinks.{name}.channel = {channel}
a1.sinks.{name}.kafka.bootstrap.servers = {bootstrap}
a1.sinks.{name}.kafka.topic = {topic}
a1.sinks.{name}.flumeBatchSize = 50
a1.sinks.{name}.useFlumeEventFormat = true
a1.sinks.{name}.allowTopicOverride = false
a1.sinks.{name}.kafka.producer.acks = all
a1.sinks.{name}.kafka.producer.message.timeout.ms = 5000
{keys}"
    )
}

fn source(
    name: &str,
    channel: &str,
    bootstrap: &str,
    topic: &str,
    group: &str,
    keys: &str,
) -> String {
    format!(
        "\
a1.sources.{name}.type = org.apache.flume.source.kafka.KafkaSource
a1.sources.{name}.channels = {channel}
a1.sources.{name}.kafka.bootstrap.servers = {bootstrap}
a1.sources.{name}.kafka.topics = {topic}
a1.sources.{name}.kafka.consumer.group.id = {group}
a1.sources.{name}.kafka.consumer.auto.offset.reset = earliest
a1.sources.{name}.useFlumeEventFormat = true
a1.sources.{name}.batchSize = 50
a1.sources.{name}.batchDurationMillis = 200
a1.sources.{name}.backoffSleepIncrement = 100
a1.sources.{name}.maxBackoffSleep = 500
{keys}"
    )
}

fn file_roll(name: &str, channel: &str, dir: &Path) -> String {
    format!(
        "\
a1.sinks.{name}.type = file_roll
a1.sinks.{name}.channel = {channel}
a1.sinks.{name}.sink.directory = {}
a1.sinks.{name}.sink.rollInterval = 0
a1.sinks.{name}.sink.serializer = header_and_text
",
        dir.display()
    )
}

/// seq → SSL sink (mutual TLS, JKS stores) → `tls-a` → SASL_SSL source (SCRAM-SHA-512 by
/// JAAS) → SASL_SSL sink (SCRAM-SHA-256 by `sasl.username`/`sasl.password`, host name
/// verified) → `tls-b` → SSL source (PKCS12 trust store) → file_roll: every event arrives once,
/// with its interceptor header.
#[test]
fn tls_and_sasl_ssl_round_trip_with_flume_keys() -> Result<()> {
    let _serial = kafka::serial();
    let b = broker()?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    b.create_topic("tls-a", 2)?;
    b.create_topic("tls-b", 1)?;
    let n = 300u64;
    let scram256 = format!(
        "\
a1.sinks.k2.kafka.producer.security.protocol = SASL_SSL
a1.sinks.k2.kafka.producer.sasl.mechanism = SCRAM-SHA-256
a1.sinks.k2.kafka.producer.sasl.username = {SASL_USER}
a1.sinks.k2.kafka.producer.sasl.password = {SASL_PASSWORD}
a1.sinks.k2.kafka.producer.ssl.disableTLSHostnameVerification = false
a1.sinks.k2.kafka.producer.ssl.truststore.location = {}
a1.sinks.k2.kafka.producer.ssl.truststore.password = {STORE_PASSWORD}
",
        b.stores.truststore_jks.display()
    );
    let conf = format!(
        "\
a1.sources = r1 r2 r3
a1.channels = c1 c2 c3
a1.sinks = k1 k2 k3
a1.sources.r1.type = seq
a1.sources.r1.totalEvents = {n}
a1.sources.r1.batchSize = 50
a1.sources.r1.channels = c1
a1.sources.r1.interceptors = i1
a1.sources.r1.interceptors.i1.type = static
a1.sources.r1.interceptors.i1.key = app
a1.sources.r1.interceptors.i1.value = web
a1.channels.c1.type = memory
a1.channels.c2.type = memory
a1.channels.c3.type = memory
{k1}{r2}{k2}{r3}{k3}",
        k1 = sink(
            "k1",
            "c1",
            &b.ssl_bootstrap,
            "tls-a",
            &ssl_keys("a1.sinks.k1.kafka.producer", &b, &b.stores.truststore_jks),
        ),
        r2 = source(
            "r2",
            "c2",
            &b.sasl_bootstrap,
            "tls-a",
            "tls-r2",
            &sasl_jaas_keys(
                "a1.sources.r2.kafka.consumer",
                &b,
                "SCRAM-SHA-512",
                SASL_PASSWORD
            ),
        ),
        k2 = sink("k2", "c2", &b.sasl_bootstrap, "tls-b", &scram256),
        r3 = source(
            "r3",
            "c3",
            &b.ssl_bootstrap,
            "tls-b",
            "tls-r3",
            &ssl_keys("a1.sources.r3.kafka.consumer", &b, &b.stores.truststore_p12),
        ),
        k3 = file_roll("k3", "c3", &out),
    );

    let (rc, stdout, stderr) = run_sluice(&["check", "-n", "a1", "-f", &{
        let p = dir.path().join("check.conf");
        std::fs::write(&p, &conf)?;
        p.display().to_string()
    }])?;
    ensure!(rc == 0, "sluice check refused the TLS config:\n{stderr}");
    for secret in [SASL_PASSWORD, STORE_PASSWORD, "PRIVATE KEY"] {
        ensure!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "sluice check shows a secret ({secret}):\n{stdout}\n{stderr}"
        );
    }

    let agent = Sluice::start(dir.path(), "tls", &conf, &[])?;
    let lines = wait_for("every event through TLS and SASL_SSL", WAIT, || {
        let lines = read_lines(&out);
        (lines.len() as u64 >= n).then_some(lines)
    })
    .with_context(|| {
        format!(
            "records: tls-a {:?}, tls-b {:?}; metrics {:?}\n{}",
            b.record_count("tls-a").ok(),
            b.record_count("tls-b").ok(),
            agent.metrics().ok(),
            agent.log_text()
        )
    })?;
    // Let a duplicate show if there is one.
    std::thread::sleep(Duration::from_secs(1));
    let lines = read_lines(&out).len().max(lines.len());
    ensure!(lines as u64 == n, "{lines} lines for {n} events");
    let text = read_lines(&out).join("\n");
    ensure!(
        text.contains("app=web"),
        "the interceptor header was lost:\n{text}"
    );
    ensure!(agent.counter("SINK.k1", "EventDrainSuccessCount")? == n);
    ensure!(agent.counter("SINK.k2", "EventDrainSuccessCount")? == n);
    Ok(())
}

/// A wrong store password and a missing Kerberos build are config errors naming the key; an
/// untrusted broker certificate and a wrong SCRAM password at run time are logged clearly and
/// lose nothing: once the config is fixed (reloaded), every event is delivered exactly once.
#[test]
fn bad_credentials_give_clear_errors_and_lose_nothing() -> Result<()> {
    let _serial = kafka::serial();
    let b = broker()?;
    let dir = tempfile::tempdir()?;

    // Load-time errors, as `sluice check` shows them.
    let base = "a1.sources = r1\na1.channels = c1\na1.sinks = k1\na1.sources.r1.type = seq\n\
                a1.sources.r1.channels = c1\na1.channels.c1.type = memory\n";
    let trust = b.stores.truststore_jks.display().to_string();
    let ks = b.stores.client_keystore_jks.display().to_string();
    for (keys, expect) in [
        (
            format!(
                "a1.sinks.k1.kafka.producer.security.protocol = SSL\n\
                 a1.sinks.k1.kafka.producer.ssl.truststore.location = {trust}\n\
                 a1.sinks.k1.kafka.producer.ssl.truststore.password = wrong\n"
            ),
            "ssl.truststore.location",
        ),
        (
            format!(
                "a1.sinks.k1.kafka.producer.security.protocol = SSL\n\
                 a1.sinks.k1.kafka.producer.ssl.truststore.location = {trust}\n\
                 a1.sinks.k1.kafka.producer.ssl.keystore.location = {ks}\n\
                 a1.sinks.k1.kafka.producer.ssl.keystore.password = {STORE_PASSWORD}\n\
                 a1.sinks.k1.kafka.producer.ssl.key.password = wrong\n"
            ),
            "the key password is wrong",
        ),
        (
            "a1.sinks.k1.kafka.producer.security.protocol = SASL_SSL\n\
             a1.sinks.k1.kafka.producer.sasl.mechanism = GSSAPI\n\
             a1.sinks.k1.kafka.producer.sasl.kerberos.service.name = kafka\n"
                .to_string(),
            "GSSAPI",
        ),
    ] {
        let conf = format!("{base}{}", sink("k1", "c1", &b.sasl_bootstrap, "t", &keys));
        let p = dir.path().join("bad.conf");
        std::fs::write(&p, &conf)?;
        let (rc, _, stderr) = run_sluice(&["check", "-n", "a1", "-f", &p.display().to_string()])?;
        ensure!(rc == 2, "check accepted:\n{conf}\n{stderr}");
        ensure!(
            stderr.contains("bad.conf:") && stderr.contains(expect),
            "expected `{expect}` with the file and line:\n{stderr}"
        );
        ensure!(
            !stderr.contains(STORE_PASSWORD),
            "the password is shown:\n{stderr}"
        );
    }

    // Run-time errors: k1 trusts another CA, k2 has a wrong SCRAM password, r3 (a source) has
    // a wrong SCRAM password for records already in Kafka.
    b.create_topic("bad-untrusted", 1)?;
    b.create_topic("bad-scram", 1)?;
    b.create_topic("bad-source", 1)?;
    let n = 120u64;
    let records: Vec<(Option<String>, Vec<u8>)> = (0..n)
        .map(|i| (None, format!("kafka-{i}").into_bytes()))
        .collect();
    b.produce("bad-source", &records)?;
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    let conf = |fixed: bool| {
        let other = b.stores.other_truststore_jks.as_path();
        let trust = if fixed {
            b.stores.truststore_jks.as_path()
        } else {
            other
        };
        let password = if fixed {
            SASL_PASSWORD
        } else {
            "not-the-password"
        };
        let mut r3 = source(
            "r3",
            "c3",
            &b.sasl_bootstrap,
            "bad-source",
            "bad-r3",
            &sasl_jaas_keys(
                "a1.sources.r3.kafka.consumer",
                &b,
                "SCRAM-SHA-256",
                password,
            ),
        );
        r3 = r3.replace("a1.sources.r3.useFlumeEventFormat = true\n", "");
        format!(
            "\
a1.sources = r1 r3
a1.channels = c1 c2 c3
a1.sinks = k1 k2 k3
a1.sources.r1.type = seq
a1.sources.r1.totalEvents = {n}
a1.sources.r1.batchSize = 20
a1.sources.r1.channels = c1 c2
a1.channels.c1.type = memory
a1.channels.c2.type = memory
a1.channels.c3.type = memory
{k1}{k2}{r3}{k3}",
            k1 = sink(
                "k1",
                "c1",
                &b.ssl_bootstrap,
                "bad-untrusted",
                &ssl_keys("a1.sinks.k1.kafka.producer", &b, trust),
            ),
            k2 = sink(
                "k2",
                "c2",
                &b.sasl_bootstrap,
                "bad-scram",
                &sasl_jaas_keys("a1.sinks.k2.kafka.producer", &b, "SCRAM-SHA-256", password),
            ),
            k3 = file_roll("k3", "c3", &out),
        )
    };
    let agent = Sluice::start(dir.path(), "bad", &conf(false), &["--reload-interval", "1"])?;
    wait_for("the TLS and SASL failures in the log", WAIT, || {
        let log = agent.log_text();
        (log.contains("Kafka TLS handshake failed") && log.contains("Kafka authentication failed"))
            .then_some(())
    })
    .with_context(|| agent.log_text())?;
    // Give the source time to show it reads nothing without the right password.
    std::thread::sleep(Duration::from_secs(3));
    let log = agent.log_text();
    ensure!(
        log.contains("certificate verify failed"),
        "the TLS error does not say why:\n{log}"
    );
    ensure!(
        !log.contains("not-the-password") && !log.contains(STORE_PASSWORD),
        "a secret is in the log"
    );
    ensure!(agent.counter("SINK.k1", "EventDrainSuccessCount")? == 0);
    ensure!(agent.counter("SINK.k2", "EventDrainSuccessCount")? == 0);
    ensure!(b.record_count("bad-untrusted")? == 0 && b.record_count("bad-scram")? == 0);
    ensure!(
        read_lines(&out).is_empty(),
        "the source read without the password"
    );

    std::fs::write(&agent.conf, conf(true))?;
    wait_for("every event once the config is fixed", WAIT, || {
        let done = b.record_count("bad-untrusted").ok()? as u64 >= n
            && b.record_count("bad-scram").ok()? as u64 >= n
            && read_lines(&out).len() as u64 >= n;
        done.then_some(())
    })
    .with_context(|| agent.log_text())?;
    std::thread::sleep(Duration::from_secs(1));
    ensure!(b.record_count("bad-untrusted")? as u64 == n);
    ensure!(b.record_count("bad-scram")? as u64 == n);
    ensure!(read_lines(&out).len() as u64 == n);
    Ok(())
}

/// Java client keys real Flume configs carry: `sluice check` maps them, ignores Java-only ones
/// with a warning saying why, and refuses the rest with the reason (never librdkafka's message
/// alone).
#[test]
fn java_client_keys_are_mapped_ignored_or_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let base = "\
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.channels.c1.type = memory
a1.sources.r1.type = org.apache.flume.source.kafka.KafkaSource
a1.sources.r1.channels = c1
a1.sources.r1.kafka.bootstrap.servers = 127.0.0.1:9092
a1.sources.r1.kafka.topics = t
a1.sinks.k1.type = org.apache.flume.sink.kafka.KafkaSink
a1.sinks.k1.channel = c1
a1.sinks.k1.kafka.bootstrap.servers = 127.0.0.1:9092
";
    let check = |extra: &str| -> Result<(i32, String, String)> {
        let p = dir.path().join("keys.conf");
        std::fs::write(&p, format!("{base}{extra}"))?;
        run_sluice(&["check", "-n", "a1", "-f", &p.display().to_string()])
    };
    let (rc, stdout, stderr) = check(
        "\
a1.sources.r1.kafka.consumer.max.poll.records = 500
a1.sources.r1.kafka.consumer.key.deserializer = org.apache.kafka.common.serialization.StringDeserializer
a1.sources.r1.kafka.consumer.fetch.max.wait.ms = 200
a1.sources.r1.kafka.consumer.security.protocol = SSL
a1.sources.r1.kafka.consumer.ssl.disableTLSHostnameVerification = true
a1.sinks.k1.kafka.producer.max.block.ms = 1000
a1.sinks.k1.kafka.producer.compression.type = zstd
a1.sinks.k1.kafka.producer.partitioner.class = org.apache.kafka.clients.producer.internals.DefaultPartitioner
",
    )?;
    ensure!(rc == 0, "refused:\n{stderr}");
    for warned in [
        "a1.sources.r1.kafka.consumer.max.poll.records is ignored: batchSize bounds",
        "a1.sources.r1.kafka.consumer.key.deserializer is ignored",
        "a1.sinks.k1.kafka.producer.max.block.ms is ignored",
    ] {
        ensure!(stderr.contains(warned), "no warning `{warned}`:\n{stderr}");
    }
    for shown in [
        "kafka.consumer.fetch.max.wait.ms = 200 (librdkafka: fetch.wait.max.ms = 200)",
        "kafka.consumer.ssl.disableTLSHostnameVerification = true (librdkafka: \
         ssl.endpoint.identification.algorithm = none)",
        "kafka.consumer.max.poll.records = 500 (ignored)",
        "(librdkafka: partitioner = murmur2_random)",
        "kafka.producer.compression.type = zstd",
    ] {
        ensure!(
            stdout.contains(shown),
            "`{shown}` not in the resolved config:\n{stdout}"
        );
    }
    for (extra, why) in [
        (
            "a1.sinks.k1.kafka.producer.transactional.id = t1\n",
            "does not use Kafka transactions",
        ),
        (
            "a1.sinks.k1.kafka.producer.partitioner.class = org.apache.kafka.clients.producer.RoundRobinPartitioner\n",
            "murmur2_random",
        ),
        (
            "a1.sources.r1.kafka.consumer.interceptor.classes = com.example.Audit\n",
            "a Java class",
        ),
        (
            "a1.sources.r1.kafka.consumer.no.such.setting = 1\n",
            "neither a key of Kafka's Java client",
        ),
        (
            "a1.sources.r1.kafka.consumer.session.timeout.ms = soon\n",
            "librdkafka (sluice's Kafka client) rejects it",
        ),
    ] {
        let (rc, _, stderr) = check(extra)?;
        let key = extra.split(" = ").next().unwrap_or_default();
        ensure!(
            rc == 2
                && stderr.contains(key)
                && stderr.contains(why)
                && stderr.contains("keys.conf:"),
            "`{extra}`: expected `{why}` at the key's file and line:\n{stderr}"
        );
    }
    Ok(())
}

/// Flume's global stores (`-Djavax.net.ssl.trustStore…`, else `FLUME_SSL_TRUSTSTORE_*`) and
/// Kafka's inline PEM trust store are read when a component names no store of its own: a
/// wrong global password is an error naming where the store came from.
#[test]
fn global_and_inline_trust_stores_are_read() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let stores = sluice_integration::tls::KafkaStores::create(dir.path())?;
    let conf = |extra: &str| {
        format!(
            "a1.sources = r1\na1.channels = c1\na1.sinks = k1\na1.sources.r1.type = seq\n\
             a1.sources.r1.channels = c1\na1.channels.c1.type = memory\n\
             a1.sinks.k1.type = org.apache.flume.sink.kafka.KafkaSink\n\
             a1.sinks.k1.channel = c1\n\
             a1.sinks.k1.kafka.bootstrap.servers = 127.0.0.1:9093\n\
             a1.sinks.k1.kafka.producer.security.protocol = SSL\n{extra}"
        )
    };
    let check = |text: &str, args: &[String], env: &[(&str, String)]| -> Result<(i32, String)> {
        let p = dir.path().join("global.conf");
        std::fs::write(&p, text)?;
        let out = std::process::Command::new(sluice_integration::sluice_bin()?)
            .args(["check", "-n", "a1", "-f"])
            .arg(&p)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let jks = stores.truststore_jks.display().to_string();
    let plain = conf("");
    // -D system properties, as Flume's JVM takes them.
    let d = |pw: &str| {
        vec![
            format!("-Djavax.net.ssl.trustStore={jks}"),
            format!("-Djavax.net.ssl.trustStorePassword={pw}"),
        ]
    };
    let (rc, err) = check(&plain, &d(STORE_PASSWORD), &[])?;
    ensure!(rc == 0, "the global trust store was refused:\n{err}");
    let (rc, err) = check(&plain, &d("wrong"), &[])?;
    ensure!(
        rc == 2 && err.contains("the global trust store (-Djavax.net.ssl.trustStore)"),
        "{err}"
    );
    // The environment variables Flume's scripts read.
    let env = |pw: &str| {
        vec![
            ("FLUME_SSL_TRUSTSTORE_PATH", jks.clone()),
            ("FLUME_SSL_TRUSTSTORE_PASSWORD", pw.to_string()),
        ]
    };
    let (rc, err) = check(&plain, &[], &env(STORE_PASSWORD))?;
    ensure!(rc == 0, "{err}");
    let (rc, err) = check(&plain, &[], &env("wrong"))?;
    ensure!(
        rc == 2 && err.contains("FLUME_SSL_TRUSTSTORE_PATH") && err.contains("password is wrong"),
        "{err}"
    );
    // A store the component names wins over the global one (whose password is wrong here).
    let own = conf(&format!(
        "a1.sinks.k1.kafka.producer.ssl.truststore.location = {}\n\
         a1.sinks.k1.kafka.producer.ssl.truststore.password = {STORE_PASSWORD}\n",
        stores.truststore_p12.display()
    ));
    let (rc, err) = check(&own, &[], &env("wrong"))?;
    ensure!(rc == 0, "{err}");
    // Kafka's inline PEM trust store.
    let pem = std::fs::read_to_string(&stores.ca_pem)?.replace('\n', "\\n\\\n");
    let inline = conf(&format!(
        "a1.sinks.k1.kafka.producer.ssl.truststore.certificates = {pem}\n"
    ));
    let (rc, err) = check(&inline, &[], &[])?;
    ensure!(rc == 0, "{err}");
    let garbage = conf("a1.sinks.k1.kafka.producer.ssl.truststore.certificates = not a PEM\n");
    let (rc, err) = check(&garbage, &[], &[])?;
    ensure!(
        rc == 2 && err.contains("ssl.truststore.certificates: holds no PEM certificate"),
        "{err}"
    );
    Ok(())
}
