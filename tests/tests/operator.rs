//! Operator tools on the real binary: `sluice test` (config unit tests) on the examples and on
//! failing tests, and the Debian package (built by packaging/build-deb, unpacked into a
//! scratch root, its binary run, its systemd unit verified by `systemd-analyze verify`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use sluice_integration::{
    Sluice, free_port, guests, http, run_sluice, sluice_bin, wait_for, wait_lines, workspace_root,
};

fn example(rel: &str) -> String {
    workspace_root().join(rel).display().to_string()
}

#[test]
fn config_tests_of_the_multiplexing_example_pass() -> Result<()> {
    let (code, out, err) = run_sluice(&[
        "test",
        "-n",
        "a1",
        "-f",
        &example("examples/test/multiplexing.conf"),
        &example("examples/test/multiplexing.toml"),
    ])?;
    ensure!(code == 0, "exit {code}\n{out}\n{err}");
    ensure!(
        out.contains("ok   errors go to the durable channel") && out.contains("2 passed, 0 failed"),
        "{out}"
    );
    Ok(())
}

#[test]
fn config_tests_run_a_wasm_guest() -> Result<()> {
    guests::rust("drop-by-level", None)?;
    let (code, out, err) = run_sluice(&[
        "test",
        "-n",
        "a1",
        "-f",
        &example("examples/wasm/drop-by-level.conf"),
        &example("examples/test/drop-by-level.toml"),
    ])?;
    ensure!(code == 0, "exit {code}\n{out}\n{err}");
    ensure!(out.contains("1 passed, 0 failed"), "{out}");
    Ok(())
}

const FAILING: &str = r#"
[[tests]]
name = "passes"
source = "r1"
inputs = [ { body = "x", headers = { Severity = "1" } } ]
[[tests.outputs]]
channel = "c1"
events = [ { body = "x" } ]

[[tests]]
name = "wrong channel"
source = "r1"
inputs = [ { body = "boom", headers = { Severity = "0" } } ]
[[tests.outputs]]
channel = "c2"
events = [ { body = "boom" } ]

[[tests]]
name = "nothing is dropped"
source = "r1"
inputs = [ { body = "DEBUG y" } ]
dropped = []
"#;

#[test]
fn failing_config_tests_exit_1_with_a_diff_and_json() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let tests = dir.path().join("t.toml");
    std::fs::write(&tests, FAILING)?;
    let conf = example("examples/test/multiplexing.conf");
    let tests_s = tests.display().to_string();
    let (code, out, err) = run_sluice(&["test", "-n", "a1", "-f", &conf, &tests_s])?;
    ensure!(code == 1, "exit {code}\n{out}\n{err}");
    ensure!(
        out.contains("ok   passes")
            && out.contains("FAIL wrong channel")
            && out.contains("channel c2: expected 1 event(s), got 0")
            && out.contains("FAIL nothing is dropped")
            && out.contains("expected 0 event(s), got 1")
            && out.contains(r#"got      {"body":"DEBUG y","headers":{}} (from input #1)"#)
            && out.contains("1 passed, 2 failed"),
        "{out}"
    );
    ensure!(
        err.contains("failed: wrong channel, nothing is dropped"),
        "{err}"
    );
    let (code, out, _) = run_sluice(&[
        "test", "-n", "a1", "-f", &conf, &tests_s, "--format", "json",
    ])?;
    ensure!(code == 1, "exit {code}\n{out}");
    let doc: serde_json::Value = serde_json::from_str(out.trim()).context("json output")?;
    ensure!(doc["passed"] == 1 && doc["failed"] == 2, "{doc}");
    ensure!(doc["tests"][1]["name"] == "wrong channel" && doc["tests"][1]["passed"] == false);
    Ok(())
}

#[test]
fn bad_test_files_and_configs_exit_2_naming_the_problem() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let conf = example("examples/test/multiplexing.conf");
    let tests = dir.path().join("bad.toml");
    std::fs::write(
        &tests,
        "[[tests]]\nname = \"x\"\nsource = \"r1\"\ninputs = [ { bodyy = \"a\" } ]\n",
    )?;
    let (code, _, err) = run_sluice(&[
        "test",
        "-n",
        "a1",
        "-f",
        &conf,
        &tests.display().to_string(),
    ])?;
    ensure!(
        code == 2 && err.contains("bad.toml") && err.contains("bodyy"),
        "{code} {err}"
    );
    let broken = dir.path().join("broken.conf");
    std::fs::write(
        &broken,
        "a1.sources = r1\na1.sources.r1.type = nosuchsource\n",
    )?;
    let (code, _, err) = run_sluice(&[
        "test",
        "-n",
        "a1",
        "-f",
        &broken.display().to_string(),
        &example("examples/test/multiplexing.toml"),
    ])?;
    ensure!(code == 2 && err.contains("broken.conf"), "{code} {err}");
    Ok(())
}

/// A source in front of a sink that cannot deliver (an Avro sink to a port nothing listens
/// on) fills its small channel and then counts the time it is blocked; a sink that delivers
/// has a latency histogram on the Prometheus endpoint and its summary in Flume's JSON.
#[test]
fn backpressure_metrics_show_where_a_pipeline_is_stuck() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    let dead = free_port()?;
    let conf = format!(
        "a1.sources = stuck flowing\n\
         a1.channels = c1 c2\n\
         a1.sinks = k1 k2\n\
         a1.sources.stuck.type = seq\n\
         a1.sources.stuck.batchSize = 10\n\
         a1.sources.stuck.channels = c1\n\
         a1.sources.flowing.type = seq\n\
         a1.sources.flowing.totalEvents = 5000\n\
         a1.sources.flowing.channels = c2\n\
         a1.channels.c1.type = memory\n\
         a1.channels.c1.capacity = 50\n\
         a1.channels.c1.transactionCapacity = 10\n\
         a1.channels.c1.keep-alive = 0\n\
         a1.channels.c2.type = memory\n\
         a1.channels.c2.capacity = 10000\n\
         a1.sinks.k1.type = avro\n\
         a1.sinks.k1.hostname = 127.0.0.1\n\
         a1.sinks.k1.port = {dead}\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k2.type = file_roll\n\
         a1.sinks.k2.sink.directory = {}\n\
         a1.sinks.k2.channel = c2\n",
        out.display()
    );
    let agent = Sluice::start(dir.path(), "a1", &conf, &[])?;
    let blocked = wait_for(
        "the stuck source's ChannelBlockedMicros to pass 200 ms",
        Duration::from_secs(30),
        || {
            agent
                .counter("SOURCE.stuck", "ChannelBlockedMicros")
                .ok()
                .filter(|b| *b > 200_000)
        },
    )
    .with_context(|| agent.log_text())?;
    ensure!(
        agent.counter("SOURCE.flowing", "ChannelBlockedMicros")? == 0
            && agent.counter("SOURCE.flowing", "ChannelBlockedSince")? == 0,
        "the flowing source was never blocked"
    );
    ensure!(
        agent.counter("SOURCE.stuck", "ChannelBlockedSince")? > 1_700_000_000_000,
        "the stuck source says since when it waits"
    );
    let delivered = wait_for("k2's DeliveryLatencyCount", Duration::from_secs(30), || {
        let m = agent.metrics().ok()?;
        let n: u64 = m["SINK.k2"]["DeliveryLatencyCount"]
            .as_str()?
            .parse()
            .ok()?;
        (n > 0).then_some(m)
    })?;
    ensure!(
        delivered["SINK.k2"]["DeliveryLatencyP99Millis"]
            .as_str()
            .is_some()
            && delivered["SINK.k1"]["DeliveryLatencyCount"] == "0",
        "{delivered}"
    );
    let addr = agent.metrics_addr.clone().context("metrics address")?;
    let text = http::get(&addr, "/metrics/prometheus")?;
    ensure!(
        text.contains("# TYPE sluice_sink_delivery_latency_seconds histogram")
            && text.contains(
                "sluice_sink_delivery_latency_seconds_bucket{le=\"+Inf\",component=\"k2\"}"
            )
            && text.contains("sluice_source_channel_blocked_micros_total{component=\"stuck\"}"),
        "{text}"
    );
    eprintln!("stuck source blocked for {blocked} µs");
    Ok(())
}

/// Runs `sluice tap --addr ADDR ARGS`, waits for it to end by itself (it is killed after
/// `timeout`): (exit code, stdout lines, stderr).
fn tap(addr: &str, args: &[&str], timeout: Duration) -> Result<(Option<i32>, Vec<String>, String)> {
    let mut child = Command::new(sluice_bin()?)
        .args(["tap", "--addr", addr])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let started = std::time::Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait()? {
            break status.code();
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read as _;
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut out)?;
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err)?;
    }
    Ok((code, out.lines().map(str::to_string).collect(), err))
}

/// The events a tap printed (its `{"point":"tap","skipped":N}` reports left out).
fn json_lines(lines: &[String]) -> Result<Vec<serde_json::Value>> {
    let all: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect::<Result<_>>()?;
    Ok(all.into_iter().filter(|e| e["point"] != "tap").collect())
}

/// seq → static interceptor → memory → file_roll, with `extra` agent arguments.
fn tapped_pipeline(dir: &Path, extra: &[&str]) -> Result<Sluice> {
    let out = dir.join("out");
    std::fs::create_dir_all(&out)?;
    let conf = "a1.sources = r1\n\
         a1.channels = c1\n\
         a1.sinks = k1\n\
         a1.sources.r1.type = seq\n\
         a1.sources.r1.batchSize = 100\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.interceptors = s\n\
         a1.sources.r1.interceptors.s.type = static\n\
         a1.sources.r1.interceptors.s.key = dc\n\
         a1.sources.r1.interceptors.s.value = eu\n\
         a1.channels.c1.type = memory\n\
         a1.channels.c1.capacity = 10000\n\
         a1.channels.c1.transactionCapacity = 1000\n\
         a1.sinks.k1.type = null\n\
         a1.sinks.k1.batchSize = 1000\n\
         a1.sinks.k1.channel = c1\n";
    Sluice::start(dir, "a1", conf, extra)
}

#[test]
fn tap_prints_live_events_at_each_point() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = tapped_pipeline(dir.path(), &["--tap"])?;
    let addr = agent.metrics_addr.clone().context("metrics address")?;
    for (component, point) in [("r1", "source"), ("c1", "channel"), ("k1", "sink")] {
        let (code, lines, err) = tap(
            &addr,
            &["--component", component, "--limit", "5"],
            Duration::from_secs(30),
        )?;
        ensure!(code == Some(0), "exit {code:?}: {err}");
        let events = json_lines(&lines)?;
        ensure!(events.len() == 5, "{lines:?}");
        for e in &events {
            ensure!(
                e["component"] == component && e["point"] == point && e["headers"]["dc"] == "eu",
                "{e}"
            );
            ensure!(
                e["body"].as_str().is_some_and(|b| b.parse::<u64>().is_ok()),
                "{e}"
            );
        }
    }
    // One component, sampled.
    let (code, lines, err) = tap(
        &addr,
        &["--component", "k1", "--sample", "0.1", "--limit", "20"],
        Duration::from_secs(30),
    )?;
    ensure!(code == Some(0), "exit {code:?}: {err}");
    let events = json_lines(&lines)?;
    ensure!(
        events.len() == 20
            && events
                .iter()
                .all(|e| e["component"] == "k1" && e["point"] == "sink"),
        "{lines:?}"
    );
    let seqs: Vec<u64> = events
        .iter()
        .filter_map(|e| e["body"].as_str()?.parse().ok())
        .collect();
    ensure!(
        seqs.windows(2).all(|w| w[1] >= w[0] + 10),
        "one in ten: {seqs:?}"
    );
    ensure!(agent.counter("TAP.tap", "EventTappedCount")? >= 35);
    Ok(())
}

#[test]
fn a_slow_tap_skips_events_and_never_stalls_the_pipeline() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = tapped_pipeline(dir.path(), &["--tap"])?;
    let addr = agent.metrics_addr.clone().context("metrics address")?;
    // A client that asks for everything and reads nothing.
    let mut slow = std::net::TcpStream::connect(&addr)?;
    use std::io::Write as _;
    write!(slow, "GET /tap HTTP/1.1\r\nHost: x\r\n\r\n")?;
    wait_for("the tap to be connected", Duration::from_secs(10), || {
        (agent.counter("TAP.tap", "OpenConnectionCount").ok()? == 1).then_some(())
    })?;
    let skipped = wait_for("skipped tap events", Duration::from_secs(30), || {
        agent
            .counter("TAP.tap", "EventSkippedCount")
            .ok()
            .filter(|n| *n > 100_000)
    })?;
    let before = agent.counter("SINK.k1", "EventDrainSuccessCount")?;
    std::thread::sleep(Duration::from_secs(1));
    let after = agent.counter("SINK.k1", "EventDrainSuccessCount")?;
    ensure!(
        after > before + 10_000,
        "the pipeline stalled behind a slow tap: {before} -> {after} (skipped {skipped})"
    );
    drop(slow);
    wait_for(
        "the slow tap to be dropped",
        Duration::from_secs(20),
        || (agent.counter("TAP.tap", "OpenConnectionCount").ok()? == 0).then_some(()),
    )?;
    Ok(())
}

#[test]
fn tap_is_refused_without_the_flag_and_bad_requests_are_named() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = tapped_pipeline(dir.path(), &[])?;
    let addr = agent.metrics_addr.clone().context("metrics address")?;
    let (code, lines, err) = tap(&addr, &["--limit", "1"], Duration::from_secs(10))?;
    ensure!(
        code == Some(1) && lines.is_empty() && err.contains("403") && err.contains("--tap"),
        "{code:?} {lines:?} {err}"
    );
    let (code, _, err) = tap(&addr, &["--sample", "0"], Duration::from_secs(10))?;
    ensure!(
        code == Some(2) && err.contains("--sample"),
        "{code:?} {err}"
    );
    let (code, _, err) = run_sluice(&["agent", "-n", "a1", "-f", "/dev/null", "--tap"])?;
    ensure!(
        code == 2 && err.contains("--tap needs --metrics-addr"),
        "{code} {err}"
    );
    Ok(())
}

#[test]
fn tap_shows_a_guests_verdicts() -> Result<()> {
    let wasm = guests::rust("drop-by-level", None)?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    let port = free_port()?;
    let conf = format!(
        "a1.sources = r1\n\
         a1.channels = c1\n\
         a1.sinks = k1\n\
         a1.sources.r1.type = netcat\n\
         a1.sources.r1.bind = 127.0.0.1\n\
         a1.sources.r1.port = {port}\n\
         a1.sources.r1.ack-every-event = false\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.interceptors = lvl\n\
         a1.sources.r1.interceptors.lvl.type = wasm\n\
         a1.sources.r1.interceptors.lvl.path = {}\n\
         a1.channels.c1.type = memory\n\
         a1.sinks.k1.type = file_roll\n\
         a1.sinks.k1.sink.directory = {}\n\
         a1.sinks.k1.channel = c1\n",
        wasm.display(),
        out.display()
    );
    let agent = Sluice::start(dir.path(), "a1", &conf, &["--tap"])?;
    let addr = agent.metrics_addr.clone().context("metrics address")?;
    let tapper = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            tap(
                &addr,
                &["--component", "r1.lvl", "--limit", "2"],
                Duration::from_secs(30),
            )
        })
    };
    // The tap connects before the lines are sent.
    wait_for("the tap to be connected", Duration::from_secs(10), || {
        (agent.counter("TAP.tap", "OpenConnectionCount").ok()? == 1).then_some(())
    })?;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))?;
    use std::io::Write as _;
    conn.write_all(b"INFO kept\nDEBUG dropped one\nWARN kept too\nTRACE dropped two\n")?;
    drop(conn);
    let (code, lines, err) = tapper
        .join()
        .map_err(|_| anyhow::anyhow!("tap thread panicked"))??;
    ensure!(code == Some(0), "exit {code:?}: {err}\n{lines:?}");
    let events = json_lines(&lines)?;
    let bodies: Vec<&str> = events.iter().filter_map(|e| e["body"].as_str()).collect();
    ensure!(
        bodies == ["DEBUG dropped one", "TRACE dropped two"]
            && events
                .iter()
                .all(|e| e["point"] == "verdict" && e["verdict"] == "dropped"),
        "{lines:?}"
    );
    wait_lines(&out, 2, Duration::from_secs(20))?;
    Ok(())
}

#[test]
fn top_shows_rates_in_a_terminal_and_quits_on_q() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = tapped_pipeline(dir.path(), &[])?;
    let addr = agent.metrics_addr.clone().context("metrics address")?;
    let session = format!("sluice-top-{}", std::process::id());
    let tmux = |args: &[&str]| -> Result<String> {
        run(
            Command::new("tmux").args(args),
            "tmux (apt-get install -y tmux)",
        )
    };
    let cmd = format!("{} top --addr {addr}", sluice_bin()?.display());
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "150",
        "-y",
        "40",
        &cmd,
    ])?;
    let result = (|| -> Result<()> {
        let screen = wait_for("top to show rates", Duration::from_secs(20), || {
            let s = tmux(&["capture-pane", "-p", "-t", &session]).ok()?;
            // The source row with a rate (not the first frame's "-").
            let row = s.lines().find(|l| l.trim_start().starts_with("r1 "))?;
            let rate = row.split_whitespace().nth(1)?;
            (rate != "-" && rate != "0").then_some(s)
        })?;
        for want in [
            "sluice top",
            "SOURCES",
            "CHANNELS",
            "SINKS",
            "c1",
            "k1",
            "fill",
        ] {
            ensure!(screen.contains(want), "{want} missing:\n{screen}");
        }
        tmux(&["send-keys", "-t", &session, "q"])?;
        wait_for("top to quit on q", Duration::from_secs(10), || {
            Command::new("tmux")
                .args(["has-session", "-t", &session])
                .stderr(Stdio::null())
                .status()
                .ok()
                .filter(|s| !s.success())
        })?;
        Ok(())
    })();
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .stderr(Stdio::null())
        .status();
    result
}

fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `systemd-analyze verify` of the unit's `a1` instance in `root` (with the host's own units
/// beside it, which the unit's dependencies name): stderr must be empty.
fn verify_unit(root: &Path) -> Result<String> {
    let units = root.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units)?;
    for e in std::fs::read_dir("/usr/lib/systemd/system").context("the host's systemd units")? {
        let e = e?;
        let to = units.join(e.file_name());
        if !to.exists() && e.file_type()?.is_file() {
            std::fs::copy(e.path(), to)?;
        }
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("sluice@a1.service")
        .stdin(Stdio::null())
        .output()
        .context("cannot run systemd-analyze: apt-get install -y systemd")?;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("systemd-analyze verify failed ({}): {err}", out.status);
    }
    Ok(err)
}

#[test]
fn the_deb_installs_into_a_scratch_root_and_its_unit_verifies() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bin = sluice_bin()?;
    let deb = run(
        Command::new(workspace_root().join("packaging/build-deb"))
            .arg("--bin")
            .arg(&bin)
            .arg("--out")
            .arg(dir.path()),
        "packaging/build-deb",
    )?;
    let deb = deb.trim();
    let info = run(
        Command::new("dpkg-deb").args(["--info", deb]),
        "dpkg-deb --info",
    )?;
    ensure!(
        info.contains("Package: sluice") && info.contains("conffiles"),
        "{info}"
    );
    let list = run(
        Command::new("dpkg-deb").args(["--contents", deb]),
        "dpkg-deb --contents",
    )?;
    for f in [
        "./usr/bin/sluice",
        "./lib/systemd/system/sluice@.service",
        "./etc/sluice/a1.conf",
        "./usr/lib/sysusers.d/sluice.conf",
        "./usr/share/doc/sluice/README.md",
        "./usr/share/doc/sluice/docs/configuration.md",
    ] {
        ensure!(list.contains(f), "{f} missing from the package:\n{list}");
    }
    let root = dir.path().join("root");
    run(
        Command::new("dpkg-deb").args(["-x", deb]).arg(&root),
        "dpkg-deb -x",
    )?;
    let installed = root.join("usr/bin/sluice");
    let version = run(
        Command::new(&installed).arg("--version"),
        "the installed sluice",
    )?;
    ensure!(version.starts_with("sluice "), "{version}");
    let conf = root.join("etc/sluice/a1.conf");
    run(
        Command::new(&installed)
            .args(["check", "-n", "a1", "-f"])
            .arg(&conf),
        "sluice check of the packaged default config",
    )?;

    // The packaged default config, moved from /var/lib/sluice/a1 into the scratch root, run by
    // the installed binary: a line appended to a tailed file arrives in the output.
    let state = root.join("var/lib/sluice/a1");
    std::fs::create_dir_all(state.join("in"))?;
    let text =
        std::fs::read_to_string(&conf)?.replace("/var/lib/sluice/a1", &state.display().to_string());
    let moved = dir.path().join("a1.conf");
    std::fs::write(&moved, text)?;
    let log = std::fs::File::create(dir.path().join("agent.log"))?;
    let mut child = Command::new(&installed)
        .args(["agent", "-n", "a1", "-f"])
        .arg(&moved)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let result = (|| -> Result<()> {
        std::thread::sleep(Duration::from_millis(500));
        std::fs::write(state.join("in/app.log"), "installed and running\n")?;
        let lines = wait_lines(&state.join("out"), 1, Duration::from_secs(30))?;
        ensure!(lines == ["installed and running"], "{lines:?}");
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
        bail!("{e:#}\nagent log:\n{log}");
    }

    let warnings = verify_unit(&root)?;
    ensure!(
        warnings.trim().is_empty(),
        "systemd-analyze verify warned:\n{warnings}"
    );
    // The check is real: a unit with a misspelt key is reported.
    let unit = root.join("lib/systemd/system/sluice@.service");
    let good = std::fs::read_to_string(&unit)?;
    std::fs::write(&unit, good.replace("RestartSec=5", "RestartSecs=5"))?;
    let warnings = verify_unit(&root)?;
    ensure!(
        warnings.contains("RestartSecs"),
        "a misspelt key was not reported: {warnings}"
    );
    Ok(())
}
