//! TAILDIR benchmark: 10 files of 200-byte lines -> memory -> null, on the release `sluice`
//! binary and on Apache Flume 1.11.0's TaildirSource, same config, one after the other.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p sluice-bench --bin bench_taildir [-- OPTIONS]
//!   --files N       files tailed                         (default 10)
//!   --lines N       lines per file, written before start (default 300000)
//!   --line BYTES    bytes per line, newline included     (default 200)
//!   --batch N       source/channel/sink batch size       (default 1000)
//!   --samples N     latency samples                      (default 20)
//!   --write-pos MS  the source's writePosInterval        (default 3000, Flume's; 0 = per batch)
//!   --file-header   fileHeader = true (each event carries its file's path)
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

use anyhow::{Result, bail};
use clap::Parser;
use sluice_bench::harness::{
    self, Only, Side, Table, at_least_one, cpu_seconds, one_decimal, peak_rss_mib, print_load,
    print_machine, sluice_release_bin, thousands,
};
use sluice_integration::Sluice;
use sluice_integration::flume::{Flume, FlumeOptions};
use sluice_integration::flume_taildir::ensure_flume_taildir;

/// TAILDIR -> memory -> null on sluice and on Apache Flume's TaildirSource; latency
#[derive(Parser)]
struct Args {
    /// Files tailed
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = at_least_one)]
    files: usize,
    /// Lines per file, written before the agent starts
    #[arg(long, value_name = "N", default_value_t = 300_000, value_parser = at_least_one)]
    lines: usize,
    /// Bytes per line, newline included (at least 2)
    #[arg(long, value_name = "BYTES", default_value_t = 200, value_parser = line_len)]
    line: usize,
    /// Source, channel transaction and sink batch size
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = at_least_one)]
    batch: usize,
    /// Latency samples
    #[arg(long, value_name = "N", default_value_t = 20)]
    samples: usize,
    /// The source's writePosInterval in ms (3000 is Flume's; 0 = per batch)
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    write_pos: u64,
    /// `fileHeader = true`: every event carries its file's path in the `file` header
    #[arg(long)]
    file_header: bool,
    #[command(flatten)]
    only: Only,
}

fn line_len(s: &str) -> Result<usize, String> {
    match s.parse() {
        Ok(n) if n >= 2 => Ok(n),
        Ok(_) => Err("must be at least 2 (a byte and the newline)".into()),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

fn config(logs: &Path, position_file: &Path, a: &Args) -> String {
    let (batch, write_pos, file_header) = (a.batch, a.write_pos, a.file_header);
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
a1.sources.r1.fileHeader = {file_header}
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
    print_load(&format!("the {name} drain"));
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
        rss_mib: peak_rss_mib(&[pid])?,
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

fn run(side: Side, root: &Path, logs: &Path, files: &[PathBuf], a: &Args) -> Result<Sample> {
    let dir = root.join(match side {
        Side::Sluice => "sluice",
        Side::Flume => "flume",
    });
    std::fs::create_dir_all(&dir)?;
    let conf = config(logs, &dir.join("taildir_position.json"), a);
    if side == Side::Sluice {
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

fn main() -> std::process::ExitCode {
    harness::report("bench_taildir", bench(&Args::parse()))
}

fn bench(a: &Args) -> Result<()> {
    let bin = a
        .only
        .runs(Side::Sluice)
        .then(sluice_release_bin)
        .transpose()?;
    let tmp = tempfile::tempdir()?;
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let started = Instant::now();
    let files = write_files(&logs, a)?;
    eprintln!(
        "Wrote {} files x {} lines x {} bytes in {:.1?}.",
        a.files,
        a.lines,
        a.line,
        started.elapsed()
    );
    println!(
        "bench_taildir: TAILDIR -> memory -> null: {} files x {} lines of {} bytes, batch {}, \
         writePosInterval {} ms, fileHeader {}; {} latency samples",
        a.files, a.lines, a.line, a.batch, a.write_pos, a.file_header, a.samples
    );
    if let Some(bin) = bin {
        println!("  sluice: {}", bin.display());
    }
    print_machine();
    let sluice = a
        .only
        .runs(Side::Sluice)
        .then(|| run(Side::Sluice, tmp.path(), &logs, &files, a))
        .transpose()?;
    let flume = a
        .only
        .runs(Side::Flume)
        .then(|| run(Side::Flume, tmp.path(), &logs, &files, a))
        .transpose()?;

    let table = Table::vs_flume(24);
    table.print_header();
    let row = |label: &str, f: fn(&Sample) -> Option<f64>, fmt: fn(f64) -> String| {
        table.row(
            label,
            sluice.as_ref().and_then(f),
            &[flume.as_ref().and_then(f)],
            fmt,
        )
    };
    row("lines/s", |s| Some(s.lines_per_s), thousands);
    row("MB/s", |s| Some(s.mb_per_s), one_decimal);
    row("CPU seconds (drain)", |s| Some(s.cpu_s), one_decimal);
    row("peak RSS MiB", |s| Some(s.rss_mib), one_decimal);
    row("latency p50 ms", |s| pct(&s.latency_ms, 0.5), one_decimal);
    row("latency p90 ms", |s| pct(&s.latency_ms, 0.9), one_decimal);
    row("latency max ms", |s| pct(&s.latency_ms, 1.0), one_decimal);
    Ok(())
}
