//! Bounded decoding of the Avro binary data this protocol receives.
//!
//! Every length and block count read from the wire is checked against the bytes actually left
//! in the message before anything is allocated, so a hostile peer cannot make the agent reserve
//! more memory than the (already size-limited) message holds. `apache-avro`'s generic decoder
//! reserves `Vec` capacity for a declared block count before checking it against the input,
//! which lets a few bytes request gigabytes; hence this reader. Event bodies are slices of the
//! received message (no copy). Encoding stays with `apache-avro` (see `protocol.rs`), and the
//! tests check this decoder against it.

use bytes::Bytes;

use super::protocol::{HandshakeRequest, HandshakeResponse, Match, ProtocolError, Status};
use crate::event::{Event, Headers};

/// A cursor over one received message.
pub struct Reader {
    buf: Bytes,
    pos: usize,
}

fn err(msg: impl Into<String>) -> ProtocolError {
    ProtocolError(msg.into())
}

impl Reader {
    pub fn new(buf: impl Into<Bytes>) -> Self {
        Self {
            buf: buf.into(),
            pos: 0,
        }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, ProtocolError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| err("message ends early"))?;
        self.pos += 1;
        Ok(b)
    }

    /// Avro `long`: zig-zag varint of at most 10 bytes.
    pub fn long(&mut self) -> Result<i64, ProtocolError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
            }
        }
        Err(err("varint longer than 10 bytes"))
    }

    /// A length that must fit in what is left of the message.
    fn len(&mut self, what: &str) -> Result<usize, ProtocolError> {
        let n = self.long()?;
        let n = usize::try_from(n).map_err(|_| err(format!("negative {what} length {n}")))?;
        if n > self.remaining() {
            return Err(err(format!(
                "{what} length {n} exceeds the {} bytes left in the message",
                self.remaining()
            )));
        }
        Ok(n)
    }

    pub fn slice(&mut self, n: usize) -> Result<Bytes, ProtocolError> {
        if n > self.remaining() {
            return Err(err("message ends early"));
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    pub fn bytes(&mut self) -> Result<Bytes, ProtocolError> {
        let n = self.len("bytes")?;
        self.slice(n)
    }

    pub fn string(&mut self) -> Result<String, ProtocolError> {
        let n = self.len("string")?;
        let b = self.slice(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| err("string is not UTF-8"))
    }

    pub fn fixed16(&mut self) -> Result<[u8; 16], ProtocolError> {
        let b = self.slice(16)?;
        let mut out = [0u8; 16];
        out.copy_from_slice(&b);
        Ok(out)
    }

    fn union_index(&mut self, branches: i64) -> Result<i64, ProtocolError> {
        let i = self.long()?;
        if !(0..branches).contains(&i) {
            return Err(err(format!("union branch {i} out of range")));
        }
        Ok(i)
    }

    /// The item count of the next array/map block (0 = end). Each item takes at least
    /// `min_item` bytes, so the count is bounded by the bytes left.
    fn block(&mut self, min_item: usize) -> Result<usize, ProtocolError> {
        let n = self.long()?;
        let count = if n < 0 {
            let _block_bytes = self.long()?;
            n.checked_neg().ok_or_else(|| err("block count overflow"))?
        } else {
            n
        };
        let count = count as u64;
        if count.saturating_mul(min_item as u64) > self.remaining() as u64 {
            return Err(err(format!(
                "block of {count} items cannot fit in the {} bytes left",
                self.remaining()
            )));
        }
        Ok(count as usize)
    }

    /// `map<string>` into headers.
    fn string_map(&mut self, into: &mut Headers) -> Result<(), ProtocolError> {
        loop {
            let n = self.block(2)?;
            if n == 0 {
                return Ok(());
            }
            for _ in 0..n {
                let k = self.string()?;
                let v = self.string()?;
                into.insert(k, v);
            }
        }
    }

    /// `map<bytes>`, skipped (call metadata is not used).
    fn skip_bytes_map(&mut self) -> Result<(), ProtocolError> {
        loop {
            let n = self.block(2)?;
            if n == 0 {
                return Ok(());
            }
            for _ in 0..n {
                let _ = self.string()?;
                let _ = self.bytes()?;
            }
        }
    }

    fn event(&mut self) -> Result<Event, ProtocolError> {
        let mut headers = Headers::new();
        self.string_map(&mut headers)?;
        let body = self.bytes()?;
        Ok(Event { headers, body })
    }
}

pub fn read_events(r: &mut Reader, max_events: usize) -> Result<Vec<Event>, ProtocolError> {
    let mut events = Vec::new();
    loop {
        let n = r.block(2)?;
        if n == 0 {
            return Ok(events);
        }
        if events.len() + n > max_events {
            return Err(err(format!("batch of more than {max_events} events")));
        }
        events.reserve(n);
        for _ in 0..n {
            events.push(r.event()?);
        }
    }
}

pub fn read_event(r: &mut Reader) -> Result<Event, ProtocolError> {
    r.event()
}

pub fn read_handshake_request(r: &mut Reader) -> Result<HandshakeRequest, ProtocolError> {
    let client_hash = r.fixed16()?;
    let client_protocol = match r.union_index(2)? {
        0 => None,
        _ => Some(r.string()?),
    };
    let server_hash = r.fixed16()?;
    if r.union_index(2)? == 1 {
        r.skip_bytes_map()?;
    }
    Ok(HandshakeRequest {
        client_hash,
        client_protocol,
        server_hash,
    })
}

pub fn read_handshake_response(r: &mut Reader) -> Result<HandshakeResponse, ProtocolError> {
    let matched = match r.long()? {
        0 => Match::Both,
        1 => Match::Client,
        2 => Match::None,
        other => return Err(err(format!("bad handshake match {other}"))),
    };
    let server_protocol = match r.union_index(2)? {
        0 => None,
        _ => Some(r.string()?),
    };
    let server_hash = match r.union_index(2)? {
        0 => None,
        _ => Some(r.fixed16()?),
    };
    if r.union_index(2)? == 1 {
        r.skip_bytes_map()?;
    }
    Ok(HandshakeResponse {
        matched,
        server_protocol,
        server_hash,
    })
}

pub fn read_meta(r: &mut Reader) -> Result<(), ProtocolError> {
    r.skip_bytes_map()
}

pub fn read_string(r: &mut Reader) -> Result<String, ProtocolError> {
    r.string()
}

pub fn read_bool(r: &mut Reader) -> Result<bool, ProtocolError> {
    match r.byte()? {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(err(format!("bad boolean byte {b}"))),
    }
}

pub fn read_status(r: &mut Reader) -> Result<Status, ProtocolError> {
    match r.long()? {
        0 => Ok(Status::Ok),
        1 => Ok(Status::Failed),
        2 => Ok(Status::Unknown),
        other => Err(err(format!("bad status {other}"))),
    }
}

/// A remote error: `union {string}`.
pub fn read_error(r: &mut Reader) -> Result<String, ProtocolError> {
    r.union_index(1)?;
    r.string()
}
