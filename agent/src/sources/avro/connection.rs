use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::avro::framing::{ChunkedFrame, Feed, FrameDecoder, write_frame};
use crate::avro::server_io::ServerIo;

use super::budget::Held;
use super::request::respond;
use super::source::{Open, Shared};

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

pub(super) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(shared.config.max_connections));
    let mut warned: Option<Instant> = None;
    loop {
        let Some(slot) = connection_slot(&shared, &slots, &mut warned, &mut stop).await else {
            return;
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
        let stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _open = open;
            connection(s, sock, peer, stop).await;
        });
    }
}

/// A connection slot: at once, or once a connection closes (warning at most once a minute
/// that clients wait); `None` when the source stops.
async fn connection_slot(
    shared: &Shared,
    slots: &Arc<Semaphore>,
    warned: &mut Option<Instant>,
    stop: &mut watch::Receiver<bool>,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(s) = slots.clone().try_acquire_owned() {
        return Some(s);
    }
    if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
        tracing::warn!(
            source = %shared.name,
            max_connections = shared.config.max_connections,
            "All connections in use; new clients wait in the accept backlog."
        );
        *warned = Some(Instant::now());
    }
    tokio::select! {
        s = slots.clone().acquire_owned() => s.ok(),
        () = stopped(stop) => None,
    }
}

/// One client connection, from TLS set-up to close; logs why it closed.
async fn connection(
    s: Arc<Shared>,
    sock: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
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
                    if let Err(c) = answer(shared, io, frame, charge, &mut established, stop).await
                    {
                        return c;
                    }
                }
            }
        }
        // No read buffer is kept across waits: a connection waiting for its client (between
        // requests or stalled in one) holds only its frame's budgeted chunks.
        buf = Vec::new();
        io.release_buffers();
        let (idle, received) = (decoder.is_idle(), decoder.received());
        let plain = io.is_plain();
        let read = match decoder.spare_payload() {
            // Payload bytes go from the socket straight into the frame's (budgeted) chunk;
            // an empty `buf` then lets the decoder say what follows.
            Some((chunk, max)) if plain => {
                let before = chunk.len();
                let r = read_more(shared, io, (idle, received), Dst::Spare(chunk, max), stop).await;
                let n = chunk.len() - before;
                decoder.filled(n);
                r
            }
            _ => read_more(shared, io, (idle, received), Dst::Buf(&mut buf), stop).await,
        };
        if let Err(c) = read {
            return c;
        }
        if buf.is_empty() {
            // After a direct read: a completed frame comes out of an empty feed.
            match decoder.feed(&[]) {
                Ok(Feed::Frame { frame, .. }) => {
                    let charge = std::mem::replace(&mut held, Held::new(shared));
                    if let Err(c) = answer(shared, io, frame, charge, &mut established, stop).await
                    {
                        return c;
                    }
                }
                Ok(_) => {}
                Err(e) => return Close::Error(e.to_string()),
            }
        }
    }
}

/// Processes one received request and writes its reply.
async fn answer(
    shared: &Arc<Shared>,
    io: &mut ServerIo,
    frame: ChunkedFrame,
    charge: Held,
    established: &mut bool,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Close> {
    let reply = process(shared, frame.chunks, charge, established, stop).await?;
    send_reply(shared, io, frame.serial, &reply).await
}

/// Writes one reply frame, within `read-timeout`.
async fn send_reply(
    shared: &Shared,
    io: &mut ServerIo,
    serial: i32,
    reply: &[u8],
) -> Result<(), Close> {
    let cfg = &shared.config;
    let mut out = Vec::with_capacity(reply.len() + 12);
    if let Err(e) = write_frame(&mut out, serial, reply) {
        return Err(Close::Error(format!("reply: {e}")));
    }
    match tokio::time::timeout(cfg.read_timeout, io.write(&out)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Close::Error(format!("send failed: {e}"))),
        Err(_) => Err(Close::Error(format!(
            "the client did not take its reply within {} ms (read-timeout)",
            cfg.read_timeout.as_millis()
        ))),
    }
}

/// Where [`read_more`] puts what it reads.
enum Dst<'a> {
    /// Appended to a read buffer (at most [`crate::avro::server_io::CHUNK`] bytes).
    Buf(&'a mut Vec<u8>),
    /// At most this many bytes into the spare capacity of the frame's chunk (plain only).
    Spare(&'a mut Vec<u8>, usize),
}

/// Reads what the client sent next into `dst`: between requests within `idle-timeout`, inside
/// one within `read-timeout`. The pair is the decoder's state: between frames, and the payload
/// bytes of the current frame received. `Err` says why the connection closes.
async fn read_more(
    shared: &Shared,
    io: &mut ServerIo,
    (between_frames, received): (bool, usize),
    dst: Dst<'_>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Close> {
    let cfg = &shared.config;
    let idle = between_frames && !io.is_handshaking();
    let limit = if idle {
        cfg.idle_timeout
    } else {
        Some(cfg.read_timeout)
    };
    let read = tokio::select! {
        r = within(limit, async {
            match dst {
                Dst::Buf(buf) => io.read(buf).await,
                Dst::Spare(chunk, max) => io.read_into_spare(chunk, max).await,
            }
        }) => r,
        () = stopped(stop) => return Err(Close::Stopping),
    };
    match read {
        Some(Ok(0)) if between_frames => Err(Close::Clean),
        Some(Ok(0)) => Err(Close::Error(format!(
            "connection closed mid-frame ({received} payload bytes received)"
        ))),
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) if e.kind() == ErrorKind::UnexpectedEof && idle => Err(Close::Clean),
        Some(Err(e)) => Err(Close::Error(format!("i/o: {e}"))),
        None if idle => Err(Close::Idle),
        None => Err(Close::Error(format!(
            "stalled mid-request: nothing received for {} ms (read-timeout; {received} \
             payload bytes of the frame received)",
            cfg.read_timeout.as_millis(),
        ))),
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
