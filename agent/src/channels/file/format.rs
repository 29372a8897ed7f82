//! Byte layout of segment files and their records (see the module header of `file` for the
//! invariants). Everything is little-endian; every checksum is CRC32C.

use bytes::Bytes;

use super::crypto::Encryption;
use crate::event::{Event, Headers};

/// First bytes of every segment file.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"SLUICELG";
/// Version of the segment and checkpoint formats.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// magic (8) + version (4) + segment id (8) + crc (4).
pub(crate) const SEGMENT_HEADER_LEN: u64 = 24;
/// Marks the start of every record, so a reader can find the next record after damage.
pub(crate) const RECORD_MAGIC: u32 = 0x5343_4C52;
pub(crate) const RECORD_HEADER_LEN: usize = 32;
/// An event frame: data length (4) + CRC32C of the data (4), then the data.
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// A take range: first sequence number (8) + count (4).
pub(crate) const RANGE_LEN: usize = 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A committed put transaction: `count` event frames, sequence numbers `first..`.
    Put = 1,
    /// A committed take transaction: `count` ranges of sequence numbers.
    Take = 2,
}

/// The fixed header in front of every record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub(crate) kind: Kind,
    /// Bytes of the body that follows the header.
    pub(crate) len: u32,
    pub(crate) count: u32,
    /// Put: sequence number of the first event. Take: the take ticket (diagnostics only).
    pub(crate) first: u64,
    /// Take: CRC32C of the body. Put: 0 (each frame carries its own checksum).
    pub(crate) body_crc: u32,
}

impl RecordHeader {
    pub(crate) fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut b = [0u8; RECORD_HEADER_LEN];
        b[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        b[4] = self.kind as u8;
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..16].copy_from_slice(&self.count.to_le_bytes());
        b[16..24].copy_from_slice(&self.first.to_le_bytes());
        b[24..28].copy_from_slice(&self.body_crc.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses a header; `None` unless magic, kind, padding and checksum are all valid.
    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        let b = b.get(..RECORD_HEADER_LEN)?;
        if u32_at(b, 0)? != RECORD_MAGIC || b[5..8] != [0, 0, 0] {
            return None;
        }
        if crc32c::crc32c(&b[0..28]) != u32_at(b, 28)? {
            return None;
        }
        let kind = match b[4] {
            1 => Kind::Put,
            2 => Kind::Take,
            _ => return None,
        };
        Some(Self {
            kind,
            len: u32_at(b, 8)?,
            count: u32_at(b, 12)?,
            first: u64_at(b, 16)?,
            body_crc: u32_at(b, 24)?,
        })
    }
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(s))
}

pub(crate) fn segment_header(id: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut b = [0u8; SEGMENT_HEADER_LEN as usize];
    b[0..8].copy_from_slice(SEGMENT_MAGIC);
    b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    b[12..20].copy_from_slice(&id.to_le_bytes());
    let crc = crc32c::crc32c(&b[0..20]);
    b[20..24].copy_from_slice(&crc.to_le_bytes());
    b
}

/// True when `b` is a valid header for segment `id`.
pub(crate) fn check_segment_header(b: &[u8], id: u64) -> bool {
    b.len() >= SEGMENT_HEADER_LEN as usize
        && &b[0..8] == SEGMENT_MAGIC
        && u32_at(b, 8) == Some(FORMAT_VERSION)
        && u64_at(b, 12) == Some(id)
        && u32_at(b, 20) == Some(crc32c::crc32c(&b[0..20]))
}

/// A put record being built: header space, then one frame per event.
pub(crate) struct PutRecord {
    pub(crate) buf: Vec<u8>,
    /// Per event: (offset of its frame from the record start, data length).
    pub(crate) frames: Vec<(u32, u32)>,
}

impl PutRecord {
    /// Encodes `events`, each frame's data encrypted when `encryption` is set.
    pub(crate) fn encode(
        events: &[Event],
        encryption: Option<&Encryption>,
    ) -> Result<Self, openssl::error::ErrorStack> {
        let size: usize = events
            .iter()
            .map(|e| {
                FRAME_HEADER_LEN + 4 + e.body.len() + e.headers.byte_len() + 8 * e.headers.len()
            })
            .sum();
        let mut buf = Vec::with_capacity(RECORD_HEADER_LEN + size);
        buf.resize(RECORD_HEADER_LEN, 0);
        let mut frames = Vec::with_capacity(events.len());
        let mut plain = Vec::new();
        for e in events {
            let start = buf.len();
            buf.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
            match encryption {
                None => frame_plain(e, &mut buf),
                Some(enc) => {
                    plain.clear();
                    frame_plain(e, &mut plain);
                    enc.encrypt(&plain, &mut buf)?;
                }
            }
            let data_len = buf.len() - start - FRAME_HEADER_LEN;
            let crc = crc32c::crc32c(&buf[start + FRAME_HEADER_LEN..]);
            buf[start..start + 4].copy_from_slice(&(data_len as u32).to_le_bytes());
            buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
            frames.push((start as u32, data_len as u32));
        }
        Ok(Self { buf, frames })
    }
}

/// A frame's plain data: header count, headers, body.
fn frame_plain(e: &Event, buf: &mut Vec<u8>) {
    buf.extend_from_slice(&(e.headers.len() as u32).to_le_bytes());
    for (k, v) in e.headers.iter() {
        buf.extend_from_slice(&(k.len() as u32).to_le_bytes());
        buf.extend_from_slice(k.as_bytes());
        buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
        buf.extend_from_slice(v.as_bytes());
    }
    buf.extend_from_slice(&e.body);
}

/// Writes the header of an encoded put record once its first sequence number is known.
pub(crate) fn seal_put(buf: &mut [u8], count: u32, first_seq: u64) {
    let h = RecordHeader {
        kind: Kind::Put,
        len: (buf.len() - RECORD_HEADER_LEN) as u32,
        count,
        first: first_seq,
        body_crc: 0,
    };
    buf[..RECORD_HEADER_LEN].copy_from_slice(&h.encode());
}

/// Encodes a take record for `seqs` (sorted and deduplicated here) as ranges.
pub(crate) fn take_record(seqs: &mut [u64], ticket: u64) -> Vec<u8> {
    seqs.sort_unstable();
    let mut body = Vec::with_capacity(RANGE_LEN * 4);
    let mut count = 0u32;
    let mut i = 0;
    while i < seqs.len() {
        let start = seqs[i];
        let mut n = 1u32;
        i += 1;
        while i < seqs.len() && seqs[i] <= start + u64::from(n) && n < u32::MAX {
            if seqs[i] == start + u64::from(n) {
                n += 1;
            }
            i += 1;
        }
        body.extend_from_slice(&start.to_le_bytes());
        body.extend_from_slice(&n.to_le_bytes());
        count += 1;
    }
    let h = RecordHeader {
        kind: Kind::Take,
        len: body.len() as u32,
        count,
        first: ticket,
        body_crc: crc32c::crc32c(&body),
    };
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + body.len());
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(&body);
    out
}

/// The ranges of a take body: (first sequence number, count).
pub(crate) fn take_ranges(body: &[u8]) -> impl Iterator<Item = (u64, u32)> + '_ {
    body.chunks_exact(RANGE_LEN)
        .filter_map(|c| Some((u64_at(c, 0)?, u32_at(c, 8)?)))
}

/// Checks one frame at the start of `b`: `Some(data)` when length and checksum hold.
pub(crate) fn frame_data(b: &[u8]) -> Option<&[u8]> {
    let len = u32_at(b, 0)? as usize;
    let crc = u32_at(b, 4)?;
    let data = b.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len)?;
    (crc32c::crc32c(data) == crc).then_some(data)
}

/// Decodes frame data (header count, headers, body) into an event; the body shares `data`.
pub(crate) fn decode_event(data: Bytes) -> Option<Event> {
    let n = u32_at(&data, 0)? as usize;
    let mut at = 4;
    let mut pairs = Vec::with_capacity(n.min(64));
    let field = |at: &mut usize| -> Option<String> {
        let len = u32_at(&data, *at)? as usize;
        let s = data.get(*at + 4..*at + 4 + len)?;
        *at += 4 + len;
        String::from_utf8(s.to_vec()).ok()
    };
    for _ in 0..n {
        let k = field(&mut at)?;
        let v = field(&mut at)?;
        pairs.push((k, v));
    }
    if at > data.len() {
        return None;
    }
    let headers: Headers = pairs.into_iter().collect();
    Some(Event::with_headers(headers, data.slice(at..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_record_round_trip() -> Result<(), openssl::error::ErrorStack> {
        let mut h: Headers = Headers::new();
        h.insert("host", "a");
        let events = vec![Event::with_headers(h, "hello"), Event::new("")];
        let mut r = PutRecord::encode(&events, None)?;
        seal_put(&mut r.buf, 2, 7);
        let hdr = RecordHeader::decode(&r.buf);
        assert_eq!(
            hdr.map(|h| (h.kind, h.count, h.first)),
            Some((Kind::Put, 2, 7))
        );
        for (i, (off, len)) in r.frames.iter().enumerate() {
            let data = frame_data(&r.buf[*off as usize..]).map(|d| d.len());
            assert_eq!(data, Some(*len as usize));
            let start = *off as usize + FRAME_HEADER_LEN;
            let ev = decode_event(Bytes::copy_from_slice(&r.buf[start..start + *len as usize]));
            assert_eq!(ev.as_ref(), Some(&events[i]));
        }
        let mut bad = r.buf.clone();
        bad[RECORD_HEADER_LEN + 12] ^= 1;
        assert!(frame_data(&bad[RECORD_HEADER_LEN..]).is_none());
        bad[3] ^= 1;
        assert!(RecordHeader::decode(&bad).is_none());
        Ok(())
    }

    #[test]
    fn take_ranges_compress_runs() {
        let mut seqs = vec![5, 3, 4, 10, 11, 4, 20];
        let rec = take_record(&mut seqs, 1);
        let h = RecordHeader::decode(&rec);
        assert_eq!(h.map(|h| h.count), Some(3));
        let ranges: Vec<_> = take_ranges(&rec[RECORD_HEADER_LEN..]).collect();
        assert_eq!(ranges, vec![(3, 3), (10, 2), (20, 1)]);
    }

    #[test]
    fn segment_header_checks_id() {
        let h = segment_header(9);
        assert!(check_segment_header(&h, 9));
        assert!(!check_segment_header(&h, 8));
        assert!(!check_segment_header(&h[..10], 9));
    }
}
