use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::avro::server_io::{CHUNK, ServerIo};
use crate::thrift::codec::{
    Call, DecodeError, Header, UNKNOWN_METHOD, decode_header, decode_request, encode_exception,
    encode_reply, frame_len,
};
use crate::thrift::{Protocol, Status};

use super::DECODE_STEP;
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
        Ok(tls) => ServerIo::new(sock, false, tls),
        Err(e) => {
            tracing::warn!(source = %s.name, %peer, reason = %e, "Closing Thrift connection.");
            return;
        }
    };
    match serve(&s, &mut io, &mut stop).await {
        Close::Clean => tracing::debug!(source = %s.name, %peer, "Thrift client disconnected."),
        Close::Idle => {
            tracing::debug!(source = %s.name, %peer, "Closing idle Thrift connection.");
        }
        Close::Stopping => {
            tracing::debug!(source = %s.name, %peer, "Closing Thrift connection: stopping.");
        }
        Close::Error(reason) => {
            tracing::warn!(source = %s.name, %peer, %reason, "Closing Thrift connection.");
        }
    }
}

/// Serves one connection until it closes: frames in, one reply per frame out.
async fn serve(shared: &Arc<Shared>, io: &mut ServerIo, stop: &mut watch::Receiver<bool>) -> Close {
    let cfg = &shared.config;
    // Bytes received and not yet consumed (at most one read's worth beyond a frame).
    let mut buf: Vec<u8> = Vec::new();
    let mut pos = 0;
    loop {
        while buf.len() - pos < 4 {
            buf.drain(..pos);
            pos = 0;
            if buf.is_empty() {
                // An idle connection keeps no read buffer.
                buf = Vec::new();
                io.release_buffers();
            }
            let between = buf.is_empty();
            if let Err(c) = read_more(shared, io, between, 0, &mut buf, stop).await {
                return c;
            }
        }
        let head = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
        pos += 4;
        let len = match frame_len(head) {
            Some(n) if n <= cfg.max_message_bytes => n,
            _ => {
                return Close::Error(format!(
                    "a frame declaring {} bytes (max-message-bytes = {})",
                    i32::from_be_bytes(head),
                    cfg.max_message_bytes
                ));
            }
        };
        let mut payload: Vec<u8> = Vec::new();
        let mut held: Option<OwnedSemaphorePermit> = None;
        while payload.len() < len {
            if pos == buf.len() {
                buf.clear();
                pos = 0;
                if let Err(c) = read_more(shared, io, false, payload.len(), &mut buf, stop).await {
                    return c;
                }
                continue;
            }
            let take = (buf.len() - pos).min(len - payload.len());
            if let Err(c) = grow(shared, &mut payload, take, len, &mut held, stop).await {
                return c;
            }
            payload.extend_from_slice(&buf[pos..pos + take]);
            pos += take;
        }
        if let Err(c) = answer(shared, io, Bytes::from(payload), held, stop).await {
            return c;
        }
    }
}

/// Makes room for `take` more bytes in `payload` (a frame of `len`), doubling its capacity
/// (never past `len`) with the growth taken from `max-buffered-bytes` first.
async fn grow(
    shared: &Shared,
    payload: &mut Vec<u8>,
    take: usize,
    len: usize,
    held: &mut Option<OwnedSemaphorePermit>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Close> {
    if payload.capacity() - payload.len() >= take {
        return Ok(());
    }
    let cfg = &shared.config;
    let cap = (payload.capacity() * 2)
        .max(payload.len() + take)
        .max(CHUNK)
        .min(len);
    let extra = cap - payload.capacity();
    // `extra` is at most `len`, which `max-message-bytes` keeps within u32.
    let n = u32::try_from(extra).map_err(|_| Close::Error("frame too large".into()))?;
    let got = tokio::select! {
        r = tokio::time::timeout(cfg.read_timeout, shared.budget.clone().acquire_many_owned(n)) => r,
        () = stopped(stop) => return Err(Close::Stopping),
    };
    let permit = match got {
        Ok(Ok(p)) => p,
        Ok(Err(_)) => return Err(Close::Stopping),
        Err(_) => {
            return Err(Close::Error(format!(
                "no buffer space within {} ms (read-timeout): max-buffered-bytes ({}) is in use \
                 by the requests of all connections",
                cfg.read_timeout.as_millis(),
                cfg.max_buffered_bytes
            )));
        }
    };
    match held {
        Some(h) => h.merge(permit),
        None => *held = Some(permit),
    }
    payload.reserve_exact(cap - payload.len());
    Ok(())
}

/// Reads what the client sent next into `buf`: between requests within `idle-timeout`, inside
/// one within `read-timeout`. `received` is the current frame's payload bytes so far.
async fn read_more(
    shared: &Shared,
    io: &mut ServerIo,
    between_frames: bool,
    received: usize,
    buf: &mut Vec<u8>,
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
        r = within(limit, io.read(buf)) => r,
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
            "stalled mid-request: nothing received for {} ms (read-timeout; {received} payload \
             bytes of the frame received)",
            cfg.read_timeout.as_millis(),
        ))),
    }
}

/// Decodes and commits one frame on a blocking worker, then writes the reply.
async fn answer(
    shared: &Arc<Shared>,
    io: &mut ServerIo,
    frame: Bytes,
    held: Option<OwnedSemaphorePermit>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Close> {
    let proto = shared.config.protocol;
    let header = decode_header(proto, &frame)
        .map_err(|e| Close::Error(format!("malformed {} message: {e}", proto.name())))?;
    let permit = tokio::select! {
        p = shared.workers.clone().acquire_owned() => p.map_err(|_| Close::Stopping)?,
        () = stopped(stop) => return Err(Close::Stopping),
    };
    let s = shared.clone();
    let handle = Handle::current();
    // Once started, the request runs to its answer (also when the source is stopping).
    let job = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        // The frame's budget is given back after the commit, with this closure's end.
        let _held = held;
        respond(&s, &handle, &frame, &header)
    });
    let reply = match job.await {
        Ok(Ok(reply)) => reply,
        Ok(Err(reason)) => return Err(Close::Error(reason)),
        Err(e) => return Err(Close::Error(format!("request handler failed: {e}"))),
    };
    let cfg = &shared.config;
    match tokio::time::timeout(cfg.read_timeout, io.write(&reply)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Close::Error(format!("send failed: {e}"))),
        Err(_) => Err(Close::Error(format!(
            "the client did not take its reply within {} ms (read-timeout)",
            cfg.read_timeout.as_millis()
        ))),
    }
}

/// Budget for decoded headers, taken in steps from a blocking worker.
struct DecodeBudget<'a> {
    shared: &'a Shared,
    handle: &'a Handle,
    held: Option<OwnedSemaphorePermit>,
    reserved: usize,
    used: usize,
}

impl DecodeBudget<'_> {
    fn charge(&mut self, n: usize) -> Result<(), DecodeError> {
        self.used += n;
        if self.used <= self.reserved {
            return Ok(());
        }
        let cfg = &self.shared.config;
        let need = self.used - self.reserved;
        if self.reserved + need > cfg.max_buffered_bytes {
            return Err(DecodeError::Starved(format!(
                "decoding needs more than max-buffered-bytes ({})",
                cfg.max_buffered_bytes
            )));
        }
        let step = need
            .max(DECODE_STEP)
            .min(cfg.max_buffered_bytes - self.reserved);
        let n = u32::try_from(step).unwrap_or(u32::MAX);
        let sem = self.shared.budget.clone();
        let got = self.handle.block_on(tokio::time::timeout(
            cfg.read_timeout,
            sem.acquire_many_owned(n),
        ));
        let permit = match got {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(DecodeError::Starved("the source is stopping".into())),
            Err(_) => {
                return Err(DecodeError::Starved(format!(
                    "no memory for decoding within {} ms (max-buffered-bytes = {} in use)",
                    cfg.read_timeout.as_millis(),
                    cfg.max_buffered_bytes
                )));
            }
        };
        self.reserved += n as usize;
        match &mut self.held {
            Some(h) => h.merge(permit),
            None => self.held = Some(permit),
        }
        Ok(())
    }
}

/// The reply frame to one request; `Err` (a malformed request) closes the connection.
fn respond(s: &Shared, handle: &Handle, frame: &Bytes, header: &Header) -> Result<Vec<u8>, String> {
    let cfg = &s.config;
    let proto: Protocol = cfg.protocol;
    let mut budget = DecodeBudget {
        shared: s,
        handle,
        held: None,
        reserved: 0,
        used: 0,
    };
    let decoded = decode_request(proto, frame, cfg.max_batch_events, &mut |n| {
        budget.charge(n)
    });
    let counters = s.processor.counters();
    let mut out = Vec::with_capacity(64);
    let status = match decoded {
        Err(DecodeError::Starved(reason)) => {
            tracing::warn!(source = %s.name, %reason, "Batch refused; answering FAILED.");
            Status::Failed
        }
        Err(e) => return Err(format!("malformed {} request: {e}", proto.name())),
        Ok(req) => match req.call {
            Call::Unknown => {
                let message = format!("Invalid method name: '{}'", header.name);
                encode_exception(
                    proto,
                    &mut out,
                    &header.name,
                    header.seqid,
                    UNKNOWN_METHOD,
                    &message,
                )
                .map_err(|e| e.to_string())?;
                return Ok(out);
            }
            Call::Append(event) => {
                counters.append_received.fetch_add(1, Ordering::Relaxed);
                match s.processor.process_batch(vec![event]) {
                    Ok(()) => {
                        counters.append_accepted.fetch_add(1, Ordering::Relaxed);
                        Status::Ok
                    }
                    Err(e) => {
                        tracing::warn!(source = %s.name, error = %e, "Event refused; answering FAILED.");
                        Status::Failed
                    }
                }
            }
            Call::AppendBatch(events) => match s.processor.process_batch(events) {
                Ok(()) => Status::Ok,
                Err(e) => {
                    tracing::warn!(source = %s.name, error = %e, "Batch refused; answering FAILED.");
                    Status::Failed
                }
            },
        },
    };
    encode_reply(proto, &mut out, &header.name, header.seqid, status).map_err(|e| e.to_string())?;
    Ok(out)
}
