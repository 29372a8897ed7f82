use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::event::Headers;
use crate::lifecycle::Backoff;
use crate::pipeline::{ChannelProcessor, PollStatus, PollableSource, SourceError};

use super::file_group::{FileGroup, GroupMatcher};
use super::position_file::{PositionEntry, PositionFile, PositionFileError};
use super::tail_file::{FileKey, TailFile};
use super::{FALLBACK_SCAN, MAX_IDLE_WAIT, SCAN_MIN_GAP, TaildirConfig};

#[derive(Debug, thiserror::Error)]
pub(crate) enum TaildirError {
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

pub(crate) struct TaildirSource {
    pub(super) name: String,
    pub(super) config: TaildirConfig,
    pub(super) matchers: Vec<GroupMatcher>,
    pub(super) group_headers: Vec<Headers>,
    pub(super) position_file: PositionFile,
    pub(super) files: BTreeMap<FileKey, TailFile>,
    /// Saved positions by inode, until the first scan has matched them.
    pub(super) restored: Option<HashMap<u64, PositionEntry>>,
    pub(super) _watcher: Option<notify::RecommendedWatcher>,
    pub(super) notifications: Option<Notifications>,
    pub(super) scan_due: bool,
    pub(super) last_scan: Option<Instant>,
    pub(super) dirty: bool,
    pub(super) last_save: Instant,
    pub(super) save_failing: bool,
    pub(super) journal_failing: bool,
    pub(super) backoff: Backoff,
    pub(super) open_count: usize,
    /// Paths whose open failed, logged once until they open again.
    pub(super) unreadable: HashSet<PathBuf>,
    /// Directories whose listing failed, logged once until they list again.
    pub(super) unlisted: HashSet<usize>,
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
    pub(crate) fn new(name: &str, mut config: TaildirConfig) -> Result<Self, TaildirError> {
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

    /// Waits up to `wait` for a filesystem notification.
    pub(super) fn wait_for_change(&mut self, wait: Duration) {
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

    pub(super) fn drain_notifications(&mut self) {
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
