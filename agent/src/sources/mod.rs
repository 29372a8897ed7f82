//! Sources: produce events and hand them to their [`crate::pipeline::ChannelProcessor`].
//!
//! Each implements [`crate::pipeline::PollableSource`] (driven by a runner thread) or
//! [`crate::pipeline::EventDrivenSource`] (runs its own threads).

pub mod avro;
pub mod kafka;
pub mod seq;
pub mod stress;
pub mod taildir;
