//! Header benchmark: `stress -> interceptors -> memory -> null` with the interceptor chains
//! real pipelines carry, on the release `sluice` binary and on Apache Flume 1.11.0, with the
//! same config, one row at a time (sluice, then Flume) in the same run.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p sluice-bench --bin bench_headers [-- OPTIONS]
//!   --warmup SECS   seconds before each window opens     (default 3, env BENCH_WARMUP_SECS)
//!   --window SECS   measured seconds per agent and row   (default 6, env BENCH_WINDOW_SECS)
//!   --body BYTES    event body size                      (default 256)
//!   --batch N       source/channel/sink batch size       (default 1000)
//!   --rows LIST     comma-separated row names            (default: all)
//!   --source NAME   `stress` or `seq`                    (default stress)
//!   --only NAME     run only `sluice` or `flume`
//! ```
//!
//! Rows: `none`, `static` (one key/value), `timestamp`, `timestamp+host`, `regex_filter`
//! (`ERROR|WARN` excluded: the whole body is searched, every event kept), `search_replace`
//! (every run of 16 body bytes replaced through a group reference by itself: Flume's stress
//! source re-sends its event objects, so a replacement that changed the body would leave
//! Flume nothing to replace from the second batch on). Stress bodies are 0x7F bytes on both
//! sides (Flume's fill).
//!
//! Flume's StressSource sends the same event objects in every batch, so from the second batch
//! on, `static` and `host` find their header already set and Flume allocates nothing; sluice's
//! makes new events each batch. `--source seq` runs the rows on the sequence generator
//! instead (new events with different bodies on both sides). Throughput is the growth of `CHANNEL.c1/EventTakeSuccessCount` over the
//! window, as in bench_core. The last column set compares each sluice row with sluice's own
//! header-less row. TAILDIR with `fileHeader = true` is `bench_taildir --file-header`.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;
use sluice_bench::harness::{
    self, Only, Payload, Sample, Side, Table, Window, measure_flume_takes, measure_sluice_takes,
    print_machine, sluice_release_bin, thousands, two_decimals,
};
use sluice_integration::flume::FLUME_VERSION;

/// stress -> interceptors -> memory -> null on sluice and on Apache Flume
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    window: Window,
    #[command(flatten)]
    payload: Payload,
    /// Comma-separated rows to run (none, static, timestamp, timestamp+host, regex_filter,
    /// search_replace); all by default
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    rows: Vec<String>,
    /// The source: `stress` (one shared body) or `seq` (new events, bodies 0, 1, 2, …)
    #[arg(long, default_value = "stress", value_parser = ["stress", "seq"])]
    source: String,
    #[command(flatten)]
    only: Only,
}

/// (row name, interceptor lines for source `r1`; empty = no interceptors)
const ROWS: &[(&str, &str)] = &[
    ("none", ""),
    (
        "static",
        "a1.sources.r1.interceptors = i1
a1.sources.r1.interceptors.i1.type = static
a1.sources.r1.interceptors.i1.key = datacenter
a1.sources.r1.interceptors.i1.value = eu-west-1
",
    ),
    (
        "timestamp",
        "a1.sources.r1.interceptors = i1
a1.sources.r1.interceptors.i1.type = timestamp
",
    ),
    (
        "timestamp+host",
        "a1.sources.r1.interceptors = i1 i2
a1.sources.r1.interceptors.i1.type = timestamp
a1.sources.r1.interceptors.i2.type = host
",
    ),
    (
        "regex_filter",
        "a1.sources.r1.interceptors = i1
a1.sources.r1.interceptors.i1.type = regex_filter
a1.sources.r1.interceptors.i1.regex = ERROR|WARN
a1.sources.r1.interceptors.i1.excludeEvents = true
",
    ),
    (
        "search_replace",
        "a1.sources.r1.interceptors = i1
a1.sources.r1.interceptors.i1.type = search_replace
a1.sources.r1.interceptors.i1.searchPattern = ^(\\\\x7F{16})
a1.sources.r1.interceptors.i1.replaceString = $1
",
    ),
];

fn config(source: &str, body: usize, batch: usize, interceptors: &str) -> String {
    let source = match source {
        "seq" => "seq".to_string(),
        _ => harness::stress_source(body),
    };
    harness::memory_null_config(&source, batch, interceptors)
}

fn main() -> std::process::ExitCode {
    let args: Args = harness::parse_with_window(3, 6);
    harness::report("bench_headers", bench(&args))
}

fn bench(args: &Args) -> Result<()> {
    let rows: Vec<&(&str, &str)> = ROWS
        .iter()
        .filter(|(name, _)| args.rows.is_empty() || args.rows.iter().any(|r| r == name))
        .collect();
    if let Some(unknown) = args
        .rows
        .iter()
        .find(|r| !ROWS.iter().any(|(name, _)| name == r))
    {
        let names: Vec<&str> = ROWS.iter().map(|(n, _)| *n).collect();
        bail!("unknown row {unknown:?}; rows: {}", names.join(", "));
    }
    // Two agents per row, each with a JVM start or a warm-up: keep the run under five minutes.
    let total = (args.window.warmup + args.window.window) * 2 * rows.len() as u32;
    if total > Duration::from_secs(240) {
        bail!(
            "{} rows at this warm-up and window take {total:?}; at most 240 s",
            rows.len()
        );
    }
    let Payload { body, batch } = args.payload;
    let bodies = match args.source.as_str() {
        "seq" => "decimal-number bodies".to_string(),
        _ => format!("{body}-byte bodies"),
    };
    println!(
        "bench_headers: {} -> interceptors -> memory -> null, {bodies}, batch {batch}, warm-up \
         {} s, window {} s",
        args.source,
        args.window.warmup.as_secs(),
        args.window.window.as_secs()
    );
    if args.only.runs(Side::Sluice) {
        println!("  sluice: {}", sluice_release_bin()?.display());
    }
    if args.only.runs(Side::Flume) {
        println!("  Flume:  Apache Flume {FLUME_VERSION} (Maven Central), -Xmx512m, log4j2 WARN");
    }
    print_machine();

    let mut results = Vec::new();
    for (name, interceptors) in rows {
        let dir = tempfile::tempdir()?;
        let conf = config(&args.source, body, batch, interceptors);
        println!("row {name}");
        let sluice = args
            .only
            .runs(Side::Sluice)
            .then(|| measure_sluice_takes(dir.path(), &conf, &args.window, body))
            .transpose()?;
        let flume = args
            .only
            .runs(Side::Flume)
            .then(|| measure_flume_takes(dir.path(), &conf, &args.window, body))
            .transpose()?;
        results.push((*name, sluice, flume));
    }

    println!("\nevents/s");
    let table = Table::vs_flume(18);
    table.print_header();
    for (name, sluice, flume) in &results {
        let rate = |s: &Option<Sample>| s.as_ref().map(|s| s.events_per_s);
        table.row(name, rate(sluice), &[rate(flume)], thousands);
    }
    println!("\nCPU cores used");
    table.print_header();
    for (name, sluice, flume) in &results {
        let cpu = |s: &Option<Sample>| s.as_ref().map(|s| s.cpu_cores);
        table.row(name, cpu(sluice), &[cpu(flume)], two_decimals);
    }
    let headerless = results
        .iter()
        .find(|(n, _, _)| *n == "none")
        .and_then(|(_, s, _)| s.as_ref().map(|s| s.events_per_s));
    if let Some(base) = headerless.filter(|b| *b > 0.0) {
        println!("\nsluice against its own header-less row");
        for (name, sluice, _) in &results {
            if let Some(s) = sluice {
                println!("{name:<18}{:>15.2}x", s.events_per_s / base);
            }
        }
    }
    Ok(())
}
