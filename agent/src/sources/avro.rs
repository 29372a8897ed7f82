//! `avro`: Flume's AvroSource. Listens for `AvroSourceProtocol` clients (Flume's AvroSink,
//! `flume-ng avro-client`, the Flume RPC SDK, `sluice send`) and answers OK only after the
//! batch is committed to every required channel; FAILED makes the client retry.
//!
//! Connections are served by a small tokio runtime owned by the source: the accept loop and
//! one task per connection on a few I/O threads ([`crate::avro::server_io`] runs zlib and TLS
//! as state machines), so a connection waiting for its client costs no thread. A complete
//! request is decoded and committed on a bounded pool of `threads` blocking workers (the
//! channel put may wait for a full channel, which must not stall the I/O threads).
//!
//! Bounds, all per source:
//! - `max-connections` open connections; past it the accept loop waits and new clients queue
//!   in the kernel's accept backlog.
//! - `idle-timeout`: a connection with no request in progress that sends nothing for that long
//!   is closed; `read-timeout`: a client that stops sending mid-request (TLS handshake
//!   included), or does not take its reply, is closed.
//! - `max-buffered-bytes`: the bytes of all requests being received or processed, plus an
//!   estimate of their decoded headers, across all connections. A payload is received into
//!   chunks allocated only as its bytes arrive (never to a declared length up front, see
//!   [`FrameDecoder`]), each taken from this budget; when it is exhausted, arriving requests
//!   wait (their sockets are not read) for up to `read-timeout`, then that connection is
//!   closed; a batch whose decoding cannot get budget in time is answered FAILED (the client
//!   retries). The budget is given back when the request is answered.
//!
//! A connection that sends garbage, a truncated or oversized frame, or a bad handshake is
//! closed with a logged reason; other connections are unaffected.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use regex::Regex;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};

use crate::avro::decode::Reader;
use crate::avro::framing::{Feed, FrameDecoder, write_frame};
use crate::avro::protocol::{
    HandshakeResponse, Match, PROTOCOL_JSON, ProtocolError, Status, protocol_hash,
    read_event_charged, read_events_charged, read_handshake_request, read_message_name, read_meta,
    write_bool, write_empty_meta, write_error, write_handshake_response, write_status,
};
use crate::avro::server_io::ServerIo;
use crate::config::{ConfigError, MAX_BATCH, MAX_MILLIS, Props};
use crate::pipeline::ChannelProcessor;
use crate::pipeline::{
    BoxError, EventDrivenSource, SourceContext, SourceError, SourceInstance, SourceSpec,
};

#[derive(Clone, Debug)]
pub struct IpRule {
    pub allow: bool,
    pub pattern: Regex,
}

#[derive(Clone, Debug)]
pub struct AvroSourceConfig {
    /// `bind` (required).
    pub bind: String,
    /// `port` (required).
    pub port: u16,
    /// `threads`: requests decoded and committed at once (blocking worker threads); 0 (the
    /// default) = the number of CPUs, at least 4 and at most 64.
    pub threads: usize,
    /// `max-connections` (sluice; default 1000): open connections; further clients wait in the
    /// accept backlog.
    pub max_connections: usize,
    /// `idle-timeout` (sluice; ms, default 60000, 0 = never): a connection with no request in
    /// progress that sends nothing for this long is closed.
    pub idle_timeout: Option<Duration>,
    /// `read-timeout` (sluice; ms, default 30000): a client that sends nothing for this long
    /// in the middle of a request, or does not take its reply, is closed; also the longest
    /// wait for `max-buffered-bytes`.
    pub read_timeout: Duration,
    /// `max-buffered-bytes` (sluice; default 256 MiB, at least `max-message-bytes`): requests
    /// being received or processed, over all connections.
    pub max_buffered_bytes: usize,
    /// `compression-type`: `none` or `deflate` (default none).
    pub deflate: bool,
    /// `ipFilter` + `ipFilterRules`: `allow|deny:ip:<pattern>` rules, first match wins.
    pub ip_rules: Option<Vec<IpRule>>,
    /// `max-message-bytes` (sluice; default 64 MiB): larger requests close the connection.
    pub max_message_bytes: usize,
    /// `max-batch-events` (sluice; default 100000): larger batches close the connection.
    pub max_batch_events: usize,
    /// `ssl = true` with `ssl.certificate` and `ssl.key` (PEM).
    pub tls: Option<TlsFiles>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub certificate: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

fn parse_rules(p: &Props) -> Result<Vec<IpRule>, ConfigError> {
    let text = p.required("ipFilterRules")?;
    let mut rules = Vec::new();
    for def in text.split(',').map(str::trim) {
        let parts: Vec<&str> = def.splitn(3, ':').collect();
        let form = "rules look like allow:ip:10.0.* or deny:ip:*, comma-separated";
        let [access, kind, pattern] = parts[..] else {
            return Err(p.error("ipFilterRules", format!("invalid rule `{def}`; {form}")));
        };
        let allow = match access {
            "allow" => true,
            "deny" => false,
            _ => return Err(p.error("ipFilterRules", format!("invalid rule `{def}`; {form}"))),
        };
        if kind != "ip" {
            return Err(p.error(
                "ipFilterRules",
                format!(
                    "rule `{def}`: only `ip` rules are supported (host-name rules need reverse DNS)"
                ),
            ));
        }
        let re = format!("^{}$", regex::escape(pattern).replace(r"\*", ".*"));
        let pattern =
            Regex::new(&re).map_err(|e| p.error("ipFilterRules", format!("rule `{def}`: {e}")))?;
        rules.push(IpRule { allow, pattern });
    }
    Ok(rules)
}

impl AvroSourceConfig {
    pub fn from_props(p: &Props) -> Result<Self, ConfigError> {
        let deflate = p.choice(
            "compression-type",
            false,
            &[(&["none"], false), (&["deflate"], true)],
        )?;
        let tls = if p.bool("ssl", false)? {
            let keystore_hint = if p.get("keystore").is_some() {
                "; sluice reads PEM, not Java keystores: `keytool -importkeystore -srckeystore \
                 keystore.jks -destkeystore ks.p12 -deststoretype PKCS12`, then `openssl pkcs12 \
                 -in ks.p12 -nokeys -out cert.pem` and `openssl pkcs12 -in ks.p12 -nocerts -nodes \
                 -out key.pem`"
            } else {
                ""
            };
            let need = |key: &str| {
                p.get(key)
                    .filter(|v| !v.is_empty())
                    .map(std::path::PathBuf::from)
                    .ok_or_else(|| {
                        p.error(
                            key,
                            format!("ssl = true needs {key} (a PEM file){keystore_hint}"),
                        )
                    })
            };
            let tls = TlsFiles {
                certificate: need("ssl.certificate")?,
                key: need("ssl.key")?,
            };
            p.claim("keystore");
            Some(tls)
        } else {
            None
        };
        let ip_rules = if p.bool("ipFilter", false)? {
            Some(parse_rules(p)?)
        } else {
            None
        };
        let max_message_bytes = p.int("max-message-bytes", 64 << 20, 1..=i32::MAX as usize)?;
        let max_buffered_bytes = p.int(
            "max-buffered-bytes",
            (256 << 20).max(max_message_bytes),
            1..=1 << 40,
        )?;
        if max_buffered_bytes < max_message_bytes {
            return Err(p.error(
                "max-buffered-bytes",
                format!(
                    "must be at least max-message-bytes ({max_message_bytes}): a largest request \
                     could never be received"
                ),
            ));
        }
        let threads = p.int("threads", 0, 0..=4096)?;
        let max_connections = p.int("max-connections", 1000, 1..=1_000_000)?;
        let idle_timeout = p.millis("idle-timeout", 60_000, 0..=MAX_MILLIS)?;
        let read_timeout = p.millis("read-timeout", 30_000, 1..=MAX_MILLIS)?;
        Ok(Self {
            bind: p.required("bind")?,
            port: p.parse("port", 0u16, "a TCP port number").and_then(|v| {
                if p.get("port").is_none() {
                    Err(p.error("port", "is required"))
                } else {
                    Ok(v)
                }
            })?,
            threads,
            max_connections,
            idle_timeout: (!idle_timeout.is_zero()).then_some(idle_timeout),
            read_timeout,
            max_buffered_bytes,
            deflate,
            ip_rules,
            max_message_bytes,
            max_batch_events: p.int("max-batch-events", 100_000, 1..=MAX_BATCH)?,
            tls,
        })
    }

    /// Blocking workers: `threads`, or by default one per CPU, at least 4 and at most 64.
    pub fn workers(&self) -> usize {
        if self.threads > 0 {
            return self.threads;
        }
        std::thread::available_parallelism().map_or(4, |n| n.get().clamp(4, 64))
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        let Some(rules) = &self.ip_rules else {
            return true;
        };
        let s = ip.to_string();
        rules
            .iter()
            .find(|r| r.pattern.is_match(&s))
            .is_none_or(|r| r.allow)
    }
}

/// Client protocol hashes remembered from handshakes, at most (a client can announce any
/// hash; one not remembered is asked for its protocol text again).
const MAX_KNOWN_PROTOCOLS: usize = 1024;

/// Budget taken at a time for decoded headers.
const DECODE_STEP: usize = 256 * 1024;

/// State shared by the accept loop, connection tasks and workers.
struct Shared {
    name: String,
    config: AvroSourceConfig,
    processor: Arc<ChannelProcessor>,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Open connections.
    active: AtomicUsize,
    /// `max-buffered-bytes`.
    budget: Arc<Budget>,
    /// `threads`: one permit per request being decoded and committed.
    workers: Arc<Semaphore>,
    /// Client protocol hashes learned from handshakes.
    known_protocols: Mutex<HashSet<[u8; 16]>>,
}

/// The `max-buffered-bytes` budget. Not first-come-first-served: a waiter takes its bytes as
/// soon as they are free, so a small request is not held up behind a large one waiting for
/// megabytes.
struct Budget {
    total: usize,
    free: Mutex<usize>,
    freed: Notify,
}

impl Budget {
    fn new(total: usize) -> Self {
        Self {
            total,
            free: Mutex::new(total),
            freed: Notify::new(),
        }
    }

    fn try_take(&self, n: usize) -> bool {
        let mut free = self.free.lock();
        if *free >= n {
            *free -= n;
            true
        } else {
            false
        }
    }

    async fn take(&self, n: usize) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a release in between is not missed.
            freed.as_mut().enable();
            if self.try_take(n) {
                return;
            }
            freed.await;
        }
    }

    fn give(&self, n: usize) {
        *self.free.lock() += n;
        self.freed.notify_waiters();
    }
}

/// Why a request could not get room in the [`Budget`].
#[derive(Debug, thiserror::Error)]
enum BudgetError {
    #[error("the request needs more than max-buffered-bytes ({total})")]
    TooLarge { total: usize },
    #[error("{source}")]
    NoRuntime {
        source: tokio::runtime::TryCurrentError,
    },
    #[error("no memory for decoding within {millis} ms (max-buffered-bytes = {total} in use)")]
    TimedOut { millis: u128, total: usize },
}

/// Bytes taken from the [`Budget`], given back on drop.
struct Held {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Held {
    fn new(shared: &Shared) -> Self {
        Self {
            budget: shared.budget.clone(),
            bytes: 0,
        }
    }

    /// Waits until `n` more bytes are free.
    async fn take(&mut self, n: usize) -> Result<(), BudgetError> {
        if self.bytes + n > self.budget.total {
            return Err(BudgetError::TooLarge {
                total: self.budget.total,
            });
        }
        self.budget.take(n).await;
        self.bytes += n;
        Ok(())
    }

    /// [`Held::take`] from a blocking worker, waiting at most `limit`.
    fn take_blocking(&mut self, n: usize, limit: Duration) -> Result<(), BudgetError> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|source| BudgetError::NoRuntime { source })?;
        let total = self.budget.total;
        handle
            .block_on(tokio::time::timeout(limit, self.take(n)))
            .unwrap_or(Err(BudgetError::TimedOut {
                millis: limit.as_millis(),
                total,
            }))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.give(self.bytes);
        }
    }
}

/// Counts an open connection while it lives (also when its task is dropped at shutdown).
struct Open(Arc<Shared>);

impl Open {
    fn new(shared: &Arc<Shared>) -> Self {
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

pub struct AvroSource {
    name: String,
    config: AvroSourceConfig,
    shared: Option<Arc<Shared>>,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<watch::Sender<bool>>,
    /// The bound address (useful with port 0).
    pub local_addr: Option<SocketAddr>,
}

impl AvroSource {
    pub fn new(name: &str, config: AvroSourceConfig) -> Self {
        Self {
            name: name.to_string(),
            config,
            shared: None,
            runtime: None,
            stop: None,
            local_addr: None,
        }
    }

    fn error(&self, message: String) -> SourceError {
        SourceError::Other {
            source_name: self.name.clone(),
            message,
        }
    }
}

impl EventDrivenSource for AvroSource {
    fn start(&mut self, processor: Arc<ChannelProcessor>) -> Result<(), SourceError> {
        let tls = match &self.config.tls {
            Some(t) => Some(
                crate::avro::tls::server_config(&t.certificate, &t.key)
                    .map_err(|e| self.error(format!("ssl: {e}")))?,
            ),
            None => None,
        };
        let workers = self.config.workers();
        // zlib and TLS run on the I/O threads; a few suffice for any number of connections.
        let io_threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(io_threads)
            .max_blocking_threads(workers)
            .thread_name(format!("avro-{}", self.name))
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| self.error(format!("cannot start the I/O runtime: {e}")))?;
        let addr = format!("{}:{}", self.config.bind, self.config.port);
        let listener = std::net::TcpListener::bind(&addr)
            .map_err(|e| self.error(format!("cannot listen on {addr}: {e}")))?;
        let listener = listener
            .set_nonblocking(true)
            .and_then(|_| {
                let _rt = runtime.enter();
                TcpListener::from_std(listener)
            })
            .and_then(|l| Ok((l.local_addr()?, l)));
        let (local, listener) =
            listener.map_err(|e| self.error(format!("listener on {addr}: {e}")))?;
        self.local_addr = Some(local);
        tracing::info!(
            source = %self.name,
            addr = %local,
            workers,
            max_connections = self.config.max_connections,
            "Avro source listening."
        );
        let shared = Arc::new(Shared {
            name: self.name.clone(),
            config: self.config.clone(),
            processor,
            tls,
            active: AtomicUsize::new(0),
            budget: Arc::new(Budget::new(self.config.max_buffered_bytes)),
            workers: Arc::new(Semaphore::new(workers)),
            known_protocols: Mutex::new(HashSet::new()),
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
            // Connections finish the request they are processing (a batch is answered after
            // its commit), then close.
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

impl Drop for AvroSource {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Resolves once the source is stopping.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// `f`, or `None` once `limit` passed (no limit: never).
async fn within<F: Future>(limit: Option<Duration>, f: F) -> Option<F::Output> {
    match limit {
        Some(d) => tokio::time::timeout(d, f).await.ok(),
        None => Some(f.await),
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let max = shared.config.max_connections;
    let slots = Arc::new(Semaphore::new(max));
    let mut warned: Option<Instant> = None;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(s) => s,
            Err(_) => {
                if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    tracing::warn!(
                        source = %shared.name,
                        max_connections = max,
                        "All connections in use; new clients wait in the accept backlog."
                    );
                    warned = Some(Instant::now());
                }
                tokio::select! {
                    s = slots.clone().acquire_owned() => match s {
                        Ok(s) => s,
                        Err(_) => return,
                    },
                    () = stopped(&mut stop) => return,
                }
            }
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stopped(&mut stop) => return,
        };
        let (sock, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // E.g. out of file descriptors: back off instead of spinning.
                tracing::warn!(source = %shared.name, error = %e, "Accept failed.");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    () = stopped(&mut stop) => return,
                }
            }
        };
        if !shared.config.allowed(peer.ip()) {
            tracing::warn!(source = %shared.name, %peer, "Connection refused by ipFilterRules.");
            continue;
        }
        let open = Open::new(&shared);
        let s = shared.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _open = open;
            let _ = sock.set_nodelay(true);
            let tls = match &s.tls {
                Some(c) => rustls::ServerConnection::new(c.clone()).map(Some),
                None => Ok(None),
            };
            let mut io = match tls {
                Ok(tls) => ServerIo::new(sock, s.config.deflate, tls),
                Err(e) => {
                    tracing::warn!(source = %s.name, %peer, reason = %e, "Closing Avro connection.");
                    return;
                }
            };
            // The reason is logged before the socket is closed (with `io`, after this).
            match serve(&s, &mut io, &mut stop).await {
                Close::Clean => {
                    tracing::debug!(source = %s.name, %peer, "Avro client disconnected.")
                }
                Close::Idle => {
                    tracing::debug!(source = %s.name, %peer, "Closing idle Avro connection.");
                }
                Close::Stopping => {
                    tracing::debug!(source = %s.name, %peer, "Closing Avro connection: stopping.");
                }
                Close::Error(reason) => {
                    tracing::warn!(source = %s.name, %peer, %reason, "Closing Avro connection.");
                }
            }
        });
    }
}

/// Why a connection ended.
enum Close {
    /// The client closed it between requests.
    Clean,
    /// `idle-timeout` passed without a request.
    Idle,
    Stopping,
    /// Bad input, a stalled client, a broken socket: logged as a warning.
    Error(String),
}

/// Serves one connection until it closes.
async fn serve(shared: &Arc<Shared>, io: &mut ServerIo, stop: &mut watch::Receiver<bool>) -> Close {
    let cfg = &shared.config;
    let mut decoder = FrameDecoder::new(cfg.max_message_bytes);
    // Budget held by the frame being received.
    let mut held = Held::new(shared);
    let mut established = false;
    let mut buf = Vec::new();
    let read_ms = cfg.read_timeout.as_millis();
    loop {
        let mut pos = 0;
        while pos < buf.len() {
            let fed = match decoder.feed(&buf[pos..]) {
                Ok(f) => f,
                Err(e) => return Close::Error(e.to_string()),
            };
            match fed {
                Feed::Consumed(n) => pos += n,
                Feed::NeedCapacity { consumed, bytes } => {
                    pos += consumed;
                    let got = tokio::select! {
                        r = tokio::time::timeout(cfg.read_timeout, held.take(bytes)) => r,
                        () = stopped(stop) => return Close::Stopping,
                    };
                    match got {
                        Ok(Ok(())) => decoder.grow(bytes),
                        Ok(Err(e)) => return Close::Error(e.to_string()),
                        Err(_) => {
                            return Close::Error(format!(
                                "no buffer space within {read_ms} ms (read-timeout): \
                                 max-buffered-bytes ({}) is in use by the requests of all \
                                 connections",
                                cfg.max_buffered_bytes
                            ));
                        }
                    }
                }
                Feed::Frame { consumed, frame } => {
                    pos += consumed;
                    let charge = std::mem::replace(&mut held, Held::new(shared));
                    let serial = frame.serial;
                    let reply =
                        match process(shared, frame.chunks, charge, &mut established, stop).await {
                            Ok(r) => r,
                            Err(c) => return c,
                        };
                    let mut out = Vec::with_capacity(reply.len() + 12);
                    if let Err(e) = write_frame(&mut out, serial, &reply) {
                        return Close::Error(format!("reply: {e}"));
                    }
                    match tokio::time::timeout(cfg.read_timeout, io.write(&out)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Close::Error(format!("send failed: {e}")),
                        Err(_) => {
                            return Close::Error(format!(
                                "the client did not take its reply within {read_ms} ms \
                                 (read-timeout)"
                            ));
                        }
                    }
                }
            }
        }
        // No read buffer is kept across waits: a connection waiting for its client (between
        // requests or stalled in one) holds only its frame's budgeted chunks.
        buf = Vec::new();
        io.release_buffers();
        let idle = decoder.is_idle() && !io.is_handshaking();
        let limit = if idle {
            cfg.idle_timeout
        } else {
            Some(cfg.read_timeout)
        };
        let read = tokio::select! {
            r = within(limit, io.read(&mut buf)) => r,
            () = stopped(stop) => return Close::Stopping,
        };
        match read {
            Some(Ok(0)) if decoder.is_idle() => return Close::Clean,
            Some(Ok(0)) => {
                return Close::Error(format!(
                    "connection closed mid-frame ({} payload bytes received)",
                    decoder.received()
                ));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) if e.kind() == ErrorKind::UnexpectedEof && idle => return Close::Clean,
            Some(Err(e)) => return Close::Error(format!("i/o: {e}")),
            None if idle => return Close::Idle,
            None => {
                return Close::Error(format!(
                    "stalled mid-request: nothing received for {read_ms} ms (read-timeout; {} \
                     payload bytes of the frame received)",
                    decoder.received()
                ));
            }
        }
    }
}

/// Decodes and commits one request on a blocking worker; the reply payload.
async fn process(
    shared: &Arc<Shared>,
    payload: Vec<Bytes>,
    charge: Held,
    established: &mut bool,
    stop: &mut watch::Receiver<bool>,
) -> Result<Vec<u8>, Close> {
    let permit = tokio::select! {
        p = shared.workers.clone().acquire_owned() => p.map_err(|_| Close::Stopping)?,
        () = stopped(stop) => return Err(Close::Stopping),
    };
    let s = shared.clone();
    let mut est = *established;
    // Once started, the request runs to its answer (also when the source is stopping).
    let job = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut charge = charge;
        let r = respond(&s, payload, &mut est, &mut charge);
        // `charge` (the request's budget) is given back here, after the commit.
        (r, est)
    });
    match job.await {
        Ok((Ok(reply), est)) => {
            *established = est;
            Ok(reply)
        }
        Ok((Err(e), _)) => Err(Close::Error(format!("malformed request: {}", e.0))),
        Err(e) => Err(Close::Error(format!("request handler failed: {e}"))),
    }
}

fn write_status_reply(out: &mut Vec<u8>, status: Status) -> Result<(), ProtocolError> {
    write_empty_meta(out)?;
    write_bool(out, false)?;
    write_status(out, status)
}

/// Builds the response to one request payload; decoded headers are charged to `held`.
fn respond(
    shared: &Shared,
    payload: Vec<Bytes>,
    established: &mut bool,
    held: &mut Held,
) -> Result<Vec<u8>, ProtocolError> {
    let mut r = Reader::from_chunks(payload);
    let mut out = Vec::with_capacity(64);
    if !*established {
        let hs = read_handshake_request(&mut r)?;
        let ours = protocol_hash();
        let known = {
            let mut k = shared.known_protocols.lock();
            if hs.client_hash == ours || k.contains(&hs.client_hash) {
                true
            } else if let Some(text) = &hs.client_protocol {
                // A client protocol we can serve names the same messages.
                let ok = text.contains("AvroSourceProtocol") && text.contains("appendBatch");
                if ok && k.len() < MAX_KNOWN_PROTOCOLS {
                    k.insert(hs.client_hash);
                }
                ok
            } else {
                false
            }
        };
        let matched = match (known, hs.server_hash == ours) {
            (false, _) => Match::None,
            (true, true) => Match::Both,
            (true, false) => Match::Client,
        };
        let resp = HandshakeResponse {
            matched,
            server_protocol: (matched != Match::Both).then(|| PROTOCOL_JSON.to_string()),
            server_hash: (matched != Match::Both).then_some(ours),
        };
        write_handshake_response(&mut out, &resp)?;
        if matched == Match::None {
            return Ok(out);
        }
        *established = true;
    }
    read_meta(&mut r)?;
    let message = read_message_name(&mut r)?;
    let counters = shared.processor.counters();
    let single = message == "append";
    if single {
        counters.append_received.fetch_add(1, Ordering::Relaxed);
    }
    let decoded = match message.as_str() {
        // A handshake-only "ping".
        "" => return Ok(out),
        "appendBatch" | "append" => {
            let limit = shared.config.read_timeout;
            let mut starved = None;
            let mut reserved = 0usize;
            let mut used = 0usize;
            let decoded = {
                let mut charge = |n: usize| {
                    used += n;
                    if used > reserved {
                        let step = (used - reserved).max(DECODE_STEP);
                        if let Err(e) = held.take_blocking(step, limit) {
                            let reason = e.to_string();
                            starved = Some(reason.clone());
                            return Err(ProtocolError(reason));
                        }
                        reserved += step;
                    }
                    Ok(())
                };
                if single {
                    read_event_charged(&mut r, &mut charge).map(|e| vec![e])
                } else {
                    read_events_charged(&mut r, shared.config.max_batch_events, &mut charge)
                }
            };
            match (decoded, starved) {
                (Ok(events), _) => Ok(events),
                (Err(_), Some(reason)) => Err(reason),
                (Err(e), None) => return Err(e),
            }
        }
        other => {
            write_empty_meta(&mut out)?;
            write_bool(&mut out, true)?;
            write_error(&mut out, &format!("unknown message `{other}`"))?;
            return Ok(out);
        }
    };
    let status = match decoded {
        Err(reason) => {
            tracing::warn!(source = %shared.name, %reason, "Batch refused; answering FAILED.");
            Status::Failed
        }
        Ok(events) => match shared.processor.process_batch(events) {
            Ok(()) => {
                if single {
                    counters.append_accepted.fetch_add(1, Ordering::Relaxed);
                }
                Status::Ok
            }
            Err(e) => {
                tracing::warn!(source = %shared.name, error = %e, "Batch refused; answering FAILED.");
                Status::Failed
            }
        },
    };
    write_status_reply(&mut out, status)?;
    Ok(out)
}

impl SourceSpec for AvroSourceConfig {
    fn build(&self, cx: &SourceContext) -> Result<SourceInstance, BoxError> {
        Ok(SourceInstance::Driven(Box::new(AvroSource::new(
            &cx.cx.name,
            self.clone(),
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &[(&str, &str)]) -> Result<AvroSourceConfig, ConfigError> {
        let mut pairs = vec![("bind", "127.0.0.1"), ("port", "4141")];
        pairs.extend_from_slice(extra);
        AvroSourceConfig::from_props(&Props::from_pairs(&pairs))
    }

    #[test]
    fn bounds_have_documented_defaults_and_ranges() -> Result<(), ConfigError> {
        let c = config(&[])?;
        assert_eq!(c.max_connections, 1000);
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(c.read_timeout, Duration::from_secs(30));
        assert_eq!(c.max_buffered_bytes, 256 << 20);
        assert_eq!(c.max_message_bytes, 64 << 20);
        assert!((4..=64).contains(&c.workers()));
        assert_eq!(config(&[("threads", "3")])?.workers(), 3);
        assert_eq!(config(&[("idle-timeout", "0")])?.idle_timeout, None);
        // A larger max-message-bytes raises the default budget with it.
        let big = config(&[("max-message-bytes", "536870912")])?;
        assert_eq!(big.max_buffered_bytes, 512 << 20);
        for (key, value, says) in [
            (
                "max-buffered-bytes",
                "1048576",
                "at least max-message-bytes",
            ),
            ("read-timeout", "0", "1 to 86400000"),
            ("max-connections", "0", "1 to 1000000"),
            ("max-connections", "2000000", "1 to 1000000"),
            ("max-message-bytes", "4294967296", "1 to 2147483647"),
            ("threads", "100000", "0 to 4096"),
        ] {
            let err = config(&[(key, value)]).err().map(|e| e.to_string());
            let err = err.unwrap_or_default();
            assert!(
                err.contains(key) && err.contains(says),
                "{key} = {value}: {err}"
            );
        }
        Ok(())
    }

    /// The budget hands bytes to whichever waiter they fit, not strictly in arrival order.
    #[test]
    fn a_small_request_is_not_held_up_behind_a_large_one() -> Result<(), std::io::Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        rt.block_on(async {
            let budget = Arc::new(Budget::new(100));
            assert!(budget.try_take(60));
            let b = budget.clone();
            let large = tokio::spawn(async move { b.take(80).await });
            tokio::task::yield_now().await;
            // 40 free: the large waiter keeps waiting, a small one goes ahead.
            let small = tokio::time::timeout(Duration::from_secs(1), budget.take(30)).await;
            assert!(small.is_ok());
            assert!(!large.is_finished());
            budget.give(90);
            assert!(
                tokio::time::timeout(Duration::from_secs(1), large)
                    .await
                    .is_ok()
            );
            assert_eq!(*budget.free.lock(), 20);
        });
        Ok(())
    }
}
