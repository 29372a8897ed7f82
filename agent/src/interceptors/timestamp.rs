//! `timestamp`: sets a header to the current time in milliseconds since the epoch.

use crate::config::{ConfigError, Props};
use crate::event::Event;
use crate::metrics::now_millis;
use crate::pipeline::{Interceptor, InterceptorError};

#[derive(Clone, Debug)]
pub struct TimestampConfig {
    /// `headerName` (default `timestamp`).
    pub header: String,
    /// `preserveExisting` (default false).
    pub preserve_existing: bool,
}

impl TimestampConfig {
    pub fn from_props(p: &Props) -> Result<Self, ConfigError> {
        Ok(Self {
            header: p.string("headerName", "timestamp"),
            preserve_existing: p.bool("preserveExisting", false)?,
        })
    }
}

impl Interceptor for TimestampConfig {
    fn intercept(&self, mut events: Vec<Event>) -> Result<Vec<Event>, InterceptorError> {
        let now = now_millis().to_string();
        for e in &mut events {
            if !(self.preserve_existing && e.headers.contains_key(&self.header)) {
                e.headers.insert(self.header.as_str(), now.as_str());
            }
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::super::run;
    use super::*;

    #[test]
    fn sets_and_preserves() {
        let k = TimestampConfig {
            header: "ts".into(),
            preserve_existing: true,
        };
        let mut old = Event::new("a");
        old.headers.insert("ts", "1");
        let out = run(&k, vec![old, Event::new("b")]);
        assert_eq!(out[0].headers.get("ts"), Some("1"));
        let ts: u64 = out[1]
            .headers
            .get("ts")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(ts > 1_600_000_000_000);
    }
}
