//! An Avro RPC client for `AvroSourceProtocol`: used by the Avro sink and `sluice send`.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::decode::Reader;
use super::encode::EncodedEvents;
use super::framing::{Frame, FrameError, read_frame, write_frame_parts};
use super::protocol::{
    HandshakeRequest, Match, PROTOCOL_JSON, ProtocolError, Status, protocol_hash, read_bool,
    read_error, read_handshake_response, read_meta, read_status, write_empty_meta,
    write_handshake_request, write_string,
};
use super::tls::TlsFileError;
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

impl TlsClient {
    /// `ssl` with `ssl.ca` (PEM) or `trust-all-certs` of an RPC sink; `None` without `ssl`.
    /// Given a Java `truststore` instead, the error shows how to export its CA as PEM.
    pub(crate) fn from_props(
        p: &crate::config::Props,
    ) -> Result<Option<Self>, crate::config::ConfigError> {
        if !p.bool("ssl", false)? {
            return Ok(None);
        }
        let trust_all = p.bool("trust-all-certs", false)?;
        let ca = p
            .get("ssl.ca")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from);
        if ca.is_none() && !trust_all {
            let hint = if p.get("truststore").is_some() {
                "; sluice reads PEM, not Java truststores: export the CA with `keytool \
                 -exportcert -rfc -keystore truststore.jks -alias <ca> -file ca.pem`"
            } else {
                ""
            };
            return Err(p.error(
                "ssl.ca",
                format!("ssl = true needs ssl.ca (a PEM CA file) or trust-all-certs = true{hint}"),
            ));
        }
        p.claim("truststore");
        Ok(Some(Self { ca, trust_all }))
    }
}

/// A failed call; every variant names the peer.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("cannot connect to {peer}: {source}")]
    Tls {
        peer: String,
        #[source]
        source: TlsFileError,
    },
    #[error("cannot connect to {peer}: {source}")]
    Connect {
        peer: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot connect to {peer}: no address")]
    NoAddress { peer: String },
    /// Setting up the connected socket (options, zlib, TLS) failed.
    #[error("{peer}: {source}")]
    Io {
        peer: String,
        #[source]
        source: io::Error,
    },
    #[error("{peer}: send failed: {source}")]
    Send {
        peer: String,
        #[source]
        source: io::Error,
    },
    #[error("{peer}: no response: {source}")]
    Receive {
        peer: String,
        #[source]
        source: FrameError,
    },
    #[error("{peer}: not connected")]
    NotConnected { peer: String },
    #[error("{peer}: protocol error: {}", .source.0)]
    Protocol {
        peer: String,
        #[source]
        source: ProtocolError,
    },
    #[error("{peer}: protocol error: response serial {got} for request {sent}")]
    Serial { peer: String, got: i32, sent: i32 },
    #[error(
        "{peer}: protocol error: handshake failed: the server accepted neither protocol hash nor \
         text"
    )]
    Handshake { peer: String },
    #[error("{peer} answered {status:?}")]
    Refused { peer: String, status: Status },
    /// The server's own error text.
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
    /// Serials of pipelined requests whose answer was not claimed yet, with the answer once
    /// it arrived (a server may answer out of order: Flume's runs requests on a thread pool).
    in_flight: HashMap<i32, Option<Result<(), RpcError>>>,
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
            in_flight: HashMap::new(),
            server_hash: None,
            send_protocol: false,
            tls: None,
        }
    }

    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Age of the current connection.
    pub(crate) fn connection_age(&self) -> Option<Duration> {
        self.conn.as_ref().map(|c| c.opened.elapsed())
    }

    pub(crate) fn close(&mut self) {
        self.in_flight.clear();
        if let Some(c) = self.conn.take() {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn proto_err(&self, source: ProtocolError) -> RpcError {
        RpcError::Protocol {
            peer: self.peer.clone(),
            source,
        }
    }

    /// Closes the connection if the server closed it (or sent something unasked) since the
    /// last reply, e.g. after its idle timeout: a request sent on it would fail. `true` if it
    /// was closed.
    pub(crate) fn close_if_closed_by_peer(&mut self) -> bool {
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
    pub(crate) fn connect(&mut self) -> Result<(), RpcError> {
        if self.conn.is_some() {
            return Ok(());
        }
        if let (Some(t), None) = (&self.config.tls, &self.tls) {
            let cfg =
                super::tls::client_config(t.ca.as_deref(), t.trust_all).map_err(|source| {
                    RpcError::Tls {
                        peer: self.peer.clone(),
                        source,
                    }
                })?;
            self.tls = Some(cfg);
        }
        let addrs: Vec<SocketAddr> = (self.config.host.as_str(), self.config.port)
            .to_socket_addrs()
            .map_err(|source| RpcError::Connect {
                peer: self.peer.clone(),
                source,
            })?
            .collect();
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.config.connect_timeout) {
                Ok(stream) => {
                    let (reader, writer) = self.set_up(&stream).map_err(|source| RpcError::Io {
                        peer: self.peer.clone(),
                        source,
                    })?;
                    self.conn = Some(Connection {
                        reader,
                        writer,
                        stream,
                        established: false,
                        opened: Instant::now(),
                    });
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        let peer = self.peer.clone();
        Err(match last {
            Some(source) => RpcError::Connect { peer, source },
            None => RpcError::NoAddress { peer },
        })
    }

    /// Socket options, then the optional zlib stream, then the optional TLS session.
    fn set_up(&self, stream: &TcpStream) -> io::Result<(transport::Reader, Writer)> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(self.config.request_timeout))?;
        stream.set_write_timeout(Some(self.config.request_timeout))?;
        let (r, w) = transport::split(stream, self.config.deflate)?;
        match &self.tls {
            Some(cfg) => super::tls::connect(cfg, &self.config.host, r, w),
            None => Ok((r, w)),
        }
    }

    /// Whether the handshake is done on the current connection: only then may requests be
    /// pipelined ([`Self::send_batch`]).
    pub(crate) fn is_established(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.established)
    }

    /// Requests sent with [`Self::send_batch`] whose answer was not read yet.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Sends `appendBatch(events)` on an established connection without waiting for the
    /// answer, and returns its serial; [`Self::receive`] reads the answers in the order of the
    /// sends. Avro's transport matches answers to requests by serial, and servers may answer
    /// out of order (Flume's does), so an answer that comes early is kept until claimed. A
    /// failure to send or receive closes the connection, and with it every request in flight.
    pub(crate) fn send_batch(&mut self, events: &[Event]) -> Result<i32, RpcError> {
        let result = if self.is_established() {
            let encoded = EncodedEvents::new(events);
            self.request_head(false, "appendBatch")
                .map_err(|e| self.proto_err(e))
                .and_then(|head| self.send_frame(&head, &encoded.slices()))
        } else {
            Err(RpcError::NotConnected {
                peer: self.peer.clone(),
            })
        };
        match result {
            Ok(serial) => {
                self.in_flight.insert(serial, None);
                Ok(serial)
            }
            Err(e) => {
                self.close();
                Err(e)
            }
        }
    }

    /// The answer to the pipelined request `serial`: `Ok` only when it is OK. Reads frames
    /// until that one arrives, keeping the answers to other requests in flight. A refusal
    /// (`FAILED`, or the server's error) fails that batch only; a broken or confused stream
    /// closes the connection.
    pub(crate) fn receive(&mut self, serial: i32) -> Result<(), RpcError> {
        loop {
            match self.in_flight.get_mut(&serial) {
                None => {
                    return Err(RpcError::NotConnected {
                        peer: self.peer.clone(),
                    });
                }
                Some(answer @ Some(_)) => {
                    let result = answer.take().unwrap_or(Ok(()));
                    self.in_flight.remove(&serial);
                    return result;
                }
                Some(None) => {}
            }
            let (got, answer) = match self.receive_any() {
                Ok(a) => a,
                Err(e) => {
                    self.close();
                    return Err(e);
                }
            };
            match self.in_flight.get_mut(&got) {
                Some(slot @ None) => *slot = Some(answer),
                _ => {
                    self.close();
                    return Err(RpcError::Serial {
                        peer: self.peer.clone(),
                        got,
                        sent: serial,
                    });
                }
            }
        }
    }

    /// Reads one answer frame: its serial and what it says (`Err` only for a refusal or the
    /// server's error; a stream failure is the outer `Err`).
    fn receive_any(&mut self) -> Result<(i32, Result<(), RpcError>), RpcError> {
        let frame = self.next_frame()?;
        let answer = self.read_reply(&mut Reader::new(frame.payload));
        match answer {
            Err(e @ (RpcError::Refused { .. } | RpcError::Remote { .. })) => {
                Ok((frame.serial, Err(e)))
            }
            Err(e) => Err(e),
            Ok(()) => Ok((frame.serial, Ok(()))),
        }
    }

    /// Sends `appendBatch(events)`; `Ok` only when the server answered OK.
    pub fn append_batch(&mut self, events: &[Event]) -> Result<(), RpcError> {
        let encoded = EncodedEvents::new(events);
        self.call("appendBatch", &encoded.slices())
    }

    /// Calls `message` with `params`, the parameters' encoding in pieces (written as they
    /// are, with vectored I/O).
    fn call(&mut self, message: &str, params: &[&[u8]]) -> Result<(), RpcError> {
        let result = self.call_inner(message, params);
        if result.is_err() {
            // After any failure the stream state is unknown: start over on a new connection.
            self.close();
        }
        result
    }

    fn call_inner(&mut self, message: &str, params: &[&[u8]]) -> Result<(), RpcError> {
        // At most two rounds: a NONE handshake is retried once with our protocol text.
        for _ in 0..2 {
            self.connect()?;
            let handshake = !self.conn.as_ref().is_some_and(|c| c.established);
            let head = self
                .request_head(handshake, message)
                .map_err(|e| self.proto_err(e))?;
            let frame = self.exchange(&head, params)?;
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
            return self.read_reply(&mut r);
        }
        Err(RpcError::Handshake {
            peer: self.peer.clone(),
        })
    }

    /// A request payload up to the parameters: the handshake if the connection has none yet,
    /// then the call's metadata and message name.
    fn request_head(&self, handshake: bool, message: &str) -> Result<Vec<u8>, ProtocolError> {
        let mut req = Vec::with_capacity(128);
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
        Ok(req)
    }

    /// Sends one request frame (`head` then `params`) and reads the frame answering it.
    fn exchange(&mut self, head: &[u8], params: &[&[u8]]) -> Result<Frame, RpcError> {
        let serial = self.send_frame(head, params)?;
        self.receive_frame(serial)
    }

    /// Writes one request frame under a new serial.
    fn send_frame(&mut self, head: &[u8], params: &[&[u8]]) -> Result<i32, RpcError> {
        self.serial = self.serial.wrapping_add(1);
        let serial = self.serial;
        let peer = || self.peer.clone();
        let Some(conn) = self.conn.as_mut() else {
            return Err(RpcError::NotConnected { peer: peer() });
        };
        write_frame_parts(&mut conn.writer, serial, head, params).map_err(|source| {
            RpcError::Send {
                peer: peer(),
                source,
            }
        })?;
        Ok(serial)
    }

    /// Reads the next frame the server sent.
    fn next_frame(&mut self) -> Result<Frame, RpcError> {
        let peer = || self.peer.clone();
        let Some(conn) = self.conn.as_mut() else {
            return Err(RpcError::NotConnected { peer: peer() });
        };
        read_frame(&mut conn.reader, MAX_RESPONSE).map_err(|source| RpcError::Receive {
            peer: peer(),
            source,
        })
    }

    /// Reads the next frame, which must answer `serial` (the only request on the connection).
    fn receive_frame(&mut self, serial: i32) -> Result<Frame, RpcError> {
        let frame = self.next_frame()?;
        if frame.serial != serial {
            return Err(RpcError::Serial {
                peer: self.peer.clone(),
                got: frame.serial,
                sent: serial,
            });
        }
        Ok(frame)
    }

    /// The call's response after the handshake: metadata, error flag, then status or error.
    fn read_reply(&self, r: &mut Reader) -> Result<(), RpcError> {
        read_meta(r).map_err(|e| self.proto_err(e))?;
        let is_error = read_bool(r).map_err(|e| self.proto_err(e))?;
        if is_error {
            let message = read_error(r).map_err(|e| self.proto_err(e))?;
            return Err(RpcError::Remote {
                peer: self.peer.clone(),
                message,
            });
        }
        match read_status(r).map_err(|e| self.proto_err(e))? {
            Status::Ok => Ok(()),
            s => Err(RpcError::Refused {
                peer: self.peer.clone(),
                status: s,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn a_refused_connection_keeps_its_io_error_and_names_the_peer() -> Result<(), Box<dyn Error>> {
        // A port that was just free: nothing listens on it once the listener is dropped.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut client = RpcClient::new(ClientConfig {
            host: "127.0.0.1".into(),
            port,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(2),
            deflate: None,
            tls: None,
        });
        let Err(e) = client.append_batch(&[Event::new("x")]) else {
            return Err("sent to a closed port".into());
        };
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("cannot connect to 127.0.0.1:{port}: ")),
            "{text}"
        );
        let io = e.source().and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(
            io.map(io::Error::kind),
            Some(io::ErrorKind::ConnectionRefused)
        );
        Ok(())
    }
}
