//! A wasm router behind an Avro source with many concurrent senders: the case guest instance
//! pools (`limits.instances`) are for. One sender agent runs `--senders` pipelines
//! (`stress → static tenant header → memory → avro sink`, each its own connection) into one
//! collector `avro source → wasm header-router (Rust) → 2 memory channels → null`. Rows, in
//! one run: the collector without a router (baseline), with the router at
//! `limits.instances = 1` (every call waits for the one instance: how every guest ran before
//! pools) and at `limits.instances = --instances`.
//!
//! ```text
//! cargo build --release -p sluice --bin sluice
//! cargo run --release -p sluice-bench --bin bench_wasm_pool [-- --senders 8 --instances 8 --warmup S --window S --body B --batch N]
//! ```
//!
//! Throughput is the growth of both collector channels' `EventTakeSuccessCount` over the
//! window; RSS and CPU are summed over both agents.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Parser;
use sluice_bench::harness::{
    self, Payload, Sample, Window, measure, print_machine, sluice_release_bin,
};
use sluice_integration::{Sluice, free_port, guests};

/// An Avro collector with a wasm router and many senders, by limits.instances
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    window: Window,
    #[command(flatten)]
    payload: Payload,
    /// Concurrent Avro connections (one sender pipeline each)
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    senders: u16,
    /// limits.instances of the measured pool row
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    instances: u16,
}

fn sender(a: &Args, port: u16) -> String {
    let names: Vec<String> = (0..a.senders).map(|i| format!("r{i}")).collect();
    let chans: Vec<String> = (0..a.senders).map(|i| format!("c{i}")).collect();
    let sinks: Vec<String> = (0..a.senders).map(|i| format!("k{i}")).collect();
    let mut s = format!(
        "a1.sources = {}\na1.channels = {}\na1.sinks = {}\n",
        names.join(" "),
        chans.join(" "),
        sinks.join(" ")
    );
    for i in 0..a.senders {
        s.push_str(&format!(
            "a1.sources.r{i}.type = org.apache.flume.source.StressSource\n\
             a1.sources.r{i}.size = {body}\n\
             a1.sources.r{i}.batchSize = {batch}\n\
             a1.sources.r{i}.channels = c{i}\n\
             a1.sources.r{i}.interceptors = t\n\
             a1.sources.r{i}.interceptors.t.type = static\n\
             a1.sources.r{i}.interceptors.t.key = tenant\n\
             a1.sources.r{i}.interceptors.t.value = t{i}\n\
             a1.channels.c{i}.type = memory\n\
             a1.channels.c{i}.capacity = 100000\n\
             a1.channels.c{i}.transactionCapacity = {batch}\n\
             a1.sinks.k{i}.type = avro\n\
             a1.sinks.k{i}.channel = c{i}\n\
             a1.sinks.k{i}.hostname = 127.0.0.1\n\
             a1.sinks.k{i}.port = {port}\n\
             a1.sinks.k{i}.batch-size = {batch}\n",
            body = a.payload.body,
            batch = a.payload.batch,
        ));
    }
    s
}

/// The collector; `router` = (guest, limits.instances), none for the baseline.
fn collector(a: &Args, port: u16, router: Option<(&Path, u16)>) -> String {
    let selector = match router {
        None => String::new(),
        Some((guest, instances)) => {
            // Even tenants to c1, odd ones to c2.
            let routes: String = (0..a.senders)
                .map(|i| format!("a1.sources.r1.selector.config.route.t{i} = {}\n", i % 2))
                .collect();
            format!(
                "a1.sources.r1.selector.type = wasm\n\
                 a1.sources.r1.selector.path = {}\n\
                 a1.sources.r1.selector.reload = false\n\
                 a1.sources.r1.selector.limits.instances = {instances}\n\
                 a1.sources.r1.selector.config.header = tenant\n{routes}",
                guest.display()
            )
        }
    };
    let channels = if router.is_some() { "c1 c2" } else { "c1" };
    let mut s = format!(
        "a1.sources = r1\na1.channels = c1 c2\na1.sinks = k1 k2\n\
         a1.sources.r1.type = avro\n\
         a1.sources.r1.bind = 127.0.0.1\n\
         a1.sources.r1.port = {port}\n\
         a1.sources.r1.channels = {channels}\n{selector}"
    );
    for i in 1..=2 {
        s.push_str(&format!(
            "a1.channels.c{i}.type = memory\n\
             a1.channels.c{i}.capacity = 100000\n\
             a1.channels.c{i}.transactionCapacity = {batch}\n\
             a1.sinks.k{i}.type = null\n\
             a1.sinks.k{i}.batchSize = {batch}\n\
             a1.sinks.k{i}.channel = c{i}\n",
            batch = a.payload.batch,
        ));
    }
    s
}

fn run(dir: &Path, a: &Args, label: &str, router: Option<(&Path, u16)>) -> Result<Sample> {
    let port = free_port()?;
    let sub = dir.join(label.replace([' ', '='], "_"));
    std::fs::create_dir_all(&sub)?;
    let c = Sluice::start(&sub, "collector", &collector(a, port, router), &[])?;
    let s = Sluice::start(&sub, "sender", &sender(a, port), &[])?;
    let drained = || -> Result<u64> {
        Ok(c.counter("CHANNEL.c1", "EventTakeSuccessCount")?
            + c.counter("CHANNEL.c2", "EventTakeSuccessCount")?)
    };
    let sample = measure(
        label,
        &[s.pid(), c.pid()],
        &a.window,
        a.payload.body,
        &drained,
    )?;
    if router.is_some() {
        let instances = c.counter("WASM.r1.selector", "InstanceCount")?;
        println!("  {label}: {instances} instances alive at the end");
    }
    Ok(sample)
}

fn main() -> std::process::ExitCode {
    let args: Args = harness::parse_with_window(5, 10);
    harness::report("bench_wasm_pool", bench(&args))
}

fn bench(a: &Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let guest: PathBuf = guests::rust("header-router", None)?;
    println!(
        "bench_wasm_pool: {} x (stress -> static tenant -> memory -> avro sink) => avro source -> \
         wasm header-router -> 2 memory channels -> null; {}-byte bodies, batch {}, warm-up {} s, \
         window {} s",
        a.senders,
        a.payload.body,
        a.payload.batch,
        a.window.warmup.as_secs(),
        a.window.window.as_secs()
    );
    println!("  sluice: {}", sluice_release_bin()?.display());
    print_machine();
    let pool = format!("router, limits.instances = {}", a.instances);
    let rows = [
        ("no router (baseline)".to_string(), None),
        (
            "router, limits.instances = 1".to_string(),
            Some((guest.as_path(), 1)),
        ),
        (pool, Some((guest.as_path(), a.instances))),
    ];
    let mut results = Vec::new();
    for (label, router) in &rows {
        results.push((label.clone(), run(dir.path(), a, label, *router)?));
        print_machine();
    }
    let base = results[0].1.events_per_s;
    let one = results[1].1.events_per_s;
    println!(
        "\n{:<34}{:>14}{:>12}{:>14}{:>11}{:>8}",
        "collector", "events/s", "vs base", "vs 1 instance", "RSS MiB", "cores"
    );
    for (label, s) in &results {
        println!(
            "{:<34}{:>14.0}{:>11.2}x{:>13.2}x{:>11.0}{:>8.2}",
            label,
            s.events_per_s,
            s.events_per_s / base,
            s.events_per_s / one,
            s.rss_mib,
            s.cpu_cores
        );
    }
    Ok(())
}
