//! An Avro RPC client for `AvroSourceProtocol`: used by the Avro sink and `sluice send`.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::decode::Reader;
use super::framing::{read_frame, write_frame};
use super::protocol::{
    HandshakeRequest, Match, PROTOCOL_JSON, ProtocolError, Status, protocol_hash, read_bool,
    read_error, read_handshake_response, read_meta, read_status, write_empty_meta, write_event,
    write_events, write_handshake_request, write_string,
};
use super::transport::{self, Writer};
use crate::event::Event;

/// Largest response accepted from a server.
const MAX_RESPONSE: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    pub host: String,
    pub port: u16,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// zlib level when `compression-type = deflate`.
    pub deflate: Option<u32>,
    /// TLS when `ssl = true`.
    pub tls: Option<TlsClient>,
}

/// `ssl = true` on the client side: trust `ssl.ca` (PEM), or everything with
/// `trust-all-certs = true`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsClient {
    pub ca: Option<std::path::PathBuf>,
    pub trust_all: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("cannot connect to {peer}: {message}")]
    Connect { peer: String, message: String },
    #[error("{peer}: {message}")]
    Io { peer: String, message: String },
    #[error("{peer}: protocol error: {message}")]
    Protocol { peer: String, message: String },
    #[error("{peer} answered {status:?}")]
    Refused { peer: String, status: Status },
    #[error("{peer} returned an error: {message}")]
    Remote { peer: String, message: String },
}

struct Connection {
    reader: transport::Reader,
    writer: Writer,
    stream: TcpStream,
    /// Handshake completed on this connection.
    established: bool,
    opened: Instant,
}

pub struct RpcClient {
    config: ClientConfig,
    peer: String,
    conn: Option<Connection>,
    serial: i32,
    /// The server's protocol hash once learned.
    server_hash: Option<[u8; 16]>,
    /// Send our protocol text with the handshake (after the server said NONE).
    send_protocol: bool,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl RpcClient {
    pub fn new(config: ClientConfig) -> Self {
        let peer = format!("{}:{}", config.host, config.port);
        Self {
            config,
            peer,
            conn: None,
            serial: 0,
            server_hash: None,
            send_protocol: false,
            tls: None,
        }
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Age of the current connection.
    pub fn connection_age(&self) -> Option<Duration> {
        self.conn.as_ref().map(|c| c.opened.elapsed())
    }

    pub fn close(&mut self) {
        if let Some(c) = self.conn.take() {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn io_err(&self, e: impl std::fmt::Display) -> RpcError {
        RpcError::Io {
            peer: self.peer.clone(),
            message: e.to_string(),
        }
    }

    fn proto_err(&self, e: ProtocolError) -> RpcError {
        RpcError::Protocol {
            peer: self.peer.clone(),
            message: e.0,
        }
    }

    /// Closes the connection if the server closed it (or sent something unasked) since the
    /// last reply, e.g. after its idle timeout: a request sent on it would fail. `true` if it
    /// was closed.
    pub fn close_if_closed_by_peer(&mut self) -> bool {
        let Some(c) = &self.conn else {
            return false;
        };
        let closed = c.stream.set_nonblocking(true).is_err() || {
            let mut b = [0u8; 1];
            let r = c.stream.peek(&mut b);
            let readable = !matches!(r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
            c.stream.set_nonblocking(false).is_err() || readable
        };
        if closed {
            self.close();
        }
        closed
    }

    /// Opens the TCP connection if needed (the handshake rides on the next request).
    pub fn connect(&mut self) -> Result<(), RpcError> {
        if self.conn.is_some() {
            return Ok(());
        }
        if let (Some(t), None) = (&self.config.tls, &self.tls) {
            let cfg = super::tls::client_config(t.ca.as_deref(), t.trust_all).map_err(|e| {
                RpcError::Connect {
                    peer: self.peer.clone(),
                    message: e.to_string(),
                }
            })?;
            self.tls = Some(cfg);
        }
        let addrs: Vec<SocketAddr> = (self.config.host.as_str(), self.config.port)
            .to_socket_addrs()
            .map_err(|e| RpcError::Connect {
                peer: self.peer.clone(),
                message: e.to_string(),
            })?
            .collect();
        let mut last = String::from("no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.config.connect_timeout) {
                Ok(stream) => {
                    let setup = (|| {
                        stream.set_nodelay(true)?;
                        stream.set_read_timeout(Some(self.config.request_timeout))?;
                        stream.set_write_timeout(Some(self.config.request_timeout))?;
                        let (r, w) = transport::split(&stream, self.config.deflate)?;
                        match &self.tls {
                            Some(cfg) => super::tls::connect(cfg, &self.config.host, r, w),
                            None => Ok((r, w)),
                        }
                    })();
                    let (reader, writer) = setup.map_err(|e| self.io_err(e))?;
                    self.conn = Some(Connection {
                        reader,
                        writer,
                        stream,
                        established: false,
                        opened: Instant::now(),
                    });
                    return Ok(());
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(RpcError::Connect {
            peer: self.peer.clone(),
            message: last,
        })
    }

    /// Sends `appendBatch(events)`; `Ok` only when the server answered OK.
    pub fn append_batch(&mut self, events: &[Event]) -> Result<(), RpcError> {
        let mut params = Vec::with_capacity(events.iter().map(|e| e.body.len() + 16).sum());
        write_events(&mut params, events).map_err(|e| self.proto_err(e))?;
        self.call("appendBatch", &params)
    }

    /// Sends `append(event)`.
    pub fn append(&mut self, event: &Event) -> Result<(), RpcError> {
        let mut params = Vec::new();
        write_event(&mut params, event).map_err(|e| self.proto_err(e))?;
        self.call("append", &params)
    }

    fn call(&mut self, message: &str, params: &[u8]) -> Result<(), RpcError> {
        let result = self.call_inner(message, params);
        if result.is_err() {
            // After any failure the stream state is unknown: start over on a new connection.
            self.close();
        }
        result
    }

    fn call_inner(&mut self, message: &str, params: &[u8]) -> Result<(), RpcError> {
        // At most two rounds: a NONE handshake is retried once with our protocol text.
        for _ in 0..2 {
            self.connect()?;
            let established = self.conn.as_ref().is_some_and(|c| c.established);
            let mut req = Vec::with_capacity(params.len() + 128);
            let handshake = !established;
            let build = (|| {
                if handshake {
                    write_handshake_request(
                        &mut req,
                        &HandshakeRequest {
                            client_hash: protocol_hash(),
                            client_protocol: self.send_protocol.then(|| PROTOCOL_JSON.to_string()),
                            server_hash: self.server_hash.unwrap_or_else(protocol_hash),
                        },
                    )?;
                }
                write_empty_meta(&mut req)?;
                write_string(&mut req, message)?;
                Ok::<(), ProtocolError>(())
            })();
            build.map_err(|e| self.proto_err(e))?;
            req.extend_from_slice(params);
            self.serial = self.serial.wrapping_add(1);
            let serial = self.serial;
            let Some(conn) = self.conn.as_mut() else {
                return Err(self.io_err("not connected"));
            };
            if let Err(e) = write_frame(&mut conn.writer, serial, &req) {
                return Err(self.io_err(format!("send failed: {e}")));
            }
            let frame = match read_frame(&mut conn.reader, MAX_RESPONSE) {
                Ok(f) => f,
                Err(e) => return Err(self.io_err(format!("no response: {e}"))),
            };
            if frame.serial != serial {
                return Err(RpcError::Protocol {
                    peer: self.peer.clone(),
                    message: format!("response serial {} for request {serial}", frame.serial),
                });
            }
            let mut r = Reader::new(frame.payload);
            if handshake {
                let hs = read_handshake_response(&mut r).map_err(|e| self.proto_err(e))?;
                if let Some(h) = hs.server_hash {
                    self.server_hash = Some(h);
                }
                if hs.matched == Match::None {
                    // The server does not know our protocol: resend it with the text.
                    self.send_protocol = true;
                    continue;
                }
                if let Some(c) = self.conn.as_mut() {
                    c.established = true;
                }
            }
            read_meta(&mut r).map_err(|e| self.proto_err(e))?;
            let is_error = read_bool(&mut r).map_err(|e| self.proto_err(e))?;
            if is_error {
                let message = read_error(&mut r).map_err(|e| self.proto_err(e))?;
                return Err(RpcError::Remote {
                    peer: self.peer.clone(),
                    message,
                });
            }
            let status = read_status(&mut r).map_err(|e| self.proto_err(e))?;
            return match status {
                Status::Ok => Ok(()),
                s => Err(RpcError::Refused {
                    peer: self.peer.clone(),
                    status: s,
                }),
            };
        }
        Err(RpcError::Protocol {
            peer: self.peer.clone(),
            message: "handshake failed: the server accepted neither protocol hash nor text".into(),
        })
    }
}
