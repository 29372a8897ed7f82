use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use hdfs_native::WriteOptions;

use crate::event::Event;
use crate::metrics::now_millis;

use super::error::WriteError;
use super::format::{FileEncoder, SCHEMA_LITERAL_HEADER, SCHEMA_URL_HEADER};
use super::path::{RenderError, TimeContext};
use super::sink::{HdfsSink, OpenFile};

/// Splits an escaped `hdfs.path` into file system URL and absolute path.
pub(super) fn split_fs(path: &str) -> (String, String) {
    if let Some(i) = path.find("://") {
        let rest = &path[i + 3..];
        let slash = rest.find('/').unwrap_or(rest.len());
        let fs = path[..i + 3 + slash].to_string();
        let p = &rest[slash..];
        return (
            fs,
            if p.is_empty() {
                "/".into()
            } else {
                p.to_string()
            },
        );
    }
    (String::new(), path.to_string())
}

pub(super) fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The largest schema read from a URL.
const MAX_SCHEMA_BYTES: usize = 1 << 20;

impl HdfsSink {
    /// The schema text at `url` (`hdfs://…`, `http(s)://…`, `file:…` or a local path), fetched
    /// once per URL as Flume's `AvroEventSerializer` does.
    pub(super) fn schema_at(&mut self, url: &str) -> Result<String, WriteError> {
        if let Some(s) = self.schemas.get(url) {
            return Ok(s.clone());
        }
        let err = |message: String| WriteError::SchemaUrl {
            url: url.to_string(),
            message,
        };
        let text = if url.starts_with("hdfs://") || url.starts_with("viewfs://") {
            let (fs, path) = split_fs(url);
            let client = self.client(&fs, false)?;
            let reader = self.call(&format!("open {url}"), client.read(&path))?;
            let len = reader.file_length();
            if len > MAX_SCHEMA_BYTES {
                return Err(err(format!("{len} bytes; a schema is at most 1 MiB")));
            }
            let bytes = self.call(&format!("read {url}"), reader.read_range(0, len))?;
            String::from_utf8(bytes.to_vec()).map_err(|_| err("not UTF-8".into()))?
        } else if url.starts_with("http://") || url.starts_with("https://") {
            let agent = ureq::Agent::config_builder()
                .timeout_global(Some(self.config.call_timeout))
                .build()
                .new_agent();
            let mut resp = agent.get(url).call().map_err(|e| err(e.to_string()))?;
            resp.body_mut()
                .with_config()
                .limit(MAX_SCHEMA_BYTES as u64)
                .read_to_string()
                .map_err(|e| err(e.to_string()))?
        } else {
            let path = url
                .strip_prefix("file://")
                .or_else(|| url.strip_prefix("file:"))
                .unwrap_or(url);
            let len = std::fs::metadata(path)
                .map_err(|e| err(e.to_string()))?
                .len();
            if len > MAX_SCHEMA_BYTES as u64 {
                return Err(err(format!("{len} bytes; a schema is at most 1 MiB")));
            }
            std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?
        };
        self.schemas.insert(url.to_string(), text.clone());
        Ok(text)
    }

    /// `(escaped directory, escaped prefix)` of an event.
    pub(super) fn bucket(
        &mut self,
        e: &Event,
        local_now: Option<i64>,
    ) -> Result<(String, String), RenderError> {
        let time = TimeContext {
            zone: self.config.time_zone,
            rounding: self.config.rounding,
            local_now,
        };
        let mut dir = String::new();
        self.config
            .path
            .render(&e.headers, &time, &mut self.path_cache, &mut dir)?;
        let mut prefix = String::new();
        self.config
            .file_prefix
            .render(&e.headers, &time, &mut self.prefix_cache, &mut prefix)?;
        Ok((dir, prefix))
    }

    pub(super) fn file_names(&mut self, dir: &str, prefix: &str) -> (String, String) {
        self.counter += 1;
        let mut name = format!("{prefix}.{}{}", self.counter, self.config.file_suffix);
        if let Some(c) = self.config.codec {
            name.push_str(c.extension());
        }
        let in_use = format!(
            "{}{name}{}",
            self.config.in_use_prefix, self.config.in_use_suffix
        );
        (join(dir, &in_use), join(dir, &name))
    }

    pub(super) fn open_file(
        &mut self,
        key: &str,
        dir: &str,
        prefix: &str,
    ) -> Result<(), WriteError> {
        if self.open.len() >= self.config.max_open_files {
            self.close_least_recent()?;
        }
        let (fs, dir_path) = split_fs(dir);
        if !dir_path.starts_with('/') {
            return Err(WriteError::NotAbsolute {
                dir: dir.to_string(),
            });
        }
        let client = self.client(&fs, false)?;
        let encoder = FileEncoder::new(self.config.serializer, self.config.codec)?;
        // A name taken by an earlier run with a clock behind ours gets the next counter.
        for _ in 0..5 {
            let (in_use, target) = self.file_names(&dir_path, prefix);
            let opts = WriteOptions::default().create_parent(true).overwrite(false);
            let created = self.call(&format!("create {in_use}"), client.create(&in_use, &opts));
            match created {
                Ok(writer) => {
                    self.counters
                        .connection_created
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(sink = %self.name, file = %in_use, "Opened HDFS file.");
                    let now = Instant::now();
                    self.open.insert(
                        key.to_string(),
                        OpenFile {
                            fs,
                            in_use,
                            target,
                            writer,
                            encoder,
                            events: 0,
                            bytes: 0,
                            dirty: false,
                            opened: now,
                            last_write: now,
                            last_use: 0,
                        },
                    );
                    return Ok(());
                }
                Err(e) if e.exists() => continue,
                Err(e) => {
                    self.counters
                        .connection_failed
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(e.into());
                }
            }
        }
        Err(WriteError::NoFreeName {
            prefix: prefix.to_string(),
            dir: dir.to_string(),
        })
    }

    /// Writes and syncs what the encoder holds.
    pub(super) fn flush_file(&self, f: &mut OpenFile) -> Result<(), WriteError> {
        if !f.dirty {
            return Ok(());
        }
        let bytes = f.encoder.finish_batch()?;
        if !bytes.is_empty() {
            let what = format!("write {}", f.in_use);
            self.call(&what, f.writer.write_bytes(Bytes::from(bytes)))?;
        }
        self.call(&format!("hsync {}", f.in_use), f.writer.hsync())?;
        f.dirty = false;
        f.last_write = Instant::now();
        Ok(())
    }

    pub(super) fn write_batch(&mut self, events: &[Event]) -> Result<(), WriteError> {
        let local_now = self.config.use_local_timestamp.then(|| now_millis() as i64);
        let mut key = String::new();
        let mut last: Option<(String, String)> = None;
        let constant = self.config.path.is_literal() && self.config.file_prefix.is_literal();
        for e in events {
            // A path and prefix without escapes are the same for every event.
            if last.is_none() || !constant {
                let (dir, prefix) = self.bucket(e, local_now)?;
                if last.as_ref().is_none_or(|(d, p)| *d != dir || *p != prefix) {
                    key = format!("{dir}\u{0}{prefix}");
                    last = Some((dir, prefix));
                }
            }
            if !self.open.contains_key(&key) {
                let (d, p) = last.clone().unwrap_or_default();
                self.open_file(&key, &d, &p)?;
            }
            let (roll_count, roll_size) = (self.config.roll_count, self.config.roll_size);
            let should_roll = self.open.get(&key).is_some_and(|f| {
                (roll_count > 0 && f.events >= roll_count)
                    || (roll_size > 0 && f.bytes >= roll_size)
            });
            if should_roll {
                self.roll(&key)?;
                let (d, p) = last.clone().unwrap_or_default();
                self.open_file(&key, &d, &p)?;
            }
            self.use_clock += 1;
            let clock = self.use_clock;
            let needs_schema = self
                .open
                .get(&key)
                .is_some_and(|f| f.encoder.needs_schema());
            let schema = match e.headers.get(SCHEMA_URL_HEADER) {
                Some(url) if needs_schema && !e.headers.contains_key(SCHEMA_LITERAL_HEADER) => {
                    Some((url.to_string(), self.schema_at(url)?))
                }
                _ => None,
            };
            let Some(f) = self.open.get_mut(&key) else {
                return Err(WriteError::OpenFileVanished);
            };
            if let Some((url, literal)) = schema {
                f.encoder.set_schema(&literal, &url)?;
            }
            f.encoder.append(e)?;
            f.events += 1;
            f.bytes += e.body.len() as u64;
            f.dirty = true;
            f.last_use = clock;
        }
        let dirty: Vec<String> = self
            .open
            .iter()
            .filter(|(_, f)| f.dirty)
            .map(|(k, _)| k.clone())
            .collect();
        for k in dirty {
            let Some(mut f) = self.open.remove(&k) else {
                continue;
            };
            match self.flush_file(&mut f) {
                Ok(()) => {
                    self.open.insert(k, f);
                }
                Err(e) => {
                    self.retire(f, true);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Drops the encoded-but-unwritten part of a failed batch: the retry re-encodes it.
    pub(super) fn abandon_unwritten(&mut self) {
        let dirty: Vec<String> = self
            .open
            .iter()
            .filter(|(_, f)| f.dirty)
            .map(|(k, _)| k.clone())
            .collect();
        for k in dirty {
            if let Some(f) = self.open.remove(&k) {
                // Closing drops the unwritten part; what was synced stays.
                self.retire(f, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_file_system_and_path() {
        assert_eq!(
            split_fs("hdfs://nn:8020/a/b"),
            ("hdfs://nn:8020".into(), "/a/b".into())
        );
        assert_eq!(split_fs("hdfs://ns"), ("hdfs://ns".into(), "/".into()));
        assert_eq!(split_fs("/a/b"), (String::new(), "/a/b".into()));
        assert_eq!(join("/a/", "f"), "/a/f");
        assert_eq!(join("/a", "f"), "/a/f");
    }
}
