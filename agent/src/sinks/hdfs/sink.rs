use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdfs_native::file::FileWriter;
use hdfs_native::{Client, ClientBuilder, HdfsError};

use crate::event::Event;
use crate::metrics::{SinkCounters, now_millis};
use crate::pipeline::{Sink, SinkError};

use super::config::HdfsConfig;
use super::error::{CallError, WriteError};
use super::format::FileEncoder;
use super::path::TimeCache;

/// An open in-use file.
pub(super) struct OpenFile {
    pub(super) fs: String,
    pub(super) in_use: String,
    pub(super) target: String,
    pub(super) writer: FileWriter,
    pub(super) encoder: FileEncoder,
    pub(super) events: u64,
    pub(super) bytes: u64,
    /// Appended to the encoder in this batch, not yet written.
    pub(super) dirty: bool,
    pub(super) opened: Instant,
    pub(super) last_write: Instant,
    pub(super) last_use: u64,
}

/// A file on its way to its final name.
pub(super) struct Closing {
    pub(super) fs: String,
    pub(super) in_use: String,
    pub(super) target: String,
    /// The writer, until a close was tried.
    pub(super) writer: Option<FileWriter>,
    /// The close failed: the lease has to be recovered first.
    pub(super) recover: bool,
    pub(super) tries: u32,
    pub(super) next_attempt: Instant,
}

pub(crate) struct HdfsSink {
    pub(super) name: String,
    pub(super) config: HdfsConfig,
    pub(super) counters: Arc<SinkCounters>,
    pub(super) runtime: Option<tokio::runtime::Runtime>,
    /// Writing clients by file system URL (`""` = `fs.defaultFS`).
    pub(super) clients: HashMap<String, Client>,
    /// Lease-recovery clients (a different lease holder than the writer) by URL.
    pub(super) recovery_clients: HashMap<String, Client>,
    /// Open files by `<escaped path>/<escaped prefix>`.
    pub(super) open: HashMap<String, OpenFile>,
    pub(super) closing: Vec<Closing>,
    pub(super) counter: u64,
    pub(super) use_clock: u64,
    pub(super) path_cache: TimeCache,
    pub(super) prefix_cache: TimeCache,
    /// `AvroEventSerializer` schemas fetched from `flume.avro.schema.url`, by URL.
    pub(super) schemas: HashMap<String, String>,
}

impl HdfsSink {
    pub(crate) fn new(name: &str, config: HdfsConfig, counters: Arc<SinkCounters>) -> Self {
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
            schemas: HashMap::new(),
        }
    }

    /// The sink's error for `cause`, which stays its source.
    fn failed(&self, cause: WriteError) -> SinkError {
        SinkError::Failed {
            sink: self.name.clone(),
            cause: Arc::new(cause),
        }
    }

    /// Runs `f` on the sink's runtime, bounded by `hdfs.callTimeout`.
    pub(super) fn call<T>(
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

    pub(super) fn build_client(&self, fs: &str) -> Result<Client, WriteError> {
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

    pub(super) fn client(&mut self, fs: &str, recovery: bool) -> Result<Client, WriteError> {
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

    /// Time-based rolls and due close attempts.
    pub(super) fn housekeeping(&mut self) -> Result<(), SinkError> {
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
            Some(e) => Err(self.failed(e)),
            None => Ok(()),
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
                .map_err(|e| self.failed(WriteError::Runtime(e)))?;
            self.runtime = Some(rt);
        }
        self.recover_leftovers().map_err(|e| self.failed(e))
    }

    fn deliver(&mut self, events: &[Event]) -> Result<(), SinkError> {
        self.housekeeping()?;
        if let Err(e) = self.write_batch(events) {
            self.abandon_unwritten();
            return Err(self.failed(e));
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
