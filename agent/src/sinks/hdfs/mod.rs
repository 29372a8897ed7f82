//! `hdfs`: Flume's HDFSEventSink on the pure-Rust `hdfs-native` client.
//!
//! ## Files
//! Events go to `<hdfs.path>/<hdfs.filePrefix>.<counter><hdfs.fileSuffix>[<codec extension>]`,
//! path and prefix escaped per event (see [`path`]). The counter starts at the sink's start
//! time in epoch ms and grows by one per file, as Flume's. While open, a file is named with
//! `hdfs.inUsePrefix` before and `hdfs.inUseSuffix` (`.tmp`) after the name.
//!
//! ## Invariants
//! - Each batch is encoded per file, written, and `hsync`ed (stronger than Flume's `hflush`:
//!   DataNodes persist it) before [`Sink::deliver`] returns `Ok`, so a committed take is on
//!   the DataNodes. Any failure returns `Err`: the take rolls back and the batch is delivered
//!   again into a new file (at-least-once; the failed file keeps what was synced before).
//! - A file whose write failed is never written again: it is handed to the closer, which
//!   closes it (or, when the close fails, recovers its lease through a separate client) and
//!   renames it to its final name, retrying every `hdfs.retryInterval` up to
//!   `hdfs.closeTries` times (0 = until it works).
//! - A roll (`hdfs.rollCount`, `hdfs.rollSize` body bytes, checked before each event like
//!   Flume; `hdfs.rollInterval` and `hdfs.idleTimeout`, checked before each batch and when
//!   the channel is idle; `hdfs.maxOpenFiles`, least recently written first) closes, then
//!   renames.
//! - At start the sink lists the literal directory part of `hdfs.path` recursively and
//!   finishes every in-use file of its prefix that a previous run left (lease recovery,
//!   rename): no file stays `.tmp` across restarts.
//! - Every HDFS call is bounded by `hdfs.callTimeout`; a call that times out counts as failed.
//!
//! The core is thread-based, `hdfs-native` is async: the sink owns a one-worker tokio runtime
//! (so the client's lease renewal and packet pipelines run between batches) and blocks on it.

pub mod config;
pub mod format;
pub mod path;
mod spec;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdfs_native::file::FileWriter;
use hdfs_native::{Client, ClientBuilder, HdfsError, WriteOptions};

use self::config::HdfsConfig;
use self::format::{FileEncoder, FormatError};
use self::path::{RenderError, TimeCache, TimeContext};
use crate::event::Event;
use crate::metrics::{SinkCounters, now_millis};
use crate::pipeline::{Sink, SinkError};

/// How long start-up waits for the lease recovery of one leftover file before leaving the
/// rest to the background closer.
const STARTUP_RECOVERY_WAIT: Duration = Duration::from_secs(10);
/// How often a started lease recovery is polled.
const RECOVERY_POLL: Duration = Duration::from_millis(500);

/// An open in-use file.
struct OpenFile {
    fs: String,
    in_use: String,
    target: String,
    writer: FileWriter,
    encoder: FileEncoder,
    events: u64,
    bytes: u64,
    /// Appended to the encoder in this batch, not yet written.
    dirty: bool,
    opened: Instant,
    last_write: Instant,
    last_use: u64,
}

/// A file on its way to its final name.
struct Closing {
    fs: String,
    in_use: String,
    target: String,
    /// The writer, until a close was tried.
    writer: Option<FileWriter>,
    /// The close failed: the lease has to be recovered first.
    recover: bool,
    tries: u32,
    next_attempt: Instant,
}

pub struct HdfsSink {
    name: String,
    config: HdfsConfig,
    counters: Arc<SinkCounters>,
    runtime: Option<tokio::runtime::Runtime>,
    /// Writing clients by file system URL (`""` = `fs.defaultFS`).
    clients: HashMap<String, Client>,
    /// Lease-recovery clients (a different lease holder than the writer) by URL.
    recovery_clients: HashMap<String, Client>,
    /// Open files by `<escaped path>/<escaped prefix>`.
    open: HashMap<String, OpenFile>,
    closing: Vec<Closing>,
    counter: u64,
    use_clock: u64,
    path_cache: TimeCache,
    prefix_cache: TimeCache,
}

/// A failed HDFS call: what was tried and why.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("{what}: {source}")]
    Failed { what: String, source: HdfsError },
    #[error("{what}: the sink is not started")]
    NotStarted { what: String },
    #[error("{what}: no answer within hdfs.callTimeout ({timeout:?})")]
    TimedOut { what: String, timeout: Duration },
}

impl CallError {
    /// The path was missing.
    fn not_found(&self) -> bool {
        match self {
            Self::Failed { source, .. } => match source {
                HdfsError::FileNotFound(_) => true,
                HdfsError::RPCError(class, _) => class.ends_with("FileNotFoundException"),
                _ => false,
            },
            _ => false,
        }
    }

    /// The path was already there.
    fn exists(&self) -> bool {
        match self {
            Self::Failed { source, .. } => match source {
                HdfsError::AlreadyExists(_) => true,
                HdfsError::RPCError(class, _) => class.ends_with("FileAlreadyExistsException"),
                _ => false,
            },
            _ => false,
        }
    }
}

/// Why writing a batch, rolling, closing or recovering a file failed.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("the sink is not started")]
    NotStarted,
    #[error("cannot create an HDFS client for {fs}: {source}")]
    Client { fs: String, source: HdfsError },
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("hdfs.path `{dir}` is not absolute")]
    NotAbsolute { dir: String },
    #[error("cannot find a free file name for prefix `{prefix}` in {dir}")]
    NoFreeName { prefix: String, dir: String },
    #[error("internal: the open file vanished")]
    OpenFileVanished,
}

/// Splits an escaped `hdfs.path` into file system URL and absolute path.
fn split_fs(path: &str) -> (String, String) {
    if let Some(i) = path.find("://") {
        let rest = &path[i + 3..];
        let slash = rest.find('/').unwrap_or(rest.len());
        let fs = path[..i + 3 + slash].to_string();
        let p = &rest[slash..];
        return (
            fs,
            if p.is_empty() {
                "/".into()
            } else {
                p.to_string()
            },
        );
    }
    (String::new(), path.to_string())
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

impl HdfsSink {
    pub fn new(name: &str, config: HdfsConfig, counters: Arc<SinkCounters>) -> Self {
        Self {
            name: name.to_string(),
            config,
            counters,
            runtime: None,
            clients: HashMap::new(),
            recovery_clients: HashMap::new(),
            open: HashMap::new(),
            closing: Vec::new(),
            counter: now_millis(),
            use_clock: 0,
            path_cache: TimeCache::default(),
            prefix_cache: TimeCache::default(),
        }
    }

    fn err(&self, message: impl std::fmt::Display) -> SinkError {
        SinkError::Delivery {
            sink: self.name.clone(),
            message: message.to_string(),
        }
    }

    /// Runs `f` on the sink's runtime, bounded by `hdfs.callTimeout`.
    fn call<T>(
        &self,
        what: &str,
        f: impl Future<Output = Result<T, HdfsError>>,
    ) -> Result<T, CallError> {
        let Some(rt) = &self.runtime else {
            return Err(CallError::NotStarted {
                what: what.to_string(),
            });
        };
        let timeout = self.config.call_timeout;
        match rt.block_on(async { tokio::time::timeout(timeout, f).await }) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(CallError::Failed {
                what: what.to_string(),
                source,
            }),
            Err(_) => Err(CallError::TimedOut {
                what: what.to_string(),
                timeout,
            }),
        }
    }

    fn build_client(&self, fs: &str) -> Result<Client, WriteError> {
        let rt = self.runtime.as_ref().ok_or(WriteError::NotStarted)?;
        let mut b = ClientBuilder::new().with_io_runtime(rt.handle().clone());
        if !fs.is_empty() {
            b = b.with_url(fs);
        }
        if let Some(u) = &self.config.user {
            b = b.with_user(u);
        }
        if let Some(p) = &self.config.kerberos_principal {
            b = b.with_kerberos_principal(p);
        }
        if let Some(k) = &self.config.kerberos_keytab {
            b = b.with_kerberos_keytab(k);
        }
        let shown = if fs.is_empty() { "fs.defaultFS" } else { fs };
        b.build().map_err(|source| WriteError::Client {
            fs: shown.to_string(),
            source,
        })
    }

    fn client(&mut self, fs: &str, recovery: bool) -> Result<Client, WriteError> {
        let map = if recovery {
            &self.recovery_clients
        } else {
            &self.clients
        };
        if let Some(c) = map.get(fs) {
            return Ok(c.clone());
        }
        let c = self.build_client(fs)?;
        let map = if recovery {
            &mut self.recovery_clients
        } else {
            &mut self.clients
        };
        map.insert(fs.to_string(), c.clone());
        Ok(c)
    }

    /// `(escaped directory, escaped prefix)` of an event.
    fn bucket(
        &mut self,
        e: &Event,
        local_now: Option<i64>,
    ) -> Result<(String, String), RenderError> {
        let time = TimeContext {
            zone: self.config.time_zone,
            rounding: self.config.rounding,
            local_now,
        };
        let mut dir = String::new();
        self.config
            .path
            .render(&e.headers, &time, &mut self.path_cache, &mut dir)?;
        let mut prefix = String::new();
        self.config
            .file_prefix
            .render(&e.headers, &time, &mut self.prefix_cache, &mut prefix)?;
        Ok((dir, prefix))
    }

    fn file_names(&mut self, dir: &str, prefix: &str) -> (String, String) {
        self.counter += 1;
        let mut name = format!("{prefix}.{}{}", self.counter, self.config.file_suffix);
        if let Some(c) = self.config.codec {
            name.push_str(c.extension());
        }
        let in_use = format!(
            "{}{name}{}",
            self.config.in_use_prefix, self.config.in_use_suffix
        );
        (join(dir, &in_use), join(dir, &name))
    }

    fn open_file(&mut self, key: &str, dir: &str, prefix: &str) -> Result<(), WriteError> {
        if self.open.len() >= self.config.max_open_files {
            self.close_least_recent()?;
        }
        let (fs, dir_path) = split_fs(dir);
        if !dir_path.starts_with('/') {
            return Err(WriteError::NotAbsolute {
                dir: dir.to_string(),
            });
        }
        let client = self.client(&fs, false)?;
        let encoder = FileEncoder::new(self.config.serializer, self.config.codec)?;
        // A name taken by an earlier run with a clock behind ours gets the next counter.
        for _ in 0..5 {
            let (in_use, target) = self.file_names(&dir_path, prefix);
            let opts = WriteOptions::default().create_parent(true).overwrite(false);
            let created = self.call(&format!("create {in_use}"), client.create(&in_use, &opts));
            match created {
                Ok(writer) => {
                    self.counters
                        .connection_created
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(sink = %self.name, file = %in_use, "Opened HDFS file.");
                    let now = Instant::now();
                    self.open.insert(
                        key.to_string(),
                        OpenFile {
                            fs,
                            in_use,
                            target,
                            writer,
                            encoder,
                            events: 0,
                            bytes: 0,
                            dirty: false,
                            opened: now,
                            last_write: now,
                            last_use: 0,
                        },
                    );
                    return Ok(());
                }
                Err(e) if e.exists() => continue,
                Err(e) => {
                    self.counters
                        .connection_failed
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(e.into());
                }
            }
        }
        Err(WriteError::NoFreeName {
            prefix: prefix.to_string(),
            dir: dir.to_string(),
        })
    }

    /// Writes and syncs what the encoder holds.
    fn flush_file(&self, f: &mut OpenFile) -> Result<(), WriteError> {
        if !f.dirty {
            return Ok(());
        }
        let bytes = f.encoder.finish_batch()?;
        if !bytes.is_empty() {
            let what = format!("write {}", f.in_use);
            self.call(&what, f.writer.write_bytes(Bytes::from(bytes)))?;
        }
        self.call(&format!("hsync {}", f.in_use), f.writer.hsync())?;
        f.dirty = false;
        f.last_write = Instant::now();
        Ok(())
    }

    /// Hands a file to the closer and tries the close now.
    fn retire(&mut self, f: OpenFile, failed: bool) {
        let c = Closing {
            fs: f.fs,
            in_use: f.in_use,
            target: f.target,
            // After a failed write the writer's pipeline is suspect: fence it by lease recovery.
            recover: failed,
            writer: (!failed).then_some(f.writer),
            tries: 0,
            next_attempt: Instant::now(),
        };
        self.closing.push(c);
        let i = self.closing.len() - 1;
        self.attempt_close(i);
    }

    /// Flushes and retires an open file (a roll). A flush failure is an error of the batch.
    fn roll(&mut self, key: &str) -> Result<(), WriteError> {
        let Some(mut f) = self.open.remove(key) else {
            return Ok(());
        };
        match self.flush_file(&mut f) {
            Ok(()) => {
                self.retire(f, false);
                Ok(())
            }
            Err(e) => {
                self.retire(f, true);
                Err(e)
            }
        }
    }

    fn close_least_recent(&mut self) -> Result<(), WriteError> {
        let oldest = self
            .open
            .iter()
            .min_by_key(|(_, f)| f.last_use)
            .map(|(k, _)| k.clone());
        match oldest {
            Some(k) => self.roll(&k),
            None => Ok(()),
        }
    }

    /// One close/recover/rename attempt of `closing[i]`; removes it when done or given up.
    fn attempt_close(&mut self, i: usize) {
        let Some(mut c) = self.closing.get_mut(i).map(|c| Closing {
            fs: c.fs.clone(),
            in_use: c.in_use.clone(),
            target: c.target.clone(),
            writer: c.writer.take(),
            recover: c.recover,
            tries: c.tries,
            next_attempt: c.next_attempt,
        }) else {
            return;
        };
        let result = self.finish_file(&mut c);
        let done = match result {
            Ok(true) => true,
            Ok(false) => {
                c.next_attempt = Instant::now() + RECOVERY_POLL.min(self.config.retry_interval);
                false
            }
            Err(e) => {
                c.tries += 1;
                let give_up = self.config.close_tries > 0 && c.tries >= self.config.close_tries;
                if give_up {
                    tracing::error!(sink = %self.name, file = %c.in_use, error = %e,
                        tries = c.tries, "Giving up closing and renaming the file (hdfs.closeTries).");
                } else {
                    tracing::warn!(sink = %self.name, file = %c.in_use, error = %e,
                        retry_in = ?self.config.retry_interval, "Closing the file failed; will retry.");
                }
                c.next_attempt = Instant::now() + self.config.retry_interval;
                give_up
            }
        };
        if done {
            self.closing.remove(i);
        } else if let Some(slot) = self.closing.get_mut(i) {
            *slot = c;
        }
    }

    /// Close (or lease recovery) then rename. `Ok(false)`: a lease recovery is under way.
    fn finish_file(&mut self, c: &mut Closing) -> Result<bool, WriteError> {
        if let Some(mut w) = c.writer.take() {
            match self.call(&format!("close {}", c.in_use), w.close()) {
                Ok(()) => {
                    self.counters
                        .connection_closed
                        .fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(sink = %self.name, file = %c.in_use, error = %e,
                        "Close failed; recovering the file's lease.");
                    c.recover = true;
                }
            }
        }
        if c.recover {
            let client = self.client(&c.fs, true)?;
            let done = self.call(
                &format!("recover lease of {}", c.in_use),
                client.recover_lease(&c.in_use),
            );
            match done {
                Ok(true) => {
                    c.recover = false;
                    self.counters
                        .connection_closed
                        .fetch_add(1, Ordering::Relaxed);
                }
                Ok(false) => return Ok(false),
                Err(e) if e.not_found() => {
                    // Renamed by an earlier attempt whose answer was lost, or removed.
                    return Ok(true);
                }
                Err(e) => return Err(e.into()),
            }
        }
        if c.in_use == c.target {
            return Ok(true);
        }
        let client = self.client(&c.fs, false)?;
        match self.call(
            &format!("rename {}", c.in_use),
            client.rename(&c.in_use, &c.target, false),
        ) {
            Ok(()) => {
                tracing::info!(sink = %self.name, file = %c.target, "Closed and renamed HDFS file.");
                Ok(true)
            }
            Err(e) => {
                let gone = self.call("stat", client.get_file_info(&c.in_use)).is_err();
                let there = self.call("stat", client.get_file_info(&c.target)).is_ok();
                if gone && there {
                    Ok(true)
                } else {
                    Err(e.into())
                }
            }
        }
    }

    /// Time-based rolls and due close attempts.
    fn housekeeping(&mut self) -> Result<(), SinkError> {
        let interval = self.config.roll_interval;
        let idle = self.config.idle_timeout;
        let expired: Vec<String> = self
            .open
            .iter()
            .filter(|(_, f)| {
                (!interval.is_zero() && f.opened.elapsed() >= interval)
                    || (!idle.is_zero() && f.last_write.elapsed() >= idle)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut first_err = None;
        for k in expired {
            if let Err(e) = self.roll(&k) {
                first_err.get_or_insert(e);
            }
        }
        let now = Instant::now();
        let mut i = 0;
        while i < self.closing.len() {
            let before = self.closing.len();
            if self.closing[i].next_attempt <= now {
                self.attempt_close(i);
            }
            if self.closing.len() == before {
                i += 1;
            }
        }
        match first_err {
            Some(e) => Err(self.err(e)),
            None => Ok(()),
        }
    }

    /// Finds in-use files a previous run left under the literal part of `hdfs.path`.
    fn recover_leftovers(&mut self) -> Result<(), WriteError> {
        let cfg = &self.config;
        if cfg.in_use_prefix.is_empty() && cfg.in_use_suffix.is_empty() {
            return Ok(());
        }
        let literal = cfg.path.literal_prefix();
        let root = if cfg.path.is_literal() {
            literal.to_string()
        } else {
            literal
                .rsplit_once('/')
                .map(|(d, _)| d.to_string())
                .unwrap_or_default()
        };
        let (fs, dir) = split_fs(&root);
        if dir.is_empty() || dir == "/" || !dir.starts_with('/') {
            tracing::warn!(sink = %self.name, path = %cfg.path.source(),
                "hdfs.path has no literal directory to search for leftover in-use files.");
            return Ok(());
        }
        let name_start = format!("{}{}", cfg.in_use_prefix, cfg.file_prefix.literal_prefix());
        let suffix = cfg.in_use_suffix.clone();
        let in_use_prefix = cfg.in_use_prefix.clone();
        let client = self.client(&fs, false)?;
        let listed = self.call(&format!("list {dir}"), client.list_status(&dir, true));
        let files = match listed {
            Ok(f) => f,
            Err(e) if e.not_found() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for st in files.into_iter().filter(|s| !s.isdir) {
            let Some((parent, base)) = st.path.rsplit_once('/') else {
                continue;
            };
            if !base.starts_with(&name_start) || !base.ends_with(&suffix) {
                continue;
            }
            let final_name = &base[in_use_prefix.len()..base.len() - suffix.len()];
            let target = join(if parent.is_empty() { "/" } else { parent }, final_name);
            tracing::info!(sink = %self.name, file = %st.path,
                "Found an in-use file left by an earlier run; recovering its lease.");
            self.closing.push(Closing {
                fs: fs.clone(),
                in_use: st.path.clone(),
                target,
                writer: None,
                recover: true,
                tries: 0,
                next_attempt: Instant::now(),
            });
        }
        // Give the recoveries a moment; the rest finishes in the background.
        let deadline = Instant::now() + STARTUP_RECOVERY_WAIT;
        while !self.closing.is_empty() && Instant::now() < deadline {
            let _ = self.housekeeping();
            if !self.closing.is_empty() {
                std::thread::sleep(RECOVERY_POLL);
            }
        }
        Ok(())
    }

    fn write_batch(&mut self, events: &[Event]) -> Result<(), WriteError> {
        let local_now = self.config.use_local_timestamp.then(|| now_millis() as i64);
        let mut key = String::new();
        let mut last: Option<(String, String)> = None;
        let constant = self.config.path.is_literal() && self.config.file_prefix.is_literal();
        for e in events {
            // A path and prefix without escapes are the same for every event.
            if last.is_none() || !constant {
                let (dir, prefix) = self.bucket(e, local_now)?;
                if last.as_ref().is_none_or(|(d, p)| *d != dir || *p != prefix) {
                    key = format!("{dir}\u{0}{prefix}");
                    last = Some((dir, prefix));
                }
            }
            if !self.open.contains_key(&key) {
                let (d, p) = last.clone().unwrap_or_default();
                self.open_file(&key, &d, &p)?;
            }
            let (roll_count, roll_size) = (self.config.roll_count, self.config.roll_size);
            let should_roll = self.open.get(&key).is_some_and(|f| {
                (roll_count > 0 && f.events >= roll_count)
                    || (roll_size > 0 && f.bytes >= roll_size)
            });
            if should_roll {
                self.roll(&key)?;
                let (d, p) = last.clone().unwrap_or_default();
                self.open_file(&key, &d, &p)?;
            }
            self.use_clock += 1;
            let clock = self.use_clock;
            let Some(f) = self.open.get_mut(&key) else {
                return Err(WriteError::OpenFileVanished);
            };
            f.encoder.append(e)?;
            f.events += 1;
            f.bytes += e.body.len() as u64;
            f.dirty = true;
            f.last_use = clock;
        }
        let dirty: Vec<String> = self
            .open
            .iter()
            .filter(|(_, f)| f.dirty)
            .map(|(k, _)| k.clone())
            .collect();
        for k in dirty {
            let Some(mut f) = self.open.remove(&k) else {
                continue;
            };
            match self.flush_file(&mut f) {
                Ok(()) => {
                    self.open.insert(k, f);
                }
                Err(e) => {
                    self.retire(f, true);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Drops the encoded-but-unwritten part of a failed batch: the retry re-encodes it.
    fn abandon_unwritten(&mut self) {
        let dirty: Vec<String> = self
            .open
            .iter()
            .filter(|(_, f)| f.dirty)
            .map(|(k, _)| k.clone())
            .collect();
        for k in dirty {
            if let Some(f) = self.open.remove(&k) {
                // Closing drops the unwritten part; what was synced stays.
                self.retire(f, false);
            }
        }
    }
}

impl Sink for HdfsSink {
    fn start(&mut self) -> Result<(), SinkError> {
        if self.runtime.is_none() {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(format!("hdfs-{}", self.name))
                .enable_all()
                .build()
                .map_err(|e| self.err(format!("cannot start the HDFS runtime: {e}")))?;
            self.runtime = Some(rt);
        }
        self.recover_leftovers().map_err(|e| self.err(e))
    }

    fn deliver(&mut self, events: &[Event]) -> Result<(), SinkError> {
        self.housekeeping()?;
        if let Err(e) = self.write_batch(events) {
            self.abandon_unwritten();
            return Err(self.err(e));
        }
        Ok(())
    }

    fn idle(&mut self) -> Result<(), SinkError> {
        self.housekeeping()
    }

    fn stop(&mut self) {
        let keys: Vec<String> = self.open.keys().cloned().collect();
        for k in keys {
            if let Err(e) = self.roll(&k) {
                tracing::error!(sink = %self.name, error = %e, "Flushing a file at stop failed.");
            }
        }
        // Bounded: at most three rounds, none started after two call timeouts have passed.
        let deadline = Instant::now() + 2 * self.config.call_timeout;
        for _ in 0..3 {
            if self.closing.is_empty() || Instant::now() >= deadline {
                break;
            }
            let mut i = 0;
            while i < self.closing.len() {
                let before = self.closing.len();
                self.attempt_close(i);
                if self.closing.len() == before {
                    i += 1;
                }
            }
        }
        for c in &self.closing {
            tracing::error!(sink = %self.name, file = %c.in_use,
                "File still in use at stop; the next start recovers and renames it.");
        }
        self.closing.clear();
        self.clients.clear();
        self.recovery_clients.clear();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_file_system_and_path() {
        assert_eq!(
            split_fs("hdfs://nn:8020/a/b"),
            ("hdfs://nn:8020".into(), "/a/b".into())
        );
        assert_eq!(split_fs("hdfs://ns"), ("hdfs://ns".into(), "/".into()));
        assert_eq!(split_fs("/a/b"), (String::new(), "/a/b".into()));
        assert_eq!(join("/a/", "f"), "/a/f");
        assert_eq!(join("/a", "f"), "/a/f");
    }
}
