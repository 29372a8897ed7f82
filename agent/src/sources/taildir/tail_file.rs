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
mod tests {
    use std::io::Write;
    use std::path::Path;

    use super::*;

    const SPLIT_8: LineLimits = LineLimits {
        max_len: 8,
        policy: LongLinePolicy::Split,
    };
    const TRUNC_8: LineLimits = LineLimits {
        max_len: 8,
        policy: LongLinePolicy::Truncate,
    };

    fn setup(content: &[u8]) -> io::Result<(tempfile::TempDir, PathBuf, TailFile)> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.log");
        std::fs::write(&path, content)?;
        let md = std::fs::metadata(&path)?;
        let mut tf = TailFile::new(key_of(&md), path.clone(), 0, 0);
        tf.open()?;
        Ok((dir, path, tf))
    }

    fn bodies(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.body).into_owned())
            .collect()
    }

    fn append(path: &Path, bytes: &[u8]) -> io::Result<()> {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)?
            .write_all(bytes)
    }

    #[test]
    fn lines_crlf_partial_line_and_offsets() -> io::Result<()> {
        let (_d, path, mut tf) = setup(b"one\r\ntwo\nthr")?;
        let mut out = Vec::new();
        tf.read_lines(10, SPLIT_8, &mut out)?;
        assert_eq!(bodies(&out), ["one", "two"]);
        assert_eq!((out[0].offset, out[1].offset), (0, 5));
        tf.commit();
        assert_eq!(tf.pos, 9, "the partial line is not committed");
        append(&path, b"ee\n")?;
        out.clear();
        tf.read_lines(10, SPLIT_8, &mut out)?;
        assert_eq!(bodies(&out), ["three"]);
        assert_eq!(out[0].offset, 9);
        tf.commit();
        assert_eq!(tf.pos, 15);
        Ok(())
    }

    #[test]
    fn batch_limit_and_rollback_rereads() -> io::Result<()> {
        let (_d, _p, mut tf) = setup(b"a\nb\nc\nd\n")?;
        let mut out = Vec::new();
        tf.read_lines(3, SPLIT_8, &mut out)?;
        assert_eq!(bodies(&out), ["a", "b", "c"]);
        tf.rollback();
        out.clear();
        tf.read_lines(2, SPLIT_8, &mut out)?;
        assert_eq!(bodies(&out), ["a", "b"]);
        tf.commit();
        out.clear();
        tf.read_lines(10, SPLIT_8, &mut out)?;
        assert_eq!(bodies(&out), ["c", "d"]);
        Ok(())
    }

    #[test]
    fn long_lines_split_into_resumable_pieces() -> io::Result<()> {
        let (_d, _p, mut tf) = setup(b"0123456789abcdefXY\nok\n")?;
        let mut out = Vec::new();
        let o = tf.read_lines(10, SPLIT_8, &mut out)?;
        assert_eq!(bodies(&out), ["01234567", "89abcdef", "XY", "ok"]);
        assert_eq!(o.long_lines, 2);
        assert_eq!(out[1].offset, 8);
        Ok(())
    }

    #[test]
    fn long_lines_truncated_once_their_end_is_seen() -> io::Result<()> {
        let (_d, path, mut tf) = setup(b"0123456789abcdef")?;
        let mut out = Vec::new();
        tf.read_lines(10, TRUNC_8, &mut out)?;
        assert!(out.is_empty(), "waits for the newline: {:?}", bodies(&out));
        append(&path, b"ghij\nnext\n")?;
        tf.read_lines(10, TRUNC_8, &mut out)?;
        assert_eq!(bodies(&out), ["01234567", "next"]);
        tf.commit();
        assert_eq!(tf.pos, 26);
        Ok(())
    }

    #[test]
    fn truncate_mode_buffers_at_most_one_chunk() -> io::Result<()> {
        let mut big = vec![b'x'; 5 * CHUNK];
        big.extend_from_slice(b"\nend\n");
        let (_d, _p, mut tf) = setup(&big)?;
        let mut out = Vec::new();
        let o = tf.read_lines(10, TRUNC_8, &mut out)?;
        assert_eq!(bodies(&out), ["xxxxxxxx", "end"]);
        assert_eq!(o.long_lines, 1);
        assert!(tf.carry.len() <= CHUNK);
        Ok(())
    }

    /// What a reader must produce for `content`: every complete line, cut as `limits` say.
    fn model(content: &[u8], limits: LineLimits) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut rest = content;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            let mut line = &rest[..i];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            match limits.policy {
                LongLinePolicy::Split if line.len() > limits.max_len => {
                    let mut l = line;
                    while l.len() > limits.max_len {
                        out.push(l[..limits.max_len].to_vec());
                        l = &l[limits.max_len..];
                    }
                    out.push(l.to_vec());
                }
                LongLinePolicy::Truncate if line.len() > limits.max_len => {
                    out.push(line[..limits.max_len].to_vec());
                }
                _ => out.push(line.to_vec()),
            }
            rest = &rest[i + 1..];
        }
        // An unfinished line already longer than the limit has its full pieces out in split mode.
        let pending = rest.len() - usize::from(rest.last() == Some(&b'\r'));
        if limits.policy == LongLinePolicy::Split && pending > limits.max_len {
            let mut l = rest;
            while l.len() - usize::from(l.last() == Some(&b'\r')) > limits.max_len {
                out.push(l[..limits.max_len].to_vec());
                l = &l[limits.max_len..];
            }
        }
        out
    }

    /// Random appends (short, long and CRLF lines, partial writes), random batch sizes and
    /// random rollbacks: the committed output always equals the model, and a reader restarted
    /// at the committed offset goes on exactly where the first stopped.
    #[test]
    fn reader_matches_the_model_under_random_appends_and_rollbacks() -> io::Result<()> {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..24 {
            let policy = if round % 2 == 0 {
                LongLinePolicy::Split
            } else {
                LongLinePolicy::Truncate
            };
            let limits = LineLimits {
                max_len: 1 + rnd(300) as usize,
                policy,
            };
            let (_d, path, mut tf) = setup(b"")?;
            let mut content = Vec::new();
            let mut committed: Vec<Vec<u8>> = Vec::new();
            for step in 0..40 {
                let mut chunk = Vec::new();
                for _ in 0..rnd(8) {
                    let len = match rnd(10) {
                        0 => rnd(100_000) as usize,
                        1..=3 => rnd(600) as usize,
                        _ => rnd(40) as usize,
                    };
                    chunk.extend((0..len).map(|i| b'a' + ((i + step) % 26) as u8));
                    if rnd(5) == 0 {
                        chunk.push(b'\r');
                    }
                    if rnd(6) != 0 {
                        chunk.push(b'\n');
                    }
                }
                append(&path, &chunk)?;
                content.extend_from_slice(&chunk);
                let mut out = Vec::new();
                tf.read_lines(1 + rnd(50) as usize, limits, &mut out)?;
                if rnd(4) == 0 {
                    tf.rollback();
                } else {
                    tf.commit();
                    committed.extend(out.iter().map(|l| l.body.to_vec()));
                }
                if rnd(10) == 0 {
                    // A restart: a new reader at the committed offset.
                    let pos = tf.pos;
                    tf = TailFile::new(tf.key, path.clone(), 0, pos);
                    tf.open()?;
                }
            }
            loop {
                let mut out = Vec::new();
                tf.read_lines(1000, limits, &mut out)?;
                if out.is_empty() {
                    break;
                }
                tf.commit();
                committed.extend(out.into_iter().map(|l| l.body.to_vec()));
            }
            let want = model(&content, limits);
            assert_eq!(committed.len(), want.len(), "round {round}: line count");
            assert!(committed == want, "round {round}: content differs");
            assert!(tf.carry.len() <= limits.max_len + CHUNK);
        }
        Ok(())
    }

    #[test]
    fn fingerprint_is_extended_only_while_the_prefix_matches() -> io::Result<()> {
        let (_d, path, mut tf) = setup(b"")?;
        assert!(tf.check_fingerprint()?);
        assert_eq!(tf.fingerprint.len, 0);
        append(&path, b"grown\n")?;
        tf.extend_fingerprint()?;
        assert_eq!(tf.fingerprint, Fingerprint::of(b"grown\n"));
        std::fs::write(&path, b"replaced content\n")?;
        tf.extend_fingerprint()?;
        assert_eq!(
            tf.fingerprint,
            Fingerprint::of(b"grown\n"),
            "left for the scan"
        );
        assert!(!tf.check_fingerprint()?);
        Ok(())
    }

    #[test]
    fn fingerprint_detects_rewritten_content() -> io::Result<()> {
        let (_d, path, mut tf) = setup(b"first line\n")?;
        assert!(tf.check_fingerprint()?);
        assert_eq!(tf.fingerprint.len, 11);
        append(&path, b"second\n")?;
        assert!(tf.check_fingerprint()?, "growth keeps the identity");
        assert_eq!(tf.fingerprint.len, 18);
        std::fs::write(&path, b"other content, longer than before\n")?;
        assert!(!tf.check_fingerprint()?, "same inode, new content");
        Ok(())
    }
}
