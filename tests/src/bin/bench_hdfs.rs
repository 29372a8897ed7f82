//! HDFS sink benchmark: `stress -> memory -> hdfs` (DataStream, text) into one
//! MiniDFSCluster, on the release `sluice` binary and on Apache Flume 1.11.0's HDFSEventSink
//! (with Hadoop's 3.3.6 client jars), same config, one after the other in the same run.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p sluice-integration --bin bench_hdfs [-- OPTIONS]
//!   --warmup SECS   seconds before the window opens      (default 10, env BENCH_WARMUP_SECS)
//!   --window SECS   measured seconds                     (default 20, env BENCH_WINDOW_SECS)
//!   --body BYTES    event body size                      (default 256)
//!   --batch N       source/channel/sink batch size       (default 1000)
//!   --only NAME     run only `sluice` or `flume`
//! ```
//!
//! Throughput is the growth of the sink's `EventDrainSuccessCount` (events written and
//! committed: sluice `hsync`s each batch, Flume `hflush`es it) over the window, from each
//! agent's Flume-JSON `/metrics`; MB/s counts body bytes. Both write 128 MiB files
//! (`hdfs.rollSize`), so a window sees the same number of file rolls for both.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sluice_integration::bench::{cpu_seconds, row};
use sluice_integration::flume::{FLUME_VERSION, Flume, FlumeOptions};
use sluice_integration::hdfs::{HADOOP_VERSION, MiniDfs, flume_hdfs_jars};
use sluice_integration::{Sluice, peak_rss_kib, sluice_bin};

struct Args {
    warmup: Duration,
    window: Duration,
    body: usize,
    batch: usize,
    only: Option<String>,
}

fn env_secs(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v} is not a number of seconds")),
        Err(_) => Ok(default),
    }
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        warmup: Duration::from_secs(env_secs("BENCH_WARMUP_SECS", 10)?),
        window: Duration::from_secs(env_secs("BENCH_WINDOW_SECS", 20)?),
        body: 256,
        batch: 1000,
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
            "--only" => {
                let v = value()?;
                if v != "sluice" && v != "flume" {
                    bail!("--only takes `sluice` or `flume`, not `{v}`");
                }
                args.only = Some(v);
            }
            "-h" | "--help" => {
                println!(
                    "bench_hdfs [--warmup SECS] [--window SECS] [--body BYTES] [--batch N] \
                     [--only sluice|flume]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}` (try --help)"),
        }
    }
    if args.window.is_zero() {
        bail!("--window must be at least 1 second");
    }
    Ok(args)
}

fn config(hdfs_path: &str, body: usize, batch: usize) -> String {
    format!(
        "\
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = org.apache.flume.source.StressSource
a1.sources.r1.size = {body}
a1.sources.r1.batchSize = {batch}
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = 100000
a1.channels.c1.transactionCapacity = {batch}
a1.sinks.k1.type = hdfs
a1.sinks.k1.channel = c1
a1.sinks.k1.hdfs.path = {hdfs_path}
a1.sinks.k1.hdfs.fileType = DataStream
a1.sinks.k1.hdfs.batchSize = {batch}
a1.sinks.k1.hdfs.rollSize = 134217728
a1.sinks.k1.hdfs.rollCount = 0
a1.sinks.k1.hdfs.rollInterval = 0
"
    )
}

struct Sample {
    events_per_s: f64,
    mb_per_s: f64,
    rss_mib: f64,
    cpu_cores: f64,
}

fn measure(name: &str, pid: u32, args: &Args, drained: &dyn Fn() -> Result<u64>) -> Result<Sample> {
    eprintln!("{name}: pid {pid}, warming up {:?}.", args.warmup);
    std::thread::sleep(args.warmup);
    let (c0, cpu0, t0) = (drained()?, cpu_seconds(pid)?, Instant::now());
    std::thread::sleep(args.window);
    let (c1, cpu1, t1) = (drained()?, cpu_seconds(pid)?, Instant::now());
    let secs = (t1 - t0).as_secs_f64();
    let events_per_s = c1.saturating_sub(c0) as f64 / secs;
    eprintln!("{name}: {} events in {secs:.2} s.", c1.saturating_sub(c0));
    Ok(Sample {
        events_per_s,
        mb_per_s: events_per_s * args.body as f64 / 1e6,
        rss_mib: peak_rss_kib(pid)? as f64 / 1024.0,
        cpu_cores: (cpu1 - cpu0) / secs,
    })
}

fn run_sluice(dir: &Path, dfs: &MiniDfs, args: &Args) -> Result<Sample> {
    let conf = config(&dfs.uri("/bench/sluice"), args.body, args.batch);
    let mut sluice = Sluice::start(dir, "bench-hdfs", &conf, &[])?;
    let pid = sluice.pid();
    let drained = || sluice.counter("SINK.k1", "EventDrainSuccessCount");
    let sample = measure("sluice", pid, args, &drained)?;
    if sluice.child.try_wait()?.is_some() {
        bail!(
            "sluice exited during the measurement; log:\n{}",
            sluice.log_text()
        );
    }
    sluice.signal("TERM")?;
    sluice.wait(Duration::from_secs(60))?;
    Ok(sample)
}

fn run_flume(dir: &Path, dfs: &MiniDfs, args: &Args) -> Result<Sample> {
    let conf = config(&dfs.uri("/bench/flume"), args.body, args.batch);
    let opts = FlumeOptions {
        log_level: "WARN".into(),
        extra_classpath: flume_hdfs_jars()?,
        ..FlumeOptions::default()
    };
    let mut flume = Flume::start_with(dir, &conf, "a1", &opts)?;
    let pid = flume.pid();
    let drained = || flume.counter("SINK.k1", "EventDrainSuccessCount");
    let sample = measure("Flume", pid, args, &drained)?;
    if flume.child.try_wait()?.is_some() {
        bail!(
            "Flume exited during the measurement; log:\n{}",
            flume.log_tail(40)
        );
    }
    flume.kill()?;
    Ok(sample)
}

fn main() -> std::process::ExitCode {
    sluice_integration::bench::main("bench_hdfs", bench)
}

fn bench() -> Result<()> {
    let args = parse_args()?;
    let dir = tempfile::tempdir()?;
    let run = |who: &str| args.only.as_deref().is_none_or(|o| o == who);
    if run("sluice") {
        sluice_bin().context(
            "the bench runs the release build: `cargo build --release --workspace --bins`",
        )?;
    }
    let dfs = MiniDfs::shared()?;
    println!(
        "bench_hdfs: stress -> memory -> hdfs (DataStream, text), {}-byte bodies, batch {}, \
         warm-up {} s, window {} s",
        args.body,
        args.batch,
        args.warmup.as_secs(),
        args.window.as_secs()
    );
    println!(
        "  HDFS:   MiniDFSCluster (Hadoop {HADOOP_VERSION}, 1 DataNode, -Xmx512m) at {}",
        dfs.url
    );
    println!(
        "  Flume:  Apache Flume {FLUME_VERSION} HDFSEventSink + hadoop-client {HADOOP_VERSION}, -Xmx512m"
    );
    println!(
        "  cores:  {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let sluice = if run("sluice") {
        Some(run_sluice(dir.path(), dfs, &args)?)
    } else {
        None
    };
    let flume = if run("flume") {
        Some(run_flume(dir.path(), dfs, &args)?)
    } else {
        None
    };
    println!();
    println!(
        "{:<20}{:>16}{:>16}{:>14}",
        "",
        "sluice",
        format!("Flume {FLUME_VERSION}"),
        "sluice/Flume"
    );
    let (s, f) = (sluice.as_ref(), flume.as_ref());
    row(
        "events/s",
        s.map(|x| x.events_per_s),
        f.map(|x| x.events_per_s),
        |v| format!("{v:.0}"),
    );
    row(
        "MB/s (body bytes)",
        s.map(|x| x.mb_per_s),
        f.map(|x| x.mb_per_s),
        |v| format!("{v:.1}"),
    );
    row(
        "peak RSS MiB",
        s.map(|x| x.rss_mib),
        f.map(|x| x.rss_mib),
        |v| format!("{v:.1}"),
    );
    row(
        "CPU cores used",
        s.map(|x| x.cpu_cores),
        f.map(|x| x.cpu_cores),
        |v| format!("{v:.2}"),
    );
    Ok(())
}
