//! `a1.channels.c1.*` for `type = file`: keys, defaults and their checks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::crypto::Encryption;
use crate::config::{ConfigError, MAX_BATCH, MAX_MILLIS, MAX_SECONDS, Props};

/// Flume's default and upper bound for `maxFileSize` (`Integer.MAX_VALUE - 500 MB`).
pub(crate) const MAX_FILE_SIZE: u64 = i32::MAX as u64 - 500 * 1024 * 1024;

/// `a1.channels.c1.*` for `type = file`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileChannelConfig {
    /// `checkpointDir` (default `~/.flume/file-channel/checkpoint`).
    pub(crate) checkpoint_dir: PathBuf,
    /// `backupCheckpointDir`, used when `useDualCheckpoints = true` (default false).
    pub(crate) backup_checkpoint_dir: Option<PathBuf>,
    /// `dataDirs`: comma-separated (default `~/.flume/file-channel/data`); segments rotate over
    /// them.
    pub(crate) data_dirs: Vec<PathBuf>,
    /// `capacity`: events stored at most (default 1000000).
    pub(crate) capacity: usize,
    /// `transactionCapacity` (default 10000).
    pub(crate) transaction_capacity: usize,
    /// `maxFileSize`: bytes per segment before a new one starts (default and maximum
    /// 1623195647, as Flume).
    pub(crate) max_file_size: u64,
    /// `minimumRequiredSpace`: puts fail while a data or checkpoint dir has less free space
    /// than this + the batch + the next checkpoint, and checkpoints are skipped while a checkpoint
    /// dir has less than this + the checkpoint (default 524288000, at least 1048576).
    pub(crate) minimum_required_space: u64,
    /// `checkpointInterval` in milliseconds (default 30000).
    pub(crate) checkpoint_interval: Duration,
    /// `keep-alive`: seconds a put waits for room (default 3).
    pub(crate) keep_alive: Duration,
    /// `fsyncPerTransaction` (default true): commit returns after the log is fsynced.
    pub(crate) fsync_per_transaction: bool,
    /// `fsyncInterval` seconds between fsyncs when `fsyncPerTransaction = false` (default 5).
    pub(crate) fsync_interval: Duration,
    /// `checkpointOnClose` (default true).
    pub(crate) checkpoint_on_close: bool,
    /// `encryption.*`: the keys events are encrypted with at rest.
    pub(crate) encryption: Option<Encryption>,
}

/// `checkpointInterval` and `fsyncInterval`.
struct Intervals {
    checkpoint: Duration,
    fsync: Duration,
}

impl FileChannelConfig {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
        let base = std::env::var_os("HOME")
            .map_or_else(|| PathBuf::from("."), PathBuf::from)
            .join(".flume/file-channel");
        let (checkpoint_dir, backup_checkpoint_dir) = checkpoint_dirs(p, &base)?;
        let data_dirs = data_dirs(p, &base)?;
        let (capacity, transaction_capacity) = capacities(p)?;
        let intervals = intervals(p)?;
        check_unsupported(p)?;
        Ok(Self {
            checkpoint_dir,
            backup_checkpoint_dir,
            data_dirs,
            capacity,
            transaction_capacity,
            max_file_size: p
                .int("maxFileSize", MAX_FILE_SIZE, 1..=u64::MAX)?
                .min(MAX_FILE_SIZE),
            minimum_required_space: p
                .int("minimumRequiredSpace", 500 * 1024 * 1024, 0..=1 << 50)?
                .max(1024 * 1024),
            checkpoint_interval: intervals.checkpoint,
            keep_alive: p.seconds("keep-alive", 3, 0..=MAX_SECONDS)?,
            fsync_per_transaction: p.bool("fsyncPerTransaction", true)?,
            fsync_interval: intervals.fsync,
            checkpoint_on_close: p.bool("checkpointOnClose", true)?,
            encryption: Encryption::from_props(p)?,
        })
    }
}

/// `checkpointDir`, and `backupCheckpointDir` when `useDualCheckpoints` asks for one.
fn checkpoint_dirs(p: &Props, base: &Path) -> Result<(PathBuf, Option<PathBuf>), ConfigError> {
    let checkpoint_dir = p
        .get("checkpointDir")
        .filter(|v| !v.is_empty())
        .map_or_else(|| base.join("checkpoint"), PathBuf::from);
    let dual = p.bool("useDualCheckpoints", false)?;
    let backup = p
        .get("backupCheckpointDir")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let backup = match (dual, backup) {
        (true, None) => {
            return Err(p.error(
                "backupCheckpointDir",
                "is required when useDualCheckpoints = true",
            ));
        }
        (true, Some(b)) if b == checkpoint_dir => {
            return Err(p.error("backupCheckpointDir", "must differ from checkpointDir"));
        }
        (true, b) => b,
        (false, _) => None,
    };
    Ok((checkpoint_dir, backup))
}

/// `dataDirs`: distinct directories, the default one if none is given.
fn data_dirs(p: &Props, base: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let mut data_dirs: Vec<PathBuf> = p
        .get("dataDirs")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    if data_dirs.is_empty() {
        data_dirs.push(base.join("data"));
    }
    for (i, d) in data_dirs.iter().enumerate() {
        if data_dirs[..i].contains(d) {
            return Err(p.error("dataDirs", format!("{} is listed twice", d.display())));
        }
    }
    Ok(data_dirs)
}

/// `capacity` and `transactionCapacity`, the latter no larger than the former.
fn capacities(p: &Props) -> Result<(usize, usize), ConfigError> {
    let capacity = p.int("capacity", 1_000_000, 1..=1_000_000_000)?;
    let transaction_capacity = p.int("transactionCapacity", 10_000, 1..=MAX_BATCH)?;
    if transaction_capacity > capacity {
        return Err(p.error(
            "transactionCapacity",
            format!("{transaction_capacity} exceeds capacity {capacity}"),
        ));
    }
    Ok((capacity, transaction_capacity))
}

fn intervals(p: &Props) -> Result<Intervals, ConfigError> {
    let checkpoint = p.millis("checkpointInterval", 30_000, 1..=MAX_MILLIS)?;
    if checkpoint.is_zero() {
        return Err(p.error("checkpointInterval", "must be greater than 0"));
    }
    let fsync = p.seconds("fsyncInterval", 5, 1..=MAX_SECONDS)?;
    if fsync.is_zero() {
        return Err(p.error("fsyncInterval", "must be greater than 0"));
    }
    Ok(Intervals { checkpoint, fsync })
}

/// Flume keys sluice accepts without effect.
fn check_unsupported(p: &Props) -> Result<(), ConfigError> {
    // Accepted for compatibility; sluice's replay is always the fast one.
    p.bool("use-fast-replay", false)?;
    p.bool("use-log-replay-v1", false)?;
    p.bool("compressBackupCheckpoint", false)?;
    Ok(())
}
