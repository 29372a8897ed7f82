//! Tier-1 → tier-2 over Avro RPC on loopback: `stress → memory → avro sink` feeding
//! `avro source → memory → null`, sluice→sluice next to Flume→Flume with the same configs in the
//! same run, one pipeline after the other.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p sluice-bench --bin bench_avro [-- --warmup S --window S --body B --batch N --deflate --in-flight N --only sluice|flume]
//! ```
//!
//! Throughput is the collector's `CHANNEL.c1/EventTakeSuccessCount` growth over the window
//! (Flume's NullSink has no counters of its own). RSS and CPU are summed over both agents.

use std::path::Path;

use anyhow::Result;
use clap::Parser;
use sluice_bench::harness::{
    self, Only, Payload, Sample, Side, Table, Window, measure, print_machine, sluice_release_bin,
};
use sluice_integration::flume::{FLUME_VERSION, Flume, FlumeOptions};
use sluice_integration::{Sluice, free_port};

/// Tier-1 -> tier-2 over Avro RPC, sluice -> sluice next to Flume -> Flume
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    window: Window,
    #[command(flatten)]
    payload: Payload,
    /// Deflate-compress the Avro RPC stream (`compression-type = deflate` on both ends)
    #[arg(long)]
    deflate: bool,
    /// The sluice sink's `max-in-flight` (batches sent before the first answer is read);
    /// Flume ignores the key and sends one at a time. Default: sluice's default
    #[arg(long, value_name = "N")]
    in_flight: Option<usize>,
    #[command(flatten)]
    only: Only,
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
         a1.sinks.k1.compression-type = {compression}\n{in_flight}",
        body = a.payload.body,
        batch = a.payload.batch,
        in_flight = a
            .in_flight
            .map(|n| format!("a1.sinks.k1.max-in-flight = {n}\n"))
            .unwrap_or_default(),
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
        batch = a.payload.batch,
    )
}

fn run_sluice(dir: &Path, a: &Args) -> Result<Sample> {
    let port = free_port()?;
    let c = Sluice::start(dir, "collector", &collector(a, port), &[])?;
    let s = Sluice::start(dir, "sender", &sender(a, port), &[])?;
    let drained = || c.counter("CHANNEL.c1", "EventTakeSuccessCount");
    measure(
        "sluice",
        &[s.pid(), c.pid()],
        &a.window,
        a.payload.body,
        &drained,
    )
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
    measure(
        "Flume",
        &[s.pid(), c.pid()],
        &a.window,
        a.payload.body,
        &drained,
    )
}

fn main() -> std::process::ExitCode {
    let args: Args = harness::parse_with_window(5, 10);
    harness::report("bench_avro", bench(&args))
}

fn bench(a: &Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    for sub in ["collector", "sender"] {
        std::fs::create_dir_all(dir.path().join(sub))?;
    }
    println!(
        "bench_avro: stress -> memory -> avro sink => avro source -> memory -> null, {}-byte \
         bodies, batch {}, compression {}, warm-up {} s, window {} s",
        a.payload.body,
        a.payload.batch,
        if a.deflate { "deflate" } else { "none" },
        a.window.warmup.as_secs(),
        a.window.window.as_secs()
    );
    if a.only.runs(Side::Sluice) {
        println!("  sluice: {}", sluice_release_bin()?.display());
    }
    if a.only.runs(Side::Flume) {
        println!("  Flume:  Apache Flume {FLUME_VERSION}, -Xmx512m per agent");
    }
    print_machine();
    let s = a
        .only
        .runs(Side::Sluice)
        .then(|| run_sluice(dir.path(), a))
        .transpose()?;
    let f = a
        .only
        .runs(Side::Flume)
        .then(|| run_flume(dir.path(), a))
        .transpose()?;
    let table = Table::vs_flume(24);
    table.print_header();
    table.sample_rows(s.as_ref(), f.as_ref(), "peak RSS MiB (2 agents)");
    Ok(())
}
