//! File channel benchmark: durable throughput and replay time, next to the raw speed of the same
//! disk and to Apache Flume 1.11.0's FileChannel with the same config, all in one run.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p sluice-integration --bin bench_file_channel [-- OPTIONS]
//!   --warmup SECS     seconds before the window opens         (default 5)
//!   --window SECS     measured seconds                        (default 10)
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

use anyhow::{Context, Result, bail};
use sluice_integration::bench::thousands;
use sluice_integration::flume::{FLUME_VERSION, Flume, FlumeOptions};
use sluice_integration::{Sluice, sluice_bin, wait_for};

struct Args {
    warmup: Duration,
    window: Duration,
    body: usize,
    batch: usize,
    replay: u64,
    dir: Option<PathBuf>,
    only: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        warmup: Duration::from_secs(5),
        window: Duration::from_secs(10),
        body: 256,
        batch: 1000,
        replay: 1_000_000,
        dir: None,
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
            "--replay" => args.replay = value()?.parse()?,
            "--dir" => args.dir = Some(PathBuf::from(value()?)),
            "--only" => {
                let v = value()?;
                if v != "sluice" && v != "flume" {
                    bail!("--only takes `sluice` or `flume`, not `{v}`");
                }
                args.only = Some(v);
            }
            "-h" | "--help" => {
                println!(
                    "bench_file_channel [--warmup SECS] [--window SECS] [--body BYTES] \
                     [--batch N] [--replay N] [--dir PATH] [--only sluice|flume]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}` (try --help)"),
        }
    }
    if args.window.is_zero() || args.batch == 0 || args.body == 0 {
        bail!("--window, --batch and --body must be at least 1");
    }
    if args.warmup + args.window > Duration::from_secs(60) {
        bail!("--warmup + --window must stay within 60 s");
    }
    Ok(args)
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

struct Sample {
    events_per_s: f64,
    mb_per_s: f64,
}

fn measure(name: &str, args: &Args, drained: &dyn Fn() -> Result<u64>) -> Result<Sample> {
    std::thread::sleep(args.warmup);
    let (c0, t0) = (drained()?, Instant::now());
    std::thread::sleep(args.window);
    let (c1, t1) = (drained()?, Instant::now());
    let events_per_s = c1.saturating_sub(c0) as f64 / (t1 - t0).as_secs_f64();
    eprintln!(
        "{name}: {} events taken in the window.",
        c1.saturating_sub(c0)
    );
    Ok(Sample {
        events_per_s,
        mb_per_s: events_per_s * args.body as f64 / 1e6,
    })
}

fn run_sluice(dir: &Path, args: &Args) -> Result<Sample> {
    let conf = throughput_config(dir, args.body, args.batch);
    let mut s = Sluice::start(dir, "sluice-throughput", &conf, &[])?;
    let sample = measure("sluice", args, &|| {
        s.counter("CHANNEL.c1", "EventTakeSuccessCount")
    })?;
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
    let conf = throughput_config(dir, args.body, args.batch);
    let opts = FlumeOptions {
        log_level: "WARN".into(),
        ..FlumeOptions::default()
    };
    let mut flume = Flume::start_with(dir, &conf, "a1", &opts)?;
    let sample = measure("Flume", args, &|| {
        flume.counter("CHANNEL.c1", "EventTakeSuccessCount")
    })?;
    if flume.child.try_wait()?.is_some() {
        bail!(
            "Flume exited during the measurement; log:\n{}",
            flume.log_tail(40)
        );
    }
    flume.kill()?;
    Ok(sample)
}

/// (events replayed, ms) after a kill -9 and after a clean stop of a channel holding `n` events.
fn replay(dir: &Path, args: &Args) -> Result<[(u64, u64); 2]> {
    let n = args.replay;
    let fill = fill_config(dir, args.body, args.batch, n);
    let started = Instant::now();
    let mut s = Sluice::start(dir, "sluice-fill", &fill, &[])?;
    wait_for("the channel to fill", Duration::from_secs(300), || {
        (s.counter("CHANNEL.c1", "ChannelSize").ok()? >= n).then_some(())
    })?;
    eprintln!("replay: filled {n} events in {:.1?}.", started.elapsed());
    s.kill9()?;
    let reopen = reopen_config(dir, n, args.batch);
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
    sluice_integration::bench::main("bench_file_channel", bench)
}

fn bench() -> Result<()> {
    let args = parse_args()?;
    let tmp = tempfile::tempdir_in(args.dir.as_deref().unwrap_or(&std::env::temp_dir()))?;
    let root = tmp.path();
    let run = |who: &str| args.only.as_deref().is_none_or(|o| o == who);
    println!(
        "bench_file_channel: stress -> file -> null, {}-byte bodies, {}-event commits, fsync \
         per commit, warm-up {} s, window {} s, files in {}",
        args.body,
        args.batch,
        args.warmup.as_secs(),
        args.window.as_secs(),
        root.display()
    );
    if run("sluice") {
        let bin =
            sluice_bin().context("build it first: `cargo build --release --workspace --bins`")?;
        println!("  sluice: {}", bin.display());
    }
    println!(
        "  cores:  {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // The raw disk is measured before and after the agents (half a window each) and averaged:
    // on a shared machine its speed drifts.
    let half = (args.window / 2).max(Duration::from_secs(1));
    let (raw_before, commits_before) = raw_disk(root, args.batch * args.body, half)?;

    let sluice = if run("sluice") {
        let d = root.join("sluice");
        std::fs::create_dir_all(&d)?;
        Some(run_sluice(&d, &args)?)
    } else {
        None
    };
    let flume = if run("flume") {
        let d = root.join("flume");
        std::fs::create_dir_all(&d)?;
        match run_flume(&d, &args) {
            Ok(s) => Some(s),
            Err(e) => {
                println!("  Flume baseline missing: {e:#}");
                None
            }
        }
    } else {
        None
    };

    let (raw_after, commits_after) = raw_disk(root, args.batch * args.body, half)?;
    let raw_bps = (raw_before + raw_after) / 2.0;
    let raw_events = raw_bps / args.body as f64;
    println!(
        "  raw disk: write + fdatasync of {} bytes: {:.1} MB/s before ({commits_before} \
         commits), {:.1} MB/s after ({commits_after} commits); the table uses the mean",
        args.batch * args.body,
        raw_before / 1e6,
        raw_after / 1e6
    );
    println!();
    println!(
        "{:<22}{:>14}{:>14}{:>16}{:>14}{:>14}",
        "",
        "raw disk",
        "sluice",
        format!("Flume {FLUME_VERSION}"),
        "sluice/raw",
        "sluice/Flume"
    );
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    };
    let cell = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or_else(|| "-".into(), f);
    let (se, fe) = (
        sluice.as_ref().map(|s| s.events_per_s),
        flume.as_ref().map(|s| s.events_per_s),
    );
    println!(
        "{:<22}{:>14}{:>14}{:>16}{:>14}{:>14}",
        "events/s",
        thousands(raw_events),
        cell(se, &thousands),
        cell(fe, &thousands),
        ratio(se, Some(raw_events)),
        ratio(se, fe)
    );
    let (sm, fm) = (
        sluice.as_ref().map(|s| s.mb_per_s),
        flume.as_ref().map(|s| s.mb_per_s),
    );
    let mb = |v: f64| format!("{v:.1}");
    println!(
        "{:<22}{:>14}{:>14}{:>16}{:>14}{:>14}",
        "MB/s (body bytes)",
        mb(raw_bps / 1e6),
        cell(sm, &mb),
        cell(fm, &mb),
        ratio(sm, Some(raw_bps / 1e6)),
        ratio(sm, fm)
    );

    if args.replay > 0 && run("sluice") {
        let d = root.join("replay");
        std::fs::create_dir_all(&d)?;
        let [(k_events, k_ms), (c_events, c_ms)] = replay(&d, &args)?;
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
