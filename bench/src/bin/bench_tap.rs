//! What a connected `sluice tap` costs the pipeline (issue #20): one release agent, `seq` (bodies
//! that differ) → `static` + `host` interceptors (headers) → memory → null, started with
//! `--tap`, measured in four consecutive windows:
//! 1. no tap connected;
//! 2. `sluice tap --addr ADDR > /dev/null`: a client reading every event at every point as
//!    fast as it can (three copies of each event: source, channel, sink);
//! 3. a slow client: a TCP connection that asks for `/tap` and never reads;
//! 4. no tap again (the drift between 1 and 4 says how steady the machine was).
//!
//! ```text
//! cargo build --release -p sluice --bin sluice --locked
//! cargo build --release -p sluice-bench --bin bench_tap --locked
//! target/release/bench_tap [--warmup S] [--window S] [--batch N]
//! ```
//!
//! Throughput is the growth of `CHANNEL.c1/EventTakeSuccessCount` over each window; CPU is the
//! agent's user+system time over it. The load average is printed before each window; nothing
//! is asserted.

use std::io::Write as _;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use sluice_bench::harness::{
    self, Window, cpu_seconds, memory_null_config, parse_with_window, print_load, print_machine,
    sluice_release_bin, thousands,
};
use sluice_integration::Sluice;

/// The cost of a connected tap on a pipeline
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    window: Window,
    /// Source, channel transaction and sink batch size
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = harness::at_least_one)]
    batch: usize,
}

struct Measured {
    events_per_s: f64,
    cpu_cores: f64,
    skipped: u64,
}

fn measure(agent: &Sluice, w: &Window, what: &str) -> Result<Measured> {
    std::thread::sleep(w.warmup);
    print_load(what);
    let takes = || agent.counter("CHANNEL.c1", "EventTakeSuccessCount");
    let skipped = || agent.counter("TAP.tap", "EventSkippedCount");
    let (n0, s0, c0, t0) = (
        takes()?,
        skipped()?,
        cpu_seconds(agent.pid())?,
        Instant::now(),
    );
    std::thread::sleep(w.window);
    let (n1, s1, c1, t1) = (
        takes()?,
        skipped()?,
        cpu_seconds(agent.pid())?,
        Instant::now(),
    );
    let secs = (t1 - t0).as_secs_f64();
    Ok(Measured {
        events_per_s: n1.saturating_sub(n0) as f64 / secs,
        cpu_cores: (c1 - c0) / secs,
        skipped: s1.saturating_sub(s0),
    })
}

fn main() -> std::process::ExitCode {
    let args: Args = parse_with_window(3, 10);
    harness::report("bench_tap", bench(&args))
}

fn bench(a: &Args) -> Result<()> {
    let bin = sluice_release_bin()?;
    println!(
        "bench_tap: seq -> static + host interceptors -> memory -> null, batch {}, warm-up {} s, \
         window {} s per mode",
        a.batch,
        a.window.warmup.as_secs(),
        a.window.window.as_secs()
    );
    println!("  sluice: {}", bin.display());
    print_machine();
    let dir = tempfile::tempdir()?;
    let interceptors = "a1.sources.r1.interceptors = s h\n\
                        a1.sources.r1.interceptors.s.type = static\n\
                        a1.sources.r1.interceptors.s.key = datacenter\n\
                        a1.sources.r1.interceptors.s.value = eu-west-1\n\
                        a1.sources.r1.interceptors.h.type = host\n";
    let conf = memory_null_config("seq", a.batch, interceptors);
    let agent = Sluice::start(dir.path(), "tap", &conf, &["--tap"])?;
    let addr = agent.metrics_addr.clone().context("metrics address")?;

    let without = measure(&agent, &a.window, "window 1 (no tap)")?;

    let mut reader: Child = Command::new(&bin)
        .args(["tap", "--addr", &addr])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start sluice tap")?;
    let reading = measure(&agent, &a.window, "window 2 (sluice tap > /dev/null)");
    let _ = reader.kill();
    let _ = reader.wait();
    let reading = reading?;

    let mut slow = TcpStream::connect(&addr)?;
    write!(slow, "GET /tap HTTP/1.1\r\nHost: bench\r\n\r\n")?;
    let slow_m = measure(&agent, &a.window, "window 3 (a tap that never reads)")?;
    drop(slow);
    // The agent notices the closed connection at its next write.
    std::thread::sleep(Duration::from_secs(6));

    let again = measure(&agent, &a.window, "window 4 (no tap)")?;

    let base = (without.events_per_s + again.events_per_s) / 2.0;
    println!(
        "\n{:<36} {:>14} {:>10} {:>9} {:>16}",
        "mode", "events/s", "vs no tap", "CPU", "tap skipped/s"
    );
    for (name, m) in [
        ("1. no tap", &without),
        ("2. sluice tap > /dev/null", &reading),
        ("3. tap that never reads", &slow_m),
        ("4. no tap again", &again),
    ] {
        println!(
            "{:<36} {:>14} {:>9.2}x {:>9.2} {:>16}",
            name,
            thousands(m.events_per_s),
            m.events_per_s / base.max(1.0),
            m.cpu_cores,
            thousands(m.skipped as f64 / a.window.window.as_secs_f64()),
        );
    }
    println!(
        "  (ratios against the mean of windows 1 and 4; drift between them: {:+.1}%)",
        (again.events_per_s / without.events_per_s.max(1.0) - 1.0) * 100.0
    );
    Ok(())
}
