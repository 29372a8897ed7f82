//! Core pipeline benchmark: `stress -> memory -> null` on the release `sluice` binary and on
//! Apache Flume 1.11.0, with the same config, one after the other in the same run.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p sluice-integration --bin bench_core [-- OPTIONS]
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

use anyhow::{Context, Result, bail};
use sluice_integration::bench::{Sample, Window, measure, one_decimal, row, thousands};
use sluice_integration::flume::{FLUME_VERSION, Flume, FlumeOptions};
use sluice_integration::{Sluice, sluice_bin};

struct Args {
    warmup: Duration,
    window: Duration,
    body: usize,
    batch: usize,
    only: Option<String>,
}

fn env_secs(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v} is not a number of seconds")),
        Err(_) => Ok(default),
    }
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        warmup: Duration::from_secs(env_secs("BENCH_WARMUP_SECS", 5)?),
        window: Duration::from_secs(env_secs("BENCH_WINDOW_SECS", 10)?),
        body: 256,
        batch: 1000,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
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
            "-h" | "--help" => {
                println!(
                    "bench_core [--warmup SECS] [--window SECS] [--body BYTES] [--batch N] \
                     [--only sluice|flume]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}` (try --help)"),
        }
    }
    if args.window.is_zero() {
        bail!("--window must be at least 1 second");
    }
    if args.warmup + args.window > Duration::from_secs(50) {
        bail!("--warmup + --window must stay within 50 s so the whole run stays under 2 minutes");
    }
    Ok(args)
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
    let pid = sluice.pid();
    let drained = || sluice.counter("CHANNEL.c1", "EventTakeSuccessCount");
    let w = Window {
        warmup: args.warmup,
        window: args.window,
    };
    let sample = measure("sluice", &[pid], &w, args.body, &drained)?;
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
    let pid = flume.pid();
    let drained = || flume.counter("CHANNEL.c1", "EventTakeSuccessCount");
    let w = Window {
        warmup: args.warmup,
        window: args.window,
    };
    let sample = measure("Flume", &[pid], &w, args.body, &drained)?;
    if flume.child.try_wait()?.is_some() {
        bail!(
            "Flume exited during the measurement; log:\n{}",
            flume.log_tail(40)
        );
    }
    flume.kill()?;
    Ok(sample)
}

fn main() -> std::process::ExitCode {
    sluice_integration::bench::main("bench_core", bench)
}

fn bench() -> Result<()> {
    let args = parse_args()?;
    let dir = tempfile::tempdir()?;
    let conf = config(args.body, args.batch);
    let run = |who: &str| args.only.as_deref().is_none_or(|o| o == who);

    println!(
        "bench_core: stress -> memory -> null, {}-byte bodies, batch {}, warm-up {} s, window {} s",
        args.body,
        args.batch,
        args.warmup.as_secs(),
        args.window.as_secs()
    );
    if run("sluice") {
        let bin = sluice_bin().context(
            "the bench runs the release build: `cargo build --release --workspace --bins`",
        )?;
        println!("  sluice: {}", bin.display());
    }
    if run("flume") {
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
    println!(
        "  cores:  {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let sluice = if run("sluice") {
        Some(run_sluice(dir.path(), &conf, &args)?)
    } else {
        None
    };
    let flume = if run("flume") {
        Some(run_flume(dir.path(), &conf, &args)?)
    } else {
        None
    };

    println!();
    println!(
        "{:<20}{:>16}{:>16}{:>14}",
        "",
        "sluice",
        format!("Flume {FLUME_VERSION}"),
        "sluice/Flume"
    );
    let (s, f) = (sluice.as_ref(), flume.as_ref());
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
        one_decimal,
    );
    row(
        "peak RSS MiB",
        s.map(|x| x.rss_mib),
        f.map(|x| x.rss_mib),
        one_decimal,
    );
    row(
        "CPU cores used",
        s.map(|x| x.cpu_cores),
        f.map(|x| x.cpu_cores),
        |v| format!("{v:.2}"),
    );
    Ok(())
}
