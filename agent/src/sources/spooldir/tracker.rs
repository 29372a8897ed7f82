//! The position of the file being read, in Flume's format: `trackerDir/.flumespool-main.meta`
//! as `DurablePositionTracker` writes it, so sluice can take over a spool directory from Flume
//! (and Flume from sluice).
//!
//! # Format
//!
//! An Avro object container file (codec `null`) with the schema
//! `{"type":"record","name":"TransferStateFileMeta","namespace":"org.apache.flume.serialization",
//! "fields":[{"name":"offset","type":"long"}]}` and the metadata key `file` = the path of the
//! file it tracks (the spool directory as configured joined with the file's path below it,
//! Java's `File.getPath()`). Every commit appends one block holding one record, the byte offset
//! to resume at (what [`super::deserializer::Deserializer::mark`] returned), and its sync
//! marker, in one `write`. The last complete record wins; a torn block at the end (a write
//! the process was killed in) is ignored, so the previous position counts.
//!
//! # Invariants
//!
//! - A record is appended only after the batch it follows was committed to the channel.
//! - Opening a file rewrites the tracker (temporary file, then rename, as Flume rolls it) with
//!   the target and its starting position, so it never names a file other than the one read.
//! - It is deleted after the file was marked done (renamed, deleted or recorded in the
//!   tracker directory); a crash between the two leaves a tracker naming a file that is no
//!   longer a candidate, which the next open replaces.
//!
//! Records are written, not fsynced, as Flume does: a killed process loses nothing; a power
//! loss can take back the last positions (their lines are delivered again, never skipped).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Flume's `ReliableSpoolingFileEventReader.metaFileName`.
pub(crate) const META_FILE: &str = ".flumespool-main.meta";
const MAGIC: &[u8; 4] = b"Obj\x01";
const SCHEMA: &str = "{\"type\":\"record\",\"name\":\"TransferStateFileMeta\",\
\"namespace\":\"org.apache.flume.serialization\",\"fields\":[{\"name\":\"offset\",\"type\":\"long\"}]}";

#[derive(Debug, thiserror::Error)]
pub(crate) enum TrackerError {
    #[error("position tracker {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("position tracker {}: not a Flume tracker file: {message}", path.display())]
    Format { path: PathBuf, message: String },
}

/// What a tracker file says: the file and the position to resume it at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Saved {
    pub(crate) target: PathBuf,
    pub(crate) position: u64,
}

/// An open tracker file, appended to at each commit.
pub(crate) struct PositionTracker {
    path: PathBuf,
    file: File,
    sync: [u8; 16],
    position: u64,
}

fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// A cursor over the tracker's bytes; `None` when they end first.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn long(&mut self) -> Option<i64> {
        let mut v: u64 = 0;
        for (i, b) in self.0.iter().enumerate().take(10) {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Some(((v >> 1) as i64) ^ -((v & 1) as i64));
            }
        }
        None
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }

    fn counted(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.long()?).ok()?;
        self.bytes(n)
    }
}

/// One block of one record: the position.
fn block(position: u64, sync: &[u8; 16]) -> Vec<u8> {
    let mut record = Vec::with_capacity(10);
    put_long(&mut record, position as i64);
    let mut out = Vec::with_capacity(32);
    put_long(&mut out, 1);
    put_bytes(&mut out, &record);
    out.extend_from_slice(sync);
    out
}

impl PositionTracker {
    /// Reads the tracker at `path`: `None` when absent or empty (Flume deletes an empty one).
    pub(crate) fn load(path: &Path) -> Result<Option<Saved>, TrackerError> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(TrackerError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        if data.is_empty() {
            return Ok(None);
        }
        let format = |m: &str| TrackerError::Format {
            path: path.to_path_buf(),
            message: m.to_string(),
        };
        let mut c = Cursor(&data);
        if c.bytes(4) != Some(MAGIC.as_slice()) {
            return Err(format("no Avro magic"));
        }
        let mut target = None;
        let mut codec_ok = true;
        loop {
            let mut n = c.long().ok_or_else(|| format("truncated header"))?;
            if n == 0 {
                break;
            }
            if n < 0 {
                c.long().ok_or_else(|| format("truncated header"))?;
                n = -n;
            }
            for _ in 0..n {
                let key = c.counted().ok_or_else(|| format("truncated header"))?;
                let value = c.counted().ok_or_else(|| format("truncated header"))?;
                match key {
                    b"file" => target = Some(String::from_utf8_lossy(value).into_owned()),
                    b"avro.codec" => codec_ok = value == b"null",
                    _ => {}
                }
            }
        }
        if !codec_ok {
            return Err(format("a compressed tracker (Flume writes codec null)"));
        }
        let target = target.ok_or_else(|| format("no `file` in its header"))?;
        let sync = c.bytes(16).ok_or_else(|| format("truncated header"))?;
        let mut position = 0u64;
        // Blocks until the data ends or a block is torn.
        'blocks: while !c.0.is_empty() {
            let Some(count) = c.long() else { break };
            let Some(body) = c.counted() else { break };
            let Some(marker) = c.bytes(16) else { break };
            if marker != sync {
                break;
            }
            let mut records = Cursor(body);
            for _ in 0..count.max(0) {
                let Some(offset) = records.long() else {
                    break 'blocks;
                };
                position = u64::try_from(offset).unwrap_or(0);
            }
        }
        Ok(Some(Saved {
            target: PathBuf::from(target),
            position,
        }))
    }

    /// Starts tracking `target` at `position`: writes a new tracker file next to `path` and
    /// renames it over `path`.
    pub(crate) fn create(path: &Path, target: &Path, position: u64) -> Result<Self, TrackerError> {
        let io = |source| TrackerError::Io {
            path: path.to_path_buf(),
            source,
        };
        let sync: [u8; 16] = rand::random();
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(MAGIC);
        put_long(&mut out, 3);
        put_bytes(&mut out, b"avro.schema");
        put_bytes(&mut out, SCHEMA.as_bytes());
        put_bytes(&mut out, b"avro.codec");
        put_bytes(&mut out, b"null");
        put_bytes(&mut out, b"file");
        put_bytes(&mut out, target.as_os_str().as_encoded_bytes());
        put_long(&mut out, 0);
        out.extend_from_slice(&sync);
        out.extend_from_slice(&block(position, &sync));
        let tmp = path.with_extension("meta.tmp");
        std::fs::write(&tmp, &out).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        let file = OpenOptions::new().append(true).open(path).map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            sync,
            position,
        })
    }

    /// Records `position` (one `write`); a no-op when it did not move.
    pub(crate) fn store(&mut self, position: u64) -> Result<(), TrackerError> {
        if position == self.position {
            return Ok(());
        }
        self.file
            .write_all(&block(position, &self.sync))
            .map_err(|source| TrackerError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.position = position;
        Ok(())
    }

    /// Deletes the tracker file at `path`, if any.
    pub(crate) fn delete(path: &Path) -> Result<(), TrackerError> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(TrackerError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}
