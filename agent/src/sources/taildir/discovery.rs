use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use super::source::TaildirSource;
use super::tail_file::{FileKey, TailFile, key_of, mtime_of};

impl TaildirSource {
    /// Finds new, renamed, grown, truncated, rewritten and vanished files.
    pub(super) fn scan(&mut self) {
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

    pub(super) fn forget(&mut self, key: FileKey) {
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
    pub(super) fn try_open(&mut self, key: FileKey) -> bool {
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
    pub(super) fn verify(&mut self, key: FileKey, size: u64) {
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

    pub(super) fn update_known(
        &mut self,
        key: FileKey,
        path: PathBuf,
        group: usize,
        md: &std::fs::Metadata,
    ) {
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

    pub(super) fn discover(
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
    pub(super) fn make_room(&mut self) {
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
    pub(super) fn close_idle(&mut self) {
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
}
