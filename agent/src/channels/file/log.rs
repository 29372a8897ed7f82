//! Appending records to the active segment, rolling to the next one, and group commit
//! (invariants 1, 3 and 4 of the `file` module header).

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::format::{Kind, SEGMENT_HEADER_LEN};
use super::segment::{CreateSegmentError, NewSegment, create_segment};
use super::{Failure, Inner, Log, PREALLOCATE_AHEAD, Segment, State, TAKE_RESERVE};
use crate::channels::ChannelError;

impl Inner {
    pub(super) fn failure(&self) -> Option<Failure> {
        self.sync.lock().failed.clone()
    }

    /// Marks the channel unusable: after a failed fsync the page cache may have dropped the
    /// data, so nothing written since the last good fsync can be trusted until a replay.
    pub(super) fn fail(&self, what: String, cause: std::io::Error) -> Failure {
        self.stats.unhealthy.store(1, Ordering::Relaxed);
        let mut s = self.sync.lock();
        let failure = s.failed.get_or_insert_with(|| {
            tracing::error!(channel = %self.name, error = %cause, what,
                "File channel failed; restart the agent to replay the log.");
            Failure {
                what,
                cause: Arc::new(cause),
            }
        });
        let failure = failure.clone();
        drop(s);
        self.synced.notify_all();
        failure
    }

    /// Appends `bytes` as one record of `kind` (starting a new segment first if this one is
    /// full) and applies its effect with `apply` while still holding the log lock. Returns the
    /// position to sync up to. A put is refused unless the blocks for it and the take reserve
    /// can be allocated; a take writes into the reserve (see the module header).
    pub(super) fn append(
        &self,
        kind: Kind,
        buf: &mut [u8],
        seal: impl FnOnce(&mut [u8], &Log),
        apply: impl FnOnce(&mut Log, u32, u64, &mut State),
    ) -> Result<u64, ChannelError> {
        let mut log = self.log.lock();
        if !log.open {
            return Err(self.closed_err());
        }
        if let Some(f) = self.failure() {
            return Err(self.failure_err(f));
        }
        self.roll_if_full(&mut log, kind, buf.len() as u64)?;
        seal(buf, &log);
        let off = log.off;
        self.write_record(&mut log, kind, buf)?;
        let seg = log.seg;
        let mut st = self.state.lock();
        apply(&mut log, seg, off, &mut st);
        Ok(log.written)
    }

    /// Starts a new segment when a record of `len` bytes would take the active one past
    /// `maxFileSize`. A take does so only when the disk has room, else its record goes to the
    /// active segment (a take never needs a new segment).
    fn roll_if_full(&self, log: &mut Log, kind: Kind, len: u64) -> Result<(), ChannelError> {
        if log.off <= SEGMENT_HEADER_LEN || log.off + len <= self.config.max_file_size {
            return Ok(());
        }
        match kind {
            Kind::Put => {
                // The new segment takes its header and take reserve before the sealed one
                // gives its unused reserve back.
                let need = SEGMENT_HEADER_LEN + TAKE_RESERVE + len;
                let room = self.put_allocation_room(log.seg + 1, len)?;
                if room < need {
                    return Err(self.io_err(format!(
                        "puts wait for free space: a new segment needs {need} bytes beyond the \
                         room kept for the next checkpoint, {room} are free"
                    )));
                }
                self.roll(log)?;
            }
            Kind::Take if self.room_for_segment(log.seg + 1) => {
                if let Err(e) = self.roll(log) {
                    if self.failure().is_some() {
                        return Err(e);
                    }
                    tracing::debug!(channel = %self.name, error = %e,
                        "No new segment for a take; it goes to the active one.");
                }
            }
            Kind::Take => {}
        }
        Ok(())
    }

    /// Writes a sealed record at the end of the active segment and advances the log past it. A
    /// put first secures its blocks and the take reserve; a take tops the reserve up after.
    fn write_record(&self, log: &mut Log, kind: Kind, buf: &[u8]) -> Result<(), ChannelError> {
        let len = buf.len() as u64;
        let off = log.off;
        if off + len > u64::from(u32::MAX) {
            return Err(self.io_err(format!(
                "a {len}-byte record does not fit in a segment; lower the batch size"
            )));
        }
        if kind == Kind::Put
            && let Err(e) = self.allocate_for_put(log, off + len + TAKE_RESERVE, len)?
        {
            return Err(self.failed(
                format!(
                    "puts wait for free space: cannot allocate {} bytes in {} for the batch and \
                     the take reserve",
                    len + TAKE_RESERVE,
                    log.path.display()
                ),
                e,
            ));
        }
        if let Err(e) = log.file.write_all_at(buf, off) {
            // Cut the partial record so the next one follows valid data.
            if let Err(e2) = log.file.set_len(off) {
                self.fail(
                    format!(
                        "cannot write {} ({e}) nor truncate the partial record",
                        log.path.display()
                    ),
                    e2,
                );
            }
            // The cut released the blocks past `off` as well: take back what the disk allows.
            log.alloc_end = off;
            let _ = self.allocate_to(log, off + TAKE_RESERVE, 0);
            return Err(self.failed(format!("cannot write {}", log.path.display()), e));
        }
        log.off += len;
        log.alloc_end = log.alloc_end.max(log.off);
        if kind == Kind::Take && log.alloc_end < log.off + TAKE_RESERVE / 2 {
            // Best effort: on a full disk the rest of the reserve serves the next takes.
            let want = log.off + TAKE_RESERVE;
            let _ = self.allocate_to(log, want, 0);
        }
        log.written += len;
        self.stats.bytes_written.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// Extends the active segment's allocation to `to` for a put of a `len`-byte record, by
    /// [`PREALLOCATE_AHEAD`] more when that leaves the next checkpoint its room. The outer error
    /// refuses the put because the allocation would take that room; the inner one is the
    /// filesystem's.
    fn allocate_for_put(
        &self,
        log: &mut Log,
        to: u64,
        len: u64,
    ) -> Result<std::io::Result<()>, ChannelError> {
        let growth = to.saturating_sub(log.alloc_end.max(log.off));
        if growth == 0 {
            return Ok(Ok(()));
        }
        let room = self.put_allocation_room(log.seg, len)?;
        if room < growth {
            return Err(self.io_err(format!(
                "puts wait for free space: {} needs {growth} more bytes for the batch and the \
                 take reserve beyond the room kept for the next checkpoint, {room} are free",
                log.path.display()
            )));
        }
        let ahead = if room - growth >= PREALLOCATE_AHEAD {
            PREALLOCATE_AHEAD
        } else {
            0
        };
        Ok(self.allocate_to(log, to, ahead))
    }

    /// Seals the current segment (fsync) and starts the next one.
    fn roll(&self, log: &mut Log) -> Result<(), ChannelError> {
        if let Err(e) = log.file.sync_data() {
            let f = self.fail(format!("fsync of {} failed", log.path.display()), e);
            return Err(self.failure_err(f));
        }
        {
            let mut s = self.sync.lock();
            s.synced = s.synced.max(log.written);
        }
        self.synced.notify_all();
        let id = log.seg + 1;
        let NewSegment {
            path,
            file,
            alloc_end,
        } = create_segment(&self.config, id, &self.preallocate, &self.name).map_err(
            |CreateSegmentError { path, source }| {
                self.failed(format!("cannot create {}", path.display()), source)
            },
        )?;
        // The sealed segment's unused reserve goes back to the filesystem (truncating to the
        // same size drops the blocks past the end).
        if let Err(e) = log.file.set_len(log.off) {
            tracing::debug!(channel = %self.name, file = %log.path.display(), error = %e,
                "Cannot release the take reserve of a sealed segment.");
        }
        let mut st = self.state.lock();
        st.segments.insert(
            id,
            Segment {
                path: path.clone(),
                file: file.clone(),
                live: 0,
            },
        );
        self.stats
            .segments
            .store(st.segments.len() as u64, Ordering::Relaxed);
        drop(st);
        log.seg = id;
        log.path = path;
        log.file = file;
        log.off = SEGMENT_HEADER_LEN;
        log.alloc_end = alloc_end;
        Ok(())
    }

    /// Waits until the log is durable up to `pos`, running the fsync itself if nobody is.
    pub(super) fn sync_to(&self, pos: u64) -> Result<(), ChannelError> {
        let mut s = self.sync.lock();
        loop {
            if let Some(f) = &s.failed {
                return Err(self.failure_err(f.clone()));
            }
            if s.synced >= pos {
                return Ok(());
            }
            if s.leader {
                self.synced.wait(&mut s);
                continue;
            }
            s.leader = true;
            drop(s);
            let (target, file, path) = {
                let log = self.log.lock();
                (log.written, log.file.clone(), log.path.clone())
            };
            let result = file.sync_data();
            self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
            s = self.sync.lock();
            s.leader = false;
            match result {
                Ok(()) => s.synced = s.synced.max(target),
                Err(e) => {
                    drop(s);
                    self.fail(format!("fsync of {} failed", path.display()), e);
                    s = self.sync.lock();
                }
            }
            self.synced.notify_all();
        }
    }

    pub(super) fn written(&self) -> u64 {
        self.log.lock().written
    }
}
