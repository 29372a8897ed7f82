use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ConfigError, MAX_BATCH, MAX_MILLIS, Props};
use crate::pipeline::{BoxError, PollConfig, SourceContext, SourceInstance, SourceSpec};

use super::file_group::FileGroup;
use super::source::TaildirSource;
use super::tail_file::{LineLimits, LongLinePolicy};

#[derive(Clone, Debug)]
pub(crate) struct TaildirConfig {
    /// `filegroups` and `filegroups.<g>` (required), with `headers.<g>.<key>`.
    pub(crate) groups: Vec<FileGroup>,
    /// `positionFile` (default `~/.flume/taildir_position.json`).
    pub(crate) position_file: PathBuf,
    /// `byteOffsetHeader`: add the line's offset as header `byteoffset` (default false).
    pub(crate) byte_offset_header: bool,
    /// `skipToEnd`: files found at start and absent from the position file are read from their
    /// end (default false).
    pub(crate) skip_to_end: bool,
    /// `idleTimeout` ms: close a file not grown for this long (default 120000).
    pub(crate) idle_timeout: Duration,
    /// `writePosInterval` ms: save positions this often; 0 = after every batch (default 3000).
    pub(crate) write_pos_interval: Duration,
    /// `batchSize` (default 100).
    pub(crate) batch_size: usize,
    /// `maxBatchCount`: batches read from one file in a row (default unlimited).
    pub(crate) max_batch_count: u64,
    /// `cachePatternMatching` (default true).
    pub(crate) cache_pattern_matching: bool,
    /// `fileHeader`: add the file's absolute path as a header (default false).
    pub(crate) file_header: bool,
    /// `fileHeaderKey` (default `file`).
    pub(crate) file_header_key: String,
    /// sluice: `maxLineLength` bytes (default 1048576) and `longLinePolicy` (`split`, default,
    /// or `truncate`).
    pub(crate) line_limits: LineLimits,
    /// sluice: `maxOpenFiles`, descriptors held at most (default 1000).
    pub(crate) max_open_files: usize,
    pub(crate) poll: PollConfig,
}

fn default_position_file() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".flume").join("taildir_position.json")
}

impl TaildirConfig {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
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

impl SourceSpec for TaildirConfig {
    fn build(&self, cx: &SourceContext) -> Result<SourceInstance, BoxError> {
        let source = TaildirSource::new(&cx.cx.name, self.clone())?;
        Ok(SourceInstance::Polled(Box::new(source), self.poll.clone()))
    }
}
