//! The Kafka channel (`org.apache.flume.channel.kafka.KafkaChannel`) against a real Apache
//! Kafka broker, and against Apache Flume 1.11's own KafkaChannel in both directions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use sluice_integration::flume::{Flume, FlumeOptions, ensure_flume_kafka};
use sluice_integration::kafka::{self, KafkaBroker};
use sluice_integration::{Sluice, free_port, read_lines, wait_for};

fn broker() -> Result<std::sync::MutexGuard<'static, KafkaBroker>> {
    Ok(kafka::lock(kafka::shared()?))
}

/// `a1.channels.c1` as a Kafka channel on `topic`, read by `group`.
fn kafka_channel(bootstrap: &str, topic: &str, group: &str, extra: &str) -> String {
    format!(
        "\
a1.channels = c1
a1.channels.c1.type = org.apache.flume.channel.kafka.KafkaChannel
a1.channels.c1.kafka.bootstrap.servers = {bootstrap}
a1.channels.c1.kafka.topic = {topic}
a1.channels.c1.kafka.consumer.group.id = {group}
a1.channels.c1.kafka.consumer.session.timeout.ms = 6000
a1.channels.c1.kafka.consumer.heartbeat.interval.ms = 1000
{extra}
"
    )
}

/// A source-only agent: `n` sequence events with headers `app = {app}` and a `key`, into the
/// channel.
fn seq_source(n: usize, app: &str) -> String {
    format!(
        "\
a1.sources = r1
a1.sources.r1.type = seq
a1.sources.r1.totalEvents = {n}
a1.sources.r1.batchSize = 100
a1.sources.r1.channels = c1
a1.sources.r1.interceptors = i1 i2
a1.sources.r1.interceptors.i1.type = static
a1.sources.r1.interceptors.i1.key = app
a1.sources.r1.interceptors.i1.value = {app}
a1.sources.r1.interceptors.i2.type = static
a1.sources.r1.interceptors.i2.key = key
a1.sources.r1.interceptors.i2.value = k-{app}
"
    )
}

/// file_roll of every event, headers and body per line.
fn file_roll(out: &Path) -> String {
    format!(
        "\
a1.sinks = k1
a1.sinks.k1.type = file_roll
a1.sinks.k1.channel = c1
a1.sinks.k1.sink.directory = {}
a1.sinks.k1.sink.rollInterval = 0
a1.sinks.k1.sink.batchSize = 100
a1.sinks.k1.sink.serializer = header_and_text
",
        out.display()
    )
}

/// One `{k=v, k2=v2} body` line split into headers and body.
fn parse_line(line: &str) -> (BTreeMap<String, String>, String) {
    let mut headers = BTreeMap::new();
    let Some((inside, body)) = line.strip_prefix('{').and_then(|r| r.split_once("} ")) else {
        return (headers, line.to_string());
    };
    for kv in inside.split(", ") {
        if let Some((k, v)) = kv.split_once('=') {
            headers.insert(k.to_string(), v.to_string());
        }
    }
    (headers, body.to_string())
}

/// Waits until `dir` holds `n` distinct bodies; returns every line parsed.
fn wait_distinct(
    dir: &Path,
    n: usize,
    timeout: Duration,
    log: impl Fn() -> String,
) -> Result<Vec<(BTreeMap<String, String>, String)>> {
    wait_for(
        &format!("{n} distinct events in {}", dir.display()),
        timeout,
        || {
            let lines = read_lines(dir);
            let distinct: BTreeSet<String> = lines.iter().map(|l| parse_line(l).1).collect();
            (distinct.len() >= n).then(|| lines.iter().map(|l| parse_line(l)).collect())
        },
    )
    .with_context(log)
}

fn expect_all(lines: &[(BTreeMap<String, String>, String)], n: usize, app: &str) -> Result<usize> {
    let bodies: BTreeSet<&str> = lines.iter().map(|(_, b)| b.as_str()).collect();
    let missing: Vec<String> = (0..n)
        .map(|i| i.to_string())
        .filter(|b| !bodies.contains(b.as_str()))
        .take(5)
        .collect();
    ensure!(missing.is_empty(), "lost events, e.g. {missing:?}");
    for (h, b) in lines {
        ensure!(
            h.get("app").map(String::as_str) == Some(app),
            "event {b} lost its headers: {h:?}"
        );
        ensure!(
            h.get("key").map(String::as_str) == Some(&format!("k-{app}")),
            "event {b} lost its key: {h:?}"
        );
    }
    Ok(lines.len() - bodies.len())
}

/// Puts `n` events with one agent that has no sink, then takes them with another that has no
/// source: its first sink cannot deliver (rollbacks, redelivered in the process), it is
/// SIGKILLed with a take open, and after the restart every event arrives once the receiver
/// is up. A further agent of the same group then finds nothing left: offsets were committed.
#[test]
fn rollback_and_sigkill_lose_nothing() -> Result<()> {
    let _serial = kafka::serial();
    let b = broker()?;
    let dir = tempfile::tempdir()?;
    let topic = "kc-crash";
    b.create_topic(topic, 2)?;
    let n = 3000;

    let put_conf = format!(
        "{}{}",
        seq_source(n, "web"),
        kafka_channel(&b.bootstrap, topic, "g-crash", "")
    );
    let put = Sluice::start(dir.path(), "put", &put_conf, &[])?;
    wait_for("every put committed", Duration::from_secs(60), || {
        (put.counter("CHANNEL.c1", "EventPutSuccessCount").ok()? >= n as u64).then_some(())
    })
    .with_context(|| put.log_text())?;
    ensure!(
        b.record_count(topic)? == n as i64,
        "the topic holds every event"
    );
    drop(put);

    // The taker's Avro sink points at a port where nothing listens yet.
    let port = free_port()?;
    let take_conf = format!(
        "{}
a1.sinks = k1
a1.sinks.k1.type = avro
a1.sinks.k1.channel = c1
a1.sinks.k1.hostname = 127.0.0.1
a1.sinks.k1.port = {port}
a1.sinks.k1.batch-size = 100
a1.sinks.k1.connect-timeout = 1000
a1.sinks.k1.request-timeout = 2000
",
        kafka_channel(&b.bootstrap, topic, "g-crash", "")
    );
    let mut take = Sluice::start(dir.path(), "take", &take_conf, &[])?;
    let rolled_back = |s: &Sluice, at_least: u64| -> Result<()> {
        wait_for("takes rolled back", Duration::from_secs(60), || {
            (s.counter("CHANNEL.c1", "RollbackCount").ok()? >= at_least).then_some(())
        })
        .with_context(|| format!("{:?}\n{}", s.metrics(), s.log_text()))?;
        Ok(())
    };
    rolled_back(&take, 300)?;
    ensure!(take.counter("CHANNEL.c1", "EventTakeSuccessCount")? == 0);
    take.kill9()?;

    let mut take = Sluice::start(dir.path(), "take-again", &take_conf, &[])?;
    rolled_back(&take, 100)?;
    // The receiver appears: the rolled-back events are delivered from memory, the rest read.
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    let rx_conf = format!(
        "\
a1.sources = r1
a1.channels = c1
a1.sources.r1.type = avro
a1.sources.r1.bind = 127.0.0.1
a1.sources.r1.port = {port}
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = 10000
a1.channels.c1.transactionCapacity = 1000
{}",
        file_roll(&out)
    );
    let rx = Sluice::start(dir.path(), "rx", &rx_conf, &[])?;
    let lines = wait_distinct(&out, n, Duration::from_secs(120), || take.log_text())?;
    let duplicates = expect_all(&lines, n, "web")?;
    eprintln!("kafka channel: {n} events, {duplicates} duplicates after rollbacks and SIGKILL");
    ensure!(
        duplicates <= 200,
        "{duplicates} duplicates exceed two batches"
    );
    wait_for("every take committed", Duration::from_secs(30), || {
        (take.counter("CHANNEL.c1", "EventTakeSuccessCount").ok()? >= n as u64).then_some(())
    })?;
    take.signal("TERM")?;
    take.wait(Duration::from_secs(30))?;
    drop(rx);

    // Same group again: the offsets were committed, so nothing is taken.
    let again = dir.path().join("again");
    std::fs::create_dir_all(&again)?;
    let again_conf = format!(
        "{}{}",
        kafka_channel(&b.bootstrap, topic, "g-crash", ""),
        file_roll(&again)
    );
    let a = Sluice::start(dir.path(), "again", &again_conf, &[])?;
    wait_for("the group to assign", Duration::from_secs(60), || {
        a.log_text()
            .lines()
            .any(|l| l.contains("partitions assigned") && !l.contains("partitions=[]"))
            .then_some(())
    })
    .with_context(|| a.log_text())?;
    std::thread::sleep(Duration::from_secs(2));
    ensure!(
        read_lines(&again).is_empty() && a.counter("CHANNEL.c1", "EventTakeSuccessCount")? == 0,
        "committed events were taken again"
    );
    Ok(())
}

/// Source and sink on one agent, plain bodies (`parseAsFlumeEvent = false`) on a fixed
/// partition: headers other than the key do not travel, as in Flume.
#[test]
fn plain_bodies_on_one_agent() -> Result<()> {
    let _serial = kafka::serial();
    let b = broker()?;
    let dir = tempfile::tempdir()?;
    let topic = "kc-plain";
    b.create_topic(topic, 3)?;
    let n = 500;
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    let conf = format!(
        "{}{}{}",
        seq_source(n, "web"),
        kafka_channel(
            &b.bootstrap,
            topic,
            "g-plain",
            "a1.channels.c1.parseAsFlumeEvent = false\na1.channels.c1.defaultPartitionId = 2"
        ),
        file_roll(&out)
    );
    let s = Sluice::start(dir.path(), "plain", &conf, &[])?;
    let lines = wait_distinct(&out, n, Duration::from_secs(60), || s.log_text())?;
    for (h, body) in &lines {
        ensure!(
            h.keys().collect::<Vec<_>>() == ["key"] && h["key"] == "k-web",
            "event {body}: only the key travels: {h:?}"
        );
    }
    let records = b.read_all(topic, n, Duration::from_secs(30))?;
    ensure!(records.len() == n);
    ensure!(
        records.iter().all(|r| r.partition == 2),
        "defaultPartitionId"
    );
    ensure!(
        records
            .iter()
            .all(|r| r.key.as_deref() == Some(b"k-web".as_slice())),
        "the key header is the record key"
    );
    ensure!(
        records.iter().any(|r| r.value == b"7"),
        "plain bodies in the topic"
    );
    Ok(())
}

fn flume_opts() -> Result<FlumeOptions> {
    Ok(FlumeOptions {
        lib: Some(ensure_flume_kafka()?),
        ..FlumeOptions::default()
    })
}

/// Apache Flume's KafkaChannel puts, sluice's takes; then sluice's puts and Flume's takes.
/// Headers and keys survive both ways.
#[test]
fn interop_with_flume_kafka_channel() -> Result<()> {
    let _serial = kafka::serial();
    let b = broker()?;
    let dir = tempfile::tempdir()?;
    let n = 1000;
    let opts = flume_opts()?;

    // Flume → sluice.
    let topic = "kc-from-flume";
    b.create_topic(topic, 2)?;
    let flume_put = format!(
        "{}{}",
        seq_source(n, "flume"),
        kafka_channel(&b.bootstrap, topic, "g-flume-put", "")
    );
    let mut f = Flume::start_with(dir.path(), &flume_put, "a1", &opts)?;
    wait_for("Flume's puts", Duration::from_secs(60), || {
        (f.counter("CHANNEL.c1", "EventPutSuccessCount").ok()? >= n as u64).then_some(())
    })
    .with_context(|| f.log_tail(60))?;
    f.kill()?;
    let out = dir.path().join("from-flume");
    std::fs::create_dir_all(&out)?;
    let conf = format!(
        "{}{}",
        kafka_channel(&b.bootstrap, topic, "g-sluice", ""),
        file_roll(&out)
    );
    let s = Sluice::start(dir.path(), "from-flume", &conf, &[])?;
    let lines = wait_distinct(&out, n, Duration::from_secs(60), || s.log_text())?;
    expect_all(&lines, n, "flume")?;
    drop(s);

    // sluice → Flume.
    let topic = "kc-to-flume";
    b.create_topic(topic, 2)?;
    let conf = format!(
        "{}{}",
        seq_source(n, "sluice"),
        kafka_channel(&b.bootstrap, topic, "g-sluice-put", "")
    );
    let s = Sluice::start(dir.path(), "to-flume", &conf, &[])?;
    wait_for("sluice's puts", Duration::from_secs(60), || {
        (s.counter("CHANNEL.c1", "EventPutSuccessCount").ok()? >= n as u64).then_some(())
    })
    .with_context(|| s.log_text())?;
    drop(s);
    let out = dir.path().join("to-flume");
    std::fs::create_dir_all(&out)?;
    let flume_take = format!(
        "{}{}",
        kafka_channel(&b.bootstrap, topic, "g-flume", ""),
        file_roll(&out)
    );
    let f = Flume::start_with(dir.path(), &flume_take, "a1", &opts)?;
    let lines = wait_distinct(&out, n, Duration::from_secs(90), || f.log_tail(60))?;
    expect_all(&lines, n, "sluice")?;
    Ok(())
}

/// The channel over the broker's SASL_SSL listener with Flume's keys: the producer with
/// SCRAM-SHA-256, the consumer with SCRAM-SHA-512, both through `sasl.jaas.config` and a
/// PKCS12 trust store (Flume's channel has one `kafka.bootstrap.servers` for both clients).
#[test]
fn over_sasl_ssl() -> Result<()> {
    let _serial = kafka::serial();
    let b = broker()?;
    let dir = tempfile::tempdir()?;
    let topic = "kc-tls";
    b.create_topic(topic, 2)?;
    let n = 300;
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    let pw = sluice_integration::tls::STORE_PASSWORD;
    let client = |kind: &str, mechanism: &str| {
        format!(
            "\
a1.channels.c1.kafka.{kind}.security.protocol = SASL_SSL
a1.channels.c1.kafka.{kind}.sasl.mechanism = {mechanism}
a1.channels.c1.kafka.{kind}.sasl.jaas.config = org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{user}\" password=\"{password}\";
a1.channels.c1.kafka.{kind}.ssl.truststore.location = {trust}
a1.channels.c1.kafka.{kind}.ssl.truststore.password = {pw}
",
            trust = b.stores.truststore_p12.display(),
            user = kafka::SASL_USER,
            password = kafka::SASL_PASSWORD,
        )
    };
    let keys = client("producer", "SCRAM-SHA-256") + &client("consumer", "SCRAM-SHA-512");
    let conf = format!(
        "{}{}{}",
        seq_source(n, "tls"),
        kafka_channel(&b.sasl_bootstrap, topic, "g-tls", &keys),
        file_roll(&out)
    );
    let s = Sluice::start(dir.path(), "tls", &conf, &[])?;
    let lines = wait_distinct(&out, n, Duration::from_secs(90), || s.log_text())?;
    expect_all(&lines, n, "tls")?;
    Ok(())
}
