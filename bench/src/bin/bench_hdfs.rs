//! HDFS sink benchmark: `stress -> memory -> hdfs` (DataStream, text) into one
//! MiniDFSCluster, on the release `sluice` binary and on Apache Flume 1.11.0's HDFSEventSink
//! (with Hadoop's 3.3.6 client jars), same config, one after the other in the same run.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p sluice-bench --bin bench_hdfs [-- OPTIONS]
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
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;
use sluice_bench::harness::{
    self, Only, Payload, Sample, Side, Table, Window, measure, measure_flume, print_machine,
    sluice_release_bin,
};
use sluice_integration::Sluice;
use sluice_integration::flume::{FLUME_VERSION, Flume, FlumeOptions};
use sluice_integration::hdfs::{HADOOP_VERSION, MiniDfs, flume_hdfs_jars};

/// stress -> memory -> hdfs on sluice and on Apache Flume's HDFSEventSink, one MiniDFSCluster
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    window: Window,
    #[command(flatten)]
    payload: Payload,
    #[command(flatten)]
    only: Only,
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

fn run_sluice(dir: &Path, dfs: &MiniDfs, args: &Args) -> Result<Sample> {
    let conf = config(
        &dfs.uri("/bench/sluice"),
        args.payload.body,
        args.payload.batch,
    );
    let mut sluice = Sluice::start(dir, "bench-hdfs", &conf, &[])?;
    let drained = || sluice.counter("SINK.k1", "EventDrainSuccessCount");
    let sample = measure(
        "sluice",
        &[sluice.pid()],
        &args.window,
        args.payload.body,
        &drained,
    )?;
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
    let conf = config(
        &dfs.uri("/bench/flume"),
        args.payload.body,
        args.payload.batch,
    );
    let opts = FlumeOptions {
        log_level: "WARN".into(),
        extra_classpath: flume_hdfs_jars()?,
        ..FlumeOptions::default()
    };
    let mut flume = Flume::start_with(dir, &conf, "a1", &opts)?;
    measure_flume(
        &mut flume,
        ("SINK.k1", "EventDrainSuccessCount"),
        &args.window,
        args.payload.body,
    )
}

fn main() -> std::process::ExitCode {
    let args: Args = harness::parse_with_window(10, 20);
    harness::report("bench_hdfs", bench(&args))
}

fn bench(args: &Args) -> Result<()> {
    let run = |side| args.only.runs(side);
    let sluice_bin = run(Side::Sluice).then(sluice_release_bin).transpose()?;
    let dir = tempfile::tempdir()?;
    let dfs = MiniDfs::shared()?;
    println!(
        "bench_hdfs: stress -> memory -> hdfs (DataStream, text), {}-byte bodies, batch {}, \
         warm-up {} s, window {} s",
        args.payload.body,
        args.payload.batch,
        args.window.warmup.as_secs(),
        args.window.window.as_secs()
    );
    if let Some(bin) = sluice_bin {
        println!("  sluice: {}", bin.display());
    }
    println!(
        "  HDFS:   MiniDFSCluster (Hadoop {HADOOP_VERSION}, 1 DataNode, -Xmx512m) at {}",
        dfs.url
    );
    println!(
        "  Flume:  Apache Flume {FLUME_VERSION} HDFSEventSink + hadoop-client {HADOOP_VERSION}, -Xmx512m"
    );
    print_machine();
    let sluice = run(Side::Sluice)
        .then(|| run_sluice(dir.path(), dfs, args))
        .transpose()?;
    let flume = run(Side::Flume)
        .then(|| run_flume(dir.path(), dfs, args))
        .transpose()?;
    let table = Table::vs_flume(20);
    table.print_header();
    table.sample_rows(sluice.as_ref(), flume.as_ref(), "peak RSS MiB");
    Ok(())
}
