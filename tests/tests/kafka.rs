//! KafkaSource and KafkaSink against a real Apache Kafka broker (KRaft, one node, started by
//! the fixture from the Maven Central jars). The tests share one broker and run one at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use sluice_integration::kafka::{self, KafkaBroker};
use sluice_integration::{Sluice, read_lines, wait_for};

/// A consumer agent: Kafka source → `channel` → file_roll (headers and body per line).
fn consumer_conf(
    bootstrap: &str,
    topic: &str,
    group: &str,
    out: &Path,
    batch: usize,
    channel: &str,
    extra: &str,
) -> String {
    format!(
        "\
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = org.apache.flume.source.kafka.KafkaSource
a1.sources.r1.channels = c1
a1.sources.r1.kafka.bootstrap.servers = {bootstrap}
a1.sources.r1.kafka.topics = {topic}
a1.sources.r1.kafka.consumer.group.id = {group}
a1.sources.r1.kafka.consumer.auto.offset.reset = earliest
a1.sources.r1.kafka.consumer.session.timeout.ms = 6000
a1.sources.r1.kafka.consumer.heartbeat.interval.ms = 1000
a1.sources.r1.batchSize = {batch}
a1.sources.r1.batchDurationMillis = 200
a1.sources.r1.backoffSleepIncrement = 100
a1.sources.r1.maxBackoffSleep = 500
{extra}
{channel}
a1.sinks.k1.type = file_roll
a1.sinks.k1.channel = c1
a1.sinks.k1.sink.directory = {out}
a1.sinks.k1.sink.rollInterval = 0
a1.sinks.k1.sink.batchSize = {batch}
a1.sinks.k1.sink.serializer = header_and_text
",
        out = out.display()
    )
}

fn memory_channel() -> String {
    "a1.channels.c1.type = memory\na1.channels.c1.capacity = 100000\n\
     a1.channels.c1.transactionCapacity = 1000\n"
        .to_string()
}

fn file_channel(dir: &Path) -> String {
    format!(
        "a1.channels.c1.type = file\na1.channels.c1.checkpointDir = {}\n\
         a1.channels.c1.dataDirs = {}\na1.channels.c1.transactionCapacity = 1000\n",
        dir.join("checkpoint").display(),
        dir.join("data").display()
    )
}

/// One file_roll line `{k=v, k2=v2} body` split into headers and body.
fn parse_line(line: &str) -> (BTreeMap<String, String>, String) {
    let mut headers = BTreeMap::new();
    let Some(rest) = line.strip_prefix('{') else {
        return (headers, line.to_string());
    };
    let Some((inside, body)) = rest.split_once("} ") else {
        return (headers, line.to_string());
    };
    for kv in inside.split(", ") {
        if let Some((k, v)) = kv.split_once('=') {
            headers.insert(k.to_string(), v.to_string());
        }
    }
    (headers, body.to_string())
}

fn bodies(dir: &Path) -> Vec<String> {
    read_lines(dir).iter().map(|l| parse_line(l).1).collect()
}

fn broker() -> Result<std::sync::MutexGuard<'static, KafkaBroker>> {
    Ok(kafka::lock(kafka::shared()?))
}

#[test]
fn round_trip_with_headers() -> Result<()> {
    let _serial = kafka::serial();
    let b = broker()?;
    let dir = tempfile::tempdir()?;
    b.create_topic("rt-flume", 2)?;
    b.create_topic("rt-plain", 1)?;
    let n = 500;

    // sluice → Kafka: Flume event format, headers from an interceptor.
    let producer_conf = format!(
        "\
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = seq
a1.sources.r1.totalEvents = {n}
a1.sources.r1.batchSize = 50
a1.sources.r1.channels = c1
a1.sources.r1.interceptors = i1
a1.sources.r1.interceptors.i1.type = static
a1.sources.r1.interceptors.i1.key = app
a1.sources.r1.interceptors.i1.value = web
a1.channels.c1.type = memory
a1.sinks.k1.type = org.apache.flume.sink.kafka.KafkaSink
a1.sinks.k1.channel = c1
a1.sinks.k1.kafka.bootstrap.servers = {bs}
a1.sinks.k1.kafka.topic = rt-flume
a1.sinks.k1.flumeBatchSize = 50
a1.sinks.k1.useFlumeEventFormat = true
a1.sinks.k1.kafka.producer.acks = all
a1.sinks.k1.kafka.producer.linger.ms = 1
",
        bs = b.bootstrap
    );
    let p = Sluice::start(dir.path(), "producer", &producer_conf, &[])?;
    wait_for("the Kafka sink to drain", Duration::from_secs(60), || {
        (p.counter("SINK.k1", "EventDrainSuccessCount").ok()? >= n).then_some(())
    })
    .with_context(|| p.log_text())?;
    assert_eq!(b.record_count("rt-flume")?, n as i64);

    // Kafka records with a key and headers, one header value not UTF-8.
    let producer = b.producer()?;
    for i in 0..3 {
        let value = format!("plain-{i}");
        let key = format!("k{i}");
        let bad: &[u8] = &[0xff, 0xfe];
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "origin",
                value: Some("test"),
            })
            .insert(Header {
                key: "raw",
                value: Some(if i == 1 { bad } else { b"ok" as &[u8] }),
            });
        producer
            .send(
                BaseRecord::to("rt-plain")
                    .payload(&value)
                    .key(&key)
                    .headers(headers),
            )
            .map_err(|(e, _)| e)?;
    }
    producer.flush(Duration::from_secs(30))?;

    // Kafka → sluice, both topics.
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    let conf = consumer_conf(
        &b.bootstrap,
        "rt-plain",
        "g-rt",
        &out,
        100,
        &memory_channel(),
        "a1.sources.r1.useFlumeEventFormat = false",
    );
    // The two topics need different formats: rt-flume is read by a second source.
    let conf = conf.replace("a1.sources = r1", "a1.sources = r1 r2")
        + &format!(
            "\
a1.sources.r2.type = org.apache.flume.source.kafka.KafkaSource
a1.sources.r2.channels = c1
a1.sources.r2.kafka.bootstrap.servers = {bs}
a1.sources.r2.kafka.topics = rt-flume
a1.sources.r2.kafka.consumer.group.id = g-rt2
a1.sources.r2.kafka.consumer.auto.offset.reset = earliest
a1.sources.r2.useFlumeEventFormat = true
a1.sources.r2.batchSize = 100
a1.sources.r2.batchDurationMillis = 200
",
            bs = b.bootstrap
        );
    let c = Sluice::start(dir.path(), "consumer", &conf, &[])?;
    let lines = wait_for(
        "every record in the output",
        Duration::from_secs(90),
        || {
            let lines = read_lines(&out);
            (lines.len() >= n as usize + 3).then_some(lines)
        },
    )
    .with_context(|| c.log_text())?;

    let parsed: Vec<_> = lines.iter().map(|l| parse_line(l)).collect();
    let flume: Vec<_> = parsed
        .iter()
        .filter(|(h, _)| h.get("topic").map(String::as_str) == Some("rt-flume"))
        .collect();
    let plain: Vec<_> = parsed
        .iter()
        .filter(|(h, _)| h.get("topic").map(String::as_str) == Some("rt-plain"))
        .collect();
    let distinct: BTreeSet<&str> = flume.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(distinct.len(), n as usize, "every seq event arrives once");
    for (h, body) in &flume {
        assert_eq!(
            h.get("app").map(String::as_str),
            Some("web"),
            "{body}: {h:?}"
        );
        for k in ["partition", "offset", "timestamp"] {
            assert!(h.contains_key(k), "{k} missing: {h:?}");
        }
    }
    assert_eq!(plain.len(), 3, "{plain:?}");
    for (h, body) in &plain {
        let i = body.trim_start_matches("plain-");
        assert_eq!(
            h.get("key").map(String::as_str),
            Some(format!("k{i}").as_str())
        );
        assert_eq!(h.get("origin").map(String::as_str), Some("test"));
        assert_eq!(h.get("partition").map(String::as_str), Some("0"));
        assert_eq!(h.contains_key("raw"), i != "1", "{h:?}");
    }
    assert_eq!(c.counter("SOURCE.r1", "KafkaHeaderDecodeFailCount")?, 1);
    assert!(c.counter("SOURCE.r2", "KafkaCommitTimer").is_ok());
    eprintln!(
        "round trip: {} Flume-format events with headers, 3 plain records with key and headers",
        distinct.len()
    );
    Ok(())
}

/// Produces `total` records `prefix-<i>` in chunks, calling `between` after each chunk.
fn produce_stream(
    b: &KafkaBroker,
    topic: &str,
    prefix: &str,
    total: usize,
    chunk: usize,
    mut between: impl FnMut(usize) -> Result<()>,
) -> Result<()> {
    let mut i = 0;
    while i < total {
        let end = (i + chunk).min(total);
        let records: Vec<(Option<String>, Vec<u8>)> = (i..end)
            .map(|j| (Some(format!("k{j}")), format!("{prefix}-{j}").into_bytes()))
            .collect();
        b.produce(topic, &records)?;
        i = end;
        between(i)?;
    }
    Ok(())
}

#[test]
fn consumer_group_survives_sigkill() -> Result<()> {
    let _serial = kafka::serial();
    let b = broker()?;
    let dir = tempfile::tempdir()?;
    let topic = "ha";
    b.create_topic(topic, 4)?;
    let batch = 100;
    let total = 20_000;

    let mut agents = Vec::new();
    let mut outs = Vec::new();
    for name in ["a", "b"] {
        let out = dir.path().join(format!("out-{name}"));
        let chan = dir.path().join(format!("chan-{name}"));
        std::fs::create_dir_all(&out)?;
        let conf = consumer_conf(
            &b.bootstrap,
            topic,
            "g-ha",
            &out,
            batch,
            &file_channel(&chan),
            "",
        );
        agents.push(Sluice::start(dir.path(), name, &conf, &[])?);
        outs.push(out);
    }
    // Both members hold partitions before the stream starts.
    for a in &agents {
        wait_for(
            "both agents to be assigned partitions",
            Duration::from_secs(60),
            || {
                let log = a.log_text();
                let assigned = log
                    .lines()
                    .rfind(|l| l.contains("Kafka partitions assigned"))?;
                (!assigned.contains("partitions=[]")).then_some(())
            },
        )
        .with_context(|| format!("{}\n---\n{}", agents[0].log_text(), agents[1].log_text()))?;
    }

    let mut killed = false;
    let started = Instant::now();
    produce_stream(&b, topic, "ha", total, 500, |sent| {
        std::thread::sleep(Duration::from_millis(100));
        if !killed && sent >= total * 2 / 5 {
            let accepted = agents[0]
                .counter("SOURCE.r1", "EventAcceptedCount")
                .unwrap_or(0);
            if accepted > 0 {
                agents[0].kill9()?;
                killed = true;
                eprintln!(
                    "SIGKILLed agent a after {sent} records produced ({accepted} accepted by a)"
                );
            }
        }
        Ok(())
    })?;
    if !killed {
        bail!(
            "agent a never accepted a record; log:\n{}",
            agents[0].log_text()
        );
    }

    let all: Vec<String> = (0..total).map(|i| format!("ha-{i}")).collect();
    let seen = wait_for(
        "every record consumed by a or b",
        Duration::from_secs(120),
        || {
            let mut got: BTreeSet<String> = BTreeSet::new();
            for o in &outs {
                got.extend(bodies(o));
            }
            (got.len() >= total).then_some(got)
        },
    )
    .with_context(|| agents[1].log_text())?;
    let missing: Vec<&String> = all.iter().filter(|x| !seen.contains(*x)).take(5).collect();
    assert!(missing.is_empty(), "lost records, e.g. {missing:?}");

    let from_a = bodies(&outs[0]);
    let from_b = bodies(&outs[1]);
    let lines = from_a.len() + from_b.len();
    let duplicates = lines - seen.len();
    let dropped = agents[1].counter("SOURCE.r1", "KafkaRevokedEventDropCount")?;
    eprintln!(
        "consumer group: {total} produced, {} consumed by a (killed), {} by b, {} distinct, \
         {duplicates} duplicates (bound: one batch of {batch} per agent per rebalance = {}); \
         b dropped {dropped} uncommitted records on revocation; {:.1?}",
        from_a.len(),
        from_b.len(),
        seen.len(),
        2 * batch,
        started.elapsed()
    );
    assert!(
        duplicates <= 2 * batch,
        "{duplicates} duplicates exceed two batches"
    );
    Ok(())
}

#[test]
fn broker_restart_loses_nothing() -> Result<()> {
    let _serial = kafka::serial();
    let mut b = broker()?;
    let dir = tempfile::tempdir()?;
    let topic = "restart";
    b.create_topic(topic, 2)?;
    let total: u64 = 3000;

    // generator → memory → Kafka sink; Kafka source → memory → file_roll.
    let producer_conf = format!(
        "\
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = seq
a1.sources.r1.totalEvents = {total}
a1.sources.r1.batchSize = 20
a1.sources.r1.channels = c1
a1.sources.r1.interceptors = i1
a1.sources.r1.interceptors.i1.type = timestamp
a1.channels.c1.type = memory
a1.channels.c1.capacity = 100000
a1.sinks.k1.type = org.apache.flume.sink.kafka.KafkaSink
a1.sinks.k1.channel = c1
a1.sinks.k1.kafka.bootstrap.servers = {bs}
a1.sinks.k1.kafka.topic = {topic}
a1.sinks.k1.flumeBatchSize = 20
a1.sinks.k1.kafka.producer.acks = all
a1.sinks.k1.kafka.producer.message.timeout.ms = 10000
a1.sinks.k1.kafka.producer.linger.ms = 100
",
        bs = b.bootstrap
    );
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    let conf = consumer_conf(
        &b.bootstrap,
        topic,
        "g-restart",
        &out,
        100,
        &memory_channel(),
        "",
    );
    let c = Sluice::start(dir.path(), "consumer", &conf, &[])?;
    // Small batches and linger.ms = 100 pace the sink at about 200 events/s, so the stream
    // is still running when the broker stops.
    let p = Sluice::start(dir.path(), "producer", &producer_conf, &[])?;
    wait_for(
        "the first records in Kafka",
        Duration::from_secs(60),
        || (p.counter("SINK.k1", "EventDrainSuccessCount").ok()? > 0).then_some(()),
    )?;
    b.stop()?;
    let drained_while_down = p.counter("SINK.k1", "EventDrainSuccessCount")?;
    std::thread::sleep(Duration::from_secs(5));
    b.start_again()?;
    eprintln!(
        "broker restarted; {drained_while_down} events had been acknowledged before the stop"
    );
    let seen = wait_for(
        "every event through Kafka",
        Duration::from_secs(180),
        || {
            let got: BTreeSet<String> = bodies(&out).into_iter().collect();
            (got.len() as u64 >= total).then_some(got)
        },
    )
    .with_context(|| format!("{}\n---\n{}", p.log_text(), c.log_text()))?;
    let lines = bodies(&out).len();
    let rollbacks = p.counter("SINK.k1", "RollbackCount")?;
    let commit_fails = c.counter("SOURCE.r1", "KafkaCommitFailCount")?;
    eprintln!(
        "broker restart: {total} generated, {} distinct consumed, {} duplicates, sink rollbacks \
         {rollbacks}, source commit failures {commit_fails}",
        seen.len(),
        lines - seen.len()
    );
    assert_eq!(seen.len() as u64, total);
    Ok(())
}

#[test]
fn bad_input_is_counted_and_the_agent_goes_on() -> Result<()> {
    let _serial = kafka::serial();
    let b = broker()?;
    let dir = tempfile::tempdir()?;
    b.create_topic("bad-ok", 1)?;

    // Sink: 5 events over message.max.bytes are dropped and counted; the batch commits.
    // A second sink sends to a topic that does not exist: it rolls back and retries.
    let conf = format!(
        "\
a1.sources = big small
a1.channels = c1 c2
a1.sinks = k1 k2
a1.sources.big.type = org.apache.flume.source.StressSource
a1.sources.big.size = 5000
a1.sources.big.maxTotalEvents = 5
a1.sources.big.batchSize = 5
a1.sources.big.channels = c1
a1.sources.small.type = seq
a1.sources.small.totalEvents = 10
a1.sources.small.batchSize = 10
a1.sources.small.channels = c2
a1.channels.c1.type = memory
a1.channels.c2.type = memory
a1.sinks.k1.type = org.apache.flume.sink.kafka.KafkaSink
a1.sinks.k1.channel = c1
a1.sinks.k1.kafka.bootstrap.servers = {bs}
a1.sinks.k1.kafka.topic = bad-ok
a1.sinks.k1.kafka.producer.message.max.bytes = 2000
a1.sinks.k2.type = org.apache.flume.sink.kafka.KafkaSink
a1.sinks.k2.channel = c2
a1.sinks.k2.kafka.bootstrap.servers = {bs}
a1.sinks.k2.kafka.topic = no-such-topic
a1.sinks.k2.kafka.producer.message.timeout.ms = 2000
",
        bs = b.bootstrap
    );
    let mut p = Sluice::start(dir.path(), "bad-sink", &conf, &[])?;
    wait_for(
        "the oversized events to be dropped",
        Duration::from_secs(60),
        || (p.counter("SINK.k1", "KafkaEventDropCount").ok()? >= 5).then_some(()),
    )
    .with_context(|| p.log_text())?;
    assert_eq!(p.counter("SINK.k1", "EventDrainSuccessCount")?, 5);
    wait_for(
        "the unknown-topic batch to roll back",
        Duration::from_secs(60),
        || (p.counter("SINK.k2", "RollbackCount").ok()? >= 1).then_some(()),
    )
    .with_context(|| p.log_text())?;
    assert_eq!(p.counter("SINK.k2", "EventDrainSuccessCount")?, 0);
    assert_eq!(p.counter("CHANNEL.c2", "ChannelSize")?, 10, "nothing lost");
    assert!(p.child.try_wait()?.is_none(), "the agent keeps running");

    // Source: an unknown topic next to a real one is reported; the real one still flows.
    b.produce("bad-ok", &[(None, b"fine".to_vec())])?;
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    let conf = consumer_conf(
        &b.bootstrap,
        "bad-ok,no-such-topic",
        "g-bad",
        &out,
        10,
        &memory_channel(),
        "",
    );
    let c = Sluice::start(dir.path(), "bad-source", &conf, &[])?;
    wait_for(
        "the record of the real topic",
        Duration::from_secs(60),
        || bodies(&out).iter().any(|l| l == "fine").then_some(()),
    )
    .with_context(|| c.log_text())?;
    let errors = c.counter("SOURCE.r1", "KafkaConsumeErrorCount")?;
    eprintln!(
        "bad input: sink dropped {} oversized events, rolled back {} unknown-topic batches; \
         source reported {errors} consumer errors for the unknown topic",
        p.counter("SINK.k1", "KafkaEventDropCount")?,
        p.counter("SINK.k2", "RollbackCount")?
    );
    assert!(errors >= 1, "{}", c.log_text());
    p.signal("TERM")?;
    p.wait(Duration::from_secs(30))?;
    Ok(())
}

/// Waits until every agent's last partition assignment is not empty.
fn wait_assigned(agents: &[Sluice]) -> Result<()> {
    for a in agents {
        wait_for(
            "every agent to be assigned partitions",
            Duration::from_secs(60),
            || {
                let log = a.log_text();
                let assigned = log
                    .lines()
                    .rfind(|l| l.contains("Kafka partitions assigned"))?;
                (!assigned.contains("partitions=[]")).then_some(())
            },
        )
        .with_context(|| {
            agents
                .iter()
                .map(Sluice::log_text)
                .collect::<Vec<_>>()
                .join("\n---\n")
        })?;
    }
    Ok(())
}

/// Counts failed deliveries of the load producer.
#[derive(Default)]
struct Deliveries {
    failed: std::sync::atomic::AtomicU64,
}

impl rdkafka::ClientContext for Deliveries {}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Produces `out-0` .. `out-<total-1>` (keyed, so every partition gets its share) at about
/// `rate` records/s, counting into `sent`; librdkafka keeps what it cannot send while the
/// broker is down and delivers it once the broker is back. Bounded: `total` records and two
/// minutes in all.
fn produce_paced(
    bootstrap: &str,
    topic: &str,
    total: usize,
    rate: usize,
    sent: &std::sync::atomic::AtomicUsize,
) -> Result<u64> {
    use rdkafka::ClientConfig;
    use rdkafka::producer::ThreadedProducer;
    use std::sync::atomic::Ordering;
    let producer: ThreadedProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "120000")
        .set("queue.buffering.max.messages", "200000")
        .create_with_context(Deliveries::default())?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    for i in 0..total {
        if i % 100 == 0 {
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let key = format!("k{i}");
        let value = format!("out-{i}");
        let mut rec = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((e, r))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        && Instant::now() < deadline =>
                {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => bail!("cannot produce record {i}: {e}"),
            }
        }
        sent.store(i + 1, Ordering::Relaxed);
    }
    producer
        .flush(Duration::from_secs(60))
        .context("the load producer did not finish")?;
    Ok(producer.context().failed.load(Ordering::Relaxed))
}

/// Issue 14 item 8: two agents in one group read a 4-partition topic filled at ~10 k
/// records/s for 30 s; the broker is stopped with SIGTERM at about 28 % and started again 5 s later on
/// the same port and log directory. Both agents must resume within `session.timeout.ms` + a
/// few seconds of the broker listening again, every record must arrive, and duplicates stay
/// within one batch per agent. Flume's default backoff (1 s steps up to 5 s) is used, which is
/// what made the agents wait behind queued client errors before.
#[test]
fn broker_outage_under_load_resumes() -> Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let _serial = kafka::serial();
    let mut b = broker()?;
    let dir = tempfile::tempdir()?;
    let topic = "outage";
    b.create_topic(topic, 4)?;
    let batch = 500;
    // 30 s of records, so the stream goes on for a while after the broker is back and both
    // agents have records to resume with.
    let total = 300_000;
    let rate = 10_000;
    // consumer_conf's session.timeout.ms.
    let session_timeout = Duration::from_secs(6);
    let resume_bound = session_timeout + Duration::from_secs(10);

    let names = ["a", "b"];
    let mut agents = Vec::new();
    let mut outs = Vec::new();
    for name in names {
        let out = dir.path().join(format!("out-{name}"));
        std::fs::create_dir_all(&out)?;
        let conf = consumer_conf(
            &b.bootstrap,
            topic,
            "g-outage",
            &out,
            batch,
            &memory_channel(),
            "a1.sources.r1.backoffSleepIncrement = 1000\na1.sources.r1.maxBackoffSleep = 5000",
        );
        agents.push(Sluice::start(dir.path(), name, &conf, &[])?);
        outs.push(out);
    }
    wait_assigned(&agents)?;

    let sent = AtomicUsize::new(0);
    let sent = &sent;
    let accepted = |a: &Sluice| a.counter("SOURCE.r1", "EventAcceptedCount").unwrap_or(0);
    let started = Instant::now();
    let (failed, stop_took, down_for, resumed, drained) = std::thread::scope(|s| -> Result<_> {
        let bootstrap = b.bootstrap.clone();
        let producer = s.spawn(move || produce_paced(&bootstrap, topic, total, rate, sent));
        let stop_at = total * 28 / 100;
        wait_for(
            "28 % of the records to be produced",
            Duration::from_secs(30),
            || (sent.load(Ordering::Relaxed) >= stop_at).then_some(()),
        )?;
        let produced = sent.load(Ordering::Relaxed);
        let before: Vec<u64> = agents.iter().map(accepted).collect();
        let stopping = Instant::now();
        b.stop()?;
        let stop_took = stopping.elapsed();
        eprintln!(
            "broker stopped (SIGTERM) after {produced} records produced, {before:?} accepted by \
             a, b; the JVM took {stop_took:.1?} to exit"
        );
        std::thread::sleep(Duration::from_secs(5));
        b.start_again()?;
        let back = Instant::now();
        let down_for = back - stopping;
        let at_back: Vec<u64> = agents.iter().map(accepted).collect();
        eprintln!(
            "broker listening again {down_for:.1?} after the stop; {at_back:?} accepted by a, b"
        );
        // Resume time: from the broker answering again to each agent's next accepted batch.
        let mut resumed: Vec<Option<Duration>> = vec![None; agents.len()];
        let give_up = back + Duration::from_secs(120);
        while resumed.iter().any(Option::is_none) && Instant::now() < give_up {
            for (i, a) in agents.iter().enumerate() {
                if resumed[i].is_none() && accepted(a) > at_back[i] {
                    resumed[i] = Some(back.elapsed());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let failed = producer
            .join()
            .map_err(|_| anyhow::anyhow!("the producer thread panicked"))??;
        let drained = wait_for(
            "every record consumed by a or b",
            Duration::from_secs(120),
            || {
                let n: u64 = agents.iter().map(accepted).sum();
                (n >= total as u64).then(|| back.elapsed())
            },
        );
        Ok((failed, stop_took, down_for, resumed, drained))
    })?;
    let logs = || {
        agents
            .iter()
            .map(Sluice::log_text)
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let drained = drained.with_context(logs)?;
    assert_eq!(failed, 0, "the load producer lost records");
    assert_eq!(b.record_count(topic)?, total as i64, "records in the topic");

    // Every record, once per agent at most one batch more.
    let seen = wait_for(
        "every record in the output files",
        Duration::from_secs(60),
        || {
            let mut got: BTreeSet<String> = BTreeSet::new();
            for o in &outs {
                got.extend(bodies(o));
            }
            (got.len() >= total).then_some(got)
        },
    )
    .with_context(logs)?;
    let missing: Vec<String> = (0..total)
        .map(|i| format!("out-{i}"))
        .filter(|x| !seen.contains(x))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "lost records, e.g. {missing:?}");
    let per_agent: Vec<usize> = outs.iter().map(|o| bodies(o).len()).collect();
    let duplicates = per_agent.iter().sum::<usize>() - seen.len();
    let counter = |a: &Sluice, name: &str| a.counter("SOURCE.r1", name).unwrap_or(0);
    for (name, a) in names.iter().zip(&agents) {
        eprintln!(
            "agent {name}: {} consumer errors, {} commit failures, {} batches held for a \
             commit, {} revocations, {} records dropped on revocation",
            counter(a, "KafkaConsumeErrorCount"),
            counter(a, "KafkaCommitFailCount"),
            counter(a, "KafkaCommitWaitCount"),
            counter(a, "KafkaRebalanceCount"),
            counter(a, "KafkaRevokedEventDropCount"),
        );
    }
    eprintln!(
        "broker outage: {total} produced at ~{rate}/s, broker down {down_for:.1?} (SIGTERM took \
         {stop_took:.1?}); resumed after {resumed:?} (a, b) from the broker answering again, \
         bound {resume_bound:?}; everything consumed {drained:.1?} after it; {per_agent:?} \
         lines by a, b, {} distinct, {duplicates} duplicates (bound: one batch of {batch} per \
         agent = {}); {:.1?} in all",
        seen.len(),
        2 * batch,
        started.elapsed()
    );
    for (name, r) in names.iter().zip(&resumed) {
        let r = r.with_context(|| format!("agent {name} never resumed; logs:\n{}", logs()))?;
        assert!(
            r <= resume_bound,
            "agent {name} resumed after {r:?}, over {resume_bound:?}"
        );
    }
    assert!(
        duplicates <= 2 * batch,
        "{duplicates} duplicates exceed one batch per agent"
    );
    Ok(())
}
