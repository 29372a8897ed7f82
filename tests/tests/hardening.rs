//! Hardening of the agent core on the real binary: transactional reloads that lose nothing,
//! shutdown within `--drain-timeout`, and `check` refusing values the agent cannot run.
//!
//! Events arrive through an Avro source fed by `sluice send` (a source restart does not
//! regenerate them, unlike `seq`), and a "blocked sink" is a file_roll sink whose directory
//! path is a regular file: it fails every batch, so events stay in the channel, until the test
//! removes the file.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use sluice_integration::{Sluice, free_port, read_lines, run_sluice, sluice_send, wait_for};

const WAIT: Duration = Duration::from_secs(60);

/// Sends lines `<tag>-0 .. <tag>-<n-1>` to the Avro source at `port`.
fn send(dir: &Path, port: u16, tag: &str, n: usize) -> Result<()> {
    let file = dir.join(format!("{tag}.txt"));
    let text: String = (0..n).map(|i| format!("{tag}-{i}\n")).collect();
    std::fs::write(&file, text)?;
    let (code, out, err) = sluice_send(port, &file, &["-b", "100"])?;
    ensure!(code == 0, "sluice send failed ({code}): {out}{err}");
    Ok(())
}

/// Avro source `r1` on `port` → channel `c1` (given) → file_roll `k1` into `out`.
fn avro_pipeline(port: u16, channel: &str, out: &Path) -> String {
    format!(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = avro\n\
         a1.sources.r1.bind = 127.0.0.1\n\
         a1.sources.r1.port = {port}\n\
         a1.sources.r1.channels = c1\n\
         {channel}\n\
         a1.sinks.k1.type = file_roll\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.sink.directory = {}\n\
         a1.sinks.k1.sink.rollInterval = 0\n\
         a1.sinks.k1.sink.batchSize = 100\n",
        out.display()
    )
}

fn memory_channel(capacity: usize) -> String {
    format!(
        "a1.channels.c1.type = memory\n\
         a1.channels.c1.capacity = {capacity}\n\
         a1.channels.c1.transactionCapacity = 100\n"
    )
}

/// A file_roll directory path occupied by a regular file: the sink fails until it is removed.
fn block(out: &Path) -> Result<()> {
    std::fs::write(out, "not a directory")?;
    Ok(())
}

fn unblock(out: &Path) -> Result<()> {
    std::fs::remove_file(out)?;
    Ok(())
}

/// An agent on [`avro_pipeline`] with a memory channel and a blocked sink.
fn blocked_agent(extra: &[&str]) -> Result<(tempfile::TempDir, std::path::PathBuf, u16, Sluice)> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    block(&out)?;
    let port = free_port()?;
    let conf = avro_pipeline(port, &memory_channel(10_000), &out);
    let agent = Sluice::start(tmp.path(), "a", &conf, extra)?;
    Ok((tmp, out, port, agent))
}

/// A file channel `c1` whose directories are `checkpoint` and `data`.
fn file_channel(checkpoint: &Path, data: &Path) -> String {
    format!(
        "a1.channels.c1.type = file\n\
         a1.channels.c1.checkpointDir = {}\n\
         a1.channels.c1.dataDirs = {}\n\
         a1.channels.c1.minimumRequiredSpace = 1048576\n",
        checkpoint.display(),
        data.display()
    )
}

fn channel_size(agent: &Sluice) -> Result<u64> {
    agent.counter("CHANNEL.c1", "ChannelSize")
}

fn wait_channel_size(agent: &Sluice, n: u64) -> Result<()> {
    wait_for(&format!("ChannelSize = {n}"), WAIT, || {
        (channel_size(agent).ok()? == n).then_some(())
    })
    .with_context(|| agent.log_text())
}

/// Waits for every line of `expected` in `out`, then checks there is nothing else.
fn expect_exactly(out: &Path, expected: &BTreeSet<String>) -> Result<()> {
    let got = wait_for(&format!("{} lines", expected.len()), WAIT, || {
        let lines = read_lines(out);
        (lines.len() >= expected.len()).then_some(lines)
    })?;
    let set: BTreeSet<String> = got.iter().cloned().collect();
    ensure!(
        set.len() == got.len(),
        "{} duplicates",
        got.len() - set.len()
    );
    ensure!(
        &set == expected,
        "got {} lines, not the ones sent",
        got.len()
    );
    Ok(())
}

fn tagged(tag: &str, n: usize) -> BTreeSet<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

fn count_in_log(agent: &Sluice, needle: &str) -> usize {
    agent.log_text().matches(needle).count()
}

/// A memory channel changed into a file channel that cannot open (its checkpointDir is under a
/// regular file): before, the old channel was closed and its events dropped silently and the
/// source and sink stayed down. Now the running pipeline is untouched, the error names the
/// channel, the reload is retried, and every event is delivered once the sink can write.
#[test]
fn a_reload_to_a_channel_that_cannot_open_keeps_the_pipeline_and_its_events() -> Result<()> {
    let (tmp, out, port, agent) = blocked_agent(&["--reload-interval", "1"])?;
    send(tmp.path(), port, "before", 500)?;
    wait_channel_size(&agent, 500)?;

    let occupied = tmp.path().join("occupied");
    std::fs::write(&occupied, "a regular file")?;
    let channel = file_channel(&occupied.join("checkpoint"), &tmp.path().join("data"));
    std::fs::write(&agent.conf, avro_pipeline(port, &channel, &out))?;
    wait_for("the reload to fail twice (retried)", WAIT, || {
        (count_in_log(&agent, "Reload failed") >= 2).then_some(())
    })?;
    let log = agent.log_text();
    ensure!(
        log.contains("channel c1"),
        "the error names the channel:\n{log}"
    );
    ensure!(!log.contains("discarded"), "{log}");
    ensure!(channel_size(&agent)? == 500, "{log}");
    // The source still runs: more events arrive in the same channel.
    send(tmp.path(), port, "during", 300)?;
    wait_channel_size(&agent, 800)?;

    unblock(&out)?;
    let mut expected = tagged("before", 500);
    expected.extend(tagged("during", 300));
    expect_exactly(&out, &expected)
}

/// A reload that adds a broken second channel to the source: before, the source stayed down
/// until the file was reverted. Now it keeps delivering into the channel it had.
#[test]
fn a_reload_adding_a_broken_channel_keeps_the_source_running() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let port = free_port()?;
    let conf = avro_pipeline(port, &memory_channel(10_000), &out);
    let agent = Sluice::start(tmp.path(), "a", &conf, &["--reload-interval", "1"])?;
    send(tmp.path(), port, "first", 200)?;
    expect_exactly(&out, &tagged("first", 200))?;

    let occupied = tmp.path().join("occupied");
    std::fs::write(&occupied, "a regular file")?;
    let broken = conf
        .replace("a1.channels = c1", "a1.channels = c1 c2")
        .replace(
            "a1.sources.r1.channels = c1",
            "a1.sources.r1.channels = c1 c2",
        )
        + &format!(
            "a1.channels.c2.type = file\n\
             a1.channels.c2.checkpointDir = {}\n\
             a1.channels.c2.dataDirs = {}\n",
            occupied.join("cp").display(),
            occupied.join("data").display()
        );
    std::fs::write(&agent.conf, broken)?;
    wait_for("the failed reload", WAIT, || {
        agent.log_text().contains("Reload failed").then_some(())
    })?;
    send(tmp.path(), port, "second", 200)?;
    let mut expected = tagged("first", 200);
    expected.extend(tagged("second", 200));
    expect_exactly(&out, &expected)
}

/// A reload whose new source cannot bind (its port is taken), together with a changed channel:
/// the swap fails after the old source, sink and channel were stopped, and must roll back:
/// the old channel keeps its events, the old source serves its port again.
#[test]
fn a_reload_that_fails_midway_rolls_back() -> Result<()> {
    let (tmp, out, port, agent) = blocked_agent(&["--reload-interval", "1"])?;
    send(tmp.path(), port, "kept", 400)?;
    wait_channel_size(&agent, 400)?;

    let taken = TcpListener::bind("127.0.0.1:0")?;
    let taken_port = taken.local_addr()?.port();
    std::fs::write(
        &agent.conf,
        avro_pipeline(taken_port, &memory_channel(20_000), &out),
    )?;
    wait_for("the failed swap", WAIT, || {
        agent
            .log_text()
            .contains("restoring the previous ones")
            .then_some(())
    })?;
    let log = agent.log_text();
    ensure!(
        log.contains("source r1"),
        "the error names the source:\n{log}"
    );
    wait_channel_size(&agent, 400)?;
    send(tmp.path(), port, "after", 100)?;
    wait_channel_size(&agent, 500)?;
    ensure!(
        agent.counter("CHANNEL.c1", "ChannelCapacity")? == 10_000,
        "the previous channel serves"
    );
    unblock(&out)?;
    let mut expected = tagged("kept", 400);
    expected.extend(tagged("after", 100));
    expect_exactly(&out, &expected)?;
    drop(taken);
    Ok(())
}

/// A valid reload from a memory to a file channel moves the stored events into it.
#[test]
fn a_reload_from_memory_to_file_channel_moves_the_events() -> Result<()> {
    let (tmp, out, port, agent) = blocked_agent(&["--reload-interval", "1"])?;
    send(tmp.path(), port, "moved", 300)?;
    wait_channel_size(&agent, 300)?;
    let channel = file_channel(&tmp.path().join("cp"), &tmp.path().join("data"));
    std::fs::write(&agent.conf, avro_pipeline(port, &channel, &out))?;
    wait_for("the moved events", WAIT, || {
        agent
            .log_text()
            .contains("Moved events to the reconfigured channel")
            .then_some(())
    })?;
    wait_channel_size(&agent, 300)?;
    unblock(&out)?;
    expect_exactly(&out, &tagged("moved", 300))
}

/// Metrics of components a reload removes disappear (here a sink group's member sink).
#[test]
fn a_reload_unregisters_the_metrics_of_removed_components() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (o1, o2) = (tmp.path().join("o1"), tmp.path().join("o2"));
    let port = free_port()?;
    let sink = |n: &str, dir: &Path| {
        format!(
            "a1.sinks.{n}.type = file_roll\na1.sinks.{n}.channel = c1\n\
             a1.sinks.{n}.sink.directory = {}\na1.sinks.{n}.sink.rollInterval = 0\n",
            dir.display()
        )
    };
    let base = format!(
        "a1.sources = r1\na1.channels = c1\n\
         a1.sources.r1.type = avro\na1.sources.r1.bind = 127.0.0.1\n\
         a1.sources.r1.port = {port}\na1.sources.r1.channels = c1\n{}",
        memory_channel(1000)
    );
    let grouped = format!(
        "{base}a1.sinks = k1 k2\na1.sinkgroups = g1\na1.sinkgroups.g1.sinks = k1 k2\n\
         a1.sinkgroups.g1.processor.type = failover\n\
         a1.sinkgroups.g1.processor.priority.k1 = 10\n\
         a1.sinkgroups.g1.processor.priority.k2 = 5\n{}{}",
        sink("k1", &o1),
        sink("k2", &o2)
    );
    let agent = Sluice::start(tmp.path(), "a", &grouped, &["--reload-interval", "1"])?;
    ensure!(agent.counter("SINK.k2", "BatchEmptyCount").is_ok());
    std::fs::write(
        &agent.conf,
        format!("{base}a1.sinks = k1\n{}", sink("k1", &o1)),
    )?;
    wait_for("SINK.k2 to leave the metrics", WAIT, || {
        let m = agent.metrics().ok()?;
        m.get("SINK.k2").is_none().then_some(())
    })
    .with_context(|| agent.log_text())?;
    ensure!(agent.counter("SINK.k1", "BatchEmptyCount").is_ok());
    send(tmp.path(), port, "single", 50)?;
    expect_exactly(&o1, &tagged("single", 50))
}

/// An Avro sink whose peer accepts connections and never answers (a black hole): the agent
/// used to exit after 16.5 s with `--drain-timeout 3`. It must exit within the drain timeout
/// plus about a second, saying what was left in the channel.
#[test]
fn shutdown_keeps_the_drain_timeout_with_a_black_hole_peer() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let hole = TcpListener::bind("127.0.0.1:0")?;
    let hole_port = hole.local_addr()?.port();
    // Accepts and holds connections without reading (bounded: the test's lifetime).
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        hole.set_nonblocking(true).ok();
        let until = Instant::now() + Duration::from_secs(120);
        while Instant::now() < until && conns.len() < 16 {
            match hole.accept() {
                Ok((c, _)) => conns.push(c),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        conns
    });
    let conf = format!(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = seq\na1.sources.r1.batchSize = 100\n\
         a1.sources.r1.channels = c1\n\
         a1.channels.c1.type = memory\na1.channels.c1.capacity = 1000\n\
         a1.channels.c1.transactionCapacity = 100\na1.channels.c1.keep-alive = 3\n\
         a1.sinks.k1.type = avro\na1.sinks.k1.channel = c1\n\
         a1.sinks.k1.hostname = 127.0.0.1\na1.sinks.k1.port = {hole_port}\n\
         a1.sinks.k1.batch-size = 100\n\
         a1.sinks.k1.connect-timeout = 20000\na1.sinks.k1.request-timeout = 20000\n"
    );
    let mut agent = Sluice::start(tmp.path(), "a", &conf, &["--drain-timeout", "3"])?;
    // The channel fills (the sink never completes a batch) and the source blocks on it.
    wait_channel_size_at_least(&agent, 900)?;
    let t0 = Instant::now();
    agent.signal("TERM")?;
    let code = agent.wait(Duration::from_secs(30))?;
    let took = t0.elapsed();
    eprintln!("exit after SIGTERM with --drain-timeout 3: {took:?}, code {code:?}");
    ensure!(code == Some(0), "exit code {code:?}\n{}", agent.log_text());
    ensure!(
        took < Duration::from_millis(4500),
        "took {took:?}\n{}",
        agent.log_text()
    );
    ensure!(
        agent.log_text().contains("Events left in channel"),
        "{}",
        agent.log_text()
    );
    drop(held);
    Ok(())
}

fn wait_channel_size_at_least(agent: &Sluice, n: u64) -> Result<()> {
    wait_for(&format!("ChannelSize >= {n}"), WAIT, || {
        (channel_size(agent).ok()? >= n).then_some(())
    })
    .with_context(|| agent.log_text())
}

/// A second SIGTERM during a long drain exits at once.
#[test]
fn a_second_sigterm_exits_at_once() -> Result<()> {
    let (tmp, _out, port, mut agent) = blocked_agent(&["--drain-timeout", "120"])?;
    send(tmp.path(), port, "left", 100)?;
    wait_channel_size(&agent, 100)?;
    agent.signal("TERM")?;
    wait_for("the drain to start", WAIT, || {
        agent.log_text().contains("Stopping:").then_some(())
    })?;
    let t0 = Instant::now();
    agent.signal("TERM")?;
    let code = agent.wait(Duration::from_secs(20))?;
    let took = t0.elapsed();
    eprintln!("exit after the second SIGTERM: {took:?}, code {code:?}");
    ensure!(
        code == Some(130),
        "exit code {code:?}\n{}",
        agent.log_text()
    );
    ensure!(took < Duration::from_secs(2), "took {took:?}");
    Ok(())
}

fn check(dir: &Path, conf: &[u8]) -> Result<(i32, String)> {
    let path = dir.join("check.conf");
    std::fs::write(&path, conf)?;
    let (code, out, err) = run_sluice(&["check", "-n", "a1", "-f", &path.to_string_lossy()])?;
    Ok((code, format!("{out}{err}")))
}

const TAILDIR: &str = "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
     a1.sources.r1.type = TAILDIR\na1.sources.r1.channels = c1\n\
     a1.sources.r1.filegroups = f1\na1.sources.r1.filegroups.f1 = /tmp/.*\\\\.log\n\
     a1.sources.r1.positionFile = /tmp/pos.json\n\
     a1.channels.c1.type = memory\n\
     a1.sinks.k1.type = null\na1.sinks.k1.channel = c1\n";

/// Values `check` used to accept and the agent then failed on (a panicking source thread, a
/// 40 TB allocation, a sink whose every batch times out at once) are refused with the key's
/// range and line.
#[test]
fn check_refuses_values_outside_each_keys_range() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let cases = [
        (
            format!("{TAILDIR}a1.sources.r1.batchSize = 9223372036854775807\n"),
            "a1.sources.r1.batchSize",
        ),
        (
            format!("{TAILDIR}a1.sources.r1.batchSize = 1000000000000\n"),
            "a1.sources.r1.batchSize",
        ),
        (
            TAILDIR.replace(
                "a1.channels.c1.type = memory",
                "a1.channels.c1.type = memory\na1.channels.c1.keep-alive = 100000000000000000",
            ),
            "a1.channels.c1.keep-alive",
        ),
        (
            TAILDIR.replace(
                "a1.sinks.k1.type = null",
                "a1.sinks.k1.type = avro\na1.sinks.k1.hostname = h\na1.sinks.k1.port = 1\n\
                 a1.sinks.k1.connect-timeout = 0",
            ),
            "a1.sinks.k1.connect-timeout",
        ),
        (
            TAILDIR.replace(
                "a1.sinks.k1.type = null",
                "a1.sinks.k1.type = avro\na1.sinks.k1.hostname = h\na1.sinks.k1.port = 1\n\
                 a1.sinks.k1.request-timeout = 0",
            ),
            "a1.sinks.k1.request-timeout",
        ),
    ];
    for (conf, key) in &cases {
        let (code, out) = check(tmp.path(), conf.as_bytes())?;
        ensure!(code == 2, "check accepted {key}: {out}");
        let line = conf
            .lines()
            .position(|l| l.starts_with(&format!("{key} ")))
            .map(|i| i + 1)
            .context("key in conf")?;
        ensure!(
            out.contains(&format!(":{line}:")) && out.contains(key) && out.contains(" to "),
            "the error names the line, the key and the range: {out}"
        );
    }
    Ok(())
}

/// A non-UTF-8 byte in a comment is accepted (Java's properties reader reads ISO-8859-1); in a
/// value it is an error naming the line (it used to reject the file without a line number).
#[test]
fn non_utf8_comments_are_accepted_and_values_name_their_line() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut conf = b"# caf\xe9 (written as ISO-8859-1)\n".to_vec();
    conf.extend_from_slice(TAILDIR.as_bytes());
    let (code, out) = check(tmp.path(), &conf)?;
    ensure!(code == 0, "{out}");

    let mut bad = TAILDIR.as_bytes().to_vec();
    bad.extend_from_slice(b"a1.sinks.k1.x = caf\xe9\n");
    let line = TAILDIR.lines().count() + 1;
    let (code, out) = check(tmp.path(), &bad)?;
    ensure!(code == 2, "{out}");
    ensure!(out.contains(&format!(":{line}")), "{out}");
    ensure!(out.contains("UTF-8"), "{out}");
    Ok(())
}

/// The agent refuses an out-of-range value before starting (exit 2); it used to start, lose its
/// source thread to a "capacity overflow" panic and run on without it.
#[test]
fn the_agent_refuses_out_of_range_values_before_starting() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("a.conf");
    std::fs::write(
        &path,
        format!("{TAILDIR}a1.sources.r1.batchSize = 9223372036854775807\n"),
    )?;
    let mut child = std::process::Command::new(sluice_integration::sluice_bin()?)
        .args(["agent", "-n", "a1", "-f"])
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let status = wait_for("the agent to exit", Duration::from_secs(20), || {
        child.try_wait().ok().flatten()
    });
    let _ = child.kill();
    let _ = child.wait();
    match status {
        Ok(s) if s.code() == Some(2) => Ok(()),
        Ok(s) => bail!("agent exited with {s} on an out-of-range batchSize"),
        Err(_) => bail!("agent kept running with an out-of-range batchSize"),
    }
}
