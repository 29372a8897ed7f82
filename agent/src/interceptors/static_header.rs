//! `static`: adds one fixed header to every event.

use crate::config::{ConfigError, Props};
use crate::event::{Event, SharedStr, edit_batch};
use crate::pipeline::{Interceptor, InterceptorError};

#[derive(Clone, Debug)]
pub struct StaticConfig {
    /// `key` (default `key`).
    pub key: SharedStr,
    /// `value` (default `value`).
    pub value: SharedStr,
    /// `preserveExisting` (default true).
    pub preserve_existing: bool,
}

impl StaticConfig {
    pub fn from_props(p: &Props) -> Result<Self, ConfigError> {
        Ok(Self {
            key: p.string("key", "key").into(),
            value: p.string("value", "value").into(),
            preserve_existing: p.bool("preserveExisting", true)?,
        })
    }
}

impl Interceptor for StaticConfig {
    fn intercept(&self, mut events: Vec<Event>) -> Result<Vec<Event>, InterceptorError> {
        // Key and value are shared, and events that came in with one map leave with one.
        edit_batch(&mut events, |h| {
            if !(self.preserve_existing && h.contains_key(&self.key)) {
                h.insert(self.key.clone(), self.value.clone());
            }
        });
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::super::run;
    use super::*;
    use crate::config::Props;

    #[test]
    fn adds_header_and_preserves_by_default() -> Result<(), ConfigError> {
        let c = StaticConfig::from_props(&Props::from_pairs(&[("key", "dc"), ("value", "eu")]))?;
        let mut had = Event::new("a");
        had.headers.insert("dc", "us");
        let out = run(&c, vec![had, Event::new("b")]);
        assert_eq!(out[0].headers.get("dc"), Some("us"));
        assert_eq!(out[1].headers.get("dc"), Some("eu"));
        Ok(())
    }
}
