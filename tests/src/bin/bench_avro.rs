//! Tier-1 → tier-2 over Avro RPC on loopback: `stress → memory → avro sink` feeding
//! `avro source → memory → null`, sluice→sluice next to Flume→Flume with the same configs in the
//! same run, one pipeline after the other.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p sluice-integration --bin bench_avro [-- --warmup S --window S --body B --batch N --deflate]
//! ```
//!
//! Throughput is the collector's `CHANNEL.c1/EventTakeSuccessCount` growth over the window
//! (Flume's NullSink has no counters of its own). RSS and CPU are summed over both agents.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sluice_integration::bench::{Sample, Window, measure, one_decimal, row, thousands};
use sluice_integration::flume::{FLUME_VERSION, Flume, FlumeOptions};
use sluice_integration::{Sluice, free_port, sluice_bin};

struct Args {
    window: Window,
    body: usize,
    batch: usize,
    deflate: bool,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        window: Window {
            warmup: Duration::from_secs(5),
            window: Duration::from_secs(10),
        },
        body: 256,
        batch: 1000,
        deflate: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--warmup" => a.window.warmup = Duration::from_secs(value()?.parse()?),
            "--window" => a.window.window = Duration::from_secs(value()?.parse()?),
            "--body" => a.body = value()?.parse()?,
            "--batch" => a.batch = value()?.parse()?,
            "--deflate" => a.deflate = true,
            other => bail!("unknown argument `{other}`"),
        }
    }
    Ok(a)
}

fn sender(a: &Args, port: u16) -> String {
    let compression = if a.deflate { "deflate" } else { "none" };
    format!(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = org.apache.flume.source.StressSource\n\
         a1.sources.r1.size = {body}\n\
         a1.sources.r1.batchSize = {batch}\n\
         a1.sources.r1.channels = c1\n\
         a1.channels.c1.type = memory\n\
         a1.channels.c1.capacity = 100000\n\
         a1.channels.c1.transactionCapacity = {batch}\n\
         a1.sinks.k1.type = avro\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.hostname = 127.0.0.1\n\
         a1.sinks.k1.port = {port}\n\
         a1.sinks.k1.batch-size = {batch}\n\
         a1.sinks.k1.compression-type = {compression}\n",
        body = a.body,
        batch = a.batch,
    )
}

fn collector(a: &Args, port: u16) -> String {
    let compression = if a.deflate { "deflate" } else { "none" };
    format!(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = avro\n\
         a1.sources.r1.bind = 127.0.0.1\n\
         a1.sources.r1.port = {port}\n\
         a1.sources.r1.compression-type = {compression}\n\
         a1.sources.r1.channels = c1\n\
         a1.channels.c1.type = memory\n\
         a1.channels.c1.capacity = 100000\n\
         a1.channels.c1.transactionCapacity = {batch}\n\
         a1.sinks.k1.type = null\n\
         a1.sinks.k1.batchSize = {batch}\n\
         a1.sinks.k1.channel = c1\n",
        batch = a.batch,
    )
}

fn run_sluice(dir: &Path, a: &Args) -> Result<Sample> {
    let port = free_port()?;
    let c = Sluice::start(dir, "collector", &collector(a, port), &[])?;
    let s = Sluice::start(dir, "sender", &sender(a, port), &[])?;
    let drained = || c.counter("CHANNEL.c1", "EventTakeSuccessCount");
    measure("sluice", &[s.pid(), c.pid()], &a.window, a.body, &drained)
}

fn run_flume(dir: &Path, a: &Args) -> Result<Sample> {
    let port = free_port()?;
    let opts = FlumeOptions {
        log_level: "WARN".into(),
        ..FlumeOptions::default()
    };
    let c = Flume::start_with(&dir.join("collector"), &collector(a, port), "a1", &opts)?;
    let s = Flume::start_with(&dir.join("sender"), &sender(a, port), "a1", &opts)?;
    let drained = || c.counter("CHANNEL.c1", "EventTakeSuccessCount");
    measure("Flume", &[s.pid(), c.pid()], &a.window, a.body, &drained)
}

fn main() -> std::process::ExitCode {
    sluice_integration::bench::main("bench_avro", bench)
}

fn bench() -> Result<()> {
    let a = parse_args()?;
    let dir = tempfile::tempdir()?;
    for sub in ["collector", "sender"] {
        std::fs::create_dir_all(dir.path().join(sub))?;
    }
    let bin = sluice_bin()
        .context("build the release binary: cargo build --release --workspace --bins")?;
    println!(
        "bench_avro: stress -> memory -> avro sink => avro source -> memory -> null, {}-byte \
         bodies, batch {}, compression {}, warm-up {} s, window {} s",
        a.body,
        a.batch,
        if a.deflate { "deflate" } else { "none" },
        a.window.warmup.as_secs(),
        a.window.window.as_secs()
    );
    println!(
        "  sluice: {}\n  Flume:  Apache Flume {FLUME_VERSION}, -Xmx512m per agent",
        bin.display()
    );
    let s = run_sluice(dir.path(), &a)?;
    let f = run_flume(dir.path(), &a)?;
    println!();
    println!(
        "{:<24}{:>16}{:>16}{:>14}",
        "",
        "sluice",
        format!("Flume {FLUME_VERSION}"),
        "sluice/Flume"
    );
    row(
        "events/s",
        Some(s.events_per_s),
        Some(f.events_per_s),
        thousands,
    );
    row(
        "MB/s (body bytes)",
        Some(s.mb_per_s),
        Some(f.mb_per_s),
        one_decimal,
    );
    row(
        "peak RSS MiB (2 agents)",
        Some(s.rss_mib),
        Some(f.rss_mib),
        one_decimal,
    );
    row(
        "CPU cores used",
        Some(s.cpu_cores),
        Some(f.cpu_cores),
        |v| format!("{v:.2}"),
    );
    Ok(())
}
