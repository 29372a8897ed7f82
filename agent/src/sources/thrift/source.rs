use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::avro::TlsFileError;
use crate::pipeline::{ChannelProcessor, EventDrivenSource, SourceError};

use super::config::ThriftSourceConfig;
use super::connection::accept_loop;

/// State shared by the accept loop, connection tasks and workers.
pub(super) struct Shared {
    pub(super) name: String,
    pub(super) config: ThriftSourceConfig,
    pub(super) processor: Arc<ChannelProcessor>,
    pub(super) tls: Option<Arc<rustls::ServerConfig>>,
    /// Open connections.
    pub(super) active: AtomicUsize,
    /// `max-buffered-bytes`, one permit per byte.
    pub(super) budget: Arc<Semaphore>,
    /// `threads`: one permit per request being decoded and committed.
    pub(super) workers: Arc<Semaphore>,
}

/// Counts an open connection while it lives (also when its task is dropped at shutdown).
pub(super) struct Open(Arc<Shared>);

impl Open {
    pub(super) fn new(shared: &Arc<Shared>) -> Self {
        shared.active.fetch_add(1, Ordering::SeqCst);
        shared
            .processor
            .counters()
            .open_connection
            .fetch_add(1, Ordering::Relaxed);
        Self(shared.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0
            .processor
            .counters()
            .open_connection
            .fetch_sub(1, Ordering::Relaxed);
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why the source could not start; the cause of its [`SourceError::Failed`].
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("ssl: {0}")]
    Tls(#[source] TlsFileError),
    #[error("cannot start the I/O runtime: {0}")]
    Runtime(#[source] io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: io::Error },
    #[error("listener on {addr}: {source}")]
    Listener { addr: String, source: io::Error },
}

pub(crate) struct ThriftSource {
    name: String,
    config: ThriftSourceConfig,
    shared: Option<Arc<Shared>>,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<watch::Sender<bool>>,
    /// The bound address (useful with port 0).
    pub(crate) local_addr: Option<SocketAddr>,
}

impl ThriftSource {
    pub(crate) fn new(name: &str, config: ThriftSourceConfig) -> Self {
        Self {
            name: name.to_string(),
            config,
            shared: None,
            runtime: None,
            stop: None,
            local_addr: None,
        }
    }

    fn failed(&self, cause: StartError) -> SourceError {
        SourceError::Failed {
            source_name: self.name.clone(),
            cause: Arc::new(cause),
        }
    }
}

impl EventDrivenSource for ThriftSource {
    fn start(&mut self, processor: Arc<ChannelProcessor>) -> Result<(), SourceError> {
        let tls = match &self.config.tls {
            Some(t) => Some(
                crate::avro::tls::server_config(&t.certificate, &t.key)
                    .map_err(|e| self.failed(StartError::Tls(e)))?,
            ),
            None => None,
        };
        let workers = self.config.workers();
        let io_threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(io_threads)
            .max_blocking_threads(workers)
            .thread_name(format!("thrift-{}", self.name))
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| self.failed(StartError::Runtime(e)))?;
        let addr = format!("{}:{}", self.config.bind, self.config.port);
        let listener = std::net::TcpListener::bind(&addr).map_err(|source| {
            self.failed(StartError::Listen {
                addr: addr.clone(),
                source,
            })
        })?;
        let listener = listener
            .set_nonblocking(true)
            .and_then(|_| {
                let _rt = runtime.enter();
                TcpListener::from_std(listener)
            })
            .and_then(|l| Ok((l.local_addr()?, l)));
        let (local, listener) =
            listener.map_err(|source| self.failed(StartError::Listener { addr, source }))?;
        self.local_addr = Some(local);
        tracing::info!(
            source = %self.name,
            addr = %local,
            protocol = self.config.protocol.name(),
            tls = self.config.tls.is_some(),
            workers,
            max_connections = self.config.max_connections,
            "Thrift source listening."
        );
        let shared = Arc::new(Shared {
            name: self.name.clone(),
            config: self.config.clone(),
            processor,
            tls,
            active: AtomicUsize::new(0),
            budget: Arc::new(Semaphore::new(self.config.max_buffered_bytes)),
            workers: Arc::new(Semaphore::new(workers)),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        runtime.spawn(accept_loop(shared.clone(), listener, stop_rx));
        self.shared = Some(shared);
        self.runtime = Some(runtime);
        self.stop = Some(stop_tx);
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(s) = self.shared.take() {
            // Connections finish the request they are processing, then close.
            for _ in 0..500 {
                if s.active.load(Ordering::SeqCst) == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            s.processor.counters().stopped();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for ThriftSource {
    fn drop(&mut self) {
        self.stop();
    }
}
