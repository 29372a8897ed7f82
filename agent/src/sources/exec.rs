//! Flume's `exec` source (`org.apache.flume.source.ExecSource`): runs a command and turns each
//! line of its standard output into an event.
//!
//! **No delivery guarantee**, as Flume documents: lines the command printed before a crash of
//! the agent, or while the command is being restarted, are lost, and the command cannot be
//! asked to resend. Use `TAILDIR` (position file) or `spooldir` for files.
//!
//! - `command` is split on whitespace and run directly, or, with `shell` (e.g. `/bin/sh -c`),
//!   passed as one argument to the shell, so pipes and globs work.
//! - Lines are batched: a batch goes to the channel at `batchSize` lines or `batchTimeout` ms
//!   after its first line. A batch the channel refuses is retried (with a growing pause, up to
//!   1 s) until it fits, so a full channel slows the command down (its output pipe fills)
//!   instead of dropping lines; Flume drops the batch and restarts the command.
//! - `restart` (default false): when the command exits it is started again after
//!   `restartThrottle` ms. `logStdErr` logs the command's standard error at INFO.
//! - `charset`: only UTF-8 (Flume's default) and its aliases; lines are kept as bytes, so any
//!   ASCII-compatible encoding passes through unchanged.
//! - A line longer than 16 MiB is cut there, with a warning; the rest becomes the next line.
//! - Stopping the source (agent stop or reload) kills the command. If the agent itself is
//!   killed, the command gets SIGPIPE at its next write, as under Flume.

use std::io::{self, BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::{ConfigError, MAX_BATCH, MAX_MILLIS, Props};
use crate::event::{Event, Headers};
use crate::pipeline::{
    BoxError, ChannelProcessor, EventDrivenSource, SourceContext, SourceError, SourceInstance,
    SourceSpec,
};

const MAX_LINE: usize = 16 << 20;
const POLL: Duration = Duration::from_millis(100);

/// `type = exec`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExecConfig {
    /// The program and its arguments.
    pub(crate) argv: Vec<String>,
    /// `command` as written (for logs).
    pub(crate) command: String,
    /// `restart` (default false).
    pub(crate) restart: bool,
    /// `restartThrottle` (default 10000 ms).
    pub(crate) restart_throttle: Duration,
    /// `logStdErr` (default false).
    pub(crate) log_stderr: bool,
    /// `batchSize` (default 20).
    pub(crate) batch_size: usize,
    /// `batchTimeout` (default 3000 ms).
    pub(crate) batch_timeout: Duration,
}

impl ExecConfig {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
        let command = p.required("command")?;
        let argv: Vec<String> = match p.get("shell").filter(|s| !s.trim().is_empty()) {
            Some(shell) => shell
                .split_whitespace()
                .map(str::to_string)
                .chain(std::iter::once(command.clone()))
                .collect(),
            None => command.split_whitespace().map(str::to_string).collect(),
        };
        if argv.is_empty() {
            return Err(p.error("command", "is empty"));
        }
        let charset = p.string("charset", "UTF-8");
        if !matches!(
            charset.to_ascii_uppercase().as_str(),
            "UTF-8" | "UTF8" | "US-ASCII" | "ASCII"
        ) {
            return Err(p.error(
                "charset",
                format!("`{charset}`: sluice's exec source reads UTF-8 (or ASCII) output"),
            ));
        }
        Ok(Self {
            argv,
            command,
            restart: p.bool("restart", false)?,
            restart_throttle: p.millis("restartThrottle", 10_000, 0..=MAX_MILLIS)?,
            log_stderr: p.bool("logStdErr", false)?,
            batch_size: p.int("batchSize", 20, 1..=MAX_BATCH)?,
            batch_timeout: p.millis("batchTimeout", 3000, 1..=MAX_MILLIS)?,
        })
    }
}

impl SourceSpec for ExecConfig {
    fn build(&self, cx: &SourceContext) -> Result<SourceInstance, BoxError> {
        Ok(SourceInstance::Driven(Box::new(ExecSource {
            name: cx.cx.name.clone(),
            config: self.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        })))
    }
}

pub(crate) struct ExecSource {
    name: String,
    config: ExecConfig,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EventDrivenSource for ExecSource {
    fn start(&mut self, processor: Arc<ChannelProcessor>) -> Result<(), SourceError> {
        let name = self.name.clone();
        let config = self.config.clone();
        let stop = self.stop.clone();
        let h = std::thread::Builder::new()
            .name(format!("exec-{}", self.name))
            .spawn(move || run(&name, &config, &processor, &stop))
            .map_err(|e| SourceError::Failed {
                source_name: self.name.clone(),
                cause: Arc::new(e),
            })?;
        self.thread = Some(h);
        Ok(())
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

/// Runs the command (again, with `restart`) until stop.
fn run(name: &str, config: &ExecConfig, processor: &ChannelProcessor, stop: &AtomicBool) {
    loop {
        match spawn(config) {
            Ok(child) => {
                tracing::info!(source = %name, command = %config.command, pid = child.id(),
                    "Exec source: command started.");
                let status = pump(name, config, child, processor, stop);
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                tracing::info!(source = %name, command = %config.command, status = %status,
                    "Exec source: command exited.");
            }
            Err(e) => {
                tracing::error!(source = %name, command = %config.command, error = %e,
                    "Exec source: cannot run the command.");
            }
        }
        if !config.restart {
            return;
        }
        let until = Instant::now() + config.restart_throttle;
        while Instant::now() < until {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
        }
    }
}

fn spawn(config: &ExecConfig) -> io::Result<Child> {
    let (program, args) = config
        .argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if config.log_stderr {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .spawn()
}

/// Reads the child's output into batches until it exits or stop; returns how it ended.
fn pump(
    name: &str,
    config: &ExecConfig,
    mut child: Child,
    processor: &ChannelProcessor,
    stop: &AtomicBool,
) -> String {
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        return "no stdout".into();
    };
    // Lines come through a bounded queue, so a full channel stops the reader and the pipe
    // fills: the command waits instead of lines being dropped.
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(config.batch_size.clamp(16, 4096));
    let reader_name = name.to_string();
    let reader = std::thread::Builder::new()
        .name(format!("exec-{name}-out"))
        .spawn(move || read_lines(&reader_name, stdout, &tx));
    let stderr = child.stderr.take().and_then(|err| {
        let n = name.to_string();
        std::thread::Builder::new()
            .name(format!("exec-{name}-err"))
            .spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    tracing::info!(source = %n, "Exec source stderr: {line}");
                }
            })
            .ok()
    });
    let mut batch: Vec<Event> = Vec::with_capacity(config.batch_size.min(4096));
    let mut first_at: Option<Instant> = None;
    let mut ended = false;
    while !stop.load(Ordering::SeqCst) {
        let wait = first_at.map_or(POLL, |t| {
            config.batch_timeout.saturating_sub(t.elapsed()).min(POLL)
        });
        match rx.recv_timeout(wait) {
            Ok(line) => {
                first_at.get_or_insert_with(Instant::now);
                batch.push(Event::with_headers(Headers::new(), Bytes::from(line)));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => ended = true,
        }
        let due = batch.len() >= config.batch_size
            || first_at.is_some_and(|t| t.elapsed() >= config.batch_timeout)
            || (ended && !batch.is_empty());
        if due && !deliver(name, processor, &mut batch, stop) {
            break;
        }
        if due {
            first_at = None;
        }
        if ended {
            break;
        }
    }
    let _ = child.kill();
    let status = child
        .wait()
        .map_or_else(|e| format!("unknown ({e})"), |s| s.to_string());
    drop(rx);
    if let Ok(r) = reader {
        let _ = r.join();
    }
    if let Some(e) = stderr {
        let _ = e.join();
    }
    status
}

/// Hands `batch` to the channel, retrying while it is refused; false when stopped first.
fn deliver(
    name: &str,
    processor: &ChannelProcessor,
    batch: &mut Vec<Event>,
    stop: &AtomicBool,
) -> bool {
    let mut pause = Duration::from_millis(10);
    let mut logged = false;
    loop {
        match processor.process_batch(batch.clone()) {
            Ok(()) => {
                batch.clear();
                return true;
            }
            Err(e) => {
                if !logged {
                    logged = true;
                    tracing::warn!(source = %name, events = batch.len(), error = %e,
                        "Exec source: the channel refused a batch; retrying (the command waits).");
                }
                let until = Instant::now() + pause;
                while Instant::now() < until {
                    if stop.load(Ordering::SeqCst) {
                        return false;
                    }
                    std::thread::sleep(POLL.min(pause));
                }
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

fn read_lines(name: &str, stdout: std::process::ChildStdout, tx: &mpsc::SyncSender<Vec<u8>>) {
    let mut r = BufReader::with_capacity(64 << 10, stdout);
    loop {
        let mut line = Vec::new();
        let mut cut = false;
        let mut terminated = false;
        loop {
            let buf = match r.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => &[],
            };
            if buf.is_empty() {
                break;
            }
            let room = MAX_LINE - line.len();
            match buf.iter().take(room).position(|b| *b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&buf[..i]);
                    r.consume(i + 1);
                    terminated = true;
                    break;
                }
                None if buf.len() >= room => {
                    line.extend_from_slice(&buf[..room]);
                    r.consume(room);
                    cut = true;
                    break;
                }
                None => {
                    let n = buf.len();
                    line.extend_from_slice(buf);
                    r.consume(n);
                }
            }
        }
        if cut {
            tracing::warn!(source = %name, "Exec source: a line longer than 16 MiB was cut.");
        }
        if line.is_empty() && !cut && !terminated {
            return;
        }
        if tx.send(line).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_shell_and_defaults() -> Result<(), ConfigError> {
        let c = ExecConfig::from_props(&Props::from_pairs(&[("command", "tail -F /var/log/x")]))?;
        assert_eq!(c.argv, ["tail", "-F", "/var/log/x"]);
        assert_eq!(
            (c.batch_size, c.batch_timeout.as_millis(), c.restart),
            (20, 3000, false)
        );
        let s = ExecConfig::from_props(&Props::from_pairs(&[
            ("command", "for i in /path/*.txt; do cat $i; done"),
            ("shell", "/bin/bash -c"),
        ]))?;
        assert_eq!(
            s.argv,
            ["/bin/bash", "-c", "for i in /path/*.txt; do cat $i; done"]
        );
        assert!(
            ExecConfig::from_props(&Props::from_pairs(&[
                ("command", "x"),
                ("charset", "UTF-16")
            ]))
            .is_err()
        );
        assert!(ExecConfig::from_props(&Props::from_pairs(&[])).is_err());
        Ok(())
    }
}
