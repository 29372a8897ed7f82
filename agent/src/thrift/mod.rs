//! Flume's Thrift RPC protocol (`ThriftSourceProtocol`, flume-ng-sdk's `flume.thrift`), with
//! the binary and the compact protocol over Thrift's framed transport.
//!
//! The IDL, as Apache Flume 1.x defines it:
//! ```text
//! struct ThriftFlumeEvent { 1: required map<string, string> headers, 2: required binary body }
//! enum Status { OK, FAILED, ERROR, UNKNOWN }
//! service ThriftSourceProtocol {
//!   Status append(1: ThriftFlumeEvent event),
//!   Status appendBatch(1: list<ThriftFlumeEvent> events),
//! }
//! ```
//!
//! Wire format:
//! - **Transport** (`TFastFramedTransport`, which Flume's ThriftSource uses with and without
//!   TLS and its ThriftRpcClient always): every message is an `int32` big-endian length, then
//!   that many bytes holding exactly one Thrift message.
//! - **Message**: a header (name, type CALL/REPLY/EXCEPTION/ONEWAY, sequence id), then a
//!   struct: the call's arguments (`append_args {1: event}`, `appendBatch_args {1: events}`)
//!   or its result (`append_result {0: Status success}`, the enum as an `i32`), or for
//!   EXCEPTION a `TApplicationException {1: string message, 2: i32 type}`.
//! - **Binary protocol** (`TBinaryProtocol`): big-endian fixed-width integers; a strict message
//!   header is `i32 0x8001_0000 | type`, `string name`, `i32 seqid`; the old form (Java's
//!   `strictRead = false` accepts it, so do we) is `string name`, `byte type`, `i32 seqid`.
//!   Fields are `byte type`, `i16 id`, value; a struct ends with a `0` byte. Strings are `i32`
//!   length + bytes; maps `byte key type`, `byte value type`, `i32 size`; lists `byte element
//!   type`, `i32 size`.
//! - **Compact protocol** (`TCompactProtocol`): the header is `0x82`, `byte version 1 | type <<
//!   5`, varint seqid, varint name length + name. Integers are zigzag varints, lengths plain
//!   varints. A field header packs the id delta (1 to 15) from the previous field of the same
//!   struct with the compact type in one byte, else the type byte is followed by the zigzag id;
//!   booleans live in the field's type (1 true, 2 false). Lists put a size below 15 in the
//!   header byte's high nibble (else `0xF_` and a varint); a map is a varint size, then (if not
//!   empty) one byte `key type << 4 | value type`.
//!
//! Limits against hostile input (checked before anything is allocated for them): a frame
//! longer than the configured maximum is refused (the source closes the connection without
//! reading it); inside a frame a declared string, map or list size larger than the bytes that
//! remain in the frame is refused (every element takes at least one byte), and a batch holds at
//! most the configured number of events; unknown fields are skipped, nested at most
//! [`MAX_DEPTH`] deep. Collections are grown as their elements decode, never sized to a
//! declared count up front.

pub mod client;
pub(crate) mod codec;

pub use client::ThriftError;
pub use codec::{DecodeError, EncodeError, Protocol, Status};

/// Deepest nesting of structs and collections skipped inside an unknown field.
pub const MAX_DEPTH: usize = 32;

/// `TFastFramedTransport`'s default maximum frame length in Thrift's Java library: the largest
/// message Flume's ThriftSource and ThriftRpcClient accept.
pub const FLUME_MAX_FRAME: usize = 16_384_000;
