//! Flume's `http` source (`org.apache.flume.source.http.HTTPSource`): events arrive as HTTP
//! requests, turned into events by a [`handler::Handler`] and committed to the channel before
//! the answer.
//!
//! Answers are Flume's: `200` (empty body) once the channel committed the request's events;
//! `400` when the handler found the request malformed; `500` for the handler's other failures
//! (an unsupported charset, a missing mandatory parameter) and for interceptor or selector
//! failures; `503` when the channel refused the events (full). As in Flume, `GET` is handled
//! like `POST`, and `TRACE` and `OPTIONS` are forbidden (`403`); other methods get `405`.
//!
//! Bounds (sluice keys): a request body larger than `max-request-bytes` gets `413` (refused from
//! its `Content-Length` before it is read, or once it grows past the limit); at most
//! `QueuedThreadPool.maxThreads` requests are read and processed at once (others wait), so the
//! request bodies held in memory are at most that many times `max-request-bytes`; at most
//! `max-connections` connections are open (more are closed at once); a connection that does not
//! complete a request's headers within `request-timeout` (idle keep-alive connections too) is
//! closed, and a body that does not arrive within it gets `408`.
//!
//! The server is hyper's HTTP/1.1 on a small tokio runtime; the channel commit runs on its
//! blocking pool, one thread per request being processed.

pub(crate) mod handler;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use self::handler::{Handler, HandlerError};
use crate::avro::tls::TlsFileError;
use crate::config::{ConfigError, MAX_MILLIS, Props};
use crate::pipeline::{
    BoxError, ChannelProcessor, EventDrivenSource, ProcessError, SourceContext, SourceError,
    SourceInstance, SourceSpec,
};

/// The Java class names and short names of the handlers sluice has.
const JSON_HANDLER: &[&str] = &["org.apache.flume.source.http.JSONHandler", "json", "JSON"];
const BLOB_HANDLER: &[&str] = &["org.apache.flume.source.http.BLOBHandler", "blob", "BLOB"];

/// Largest buffer hyper keeps for a request's head (request line and headers).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How often a repeated refusal (connection limit) is logged.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// `type = http`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HttpSourceConfig {
    pub(crate) bind: String,
    pub(crate) port: u16,
    pub(crate) handler: Handler,
    /// `ssl` (or Flume's old `enableSSL`) with `ssl.certificate` and `ssl.key` (PEM).
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
    /// `max-request-bytes` (sluice, default 16 MiB).
    pub(crate) max_request_bytes: usize,
    /// `QueuedThreadPool.maxThreads` (default 16): requests read and processed at once.
    pub(crate) max_threads: usize,
    /// `max-connections` (sluice, default 1000).
    pub(crate) max_connections: usize,
    /// `request-timeout` (sluice, ms, default 30000).
    pub(crate) request_timeout: Duration,
}

impl HttpSourceConfig {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
        let bind = p.string("bind", "0.0.0.0");
        if bind.is_empty() {
            return Err(p.error("bind", "HTTPSource hostname specified is empty"));
        }
        if p.get("port").is_none() {
            return Err(p.error("port", "is required"));
        }
        let port = p.parse("port", 0u16, "a port number (0 to 65535)")?;
        let handler_name = p.string("handler", JSON_HANDLER[0]);
        let handler = if JSON_HANDLER.contains(&handler_name.as_str()) {
            Handler::Json
        } else if BLOB_HANDLER.contains(&handler_name.as_str()) {
            let mandatory = p
                .list("handler.mandatoryParameters")
                .into_iter()
                .flat_map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                })
                .collect();
            Handler::Blob { mandatory }
        } else {
            return Err(p.error(
                "handler",
                format!(
                    "`{handler_name}` is not a handler sluice has (Java handler classes cannot \
                     run here); accepted: {}, {} — reshape events with an interceptor or a \
                     WebAssembly guest instead",
                    JSON_HANDLER[0], BLOB_HANDLER[0]
                ),
            ));
        };
        let ssl = match p.get("ssl") {
            Some(_) => p.bool("ssl", false)?,
            None => p.bool("enableSSL", false)?,
        };
        let tls = if ssl { Some(p.server_pem()?) } else { None };
        // rustls speaks TLS 1.2 and 1.3 only: the protocols Flume's users exclude (SSLv3,
        // TLSv1, TLSv1.1) are never offered.
        p.claim("exclude-protocols");
        p.claim("excludeProtocols");
        Ok(Self {
            bind,
            port,
            handler,
            tls,
            max_request_bytes: p.int("max-request-bytes", 16 << 20, 1..=1 << 30)?,
            max_threads: p.int("QueuedThreadPool.maxThreads", 16, 1..=1024)?,
            max_connections: p.int("max-connections", 1000, 1..=100_000)?,
            request_timeout: p.millis("request-timeout", 30_000, 100..=MAX_MILLIS)?,
        })
    }
}

impl SourceSpec for HttpSourceConfig {
    fn build(&self, cx: &SourceContext) -> Result<SourceInstance, BoxError> {
        Ok(SourceInstance::Driven(Box::new(HttpSource {
            name: cx.cx.name.clone(),
            config: self.clone(),
            running: None,
        })))
    }
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("ssl: {0}")]
    Tls(#[source] TlsFileError),
    #[error("cannot start the I/O runtime: {0}")]
    Runtime(#[source] io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: io::Error },
}

struct Shared {
    name: String,
    config: HttpSourceConfig,
    processor: Arc<ChannelProcessor>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Requests being read or processed (`QueuedThreadPool.maxThreads`).
    requests: Semaphore,
    active: AtomicUsize,
    last_refusal_log: Mutex<Option<Instant>>,
}

struct Running {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Runtime,
    stop: watch::Sender<bool>,
}

pub(crate) struct HttpSource {
    name: String,
    config: HttpSourceConfig,
    running: Option<Running>,
}

impl HttpSource {
    fn failed(&self, cause: StartError) -> SourceError {
        SourceError::Failed {
            source_name: self.name.clone(),
            cause: Arc::new(cause),
        }
    }
}

impl EventDrivenSource for HttpSource {
    fn start(&mut self, processor: Arc<ChannelProcessor>) -> Result<(), SourceError> {
        let tls = match &self.config.tls {
            Some((cert, key)) => Some(tokio_rustls::TlsAcceptor::from(
                crate::avro::tls::server_config(cert, key)
                    .map_err(|e| self.failed(StartError::Tls(e)))?,
            )),
            None => None,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(self.config.max_threads)
            .thread_name(format!("http-{}", self.name))
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| self.failed(StartError::Runtime(e)))?;
        let addr = format!("{}:{}", self.config.bind, self.config.port);
        let listen_err = |source| StartError::Listen {
            addr: addr.clone(),
            source,
        };
        let std_listener = std::net::TcpListener::bind(&addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| self.failed(listen_err(e)))?;
        let listener = {
            let _rt = runtime.enter();
            TcpListener::from_std(std_listener).map_err(|e| self.failed(listen_err(e)))?
        };
        if let Ok(a) = listener.local_addr() {
            tracing::info!(source = %self.name, addr = %a, tls = tls.is_some(),
                "HTTP source listening.");
        }
        let shared = Arc::new(Shared {
            name: self.name.clone(),
            config: self.config.clone(),
            processor,
            tls,
            requests: Semaphore::new(self.config.max_threads),
            active: AtomicUsize::new(0),
            last_refusal_log: Mutex::new(None),
        });
        let (stop, stop_rx) = watch::channel(false);
        runtime.spawn(accept_loop(shared.clone(), listener, stop_rx));
        self.running = Some(Running {
            shared,
            runtime,
            stop,
        });
        Ok(())
    }

    fn stop(&mut self) {
        let Some(r) = self.running.take() else {
            return;
        };
        let _ = r.stop.send(true);
        // Requests being processed finish (their answer follows their commit), then the
        // connections close.
        for _ in 0..500 {
            if r.shared.active.load(Ordering::SeqCst) == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        r.shared.processor.counters().stopped();
        r.runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

impl Drop for HttpSource {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(source = %shared.name, error = %e, "HTTP source: accept failed.");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if shared.active.load(Ordering::SeqCst) >= shared.config.max_connections {
            let mut last = shared.last_refusal_log.lock();
            if last.is_none_or(|t| t.elapsed() >= LOG_INTERVAL) {
                *last = Some(Instant::now());
                tracing::warn!(source = %shared.name, %peer,
                    limit = shared.config.max_connections,
                    "HTTP source: max-connections reached; connection closed.");
            }
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        shared.active.fetch_add(1, Ordering::SeqCst);
        let s = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            match s.tls.clone() {
                None => serve(&s, stream, peer, stop).await,
                Some(acceptor) => {
                    let timeout = s.config.request_timeout;
                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => serve(&s, tls, peer, stop).await,
                        Ok(Err(e)) => {
                            tracing::info!(source = %s.name, %peer, error = %e,
                                "HTTP source: TLS handshake failed; connection closed.");
                        }
                        Err(_) => {
                            tracing::info!(source = %s.name, %peer,
                                "HTTP source: TLS handshake timed out; connection closed.");
                        }
                    }
                }
            }
            s.active.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

async fn serve<S>(shared: &Arc<Shared>, io: S, peer: SocketAddr, mut stop: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let s = shared.clone();
    let service = hyper::service::service_fn(move |req| {
        let s = s.clone();
        async move { Ok::<_, Infallible>(handle(&s, peer, req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.request_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(source = %shared.name, %peer, error = %e, "HTTP source: connection ended.");
    }
}

fn answer(status: u16, message: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(message.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if !message.is_empty()
        && let Ok(v) = hyper::header::HeaderValue::from_str("text/plain; charset=utf-8")
    {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn handle(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let counters = shared.processor.counters();
    match *req.method() {
        Method::POST | Method::GET => {}
        Method::TRACE | Method::OPTIONS => return answer(403, "Forbidden"),
        _ => return answer(405, "Method Not Allowed"),
    }
    let max = shared.config.max_request_bytes;
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        counters.event_read_fail.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(source = %shared.name, %peer, declared, max_request_bytes = max,
            "HTTP source: request larger than max-request-bytes refused.");
        return answer(
            413,
            &format!("Request body exceeds max-request-bytes ({max} bytes)."),
        );
    }
    // A slot for reading and processing this request: bounds the bodies held at once.
    let Ok(_slot) = shared.requests.acquire().await else {
        return answer(503, "Source is stopping.");
    };
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let query = req.uri().query().map(str::to_string);
    let read = Limited::new(req.into_body(), max).collect();
    let body = match tokio::time::timeout(shared.config.request_timeout, read).await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) => {
            counters.event_read_fail.fetch_add(1, Ordering::Relaxed);
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                tracing::warn!(source = %shared.name, %peer, max_request_bytes = max,
                    "HTTP source: request body grew past max-request-bytes; refused.");
                return answer(
                    413,
                    &format!("Request body exceeds max-request-bytes ({max} bytes)."),
                );
            }
            tracing::info!(source = %shared.name, %peer, error = %e,
                "HTTP source: reading the request body failed.");
            return answer(400, &format!("Bad request from client. {e}"));
        }
        Err(_) => {
            counters.event_read_fail.fetch_add(1, Ordering::Relaxed);
            tracing::info!(source = %shared.name, %peer,
                "HTTP source: request body did not arrive within request-timeout.");
            return answer(408, "Request body did not arrive within request-timeout.");
        }
    };
    let s = shared.clone();
    let done = tokio::task::spawn_blocking(move || {
        let events = s
            .config
            .handler
            .events(content_type.as_deref(), query.as_deref(), body)
            .map_err(Outcome::Handler)?;
        s.processor.process_batch(events).map_err(Outcome::Process)
    })
    .await;
    match done {
        Ok(Ok(())) => answer(200, ""),
        Ok(Err(Outcome::Handler(e))) => {
            counters.event_read_fail.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(source = %shared.name, %peer, error = %e,
                "HTTP source: the handler refused the request.");
            answer(e.status(), &e.to_string())
        }
        Ok(Err(Outcome::Process(ProcessError::Channel(e)))) => {
            tracing::warn!(source = %shared.name, %peer, error = %e,
                "HTTP source: error appending event to channel; channel might be full.");
            answer(
                503,
                &format!("Error appending event to channel. Channel might be full. {e}"),
            )
        }
        Ok(Err(Outcome::Process(e))) => {
            tracing::warn!(source = %shared.name, %peer, error = %e,
                "HTTP source: unexpected error appending event to channel.");
            answer(
                500,
                &format!("Unexpected error while appending event to channel. {e}"),
            )
        }
        Err(e) => {
            counters
                .generic_processing_fail
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(source = %shared.name, %peer, error = %e,
                "HTTP source: request processing failed.");
            answer(500, "Unexpected error while appending event to channel.")
        }
    }
}

enum Outcome {
    Handler(HandlerError),
    Process(ProcessError),
}
