//! `avro`: Flume's AvroSource. Listens for `AvroSourceProtocol` clients (Flume's AvroSink,
//! `flume-ng avro-client`, the Flume RPC SDK, `sluice send`) and answers OK only after the
//! batch is committed to every required channel; FAILED makes the client retry.
//!
//! Connections are served by a small tokio runtime owned by the source: the accept loop and
//! one task per connection on a few I/O threads ([`crate::avro::server_io`] runs zlib and TLS
//! as state machines), so a connection waiting for its client costs no thread. A complete
//! request is decoded and committed on a bounded pool of `threads` blocking workers (the
//! channel put may wait for a full channel, which must not stall the I/O threads).
//!
//! Bounds, all per source:
//! - `max-connections` open connections; past it the accept loop waits and new clients queue
//!   in the kernel's accept backlog.
//! - `idle-timeout`: a connection with no request in progress that sends nothing for that long
//!   is closed; `read-timeout`: a client that stops sending mid-request (TLS handshake
//!   included), or does not take its reply, is closed.
//! - `max-buffered-bytes`: the bytes of all requests being received or processed, plus an
//!   estimate of their decoded headers, across all connections. A payload is received into
//!   chunks allocated only as its bytes arrive (never to a declared length up front, see
//!   [`FrameDecoder`]), each taken from this budget; when it is exhausted, arriving requests
//!   wait (their sockets are not read) for up to `read-timeout`, then that connection is
//!   closed; a batch whose decoding cannot get budget in time is answered FAILED (the client
//!   retries). The budget is given back when the request is answered.
//!
//! A connection that sends garbage, a truncated or oversized frame, or a bad handshake is
//! closed with a logged reason; other connections are unaffected.
//!
//! [`FrameDecoder`]: crate::avro::framing::FrameDecoder

mod budget;
mod config;
mod connection;
mod request;
mod source;
#[cfg(test)]
mod tests;

pub(crate) use config::AvroSourceConfig;

/// Client protocol hashes remembered from handshakes, at most (a client can announce any
/// hash; one not remembered is asked for its protocol text again).
const MAX_KNOWN_PROTOCOLS: usize = 1024;

/// Budget taken at a time for decoded headers.
const DECODE_STEP: usize = 256 * 1024;
