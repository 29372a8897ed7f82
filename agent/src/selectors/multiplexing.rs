//! `multiplexing`: routes by the value of one header.
//!
//! Flume's rules: `selector.mapping.<value>` lists the required channels for events whose
//! header has that value; events with no mapping (or no header) go to `selector.default`;
//! `selector.optional.<value>` adds optional channels (a channel already required for that
//! value is not also optional). An event with no channel at all is dropped, as in Flume.

use std::collections::HashMap;

use super::channel_indices;
use crate::config::{ConfigError, Props};
use crate::event::Event;
use crate::pipeline::{ChannelSelector, Routed, SelectorError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiplexingConfig {
    pub channels: usize,
    /// `selector.header` (default `flume.selector.header`).
    pub header: String,
    pub mapping: HashMap<String, Vec<usize>>,
    pub optional: HashMap<String, Vec<usize>>,
    /// `selector.default`.
    pub default: Vec<usize>,
}

impl MultiplexingConfig {
    pub fn from_props(p: &Props, channels: &[String]) -> Result<Self, ConfigError> {
        let mut mapping = HashMap::new();
        for (value, list) in p.children("mapping.") {
            let key = format!("mapping.{value}");
            mapping.insert(value, channel_indices(p, &key, &list, channels)?);
        }
        let mut optional = HashMap::new();
        for (value, list) in p.children("optional.") {
            let key = format!("optional.{value}");
            let mut idx = channel_indices(p, &key, &list, channels)?;
            if let Some(req) = mapping.get(&value) {
                idx.retain(|i| !req.contains(i));
            }
            optional.insert(value, idx);
        }
        let default = match p.get("default") {
            Some(v) => channel_indices(p, "default", v, channels)?,
            None => Vec::new(),
        };
        Ok(Self {
            channels: channels.len(),
            header: p.string("header", "flume.selector.header"),
            mapping,
            optional,
            default,
        })
    }
}

impl ChannelSelector for MultiplexingConfig {
    fn route(&self, events: Vec<Event>) -> Result<Routed, SelectorError> {
        let mut routed = Routed::new(self.channels);
        for e in events {
            let value = e.headers.get(&self.header);
            let required = value
                .and_then(|v| self.mapping.get(v))
                .unwrap_or(&self.default);
            let optional = value
                .and_then(|v| self.optional.get(v))
                .map_or(&[][..], |v| v);
            for &i in required {
                routed.required[i].push(e.clone());
            }
            for &i in optional {
                routed.optional[i].push(e.clone());
            }
        }
        Ok(routed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(state: Option<&str>, body: &str) -> Event {
        let mut e = Event::new(body.to_string());
        if let Some(s) = state {
            e.headers.insert("state", s);
        }
        e
    }

    #[test]
    fn routes_by_header_with_default_and_optional() -> Result<(), Box<dyn std::error::Error>> {
        let chans: Vec<String> = ["c1", "c2", "c3"].iter().map(|s| s.to_string()).collect();
        let c = MultiplexingConfig::from_props(
            &Props::from_pairs(&[
                ("header", "state"),
                ("mapping.CZ", "c1"),
                ("mapping.US", "c2 c3"),
                ("optional.CZ", "c1 c3"),
                ("default", "c3"),
            ]),
            &chans,
        )?;
        let r = c.route(vec![
            ev(Some("CZ"), "cz"),
            ev(Some("US"), "us"),
            ev(None, "none"),
        ])?;
        let bodies = |v: &Vec<Event>| v.iter().map(|e| e.body.clone()).collect::<Vec<_>>();
        assert_eq!(bodies(&r.required[0]), ["cz"]);
        assert_eq!(bodies(&r.required[1]), ["us"]);
        assert_eq!(bodies(&r.required[2]), ["us", "none"]);
        assert!(
            r.optional[0].is_empty(),
            "c1 is required for CZ, so not optional"
        );
        assert_eq!(bodies(&r.optional[2]), ["cz"]);
        Ok(())
    }
}
