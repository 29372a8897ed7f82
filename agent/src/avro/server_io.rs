//! A server connection's byte pipeline on tokio: socket ⇄ optional zlib stream ⇄ optional TLS
//! ⇄ Avro frames, the same layering as [`super::transport`] and [`super::tls`] (Flume's Netty
//! pipeline), without a thread per connection.
//!
//! zlib and TLS are driven as state machines (`flate2::Decompress`, `rustls::ServerConnection`)
//! over bytes read from a non-blocking socket, so a connection waiting for its client costs no
//! thread. Reads hand out at most [`CHUNK`] bytes at a time, so a small compressed input cannot
//! expand into a large buffer at once (the frame decoder above decides how much it keeps), and
//! an idle connection holds no read buffer: one is allocated only once the socket is readable.
//!
//! With deflate, replies are written as *stored* (uncompressed) deflate blocks of a zlib
//! stream: valid for any zlib reader (Flume's Netty `ZlibDecoder`, [`super::transport`]), each
//! block byte-aligned as a sync flush leaves it. Replies are a few bytes, which compression
//! would only grow, and this spares every connection a compressor (about 300 KiB of state);
//! the inflater (about 40 KiB) is created when the first byte arrives.

use std::io::{self, Read, Write};

use flate2::{Decompress, FlushDecompress, Status};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::transport::DeflateError;

/// Largest piece of plaintext (or inflated, or raw) bytes handed out by one read.
pub(crate) const CHUNK: usize = 16 * 1024;

/// Compressed input waiting for the inflater.
struct Inflate {
    /// Created with the first compressed byte.
    z: Option<Box<Decompress>>,
    buf: Vec<u8>,
    pos: usize,
    ended: bool,
}

/// The socket and the zlib layer (what TLS reads from and writes to).
struct Wire {
    sock: TcpStream,
    inflate: Option<Inflate>,
    /// `Some(header written)` with deflate.
    zlib_out: Option<bool>,
}

/// Appends what the socket has (at most [`CHUNK`] bytes) to `dst`, waiting until it is
/// readable; `Ok(0)` at end of stream. The buffer is grown only once bytes are there.
async fn read_sock(sock: &TcpStream, dst: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        sock.readable().await?;
        dst.reserve(CHUNK);
        let spare = (dst.capacity() - dst.len()).min(CHUNK);
        if let Some(n) = read_tail(dst, spare, |buf| sock.try_read(buf))? {
            return Ok(n);
        }
    }
}

/// Reads with `read` into `len` bytes appended to `dst`, keeping only what was read: the
/// count, or `None` when the read would block (nothing appended).
fn read_tail(
    dst: &mut Vec<u8>,
    len: usize,
    read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
) -> io::Result<Option<usize>> {
    let start = dst.len();
    dst.resize(start + len, 0);
    let result = read(&mut dst[start..]);
    let kept = match &result {
        Ok(n) => *n,
        Err(_) => 0,
    };
    dst.truncate(start + kept);
    match result {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

impl Wire {
    /// Appends at most [`CHUNK`] bytes (inflated when compressed) to `dst`; `Ok(0)` at a clean
    /// end of stream.
    async fn read(&mut self, dst: &mut Vec<u8>) -> io::Result<usize> {
        let Some(z) = &mut self.inflate else {
            return read_sock(&self.sock, dst).await;
        };
        loop {
            if z.ended {
                return Ok(0);
            }
            // Even without new input: the inflater may hold output a full `dst` left behind.
            if let Some(d) = &mut z.z {
                let start = dst.len();
                dst.resize(start + CHUNK, 0);
                let (in0, out0) = (d.total_in(), d.total_out());
                let status =
                    d.decompress(&z.buf[z.pos..], &mut dst[start..], FlushDecompress::None);
                let consumed = (d.total_in() - in0) as usize;
                let produced = (d.total_out() - out0) as usize;
                dst.truncate(start + produced);
                z.pos += consumed;
                if status.map_err(DeflateError::Corrupt)? == Status::StreamEnd {
                    z.ended = true;
                }
                if produced > 0 {
                    return Ok(produced);
                }
                if consumed > 0 || z.ended {
                    continue;
                }
            }
            // The inflater needs more input than it has.
            z.buf.drain(..z.pos);
            z.pos = 0;
            if z.buf.len() >= 4 * CHUNK {
                return Err(DeflateError::NoProgress.into());
            }
            let n = read_sock(&self.sock, &mut z.buf).await?;
            if n > 0 && z.z.is_none() {
                z.z = Some(Box::new(Decompress::new(true)));
            }
            if n == 0 {
                return if z.buf.is_empty() {
                    Ok(0)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "deflate stream ended early",
                    ))
                };
            }
        }
    }

    /// Writes `data` (as stored deflate blocks when deflate is on).
    async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.zlib_out {
            None => self.sock.write_all(data).await,
            Some(header_written) => {
                let out = zlib_stored(data, !std::mem::replace(header_written, true));
                self.sock.write_all(&out).await
            }
        }
    }

    fn release_buffers(&mut self) {
        if let Some(z) = &mut self.inflate
            && z.pos == z.buf.len()
        {
            z.buf = Vec::new();
            z.pos = 0;
        }
    }
}

/// `data` as non-final stored deflate blocks (after the zlib header when `header`).
fn zlib_stored(data: &[u8], header: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 2 + 5 * (data.len() / 65535 + 1));
    if header {
        // Deflate, 32 KiB window, no dictionary; (0x78 << 8 | 0x01) is a multiple of 31.
        out.extend_from_slice(&[0x78, 0x01]);
    }
    for block in data.chunks(65535) {
        // BFINAL = 0, BTYPE = 00 (stored), padded to the byte; LEN and its complement.
        let len = block.len() as u16;
        out.push(0);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out
}

/// One accepted connection's streams.
pub(crate) struct ServerIo {
    wire: Wire,
    tls: Option<Box<rustls::ServerConnection>>,
    /// Bytes for rustls not handed to it yet.
    tls_in: Vec<u8>,
    tls_pos: usize,
    tls_eof: bool,
}

impl ServerIo {
    /// `deflate`: `compression-type = deflate`.
    pub(crate) fn new(
        sock: TcpStream,
        deflate: bool,
        tls: Option<rustls::ServerConnection>,
    ) -> Self {
        Self {
            wire: Wire {
                sock,
                inflate: deflate.then(|| Inflate {
                    z: None,
                    buf: Vec::new(),
                    pos: 0,
                    ended: false,
                }),
                zlib_out: deflate.then_some(false),
            },
            tls: tls.map(Box::new),
            tls_in: Vec::new(),
            tls_pos: 0,
            tls_eof: false,
        }
    }

    /// The TLS handshake has not completed yet.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// Frees read buffers that hold nothing (an idle connection keeps none).
    pub(crate) fn release_buffers(&mut self) {
        self.wire.release_buffers();
        if self.tls_pos == self.tls_in.len() {
            self.tls_in = Vec::new();
            self.tls_pos = 0;
        }
    }

    /// Neither TLS nor zlib: the socket's bytes are the frame stream.
    pub(crate) fn is_plain(&self) -> bool {
        self.tls.is_none() && self.wire.inflate.is_none()
    }

    /// On a plain connection ([`Self::is_plain`]), appends at most `max` bytes to `dst`
    /// within its spare capacity (never growing it: the capacity was budgeted), so payload
    /// bytes go from the socket straight into the frame's chunk; `Ok(0)` at end of stream.
    pub(crate) async fn read_into_spare(
        &mut self,
        dst: &mut Vec<u8>,
        max: usize,
    ) -> io::Result<usize> {
        let len = (dst.capacity() - dst.len()).min(max);
        if len == 0 || !self.is_plain() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no room for a direct read",
            ));
        }
        loop {
            self.wire.sock.readable().await?;
            if let Some(n) = read_tail(dst, len, |buf| self.wire.sock.try_read(buf))? {
                return Ok(n);
            }
        }
    }

    /// Appends at most [`CHUNK`] bytes of the frame stream to `dst`; `Ok(0)` when the client
    /// closed the connection (TLS: with `close_notify`; without, an `UnexpectedEof` error).
    pub(crate) async fn read(&mut self, dst: &mut Vec<u8>) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.wire.read(dst).await;
        };
        loop {
            if let Some(n) = read_tail(dst, CHUNK, |buf| tls.reader().read(buf))? {
                return Ok(n);
            }
            if tls.wants_write() {
                let out = tls_output(tls)?;
                self.wire.write(&out).await?;
            }
            if self.tls_eof {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed during the TLS handshake",
                ));
            }
            if self.tls_pos == self.tls_in.len() {
                self.tls_in.clear();
                self.tls_pos = 0;
                if self.wire.read(&mut self.tls_in).await? == 0 {
                    // Tell rustls; the next read reports a clean or an unclean close.
                    self.tls_eof = true;
                    tls.read_tls(&mut &[][..])?;
                    tls.process_new_packets().map_err(io::Error::other)?;
                    continue;
                }
            }
            let mut rd = &self.tls_in[self.tls_pos..];
            let before = rd.len();
            tls.read_tls(&mut rd)?;
            self.tls_pos += before - rd.len();
            if let Err(e) = tls.process_new_packets() {
                // rustls queued an alert for the client; send it before giving up.
                if let Ok(out) = tls_output(tls) {
                    let _ = self.wire.write(&out).await;
                }
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }

    /// Writes `data` (one whole reply frame) through TLS and zlib.
    pub(crate) async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.tls {
            None => self.wire.write(data).await,
            Some(tls) => {
                // rustls buffers a limited amount of outgoing records: encrypt piecewise.
                let mut out = Vec::new();
                let mut rest = data;
                while !rest.is_empty() {
                    let n = tls.writer().write(rest)?;
                    rest = &rest[n..];
                    let before = out.len();
                    while tls.wants_write() {
                        tls.write_tls(&mut out)?;
                    }
                    if n == 0 && out.len() == before {
                        return Err(io::ErrorKind::WriteZero.into());
                    }
                }
                self.wire.write(&out).await
            }
        }
    }
}

/// What rustls wants to send.
fn tls_output(tls: &mut rustls::ServerConnection) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while tls.wants_write() {
        tls.write_tls(&mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::framing::{FrameDecoder, read_frame, write_frame};
    use crate::avro::transport::split;

    /// Reads one frame through `io` with unlimited capacity grants.
    async fn next_frame(io: &mut ServerIo) -> io::Result<Option<(i32, Vec<u8>)>> {
        use crate::avro::framing::Feed;
        let mut dec = FrameDecoder::new(1 << 20);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            if io.read(&mut buf).await? == 0 {
                return Ok(None);
            }
            let mut pos = 0;
            while pos < buf.len() {
                match dec.feed(&buf[pos..]).map_err(io::Error::other)? {
                    Feed::Consumed(n) => pos += n,
                    Feed::NeedCapacity { consumed, bytes } => {
                        pos += consumed;
                        dec.grow(bytes);
                    }
                    // The test client sends one frame and waits for the reply.
                    Feed::Frame { frame, .. } => {
                        return Ok(Some((frame.serial, frame.chunks.concat())));
                    }
                }
            }
        }
    }

    /// The blocking client stack (transport + tls) against this one: plain, deflate, TLS, both.
    #[test]
    fn echo_against_the_blocking_client() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, ck.cert.pem())?;
        std::fs::write(&key, ck.key_pair.serialize_pem())?;
        let server_cfg = crate::avro::tls::server_config(&cert, &key)?;
        let client_cfg = crate::avro::tls::client_config(Some(&cert), false)?;
        // The server task runs on the runtime's worker while this thread plays the client.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        for (deflate, tls) in [
            (None, false),
            (Some(6), false),
            (None, true),
            (Some(6), true),
        ] {
            let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
            let addr = listener.local_addr()?;
            let scfg = server_cfg.clone();
            let server = rt.spawn(async move {
                let (sock, _) = listener.accept().await?;
                let conn = if tls {
                    Some(rustls::ServerConnection::new(scfg).map_err(io::Error::other)?)
                } else {
                    None
                };
                let mut io = ServerIo::new(sock, deflate.is_some(), conn);
                let mut n = 0;
                while let Some((serial, payload)) = next_frame(&mut io).await? {
                    let mut out = Vec::new();
                    write_frame(&mut out, serial, &payload)?;
                    io.write(&out).await?;
                    n += 1;
                }
                Ok::<_, io::Error>(n)
            });
            let c = std::net::TcpStream::connect(addr)?;
            c.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
            let client = (|| -> Result<(), Box<dyn std::error::Error>> {
                let (r, w) = split(&c, deflate)?;
                let (mut r, mut w) = if tls {
                    crate::avro::tls::connect(&client_cfg, "localhost", r, w)?
                } else {
                    (r, w)
                };
                for i in 0..3i32 {
                    let msg = if i == 2 {
                        (0..60_000).map(|n: u32| n.to_string()).collect::<String>()
                    } else {
                        format!("message {i}")
                    };
                    write_frame(&mut w, i, msg.as_bytes())?;
                    let f = read_frame(&mut r, 1 << 20)?;
                    assert_eq!((f.serial, f.payload), (i, msg.into_bytes()));
                }
                Ok(())
            })();
            c.shutdown(std::net::Shutdown::Both)?;
            let served = rt.block_on(server);
            if let Err(e) = client {
                panic!("deflate {deflate:?} tls {tls}: client: {e}; server: {served:?}");
            }
            // A TLS client dropped without close_notify ends with an unclean EOF.
            match served? {
                Ok(n) => assert_eq!(n, 3),
                Err(e) => assert!(tls && e.kind() == io::ErrorKind::UnexpectedEof, "{e}"),
            }
        }
        Ok(())
    }
}
