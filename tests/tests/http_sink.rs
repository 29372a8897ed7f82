//! The `http` sink on the real binary against a real HTTP server (Python's http.server,
//! `tests/peers/http_peer.py`) that fails on command: commit on 2xx, rollback and retry on
//! 5xx (nothing lost), no rollback for 4xx when configured (the event dropped and counted).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use sluice_integration::{Sluice, wait_for, workspace_root};

struct Peer {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Peer {
    fn start(dir: &Path) -> Result<Self> {
        let script = workspace_root().join("tests/peers/http_peer.py");
        let child = Command::new("python3")
            .arg(&script)
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("python3 not found: install python3 (apt-get install -y python3)")?;
        let port_file = dir.join("port");
        let port = wait_for("the HTTP peer's port", Duration::from_secs(20), || {
            std::fs::read_to_string(&port_file)
                .ok()?
                .trim()
                .parse()
                .ok()
        })?;
        Ok(Self {
            child,
            dir: dir.to_path_buf(),
            port,
        })
    }

    fn set_status(&self, code: u16) -> Result<()> {
        let out = Command::new("curl")
            .args(["-s", "-S", "--max-time", "10", "--data-binary"])
            .arg(code.to_string())
            .arg(format!("http://127.0.0.1:{}/_control", self.port))
            .output()
            .context("curl not found: install curl")?;
        ensure!(out.status.success(), "control request failed");
        Ok(())
    }

    fn read(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn commits_on_2xx_retries_5xx_and_drops_configured_4xx() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let peer_dir = dir.path().join("peer");
    std::fs::create_dir_all(&peer_dir)?;
    let peer = Peer::start(&peer_dir)?;
    // The server fails everything at first.
    peer.set_status(503)?;
    let input = dir.path().join("input.sh");
    let mut script = String::from("#!/bin/sh\n");
    for i in 1..=100 {
        if i % 10 == 0 {
            script.push_str(&format!("echo reject-{i}\n"));
        } else {
            script.push_str(&format!("echo e{i}\n"));
        }
    }
    std::fs::write(&input, script)?;
    let conf = format!(
        "\
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = exec
a1.sources.r1.command = sh {}
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = 1000
a1.sinks.k1.type = http
a1.sinks.k1.channel = c1
a1.sinks.k1.endpoint = http://127.0.0.1:{}/
a1.sinks.k1.contentTypeHeader = application/x-test
a1.sinks.k1.connectTimeout = 2000
a1.sinks.k1.requestTimeout = 2000
a1.sinks.k1.defaultBackoff = true
a1.sinks.k1.defaultRollback = true
a1.sinks.k1.defaultIncrementMetrics = false
a1.sinks.k1.backoff.4XX = false
a1.sinks.k1.rollback.4XX = false
a1.sinks.k1.incrementMetrics.4XX = true
a1.sinks.k1.backoff.200 = false
a1.sinks.k1.rollback.200 = false
a1.sinks.k1.incrementMetrics.200 = true
",
        input.display(),
        peer.port
    );
    let s = Sluice::start(dir.path(), "sink", &conf, &[])?;
    // The sink keeps retrying the first event while the server answers 503.
    wait_for("retries against 503", Duration::from_secs(30), || {
        (peer
            .read("seen")
            .iter()
            .filter(|l| l.starts_with("503 "))
            .count()
            >= 2)
            .then_some(())
    })
    .with_context(|| s.log_text())?;
    ensure!(peer.read("accepted").is_empty());
    peer.set_status(200)?;
    let want: Vec<String> = (1..=100)
        .filter(|i| i % 10 != 0)
        .map(|i| format!("e{i}"))
        .collect();
    wait_for("every event accepted", Duration::from_secs(60), || {
        (peer.read("accepted").len() >= want.len()).then_some(())
    })
    .with_context(|| format!("accepted {:?}\n{}", peer.read("accepted"), s.log_text()))?;
    std::thread::sleep(Duration::from_millis(500));
    let accepted = peer.read("accepted");
    // Exactly once each, in order: a rolled-back event was never accepted by the server.
    ensure!(accepted == want, "accepted {accepted:?}");
    let seen = peer.read("seen");
    ensure!(
        seen.iter()
            .all(|l| l.split(' ').nth(1) == Some("application/x-test")),
        "content types: {seen:?}"
    );
    let rejected = seen.iter().filter(|l| l.starts_with("400 ")).count();
    ensure!(rejected == 10, "rejected {rejected}: {seen:?}");
    wait_for("drop counter", Duration::from_secs(10), || {
        (s.counter("SINK.k1", "HttpEventDropCount").ok()? == 10).then_some(())
    })?;
    ensure!(s.counter("SINK.k1", "EventDrainSuccessCount")? == 100);
    ensure!(s.counter("CHANNEL.c1", "ChannelSize")? == 0);
    Ok(())
}

#[test]
fn unreachable_endpoint_keeps_events_and_check_validates_codes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = sluice_integration::free_port()?;
    let conf = format!(
        "\
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = exec
a1.sources.r1.command = echo one
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.sinks.k1.type = http
a1.sinks.k1.channel = c1
a1.sinks.k1.endpoint = http://127.0.0.1:{port}/
a1.sinks.k1.connectTimeout = 500
"
    );
    let s = Sluice::start(dir.path(), "down", &conf, &[])?;
    wait_for("failed deliveries", Duration::from_secs(30), || {
        (s.counter("SINK.k1", "EventWriteFail").ok()? >= 2).then_some(())
    })
    .with_context(|| s.log_text())?;
    ensure!(s.counter("CHANNEL.c1", "ChannelSize")? == 1);
    ensure!(
        s.log_text()
            .contains(&format!("POST http://127.0.0.1:{port}/"))
    );
    // Bad status-code keys are refused by `sluice check`, naming the key.
    let bad = dir.path().join("bad.conf");
    std::fs::write(
        &bad,
        conf.replace(
            "a1.sinks.k1.connectTimeout = 500",
            "a1.sinks.k1.rollback.6XX = false",
        ),
    )?;
    let (code, _, err) =
        sluice_integration::run_sluice(&["check", "-n", "a1", "-f", &bad.display().to_string()])?;
    ensure!(code != 0 && err.contains("rollback.6XX"), "{err}");
    Ok(())
}
