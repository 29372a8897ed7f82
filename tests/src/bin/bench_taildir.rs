//! TAILDIR benchmark: 10 files of 200-byte lines -> memory -> null, on the release `sluice`
//! binary and on Apache Flume 1.11.0's TaildirSource, same config, one after the other.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p sluice-integration --bin bench_taildir [-- OPTIONS]
//!   --files N       files tailed                         (default 10)
//!   --lines N       lines per file, written before start (default 300000)
//!   --line BYTES    bytes per line, newline included     (default 200)
//!   --batch N       source/channel/sink batch size       (default 1000)
//!   --samples N     latency samples                      (default 20)
//!   --write-pos MS  the source's writePosInterval        (default 3000, Flume's; 0 = per batch)
//!   --only NAME     run only `sluice` or `flume`
//! ```
//!
//! Throughput: the files are written first (and so sit in the page cache for both agents);
//! each agent starts with its own empty position file and the clock runs from the first event
//! its sink took until all were taken, read from `CHANNEL.c1/EventTakeSuccessCount` in the
//! agent's Flume-JSON `/metrics` (Flume's NullSink has no counters of its own).
//!
//! Latency: once idle, one line is appended to one file at a time and the take counter is
//! polled every 0.5 ms until it moves: write-to-sink time, including the agent's idle backoff
//! (`backoffSleepIncrement`/`maxBackoffSleep` at Flume's defaults for both agents).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sluice_integration::bench::cpu_seconds;
use sluice_integration::flume::{FLUME_VERSION, Flume, FlumeOptions};
use sluice_integration::flume_taildir::ensure_flume_taildir;
use sluice_integration::{Sluice, peak_rss_kib, sluice_bin};

struct Args {
    files: usize,
    lines: usize,
    line: usize,
    batch: usize,
    samples: usize,
    write_pos: u64,
    only: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        files: 10,
        lines: 300_000,
        line: 200,
        batch: 1000,
        samples: 20,
        write_pos: 3000,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--files" => a.files = value()?.parse()?,
            "--lines" => a.lines = value()?.parse()?,
            "--line" => a.line = value()?.parse()?,
            "--batch" => a.batch = value()?.parse()?,
            "--samples" => a.samples = value()?.parse()?,
            "--write-pos" => a.write_pos = value()?.parse()?,
            "--only" => {
                let v = value()?;
                if v != "sluice" && v != "flume" {
                    bail!("--only takes `sluice` or `flume`, not `{v}`");
                }
                a.only = Some(v);
            }
            "-h" | "--help" => {
                println!(
                    "bench_taildir [--files N] [--lines N] [--line BYTES] [--batch N] \
                     [--samples N] [--write-pos MS] [--only sluice|flume]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}` (try --help)"),
        }
    }
    if a.files == 0 || a.lines == 0 || a.line < 2 || a.batch == 0 {
        bail!("--files, --lines and --batch must be positive and --line at least 2");
    }
    Ok(a)
}

fn config(logs: &Path, position_file: &Path, batch: usize, write_pos: u64) -> String {
    format!(
        "\
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = TAILDIR
a1.sources.r1.channels = c1
a1.sources.r1.filegroups = f1
a1.sources.r1.filegroups.f1 = {}/bench-.*\\\\.log
a1.sources.r1.positionFile = {}
a1.sources.r1.batchSize = {batch}
a1.sources.r1.writePosInterval = {write_pos}
a1.channels.c1.type = memory
a1.channels.c1.capacity = 100000
a1.channels.c1.transactionCapacity = {batch}
a1.sinks.k1.type = null
a1.sinks.k1.batchSize = {batch}
a1.sinks.k1.channel = c1
",
        logs.display(),
        position_file.display()
    )
}

/// A line of exactly `len` bytes (newline included), numbered so none is alike.
fn line(n: usize, len: usize) -> Vec<u8> {
    let mut l = format!("{n:012} ").into_bytes();
    l.resize(len - 1, b'x');
    l.push(b'\n');
    l
}

fn write_files(logs: &Path, a: &Args) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::with_capacity(a.files);
    for f in 0..a.files {
        let path = logs.join(format!("bench-{f:02}.log"));
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for i in 0..a.lines {
            w.write_all(&line(f * a.lines + i, a.line))?;
        }
        w.flush()?;
        paths.push(path);
    }
    Ok(paths)
}

struct Sample {
    lines_per_s: f64,
    mb_per_s: f64,
    cpu_s: f64,
    rss_mib: f64,
    latency_ms: Vec<f64>,
}

fn measure(
    name: &str,
    pid: u32,
    a: &Args,
    files: &[PathBuf],
    taken: &dyn Fn() -> Result<u64>,
) -> Result<Sample> {
    let total = (a.files * a.lines) as u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    let cpu0 = cpu_seconds(pid)?;
    let (mut first, mut first_count) = (None, 0);
    let done = loop {
        let c = taken()?;
        if first.is_none() && c > 0 {
            first = Some(Instant::now());
            first_count = c;
        }
        if c >= total {
            break Instant::now();
        }
        if Instant::now() > deadline {
            bail!("{name}: only {c} of {total} lines taken after 600 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let cpu_s = cpu_seconds(pid)? - cpu0;
    let first = first.unwrap_or(done);
    let secs = (done - first).as_secs_f64().max(1e-3);
    let lines_per_s = (total - first_count) as f64 / secs;
    eprintln!(
        "{name}: {total} lines taken, {:.2} s from the first to the last, {cpu_s:.1} CPU s.",
        secs
    );

    let mut latency_ms = Vec::with_capacity(a.samples);
    let first_new = a.files * a.lines;
    std::thread::sleep(Duration::from_millis(500));
    for s in 0..a.samples {
        let before = taken()?;
        let path = &files[s % files.len()];
        let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
        let t0 = Instant::now();
        f.write_all(&line(first_new + s, a.line))?;
        loop {
            if taken()? > before {
                latency_ms.push(t0.elapsed().as_secs_f64() * 1e3);
                break;
            }
            if t0.elapsed() > Duration::from_secs(15) {
                bail!(
                    "{name}: a line written to {} was not taken within 15 s",
                    path.display()
                );
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        // Idle gaps of varying length so that samples see different backoff states.
        std::thread::sleep(Duration::from_millis(100 + 150 * (s as u64 % 7)));
    }
    latency_ms.sort_by(f64::total_cmp);
    Ok(Sample {
        lines_per_s,
        mb_per_s: lines_per_s * a.line as f64 / 1e6,
        cpu_s,
        rss_mib: peak_rss_kib(pid)? as f64 / 1024.0,
        latency_ms,
    })
}

fn pct(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v.get(i).copied()
}

fn run(name: &str, root: &Path, logs: &Path, files: &[PathBuf], a: &Args) -> Result<Sample> {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir)?;
    let conf = config(
        logs,
        &dir.join("taildir_position.json"),
        a.batch,
        a.write_pos,
    );
    if name == "sluice" {
        let mut sluice = Sluice::start(&dir, "bench", &conf, &["--no-reload-conf"])?;
        let pid = sluice.pid();
        let taken = || sluice.counter("CHANNEL.c1", "EventTakeSuccessCount");
        let sample = measure("sluice", pid, a, files, &taken)?;
        if sluice.child.try_wait()?.is_some() {
            bail!(
                "sluice exited during the measurement; log:\n{}",
                sluice.log_text()
            );
        }
        return Ok(sample);
    }
    ensure_flume_taildir()?;
    let opts = FlumeOptions {
        log_level: "WARN".into(),
        ..FlumeOptions::default()
    };
    let mut flume = Flume::start_with(&dir, &conf, "a1", &opts)?;
    let pid = flume.pid();
    let taken = || flume.counter("CHANNEL.c1", "EventTakeSuccessCount");
    let sample = measure("Flume", pid, a, files, &taken)?;
    flume.kill()?;
    Ok(sample)
}

fn row(label: &str, s: Option<f64>, f: Option<f64>, digits: usize) {
    let ratio = match (s, f) {
        (Some(s), Some(f)) if f > 0.0 => format!("{:.2}x", s / f),
        _ => "-".into(),
    };
    let cell = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"));
    println!("{label:<24}{:>14}{:>14}{ratio:>12}", cell(s), cell(f));
}

fn bench() -> Result<()> {
    let a = parse_args()?;
    let bin = sluice_bin()?;
    if !bin.to_string_lossy().contains("release") {
        eprintln!("warning: {} is not a release build", bin.display());
    }
    let tmp = tempfile::tempdir()?;
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let started = Instant::now();
    let files = write_files(&logs, &a)?;
    eprintln!(
        "Wrote {} files x {} lines x {} bytes in {:.1?}.",
        a.files,
        a.lines,
        a.line,
        started.elapsed()
    );
    let want = |n: &str| a.only.as_deref().is_none_or(|o| o == n);
    let sluice = want("sluice")
        .then(|| run("sluice", tmp.path(), &logs, &files, &a))
        .transpose()?;
    let flume = want("flume")
        .then(|| run("flume", tmp.path(), &logs, &files, &a))
        .transpose()?;

    println!(
        "\nTAILDIR -> memory -> null: {} files x {} lines of {} bytes, batch {}, \
         writePosInterval {} ms; {} latency samples",
        a.files, a.lines, a.line, a.batch, a.write_pos, a.samples
    );
    println!(
        "{:<24}{:>14}{:>14}{:>12}",
        "",
        "sluice",
        format!("Flume {FLUME_VERSION}"),
        "ratio"
    );
    let get = |s: &Option<Sample>, f: fn(&Sample) -> Option<f64>| s.as_ref().and_then(f);
    row(
        "lines/s",
        get(&sluice, |s| Some(s.lines_per_s)),
        get(&flume, |s| Some(s.lines_per_s)),
        0,
    );
    row(
        "MB/s",
        get(&sluice, |s| Some(s.mb_per_s)),
        get(&flume, |s| Some(s.mb_per_s)),
        1,
    );
    row(
        "CPU seconds (drain)",
        get(&sluice, |s| Some(s.cpu_s)),
        get(&flume, |s| Some(s.cpu_s)),
        1,
    );
    row(
        "peak RSS MiB",
        get(&sluice, |s| Some(s.rss_mib)),
        get(&flume, |s| Some(s.rss_mib)),
        1,
    );
    row(
        "latency p50 ms",
        get(&sluice, |s| pct(&s.latency_ms, 0.5)),
        get(&flume, |s| pct(&s.latency_ms, 0.5)),
        1,
    );
    row(
        "latency p90 ms",
        get(&sluice, |s| pct(&s.latency_ms, 0.9)),
        get(&flume, |s| pct(&s.latency_ms, 0.9)),
        1,
    );
    row(
        "latency max ms",
        get(&sluice, |s| pct(&s.latency_ms, 1.0)),
        get(&flume, |s| pct(&s.latency_ms, 1.0)),
        1,
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    sluice_integration::bench::main("bench_taildir", bench)
}
