//! `spooldir`: Flume's `SpoolDirectorySource`. Reads the files dropped into a directory, one
//! at a time, turns each into events with a deserializer (`LINE`, `AVRO` or Flume's
//! `BlobDeserializer`), and marks a file done (renamed with `fileSuffix`, deleted, or recorded
//! in the tracker directory) once all of its events were committed to the channel.
//!
//! # The spooling contract (Flume's)
//!
//! A file placed in the directory must be complete and never change, and a name must not be
//! used twice. sluice checks it as Flume does and, on a violation, logs an error naming the
//! file, counts it, and stops reading the directory (Flume's fatal `IllegalStateException`:
//! "Restart or reconfigure Flume to continue processing"); nothing is lost, since the file
//! stays in place with its committed position in the tracker:
//! - changed after it was picked up (size, modification time, or a different inode under its
//!   name), or renamed or deleted before it was done: found when its end is reached, after
//!   every byte read was delivered (data appended while it was read is read too); after a
//!   restart it resumes from its position, so the appended data is delivered too;
//! - a new file named like one done (`<name><fileSuffix>` exists): found when it is picked up,
//!   before anything is read (Flume reads and delivers it first, then fails at the rename);
//! - with `trackingPolicy = tracker_dir`, a file modified after its marker was created (a
//!   name reused, or appended to after it was done; Flume ignores such a file silently).
//!
//! `decodeErrorPolicy = FAIL` and unreadable Avro input stop the source the same way (after
//! delivering the lines before the bad one); I/O errors opening a file only skip it for now.
//!
//! # Crash safety
//!
//! Positions are recorded in Flume's tracker file ([`tracker`]) after each committed batch,
//! and a file is marked done only after its last batch committed. After a SIGKILL the file
//! being read resumes at its last committed position (duplicates: at most the batch whose
//! commit raced the kill; for `AVRO`, the committed records of the last Avro block); after a
//! restart the file the tracker names is read first, whatever `consumeOrder` says (Flume
//! starts it again from 0 when another file comes first). A batch the channel refuses is
//! kept and sent again after 250 ms, doubling up to `maxBackoff`.
//!
//! # Choosing files
//!
//! Hidden files, names ending in `fileSuffix`, names not matching `includePattern` (the whole
//! name) or matching `ignorePattern`, and the tracker directory are skipped; subdirectories
//! are searched with `recursiveDirectorySearch` (not hidden or ignored ones). `consumeOrder`
//! `oldest`/`youngest` orders by modification time (ms), then name; `random` shuffles a
//! listing and uses it up before listing again. With nothing to read the source waits
//! `pollDelay`. A zero-byte file is marked done without events (Flume 1.11 sends one empty
//! event for it).

mod avro_file;
mod charset;
mod config;
mod deserializer;
mod source;
#[cfg(test)]
mod tests;
pub(crate) mod tracker;

pub(crate) use config::SpoolDirConfig;
