//! Multi-tenant collector benchmark on the release `sluice` binary: how throughput and memory
//! grow with the number of tenants, every configuration in the same run.
//!
//! `seq -> regex_extractor (tenant = last digits of the body) -> tenant router -> one memory
//! channel + null sink per tenant`, each tenant with its own instance of the Rust
//! `drop-by-level` guest (a small filter; seq bodies carry no level, so every event is kept).
//! The baseline is the same source and extractor into one channel with no tenant routing and
//! no guest. Every source batch (`--batch`, default 1000) holds events of every tenant, so with
//! N tenants each guest call carries batch/N events: the worst case for per-call overhead (a
//! tier-1 agent per team sends one tenant per batch).
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p sluice-bench --bin bench_tenants [-- --window SECS --warmup SECS --batch N]
//! ```
//!
//! Throughput is the growth of the source's `EventAcceptedCount` (events committed to the
//! channels) over the window; RSS is the agent's peak (VmHWM); start-up is the time from spawn
//! to the first committed batch (compiling once, instantiating and initialising N guests).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use sluice_bench::harness::{
    self, Window, at_least_one, measure, print_machine, sluice_release_bin, thousands,
};
use sluice_integration::{Sluice, guests, wait_for};

/// seq -> tenant router with 1, 10 and 100 tenants (a wasm guest and a channel each)
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    window: Window,
    /// Source, channel transaction and sink batch size
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = at_least_one)]
    batch: usize,
}

/// Tenant names for `n` tenants: what the extractor's regex yields from seq bodies.
fn tenants(n: usize) -> (Vec<String>, &'static str) {
    match n {
        1 => (vec!["0".into()], r"(\\d)$"),
        10 => ((0..10).map(|i| i.to_string()).collect(), r"(\\d)$"),
        100 => ((0..100).map(|i| format!("{i:02}")).collect(), r"(\\d\\d)$"),
        _ => unreachable!("1, 10 or 100 tenants"),
    }
}

/// `n` = 0: the baseline (no tenant routing, no guest). `instances`: each guest's
/// `limits.instances` (unset: the default pool).
fn config(n: usize, batch: usize, guest: &Path, instances: Option<usize>) -> String {
    let (names, regex) = tenants(n.max(1));
    let channels: Vec<String> = if n == 0 {
        vec!["c".into()]
    } else {
        names.iter().map(|t| format!("c{t}")).collect()
    };
    let sinks: Vec<String> = channels.iter().map(|c| format!("k{c}")).collect();
    let mut s = format!(
        "a1.sources = r1\n\
         a1.channels = {channels}\n\
         a1.sinks = {sinks}\n\
         a1.sources.r1.type = seq\n\
         a1.sources.r1.batchSize = {batch}\n\
         a1.sources.r1.channels = {channels}\n\
         a1.sources.r1.interceptors = t\n\
         a1.sources.r1.interceptors.t.type = regex_extractor\n\
         a1.sources.r1.interceptors.t.regex = {regex}\n\
         a1.sources.r1.interceptors.t.serializers = s\n\
         a1.sources.r1.interceptors.t.serializers.s.name = tenant\n",
        channels = channels.join(" "),
        sinks = sinks.join(" "),
    );
    for (c, k) in channels.iter().zip(&sinks) {
        s.push_str(&format!(
            "a1.channels.{c}.type = memory\n\
             a1.channels.{c}.capacity = {cap}\n\
             a1.channels.{c}.transactionCapacity = {batch}\n\
             a1.sinks.{k}.type = null\n\
             a1.sinks.{k}.batchSize = {batch}\n\
             a1.sinks.{k}.channel = {c}\n",
            cap = (batch * 10).max(10_000),
        ));
    }
    if n == 0 {
        return s;
    }
    s.push_str(&format!(
        "a1.sources.r1.selector.type = tenant\n\
         a1.tenants = {}\n\
         a1.tenants.header = tenant\n\
         # seq bodies 0-9 have no two-digit tail\n\
         a1.tenants.unknown = {}\n",
        names.join(" "),
        names[0]
    ));
    for t in &names {
        s.push_str(&format!(
            "a1.tenants.{t}.channels = c{t}\n\
             a1.tenants.{t}.interceptors = g\n\
             a1.tenants.{t}.interceptors.g.type = wasm\n\
             a1.tenants.{t}.interceptors.g.path = {}\n\
             a1.tenants.{t}.interceptors.g.limits.memory = 16m\n",
            guest.display()
        ));
        if let Some(i) = instances {
            s.push_str(&format!(
                "a1.tenants.{t}.interceptors.g.limits.instances = {i}\n"
            ));
        }
    }
    s
}

struct Row {
    events_per_s: f64,
    rss_mib: f64,
    cpu_cores: f64,
    startup: Duration,
}

fn run(dir: &Path, n: usize, instances: Option<usize>, args: &Args, guest: &Path) -> Result<Row> {
    let name = match (n, instances) {
        (0, _) => "baseline".to_string(),
        (n, None) => format!("{n} tenants"),
        (n, Some(i)) => format!("{n} tenants, {i} instance(s) each"),
    };
    let run_dir = tempfile::tempdir_in(dir)?;
    let run_dir = run_dir.path();
    std::fs::create_dir_all(run_dir)?;
    let t0 = Instant::now();
    let sluice = Sluice::start(
        run_dir,
        "bench",
        &config(n, args.batch, guest, instances),
        &[],
    )?;
    wait_for(
        &format!("{name}: first batch"),
        Duration::from_secs(300),
        || {
            sluice
                .counter("SOURCE.r1", "EventAcceptedCount")
                .ok()
                .filter(|v| *v > 0)
        },
    )
    .with_context(|| sluice.log_text())?;
    let startup = t0.elapsed();
    let accepted = || sluice.counter("SOURCE.r1", "EventAcceptedCount");
    let sample = measure(&name, &[sluice.pid()], &args.window, 0, &accepted)?;
    if n > 0 {
        let (names, _) = tenants(n);
        let mut faults = 0;
        for t in &names {
            faults += sluice.counter(&format!("WASM.tenant.{t}.g"), "FaultCount")?;
        }
        if faults > 0 {
            bail!("{name}: {faults} guest faults; log:\n{}", sluice.log_text());
        }
    }
    Ok(Row {
        events_per_s: sample.events_per_s,
        rss_mib: sample.rss_mib,
        cpu_cores: sample.cpu_cores,
        startup,
    })
}

fn main() -> std::process::ExitCode {
    let args: Args = harness::parse_with_window(3, 8);
    harness::report("bench_tenants", bench(&args))
}

fn bench(args: &Args) -> Result<()> {
    let bin = sluice_release_bin()?;
    println!("bench_tenants: sluice {}", bin.display());
    print_machine();
    let guest = guests::rust("drop-by-level", None)?;
    let tmp = tempfile::tempdir()?;
    let mut rows = Vec::new();
    // The baseline runs first and last, to show the run-to-run noise; ratios use their mean.
    // `limits.instances = 1` is the guest as it was before the instance pool: one instance
    // behind a lock.
    let plan = [
        (0, None),
        (1, None),
        (10, Some(1)),
        (10, None),
        (100, Some(1)),
        (100, None),
        (0, None),
    ];
    for (n, instances) in plan {
        rows.push(((n, instances), run(tmp.path(), n, instances, args, &guest)?));
    }
    let base = (rows[0].1.events_per_s + rows[rows.len() - 1].1.events_per_s) / 2.0;
    println!(
        "\nsluice multi-tenant collector: seq -> tenant router -> per-tenant drop-by-level guest (Rust) \
         -> per-tenant memory channel -> null; batch {}, every batch spans every tenant",
        args.batch
    );
    println!(
        "{:<26}{:>14}{:>12}{:>12}{:>10}{:>12}",
        "tenants (instances)", "events/s", "vs base", "peak RSS", "cores", "start-up"
    );
    for ((n, instances), r) in &rows {
        let label = match (n, instances) {
            (0, _) => "0 (baseline)".to_string(),
            (n, None) => format!("{n} (pool, default 4)"),
            (n, Some(i)) => format!("{n} ({i}: before the pool)"),
        };
        println!(
            "{label:<26}{:>14}{:>11.2}x{:>8.1} MiB{:>10.2}{:>10.2} s",
            thousands(r.events_per_s),
            r.events_per_s / base.max(1.0),
            r.rss_mib,
            r.cpu_cores,
            r.startup.as_secs_f64()
        );
    }
    Ok(())
}
