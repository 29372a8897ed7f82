//! `uuid`: sets a header to a random UUID (version 4), as Flume's
//! `org.apache.flume.sink.solr.morphline.UUIDInterceptor$Builder` does with
//! `UUID.randomUUID()`.

use std::fmt::Write;

use crate::config::{ConfigError, Props};
use crate::event::{Event, SharedStr};
use crate::pipeline::{Interceptor, InterceptorError};

#[derive(Clone, Debug)]
pub struct UuidConfig {
    /// `headerName` (default `id`).
    pub header: SharedStr,
    /// `preserveExisting` (default true): keep a value the event already has.
    pub preserve_existing: bool,
    /// `prefix` (default empty): written before the UUID.
    pub prefix: String,
}

impl UuidConfig {
    pub fn from_props(p: &Props) -> Result<Self, ConfigError> {
        Ok(Self {
            header: p.string("headerName", "id").into(),
            preserve_existing: p.bool("preserveExisting", true)?,
            prefix: p.string("prefix", ""),
        })
    }
}

/// A random (version 4, RFC 9562 variant) UUID in its 36-character text form.
fn random_uuid(prefix: &str) -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut s = String::with_capacity(prefix.len() + 36);
    s.push_str(prefix);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{byte:02x}");
    }
    s
}

impl Interceptor for UuidConfig {
    fn intercept(&self, mut events: Vec<Event>) -> Result<Vec<Event>, InterceptorError> {
        for e in &mut events {
            if !(self.preserve_existing && e.headers.contains_key(&self.header)) {
                e.headers.insert(
                    self.header.clone(),
                    SharedStr::from(random_uuid(&self.prefix)),
                );
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
    fn sets_distinct_v4_uuids_and_preserves() -> Result<(), ConfigError> {
        let c = UuidConfig::from_props(&Props::from_pairs(&[("prefix", "ev-")]))?;
        let mut had = Event::new("a");
        had.headers.insert("id", "kept");
        let out = run(&c, vec![had, Event::new("b"), Event::new("c")]);
        assert_eq!(out[0].headers.get("id"), Some("kept"));
        let (x, y) = (out[1].headers.get("id"), out[2].headers.get("id"));
        assert_ne!(x, y);
        let x = x.unwrap_or_default();
        let u = x.strip_prefix("ev-").unwrap_or_default();
        assert_eq!(u.len(), 36, "{x}");
        assert_eq!(u.as_bytes()[14], b'4', "{x}");
        assert!(matches!(u.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "{x}");
        assert_eq!(u.matches('-').count(), 4, "{x}");

        let c = UuidConfig::from_props(&Props::from_pairs(&[
            ("headerName", "uid"),
            ("preserveExisting", "false"),
        ]))?;
        let mut had = Event::new("a");
        had.headers.insert("uid", "old");
        let out = run(&c, vec![had]);
        assert_ne!(out[0].headers.get("uid"), Some("old"));
        Ok(())
    }
}
