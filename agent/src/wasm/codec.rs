//! The flat batch format of `wit/pipeline.wit` (`record batch`): decoding the events a guest
//! returns. (Batches going in are written straight into guest memory, see `lower.rs`.)
//!
//! Bodies are concatenated into one buffer with an end offset per event; headers are encoded
//! per event as `u32le key-len, key, u32le value-len, value` entries (in key order) into a second
//! buffer with its own end offsets. Four allocations cross the boundary per batch whatever its
//! size, instead of two per event plus two per header with a `list<event>`.

use bytes::Bytes;

use super::bindings::Batch;
use crate::event::{Event, Headers, SharedStr};

/// What is wrong with a batch a guest returned.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("batch has {bodies} body offsets but {headers} header offsets")]
    OffsetCounts { bodies: usize, headers: usize },
    #[error("batch offsets out of order or out of range")]
    Offsets,
    #[error("truncated header entry")]
    TruncatedHeader,
    #[error("header is not UTF-8")]
    HeaderUtf8(#[source] std::str::Utf8Error),
}

/// Decodes a batch a guest returned; bodies share one buffer (no copy per event).
pub(crate) fn decode(b: Batch) -> Result<Vec<Event>, DecodeError> {
    if b.body_ends.len() != b.header_ends.len() {
        return Err(DecodeError::OffsetCounts {
            bodies: b.body_ends.len(),
            headers: b.header_ends.len(),
        });
    }
    let bodies = Bytes::from(b.bodies);
    let mut out = Vec::with_capacity(b.body_ends.len());
    let (mut body_start, mut header_start) = (0usize, 0usize);
    // Events a guest gave the same header bytes (it set one tag on a batch) share one map.
    let mut prev: Option<(&[u8], Headers)> = None;
    for (&be, &he) in b.body_ends.iter().zip(&b.header_ends) {
        let (be, he) = (be as usize, he as usize);
        if be < body_start || be > bodies.len() || he < header_start || he > b.headers.len() {
            return Err(DecodeError::Offsets);
        }
        let raw = &b.headers[header_start..he];
        let headers = match &prev {
            Some((p, h)) if *p == raw => h.clone(),
            _ => {
                let h = decode_headers(raw)?;
                prev = Some((raw, h.clone()));
                h
            }
        };
        out.push(Event {
            headers,
            body: bodies.slice(body_start..be),
        });
        body_start = be;
        header_start = he;
    }
    Ok(out)
}

fn decode_headers(mut buf: &[u8]) -> Result<Headers, DecodeError> {
    let mut pairs: smallvec::SmallVec<[(SharedStr, SharedStr); 4]> = smallvec::SmallVec::new();
    while !buf.is_empty() {
        let (k, rest) = take_str(buf)?;
        let (v, rest) = take_str(rest)?;
        pairs.push((k.into(), v.into()));
        buf = rest;
    }
    Ok(pairs.into_iter().collect())
}

fn take_str(buf: &[u8]) -> Result<(&str, &[u8]), DecodeError> {
    let Some((len, rest)) = buf.split_first_chunk::<4>() else {
        return Err(DecodeError::TruncatedHeader);
    };
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err(DecodeError::TruncatedHeader);
    }
    let s = std::str::from_utf8(&rest[..len]).map_err(DecodeError::HeaderUtf8)?;
    Ok((s, &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_events_sharing_one_body_buffer() -> Result<(), DecodeError> {
        let mut headers = Vec::new();
        for part in ["host", "h1", "level", "warn"] {
            headers.extend_from_slice(&(part.len() as u32).to_le_bytes());
            headers.extend_from_slice(part.as_bytes());
        }
        let header_len = headers.len() as u32;
        let b = Batch {
            bodies: b"hellox".to_vec(),
            body_ends: vec![5, 5, 6],
            headers,
            header_ends: vec![header_len, header_len, header_len],
        };
        let mut a = Event::new("hello");
        a.headers.insert("level", "warn");
        a.headers.insert("host", "h1");
        assert_eq!(decode(b)?, vec![a, Event::new(""), Event::new("x")]);
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

    #[test]
    fn a_header_that_is_not_utf8_keeps_the_utf8_error() {
        let b = Batch {
            bodies: vec![],
            body_ends: vec![0],
            headers: vec![1, 0, 0, 0, 0xff, 0, 0, 0, 0],
            header_ends: vec![9],
        };
        let e = decode(b).err();
        assert!(matches!(e, Some(DecodeError::HeaderUtf8(_))), "{e:?}");
        let source = e.as_ref().and_then(std::error::Error::source);
        assert!(source.is_some_and(|s| s.is::<std::str::Utf8Error>()));
    }
}
