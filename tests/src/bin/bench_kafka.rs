//! Kafka benchmark: the release `sluice` binary and Apache Flume 1.11.0 with the same config,
//! one after the other in the same run, against one real Kafka broker started here.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p sluice-integration --bin bench_kafka [-- OPTIONS]
//!   --records N     records pre-filled for the source benchmark   (default 1000000)
//!   --warmup SECS   sink benchmark: seconds before the window      (default 5)
//!   --window SECS   sink benchmark: measured seconds               (default 10)
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

use anyhow::{Context, Result, bail};
use sluice_integration::bench::{cpu_seconds, thousands};
use sluice_integration::flume::{FLUME_VERSION, Flume, FlumeOptions, ensure_flume_kafka};
use sluice_integration::kafka::{KAFKA_VERSION, KafkaBroker};
use sluice_integration::{Sluice, peak_rss_kib, sluice_bin};

struct Args {
    records: u64,
    warmup: Duration,
    window: Duration,
    body: usize,
    batch: usize,
    only: Option<String>,
    /// `--producer KEY=VALUE`: extra `kafka.producer.*` keys for both agents' sinks.
    producer: Vec<(String, String)>,
    /// `--consumer KEY=VALUE`: extra `kafka.consumer.*` keys for both agents' sources.
    consumer: Vec<(String, String)>,
    /// `--sink KEY=VALUE`: extra `a1.sinks.k1.*` keys.
    sink: Vec<(String, String)>,
    scenario: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        records: 1_000_000,
        warmup: Duration::from_secs(5),
        window: Duration::from_secs(10),
        body: 256,
        batch: 1000,
        only: None,
        producer: Vec::new(),
        consumer: Vec::new(),
        sink: Vec::new(),
        scenario: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--records" => args.records = value()?.parse()?,
            "--warmup" => args.warmup = Duration::from_secs(value()?.parse()?),
            "--window" => args.window = Duration::from_secs(value()?.parse()?),
            "--body" => args.body = value()?.parse()?,
            "--batch" => args.batch = value()?.parse()?,
            "--only" => {
                let v = value()?;
                if v != "sluice" && v != "flume" {
                    bail!("--only takes `sluice` or `flume`, not `{v}`");
                }
                args.only = Some(v);
            }
            "--producer" | "--consumer" | "--sink" => {
                let v = value()?;
                let (k, val) = v
                    .split_once('=')
                    .with_context(|| format!("{flag} takes KEY=VALUE, not `{v}`"))?;
                let list = match flag.as_str() {
                    "--producer" => &mut args.producer,
                    "--consumer" => &mut args.consumer,
                    _ => &mut args.sink,
                };
                list.push((k.to_string(), val.to_string()));
            }
            "--scenario" => {
                let v = value()?;
                if v != "source" && v != "sink" {
                    bail!("--scenario takes `source` or `sink`, not `{v}`");
                }
                args.scenario = Some(v);
            }
            "-h" | "--help" => {
                println!(
                    "bench_kafka [--records N] [--warmup SECS] [--window SECS] [--body BYTES] \
                     [--batch N] [--only sluice|flume] [--producer KEY=VALUE]... \
                     [--consumer KEY=VALUE]... [--sink KEY=VALUE]... [--scenario source|sink]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}` (try --help)"),
        }
    }
    if args.window.is_zero() || args.records == 0 {
        bail!("--window and --records must be at least 1");
    }
    Ok(args)
}

#[derive(Clone, Copy)]
struct Sample {
    events_per_s: f64,
    mb_per_s: f64,
    rss_mib: f64,
    cpu_cores: f64,
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
        mb_per_s: eps * args.body as f64 / 1e6,
        rss_mib: peak_rss_kib(pid)? as f64 / 1024.0,
        cpu_cores: (cpu1 - cpu0) / secs,
    })
}

/// Sink benchmark: events taken from the channel over the window, after the warm-up.
fn measure_window(pid: u32, args: &Args, taken: &dyn Fn() -> Result<u64>) -> Result<Sample> {
    std::thread::sleep(args.warmup);
    let (c0, cpu0, t0) = (taken()?, cpu_seconds(pid)?, Instant::now());
    std::thread::sleep(args.window);
    let (c1, cpu1, t1) = (taken()?, cpu_seconds(pid)?, Instant::now());
    let secs = (t1 - t0).as_secs_f64();
    let eps = c1.saturating_sub(c0) as f64 / secs;
    Ok(Sample {
        events_per_s: eps,
        mb_per_s: eps * args.body as f64 / 1e6,
        rss_mib: peak_rss_kib(pid)? as f64 / 1024.0,
        cpu_cores: (cpu1 - cpu0) / secs,
    })
}

enum Agent {
    Sluice(Sluice),
    Flume(Flume),
}

impl Agent {
    /// `scenario` names the log file: each run gets a fresh one.
    fn start(who: &str, scenario: &str, dir: &Path, conf: &str) -> Result<Self> {
        Ok(if who == "sluice" {
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

fn row(label: &str, s: Option<f64>, f: Option<f64>, fmt: fn(f64) -> String) {
    let ratio = match (s, f) {
        (Some(s), Some(f)) if f > 0.0 => format!("{:.2}x", s / f),
        _ => "-".into(),
    };
    let cell = |v: Option<f64>| v.map_or_else(|| "-".into(), fmt);
    println!("{label:<22}{:>16}{:>16}{ratio:>14}", cell(s), cell(f));
}

fn table(title: &str, s: Option<Sample>, f: Option<Sample>) {
    println!();
    println!("{title}");
    println!(
        "{:<22}{:>16}{:>16}{:>14}",
        "",
        "sluice",
        format!("Flume {FLUME_VERSION}"),
        "sluice/Flume"
    );
    row(
        "events/s",
        s.map(|x| x.events_per_s),
        f.map(|x| x.events_per_s),
        thousands,
    );
    row(
        "MB/s (body bytes)",
        s.map(|x| x.mb_per_s),
        f.map(|x| x.mb_per_s),
        |v| format!("{v:.1}"),
    );
    row(
        "peak RSS MiB",
        s.map(|x| x.rss_mib),
        f.map(|x| x.rss_mib),
        |v| format!("{v:.1}"),
    );
    row(
        "CPU cores used",
        s.map(|x| x.cpu_cores),
        f.map(|x| x.cpu_cores),
        |v| format!("{v:.2}"),
    );
}

fn main() -> std::process::ExitCode {
    sluice_integration::bench::main("bench_kafka", bench)
}

fn bench() -> Result<()> {
    let args = parse_args()?;
    let run = |who: &str| args.only.as_deref().is_none_or(|o| o == who);
    let whos: Vec<&str> = ["sluice", "flume"].into_iter().filter(|w| run(w)).collect();
    if run("sluice") {
        sluice_bin().context(
            "the bench runs the release build: `cargo build --release --workspace --bins`",
        )?;
    }
    if run("flume") {
        ensure_flume_kafka()?;
    }
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let broker = KafkaBroker::start()?;
    println!(
        "bench_kafka: Apache Kafka {KAFKA_VERSION} (KRaft, 1 node, {}), {}-byte bodies, batch {}, \
         {} cores",
        broker.bootstrap,
        args.body,
        args.batch,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    eprintln!("Broker up in {:.1?}.", started.elapsed());

    let scenario = |s: &str| args.scenario.as_deref().is_none_or(|only| only == s);
    // Source: fill the topic once, each agent drains it in its own group.
    let source_whos: &[&str] = if scenario("source") { &whos } else { &[] };
    broker.create_topic("bench-in", 4)?;
    let t = Instant::now();
    let records = if source_whos.is_empty() {
        1
    } else {
        args.records
    };
    broker.produce_bulk("bench-in", records, args.body)?;
    eprintln!(
        "Filled bench-in with {} records in {:.1?}.",
        records,
        t.elapsed()
    );
    let mut src = (None, None);
    for who in source_whos {
        let mut conf = source_conf(&broker.bootstrap, &format!("bench-{who}"), args.batch);
        for (k, v) in &args.consumer {
            conf.push_str(&format!("a1.sources.r1.kafka.consumer.{k} = {v}\n"));
        }
        let mut agent = Agent::start(who, "source", dir.path(), &conf)?;
        let sample = measure_drain(who, agent.pid(), &args, &|| agent.taken())?;
        agent.alive()?;
        if let Agent::Sluice(s) = &agent {
            let commit_ms = s.counter("SOURCE.r1", "KafkaCommitTimer")?;
            let get_ms = s.counter("SOURCE.r1", "KafkaEventGetTimer")?;
            let batches = s.counter("SOURCE.r1", "AppendBatchAcceptedCount")?;
            eprintln!(
                "sluice source: {batches} batches, {get_ms} ms reading, {commit_ms} ms committing"
            );
        }
        if *who == "sluice" {
            src.0 = Some(sample)
        } else {
            src.1 = Some(sample)
        }
    }

    // Sink: generator -> memory -> Kafka, each to its own topic.
    let mut sink = (None, None);
    let sink_whos: &[&str] = if scenario("sink") { &whos } else { &[] };
    for who in sink_whos {
        let topic = format!("bench-out-{who}");
        broker.create_topic(&topic, 4)?;
        let mut conf = sink_conf(&broker.bootstrap, &topic, args.body, args.batch);
        for (k, v) in &args.producer {
            conf.push_str(&format!("a1.sinks.k1.kafka.producer.{k} = {v}\n"));
        }
        for (k, v) in &args.sink {
            conf.push_str(&format!("a1.sinks.k1.{k} = {v}\n"));
        }
        let mut agent = Agent::start(who, "sink", dir.path(), &conf)?;
        let sample = measure_window(agent.pid(), &args, &|| agent.taken())?;
        agent.alive()?;
        eprintln!("{who}: {:.0} events/s into {topic}.", sample.events_per_s);
        if *who == "sluice" {
            sink.0 = Some(sample)
        } else {
            sink.1 = Some(sample)
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
            args.warmup.as_secs(),
            args.window.as_secs()
        ),
        sink.0,
        sink.1,
    );
    Ok(())
}
