//! Flume's Avro RPC protocol (`AvroSourceProtocol`) over Avro's Netty transport.
//!
//! Wire format, as Apache Flume 1.x speaks it:
//! - **Framing** (Avro `NettyTransportCodec`, not the Avro spec's framing): every message is
//!   `int32 serial`, `int32 buffer count`, then per buffer `int32 length` + bytes, all
//!   big-endian. The Avro payload is the concatenation of the buffers. A response carries the
//!   serial of its request.
//! - **Handshake**: the first request on a connection starts with an Avro `HandshakeRequest`
//!   (client MD5, optional client protocol text, the MD5 it believes the server has, meta); the
//!   server answers `HandshakeResponse` with match `BOTH`, `CLIENT` (the client must learn the
//!   server's protocol, sent along) or `NONE` (the server does not know the client's protocol:
//!   the client retries with its protocol text included). After a match the connection is
//!   established and later requests carry no handshake.
//! - **Call**: request = call metadata `map<bytes>`, message name `string`, parameters
//!   (`append(AvroFlumeEvent)` or `appendBatch(array<AvroFlumeEvent>)`); response = metadata
//!   `map<bytes>`, `boolean` error flag, then the `Status` enum (OK, FAILED, UNKNOWN) or the
//!   error (`union {string}`).
//! - **Compression** (`compression-type = deflate`): both directions of the whole connection
//!   are one zlib stream each, flushed (sync flush) after every message.
//!
//! Limits: a message larger than the configured maximum, a buffer count or length that cannot
//! fit in it, or a payload that does not decode closes that connection with a logged reason;
//! nothing is allocated before its size was checked against the maximum, and a payload grows
//! only as its bytes arrive (a declared length is never allocated up front).

pub mod client;
pub(crate) mod decode;
pub(crate) mod encode;
pub(crate) mod framing;
pub(crate) mod protocol;
pub(crate) mod server_io;
pub(crate) mod tls;
pub(crate) mod transport;

pub use framing::FrameError;
pub use protocol::{ProtocolError, Status};
pub use tls::TlsFileError;
