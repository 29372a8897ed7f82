//! Flume's `netcat` (TCP, one event per line) and `netcatudp` (one event per datagram)
//! sources.
//!
//! TCP (`org.apache.flume.source.NetcatSource`):
//! - Each line (`\n`-terminated, the `\n` not kept; a `\r` before it is kept, as in Flume) is
//!   an event. Lines that arrived together go to the channel as one batch (Flume puts each
//!   line in its own transaction), at most `batchSize` (sluice, default 100; keep it within
//!   the channel's `transactionCapacity`); with `ack-every-event` (default true) the client gets
//!   `OK\n` per line once the batch is committed, or `FAILED: <reason>\n` per line when the
//!   channel refused it (the lines are not kept: the client resends, as with Flume).
//! - A line longer than `max-line-length` (default 512, counting the newline) gets Flume's
//!   `FAILED: Event exceeds the maximum length (N chars, including newline)` and the
//!   connection is closed; what was committed before stays.
//! - Bounds (sluice): at most `max-connections` (default 1000) open connections, further ones
//!   are closed at once with a log line; `idle-timeout` (ms, default 0 = none) closes a
//!   connection that sends nothing for that long. Memory per connection is one line.
//! - Bodies that are not valid UTF-8 are kept as sent (Flume decodes and re-encodes them,
//!   replacing invalid bytes with U+FFFD).
//!
//! UDP (`org.apache.flume.source.NetcatUdpSource`): each datagram (up to 65535 bytes) is one
//! event whose body is the datagram up to its first `\n`; with `remoteAddressHeader` set, that
//! header holds the sender as `/ip:port` (Java's `SocketAddress.toString()`). A datagram the
//! channel refuses is dropped and counted (UDP has no way to push back), as in Flume.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::config::{ConfigError, MAX_BATCH, MAX_MILLIS, Props};
use crate::event::{Event, Headers};
use crate::pipeline::{
    BoxError, ChannelProcessor, EventDrivenSource, SourceContext, SourceError, SourceInstance,
    SourceSpec,
};

/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(200);
/// How often a repeated refusal (connection limit) is logged.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

fn bind_port(p: &Props, default_bind: Option<&str>) -> Result<(String, u16), ConfigError> {
    let bind = match default_bind {
        Some(d) => p.string("bind", d),
        None => p.required("bind")?,
    };
    if p.get("port").is_none() {
        return Err(p.error("port", "is required"));
    }
    let port = p.parse("port", 0u16, "a port number (0 to 65535)")?;
    Ok((bind, port))
}

/// `type = netcat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NetcatConfig {
    pub(crate) bind: String,
    pub(crate) port: u16,
    /// `max-line-length` (default 512): bytes per line, the newline included.
    pub(crate) max_line_length: usize,
    /// `ack-every-event` (default true).
    pub(crate) ack: bool,
    /// `max-connections` (sluice, default 1000).
    pub(crate) max_connections: usize,
    /// `idle-timeout` (sluice, ms, default 0 = none).
    pub(crate) idle_timeout: Option<Duration>,
    /// `batchSize` (sluice, default 100): lines that arrived together committed at most in
    /// one transaction; at most the channel's `transactionCapacity`.
    pub(crate) batch_size: usize,
}

impl NetcatConfig {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
        let (bind, port) = bind_port(p, None)?;
        let idle = p.millis("idle-timeout", 0, 0..=MAX_MILLIS)?;
        Ok(Self {
            bind,
            port,
            max_line_length: p.int("max-line-length", 512, 2..=64 << 20)?,
            ack: p.bool("ack-every-event", true)?,
            max_connections: p.int("max-connections", 1000, 1..=100_000)?,
            idle_timeout: (!idle.is_zero()).then_some(idle),
            batch_size: p.int("batchSize", 100, 1..=MAX_BATCH)?,
        })
    }
}

impl SourceSpec for NetcatConfig {
    fn build(&self, cx: &SourceContext) -> Result<SourceInstance, BoxError> {
        Ok(SourceInstance::Driven(Box::new(NetcatSource {
            name: cx.cx.name.clone(),
            config: self.clone(),
            threads: Threads::default(),
        })))
    }
}

/// `type = netcatudp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NetcatUdpConfig {
    pub(crate) bind: String,
    pub(crate) port: u16,
    /// `remoteAddressHeader`: the header holding the sender's address.
    pub(crate) remote_address_header: Option<String>,
}

impl NetcatUdpConfig {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
        let (bind, port) = bind_port(p, Some("0.0.0.0"))?;
        Ok(Self {
            bind,
            port,
            remote_address_header: p
                .get("remoteAddressHeader")
                .filter(|v| !v.is_empty())
                .map(str::to_string),
        })
    }
}

impl SourceSpec for NetcatUdpConfig {
    fn build(&self, cx: &SourceContext) -> Result<SourceInstance, BoxError> {
        Ok(SourceInstance::Driven(Box::new(NetcatUdpSource {
            name: cx.cx.name.clone(),
            config: self.clone(),
            threads: Threads::default(),
        })))
    }
}

/// A stop flag and the threads that watch it.
#[derive(Default)]
struct Threads {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Threads {
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: io::Error },
    #[error("cannot start a thread: {0}")]
    Thread(#[source] io::Error),
}

fn failed(name: &str, e: StartError) -> SourceError {
    SourceError::Failed {
        source_name: name.to_string(),
        cause: Arc::new(e),
    }
}

pub(crate) struct NetcatSource {
    name: String,
    config: NetcatConfig,
    threads: Threads,
}

struct Conn {
    name: String,
    config: NetcatConfig,
    processor: Arc<ChannelProcessor>,
    stop: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
    /// Connection threads still running, joined at stop.
    handles: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl EventDrivenSource for NetcatSource {
    fn start(&mut self, processor: Arc<ChannelProcessor>) -> Result<(), SourceError> {
        let addr = format!("{}:{}", self.config.bind, self.config.port);
        let listener = TcpListener::bind(&addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| {
                failed(
                    &self.name,
                    StartError::Listen {
                        addr: addr.clone(),
                        source,
                    },
                )
            })?;
        if let Ok(a) = listener.local_addr() {
            tracing::info!(source = %self.name, addr = %a, "Netcat source listening.");
        }
        let conn = Arc::new(Conn {
            name: self.name.clone(),
            config: self.config.clone(),
            processor,
            stop: self.threads.stop.clone(),
            active: Arc::new(AtomicUsize::new(0)),
            handles: Arc::default(),
        });
        let h = std::thread::Builder::new()
            .name(format!("netcat-{}", self.name))
            .spawn(move || accept_loop(&listener, &conn))
            .map_err(|e| failed(&self.name, StartError::Thread(e)))?;
        self.threads.handles.push(h);
        Ok(())
    }

    fn stop(&mut self) {
        self.threads.stop();
    }
}

fn accept_loop(listener: &TcpListener, conn: &Arc<Conn>) {
    let mut last_refusal_log: Option<Instant> = None;
    while !conn.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if conn.active.load(Ordering::SeqCst) >= conn.config.max_connections {
                    if last_refusal_log.is_none_or(|t| t.elapsed() >= LOG_INTERVAL) {
                        last_refusal_log = Some(Instant::now());
                        tracing::warn!(source = %conn.name, %peer,
                            limit = conn.config.max_connections,
                            "Netcat source: max-connections reached; connection closed.");
                    }
                    drop(stream);
                    continue;
                }
                conn.active.fetch_add(1, Ordering::SeqCst);
                let c = conn.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("netcat-{}-conn", conn.name))
                    .spawn(move || {
                        serve(&c, stream, peer);
                        c.active.fetch_sub(1, Ordering::SeqCst);
                    });
                match spawned {
                    Ok(h) => {
                        let mut hs = conn.handles.lock();
                        hs.retain(|h| !h.is_finished());
                        hs.push(h);
                    }
                    Err(e) => {
                        conn.active.fetch_sub(1, Ordering::SeqCst);
                        tracing::error!(source = %conn.name, error = %e,
                            "Netcat source: cannot start a connection thread.");
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL / 10),
            Err(e) => {
                tracing::warn!(source = %conn.name, error = %e, "Netcat source: accept failed.");
                std::thread::sleep(POLL);
            }
        }
    }
    let handles: Vec<JoinHandle<()>> = std::mem::take(&mut *conn.handles.lock());
    for h in handles {
        let _ = h.join();
    }
}

/// Serves one connection until EOF, an overlong line, an I/O error, idleness or stop.
fn serve(conn: &Conn, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(POLL));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut out = io::BufWriter::new(write_half);
    let max = conn.config.max_line_length;
    let mut reader = BufReader::with_capacity(max.clamp(4096, 1 << 20), stream);
    let mut line: Vec<u8> = Vec::new();
    let mut batch: Vec<Event> = Vec::new();
    let mut last_data = Instant::now();
    loop {
        if conn.stop.load(Ordering::SeqCst) {
            break;
        }
        // Take every complete line already buffered, then commit them together.
        let mut eof = false;
        let mut too_long = false;
        loop {
            let available = match reader.fill_buf() {
                Ok([]) => {
                    eof = true;
                    break;
                }
                Ok(b) => b,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    eof = true;
                    break;
                }
            };
            last_data = Instant::now();
            let (used, complete) = match available.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            let take = if complete { used - 1 } else { used };
            if line.len() + take + usize::from(complete) > max {
                too_long = true;
                break;
            }
            line.extend_from_slice(&available[..take]);
            reader.consume(used);
            if complete {
                batch.push(Event::with_headers(
                    Headers::new(),
                    Bytes::from(std::mem::take(&mut line)),
                ));
                if batch.len() >= conn.config.batch_size {
                    break;
                }
                // More lines only when they are already here (no waiting with a batch open).
                if reader.buffer().is_empty() {
                    break;
                }
            }
        }
        if !batch.is_empty() {
            let n = batch.len();
            let reply = match conn.processor.process_batch(std::mem::take(&mut batch)) {
                Ok(()) => conn.config.ack.then(|| "OK\n".repeat(n)),
                Err(e) => {
                    tracing::warn!(source = %conn.name, %peer, events = n, error = %e,
                        "Netcat source: the channel refused the lines; the client was told FAILED.");
                    Some(format!("FAILED: {e}\n").repeat(n))
                }
            };
            if let Some(r) = reply
                && (out.write_all(r.as_bytes()).is_err() || out.flush().is_err())
            {
                break;
            }
        }
        if too_long {
            tracing::warn!(source = %conn.name, %peer, max,
                "Netcat source: client sent a line exceeding max-line-length; connection closed.");
            let _ = out.write_all(
                format!(
                    "FAILED: Event exceeds the maximum length ({max} chars, including newline)\n"
                )
                .as_bytes(),
            );
            let _ = out.flush();
            break;
        }
        if eof {
            break;
        }
        if conn
            .config
            .idle_timeout
            .is_some_and(|t| last_data.elapsed() >= t)
        {
            tracing::info!(source = %conn.name, %peer, "Netcat source: idle connection closed.");
            break;
        }
    }
    // Drain unread input briefly so the close is a FIN, not a reset the client may see
    // before its last reply.
    let mut sink = [0u8; 4096];
    let _ = reader
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(50)));
    let _ = reader.get_mut().read(&mut sink);
}

pub(crate) struct NetcatUdpSource {
    name: String,
    config: NetcatUdpConfig,
    threads: Threads,
}

impl EventDrivenSource for NetcatUdpSource {
    fn start(&mut self, processor: Arc<ChannelProcessor>) -> Result<(), SourceError> {
        let addr = format!("{}:{}", self.config.bind, self.config.port);
        let socket = UdpSocket::bind(&addr)
            .and_then(|s| s.set_read_timeout(Some(POLL)).map(|()| s))
            .map_err(|source| {
                failed(
                    &self.name,
                    StartError::Listen {
                        addr: addr.clone(),
                        source,
                    },
                )
            })?;
        if let Ok(a) = socket.local_addr() {
            tracing::info!(source = %self.name, addr = %a, "Netcat UDP source listening.");
        }
        let stop = self.threads.stop.clone();
        let name = self.name.clone();
        let header = self.config.remote_address_header.clone();
        let h = std::thread::Builder::new()
            .name(format!("netcatudp-{}", self.name))
            .spawn(move || udp_loop(&name, &socket, header.as_deref(), &processor, &stop))
            .map_err(|e| failed(&self.name, StartError::Thread(e)))?;
        self.threads.handles.push(h);
        Ok(())
    }

    fn stop(&mut self) {
        self.threads.stop();
    }
}

fn udp_loop(
    name: &str,
    socket: &UdpSocket,
    header: Option<&str>,
    processor: &ChannelProcessor,
    stop: &AtomicBool,
) {
    receive_datagrams(
        name,
        "Netcat UDP source",
        socket,
        processor,
        stop,
        |data, peer| {
            let body = data
                .iter()
                .position(|b| *b == b'\n')
                .map_or(data, |i| &data[..i]);
            let mut headers = Headers::new();
            if let Some(h) = header {
                headers.insert(h, format!("/{peer}"));
            }
            Event::with_headers(headers, Bytes::copy_from_slice(body))
        },
    );
}

/// Receives datagrams until `stop`, making one event of each with `to_event` and putting it
/// alone into the channel; one the channel refuses is dropped and logged at most every 10 s
/// (UDP cannot push back). Shared by the netcat and syslog UDP sources.
pub(crate) fn receive_datagrams(
    name: &str,
    what: &str,
    socket: &UdpSocket,
    processor: &ChannelProcessor,
    stop: &AtomicBool,
    mut to_event: impl FnMut(&[u8], SocketAddr) -> Event,
) {
    let mut buf = vec![0u8; 65536];
    let mut last_log: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => {
                tracing::warn!(source = %name, error = %e, "{what}: receive failed.");
                std::thread::sleep(POLL);
                continue;
            }
        };
        let event = to_event(&buf[..n], peer);
        if let Err(e) = processor.process_batch(vec![event])
            && last_log.is_none_or(|t| t.elapsed() >= LOG_INTERVAL)
        {
            last_log = Some(Instant::now());
            tracing::warn!(source = %name, error = %e,
                "{what}: the channel refused a datagram; dropped (UDP cannot push back).");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_defaults_and_ranges() -> Result<(), ConfigError> {
        let c =
            NetcatConfig::from_props(&Props::from_pairs(&[("bind", "0.0.0.0"), ("port", "6666")]))?;
        assert_eq!(
            (c.max_line_length, c.ack, c.max_connections),
            (512, true, 1000)
        );
        assert_eq!(c.idle_timeout, None);
        let err = |pairs: &[(&str, &str)]| match NetcatConfig::from_props(&Props::from_pairs(pairs))
        {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        };
        assert!(err(&[("port", "1")]).contains("bind"));
        assert!(err(&[("bind", "x")]).contains("port"));
        assert!(err(&[("bind", "x"), ("port", "70000")]).contains("port"));
        assert!(
            err(&[("bind", "x"), ("port", "1"), ("max-line-length", "1")])
                .contains("max-line-length")
        );
        let u = NetcatUdpConfig::from_props(&Props::from_pairs(&[
            ("port", "5140"),
            ("remoteAddressHeader", "ip"),
        ]))?;
        assert_eq!(
            (u.bind.as_str(), u.remote_address_header.as_deref()),
            ("0.0.0.0", Some("ip"))
        );
        Ok(())
    }
}
