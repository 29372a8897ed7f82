//! A real Apache Flume 1.11.0 agent as a child process: the interop peer and the benchmark
//! baseline.
//!
//! Flume comes from Maven Central: [`ensure_flume`] writes a pom naming
//! `org.apache.flume:flume-ng-node:1.11.0` (plus the log4j2 jars that Flume's binary
//! distribution ships, which the node pom only has in test scope) into
//! `~/.cache/sluice-tests/flume-1.11.0/` and lets `mvn dependency:copy-dependencies` fill
//! `lib/`. A `lib/.complete` manifest, written last, makes the step idempotent; the download
//! goes to a private directory renamed into place, so concurrent test binaries never see a
//! half-filled `lib/`.
//!
//! [`Flume::start`] runs `org.apache.flume.node.Application` with HTTP monitoring on a port
//! that was free on 127.0.0.1 (Flume 1.11's Jetty has no bind-address setting and listens on
//! every interface; the fixture only talks to it over loopback) and waits for `/metrics` to
//! answer. Its log (log4j2) goes to
//! `<dir>/flume-<agent>.log`, the JVM's own stdout/stderr to `<dir>/flume-<agent>.out`.
//!
//! Flume 1.11 quirks worth knowing when comparing metrics: `null` and `logger` sinks and the
//! `StressSource` register no counters, so they are missing from Flume's JSON; the channel's
//! `EventTakeSuccessCount` counts what such a sink drained.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::{free_port, http, parse_counter, wait_for};

/// The Flume release the fixture runs.
pub const FLUME_VERSION: &str = "1.11.0";
/// log4j2 as in Flume 1.11.0's binary distribution (`log4j.version` in flume-parent).
const LOG4J_VERSION: &str = "2.18.0";

/// `~/.cache/sluice-tests/flume-1.11.0` (or `$SLUICE_FLUME_HOME`).
pub fn flume_home() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SLUICE_FLUME_HOME") {
        return Ok(PathBuf::from(p));
    }
    let cache = match std::env::var_os("XDG_CACHE_HOME") {
        Some(c) => PathBuf::from(c),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    Ok(cache
        .join("sluice-tests")
        .join(format!("flume-{FLUME_VERSION}")))
}

/// Makes sure Flume's jars (flume-ng-node plus the log4j2 backend it only has in test scope)
/// are in `flume_home()/lib`, fetching them with `mvn` if not, and that `java` runs. Returns the
/// `lib/` directory.
pub fn ensure_flume() -> Result<PathBuf> {
    let mut deps = vec![("org.apache.flume", "flume-ng-node", FLUME_VERSION)];
    for a in [
        "log4j-api",
        "log4j-core",
        "log4j-slf4j-impl",
        "log4j-1.2-api",
        "log4j-jcl",
    ] {
        deps.push(("org.apache.logging.log4j", a, LOG4J_VERSION));
    }
    crate::maven::ensure_classpath(
        &flume_home()?,
        &crate::maven::pom("flume-runtime", &deps),
        "flume-ng-node-",
        "the Flume fixture",
    )
}

/// Flume plus its Kafka source, sink and channel (`flume-kafka-source`, `flume-ng-kafka-sink`,
/// `flume-kafka-channel` and the Kafka client they depend on), resolved together in
/// `~/.cache/sluice-tests/flume-1.11.0-kafka-all/lib` so the classpath has one version of
/// every jar.
pub fn ensure_flume_kafka() -> Result<PathBuf> {
    let mut deps = vec![
        ("org.apache.flume", "flume-ng-node", FLUME_VERSION),
        (
            "org.apache.flume.flume-ng-sources",
            "flume-kafka-source",
            FLUME_VERSION,
        ),
        (
            "org.apache.flume.flume-ng-sinks",
            "flume-ng-kafka-sink",
            FLUME_VERSION,
        ),
        (
            "org.apache.flume.flume-ng-channels",
            "flume-kafka-channel",
            FLUME_VERSION,
        ),
    ];
    for a in [
        "log4j-api",
        "log4j-core",
        "log4j-slf4j-impl",
        "log4j-1.2-api",
        "log4j-jcl",
    ] {
        deps.push(("org.apache.logging.log4j", a, LOG4J_VERSION));
    }
    let home = crate::maven::cache_dir(&format!("flume-{FLUME_VERSION}-kafka-all"))?;
    crate::maven::ensure_classpath(
        &home,
        &crate::maven::pom("flume-kafka-runtime", &deps),
        "flume-kafka-channel-",
        &format!("Apache Flume {FLUME_VERSION} with its Kafka source, sink and channel"),
    )
}

/// How to run Flume; [`Default`] is what the tests use.
#[derive(Clone, Debug)]
pub struct FlumeOptions {
    /// log4j2 root level (`INFO`, `WARN`, ...).
    pub log_level: String,
    /// `-Xmx` value.
    pub max_heap: String,
    /// Extra JVM arguments, before the main class.
    pub jvm_args: Vec<String>,
    /// Jars added after Flume's own (e.g. Hadoop's client for the HDFS sink).
    pub extra_classpath: Vec<PathBuf>,
    /// A `lib/` directory to run instead of [`ensure_flume`]'s (e.g. [`ensure_flume_kafka`]).
    pub lib: Option<PathBuf>,
}

impl Default for FlumeOptions {
    fn default() -> Self {
        Self {
            log_level: "INFO".into(),
            max_heap: "512m".into(),
            jvm_args: Vec::new(),
            extra_classpath: Vec::new(),
            lib: None,
        }
    }
}

/// `lib/*` then the extra jars, `:`-separated.
fn classpath(lib: &Path, extra: &[PathBuf]) -> std::ffi::OsString {
    let mut cp = lib.join("*").into_os_string();
    for jar in extra {
        cp.push(":");
        cp.push(jar);
    }
    cp
}

fn log4j2_xml(log_file: &Path, level: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="file" fileName="{}" append="true">
      <PatternLayout pattern="%d{{ISO8601}} %-5p [%t] %c{{1}}: %m%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="{level}"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"#,
        log_file.display()
    )
}

/// How a start attempt ended.
enum Start {
    Up,
    /// Jetty could not bind the monitoring port (taken since [`free_port`] released it).
    PortTaken,
    Exited(std::process::ExitStatus),
}

/// A running Flume agent, killed on drop.
pub struct Flume {
    pub child: Child,
    /// log4j2 output.
    pub log: PathBuf,
    /// The JVM's stdout and stderr.
    pub out: PathBuf,
    pub conf: PathBuf,
    /// `127.0.0.1:<port>` of Flume's HTTP monitoring.
    pub metrics_addr: String,
}

impl Flume {
    /// Writes `conf` to `dir/flume-<agent>.conf` and runs agent `agent` on it (fetching Flume
    /// first if needed); returns once `/metrics` answers.
    pub fn start(dir: &Path, conf: &str, agent: &str) -> Result<Self> {
        Self::start_with(dir, conf, agent, &FlumeOptions::default())
    }

    pub fn start_with(dir: &Path, conf: &str, agent: &str, opts: &FlumeOptions) -> Result<Self> {
        let lib = match &opts.lib {
            Some(l) => l.clone(),
            None => ensure_flume()?,
        };
        let conf_path = dir.join(format!("flume-{agent}.conf"));
        std::fs::write(&conf_path, conf)?;
        let log = dir.join(format!("flume-{agent}.log"));
        let log4j = dir.join(format!("flume-{agent}-log4j2.xml"));
        std::fs::write(&log4j, log4j2_xml(&log, &opts.log_level))?;
        let out = dir.join(format!("flume-{agent}.out"));
        // The free port is released before Flume binds it, so another process may take it in
        // between; a bind failure is retried with a new port.
        for _ in 0..3 {
            let port = free_port()?;
            // A fresh log per attempt: the previous attempt's Jetty error must not count.
            let _ = std::fs::remove_file(&log);
            let out_file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&out)?;
            let child = Command::new("java")
                .arg(format!("-Xmx{}", opts.max_heap))
                .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
                .arg("-Dflume.monitoring.type=http")
                .arg(format!("-Dflume.monitoring.port={port}"))
                .args(&opts.jvm_args)
                .arg("-cp")
                .arg(classpath(&lib, &opts.extra_classpath))
                .arg("org.apache.flume.node.Application")
                .args(["-n", agent, "-f"])
                .arg(&conf_path)
                .arg("--no-reload-conf")
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(out_file.try_clone()?)
                .stderr(out_file)
                .spawn()
                .context("cannot start java")?;
            let mut flume = Self {
                child,
                log: log.clone(),
                out: out.clone(),
                conf: conf_path.clone(),
                metrics_addr: format!("127.0.0.1:{port}"),
            };
            match flume.wait_ready()? {
                Start::Up => return Ok(flume),
                Start::PortTaken => continue,
                Start::Exited(status) => bail!(
                    "Flume exited ({status}) before its metrics answered; output:\n{}\nlog:\n{}",
                    flume.out_text(),
                    flume.log_tail(60)
                ),
            }
        }
        let last_log = std::fs::read_to_string(&log).unwrap_or_default();
        bail!("Flume's HTTP monitoring could not bind a free port in 3 tries; log:\n{last_log}")
    }

    /// Waits for `/metrics` to answer. Flume keeps running when Jetty cannot bind its port
    /// (it only logs "Error starting Jetty"), so that log line counts as a failed start.
    fn wait_ready(&mut self) -> Result<Start> {
        let addr = self.metrics_addr.clone();
        let log = self.log.clone();
        let child = &mut self.child;
        let state = wait_for(
            "Flume's /metrics to answer",
            Duration::from_secs(60),
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some(Start::Exited(status));
                }
                if http::get(&addr, "/metrics")
                    .is_ok_and(|b| serde_json::from_str::<serde_json::Value>(&b).is_ok())
                {
                    return Some(Start::Up);
                }
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                log.contains("Error starting Jetty")
                    .then_some(Start::PortTaken)
            },
        );
        match state {
            Ok(s) => Ok(s),
            Err(e) => bail!(
                "{e}; output:\n{}\nlog:\n{}",
                self.out_text(),
                self.log_tail(60)
            ),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log4j2 log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn out_text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Flume's JSON metrics: `{"CHANNEL.c1": {"ChannelSize": "0", ...}, ...}`.
    pub fn metrics(&self) -> Result<serde_json::Value> {
        let body = http::get(&self.metrics_addr, "/metrics")?;
        serde_json::from_str(&body).with_context(|| format!("Flume metrics are not JSON: {body}"))
    }

    /// A counter as a number (Flume writes them as strings), e.g. `("CHANNEL.c1", "ChannelSize")`.
    pub fn counter(&self, component: &str, name: &str) -> Result<u64> {
        parse_counter(&self.metrics()?, component, name)
    }

    /// Kills the JVM (SIGKILL) and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            self.child.kill()?;
        }
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Flume {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
