//! A connection's byte streams, optionally zlib-compressed as Flume's `compression-type =
//! deflate` (Netty's zlib codec: one stream per direction, sync-flushed per message).

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;

use flate2::write::ZlibEncoder;
use flate2::{Compression, Decompress, FlushDecompress, Status};

/// A zlib stream that cannot be inflated, carried inside the `io::Error` a read returns.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeflateError {
    #[error("corrupt deflate stream: {0}")]
    Corrupt(#[source] flate2::DecompressError),
    /// The inflater consumed nothing from a full input buffer.
    #[error("corrupt deflate stream: no progress")]
    NoProgress,
}

impl From<DeflateError> for io::Error {
    fn from(e: DeflateError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

pub(crate) type Reader = Box<dyn Read + Send>;
pub(crate) type Writer = Box<dyn Write + Send>;

/// Splits a socket into reader and writer; `deflate` is the compression level when enabled.
pub(crate) fn split(stream: &TcpStream, deflate: Option<u32>) -> io::Result<(Reader, Writer)> {
    let rs = stream.try_clone()?;
    let ws = stream.try_clone()?;
    Ok(match deflate {
        None => (
            Box::new(BufReader::with_capacity(64 * 1024, rs)),
            Box::new(BufWriter::with_capacity(64 * 1024, ws)),
        ),
        Some(level) => (
            Box::new(InflateReader::new(rs)),
            Box::new(ZlibEncoder::new(
                BufWriter::with_capacity(64 * 1024, ws),
                Compression::new(level.min(9)),
            )),
        ),
    })
}

/// A zlib stream reader that hands out pending output before reading the socket again.
///
/// `flate2`'s readers ask their input for more bytes before draining output the inflater
/// already holds, so a message that arrived whole (ending in a sync flush) can sit undelivered
/// until the peer sends more; over a request/response protocol that deadlocks.
struct InflateReader<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    z: Decompress,
    done: bool,
}

impl<R: Read> InflateReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            pos: 0,
            len: 0,
            z: Decompress::new(true),
            done: false,
        }
    }
}

impl<R: Read> Read for InflateReader<R> {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        if dst.is_empty() || self.done {
            return Ok(0);
        }
        loop {
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            let status = self
                .z
                .decompress(&self.buf[self.pos..self.len], dst, FlushDecompress::None)
                .map_err(DeflateError::Corrupt)?;
            let consumed = (self.z.total_in() - in0) as usize;
            let produced = (self.z.total_out() - out0) as usize;
            self.pos += consumed;
            if status == Status::StreamEnd {
                self.done = true;
            }
            if produced > 0 || self.done {
                return Ok(produced);
            }
            if consumed > 0 {
                continue;
            }
            // The inflater needs more input.
            if self.pos == self.len {
                self.pos = 0;
                self.len = 0;
            }
            if self.len == self.buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "deflate stream stalled",
                ));
            }
            let n = self.inner.read(&mut self.buf[self.len..])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "deflate stream ended early",
                ));
            }
            self.len += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;
    use crate::avro::framing::{read_frame, write_frame};

    /// Requests and replies cross a deflate connection one message at a time, each readable as
    /// soon as it was flushed (no waiting for more input).
    #[test]
    fn deflate_round_trips_message_by_message() -> Result<(), Box<dyn std::error::Error>> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let server = std::thread::spawn(move || -> Result<(), String> {
            let (s, _) = listener.accept().map_err(|e| e.to_string())?;
            let (mut r, mut w) = split(&s, Some(6)).map_err(|e| e.to_string())?;
            for _ in 0..3 {
                let f = read_frame(&mut r, 1 << 20).map_err(|e| e.to_string())?;
                write_frame(&mut w, f.serial, &f.payload).map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        let c = TcpStream::connect(addr)?;
        c.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
        let (mut r, mut w) = split(&c, Some(6))?;
        for i in 0..3i32 {
            // The last message is larger than every buffer on the way.
            let msg = if i == 2 {
                (0..60_000).map(|n: u32| n.to_string()).collect::<String>()
            } else {
                format!("message {i}")
            };
            write_frame(&mut w, i, msg.as_bytes())?;
            let f = read_frame(&mut r, 1 << 20)?;
            assert_eq!((f.serial, f.payload), (i, msg.into_bytes()));
        }
        server.join().map_err(|_| "server panicked")??;
        Ok(())
    }
}
