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
use smallvec::SmallVec;

use crate::event::{Event, Headers, SharedStr};

/// A cursor over one received message, held in one or more chunks (the server receives a
/// large message in chunks rather than one buffer grown by copying).
pub(crate) struct Reader {
    cur: Bytes,
    pos: usize,
    rest: std::vec::IntoIter<Bytes>,
    /// Bytes left, in `cur` and `rest`.
    left: usize,
}

fn err(msg: impl Into<String>) -> ProtocolError {
    ProtocolError(msg.into())
}

impl Reader {
    pub(crate) fn new(buf: impl Into<Bytes>) -> Self {
        Self::from_chunks(vec![buf.into()])
    }

    /// A message made of `chunks`, in order.
    pub(crate) fn from_chunks(chunks: Vec<Bytes>) -> Self {
        let left = chunks.iter().map(Bytes::len).sum();
        Self {
            cur: Bytes::new(),
            pos: 0,
            rest: chunks.into_iter(),
            left,
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.left
    }

    /// Makes `cur` hold at least one unread byte, if any is left.
    fn refill(&mut self) -> bool {
        while self.pos == self.cur.len() {
            match self.rest.next() {
                Some(b) => {
                    self.cur = b;
                    self.pos = 0;
                }
                None => return false,
            }
        }
        true
    }

    fn byte(&mut self) -> Result<u8, ProtocolError> {
        if !self.refill() {
            return Err(err("message ends early"));
        }
        let b = self.cur[self.pos];
        self.pos += 1;
        self.left -= 1;
        Ok(b)
    }

    /// The next `n` bytes lie in one chunk (a slice of them costs no copy).
    fn contiguous(&mut self, n: usize) -> bool {
        n == 0 || (self.refill() && self.cur.len() - self.pos >= n)
    }

    /// Avro `long`: zig-zag varint of at most 10 bytes.
    pub(crate) fn long(&mut self) -> Result<i64, ProtocolError> {
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

    /// The next `n` bytes: a slice of the message, or a copy when they span two chunks.
    pub(crate) fn slice(&mut self, n: usize) -> Result<Bytes, ProtocolError> {
        if n > self.left {
            return Err(err("message ends early"));
        }
        if self.contiguous(n) {
            let b = self.cur.slice(self.pos..self.pos + n);
            self.pos += n;
            self.left -= n;
            return Ok(b);
        }
        let mut v = Vec::with_capacity(n);
        while v.len() < n && self.refill() {
            let k = (n - v.len()).min(self.cur.len() - self.pos);
            v.extend_from_slice(&self.cur[self.pos..self.pos + k]);
            self.pos += k;
        }
        self.left -= n;
        Ok(Bytes::from(v))
    }

    /// Skips `n` bytes without copying them.
    fn skip(&mut self, mut n: usize) -> Result<(), ProtocolError> {
        if n > self.left {
            return Err(err("message ends early"));
        }
        self.left -= n;
        while n > 0 && self.refill() {
            let k = n.min(self.cur.len() - self.pos);
            self.pos += k;
            n -= k;
        }
        Ok(())
    }

    pub(crate) fn string(&mut self) -> Result<String, ProtocolError> {
        let n = self.len("string")?;
        self.string_of(n)
    }

    fn string_of(&mut self, n: usize) -> Result<String, ProtocolError> {
        let b = self.slice(n)?;
        String::from_utf8(b.into()).map_err(|_| err("string is not UTF-8"))
    }

    /// A string of at most `max` bytes (`what` names it in the error).
    fn short_string(&mut self, max: usize, what: &str) -> Result<String, ProtocolError> {
        let n = self.len("string")?;
        if n > max {
            return Err(err(format!("{what} of {n} bytes (at most {max})")));
        }
        self.string_of(n)
    }

    pub(crate) fn fixed16(&mut self) -> Result<[u8; 16], ProtocolError> {
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

    /// A string of `n` bytes as a header key or value: inline when short (no allocation).
    fn shared_string_of(&mut self, n: usize) -> Result<SharedStr, ProtocolError> {
        if n > self.left {
            return Err(err("message ends early"));
        }
        if self.contiguous(n) {
            let s = std::str::from_utf8(&self.cur[self.pos..self.pos + n])
                .map_err(|_| err("string is not UTF-8"))?;
            let s = SharedStr::from(s);
            self.pos += n;
            self.left -= n;
            return Ok(s);
        }
        self.string_of(n).map(SharedStr::from)
    }

    /// `map<string>` into headers, charging each entry's estimated memory. The pairs are
    /// collected and sorted once (a later duplicate key wins, as in Java's `HashMap`), so a
    /// map of many entries costs `n log n`, not the `n²` of inserting one by one.
    fn string_map(&mut self, charge: Charge<'_>) -> Result<Headers, ProtocolError> {
        let mut pairs: SmallVec<[(SharedStr, SharedStr); 4]> = SmallVec::new();
        loop {
            let n = self.block(2)?;
            if n == 0 {
                return Ok(pairs.into_iter().collect());
            }
            for _ in 0..n {
                // Charged before each string is copied.
                let first = if pairs.is_empty() { HEADERS_COST } else { 0 };
                let kn = self.len("string")?;
                charge(first + HEADER_ENTRY_COST + kn)?;
                let k = self.shared_string_of(kn)?;
                let vn = self.len("string")?;
                charge(vn)?;
                let v = self.shared_string_of(vn)?;
                pairs.push((k, v));
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
                let key = self.len("string")?;
                self.skip(key)?;
                let value = self.len("bytes")?;
                self.skip(value)?;
            }
        }
    }

    fn event(&mut self, charge: Charge<'_>) -> Result<Event, ProtocolError> {
        let headers = self.string_map(charge)?;
        let n = self.len("bytes")?;
        if !self.contiguous(n) {
            // A body across two chunks is copied.
            charge(n)?;
        }
        let body = self.slice(n)?;
        Ok(Event { headers, body })
    }
}

/// Receives the estimated heap bytes of what is being decoded, before it is allocated; an
/// error stops decoding. Lets a server bound the memory of the requests it is decoding: a
/// message of small header entries takes tens of times its size once decoded.
pub(crate) type Charge<'a> = &'a mut dyn FnMut(usize) -> Result<(), ProtocolError>;

/// Estimated heap bytes of a non-empty header map besides its entries (the `Arc` and the
/// inline room for four pairs), with margin.
pub(crate) const HEADERS_COST: usize = 576;
/// Estimated heap bytes of one header entry besides its key and value bytes: a pair is 48
/// bytes, held twice while a map is built (the decoded pairs and the sorted map).
pub(crate) const HEADER_ENTRY_COST: usize = 96;

/// Uncharged decoding, for the tests' round trips.
#[cfg(test)]
pub(crate) fn read_events(r: &mut Reader, max_events: usize) -> Result<Vec<Event>, ProtocolError> {
    read_events_charged(r, max_events, &mut |_| Ok(()))
}

/// Decodes `appendBatch`'s events, charging the decoded memory to `charge` as it goes (event bodies share the
/// message and cost nothing more).
pub(crate) fn read_events_charged(
    r: &mut Reader,
    max_events: usize,
    charge: Charge<'_>,
) -> Result<Vec<Event>, ProtocolError> {
    let mut events = Vec::new();
    loop {
        let n = r.block(2)?;
        if n == 0 {
            return Ok(events);
        }
        if events.len() + n > max_events {
            return Err(err(format!("batch of more than {max_events} events")));
        }
        charge(n * std::mem::size_of::<Event>())?;
        events.reserve(n);
        for _ in 0..n {
            let mut e = r.event(charge)?;
            // Events of one batch often carry the same headers (set by one interceptor
            // upstream): they share one map, as they did in the sender.
            if let Some(prev) = events.last() {
                e.headers.share_if_equal(&prev.headers);
            }
            events.push(e);
        }
    }
}

pub(crate) fn read_event(r: &mut Reader) -> Result<Event, ProtocolError> {
    r.event(&mut |_| Ok(()))
}

/// [`read_event`], charging the decoded memory to `charge`.
pub(crate) fn read_event_charged(
    r: &mut Reader,
    charge: Charge<'_>,
) -> Result<Event, ProtocolError> {
    charge(std::mem::size_of::<Event>())?;
    r.event(charge)
}

pub(crate) fn read_handshake_request(r: &mut Reader) -> Result<HandshakeRequest, ProtocolError> {
    let client_hash = r.fixed16()?;
    let client_protocol = match r.union_index(2)? {
        0 => None,
        _ => Some(r.short_string(MAX_PROTOCOL_TEXT, "client protocol text")?),
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

pub(crate) fn read_handshake_response(r: &mut Reader) -> Result<HandshakeResponse, ProtocolError> {
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

pub(crate) fn read_meta(r: &mut Reader) -> Result<(), ProtocolError> {
    r.skip_bytes_map()
}

#[cfg(test)]
pub(crate) fn read_string(r: &mut Reader) -> Result<String, ProtocolError> {
    r.string()
}

/// Longest protocol text accepted in a handshake (Flume's is about 2 KiB).
pub(crate) const MAX_PROTOCOL_TEXT: usize = 1 << 20;
/// Longest message name accepted in a call.
pub(crate) const MAX_MESSAGE_NAME: usize = 1024;

/// The message name of a call (at most [`MAX_MESSAGE_NAME`] bytes).
pub(crate) fn read_message_name(r: &mut Reader) -> Result<String, ProtocolError> {
    r.short_string(MAX_MESSAGE_NAME, "message name")
}

pub(crate) fn read_bool(r: &mut Reader) -> Result<bool, ProtocolError> {
    match r.byte()? {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(err(format!("bad boolean byte {b}"))),
    }
}

pub(crate) fn read_status(r: &mut Reader) -> Result<Status, ProtocolError> {
    match r.long()? {
        0 => Ok(Status::Ok),
        1 => Ok(Status::Failed),
        2 => Ok(Status::Unknown),
        other => Err(err(format!("bad status {other}"))),
    }
}

/// A remote error: `union {string}`.
pub(crate) fn read_error(r: &mut Reader) -> Result<String, ProtocolError> {
    r.union_index(1)?;
    r.string()
}
