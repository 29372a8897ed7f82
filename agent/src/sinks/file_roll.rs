//! `file_roll`: Flume's RollingFileSink. Writes events to files in `sink.directory`, starting a
//! new file every `sink.rollInterval` seconds.
//!
//! File names follow Flume's default path manager: `<prefix><start millis>-<n>[.<extension>]`.
//! Each batch is written and flushed to the OS before the take commits (`sink.fsync = true`
//! also fsyncs it). If the current file disappears (deleted or moved away) the next batch goes to
//! a new file rather than into an unlinked inode; if the directory cannot be written the batch
//! fails and is retried.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{ConfigError, MAX_ROLL_SECONDS, Props};
use crate::event::Event;
use crate::metrics::now_millis;
use crate::pipeline::{BoxError, Sink, SinkContext, SinkError, SinkSpec};

/// What the sink was doing with a file when it failed.
#[derive(Clone, Copy, Debug)]
enum FileOp {
    CreateDirectory,
    Open,
    Write,
    Flush,
}

impl std::fmt::Display for FileOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::CreateDirectory => "cannot create sink.directory",
            Self::Open => "cannot open",
            Self::Write => "cannot write",
            Self::Flush => "cannot flush",
        })
    }
}

/// An I/O failure on one of the sink's files; the cause of its [`SinkError::Failed`].
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", path.display())]
struct FileRollError {
    what: FileOp,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileRollConfig {
    /// `sink.directory` (required).
    pub(crate) directory: PathBuf,
    /// `sink.rollInterval` seconds, 0 = never roll (default 30).
    pub(crate) roll_interval: Duration,
    /// `sink.pathManager.prefix` (default empty).
    pub(crate) prefix: String,
    /// `sink.pathManager.extension` (default empty).
    pub(crate) extension: String,
    /// `sink.serializer.appendNewline` (default true).
    pub(crate) append_newline: bool,
    /// `sink.batchSize` (default 100).
    pub(crate) batch_size: usize,
    /// `sink.fsync` (sluice; default false): fsync every batch before committing.
    pub(crate) fsync: bool,
    /// `sink.serializer = header_and_text`: `{k=v, k2=v2} ` before each body.
    pub(crate) headers: bool,
}

impl FileRollConfig {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
        p.choice(
            "sink.pathManager",
            "default",
            &[(&["default", "DEFAULT"], "default")],
        )?;
        let headers = p.choice(
            "sink.serializer",
            false,
            &[
                (
                    &[
                        "TEXT",
                        "org.apache.flume.serialization.BodyTextEventSerializer$Builder",
                    ],
                    false,
                ),
                (
                    &[
                        "header_and_text",
                        "org.apache.flume.serialization.HeaderAndBodyTextEventSerializer$Builder",
                    ],
                    true,
                ),
            ],
        )?;
        Ok(Self {
            directory: PathBuf::from(p.required("sink.directory")?),
            roll_interval: p.seconds("sink.rollInterval", 30, 0..=MAX_ROLL_SECONDS)?,
            prefix: p.string("sink.pathManager.prefix", ""),
            extension: p.string("sink.pathManager.extension", ""),
            append_newline: p.bool("sink.serializer.appendNewline", true)?,
            batch_size: super::batch_size(p, "sink.batchSize")?,
            fsync: p.bool("sink.fsync", false)?,
            headers,
        })
    }
}

struct OpenFile {
    path: PathBuf,
    writer: BufWriter<File>,
    ino: u64,
    opened: Instant,
}

pub(crate) struct FileRollSink {
    name: String,
    config: FileRollConfig,
    series: u64,
    index: u64,
    current: Option<OpenFile>,
}

impl FileRollSink {
    pub(crate) fn new(name: &str, config: FileRollConfig) -> Self {
        Self {
            name: name.to_string(),
            config,
            series: now_millis(),
            index: 0,
            current: None,
        }
    }

    fn err(&self, message: String) -> SinkError {
        SinkError::Delivery {
            sink: self.name.clone(),
            message,
        }
    }

    /// The sink's error for an I/O failure on `path`, which stays its source.
    fn io_failed(&self, what: FileOp, path: &Path, source: std::io::Error) -> SinkError {
        SinkError::Failed {
            sink: self.name.clone(),
            cause: Arc::new(FileRollError {
                what,
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    fn next_path(&mut self) -> PathBuf {
        self.index += 1;
        let mut name = format!("{}{}-{}", self.config.prefix, self.series, self.index);
        if !self.config.extension.is_empty() {
            name.push('.');
            name.push_str(&self.config.extension);
        }
        self.config.directory.join(name)
    }

    fn close_current(&mut self) -> Result<(), SinkError> {
        if let Some(mut f) = self.current.take() {
            f.writer
                .flush()
                .map_err(|e| self.io_failed(FileOp::Flush, &f.path, e))?;
        }
        Ok(())
    }

    /// Rolls when the interval passed, and reopens when the file vanished.
    fn ensure_open(&mut self) -> Result<(), SinkError> {
        if let Some(f) = &self.current {
            let expired = !self.config.roll_interval.is_zero()
                && f.opened.elapsed() >= self.config.roll_interval;
            let vanished = std::fs::metadata(&f.path).map_or(true, |m| m.ino() != f.ino);
            if vanished {
                tracing::warn!(sink = %self.name, file = %f.path.display(),
                    "Output file was removed or replaced; starting a new file.");
            }
            if expired || vanished {
                self.close_current()?;
            }
        }
        if self.current.is_none() {
            std::fs::create_dir_all(&self.config.directory)
                .map_err(|e| self.io_failed(FileOp::CreateDirectory, &self.config.directory, e))?;
            let path = self.next_path();
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| self.io_failed(FileOp::Open, &path, e))?;
            let ino = file.metadata().map(|m| m.ino()).unwrap_or(0);
            tracing::debug!(sink = %self.name, file = %path.display(), "Opened output file.");
            self.current = Some(OpenFile {
                path,
                writer: BufWriter::with_capacity(256 * 1024, file),
                ino,
                opened: Instant::now(),
            });
        }
        Ok(())
    }
}

impl Sink for FileRollSink {
    fn start(&mut self) -> Result<(), SinkError> {
        self.ensure_open()
    }

    fn deliver(&mut self, events: &[Event]) -> Result<(), SinkError> {
        self.ensure_open()?;
        let newline = self.config.append_newline;
        let fsync = self.config.fsync;
        let with_headers = self.config.headers;
        let Some(f) = self.current.as_mut() else {
            return Err(self.err("no open file".into()));
        };
        let result = (|| {
            for e in events {
                if with_headers {
                    f.writer.write_all(b"{")?;
                    for (i, (k, v)) in e.headers.iter().enumerate() {
                        if i > 0 {
                            f.writer.write_all(b", ")?;
                        }
                        write!(f.writer, "{k}={v}")?;
                    }
                    f.writer.write_all(b"} ")?;
                }
                f.writer.write_all(&e.body)?;
                if newline {
                    f.writer.write_all(b"\n")?;
                }
            }
            f.writer.flush()?;
            if fsync {
                f.writer.get_ref().sync_data()?;
            }
            Ok::<(), std::io::Error>(())
        })();
        if let Err(e) = result {
            let path = f.path.clone();
            // A partly written batch stays in the old file; the retry goes to a fresh one.
            self.current = None;
            return Err(self.io_failed(FileOp::Write, &path, e));
        }
        Ok(())
    }

    fn idle(&mut self) -> Result<(), SinkError> {
        if let Some(f) = &self.current
            && !self.config.roll_interval.is_zero()
            && f.opened.elapsed() >= self.config.roll_interval
        {
            self.close_current()?;
            self.ensure_open()?;
        }
        Ok(())
    }

    fn stop(&mut self) {
        if let Err(e) = self.close_current() {
            tracing::error!(error = %e, "Closing output file failed.");
        }
    }
}

impl SinkSpec for FileRollConfig {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn build(&self, cx: &SinkContext) -> Result<Box<dyn Sink>, BoxError> {
        Ok(Box::new(FileRollSink::new(&cx.cx.name, self.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path) -> FileRollConfig {
        FileRollConfig {
            directory: dir.to_path_buf(),
            roll_interval: Duration::ZERO,
            prefix: "p-".into(),
            extension: "log".into(),
            append_newline: true,
            batch_size: 10,
            fsync: false,
            headers: false,
        }
    }

    fn read_all(dir: &std::path::Path) -> String {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect()
    }

    #[test]
    fn writes_lines_and_names_files_like_flume() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut s = FileRollSink::new("k1", config(dir.path()));
        s.start()?;
        s.deliver(&[Event::new("a"), Event::new("b")])?;
        s.stop();
        assert_eq!(read_all(dir.path()), "a\nb\n");
        let name = std::fs::read_dir(dir.path())?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .next()
            .unwrap_or_default();
        assert!(name.starts_with("p-") && name.ends_with("-1.log"), "{name}");
        Ok(())
    }

    #[test]
    fn vanished_file_gets_replaced_and_missing_dir_fails() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("out");
        let mut s = FileRollSink::new("k1", config(&out));
        s.deliver(&[Event::new("a")])?;
        std::fs::remove_dir_all(&out)?;
        std::fs::write(&out, "I am a file now")?;
        assert!(s.deliver(&[Event::new("b")]).is_err());
        std::fs::remove_file(&out)?;
        s.deliver(&[Event::new("b")])?;
        s.stop();
        assert_eq!(read_all(&out), "b\n");
        Ok(())
    }
}
