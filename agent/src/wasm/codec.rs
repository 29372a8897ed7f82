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

/// A batch a guest returned, checked whole (offsets, header encoding, UTF-8) but not yet
/// turned into events: [`Replacements::next_parts`] hands them out one by one, so an interceptor
/// builds each output event once, straight from its input event and its verdict, and a
/// set-headers verdict never touches a body.
///
/// Consecutive events the guest gave the same header bytes (it set one tag on a batch) share
/// one decoded map: `runs` holds one map per run of equal header bytes.
#[derive(Debug)]
pub(crate) struct Replacements {
    bodies: Bytes,
    body_ends: Vec<u32>,
    /// (index of the first event after the run, the run's headers), in event order.
    runs: Vec<(usize, Headers)>,
    /// The next event to hand out, its body's start and its run.
    next: usize,
    body_start: usize,
    run: usize,
}

impl Replacements {
    /// Checks every offset and header of `b`; the error says what the guest got wrong.
    pub(crate) fn new(b: Batch) -> Result<Self, DecodeError> {
        if b.body_ends.len() != b.header_ends.len() {
            return Err(DecodeError::OffsetCounts {
                bodies: b.body_ends.len(),
                headers: b.header_ends.len(),
            });
        }
        let mut body_start = 0usize;
        for &be in &b.body_ends {
            let be = be as usize;
            if be < body_start || be > b.bodies.len() {
                return Err(DecodeError::Offsets);
            }
            body_start = be;
        }
        let mut runs: Vec<(usize, Headers)> = Vec::new();
        let mut header_start = 0usize;
        let mut prev: &[u8] = &[];
        for (i, &he) in b.header_ends.iter().enumerate() {
            let he = he as usize;
            if he < header_start || he > b.headers.len() {
                return Err(DecodeError::Offsets);
            }
            let raw = &b.headers[header_start..he];
            match runs.last_mut() {
                Some((end, _)) if raw == prev => *end = i + 1,
                _ => runs.push((i + 1, decode_headers(raw)?)),
            }
            prev = raw;
            header_start = he;
        }
        Ok(Self {
            bodies: Bytes::from(b.bodies),
            body_ends: b.body_ends,
            runs,
            next: 0,
            body_start: 0,
            run: 0,
        })
    }

    /// How many events the guest returned.
    pub(crate) fn len(&self) -> usize {
        self.body_ends.len()
    }

    /// The next event's headers and, if `with_body`, its body (bodies share one buffer, no
    /// copy per event); `None` after the last.
    pub(crate) fn next_parts(&mut self, with_body: bool) -> Option<(Headers, Bytes)> {
        let end = *self.body_ends.get(self.next)? as usize;
        while self
            .runs
            .get(self.run)
            .is_some_and(|(e, _)| *e <= self.next)
        {
            self.run += 1;
        }
        let headers = self
            .runs
            .get(self.run)
            .map(|(_, h)| h.clone())
            .unwrap_or_default();
        let body = if with_body && end > self.body_start {
            self.bodies.slice(self.body_start..end)
        } else {
            Bytes::new()
        };
        self.next += 1;
        self.body_start = end;
        Some((headers, body))
    }
}

impl Replacements {
    /// The headers of the event handed out last (what verdict 5 gives its event); empty before
    /// the first.
    pub(crate) fn last_headers(&self) -> Headers {
        match self.next {
            0 => Headers::default(),
            _ => self
                .runs
                .get(self.run)
                .map(|(_, h)| h.clone())
                .unwrap_or_default(),
        }
    }
}

impl Iterator for Replacements {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        self.next_parts(true)
            .map(|(headers, body)| Event { headers, body })
    }
}

/// Decodes a batch a guest returned; bodies share one buffer (no copy per event).
#[cfg(test)]
pub(crate) fn decode(b: Batch) -> Result<Vec<Event>, DecodeError> {
    Ok(Replacements::new(b)?.collect())
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
