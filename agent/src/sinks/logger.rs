//! `logger`: logs each event at INFO, like Flume's LoggerSink (headers plus a hex and text
//! dump of the first `maxBytesToLog` body bytes).

use std::fmt::Write;

use crate::config::{ConfigError, Props};
use crate::event::Event;
use crate::pipeline::{BoxError, Sink, SinkContext, SinkError, SinkSpec};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LoggerConfig {
    /// `maxBytesToLog` (default 16).
    pub(crate) max_bytes: usize,
    /// `batchSize` (default 100).
    pub(crate) batch_size: usize,
}

impl LoggerConfig {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
        Ok(Self {
            max_bytes: p.int("maxBytesToLog", 16, 0..=1 << 20)?,
            batch_size: super::batch_size(p, "batchSize")?,
        })
    }
}

pub(crate) struct LoggerSink {
    name: String,
    max_bytes: usize,
}

impl LoggerSink {
    pub(crate) fn new(name: &str, config: &LoggerConfig) -> Self {
        Self {
            name: name.to_string(),
            max_bytes: config.max_bytes,
        }
    }
}

/// Flume's `EventHelper.dumpEvent` layout: `{ headers:{k=v} body: 68 69   hi }`.
pub(crate) fn dump_event(e: &Event, max_bytes: usize) -> String {
    let mut s = String::from("{ headers:{");
    for (i, (k, v)) in e.headers.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{k}={v}");
    }
    s.push_str("} body: ");
    let shown = &e.body[..e.body.len().min(max_bytes)];
    for b in shown {
        let _ = write!(s, "{b:02X} ");
    }
    for _ in shown.len()..max_bytes.min(16) {
        s.push_str("   ");
    }
    s.push(' ');
    s.extend(shown.iter().map(|&b| {
        if (0x20..0x7f).contains(&b) {
            b as char
        } else {
            '.'
        }
    }));
    s.push_str(" }");
    s
}

impl Sink for LoggerSink {
    fn deliver(&mut self, events: &[Event]) -> Result<(), SinkError> {
        for e in events {
            tracing::info!(sink = %self.name, "Event: {}", dump_event(e, self.max_bytes));
        }
        Ok(())
    }
}

impl SinkSpec for LoggerConfig {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn build(&self, cx: &SinkContext) -> Result<Box<dyn Sink>, BoxError> {
        Ok(Box::new(LoggerSink::new(&cx.cx.name, self)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_matches_flume_layout() {
        let mut e = Event::new("hi\n");
        e.headers.insert("a", "b");
        let d = dump_event(&e, 4);
        assert_eq!(d, "{ headers:{a=b} body: 68 69 0A     hi. }");
    }
}
