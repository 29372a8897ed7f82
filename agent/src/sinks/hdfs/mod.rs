//! `hdfs`: Flume's HDFSEventSink on the pure-Rust `hdfs-native` client.
//!
//! ## Files
//! Events go to `<hdfs.path>/<hdfs.filePrefix>.<counter><hdfs.fileSuffix>[<codec extension>]`,
//! path and prefix escaped per event (see [`path`]). The counter starts at the sink's start
//! time in epoch ms and grows by one per file, as Flume's. While open, a file is named with
//! `hdfs.inUsePrefix` before and `hdfs.inUseSuffix` (`.tmp`) after the name.
//!
//! ## Invariants
//! - Each batch is encoded per file, written, and `hsync`ed (stronger than Flume's `hflush`:
//!   DataNodes persist it) before [`Sink::deliver`] returns `Ok`, so a committed take is on
//!   the DataNodes. Any failure returns `Err`: the take rolls back and the batch is delivered
//!   again into a new file (at-least-once; the failed file keeps what was synced before).
//! - A file whose write failed is never written again: it is handed to the closer, which
//!   closes it (or, when the close fails, recovers its lease through a separate client) and
//!   renames it to its final name, retrying every `hdfs.retryInterval` up to
//!   `hdfs.closeTries` times (0 = until it works).
//! - A roll (`hdfs.rollCount`, `hdfs.rollSize` body bytes, checked before each event like
//!   Flume; `hdfs.rollInterval` and `hdfs.idleTimeout`, checked before each batch and when
//!   the channel is idle; `hdfs.maxOpenFiles`, least recently written first) closes, then
//!   renames.
//! - At start the sink lists the literal directory part of `hdfs.path` recursively and
//!   finishes every in-use file of its prefix that a previous run left (lease recovery,
//!   rename): no file stays `.tmp` across restarts.
//! - Every HDFS call is bounded by `hdfs.callTimeout`; a call that times out counts as failed.
//!
//! The core is thread-based, `hdfs-native` is async: the sink owns a one-worker tokio runtime
//! (so the client's lease renewal and packet pipelines run between batches) and blocks on it.
//!
//! [`Sink::deliver`]: crate::pipeline::Sink::deliver

mod closer;
pub(crate) mod config;
mod error;
pub(crate) mod format;
pub(crate) mod path;
mod sink;
mod spec;
mod writer;

pub(crate) use sink::HdfsSink;
