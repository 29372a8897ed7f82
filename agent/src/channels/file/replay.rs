//! Recovery: list the segments, then scan records from the checkpoint position (or from the
//! first segment) and rebuild the set of live events.
//!
//! Damage handling, per the invariants in the `file` module header:
//! - a record whose header checksum fails, or garbage between records, is reported with its file
//!   and offset, counted, and skipped by searching forward for the next valid record header;
//! - an event frame whose checksum fails is reported, counted and skipped; the other events of
//!   its put record are kept (if a frame length is damaged, the rest of that record is lost);
//! - in the newest segment, an incomplete record at the end with nothing valid after it is a torn
//!   write from a crash: the file is truncated there (it was never acknowledged).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::Ptr;
use super::format::{
    FRAME_HEADER_LEN, Kind, RECORD_HEADER_LEN, RECORD_MAGIC, RecordHeader, SEGMENT_HEADER_LEN,
    check_segment_header, frame_data, take_ranges, u32_at,
};

/// Marks a replayed event as taken while scanning.
const DEAD: u32 = u32::MAX;
const CHUNK: usize = 4 << 20;

/// Why the segment files could not be listed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ListSegmentsError {
    #[error("cannot list {}: {source}", dir.display())]
    List {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("segment {id} exists twice: {} and {}", first.display(), second.display())]
    Duplicate {
        id: u32,
        first: PathBuf,
        second: PathBuf,
    },
}

/// Segment files found in the data directories, by id.
pub(crate) fn list_segments(
    data_dirs: &[PathBuf],
) -> Result<BTreeMap<u32, PathBuf>, ListSegmentsError> {
    let mut found: BTreeMap<u32, PathBuf> = BTreeMap::new();
    for dir in data_dirs {
        let list_error = |source| ListSegmentsError::List {
            dir: dir.clone(),
            source,
        };
        for entry in std::fs::read_dir(dir).map_err(list_error)? {
            let entry = entry.map_err(list_error)?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix("log-"))
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<u32>().ok())
            else {
                continue;
            };
            let path = entry.path();
            if let Some(other) = found.insert(id, path.clone()) {
                return Err(ListSegmentsError::Duplicate {
                    id,
                    first: other,
                    second: path,
                });
            }
        }
    }
    Ok(found)
}

/// How the scan of one segment ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// Scanned to the end of the file (possibly after truncating a torn tail).
    Complete,
    /// The newest segment held no valid header or record: a crash while creating it.
    TornEmpty,
}

/// The state rebuilt by replay.
pub(crate) struct Replay {
    channel: String,
    live: Vec<Ptr>,
    dead: usize,
    pub(crate) next_seq: u64,
    /// Damaged records and events found (each reported in the log).
    pub(crate) corrupt: u64,
    /// Torn tails truncated.
    pub(crate) torn: u64,
    pub(crate) records: u64,
}

/// How a segment scanned from its start begins.
enum SegmentStart {
    Valid,
    /// No valid header nor record in the newest segment.
    TornEmpty,
    /// The header is damaged; the first valid record (or the end of the file) is here.
    DamagedUntil(u64),
}

/// Positioned reads through a large buffer.
struct Reader {
    file: File,
    size: u64,
    buf: Vec<u8>,
    start: u64,
}

impl Reader {
    /// `n` bytes at `off`, or `None` past the end of the file.
    fn bytes(&mut self, off: u64, n: usize) -> std::io::Result<Option<&[u8]>> {
        if off + n as u64 > self.size {
            return Ok(None);
        }
        if off < self.start || off + n as u64 > self.start + self.buf.len() as u64 {
            let want = (n.max(CHUNK) as u64).min(self.size - off) as usize;
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, off)?;
            self.start = off;
        }
        let s = (off - self.start) as usize;
        Ok(Some(&self.buf[s..s + n]))
    }

    /// The next offset at or after `from` holding a valid record header whose body fits.
    fn next_valid(&mut self, from: u64) -> std::io::Result<Option<u64>> {
        let magic = RECORD_MAGIC.to_le_bytes();
        let mut at = from;
        while at + RECORD_HEADER_LEN as u64 <= self.size {
            let n = ((self.size - at) as usize).min(CHUNK);
            let Some(chunk) = self.bytes(at, n)? else {
                return Ok(None);
            };
            let hits: Vec<usize> = chunk
                .windows(4)
                .enumerate()
                .filter(|(_, w)| *w == magic)
                .map(|(i, _)| i)
                .collect();
            for i in hits {
                let p = at + i as u64;
                let header = match self.bytes(p, RECORD_HEADER_LEN)? {
                    Some(b) => RecordHeader::decode(b),
                    None => None,
                };
                if let Some(h) = header
                    && p + RECORD_HEADER_LEN as u64 + u64::from(h.len) <= self.size
                {
                    return Ok(Some(p));
                }
            }
            // Overlap by a header so a record straddling two chunks is not missed.
            at += (n.saturating_sub(RECORD_HEADER_LEN)).max(1) as u64;
        }
        Ok(None)
    }
}

impl Replay {
    /// Starts from a checkpoint's live events (ascending sequence numbers), or from nothing.
    pub(crate) fn new(channel: &str, live: Vec<Ptr>, next_seq: u64) -> Self {
        Self {
            channel: channel.to_string(),
            live,
            dead: 0,
            next_seq,
            corrupt: 0,
            torn: 0,
            records: 0,
        }
    }

    /// Applies the records of segment `id` from offset `from` (0 = the whole file).
    pub(crate) fn scan(
        &mut self,
        id: u32,
        path: &Path,
        from: u64,
        newest: bool,
    ) -> std::io::Result<ScanEnd> {
        let file = OpenOptions::new().read(true).write(newest).open(path)?;
        let size = file.metadata()?.len();
        let mut r = Reader {
            file,
            size,
            buf: Vec::new(),
            start: 0,
        };
        let mut off = from.max(SEGMENT_HEADER_LEN);
        if from < SEGMENT_HEADER_LEN {
            match self.check_segment_header(&mut r, id, path, newest)? {
                SegmentStart::Valid => {}
                SegmentStart::TornEmpty => return Ok(ScanEnd::TornEmpty),
                SegmentStart::DamagedUntil(next) => off = next,
            }
        }
        while off < size {
            let header = match r.bytes(off, RECORD_HEADER_LEN)? {
                Some(b) => RecordHeader::decode(b),
                None => None,
            };
            let body_end = header.map(|h| off + RECORD_HEADER_LEN as u64 + u64::from(h.len));
            let (Some(h), Some(end)) = (header, body_end.filter(|e| *e <= size)) else {
                match self.skip_damage(&mut r, path, off, newest)? {
                    Some(next) => {
                        off = next;
                        continue;
                    }
                    None => return Ok(ScanEnd::Complete),
                }
            };
            let body_off = off + RECORD_HEADER_LEN as u64;
            let Some(body) = r.bytes(body_off, h.len as usize)? else {
                break;
            };
            self.records += 1;
            self.apply(&h, body, id, path, off);
            off = end;
        }
        Ok(ScanEnd::Complete)
    }

    /// Checks the header of segment `id`; past a damaged one, scanning resumes at the first
    /// valid record.
    fn check_segment_header(
        &mut self,
        r: &mut Reader,
        id: u32,
        path: &Path,
        newest: bool,
    ) -> std::io::Result<SegmentStart> {
        let header_ok = match r.bytes(0, SEGMENT_HEADER_LEN as usize)? {
            Some(b) => check_segment_header(b, u64::from(id)),
            None => false,
        };
        if header_ok {
            return Ok(SegmentStart::Valid);
        }
        match r.next_valid(0)? {
            None if newest => {
                tracing::warn!(channel = %self.channel, file = %path.display(),
                    "Newest segment has no valid header or record (crash while creating it); removing it.");
                self.torn += 1;
                Ok(SegmentStart::TornEmpty)
            }
            found => {
                self.corrupt += 1;
                tracing::error!(channel = %self.channel, file = %path.display(), offset = 0,
                    "Segment header is damaged; scanning for records after it.");
                Ok(SegmentStart::DamagedUntil(found.unwrap_or(r.size)))
            }
        }
    }

    /// Handles bytes at `off` that are no valid record: the offset of the next valid record,
    /// or `None` when nothing valid follows (a torn tail of the newest segment is cut off).
    fn skip_damage(
        &mut self,
        r: &mut Reader,
        path: &Path,
        off: u64,
        newest: bool,
    ) -> std::io::Result<Option<u64>> {
        let size = r.size;
        match r.next_valid(off + 1)? {
            Some(next) => {
                self.corrupt += 1;
                tracing::error!(channel = %self.channel, file = %path.display(), offset = off,
                    skipped_bytes = next - off,
                    "Damaged record in the log; skipped to the next valid record.");
                Ok(Some(next))
            }
            None if newest => {
                r.file.set_len(off)?;
                r.file.sync_all()?;
                self.torn += 1;
                tracing::warn!(channel = %self.channel, file = %path.display(), offset = off,
                    bytes = size - off,
                    "Truncated a torn write at the end of the log (never acknowledged).");
                Ok(None)
            }
            None => {
                self.corrupt += 1;
                tracing::error!(channel = %self.channel, file = %path.display(), offset = off,
                    bytes = size - off,
                    "Damaged bytes at the end of a sealed segment; skipped.");
                Ok(None)
            }
        }
    }

    /// Applies the record at `off` of segment `seg` whose header is `h` and body `body`.
    fn apply(&mut self, h: &RecordHeader, body: &[u8], seg: u32, path: &Path, off: u64) {
        match h.kind {
            Kind::Put => {
                let body_off = off + RECORD_HEADER_LEN as u64;
                let (kept, bad) = put_frames(body, h, seg, body_off, &mut self.live);
                self.corrupt += bad.len() as u64;
                for (at, what) in bad {
                    tracing::error!(channel = %self.channel, file = %path.display(), offset = at,
                        "Damaged event in the log ({what}); skipped, the other events are kept.");
                }
                if kept > 0 {
                    self.resort_if_needed(kept);
                }
                self.next_seq = self.next_seq.max(h.first + u64::from(h.count));
            }
            Kind::Take => {
                if crc32c::crc32c(body) != h.body_crc {
                    self.corrupt += 1;
                    tracing::error!(channel = %self.channel, file = %path.display(), offset = off,
                        "Damaged take record; skipped (its events may be delivered again).");
                } else {
                    let ranges: Vec<(u64, u32)> = take_ranges(body).collect();
                    for (start, n) in ranges {
                        self.mark_taken(start, n);
                    }
                }
            }
        }
    }

    /// Keeps `live` sorted by sequence number after appending `added` entries.
    fn resort_if_needed(&mut self, added: usize) {
        let n = self.live.len();
        let first_new = n - added;
        if first_new > 0 && self.live[first_new - 1].seq >= self.live[first_new].seq {
            self.live.sort_by_key(|p| p.seq);
        }
    }

    fn mark_taken(&mut self, start: u64, n: u32) {
        let end = start + u64::from(n);
        let mut i = self.live.partition_point(|p| p.seq < start);
        while i < self.live.len() && self.live[i].seq < end {
            if self.live[i].seg != DEAD {
                self.live[i].seg = DEAD;
                self.dead += 1;
            }
            i += 1;
        }
        if self.dead > 4096 && self.dead * 2 > self.live.len() {
            self.live.retain(|p| p.seg != DEAD);
            self.dead = 0;
        }
    }

    /// The live events, by ascending sequence number.
    pub(crate) fn finish(mut self) -> Vec<Ptr> {
        if self.dead > 0 {
            self.live.retain(|p| p.seg != DEAD);
        }
        self.live
    }
}

/// Appends the valid frames of a put body to `live`; returns how many were kept and the
/// damaged ones as (file offset, description).
fn put_frames(
    body: &[u8],
    h: &RecordHeader,
    seg: u32,
    body_off: u64,
    live: &mut Vec<Ptr>,
) -> (usize, Vec<(u64, String)>) {
    let mut pos = 0usize;
    let mut kept = 0;
    let mut bad = Vec::new();
    for i in 0..h.count {
        let seq = h.first + u64::from(i);
        let at = body_off + pos as u64;
        let len = u32_at(body, pos).map(|l| l as usize);
        let Some(len) = len.filter(|l| pos + FRAME_HEADER_LEN + l <= body.len()) else {
            bad.push((
                at,
                format!(
                    "frame length damaged; {} events of the record from sequence {seq} lost",
                    h.count - i
                ),
            ));
            break;
        };
        if frame_data(&body[pos..]).is_some() {
            live.push(Ptr {
                seq,
                seg,
                off: at as u32,
                len: len as u32,
            });
            kept += 1;
        } else {
            bad.push((at, format!("checksum mismatch, sequence {seq}")));
        }
        pos += FRAME_HEADER_LEN + len;
    }
    (kept, bad)
}
