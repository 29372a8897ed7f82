//! `thrift`: Flume's ThriftSource. Listens for `ThriftSourceProtocol` clients (Flume's
//! ThriftSink, the Flume RPC SDK's thrift client, any Thrift-generated client) speaking the
//! configured protocol (`compact`, the default, or `binary`) over framed transport, plain or
//! TLS, and answers `OK` only after the request's events are committed to every required
//! channel; `FAILED` when the channel refuses them (full), so the client retries, as Flume does.
//!
//! Connections are served by a small tokio runtime owned by the source (the accept loop and a
//! task per connection; TLS runs as a state machine in [`crate::avro::server_io`]), so a
//! connection waiting for its client costs no thread. A complete frame is decoded and committed
//! on a pool of `threads` blocking workers (a channel put may wait).
//!
//! Bounds, all per source:
//! - `max-connections` open connections; past it new clients wait in the accept backlog.
//! - `idle-timeout`: a connection with no request in progress that sends nothing for that long
//!   is closed; `read-timeout`: a client that stops sending mid-frame (or mid TLS handshake),
//!   or does not take its reply, is closed.
//! - `max-message-bytes`: a frame declaring more is refused and its connection closed before
//!   any of it is read.
//! - `max-buffered-bytes`: the frames being received or processed, plus an estimate of the
//!   headers decoded from them, over all connections. A frame's buffer grows only as its bytes
//!   arrive (doubling, so at most twice what arrived plus 16 KiB), each growth taken from this
//!   budget first; when it is exhausted the connection's socket is not read for up to
//!   `read-timeout`, then that connection is closed. A batch whose decoding cannot get budget
//!   in time is answered `FAILED`. The budget is given back when the request is answered.
//!
//! A connection that sends garbage, a truncated or oversized frame, a message in the other
//! protocol, or a declared size its frame cannot hold is closed with a logged reason; other
//! connections are unaffected.

mod config;
mod connection;
mod source;
#[cfg(test)]
mod tests;

pub(crate) use config::ThriftSourceConfig;

/// Budget taken at a time for decoded headers.
const DECODE_STEP: usize = 256 * 1024;
