//! `hdfs` sink configuration: Flume's `hdfs.*` keys, defaults and checks (pure, no I/O).

use std::time::Duration;

use super::path::{PathTemplate, RoundUnit, Rounding};
use crate::config::{ConfigError, MAX_MILLIS, MAX_ROLL_SECONDS, MAX_SECONDS, Props};

/// `hdfs.fileType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileType {
    /// Serializer output as is.
    DataStream,
    /// Serializer output through `hdfs.codeC`.
    CompressedStream,
    /// Hadoop SequenceFile (uncompressed) of `LongWritable` timestamp keys.
    SequenceFile,
}

/// `hdfs.codeC` (CompressedStream only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Codec {
    Gzip,
    Bzip2,
    Snappy,
}

impl Codec {
    /// Hadoop's default extension of the codec, which Flume appends when `hdfs.fileSuffix` is
    /// empty (and by which Hadoop's `CompressionCodecFactory` picks the codec to read with).
    pub(crate) fn extension(self) -> &'static str {
        match self {
            Self::Gzip => ".gz",
            Self::Bzip2 => ".bz2",
            Self::Snappy => ".snappy",
        }
    }
}

/// `serializer.compressionCodec` of `avro_event`: the Avro container's block codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AvroFileCodec {
    Null,
    Deflate,
    Snappy,
}

/// `serializer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Serializer {
    /// `text`: the body, then a newline when `serializer.appendNewline`.
    Text { append_newline: bool },
    /// `header_and_text`: `{k=v, ...} ` before the body.
    HeaderAndText { append_newline: bool },
    /// `avro_event`: an Avro object container file of Flume events.
    AvroEvent {
        codec: AvroFileCodec,
        sync_interval: usize,
    },
    /// `org.apache.flume.sink.hdfs.AvroEventSerializer$Builder`: each body is one Avro datum
    /// of the schema in the first event's `flume.avro.schema.literal` header, written into an
    /// Avro container as it is.
    AvroBody {
        codec: AvroFileCodec,
        sync_interval: usize,
    },
    /// `hdfs.fileType = SequenceFile`: values are `BytesWritable` (`hdfs.writeFormat =
    /// Writable`) or `Text` (`Text`) bodies.
    SequenceFile { text: bool },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HdfsConfig {
    /// `hdfs.path` (required): directory, with escapes; `hdfs://nn:port/dir`, `hdfs://ns/dir`
    /// or `/dir` (resolved against `fs.defaultFS` from `HADOOP_CONF_DIR`).
    pub(crate) path: PathTemplate,
    /// `hdfs.filePrefix` (default `FlumeData`), with escapes.
    pub(crate) file_prefix: PathTemplate,
    /// `hdfs.fileSuffix` (default empty; the codec's extension when compressed).
    pub(crate) file_suffix: String,
    /// `hdfs.inUsePrefix` (default empty).
    pub(crate) in_use_prefix: String,
    /// `hdfs.inUseSuffix` (default `.tmp`; empty with `hdfs.emptyInUseSuffix = true`).
    pub(crate) in_use_suffix: String,
    /// `hdfs.rollInterval` seconds, 0 = never (default 30).
    pub(crate) roll_interval: Duration,
    /// `hdfs.rollSize` body bytes, 0 = never (default 1024).
    pub(crate) roll_size: u64,
    /// `hdfs.rollCount` events, 0 = never (default 10).
    pub(crate) roll_count: u64,
    /// `hdfs.idleTimeout` seconds, 0 = never (default 0).
    pub(crate) idle_timeout: Duration,
    /// `hdfs.batchSize` (default 100).
    pub(crate) batch_size: usize,
    /// `hdfs.fileType` (default `SequenceFile`).
    pub(crate) file_type: FileType,
    /// `hdfs.codeC`.
    pub(crate) codec: Option<Codec>,
    /// `serializer` (default `text`).
    pub(crate) serializer: Serializer,
    /// `hdfs.round`, `hdfs.roundValue`, `hdfs.roundUnit`.
    pub(crate) rounding: Option<Rounding>,
    /// `hdfs.timeZone` (default: the local time zone).
    pub(crate) time_zone: Option<chrono_tz::Tz>,
    /// `hdfs.useLocalTimeStamp` (default false).
    pub(crate) use_local_timestamp: bool,
    /// `hdfs.closeTries`, 0 = until it works (default 0).
    pub(crate) close_tries: u32,
    /// `hdfs.retryInterval` seconds between close/rename attempts (default 180).
    pub(crate) retry_interval: Duration,
    /// `hdfs.callTimeout` ms for each HDFS call (default 30000).
    pub(crate) call_timeout: Duration,
    /// `hdfs.maxOpenFiles` (default 5000).
    pub(crate) max_open_files: usize,
    /// `hdfs.kerberosPrincipal`, `hdfs.kerberosKeytab`.
    pub(crate) kerberos_principal: Option<String>,
    pub(crate) kerberos_keytab: Option<String>,
    /// `hdfs.proxyUser`: the user files are written as.
    pub(crate) user: Option<String>,
}

/// Flume keys that configure things sluice does itself or differently; read and ignored.
const IGNORED: &[&str] = &[
    "hdfs.threadsPoolSize",
    "hdfs.rollTimerPoolSize",
    "hdfs.minBlockReplicas",
];

impl HdfsConfig {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
        for k in IGNORED {
            let _ = p.get(k);
        }
        let path = PathTemplate::parse(&p.required("hdfs.path")?)
            .map_err(|m| p.error("hdfs.path", m.to_string()))?;
        let file_prefix = PathTemplate::parse(&p.string("hdfs.filePrefix", "FlumeData"))
            .map_err(|m| p.error("hdfs.filePrefix", m.to_string()))?;
        let (file_type, codec) = file_type_and_codec(p)?;
        let serializer = serializer(p, file_type)?;
        let rounding = rounding(p)?;
        let time_zone = time_zone(p)?;
        let in_use_suffix = in_use_suffix(p)?;
        let call_timeout = p.millis("hdfs.callTimeout", 30_000, 1..=MAX_MILLIS)?;
        if call_timeout.is_zero() {
            return Err(p.error("hdfs.callTimeout", "must be greater than 0"));
        }
        Ok(Self {
            path,
            file_prefix,
            file_suffix: p.string("hdfs.fileSuffix", ""),
            in_use_prefix: p.string("hdfs.inUsePrefix", ""),
            in_use_suffix,
            roll_interval: p.seconds("hdfs.rollInterval", 30, 0..=MAX_ROLL_SECONDS)?,
            roll_size: p.int("hdfs.rollSize", 1024u64, 0..=1 << 40)?,
            roll_count: p.int("hdfs.rollCount", 10u64, 0..=1 << 40)?,
            idle_timeout: p.seconds("hdfs.idleTimeout", 0, 0..=MAX_ROLL_SECONDS)?,
            batch_size: super::super::batch_size(p, "hdfs.batchSize")?,
            file_type,
            codec,
            serializer,
            rounding,
            time_zone,
            use_local_timestamp: p.bool("hdfs.useLocalTimeStamp", false)?,
            close_tries: p.int("hdfs.closeTries", 0, 0..=10_000)?,
            retry_interval: p.seconds("hdfs.retryInterval", 180, 0..=MAX_SECONDS)?,
            call_timeout,
            max_open_files: p.int("hdfs.maxOpenFiles", 5000, 1..=1_000_000)?,
            kerberos_principal: p.get("hdfs.kerberosPrincipal").map(str::to_string),
            kerberos_keytab: p.get("hdfs.kerberosKeytab").map(str::to_string),
            user: p
                .get("hdfs.proxyUser")
                .filter(|v| !v.is_empty())
                .map(str::to_string),
        })
    }
}

/// `hdfs.fileType` and the `hdfs.codeC` it allows.
fn file_type_and_codec(p: &Props) -> Result<(FileType, Option<Codec>), ConfigError> {
    let file_type = p.choice(
        "hdfs.fileType",
        FileType::SequenceFile,
        &[
            (&["SequenceFile"], FileType::SequenceFile),
            (&["DataStream"], FileType::DataStream),
            (&["CompressedStream"], FileType::CompressedStream),
        ],
    )?;
    let codec = p.choice(
        "hdfs.codeC",
        None,
        &[
            (
                &[
                    "gzip",
                    "org.apache.hadoop.io.compress.GzipCodec",
                    "GzipCodec",
                ],
                Some(Codec::Gzip),
            ),
            (
                &[
                    "bzip2",
                    "org.apache.hadoop.io.compress.BZip2Codec",
                    "BZip2Codec",
                ],
                Some(Codec::Bzip2),
            ),
            (
                &[
                    "snappy",
                    "org.apache.hadoop.io.compress.SnappyCodec",
                    "SnappyCodec",
                ],
                Some(Codec::Snappy),
            ),
        ],
    )?;
    let codec = match (file_type, codec) {
        (FileType::CompressedStream, None) => {
            return Err(p.error(
                "hdfs.codeC",
                "is required with `hdfs.fileType = CompressedStream` (accepted: gzip, bzip2, snappy)",
            ));
        }
        // Flume ignores the codec for DataStream files; so does sluice.
        (FileType::DataStream, Some(_)) => None,
        (FileType::SequenceFile, Some(_)) => {
            return Err(p.error(
                "hdfs.codeC",
                "compressed SequenceFiles are not supported by sluice; use \
                 `hdfs.fileType = CompressedStream` or no codec (see docs/hdfs.md)",
            ));
        }
        (_, c) => c,
    };
    Ok((file_type, codec))
}

/// `serializer` and its `serializer.*` keys, or `hdfs.writeFormat` for SequenceFiles.
fn serializer(p: &Props, file_type: FileType) -> Result<Serializer, ConfigError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Named {
        Text,
        HeaderAndText,
        AvroEvent,
        AvroBody,
    }
    let named = p.choice(
        "serializer",
        Named::Text,
        &[
            (
                &[
                    "text",
                    "org.apache.flume.serialization.BodyTextEventSerializer$Builder",
                ],
                Named::Text,
            ),
            (
                &[
                    "header_and_text",
                    "org.apache.flume.serialization.HeaderAndBodyTextEventSerializer$Builder",
                ],
                Named::HeaderAndText,
            ),
            (
                &[
                    "avro_event",
                    "org.apache.flume.serialization.FlumeEventAvroEventSerializer$Builder",
                ],
                Named::AvroEvent,
            ),
            (
                &["org.apache.flume.sink.hdfs.AvroEventSerializer$Builder"],
                Named::AvroBody,
            ),
        ],
    )?;
    let append_newline = p.bool("serializer.appendNewline", true)?;
    let sequence_text = p.choice(
        "hdfs.writeFormat",
        false,
        &[(&["Writable"], false), (&["Text"], true)],
    )?;
    Ok(match named {
        _ if file_type == FileType::SequenceFile => Serializer::SequenceFile {
            text: sequence_text,
        },
        Named::Text => Serializer::Text { append_newline },
        Named::HeaderAndText => Serializer::HeaderAndText { append_newline },
        Named::AvroEvent => Serializer::AvroEvent {
            codec: avro_codec(p)?,
            sync_interval: p.int("serializer.syncIntervalBytes", 2_048_000, 1..=1 << 30)?,
        },
        Named::AvroBody => Serializer::AvroBody {
            codec: avro_codec(p)?,
            sync_interval: p.int("serializer.syncIntervalBytes", 2_048_000, 1..=1 << 30)?,
        },
    })
}

fn avro_codec(p: &Props) -> Result<AvroFileCodec, ConfigError> {
    p.choice(
        "serializer.compressionCodec",
        AvroFileCodec::Null,
        &[
            (&["null"], AvroFileCodec::Null),
            (&["deflate"], AvroFileCodec::Deflate),
            (&["snappy"], AvroFileCodec::Snappy),
        ],
    )
}

/// `hdfs.round`, `hdfs.roundUnit` and `hdfs.roundValue` (checked even when rounding is off).
fn rounding(p: &Props) -> Result<Option<Rounding>, ConfigError> {
    let round = p.bool("hdfs.round", false)?;
    let unit = p.choice(
        "hdfs.roundUnit",
        RoundUnit::Second,
        &[
            (&["second"], RoundUnit::Second),
            (&["minute"], RoundUnit::Minute),
            (&["hour"], RoundUnit::Hour),
        ],
    )?;
    let value = p.int("hdfs.roundValue", 1u64, 1..=86_400)?;
    let max = match unit {
        RoundUnit::Second | RoundUnit::Minute => 60,
        RoundUnit::Hour => 24,
    };
    if value > max {
        return Err(p.error(
            "hdfs.roundValue",
            format!("must be at most {max} for hdfs.roundUnit {unit:?}"),
        ));
    }
    Ok(round.then_some(Rounding { unit, value }))
}

/// `hdfs.timeZone`: an IANA name, or the local time zone when unset.
fn time_zone(p: &Props) -> Result<Option<chrono_tz::Tz>, ConfigError> {
    match p.get("hdfs.timeZone").filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse::<chrono_tz::Tz>().map(Some).map_err(|_| {
            p.error(
                "hdfs.timeZone",
                format!("unknown time zone `{v}`; expected an IANA name like Europe/Paris"),
            )
        }),
    }
}

/// `hdfs.inUseSuffix`, or none with `hdfs.emptyInUseSuffix`.
fn in_use_suffix(p: &Props) -> Result<String, ConfigError> {
    Ok(if p.bool("hdfs.emptyInUseSuffix", false)? {
        let _ = p.get("hdfs.inUseSuffix");
        String::new()
    } else {
        p.string("hdfs.inUseSuffix", ".tmp")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<HdfsConfig, ConfigError> {
        HdfsConfig::from_props(&Props::from_pairs(pairs))
    }

    #[test]
    fn flume_defaults() -> Result<(), ConfigError> {
        let c = parse(&[
            ("hdfs.path", "hdfs://nn/flume"),
            ("hdfs.fileType", "DataStream"),
        ])?;
        assert_eq!(c.file_prefix.source(), "FlumeData");
        assert_eq!(c.in_use_suffix, ".tmp");
        assert_eq!(c.roll_interval, Duration::from_secs(30));
        assert_eq!((c.roll_size, c.roll_count, c.batch_size), (1024, 10, 100));
        assert_eq!(c.call_timeout, Duration::from_secs(30));
        assert_eq!(
            c.serializer,
            Serializer::Text {
                append_newline: true
            }
        );
        assert_eq!(c.rounding, None);
        Ok(())
    }

    #[test]
    fn rejects_what_sluice_cannot_do() {
        let c = parse(&[("hdfs.path", "/x")]);
        assert!(c.is_ok_and(|c| c.file_type == FileType::SequenceFile
            && c.serializer == Serializer::SequenceFile { text: false }));
        let e = parse(&[("hdfs.path", "/x"), ("hdfs.codeC", "gzip")]);
        assert!(
            e.err()
                .is_some_and(|e| e.to_string().contains("SequenceFile"))
        );
        let e = parse(&[("hdfs.path", "/x"), ("hdfs.fileType", "CompressedStream")]);
        assert!(e.is_err());
        let e = parse(&[
            ("hdfs.path", "/x"),
            ("hdfs.fileType", "CompressedStream"),
            ("hdfs.codeC", "lzo"),
        ]);
        assert!(
            e.err()
                .is_some_and(|e| e.to_string().contains("hdfs.codeC"))
        );
        let e = parse(&[("hdfs.path", "/x/%Q"), ("hdfs.fileType", "DataStream")]);
        assert!(e.err().is_some_and(|e| e.to_string().contains("hdfs.path")));
        let e = parse(&[
            ("hdfs.path", "/x"),
            ("hdfs.fileType", "DataStream"),
            ("hdfs.timeZone", "Mars/Olympus"),
        ]);
        assert!(
            e.err()
                .is_some_and(|e| e.to_string().contains("hdfs.timeZone"))
        );
    }
}
