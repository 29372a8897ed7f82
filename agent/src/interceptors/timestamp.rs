//! `timestamp`: sets a header to the current time in milliseconds since the epoch.

use crate::config::{ConfigError, Props};
use crate::event::{Event, SharedStr, edit_batch};
use crate::metrics::now_millis;
use crate::pipeline::{Interceptor, InterceptorError};

#[derive(Clone, Debug)]
pub struct TimestampConfig {
    /// `headerName` (default `timestamp`).
    pub header: SharedStr,
    /// `preserveExisting` (default false).
    pub preserve_existing: bool,
}

impl TimestampConfig {
    pub fn from_props(p: &Props) -> Result<Self, ConfigError> {
        Ok(Self {
            header: p.string("headerName", "timestamp").into(),
            preserve_existing: p.bool("preserveExisting", false)?,
        })
    }
}

impl Interceptor for TimestampConfig {
    fn intercept(&self, mut events: Vec<Event>) -> Result<Vec<Event>, InterceptorError> {
        // One reading of the clock per batch; the 13 digits are stored inline in the header.
        let now = SharedStr::from(now_millis().to_string());
        edit_batch(&mut events, |h| {
            if !(self.preserve_existing && h.contains_key(&self.header)) {
                h.insert(self.header.clone(), now.clone());
            }
        });
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
