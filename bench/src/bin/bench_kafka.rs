//! Kafka benchmark: the release `sluice` binary and Apache Flume 1.11.0 with the same config,
//! one after the other in the same run, against one real Kafka broker started here.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p sluice-bench --bin bench_kafka [-- OPTIONS]
//!   --records N     records pre-filled for the source benchmark   (default 1000000)
//!   --warmup SECS   sink benchmark: seconds before the window      (default 5, env BENCH_WARMUP_SECS)
//!   --window SECS   sink benchmark: measured seconds               (default 10, env BENCH_WINDOW_SECS)
//!   --body BYTES    record / event body size                       (default 256)
//!   --batch N       batchSize / flumeBatchSize / transactionCapacity (default 1000)
//!   --only NAME     run only `sluice` or `flume`
//!   --producer K=V  extra kafka.producer.K = V for both sinks (repeatable)
//!   --consumer K=V  extra kafka.consumer.K = V for both sources (repeatable)
//!   --sink K=V      extra sink key K = V for both sinks, e.g. inFlightBatches=1 (repeatable)
//!   --scenario S    run only `source`, `sink`, `channel` or `ceiling`
//!   --ceiling-records N  records per ProducerPerformance run       (default 4000000)
//! ```
//!
//! - **source**: `KafkaSource -> memory -> null`. The topic (4 partitions) is filled with
//!   `--records` records first; each agent reads all of it from the earliest offset in its own
//!   consumer group. Throughput is measured from the first to the last record taken from the
//!   channel (`CHANNEL.c1/EventTakeSuccessCount`, sampled every 100 ms), so start-up and group
//!   join are not counted.
//! - **sink**: `StressSource -> memory -> KafkaSink` (acks = 1, Flume's default), each agent to
//!   its own topic (4 partitions); events taken from the channel over the window after a
//!   warm-up, the way `bench_core` measures.
//!
//! - **channel**: `StressSource + two static interceptors -> KafkaChannel -> null` on one
//!   agent (Flume's channel defaults: `acks = all`, Avro `AvroFlumeEvent` records with the
//!   headers), each agent on its own topic (4 partitions): every event is produced to Kafka by
//!   the put commit and consumed back by the take. Events taken over the window after a
//!   warm-up.
//!
//! - **ceiling**: Kafka's own producer benchmark (`ProducerPerformance` from kafka-tools, the
//!   broker's version) sends `--ceiling-records` records of the same size with `acks=1`,
//!   `linger.ms=5`, `batch.size=262144`, then sluice's `StressSource -> memory -> KafkaSink`
//!   runs for the window, each to its own topic, over PLAINTEXT and again over the broker's TLS
//!   listener (mutual TLS, Java key and trust stores). sluice's sink is printed as a ratio of
//!   Kafka's own producer: the machine's ceiling for one producer (sluice only, no Flume).
//!
//! CPU is user+system time of the agent process (the broker, on the same 2 cores, is not
//! counted); peak RSS is its `VmHWM` (Flume runs with `-Xmx512m`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::{Parser, ValueEnum};
use sluice_bench::harness::{
    self, Only, Payload, Sample, Side, Table, Window, cpu_seconds, measure, peak_rss_mib,
    print_load, print_machine, sluice_release_bin,
};
use sluice_integration::Sluice;
use sluice_integration::flume::{Flume, FlumeOptions, ensure_flume_kafka};
use sluice_integration::kafka::{KAFKA_VERSION, KafkaBroker, ProducerPerf};
use sluice_integration::tls::STORE_PASSWORD;

/// KafkaSource and KafkaSink on sluice and on Apache Flume, against one real broker
#[derive(Parser)]
struct Args {
    /// Records pre-filled for the source benchmark
    #[arg(long, value_name = "N", default_value_t = 1_000_000, value_parser = records)]
    records: u64,
    /// The sink benchmark's warm-up and window
    #[command(flatten)]
    window: Window,
    #[command(flatten)]
    payload: Payload,
    #[command(flatten)]
    only: Only,
    /// Extra `kafka.producer.KEY = VALUE` for both sinks (repeatable)
    #[arg(long, value_name = "KEY=VALUE", value_parser = key_value)]
    producer: Vec<(String, String)>,
    /// Extra `kafka.consumer.KEY = VALUE` for both sources (repeatable)
    #[arg(long, value_name = "KEY=VALUE", value_parser = key_value)]
    consumer: Vec<(String, String)>,
    /// Extra sink key `KEY = VALUE` for both sinks, e.g. inFlightBatches=1 (repeatable)
    #[arg(long, value_name = "KEY=VALUE", value_parser = key_value)]
    sink: Vec<(String, String)>,
    /// Run only this scenario (default: all three)
    #[arg(long, value_enum)]
    scenario: Option<Scenario>,
    /// Records Kafka's ProducerPerformance sends per run of the ceiling scenario
    #[arg(long, value_name = "N", default_value_t = 4_000_000, value_parser = records)]
    ceiling_records: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Source,
    Sink,
    Channel,
    Ceiling,
}

fn records(s: &str) -> Result<u64, String> {
    match s.parse() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

fn key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("takes KEY=VALUE, not `{s}`"))?;
    Ok((k.to_string(), v.to_string()))
}

fn source_conf(bootstrap: &str, group: &str, batch: usize) -> String {
    format!(
        "\
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = org.apache.flume.source.kafka.KafkaSource
a1.sources.r1.channels = c1
a1.sources.r1.kafka.bootstrap.servers = {bootstrap}
a1.sources.r1.kafka.topics = bench-in
a1.sources.r1.kafka.consumer.group.id = {group}
a1.sources.r1.kafka.consumer.auto.offset.reset = earliest
a1.sources.r1.batchSize = {batch}
a1.channels.c1.type = memory
a1.channels.c1.capacity = 100000
a1.channels.c1.transactionCapacity = {batch}
a1.sinks.k1.type = null
a1.sinks.k1.batchSize = {batch}
a1.sinks.k1.channel = c1
"
    )
}

fn sink_conf(bootstrap: &str, topic: &str, body: usize, batch: usize) -> String {
    format!(
        "\
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = org.apache.flume.source.StressSource
a1.sources.r1.size = {body}
a1.sources.r1.batchSize = {batch}
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = 100000
a1.channels.c1.transactionCapacity = {batch}
a1.sinks.k1.type = org.apache.flume.sink.kafka.KafkaSink
a1.sinks.k1.channel = c1
a1.sinks.k1.kafka.bootstrap.servers = {bootstrap}
a1.sinks.k1.kafka.topic = {topic}
a1.sinks.k1.flumeBatchSize = {batch}
a1.sinks.k1.kafka.producer.acks = 1
"
    )
}

fn channel_conf(bootstrap: &str, topic: &str, group: &str, body: usize, batch: usize) -> String {
    format!(
        "\
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = org.apache.flume.source.StressSource
a1.sources.r1.size = {body}
a1.sources.r1.batchSize = {batch}
a1.sources.r1.channels = c1
a1.sources.r1.interceptors = i1 i2
a1.sources.r1.interceptors.i1.type = static
a1.sources.r1.interceptors.i1.key = datacenter
a1.sources.r1.interceptors.i1.value = eu-west-1
a1.sources.r1.interceptors.i2.type = static
a1.sources.r1.interceptors.i2.key = app
a1.sources.r1.interceptors.i2.value = checkout
a1.channels.c1.type = org.apache.flume.channel.kafka.KafkaChannel
a1.channels.c1.kafka.bootstrap.servers = {bootstrap}
a1.channels.c1.kafka.topic = {topic}
a1.channels.c1.kafka.consumer.group.id = {group}
a1.sinks.k1.type = null
a1.sinks.k1.batchSize = {batch}
a1.sinks.k1.channel = c1
"
    )
}

/// Source benchmark: time from the first to the last of `records` taken from the channel.
fn measure_drain(
    name: &str,
    pid: u32,
    args: &Args,
    taken: &dyn Fn() -> Result<u64>,
) -> Result<Sample> {
    print_load(&format!("the {name} drain"));
    let deadline = Instant::now() + Duration::from_secs(600);
    let (c0, t0, cpu0) = loop {
        let c = taken()?;
        if c > 0 {
            break (c, Instant::now(), cpu_seconds(pid)?);
        }
        if Instant::now() > deadline {
            bail!("{name} took nothing from the channel in 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (c1, t1, cpu1) = loop {
        std::thread::sleep(Duration::from_millis(100));
        let c = taken()?;
        if c >= args.records {
            break (c, Instant::now(), cpu_seconds(pid)?);
        }
        if Instant::now() > deadline {
            bail!("{name} took {c} of {} records in 10 minutes", args.records);
        }
    };
    let secs = (t1 - t0).as_secs_f64().max(0.001);
    let eps = (c1 - c0) as f64 / secs;
    eprintln!("{name}: {} records in {secs:.2} s.", c1 - c0);
    Ok(Sample {
        events_per_s: eps,
        mb_per_s: eps * args.payload.body as f64 / 1e6,
        rss_mib: peak_rss_mib(&[pid])?,
        cpu_cores: (cpu1 - cpu0) / secs,
    })
}

enum Agent {
    Sluice(Sluice),
    Flume(Flume),
}

impl Agent {
    /// `scenario` names the log file: each run gets a fresh one.
    fn start(who: Side, scenario: &str, dir: &Path, conf: &str) -> Result<Self> {
        Ok(if who == Side::Sluice {
            Agent::Sluice(Sluice::start(dir, scenario, conf, &[])?)
        } else {
            let opts = FlumeOptions {
                log_level: "WARN".into(),
                lib: Some(ensure_flume_kafka()?),
                ..FlumeOptions::default()
            };
            Agent::Flume(Flume::start_with(dir, conf, "a1", &opts)?)
        })
    }

    fn pid(&self) -> u32 {
        match self {
            Agent::Sluice(s) => s.pid(),
            Agent::Flume(f) => f.pid(),
        }
    }

    fn taken(&self) -> Result<u64> {
        match self {
            Agent::Sluice(s) => s.counter("CHANNEL.c1", "EventTakeSuccessCount"),
            Agent::Flume(f) => f.counter("CHANNEL.c1", "EventTakeSuccessCount"),
        }
    }

    fn alive(&mut self) -> Result<()> {
        let exited = match self {
            Agent::Sluice(s) => s.child.try_wait()?.is_some(),
            Agent::Flume(f) => f.child.try_wait()?.is_some(),
        };
        if exited {
            let log = match self {
                Agent::Sluice(s) => s.log_text(),
                Agent::Flume(f) => f.log_tail(40),
            };
            bail!("the agent exited during the measurement; log:\n{log}");
        }
        Ok(())
    }
}

/// Starts one side on `conf` and measures the events taken from its channel over the window.
#[allow(clippy::too_many_arguments)]
fn run_window(
    who: Side,
    scenario: &str,
    dir: &Path,
    conf: &str,
    args: &Args,
    body: usize,
    how: &str,
    topic: &str,
) -> Result<Sample> {
    let mut agent = Agent::start(who, scenario, dir, conf)?;
    let sample = measure(name(who), &[agent.pid()], &args.window, body, &|| {
        agent.taken()
    })?;
    agent.alive()?;
    eprintln!(
        "{}: {:.0} events/s {how} {topic}.",
        name(who),
        sample.events_per_s
    );
    Ok(sample)
}

fn table(title: &str, s: Option<Sample>, f: Option<Sample>) {
    if s.is_none() && f.is_none() {
        return;
    }
    println!();
    println!("{title}");
    let table = Table::vs_flume(22);
    table.print_header();
    table.sample_rows(s.as_ref(), f.as_ref(), "peak RSS MiB");
}

fn main() -> std::process::ExitCode {
    let args: Args = harness::parse_with_window(5, 10);
    harness::report("bench_kafka", bench(&args))
}

fn name(side: Side) -> &'static str {
    match side {
        Side::Sluice => "sluice",
        Side::Flume => "flume",
    }
}

fn bench(args: &Args) -> Result<()> {
    let whos: Vec<Side> = [Side::Sluice, Side::Flume]
        .into_iter()
        .filter(|w| args.only.runs(*w))
        .collect();
    let Payload { body, batch } = args.payload;
    if args.only.runs(Side::Sluice) {
        sluice_release_bin()?;
    }
    if args.only.runs(Side::Flume) {
        ensure_flume_kafka()?;
    }
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let broker = KafkaBroker::start()?;
    println!(
        "bench_kafka: Apache Kafka {KAFKA_VERSION} (KRaft, 1 node, {}), {body}-byte bodies, \
         batch {batch}",
        broker.bootstrap,
    );
    print_machine();
    eprintln!("Broker up in {:.1?}.", started.elapsed());

    let scenario = |s: Scenario| args.scenario.is_none_or(|only| only == s);
    // Source: fill the topic once, each agent drains it in its own group.
    let source_whos: &[Side] = if scenario(Scenario::Source) {
        &whos
    } else {
        &[]
    };
    broker.create_topic("bench-in", 4)?;
    let t = Instant::now();
    let records = if source_whos.is_empty() {
        1
    } else {
        args.records
    };
    broker.produce_bulk("bench-in", records, body)?;
    eprintln!(
        "Filled bench-in with {} records in {:.1?}.",
        records,
        t.elapsed()
    );
    let mut src = (None, None);
    for &who in source_whos {
        let mut conf = source_conf(&broker.bootstrap, &format!("bench-{}", name(who)), batch);
        for (k, v) in &args.consumer {
            conf.push_str(&format!("a1.sources.r1.kafka.consumer.{k} = {v}\n"));
        }
        let mut agent = Agent::start(who, "source", dir.path(), &conf)?;
        let sample = measure_drain(name(who), agent.pid(), args, &|| agent.taken())?;
        agent.alive()?;
        if let Agent::Sluice(s) = &agent {
            let commit_ms = s.counter("SOURCE.r1", "KafkaCommitTimer")?;
            let get_ms = s.counter("SOURCE.r1", "KafkaEventGetTimer")?;
            let batches = s.counter("SOURCE.r1", "AppendBatchAcceptedCount")?;
            eprintln!(
                "sluice source: {batches} batches, {get_ms} ms reading, {commit_ms} ms committing"
            );
        }
        match who {
            Side::Sluice => src.0 = Some(sample),
            Side::Flume => src.1 = Some(sample),
        }
    }

    // Sink: generator -> memory -> Kafka, each to its own topic.
    let mut sink = (None, None);
    let sink_whos: &[Side] = if scenario(Scenario::Sink) { &whos } else { &[] };
    for &who in sink_whos {
        let topic = format!("bench-out-{}", name(who));
        broker.create_topic(&topic, 4)?;
        let mut conf = sink_conf(&broker.bootstrap, &topic, body, batch);
        for (k, v) in &args.producer {
            conf.push_str(&format!("a1.sinks.k1.kafka.producer.{k} = {v}\n"));
        }
        for (k, v) in &args.sink {
            conf.push_str(&format!("a1.sinks.k1.{k} = {v}\n"));
        }
        let sample = run_window(who, "sink", dir.path(), &conf, args, body, "into", &topic)?;
        match who {
            Side::Sluice => sink.0 = Some(sample),
            Side::Flume => sink.1 = Some(sample),
        }
    }

    // Channel: generator -> Kafka channel -> null, each on its own topic.
    let mut chan = (None, None);
    let channel_whos: &[Side] = if scenario(Scenario::Channel) {
        &whos
    } else {
        &[]
    };
    for &who in channel_whos {
        let topic = format!("bench-channel-{}", name(who));
        broker.create_topic(&topic, 4)?;
        let mut conf = channel_conf(
            &broker.bootstrap,
            &topic,
            &format!("bench-channel-{}", name(who)),
            body,
            batch,
        );
        for (k, v) in &args.producer {
            conf.push_str(&format!("a1.channels.c1.kafka.producer.{k} = {v}\n"));
        }
        for (k, v) in &args.consumer {
            conf.push_str(&format!("a1.channels.c1.kafka.consumer.{k} = {v}\n"));
        }
        let sample = run_window(
            who,
            "channel",
            dir.path(),
            &conf,
            args,
            body,
            "through",
            &topic,
        )?;
        match who {
            Side::Sluice => chan.0 = Some(sample),
            Side::Flume => chan.1 = Some(sample),
        }
    }

    let mut ceiling = Vec::new();
    if scenario(Scenario::Ceiling) && args.only.runs(Side::Sluice) {
        for tls in [false, true] {
            let label = if tls { "TLS" } else { "plaintext" };
            let topic = format!("ceiling-kafka-{label}");
            broker.create_topic(&topic, 4)?;
            print_load(&format!("Kafka's ProducerPerformance ({label})"));
            let perf = broker.producer_performance(
                &topic,
                args.ceiling_records,
                body,
                &perf_config(&broker, tls),
            )?;
            eprintln!(
                "ProducerPerformance ({label}): {} records, {:.0} records/s.",
                perf.records, perf.records_per_s
            );
            let topic = format!("ceiling-sluice-{label}");
            broker.create_topic(&topic, 4)?;
            let bootstrap = if tls {
                &broker.ssl_bootstrap
            } else {
                &broker.bootstrap
            };
            let mut conf = sink_conf(bootstrap, &topic, body, batch);
            if tls {
                conf.push_str(&sink_tls_keys(&broker));
            }
            for (k, v) in &args.producer {
                conf.push_str(&format!("a1.sinks.k1.kafka.producer.{k} = {v}\n"));
            }
            for (k, v) in &args.sink {
                conf.push_str(&format!("a1.sinks.k1.{k} = {v}\n"));
            }
            let mut agent =
                Agent::start(Side::Sluice, &format!("ceiling-{label}"), dir.path(), &conf)?;
            let sample = measure("sluice", &[agent.pid()], &args.window, body, &|| {
                agent.taken()
            })?;
            agent.alive()?;
            eprintln!(
                "sluice ({label}): {:.0} events/s into {topic}.",
                sample.events_per_s
            );
            ceiling.push((label, perf, sample));
        }
    }

    table(
        &format!(
            "KafkaSource -> memory -> null ({} records, first to last take)",
            args.records
        ),
        src.0,
        src.1,
    );
    table(
        &format!(
            "StressSource -> memory -> KafkaSink (acks=1; warm-up {} s, window {} s)",
            args.window.warmup.as_secs(),
            args.window.window.as_secs()
        ),
        sink.0,
        sink.1,
    );
    table(
        &format!(
            "StressSource + 2 headers -> KafkaChannel (acks=all) -> null (warm-up {} s, window {} s)",
            args.window.warmup.as_secs(),
            args.window.window.as_secs()
        ),
        chan.0,
        chan.1,
    );
    ceiling_table(&ceiling, body);
    Ok(())
}

/// Kafka's ProducerPerformance settings: `acks` as the sink benchmark, batching generous.
fn perf_config(broker: &KafkaBroker, tls: bool) -> String {
    let mut c = format!(
        "acks=1\nlinger.ms=5\nbatch.size=262144\nbuffer.memory=67108864\nbootstrap.servers={}\n",
        if tls {
            &broker.ssl_bootstrap
        } else {
            &broker.bootstrap
        }
    );
    if tls {
        let st = &broker.stores;
        c.push_str(&format!(
            "security.protocol=SSL\nssl.truststore.type=PKCS12\nssl.truststore.location={}\n\
             ssl.truststore.password={STORE_PASSWORD}\nssl.keystore.type=JKS\n\
             ssl.keystore.location={}\nssl.keystore.password={STORE_PASSWORD}\n\
             ssl.key.password={STORE_PASSWORD}\n",
            st.truststore_p12.display(),
            st.client_keystore_jks.display()
        ));
    }
    c
}

/// The same TLS settings in Flume's keys, for sluice's sink.
fn sink_tls_keys(broker: &KafkaBroker) -> String {
    let st = &broker.stores;
    format!(
        "a1.sinks.k1.kafka.producer.security.protocol = SSL\n\
         a1.sinks.k1.kafka.producer.ssl.truststore.location = {}\n\
         a1.sinks.k1.kafka.producer.ssl.truststore.password = {STORE_PASSWORD}\n\
         a1.sinks.k1.kafka.producer.ssl.keystore.location = {}\n\
         a1.sinks.k1.kafka.producer.ssl.keystore.password = {STORE_PASSWORD}\n\
         a1.sinks.k1.kafka.producer.ssl.key.password = {STORE_PASSWORD}\n",
        st.truststore_p12.display(),
        st.client_keystore_jks.display()
    )
}

fn ceiling_table(rows: &[(&str, ProducerPerf, Sample)], body: usize) {
    if rows.is_empty() {
        return;
    }
    println!();
    println!(
        "KafkaSink vs Kafka's own ProducerPerformance (acks=1, {body}-byte records, same broker)"
    );
    println!(
        "{:<12}{:>24}{:>18}{:>16}",
        "", "ProducerPerformance/s", "sluice sink/s", "sluice/Kafka"
    );
    for (label, perf, s) in rows {
        println!(
            "{:<12}{:>24}{:>18}{:>15.2}x",
            label,
            harness::thousands(perf.records_per_s),
            harness::thousands(s.events_per_s),
            s.events_per_s / perf.records_per_s.max(1.0)
        );
    }
}
