use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::seq::SliceRandom;

use super::config::{ConsumeOrder, DeletePolicy, SpoolDirConfig, TrackingPolicy};
use super::deserializer::{self, Deserializer};
use super::tracker::{META_FILE, PositionTracker, Saved};
use crate::event::{Event, Headers, edit_batch};
use crate::lifecycle::StopSignal;
use crate::metrics::SourceCounters;
use crate::pipeline::{ChannelProcessor, PollStatus, PollableSource, SourceError};

#[derive(Debug, thiserror::Error)]
pub(crate) enum SpoolDirError {
    #[error("spoolDir {}: {source}", dir.display())]
    Directory {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("trackerDir {}: {source}", dir.display())]
    TrackerDir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("spoolDir {}: cannot create, read and delete a file there (trackingPolicy = rename needs it): {source}", dir.display())]
    Permissions {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What the next `backoff` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// Nothing to read (or the source failed): `pollDelay`.
    Idle,
    /// The channel refused a batch: 250 ms, doubling up to `maxBackoff`.
    Channel,
}

/// A file found in the spool directory.
struct Candidate {
    /// Its path below the spool directory.
    rel: PathBuf,
    name: OsString,
    /// Modification time in ms, as Java's `File.lastModified` (the order's key).
    mtime_ms: u128,
}

/// The file being read.
struct Current {
    rel: PathBuf,
    /// Where it is read (the spool directory made absolute): `fileHeader`'s value.
    abs: PathBuf,
    len: u64,
    mtime: Option<SystemTime>,
    dev: u64,
    ino: u64,
    reader: Box<dyn Deserializer>,
    tracker: PositionTracker,
    headers: Vec<(String, String)>,
}

pub(crate) struct SpoolDirSource {
    name: String,
    config: SpoolDirConfig,
    /// The spool directory, absolute.
    dir: PathBuf,
    tracker_dir: PathBuf,
    meta: PathBuf,
    /// The tracker file found at start, until the next open replaces it.
    resume: Option<Saved>,
    current: Option<Current>,
    /// A batch read but not committed yet: sent again until the channel takes it.
    pending: Option<Vec<Event>>,
    /// `consumeOrder = random`: the listing, used up before listing again (as Flume does).
    shuffled: VecDeque<Candidate>,
    /// Set by a fatal error: nothing more is read until a restart or a reconfiguration.
    failed: bool,
    wait: Wait,
    channel_backoff: Duration,
    store_failing: bool,
    /// Files that could not be opened, logged once.
    unopenable: HashSet<PathBuf>,
    listing_failing: bool,
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    std::env::current_dir().map_or_else(|_| p.to_path_buf(), |cwd| cwd.join(p))
}

/// `path` with `suffix` appended to its last component.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn millis(t: Option<SystemTime>) -> u128 {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis())
}

/// Flume's canary: the spool directory must let us create, read and delete a file.
fn canary(dir: &Path) -> io::Result<()> {
    let path = dir.join(format!(
        ".sluice-spooldir-perm-check-{}-{:08x}.canary",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        f.write_all(b"testing sluice file permissions\n")?;
        drop(f);
        let mut back = String::new();
        File::open(&path)?.read_to_string(&mut back)?;
        if back.is_empty() {
            return Err(io::Error::other("the canary file read back empty"));
        }
        Ok(())
    })();
    let removed = std::fs::remove_file(&path);
    result.and(removed)
}

impl SpoolDirSource {
    /// Checks the spool directory, creates the tracker directory and reads the tracker file.
    pub(crate) fn new(name: &str, config: SpoolDirConfig) -> Result<Self, SpoolDirError> {
        let dir = absolute(&config.spool_dir);
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(SpoolDirError::Directory {
                    dir,
                    source: io::Error::other("not a directory"),
                });
            }
            Err(source) => return Err(SpoolDirError::Directory { dir, source }),
        }
        std::fs::read_dir(&dir).map_err(|source| SpoolDirError::Directory {
            dir: dir.clone(),
            source,
        })?;
        let tracker_dir = if config.tracker_dir.is_absolute() {
            config.tracker_dir.clone()
        } else {
            dir.join(&config.tracker_dir)
        };
        std::fs::create_dir_all(&tracker_dir).map_err(|source| SpoolDirError::TrackerDir {
            dir: tracker_dir.clone(),
            source,
        })?;
        if config.tracking_policy == TrackingPolicy::Rename {
            canary(&dir).map_err(|source| SpoolDirError::Permissions {
                dir: dir.clone(),
                source,
            })?;
        }
        let meta = tracker_dir.join(META_FILE);
        let resume = match PositionTracker::load(&meta) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(source = %name, error = %e,
                    "Cannot read the position tracker; the file it names is read again from its \
                     start when it is opened.");
                None
            }
        };
        if let Some(r) = &resume {
            tracing::info!(source = %name, file = %r.target.display(), position = r.position,
                "Spooling directory source: resuming a file from the position tracker.");
        }
        let first = config.first_backoff();
        Ok(Self {
            name: name.to_string(),
            dir,
            tracker_dir,
            meta,
            resume,
            current: None,
            pending: None,
            shuffled: VecDeque::new(),
            failed: false,
            wait: Wait::Idle,
            channel_backoff: first,
            store_failing: false,
            unopenable: HashSet::new(),
            listing_failing: false,
            config,
        })
    }

    /// Flume's fatal `IllegalStateException` / read failure: logged once, counted, and the
    /// source reads nothing more until the agent is restarted or the source reconfigured.
    /// The file stays where it is, with its committed position in the tracker.
    fn fail(&mut self, counters: &SourceCounters, read: bool, message: String) {
        if read {
            counters.event_read_fail.fetch_add(1, Ordering::Relaxed);
        } else {
            counters
                .generic_processing_fail
                .fetch_add(1, Ordering::Relaxed);
        }
        tracing::error!(source = %self.name, dir = %self.dir.display(),
            "{message}. The spooling directory source stops here: nothing was lost (the file \
             keeps its committed position); fix the cause, then restart the agent or \
             reconfigure the source to continue.");
        self.current = None;
        self.failed = true;
    }

    /// The files that may be read, Flume's rules: not hidden, not ending in `fileSuffix`,
    /// matching `includePattern` and not `ignorePattern`; subdirectories with
    /// `recursiveDirectorySearch` unless hidden, ignored or the tracker directory. With
    /// `trackingPolicy = tracker_dir`, files with a marker are done; one modified after its
    /// marker was written is an error (its name was reused, or it was appended to).
    fn list(&mut self, counters: &SourceCounters) -> Result<Vec<Candidate>, String> {
        let mut out = Vec::new();
        let mut stack = vec![PathBuf::new()];
        let mut errors = false;
        while let Some(rel) = stack.pop() {
            let here = self.dir.join(&rel);
            let entries = match std::fs::read_dir(&here) {
                Ok(e) => e,
                Err(e) => {
                    errors = true;
                    self.listing_error(counters, &here, &e);
                    continue;
                }
            };
            for entry in entries {
                let entry = match entry {
                    Ok(e) => e,
                    Err(e) => {
                        errors = true;
                        self.listing_error(counters, &here, &e);
                        continue;
                    }
                };
                let name = entry.file_name();
                let text = name.to_string_lossy();
                let path = entry.path();
                let Ok(ft) = entry.file_type() else { continue };
                if ft.is_dir() {
                    if self.config.recursive
                        && !text.starts_with('.')
                        && !self.config.ignore.is_match(&text)
                        && path != self.tracker_dir
                    {
                        stack.push(rel.join(&name));
                    }
                    continue;
                }
                if text.ends_with(self.config.file_suffix.as_str())
                    || text.starts_with('.')
                    || !self.config.include.is_match(&text)
                    || self.config.ignore.is_match(&text)
                {
                    continue;
                }
                // Follows a symbolic link, as Flume reads through one.
                let Ok(md) = std::fs::metadata(&path) else {
                    continue;
                };
                if !md.is_file() {
                    continue;
                }
                let file_rel = rel.join(&name);
                if self.config.tracking_policy == TrackingPolicy::TrackerDir
                    && self.config.delete_policy == DeletePolicy::Never
                {
                    let marker =
                        with_suffix(&self.tracker_dir.join(&file_rel), &self.config.file_suffix);
                    if let Ok(m) = std::fs::metadata(&marker) {
                        if md.modified().ok() > m.modified().ok() {
                            return Err(format!(
                                "File {} was modified after it was completed (its tracker \
                                 marker {} is older): its name has been re-used or it was \
                                 appended to. Spooling assumptions violated",
                                path.display(),
                                marker.display()
                            ));
                        }
                        continue;
                    }
                }
                out.push(Candidate {
                    rel: file_rel,
                    name,
                    mtime_ms: millis(md.modified().ok()),
                });
            }
        }
        if !errors {
            self.listing_failing = false;
        }
        Ok(out)
    }

    fn listing_error(&mut self, counters: &SourceCounters, dir: &Path, e: &io::Error) {
        counters
            .generic_processing_fail
            .fetch_add(1, Ordering::Relaxed);
        if !self.listing_failing {
            tracing::error!(source = %self.name, dir = %dir.display(), error = %e,
                "Cannot list a spool directory; files already found are read (logged once).");
        }
        self.listing_failing = true;
    }

    /// The candidates in the order they are tried: the file the tracker names first (so a
    /// restart resumes it), then by `consumeOrder`.
    fn ordered(&mut self, counters: &SourceCounters) -> Result<Vec<Candidate>, String> {
        let mut list = if self.config.consume_order == ConsumeOrder::Random {
            if self.shuffled.is_empty() {
                let mut l = self.list(counters)?;
                l.shuffle(&mut rand::rng());
                self.shuffled = l.into();
            }
            self.shuffled.drain(..).collect()
        } else {
            let mut l = self.list(counters)?;
            match self.config.consume_order {
                ConsumeOrder::Youngest => l.sort_by(|a, b| {
                    b.mtime_ms
                        .cmp(&a.mtime_ms)
                        .then_with(|| a.name.cmp(&b.name))
                }),
                _ => l.sort_by(|a, b| {
                    a.mtime_ms
                        .cmp(&b.mtime_ms)
                        .then_with(|| a.name.cmp(&b.name))
                }),
            }
            l
        };
        if let Some(r) = &self.resume
            && let Some(i) = list
                .iter()
                .position(|c| self.config.spool_dir.join(&c.rel) == r.target)
        {
            let c = list.remove(i);
            list.insert(0, c);
        }
        Ok(list)
    }

    /// Opens the next file; `Ok(None)` when none is ready, `Err` after a fatal error.
    fn open_next(&mut self, counters: &SourceCounters) -> Result<Option<Current>, ()> {
        let candidates = match self.ordered(counters) {
            Ok(c) => c,
            Err(message) => {
                self.fail(counters, false, message);
                return Err(());
            }
        };
        let mut rest = candidates.into_iter();
        while let Some(c) = rest.next() {
            match self.open(counters, &c) {
                Ok(Some(cur)) => {
                    if self.config.consume_order == ConsumeOrder::Random {
                        self.shuffled = rest.collect();
                    }
                    return Ok(Some(cur));
                }
                Ok(None) => continue,
                Err(()) => return Err(()),
            }
        }
        Ok(None)
    }

    fn open(&mut self, counters: &SourceCounters, c: &Candidate) -> Result<Option<Current>, ()> {
        let abs = self.dir.join(&c.rel);
        let target = self.config.spool_dir.join(&c.rel);
        if self.config.tracking_policy == TrackingPolicy::Rename
            && self.config.delete_policy == DeletePolicy::Never
        {
            let dest = with_suffix(&abs, &self.config.file_suffix);
            if dest.exists() {
                self.fail(
                    counters,
                    false,
                    format!(
                        "File name has been re-used with different files: {} is new and {} exists. \
                     Spooling assumptions violated (nothing of the new file was read)",
                        abs.display(),
                        dest.display()
                    ),
                );
                return Err(());
            }
        }
        let file = match File::open(&abs).and_then(|f| f.metadata().map(|m| (f, m))) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                counters
                    .generic_processing_fail
                    .fetch_add(1, Ordering::Relaxed);
                if self.unopenable.insert(abs.clone()) {
                    tracing::error!(source = %self.name, file = %abs.display(), error = %e,
                        "Cannot open a spooled file; other files go first, it is tried again \
                         (logged once).");
                }
                return Ok(None);
            }
        };
        let (file, md) = file;
        self.unopenable.remove(&abs);
        let mut position = match self.resume.take() {
            Some(r) if r.target == target => r.position,
            _ => 0,
        };
        if position > md.len() {
            tracing::warn!(source = %self.name, file = %abs.display(), position, len = md.len(),
                "The tracker's position is beyond the end of the file (it was replaced); \
                 reading it from its start.");
            position = 0;
        }
        let tracker = match PositionTracker::create(&self.meta, &target, position) {
            Ok(t) => t,
            Err(e) => {
                counters
                    .generic_processing_fail
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(source = %self.name, file = %abs.display(), error = %e,
                    "Cannot write the position tracker; the file is tried again later.");
                return Ok(None);
            }
        };
        let reader = match deserializer::open(&self.config, file, position) {
            Ok(r) => r,
            Err(e) => {
                self.fail(
                    counters,
                    true,
                    format!("Cannot read {}: {e}", abs.display()),
                );
                return Err(());
            }
        };
        let mut headers = Vec::new();
        if let Some(k) = &self.config.file_header {
            headers.push((k.clone(), abs.to_string_lossy().into_owned()));
        }
        if let Some(k) = &self.config.basename_header {
            headers.push((k.clone(), c.name.to_string_lossy().into_owned()));
        }
        tracing::info!(source = %self.name, file = %abs.display(), position,
            "Spooling directory source: reading a file.");
        Ok(Some(Current {
            rel: c.rel.clone(),
            abs,
            len: md.len(),
            mtime: md.modified().ok(),
            dev: md.dev(),
            ino: md.ino(),
            reader,
            tracker,
            headers,
        }))
    }

    /// Reads the next batch, moving on to the next file at the end of one; `None` when there
    /// is nothing to read (or the source failed).
    fn next_batch(&mut self, counters: &SourceCounters) -> Option<Vec<Event>> {
        loop {
            if self.current.is_none() {
                match self.open_next(counters) {
                    Ok(Some(c)) => self.current = Some(c),
                    Ok(None) | Err(()) => return None,
                }
            }
            let cur = self.current.as_mut()?;
            let mut events = Vec::with_capacity(self.config.batch_size.min(4096));
            if let Err(e) = cur.reader.read_events(self.config.batch_size, &mut events) {
                let message = format!("Cannot read {}: {e}", cur.abs.display());
                self.fail(counters, true, message);
                return None;
            }
            if events.is_empty() {
                self.retire(counters);
                if self.failed {
                    return None;
                }
                continue;
            }
            if !cur.headers.is_empty() {
                let pairs = &cur.headers;
                edit_batch(&mut events, |h: &mut Headers| {
                    for (k, v) in pairs {
                        h.insert(k.as_str(), v.as_str());
                    }
                });
            }
            return Some(events);
        }
    }

    /// Marks the current file, read to its end and committed, as done; Flume's checks first.
    fn retire(&mut self, counters: &SourceCounters) {
        let Some(cur) = self.current.take() else {
            return;
        };
        let abs = cur.abs.clone();
        drop(cur.reader);
        let violation = match std::fs::metadata(&abs) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some(format!(
                "File has been renamed or deleted since being read: {}",
                abs.display()
            )),
            Err(e) => Some(format!("Cannot check {}: {e}", abs.display())),
            Ok(md) if (md.dev(), md.ino()) != (cur.dev, cur.ino) => Some(format!(
                "File has been replaced by another file since being read: {}",
                abs.display()
            )),
            Ok(md) if md.modified().ok() != cur.mtime => Some(format!(
                "File has been modified since being read: {}",
                abs.display()
            )),
            Ok(md) if md.len() != cur.len => Some(format!(
                "File has changed size since being read: {}",
                abs.display()
            )),
            Ok(_) => None,
        };
        if let Some(message) = violation {
            self.fail(counters, false, message);
            return;
        }
        let done = match (self.config.delete_policy, self.config.tracking_policy) {
            (DeletePolicy::Immediate, _) => match std::fs::remove_file(&abs) {
                Ok(()) => Ok("deleted".to_string()),
                Err(e) => Err(format!(
                    "Unable to delete spool file {}: {e}",
                    abs.display()
                )),
            },
            (DeletePolicy::Never, TrackingPolicy::Rename) => {
                let dest = with_suffix(&abs, &self.config.file_suffix);
                if dest.exists() {
                    Err(format!(
                        "File name has been re-used with different files. Spooling \
                         assumptions violated for {}",
                        dest.display()
                    ))
                } else {
                    std::fs::rename(&abs, &dest)
                        .map(|()| format!("renamed to {}", dest.display()))
                        .map_err(|e| {
                            format!(
                                "Unable to move {} to {}: {e}. This will likely cause duplicate \
                                 events. Please verify that sluice has sufficient permissions",
                                abs.display(),
                                dest.display()
                            )
                        })
                }
            }
            (DeletePolicy::Never, TrackingPolicy::TrackerDir) => {
                let marker =
                    with_suffix(&self.tracker_dir.join(&cur.rel), &self.config.file_suffix);
                let created = marker
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| {
                        OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(&marker)
                    });
                match created {
                    Ok(_) => Ok(format!("recorded as {}", marker.display())),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(format!(
                        "File name has been re-used with different files. Spooling \
                         assumptions violated for {}",
                        marker.display()
                    )),
                    Err(e) => Err(format!(
                        "Could not create tracker file {}: {e}",
                        marker.display()
                    )),
                }
            }
        };
        match done {
            Ok(how) => {
                drop(cur.tracker);
                if let Err(e) = PositionTracker::delete(&self.meta) {
                    tracing::warn!(source = %self.name, error = %e,
                        "Cannot delete the position tracker; the next file replaces it.");
                }
                tracing::info!(source = %self.name, file = %abs.display(),
                    "Spooling directory source: file done ({how}).");
            }
            Err(message) => self.fail(counters, false, message),
        }
    }

    /// Records the committed position of the current file.
    fn commit(&mut self, counters: &SourceCounters) {
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        match cur.tracker.store(cur.reader.mark()) {
            Ok(()) => {
                if self.store_failing {
                    tracing::info!(source = %self.name, "The position tracker is written again.");
                }
                self.store_failing = false;
            }
            Err(e) => {
                counters
                    .generic_processing_fail
                    .fetch_add(1, Ordering::Relaxed);
                if !self.store_failing {
                    tracing::error!(source = %self.name, error = %e,
                        "Cannot record a position; after a crash more of the file is read \
                         again (logged once until it works again).");
                }
                self.store_failing = true;
            }
        }
    }
}

impl PollableSource for SpoolDirSource {
    fn process(&mut self, processor: &ChannelProcessor) -> Result<PollStatus, SourceError> {
        if self.failed {
            self.wait = Wait::Idle;
            return Ok(PollStatus::Backoff);
        }
        let counters = processor.counters().clone();
        if self.pending.is_none() {
            match self.next_batch(&counters) {
                Some(events) => self.pending = Some(events),
                None => {
                    self.wait = Wait::Idle;
                    return Ok(PollStatus::Backoff);
                }
            }
        }
        let Some(events) = &self.pending else {
            return Ok(PollStatus::Backoff);
        };
        match processor.process_batch(events.clone()) {
            Ok(()) => {
                self.pending = None;
                self.channel_backoff = self.config.first_backoff();
                self.commit(&counters);
                Ok(PollStatus::Ready)
            }
            Err(e) => {
                self.wait = Wait::Channel;
                Err(e.into())
            }
        }
    }

    fn backoff(&mut self, _delay: Duration, stop: &StopSignal) {
        match self.wait {
            Wait::Idle => {
                stop.sleep(self.config.poll_delay);
            }
            Wait::Channel => {
                let d = self.channel_backoff;
                stop.sleep(d);
                self.channel_backoff = (d * 2).min(self.config.max_backoff);
            }
        }
    }

    fn stop(&mut self) {
        tracing::info!(source = %self.name, dir = %self.dir.display(),
            reading = ?self.current.as_ref().map(|c| c.abs.display().to_string()),
            "Spooling directory source stopped; positions are recorded at each commit.");
    }
}
