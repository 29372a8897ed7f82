//! The TAILDIR source end to end with the real `sluice` binary: rotation by rename, copytruncate,
//! deletion, rewritten files and reused inodes, many files with idle descriptors closed, a
//! Flume-written position file taken over, a corrupt position file, and SIGKILL at random
//! moments while files are written and rotated.
//!
//! Every pipeline is `TAILDIR -> channel -> file_roll`, and the file_roll output is compared
//! line by line with what the test wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use sluice_integration::{Sluice, read_lines, run_sluice, wait_for};

const WAIT: Duration = Duration::from_secs(60);

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    logs: PathBuf,
    out: PathBuf,
    pos: PathBuf,
}

impl Setup {
    fn new() -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path().to_path_buf();
        let logs = root.join("logs");
        let out = root.join("out");
        std::fs::create_dir_all(&logs)?;
        std::fs::create_dir_all(&out)?;
        let pos = root.join("state").join("taildir_position.json");
        Ok(Self {
            _tmp: tmp,
            root,
            logs,
            out,
            pos,
        })
    }

    /// `TAILDIR(pattern) -> memory -> file_roll`, plus `extra` source keys.
    fn conf(&self, pattern: &str, extra: &[(&str, &str)]) -> String {
        self.conf_with_channel(
            pattern,
            extra,
            "a1.channels.c1.type = memory\n\
             a1.channels.c1.capacity = 100000\n\
             a1.channels.c1.transactionCapacity = 1000\n",
        )
    }

    fn conf_with_channel(&self, pattern: &str, extra: &[(&str, &str)], channel: &str) -> String {
        let mut s = format!(
            "a1.sources = r1\n\
             a1.channels = c1\n\
             a1.sinks = k1\n\
             a1.sources.r1.type = TAILDIR\n\
             a1.sources.r1.channels = c1\n\
             a1.sources.r1.filegroups = f1\n\
             a1.sources.r1.filegroups.f1 = {}/{pattern}\n\
             a1.sources.r1.positionFile = {}\n\
             a1.sources.r1.backoffSleepIncrement = 100\n\
             a1.sources.r1.maxBackoffSleep = 500\n\
             {channel}\
             a1.sinks.k1.type = file_roll\n\
             a1.sinks.k1.channel = c1\n\
             a1.sinks.k1.sink.directory = {}\n\
             a1.sinks.k1.sink.rollInterval = 0\n\
             a1.sinks.k1.sink.batchSize = 100\n",
            self.logs.display(),
            self.pos.display(),
            self.out.display(),
        );
        for (k, v) in extra {
            s.push_str(&format!("a1.sources.r1.{k} = {v}\n"));
        }
        s
    }

    fn start(&self, name: &str, conf: &str) -> Result<Sluice> {
        Sluice::start(&self.root, name, conf, &["--no-reload-conf"])
    }

    fn lines(&self) -> Vec<String> {
        read_lines(&self.out)
    }

    /// Waits until the output holds at least `n` lines.
    fn wait_lines(&self, n: usize) -> Result<Vec<String>> {
        wait_for(
            &format!("{n} lines in {}", self.out.display()),
            WAIT,
            || {
                let v = self.lines();
                (v.len() >= n).then_some(v)
            },
        )
    }

    /// Waits for `n` lines, then a little longer to catch any extra (duplicate) line.
    fn settle(&self, n: usize) -> Result<Vec<String>> {
        self.wait_lines(n)?;
        std::thread::sleep(Duration::from_millis(1500));
        Ok(self.lines())
    }

    fn position_entries(&self) -> Result<Vec<serde_json::Value>> {
        let text = std::fs::read_to_string(&self.pos)
            .with_context(|| format!("reading {}", self.pos.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }
}

fn append(path: &Path, lines: impl IntoIterator<Item = String>) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut buf = String::new();
    for l in lines {
        buf.push_str(&l);
        buf.push('\n');
    }
    f.write_all(buf.as_bytes())?;
    Ok(())
}

fn tagged(tag: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{tag}-{i:06}")).collect()
}

/// Asserts that `got` is exactly `want` as a multiset (no loss, no duplicate).
fn assert_same(got: &[String], want: &[String]) -> Result<()> {
    let count = |v: &[String]| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for l in v {
            *m.entry(l.clone()).or_default() += 1;
        }
        m
    };
    let (g, w) = (count(got), count(want));
    let missing: Vec<&String> = w.keys().filter(|k| !g.contains_key(*k)).take(5).collect();
    let extra: Vec<(&String, &usize)> = g
        .iter()
        .filter(|(k, n)| w.get(*k) != Some(n))
        .take(5)
        .collect();
    ensure!(
        g == w,
        "output differs: {} lines (want {}); missing e.g. {missing:?}; extra/duplicated e.g. {extra:?}",
        got.len(),
        want.len()
    );
    Ok(())
}

#[test]
fn rotation_by_rename_keeps_offsets_and_reads_the_new_file() -> Result<()> {
    let s = Setup::new()?;
    let app = s.logs.join("app.log");
    append(&app, tagged("gen1", 0..100))?;
    let sluice = s.start("rename", &s.conf("app\\.log.*", &[]))?;
    s.wait_lines(100)?;

    // The writer goes on a little, rotates by rename, writes a late line to the rotated file,
    // and starts a new file under the old name.
    append(&app, tagged("gen1", 100..150))?;
    std::fs::rename(&app, s.logs.join("app.log.1"))?;
    append(&s.logs.join("app.log.1"), tagged("gen1", 150..170))?;
    append(&app, tagged("gen2", 0..80))?;
    // A second rotation: the renamed files keep their offsets again.
    std::fs::rename(s.logs.join("app.log.1"), s.logs.join("app.log.2"))?;
    std::fs::rename(&app, s.logs.join("app.log.1"))?;
    append(&app, tagged("gen3", 0..30))?;

    let mut want = tagged("gen1", 0..170);
    want.extend(tagged("gen2", 0..80));
    want.extend(tagged("gen3", 0..30));
    let got = s.settle(want.len())?;
    assert_same(&got, &want).with_context(|| sluice.log_text())?;
    println!("rename rotation: {} lines, none re-read", got.len());
    Ok(())
}

#[test]
fn rotation_out_of_the_pattern_finishes_the_old_file() -> Result<()> {
    let s = Setup::new()?;
    let app = s.logs.join("app.log");
    append(&app, tagged("old", 0..50))?;
    let sluice = s.start("out-of-pattern", &s.conf("app\\.log", &[]))?;
    s.wait_lines(50)?;
    // Renamed to a name the pattern does not match, then written to through the old handle's
    // name: the open descriptor is read to its end.
    append(&app, tagged("old", 50..60))?;
    std::fs::rename(&app, s.logs.join("app.log.1"))?;
    append(&s.logs.join("app.log.1"), tagged("old", 60..70))?;
    append(&app, tagged("new", 0..40))?;
    let mut want = tagged("old", 0..70);
    want.extend(tagged("new", 0..40));
    let got = s.settle(want.len())?;
    assert_same(&got, &want).with_context(|| sluice.log_text())?;
    Ok(())
}

#[test]
fn copytruncate_restarts_at_zero() -> Result<()> {
    let s = Setup::new()?;
    let app = s.logs.join("app.log");
    append(&app, tagged("before", 0..200))?;
    let sluice = s.start("copytruncate", &s.conf("app\\.log", &[]))?;
    s.wait_lines(200)?;
    // logrotate's copytruncate: copy aside (not matched), truncate in place, keep writing.
    std::fs::copy(&app, s.logs.join("app.log.1"))?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&app)?
        .set_len(0)?;
    append(&app, tagged("after", 0..20))?;
    let mut want = tagged("before", 0..200);
    want.extend(tagged("after", 0..20));
    let got = s.settle(want.len())?;
    assert_same(&got, &want).with_context(|| sluice.log_text())?;
    Ok(())
}

#[test]
fn deleted_file_is_finished_then_forgotten() -> Result<()> {
    let s = Setup::new()?;
    let app = s.logs.join("app.log");
    append(&app, tagged("d", 0..30))?;
    let conf = s.conf(
        "app\\.log",
        &[("idleTimeout", "5000"), ("writePosInterval", "200")],
    );
    let sluice = s.start("delete", &conf)?;
    s.wait_lines(30)?;
    let inode = std::fs::metadata(&app)?.ino();
    // Written and deleted at once: only sluice's open descriptor can still read these lines.
    append(&app, tagged("d", 30..45))?;
    std::fs::remove_file(&app)?;
    let got = s.settle(45)?;
    assert_same(&got, &tagged("d", 0..45)).with_context(|| sluice.log_text())?;
    let gone = wait_for("the deleted file to leave the position file", WAIT, || {
        let entries = s.position_entries().ok()?;
        (!entries.iter().any(|e| e["inode"] == inode)).then_some(())
    });
    gone.with_context(|| sluice.log_text())?;
    Ok(())
}

#[test]
fn rewritten_file_and_reused_inode_are_read_from_the_start() -> Result<()> {
    let s = Setup::new()?;
    let app = s.logs.join("app.log");
    let other = s.logs.join("app.log.old");
    append(&app, tagged("first", 0..40))?;
    append(&other, tagged("other", 0..40))?;
    let conf = s.conf("app\\.log.*", &[]);
    let mut sluice = s.start("reuse-1", &conf)?;
    s.wait_lines(80)?;
    sluice.signal("TERM")?;
    sluice.wait(WAIT)?;

    // While the agent is down: `app.log` is rewritten in place (same inode, new and longer
    // content), and `app.log.old` is deleted and a new file created (ext4 usually hands the
    // freed inode to the next file). Flume resumes both at the saved offset and skips data.
    let old_inode = std::fs::metadata(&app)?.ino();
    let body: String = tagged("second-generation-longer-line", 0..60)
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&app, body)?;
    ensure!(
        std::fs::metadata(&app)?.ino() == old_inode,
        "rewrite kept the inode"
    );
    let other_inode = std::fs::metadata(&other)?.ino();
    std::fs::remove_file(&other)?;
    let fresh = s.logs.join("app.log.new");
    append(&fresh, tagged("fresh-file-with-reused-inode", 0..50))?;
    let reused = std::fs::metadata(&fresh)?.ino() == other_inode;

    let sluice = s.start("reuse-2", &conf)?;
    let mut want = tagged("first", 0..40);
    want.extend(tagged("other", 0..40));
    want.extend(tagged("second-generation-longer-line", 0..60));
    want.extend(tagged("fresh-file-with-reused-inode", 0..50));
    let got = s.settle(want.len())?;
    assert_same(&got, &want).with_context(|| sluice.log_text())?;
    println!(
        "inode reuse: rewrite in place kept inode {old_inode}; deleted inode reused: {reused}"
    );
    Ok(())
}

fn open_descriptors(pid: u32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

#[test]
fn many_files_close_idle_descriptors() -> Result<()> {
    const FILES: usize = 1200;
    const LINES: usize = 5;
    let s = Setup::new()?;
    let mut want = Vec::with_capacity(FILES * LINES);
    for f in 0..FILES {
        let lines = tagged(&format!("f{f:04}"), 0..LINES);
        append(&s.logs.join(format!("app-{f:04}.log")), lines.clone())?;
        want.extend(lines);
    }
    // Fewer descriptors than files: the rest are opened as idle ones close.
    let conf = s.conf(
        "app-.*\\.log",
        &[
            ("idleTimeout", "1000"),
            ("maxOpenFiles", "500"),
            ("batchSize", "500"),
        ],
    );
    let sluice = s.start("many", &conf)?;
    let started = Instant::now();
    let got = s.settle(want.len())?;
    assert_same(&got, &want).with_context(|| sluice.log_text())?;
    let delivered_in = started.elapsed();
    let pid = sluice.pid();
    let fds = wait_for("idle files to be closed", WAIT, || {
        let n = open_descriptors(pid).ok()?;
        (n < 64).then_some(n)
    })?;
    println!(
        "many files: {FILES} files, {} lines delivered in {delivered_in:?}; {fds} descriptors \
         open once idle",
        got.len()
    );
    Ok(())
}

#[test]
fn more_busy_files_than_descriptors() -> Result<()> {
    const FILES: usize = 300;
    const MAX_OPEN: usize = 50;
    let s = Setup::new()?;
    let mut want = Vec::new();
    for f in 0..FILES {
        let lines = tagged(&format!("busy{f:03}"), 0..20);
        append(&s.logs.join(format!("app-{f:03}.log")), lines.clone())?;
        want.extend(lines);
    }
    // Idle files are never closed by time here: room comes from closing caught-up files.
    let conf = s.conf(
        "app-.*\\.log",
        &[("idleTimeout", "600000"), ("maxOpenFiles", "50")],
    );
    let sluice = s.start("busy", &conf)?;
    let pid = sluice.pid();
    let mut peak = 0;
    let got = wait_for("every line of every file", WAIT, || {
        peak = peak.max(open_descriptors(pid).unwrap_or(0));
        let v = s.lines();
        (v.len() >= want.len()).then_some(v)
    })?;
    std::thread::sleep(Duration::from_millis(1500));
    assert_same(&s.lines(), &want).with_context(|| sluice.log_text())?;
    // The agent's own descriptors (log, sockets, channel, sink, inotify) come on top.
    ensure!(peak <= MAX_OPEN + 30, "{peak} descriptors open");
    println!(
        "busy files: {FILES} files, maxOpenFiles {MAX_OPEN}, {} lines, peak {peak} descriptors",
        got.len()
    );
    Ok(())
}

#[test]
fn flume_position_file_is_taken_over() -> Result<()> {
    let s = Setup::new()?;
    let app = s.logs.join("app.log");
    let lines = tagged("flume", 0..10);
    append(&app, lines.clone())?;
    // Flume 1.11 delivered the first 4 lines and wrote its position file (its exact shape).
    let pos: usize = lines[..4].iter().map(|l| l.len() + 1).sum();
    let inode = std::fs::metadata(&app)?.ino();
    std::fs::create_dir_all(s.pos.parent().context("pos dir")?)?;
    std::fs::write(
        &s.pos,
        format!(
            "[{{\"inode\":{inode},\"pos\":{pos},\"file\":\"{}\"}}]",
            app.display()
        ),
    )?;
    let mut sluice = s.start("takeover", &s.conf("app\\.log", &[]))?;
    let got = s.settle(6)?;
    assert_same(&got, &lines[4..]).with_context(|| sluice.log_text())?;
    sluice.signal("TERM")?;
    sluice.wait(WAIT)?;

    // What sluice leaves behind is still Flume's format: objects with exactly inode/pos/file
    // (Flume's reader throws on any other key).
    let entries = s.position_entries()?;
    ensure!(entries.len() == 1, "{entries:?}");
    let keys: BTreeSet<&str> = entries[0]
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    ensure!(
        keys == BTreeSet::from(["file", "inode", "pos"]),
        "keys {keys:?}"
    );
    ensure!(entries[0]["inode"] == inode);
    ensure!(entries[0]["pos"] == std::fs::metadata(&app)?.len());
    ensure!(entries[0]["file"] == app.to_string_lossy().as_ref());
    Ok(())
}

#[test]
fn corrupt_position_file_stops_the_start_and_is_kept() -> Result<()> {
    let s = Setup::new()?;
    append(&s.logs.join("app.log"), tagged("x", 0..5))?;
    std::fs::create_dir_all(s.pos.parent().context("pos dir")?)?;
    let corrupt = "[{\"inode\":12,\"pos\":";
    std::fs::write(&s.pos, corrupt)?;
    let conf_path = s.root.join("corrupt.conf");
    std::fs::write(&conf_path, s.conf("app\\.log", &[]))?;
    let conf_arg = conf_path.to_string_lossy();
    let (code, _out, err) =
        run_sluice(&["agent", "-n", "a1", "-f", &conf_arg, "--no-reload-conf"])?;
    ensure!(
        code != 0,
        "sluice started with a corrupt position file: {err}"
    );
    ensure!(
        err.contains(&*s.pos.to_string_lossy()) && err.contains("not valid JSON"),
        "error does not name the position file: {err}"
    );
    ensure!(
        std::fs::read_to_string(&s.pos)? == corrupt,
        "the file was modified"
    );
    ensure!(s.lines().is_empty(), "nothing may be delivered");
    Ok(())
}

#[test]
fn long_lines_are_split_and_counted() -> Result<()> {
    let s = Setup::new()?;
    let app = s.logs.join("app.log");
    let long = "x".repeat(2500);
    append(&app, vec!["short".to_string(), long, "tail".to_string()])?;
    let sluice = s.start("long", &s.conf("app\\.log", &[("maxLineLength", "1000")]))?;
    let got = s.settle(5)?;
    let lens: Vec<usize> = got.iter().map(String::len).collect();
    ensure!(lens == [5, 1000, 1000, 500, 4], "pieces {lens:?}");
    let cut = sluice.counter("SOURCE.r1", "LineTooLongCount")?;
    ensure!(cut == 2, "LineTooLongCount = {cut}");
    Ok(())
}

/// A small deterministic generator (xorshift), seeded from the clock and printed, so that a
/// failing run can be replayed with `SLUICE_CRASH_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

#[test]
fn sigkill_at_random_moments_loses_nothing() -> Result<()> {
    const CRASHES: usize = 8;
    const LINES_PER_FILE: usize = 3000;
    const BATCH: usize = 100;
    let seed = std::env::var("SLUICE_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x5eed, |d| d.as_nanos() as u64)
                | 1
        });
    println!("crash test seed: {seed}");
    let mut rng = Rng(seed);
    let s = Setup::new()?;
    let channel = format!(
        "a1.channels.c1.type = file\n\
         a1.channels.c1.checkpointDir = {0}/channel/checkpoint\n\
         a1.channels.c1.dataDirs = {0}/channel/data\n\
         a1.channels.c1.capacity = 100000\n\
         a1.channels.c1.transactionCapacity = 1000\n\
         a1.channels.c1.minimumRequiredSpace = 1048576\n",
        s.root.display()
    );
    let batch = BATCH.to_string();
    let conf = s.conf_with_channel(
        "app\\.log.*",
        // Flume's default writePosInterval (3000 ms): positions between two saves of the
        // position file come from the journal.
        &[("batchSize", &batch)],
        &channel,
    );

    // The writer: lines numbered 0.., rotated by rename every LINES_PER_FILE lines, with a
    // short pause between chunks so that kills land mid-file and mid-rotation.
    let logs = s.logs.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_w = stop.clone();
    let writer = std::thread::spawn(move || -> Result<usize> {
        let app = logs.join("app.log");
        let mut n = 0usize;
        let mut rotations = 0usize;
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop_w.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
            append(&app, (n..n + 50).map(|i| format!("line-{i:08}")))?;
            n += 50;
            if n.is_multiple_of(LINES_PER_FILE) {
                rotations += 1;
                std::fs::rename(&app, logs.join(format!("app.log.{rotations}")))?;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(n)
    });

    let mut crashes = 0;
    for round in 0..CRASHES {
        let mut sluice = s.start(&format!("crash-{round}"), &conf)?;
        std::thread::sleep(Duration::from_millis(rng.range(300, 4000)));
        sluice.kill9()?;
        crashes += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let written = match writer.join() {
        Ok(r) => r?,
        Err(_) => anyhow::bail!("writer thread panicked"),
    };
    let mut sluice = s.start("final", &conf)?;
    let want: Vec<String> = (0..written).map(|i| format!("line-{i:08}")).collect();
    let unique = |v: &[String]| v.iter().collect::<BTreeSet<_>>().len();
    let done = wait_for(
        "every written line in the output",
        Duration::from_secs(120),
        || {
            let got = s.lines();
            (unique(&got) >= written).then_some(got)
        },
    );
    let got = match done {
        Ok(g) => g,
        Err(e) => {
            let got = s.lines();
            let have: BTreeSet<&String> = got.iter().collect();
            let missing: Vec<&String> = want.iter().filter(|l| !have.contains(l)).take(5).collect();
            anyhow::bail!(
                "{e}: {} of {written} distinct lines; missing e.g. {missing:?}\n{}",
                have.len(),
                sluice.log_text()
            );
        }
    };
    std::thread::sleep(Duration::from_millis(1500));
    let got = {
        let later = s.lines();
        if later.len() > got.len() { later } else { got }
    };
    sluice.signal("TERM")?;
    sluice.wait(WAIT)?;
    let distinct = unique(&got);
    let duplicates = got.len() - distinct;
    let foreign = got.iter().filter(|l| !l.starts_with("line-")).count();
    println!(
        "crash test: {crashes} SIGKILLs, {written} lines written in {} files, {} delivered, \
         {distinct} distinct, 0 lost, {duplicates} duplicates ({:.1} per crash; bound {} = one \
         source batch + one sink batch per crash)",
        written.div_ceil(LINES_PER_FILE),
        got.len(),
        duplicates as f64 / crashes as f64,
        crashes * 2 * BATCH
    );
    ensure!(foreign == 0, "{foreign} lines that were never written");
    ensure!(distinct == written, "lost lines");
    ensure!(
        duplicates <= crashes * 2 * BATCH,
        "{duplicates} duplicates for {crashes} crashes"
    );
    Ok(())
}

/// Waits until the position file records `len` for the file `app` (as Flume or sluice wrote it).
fn wait_position(s: &Setup, app: &Path, len: u64) -> Result<()> {
    let app = app.to_string_lossy().into_owned();
    wait_for(&format!("position {len} of {app}"), WAIT, || {
        let entries = s.position_entries().ok()?;
        entries
            .iter()
            .any(|e| e["file"] == app.as_str() && e["pos"] == len)
            .then_some(())
    })
}

#[test]
fn real_flume_and_sluice_hand_the_position_file_over_both_ways() -> Result<()> {
    use sluice_integration::flume::Flume;
    use sluice_integration::flume_taildir::ensure_flume_taildir;

    ensure_flume_taildir()?;
    let s = Setup::new()?;
    let app = s.logs.join("app.log");
    let flume_out = s.root.join("flume-out");
    std::fs::create_dir_all(&flume_out)?;
    // `\\.` is a literal dot after Java-properties unescaping, for Flume and sluice alike.
    let flume_conf = format!(
        "a1.sources = r1\n\
         a1.channels = c1\n\
         a1.sinks = k1\n\
         a1.sources.r1.type = TAILDIR\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.filegroups = f1\n\
         a1.sources.r1.filegroups.f1 = {}/app\\\\.log\n\
         a1.sources.r1.positionFile = {}\n\
         a1.sources.r1.writePosInterval = 200\n\
         a1.channels.c1.type = memory\n\
         a1.sinks.k1.type = file_roll\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.sink.directory = {}\n\
         a1.sinks.k1.sink.rollInterval = 0\n",
        s.logs.display(),
        s.pos.display(),
        flume_out.display()
    );
    let flume_lines = || read_lines(&flume_out);
    let wait_flume = |n: usize| {
        wait_for(&format!("{n} lines from Flume"), WAIT, || {
            let v = flume_lines();
            (v.len() >= n).then_some(v)
        })
    };

    // 1. Flume tails the first 10 lines and saves its position.
    append(&app, tagged("flume-a", 0..10))?;
    let mut flume = Flume::start(&s.root, &flume_conf, "a1")?;
    wait_flume(10).with_context(|| flume.log_tail(40))?;
    wait_position(&s, &app, std::fs::metadata(&app)?.len()).with_context(|| flume.log_tail(40))?;
    flume.kill()?;

    // 2. sluice takes Flume's file over: only the 5 new lines.
    append(&app, tagged("sluice", 0..5))?;
    let mut sluice = s.start("handover", &s.conf("app\\\\.log", &[]))?;
    let got = s.settle(5)?;
    assert_same(&got, &tagged("sluice", 0..5)).with_context(|| sluice.log_text())?;
    sluice.signal("TERM")?;
    sluice.wait(WAIT)?;
    wait_position(&s, &app, std::fs::metadata(&app)?.len())?;

    // 3. Flume reads the file sluice wrote and goes on with only the 3 newest lines.
    append(&app, tagged("flume-b", 0..3))?;
    let flume = Flume::start(&s.root, &flume_conf, "a1")?;
    let mut want = tagged("flume-a", 0..10);
    want.extend(tagged("flume-b", 0..3));
    wait_flume(want.len()).with_context(|| flume.log_tail(40))?;
    std::thread::sleep(Duration::from_millis(1500));
    assert_same(&flume_lines(), &want).with_context(|| flume.log_tail(40))?;
    ensure!(
        !flume.log_text().contains("Exception"),
        "Flume logged an exception:\n{}",
        flume.log_tail(40)
    );
    Ok(())
}

/// The regex extractor's `MillisSerializer` (Joda patterns) gives the same epoch milliseconds
/// in sluice as in Apache Flume 1.11, both tailing the same file with the same interceptor.
#[test]
fn regex_extractor_millis_serializer_matches_flume() -> Result<()> {
    use sluice_integration::flume::Flume;
    use sluice_integration::flume_taildir::ensure_flume_taildir;

    ensure_flume_taildir()?;
    let root = tempfile::tempdir()?;
    let logs = root.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let lines = [
        "2012-10-17 14:34:44 +0000|17/Oct/2012:16:34:44 +02:00|2024-02-29T23:59:59.999-0800|1",
        "1999-12-31 23:59:59 -0500|01/Jan/2000:05:00:00 +01:00|2000-01-01T00:00:00.001+0000|2",
        "2038-01-19 03:14:08 +0000|19/Jan/2038:03:14:08 +00:00|1970-01-01T00:00:00.000+0000|3",
    ];
    append(&logs.join("app.log"), lines.iter().map(|l| l.to_string()))?;
    // `\\|` is `\|` after Java-properties unescaping: a literal pipe in the regex.
    let conf = |out: &Path, pos: &Path| {
        format!(
            "a1.sources = r1\n\
             a1.channels = c1\n\
             a1.sinks = k1\n\
             a1.sources.r1.type = TAILDIR\n\
             a1.sources.r1.channels = c1\n\
             a1.sources.r1.filegroups = f1\n\
             a1.sources.r1.filegroups.f1 = {}/app\\\\.log\n\
             a1.sources.r1.positionFile = {}\n\
             a1.sources.r1.interceptors = x\n\
             a1.sources.r1.interceptors.x.type = regex_extractor\n\
             a1.sources.r1.interceptors.x.regex = ^([^|]+)\\\\|([^|]+)\\\\|([^|]+)\\\\|(\\\\d+)$\n\
             a1.sources.r1.interceptors.x.serializers = a b c n\n\
             a1.sources.r1.interceptors.x.serializers.a.type = org.apache.flume.interceptor.RegexExtractorInterceptorMillisSerializer\n\
             a1.sources.r1.interceptors.x.serializers.a.name = a\n\
             a1.sources.r1.interceptors.x.serializers.a.pattern = yyyy-MM-dd HH:mm:ss Z\n\
             a1.sources.r1.interceptors.x.serializers.b.type = org.apache.flume.interceptor.RegexExtractorInterceptorMillisSerializer\n\
             a1.sources.r1.interceptors.x.serializers.b.name = b\n\
             a1.sources.r1.interceptors.x.serializers.b.pattern = dd/MMM/yyyy:HH:mm:ss ZZ\n\
             a1.sources.r1.interceptors.x.serializers.c.type = org.apache.flume.interceptor.RegexExtractorInterceptorMillisSerializer\n\
             a1.sources.r1.interceptors.x.serializers.c.name = c\n\
             a1.sources.r1.interceptors.x.serializers.c.pattern = yyyy-MM-dd'T'HH:mm:ss.SSSZ\n\
             a1.sources.r1.interceptors.x.serializers.n.name = n\n\
             a1.channels.c1.type = memory\n\
             a1.sinks.k1.type = file_roll\n\
             a1.sinks.k1.channel = c1\n\
             a1.sinks.k1.sink.directory = {}\n\
             a1.sinks.k1.sink.rollInterval = 0\n\
             a1.sinks.k1.sink.serializer = header_and_text\n",
            logs.display(),
            pos.display(),
            out.display()
        )
    };
    // `{a=1, b=2} body` (Flume prints a HashMap, sluice a sorted map): n -> headers.
    let headers = |dir: &Path| -> BTreeMap<String, BTreeMap<String, String>> {
        read_lines(dir)
            .iter()
            .filter_map(|l| {
                let (head, _) = l.strip_prefix('{')?.split_once("} ")?;
                let map: BTreeMap<String, String> = head
                    .split(", ")
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                Some((map.get("n")?.clone(), map))
            })
            .collect()
    };
    let run = |who: &str| -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        let out = root.path().join(format!("{who}-out"));
        std::fs::create_dir_all(&out)?;
        let text = conf(&out, &root.path().join(format!("{who}-pos.json")));
        let log = if who == "flume" {
            let flume = Flume::start(root.path(), &text, "a1")?;
            let got = wait_for("Flume's three events", WAIT, || {
                let h = headers(&out);
                (h.len() >= 3).then_some(h)
            });
            let log = flume.log_tail(40);
            return got.with_context(|| log);
        } else {
            let agent = Sluice::start(root.path(), who, &text, &[])?;
            let got = wait_for("sluice's three events", WAIT, || {
                let h = headers(&out);
                (h.len() >= 3).then_some(h)
            });
            (got, agent.log_text())
        };
        log.0.with_context(|| log.1)
    };
    let flume = run("flume")?;
    let sluice = run("sluice")?;
    ensure!(flume.len() == 3, "Flume: {flume:?}");
    for (n, f) in &flume {
        let s = sluice
            .get(n)
            .with_context(|| format!("sluice lacks event {n}"))?;
        for k in ["a", "b", "c"] {
            ensure!(
                f.get(k).is_some() && f.get(k) == s.get(k),
                "event {n}, header {k}: Flume {:?}, sluice {:?}",
                f.get(k),
                s.get(k)
            );
        }
    }
    // And the values are what the dates say.
    ensure!(flume["1"].get("a").map(String::as_str) == Some("1350484484000"));
    Ok(())
}
