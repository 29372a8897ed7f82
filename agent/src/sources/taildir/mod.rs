//! `TAILDIR`: Flume's TaildirSource. Tails the files matched by file groups, one event per line,
//! and remembers how far each file was delivered in a Flume-compatible position file.
//!
//! # File identity
//!
//! A tailed file is known by its inode (with the device, in memory) plus a fingerprint, the
//! CRC-32 of its first bytes (up to [`tail_file::FINGERPRINT_MAX`], fewer while the file is
//! shorter, so small files are read at once). The path is only the name it was last seen under:
//! - renamed (rotation by rename, to a name that still matches or not): same inode, same
//!   fingerprint, so reading goes on from the same offset; nothing is read twice;
//! - renamed or deleted while open: the open handle is read to its end; the file is forgotten
//!   (dropped from the position file) once it has been idle for `idleTimeout`;
//! - shorter than its position (copytruncate): read again from offset 0;
//! - same inode, different first bytes (an inode reused by a new file, or a file rewritten from
//!   its start, also across a restart): read from offset 0;
//! - a new inode is a new file, even at an old path with the same content (vim's write-to-new-
//!   file-then-rename): it is read from its start, so an editor save re-delivers the file;
//!   appending (`>>`) never does.
//!
//! # Delivery
//!
//! `process` reads up to `batchSize` lines from one file and hands them to the channel
//! processor; only when it returns `Ok` does the file's committed offset advance, otherwise the
//! reader rewinds to the committed offset and the batch is read again later. Up to
//! `maxBatchCount` batches are taken from a file before moving to the next. Every committed
//! offset is appended to the position journal at once; the position file itself (a snapshot)
//! is saved every `writePosInterval` (0: after every batch), when files are forgotten, and at
//! stop; see [`position_file`] for the formats and atomicity. After the process is killed at
//! most the batch whose commit raced the kill is delivered again; after a power loss, at most
//! what was committed since the last snapshot.
//!
//! # Discovery
//!
//! Directories are watched with inotify (`notify`); any change wakes the source and triggers a
//! scan (at most every [`SCAN_MIN_GAP`]). A scan also runs at least every [`FALLBACK_SCAN`], so
//! a lost or unsupported notification (NFS, a full inotify queue) only costs latency. Files
//! idle for `idleTimeout` have their descriptor closed; at most `maxOpenFiles` are open at once:
//! when files with unread data wait for a descriptor, caught-up files are closed to make room.

mod config;
mod delivery;
mod discovery;
pub(crate) mod file_group;
pub(crate) mod position_file;
mod source;
pub(crate) mod tail_file;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub(crate) use config::TaildirConfig;

/// Minimum time between two scans triggered by notifications.
pub(crate) const SCAN_MIN_GAP: Duration = Duration::from_millis(100);
/// Maximum time between two scans.
pub(crate) const FALLBACK_SCAN: Duration = Duration::from_secs(1);
/// Longest idle wait for a notification, so that stop requests are seen promptly.
const MAX_IDLE_WAIT: Duration = Duration::from_secs(1);
/// Flume's `byteOffsetHeader` key.
pub(crate) const BYTE_OFFSET_HEADER: &str = "byteoffset";
