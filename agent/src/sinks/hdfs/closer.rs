use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::error::WriteError;
use super::sink::{Closing, HdfsSink, OpenFile};
use super::writer::{join, split_fs};

/// How long start-up waits for the lease recovery of one leftover file before leaving the
/// rest to the background closer.
const STARTUP_RECOVERY_WAIT: Duration = Duration::from_secs(10);
/// How often a started lease recovery is polled.
const RECOVERY_POLL: Duration = Duration::from_millis(500);

impl HdfsSink {
    /// Hands a file to the closer and tries the close now.
    pub(super) fn retire(&mut self, f: OpenFile, failed: bool) {
        let c = Closing {
            fs: f.fs,
            in_use: f.in_use,
            target: f.target,
            // After a failed write the writer's pipeline is suspect: fence it by lease recovery.
            recover: failed,
            writer: (!failed).then_some(f.writer),
            tries: 0,
            next_attempt: Instant::now(),
        };
        self.closing.push(c);
        let i = self.closing.len() - 1;
        self.attempt_close(i);
    }

    /// Flushes and retires an open file (a roll). A flush failure is an error of the batch.
    pub(super) fn roll(&mut self, key: &str) -> Result<(), WriteError> {
        let Some(mut f) = self.open.remove(key) else {
            return Ok(());
        };
        match self.flush_file(&mut f) {
            Ok(()) => {
                self.retire(f, false);
                Ok(())
            }
            Err(e) => {
                self.retire(f, true);
                Err(e)
            }
        }
    }

    pub(super) fn close_least_recent(&mut self) -> Result<(), WriteError> {
        let oldest = self
            .open
            .iter()
            .min_by_key(|(_, f)| f.last_use)
            .map(|(k, _)| k.clone());
        match oldest {
            Some(k) => self.roll(&k),
            None => Ok(()),
        }
    }

    /// One close/recover/rename attempt of `closing[i]`; removes it when done or given up.
    pub(super) fn attempt_close(&mut self, i: usize) {
        let Some(mut c) = self.closing.get_mut(i).map(|c| Closing {
            fs: c.fs.clone(),
            in_use: c.in_use.clone(),
            target: c.target.clone(),
            writer: c.writer.take(),
            recover: c.recover,
            tries: c.tries,
            next_attempt: c.next_attempt,
        }) else {
            return;
        };
        let result = self.finish_file(&mut c);
        let done = match result {
            Ok(true) => true,
            Ok(false) => {
                c.next_attempt = Instant::now() + RECOVERY_POLL.min(self.config.retry_interval);
                false
            }
            Err(e) => {
                c.tries += 1;
                let give_up = self.config.close_tries > 0 && c.tries >= self.config.close_tries;
                if give_up {
                    tracing::error!(sink = %self.name, file = %c.in_use, error = %e,
                        tries = c.tries, "Giving up closing and renaming the file (hdfs.closeTries).");
                } else {
                    tracing::warn!(sink = %self.name, file = %c.in_use, error = %e,
                        retry_in = ?self.config.retry_interval, "Closing the file failed; will retry.");
                }
                c.next_attempt = Instant::now() + self.config.retry_interval;
                give_up
            }
        };
        if done {
            self.closing.remove(i);
        } else if let Some(slot) = self.closing.get_mut(i) {
            *slot = c;
        }
    }

    /// Close (or lease recovery) then rename. `Ok(false)`: a lease recovery is under way.
    pub(super) fn finish_file(&mut self, c: &mut Closing) -> Result<bool, WriteError> {
        if let Some(mut w) = c.writer.take() {
            match self.call(&format!("close {}", c.in_use), w.close()) {
                Ok(()) => {
                    self.counters
                        .connection_closed
                        .fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(sink = %self.name, file = %c.in_use, error = %e,
                        "Close failed; recovering the file's lease.");
                    c.recover = true;
                }
            }
        }
        if c.recover {
            let client = self.client(&c.fs, true)?;
            let done = self.call(
                &format!("recover lease of {}", c.in_use),
                client.recover_lease(&c.in_use),
            );
            match done {
                Ok(true) => {
                    c.recover = false;
                    self.counters
                        .connection_closed
                        .fetch_add(1, Ordering::Relaxed);
                }
                Ok(false) => return Ok(false),
                Err(e) if e.not_found() => {
                    // Renamed by an earlier attempt whose answer was lost, or removed.
                    return Ok(true);
                }
                Err(e) => return Err(e.into()),
            }
        }
        if c.in_use == c.target {
            return Ok(true);
        }
        let client = self.client(&c.fs, false)?;
        match self.call(
            &format!("rename {}", c.in_use),
            client.rename(&c.in_use, &c.target, false),
        ) {
            Ok(()) => {
                tracing::info!(sink = %self.name, file = %c.target, "Closed and renamed HDFS file.");
                Ok(true)
            }
            Err(e) => {
                let gone = self.call("stat", client.get_file_info(&c.in_use)).is_err();
                let there = self.call("stat", client.get_file_info(&c.target)).is_ok();
                if gone && there {
                    Ok(true)
                } else {
                    Err(e.into())
                }
            }
        }
    }

    /// Finds in-use files a previous run left under the literal part of `hdfs.path`.
    pub(super) fn recover_leftovers(&mut self) -> Result<(), WriteError> {
        let cfg = &self.config;
        if cfg.in_use_prefix.is_empty() && cfg.in_use_suffix.is_empty() {
            return Ok(());
        }
        let literal = cfg.path.literal_prefix();
        let root = if cfg.path.is_literal() {
            literal.to_string()
        } else {
            literal
                .rsplit_once('/')
                .map(|(d, _)| d.to_string())
                .unwrap_or_default()
        };
        let (fs, dir) = split_fs(&root);
        if dir.is_empty() || dir == "/" || !dir.starts_with('/') {
            tracing::warn!(sink = %self.name, path = %cfg.path.source(),
                "hdfs.path has no literal directory to search for leftover in-use files.");
            return Ok(());
        }
        let name_start = format!("{}{}", cfg.in_use_prefix, cfg.file_prefix.literal_prefix());
        let suffix = cfg.in_use_suffix.clone();
        let in_use_prefix = cfg.in_use_prefix.clone();
        let client = self.client(&fs, false)?;
        let listed = self.call(&format!("list {dir}"), client.list_status(&dir, true));
        let files = match listed {
            Ok(f) => f,
            Err(e) if e.not_found() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for st in files.into_iter().filter(|s| !s.isdir) {
            let Some((parent, base)) = st.path.rsplit_once('/') else {
                continue;
            };
            if !base.starts_with(&name_start) || !base.ends_with(&suffix) {
                continue;
            }
            let final_name = &base[in_use_prefix.len()..base.len() - suffix.len()];
            let target = join(if parent.is_empty() { "/" } else { parent }, final_name);
            tracing::info!(sink = %self.name, file = %st.path,
                "Found an in-use file left by an earlier run; recovering its lease.");
            self.closing.push(Closing {
                fs: fs.clone(),
                in_use: st.path.clone(),
                target,
                writer: None,
                recover: true,
                tries: 0,
                next_attempt: Instant::now(),
            });
        }
        // Give the recoveries a moment; the rest finishes in the background.
        let deadline = Instant::now() + STARTUP_RECOVERY_WAIT;
        while !self.closing.is_empty() && Instant::now() < deadline {
            let _ = self.housekeeping();
            if !self.closing.is_empty() {
                std::thread::sleep(RECOVERY_POLL);
            }
        }
        Ok(())
    }
}
