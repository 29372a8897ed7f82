use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::PositionEntry;

/// What is wrong with Flume's position JSON.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FlumeFormatError {
    #[error("not valid JSON ({0})")]
    Json(#[source] serde_json::Error),
    #[error("expected a JSON array of {{\"inode\", \"pos\", \"file\"}} objects")]
    NotArray,
    #[error("entry {entry}: missing `{key}`")]
    Missing { entry: usize, key: &'static str },
    #[error("entry {entry}: `{key}` must be a non-negative integer")]
    NotUnsigned { entry: usize, key: &'static str },
    #[error("entry {entry}: `file` must be a string")]
    FileNotString { entry: usize },
}

#[derive(Serialize, Deserialize)]
pub(super) struct FlumeEntry {
    pub(super) inode: u64,
    pub(super) pos: u64,
    pub(super) file: String,
}

#[derive(Serialize, Deserialize)]
pub(super) struct SidecarEntry {
    pub(super) inode: u64,
    pub(super) pos: u64,
    pub(super) file: String,
    pub(super) fp_len: u32,
    pub(super) fp_crc: u32,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Sidecar {
    pub(super) version: u32,
    pub(super) main_crc: u32,
    pub(super) prev_main_crc: Option<u32>,
    /// The snapshot generation that journal records follow.
    #[serde(default)]
    pub(super) generation: u64,
    pub(super) files: Vec<SidecarEntry>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct JournalRecord {
    pub(super) g: u64,
    pub(super) inode: u64,
    pub(super) pos: u64,
    pub(super) fp_len: u32,
    pub(super) fp_crc: u32,
    pub(super) file: String,
}

/// Parses Flume's position JSON. Unknown keys are ignored; a missing key is an error, as in
/// Flume.
pub(super) fn parse_flume(bytes: &[u8]) -> Result<Vec<PositionEntry>, FlumeFormatError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(FlumeFormatError::Json)?;
    let serde_json::Value::Array(items) = value else {
        return Err(FlumeFormatError::NotArray);
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = |k: &str| item.get(k).filter(|v| !v.is_null());
        let num = |key: &'static str| -> Result<u64, FlumeFormatError> {
            match field(key) {
                None => Err(FlumeFormatError::Missing { entry: i, key }),
                Some(v) => v
                    .as_u64()
                    .ok_or(FlumeFormatError::NotUnsigned { entry: i, key }),
            }
        };
        let inode = num("inode")?;
        let pos = num("pos")?;
        let file = match field("file") {
            Some(serde_json::Value::String(s)) => PathBuf::from(s),
            Some(_) => return Err(FlumeFormatError::FileNotString { entry: i }),
            None => {
                return Err(FlumeFormatError::Missing {
                    entry: i,
                    key: "file",
                });
            }
        };
        out.push(PositionEntry {
            inode,
            pos,
            file,
            fingerprint: None,
        });
    }
    Ok(out)
}
