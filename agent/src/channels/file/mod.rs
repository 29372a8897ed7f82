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
//!   `n u32 | (klen u32, key, vlen u32, value)*n | body`.
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

mod checkpoint;
mod format;
mod replay;
mod spec;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use self::checkpoint::{Checkpoint, sync_dir};
use self::format::{FRAME_HEADER_LEN, Kind, PutRecord, SEGMENT_HEADER_LEN, segment_header};
use self::replay::{Replay, ScanEnd, list_segments};
use super::{Channel, ChannelError, Reservation, TakeTicket};
use crate::config::{ConfigError, MAX_BATCH, MAX_MILLIS, MAX_SECONDS, Props};
use crate::event::Event;
use crate::lifecycle::StopSignal;
use crate::metrics::{ChannelCounters, MetricSet, Value};

/// Flume's default and upper bound for `maxFileSize` (`Integer.MAX_VALUE - 500 MB`).
pub const MAX_FILE_SIZE: u64 = i32::MAX as u64 - 500 * 1024 * 1024;
/// Blocks kept allocated past the end of the active segment for take records (see the header).
pub const TAKE_RESERVE: u64 = 1024 * 1024;
/// A put that must extend the allocation extends it this much further, so a stream of small puts
/// costs one `fallocate` per MiB rather than one each.
const PREALLOCATE_AHEAD: u64 = 1024 * 1024;
const LOCK_FILE: &str = "in_use.lock";

/// `a1.channels.c1.*` for `type = file`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileChannelConfig {
    /// `checkpointDir` (default `~/.flume/file-channel/checkpoint`).
    pub checkpoint_dir: PathBuf,
    /// `backupCheckpointDir`, used when `useDualCheckpoints = true` (default false).
    pub backup_checkpoint_dir: Option<PathBuf>,
    /// `dataDirs`: comma-separated (default `~/.flume/file-channel/data`); segments rotate over
    /// them.
    pub data_dirs: Vec<PathBuf>,
    /// `capacity`: events stored at most (default 1000000).
    pub capacity: usize,
    /// `transactionCapacity` (default 10000).
    pub transaction_capacity: usize,
    /// `maxFileSize`: bytes per segment before a new one starts (default and maximum
    /// 1623195647, as Flume).
    pub max_file_size: u64,
    /// `minimumRequiredSpace`: puts fail while a data or checkpoint dir has less free space
    /// than this + the batch + the next checkpoint, and checkpoints are skipped while a checkpoint
    /// dir has less than this + the checkpoint (default 524288000, at least 1048576).
    pub minimum_required_space: u64,
    /// `checkpointInterval` in milliseconds (default 30000).
    pub checkpoint_interval: Duration,
    /// `keep-alive`: seconds a put waits for room (default 3).
    pub keep_alive: Duration,
    /// `fsyncPerTransaction` (default true): commit returns after the log is fsynced.
    pub fsync_per_transaction: bool,
    /// `fsyncInterval` seconds between fsyncs when `fsyncPerTransaction = false` (default 5).
    pub fsync_interval: Duration,
    /// `checkpointOnClose` (default true).
    pub checkpoint_on_close: bool,
}

impl FileChannelConfig {
    pub fn from_props(p: &Props) -> Result<Self, ConfigError> {
        let base = std::env::var_os("HOME")
            .map_or_else(|| PathBuf::from("."), PathBuf::from)
            .join(".flume/file-channel");
        let checkpoint_dir = p
            .get("checkpointDir")
            .filter(|v| !v.is_empty())
            .map_or_else(|| base.join("checkpoint"), PathBuf::from);
        let dual = p.bool("useDualCheckpoints", false)?;
        let backup = p
            .get("backupCheckpointDir")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let backup_checkpoint_dir = match (dual, backup) {
            (true, None) => {
                return Err(p.error(
                    "backupCheckpointDir",
                    "is required when useDualCheckpoints = true",
                ));
            }
            (true, Some(b)) if b == checkpoint_dir => {
                return Err(p.error("backupCheckpointDir", "must differ from checkpointDir"));
            }
            (true, b) => b,
            (false, _) => None,
        };
        let mut data_dirs: Vec<PathBuf> = p
            .get("dataDirs")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        if data_dirs.is_empty() {
            data_dirs.push(base.join("data"));
        }
        for (i, d) in data_dirs.iter().enumerate() {
            if data_dirs[..i].contains(d) {
                return Err(p.error("dataDirs", format!("{} is listed twice", d.display())));
            }
        }
        let capacity = p.int("capacity", 1_000_000, 1..=1_000_000_000)?;
        let transaction_capacity = p.int("transactionCapacity", 10_000, 1..=MAX_BATCH)?;
        if transaction_capacity > capacity {
            return Err(p.error(
                "transactionCapacity",
                format!("{transaction_capacity} exceeds capacity {capacity}"),
            ));
        }
        let checkpoint_interval = p.millis("checkpointInterval", 30_000, 1..=MAX_MILLIS)?;
        if checkpoint_interval.is_zero() {
            return Err(p.error("checkpointInterval", "must be greater than 0"));
        }
        let fsync_interval = p.seconds("fsyncInterval", 5, 1..=MAX_SECONDS)?;
        if fsync_interval.is_zero() {
            return Err(p.error("fsyncInterval", "must be greater than 0"));
        }
        // Accepted for compatibility; sluice's replay is always the fast one.
        p.bool("use-fast-replay", false)?;
        p.bool("use-log-replay-v1", false)?;
        p.bool("compressBackupCheckpoint", false)?;
        if let Some((k, _)) = p.children("encryption.").first() {
            return Err(p.error(
                &format!("encryption.{k}"),
                "file channel encryption is not supported by sluice",
            ));
        }
        Ok(Self {
            checkpoint_dir,
            backup_checkpoint_dir,
            data_dirs,
            capacity,
            transaction_capacity,
            max_file_size: p
                .int("maxFileSize", MAX_FILE_SIZE, 1..=u64::MAX)?
                .min(MAX_FILE_SIZE),
            minimum_required_space: p
                .int("minimumRequiredSpace", 500 * 1024 * 1024, 0..=1 << 50)?
                .max(1024 * 1024),
            checkpoint_interval,
            keep_alive: p.seconds("keep-alive", 3, 0..=MAX_SECONDS)?,
            fsync_per_transaction: p.bool("fsyncPerTransaction", true)?,
            fsync_interval,
            checkpoint_on_close: p.bool("checkpointOnClose", true)?,
        })
    }
}

/// Why a file channel could not open (the message leaves naming the channel to the caller).
#[derive(Debug, thiserror::Error)]
pub enum FileChannelError {
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
    #[error("{message}")]
    Recovery { channel: String, message: String },
}

/// Where one event lives: sequence number, segment id, frame offset, data length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ptr {
    pub seq: u64,
    pub seg: u32,
    pub off: u32,
    pub len: u32,
}

/// Counters beyond Flume's `ChannelCounter`: Flume's FileChannel extras and sluice's own.
#[derive(Debug, Default)]
pub struct FileChannelStats {
    pub replay_millis: AtomicU64,
    pub replay_events: AtomicU64,
    pub corrupt_records: AtomicU64,
    pub torn_writes: AtomicU64,
    pub fsyncs: AtomicU64,
    pub checkpoints: AtomicU64,
    pub checkpoint_write_errors: AtomicU64,
    pub checkpoint_backup_write_errors: AtomicU64,
    pub put_errors: AtomicU64,
    pub take_errors: AtomicU64,
    pub unhealthy: AtomicU64,
    pub segments: AtomicU64,
    pub bytes_written: AtomicU64,
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

struct SyncState {
    synced: u64,
    leader: bool,
    failed: Option<String>,
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
pub struct FileChannel {
    inner: Arc<Inner>,
    stop: StopSignal,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl FileChannel {
    /// Locks the directories, replays the log and starts the checkpoint thread.
    pub fn open(name: &str, config: FileChannelConfig) -> Result<Self, FileChannelError> {
        let started = Instant::now();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            let channel = name.to_string();
            move |source| FileChannelError::Io {
                channel,
                path,
                source,
            }
        };
        let mut dirs: Vec<&PathBuf> = vec![&config.checkpoint_dir];
        dirs.extend(config.backup_checkpoint_dir.iter());
        dirs.extend(config.data_dirs.iter());
        let mut locks = Vec::new();
        for dir in dirs {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            let path = dir.join(LOCK_FILE);
            if locks.iter().any(|(p, _): &(PathBuf, File)| *p == path) {
                continue;
            }
            let f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io(&path))?;
            match f.try_lock() {
                Ok(()) => locks.push((path, f)),
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(FileChannelError::Locked {
                        channel: name.to_string(),
                        path,
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
            }
        }
        let recovery = |message: String| FileChannelError::Recovery {
            channel: name.to_string(),
            message,
        };
        let mut segments = list_segments(&config.data_dirs).map_err(recovery)?;
        let stats = Arc::new(FileChannelStats::default());
        let preallocate = AtomicBool::new(true);
        for dir in std::iter::once(&config.checkpoint_dir).chain(&config.backup_checkpoint_dir) {
            match Checkpoint::remove_stale_tmp(dir) {
                Ok(true) => tracing::info!(channel = %name, dir = %dir.display(),
                    "Removed a checkpoint.tmp left by an interrupted checkpoint."),
                Ok(false) => {}
                Err(e) => tracing::warn!(channel = %name, dir = %dir.display(), error = %e,
                    "Cannot remove a checkpoint.tmp left by an interrupted checkpoint."),
            }
        }

        let checkpoint = load_checkpoint(name, &config, &stats);
        let (mut replay, start) = match &checkpoint {
            Some(cp) => (
                Replay::new(name, cp.live.clone(), cp.next_seq),
                Some((cp.segment, u64::from(cp.offset))),
            ),
            None => (Replay::new(name, Vec::new(), 0), None),
        };
        if let Some((seg, _)) = start {
            // Records after the checkpoint live in segments >= its segment; all must be there.
            let newest = segments.keys().next_back().copied().unwrap_or(seg);
            let missing: Vec<u32> = (seg..=newest)
                .filter(|id| !segments.contains_key(id))
                .collect();
            if !missing.is_empty() {
                return Err(recovery(missing_message(&config, &missing)));
            }
        }
        let newest = segments.keys().next_back().copied();
        let mut torn_empty = Vec::new();
        for (&id, path) in &segments {
            let from = match start {
                Some((seg, _)) if id < seg => continue,
                Some((seg, off)) if id == seg => off,
                _ => 0,
            };
            let end = replay
                .scan(id, path, from, Some(id) == newest)
                .map_err(io(path))?;
            if end == ScanEnd::TornEmpty {
                torn_empty.push(id);
            }
        }
        for &id in &torn_empty {
            if let Some(path) = segments.remove(&id) {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        // The segment a start may continue: the newest, scanned to its end, at or after the
        // checkpoint position (records appended before that position would be skipped by the
        // next replay).
        let mut continuable: Option<(u32, u64)> = None;
        if let Some(id) = newest.filter(|id| !torn_empty.contains(id))
            && let Some(path) = segments.get(&id)
        {
            let size = std::fs::metadata(path).map_err(io(path))?.len();
            let after_checkpoint = match start {
                Some((seg, off)) => id > seg || (id == seg && size >= off),
                None => true,
            };
            if after_checkpoint && size >= SEGMENT_HEADER_LEN {
                continuable = Some((id, size));
            }
        }
        stats
            .corrupt_records
            .fetch_add(replay.corrupt, Ordering::Relaxed);
        stats.torn_writes.store(replay.torn, Ordering::Relaxed);
        let records = replay.records;
        let next_seq = replay.next_seq;
        let live = replay.finish();
        let missing: Vec<u32> = {
            let mut m: Vec<u32> = live
                .iter()
                .map(|p| p.seg)
                .filter(|s| !segments.contains_key(s))
                .collect();
            m.dedup();
            m
        };
        if !missing.is_empty() {
            return Err(recovery(missing_message(&config, &missing)));
        }

        // Open every segment for reads, then start a fresh one for writes.
        let mut segs: BTreeMap<u32, Segment> = BTreeMap::new();
        for (&id, path) in &segments {
            let f = File::open(path).map_err(io(path))?;
            segs.insert(
                id,
                Segment {
                    path: path.clone(),
                    file: Arc::new(f),
                    live: 0,
                },
            );
        }
        for p in &live {
            if let Some(s) = segs.get_mut(&p.seg) {
                s.live += 1;
            }
        }
        let next_seg = segments
            .keys()
            .next_back()
            .map_or(0, |id| id + 1)
            .max(start.map_or(0, |(s, _)| s + 1));
        let reopen = |(id, size): (u32, u64)| -> Option<(u32, PathBuf, Arc<File>, u64)> {
            let path = segments.get(&id)?;
            match OpenOptions::new().read(true).write(true).open(path) {
                Ok(f) => Some((id, path.clone(), Arc::new(f), size)),
                Err(e) => {
                    tracing::warn!(channel = %name, file = %path.display(), error = %e,
                        "Cannot reopen the newest segment for writing; starting a new one.");
                    None
                }
            }
        };
        let continued = continuable
            .filter(|(_, size)| *size < config.max_file_size)
            .and_then(reopen);
        let (seg, path, file, off, alloc_end) = match continued {
            Some((id, path, file, size)) => (id, path, file, size, size),
            None => match create_segment(&config, next_seg, &preallocate, name) {
                Ok(new) => {
                    // The newest segment is sealed now: its unused reserve goes back.
                    if let Some(path) = newest.and_then(|id| segments.get(&id)) {
                        release_reserve(path, name);
                    }
                    (
                        next_seg,
                        new.path,
                        new.file,
                        SEGMENT_HEADER_LEN,
                        new.alloc_end,
                    )
                }
                Err((p, e)) => match continuable.and_then(reopen) {
                    // No room for a new segment (disk full): go on past maxFileSize; the first
                    // put that finds space rolls.
                    Some((id, path, file, size)) => {
                        tracing::warn!(channel = %name, file = %p.display(), error = %e,
                            "Cannot start a new segment; continuing the newest one.");
                        (id, path, file, size, size)
                    }
                    None => return Err(io(&p)(e)),
                },
            },
        };
        // The active segment's handle serves reads as well.
        let live_in_seg = segs.get(&seg).map_or(0, |s| s.live);
        segs.insert(
            seg,
            Segment {
                path: path.clone(),
                file: file.clone(),
                live: live_in_seg,
            },
        );
        stats.segments.store(segs.len() as u64, Ordering::Relaxed);
        let counters = ChannelCounters::new(config.capacity as u64);
        counters
            .channel_size
            .store(live.len() as u64, Ordering::Relaxed);
        let replayed = live.len();
        let inner = Arc::new(Inner {
            name: name.to_string(),
            counters,
            stats,
            log: Mutex::new(Log {
                seg,
                path,
                file,
                off,
                alloc_end,
                written: 0,
                next_seq,
                open: true,
            }),
            state: Mutex::new(State {
                queue: live.into(),
                held: 0,
                inflight: HashMap::new(),
                next_ticket: 1,
                segments: segs,
                closed: false,
            }),
            not_full: Condvar::new(),
            not_empty: Condvar::new(),
            sync: Mutex::new(SyncState {
                synced: 0,
                leader: false,
                failed: None,
            }),
            synced: Condvar::new(),
            checkpointing: Mutex::new(()),
            locks: Mutex::new(locks.into_iter().map(|(_, f)| f).collect()),
            min_space: AtomicU64::new(config.minimum_required_space),
            preallocate,
            closed: AtomicBool::new(false),
            config,
        });
        let elapsed = started.elapsed();
        inner
            .stats
            .replay_millis
            .store(elapsed.as_millis() as u64, Ordering::Relaxed);
        inner
            .stats
            .replay_events
            .store(replayed as u64, Ordering::Relaxed);
        tracing::info!(
            channel = %name, events = replayed, records, replay = ?elapsed,
            from_checkpoint = checkpoint.is_some(), segment = seg,
            continued = seg != next_seg, "File channel replayed."
        );
        {
            // A reserve kept from the last run costs nothing here; else take what the disk has.
            let mut log = inner.log.lock();
            let want = log.off + TAKE_RESERVE;
            if let Err(e) = inner.allocate_to(&mut log, want, 0) {
                tracing::warn!(channel = %name, file = %log.path.display(), error = %e,
                    "No space for the take reserve; takes need free space until it is made.");
            }
        }
        // A checkpoint now bounds the next replay and lets old segments go.
        if let Err(e) = inner.checkpoint() {
            tracing::warn!(channel = %name, error = %e, "Checkpoint after replay failed.");
        }
        let stop = StopSignal::new();
        let worker = {
            let (inner, stop) = (inner.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("fc-{name}"))
                .spawn(move || inner.background(&stop))
                .map_err(io(Path::new("<thread>")))?
        };
        Ok(Self {
            inner,
            stop,
            worker: Mutex::new(Some(worker)),
        })
    }

    /// Writes a checkpoint now (normally done every `checkpointInterval`).
    pub fn checkpoint(&self) -> Result<(), ChannelError> {
        self.inner.checkpoint()
    }

    pub fn stats(&self) -> &Arc<FileChannelStats> {
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

fn missing_message(config: &FileChannelConfig, missing: &[u32]) -> String {
    let names: Vec<String> = missing.iter().map(|id| format!("log-{id}")).collect();
    format!(
        "segment file(s) {} missing from dataDirs {:?}; their events cannot be recovered. \
         Restore the file(s), or move the checkpoint files out of {} (and the backup) to replay \
         the remaining segments without them",
        names.join(", "),
        config.data_dirs,
        config.checkpoint_dir.display()
    )
}

/// The primary checkpoint, else the backup, else `None` (full replay); damage is reported.
fn load_checkpoint(
    name: &str,
    config: &FileChannelConfig,
    stats: &FileChannelStats,
) -> Option<Checkpoint> {
    let dirs = std::iter::once(&config.checkpoint_dir).chain(config.backup_checkpoint_dir.iter());
    for dir in dirs {
        match Checkpoint::read(dir) {
            Ok(Some(cp)) => return Some(cp),
            Ok(None) => {}
            Err(e) => {
                stats.corrupt_records.fetch_add(1, Ordering::Relaxed);
                tracing::error!(channel = %name, error = %e,
                    "Checkpoint is damaged; trying the backup, else replaying the whole log.");
            }
        }
    }
    None
}

/// A segment just created by [`create_segment`].
struct NewSegment {
    path: PathBuf,
    file: Arc<File>,
    /// End of its allocated blocks: header + [`TAKE_RESERVE`], or the header alone when the
    /// filesystem cannot preallocate.
    alloc_end: u64,
}

/// Creates `log-<id>` in its data dir with its take reserve, a durable header and directory
/// entry. On failure (disk full) the file is removed again.
fn create_segment(
    config: &FileChannelConfig,
    id: u32,
    preallocate: &AtomicBool,
    channel: &str,
) -> Result<NewSegment, (PathBuf, std::io::Error)> {
    let dir = &config.data_dirs[id as usize % config.data_dirs.len()];
    let path = dir.join(format!("log-{id}"));
    let open = || -> std::io::Result<(File, u64)> {
        // Ids only grow, so an existing file of this id can only be a previous attempt that
        // failed half-way: start it over.
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
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
    };
    match open() {
        Ok((f, alloc_end)) => Ok(NewSegment {
            path,
            file: Arc::new(f),
            alloc_end,
        }),
        Err(e) => {
            if let Err(e2) = std::fs::remove_file(&path)
                && e2.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(channel = %channel, file = %path.display(), error = %e2,
                    "Cannot remove a segment whose creation failed.");
            }
            Err((path, e))
        }
    }
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
fn release_reserve(path: &Path, channel: &str) {
    let result = OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.metadata().and_then(|m| f.set_len(m.len())));
    if let Err(e) = result {
        tracing::debug!(channel = %channel, file = %path.display(), error = %e,
            "Cannot release the take reserve of a sealed segment.");
    }
}

/// Free bytes every put needs in each data and checkpoint dir: `minimumRequiredSpace`, the
/// batch, and the checkpoint that will then hold `live` events (so that checkpoint, which needs
/// [`checkpoint_space_needed`], always fits once puts stop).
fn put_space_needed(min: u64, batch: u64, live: u64) -> u64 {
    checkpoint_space_needed(min, live).saturating_add(batch)
}

/// Free bytes a checkpoint of `live` events needs in each checkpoint dir.
fn checkpoint_space_needed(min: u64, live: u64) -> u64 {
    min.saturating_add(checkpoint::encoded_len(live))
}

impl Inner {
    fn io_err(&self, message: String) -> ChannelError {
        ChannelError::Io {
            channel: self.name.clone(),
            message,
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

    fn failure(&self) -> Option<String> {
        self.sync.lock().failed.clone()
    }

    /// Marks the channel unusable: after a failed fsync the page cache may have dropped the
    /// data, so nothing written since the last good fsync can be trusted until a replay.
    fn fail(&self, message: String) {
        self.stats.unhealthy.store(1, Ordering::Relaxed);
        let mut s = self.sync.lock();
        if s.failed.is_none() {
            tracing::error!(channel = %self.name, error = %message,
                "File channel failed; restart the agent to replay the log.");
            s.failed = Some(message);
        }
        drop(s);
        self.synced.notify_all();
    }

    fn free_space(&self, dir: &Path) -> Result<u64, ChannelError> {
        fs4::available_space(dir)
            .map_err(|e| self.io_err(format!("cannot read free space of {}: {e}", dir.display())))
    }

    /// Free space check of a put of `events` events and `bytes` bytes, in every data and
    /// checkpoint dir (see the module header).
    fn check_space(&self, bytes: u64, events: usize) -> Result<(), ChannelError> {
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
    fn check_checkpoint_space(&self, dir: &Path, live: usize) -> Result<(), ChannelError> {
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

    /// Makes sure the active segment has blocks allocated up to `to`, allocating `ahead` more
    /// if it can. `Ok` as well when the filesystem cannot preallocate.
    fn allocate_to(&self, log: &mut Log, to: u64, ahead: u64) -> std::io::Result<()> {
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

    /// Whether data dir of segment `id` has room for a new segment with its reserve, beyond
    /// `minimumRequiredSpace` (takes start segments only then).
    fn room_for_segment(&self, id: u32) -> bool {
        let dir = &self.config.data_dirs[id as usize % self.config.data_dirs.len()];
        let min = self.min_space.load(Ordering::Relaxed);
        self.free_space(dir)
            .is_ok_and(|free| free >= min.saturating_add(SEGMENT_HEADER_LEN + TAKE_RESERVE))
    }

    /// Appends `bytes` as one record of `kind` (starting a new segment first if this one is
    /// full) and applies its effect with `apply` while still holding the log lock. Returns the
    /// position to sync up to. A put is refused unless the blocks for it and the take reserve
    /// can be allocated; a take writes into the reserve (see the module header).
    fn append(
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
            return Err(self.io_err(f));
        }
        let len = buf.len() as u64;
        if log.off > SEGMENT_HEADER_LEN && log.off + len > self.config.max_file_size {
            match kind {
                Kind::Put => self.roll(&mut log)?,
                Kind::Take if self.room_for_segment(log.seg + 1) => {
                    if let Err(e) = self.roll(&mut log) {
                        if self.failure().is_some() {
                            return Err(e);
                        }
                        tracing::debug!(channel = %self.name, error = %e,
                            "No new segment for a take; it goes to the active one.");
                    }
                }
                Kind::Take => {}
            }
        }
        seal(buf, &log);
        let off = log.off;
        if off + len > u64::from(u32::MAX) {
            return Err(self.io_err(format!(
                "a {len}-byte record does not fit in a segment; lower the batch size"
            )));
        }
        if kind == Kind::Put
            && let Err(e) = self.allocate_to(&mut log, off + len + TAKE_RESERVE, PREALLOCATE_AHEAD)
        {
            return Err(self.io_err(format!(
                "cannot allocate {} bytes in {} for the batch and the take reserve: {e}; puts \
                 resume when space is freed",
                len + TAKE_RESERVE,
                log.path.display()
            )));
        }
        if let Err(e) = log.file.write_all_at(buf, off) {
            // Cut the partial record so the next one follows valid data.
            if let Err(e2) = log.file.set_len(off) {
                self.fail(format!(
                    "cannot write {} ({e}) nor truncate the partial record ({e2})",
                    log.path.display()
                ));
            }
            // The cut released the blocks past `off` as well: take back what the disk allows.
            log.alloc_end = off;
            let _ = self.allocate_to(&mut log, off + TAKE_RESERVE, 0);
            return Err(self.io_err(format!("cannot write {}: {e}", log.path.display())));
        }
        log.off += len;
        log.alloc_end = log.alloc_end.max(log.off);
        if kind == Kind::Take && log.alloc_end < log.off + TAKE_RESERVE / 2 {
            // Best effort: on a full disk the rest of the reserve serves the next takes.
            let want = log.off + TAKE_RESERVE;
            let _ = self.allocate_to(&mut log, want, 0);
        }
        log.written += len;
        self.stats
            .bytes_written
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        let seg = log.seg;
        let mut st = self.state.lock();
        apply(&mut log, seg, off, &mut st);
        Ok(log.written)
    }

    /// Seals the current segment (fsync) and starts the next one.
    fn roll(&self, log: &mut Log) -> Result<(), ChannelError> {
        if let Err(e) = log.file.sync_data() {
            let m = format!("fsync of {} failed: {e}", log.path.display());
            self.fail(m.clone());
            return Err(self.io_err(m));
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
        } = create_segment(&self.config, id, &self.preallocate, &self.name)
            .map_err(|(p, e)| self.io_err(format!("cannot create {}: {e}", p.display())))?;
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
    fn sync_to(&self, pos: u64) -> Result<(), ChannelError> {
        let mut s = self.sync.lock();
        loop {
            if let Some(f) = &s.failed {
                return Err(self.io_err(f.clone()));
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
                    self.fail(format!("fsync of {} failed: {e}", path.display()));
                    s = self.sync.lock();
                }
            }
            self.synced.notify_all();
        }
    }

    fn written(&self) -> u64 {
        self.log.lock().written
    }

    fn checkpoint(&self) -> Result<(), ChannelError> {
        let _one = self.checkpointing.lock();
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
            return Err(self.io_err(format!(
                "cannot write checkpoint in {}: {e}",
                self.config.checkpoint_dir.display()
            )));
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
            return Err(self.io_err(format!(
                "cannot write backup checkpoint in {}: {e}",
                dir.display()
            )));
        }
        self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.delete_segments(&cp);
        Ok(())
    }

    /// Deletes segments older than the checkpoint that hold none of its live events.
    fn delete_segments(&self, cp: &Checkpoint) {
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

    fn background(&self, stop: &StopSignal) {
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

    /// Reads and verifies the events of `ptrs`, coalescing adjacent frames into one read.
    /// Returns the events and the pointers whose frames are damaged.
    fn read_events(
        &self,
        ptrs: &[Ptr],
        files: &[Arc<File>],
        out: &mut Vec<Event>,
    ) -> Result<Vec<Ptr>, ChannelError> {
        let mut bad = Vec::new();
        let mut i = 0;
        while i < ptrs.len() {
            let start = u64::from(ptrs[i].off);
            let mut end = start + FRAME_HEADER_LEN as u64 + u64::from(ptrs[i].len);
            let mut j = i + 1;
            while j < ptrs.len()
                && ptrs[j].seg == ptrs[i].seg
                && u64::from(ptrs[j].off) == end
                && end - start < 8 << 20
            {
                end += FRAME_HEADER_LEN as u64 + u64::from(ptrs[j].len);
                j += 1;
            }
            let mut buf = vec![0u8; (end - start) as usize];
            files[i].read_exact_at(&mut buf, start).map_err(|e| {
                self.io_err(format!(
                    "cannot read segment log-{} at offset {start}: {e}",
                    ptrs[i].seg
                ))
            })?;
            let buf = Bytes::from(buf);
            for p in &ptrs[i..j] {
                let rel = (u64::from(p.off) - start) as usize;
                let data_ok =
                    format::frame_data(&buf[rel..]).is_some_and(|d| d.len() == p.len as usize);
                let event = data_ok
                    .then(|| {
                        let from = rel + FRAME_HEADER_LEN;
                        format::decode_event(buf.slice(from..from + p.len as usize))
                    })
                    .flatten();
                match event {
                    Some(e) => out.push(e),
                    None => {
                        self.stats.corrupt_records.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(channel = %self.name, segment = p.seg, offset = p.off,
                            seq = p.seq, "Damaged event found on take; dropped.");
                        bad.push(*p);
                    }
                }
            }
            i = j;
        }
        Ok(bad)
    }
}

impl Channel for FileChannel {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn is_durable(&self) -> bool {
        true
    }

    fn transaction_capacity(&self) -> usize {
        self.inner.config.transaction_capacity
    }

    fn counters(&self) -> &Arc<ChannelCounters> {
        &self.inner.counters
    }

    fn metric_set(&self) -> Arc<dyn MetricSet> {
        Arc::new(FileChannelMetrics {
            counters: self.inner.counters.clone(),
            stats: self.inner.stats.clone(),
        })
    }

    fn reserve(&self, events: usize, bytes: u64) -> Result<Reservation, ChannelError> {
        let inner = &self.inner;
        if let Some(f) = inner.failure() {
            return Err(inner.io_err(f));
        }
        if let Err(e) = inner.check_space(bytes, events) {
            inner.stats.put_errors.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        let deadline = Instant::now() + inner.config.keep_alive;
        let mut st = inner.state.lock();
        loop {
            if st.closed {
                return Err(inner.closed_err());
            }
            let used = st.queue.len() + st.held;
            if used + events <= inner.config.capacity {
                st.held += events;
                inner.publish_size(&st);
                return Ok(Reservation { events, bytes });
            }
            if inner.not_full.wait_until(&mut st, deadline).timed_out() {
                return Err(ChannelError::Full {
                    channel: inner.name.clone(),
                    detail: format!("{used} of capacity {} events", inner.config.capacity),
                    keep_alive: inner.config.keep_alive,
                });
            }
        }
    }

    fn commit_put(&self, reservation: Reservation, events: Vec<Event>) -> Result<(), ChannelError> {
        let inner = &self.inner;
        if events.is_empty() {
            self.release(reservation);
            return Ok(());
        }
        let PutRecord { mut buf, frames } = PutRecord::encode(&events);
        let n = events.len();
        let held = reservation.events;
        let result = inner.append(
            Kind::Put,
            &mut buf,
            |b, log| format::seal_put(b, n as u32, log.next_seq),
            |log, seg, off, st| {
                let first = log.next_seq;
                log.next_seq += n as u64;
                st.held -= held;
                st.queue
                    .extend(frames.iter().enumerate().map(|(i, (rel, len))| Ptr {
                        seq: first + i as u64,
                        seg,
                        off: (off + u64::from(*rel)) as u32,
                        len: *len,
                    }));
                if let Some(s) = st.segments.get_mut(&seg) {
                    s.live += n as u64;
                }
                inner.publish_size(st);
            },
        );
        let pos = match result {
            Ok(pos) => pos,
            Err(e) => {
                inner.stats.put_errors.fetch_add(1, Ordering::Relaxed);
                self.release(reservation);
                return Err(e);
            }
        };
        inner.not_empty.notify_all();
        if inner.config.fsync_per_transaction {
            inner.sync_to(pos).inspect_err(|_| {
                inner.stats.put_errors.fetch_add(1, Ordering::Relaxed);
            })?;
        }
        Ok(())
    }

    fn release(&self, reservation: Reservation) {
        let mut st = self.inner.state.lock();
        st.held -= reservation.events;
        self.inner.publish_size(&st);
        drop(st);
        self.inner.not_full.notify_all();
    }

    fn take(
        &self,
        max: usize,
        wait: Duration,
        out: &mut Vec<Event>,
    ) -> Result<TakeTicket, ChannelError> {
        let inner = &self.inner;
        let (ticket, ptrs, files) = {
            let mut st = inner.state.lock();
            if st.closed {
                return Err(inner.closed_err());
            }
            if st.queue.is_empty() && !wait.is_zero() {
                let _ = inner.not_empty.wait_for(&mut st, wait);
            }
            let n = max.min(st.queue.len());
            if n == 0 {
                return Ok(TakeTicket(0));
            }
            let ptrs: Vec<Ptr> = st.queue.drain(..n).collect();
            let mut files = Vec::with_capacity(n);
            for p in &ptrs {
                match st.segments.get(&p.seg) {
                    Some(s) => files.push(s.file.clone()),
                    None => {
                        let seg = p.seg;
                        for p in ptrs.iter().rev() {
                            st.queue.push_front(*p);
                        }
                        return Err(inner.io_err(format!("segment log-{seg} is not open")));
                    }
                }
            }
            st.held += n;
            let ticket = st.next_ticket;
            st.next_ticket += 1;
            st.inflight.insert(
                ticket,
                Inflight {
                    good: ptrs.clone(),
                    bad: Vec::new(),
                },
            );
            (ticket, ptrs, files)
        };
        let before = out.len();
        match inner.read_events(&ptrs, &files, out) {
            Ok(bad) if bad.is_empty() => {}
            Ok(bad) => {
                let mut st = inner.state.lock();
                if let Some(t) = st.inflight.get_mut(&ticket) {
                    t.good.retain(|p| !bad.contains(p));
                    t.bad = bad;
                }
            }
            Err(e) => {
                out.truncate(before);
                inner.stats.take_errors.fetch_add(1, Ordering::Relaxed);
                self.rollback_take(TakeTicket(ticket), Vec::new());
                return Err(e);
            }
        }
        Ok(TakeTicket(ticket))
    }

    fn commit_take(&self, ticket: &TakeTicket, _events: &[Event]) -> Result<(), ChannelError> {
        let inner = &self.inner;
        if ticket.0 == 0 {
            return Ok(());
        }
        let mut seqs: Vec<u64> = {
            let st = inner.state.lock();
            match st.inflight.get(&ticket.0) {
                Some(t) => t.good.iter().chain(&t.bad).map(|p| p.seq).collect(),
                None => return Ok(()),
            }
        };
        let mut record = format::take_record(&mut seqs, ticket.0);
        let result = inner.append(
            Kind::Take,
            &mut record,
            |_, _| {},
            |_, _, _, st| {
                if let Some(t) = st.inflight.remove(&ticket.0) {
                    st.held -= t.good.len() + t.bad.len();
                    for p in t.good.iter().chain(&t.bad) {
                        if let Some(s) = st.segments.get_mut(&p.seg) {
                            s.live -= 1;
                        }
                    }
                }
                inner.publish_size(st);
            },
        );
        let pos = result.inspect_err(|_| {
            inner.stats.take_errors.fetch_add(1, Ordering::Relaxed);
        })?;
        inner.not_full.notify_all();
        if inner.config.fsync_per_transaction {
            inner.sync_to(pos).inspect_err(|_| {
                inner.stats.take_errors.fetch_add(1, Ordering::Relaxed);
            })?;
        }
        Ok(())
    }

    fn rollback_take(&self, ticket: TakeTicket, _events: Vec<Event>) {
        let inner = &self.inner;
        let mut st = inner.state.lock();
        let Some(t) = st.inflight.remove(&ticket.0) else {
            return;
        };
        st.held -= t.good.len() + t.bad.len();
        for p in t.good.iter().rev() {
            st.queue.push_front(*p);
        }
        // Damaged events are not put back; the next checkpoint forgets them.
        for p in &t.bad {
            if let Some(s) = st.segments.get_mut(&p.seg) {
                s.live -= 1;
            }
        }
        inner.publish_size(&st);
        drop(st);
        inner.not_empty.notify_all();
        inner.not_full.notify_all();
    }

    fn size(&self) -> usize {
        let st = self.inner.state.lock();
        st.queue.len() + st.held
    }

    fn close(&self) {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.stop_worker();
        inner.state.lock().closed = true;
        inner.not_full.notify_all();
        inner.not_empty.notify_all();
        let result = if inner.config.checkpoint_on_close {
            inner.checkpoint()
        } else {
            inner.sync_to(inner.written())
        };
        if let Err(e) = result {
            tracing::warn!(channel = %inner.name, error = %e,
                "Final checkpoint failed; the next start replays the log.");
        }
        inner.log.lock().open = false;
        inner.locks.lock().clear();
        inner.counters.stopped();
    }
}
