use std::time::Duration;

use hdfs_native::HdfsError;

use super::format::FormatError;
use super::path::RenderError;

#[derive(Debug, thiserror::Error)]
pub(super) enum CallError {
    #[error("{what}: {source}")]
    Failed { what: String, source: HdfsError },
    #[error("{what}: the sink is not started")]
    NotStarted { what: String },
    #[error("{what}: no answer within hdfs.callTimeout ({timeout:?})")]
    TimedOut { what: String, timeout: Duration },
}

impl CallError {
    /// The path was missing.
    pub(super) fn not_found(&self) -> bool {
        match self {
            Self::Failed { source, .. } => match source {
                HdfsError::FileNotFound(_) => true,
                HdfsError::RPCError(class, _) => class.ends_with("FileNotFoundException"),
                _ => false,
            },
            _ => false,
        }
    }

    /// The path was already there.
    pub(super) fn exists(&self) -> bool {
        match self {
            Self::Failed { source, .. } => match source {
                HdfsError::AlreadyExists(_) => true,
                HdfsError::RPCError(class, _) => class.ends_with("FileAlreadyExistsException"),
                _ => false,
            },
            _ => false,
        }
    }
}

/// Why writing a batch, rolling, closing or recovering a file failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum WriteError {
    #[error("the sink is not started")]
    NotStarted,
    #[error("cannot start the HDFS runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot create an HDFS client for {fs}: {source}")]
    Client { fs: String, source: HdfsError },
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("hdfs.path `{dir}` is not absolute")]
    NotAbsolute { dir: String },
    #[error("cannot find a free file name for prefix `{prefix}` in {dir}")]
    NoFreeName { prefix: String, dir: String },
    #[error("cannot read the Avro schema at {url} (flume.avro.schema.url): {message}")]
    SchemaUrl { url: String, message: String },
    #[error("internal: the open file vanished")]
    OpenFileVanished,
}
