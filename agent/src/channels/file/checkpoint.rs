//! The checkpoint: a snapshot of the channel's live events plus the log position it reflects.
//!
//! Written to `checkpoint.tmp`, fsynced, renamed over `checkpoint`, and the directory fsynced, so
//! a crash leaves either the old or the new file. A write that fails (disk full) removes
//! `checkpoint.tmp` before returning, and a start removes one left by a crash, so a failed
//! checkpoint never keeps holding the space it could not use. A trailing CRC32C over the whole file catches
//! damage after the fact; a damaged checkpoint is never trusted (the caller falls back to the
//! backup, then to a full replay of the log).
//!
//! The channel writes one every `checkpointInterval` from its own thread, on close, and after
//! replay; each deletes the segments it no longer needs.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::format::{FORMAT_VERSION, u32_at, u64_at};
use super::{Inner, Ptr};
use crate::channels::ChannelError;
use crate::lifecycle::StopSignal;

pub(crate) const CHECKPOINT_FILE: &str = "checkpoint";
pub(crate) const CHECKPOINT_TMP: &str = "checkpoint.tmp";
const CHECKPOINT_MAGIC: &[u8; 8] = b"SLUICECP";
/// magic (8) + version (4) + segment (4) + offset (4) + next seq (8) + count (8).
const HEADER_LEN: usize = 36;
/// seq (8) + segment (4) + offset (4) + length (4).
const ENTRY_LEN: usize = 20;

/// What a checkpoint records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// Every record before (`segment`, `offset`) is reflected in `live`; replay starts there.
    pub(crate) segment: u32,
    pub(crate) offset: u32,
    /// The next sequence number to assign.
    pub(crate) next_seq: u64,
    /// Events put and not take-committed at that position, by ascending sequence number.
    pub(crate) live: Vec<Ptr>,
}

/// Bytes of a checkpoint holding `live` events.
pub(crate) fn encoded_len(live: u64) -> u64 {
    (HEADER_LEN as u64 + 4).saturating_add(live.saturating_mul(ENTRY_LEN as u64))
}

impl Checkpoint {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN + ENTRY_LEN * self.live.len() + 4);
        b.extend_from_slice(CHECKPOINT_MAGIC);
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&self.segment.to_le_bytes());
        b.extend_from_slice(&self.offset.to_le_bytes());
        b.extend_from_slice(&self.next_seq.to_le_bytes());
        b.extend_from_slice(&(self.live.len() as u64).to_le_bytes());
        for p in &self.live {
            b.extend_from_slice(&p.seq.to_le_bytes());
            b.extend_from_slice(&p.seg.to_le_bytes());
            b.extend_from_slice(&p.off.to_le_bytes());
            b.extend_from_slice(&p.len.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Result<Self, CheckpointFormatError> {
        use CheckpointFormatError as E;
        if b.len() < HEADER_LEN + 4 {
            return Err(E::Truncated(b.len()));
        }
        let (body, tail) = b.split_at(b.len() - 4);
        if u32_at(tail, 0) != Some(crc32c::crc32c(body)) {
            return Err(E::Checksum);
        }
        if &body[0..8] != CHECKPOINT_MAGIC {
            return Err(E::Magic);
        }
        let version = u32_at(body, 8).unwrap_or(0);
        if version != FORMAT_VERSION {
            return Err(E::Version(version));
        }
        let segment = u32_at(body, 12).ok_or(E::Header)?;
        let offset = u32_at(body, 16).ok_or(E::Header)?;
        let next_seq = u64_at(body, 20).ok_or(E::Header)?;
        let count = u64_at(body, 28).ok_or(E::Header)? as usize;
        let entries = &body[HEADER_LEN..];
        if entries.len() != count.saturating_mul(ENTRY_LEN) {
            return Err(E::Entries {
                count,
                present: entries.len(),
            });
        }
        let live = entries
            .chunks_exact(ENTRY_LEN)
            .map(|c| Ptr {
                seq: u64_at(c, 0).unwrap_or(0),
                seg: u32_at(c, 8).unwrap_or(0),
                off: u32_at(c, 12).unwrap_or(0),
                len: u32_at(c, 16).unwrap_or(0),
            })
            .collect();
        Ok(Self {
            segment,
            offset,
            next_seq,
            live,
        })
    }

    /// Writes `dir/checkpoint` atomically and durably. On failure `checkpoint.tmp` is removed
    /// and the previous checkpoint is left as it was.
    pub(crate) fn write(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(CHECKPOINT_TMP);
        let written = (|| {
            let mut f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(&self.encode())?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, dir.join(CHECKPOINT_FILE))
        })();
        if let Err(e) = written {
            match std::fs::remove_file(&tmp) {
                Ok(()) => {}
                Err(e2) if e2.kind() == std::io::ErrorKind::NotFound => {}
                Err(e2) => {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("{e}; removing {} failed too: {e2}", tmp.display()),
                    ));
                }
            }
            return Err(e);
        }
        sync_dir(dir)
    }

    /// Removes a `checkpoint.tmp` that a crash left in `dir`; true if there was one.
    pub(crate) fn remove_stale_tmp(dir: &Path) -> std::io::Result<bool> {
        match std::fs::remove_file(dir.join(CHECKPOINT_TMP)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads `dir/checkpoint`: `Ok(None)` if there is none, `Err(reason)` if it is damaged.
    pub(crate) fn read(dir: &Path) -> Result<Option<Self>, CheckpointDamage> {
        let path = dir.join(CHECKPOINT_FILE);
        let mut bytes = Vec::new();
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CheckpointDamage::Read { path, source }),
        };
        if let Err(source) = f.read_to_end(&mut bytes) {
            return Err(CheckpointDamage::Read { path, source });
        }
        match Self::decode(&bytes) {
            Ok(cp) => Ok(Some(cp)),
            Err(source) => Err(CheckpointDamage::Malformed { path, source }),
        }
    }
}

/// A checkpoint that exists but cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckpointDamage {
    #[error("checkpoint {} is unusable: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint {} is unusable: {source}", path.display())]
    Malformed {
        path: PathBuf,
        source: CheckpointFormatError,
    },
}

/// What is wrong with the bytes of a checkpoint file.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CheckpointFormatError {
    #[error("truncated ({0} bytes)")]
    Truncated(usize),
    #[error("checksum mismatch")]
    Checksum,
    #[error("not a sluice checkpoint (bad magic)")]
    Magic,
    #[error("unsupported format version {0}")]
    Version(u32),
    #[error("malformed header")]
    Header,
    #[error("{count} entries announced, {present} bytes present")]
    Entries { count: usize, present: usize },
}

/// Makes a create, rename or delete in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Inner {
    /// Writes a checkpoint of the state as of the current log position, once the log is durable
    /// up to it (invariant 4), then deletes the segments it no longer needs (invariant 6).
    pub(super) fn checkpoint(&self) -> Result<(), ChannelError> {
        let _one = self.checkpointing.lock();
        let (cp, pos) = self.snapshot();
        if let Err(e) = self.check_checkpoint_space(&self.config.checkpoint_dir, cp.live.len()) {
            self.stats
                .checkpoint_write_errors
                .fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        self.sync_to(pos)?;
        if let Err(e) = cp.write(&self.config.checkpoint_dir) {
            self.stats
                .checkpoint_write_errors
                .fetch_add(1, Ordering::Relaxed);
            return Err(self.failed(
                format!(
                    "cannot write checkpoint in {}",
                    self.config.checkpoint_dir.display()
                ),
                e,
            ));
        }
        if let Some(dir) = &self.config.backup_checkpoint_dir
            && let Err(e) = self.check_checkpoint_space(dir, cp.live.len())
        {
            self.stats
                .checkpoint_backup_write_errors
                .fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        if let Some(dir) = &self.config.backup_checkpoint_dir
            && let Err(e) = cp.write(dir)
        {
            // The stale backup may need old segments: delete none this round.
            self.stats
                .checkpoint_backup_write_errors
                .fetch_add(1, Ordering::Relaxed);
            return Err(self.failed(
                format!("cannot write backup checkpoint in {}", dir.display()),
                e,
            ));
        }
        self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.delete_segments(&cp);
        Ok(())
    }

    /// The live events (queued and in uncommitted takes, by sequence number) and the log
    /// position they reflect, taken under the log lock.
    fn snapshot(&self) -> (Checkpoint, u64) {
        let (mut cp, pos) = {
            let log = self.log.lock();
            let st = self.state.lock();
            let mut live: Vec<Ptr> = Vec::with_capacity(st.queue.len() + st.held);
            live.extend(st.queue.iter().copied());
            for t in st.inflight.values() {
                live.extend(t.good.iter().chain(&t.bad).copied());
            }
            let cp = Checkpoint {
                segment: log.seg,
                offset: log.off as u32,
                next_seq: log.next_seq,
                live,
            };
            (cp, log.written)
        };
        cp.live.sort_unstable_by_key(|p| p.seq);
        (cp, pos)
    }

    /// The channel's thread: a checkpoint every `checkpointInterval`, and without
    /// `fsyncPerTransaction` an fsync every `fsyncInterval`.
    pub(super) fn background(&self, stop: &StopSignal) {
        let now = Instant::now();
        let mut next_checkpoint = now + self.config.checkpoint_interval;
        let mut next_fsync = now + self.config.fsync_interval;
        // A full disk fails every checkpoint: say so once, then when they work again.
        let mut checkpoint_failing = false;
        loop {
            let next = if self.config.fsync_per_transaction {
                next_checkpoint
            } else {
                next_checkpoint.min(next_fsync)
            };
            if stop.sleep(next.saturating_duration_since(Instant::now())) {
                return;
            }
            let now = Instant::now();
            if !self.config.fsync_per_transaction && now >= next_fsync {
                if let Err(e) = self.sync_to(self.written()) {
                    tracing::error!(channel = %self.name, error = %e, "Periodic fsync failed.");
                }
                next_fsync = now + self.config.fsync_interval;
            }
            if now >= next_checkpoint {
                match self.checkpoint() {
                    Err(e) if !checkpoint_failing => {
                        checkpoint_failing = true;
                        tracing::error!(channel = %self.name, error = %e,
                            "Checkpoint failed; will retry every checkpointInterval.");
                    }
                    Err(e) => {
                        tracing::debug!(channel = %self.name, error = %e, "Checkpoint failed again.");
                    }
                    Ok(()) if checkpoint_failing => {
                        checkpoint_failing = false;
                        tracing::info!(channel = %self.name, "Checkpoints succeed again.");
                    }
                    Ok(()) => {}
                }
                next_checkpoint = Instant::now() + self.config.checkpoint_interval;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        assert_eq!(Checkpoint::read(dir.path())?, None);
        let cp = Checkpoint {
            segment: 3,
            offset: 100,
            next_seq: 42,
            live: vec![
                Ptr {
                    seq: 40,
                    seg: 2,
                    off: 24,
                    len: 5,
                },
                Ptr {
                    seq: 41,
                    seg: 3,
                    off: 60,
                    len: 7,
                },
            ],
        };
        cp.write(dir.path())?;
        assert_eq!(Checkpoint::read(dir.path())?, Some(cp.clone()));
        let path = dir.path().join(CHECKPOINT_FILE);
        let mut bytes = std::fs::read(&path)?;
        bytes[40] ^= 0x10;
        std::fs::write(&path, &bytes)?;
        assert!(Checkpoint::read(dir.path()).is_err());
        std::fs::write(&path, &bytes[..20])?;
        assert!(Checkpoint::read(dir.path()).is_err());
        Ok(())
    }

    #[test]
    fn encoded_len_matches_the_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        for n in [0u32, 1, 7] {
            let cp = Checkpoint {
                live: (0..n)
                    .map(|i| Ptr {
                        seq: u64::from(i),
                        ..Ptr::default()
                    })
                    .collect(),
                ..Checkpoint::default()
            };
            cp.write(dir.path())?;
            let len = std::fs::metadata(dir.path().join(CHECKPOINT_FILE))?.len();
            assert_eq!(encoded_len(u64::from(n)), len);
        }
        assert_eq!(encoded_len(u64::MAX), u64::MAX);
        Ok(())
    }

    /// A disk that fills up during the write: `checkpoint.tmp` points at /dev/full, whose
    /// writes fail with ENOSPC. The temp entry goes, the previous checkpoint stays.
    #[test]
    fn failed_write_removes_the_temp_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let old = Checkpoint {
            next_seq: 5,
            ..Checkpoint::default()
        };
        old.write(dir.path())?;
        let tmp = dir.path().join(CHECKPOINT_TMP);
        std::os::unix::fs::symlink("/dev/full", &tmp)?;
        let new = Checkpoint {
            next_seq: 9,
            ..Checkpoint::default()
        };
        let err = new.write(dir.path()).err();
        assert_eq!(
            err.as_ref().and_then(std::io::Error::raw_os_error),
            Some(28),
            "ENOSPC expected: {err:?}"
        );
        assert!(std::fs::symlink_metadata(&tmp).is_err(), "temp file left");
        assert_eq!(Checkpoint::read(dir.path())?, Some(old));
        // A failure after the write (the rename) cleans up as well.
        let target = dir.path().join(CHECKPOINT_FILE);
        std::fs::remove_file(&target)?;
        std::fs::create_dir(&target)?;
        std::fs::write(target.join("x"), "x")?;
        assert!(new.write(dir.path()).is_err());
        assert!(std::fs::symlink_metadata(&tmp).is_err(), "temp file left");
        // A stale temp file from a crash is removed at start.
        std::fs::write(&tmp, "partial")?;
        assert!(Checkpoint::remove_stale_tmp(dir.path())?);
        assert!(!Checkpoint::remove_stale_tmp(dir.path())?);
        Ok(())
    }
}
