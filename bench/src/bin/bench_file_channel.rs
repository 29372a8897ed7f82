//! File channel benchmark: durable throughput and replay time, next to the raw speed of the same
//! disk and to Apache Flume 1.11.0's FileChannel with the same config, all in one run.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p sluice-bench --bin bench_file_channel [-- OPTIONS]
//!   --warmup SECS     seconds before the window opens         (default 5, env BENCH_WARMUP_SECS)
//!   --window SECS     measured seconds                        (default 10, env BENCH_WINDOW_SECS)
//!   --body BYTES      event body size                         (default 256)
//!   --batch N         source/channel/sink batch size          (default 1000)
//!   --replay N        events in the replay test, 0 = skip     (default 1000000)
//!   --dir PATH        where channel files go (default: a temp dir; same disk for all)
//!   --only NAME       run only `sluice` or `flume` (the raw disk baseline always runs)
//! ```
//!
//! - **raw disk**: the bench itself writes `batch × body` bytes and fdatasyncs, in a loop, in the
//!   same directory, for half a window before and half a window after the agents (mean of the
//!   two): the cost of the durable-commit pattern with nothing else around it.
//! - **throughput**: `stress -> file -> null`, every put and take committed with an fsync
//!   (`fsyncPerTransaction = true`, the default of both). Events/s is the growth of
//!   `CHANNEL.c1/EventTakeSuccessCount` over the window; MB/s counts body bytes.
//! - **replay**: a channel filled with N events and no sink is killed with SIGKILL (replay from
//!   the last checkpoint plus the log after it) and, separately, stopped cleanly (checkpoint on
//!   close); `ReplayMillis` of the restarted agent is printed for each.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use sluice_bench::harness::{
    self, Only, Payload, Sample, Side, Table, Window, measure, measure_flume, one_decimal,
    print_machine, sluice_release_bin, thousands,
};
use sluice_integration::flume::{FLUME_VERSION, Flume, FlumeOptions};
use sluice_integration::{Sluice, wait_for};

/// stress -> file -> null on sluice and on Apache Flume, next to the raw disk; replay time
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    window: Window,
    #[command(flatten)]
    payload: Payload,
    /// Events in the replay test, 0 = skip
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    replay: u64,
    /// Where channel files go (default: a temp dir; the same disk for all)
    #[arg(long, value_name = "PATH")]
    dir: Option<PathBuf>,
    /// The raw disk baseline always runs
    #[command(flatten)]
    only: Only,
}

fn throughput_config(dir: &Path, body: usize, batch: usize) -> String {
    format!(
        "\
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = org.apache.flume.source.StressSource
a1.sources.r1.size = {body}
a1.sources.r1.batchSize = {batch}
a1.sources.r1.channels = c1
a1.channels.c1.type = file
a1.channels.c1.checkpointDir = {cp}
a1.channels.c1.dataDirs = {data}
a1.channels.c1.capacity = 1000000
a1.channels.c1.transactionCapacity = {batch}
a1.sinks.k1.type = null
a1.sinks.k1.batchSize = {batch}
a1.sinks.k1.channel = c1
",
        cp = dir.join("checkpoint").display(),
        data = dir.join("data").display(),
    )
}

/// Stress into a file channel with no sink: fills it with `events` events.
fn fill_config(dir: &Path, body: usize, batch: usize, events: u64) -> String {
    format!(
        "\
a1.sources = r1
a1.channels = c1
a1.sources.r1.type = stress
a1.sources.r1.size = {body}
a1.sources.r1.batchSize = {batch}
a1.sources.r1.maxSuccessfulEvents = {events}
a1.sources.r1.channels = c1
a1.channels.c1.type = file
a1.channels.c1.checkpointDir = {cp}
a1.channels.c1.dataDirs = {data}
a1.channels.c1.capacity = {events}
a1.channels.c1.transactionCapacity = {batch}
",
        cp = dir.join("checkpoint").display(),
        data = dir.join("data").display(),
    )
}

/// The channel alone: opening it replays what is stored.
fn reopen_config(dir: &Path, events: u64, batch: usize) -> String {
    format!(
        "\
a1.channels = c1
a1.channels.c1.type = file
a1.channels.c1.checkpointDir = {cp}
a1.channels.c1.dataDirs = {data}
a1.channels.c1.capacity = {events}
a1.channels.c1.transactionCapacity = {batch}
",
        cp = dir.join("checkpoint").display(),
        data = dir.join("data").display(),
    )
}

/// Bytes/s of `write(batch × body) + fdatasync` in `dir`, for `window`.
fn raw_disk(dir: &Path, bytes_per_commit: usize, window: Duration) -> Result<(f64, u64)> {
    let path = dir.join("raw-disk-probe");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let buf = vec![0x5au8; bytes_per_commit];
    let (mut written, mut commits, mut since_rewind) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    while started.elapsed() < window {
        f.write_all(&buf)?;
        f.sync_data()?;
        written += buf.len() as u64;
        since_rewind += buf.len() as u64;
        commits += 1;
        // Keep the file bounded like the channel's segments (a new file every 1 GiB).
        if since_rewind > 1 << 30 {
            drop(f);
            std::fs::remove_file(&path)?;
            f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&path)?;
            since_rewind = 0;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok((written as f64 / secs, commits))
}

fn run_sluice(dir: &Path, args: &Args) -> Result<Sample> {
    let conf = throughput_config(dir, args.payload.body, args.payload.batch);
    let mut s = Sluice::start(dir, "sluice-throughput", &conf, &[])?;
    let sample = measure(
        "sluice",
        &[s.pid()],
        &args.window,
        args.payload.body,
        &|| s.counter("CHANNEL.c1", "EventTakeSuccessCount"),
    )?;
    if s.child.try_wait()?.is_some() {
        bail!(
            "sluice exited during the measurement; log:\n{}",
            s.log_text()
        );
    }
    s.kill9()?;
    Ok(sample)
}

fn run_flume(dir: &Path, args: &Args) -> Result<Sample> {
    let conf = throughput_config(dir, args.payload.body, args.payload.batch);
    let opts = FlumeOptions {
        log_level: "WARN".into(),
        ..FlumeOptions::default()
    };
    let mut flume = Flume::start_with(dir, &conf, "a1", &opts)?;
    measure_flume(
        &mut flume,
        ("CHANNEL.c1", "EventTakeSuccessCount"),
        &args.window,
        args.payload.body,
    )
}

/// (events replayed, ms) after a kill -9 and after a clean stop of a channel holding `n` events.
fn replay(dir: &Path, args: &Args) -> Result<[(u64, u64); 2]> {
    let n = args.replay;
    let Payload { body, batch } = args.payload;
    let fill = fill_config(dir, body, batch, n);
    let started = Instant::now();
    let mut s = Sluice::start(dir, "sluice-fill", &fill, &[])?;
    wait_for("the channel to fill", Duration::from_secs(300), || {
        (s.counter("CHANNEL.c1", "ChannelSize").ok()? >= n).then_some(())
    })?;
    eprintln!("replay: filled {n} events in {:.1?}.", started.elapsed());
    s.kill9()?;
    let reopen = reopen_config(dir, n, batch);
    let mut out = [(0, 0); 2];
    for (i, how) in ["after kill -9", "after clean stop"].iter().enumerate() {
        let mut s = Sluice::start(dir, &format!("sluice-replay{i}"), &reopen, &[])?;
        let read = |name: &str| {
            wait_for(name, Duration::from_secs(120), || {
                s.counter("CHANNEL.c1", name).ok()
            })
        };
        out[i] = (read("ReplayEventCount")?, read("ReplayMillis")?);
        eprintln!("replay {how}: {} events in {} ms.", out[i].0, out[i].1);
        s.signal("TERM")?;
        s.wait(Duration::from_secs(60))?;
    }
    Ok(out)
}

fn main() -> std::process::ExitCode {
    let args: Args = harness::parse_with_window(5, 10);
    harness::report("bench_file_channel", bench(&args))
}

fn bench(args: &Args) -> Result<()> {
    args.window.check_total(Duration::from_secs(60))?;
    let tmp = tempfile::tempdir_in(args.dir.as_deref().unwrap_or(&std::env::temp_dir()))?;
    let root = tmp.path();
    let run = |side| args.only.runs(side);
    let Payload { body, batch } = args.payload;
    println!(
        "bench_file_channel: stress -> file -> null, {body}-byte bodies, {batch}-event commits, \
         fsync per commit, warm-up {} s, window {} s, files in {}",
        args.window.warmup.as_secs(),
        args.window.window.as_secs(),
        root.display()
    );
    if run(Side::Sluice) {
        println!("  sluice: {}", sluice_release_bin()?.display());
    }
    print_machine();

    // The raw disk is measured before and after the agents (half a window each) and averaged:
    // on a shared machine its speed drifts.
    let half = (args.window.window / 2).max(Duration::from_secs(1));
    let (raw_before, commits_before) = raw_disk(root, batch * body, half)?;

    let sluice = if run(Side::Sluice) {
        let d = root.join("sluice");
        std::fs::create_dir_all(&d)?;
        Some(run_sluice(&d, args)?)
    } else {
        None
    };
    let flume = if run(Side::Flume) {
        let d = root.join("flume");
        std::fs::create_dir_all(&d)?;
        match run_flume(&d, args) {
            Ok(s) => Some(s),
            Err(e) => {
                println!("  Flume baseline missing: {e:#}");
                None
            }
        }
    } else {
        None
    };

    let (raw_after, commits_after) = raw_disk(root, batch * body, half)?;
    let raw_bps = (raw_before + raw_after) / 2.0;
    println!(
        "  raw disk: write + fdatasync of {} bytes: {:.1} MB/s before ({commits_before} \
         commits), {:.1} MB/s after ({commits_after} commits); the table uses the mean",
        batch * body,
        raw_before / 1e6,
        raw_after / 1e6
    );
    let table = Table::new(
        22,
        &[
            ("raw disk", "raw"),
            (&format!("Flume {FLUME_VERSION}"), "Flume"),
        ],
    );
    table.print_header();
    let (s, f) = (sluice.as_ref(), flume.as_ref());
    table.row(
        "events/s",
        s.map(|x| x.events_per_s),
        &[Some(raw_bps / body as f64), f.map(|x| x.events_per_s)],
        thousands,
    );
    table.row(
        "MB/s (body bytes)",
        s.map(|x| x.mb_per_s),
        &[Some(raw_bps / 1e6), f.map(|x| x.mb_per_s)],
        one_decimal,
    );
    table.row(
        "peak RSS MiB",
        s.map(|x| x.rss_mib),
        &[None, f.map(|x| x.rss_mib)],
        one_decimal,
    );

    if args.replay > 0 && run(Side::Sluice) {
        let d = root.join("replay");
        std::fs::create_dir_all(&d)?;
        let [(k_events, k_ms), (c_events, c_ms)] = replay(&d, args)?;
        println!();
        println!(
            "replay of a {}-event channel (target < 2000 ms):",
            thousands(args.replay as f64)
        );
        println!(
            "  after kill -9:     {} events in {k_ms} ms",
            thousands(k_events as f64)
        );
        println!(
            "  after clean stop:  {} events in {c_ms} ms",
            thousands(c_events as f64)
        );
    }
    Ok(())
}
