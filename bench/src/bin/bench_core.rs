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

use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use sluice_bench::harness::{
    self, Only, Payload, Side, Table, Window, measure_flume_takes, measure_sluice_takes,
    print_machine, sluice_release_bin,
};
use sluice_integration::flume::FLUME_VERSION;

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
    harness::memory_null_config(&harness::stress_source(body), batch, "")
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
        .then(|| measure_sluice_takes(dir.path(), &conf, &args.window, body))
        .transpose()?;
    let flume = run(Side::Flume)
        .then(|| measure_flume_takes(dir.path(), &conf, &args.window, body))
        .transpose()?;

    let table = Table::vs_flume(20);
    table.print_header();
    table.sample_rows(sluice.as_ref(), flume.as_ref(), "peak RSS MiB");
    Ok(())
}
