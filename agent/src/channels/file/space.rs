//! Free-space checks of puts, checkpoints and new segments ("Disk space" in the `file` module
//! header).

use std::path::Path;
use std::sync::atomic::Ordering;

use super::format::SEGMENT_HEADER_LEN;
use super::{Inner, TAKE_RESERVE, checkpoint};
use crate::channels::ChannelError;

/// Free bytes every put needs in each data and checkpoint dir: `minimumRequiredSpace`, the
/// batch, and the checkpoint that will then hold `live` events (so that checkpoint, which needs
/// [`checkpoint_space_needed`], always fits once puts stop).
pub(super) fn put_space_needed(min: u64, batch: u64, live: u64) -> u64 {
    checkpoint_space_needed(min, live).saturating_add(batch)
}

/// Free bytes a checkpoint of `live` events needs in each checkpoint dir.
pub(super) fn checkpoint_space_needed(min: u64, live: u64) -> u64 {
    min.saturating_add(checkpoint::encoded_len(live))
}

impl Inner {
    fn free_space(&self, dir: &Path) -> Result<u64, ChannelError> {
        fs4::available_space(dir)
            .map_err(|e| self.failed(format!("cannot read free space of {}", dir.display()), e))
    }

    /// Free space check of a put of `events` events and `bytes` bytes, in every data and
    /// checkpoint dir (see the module header).
    pub(super) fn check_space(&self, bytes: u64, events: usize) -> Result<(), ChannelError> {
        let min = self.min_space.load(Ordering::Relaxed);
        let live = self
            .counters
            .channel_size
            .load(Ordering::Relaxed)
            .saturating_add(events as u64);
        let need = put_space_needed(min, bytes, live);
        let dirs = self.config.data_dirs.iter().chain(
            std::iter::once(&self.config.checkpoint_dir).chain(&self.config.backup_checkpoint_dir),
        );
        for dir in dirs {
            let free = self.free_space(dir)?;
            if free < need {
                return Err(self.io_err(format!(
                    "{} has {free} bytes free, below the {need} a put needs \
                     (minimumRequiredSpace {min} + the batch + the next checkpoint); puts \
                     resume when space is freed",
                    dir.display(),
                )));
            }
        }
        Ok(())
    }

    /// Whether a checkpoint of `live` events may be written in `dir`: it must leave
    /// `minimumRequiredSpace` free.
    pub(super) fn check_checkpoint_space(
        &self,
        dir: &Path,
        live: usize,
    ) -> Result<(), ChannelError> {
        let min = self.min_space.load(Ordering::Relaxed);
        let need = checkpoint_space_needed(min, live as u64);
        let free = self.free_space(dir)?;
        if free < need {
            return Err(self.io_err(format!(
                "checkpoint skipped: {} has {free} bytes free, below minimumRequiredSpace {min} + \
                 the checkpoint's {} bytes; the log keeps every record meanwhile",
                dir.display(),
                need - min
            )));
        }
        Ok(())
    }

    /// Bytes a put may newly allocate in the data dir of segment `id` (its record, the take
    /// reserve, a new segment) and still leave the next checkpoint its room there:
    /// `minimumRequiredSpace` + the checkpoint of the live events + `record` (at least 20 bytes
    /// per event of the batch being put, so it covers their checkpoint entries). Without this
    /// a put's allocation could take the room [`Self::check_space`] kept for the checkpoint,
    /// and a filled disk would stay full: no put fits, no checkpoint is written, no drained
    /// segment is deleted.
    pub(super) fn put_allocation_room(&self, id: u32, record: u64) -> Result<u64, ChannelError> {
        let dir = &self.config.data_dirs[id as usize % self.config.data_dirs.len()];
        let min = self.min_space.load(Ordering::Relaxed);
        let live = self.counters.channel_size.load(Ordering::Relaxed);
        let keep = checkpoint_space_needed(min, live).saturating_add(record);
        Ok(self.free_space(dir)?.saturating_sub(keep))
    }

    /// Whether data dir of segment `id` has room for a new segment with its reserve, beyond
    /// `minimumRequiredSpace` (takes start segments only then).
    pub(super) fn room_for_segment(&self, id: u32) -> bool {
        let dir = &self.config.data_dirs[id as usize % self.config.data_dirs.len()];
        let min = self.min_space.load(Ordering::Relaxed);
        self.free_space(dir)
            .is_ok_and(|free| free >= min.saturating_add(SEGMENT_HEADER_LEN + TAKE_RESERVE))
    }
}
