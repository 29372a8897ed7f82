//! The flat batch format of `wit/pipeline.wit` (`record batch`), host side.
//!
//! Bodies are concatenated into one buffer with an end offset per event; headers are encoded
//! per event as `u32le key-len, key, u32le value-len, value` entries (in key order) into a second
//! buffer with its own end offsets. Four allocations cross the boundary per batch whatever its
//! size, instead of two per event plus two per header with a `list<event>`.

use bytes::Bytes;

use super::bindings::Batch;
use crate::event::{Event, Headers};

/// Encodes events (bodies cut to `body_prefix` bytes when set); fails only when the batch
/// exceeds 4 GiB (offsets are u32).
pub fn encode(events: &[Event], body_prefix: Option<usize>) -> Result<Batch, String> {
    let mut b = Batch {
        bodies: Vec::new(),
        body_ends: Vec::new(),
        headers: Vec::new(),
        header_ends: Vec::new(),
    };
    encode_into(events, body_prefix, &mut b)?;
    Ok(b)
}

/// Encodes events into `b`, reusing its buffers. With `body_prefix`, at most that many bytes
/// of each body are sent (`body-prefix`): a guest that decides on headers or a body's first
/// word does not pay for copying whole bodies in. (The hooks encode into a fresh batch per
/// call: a reused one measured slower, see interceptor.rs.)
pub fn encode_into(
    events: &[Event],
    body_prefix: Option<usize>,
    b: &mut Batch,
) -> Result<(), String> {
    let limit = body_prefix.unwrap_or(usize::MAX);
    let mut body_len = 0usize;
    let mut header_len = 0usize;
    for e in events {
        body_len += e.body.len().min(limit);
        if !e.headers.is_empty() {
            header_len += e.headers.byte_len() + 8 * e.headers.len();
        }
    }
    if body_len > u32::MAX as usize || header_len > u32::MAX as usize {
        return Err("batch larger than 4 GiB".into());
    }
    b.bodies.clear();
    b.headers.clear();
    b.body_ends.clear();
    b.header_ends.clear();
    b.bodies.reserve(body_len);
    b.headers.reserve(header_len);
    b.body_ends.reserve(events.len());
    b.header_ends.reserve(events.len());
    for e in events {
        let body = &e.body[..e.body.len().min(limit)];
        b.bodies.extend_from_slice(body);
        b.body_ends.push(b.bodies.len() as u32);
    }
    if header_len == 0 {
        b.header_ends.resize(events.len(), 0);
        return Ok(());
    }
    for e in events {
        for (k, v) in e.headers.iter() {
            b.headers.extend_from_slice(&(k.len() as u32).to_le_bytes());
            b.headers.extend_from_slice(k.as_bytes());
            b.headers.extend_from_slice(&(v.len() as u32).to_le_bytes());
            b.headers.extend_from_slice(v.as_bytes());
        }
        b.header_ends.push(b.headers.len() as u32);
    }
    Ok(())
}

/// Decodes a batch a guest returned; bodies share one buffer (no copy per event).
pub fn decode(b: Batch) -> Result<Vec<Event>, String> {
    if b.body_ends.len() != b.header_ends.len() {
        return Err(format!(
            "batch has {} body offsets but {} header offsets",
            b.body_ends.len(),
            b.header_ends.len()
        ));
    }
    let bodies = Bytes::from(b.bodies);
    let mut out = Vec::with_capacity(b.body_ends.len());
    let (mut body_start, mut header_start) = (0usize, 0usize);
    for (&be, &he) in b.body_ends.iter().zip(&b.header_ends) {
        let (be, he) = (be as usize, he as usize);
        if be < body_start || be > bodies.len() || he < header_start || he > b.headers.len() {
            return Err("batch offsets out of order or out of range".into());
        }
        let headers = decode_headers(&b.headers[header_start..he])?;
        out.push(Event {
            headers,
            body: bodies.slice(body_start..be),
        });
        body_start = be;
        header_start = he;
    }
    Ok(out)
}

fn decode_headers(mut buf: &[u8]) -> Result<Headers, String> {
    let mut pairs = Vec::new();
    while !buf.is_empty() {
        let (k, rest) = take_str(buf)?;
        let (v, rest) = take_str(rest)?;
        pairs.push((k, v));
        buf = rest;
    }
    Ok(pairs.into_iter().collect())
}

fn take_str(buf: &[u8]) -> Result<(String, &[u8]), String> {
    let Some((len, rest)) = buf.split_first_chunk::<4>() else {
        return Err("truncated header entry".into());
    };
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err("truncated header entry".into());
    }
    let s = std::str::from_utf8(&rest[..len]).map_err(|_| "header is not UTF-8".to_string())?;
    Ok((s.to_string(), &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() -> Result<(), String> {
        let mut a = Event::new("hello");
        a.headers.insert("level", "warn");
        a.headers.insert("host", "h1");
        let events = vec![a, Event::new(""), Event::new("x")];
        let b = encode(&events, None)?;
        assert_eq!(b.body_ends, vec![5, 5, 6]);
        assert_eq!(decode(b)?, events);
        Ok(())
    }

    #[test]
    fn prefix_cuts_bodies_and_buffers_are_reused() -> Result<(), String> {
        let events = vec![Event::new("hello world"), Event::new("hi")];
        let mut b = encode(&[Event::new("x".repeat(1000))], None)?;
        let cap = b.bodies.capacity();
        encode_into(&events, Some(5), &mut b)?;
        assert_eq!(b.bodies, b"hellohi");
        assert_eq!(b.body_ends, vec![5, 7]);
        assert_eq!(b.bodies.capacity(), cap);
        encode_into(&events, Some(0), &mut b)?;
        assert!(b.bodies.is_empty());
        assert_eq!(b.body_ends, vec![0, 0]);
        Ok(())
    }

    #[test]
    fn rejects_bad_offsets() {
        let b = Batch {
            bodies: b"ab".to_vec(),
            body_ends: vec![3],
            headers: vec![],
            header_ends: vec![0],
        };
        assert!(decode(b).is_err());
        let b = Batch {
            bodies: vec![],
            body_ends: vec![0],
            headers: vec![9, 0, 0, 0, b'k'],
            header_ends: vec![5],
        };
        assert!(decode(b).is_err());
    }
}
