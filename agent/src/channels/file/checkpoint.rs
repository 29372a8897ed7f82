//! The checkpoint: a snapshot of the channel's live events plus the log position it reflects.
//!
//! Written to `checkpoint.tmp`, fsynced, renamed over `checkpoint`, and the directory fsynced, so
//! a crash leaves either the old or the new file. A write that fails (disk full) removes
//! `checkpoint.tmp` before returning, and a start removes one left by a crash, so a failed
//! checkpoint never keeps holding the space it could not use. A trailing CRC32C over the whole file catches
//! damage after the fact; a damaged checkpoint is never trusted (the caller falls back to the
//! backup, then to a full replay of the log).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::Ptr;
use super::format::{FORMAT_VERSION, u32_at, u64_at};

pub const CHECKPOINT_FILE: &str = "checkpoint";
pub const CHECKPOINT_TMP: &str = "checkpoint.tmp";
const CHECKPOINT_MAGIC: &[u8; 8] = b"SLUICECP";
/// magic (8) + version (4) + segment (4) + offset (4) + next seq (8) + count (8).
const HEADER_LEN: usize = 36;
/// seq (8) + segment (4) + offset (4) + length (4).
const ENTRY_LEN: usize = 20;

/// What a checkpoint records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Every record before (`segment`, `offset`) is reflected in `live`; replay starts there.
    pub segment: u32,
    pub offset: u32,
    /// The next sequence number to assign.
    pub next_seq: u64,
    /// Events put and not take-committed at that position, by ascending sequence number.
    pub live: Vec<Ptr>,
}

/// Bytes of a checkpoint holding `live` events.
pub fn encoded_len(live: u64) -> u64 {
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

    fn decode(b: &[u8]) -> Result<Self, String> {
        if b.len() < HEADER_LEN + 4 {
            return Err(format!("truncated ({} bytes)", b.len()));
        }
        let (body, tail) = b.split_at(b.len() - 4);
        if u32_at(tail, 0) != Some(crc32c::crc32c(body)) {
            return Err("checksum mismatch".into());
        }
        if &body[0..8] != CHECKPOINT_MAGIC {
            return Err("not a sluice checkpoint (bad magic)".into());
        }
        let version = u32_at(body, 8).unwrap_or(0);
        if version != FORMAT_VERSION {
            return Err(format!("unsupported format version {version}"));
        }
        let bad = || "malformed header".to_string();
        let segment = u32_at(body, 12).ok_or_else(bad)?;
        let offset = u32_at(body, 16).ok_or_else(bad)?;
        let next_seq = u64_at(body, 20).ok_or_else(bad)?;
        let count = u64_at(body, 28).ok_or_else(bad)? as usize;
        let entries = &body[HEADER_LEN..];
        if entries.len() != count.saturating_mul(ENTRY_LEN) {
            return Err(format!(
                "{count} entries announced, {} bytes present",
                entries.len()
            ));
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
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
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
    pub fn remove_stale_tmp(dir: &Path) -> std::io::Result<bool> {
        match std::fs::remove_file(dir.join(CHECKPOINT_TMP)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads `dir/checkpoint`: `Ok(None)` if there is none, `Err(reason)` if it is damaged.
    pub fn read(dir: &Path) -> Result<Option<Self>, CheckpointDamage> {
        let path = dir.join(CHECKPOINT_FILE);
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => f
                .read_to_end(&mut bytes)
                .map_err(|e| CheckpointDamage::new(&path, e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CheckpointDamage::new(&path, e.to_string())),
        };
        Self::decode(&bytes)
            .map(Some)
            .map_err(|m| CheckpointDamage::new(&path, m))
    }
}

/// A checkpoint that exists but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("checkpoint {} is unusable: {reason}", path.display())]
pub struct CheckpointDamage {
    pub path: PathBuf,
    pub reason: String,
}

impl CheckpointDamage {
    fn new(path: &Path, reason: String) -> Self {
        Self {
            path: path.to_path_buf(),
            reason,
        }
    }
}

/// Makes a create, rename or delete in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
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
