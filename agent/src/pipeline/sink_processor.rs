//! Sink processors: which sink of a group runs next (Flume's `SinkProcessor`). A failed sink's
//! batch was rolled back by its [`SinkSlot`], so trying another sink never loses events.

use std::time::Duration;

use super::{SinkError, SinkSlot, SinkStatus};

pub trait SinkProcessor: Send {
    fn process(&mut self, wait: Duration) -> Result<SinkStatus, SinkError>;
    fn slots_mut(&mut self) -> &mut [SinkSlot];
}
