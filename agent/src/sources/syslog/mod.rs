//! Flume's syslog sources: `syslogtcp`, `multiport_syslogtcp` and `syslogudp`.
//!
//! Messages are parsed as Flume's `SyslogUtils` does ([`parse`]): `Facility`, `Severity`,
//! `priority`, `version`, `timestamp` (ms), `host` headers, `flume.syslog.status` for
//! Invalid / Incomplete messages, `keepFields`. TCP streams are split by newline (Flume) or
//! octet counting (RFC 6587, a sluice addition) ([`frame`]).
//!
//! Delivery: a TCP batch the channel refuses is retried (pauses growing to 1 s) before more is
//! read from that connection, so a full channel pushes back on the sender through TCP instead
//! of dropping messages (Flume drops them and logs). A UDP datagram the channel refuses is
//! dropped and logged (at most every 10 s), as in Flume.

mod frame;
mod parse;

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Local;
use parking_lot::Mutex;

use crate::config::{ConfigError, MAX_BATCH, MAX_MILLIS, Props};
use crate::event::Event;
use crate::pipeline::{
    BoxError, ChannelProcessor, EventDrivenSource, SourceContext, SourceError, SourceInstance,
    SourceSpec,
};

use super::netcat::receive_datagrams;
use frame::Framer;
use parse::KeepFields;

const POLL: Duration = Duration::from_millis(200);
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How a port's bytes become text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Charset {
    Utf8,
    Latin1,
}

impl Charset {
    fn parse(p: &Props, key: &str, v: &str) -> Result<Self, ConfigError> {
        match v.trim().to_ascii_uppercase().replace('_', "-").as_str() {
            "UTF-8" | "UTF8" | "US-ASCII" | "ASCII" => Ok(Self::Utf8),
            "ISO-8859-1" | "LATIN1" | "ISO8859-1" => Ok(Self::Latin1),
            other => Err(p.error(
                key,
                format!("`{other}`: sluice's syslog sources read UTF-8 (or ASCII) and ISO-8859-1"),
            )),
        }
    }

    fn decode(self, raw: Vec<u8>) -> Vec<u8> {
        match self {
            Self::Utf8 => raw,
            Self::Latin1 => raw
                .iter()
                .map(|b| char::from(*b))
                .collect::<String>()
                .into_bytes(),
        }
    }
}

/// What every syslog source reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Common {
    /// `eventSize` (default 2500, at least 10): bytes of one message.
    pub(crate) event_size: usize,
    /// `keepFields` (default false).
    pub(crate) keep: KeepFields,
    /// `clientIPHeader`: the header holding the sender's IP.
    pub(crate) client_ip_header: Option<String>,
    /// `batchSize` (default 100): messages committed at most per transaction.
    pub(crate) batch_size: usize,
}

fn optional(p: &Props, key: &str) -> Option<String> {
    p.get(key).filter(|v| !v.is_empty()).map(str::to_string)
}

impl Common {
    fn from_props(p: &Props) -> Result<Self, ConfigError> {
        if optional(p, "clientHostnameHeader").is_some() {
            return Err(p.error(
                "clientHostnameHeader",
                "is not supported by sluice (it does no reverse DNS lookups); use \
                 clientIPHeader",
            ));
        }
        Ok(Self {
            event_size: p.int("eventSize", 2500, 10..=64 << 20)?,
            keep: KeepFields::parse(&p.string("keepFields", "false")),
            client_ip_header: optional(p, "clientIPHeader"),
            batch_size: p.int("batchSize", 100, 1..=MAX_BATCH)?,
        })
    }
}

/// `syslogtcp` and `multiport_syslogtcp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SyslogTcpConfig {
    pub(crate) host: String,
    /// Ports with their charsets.
    pub(crate) ports: Vec<(u16, Charset)>,
    /// `portHeader` (multiport): the header holding the port a message came in on.
    pub(crate) port_header: Option<String>,
    pub(crate) common: Common,
    /// `max-connections` (sluice, default 1000, over all ports).
    pub(crate) max_connections: usize,
    /// `idle-timeout` (sluice, ms, default 0 = none).
    pub(crate) idle_timeout: Option<Duration>,
    /// `ssl` with `ssl.certificate` and `ssl.key` (PEM).
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
}

fn port(p: &Props, key: &str, v: &str) -> Result<u16, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| p.error(key, format!("`{v}` is not a port number (0 to 65535)")))
}

impl SyslogTcpConfig {
    fn base(p: &Props, ports: Vec<(u16, Charset)>) -> Result<Self, ConfigError> {
        let idle = p.millis("idle-timeout", 0, 0..=MAX_MILLIS)?;
        Ok(Self {
            host: p.string("host", "0.0.0.0"),
            ports,
            port_header: None,
            common: Common::from_props(p)?,
            max_connections: p.int("max-connections", 1000, 1..=100_000)?,
            idle_timeout: (!idle.is_zero()).then_some(idle),
            tls: if p.bool("ssl", false)? {
                // rustls offers TLS 1.2 and 1.3 with its own cipher suites.
                for k in [
                    "exclude-protocols",
                    "include-protocols",
                    "exclude-cipher-suites",
                    "include-cipher-suites",
                ] {
                    p.claim(k);
                }
                Some(p.server_pem()?)
            } else {
                None
            },
        })
    }

    pub(crate) fn single(p: &Props) -> Result<Self, ConfigError> {
        let v = p.required("port")?;
        let charset = Charset::parse(p, "charset.default", &p.string("charset.default", "UTF-8"))?;
        Self::base(p, vec![(port(p, "port", &v)?, charset)])
    }

    pub(crate) fn multiport(p: &Props) -> Result<Self, ConfigError> {
        let default = Charset::parse(p, "charset.default", &p.string("charset.default", "UTF-8"))?;
        let list = p.required("ports")?;
        let mut ports = Vec::new();
        for v in list.split_whitespace() {
            let n = port(p, "ports", v)?;
            let key = format!("charset.port.{n}");
            let cs = match p.get(&key) {
                Some(c) => Charset::parse(p, &key, c)?,
                None => default,
            };
            ports.push((n, cs));
        }
        p.claim("charset.port.");
        // Netty tuning keys of Flume's multiport source; no effect here.
        let _ = p.int("readBufferSize", 1024u64, 1..=u64::MAX)?;
        let _ = p.int("numProcessors", 1u64, 1..=u64::MAX)?;
        let mut c = Self::base(p, ports)?;
        c.port_header = optional(p, "portHeader");
        Ok(c)
    }
}

impl SourceSpec for SyslogTcpConfig {
    fn build(&self, cx: &SourceContext) -> Result<SourceInstance, BoxError> {
        Ok(SourceInstance::Driven(Box::new(SyslogTcpSource {
            name: cx.cx.name.clone(),
            config: self.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            handles: Vec::new(),
        })))
    }
}

/// `syslogudp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SyslogUdpConfig {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) common: Common,
}

impl SyslogUdpConfig {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
        if p.get("ssl").is_some() && p.bool("ssl", false)? {
            return Err(p.error(
                "ssl",
                "syslogudp has no TLS (as in Flume); use syslogtcp with ssl = true",
            ));
        }
        let v = p.required("port")?;
        Ok(Self {
            host: p.string("host", "0.0.0.0"),
            port: port(p, "port", &v)?,
            common: Common::from_props(p)?,
        })
    }
}

impl SourceSpec for SyslogUdpConfig {
    fn build(&self, cx: &SourceContext) -> Result<SourceInstance, BoxError> {
        Ok(SourceInstance::Driven(Box::new(SyslogUdpSource {
            name: cx.cx.name.clone(),
            config: self.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            handles: Vec::new(),
        })))
    }
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("ssl: {0}")]
    Tls(#[source] crate::avro::tls::TlsFileError),
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

fn listen_err(name: &str, addr: &str, source: io::Error) -> SourceError {
    failed(
        name,
        StartError::Listen {
            addr: addr.to_string(),
            source,
        },
    )
}

pub(crate) struct SyslogTcpSource {
    name: String,
    config: SyslogTcpConfig,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

struct Shared {
    name: String,
    config: SyslogTcpConfig,
    processor: Arc<ChannelProcessor>,
    stop: Arc<AtomicBool>,
    active: AtomicUsize,
    conns: Mutex<Vec<JoinHandle<()>>>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl EventDrivenSource for SyslogTcpSource {
    fn start(&mut self, processor: Arc<ChannelProcessor>) -> Result<(), SourceError> {
        let tls = match &self.config.tls {
            Some((cert, key)) => Some(
                crate::avro::tls::server_config(cert, key)
                    .map_err(|e| failed(&self.name, StartError::Tls(e)))?,
            ),
            None => None,
        };
        let mut listeners = Vec::new();
        for (port, charset) in &self.config.ports {
            let addr = format!("{}:{port}", self.config.host);
            let l = TcpListener::bind(&addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|e| listen_err(&self.name, &addr, e))?;
            if let Ok(a) = l.local_addr() {
                tracing::info!(source = %self.name, addr = %a, "Syslog TCP source listening.");
            }
            listeners.push((l, *port, *charset));
        }
        let shared = Arc::new(Shared {
            name: self.name.clone(),
            config: self.config.clone(),
            processor,
            stop: self.stop.clone(),
            active: AtomicUsize::new(0),
            conns: Mutex::new(Vec::new()),
            tls,
        });
        let s = shared.clone();
        let h = std::thread::Builder::new()
            .name(format!("syslog-{}", self.name))
            .spawn(move || accept_loop(&s, &listeners))
            .map_err(|e| failed(&self.name, StartError::Thread(e)))?;
        self.handles.push(h);
        Ok(())
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn accept_loop(s: &Arc<Shared>, listeners: &[(TcpListener, u16, Charset)]) {
    let mut last_log: Option<Instant> = None;
    while !s.stop.load(Ordering::SeqCst) {
        let mut idle = true;
        for (l, port, charset) in listeners {
            let (stream, peer) = match l.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    tracing::warn!(source = %s.name, error = %e, "Syslog source: accept failed.");
                    continue;
                }
            };
            idle = false;
            if s.active.load(Ordering::SeqCst) >= s.config.max_connections {
                if last_log.is_none_or(|t| t.elapsed() >= LOG_INTERVAL) {
                    last_log = Some(Instant::now());
                    tracing::warn!(source = %s.name, %peer, limit = s.config.max_connections,
                        "Syslog source: max-connections reached; connection closed.");
                }
                continue;
            }
            s.active.fetch_add(1, Ordering::SeqCst);
            let c = s.clone();
            let (port, charset) = (*port, *charset);
            match std::thread::Builder::new()
                .name(format!("syslog-{}-conn", s.name))
                .spawn(move || {
                    serve(&c, stream, peer, port, charset);
                    c.active.fetch_sub(1, Ordering::SeqCst);
                }) {
                Ok(h) => {
                    let mut hs = s.conns.lock();
                    hs.retain(|h| !h.is_finished());
                    hs.push(h);
                }
                Err(e) => {
                    s.active.fetch_sub(1, Ordering::SeqCst);
                    tracing::error!(source = %s.name, error = %e,
                        "Syslog source: cannot start a connection thread.");
                }
            }
        }
        if idle {
            std::thread::sleep(POLL / 10);
        }
    }
    let hs: Vec<JoinHandle<()>> = std::mem::take(&mut *s.conns.lock());
    for h in hs {
        let _ = h.join();
    }
}

/// The events of `messages`, with the per-connection headers.
fn events(
    common: &Common,
    messages: Vec<frame::Message>,
    charset: Charset,
    peer: &SocketAddr,
    port: Option<(&str, u16)>,
) -> Vec<Event> {
    let now = Local::now();
    messages
        .into_iter()
        .map(|(raw, cut)| {
            let mut e = parse::event(&charset.decode(raw), cut, &common.keep, now);
            if let Some(h) = &common.client_ip_header {
                e.headers.insert(h.as_str(), peer.ip().to_string());
            }
            if let Some((h, p)) = port {
                e.headers.insert(h, p.to_string());
            }
            e
        })
        .collect()
}

/// Hands `batch` to the channel, retrying while it is refused; false when stopped first.
fn deliver(s: &Shared, batch: Vec<Event>) -> bool {
    let mut pause = Duration::from_millis(10);
    let mut logged = false;
    loop {
        match s.processor.process_batch(batch.clone()) {
            Ok(()) => return true,
            Err(e) => {
                if !logged {
                    logged = true;
                    tracing::warn!(source = %s.name, events = batch.len(), error = %e,
                        "Syslog source: the channel refused a batch; retrying (the sender waits).");
                }
                if s.stop.load(Ordering::SeqCst) {
                    return false;
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

fn serve(s: &Shared, stream: TcpStream, peer: SocketAddr, port: u16, charset: Charset) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(POLL));
    // With TLS the handshake happens on the first reads; a client that never completes it is
    // closed like an idle one (idle-timeout) and counts against max-connections meanwhile.
    let mut stream: Box<dyn Read> = match &s.tls {
        None => Box::new(stream),
        Some(config) => match rustls::ServerConnection::new(config.clone()) {
            Ok(conn) => Box::new(rustls::StreamOwned::new(conn, stream)),
            Err(e) => {
                tracing::warn!(source = %s.name, %peer, error = %e,
                    "Syslog source: cannot start TLS; connection closed.");
                return;
            }
        },
    };
    let mut framer = Framer::new(s.config.common.event_size);
    let mut buf = vec![0u8; 64 << 10];
    let mut messages = Vec::new();
    let mut last_data = Instant::now();
    let port_header = s.config.port_header.as_deref().map(|h| (h, port));
    loop {
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        let eof = match stream.read(&mut buf) {
            Ok(0) => true,
            Ok(n) => {
                last_data = Instant::now();
                framer.feed(&buf[..n], &mut messages);
                false
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                false
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
            Err(e) => {
                if s.tls.is_some() {
                    tracing::info!(source = %s.name, %peer, error = %e,
                        "Syslog source: TLS connection failed; closed.");
                }
                true
            }
        };
        if eof {
            messages.extend(framer.finish());
        }
        while !messages.is_empty() {
            let n = messages.len().min(s.config.common.batch_size);
            let chunk: Vec<frame::Message> = messages.drain(..n).collect();
            let batch = events(&s.config.common, chunk, charset, &peer, port_header);
            if !deliver(s, batch) {
                return;
            }
        }
        if eof {
            return;
        }
        if s.config
            .idle_timeout
            .is_some_and(|t| last_data.elapsed() >= t)
        {
            tracing::info!(source = %s.name, %peer, "Syslog source: idle connection closed.");
            return;
        }
    }
}

pub(crate) struct SyslogUdpSource {
    name: String,
    config: SyslogUdpConfig,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl EventDrivenSource for SyslogUdpSource {
    fn start(&mut self, processor: Arc<ChannelProcessor>) -> Result<(), SourceError> {
        let addr = format!("{}:{}", self.config.host, self.config.port);
        let socket = UdpSocket::bind(&addr)
            .and_then(|s| s.set_read_timeout(Some(POLL)).map(|()| s))
            .map_err(|e| listen_err(&self.name, &addr, e))?;
        if let Ok(a) = socket.local_addr() {
            tracing::info!(source = %self.name, addr = %a, "Syslog UDP source listening.");
        }
        let (name, config, stop) = (self.name.clone(), self.config.clone(), self.stop.clone());
        let h = std::thread::Builder::new()
            .name(format!("syslogudp-{}", self.name))
            .spawn(move || udp_loop(&name, &config, &socket, &processor, &stop))
            .map_err(|e| failed(&self.name, StartError::Thread(e)))?;
        self.handles.push(h);
        Ok(())
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn udp_loop(
    name: &str,
    config: &SyslogUdpConfig,
    socket: &UdpSocket,
    processor: &ChannelProcessor,
    stop: &AtomicBool,
) {
    let what = "Syslog UDP source";
    receive_datagrams(name, what, socket, processor, stop, |data, peer| {
        let msg = frame::datagram(data, config.common.event_size);
        let mut batch = events(&config.common, vec![msg], Charset::Utf8, &peer, None);
        batch.pop().unwrap_or_else(|| Event::new(Vec::new()))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Props {
        Props::from_pairs(pairs)
    }

    #[test]
    fn keys_defaults_and_errors() -> Result<(), ConfigError> {
        let c = SyslogTcpConfig::single(&props(&[("host", "0.0.0.0"), ("port", "5140")]))?;
        assert_eq!(c.ports, vec![(5140, Charset::Utf8)]);
        assert_eq!((c.common.event_size, c.common.batch_size), (2500, 100));
        let m = SyslogTcpConfig::multiport(&props(&[
            ("host", "0.0.0.0"),
            ("ports", "10001 10002 10003"),
            ("portHeader", "port"),
            ("charset.port.10002", "ISO-8859-1"),
        ]))?;
        assert_eq!(m.ports[1], (10002, Charset::Latin1));
        assert_eq!(m.port_header.as_deref(), Some("port"));
        let err = |r: Result<SyslogTcpConfig, ConfigError>| {
            r.err().map(|e| e.to_string()).unwrap_or_default()
        };
        assert!(
            err(SyslogTcpConfig::single(&props(&[
                ("host", "h"),
                ("port", "x")
            ])))
            .contains("port")
        );
        assert!(
            err(SyslogTcpConfig::single(&props(&[
                ("host", "h"),
                ("port", "1"),
                ("eventSize", "5")
            ])))
            .contains("eventSize")
        );
        assert!(
            err(SyslogTcpConfig::single(&props(&[
                ("host", "h"),
                ("port", "1"),
                ("clientHostnameHeader", "hn")
            ])))
            .contains("reverse DNS")
        );
        assert!(
            err(SyslogTcpConfig::multiport(&props(&[
                ("host", "h"),
                ("ports", "1 2"),
                ("charset.port.2", "EBCDIC")
            ])))
            .contains("charset.port.2")
        );
        let u = SyslogUdpConfig::from_props(&props(&[
            ("host", "h"),
            ("port", "514"),
            ("keepFields", "true"),
        ]))?;
        assert!(u.common.keep.all);
        Ok(())
    }

    #[test]
    fn latin1_becomes_utf8() {
        assert_eq!(
            Charset::Latin1.decode(vec![b'<', 0xE9, b'>']),
            "<é>".as_bytes()
        );
    }
}
