//! A blocking `ThriftSourceProtocol` client (the thrift sink's), one call at a time as Flume's
//! ThriftRpcClient makes them: a framed request, then its framed reply.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::codec::{self, DecodeError, EncodeError, Protocol, Reply, Status};
use crate::avro::TlsFileError;
use crate::avro::client::TlsClient;
use crate::avro::transport::{self, Reader, Writer};
use crate::event::Event;

/// Largest reply accepted from a server (a reply is a few bytes).
const MAX_REPLY: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    pub host: String,
    pub port: u16,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub protocol: Protocol,
    /// TLS when `ssl = true`.
    pub tls: Option<TlsClient>,
}

/// A failed call; every variant names the peer.
#[derive(Debug, thiserror::Error)]
pub enum ThriftError {
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
    /// Setting up the connected socket (options, TLS) failed.
    #[error("{peer}: {source}")]
    Io {
        peer: String,
        #[source]
        source: io::Error,
    },
    #[error("{peer}: {source}")]
    Encode {
        peer: String,
        #[source]
        source: EncodeError,
    },
    #[error("{peer}: send failed: {source}")]
    Send {
        peer: String,
        #[source]
        source: io::Error,
    },
    #[error("{peer}: no reply: {source}")]
    Receive {
        peer: String,
        #[source]
        source: io::Error,
    },
    #[error("{peer}: protocol error: a reply frame of {len} bytes (more than {MAX_REPLY})")]
    ReplyTooLarge { peer: String, len: i64 },
    #[error("{peer}: protocol error: {source}")]
    Protocol {
        peer: String,
        #[source]
        source: DecodeError,
    },
    #[error("{peer}: not connected")]
    NotConnected { peer: String },
    #[error("{peer} answered {status:?}")]
    Refused { peer: String, status: Status },
    /// The server's `TApplicationException`.
    #[error("{peer} returned an error (type {kind}): {message}")]
    Remote {
        peer: String,
        message: String,
        kind: i32,
    },
}

struct Connection {
    reader: Reader,
    writer: Writer,
    stream: TcpStream,
    opened: Instant,
}

pub struct ThriftClient {
    config: ClientConfig,
    peer: String,
    conn: Option<Connection>,
    seqid: i32,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The request being written (kept to reuse its allocation).
    out: Vec<u8>,
}

impl ThriftClient {
    pub fn new(config: ClientConfig) -> Self {
        let peer = format!("{}:{}", config.host, config.port);
        Self {
            config,
            peer,
            conn: None,
            seqid: 0,
            tls: None,
            out: Vec::new(),
        }
    }

    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    pub(crate) fn connection_age(&self) -> Option<Duration> {
        self.conn.as_ref().map(|c| c.opened.elapsed())
    }

    pub(crate) fn close(&mut self) {
        if let Some(c) = self.conn.take() {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Closes the connection if the server closed it (or sent something unasked) since the
    /// last reply, e.g. after its idle timeout; `true` if it was closed.
    pub(crate) fn close_if_closed_by_peer(&mut self) -> bool {
        let Some(c) = &self.conn else {
            return false;
        };
        let closed = c.stream.set_nonblocking(true).is_err() || {
            let mut b = [0u8; 1];
            let r = c.stream.peek(&mut b);
            let readable = !matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock);
            c.stream.set_nonblocking(false).is_err() || readable
        };
        if closed {
            self.close();
        }
        closed
    }

    /// Opens the connection if needed.
    pub(crate) fn connect(&mut self) -> Result<(), ThriftError> {
        if self.conn.is_some() {
            return Ok(());
        }
        if let (Some(t), None) = (&self.config.tls, &self.tls) {
            let cfg = crate::avro::tls::client_config(t.ca.as_deref(), t.trust_all).map_err(
                |source| ThriftError::Tls {
                    peer: self.peer.clone(),
                    source,
                },
            )?;
            self.tls = Some(cfg);
        }
        let addrs: Vec<SocketAddr> = (self.config.host.as_str(), self.config.port)
            .to_socket_addrs()
            .map_err(|source| ThriftError::Connect {
                peer: self.peer.clone(),
                source,
            })?
            .collect();
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.config.connect_timeout) {
                Ok(stream) => {
                    let (reader, writer) =
                        self.set_up(&stream).map_err(|source| ThriftError::Io {
                            peer: self.peer.clone(),
                            source,
                        })?;
                    self.conn = Some(Connection {
                        reader,
                        writer,
                        stream,
                        opened: Instant::now(),
                    });
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        let peer = self.peer.clone();
        Err(match last {
            Some(source) => ThriftError::Connect { peer, source },
            None => ThriftError::NoAddress { peer },
        })
    }

    fn set_up(&self, stream: &TcpStream) -> io::Result<(Reader, Writer)> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(self.config.request_timeout))?;
        stream.set_write_timeout(Some(self.config.request_timeout))?;
        let (r, w) = transport::split(stream, None)?;
        match &self.tls {
            Some(cfg) => crate::avro::tls::connect(cfg, &self.config.host, r, w),
            None => Ok((r, w)),
        }
    }

    /// Sends `appendBatch(events)`; `Ok` only when the server answered OK.
    pub fn append_batch(&mut self, events: &[Event]) -> Result<(), ThriftError> {
        self.call(events, false)
    }

    /// Sends `append(event)`; `Ok` only when the server answered OK.
    pub fn append(&mut self, event: &Event) -> Result<(), ThriftError> {
        self.call(std::slice::from_ref(event), true)
    }

    fn call(&mut self, events: &[Event], single: bool) -> Result<(), ThriftError> {
        let result = self.call_inner(events, single);
        if !matches!(
            result,
            Ok(()) | Err(ThriftError::Refused { .. } | ThriftError::Remote { .. })
        ) {
            // The stream's state is unknown: start over on a new connection.
            self.close();
        }
        result
    }

    fn call_inner(&mut self, events: &[Event], single: bool) -> Result<(), ThriftError> {
        self.connect()?;
        self.seqid = self.seqid.wrapping_add(1);
        let seqid = self.seqid;
        let name = if single { "append" } else { "appendBatch" };
        self.out.clear();
        codec::encode_call(self.config.protocol, &mut self.out, seqid, events, single).map_err(
            |source| ThriftError::Encode {
                peer: self.peer.clone(),
                source,
            },
        )?;
        let peer = || self.peer.clone();
        let Some(conn) = self.conn.as_mut() else {
            return Err(ThriftError::NotConnected { peer: peer() });
        };
        conn.writer
            .write_all(&self.out)
            .and_then(|()| conn.writer.flush())
            .map_err(|source| ThriftError::Send {
                peer: peer(),
                source,
            })?;
        // Large requests are rare; do not keep their buffer.
        if self.out.capacity() > 4 << 20 {
            self.out = Vec::new();
        }
        let mut head = [0u8; 4];
        conn.reader
            .read_exact(&mut head)
            .map_err(|source| ThriftError::Receive {
                peer: peer(),
                source,
            })?;
        let len = match codec::frame_len(head) {
            Some(n) if n <= MAX_REPLY => n,
            _ => {
                return Err(ThriftError::ReplyTooLarge {
                    peer: peer(),
                    len: i64::from(i32::from_be_bytes(head)),
                });
            }
        };
        let mut body = vec![0u8; len];
        conn.reader
            .read_exact(&mut body)
            .map_err(|source| ThriftError::Receive {
                peer: peer(),
                source,
            })?;
        let reply = codec::decode_reply(self.config.protocol, &Bytes::from(body), name, seqid)
            .map_err(|source| ThriftError::Protocol {
                peer: peer(),
                source,
            })?;
        match reply {
            Reply::Status(Status::Ok) => Ok(()),
            Reply::Status(status) => Err(ThriftError::Refused {
                peer: peer(),
                status,
            }),
            Reply::Exception(message, kind) => Err(ThriftError::Remote {
                peer: peer(),
                message,
                kind,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;
    use std::net::TcpListener;

    use super::*;
    use crate::thrift::codec::{Call, decode_request, encode_reply};

    fn config(port: u16, protocol: Protocol) -> ClientConfig {
        ClientConfig {
            host: "127.0.0.1".into(),
            port,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(2),
            protocol,
            tls: None,
        }
    }

    /// Answers `n` requests with `status`, returning what they carried.
    fn server(
        listener: TcpListener,
        protocol: Protocol,
        status: Status,
        n: usize,
    ) -> std::thread::JoinHandle<Result<Vec<Call>, String>> {
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().map_err(|e| e.to_string())?;
            let mut calls = Vec::new();
            for _ in 0..n {
                let mut head = [0u8; 4];
                s.read_exact(&mut head).map_err(|e| e.to_string())?;
                let len = codec::frame_len(head).ok_or("negative frame")?;
                let mut body = vec![0; len];
                s.read_exact(&mut body).map_err(|e| e.to_string())?;
                let req = decode_request(protocol, &Bytes::from(body), 100, &mut |_| Ok(()))
                    .map_err(|e| e.to_string())?;
                let mut out = Vec::new();
                encode_reply(
                    protocol,
                    &mut out,
                    &req.header.name,
                    req.header.seqid,
                    status,
                )
                .map_err(|e| e.to_string())?;
                s.write_all(&out).map_err(|e| e.to_string())?;
                calls.push(req.call);
            }
            Ok(calls)
        })
    }

    #[test]
    fn calls_round_trip_with_both_protocols() -> Result<(), Box<dyn Error>> {
        for protocol in [Protocol::Compact, Protocol::Binary] {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let port = listener.local_addr()?.port();
            let srv = server(listener, protocol, Status::Ok, 2);
            let mut client = ThriftClient::new(config(port, protocol));
            let batch: Vec<Event> = (0..20)
                .map(|i| Event::with_headers([("n", i.to_string())].into_iter().collect(), "body"))
                .collect();
            client.append_batch(&batch)?;
            client.append(&Event::new("one"))?;
            let calls = srv.join().map_err(|_| "server panicked")??;
            assert_eq!(
                calls,
                vec![Call::AppendBatch(batch), Call::Append(Event::new("one"))]
            );
        }
        Ok(())
    }

    #[test]
    fn failed_is_a_refusal_and_keeps_the_connection() -> Result<(), Box<dyn Error>> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let srv = server(listener, Protocol::Compact, Status::Failed, 2);
        let mut client = ThriftClient::new(config(port, Protocol::Compact));
        for _ in 0..2 {
            let r = client.append_batch(&[Event::new("x")]);
            assert!(
                matches!(
                    r,
                    Err(ThriftError::Refused {
                        status: Status::Failed,
                        ..
                    })
                ),
                "{r:?}"
            );
            assert!(client.is_connected());
        }
        srv.join().map_err(|_| "server panicked")??;
        Ok(())
    }

    #[test]
    fn a_refused_connection_names_the_peer() -> Result<(), Box<dyn Error>> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut client = ThriftClient::new(config(port, Protocol::Binary));
        let Err(e) = client.append_batch(&[Event::new("x")]) else {
            return Err("sent to a closed port".into());
        };
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("cannot connect to 127.0.0.1:{port}: ")),
            "{text}"
        );
        assert!(e.source().is_some());
        Ok(())
    }
}
