use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;

use super::charset::{Charset, DecodeErrorPolicy};
use super::source::SpoolDirSource;
use crate::config::{ConfigError, MAX_BATCH, MAX_MILLIS, Props};
use crate::pipeline::{BoxError, PollConfig, SourceContext, SourceInstance, SourceSpec};

/// `deletePolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeletePolicy {
    Never,
    Immediate,
}

/// `trackingPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TrackingPolicy {
    /// Rename a done file to `<name><fileSuffix>`.
    Rename,
    /// Leave it and create `<trackerDir>/<path below spoolDir><fileSuffix>`.
    TrackerDir,
}

/// `consumeOrder`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConsumeOrder {
    Oldest,
    Youngest,
    Random,
}

/// `deserializer.schemaType` of the Avro deserializer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SchemaType {
    Hash,
    Literal,
}

/// `deserializer` and its `deserializer.*` keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DeserializerConfig {
    /// `LINE` (default): `deserializer.maxLineLength` (2048 characters),
    /// `deserializer.outputCharset` (UTF-8).
    Line {
        max_line_length: usize,
        output_charset: Charset,
    },
    /// `AVRO`: `deserializer.schemaType` (HASH).
    Avro { schema_type: SchemaType },
    /// `org.apache.flume.sink.solr.morphline.BlobDeserializer$Builder`:
    /// `deserializer.maxBlobLength` (100000000 bytes).
    Blob { max_blob_length: usize },
}

/// `type = spooldir`.
#[derive(Clone, Debug)]
pub(crate) struct SpoolDirConfig {
    /// `spoolDir` (required), as written: tracker targets are this joined with a file's path.
    pub(crate) spool_dir: PathBuf,
    /// `fileSuffix` (default `.COMPLETED`).
    pub(crate) file_suffix: String,
    /// `deletePolicy` (default never).
    pub(crate) delete_policy: DeletePolicy,
    /// `fileHeader` (default false) and `fileHeaderKey` (default `file`).
    pub(crate) file_header: Option<String>,
    /// `basenameHeader` (default false) and `basenameHeaderKey` (default `basename`).
    pub(crate) basename_header: Option<String>,
    /// `includePattern` (default `^.*$`), matched against the whole file name.
    pub(crate) include: Regex,
    /// `ignorePattern` (default `^$`), matched against the whole file (or directory) name.
    pub(crate) ignore: Regex,
    /// `trackerDir` (default `.flumespool`, relative to `spoolDir`).
    pub(crate) tracker_dir: PathBuf,
    /// `trackingPolicy` (default rename).
    pub(crate) tracking_policy: TrackingPolicy,
    /// `consumeOrder` (default oldest).
    pub(crate) consume_order: ConsumeOrder,
    /// `pollDelay` ms: the wait when no file is ready (default 500).
    pub(crate) poll_delay: Duration,
    /// `recursiveDirectorySearch` (default false).
    pub(crate) recursive: bool,
    /// `maxBackoff` ms: the longest wait between two tries of a batch the channel refused
    /// (default 4000; the first wait is 250 ms, doubling).
    pub(crate) max_backoff: Duration,
    /// `batchSize` (default 100).
    pub(crate) batch_size: usize,
    /// `inputCharset` (default UTF-8).
    pub(crate) input_charset: Charset,
    /// `decodeErrorPolicy` (default FAIL).
    pub(crate) decode_error_policy: DecodeErrorPolicy,
    pub(crate) deserializer: DeserializerConfig,
}

/// Java's `Pattern.matches`: the whole name must match.
fn whole(p: &Props, key: &str, default: &str) -> Result<Regex, ConfigError> {
    let pat = p.string(key, default);
    Regex::new(&format!("^(?:{pat})$"))
        .map_err(|e| p.error(key, format!("invalid regular expression `{pat}`: {e}")))
}

impl SpoolDirConfig {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
        let spool_dir = PathBuf::from(p.required("spoolDir")?);
        let file_suffix = p.string("fileSuffix", ".COMPLETED");
        if file_suffix.is_empty() {
            return Err(p.error(
                "fileSuffix",
                "must not be empty (every file would look completed)",
            ));
        }
        let header =
            |flag: &str, key: &str, default: &str| -> Result<Option<String>, ConfigError> {
                let on = p.bool(flag, false)?;
                let k = p.string(key, default);
                Ok(on.then_some(k))
            };
        let file_header = header("fileHeader", "fileHeaderKey", "file")?;
        let basename_header = header("basenameHeader", "basenameHeaderKey", "basename")?;
        let deserializer = Self::deserializer(p)?;
        Ok(Self {
            spool_dir,
            file_suffix,
            delete_policy: p.choice(
                "deletePolicy",
                DeletePolicy::Never,
                &[
                    (&["never"], DeletePolicy::Never),
                    (&["immediate"], DeletePolicy::Immediate),
                ],
            )?,
            file_header,
            basename_header,
            include: whole(p, "includePattern", "^.*$")?,
            ignore: whole(p, "ignorePattern", "^$")?,
            tracker_dir: PathBuf::from(p.string("trackerDir", ".flumespool")),
            tracking_policy: p.choice(
                "trackingPolicy",
                TrackingPolicy::Rename,
                &[
                    (&["rename"], TrackingPolicy::Rename),
                    (&["tracker_dir"], TrackingPolicy::TrackerDir),
                ],
            )?,
            consume_order: p.choice(
                "consumeOrder",
                ConsumeOrder::Oldest,
                &[
                    (&["oldest"], ConsumeOrder::Oldest),
                    (&["youngest"], ConsumeOrder::Youngest),
                    (&["random"], ConsumeOrder::Random),
                ],
            )?,
            poll_delay: p.millis("pollDelay", 500, 1..=MAX_MILLIS)?,
            recursive: p.bool("recursiveDirectorySearch", false)?,
            max_backoff: p.millis("maxBackoff", 4000, 1..=MAX_MILLIS)?,
            batch_size: p.int("batchSize", 100, 1..=MAX_BATCH)?,
            input_charset: Charset::from_props(p, "inputCharset", Charset::Utf8)?,
            decode_error_policy: DecodeErrorPolicy::from_props(p)?,
            deserializer,
        })
    }

    fn deserializer(p: &Props) -> Result<DeserializerConfig, ConfigError> {
        const LINE: &[&str] = &[
            "LINE",
            "org.apache.flume.serialization.LineDeserializer$Builder",
        ];
        const AVRO: &[&str] = &[
            "AVRO",
            "org.apache.flume.serialization.AvroEventDeserializer$Builder",
        ];
        const BLOB: &[&str] = &["org.apache.flume.sink.solr.morphline.BlobDeserializer$Builder"];
        let name = p.string("deserializer", "LINE");
        let is = |names: &[&str]| names.iter().any(|n| n.eq_ignore_ascii_case(&name));
        if is(LINE) {
            // Flume's deprecated `bufferMaxLineLength` sets the line deserializer's limit.
            let default = p.int("bufferMaxLineLength", 2048, 1..=1 << 28)?;
            Ok(DeserializerConfig::Line {
                max_line_length: p.int("deserializer.maxLineLength", default, 1..=1 << 28)?,
                output_charset: Charset::from_props(
                    p,
                    "deserializer.outputCharset",
                    Charset::Utf8,
                )?,
            })
        } else if is(AVRO) {
            Ok(DeserializerConfig::Avro {
                schema_type: p.choice(
                    "deserializer.schemaType",
                    SchemaType::Hash,
                    &[
                        (&["HASH"], SchemaType::Hash),
                        (&["LITERAL"], SchemaType::Literal),
                    ],
                )?,
            })
        } else if is(BLOB) {
            Ok(DeserializerConfig::Blob {
                max_blob_length: p.int(
                    "deserializer.maxBlobLength",
                    100_000_000,
                    1..=i32::MAX as usize,
                )?,
            })
        } else {
            Err(p.error(
                "deserializer",
                format!(
                    "unsupported deserializer `{name}`; accepted: LINE, AVRO, {}",
                    BLOB[0]
                ),
            ))
        }
    }

    /// The channel backoff's first wait: Flume's 250 ms (or `maxBackoff` if shorter).
    pub(crate) fn first_backoff(&self) -> Duration {
        Duration::from_millis(250).min(self.max_backoff)
    }
}

impl SourceSpec for SpoolDirConfig {
    fn build(&self, cx: &SourceContext) -> Result<SourceInstance, BoxError> {
        let source = SpoolDirSource::new(&cx.cx.name, self.clone())?;
        // The source waits itself (`pollDelay`, `maxBackoff`); these only bound the runner's.
        let poll = PollConfig {
            backoff_increment: self.poll_delay,
            max_backoff: self.max_backoff.max(self.poll_delay),
        };
        Ok(SourceInstance::Polled(Box::new(source), poll))
    }
}
