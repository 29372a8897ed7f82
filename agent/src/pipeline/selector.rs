//! Channel selectors: which of a source's channels each event goes to, required or optional.
//!
//! A selector sees the whole batch and returns, per channel of the source (by index in
//! `a1.sources.r1.channels`), the events that channel must take (required) or may take
//! (optional). The channel processor then puts each list in that channel's transaction.

use crate::event::Event;

/// Per-channel event lists, indexed like the source's channel list.
#[derive(Debug, Default, PartialEq)]
pub struct Routed {
    pub required: Vec<Vec<Event>>,
    pub optional: Vec<Vec<Event>>,
}

impl Routed {
    pub fn new(channels: usize) -> Self {
        Self {
            required: vec![Vec::new(); channels],
            optional: vec![Vec::new(); channels],
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SelectorError {
    /// The selector refuses the batch by design (a tenant over its quota): the source backs
    /// off and retries.
    #[error("channel selector: {0}")]
    Refused(String),
    /// Routing failed; `context` names what failed (a guest, a tenant), `cause` why.
    #[error("channel selector: {context}: {cause}")]
    Failed {
        context: String,
        #[source]
        cause: super::Cause,
    },
}

pub trait ChannelSelector: Send + Sync {
    fn route(&self, events: Vec<Event>) -> Result<Routed, SelectorError>;

    /// As [`ChannelSelector::route`], with the batch's dead letters: a selector that can set
    /// events aside (a WebAssembly router's unrouted events, a fault under
    /// `on-error = dead-letter`) pushes them there instead of dropping them.
    fn route_or_set_aside(
        &self,
        events: Vec<Event>,
        _dead: &mut super::DeadLetters,
    ) -> Result<Routed, SelectorError> {
        self.route(events)
    }
}

/// Every event to every channel, those listed in `optional` as optional: the pipeline's own
/// tests route with it (the real selectors sit above the pipeline).
#[cfg(test)]
pub(crate) struct ToAll {
    pub channels: usize,
    pub optional: Vec<usize>,
}

#[cfg(test)]
impl ChannelSelector for ToAll {
    fn route(&self, events: Vec<Event>) -> Result<Routed, SelectorError> {
        let mut routed = Routed::new(self.channels);
        for i in 0..self.channels {
            let target = if self.optional.contains(&i) {
                &mut routed.optional[i]
            } else {
                &mut routed.required[i]
            };
            target.extend(events.iter().cloned());
        }
        Ok(routed)
    }
}
