//! The spooling directory source (`spooldir`) end to end with the real `sluice` binary: files
//! dropped while it runs, SIGKILL in the middle of a file and restart, a file appended to
//! after it was picked up, zero-byte files, undecodable input under each decodeErrorPolicy,
//! the delete and tracker-directory policies, headers, patterns, recursive search, Avro
//! container files and blobs, and a channel that stays full until its sink's peer appears.
//!
//! Pipelines are `spooldir -> channel -> file_roll` (or an Avro sink to a second agent); the
//! file_roll output is compared with what the test wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use sluice_integration::{Sluice, free_port, read_lines, run_sluice, wait_for};

const WAIT: Duration = Duration::from_secs(60);

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

/// One `spooldir -> channel -> file_roll` pipeline of an agent.
struct Pipe<'a> {
    spool: PathBuf,
    out: PathBuf,
    source: &'a [(&'a str, &'a str)],
    channel: String,
    serializer: &'a str,
}

fn memory(capacity: usize) -> String {
    format!("type = memory\ncapacity = {capacity}\ntransactionCapacity = 1000\n")
}

impl Setup {
    fn new() -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path().to_path_buf();
        Ok(Self { _tmp: tmp, root })
    }

    fn dir(&self, name: &str) -> Result<PathBuf> {
        let d = self.root.join(name);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }

    fn pipe<'a>(&self, name: &str, source: &'a [(&'a str, &'a str)]) -> Result<Pipe<'a>> {
        Ok(Pipe {
            spool: self.dir(&format!("{name}-spool"))?,
            out: self.dir(&format!("{name}-out"))?,
            source,
            channel: memory(100_000),
            serializer: "TEXT",
        })
    }

    /// One agent with a source rN, channel cN and sink kN per pipeline.
    fn conf(&self, pipes: &[&Pipe]) -> String {
        let n: Vec<usize> = (1..=pipes.len()).collect();
        let list = |p: &str| {
            n.iter()
                .map(|i| format!("{p}{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut s = format!(
            "a1.sources = {}\na1.channels = {}\na1.sinks = {}\n",
            list("r"),
            list("c"),
            list("k")
        );
        for (i, p) in pipes.iter().enumerate() {
            let i = i + 1;
            s.push_str(&format!(
                "a1.sources.r{i}.type = spooldir\n\
                 a1.sources.r{i}.channels = c{i}\n\
                 a1.sources.r{i}.spoolDir = {}\n\
                 a1.sources.r{i}.pollDelay = 100\n",
                p.spool.display()
            ));
            for (k, v) in p.source {
                s.push_str(&format!("a1.sources.r{i}.{k} = {v}\n"));
            }
            for line in p.channel.lines() {
                s.push_str(&format!("a1.channels.c{i}.{line}\n"));
            }
            s.push_str(&format!(
                "a1.sinks.k{i}.type = file_roll\n\
                 a1.sinks.k{i}.channel = c{i}\n\
                 a1.sinks.k{i}.sink.directory = {}\n\
                 a1.sinks.k{i}.sink.rollInterval = 0\n\
                 a1.sinks.k{i}.sink.batchSize = 100\n\
                 a1.sinks.k{i}.sink.serializer = {}\n",
                p.out.display(),
                p.serializer
            ));
        }
        s
    }

    fn start(&self, name: &str, conf: &str) -> Result<Sluice> {
        Sluice::start(&self.root, name, conf, &["--no-reload-conf"])
    }
}

/// Writes a file under a hidden name, then renames it into place, as a spooling producer must.
fn drop_file(dir: &Path, name: &str, data: &[u8]) -> Result<PathBuf> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, data)?;
    let path = dir.join(name);
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

fn tagged(tag: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{tag}-{i:07}")).collect()
}

fn text(lines: &[String]) -> Vec<u8> {
    let mut s = lines.join("\n");
    s.push('\n');
    s.into_bytes()
}

fn counts(v: &[String]) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for l in v {
        *m.entry(l.as_str()).or_default() += 1;
    }
    m
}

/// `got` is exactly `want` as a multiset.
fn assert_same(got: &[String], want: &[String]) -> Result<()> {
    let (g, w) = (counts(got), counts(want));
    let missing: Vec<&&str> = w.keys().filter(|k| !g.contains_key(*k)).take(5).collect();
    let extra: Vec<_> = g
        .iter()
        .filter(|(k, n)| w.get(*k) != Some(n))
        .take(5)
        .collect();
    ensure!(
        g == w,
        "output differs: {} lines (want {}); missing e.g. {missing:?}; extra/duplicated e.g. \
         {extra:?}",
        got.len(),
        want.len()
    );
    Ok(())
}

fn wait_lines(out: &Path, n: usize, sluice: &Sluice) -> Result<Vec<String>> {
    wait_for(&format!("{n} lines in {}", out.display()), WAIT, || {
        let v = read_lines(out);
        (v.len() >= n).then_some(v)
    })
    .with_context(|| {
        format!(
            "got {} lines; log:\n{}",
            read_lines(out).len(),
            sluice.log_text()
        )
    })
}

/// Waits for `n` lines, then a little longer to catch extra (duplicated) lines.
fn settle(out: &Path, n: usize, sluice: &Sluice) -> Result<Vec<String>> {
    wait_lines(out, n, sluice)?;
    std::thread::sleep(Duration::from_millis(1000));
    Ok(read_lines(out))
}

fn wait_exists(path: &Path, sluice: &Sluice) -> Result<()> {
    wait_for(&format!("{}", path.display()), WAIT, || {
        path.exists().then_some(())
    })
    .with_context(|| sluice.log_text())
}

fn wait_log(sluice: &Sluice, needle: &str) -> Result<String> {
    wait_for(&format!("`{needle}` in the log"), WAIT, || {
        let t = sluice.log_text();
        t.contains(needle).then_some(t)
    })
    .with_context(|| sluice.log_text())
}

/// The raw bytes of every file in `dir`, concatenated (file_roll output with binary bodies).
fn out_bytes(dir: &Path) -> Result<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let mut all = Vec::new();
    for f in files {
        all.extend(std::fs::read(f)?);
    }
    Ok(all)
}

#[test]
fn files_dropped_while_running_are_read_once_and_renamed() -> Result<()> {
    let s = Setup::new()?;
    let p = s.pipe("drop", &[("batchSize", "50")])?;
    let first = tagged("first", 0..500);
    drop_file(&p.spool, "first.log", &text(&first))?;
    // Ignored: hidden, already completed.
    std::fs::write(p.spool.join(".hidden.log"), "hidden\n")?;
    std::fs::write(p.spool.join("old.log.COMPLETED"), "old\n")?;
    let sluice = s.start("drop", &s.conf(&[&p]))?;
    wait_lines(&p.out, 500, &sluice)?;
    wait_exists(&p.spool.join("first.log.COMPLETED"), &sluice)?;

    let mut want = first.clone();
    for f in 0..3 {
        let lines = tagged(&format!("later{f}"), 0..(300 + f * 77));
        drop_file(&p.spool, &format!("later{f}.log"), &text(&lines))?;
        want.extend(lines);
        std::thread::sleep(Duration::from_millis(150));
    }
    // A zero-byte file is completed without events.
    drop_file(&p.spool, "empty.log", b"")?;
    let got = settle(&p.out, want.len(), &sluice)?;
    assert_same(&got, &want).with_context(|| sluice.log_text())?;
    for name in ["first", "later0", "later1", "later2", "empty"] {
        wait_exists(&p.spool.join(format!("{name}.log.COMPLETED")), &sluice)?;
        ensure!(
            !p.spool.join(format!("{name}.log")).exists(),
            "{name}.log left"
        );
    }
    ensure!(p.spool.join(".hidden.log").exists() && p.spool.join("old.log.COMPLETED").exists());
    ensure!(
        !p.spool.join(".flumespool/.flumespool-main.meta").exists(),
        "the tracker is deleted once the last file is done"
    );
    let accepted = sluice.counter("SOURCE.r1", "EventAcceptedCount")?;
    ensure!(
        accepted == want.len() as u64,
        "EventAcceptedCount {accepted}"
    );
    println!("dropped files: {} lines, 5 files completed", got.len());
    Ok(())
}

#[test]
fn sigkill_mid_file_resumes_from_the_committed_position() -> Result<()> {
    const BATCH: usize = 100;
    let s = Setup::new()?;
    let batch = BATCH.to_string();
    let src = [("batchSize", batch.as_str()), ("maxBackoff", "200")];
    let mut p = s.pipe("crash", &src)?;
    // A durable, small channel: the source keeps waiting for room, so kills land mid-file.
    p.channel = format!(
        "type = file\ncheckpointDir = {0}/channel/checkpoint\ndataDirs = {0}/channel/data\n\
         capacity = 2000\ntransactionCapacity = 1000\nminimumRequiredSpace = 1048576\n",
        s.root.display()
    );
    let mut want = Vec::new();
    for f in 0..3 {
        let lines = tagged(&format!("f{f}"), 0..40_000);
        drop_file(&p.spool, &format!("f{f}.log"), &text(&lines))?;
        want.extend(lines);
    }
    let conf = s.conf(&[&p]);
    let meta = p.spool.join(".flumespool/.flumespool-main.meta");
    let mut kills = 0;
    let mut mid_file = 0;
    for round in 0..4 {
        let mut sluice = s.start(&format!("crash-{round}"), &conf)?;
        let before = read_lines(&p.out).len();
        let target = before + 5000 + round * 3000;
        wait_for("the output to grow", WAIT, || {
            (read_lines(&p.out).len() >= target.min(want.len())).then_some(())
        })
        .with_context(|| sluice.log_text())?;
        sluice.kill9()?;
        kills += 1;
        // The tracker names a file that is not done yet: the kill landed inside it.
        let in_progress = std::fs::read_dir(&p.spool)?
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().ends_with(".log"));
        if meta.exists() && in_progress {
            mid_file += 1;
        }
    }
    ensure!(
        mid_file >= 2,
        "only {mid_file} of {kills} kills landed mid-file"
    );
    let sluice = s.start("final", &conf)?;
    let unique = |v: &[String]| v.iter().collect::<BTreeSet<_>>().len();
    let got = wait_for("every line", Duration::from_secs(180), || {
        let v = read_lines(&p.out);
        (unique(&v) >= want.len()).then_some(v)
    })
    .with_context(|| {
        format!(
            "{} distinct lines of {}; log:\n{}",
            unique(&read_lines(&p.out)),
            want.len(),
            sluice.log_text()
        )
    })?;
    std::thread::sleep(Duration::from_millis(1000));
    let got = {
        let later = read_lines(&p.out);
        if later.len() > got.len() { later } else { got }
    };
    let w: BTreeSet<&String> = want.iter().collect();
    ensure!(got.iter().all(|l| w.contains(l)), "lines never written");
    ensure!(unique(&got) == want.len(), "lost lines");
    let duplicates = got.len() - want.len();
    println!(
        "spooldir crash test: {kills} SIGKILLs ({mid_file} mid-file), {} lines, {duplicates} \
         duplicates (bound {} = one source batch + one sink batch per kill)",
        want.len(),
        kills * 2 * BATCH
    );
    ensure!(duplicates <= kills * 2 * BATCH, "{duplicates} duplicates");
    for f in 0..3 {
        wait_exists(&p.spool.join(format!("f{f}.log.COMPLETED")), &sluice)?;
    }
    Ok(())
}

#[test]
fn a_file_appended_after_pickup_stops_the_source_naming_it() -> Result<()> {
    let s = Setup::new()?;
    let mut p = s.pipe("append", &[("batchSize", "100"), ("maxBackoff", "50")])?;
    // A small channel, so the source is still inside the file when it is appended to.
    p.channel = "type = memory\ncapacity = 300\ntransactionCapacity = 100\n".into();
    let lines = tagged("orig", 0..60_000);
    let path = drop_file(&p.spool, "grow.log", &text(&lines))?;
    let conf = s.conf(&[&p]);
    let mut sluice = s.start("append", &conf)?;
    wait_lines(&p.out, 1000, &sluice)?;
    ensure!(
        !p.spool.join("grow.log.COMPLETED").exists(),
        "the file was done before the test could append to it"
    );
    let late = tagged("late", 0..100);
    let mut f = std::fs::OpenOptions::new().append(true).open(&path)?;
    f.write_all(&text(&late))?;
    drop(f);
    let log = wait_log(&sluice, "since being read")?;
    ensure!(
        log.contains(&format!(
            "File has been modified since being read: {}",
            path.display()
        )) || log.contains(&format!(
            "File has changed size since being read: {}",
            path.display()
        )),
        "the error names the file:\n{log}"
    );
    ensure!(
        path.exists() && !p.spool.join("grow.log.COMPLETED").exists(),
        "file moved"
    );
    ensure!(sluice.counter("SOURCE.r1", "GenericProcessingFail")? >= 1);
    let mut want = lines.clone();
    want.extend(late);
    // Everything read before the error is delivered: the original lines, and the appended
    // ones unless the append raced the end of the read (then they come after the restart).
    let got = settle(&p.out, lines.len(), &sluice)?;
    let before = counts(&got);
    ensure!(
        lines.iter().all(|l| before.get(l.as_str()) == Some(&1))
            && got.len() <= want.len()
            && before
                .keys()
                .all(|l| l.starts_with("orig-") || l.starts_with("late-")),
        "before the restart: {} lines of {}",
        got.len(),
        want.len()
    );
    sluice.signal("TERM")?;
    sluice.wait(WAIT)?;
    // After a restart the file resumes at its position (its end) and is completed.
    let sluice = s.start("append-restart", &conf)?;
    wait_exists(&p.spool.join("grow.log.COMPLETED"), &sluice)?;
    std::thread::sleep(Duration::from_millis(500));
    assert_same(&read_lines(&p.out), &want)?;
    println!(
        "append after pickup: error named the file; {} lines, none lost",
        want.len()
    );
    Ok(())
}

#[test]
fn decode_error_policies_and_charsets() -> Result<()> {
    let s = Setup::new()?;
    let fail = s.pipe("fail", &[])?;
    let replace = s.pipe("replace", &[("decodeErrorPolicy", "REPLACE")])?;
    let ignore = s.pipe("ignore", &[("decodeErrorPolicy", "IGNORE")])?;
    let latin = s.pipe("latin", &[("inputCharset", "ISO-8859-1")])?;
    let ascii = s.pipe(
        "ascii",
        &[
            ("inputCharset", "US-ASCII"),
            ("decodeErrorPolicy", "REPLACE"),
        ],
    )?;
    let mut utf16 = vec![0xFE, 0xFF];
    for u in "ünï\ncodé\n".encode_utf16() {
        utf16.extend_from_slice(&u.to_be_bytes());
    }
    let u16p = s.pipe("utf16", &[("inputCharset", "UTF-16")])?;
    let data: &[u8] = b"ok-1\nbad-\xff\xfe-x\nok-2\n";
    let bad = drop_file(&fail.spool, "in.log", data)?;
    for p in [&replace, &ignore] {
        drop_file(&p.spool, "in.log", data)?;
    }
    drop_file(&latin.spool, "in.log", b"caf\xe9\n")?;
    drop_file(&ascii.spool, "in.log", b"caf\xe9\n")?;
    drop_file(&u16p.spool, "in.log", &utf16)?;
    let sluice = s.start(
        "decode",
        &s.conf(&[&fail, &replace, &ignore, &latin, &ascii, &u16p]),
    )?;

    wait_lines(&replace.out, 3, &sluice)?;
    ensure!(
        out_bytes(&replace.out)? == "ok-1\nbad-\u{FFFD}\u{FFFD}-x\nok-2\n".as_bytes(),
        "REPLACE: {:?}",
        String::from_utf8_lossy(&out_bytes(&replace.out)?)
    );
    wait_lines(&ignore.out, 3, &sluice)?;
    ensure!(out_bytes(&ignore.out)? == b"ok-1\nbad--x\nok-2\n", "IGNORE");
    wait_lines(&latin.out, 1, &sluice)?;
    ensure!(
        out_bytes(&latin.out)? == "café\n".as_bytes(),
        "ISO-8859-1 becomes UTF-8"
    );
    wait_lines(&ascii.out, 1, &sluice)?;
    ensure!(
        out_bytes(&ascii.out)? == "caf\u{FFFD}\n".as_bytes(),
        "US-ASCII"
    );
    wait_lines(&u16p.out, 2, &sluice)?;
    ensure!(
        out_bytes(&u16p.out)? == "ünï\ncodé\n".as_bytes(),
        "UTF-16 with a BOM"
    );
    for p in [&replace, &ignore, &latin, &ascii, &u16p] {
        wait_exists(&p.spool.join("in.log.COMPLETED"), &sluice)?;
    }

    // FAIL: the line before the bad byte is delivered, the error names the file and the
    // offset, the file stays, the source stops.
    wait_lines(&fail.out, 1, &sluice)?;
    let log = wait_log(&sluice, "is not valid UTF-8 input")?;
    ensure!(
        log.contains(&format!(
            "Cannot read {}: byte 9 is not valid UTF-8",
            bad.display()
        )),
        "{log}"
    );
    std::thread::sleep(Duration::from_millis(500));
    ensure!(
        out_bytes(&fail.out)? == b"ok-1\n",
        "FAIL delivers the lines before"
    );
    ensure!(bad.exists() && !fail.spool.join("in.log.COMPLETED").exists());
    ensure!(sluice.counter("SOURCE.r1", "EventReadFail")? >= 1);
    println!("decodeErrorPolicy FAIL/REPLACE/IGNORE and 4 charsets as Flume");
    Ok(())
}

#[test]
fn delete_policy_and_tracker_dir_policy() -> Result<()> {
    let s = Setup::new()?;
    let del = s.pipe("delete", &[("deletePolicy", "immediate")])?;
    let tracked = s.pipe(
        "tracked",
        &[("trackingPolicy", "tracker_dir"), ("trackerDir", "state")],
    )?;
    let a = tagged("del", 0..300);
    let b = tagged("trk", 0..300);
    let del_file = drop_file(&del.spool, "a.log", &text(&a))?;
    let trk_file = drop_file(&tracked.spool, "b.log", &text(&b))?;
    let conf = s.conf(&[&del, &tracked]);
    let mut sluice = s.start("policies", &conf)?;
    let marker = tracked.spool.join("state/b.log.COMPLETED");
    wait_exists(&marker, &sluice)?;
    wait_for("a.log deleted", WAIT, || (!del_file.exists()).then_some(()))
        .with_context(|| sluice.log_text())?;
    ensure!(
        !del.spool.join("a.log.COMPLETED").exists(),
        "deleted, not renamed"
    );
    ensure!(trk_file.exists(), "tracker_dir leaves the file in place");
    assert_same(&settle(&del.out, 300, &sluice)?, &a)?;
    assert_same(&settle(&tracked.out, 300, &sluice)?, &b)?;
    sluice.signal("TERM")?;
    sluice.wait(WAIT)?;

    // A restart does not read the tracked file again.
    let sluice = s.start("policies-2", &conf)?;
    std::thread::sleep(Duration::from_millis(1500));
    assert_same(&read_lines(&tracked.out), &b)?;
    // Appending to a completed file (a reused name) is an error naming it, not ignored.
    std::thread::sleep(Duration::from_millis(20));
    let mut f = std::fs::OpenOptions::new().append(true).open(&trk_file)?;
    f.write_all(b"more\n")?;
    drop(f);
    let log = wait_log(&sluice, "was modified after it was completed")?;
    ensure!(log.contains(&trk_file.display().to_string()), "{log}");
    println!("deletePolicy immediate and trackingPolicy tracker_dir");
    Ok(())
}

#[test]
fn headers_patterns_and_recursive_search() -> Result<()> {
    let s = Setup::new()?;
    let mut p = s.pipe(
        "select",
        &[
            ("fileHeader", "true"),
            ("basenameHeader", "true"),
            ("basenameHeaderKey", "name"),
            ("includePattern", "^.*\\.log$"),
            ("ignorePattern", "^skip.*$"),
            ("recursiveDirectorySearch", "true"),
        ],
    )?;
    p.serializer = "header_and_text";
    let sub = p.spool.join("sub");
    let hidden = p.spool.join(".hidden");
    let skipped_dir = p.spool.join("skipdir");
    for d in [&sub, &hidden, &skipped_dir] {
        std::fs::create_dir_all(d)?;
    }
    drop_file(&p.spool, "a.log", b"in a\n")?;
    drop_file(&sub, "c.log", b"in c\n")?;
    for (dir, name) in [
        (&p.spool, "b.txt"),
        (&p.spool, "skip.log"),
        (&hidden, "d.log"),
        (&skipped_dir, "e.log"),
    ] {
        drop_file(dir, name, b"must not be read\n")?;
    }
    let sluice = s.start("select", &s.conf(&[&p]))?;
    wait_exists(&p.spool.join("a.log.COMPLETED"), &sluice)?;
    wait_exists(&sub.join("c.log.COMPLETED"), &sluice)?;
    let got: BTreeSet<String> = settle(&p.out, 2, &sluice)?.into_iter().collect();
    let want: BTreeSet<String> = [
        format!(
            "{{file={}, name=a.log}} in a",
            p.spool.join("a.log").display()
        ),
        format!("{{file={}, name=c.log}} in c", sub.join("c.log").display()),
    ]
    .into_iter()
    .collect();
    ensure!(got == want, "{got:?} != {want:?}");
    for (dir, name) in [
        (&p.spool, "b.txt"),
        (&p.spool, "skip.log"),
        (&hidden, "d.log"),
        (&skipped_dir, "e.log"),
    ] {
        ensure!(dir.join(name).exists(), "{name} was touched");
    }
    println!("fileHeader/basenameHeader, include/ignore patterns, recursive search");
    Ok(())
}

#[test]
fn avro_container_files_and_blobs() -> Result<()> {
    use apache_avro::types::Value;
    let s = Setup::new()?;
    let mut avro = s.pipe("avro", &[("deserializer", "AVRO"), ("batchSize", "30")])?;
    avro.serializer = "header_and_text";
    let blob = s.pipe(
        "blob",
        &[
            (
                "deserializer",
                "org.apache.flume.sink.solr.morphline.BlobDeserializer$Builder",
            ),
            ("deserializer.maxBlobLength", "16"),
        ],
    )?;
    // A string field of 20 characters: its Avro encoding is `(` (the length 20, zig-zag)
    // and the characters, so the body is a printable line.
    let schema = apache_avro::Schema::parse_str(
        r#"{"type":"record","name":"Line","namespace":"test","fields":[{"name":"s","type":"string"}]}"#,
    )?;
    let mut w = apache_avro::Writer::new(&schema, Vec::new());
    let records: Vec<String> = (0..250).map(|i| format!("avro-record-{i:08}")).collect();
    for (i, r) in records.iter().enumerate() {
        w.append(Value::Record(vec![("s".into(), Value::String(r.clone()))]))?;
        if i % 40 == 39 {
            w.flush()?;
        }
    }
    drop_file(&avro.spool, "records.avro", &w.into_inner()?)?;
    drop_file(&blob.spool, "small.bin", b"one blob")?;
    drop_file(&blob.spool, "large.bin", b"0123456789abcdef0123456789")?;
    let sluice = s.start("avro-blob", &s.conf(&[&avro, &blob]))?;

    let hash = schema
        .fingerprint::<apache_avro::rabin::Rabin>()
        .to_string();
    let want: Vec<String> = records
        .iter()
        .map(|r| format!("{{flume.avro.schema.hash={hash}}} ({r}"))
        .collect();
    assert_same(&settle(&avro.out, want.len(), &sluice)?, &want)?;
    wait_exists(&avro.spool.join("records.avro.COMPLETED"), &sluice)?;

    let got = settle(&blob.out, 3, &sluice)?;
    let want: Vec<String> = ["one blob", "0123456789abcdef", "0123456789"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_same(&got, &want)?;
    println!("AVRO: 250 records with the schema hash; blobs cut at maxBlobLength");
    Ok(())
}

#[test]
fn a_full_channel_is_retried_until_the_sink_drains_it() -> Result<()> {
    let s = Setup::new()?;
    let spool = s.dir("full-spool")?;
    let out = s.dir("full-out")?;
    let port = free_port()?;
    let lines = tagged("full", 0..3000);
    drop_file(&spool, "in.log", &text(&lines))?;
    let sender = format!(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = spooldir\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.spoolDir = {}\n\
         a1.sources.r1.batchSize = 100\n\
         a1.sources.r1.maxBackoff = 500\n\
         a1.channels.c1.type = memory\n\
         a1.channels.c1.capacity = 300\n\
         a1.channels.c1.transactionCapacity = 100\n\
         a1.sinks.k1.type = avro\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.hostname = 127.0.0.1\n\
         a1.sinks.k1.port = {port}\n\
         a1.sinks.k1.batch-size = 100\n\
         a1.sinks.k1.connect-timeout = 1000\n",
        spool.display()
    );
    let sluice = s.start("full-sender", &sender)?;
    // No receiver yet: the channel fills and the source's puts fail.
    wait_for("ChannelWriteFail", WAIT, || {
        (sluice.counter("SOURCE.r1", "ChannelWriteFail").ok()? >= 2).then_some(())
    })
    .with_context(|| sluice.log_text())?;
    ensure!(!spool.join("in.log.COMPLETED").exists());
    let receiver = format!(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = avro\n\
         a1.sources.r1.bind = 127.0.0.1\n\
         a1.sources.r1.port = {port}\n\
         a1.sources.r1.channels = c1\n\
         a1.channels.c1.type = memory\n\
         a1.channels.c1.capacity = 10000\n\
         a1.sinks.k1.type = file_roll\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.sink.directory = {}\n\
         a1.sinks.k1.sink.rollInterval = 0\n",
        out.display()
    );
    let collector = s.start("full-receiver", &receiver)?;
    let got = settle(&out, lines.len(), &collector).with_context(|| sluice.log_text())?;
    assert_same(&got, &lines)?;
    wait_exists(&spool.join("in.log.COMPLETED"), &sluice)?;
    println!(
        "full channel: retried with backoff, {} lines, none lost",
        got.len()
    );
    Ok(())
}

/// Flume User Guide (1.10.1), "Spooling Directory Source" example, as written.
const GUIDE_SNIPPET: &str = "a1.channels = ch-1
a1.sources = src-1

a1.sources.src-1.type = spooldir
a1.sources.src-1.channels = ch-1
a1.sources.src-1.spoolDir = /var/log/apache/flumeSpool
a1.sources.src-1.fileHeader = true
";

#[test]
fn check_accepts_the_flume_guide_snippet() -> Result<()> {
    let s = Setup::new()?;
    // The snippet has no sink; `check` wants a complete agent.
    let conf = s.root.join("snippet.conf");
    let spool = s.dir("flumeSpool")?;
    let text = GUIDE_SNIPPET.replace("/var/log/apache/flumeSpool", &spool.display().to_string());
    std::fs::write(
        &conf,
        format!(
            "{text}\na1.sinks = k1\na1.channels.ch-1.type = memory\n\
             a1.sinks.k1.type = logger\na1.sinks.k1.channel = ch-1\n"
        ),
    )?;
    let conf_s = conf.display().to_string();
    let (rc, stdout, stderr) = run_sluice(&["check", "-n", "a1", "-f", &conf_s])?;
    ensure!(rc == 0, "check failed ({rc}):\n{stdout}\n{stderr}");
    ensure!(stdout.contains("spooldir"), "{stdout}");
    // An unsupported deserializer is an error naming the key.
    std::fs::write(
        &conf,
        format!(
            "{text}\na1.sinks = k1\na1.channels.ch-1.type = memory\n\
             a1.sinks.k1.type = logger\na1.sinks.k1.channel = ch-1\n\
             a1.sources.src-1.deserializer = com.example.Custom$Builder\n"
        ),
    )?;
    let (rc, stdout, stderr) = run_sluice(&["check", "-n", "a1", "-f", &conf_s])?;
    if rc == 0 {
        bail!("a custom deserializer was accepted:\n{stdout}");
    }
    ensure!(stderr.contains("a1.sources.src-1.deserializer"), "{stderr}");
    Ok(())
}
