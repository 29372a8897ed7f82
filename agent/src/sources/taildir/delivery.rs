use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::event::Event;
use crate::pipeline::{ChannelProcessor, SourceError};

use super::BYTE_OFFSET_HEADER;
use super::position_file::PositionEntry;
use super::source::TaildirSource;
use super::tail_file::{FileKey, Line};

impl TaildirSource {
    pub(super) fn save_positions(&mut self) {
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
    pub(super) fn journal(&mut self, entry: &PositionEntry) {
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

    pub(super) fn maybe_save_positions(&mut self) {
        if self.dirty && self.last_save.elapsed() >= self.config.write_pos_interval {
            self.save_positions();
        }
    }

    /// Reads and delivers the batches of one file; returns the events delivered.
    pub(super) fn drain_file(
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

    pub(super) fn events(&self, group: usize, path: &Path, lines: &mut Vec<Line>) -> Vec<Event> {
        // The group's headers and the file header are the same for every line: one map for
        // the batch, shared by its events (only a byte-offset header makes one per event).
        let mut base = self.group_headers.get(group).cloned().unwrap_or_default();
        if self.config.file_header {
            base.insert(
                self.config.file_header_key.as_str(),
                path.to_string_lossy().as_ref(),
            );
        }
        lines
            .drain(..)
            .map(|line| {
                let mut headers = base.clone();
                if self.config.byte_offset_header {
                    headers.insert(BYTE_OFFSET_HEADER, line.offset.to_string());
                }
                Event::with_headers(headers, line.body)
            })
            .collect()
    }
}
