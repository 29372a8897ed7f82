//! `avro`: Flume's AvroSource. Listens for `AvroSourceProtocol` clients (Flume's AvroSink,
//! `flume-ng avro-client`, the Flume RPC SDK, `sluice send`) and answers OK only after the
//! batch is committed to every required channel; FAILED makes the client retry.
//!
//! Each connection gets its own thread (at most `threads` at once; further clients wait in the
//! accept backlog). A connection that sends garbage, a truncated or oversized frame, or a bad
//! handshake is closed with a logged reason; other connections are unaffected.

use std::collections::{HashMap, HashSet};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use regex::Regex;

use super::{EventDrivenSource, SourceError};
use crate::avro::decode::Reader;
use crate::avro::framing::{FrameError, read_frame, write_frame};
use crate::avro::protocol::{
    HandshakeResponse, Match, PROTOCOL_JSON, ProtocolError, Status, protocol_hash, read_event,
    read_events, read_handshake_request, read_meta, read_string, write_bool, write_empty_meta,
    write_error, write_handshake_response, write_status,
};
use crate::avro::transport;
use crate::channels::processor::ChannelProcessor;
use crate::config::{ConfigError, MAX_BATCH, Props};

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
    /// `threads`: concurrent connections served, 0 = unlimited (default 0).
    pub threads: usize,
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
        Ok(Self {
            bind: p.required("bind")?,
            port: p.parse("port", 0u16, "a TCP port number").and_then(|v| {
                if p.get("port").is_none() {
                    Err(p.error("port", "is required"))
                } else {
                    Ok(v)
                }
            })?,
            threads: p.int("threads", 0, 0..=10_000)?,
            deflate,
            ip_rules,
            max_message_bytes: p.int("max-message-bytes", 64 << 20, 1..=1 << 30)?,
            max_batch_events: p.int("max-batch-events", 100_000, 1..=MAX_BATCH)?,
            tls,
        })
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

/// State shared by the acceptor and connection threads.
struct Shared {
    name: String,
    config: AvroSourceConfig,
    processor: Arc<ChannelProcessor>,
    stop: AtomicBool,
    active: AtomicUsize,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Clones of open sockets, shut down on stop to unblock their threads.
    sockets: Mutex<HashMap<u64, TcpStream>>,
    /// Client protocol hashes learned from handshakes.
    known_protocols: Mutex<HashSet<[u8; 16]>>,
}

pub struct AvroSource {
    name: String,
    config: AvroSourceConfig,
    shared: Option<Arc<Shared>>,
    acceptor: Option<JoinHandle<()>>,
    /// The bound address (useful with port 0).
    pub local_addr: Option<SocketAddr>,
}

impl AvroSource {
    pub fn new(name: &str, config: AvroSourceConfig) -> Self {
        Self {
            name: name.to_string(),
            config,
            shared: None,
            acceptor: None,
            local_addr: None,
        }
    }
}

impl EventDrivenSource for AvroSource {
    fn start(&mut self, processor: Arc<ChannelProcessor>) -> Result<(), SourceError> {
        let tls = match &self.config.tls {
            Some(t) => Some(
                crate::avro::tls::server_config(&t.certificate, &t.key).map_err(|e| {
                    SourceError::Other {
                        source_name: self.name.clone(),
                        message: format!("ssl: {e}"),
                    }
                })?,
            ),
            None => None,
        };
        let addr = format!("{}:{}", self.config.bind, self.config.port);
        let listener = TcpListener::bind(&addr).map_err(|e| SourceError::Other {
            source_name: self.name.clone(),
            message: format!("cannot listen on {addr}: {e}"),
        })?;
        let setup = listener
            .set_nonblocking(true)
            .and_then(|_| listener.local_addr());
        let local = setup.map_err(|e| SourceError::Other {
            source_name: self.name.clone(),
            message: format!("listener on {addr}: {e}"),
        })?;
        self.local_addr = Some(local);
        tracing::info!(source = %self.name, addr = %local, "Avro source listening.");
        let shared = Arc::new(Shared {
            name: self.name.clone(),
            config: self.config.clone(),
            processor,
            stop: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            tls,
            sockets: Mutex::new(HashMap::new()),
            known_protocols: Mutex::new(HashSet::new()),
        });
        let s = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name(format!("avro-accept-{}", self.name))
            .spawn(move || accept_loop(&s, &listener))
            .map_err(|e| SourceError::Other {
                source_name: self.name.clone(),
                message: format!("cannot start thread: {e}"),
            })?;
        self.shared = Some(shared);
        self.acceptor = Some(acceptor);
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(s) = self.shared.take() {
            s.stop.store(true, Ordering::SeqCst);
            for (_, sock) in s.sockets.lock().drain() {
                let _ = sock.shutdown(std::net::Shutdown::Both);
            }
            // Wait for connection threads so no batch is half-processed after stop returns.
            for _ in 0..500 {
                if s.active.load(Ordering::SeqCst) == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            s.processor.counters().stopped();
        }
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

impl Drop for AvroSource {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    let mut next_id = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        let max = shared.config.threads;
        if max > 0 && shared.active.load(Ordering::SeqCst) >= max {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        match listener.accept() {
            Ok((stream, peer)) => {
                if !shared.config.allowed(peer.ip()) {
                    tracing::warn!(source = %shared.name, %peer, "Connection refused by ipFilterRules.");
                    continue;
                }
                next_id += 1;
                let id = next_id;
                if let Ok(clone) = stream.try_clone() {
                    shared.sockets.lock().insert(id, clone);
                }
                shared.active.fetch_add(1, Ordering::SeqCst);
                shared
                    .processor
                    .counters()
                    .open_connection
                    .fetch_add(1, Ordering::Relaxed);
                let s = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("avro-conn-{}", shared.name))
                    .spawn(move || {
                        if let Err(reason) = serve(&s, &stream) {
                            tracing::warn!(source = %s.name, %peer, %reason, "Closing Avro connection.");
                        } else {
                            tracing::debug!(source = %s.name, %peer, "Avro client disconnected.");
                        }
                        let _ = stream.shutdown(std::net::Shutdown::Both);
                        s.sockets.lock().remove(&id);
                        s.processor.counters().open_connection.fetch_sub(1, Ordering::Relaxed);
                        s.active.fetch_sub(1, Ordering::SeqCst);
                    });
                if let Err(e) = spawned {
                    tracing::error!(source = %shared.name, error = %e, "Cannot start a connection thread.");
                    shared.sockets.lock().remove(&id);
                    shared.active.fetch_sub(1, Ordering::SeqCst);
                    shared
                        .processor
                        .counters()
                        .open_connection
                        .fetch_sub(1, Ordering::Relaxed);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::warn!(source = %shared.name, error = %e, "Accept failed.");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Serves one connection until it closes; `Err` carries the reason to log.
fn serve(shared: &Shared, stream: &TcpStream) -> Result<(), String> {
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let level = shared.config.deflate.then_some(6);
    let (reader, writer) = transport::split(stream, level).map_err(|e| e.to_string())?;
    let (mut reader, mut writer) = match &shared.tls {
        Some(cfg) => crate::avro::tls::accept(cfg, reader, writer).map_err(|e| e.to_string())?,
        None => (reader, writer),
    };
    let mut established = false;
    loop {
        let frame = match read_frame(&mut reader, shared.config.max_message_bytes) {
            Ok(f) => f,
            Err(FrameError::Closed) => return Ok(()),
            Err(e) if shared.stop.load(Ordering::SeqCst) => return Err(format!("stopping ({e})")),
            Err(e) => return Err(e.to_string()),
        };
        let reply = respond(shared, frame.payload, &mut established)
            .map_err(|e| format!("malformed request: {}", e.0))?;
        write_frame(&mut writer, frame.serial, &reply).map_err(|e| format!("send failed: {e}"))?;
    }
}

/// Builds the response to one request payload.
fn respond(
    shared: &Shared,
    payload: Vec<u8>,
    established: &mut bool,
) -> Result<Vec<u8>, ProtocolError> {
    let mut r = Reader::new(payload);
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
                if ok {
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
    let message = read_string(&mut r)?;
    let counters = shared.processor.counters();
    let events = match message.as_str() {
        // A handshake-only "ping".
        "" => return Ok(out),
        "appendBatch" => read_events(&mut r, shared.config.max_batch_events)?,
        "append" => {
            counters.append_received.fetch_add(1, Ordering::Relaxed);
            vec![read_event(&mut r)?]
        }
        other => {
            write_empty_meta(&mut out)?;
            write_bool(&mut out, true)?;
            write_error(&mut out, &format!("unknown message `{other}`"))?;
            return Ok(out);
        }
    };
    let single = message == "append";
    let status = match shared.processor.process_batch(events) {
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
    };
    write_empty_meta(&mut out)?;
    write_bool(&mut out, false)?;
    write_status(&mut out, status)?;
    Ok(out)
}
