//! The file channel against real crashes: `seq -> file channel -> file_roll` on the real
//! `sluice` binary, killed with SIGKILL at random moments under load and restarted each time.
//!
//! The sink fsyncs each batch, so it is slower than the source and the channel holds a backlog
//! (replayed at each restart). Every run tags its events with the run number (a `search_replace` interceptor turns body `n`
//! into `r<run>-n`), because `seq` starts again at 0 after each restart. What must hold at the
//! end, once the last run has drained the channel:
//! - nothing committed is lost: for every run, every sequence number below the source's
//!   `EventAcceptedCount` read just before the kill is in the output, and the numbers of a run
//!   form a gap-free prefix; the last run's `totalEvents` are all there;
//! - duplicates come only from takes delivered but not committed at a crash: at most one sink
//!   batch per crash.
//!
//! Kill moments come from a seed printed at the start (`SLUICE_CRASH_SEED` replays one).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use sluice_integration::{Sluice, sluice_bin, wait_for};

const CRASHES: usize = 22;
const SINK_BATCH: u64 = 500;
const FINAL_EVENTS: u64 = 50_000;

/// xorshift64*: enough randomness for kill moments, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.next() % (to - from))
    }
}

fn config(root: &Path, run: usize, total: Option<u64>) -> String {
    let total = total.map_or(String::new(), |t| {
        format!("a1.sources.r1.totalEvents = {t}\n")
    });
    let p = |s: &str| root.join(s).display().to_string();
    format!(
        "\
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = seq
a1.sources.r1.batchSize = 1000
{total}a1.sources.r1.backoffSleepIncrement = 20
a1.sources.r1.maxBackoffSleep = 200
a1.sources.r1.channels = c1
a1.sources.r1.interceptors = i1
a1.sources.r1.interceptors.i1.type = search_replace
a1.sources.r1.interceptors.i1.searchPattern = ^
a1.sources.r1.interceptors.i1.replaceString = r{run}-
a1.channels.c1.type = file
a1.channels.c1.checkpointDir = {cp}
a1.channels.c1.dataDirs = {d1},{d2}
a1.channels.c1.capacity = 200000
a1.channels.c1.transactionCapacity = 1000
a1.channels.c1.maxFileSize = 4194304
a1.channels.c1.checkpointInterval = 1000
a1.channels.c1.minimumRequiredSpace = 1048576
a1.sinks.k1.type = file_roll
a1.sinks.k1.channel = c1
a1.sinks.k1.sink.directory = {out}
a1.sinks.k1.sink.batchSize = {SINK_BATCH}
a1.sinks.k1.sink.rollInterval = 0
a1.sinks.k1.sink.fsync = true
",
        cp = p("checkpoint"),
        d1 = p("data1"),
        d2 = p("data2"),
        out = p("out"),
    )
}

/// A counter once the component has registered it (the channel opens after metrics start).
fn counter(s: &Sluice, component: &str, name: &str) -> Result<u64> {
    wait_for(
        &format!("{component}/{name}"),
        Duration::from_secs(30),
        || s.counter(component, name).ok(),
    )
}

/// Output lines, and how many were torn (a kill in the middle of the sink's write leaves the
/// last line of a file without its newline).
fn output(dir: &Path) -> Result<(Vec<String>, usize)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let (mut lines, mut torn) = (Vec::new(), 0);
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        let complete = text.ends_with('\n');
        let mut file_lines: Vec<String> = text.lines().map(str::to_string).collect();
        if !complete && !text.is_empty() {
            file_lines.pop();
            torn += 1;
        }
        lines.extend(file_lines);
    }
    Ok((lines, torn))
}

#[test]
fn kill9_under_load_loses_nothing_and_duplicates_at_most_a_batch_per_crash() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    std::fs::create_dir_all(root.join("out"))?;
    let seed = match std::env::var("SLUICE_CRASH_SEED") {
        Ok(s) => s.parse().context("SLUICE_CRASH_SEED must be a number")?,
        Err(_) => {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos() as u64
                | 1
        }
    };
    println!("crash test seed {seed} (SLUICE_CRASH_SEED={seed} replays these kill moments)");
    let mut rng = Rng(seed);
    let started = Instant::now();
    // Per run: events the source had committed to the channel when last asked before the kill.
    let mut accepted: Vec<u64> = Vec::new();
    let mut replays: Vec<(u64, u64)> = Vec::new();
    for run in 0..CRASHES {
        ensure!(
            started.elapsed() < Duration::from_secs(240),
            "crash loop exceeded 240 s at run {run}"
        );
        let mut s = Sluice::start(root, &format!("run{run}"), &config(root, run, None), &[])?;
        replays.push((
            counter(&s, "CHANNEL.c1", "ReplayEventCount")?,
            counter(&s, "CHANNEL.c1", "ReplayMillis")?,
        ));
        std::thread::sleep(rng.millis(300, 1500));
        let a = counter(&s, "SOURCE.r1", "EventAcceptedCount")?;
        s.kill9()?;
        accepted.push(a);
    }
    let last = CRASHES;
    let mut s = Sluice::start(
        root,
        &format!("run{last}"),
        &config(root, last, Some(FINAL_EVENTS)),
        &[],
    )?;
    replays.push((
        counter(&s, "CHANNEL.c1", "ReplayEventCount")?,
        counter(&s, "CHANNEL.c1", "ReplayMillis")?,
    ));
    wait_for(
        "the last run to deliver everything",
        Duration::from_secs(180),
        || {
            let done = s.counter("SOURCE.r1", "EventAcceptedCount").ok()? == FINAL_EVENTS
                && s.counter("CHANNEL.c1", "ChannelSize").ok()? == 0;
            done.then_some(())
        },
    )?;
    let corrupt = counter(&s, "CHANNEL.c1", "CorruptRecordCount")?;
    let torn_writes = counter(&s, "CHANNEL.c1", "TornWriteCount")?;
    let fsyncs = counter(&s, "CHANNEL.c1", "FsyncCount")?;
    s.signal("TERM")?;
    ensure!(
        s.wait(Duration::from_secs(30))? == Some(0),
        "sluice did not stop cleanly"
    );
    accepted.push(FINAL_EVENTS);

    let (lines, torn_lines) = output(&root.join("out"))?;
    let mut seen: HashMap<(usize, u64), u32> = HashMap::new();
    for l in &lines {
        let parsed = l
            .strip_prefix('r')
            .and_then(|r| r.split_once('-'))
            .and_then(|(run, n)| Some((run.parse::<usize>().ok()?, n.parse::<u64>().ok()?)));
        let Some(key) = parsed else {
            bail!("unexpected output line `{l}`");
        };
        *seen.entry(key).or_default() += 1;
    }
    let duplicates: u64 = seen.values().map(|c| u64::from(c - 1)).sum();
    let mut lost = Vec::new();
    let mut delivered_total = 0;
    for (run, &a) in accepted.iter().enumerate() {
        let max = seen
            .keys()
            .filter(|(r, _)| *r == run)
            .map(|(_, n)| *n + 1)
            .max()
            .unwrap_or(0);
        delivered_total += max;
        let must = a.max(max);
        let missing = (0..must).filter(|n| !seen.contains_key(&(run, *n))).count();
        if missing > 0 {
            lost.push(format!(
                "run {run}: {missing} of 0..{must} missing (accepted {a})"
            ));
        }
    }
    let replay_max = replays
        .iter()
        .max_by_key(|r| r.1)
        .copied()
        .unwrap_or_default();
    println!(
        "crash test: {CRASHES} kill -9 + 1 clean run in {:.1?}; {} distinct events delivered, {} \
         output lines, {duplicates} duplicates ({:.1} per crash, bound {SINK_BATCH}), {torn_lines} \
         torn output lines, {} lost",
        started.elapsed(),
        delivered_total,
        lines.len(),
        duplicates as f64 / CRASHES as f64,
        lost.len()
    );
    println!("accepted before each kill: {accepted:?}");
    println!(
        "replays (events, ms): {replays:?}; slowest {} events in {} ms; last run: \
         CorruptRecordCount {corrupt}, TornWriteCount {torn_writes}, FsyncCount {fsyncs}",
        replay_max.0, replay_max.1
    );
    ensure!(
        lost.is_empty(),
        "committed events lost:\n{}",
        lost.join("\n")
    );
    ensure!(
        duplicates <= CRASHES as u64 * SINK_BATCH,
        "{duplicates} duplicates exceed one sink batch ({SINK_BATCH}) per crash ({CRASHES})"
    );
    ensure!(corrupt == 0, "a kill -9 must never look like corruption");
    Ok(())
}

#[test]
fn a_second_agent_on_the_same_directories_refuses_to_start() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    std::fs::create_dir_all(root.join("out"))?;
    let conf = config(root, 0, Some(1000));
    let first = Sluice::start(root, "first", &conf, &[])?;
    counter(&first, "CHANNEL.c1", "ChannelSize")?;
    let conf_path = root.join("second.conf");
    std::fs::write(&conf_path, &conf)?;
    let mut second = std::process::Command::new(sluice_bin()?)
        .args(["agent", "-n", "a1", "--no-reload-conf", "-f"])
        .arg(&conf_path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let status = wait_for("the second agent to exit", Duration::from_secs(30), || {
        second.try_wait().ok().flatten()
    });
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            second.kill()?;
            second.wait()?;
            bail!("{e}: the second agent kept running on a locked channel");
        }
    };
    let mut stderr = String::new();
    if let Some(mut e) = second.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut stderr)?;
    }
    println!("second agent: {status}; {}", stderr.trim());
    ensure!(!status.success(), "the second agent must fail");
    ensure!(
        stderr.contains("locked by another process") && stderr.contains("in_use.lock"),
        "the error must say the directory is locked: {stderr}"
    );
    // The first agent is unaffected.
    ensure!(counter(&first, "CHANNEL.c1", "Unhealthy")? == 0);
    Ok(())
}
