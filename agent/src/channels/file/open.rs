//! Opening a file channel: lock the directories, load the checkpoint, replay the log from it
//! (invariant 5 of the `file` module header), check that every needed segment is present
//! (invariant 6), then continue the newest segment or start a fresh one (invariant 1).

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use super::checkpoint::Checkpoint;
use super::format::SEGMENT_HEADER_LEN;
use super::replay::{Replay, ScanEnd, list_segments};
use super::segment::{CreateSegmentError, create_segment, release_reserve};
use super::{
    FileChannel, FileChannelConfig, FileChannelError, FileChannelStats, Inner, LOCK_FILE, Log, Ptr,
    Segment, State, SyncState, TAKE_RESERVE,
};
use crate::lifecycle::StopSignal;
use crate::metrics::ChannelCounters;

/// What replay rebuilt from the checkpoint and the segments.
struct Recovered {
    /// The segments present after replay (torn empty ones removed), by id.
    segments: BTreeMap<u32, PathBuf>,
    /// The newest segment found before replay, torn or not.
    newest: Option<u32>,
    /// The newest segment and its size, if a start may continue it.
    continuable: Option<(u32, u64)>,
    /// The id a fresh segment gets.
    next_seg: u32,
    live: Vec<Ptr>,
    next_seq: u64,
    records: u64,
}

/// The segment a start appends to.
struct Active {
    seg: u32,
    path: PathBuf,
    file: Arc<File>,
    off: u64,
    alloc_end: u64,
}

/// Maps an I/O error on `path` to [`FileChannelError::Io`].
fn io_error(channel: &str, path: &Path) -> impl FnOnce(std::io::Error) -> FileChannelError {
    let path = path.to_path_buf();
    let channel = channel.to_string();
    move |source| FileChannelError::Io {
        channel,
        path,
        source,
    }
}

impl FileChannel {
    /// Locks the directories, replays the log and starts the checkpoint thread.
    pub(crate) fn open(name: &str, config: FileChannelConfig) -> Result<Self, FileChannelError> {
        let started = Instant::now();
        let locks = lock_dirs(name, &config)?;
        let segments =
            list_segments(&config.data_dirs).map_err(|source| FileChannelError::Segments {
                channel: name.to_string(),
                source,
            })?;
        let stats = Arc::new(FileChannelStats::default());
        let preallocate = AtomicBool::new(true);
        remove_stale_checkpoint_tmps(name, &config);
        let checkpoint = load_checkpoint(name, &config, &stats);
        let recovered = replay_log(name, &config, segments, checkpoint.as_ref(), &stats)?;
        let mut segs = open_segments(name, &recovered)?;
        let active = open_active(name, &config, &recovered, &preallocate)?;
        // The active segment's handle serves reads as well.
        let live_in_seg = segs.get(&active.seg).map_or(0, |s| s.live);
        segs.insert(
            active.seg,
            Segment {
                path: active.path.clone(),
                file: active.file.clone(),
                live: live_in_seg,
            },
        );
        stats.segments.store(segs.len() as u64, Ordering::Relaxed);
        let counters = ChannelCounters::new(config.capacity as u64);
        let replayed = recovered.live.len();
        counters
            .channel_size
            .store(replayed as u64, Ordering::Relaxed);
        let (seg, continued) = (active.seg, active.seg != recovered.next_seg);
        let inner = Arc::new(Inner {
            name: name.to_string(),
            counters,
            stats,
            log: Mutex::new(Log::continuing(active, recovered.next_seq)),
            state: Mutex::new(State::recovered(recovered.live, segs)),
            not_full: Condvar::new(),
            not_empty: Condvar::new(),
            sync: Mutex::new(SyncState::default()),
            synced: Condvar::new(),
            checkpointing: Mutex::new(()),
            locks: Mutex::new(locks),
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
            channel = %name, events = replayed, records = recovered.records, replay = ?elapsed,
            from_checkpoint = checkpoint.is_some(), segment = seg,
            continued, "File channel replayed."
        );
        inner.start_after_replay();
        let stop = StopSignal::new();
        let worker = {
            let (inner, stop) = (inner.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("fc-{name}"))
                .spawn(move || inner.background(&stop))
                .map_err(io_error(name, Path::new("<thread>")))?
        };
        Ok(Self {
            inner,
            stop,
            worker: Mutex::new(Some(worker)),
        })
    }
}

impl Log {
    fn continuing(active: Active, next_seq: u64) -> Self {
        Self {
            seg: active.seg,
            path: active.path,
            file: active.file,
            off: active.off,
            alloc_end: active.alloc_end,
            written: 0,
            next_seq,
            open: true,
        }
    }
}

impl State {
    fn recovered(live: Vec<Ptr>, segments: BTreeMap<u32, Segment>) -> Self {
        Self {
            queue: live.into(),
            held: 0,
            inflight: HashMap::new(),
            next_ticket: 1,
            segments,
            closed: false,
        }
    }
}

impl Inner {
    /// Makes the take reserve and writes the first checkpoint; both best effort.
    fn start_after_replay(&self) {
        {
            // A reserve kept from the last run costs nothing here; else take what the disk has.
            let mut log = self.log.lock();
            let want = log.off + TAKE_RESERVE;
            if let Err(e) = self.allocate_to(&mut log, want, 0) {
                tracing::warn!(channel = %self.name, file = %log.path.display(), error = %e,
                    "No space for the take reserve; takes need free space until it is made.");
            }
        }
        // A checkpoint now bounds the next replay and lets old segments go.
        if let Err(e) = self.checkpoint() {
            tracing::warn!(channel = %self.name, error = %e, "Checkpoint after replay failed.");
        }
    }
}

/// Creates the checkpoint, backup and data dirs and takes their lock files (flock), each once.
fn lock_dirs(name: &str, config: &FileChannelConfig) -> Result<Vec<File>, FileChannelError> {
    let mut dirs: Vec<&PathBuf> = vec![&config.checkpoint_dir];
    dirs.extend(config.backup_checkpoint_dir.iter());
    dirs.extend(config.data_dirs.iter());
    let mut locks: Vec<(PathBuf, File)> = Vec::new();
    for dir in dirs {
        std::fs::create_dir_all(dir).map_err(io_error(name, dir))?;
        let path = dir.join(LOCK_FILE);
        if locks.iter().any(|(p, _)| *p == path) {
            continue;
        }
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error(name, &path))?;
        match f.try_lock() {
            Ok(()) => locks.push((path, f)),
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(FileChannelError::Locked {
                    channel: name.to_string(),
                    path,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_error(name, &path)(e)),
        }
    }
    Ok(locks.into_iter().map(|(_, f)| f).collect())
}

fn remove_stale_checkpoint_tmps(name: &str, config: &FileChannelConfig) {
    for dir in std::iter::once(&config.checkpoint_dir).chain(&config.backup_checkpoint_dir) {
        match Checkpoint::remove_stale_tmp(dir) {
            Ok(true) => tracing::info!(channel = %name, dir = %dir.display(),
                "Removed a checkpoint.tmp left by an interrupted checkpoint."),
            Ok(false) => {}
            Err(e) => tracing::warn!(channel = %name, dir = %dir.display(), error = %e,
                "Cannot remove a checkpoint.tmp left by an interrupted checkpoint."),
        }
    }
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

fn missing_segments(name: &str, config: &FileChannelConfig, ids: Vec<u32>) -> FileChannelError {
    FileChannelError::MissingSegments {
        channel: name.to_string(),
        segments: ids,
        data_dirs: config.data_dirs.clone(),
        checkpoint_dir: config.checkpoint_dir.clone(),
    }
}

/// Replays the checkpoint's live events and every record from its position on, cutting torn
/// tails and removing torn empty segments.
fn replay_log(
    name: &str,
    config: &FileChannelConfig,
    mut segments: BTreeMap<u32, PathBuf>,
    checkpoint: Option<&Checkpoint>,
    stats: &FileChannelStats,
) -> Result<Recovered, FileChannelError> {
    let (mut replay, start) = match checkpoint {
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
            return Err(missing_segments(name, config, missing));
        }
    }
    let newest = segments.keys().next_back().copied();
    let torn_empty = scan_segments(name, &mut replay, &segments, start, newest)?;
    for &id in &torn_empty {
        if let Some(path) = segments.remove(&id) {
            std::fs::remove_file(&path).map_err(io_error(name, &path))?;
        }
    }
    let continuable = match newest.filter(|id| !torn_empty.contains(id)) {
        Some(id) => continuable_segment(name, &segments, id, start)?,
        None => None,
    };
    stats
        .corrupt_records
        .fetch_add(replay.corrupt, Ordering::Relaxed);
    stats.torn_writes.store(replay.torn, Ordering::Relaxed);
    let records = replay.records;
    let next_seq = replay.next_seq;
    let live = replay.finish();
    let mut missing: Vec<u32> = live
        .iter()
        .map(|p| p.seg)
        .filter(|s| !segments.contains_key(s))
        .collect();
    missing.dedup();
    if !missing.is_empty() {
        return Err(missing_segments(name, config, missing));
    }
    let next_seg = segments
        .keys()
        .next_back()
        .map_or(0, |id| id + 1)
        .max(start.map_or(0, |(s, _)| s + 1));
    Ok(Recovered {
        segments,
        newest,
        continuable,
        next_seg,
        live,
        next_seq,
        records,
    })
}

/// Scans every segment from the checkpoint position `start` on; returns the torn empty ones.
fn scan_segments(
    name: &str,
    replay: &mut Replay,
    segments: &BTreeMap<u32, PathBuf>,
    start: Option<(u32, u64)>,
    newest: Option<u32>,
) -> Result<Vec<u32>, FileChannelError> {
    let mut torn_empty = Vec::new();
    for (&id, path) in segments {
        let from = match start {
            Some((seg, _)) if id < seg => continue,
            Some((seg, off)) if id == seg => off,
            _ => 0,
        };
        let end = replay
            .scan(id, path, from, Some(id) == newest)
            .map_err(io_error(name, path))?;
        if end == ScanEnd::TornEmpty {
            torn_empty.push(id);
        }
    }
    Ok(torn_empty)
}

/// The newest segment `id` and its size, if a start may continue it: scanned to its end and at
/// or after the checkpoint position (records appended before that position would be skipped by
/// the next replay).
fn continuable_segment(
    name: &str,
    segments: &BTreeMap<u32, PathBuf>,
    id: u32,
    start: Option<(u32, u64)>,
) -> Result<Option<(u32, u64)>, FileChannelError> {
    let Some(path) = segments.get(&id) else {
        return Ok(None);
    };
    let size = std::fs::metadata(path).map_err(io_error(name, path))?.len();
    let after_checkpoint = match start {
        Some((seg, off)) => id > seg || (id == seg && size >= off),
        None => true,
    };
    Ok((after_checkpoint && size >= SEGMENT_HEADER_LEN).then_some((id, size)))
}

/// Opens every segment for reads and counts the live events in each.
fn open_segments(
    name: &str,
    recovered: &Recovered,
) -> Result<BTreeMap<u32, Segment>, FileChannelError> {
    let mut segs: BTreeMap<u32, Segment> = BTreeMap::new();
    for (&id, path) in &recovered.segments {
        let f = File::open(path).map_err(io_error(name, path))?;
        segs.insert(
            id,
            Segment {
                path: path.clone(),
                file: Arc::new(f),
                live: 0,
            },
        );
    }
    for p in &recovered.live {
        if let Some(s) = segs.get_mut(&p.seg) {
            s.live += 1;
        }
    }
    Ok(segs)
}

/// Continues the newest segment when it is continuable and below `maxFileSize`; else starts a
/// fresh one, and if that fails (disk full) continues the newest one anyway, past
/// `maxFileSize`: the first put that finds space rolls.
fn open_active(
    name: &str,
    config: &FileChannelConfig,
    recovered: &Recovered,
    preallocate: &AtomicBool,
) -> Result<Active, FileChannelError> {
    let reopen = |(id, size): (u32, u64)| -> Option<Active> {
        let path = recovered.segments.get(&id)?;
        match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => Some(Active {
                seg: id,
                path: path.clone(),
                file: Arc::new(f),
                off: size,
                alloc_end: size,
            }),
            Err(e) => {
                tracing::warn!(channel = %name, file = %path.display(), error = %e,
                    "Cannot reopen the newest segment for writing; starting a new one.");
                None
            }
        }
    };
    let continued = recovered
        .continuable
        .filter(|(_, size)| *size < config.max_file_size)
        .and_then(reopen);
    if let Some(active) = continued {
        return Ok(active);
    }
    let next_seg = recovered.next_seg;
    match create_segment(config, next_seg, preallocate, name) {
        Ok(new) => {
            // The newest segment is sealed now: its unused reserve goes back.
            if let Some(path) = recovered.newest.and_then(|id| recovered.segments.get(&id)) {
                release_reserve(path, name);
            }
            Ok(Active {
                seg: next_seg,
                path: new.path,
                file: new.file,
                off: SEGMENT_HEADER_LEN,
                alloc_end: new.alloc_end,
            })
        }
        Err(CreateSegmentError { path, source }) => match recovered.continuable.and_then(reopen) {
            Some(active) => {
                tracing::warn!(channel = %name, file = %path.display(), error = %source,
                    "Cannot start a new segment; continuing the newest one.");
                Ok(active)
            }
            None => Err(io_error(name, &path)(source)),
        },
    }
}
