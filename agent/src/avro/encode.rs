//! Encoding of `AvroFlumeEvent` and its array, written by hand for this one schema.
//!
//! ```text
//! record AvroFlumeEvent { map<string> headers; bytes body; }
//! array  := count:long item* 0            (one block; nothing but 0 when empty)
//! map    := count:long (key:string value:string)* 0
//! string/bytes := length:long byte*
//! long   := zig-zag varint
//! ```
//! This is the encoding `apache-avro` produces for the same values (one block per array and
//! map; the tests compare the two byte for byte). Headers are written in key order.
//!
//! [`EncodedEvents`] keeps the bodies out of the encoding: everything else goes into one
//! buffer, and the frame is written as slices of that buffer interleaved with the events' own
//! body buffers (vectored I/O), so sending a batch copies no body in user space.

use std::io::{self, IoSlice, Write};

use crate::event::{Event, Headers};

/// Avro `long`: zig-zag varint.
pub(crate) fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    put_long(out, n as i64);
}

/// Avro `string` (or `bytes`): length, then the bytes.
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_headers(out: &mut Vec<u8>, h: &Headers) {
    if !h.is_empty() {
        put_len(out, h.len());
        for (k, v) in h.iter() {
            put_str(out, k);
            put_str(out, v);
        }
    }
    out.push(0);
}

/// One `AvroFlumeEvent`, contiguous (the `append` message).
pub(crate) fn put_event(out: &mut Vec<u8>, e: &Event) {
    put_headers(out, &e.headers);
    put_len(out, e.body.len());
    out.extend_from_slice(&e.body);
}

/// `array<AvroFlumeEvent>` with the bodies left in the events: see the module header.
pub(crate) struct EncodedEvents<'a> {
    /// Every byte but the bodies.
    meta: Vec<u8>,
    /// `meta[cuts[i - 1]..cuts[i]]` precedes the body of event `i`.
    cuts: Vec<usize>,
    events: &'a [Event],
}

impl<'a> EncodedEvents<'a> {
    pub(crate) fn new(events: &'a [Event]) -> Self {
        let headers: usize = events
            .iter()
            .map(|e| {
                if e.headers.is_empty() {
                    0
                } else {
                    e.headers.byte_len() + 4 * e.headers.len() + 2
                }
            })
            .sum();
        let mut meta = Vec::with_capacity(headers + 8 * events.len() + 12);
        let mut cuts = Vec::with_capacity(events.len());
        if !events.is_empty() {
            put_len(&mut meta, events.len());
        }
        for e in events {
            put_headers(&mut meta, &e.headers);
            put_len(&mut meta, e.body.len());
            cuts.push(meta.len());
        }
        meta.push(0);
        Self { meta, cuts, events }
    }

    /// Encoded bytes in all.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.meta.len() + self.events.iter().map(|e| e.body.len()).sum::<usize>()
    }

    /// The encoding as slices in order: buffer pieces and bodies, empty ones left out.
    pub(crate) fn slices(&self) -> Vec<&[u8]> {
        let mut out = Vec::with_capacity(2 * self.cuts.len() + 1);
        let mut from = 0;
        for (e, &cut) in self.events.iter().zip(&self.cuts) {
            out.push(&self.meta[from..cut]);
            if !e.body.is_empty() {
                out.push(&e.body[..]);
            }
            from = cut;
        }
        out.push(&self.meta[from..]);
        out
    }

    /// The encoding in one buffer (tests, and callers that need it contiguous).
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        self.slices().concat()
    }
}

/// Writes every byte of `parts` with as few `write_vectored` calls as the writer allows (a
/// socket takes up to `IOV_MAX` slices per call; other writers take one at a time).
pub(crate) fn write_all_vectored(w: &mut dyn Write, parts: &[&[u8]]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| IoSlice::new(p))
        .collect();
    let mut bufs = &mut slices[..];
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use apache_avro::types::Value;
    use proptest::prelude::*;

    use super::super::decode::{Reader, read_events};
    use super::super::protocol::SCHEMAS;
    use super::*;
    use crate::event::Headers;

    /// apache-avro's encoding of the same events: the oracle.
    fn oracle(events: &[Event]) -> Vec<u8> {
        let items = events
            .iter()
            .map(|e| {
                let headers: HashMap<String, Value> = e
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                    .collect();
                Value::Record(vec![
                    ("headers".into(), Value::Map(headers)),
                    ("body".into(), Value::Bytes(e.body.to_vec())),
                ])
            })
            .collect();
        apache_avro::to_avro_datum(&SCHEMAS.events, Value::Array(items)).unwrap_or_default()
    }

    fn events() -> impl Strategy<Value = Vec<Event>> {
        let header = ("[a-zA-Z0-9._-]{0,40}", "\\PC{0,40}");
        let event = (
            proptest::collection::vec(header, 0..4),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(h, body)| Event::with_headers(h.into_iter().collect::<Headers>(), body));
        proptest::collection::vec(event, 0..40)
    }

    proptest! {
        /// Byte-identical to apache-avro where the map order is fixed (at most one header:
        /// apache-avro writes a `HashMap` in its own order), and for any headers, apache-avro
        /// reads back what was written; sluice's decoder reads back equal events.
        #[test]
        fn matches_apache_avro_and_round_trips(events in events()) {
            let ours = EncodedEvents::new(&events);
            let bytes = ours.to_vec();
            prop_assert_eq!(bytes.len(), ours.len());
            let theirs = oracle(&events);
            prop_assert_eq!(bytes.len(), theirs.len());
            if events.iter().all(|e| e.headers.len() <= 1) {
                prop_assert_eq!(&bytes, &theirs);
            }
            let mut slice = &bytes[..];
            let value = apache_avro::from_avro_datum(&SCHEMAS.events, &mut slice, None);
            prop_assert!(slice.is_empty());
            let theirs_value = apache_avro::from_avro_datum(&SCHEMAS.events, &mut &theirs[..], None);
            prop_assert_eq!(value.ok(), theirs_value.ok());
            let back = read_events(&mut Reader::new(bytes), usize::MAX);
            prop_assert_eq!(back.ok(), Some(events));
        }

        #[test]
        fn longs_match_apache_avro(v in any::<i64>()) {
            let mut ours = Vec::new();
            put_long(&mut ours, v);
            let theirs = apache_avro::to_avro_datum(
                &apache_avro::Schema::Long, Value::Long(v)).unwrap_or_default();
            prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn vectored_writes_survive_short_writes() -> io::Result<()> {
        /// Accepts at most 7 bytes of the first slice per call.
        struct Trickle(Vec<u8>);
        impl Write for Trickle {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let n = buf.len().min(7);
                self.0.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let parts: Vec<&[u8]> = vec![b"hello ", b"", b"vectored ", b"world"];
        let mut w = Trickle(Vec::new());
        write_all_vectored(&mut w, &parts)?;
        assert_eq!(w.0, b"hello vectored world");
        Ok(())
    }
}
