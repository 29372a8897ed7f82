//! One syslog message into a Flume event, as Flume's `SyslogUtils` builds it.
//!
//! - `<PRI>` gives `Facility` (PRI / 8) and `Severity` (PRI % 8); a message that does not start
//!   with `<digits>` is *Invalid* (`flume.syslog.status = Invalid`, Facility and Severity 0,
//!   the whole message as body).
//! - RFC 5424 (`<PRI>VERSION TIMESTAMP HOST rest`) and RFC 3164 (`<PRI>MMM d HH:MM:SS HOST
//!   rest`) headers become `priority`, `version`, `timestamp` (epoch ms) and `host`; the body is
//!   the rest, with the `keepFields` prepended. A message matching neither keeps its whole text
//!   as body.
//! - A message cut at `eventSize` is *Incomplete* (`flume.syslog.status = Incomplete`).
//! - RFC 3164 has no year: the current one is used, a year earlier if that puts the message
//!   more than a month ahead, a year later if more than eleven months behind (Flume's intent;
//!   its code steps back in both cases). Stamps without a zone are local time.

use std::sync::LazyLock;

use bytes::Bytes;
use chrono::{DateTime, Datelike, Local, NaiveDateTime, TimeZone};
use regex::Regex;

use crate::event::{Event, Headers};

static RFC5424: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?s)^<(\d{1,3})>(\d?)\s?(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:[+-]\d{2}:\d{2}|Z)?|-)\s(?:([\w][\w\d\.@\-]*)|-)\s(.*)$",
    )
    .ok()
});

static RFC3164: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?s)^<(\d{1,3})>(\d)?\s?([A-Z][a-z][a-z]\s{1,2}\d{1,2}\s\d{2}:\d{2}:\d{2})\s([\w][\w\d\.@-]*)\s(.*)$",
    )
    .ok()
});

/// `keepFields`: which header fields stay in the body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeepFields {
    /// `true` / `all`: the body is the whole message.
    pub(crate) all: bool,
    pub(crate) priority: bool,
    pub(crate) version: bool,
    pub(crate) timestamp: bool,
    pub(crate) hostname: bool,
}

impl KeepFields {
    /// Flume's `chooseFieldsToKeep`: `true`/`all`, `false`/`none`, or any of `priority version
    /// timestamp hostname`.
    pub(crate) fn parse(v: &str) -> Self {
        let v = v.trim().to_ascii_lowercase();
        match v.as_str() {
            "true" | "all" => Self {
                all: true,
                ..Self::default()
            },
            "false" | "none" | "" => Self::default(),
            _ => Self {
                all: false,
                priority: v.contains("priority"),
                version: v.contains("version"),
                timestamp: v.contains("timestamp"),
                hostname: v.contains("hostname"),
            },
        }
    }
}

/// The event of one message (`raw` without its delimiter); `incomplete` when it was cut at
/// `eventSize`.
pub(crate) fn event(
    raw: &[u8],
    incomplete: bool,
    keep: &KeepFields,
    now: DateTime<Local>,
) -> Event {
    let mut h: Vec<(&str, String)> = Vec::with_capacity(8);
    let pri = raw
        .strip_prefix(b"<")
        .and_then(|r| r.iter().position(|b| *b == b'>').map(|i| &r[..i]))
        .filter(|d| !d.is_empty() && d.len() <= 3 && d.iter().all(u8::is_ascii_digit))
        .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u32>().ok());
    let mut body: Option<Vec<u8>> = None;
    match pri {
        None => {
            h.push(("Facility", "0".into()));
            h.push(("Severity", "0".into()));
            h.push(("flume.syslog.status", "Invalid".into()));
        }
        Some(p) => {
            h.push(("Facility", (p / 8).to_string()));
            h.push(("Severity", (p % 8).to_string()));
            let text = String::from_utf8_lossy(raw);
            if let Some(f) = fields(&text, now) {
                h.push(("priority", f.priority.to_string()));
                if !f.version.is_empty() {
                    h.push(("version", f.version.to_string()));
                }
                if let Some(ts) = f.timestamp_ms {
                    h.push(("timestamp", ts.to_string()));
                }
                if let Some(host) = f.host {
                    h.push(("host", host.to_string()));
                }
                if !keep.all && !f.body.is_empty() {
                    let mut b = String::new();
                    if keep.priority {
                        b.push_str(&format!("<{}>", f.priority));
                    }
                    if keep.version && !f.version.is_empty() {
                        b.push_str(f.version);
                        b.push(' ');
                    }
                    if keep.timestamp {
                        b.push_str(f.stamp);
                        b.push(' ');
                    }
                    if keep.hostname {
                        b.push_str(f.host.unwrap_or("null"));
                        b.push(' ');
                    }
                    b.push_str(f.body);
                    body = Some(b.into_bytes());
                }
            }
            if incomplete {
                h.push(("flume.syslog.status", "Incomplete".into()));
            }
        }
    }
    let headers: Headers = h.into_iter().collect();
    let body = body.map_or_else(|| Bytes::copy_from_slice(raw), Bytes::from);
    Event::with_headers(headers, body)
}

struct Fields<'a> {
    priority: &'a str,
    version: &'a str,
    stamp: &'a str,
    timestamp_ms: Option<i64>,
    host: Option<&'a str>,
    body: &'a str,
}

fn fields(text: &str, now: DateTime<Local>) -> Option<Fields<'_>> {
    if let Some(c) = RFC5424.as_ref().and_then(|r| r.captures(text)) {
        let stamp = c.get(3).map_or("", |m| m.as_str());
        return Some(Fields {
            priority: c.get(1).map_or("", |m| m.as_str()),
            version: c.get(2).map_or("", |m| m.as_str()),
            stamp,
            timestamp_ms: rfc5424_ms(stamp),
            host: c.get(4).map(|m| m.as_str()),
            body: c.get(5).map_or("", |m| m.as_str()),
        });
    }
    let c = RFC3164.as_ref().and_then(|r| r.captures(text))?;
    let stamp = c.get(3).map_or("", |m| m.as_str());
    Some(Fields {
        priority: c.get(1).map_or("", |m| m.as_str()),
        version: c.get(2).map_or("", |m| m.as_str()),
        stamp,
        timestamp_ms: rfc3164_ms(stamp, now),
        host: c.get(4).map(|m| m.as_str()),
        body: c.get(5).map_or("", |m| m.as_str()),
    })
}

/// An RFC 5424 stamp in epoch ms (fractions cut to ms, as Flume); local time without a zone.
fn rfc5424_ms(stamp: &str) -> Option<i64> {
    if stamp == "-" {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(stamp) {
        return Some(t.timestamp_millis());
    }
    let naive = NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp_millis())
}

/// An RFC 3164 stamp (`MMM d HH:MM:SS`, local time) in epoch ms, with the year chosen around
/// `now`.
fn rfc3164_ms(stamp: &str, now: DateTime<Local>) -> Option<i64> {
    let stamp = stamp.split_whitespace().collect::<Vec<_>>().join(" ");
    let at = |year: i32| -> Option<DateTime<Local>> {
        let naive =
            NaiveDateTime::parse_from_str(&format!("{year} {stamp}"), "%Y %b %d %H:%M:%S").ok()?;
        Local.from_local_datetime(&naive).earliest()
    };
    let year = now.year();
    let t = at(year)?;
    let month = chrono::Duration::days(31);
    let t = if t > now + month {
        at(year - 1)?
    } else if t < now - chrono::Duration::days(335) {
        at(year + 1)?
    } else {
        t
    };
    Some(t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(e: &Event) -> Vec<(String, String)> {
        e.headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn get<'a>(e: &'a Event, k: &str) -> Option<&'a str> {
        e.headers.get(k)
    }

    #[test]
    fn rfc5424_and_rfc3164() {
        let now = Local::now();
        let none = KeepFields::default();
        let e = event(
            b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 - hello",
            false,
            &none,
            now,
        );
        assert_eq!(get(&e, "Facility"), Some("20"));
        assert_eq!(get(&e, "Severity"), Some("5"));
        assert_eq!(get(&e, "priority"), Some("165"));
        assert_eq!(get(&e, "version"), Some("1"));
        assert_eq!(get(&e, "timestamp"), Some("1065910455003"));
        assert_eq!(get(&e, "host"), Some("mymachine.example.com"));
        assert_eq!(&e.body[..], b"evntslog - ID47 - hello");
        let e = event(
            b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed",
            false,
            &none,
            now,
        );
        assert_eq!(get(&e, "Facility"), Some("4"));
        assert_eq!(get(&e, "Severity"), Some("2"));
        assert_eq!(get(&e, "host"), Some("mymachine"));
        assert!(get(&e, "timestamp").is_some());
        assert_eq!(&e.body[..], b"su: 'su root' failed");
        let keep = KeepFields::parse("timestamp hostname");
        let e = event(b"<34>Oct  1 22:14:15 mymachine su: x", false, &keep, now);
        assert_eq!(&e.body[..], b"Oct  1 22:14:15 mymachine su: x");
        let all = KeepFields::parse("true");
        let e = event(b"<34>Oct 11 22:14:15 mymachine su: x", true, &all, now);
        assert_eq!(&e.body[..], b"<34>Oct 11 22:14:15 mymachine su: x");
        assert_eq!(get(&e, "flume.syslog.status"), Some("Incomplete"));
    }

    #[test]
    fn invalid_and_unmatched() {
        let now = Local::now();
        let e = event(b"no priority here", false, &KeepFields::default(), now);
        assert_eq!(get(&e, "flume.syslog.status"), Some("Invalid"));
        assert_eq!(get(&e, "Facility"), Some("0"));
        assert_eq!(&e.body[..], b"no priority here");
        let e = event(b"<13>free text", false, &KeepFields::default(), now);
        assert_eq!(headers(&e).len(), 2, "{:?}", headers(&e));
        assert_eq!(&e.body[..], b"<13>free text");
        let e = event(b"<1234>x", false, &KeepFields::default(), now);
        assert_eq!(get(&e, "flume.syslog.status"), Some("Invalid"));
    }

    #[test]
    fn rfc3164_year_rolls_around_new_year() {
        let now = Local
            .with_ymd_and_hms(2027, 1, 2, 0, 0, 0)
            .earliest()
            .unwrap_or_else(Local::now);
        let ms = rfc3164_ms("Dec 31 23:00:00", now);
        let t = ms.and_then(|m| Local.timestamp_millis_opt(m).earliest());
        assert_eq!(t.map(|t| t.year()), Some(2026));
    }
}
