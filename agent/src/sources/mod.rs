//! Sources: produce events and hand them to their [`crate::pipeline::ChannelProcessor`].
//!
//! Each implements [`crate::pipeline::PollableSource`] (driven by a runner thread) or
//! [`crate::pipeline::EventDrivenSource`] (runs its own threads).

pub(crate) mod avro;
pub(crate) mod exec;
pub(crate) mod http;
pub(crate) mod kafka;
pub(crate) mod netcat;
pub(crate) mod seq;
pub(crate) mod spooldir;
pub(crate) mod stress;
pub(crate) mod syslog;
pub(crate) mod taildir;
pub(crate) mod thrift;
