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
//!
//! `a_full_disk_restarts_drains_and_resumes` puts the channel on a 16 MiB tmpfs that it mounts
//! (as root) and fills: restarts on the full disk, draining, and puts resuming once space returns.

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

/// A tmpfs of `size` mounted by the test on `dir`, unmounted on drop (lazily, so a leftover
/// process cannot keep it mounted).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Self> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let root = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0");
        ensure!(
            root,
            "this test mounts a small tmpfs to fill it up and needs root (CI runs as root): \
             run it as root"
        );
        std::fs::create_dir_all(dir)?;
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .context("cannot run mount")?;
        ensure!(
            st.success(),
            "mount -t tmpfs on {} failed: {st}",
            dir.display()
        );
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// Bytes free for new data (statvfs f_bavail * f_bsize, via stat(1)).
    fn free(&self) -> Result<u64> {
        let out = std::process::Command::new("stat")
            .args(["-f", "--format=%a %S"])
            .arg(&self.dir)
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace().map(str::parse::<u64>);
        match (it.next(), it.next()) {
            (Some(Ok(blocks)), Some(Ok(size))) => Ok(blocks * size),
            _ => bail!("cannot parse `stat -f` output `{text}`"),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// Grows `path` with 64 KiB writes until the filesystem is full.
fn fill(path: &Path) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..100_000 {
        if let Err(e) = f.write_all(&chunk) {
            ensure!(
                e.raw_os_error() == Some(28),
                "filling {} failed otherwise than ENOSPC: {e}",
                path.display()
            );
            return Ok(());
        }
    }
    bail!("{} never filled the disk", path.display())
}

/// `seq -> file channel [-> file_roll]`, the channel on the tmpfs `fs`, the output in `out`.
fn full_disk_config(fs: &Path, out: &Path, run: usize, sink: bool, total: Option<u64>) -> String {
    let total = total.map_or(String::new(), |t| {
        format!("a1.sources.r1.totalEvents = {t}\n")
    });
    let sink = if sink {
        format!(
            "\
a1.sinks = k1
a1.sinks.k1.type = file_roll
a1.sinks.k1.channel = c1
a1.sinks.k1.sink.directory = {}
a1.sinks.k1.sink.batchSize = {SINK_BATCH}
a1.sinks.k1.sink.rollInterval = 0
",
            out.display()
        )
    } else {
        String::new()
    };
    format!(
        "\
a1.sources = r1
a1.channels = c1
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
a1.channels.c1.dataDirs = {data}
a1.channels.c1.capacity = 1000000
a1.channels.c1.transactionCapacity = 1000
a1.channels.c1.maxFileSize = 4194304
a1.channels.c1.checkpointInterval = 500
a1.channels.c1.minimumRequiredSpace = 1048576
{sink}",
        cp = fs.join("checkpoint").display(),
        data = fs.join("data").display(),
    )
}

/// How often each sequence number of run `run` is in the output.
fn delivered(out: &Path, run: usize) -> Result<HashMap<u64, u32>> {
    let prefix = format!("r{run}-");
    let mut seen = HashMap::new();
    for l in output(out)?.0 {
        if let Some(n) = l.strip_prefix(&prefix).and_then(|n| n.parse().ok()) {
            *seen.entry(n).or_default() += 1;
        }
    }
    Ok(seen)
}

/// The size of `checkpoint.tmp` if one is there.
fn temp_checkpoint(fs: &Path) -> Option<u64> {
    std::fs::metadata(fs.join("checkpoint/checkpoint.tmp"))
        .ok()
        .map(|m| m.len())
}

/// Issue 14: a file channel whose checkpoint and data dirs share a filesystem that fills up.
/// Puts fail, a filler file takes the rest, the agent is killed; restarts on the full disk
/// must start, skip checkpoints without leaving `checkpoint.tmp` (also when a little space is
/// freed), drain every committed event through the sink, and resume puts once space returns.
#[test]
fn a_full_disk_restarts_drains_and_resumes() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let out = root.join("out");
    std::fs::create_dir_all(&out)?;
    let fs = Tmpfs::mount(&root.join("fs"), "16m")?;
    let filler = fs.dir.join("filler");

    // Run 0, no sink: fill the channel until puts fail, then fill the rest of the disk.
    let mut s = Sluice::start(
        root,
        "run0",
        &full_disk_config(&fs.dir, &out, 0, false, None),
        &[],
    )?;
    wait_for(
        "puts to fail on the filling disk",
        Duration::from_secs(120),
        || (s.counter("CHANNEL.c1", "EventPutErrorCount").ok()? > 0).then_some(()),
    )?;
    let free_when_puts_stopped = fs.free()?;
    fill(&filler)?;
    ensure!(
        fs.free()? == 0,
        "the disk is not full: {} bytes free",
        fs.free()?
    );
    // Checkpoints come due on the full disk.
    std::thread::sleep(Duration::from_millis(1500));
    let committed = counter(&s, "SOURCE.r1", "EventAcceptedCount")?;
    let cp_errors = counter(&s, "CHANNEL.c1", "CheckpointWriteErrorCount")?;
    let run0_tmp = temp_checkpoint(&fs.dir);
    s.kill9()?;
    println!(
        "full disk: {committed} events committed, {free_when_puts_stopped} bytes free when puts \
         stopped; {cp_errors} checkpoints failed or skipped on the full disk, checkpoint.tmp \
         {run0_tmp:?}"
    );
    ensure!(committed > 10_000, "only {committed} events fit");
    ensure!(
        run0_tmp.is_none(),
        "checkpoint.tmp of {run0_tmp:?} bytes left on the full disk"
    );

    // Run 1, no sink: a restart on the full disk starts and replays everything.
    let mut s = Sluice::start(
        root,
        "run1",
        &full_disk_config(&fs.dir, &out, 1, false, None),
        &[],
    )
    .context("the agent must start on a full disk")?;
    let replayed = counter(&s, "CHANNEL.c1", "ReplayEventCount");
    let replayed = replayed.with_context(|| format!("log:\n{}", s.log_text()))?;
    ensure!(replayed == committed, "replayed {replayed} of {committed}");
    // A little space comes back, far less than the checkpoint needs: it is not attempted, so
    // it cannot fill the disk again with its temp file.
    let len = std::fs::metadata(&filler)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)?
        .set_len(len - 512 * 1024)?;
    std::thread::sleep(Duration::from_millis(1500));
    let free = fs.free()?;
    let run1_tmp = temp_checkpoint(&fs.dir);
    println!(
        "512 KiB freed: {free} bytes free after 3 checkpoint intervals, checkpoint.tmp {run1_tmp:?}"
    );
    ensure!(
        run1_tmp.is_none(),
        "checkpoint.tmp of {run1_tmp:?} bytes left"
    );
    ensure!(
        free >= 500 * 1024,
        "the freed space was used up: {free} bytes free"
    );
    ensure!(counter(&s, "CHANNEL.c1", "EventPutSuccessCount")? == 0);
    s.signal("TERM")?;
    ensure!(
        s.wait(Duration::from_secs(30))? == Some(0),
        "sluice did not stop cleanly on a full disk; log:\n{}",
        s.log_text()
    );
    fill(&filler)?;
    ensure!(fs.free()? == 0);

    // Run 2, with the sink: on the full disk every committed event is delivered.
    let mut s = Sluice::start(
        root,
        "run2",
        &full_disk_config(&fs.dir, &out, 2, true, None),
        &[],
    )
    .context("the agent must start on a full disk")?;
    wait_for(
        "the sink to drain the channel on the full disk",
        Duration::from_secs(240),
        || {
            (s.counter("CHANNEL.c1", "ChannelSize").ok()? == 0
                && s.counter("CHANNEL.c1", "EventTakeSuccessCount").ok()? >= committed)
                .then_some(())
        },
    )
    .with_context(|| format!("log:\n{}", s.log_text()))?;
    let seen = delivered(&out, 0)?;
    let missing = (0..committed).filter(|n| !seen.contains_key(n)).count();
    let duplicates: u64 = seen.values().map(|c| u64::from(c - 1)).sum();
    let take_errors = counter(&s, "CHANNEL.c1", "EventTakeErrorCount")?;
    println!(
        "restart on the full disk: {} of {committed} events drained ({missing} missing, \
         {duplicates} duplicates, {take_errors} take errors), {} bytes free, checkpoint.tmp {:?}",
        seen.len(),
        fs.free()?,
        temp_checkpoint(&fs.dir)
    );
    ensure!(missing == 0, "{missing} committed events not delivered");
    ensure!(
        seen.len() as u64 == committed,
        "events beyond the committed ones"
    );
    ensure!(duplicates == 0, "{duplicates} duplicates without a crash");
    ensure!(temp_checkpoint(&fs.dir).is_none(), "checkpoint.tmp left");
    ensure!(counter(&s, "CHANNEL.c1", "EventPutSuccessCount")? == 0);
    // A crash after the takes: they were logged in the reserve.
    s.kill9()?;

    // Run 3: starts on the full disk with nothing to replay; once space returns puts resume.
    let total = 20_000;
    let conf = full_disk_config(&fs.dir, &out, 3, true, Some(total));
    let s =
        Sluice::start(root, "run3", &conf, &[]).context("the agent must start on a full disk")?;
    let replayed = counter(&s, "CHANNEL.c1", "ReplayEventCount")?;
    ensure!(
        replayed == 0,
        "{replayed} taken events came back after the crash"
    );
    std::thread::sleep(Duration::from_millis(500));
    ensure!(counter(&s, "SOURCE.r1", "EventAcceptedCount")? == 0);
    // Space comes back, but less than a checkpoint's room plus a new segment with its take
    // reserve: the puts' allocations must leave the checkpoint its room, so a checkpoint is
    // written, the drained segments of run 0 are deleted and the rest follows.
    let len = std::fs::metadata(&filler)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)?
        .set_len(len.saturating_sub(1536 * 1024))?;
    println!("1.5 MiB freed: {} bytes free", fs.free()?);
    wait_for("puts to resume and drain", Duration::from_secs(120), || {
        (s.counter("SOURCE.r1", "EventAcceptedCount").ok()? == total
            && s.counter("CHANNEL.c1", "ChannelSize").ok()? == 0)
            .then_some(())
    })
    .with_context(|| format!("log:\n{}", s.log_text()))?;
    wait_for(
        "a checkpoint once space returned",
        Duration::from_secs(30),
        || (s.counter("CHANNEL.c1", "CheckpointCount").ok()? > 0).then_some(()),
    )?;
    let seen = delivered(&out, 3)?;
    let segments = counter(&s, "CHANNEL.c1", "LogFileCount")?;
    println!(
        "space freed: {} of {total} new events delivered, {segments} segments left, {} bytes free",
        seen.len(),
        fs.free()?
    );
    ensure!(
        seen.len() as u64 == total,
        "{} of {total} delivered",
        seen.len()
    );
    let mut s = s;
    s.signal("TERM")?;
    ensure!(
        s.wait(Duration::from_secs(30))? == Some(0),
        "sluice did not stop cleanly"
    );
    ensure!(temp_checkpoint(&fs.dir).is_none(), "checkpoint.tmp left");
    Ok(())
}

/// Bytes of every file under `dir` that contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                hits.push(path);
            }
        }
    }
    hits
}

/// A file channel with Flume's `encryption.*` keys (a JCEKS store made with keytool).
fn encrypted_config(
    root: &Path,
    keys: &str,
    active: &str,
    source: Option<(usize, u64)>,
    sink: bool,
) -> String {
    let p = |s: &str| root.join(s).display().to_string();
    let mut c = String::from("a1.channels = c1\n");
    if let Some((run, total)) = source {
        c.push_str(&format!(
            "\
a1.sources = r1
a1.sources.r1.type = seq
a1.sources.r1.totalEvents = {total}
a1.sources.r1.batchSize = 100
a1.sources.r1.channels = c1
a1.sources.r1.interceptors = i1 i2
a1.sources.r1.interceptors.i1.type = search_replace
a1.sources.r1.interceptors.i1.searchPattern = ^
a1.sources.r1.interceptors.i1.replaceString = TOPSECRET-r{run}-
a1.sources.r1.interceptors.i2.type = static
a1.sources.r1.interceptors.i2.key = account
a1.sources.r1.interceptors.i2.value = HEADERSECRET
"
        ));
    }
    if sink {
        c.push_str(&format!(
            "\
a1.sinks = k1
a1.sinks.k1.type = file_roll
a1.sinks.k1.channel = c1
a1.sinks.k1.sink.directory = {}
a1.sinks.k1.sink.rollInterval = 0
a1.sinks.k1.sink.serializer = header_and_text
",
            p("out")
        ));
    }
    c.push_str(&format!(
        "\
a1.channels.c1.type = file
a1.channels.c1.checkpointDir = {cp}
a1.channels.c1.dataDirs = {data}
a1.channels.c1.minimumRequiredSpace = 1048576
a1.channels.c1.encryption.activeKey = {active}
a1.channels.c1.encryption.cipherProvider = AESCTRNOPADDING
a1.channels.c1.encryption.keyProvider = JCEKSFILE
a1.channels.c1.encryption.keyProvider.keyStoreFile = {ks}
a1.channels.c1.encryption.keyProvider.keyStorePasswordFile = {kspw}
a1.channels.c1.encryption.keyProvider.keys = {keys}
a1.channels.c1.encryption.keyProvider.keys.key-1.passwordFile = {k1pw}
",
        cp = p("checkpoint"),
        data = p("data"),
        ks = p("my.keystore"),
        kspw = p("my.keystore.password"),
        k1pw = p("key-1.password"),
    ));
    c
}

/// Events are encrypted at rest (no body or header byte on disk), survive a key rotation
/// (key-0's events still decrypt with key-1 active), and a missing old key fails the take
/// with an error naming it instead of dropping events.
#[test]
fn encryption_at_rest_and_key_rotation() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let ks = root.join("my.keystore");
    std::fs::write(root.join("my.keystore.password"), "keyStorePassword\n")?;
    std::fs::write(root.join("key-1.password"), "key1Password\n")?;
    sluice_integration::tls::jceks_secret_key(
        &ks,
        "keyStorePassword",
        "key-0",
        "keyStorePassword",
        128,
    )?;
    sluice_integration::tls::jceks_secret_key(
        &ks,
        "keyStorePassword",
        "key-1",
        "key1Password",
        256,
    )?;
    let n = 500u64;
    std::fs::create_dir_all(root.join("out"))?;

    let stop = |mut s: Sluice| -> Result<()> {
        s.signal("TERM")?;
        ensure!(s.wait(Duration::from_secs(30))?.is_some(), "agent stopped");
        Ok(())
    };
    let fill = |name: &str, conf: &str| -> Result<()> {
        let s = Sluice::start(root, name, conf, &[])?;
        wait_for("every put committed", Duration::from_secs(60), || {
            (s.counter("CHANNEL.c1", "EventPutSuccessCount").ok()? >= n).then_some(())
        })
        .with_context(|| s.log_text())?;
        stop(s)
    };
    fill(
        "run0",
        &encrypted_config(root, "key-0", "key-0", Some((0, n)), false),
    )?;
    // Rotation: key-1 (its own password) becomes active, key-0 stays listed.
    fill(
        "run1",
        &encrypted_config(root, "key-0 key-1", "key-1", Some((1, n)), false),
    )?;
    for needle in [b"TOPSECRET".as_slice(), b"HEADERSECRET"] {
        let hits = files_containing(root.join("data").as_path(), needle);
        ensure!(
            hits.is_empty(),
            "plaintext {:?} on disk in {hits:?}",
            String::from_utf8_lossy(needle)
        );
    }

    // key-0 dropped from the list: the take fails naming it, nothing is delivered or dropped.
    let s = Sluice::start(
        root,
        "nokey0",
        &encrypted_config(root, "key-1", "key-1", None, true),
        &[],
    )?;
    wait_for("the missing key named", Duration::from_secs(30), || {
        s.log_text().contains("key `key-0`").then_some(())
    })
    .with_context(|| s.log_text())?;
    ensure!(sluice_integration::read_lines(&root.join("out")).is_empty());
    stop(s)?;

    let s = Sluice::start(
        root,
        "drain",
        &encrypted_config(root, "key-0 key-1", "key-1", None, true),
        &[],
    )?;
    let lines =
        sluice_integration::wait_lines(&root.join("out"), 2 * n as usize, Duration::from_secs(60))
            .with_context(|| s.log_text())?;
    for run in 0..2 {
        for i in 0..n {
            let want = format!("{{account=HEADERSECRET}} TOPSECRET-r{run}-{i}");
            ensure!(lines.contains(&want), "missing `{want}`");
        }
    }
    Ok(())
}
