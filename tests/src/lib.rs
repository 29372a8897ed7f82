//! Fixtures for integration tests: run the real `sluice` binary (and, in later suites, real
//! peers) as child processes on loopback, with their own temporary directories.

pub mod flume;
pub mod flume_client;
pub mod flume_taildir;
pub mod guests;
pub mod hdfs;
pub mod http;
pub mod kafka;
pub mod maven;
pub mod tls;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The `sluice` binary of this build profile: `$SLUICE_BIN`, else `target/<profile>/sluice`
/// next to the running test executable.
pub fn sluice_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("SLUICE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test-binary>, or target/<profile>/<bench-binary>
    let exe_dir = exe
        .parent()
        .context("cannot locate the directory of the running executable")?;
    let profile_dir = if exe_dir.join("sluice").is_file() {
        exe_dir
    } else {
        exe_dir
            .parent()
            .context("cannot locate the target directory from the test executable")?
    };
    let bin = profile_dir.join("sluice");
    if !bin.exists() {
        bail!(
            "{} does not exist; build it first with `cargo build --workspace --bins` \
             (the README test command does this)",
            bin.display()
        );
    }
    if let (Ok(built), Some(src)) = (
        bin.metadata().and_then(|m| m.modified()),
        newest_source(&bin),
    ) && src > built
    {
        bail!(
            "{} is older than its sources; rebuild it with \
             `cargo build --workspace --bins` (the README test command does this)",
            bin.display()
        );
    }
    Ok(bin)
}

/// The newest modification time of the source files the binary was built from, as listed in
/// cargo's dep-info file next to it (`sluice.d`).
fn newest_source(bin: &Path) -> Option<std::time::SystemTime> {
    let dep_info = std::fs::read_to_string(bin.with_extension("d")).ok()?;
    let (_, deps) = dep_info.lines().next()?.split_once(": ")?;
    deps.split_whitespace()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
}

/// Polls `f` until it returns `Some`, or fails after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `component`/`name` of Flume-JSON metrics as a number (Flume writes counters as strings).
pub fn parse_counter(metrics: &serde_json::Value, component: &str, name: &str) -> Result<u64> {
    metrics[component][name]
        .as_str()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no counter {component}/{name} in {metrics}"))
}

/// A TCP port that was free on 127.0.0.1 a moment ago (bound, then released), for peers that
/// only take a port number.
///
/// It comes from below the kernel's ephemeral range (`ip_local_port_range`): the suites share
/// one test process, and the client sockets of a concurrent test (hundreds at once in the Avro
/// suite) take ephemeral ports, so one of them could take a port handed out from that range
/// before its peer binds it. The ports of one process come in sequence from an offset of its
/// pid, so two tests never get the same one; port 0 is the fallback.
pub fn free_port() -> Result<u16> {
    const FLOOR: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    if let Some(span) = ephemeral_low.checked_sub(FLOOR).filter(|s| *s >= 1000) {
        let start = std::process::id() % span;
        for _ in 0..1000 {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = u16::try_from(FLOOR + (start + n) % span).unwrap_or(0);
            if port != 0 && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Peak resident set size of process `pid` in KiB (`VmHWM` in /proc/<pid>/status).
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmHWM in {path}"))
}

/// Current resident set size of process `pid` in KiB (`VmRSS` in /proc/<pid>/status).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))
}

/// Threads of process `pid` (entries of /proc/<pid>/task).
pub fn thread_count(pid: u32) -> Result<usize> {
    let path = format!("/proc/{pid}/task");
    Ok(std::fs::read_dir(&path)
        .with_context(|| format!("cannot read {path}"))?
        .count())
}

/// Longest wait for an agent's components to start (guests compile in a debug build here).
const STARTUP: Duration = Duration::from_secs(180);

/// A running `sluice agent`, killed on drop.
pub struct Sluice {
    pub child: Child,
    pub log: PathBuf,
    pub conf: PathBuf,
    pub metrics_addr: Option<String>,
}

impl Sluice {
    /// Writes `conf` to `dir/<name>.conf` and starts `sluice agent -n a1` on it with metrics on
    /// an ephemeral loopback port. `extra` are additional CLI arguments.
    pub fn start(dir: &Path, name: &str, conf: &str, extra: &[&str]) -> Result<Self> {
        let conf_path = dir.join(format!("{name}.conf"));
        std::fs::write(&conf_path, conf)?;
        Self::start_file(dir, name, &conf_path, extra)
    }

    pub fn start_file(dir: &Path, name: &str, conf_path: &Path, extra: &[&str]) -> Result<Self> {
        let conf = conf_path.display().to_string();
        let mut args = vec!["-f", conf.as_str()];
        args.extend_from_slice(extra);
        let mut s = Self::start_args(dir, name, &args)?;
        s.conf = conf_path.to_path_buf();
        Ok(s)
    }

    /// Starts `sluice agent -n a1 <args>` (the config sources are among `args`) with metrics
    /// on an ephemeral loopback port; `conf` is left empty.
    pub fn start_args(dir: &Path, name: &str, args: &[&str]) -> Result<Self> {
        Self::start_args_env(dir, name, args, &[])
    }

    /// [`Self::start`] with `env` added to the agent's environment.
    pub fn start_env(dir: &Path, name: &str, conf: &str, env: &[(&str, &str)]) -> Result<Self> {
        let conf_path = dir.join(format!("{name}.conf"));
        std::fs::write(&conf_path, conf)?;
        let conf = conf_path.display().to_string();
        let mut s = Self::start_args_env(dir, name, &["-f", conf.as_str()], env)?;
        s.conf = conf_path;
        Ok(s)
    }

    /// [`Self::start_args`] with `env` added to the agent's environment.
    pub fn start_args_env(
        dir: &Path,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let log = dir.join(format!("{name}.log"));
        // A restart appends to the same log: only lines after what is there now count.
        let before = std::fs::read_to_string(&log).map_or(0, |t| t.len());
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = Command::new(sluice_bin()?)
            .args(["agent", "-n", "a1"])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("cannot start sluice")?;
        let mut s = Self {
            child,
            log,
            conf: PathBuf::new(),
            metrics_addr: None,
        };
        let log_path = s.log.clone();
        let new_text = move || -> Option<String> {
            let text = std::fs::read_to_string(&log_path).ok()?;
            Some(text.get(before..).unwrap_or_default().to_string())
        };
        let child = &mut s.child;
        let addr = wait_for(
            "the metrics address in the sluice log",
            Duration::from_secs(20),
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some(Err(format!("sluice exited early with {status}")));
                }
                let text = new_text()?;
                let line = text
                    .lines()
                    .rev()
                    .find(|l| l.contains("Metrics listening on http://"))?;
                let rest = line.split("http://").nth(1)?;
                Some(Ok(rest.split("/metrics").next()?.to_string()))
            },
        );
        match addr {
            Ok(Ok(a)) => s.metrics_addr = Some(a),
            Ok(Err(e)) => bail!("{e}; log:\n{}", s.log_text()),
            Err(e) => bail!("{e}; log:\n{}", s.log_text()),
        }
        // The metrics server starts before the components: wait until the sources listen (or
        // the agent gave up, which the test then sees), so a client never races the start.
        let child = &mut s.child;
        let _ = wait_for("the agent's start", STARTUP, || {
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            (exited || new_text()?.contains("Agent started.")).then_some(())
        });
        Ok(s)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Flume-JSON metrics.
    pub fn metrics(&self) -> Result<serde_json::Value> {
        let addr = self
            .metrics_addr
            .as_deref()
            .context("metrics not enabled")?;
        let body = http::get(addr, "/metrics")?;
        Ok(serde_json::from_str(&body)?)
    }

    /// A counter as a number (Flume writes them as strings).
    pub fn counter(&self, component: &str, name: &str) -> Result<u64> {
        parse_counter(&self.metrics()?, component, name)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` (e.g. libc's SIGTERM = 15) via kill(1).
    pub fn signal(&self, sig: &str) -> Result<()> {
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()?;
        if !st.success() {
            bail!("kill -{sig} failed");
        }
        Ok(())
    }

    /// Waits for exit; returns the exit code (None if killed by a signal).
    pub fn wait(&mut self, timeout: Duration) -> Result<Option<i32>> {
        let child = &mut self.child;
        let status = wait_for("sluice to exit", timeout, || {
            child.try_wait().ok().flatten()
        })?;
        Ok(status.code())
    }

    pub fn kill9(&mut self) -> Result<()> {
        self.signal("KILL")?;
        self.wait(Duration::from_secs(10))?;
        Ok(())
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `sluice send -H 127.0.0.1 -p <port> -F <file> <extra>` to completion: (exit code,
/// stdout, stderr).
pub fn sluice_send(port: u16, file: &Path, extra: &[&str]) -> Result<(i32, String, String)> {
    let port = port.to_string();
    let file = file.display().to_string();
    let mut args = vec!["send", "-H", "127.0.0.1", "-p", &port, "-F", &file];
    args.extend_from_slice(extra);
    run_sluice(&args)
}

/// Runs `sluice <args>` to completion: (exit code, stdout, stderr).
pub fn run_sluice(args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(sluice_bin()?)
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Waits until `dir` holds at least `n` lines (see [`read_lines`]); returns them.
pub fn wait_lines(dir: &Path, n: usize, timeout: Duration) -> Result<Vec<String>> {
    wait_for(&format!("{n} lines in {}", dir.display()), timeout, || {
        let v = read_lines(dir);
        (v.len() >= n).then_some(v)
    })
}

/// Every line of every file in `dir` (sorted by file name), for file_roll output.
pub fn read_lines(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut lines = Vec::new();
    for f in files {
        let mut s = String::new();
        if std::fs::File::open(&f)
            .and_then(|mut h| h.read_to_string(&mut s))
            .is_ok()
        {
            lines.extend(s.lines().map(str::to_string));
        }
    }
    lines
}
