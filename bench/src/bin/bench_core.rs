//! Core pipeline benchmark: `stress -> memory -> null` on the release `sluice` binary and on
//! Apache Flume 1.11.0, with the same config, one after the other in the same run.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p sluice-bench --bin bench_core [-- OPTIONS]
//!   --warmup SECS   seconds before the window opens      (default 5, env BENCH_WARMUP_SECS)
//!   --window SECS   measured seconds                     (default 10, env BENCH_WINDOW_SECS)
//!   --body BYTES    event body size                      (default 256)
//!   --batch N       source/channel/sink batch size       (default 1000)
//!   --only NAME     run only `sluice` or `flume`
//! ```
//!
//! Throughput is the growth of `CHANNEL.c1/EventTakeSuccessCount` (events the sink took and
//! committed) over the window, read from each agent's Flume-JSON `/metrics`: Flume 1.11's
//! `NullSink` registers no counters, so the sink's own `EventDrainSuccessCount` exists only
//! on sluice. Peak RSS is `VmHWM` of the agent process (the JVM itself for Flume, `-Xmx512m`);
//! CPU is user+system time of that process over the window. Flume logs at WARN here: at INFO
//! its NullSink writes a line every 10,000 events.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use sluice_bench::harness::{
    self, Only, Payload, Sample, Side, Table, Window, measure, measure_flume, print_machine,
    sluice_release_bin,
};
use sluice_integration::Sluice;
use sluice_integration::flume::{FLUME_VERSION, Flume, FlumeOptions};

/// stress -> memory -> null on sluice and on Apache Flume
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    window: Window,
    #[command(flatten)]
    payload: Payload,
    #[command(flatten)]
    only: Only,
}

fn config(body: usize, batch: usize) -> String {
    // Flume's class name for the stress source: Flume 1.11 has no short name for it.
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
a1.sinks.k1.type = null
a1.sinks.k1.batchSize = {batch}
a1.sinks.k1.channel = c1
"
    )
}

fn run_sluice(dir: &Path, conf: &str, args: &Args) -> Result<Sample> {
    let mut sluice = Sluice::start(dir, "bench", conf, &[])?;
    let drained = || sluice.counter("CHANNEL.c1", "EventTakeSuccessCount");
    let sample = measure(
        "sluice",
        &[sluice.pid()],
        &args.window,
        args.payload.body,
        &drained,
    )?;
    if sluice.child.try_wait()?.is_some() {
        bail!(
            "sluice exited during the measurement; log:\n{}",
            sluice.log_text()
        );
    }
    Ok(sample)
}

fn run_flume(dir: &Path, conf: &str, args: &Args) -> Result<Sample> {
    let opts = FlumeOptions {
        log_level: "WARN".into(),
        ..FlumeOptions::default()
    };
    let started = Instant::now();
    let mut flume = Flume::start_with(dir, conf, "a1", &opts)?;
    eprintln!(
        "Flume: metrics answered {:.1?} after start.",
        started.elapsed()
    );
    measure_flume(
        &mut flume,
        ("CHANNEL.c1", "EventTakeSuccessCount"),
        &args.window,
        args.payload.body,
    )
}

fn main() -> std::process::ExitCode {
    let args: Args = harness::parse_with_window(5, 10);
    harness::report("bench_core", bench(&args))
}

fn bench(args: &Args) -> Result<()> {
    // Keeps the whole run (two agents, Flume's JVM start) under two minutes.
    args.window.check_total(Duration::from_secs(50))?;
    let dir = tempfile::tempdir()?;
    let Payload { body, batch } = args.payload;
    let conf = config(body, batch);
    let run = |side| args.only.runs(side);

    println!(
        "bench_core: stress -> memory -> null, {body}-byte bodies, batch {batch}, warm-up {} s, \
         window {} s",
        args.window.warmup.as_secs(),
        args.window.window.as_secs()
    );
    if run(Side::Sluice) {
        println!("  sluice: {}", sluice_release_bin()?.display());
    }
    if run(Side::Flume) {
        let java = std::process::Command::new("java").arg("-version").output();
        let java = java.map_or_else(
            |_| "java not found".into(),
            |o| {
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            },
        );
        println!(
            "  Flume:  Apache Flume {FLUME_VERSION} (Maven Central), -Xmx512m, log4j2 WARN, {java}"
        );
    }
    print_machine();

    let sluice = run(Side::Sluice)
        .then(|| run_sluice(dir.path(), &conf, args))
        .transpose()?;
    let flume = run(Side::Flume)
        .then(|| run_flume(dir.path(), &conf, args))
        .transpose()?;

    let table = Table::vs_flume(20);
    table.print_header();
    table.sample_rows(sluice.as_ref(), flume.as_ref(), "peak RSS MiB");
    Ok(())
}
