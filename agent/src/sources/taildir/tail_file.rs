//! One tailed file: its identity, its committed and read offsets, and the line reader.
//!
//! Lines end at `\n` (a `\r` before it is dropped, as Flume does). A last line without its
//! newline waits until the newline is written. A line longer than `maxLineLength` is either
//! split into pieces of that length (each piece is an event and a resumable position) or
//! truncated: the first `maxLineLength` bytes become the event once the line's newline has been
//! seen, the rest is skipped without being buffered. Memory per file is bounded by
//! `maxLineLength` plus one read chunk.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;

use super::position_file::Fingerprint;

/// Bytes read per `pread`.
const CHUNK: usize = 64 * 1024;

/// Bytes covered by a complete fingerprint.
pub(crate) const FINGERPRINT_MAX: u32 = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LongLinePolicy {
    Split,
    Truncate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LineLimits {
    pub(crate) max_len: usize,
    pub(crate) policy: LongLinePolicy,
}

/// One line read from a file, with the offset of its first byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) body: Bytes,
    pub(crate) offset: u64,
}

/// Inside an over-long line in truncate mode: its head is kept, the rest skipped.
#[derive(Debug)]
struct Skip {
    head: Bytes,
    start: u64,
    scan: u64,
}

/// `(st_dev, st_ino)`: the in-memory key of a file.
pub(crate) type FileKey = (u64, u64);

#[derive(Debug)]
pub(crate) struct TailFile {
    pub(crate) key: FileKey,
    /// The path the file was last seen under.
    pub(crate) path: PathBuf,
    /// Index of the file group the path matched.
    pub(crate) group: usize,
    /// Offset up to which lines are committed to the channels.
    pub(crate) pos: u64,
    /// Offset after the lines handed out but not yet committed.
    read_pos: u64,
    /// Bytes at `read_pos..` already read and not yet handed out.
    carry: Bytes,
    skip: Option<Skip>,
    file: Option<File>,
    pub(crate) fingerprint: Fingerprint,
    /// Size and mtime seen by the last scan.
    pub(crate) seen_size: u64,
    pub(crate) seen_mtime: (i64, i64),
    /// Last time the file grew or was read from.
    pub(crate) last_activity: Instant,
    /// Whether the latest scan found the file under a matching name.
    pub(crate) present: bool,
}

/// What [`TailFile::read_lines`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ReadOutcome {
    /// Lines cut or truncated for length.
    pub(crate) long_lines: u64,
}

impl TailFile {
    pub(crate) fn new(key: FileKey, path: PathBuf, group: usize, pos: u64) -> Self {
        Self {
            key,
            path,
            group,
            pos,
            read_pos: pos,
            carry: Bytes::new(),
            skip: None,
            file: None,
            fingerprint: Fingerprint::default(),
            seen_size: 0,
            seen_mtime: (0, 0),
            last_activity: Instant::now(),
            present: true,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// Opens the file at its path, checking that the path still names this file.
    pub(crate) fn open(&mut self) -> io::Result<()> {
        if self.file.is_some() {
            return Ok(());
        }
        let f = File::open(&self.path)?;
        let md = f.metadata()?;
        if (md.dev(), md.ino()) != self.key {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the path now names another file",
            ));
        }
        self.file = Some(f);
        Ok(())
    }

    pub(crate) fn close(&mut self) {
        self.file = None;
        self.rollback();
    }

    /// Starts over at `offset` (a truncated or replaced file), forgetting uncommitted reads.
    pub(crate) fn restart_at(&mut self, offset: u64) {
        self.pos = offset;
        self.rollback();
    }

    /// Forgets lines handed out since the last commit; they will be read again.
    pub(crate) fn rollback(&mut self) {
        self.read_pos = self.pos;
        self.carry = Bytes::new();
        self.skip = None;
    }

    /// The channels committed every line handed out.
    pub(crate) fn commit(&mut self) {
        self.pos = self.read_pos;
    }

    /// Whether lines were handed out and not yet committed or rolled back.
    pub(crate) fn has_uncommitted(&self) -> bool {
        self.read_pos != self.pos
    }

    /// Reads the first `len` bytes (fewer if the file is shorter).
    pub(crate) fn read_prefix(&self, len: u32) -> io::Result<Vec<u8>> {
        let Some(f) = &self.file else {
            return Err(io::Error::other("file is not open"));
        };
        read_prefix(f, len)
    }

    /// Checks the stored fingerprint against the file's first bytes and extends it up to
    /// [`FINGERPRINT_MAX`]. Returns false if the content differs (a new file behind the same
    /// inode, or one rewritten from the start).
    pub(crate) fn check_fingerprint(&mut self) -> io::Result<bool> {
        let prefix = self.read_prefix(FINGERPRINT_MAX)?;
        let old = self.fingerprint;
        let same =
            prefix.len() >= old.len as usize && Fingerprint::of(&prefix[..old.len as usize]) == old;
        self.fingerprint = Fingerprint::of(&prefix);
        Ok(same)
    }

    /// Extends an incomplete fingerprint after the file grew, so that a saved position is
    /// always covered by one; a mismatch is left for the next scan's [`Self::check_fingerprint`].
    pub(crate) fn extend_fingerprint(&mut self) -> io::Result<()> {
        if self.fingerprint.len >= FINGERPRINT_MAX {
            return Ok(());
        }
        let prefix = self.read_prefix(FINGERPRINT_MAX)?;
        let old = self.fingerprint;
        if prefix.len() > old.len as usize && Fingerprint::of(&prefix[..old.len as usize]) == old {
            self.fingerprint = Fingerprint::of(&prefix);
        }
        Ok(())
    }

    /// Appends up to `max` lines to `out`; stops early at the end of the file.
    pub(crate) fn read_lines(
        &mut self,
        max: usize,
        limits: LineLimits,
        out: &mut Vec<Line>,
    ) -> io::Result<ReadOutcome> {
        let mut outcome = ReadOutcome::default();
        if self.file.is_none() {
            return Ok(outcome);
        }
        let max_len = limits.max_len.max(1);
        let end = out.len().saturating_add(max);
        loop {
            self.take_lines(end, limits, max_len, &mut outcome, out);
            if out.len() >= end {
                break;
            }
            if self.cut_long_line(limits, max_len, &mut outcome, out) {
                continue;
            }
            if !self.read_more(out)? {
                break;
            }
        }
        Ok(outcome)
    }

    /// Moves the complete lines of `carry` to `out`, until `out` holds `end` lines.
    fn take_lines(
        &mut self,
        end: usize,
        limits: LineLimits,
        max_len: usize,
        outcome: &mut ReadOutcome,
        out: &mut Vec<Line>,
    ) {
        while out.len() < end {
            let Some(i) = memchr::memchr(b'\n', &self.carry) else {
                break;
            };
            let end = if i > 0 && self.carry[i - 1] == b'\r' {
                i - 1
            } else {
                i
            };
            if end > max_len {
                outcome.long_lines += 1;
                if limits.policy == LongLinePolicy::Split {
                    emit_piece(&mut self.carry, &mut self.read_pos, max_len, out);
                    continue;
                }
                out.push(Line {
                    body: self.carry.slice(..max_len),
                    offset: self.read_pos,
                });
            } else {
                out.push(Line {
                    body: self.carry.slice(..end),
                    offset: self.read_pos,
                });
            }
            self.read_pos += i as u64 + 1;
            self.carry = self.carry.slice(i + 1..);
        }
    }

    /// A line without its newline yet is over `maxLineLength`: splits off a piece (true: go
    /// on taking lines) or starts skipping the rest of the line (truncate).
    fn cut_long_line(
        &mut self,
        limits: LineLimits,
        max_len: usize,
        outcome: &mut ReadOutcome,
        out: &mut Vec<Line>,
    ) -> bool {
        // A trailing `\r` may be the first half of a line's `\r\n`: not content yet.
        let content_len = self.carry.len() - usize::from(self.carry.last() == Some(&b'\r'));
        if self.skip.is_some() || content_len <= max_len {
            return false;
        }
        outcome.long_lines += 1;
        match limits.policy {
            LongLinePolicy::Split => {
                emit_piece(&mut self.carry, &mut self.read_pos, max_len, out);
                true
            }
            LongLinePolicy::Truncate => {
                self.skip = Some(Skip {
                    head: self.carry.slice(..max_len),
                    start: self.read_pos,
                    scan: self.read_pos + self.carry.len() as u64,
                });
                self.carry = Bytes::new();
                false
            }
        }
    }

    /// Reads the next chunk of the file into `carry`; while the rest of a truncated line is
    /// skipped, reads up to its newline and then hands out the line's head. False at the end
    /// of the file.
    fn read_more(&mut self, out: &mut Vec<Line>) -> io::Result<bool> {
        let Some(file) = self.file.as_ref() else {
            return Ok(false);
        };
        let next = match &self.skip {
            Some(skip) => skip.scan,
            None => self.read_pos + self.carry.len() as u64,
        };
        // Sized by fstat: an idle file costs one syscall and no buffer.
        let avail = file.metadata()?.len().saturating_sub(next);
        if avail == 0 {
            return Ok(false);
        }
        self.last_activity = Instant::now();
        let want = usize::try_from(avail).map_or(CHUNK, |a| a.min(CHUNK));
        if let Some(skip) = self.skip.as_mut() {
            let mut buf = vec![0u8; want];
            let n = file.read_at(&mut buf, skip.scan)?;
            if n == 0 {
                return Ok(false);
            }
            match memchr::memchr(b'\n', &buf[..n]) {
                Some(i) => {
                    out.push(Line {
                        body: skip.head.clone(),
                        offset: skip.start,
                    });
                    self.read_pos = skip.scan + i as u64 + 1;
                    buf.truncate(n);
                    self.carry = Bytes::from(buf).slice(i + 1..);
                    self.skip = None;
                }
                None => skip.scan += n as u64,
            }
            return Ok(true);
        }
        let old = self.carry.len();
        let mut buf = Vec::with_capacity(old + want);
        buf.extend_from_slice(&self.carry);
        buf.resize(old + want, 0);
        let n = file.read_at(&mut buf[old..], next)?;
        buf.truncate(old + n);
        self.carry = Bytes::from(buf);
        Ok(n != 0)
    }
}

/// Hands out the first `len` bytes of `carry` as one piece of a split line.
fn emit_piece(carry: &mut Bytes, read_pos: &mut u64, len: usize, out: &mut Vec<Line>) {
    out.push(Line {
        body: carry.slice(..len),
        offset: *read_pos,
    });
    *read_pos += len as u64;
    *carry = carry.slice(len..);
}

pub(crate) fn read_prefix(f: &File, len: u32) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    let mut got = 0;
    while got < buf.len() {
        let n = f.read_at(&mut buf[got..], got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    buf.truncate(got);
    Ok(buf)
}

/// `(st_dev, st_ino)` of a path's metadata.
pub(crate) fn key_of(md: &std::fs::Metadata) -> FileKey {
    (md.dev(), md.ino())
}

pub(crate) fn mtime_of(md: &std::fs::Metadata) -> (i64, i64) {
    (md.mtime(), md.mtime_nsec())
}

#[cfg(test)]
mod tests;
