//! `replicating`: every event to every channel; `selector.optional` channels may fail.

use super::channel_indices;
use crate::config::{ConfigError, Props};
use crate::event::Event;
use crate::pipeline::{ChannelSelector, Routed, SelectorError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicatingConfig {
    pub channels: usize,
    /// Indices of `selector.optional` channels.
    pub optional: Vec<usize>,
}

impl ReplicatingConfig {
    pub fn from_props(p: &Props, channels: &[String]) -> Result<Self, ConfigError> {
        let optional = match p.get("optional") {
            Some(v) => channel_indices(p, "optional", v, channels)?,
            None => Vec::new(),
        };
        Ok(Self {
            channels: channels.len(),
            optional,
        })
    }
}

impl ChannelSelector for ReplicatingConfig {
    fn route(&self, events: Vec<Event>) -> Result<Routed, SelectorError> {
        let mut routed = Routed::new(self.channels);
        // Clones are cheap (shared body and headers); the last channel takes the original.
        let mut targets: Vec<(bool, usize)> = (0..self.channels)
            .map(|i| (self.optional.contains(&i), i))
            .collect();
        let last = targets.pop();
        for (optional, i) in targets {
            let slot = if optional {
                &mut routed.optional[i]
            } else {
                &mut routed.required[i]
            };
            *slot = events.clone();
        }
        if let Some((optional, i)) = last {
            let slot = if optional {
                &mut routed.optional[i]
            } else {
                &mut routed.required[i]
            };
            *slot = events;
        }
        Ok(routed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicates_with_optional() -> Result<(), Box<dyn std::error::Error>> {
        let chans = vec!["c1".to_string(), "c2".to_string()];
        let c = ReplicatingConfig::from_props(&Props::from_pairs(&[("optional", "c2")]), &chans)?;
        let r = c.route(vec![Event::new("a"), Event::new("b")])?;
        assert_eq!(r.required[0].len(), 2);
        assert!(r.required[1].is_empty());
        assert_eq!(r.optional[1].len(), 2);
        Ok(())
    }

    #[test]
    fn optional_must_be_a_source_channel() {
        let chans = vec!["c1".to_string()];
        let err = ReplicatingConfig::from_props(&Props::from_pairs(&[("optional", "c9")]), &chans);
        assert!(err.is_err_and(|e| e.to_string().contains("`c9` is not one of")));
    }
}
