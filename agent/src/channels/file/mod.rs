//! Flume's FileChannel: a durable channel backed by an append-only, checksummed log.
//!
//! # On-disk layout
//! ```text
//! checkpointDir/       in_use.lock, checkpoint          (backupCheckpointDir/ the same)
//! dataDirs[i]/         in_use.lock, log-<id> ...        (segment id % number of data dirs)
//! ```
//! A **segment** `log-<id>` starts with a 24-byte header (`SLUICELG`, format version, id,
//! CRC32C) followed by records. Every **record** has a 32-byte header: magic `0x53434C52`, kind,
//! body length, count, a 64-bit field, a body CRC (take records) and a CRC32C of the header.
//! - A *put* record holds one committed put transaction: `count` event frames with sequence
//!   numbers `first..first+count`. A frame is `len u32 | crc32c(data) u32 | data`, where data is
//!   `n u32 | (klen u32, key, vlen u32, value)*n | body`, or with `encryption.*`
//!   `FF FF FF FF | alias len u8 | alias | IV (16) | AES-CTR(that data)` (see `crypto`); the
//!   CRC covers the stored bytes, and plain and encrypted frames may share a log.
//! - A *take* record holds one committed take transaction: `count` ranges `(first seq u64, n u32)`.
//!
//! The **checkpoint** holds a log position and the live events (sequence number, segment,
//! offset, length) as of that position, with a trailing CRC32C; it is replaced atomically
//! (write, fsync, rename, fsync dir). With `useDualCheckpoints` the same file is then written to
//! `backupCheckpointDir`.
//!
//! # Invariants
//! 1. Records are only appended; a segment is never modified after it is sealed, except that
//!    recovery truncates a torn tail of the newest one. A write that fails (disk full) is cut
//!    off the active segment before the error is returned. A start continues the newest segment
//!    (after replay has scanned it to its end and cut any torn tail) when it lies at or after
//!    the checkpoint position and below `maxFileSize`, so a restart needs no new space; else,
//!    or if its file cannot be opened for writing, it opens a fresh segment.
//! 2. Sequence numbers increase in log order, so a take can name its events by ranges.
//! 3. A transaction is one record, so it is in the log entirely or not at all. With
//!    `fsyncPerTransaction` (default) `commit` returns only after an fsync that covers its record.
//!    Concurrent commits share fsyncs (group commit: whoever finds no fsync running syncs for
//!    everyone written so far; the others wait for it).
//! 4. The in-memory state follows the log: a record's effect is applied under the log lock right
//!    after it is written, so "every record before position P" is exactly what a state snapshot
//!    taken under that lock reflects. A checkpoint is written only after the log up to P is
//!    durable. A put's events may thus be taken before its fsync completes; that is harmless,
//!    because the take record follows the put record in the log and the put has not been
//!    acknowledged yet. A failed fsync makes the channel refuse all further work (restart and
//!    replay), since the kernel may have dropped the unsynced pages.
//! 5. Replay = checkpoint's live events + every record from P on. Without a usable checkpoint
//!    (missing or damaged, and no usable backup) replay scans every segment: nothing is lost, but
//!    events whose take record lived in a deleted segment are delivered again.
//! 6. A segment is deleted only when it is older than the checkpoint position and no live event
//!    of the checkpoint snapshot lives in it, and (with dual checkpoints) after the backup holds
//!    the same snapshot. A live event's segment is therefore always present; if it is not (lost
//!    disk, deleted by hand), the channel refuses to start and says which file is missing.
//! 7. Capacity is held from reservation until the take that removes the events commits, as in
//!    the memory channel, so a rolled-back take always has room to go back.
//!
//! # Disk space
//! - **Take reserve.** The active segment keeps [`TAKE_RESERVE`] bytes of blocks allocated past
//!   its end (`fallocate` with `FALLOC_FL_KEEP_SIZE`: the file size, and so the format, is
//!   unchanged). A put first extends that allocation to cover its record *plus* the reserve and
//!   fails, writing nothing, if it cannot; so puts never eat the reserve, and take records
//!   (32 bytes + 12 per range, typically 44) are written into blocks that already exist. After a
//!   take the reserve is topped up when the disk allows. The blocks survive a crash or a clean
//!   stop and, since a start continues the newest segment, serve the next run too: on a full disk
//!   the channel starts and its sinks drain it (1 MiB holds about 23,000 take commits). When a
//!   segment is sealed its unused reserve is released. Filesystems without `fallocate` get no
//!   reserve (a warning says so) and behave as before: takes fail while the disk is full.
//! - **A take never needs a new segment**: past `maxFileSize` a take starts one only if the data
//!   dir has `minimumRequiredSpace` + the reserve free; otherwise its record goes to the active
//!   segment, which may then exceed `maxFileSize` by the take records written after the last put.
//! - **Checkpoints** need `minimumRequiredSpace` + their own size ([`checkpoint::encoded_len`]:
//!   40 bytes + 20 per live event) free in each checkpoint dir, else they are skipped (the log
//!   keeps everything; replay just starts further back). **Puts** need `minimumRequiredSpace` +
//!   the batch + the size the next checkpoint will have, in every data and checkpoint dir, so the
//!   room for that checkpoint is kept free by the puts themselves: a channel that filled its disk
//!   on its own can still checkpoint, delete drained segments and resume.
//!
//! Damage found at replay is reported (file, offset), counted in `CorruptRecordCount`, and
//! skipped (see [`replay`]); damage found when a take reads an event (bit rot after replay) is
//! reported, counted, and the event is dropped from the take.

mod channel;
mod checkpoint;
mod config;
mod crypto;
mod format;
mod log;
mod open;
mod replay;
mod segment;
mod space;
mod spec;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

pub(crate) use self::config::FileChannelConfig;
use self::replay::ListSegmentsError;
use super::ChannelError;
use crate::lifecycle::StopSignal;
use crate::metrics::{ChannelCounters, MetricSet, Value};
#[cfg(test)]
use {
    self::replay::list_segments,
    self::space::{checkpoint_space_needed, put_space_needed},
    super::{Channel, TakeTicket},
    crate::config::Props,
    crate::event::Event,
    std::path::Path,
    std::time::Duration,
};

/// Blocks kept allocated past the end of the active segment for take records (see the header).
pub(crate) const TAKE_RESERVE: u64 = 1024 * 1024;
/// A put that must extend the allocation extends it this much further, so a stream of small puts
/// costs one `fallocate` per MiB rather than one each.
const PREALLOCATE_AHEAD: u64 = 1024 * 1024;
const LOCK_FILE: &str = "in_use.lock";

/// Why a file channel could not open (the message leaves naming the channel to the caller).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FileChannelError {
    #[error(
        "{} is locked by another process (another agent uses this \
         directory); give each channel its own checkpointDir and dataDirs",
        path.display()
    )]
    Locked { channel: String, path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        channel: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{source}")]
    Segments {
        channel: String,
        source: ListSegmentsError,
    },
    #[error(
        "segment file(s) {} missing from dataDirs {data_dirs:?}; their events cannot be \
         recovered. Restore the file(s), or move the checkpoint files out of {} (and the backup) \
         to replay the remaining segments without them",
        segment_names(segments),
        checkpoint_dir.display()
    )]
    MissingSegments {
        channel: String,
        segments: Vec<u32>,
        data_dirs: Vec<PathBuf>,
        checkpoint_dir: PathBuf,
    },
}

/// `log-1, log-2` for segments 1 and 2.
fn segment_names(ids: &[u32]) -> String {
    let names: Vec<String> = ids.iter().map(|id| format!("log-{id}")).collect();
    names.join(", ")
}

/// Where one event lives: sequence number, segment id, frame offset, data length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ptr {
    pub(crate) seq: u64,
    pub(crate) seg: u32,
    pub(crate) off: u32,
    pub(crate) len: u32,
}

/// Counters beyond Flume's `ChannelCounter`: Flume's FileChannel extras and sluice's own.
#[derive(Debug, Default)]
pub(crate) struct FileChannelStats {
    pub(crate) replay_millis: AtomicU64,
    pub(crate) replay_events: AtomicU64,
    pub(crate) corrupt_records: AtomicU64,
    pub(crate) torn_writes: AtomicU64,
    pub(crate) fsyncs: AtomicU64,
    pub(crate) checkpoints: AtomicU64,
    pub(crate) checkpoint_write_errors: AtomicU64,
    pub(crate) checkpoint_backup_write_errors: AtomicU64,
    pub(crate) put_errors: AtomicU64,
    pub(crate) take_errors: AtomicU64,
    pub(crate) unhealthy: AtomicU64,
    pub(crate) segments: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
}

struct FileChannelMetrics {
    counters: Arc<ChannelCounters>,
    stats: Arc<FileChannelStats>,
}

impl MetricSet for FileChannelMetrics {
    fn snapshot(&self) -> Vec<(&'static str, Value)> {
        let s = &self.stats;
        let c = |a: &AtomicU64| Value::Counter(a.load(Ordering::Relaxed));
        let g = |a: &AtomicU64| Value::Gauge(a.load(Ordering::Relaxed));
        let mut v = self.counters.snapshot();
        v.extend([
            ("EventPutErrorCount", c(&s.put_errors)),
            ("EventTakeErrorCount", c(&s.take_errors)),
            ("CheckpointWriteErrorCount", c(&s.checkpoint_write_errors)),
            (
                "CheckpointBackupWriteErrorCount",
                c(&s.checkpoint_backup_write_errors),
            ),
            ("Unhealthy", g(&s.unhealthy)),
            ("ReplayMillis", g(&s.replay_millis)),
            ("ReplayEventCount", g(&s.replay_events)),
            ("CorruptRecordCount", c(&s.corrupt_records)),
            ("TornWriteCount", c(&s.torn_writes)),
            ("FsyncCount", c(&s.fsyncs)),
            ("CheckpointCount", c(&s.checkpoints)),
            ("LogFileCount", g(&s.segments)),
            ("LogBytesWritten", c(&s.bytes_written)),
        ]);
        v
    }
}

/// The segment being appended to.
struct Log {
    seg: u32,
    path: PathBuf,
    file: Arc<File>,
    off: u64,
    /// Blocks are known to be allocated up to here (>= `off`); past `off` they are the reserve.
    alloc_end: u64,
    /// Bytes written since open, across segments: the position group commit syncs up to.
    written: u64,
    next_seq: u64,
    open: bool,
}

struct Segment {
    path: PathBuf,
    file: Arc<File>,
    /// Live events (queued or in an uncommitted take) stored in this segment.
    live: u64,
}

struct Inflight {
    good: Vec<Ptr>,
    /// Events whose frame failed its checksum when read; never delivered.
    bad: Vec<Ptr>,
}

struct State {
    queue: VecDeque<Ptr>,
    /// Slots held by prepared puts and uncommitted takes.
    held: usize,
    inflight: HashMap<u64, Inflight>,
    next_ticket: u64,
    segments: BTreeMap<u32, Segment>,
    closed: bool,
}

#[derive(Default)]
struct SyncState {
    synced: u64,
    leader: bool,
    failed: Option<Failure>,
}

/// What made the channel unusable, with its I/O error (shared: it is cloned to every waiting
/// commit).
#[derive(Clone, Debug)]
struct Failure {
    what: String,
    cause: Arc<std::io::Error>,
}

struct Inner {
    name: String,
    config: FileChannelConfig,
    counters: Arc<ChannelCounters>,
    stats: Arc<FileChannelStats>,
    log: Mutex<Log>,
    state: Mutex<State>,
    not_full: Condvar,
    not_empty: Condvar,
    sync: Mutex<SyncState>,
    synced: Condvar,
    /// Serializes checkpoints.
    checkpointing: Mutex<()>,
    /// Lock files held open (flock) while the channel is open.
    locks: Mutex<Vec<File>>,
    min_space: AtomicU64,
    /// False once `fallocate` proved unsupported on a data dir: no take reserve then.
    preallocate: AtomicBool,
    closed: AtomicBool,
}

/// The durable channel.
pub(crate) struct FileChannel {
    inner: Arc<Inner>,
    stop: StopSignal,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl FileChannel {
    /// Writes a checkpoint now (normally done every `checkpointInterval`).
    #[cfg(test)]
    fn checkpoint(&self) -> Result<(), ChannelError> {
        self.inner.checkpoint()
    }

    #[cfg(test)]
    fn stats(&self) -> &Arc<FileChannelStats> {
        &self.inner.stats
    }

    #[cfg(test)]
    fn set_minimum_required_space(&self, bytes: u64) {
        self.inner.min_space.store(bytes, Ordering::Relaxed);
    }

    fn stop_worker(&self) {
        self.stop.stop();
        if let Some(t) = self.worker.lock().take()
            && t.join().is_err()
        {
            tracing::error!(channel = %self.inner.name, "File channel thread panicked.");
        }
    }
}

impl Drop for FileChannel {
    fn drop(&mut self) {
        // No checkpoint here: a drop without close behaves like a crash, which replay handles.
        self.stop_worker();
    }
}

impl Inner {
    fn io_err(&self, message: String) -> ChannelError {
        ChannelError::Io {
            channel: self.name.clone(),
            message,
        }
    }

    /// The channel's error for an I/O failure while doing `what`, which stays its cause.
    fn failed(&self, what: String, cause: std::io::Error) -> ChannelError {
        self.failure_err(Failure {
            what,
            cause: Arc::new(cause),
        })
    }

    fn failure_err(&self, f: Failure) -> ChannelError {
        ChannelError::Failed {
            channel: self.name.clone(),
            what: f.what,
            cause: f.cause,
        }
    }

    fn closed_err(&self) -> ChannelError {
        ChannelError::Closed {
            channel: self.name.clone(),
        }
    }

    fn publish_size(&self, st: &State) {
        self.counters
            .channel_size
            .store((st.queue.len() + st.held) as u64, Ordering::Relaxed);
    }
}
