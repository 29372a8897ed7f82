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
//!   --scenario S    run only `source` or `sink`
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
use sluice_integration::kafka::{KAFKA_VERSION, KafkaBroker};

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
    /// Run only this scenario (default: both)
    #[arg(long, value_enum)]
    scenario: Option<Scenario>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Source,
    Sink,
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

fn table(title: &str, s: Option<Sample>, f: Option<Sample>) {
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
        let mut agent = Agent::start(who, "sink", dir.path(), &conf)?;
        let sample = measure(name(who), &[agent.pid()], &args.window, body, &|| {
            agent.taken()
        })?;
        agent.alive()?;
        eprintln!(
            "{}: {:.0} events/s into {topic}.",
            name(who),
            sample.events_per_s
        );
        match who {
            Side::Sluice => sink.0 = Some(sample),
            Side::Flume => sink.1 = Some(sample),
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
    Ok(())
}
