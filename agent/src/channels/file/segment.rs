//! Segment files: creation with the take reserve, release of the reserve when sealed, and
//! deletion once no checkpointed event lives in them (invariant 6 and "Disk space" in the
//! `file` module header).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::checkpoint::{Checkpoint, sync_dir};
use super::format::{SEGMENT_HEADER_LEN, segment_header};
use super::{FileChannelConfig, Inner, Log, TAKE_RESERVE};

/// A segment just created by [`create_segment`].
pub(super) struct NewSegment {
    pub(super) path: PathBuf,
    pub(super) file: Arc<File>,
    /// End of its allocated blocks: header + [`TAKE_RESERVE`], or the header alone when the
    /// filesystem cannot preallocate.
    pub(super) alloc_end: u64,
}

/// Why [`create_segment`] failed: the file it tried and the I/O error.
pub(super) struct CreateSegmentError {
    pub(super) path: PathBuf,
    pub(super) source: std::io::Error,
}

/// Creates `log-<id>` in its data dir with its take reserve, a durable header and directory
/// entry. On failure (disk full) the file is removed again.
pub(super) fn create_segment(
    config: &FileChannelConfig,
    id: u32,
    preallocate: &AtomicBool,
    channel: &str,
) -> Result<NewSegment, CreateSegmentError> {
    let dir = &config.data_dirs[id as usize % config.data_dirs.len()];
    let path = dir.join(format!("log-{id}"));
    match write_new_segment(dir, &path, id, preallocate, channel) {
        Ok((f, alloc_end)) => Ok(NewSegment {
            path,
            file: Arc::new(f),
            alloc_end,
        }),
        Err(source) => {
            if let Err(e2) = std::fs::remove_file(&path)
                && e2.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(channel = %channel, file = %path.display(), error = %e2,
                    "Cannot remove a segment whose creation failed.");
            }
            Err(CreateSegmentError { path, source })
        }
    }
}

/// The file of [`create_segment`] and the end of its allocated blocks.
fn write_new_segment(
    dir: &Path,
    path: &Path,
    id: u32,
    preallocate: &AtomicBool,
    channel: &str,
) -> std::io::Result<(File, u64)> {
    // Ids only grow, so an existing file of this id can only be a previous attempt that
    // failed half-way: start it over.
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let reserved = SEGMENT_HEADER_LEN + TAKE_RESERVE;
    let alloc_end = if allocate(&f, 0, reserved, preallocate, channel)? {
        reserved
    } else {
        SEGMENT_HEADER_LEN
    };
    f.write_all_at(&segment_header(u64::from(id)), 0)?;
    f.sync_all()?;
    sync_dir(dir)?;
    Ok((f, alloc_end))
}

/// Allocates the blocks of `[from, to)` of `file` without changing its size
/// (`FALLOC_FL_KEEP_SIZE`). `Ok(false)` when the filesystem cannot: `preallocate` is then
/// cleared and a warning logged, once.
fn allocate(
    file: &File,
    from: u64,
    to: u64,
    preallocate: &AtomicBool,
    channel: &str,
) -> std::io::Result<bool> {
    use rustix::fs::{FallocateFlags, fallocate};
    use rustix::io::Errno;
    if !preallocate.load(Ordering::Relaxed) {
        return Ok(false);
    }
    if to <= from {
        return Ok(true);
    }
    match fallocate(file, FallocateFlags::KEEP_SIZE, from, to - from) {
        Ok(()) => Ok(true),
        Err(e) if e == Errno::OPNOTSUPP || e == Errno::NOSYS => {
            if preallocate.swap(false, Ordering::Relaxed) {
                tracing::warn!(channel = %channel, error = %e,
                    "The data dir's filesystem cannot preallocate (fallocate): no take reserve, \
                     so takes fail while the disk is full.");
            }
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Drops the blocks allocated past the end of a sealed segment (truncating a file to its own
/// size releases them); best effort.
pub(super) fn release_reserve(path: &Path, channel: &str) {
    let result = OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.metadata().and_then(|m| f.set_len(m.len())));
    if let Err(e) = result {
        tracing::debug!(channel = %channel, file = %path.display(), error = %e,
            "Cannot release the take reserve of a sealed segment.");
    }
}

impl Inner {
    /// Makes sure the active segment has blocks allocated up to `to`, allocating `ahead` more
    /// if it can. `Ok` as well when the filesystem cannot preallocate.
    pub(super) fn allocate_to(&self, log: &mut Log, to: u64, ahead: u64) -> std::io::Result<()> {
        if log.alloc_end >= to {
            return Ok(());
        }
        let from = log.alloc_end.max(log.off);
        let mut result = Ok(());
        for target in [to.saturating_add(ahead), to] {
            match allocate(&log.file, from, target, &self.preallocate, &self.name) {
                Ok(true) => {
                    log.alloc_end = target;
                    return Ok(());
                }
                Ok(false) => return Ok(()),
                Err(e) => result = Err(e),
            }
            if ahead == 0 {
                break;
            }
        }
        result
    }

    /// Deletes segments older than the checkpoint that hold none of its live events.
    pub(super) fn delete_segments(&self, cp: &Checkpoint) {
        let mut needed: Vec<u32> = cp.live.iter().map(|p| p.seg).collect();
        needed.sort_unstable();
        needed.dedup();
        let doomed: Vec<(u32, PathBuf)> = {
            let mut st = self.state.lock();
            let ids: Vec<u32> = st
                .segments
                .range(..cp.segment)
                .map(|(id, _)| *id)
                .filter(|id| needed.binary_search(id).is_err())
                .collect();
            let doomed = ids
                .into_iter()
                .filter_map(|id| st.segments.remove(&id).map(|s| (id, s.path)))
                .collect();
            self.stats
                .segments
                .store(st.segments.len() as u64, Ordering::Relaxed);
            doomed
        };
        for (id, path) in doomed {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::debug!(channel = %self.name, segment = id, "Deleted a fully taken segment.")
                }
                Err(e) => tracing::warn!(channel = %self.name, file = %path.display(), error = %e,
                    "Cannot delete a fully taken segment."),
            }
        }
    }
}
