//! The binary and compact protocols for `ThriftSourceProtocol` messages (the format is in the
//! module header of [`super`]). Decoding works on one whole frame already in memory, so every
//! declared size is checked against the bytes that remain before anything is allocated.

use std::ops::Range;

use bytes::Bytes;

use super::MAX_DEPTH;
use crate::event::{Event, Headers, SharedStr};

/// Which Thrift protocol a connection speaks (`protocol = compact | binary`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Binary,
    Compact,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Binary => "binary",
            Protocol::Compact => "compact",
        }
    }
}

/// Flume's `Status` enum, the result of `append` and `appendBatch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Failed,
    Error,
    Unknown,
}

impl Status {
    fn value(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Failed => 1,
            Status::Error => 2,
            Status::Unknown => 3,
        }
    }

    /// A value outside the enum reads as `Unknown` (Java's `findByValue` gives null, which
    /// Flume's client reports as a non-OK status too).
    fn from_value(v: i32) -> Self {
        match v {
            0 => Status::Ok,
            1 => Status::Failed,
            2 => Status::Error,
            _ => Status::Unknown,
        }
    }
}

/// Input that is not a message this codec accepts; the connection it came on is closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated message: {what} needs {need} bytes, {left} left in the frame")]
    Truncated {
        what: &'static str,
        need: usize,
        left: usize,
    },
    #[error("{what} declares size {size}, more than the {left} bytes left in the frame")]
    Oversize {
        what: &'static str,
        size: u64,
        left: usize,
    },
    #[error("negative {what} size {size}")]
    Negative { what: &'static str, size: i32 },
    #[error("malformed varint")]
    Varint,
    #[error("unknown field type {0}")]
    BadType(u8),
    #[error("fields nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("not a {expected} protocol message (first byte {first:#04x}){hint}")]
    WrongProtocol {
        expected: &'static str,
        first: u8,
        hint: &'static str,
    },
    #[error("bad message header: {0}")]
    BadHeader(String),
    #[error("{0}")]
    Invalid(String),
    #[error("a batch of more than {max} events (max-batch-events)")]
    TooManyEvents { max: usize },
    /// The decoder's memory budget refused more (the batch is answered FAILED).
    #[error("{0}")]
    Starved(String),
    #[error("{0} bytes after the end of the message")]
    Trailing(usize),
}

type Result<T> = std::result::Result<T, DecodeError>;

// Thrift's type ids as the binary protocol writes them.
const T_STOP: u8 = 0;
const T_BOOL: u8 = 2;
const T_BYTE: u8 = 3;
const T_DOUBLE: u8 = 4;
const T_I16: u8 = 6;
const T_I32: u8 = 8;
const T_I64: u8 = 10;
const T_STRING: u8 = 11;
const T_STRUCT: u8 = 12;
const T_MAP: u8 = 13;
const T_SET: u8 = 14;
const T_LIST: u8 = 15;

/// Message types.
const CALL: u8 = 1;
const REPLY: u8 = 2;
const EXCEPTION: u8 = 3;

const BINARY_VERSION_1: u32 = 0x8001_0000;
const COMPACT_ID: u8 = 0x82;
const COMPACT_VERSION: u8 = 1;

/// `TApplicationException` types used in replies.
pub(crate) const UNKNOWN_METHOD: i32 = 1;

fn compact_type(t: u8) -> Result<u8> {
    Ok(match t {
        T_BOOL => 1,
        T_BYTE => 3,
        T_I16 => 4,
        T_I32 => 5,
        T_I64 => 6,
        T_DOUBLE => 7,
        T_STRING => 8,
        T_LIST => 9,
        T_SET => 10,
        T_MAP => 11,
        T_STRUCT => 12,
        other => return Err(DecodeError::BadType(other)),
    })
}

fn from_compact_type(c: u8) -> Result<u8> {
    Ok(match c {
        1 | 2 => T_BOOL,
        3 => T_BYTE,
        4 => T_I16,
        5 => T_I32,
        6 => T_I64,
        7 => T_DOUBLE,
        8 => T_STRING,
        9 => T_LIST,
        10 => T_SET,
        11 => T_MAP,
        12 => T_STRUCT,
        other => return Err(DecodeError::BadType(other)),
    })
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

/// A message header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) name: String,
    pub(crate) kind: u8,
    pub(crate) seqid: i32,
}

/// Reads one message out of a frame.
pub(crate) struct Decoder<'a> {
    proto: Protocol,
    src: &'a Bytes,
    pos: usize,
    /// Compact: the id of the previous field in the current struct, and the enclosing ones'.
    last_field: i16,
    outer_fields: Vec<i16>,
    /// Compact: a boolean field's value, carried by its header.
    pending_bool: Option<bool>,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(proto: Protocol, src: &'a Bytes) -> Self {
        Self {
            proto,
            src,
            pos: 0,
            last_field: 0,
            outer_fields: Vec::new(),
            pending_bool: None,
        }
    }

    fn left(&self) -> usize {
        self.src.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<Range<usize>> {
        if n > self.left() {
            return Err(DecodeError::Truncated {
                what,
                need: n,
                left: self.left(),
            });
        }
        let r = self.pos..self.pos + n;
        self.pos += n;
        Ok(r)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let r = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&self.src[r]);
        Ok(a)
    }

    fn byte(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    fn varint(&mut self, max_bytes: usize) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..max_bytes {
            let b = self.byte("varint")?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Varint)
    }

    fn varint32(&mut self) -> Result<u32> {
        u32::try_from(self.varint(5)?).map_err(|_| DecodeError::Varint)
    }

    pub(crate) fn read_i16(&mut self) -> Result<i16> {
        match self.proto {
            Protocol::Binary => Ok(i16::from_be_bytes(self.array("i16")?)),
            Protocol::Compact => {
                i16::try_from(unzigzag(self.varint(3)?)).map_err(|_| DecodeError::Varint)
            }
        }
    }

    pub(crate) fn read_i32(&mut self) -> Result<i32> {
        match self.proto {
            Protocol::Binary => Ok(i32::from_be_bytes(self.array("i32")?)),
            Protocol::Compact => {
                i32::try_from(unzigzag(self.varint(5)?)).map_err(|_| DecodeError::Varint)
            }
        }
    }

    fn read_i64(&mut self) -> Result<i64> {
        match self.proto {
            Protocol::Binary => Ok(i64::from_be_bytes(self.array("i64")?)),
            Protocol::Compact => Ok(unzigzag(self.varint(10)?)),
        }
    }

    fn read_bool(&mut self) -> Result<bool> {
        if let Some(b) = self.pending_bool.take() {
            return Ok(b);
        }
        let b = self.byte("bool")?;
        Ok(match self.proto {
            Protocol::Binary => b != 0,
            Protocol::Compact => b == 1,
        })
    }

    /// A declared size, checked against what is left (each element takes at least a byte).
    fn size(&mut self, what: &'static str) -> Result<usize> {
        let size = match self.proto {
            Protocol::Binary => {
                let n = self.read_i32_binary()?;
                u64::try_from(n).map_err(|_| DecodeError::Negative { what, size: n })?
            }
            Protocol::Compact => u64::from(self.varint32()?),
        };
        self.check_size(what, size)
    }

    fn read_i32_binary(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array("size")?))
    }

    fn check_size(&self, what: &'static str, size: u64) -> Result<usize> {
        match usize::try_from(size) {
            Ok(n) if n <= self.left() => Ok(n),
            _ => Err(DecodeError::Oversize {
                what,
                size,
                left: self.left(),
            }),
        }
    }

    /// A string or binary: its range in the frame.
    pub(crate) fn read_binary(&mut self, what: &'static str) -> Result<Range<usize>> {
        let n = self.size(what)?;
        self.take(n, what)
    }

    fn read_string(&mut self, what: &'static str) -> Result<String> {
        let r = self.read_binary(what)?;
        Ok(String::from_utf8_lossy(&self.src[r]).into_owned())
    }

    pub(crate) fn read_message_begin(&mut self) -> Result<Header> {
        match self.proto {
            Protocol::Binary => {
                let first = *self.src.first().ok_or(DecodeError::Truncated {
                    what: "message header",
                    need: 1,
                    left: 0,
                })?;
                let word = self.read_i32_binary()?;
                if word < 0 {
                    let w = word as u32;
                    if w & 0xffff_0000 != BINARY_VERSION_1 {
                        let hint = if first == COMPACT_ID {
                            "; the client speaks the compact protocol (set protocol = compact)"
                        } else {
                            ""
                        };
                        return Err(DecodeError::WrongProtocol {
                            expected: "binary",
                            first,
                            hint,
                        });
                    }
                    let name = self.read_string("method name")?;
                    let seqid = self.read_i32()?;
                    Ok(Header {
                        name,
                        kind: (w & 0xff) as u8,
                        seqid,
                    })
                } else {
                    // The old, unversioned header: the name's length came first.
                    let n = self.check_size("method name", word as u64)?;
                    let r = self.take(n, "method name")?;
                    let name = String::from_utf8_lossy(&self.src[r]).into_owned();
                    let kind = self.byte("message type")?;
                    let seqid = self.read_i32()?;
                    Ok(Header { name, kind, seqid })
                }
            }
            Protocol::Compact => {
                let first = self.byte("message header")?;
                if first != COMPACT_ID {
                    let hint = if first == 0x80 {
                        "; the client speaks the binary protocol (set protocol = binary)"
                    } else {
                        ""
                    };
                    return Err(DecodeError::WrongProtocol {
                        expected: "compact",
                        first,
                        hint,
                    });
                }
                let vt = self.byte("message header")?;
                if vt & 0x1f != COMPACT_VERSION {
                    return Err(DecodeError::BadHeader(format!(
                        "compact protocol version {} (expected {COMPACT_VERSION})",
                        vt & 0x1f
                    )));
                }
                let seqid = self.varint32()? as i32;
                let name = self.read_string("method name")?;
                Ok(Header {
                    name,
                    kind: (vt >> 5) & 0x07,
                    seqid,
                })
            }
        }
    }

    pub(crate) fn struct_begin(&mut self) -> Result<()> {
        if self.outer_fields.len() >= MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        self.outer_fields.push(self.last_field);
        self.last_field = 0;
        Ok(())
    }

    pub(crate) fn struct_end(&mut self) {
        self.last_field = self.outer_fields.pop().unwrap_or(0);
    }

    /// The next field's type and id; `None` at the struct's end.
    pub(crate) fn field_begin(&mut self) -> Result<Option<(u8, i16)>> {
        match self.proto {
            Protocol::Binary => {
                let t = self.byte("field header")?;
                if t == T_STOP {
                    return Ok(None);
                }
                let id = self.read_i16()?;
                Ok(Some((t, id)))
            }
            Protocol::Compact => {
                let b = self.byte("field header")?;
                if b == T_STOP {
                    return Ok(None);
                }
                let ctype = b & 0x0f;
                let delta = i16::from(b >> 4);
                let id = if delta == 0 {
                    self.read_i16()?
                } else {
                    self.last_field.wrapping_add(delta)
                };
                let t = from_compact_type(ctype)?;
                if t == T_BOOL {
                    self.pending_bool = Some(ctype == 1);
                }
                self.last_field = id;
                Ok(Some((t, id)))
            }
        }
    }

    /// Key type, value type and size.
    fn map_begin(&mut self) -> Result<(u8, u8, usize)> {
        match self.proto {
            Protocol::Binary => {
                let k = self.byte("map header")?;
                let v = self.byte("map header")?;
                let n = self.size("map")?;
                Ok((k, v, n))
            }
            Protocol::Compact => {
                let n = u64::from(self.varint32()?);
                let n = self.check_size("map", n)?;
                if n == 0 {
                    return Ok((T_STRING, T_STRING, 0));
                }
                let kv = self.byte("map header")?;
                Ok((
                    from_compact_type(kv >> 4)?,
                    from_compact_type(kv & 0x0f)?,
                    n,
                ))
            }
        }
    }

    /// Element type and size (lists and sets).
    fn list_begin(&mut self) -> Result<(u8, usize)> {
        match self.proto {
            Protocol::Binary => {
                let e = self.byte("list header")?;
                let n = self.size("list")?;
                Ok((e, n))
            }
            Protocol::Compact => {
                let b = self.byte("list header")?;
                let short = u64::from(b >> 4);
                let n = if short == 15 {
                    u64::from(self.varint32()?)
                } else {
                    short
                };
                let n = self.check_size("list", n)?;
                Ok((from_compact_type(b & 0x0f)?, n))
            }
        }
    }

    /// Skips a value of type `t`, at most [`MAX_DEPTH`] levels deep.
    pub(crate) fn skip(&mut self, t: u8, depth: usize) -> Result<()> {
        if depth >= MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        match t {
            T_BOOL => {
                self.read_bool()?;
            }
            T_BYTE => {
                self.byte("byte")?;
            }
            T_I16 => {
                self.read_i16()?;
            }
            T_I32 => {
                self.read_i32()?;
            }
            T_I64 => {
                self.read_i64()?;
            }
            T_DOUBLE => {
                self.take(8, "double")?;
            }
            T_STRING => {
                self.read_binary("string")?;
            }
            T_STRUCT => {
                self.struct_begin()?;
                while let Some((ft, _)) = self.field_begin()? {
                    self.skip(ft, depth + 1)?;
                }
                self.struct_end();
            }
            T_MAP => {
                let (k, v, n) = self.map_begin()?;
                for _ in 0..n {
                    self.skip(k, depth + 1)?;
                    self.skip(v, depth + 1)?;
                }
            }
            T_SET | T_LIST => {
                let (e, n) = self.list_begin()?;
                for _ in 0..n {
                    self.skip(e, depth + 1)?;
                }
            }
            other => return Err(DecodeError::BadType(other)),
        }
        Ok(())
    }

    fn finish(&self) -> Result<()> {
        match self.left() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }

    /// One `ThriftFlumeEvent`; the body shares the frame's bytes. Decoded header memory is
    /// reported to `charge`.
    fn read_event(&mut self, charge: &mut Charge<'_>) -> Result<Event> {
        self.struct_begin()?;
        let mut headers = None;
        let mut body = None;
        while let Some((t, id)) = self.field_begin()? {
            match (id, t) {
                (1, T_MAP) => headers = Some(self.read_headers(charge)?),
                (2, T_STRING) => {
                    let r = self.read_binary("event body")?;
                    body = Some(self.src.slice(r));
                }
                _ => self.skip(t, 1)?,
            }
        }
        self.struct_end();
        let (Some(headers), Some(body)) = (headers, body) else {
            return Err(DecodeError::Invalid(
                "ThriftFlumeEvent without its required headers (1) or body (2)".into(),
            ));
        };
        charge(EVENT_COST)?;
        Ok(Event::with_headers(headers, body))
    }

    fn read_headers(&mut self, charge: &mut Charge<'_>) -> Result<Headers> {
        let (k, v, n) = self.map_begin()?;
        if n > 0 && (k != T_STRING || v != T_STRING) {
            return Err(DecodeError::Invalid(format!(
                "event headers are a map of types {k} to {v}, not string to string"
            )));
        }
        let mut pairs: Vec<(SharedStr, SharedStr)> = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let kr = self.read_binary("header key")?;
            let vr = self.read_binary("header value")?;
            charge(HEADER_COST + kr.len() + vr.len())?;
            let key = SharedStr::new(String::from_utf8_lossy(&self.src[kr]));
            let value = SharedStr::new(String::from_utf8_lossy(&self.src[vr]));
            pairs.push((key, value));
        }
        Ok(pairs.into_iter().collect())
    }
}

/// Estimated memory of one decoded event and of one header pair, beyond their bytes.
const EVENT_COST: usize = 96;
const HEADER_COST: usize = 64;

/// Asked for the memory decoded headers and events take; an `Err` stops decoding.
pub(crate) type Charge<'c> = dyn FnMut(usize) -> Result<()> + 'c;

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Call {
    Append(Event),
    AppendBatch(Vec<Event>),
    /// Another method (its arguments skipped): answered with an exception.
    Unknown,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) header: Header,
    pub(crate) call: Call,
}

/// The message header alone (to answer a request whose body cannot be decoded).
pub(crate) fn decode_header(proto: Protocol, frame: &Bytes) -> Result<Header> {
    Decoder::new(proto, frame).read_message_begin()
}

/// Decodes one request frame: a CALL of `append` or `appendBatch` (at most `max_events`).
pub(crate) fn decode_request(
    proto: Protocol,
    frame: &Bytes,
    max_events: usize,
    charge: &mut Charge<'_>,
) -> Result<Request> {
    let mut d = Decoder::new(proto, frame);
    let header = d.read_message_begin()?;
    if header.kind != CALL {
        return Err(DecodeError::BadHeader(format!(
            "message type {} where a call (1) was expected",
            header.kind
        )));
    }
    d.struct_begin()?;
    let mut call = None;
    let method = header.name.as_str();
    while let Some((t, id)) = d.field_begin()? {
        match (method, id, t) {
            ("append", 1, T_STRUCT) => call = Some(Call::Append(d.read_event(charge)?)),
            ("appendBatch", 1, T_LIST) => {
                let (e, n) = d.list_begin()?;
                if n > max_events {
                    return Err(DecodeError::TooManyEvents { max: max_events });
                }
                if n > 0 && e != T_STRUCT {
                    return Err(DecodeError::Invalid(format!(
                        "appendBatch's events are a list of type {e}, not of structs"
                    )));
                }
                let mut events: Vec<Event> = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    let mut ev = d.read_event(charge)?;
                    if let Some(prev) = events.last() {
                        ev.headers.share_if_equal(&prev.headers);
                    }
                    events.push(ev);
                }
                call = Some(Call::AppendBatch(events));
            }
            _ => d.skip(t, 1)?,
        }
    }
    d.struct_end();
    d.finish()?;
    let call = match (method, call) {
        (_, Some(c)) => c,
        ("append", None) => {
            return Err(DecodeError::Invalid("append without its event (1)".into()));
        }
        // Flume's generated code reads a missing list as null and fails on it.
        ("appendBatch", None) => {
            return Err(DecodeError::Invalid(
                "appendBatch without its events (1)".into(),
            ));
        }
        _ => Call::Unknown,
    };
    Ok(Request { header, call })
}

/// What a server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    Status(Status),
    /// A `TApplicationException`'s message and type.
    Exception(String, i32),
}

/// Decodes the reply to the call `name` with sequence id `seqid`.
pub(crate) fn decode_reply(
    proto: Protocol,
    frame: &Bytes,
    name: &str,
    seqid: i32,
) -> Result<Reply> {
    let mut d = Decoder::new(proto, frame);
    let header = d.read_message_begin()?;
    if header.seqid != seqid || header.name != name {
        return Err(DecodeError::BadHeader(format!(
            "reply `{}` #{} to the call `{name}` #{seqid}",
            header.name, header.seqid
        )));
    }
    d.struct_begin()?;
    let reply = match header.kind {
        REPLY => {
            let mut status = None;
            while let Some((t, id)) = d.field_begin()? {
                match (id, t) {
                    (0, T_I32) => status = Some(Status::from_value(d.read_i32()?)),
                    _ => d.skip(t, 1)?,
                }
            }
            Reply::Status(status.ok_or_else(|| {
                DecodeError::Invalid(format!("{name} failed: unknown result (no status)"))
            })?)
        }
        EXCEPTION => {
            let (mut message, mut kind) = (String::new(), 0);
            while let Some((t, id)) = d.field_begin()? {
                match (id, t) {
                    (1, T_STRING) => message = d.read_string("exception message")?,
                    (2, T_I32) => kind = d.read_i32()?,
                    _ => d.skip(t, 1)?,
                }
            }
            Reply::Exception(message, kind)
        }
        other => {
            return Err(DecodeError::BadHeader(format!(
                "message type {other} where a reply (2) or exception (3) was expected"
            )));
        }
    };
    d.struct_end();
    d.finish()?;
    Ok(reply)
}

/// Writes one message.
pub(crate) struct Encoder<'o> {
    proto: Protocol,
    out: &'o mut Vec<u8>,
    last_field: i16,
    outer_fields: Vec<i16>,
}

impl<'o> Encoder<'o> {
    pub(crate) fn new(proto: Protocol, out: &'o mut Vec<u8>) -> Self {
        Self {
            proto,
            out,
            last_field: 0,
            outer_fields: Vec::new(),
        }
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    pub(crate) fn write_i16(&mut self, v: i16) {
        match self.proto {
            Protocol::Binary => self.out.extend_from_slice(&v.to_be_bytes()),
            Protocol::Compact => self.varint(zigzag(i64::from(v))),
        }
    }

    pub(crate) fn write_i32(&mut self, v: i32) {
        match self.proto {
            Protocol::Binary => self.out.extend_from_slice(&v.to_be_bytes()),
            Protocol::Compact => self.varint(zigzag(i64::from(v))),
        }
    }

    #[cfg(test)]
    pub(crate) fn write_i64(&mut self, v: i64) {
        match self.proto {
            Protocol::Binary => self.out.extend_from_slice(&v.to_be_bytes()),
            Protocol::Compact => self.varint(zigzag(v)),
        }
    }

    fn size(&mut self, n: usize) {
        match self.proto {
            Protocol::Binary => self.out.extend_from_slice(&(n as u32).to_be_bytes()),
            Protocol::Compact => self.varint(n as u64),
        }
    }

    #[cfg(test)]
    pub(crate) fn write_raw(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    pub(crate) fn write_binary(&mut self, b: &[u8]) {
        self.size(b.len());
        self.out.extend_from_slice(b);
    }

    pub(crate) fn message_begin(&mut self, name: &str, kind: u8, seqid: i32) {
        match self.proto {
            Protocol::Binary => {
                self.out
                    .extend_from_slice(&(BINARY_VERSION_1 | u32::from(kind)).to_be_bytes());
                self.write_binary(name.as_bytes());
                self.write_i32(seqid);
            }
            Protocol::Compact => {
                self.out.push(COMPACT_ID);
                self.out.push(COMPACT_VERSION | (kind << 5));
                self.varint(u64::from(seqid as u32));
                self.write_binary(name.as_bytes());
            }
        }
    }

    pub(crate) fn struct_begin(&mut self) {
        self.outer_fields.push(self.last_field);
        self.last_field = 0;
    }

    pub(crate) fn struct_end(&mut self) {
        self.out.push(T_STOP);
        self.last_field = self.outer_fields.pop().unwrap_or(0);
    }

    fn compact_field(&mut self, ctype: u8, id: i16) {
        let delta = i32::from(id) - i32::from(self.last_field);
        if (1..=15).contains(&delta) {
            self.out.push(((delta as u8) << 4) | ctype);
        } else {
            self.out.push(ctype);
            self.write_i16(id);
        }
        self.last_field = id;
    }

    /// A field header (not for booleans: [`Self::bool_field`]).
    pub(crate) fn field_begin(&mut self, t: u8, id: i16) -> Result<()> {
        match self.proto {
            Protocol::Binary => {
                self.out.push(t);
                self.out.extend_from_slice(&id.to_be_bytes());
            }
            Protocol::Compact => {
                let c = compact_type(t)?;
                self.compact_field(c, id);
            }
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn bool_field(&mut self, id: i16, v: bool) {
        match self.proto {
            Protocol::Binary => {
                self.out.push(T_BOOL);
                self.out.extend_from_slice(&id.to_be_bytes());
                self.out.push(u8::from(v));
            }
            Protocol::Compact => self.compact_field(if v { 1 } else { 2 }, id),
        }
    }

    pub(crate) fn map_begin(&mut self, k: u8, v: u8, n: usize) -> Result<()> {
        match self.proto {
            Protocol::Binary => {
                self.out.push(k);
                self.out.push(v);
                self.size(n);
            }
            Protocol::Compact => {
                self.varint(n as u64);
                if n > 0 {
                    self.out.push((compact_type(k)? << 4) | compact_type(v)?);
                }
            }
        }
        Ok(())
    }

    pub(crate) fn list_begin(&mut self, e: u8, n: usize) -> Result<()> {
        match self.proto {
            Protocol::Binary => {
                self.out.push(e);
                self.size(n);
            }
            Protocol::Compact => {
                let c = compact_type(e)?;
                if n < 15 {
                    self.out.push(((n as u8) << 4) | c);
                } else {
                    self.out.push(0xf0 | c);
                    self.varint(n as u64);
                }
            }
        }
        Ok(())
    }

    fn event(&mut self, e: &Event) -> Result<()> {
        self.struct_begin();
        self.field_begin(T_MAP, 1)?;
        self.map_begin(T_STRING, T_STRING, e.headers.len())?;
        for (k, v) in e.headers.iter() {
            self.write_binary(k.as_bytes());
            self.write_binary(v.as_bytes());
        }
        self.field_begin(T_STRING, 2)?;
        self.write_binary(&e.body);
        self.struct_end();
        Ok(())
    }
}

/// A message that cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("a message of {0} bytes does not fit in a Thrift frame")]
    TooLarge(usize),
    #[error("cannot encode: {0}")]
    Type(#[from] DecodeError),
}

/// Appends one frame to `out`: the length, then what `body` writes.
pub(crate) fn framed(
    out: &mut Vec<u8>,
    body: impl FnOnce(&mut Vec<u8>) -> Result<()>,
) -> std::result::Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    if let Err(e) = body(out) {
        out.truncate(start);
        return Err(e.into());
    }
    let len = out.len() - start - 4;
    let Ok(n) = i32::try_from(len) else {
        out.truncate(start);
        return Err(EncodeError::TooLarge(len));
    };
    out[start..start + 4].copy_from_slice(&n.to_be_bytes());
    Ok(())
}

/// `appendBatch(events)` (or `append(event)` when `single`, for one event) as one frame.
pub(crate) fn encode_call(
    proto: Protocol,
    out: &mut Vec<u8>,
    seqid: i32,
    events: &[Event],
    single: bool,
) -> std::result::Result<(), EncodeError> {
    framed(out, |out| {
        let mut e = Encoder::new(proto, out);
        match (single, events) {
            (true, [event]) => {
                e.message_begin("append", CALL, seqid);
                e.struct_begin();
                e.field_begin(T_STRUCT, 1)?;
                e.event(event)?;
            }
            _ => {
                e.message_begin("appendBatch", CALL, seqid);
                e.struct_begin();
                e.field_begin(T_LIST, 1)?;
                e.list_begin(T_STRUCT, events.len())?;
                for event in events {
                    e.event(event)?;
                }
            }
        }
        e.struct_end();
        Ok(())
    })
}

/// The reply `name` #`seqid` carrying `status`, as one frame.
pub(crate) fn encode_reply(
    proto: Protocol,
    out: &mut Vec<u8>,
    name: &str,
    seqid: i32,
    status: Status,
) -> std::result::Result<(), EncodeError> {
    framed(out, |out| {
        let mut e = Encoder::new(proto, out);
        e.message_begin(name, REPLY, seqid);
        e.struct_begin();
        e.field_begin(T_I32, 0)?;
        e.write_i32(status.value());
        e.struct_end();
        Ok(())
    })
}

/// A `TApplicationException` answering `name` #`seqid`, as one frame.
pub(crate) fn encode_exception(
    proto: Protocol,
    out: &mut Vec<u8>,
    name: &str,
    seqid: i32,
    kind: i32,
    message: &str,
) -> std::result::Result<(), EncodeError> {
    framed(out, |out| {
        let mut e = Encoder::new(proto, out);
        e.message_begin(name, EXCEPTION, seqid);
        e.struct_begin();
        e.field_begin(T_STRING, 1)?;
        e.write_binary(message.as_bytes());
        e.field_begin(T_I32, 2)?;
        e.write_i32(kind);
        e.struct_end();
        Ok(())
    })
}

/// The length a frame header declares (negative lengths are refused as oversize).
pub(crate) fn frame_len(header: [u8; 4]) -> Option<usize> {
    usize::try_from(i32::from_be_bytes(header)).ok()
}

#[cfg(test)]
mod tests;
