//! `TAILDIR`: Flume's TaildirSource. Tails the files matched by file groups, one event per line,
//! and remembers how far each file was delivered in a Flume-compatible position file.
//!
//! # File identity
//!
//! A tailed file is known by its inode (with the device, in memory) plus a fingerprint, the
//! CRC-32 of its first bytes (up to [`tail_file::FINGERPRINT_MAX`], fewer while the file is
//! shorter, so small files are read at once). The path is only the name it was last seen under:
//! - renamed (rotation by rename, to a name that still matches or not): same inode, same
//!   fingerprint, so reading goes on from the same offset; nothing is read twice;
//! - renamed or deleted while open: the open handle is read to its end; the file is forgotten
//!   (dropped from the position file) once it has been idle for `idleTimeout`;
//! - shorter than its position (copytruncate): read again from offset 0;
//! - same inode, different first bytes (an inode reused by a new file, or a file rewritten from
//!   its start, also across a restart): read from offset 0;
//! - a new inode is a new file, even at an old path with the same content (vim's write-to-new-
//!   file-then-rename): it is read from its start, so an editor save re-delivers the file;
//!   appending (`>>`) never does.
//!
//! # Delivery
//!
//! `process` reads up to `batchSize` lines from one file and hands them to the channel
//! processor; only when it returns `Ok` does the file's committed offset advance, otherwise the
//! reader rewinds to the committed offset and the batch is read again later. Up to
//! `maxBatchCount` batches are taken from a file before moving to the next. Every committed
//! offset is appended to the position journal at once; the position file itself (a snapshot)
//! is saved every `writePosInterval` (0: after every batch), when files are forgotten, and at
//! stop; see [`position_file`] for the formats and atomicity. After the process is killed at
//! most the batch whose commit raced the kill is delivered again; after a power loss, at most
//! what was committed since the last snapshot.
//!
//! # Discovery
//!
//! Directories are watched with inotify (`notify`); any change wakes the source and triggers a
//! scan (at most every [`SCAN_MIN_GAP`]). A scan also runs at least every [`FALLBACK_SCAN`], so
//! a lost or unsupported notification (NFS, a full inotify queue) only costs latency. Files
//! idle for `idleTimeout` have their descriptor closed; at most `maxOpenFiles` are open at once:
//! when files with unread data wait for a descriptor, caught-up files are closed to make room.

pub mod file_group;
pub mod position_file;
pub mod tail_file;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use file_group::{FileGroup, GroupMatcher};
use position_file::{PositionEntry, PositionFile, PositionFileError};
use tail_file::{FileKey, Line, LineLimits, LongLinePolicy, TailFile, key_of, mtime_of};

use crate::config::{ConfigError, MAX_BATCH, MAX_MILLIS, Props};
use crate::event::{Event, Headers};
use crate::lifecycle::Backoff;
use crate::pipeline::{
    BoxError, ChannelProcessor, PollConfig, PollStatus, PollableSource, SourceContext, SourceError,
    SourceInstance, SourceSpec,
};

/// Minimum time between two scans triggered by notifications.
pub const SCAN_MIN_GAP: Duration = Duration::from_millis(100);
/// Maximum time between two scans.
pub const FALLBACK_SCAN: Duration = Duration::from_secs(1);
/// Longest idle wait for a notification, so that stop requests are seen promptly.
const MAX_IDLE_WAIT: Duration = Duration::from_secs(1);
/// Flume's `byteOffsetHeader` key.
pub const BYTE_OFFSET_HEADER: &str = "byteoffset";

#[derive(Clone, Debug)]
pub struct TaildirConfig {
    /// `filegroups` and `filegroups.<g>` (required), with `headers.<g>.<key>`.
    pub groups: Vec<FileGroup>,
    /// `positionFile` (default `~/.flume/taildir_position.json`).
    pub position_file: PathBuf,
    /// `byteOffsetHeader`: add the line's offset as header `byteoffset` (default false).
    pub byte_offset_header: bool,
    /// `skipToEnd`: files found at start and absent from the position file are read from their
    /// end (default false).
    pub skip_to_end: bool,
    /// `idleTimeout` ms: close a file not grown for this long (default 120000).
    pub idle_timeout: Duration,
    /// `writePosInterval` ms: save positions this often; 0 = after every batch (default 3000).
    pub write_pos_interval: Duration,
    /// `batchSize` (default 100).
    pub batch_size: usize,
    /// `maxBatchCount`: batches read from one file in a row (default unlimited).
    pub max_batch_count: u64,
    /// `cachePatternMatching` (default true).
    pub cache_pattern_matching: bool,
    /// `fileHeader`: add the file's absolute path as a header (default false).
    pub file_header: bool,
    /// `fileHeaderKey` (default `file`).
    pub file_header_key: String,
    /// sluice: `maxLineLength` bytes (default 1048576) and `longLinePolicy` (`split`, default,
    /// or `truncate`).
    pub line_limits: LineLimits,
    /// sluice: `maxOpenFiles`, descriptors held at most (default 1000).
    pub max_open_files: usize,
    pub poll: PollConfig,
}

fn default_position_file() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".flume").join("taildir_position.json")
}

impl TaildirConfig {
    pub fn from_props(p: &Props) -> Result<Self, ConfigError> {
        let names = p.list("filegroups");
        if names.is_empty() {
            return Err(p.error("filegroups", "is required: a list of file group names"));
        }
        let mut groups = Vec::with_capacity(names.len());
        for name in &names {
            let key = format!("filegroups.{name}");
            let spec = p.required(&key)?;
            groups.push(FileGroup::parse(name, &spec).map_err(|m| p.error(&key, m.to_string()))?);
        }
        for (rest, value) in p.children("headers.") {
            let key = format!("headers.{rest}");
            let Some((group, header)) = rest.split_once('.').filter(|(_, h)| !h.is_empty()) else {
                return Err(p.error(&key, "expected headers.<filegroup>.<header name>"));
            };
            let Some(g) = groups.iter_mut().find(|g| g.name == group) else {
                return Err(p.error(
                    &key,
                    format!("file group `{group}` is not listed in filegroups"),
                ));
            };
            g.headers.push((header.to_string(), value));
        }
        let position_file = p
            .get("positionFile")
            .filter(|v| !v.is_empty())
            .map_or_else(default_position_file, PathBuf::from);
        Ok(Self {
            groups,
            position_file,
            byte_offset_header: p.bool("byteOffsetHeader", false)?,
            skip_to_end: p.bool("skipToEnd", false)?,
            idle_timeout: p.millis("idleTimeout", 120_000, 0..=MAX_MILLIS)?,
            write_pos_interval: p.millis("writePosInterval", 3000, 0..=MAX_MILLIS)?,
            batch_size: p.int("batchSize", 100, 1..=MAX_BATCH)?,
            max_batch_count: p.int("maxBatchCount", u64::MAX, 1..=u64::MAX)?,
            cache_pattern_matching: p.bool("cachePatternMatching", true)?,
            file_header: p.bool("fileHeader", false)?,
            file_header_key: p.string("fileHeaderKey", "file"),
            line_limits: LineLimits {
                max_len: p.int("maxLineLength", 1 << 20, 1..=1 << 28)?,
                policy: p.choice(
                    "longLinePolicy",
                    LongLinePolicy::Split,
                    &[
                        (&["split"], LongLinePolicy::Split),
                        (&["truncate"], LongLinePolicy::Truncate),
                    ],
                )?,
            },
            max_open_files: p.int("maxOpenFiles", 1000, 1..=1_000_000)?,
            poll: PollConfig::from_props(p)?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TaildirError {
    #[error(transparent)]
    PositionFile(#[from] PositionFileError),
    #[error("file group `{group}`: directory {}: {source}", dir.display())]
    Directory {
        group: String,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the directory of position file {}: {source}", path.display())]
    PositionDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

type Notifications = mpsc::Receiver<notify::Result<notify::Event>>;

pub struct TaildirSource {
    name: String,
    config: TaildirConfig,
    matchers: Vec<GroupMatcher>,
    group_headers: Vec<Headers>,
    position_file: PositionFile,
    files: BTreeMap<FileKey, TailFile>,
    /// Saved positions by inode, until the first scan has matched them.
    restored: Option<HashMap<u64, PositionEntry>>,
    _watcher: Option<notify::RecommendedWatcher>,
    notifications: Option<Notifications>,
    scan_due: bool,
    last_scan: Option<Instant>,
    dirty: bool,
    last_save: Instant,
    save_failing: bool,
    journal_failing: bool,
    backoff: Backoff,
    open_count: usize,
    /// Paths whose open failed, logged once until they open again.
    unreadable: HashSet<PathBuf>,
    /// Directories whose listing failed, logged once until they list again.
    unlisted: HashSet<usize>,
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    std::env::current_dir().map_or_else(|_| p.to_path_buf(), |cwd| cwd.join(p))
}

impl TaildirSource {
    /// Checks the directories, loads the position file and starts watching. Fails, naming the
    /// file, on an unreadable directory or position file; nothing is written then.
    pub fn new(name: &str, mut config: TaildirConfig) -> Result<Self, TaildirError> {
        for g in &mut config.groups {
            g.dir = absolute(&g.dir);
            if let Err(source) = std::fs::read_dir(&g.dir) {
                return Err(TaildirError::Directory {
                    group: g.name.clone(),
                    dir: g.dir.clone(),
                    source,
                });
            }
        }
        config.position_file = absolute(&config.position_file);
        if let Some(dir) = config.position_file.parent() {
            std::fs::create_dir_all(dir).map_err(|source| TaildirError::PositionDir {
                path: config.position_file.clone(),
                source,
            })?;
        }
        let mut position_file = PositionFile::new(&config.position_file);
        let restored: HashMap<u64, PositionEntry> = position_file
            .load()?
            .into_iter()
            .map(|e| (e.inode, e))
            .collect();
        tracing::info!(source = %name, file = %config.position_file.display(),
            entries = restored.len(), "Loaded the taildir position file.");

        let (watcher, notifications) = watch(name, &config.groups);
        let group_headers = config
            .groups
            .iter()
            .map(|g| g.headers.iter().cloned().collect())
            .collect();
        let matchers = config
            .groups
            .iter()
            .map(|g| GroupMatcher::new(g.clone(), config.cache_pattern_matching))
            .collect();
        Ok(Self {
            name: name.to_string(),
            backoff: Backoff::new(config.poll.backoff_increment, config.poll.max_backoff),
            matchers,
            group_headers,
            position_file,
            files: BTreeMap::new(),
            restored: Some(restored),
            _watcher: watcher,
            notifications,
            scan_due: true,
            last_scan: None,
            dirty: false,
            last_save: Instant::now(),
            save_failing: false,
            journal_failing: false,
            open_count: 0,
            unreadable: HashSet::new(),
            unlisted: HashSet::new(),
            config,
        })
    }

    /// Finds new, renamed, grown, truncated, rewritten and vanished files.
    fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        self.scan_due = false;
        let first = self.restored.is_some();
        let mut seen: BTreeSet<FileKey> = BTreeSet::new();
        let mut all_listed = true;
        for gi in 0..self.matchers.len() {
            let paths = match self.matchers[gi].matching_files() {
                Ok(p) => {
                    self.unlisted.remove(&gi);
                    p
                }
                Err(e) => {
                    all_listed = false;
                    if self.unlisted.insert(gi) {
                        tracing::error!(source = %self.name,
                            dir = %self.matchers[gi].group.dir.display(), error = %e,
                            "Cannot list the file group's directory; retrying.");
                    }
                    continue;
                }
            };
            for path in paths {
                let Ok(md) = std::fs::metadata(&path) else {
                    continue; // Removed since the listing.
                };
                let key = key_of(&md);
                if !seen.insert(key) {
                    continue; // A second name (hard link, or another group) of a file.
                }
                if self.files.contains_key(&key) {
                    self.update_known(key, path, gi, &md);
                } else {
                    self.discover(key, path, gi, &md, first);
                }
            }
        }
        // Saved positions are kept until every directory could be listed once.
        if all_listed && let Some(rest) = self.restored.take() {
            for e in rest.values() {
                tracing::info!(source = %self.name, file = %e.file.display(), inode = e.inode,
                    pos = e.pos, "A file of the position file no longer exists; forgotten.");
            }
            if !rest.is_empty() {
                self.dirty = true;
            }
        }
        let mut forget = Vec::new();
        for (key, tf) in &mut self.files {
            let present = seen.contains(key);
            if tf.present && !present {
                if tf.is_open() {
                    tracing::info!(source = %self.name, file = %tf.path.display(),
                        "File renamed away or deleted; reading it to its end.");
                } else {
                    forget.push(*key);
                }
            }
            tf.present = present;
        }
        for key in forget {
            self.forget(key);
        }
        self.make_room();
    }

    fn forget(&mut self, key: FileKey) {
        if let Some(tf) = self.files.remove(&key) {
            if tf.is_open() {
                self.open_count -= 1;
            }
            tracing::info!(source = %self.name, file = %tf.path.display(), inode = key.1,
                pos = tf.pos, "Stopped tailing a file that no longer matches.");
            self.dirty = true;
        }
    }

    /// Opens `tf` if a descriptor is free; logs an unreadable file once.
    fn try_open(&mut self, key: FileKey) -> bool {
        let Some(tf) = self.files.get_mut(&key) else {
            return false;
        };
        if tf.is_open() {
            return true;
        }
        if self.open_count >= self.config.max_open_files {
            return false;
        }
        match tf.open() {
            Ok(()) => {
                self.open_count += 1;
                self.unreadable.remove(&tf.path);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Renamed or deleted since the scan; the next scan sees where it went.
                tracing::debug!(source = %self.name, file = %tf.path.display(), error = %e,
                    "File changed before it could be opened.");
                false
            }
            Err(e) => {
                if self.unreadable.insert(tf.path.clone()) {
                    tracing::error!(source = %self.name, file = %tf.path.display(), error = %e,
                        "Cannot open file; it is retried at every scan.");
                }
                false
            }
        }
    }

    /// After (re)opening or a change: truncation and fingerprint checks.
    fn verify(&mut self, key: FileKey, size: u64) {
        let Some(tf) = self.files.get_mut(&key) else {
            return;
        };
        if size < tf.pos {
            tracing::info!(source = %self.name, file = %tf.path.display(), pos = tf.pos, size,
                "File is shorter than its position (truncated, e.g. copytruncate); \
                 reading it from the start.");
            tf.restart_at(0);
            tf.fingerprint = Default::default();
            self.dirty = true;
        }
        match tf.check_fingerprint() {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(source = %self.name, file = %tf.path.display(), inode = key.1,
                    pos = tf.pos,
                    "File's first bytes changed (new file on a reused inode, or rewritten); \
                     reading it from the start.");
                tf.restart_at(0);
                self.dirty = true;
            }
            Err(e) => tracing::warn!(source = %self.name, file = %tf.path.display(),
                error = %e, "Cannot read the file's first bytes."),
        }
    }

    fn update_known(&mut self, key: FileKey, path: PathBuf, group: usize, md: &std::fs::Metadata) {
        let Some(tf) = self.files.get_mut(&key) else {
            return;
        };
        if tf.path != path {
            tracing::info!(source = %self.name, from = %tf.path.display(), to = %path.display(),
                pos = tf.pos, "File renamed; keeping its position.");
            tf.path = path;
            self.dirty = true;
        }
        tf.group = group;
        let size = md.len();
        let mtime = mtime_of(md);
        let changed = size != tf.seen_size || mtime != tf.seen_mtime;
        let was_open = tf.is_open();
        if changed {
            tf.seen_size = size;
            tf.seen_mtime = mtime;
            tf.last_activity = Instant::now();
        }
        if !changed && (was_open || size <= tf.pos) {
            return;
        }
        if self.try_open(key) {
            self.verify(key, size);
        }
    }

    fn discover(
        &mut self,
        key: FileKey,
        path: PathBuf,
        group: usize,
        md: &std::fs::Metadata,
        first: bool,
    ) {
        let size = md.len();
        let saved = self.restored.as_mut().and_then(|r| r.remove(&key.1));
        let (pos, fingerprint, how) = match &saved {
            Some(e) => (e.pos, e.fingerprint.unwrap_or_default(), "position file"),
            None if first && self.config.skip_to_end => (size, Default::default(), "skipToEnd"),
            None => (0, Default::default(), "new file"),
        };
        let mut tf = TailFile::new(key, path, group, pos);
        tf.fingerprint = fingerprint;
        tf.seen_size = size;
        tf.seen_mtime = mtime_of(md);
        tracing::info!(source = %self.name, file = %tf.path.display(), inode = key.1, pos,
            from = how, "Tailing file.");
        self.files.insert(key, tf);
        self.dirty = true;
        if self.try_open(key) {
            self.verify(key, size);
        }
    }

    /// With every descriptor in use and files with unread data waiting for one, closes as many
    /// caught-up files (least recently active first); the waiting ones open at the next scan.
    fn make_room(&mut self) {
        if self.open_count < self.config.max_open_files {
            return;
        }
        let waiting = self
            .files
            .values()
            .filter(|tf| tf.present && !tf.is_open() && tf.seen_size > tf.pos)
            .count();
        if waiting == 0 {
            return;
        }
        let mut caught_up: Vec<(Instant, FileKey)> = self
            .files
            .iter()
            .filter(|(_, tf)| {
                tf.is_open() && tf.present && !tf.has_uncommitted() && tf.pos >= tf.seen_size
            })
            .map(|(k, tf)| (tf.last_activity, *k))
            .collect();
        caught_up.sort_unstable();
        for (_, key) in caught_up.into_iter().take(waiting) {
            if let Some(tf) = self.files.get_mut(&key) {
                tf.close();
                self.open_count -= 1;
                self.scan_due = true;
            }
        }
    }

    /// Closes files idle for `idleTimeout`; forgets closed files that no longer match.
    fn close_idle(&mut self) {
        let idle = self.config.idle_timeout;
        let mut forget = Vec::new();
        for (key, tf) in &mut self.files {
            if tf.is_open() && !tf.has_uncommitted() && tf.last_activity.elapsed() >= idle {
                tf.close();
                self.open_count -= 1;
                tracing::debug!(source = %self.name, file = %tf.path.display(), "Closed idle file.");
            }
            if !tf.present && !tf.is_open() {
                forget.push(*key);
            }
        }
        for key in forget {
            self.forget(key);
        }
    }

    fn save_positions(&mut self) {
        let entries: Vec<PositionEntry> = self
            .files
            .values()
            .map(|tf| PositionEntry {
                inode: tf.key.1,
                pos: tf.pos,
                file: tf.path.clone(),
                fingerprint: Some(tf.fingerprint),
            })
            .collect();
        match self.position_file.save(&entries) {
            Ok(()) => {
                if self.save_failing {
                    tracing::info!(source = %self.name, "Positions saved again.");
                }
                self.dirty = false;
                self.save_failing = false;
            }
            Err(e) => {
                if !self.save_failing {
                    tracing::error!(source = %self.name, error = %e,
                        "Cannot save positions; retrying (logged once until it works again).");
                }
                self.save_failing = true;
            }
        }
        self.last_save = Instant::now();
    }

    /// Journals one committed position; a failure only widens what a crash re-reads.
    fn journal(&mut self, entry: &PositionEntry) {
        match self.position_file.append(entry) {
            Ok(()) => self.journal_failing = false,
            Err(e) => {
                if !self.journal_failing {
                    tracing::error!(source = %self.name, error = %e,
                        "Cannot journal a position; relying on the periodic position file save                          (logged once until it works again).");
                }
                self.journal_failing = true;
            }
        }
    }

    fn maybe_save_positions(&mut self) {
        if self.dirty && self.last_save.elapsed() >= self.config.write_pos_interval {
            self.save_positions();
        }
    }

    /// Reads and delivers the batches of one file; returns the events delivered.
    fn drain_file(
        &mut self,
        key: FileKey,
        processor: &ChannelProcessor,
    ) -> Result<u64, SourceError> {
        let mut delivered = 0;
        let mut batches = 0;
        let mut lines: Vec<Line> = Vec::with_capacity(self.config.batch_size);
        while batches < self.config.max_batch_count {
            let Some(tf) = self.files.get_mut(&key) else {
                break;
            };
            lines.clear();
            match tf.read_lines(self.config.batch_size, self.config.line_limits, &mut lines) {
                Ok(o) if o.long_lines > 0 => {
                    processor
                        .counters()
                        .line_too_long
                        .fetch_add(o.long_lines, Ordering::Relaxed);
                    tracing::warn!(source = %self.name, file = %tf.path.display(),
                        lines = o.long_lines, max = self.config.line_limits.max_len,
                        policy = ?self.config.line_limits.policy,
                        "Lines longer than maxLineLength were cut.");
                }
                Ok(_) => {}
                Err(e) => {
                    processor
                        .counters()
                        .event_read_fail
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(source = %self.name, file = %tf.path.display(), error = %e,
                        "Cannot read file; it is reopened at the next scan.");
                    tf.close();
                    self.open_count -= 1;
                    break;
                }
            }
            if lines.is_empty() {
                break;
            }
            let full = lines.len() >= self.config.batch_size;
            let n = lines.len() as u64;
            let (group, path) = (tf.group, tf.path.clone());
            let events = self.events(group, &path, &mut lines);
            let result = processor.process_batch(events);
            let Some(tf) = self.files.get_mut(&key) else {
                break;
            };
            if let Err(e) = result {
                tf.rollback();
                return Err(e.into());
            }
            tf.commit();
            if tf.pos > u64::from(tf.fingerprint.len)
                && let Err(e) = tf.extend_fingerprint()
            {
                tracing::debug!(source = %self.name, file = %tf.path.display(), error = %e,
                    "Cannot read the file's first bytes.");
            }
            self.dirty = true;
            delivered += n;
            batches += 1;
            if self.config.write_pos_interval.is_zero() {
                self.save_positions();
            } else {
                let entry = PositionEntry {
                    inode: tf.key.1,
                    pos: tf.pos,
                    file: tf.path.clone(),
                    fingerprint: Some(tf.fingerprint),
                };
                self.journal(&entry);
            }
            if !full {
                break;
            }
        }
        Ok(delivered)
    }

    fn events(&self, group: usize, path: &Path, lines: &mut Vec<Line>) -> Vec<Event> {
        let base = self.group_headers.get(group).cloned().unwrap_or_default();
        let path = self
            .config
            .file_header
            .then(|| path.to_string_lossy().into_owned());
        lines
            .drain(..)
            .map(|line| {
                let mut headers = base.clone();
                if let Some(p) = &path {
                    headers.insert(self.config.file_header_key.clone(), p.clone());
                }
                if self.config.byte_offset_header {
                    headers.insert(BYTE_OFFSET_HEADER, line.offset.to_string());
                }
                Event::with_headers(headers, line.body)
            })
            .collect()
    }

    /// Waits up to `wait` for a filesystem notification.
    fn wait_for_change(&mut self, wait: Duration) {
        match &self.notifications {
            Some(rx) => match rx.recv_timeout(wait) {
                Ok(_) => {
                    self.scan_due = true;
                    while rx.try_recv().is_ok() {}
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    tracing::warn!(source = %self.name,
                        "The file watcher stopped; falling back to periodic scans.");
                    self.notifications = None;
                }
            },
            None => std::thread::sleep(wait),
        }
    }

    fn drain_notifications(&mut self) {
        if let Some(rx) = &self.notifications {
            while rx.try_recv().is_ok() {
                self.scan_due = true;
            }
        }
    }
}

/// Watches every group's directory; without inotify the source relies on periodic scans.
fn watch(
    source: &str,
    groups: &[FileGroup],
) -> (Option<notify::RecommendedWatcher>, Option<Notifications>) {
    use notify::Watcher;
    let (tx, rx) = mpsc::channel();
    let mut watcher = match notify::recommended_watcher(tx) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(source = %source, error = %e,
                "Cannot start the file watcher; new lines are found by periodic scans.");
            return (None, None);
        }
    };
    let dirs: BTreeSet<&Path> = groups.iter().map(|g| g.dir.as_path()).collect();
    for dir in dirs {
        if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(source = %source, dir = %dir.display(), error = %e,
                "Cannot watch directory; its files are found by periodic scans.");
        }
    }
    (Some(watcher), Some(rx))
}

impl PollableSource for TaildirSource {
    fn process(&mut self, processor: &ChannelProcessor) -> Result<PollStatus, SourceError> {
        self.drain_notifications();
        let since = self.last_scan.map(|t| t.elapsed());
        let scan = match since {
            None => true,
            Some(s) => (self.scan_due && s >= SCAN_MIN_GAP) || s >= FALLBACK_SCAN,
        };
        if scan {
            let first = self.restored.is_some();
            self.scan();
            if first && self.restored.is_none() {
                // A snapshot at once, so the journal follows a position file from the start.
                self.save_positions();
            }
        }
        let mut delivered = 0;
        let keys: Vec<FileKey> = self.files.keys().copied().collect();
        for key in keys {
            match self.drain_file(key, processor) {
                Ok(n) => delivered += n,
                Err(e) => {
                    self.maybe_save_positions();
                    return Err(e);
                }
            }
        }
        self.close_idle();
        self.maybe_save_positions();
        if delivered > 0 {
            self.backoff.reset();
            return Ok(PollStatus::Ready);
        }
        let mut wait = self.backoff.next_delay().min(MAX_IDLE_WAIT);
        if self.scan_due {
            let gap =
                SCAN_MIN_GAP.saturating_sub(self.last_scan.map_or(SCAN_MIN_GAP, |t| t.elapsed()));
            wait = wait.min(gap);
        }
        self.wait_for_change(wait);
        Ok(PollStatus::Ready)
    }

    fn stop(&mut self) {
        if self.dirty {
            self.save_positions();
        }
        tracing::info!(source = %self.name, file = %self.position_file.path().display(),
            files = self.files.len(), "Taildir source stopped; positions saved.");
    }
}

impl SourceSpec for TaildirConfig {
    fn build(&self, cx: &SourceContext) -> Result<SourceInstance, BoxError> {
        let source = TaildirSource::new(&cx.cx.name, self.clone())?;
        Ok(SourceInstance::Polled(Box::new(source), self.poll.clone()))
    }
}

#[cfg(test)]
mod tests;
