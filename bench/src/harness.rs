//! What every bench shares: the common command-line arguments (warm-up and window, body and
//! batch size, which side runs), the warm-up + window measurement of an agent's counter, the
//! machine line with the load average, and the sluice-next-to-baseline table with ratios.
//!
//! Results go to stdout; progress goes to stderr. Nothing here asserts a timing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, ValueEnum};
use sluice_integration::flume::{FLUME_VERSION, Flume, FlumeOptions};
use sluice_integration::{Sluice, peak_rss_kib, sluice_bin};

/// One side of a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Side {
    Sluice,
    Flume,
}

/// `--only`: run one side of the comparison.
#[derive(Args, Clone, Copy, Debug)]
pub struct Only {
    /// Run only this side (default: both, sluice first)
    #[arg(long, value_enum, value_name = "SIDE")]
    pub only: Option<Side>,
}

impl Only {
    pub fn runs(&self, side: Side) -> bool {
        self.only.is_none_or(|o| o == side)
    }
}

/// `--warmup` and `--window`. Their defaults differ per bench: give them to
/// [`parse_with_window`].
#[derive(Args, Clone, Copy, Debug)]
pub struct Window {
    /// Seconds the pipeline runs before the window opens [env: BENCH_WARMUP_SECS]
    #[arg(long, value_name = "SECS", value_parser = secs)]
    pub warmup: Duration,
    /// Measured seconds, at least 1 [env: BENCH_WINDOW_SECS]
    #[arg(long, value_name = "SECS", value_parser = positive_secs)]
    pub window: Duration,
}

impl Window {
    /// Fails when warm-up and window together exceed `max` (benches that run several agents
    /// keep the whole run short this way).
    pub fn check_total(&self, max: Duration) -> Result<()> {
        if self.warmup + self.window > max {
            bail!("--warmup + --window must stay within {} s", max.as_secs());
        }
        Ok(())
    }
}

/// `--body` and `--batch`.
#[derive(Args, Clone, Copy, Debug)]
pub struct Payload {
    /// Event body size in bytes
    #[arg(long, value_name = "BYTES", default_value_t = 256, value_parser = at_least_one)]
    pub body: usize,
    /// Source, channel transaction and sink batch size
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = at_least_one)]
    pub batch: usize,
}

fn secs(s: &str) -> Result<Duration, String> {
    s.parse()
        .map(Duration::from_secs)
        .map_err(|_| format!("`{s}` is not a whole number of seconds"))
}

/// Whole seconds, at least 1.
pub fn positive_secs(s: &str) -> Result<Duration, String> {
    let d = secs(s)?;
    if d.is_zero() {
        return Err("must be at least 1 second".into());
    }
    Ok(d)
}

/// A count or size that must be at least 1.
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

/// Parses the command line into `A`, whose flattened [`Window`] defaults to these seconds
/// unless `BENCH_WARMUP_SECS` / `BENCH_WINDOW_SECS` say otherwise. Exits on `--help` and on
/// bad arguments, as clap does.
pub fn parse_with_window<A: Parser>(warmup_secs: u64, window_secs: u64) -> A {
    let default = |env: &str, secs: u64| -> &'static str {
        // clap keeps defaults as `&'static str`; one small string per flag and run.
        std::env::var(env)
            .unwrap_or_else(|_| secs.to_string())
            .leak()
    };
    let warmup = default("BENCH_WARMUP_SECS", warmup_secs);
    let window = default("BENCH_WINDOW_SECS", window_secs);
    let matches = A::command()
        .mut_args(|a| match a.get_id().as_str() {
            "warmup" => a.default_value(warmup).required(false),
            "window" => a.default_value(window).required(false),
            _ => a,
        })
        .get_matches();
    A::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// A bench's exit: on error prints `<name>: <error chain>` and fails.
pub fn report(name: &str, result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The `sluice` binary the bench runs, with a warning when it is not a release build (debug
/// numbers say little).
pub fn sluice_release_bin() -> Result<PathBuf> {
    let bin = sluice_bin()
        .context("the bench runs the release build: `cargo build --release --workspace --bins`")?;
    if !bin.components().any(|c| c.as_os_str() == "release") {
        eprintln!(
            "warning: measuring {} (not a release build); build with --release for real numbers",
            bin.display()
        );
    }
    Ok(bin)
}

/// The 1, 5 and 15 minute load averages (/proc/loadavg), or `?`.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Prints the load average as `what` starts: on a shared machine it explains outliers.
pub fn print_load(what: &str) {
    println!("  load average before {what}: {}", loadavg());
}

/// Prints the cores and the load average, for a bench's header.
pub fn print_machine() {
    println!(
        "  cores:  {}, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
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

/// Sum of the peak RSS (VmHWM) of `pids`, in MiB.
pub fn peak_rss_mib(pids: &[u32]) -> Result<f64> {
    let kib: u64 = pids.iter().map(|&p| peak_rss_kib(p)).sum::<Result<u64>>()?;
    Ok(kib as f64 / 1024.0)
}

/// One agent's numbers over a window.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub events_per_s: f64,
    /// Body bytes only.
    pub mb_per_s: f64,
    pub rss_mib: f64,
    pub cpu_cores: f64,
}

/// [`measure`] on a running Flume agent by one of its counters (`component`, `name` as in its
/// JSON metrics), then stops it; fails if Flume exited during the window.
pub fn measure_flume(
    flume: &mut Flume,
    (component, name): (&str, &str),
    window: &Window,
    body: usize,
) -> Result<Sample> {
    let sample = measure("Flume", &[flume.pid()], window, body, &|| {
        flume.counter(component, name)
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

/// `r1 -> c1 (memory) -> k1 (null)` at `batch`, Flume's syntax: `source` is the type line's
/// value (and any more source lines after a newline), `interceptors` whole lines for `r1`.
pub fn memory_null_config(source: &str, batch: usize, interceptors: &str) -> String {
    format!(
        "\
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = {source}
a1.sources.r1.batchSize = {batch}
a1.sources.r1.channels = c1
{interceptors}a1.channels.c1.type = memory
a1.channels.c1.capacity = 100000
a1.channels.c1.transactionCapacity = {batch}
a1.sinks.k1.type = null
a1.sinks.k1.batchSize = {batch}
a1.sinks.k1.channel = c1
"
    )
}

/// Flume's stress source of `body`-byte events, for [`memory_null_config`]: Flume 1.11 has
/// only the class name for it.
pub fn stress_source(body: usize) -> String {
    format!("org.apache.flume.source.StressSource\na1.sources.r1.size = {body}")
}

/// The counter every stress/seq → memory → null bench measures: events the sink took and
/// committed (Flume 1.11's `NullSink` registers no counters of its own).
const TAKES: (&str, &str) = ("CHANNEL.c1", "EventTakeSuccessCount");

/// Starts sluice on `conf` in `dir` and [`measure`]s the takes from channel `c1`; fails if the
/// agent exited during the window.
pub fn measure_sluice_takes(
    dir: &Path,
    conf: &str,
    window: &Window,
    body: usize,
) -> Result<Sample> {
    let mut sluice = Sluice::start(dir, "bench", conf, &[])?;
    let drained = || sluice.counter(TAKES.0, TAKES.1);
    let sample = measure("sluice", &[sluice.pid()], window, body, &drained)?;
    if sluice.child.try_wait()?.is_some() {
        bail!(
            "sluice exited during the measurement; log:\n{}",
            sluice.log_text()
        );
    }
    Ok(sample)
}

/// Starts Apache Flume (log level WARN: at INFO its NullSink logs every 10,000 events) on
/// `conf` and [`measure_flume`]s the takes from channel `c1`.
pub fn measure_flume_takes(dir: &Path, conf: &str, window: &Window, body: usize) -> Result<Sample> {
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
    measure_flume(&mut flume, TAKES, window, body)
}

/// Warms up, prints the load average, then measures the growth of `counter` over the window.
/// With several processes (a tier-1 agent and its collector), RSS and CPU are their sums.
/// `body` bytes per event give MB/s (0 when it means nothing).
pub fn measure(
    name: &str,
    pids: &[u32],
    window: &Window,
    body: usize,
    counter: &dyn Fn() -> Result<u64>,
) -> Result<Sample> {
    eprintln!("{name}: pids {pids:?}, warming up {:?}.", window.warmup);
    std::thread::sleep(window.warmup);
    print_load(&format!("the {name} window"));
    let cpu = || -> Result<f64> { pids.iter().map(|&p| cpu_seconds(p)).sum() };
    let (c0, cpu0, t0) = (counter()?, cpu()?, Instant::now());
    std::thread::sleep(window.window);
    let (c1, cpu1, t1) = (counter()?, cpu()?, Instant::now());
    let secs = (t1 - t0).as_secs_f64();
    let events = c1.saturating_sub(c0);
    let events_per_s = events as f64 / secs;
    let sample = Sample {
        events_per_s,
        mb_per_s: events_per_s * body as f64 / 1e6,
        rss_mib: peak_rss_mib(pids)?,
        cpu_cores: (cpu1 - cpu0) / secs,
    };
    eprintln!(
        "{name}: {events} events in {secs:.2} s, peak RSS {:.1} MiB.",
        sample.rss_mib
    );
    Ok(sample)
}

/// sluice's column next to one or more baselines, each with a `sluice/<baseline>` ratio.
pub struct Table {
    label_width: usize,
    /// (column header, short name in the ratio header)
    baselines: Vec<(String, String)>,
}

const VALUE_WIDTH: usize = 16;
const RATIO_WIDTH: usize = 14;

impl Table {
    pub fn new(label_width: usize, baselines: &[(&str, &str)]) -> Self {
        Self {
            label_width,
            baselines: baselines
                .iter()
                .map(|(h, s)| (h.to_string(), s.to_string()))
                .collect(),
        }
    }

    /// sluice next to Apache Flume.
    pub fn vs_flume(label_width: usize) -> Self {
        Self::new(label_width, &[(&format!("Flume {FLUME_VERSION}"), "Flume")])
    }

    /// Prints a blank line and the column headers.
    pub fn print_header(&self) {
        let mut line = format!(
            "\n{:<w$}{:>VALUE_WIDTH$}",
            "",
            "sluice",
            w = self.label_width
        );
        for (header, _) in &self.baselines {
            line.push_str(&format!("{header:>VALUE_WIDTH$}"));
        }
        for (_, short) in &self.baselines {
            line.push_str(&format!("{:>RATIO_WIDTH$}", format!("sluice/{short}")));
        }
        println!("{line}");
    }

    /// One line: sluice's value, each baseline's, and the ratios (`-` where one is missing).
    pub fn row(
        &self,
        label: &str,
        sluice: Option<f64>,
        baselines: &[Option<f64>],
        fmt: fn(f64) -> String,
    ) {
        let cell = |v: Option<f64>| v.map_or_else(|| "-".into(), fmt);
        let mut line = format!(
            "{label:<w$}{:>VALUE_WIDTH$}",
            cell(sluice),
            w = self.label_width
        );
        for b in baselines {
            line.push_str(&format!("{:>VALUE_WIDTH$}", cell(*b)));
        }
        for b in baselines {
            let ratio = match (sluice, b) {
                (Some(s), Some(b)) if *b > 0.0 => format!("{:.2}x", s / b),
                _ => "-".into(),
            };
            line.push_str(&format!("{ratio:>RATIO_WIDTH$}"));
        }
        println!("{line}");
    }

    /// The usual rows of a [`Sample`] against one baseline's: events/s, MB/s, peak RSS (under
    /// `rss_label`) and CPU.
    pub fn sample_rows(&self, sluice: Option<&Sample>, baseline: Option<&Sample>, rss_label: &str) {
        let pick = |f: fn(&Sample) -> f64| (sluice.map(f), [baseline.map(f)]);
        let (s, b) = pick(|x| x.events_per_s);
        self.row("events/s", s, &b, thousands);
        let (s, b) = pick(|x| x.mb_per_s);
        self.row("MB/s (body bytes)", s, &b, one_decimal);
        let (s, b) = pick(|x| x.rss_mib);
        self.row(rss_label, s, &b, one_decimal);
        let (s, b) = pick(|x| x.cpu_cores);
        self.row("CPU cores used", s, &b, two_decimals);
    }
}

pub fn one_decimal(v: f64) -> String {
    format!("{v:.1}")
}

pub fn two_decimals(v: f64) -> String {
    format!("{v:.2}")
}

/// Rounded to a whole number, with thousands separators: `12,345,678`.
pub fn thousands(v: f64) -> String {
    let digits = format!("{v:.0}");
    let (sign, digits) = match digits.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", digits.as_str()),
    };
    let mut out = String::from(sign);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        window: Window,
        #[command(flatten)]
        payload: Payload,
        #[command(flatten)]
        only: Only,
    }

    fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
    }

    #[test]
    fn parses_the_common_flags() -> Result<()> {
        let c = cli(&[
            "--warmup", "0", "--window", "2", "--body", "64", "--only", "flume",
        ])?;
        assert_eq!(c.window.warmup, Duration::ZERO);
        assert_eq!(c.window.window, Duration::from_secs(2));
        assert_eq!((c.payload.body, c.payload.batch), (64, 1000));
        assert!(c.only.runs(Side::Flume) && !c.only.runs(Side::Sluice));
        Ok(())
    }

    #[test]
    fn rejects_an_empty_window_and_batch() {
        assert!(cli(&["--warmup", "1", "--window", "0"]).is_err());
        assert!(cli(&["--warmup", "1", "--window", "1", "--batch", "0"]).is_err());
        assert!(cli(&["--warmup", "1", "--window", "1", "--only", "both"]).is_err());
    }

    #[test]
    fn window_total() -> Result<()> {
        let c = cli(&["--warmup", "30", "--window", "30"])?;
        assert!(c.window.check_total(Duration::from_secs(50)).is_err());
        assert!(c.window.check_total(Duration::from_secs(60)).is_ok());
        Ok(())
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1234567.0), "1,234,567");
        assert_eq!(thousands(-1234.0), "-1,234");
    }
}
