//! Shared pieces of the bench binaries (tests/src/bin/bench_*.rs): sampling an agent's
//! throughput, RSS and CPU over a window, and printing sluice next to Flume with a ratio.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::peak_rss_kib;

/// Warm-up and measured window.
pub struct Window {
    pub warmup: Duration,
    pub window: Duration,
}

/// One agent's numbers over the window.
pub struct Sample {
    pub events_per_s: f64,
    pub mb_per_s: f64,
    pub rss_mib: f64,
    pub cpu_cores: f64,
}

/// user + system CPU seconds of `pid` so far (/proc/<pid>/stat, USER_HZ = 100 on Linux).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // Fields after the parenthesised command: state is field 3, utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        let f = fields.get(i).context("short /proc stat")?;
        Ok(f.parse::<u64>()? as f64)
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Warms up, then measures the drained-event delta over the window. With several processes
/// (a tier-1 agent and its collector), RSS and CPU are their sums.
pub fn measure(
    name: &str,
    pids: &[u32],
    args: &Window,
    body: usize,
    drained: &dyn Fn() -> Result<u64>,
) -> Result<Sample> {
    eprintln!(
        "{name}: pids {pids:?}, warming up {:?} (load average {}).",
        args.warmup,
        loadavg()
    );
    std::thread::sleep(args.warmup);
    let cpu = || -> Result<f64> { pids.iter().map(|&p| cpu_seconds(p)).sum() };
    let (c0, cpu0, t0) = (drained()?, cpu()?, Instant::now());
    std::thread::sleep(args.window);
    let (c1, cpu1, t1) = (drained()?, cpu()?, Instant::now());
    let rss_kib: u64 = pids.iter().map(|&p| peak_rss_kib(p)).sum::<Result<u64>>()?;
    let secs = (t1 - t0).as_secs_f64();
    let events_per_s = c1.saturating_sub(c0) as f64 / secs;
    let sample = Sample {
        events_per_s,
        mb_per_s: events_per_s * body as f64 / 1e6,
        rss_mib: rss_kib as f64 / 1024.0,
        cpu_cores: (cpu1 - cpu0) / secs,
    };
    eprintln!(
        "{name}: {} events in {secs:.2} s, peak RSS {:.1} MiB.",
        c1.saturating_sub(c0),
        sample.rss_mib
    );
    Ok(sample)
}

/// One table line: the two values and their ratio.
pub fn row(label: &str, sluice: Option<f64>, flume: Option<f64>, fmt: fn(f64) -> String) {
    let ratio = match (sluice, flume) {
        (Some(s), Some(f)) if f > 0.0 => format!("{:.2}x", s / f),
        _ => "-".into(),
    };
    let cell = |v: Option<f64>| v.map_or_else(|| "-".into(), fmt);
    println!(
        "{label:<20}{:>16}{:>16}{ratio:>14}",
        cell(sluice),
        cell(flume)
    );
}

pub fn one_decimal(v: f64) -> String {
    format!("{v:.1}")
}

pub fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A bench binary's `main`: runs `bench`, and on error prints `<name>: <error chain>` and exits
/// with a failure.
pub fn main(name: &str, bench: fn() -> Result<()>) -> std::process::ExitCode {
    match bench() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
