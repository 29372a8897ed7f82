//! Flume's `BucketPath` escapes for `hdfs.path` and `hdfs.filePrefix`.
//!
//! `%{name}` is the event header `name` (empty when absent), `%[localhost]`, `%[IP]` and
//! `%[FQDN]` the agent's host, `%%` a percent sign, and `%X` a field of the event's time (the
//! `timestamp` header in epoch milliseconds, or the agent's clock with `hdfs.useLocalTimeStamp`),
//! in `hdfs.timeZone`, after `hdfs.round`. The time fields are those of Flume's
//! `BucketPath.replaceShorthand`, formatted with `chrono`; an unknown `%X` is a config error
//! (Flume silently writes nothing for it).

use std::sync::OnceLock;

use chrono::{DateTime, FixedOffset, Local, TimeZone, Timelike, Utc};

use crate::event::Headers;

/// `hdfs.roundUnit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RoundUnit {
    Second,
    Minute,
    Hour,
}

/// `hdfs.round = true`: the timestamp is rounded down to a multiple of `value` `unit`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rounding {
    pub(crate) unit: RoundUnit,
    pub(crate) value: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Host {
    Name,
    Ip,
    Fqdn,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(String),
    Header(String),
    Host(Host),
    /// A time field: its chrono format, or `None` for `%t` (epoch milliseconds).
    Time(Option<&'static str>),
}

/// One time-escape letter → chrono format (`None` = epoch millis).
fn time_format(c: char) -> Option<Option<&'static str>> {
    Some(Some(match c {
        't' => return Some(None),
        'a' => "%a",
        'A' => "%A",
        'b' => "%b",
        'B' => "%B",
        'c' => "%a %b %-d %H:%M:%S %Y",
        'd' => "%d",
        'e' => "%-d",
        'D' => "%m/%d/%y",
        'H' => "%H",
        'I' => "%I",
        'j' => "%j",
        'k' => "%-H",
        'l' => "%-I",
        'm' => "%m",
        'n' => "%-m",
        'M' => "%M",
        'p' => "%p",
        's' => "%s",
        'S' => "%S",
        'y' => "%y",
        'Y' => "%Y",
        'z' => "%z",
        _ => return None,
    }))
}

/// A parsed `hdfs.path` or `hdfs.filePrefix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PathTemplate {
    source: String,
    tokens: Vec<Token>,
}

/// The event-independent inputs of one rendering.
pub(crate) struct TimeContext {
    pub(crate) zone: Option<chrono_tz::Tz>,
    pub(crate) rounding: Option<Rounding>,
    /// The agent's clock (epoch ms) when `hdfs.useLocalTimeStamp`, else `None`.
    pub(crate) local_now: Option<i64>,
}

/// Why `hdfs.path` or `hdfs.filePrefix` is no valid template.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TemplateError {
    #[error("unterminated `%{open}{name}` escape")]
    Unterminated { open: char, name: String },
    #[error("unknown escape `%[{0}]`; accepted: %[localhost], %[IP], %[FQDN]")]
    UnknownHost(String),
    #[error(
        "unknown escape `%{0}`; accepted: %{{header}}, %[localhost], %[IP], %[FQDN], %% and the \
         time escapes %a %A %b %B %c %d %e %D %H %I %j %k %l %m %n %M %p %s %S %t %y %Y %z"
    )]
    UnknownEscape(char),
    #[error("a lone `%` at the end; write `%%` for a percent sign")]
    LonePercent,
}

/// Why an event's time escapes cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RenderError {
    #[error(
        "the event has no `timestamp` header for the time escapes of hdfs.path / \
         hdfs.filePrefix (add a timestamp interceptor or set hdfs.useLocalTimeStamp = true)"
    )]
    NoTimestamp,
    #[error("the event's `timestamp` header `{raw}` is not epoch ms")]
    BadTimestamp {
        raw: String,
        source: std::num::ParseIntError,
    },
    #[error("timestamp {0} is out of range")]
    OutOfRange(i64),
}

/// Formatted time fields of the last timestamp rendered, so a batch whose events share a
/// second formats each field once, and events with the very same timestamp (one `timestamp`
/// interceptor reading per batch) skip the time-zone conversion too.
#[derive(Default)]
pub(crate) struct TimeCache {
    /// The input timestamp (ms) the fields were made from.
    raw: Option<i64>,
    key: Option<i64>,
    fields: Vec<String>,
}

impl PathTemplate {
    pub(crate) fn parse(s: &str) -> Result<Self, TemplateError> {
        let mut tokens = Vec::new();
        let mut lit = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                lit.push(c);
                continue;
            }
            let token = match chars.next() {
                Some('%') => {
                    lit.push('%');
                    continue;
                }
                Some(open @ ('{' | '[')) => {
                    let close = if open == '{' { '}' } else { ']' };
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some(c) if c == close => break,
                            Some(c) => name.push(c),
                            None => return Err(TemplateError::Unterminated { open, name }),
                        }
                    }
                    if open == '{' {
                        Token::Header(name)
                    } else if name.eq_ignore_ascii_case("localhost") {
                        Token::Host(Host::Name)
                    } else if name.eq_ignore_ascii_case("ip") {
                        Token::Host(Host::Ip)
                    } else if name.eq_ignore_ascii_case("fqdn") {
                        Token::Host(Host::Fqdn)
                    } else {
                        return Err(TemplateError::UnknownHost(name));
                    }
                }
                Some(c) => match time_format(c) {
                    Some(f) => Token::Time(f),
                    None => return Err(TemplateError::UnknownEscape(c)),
                },
                None => return Err(TemplateError::LonePercent),
            };
            if !lit.is_empty() {
                tokens.push(Token::Literal(std::mem::take(&mut lit)));
            }
            tokens.push(token);
        }
        if !lit.is_empty() {
            tokens.push(Token::Literal(lit));
        }
        Ok(Self {
            source: s.to_string(),
            tokens,
        })
    }

    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    #[cfg(test)]
    fn needs_time(&self) -> bool {
        self.tokens.iter().any(|t| matches!(t, Token::Time(_)))
    }

    /// The literal text before the first escape.
    pub(crate) fn literal_prefix(&self) -> &str {
        match self.tokens.first() {
            Some(Token::Literal(l)) => l,
            _ => "",
        }
    }

    /// True when the template has no escapes.
    pub(crate) fn is_literal(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Token::Literal(_)))
    }

    /// Appends the rendering for an event to `out`. Fails only for time escapes without a
    /// usable `timestamp` header.
    pub(crate) fn render(
        &self,
        headers: &Headers,
        time: &TimeContext,
        cache: &mut TimeCache,
        out: &mut String,
    ) -> Result<(), RenderError> {
        let mut fields = None;
        let mut field = 0;
        for t in &self.tokens {
            match t {
                Token::Literal(l) => out.push_str(l),
                Token::Header(h) => out.push_str(headers.get(h).unwrap_or("")),
                Token::Host(h) => out.push_str(host(*h)),
                Token::Time(_) => {
                    if fields.is_none() {
                        fields = Some(self.time_fields(headers, time, cache)?);
                    }
                    if let Some(f) = fields.and_then(|f: &[String]| f.get(field)) {
                        out.push_str(f);
                    }
                    field += 1;
                }
            }
        }
        Ok(())
    }

    fn time_fields<'c>(
        &self,
        headers: &Headers,
        time: &TimeContext,
        cache: &'c mut TimeCache,
    ) -> Result<&'c [String], RenderError> {
        let ts = match time.local_now {
            Some(now) => now,
            None => {
                let raw = headers.get("timestamp").ok_or(RenderError::NoTimestamp)?;
                raw.trim()
                    .parse::<i64>()
                    .map_err(|source| RenderError::BadTimestamp {
                        raw: raw.to_string(),
                        source,
                    })?
            }
        };
        if cache.raw == Some(ts) {
            return Ok(&cache.fields);
        }
        let dt = to_datetime(ts, time.zone).ok_or(RenderError::OutOfRange(ts))?;
        let dt = match time.rounding {
            Some(r) => round_down(dt, r),
            None => dt,
        };
        let millis = dt.timestamp_millis();
        let has_millis = self.tokens.iter().any(|t| matches!(t, Token::Time(None)));
        let key = if has_millis {
            millis
        } else {
            millis.div_euclid(1000)
        };
        if cache.key != Some(key) {
            cache.fields.clear();
            for t in &self.tokens {
                if let Token::Time(f) = t {
                    cache.fields.push(match f {
                        Some(f) => dt.format(f).to_string(),
                        None => millis.to_string(),
                    });
                }
            }
            cache.key = Some(key);
        }
        cache.raw = Some(ts);
        Ok(&cache.fields)
    }
}

fn to_datetime(ms: i64, zone: Option<chrono_tz::Tz>) -> Option<DateTime<FixedOffset>> {
    let utc = Utc.timestamp_millis_opt(ms).single()?;
    Some(match zone {
        Some(z) => utc.with_timezone(&z).fixed_offset(),
        None => utc.with_timezone(&Local).fixed_offset(),
    })
}

/// Flume's `TimestampRoundDownUtil`: the field of `unit` down to a multiple of `value`, the
/// smaller fields zeroed, in the rendering time zone.
fn round_down(dt: DateTime<FixedOffset>, r: Rounding) -> DateTime<FixedOffset> {
    let v = r.value.max(1) as u32;
    let rounded = match r.unit {
        RoundUnit::Second => dt.with_second(dt.second() - dt.second() % v),
        RoundUnit::Minute => dt
            .with_second(0)
            .and_then(|d| d.with_minute(d.minute() - d.minute() % v)),
        RoundUnit::Hour => dt
            .with_second(0)
            .and_then(|d| d.with_minute(0))
            .and_then(|d| d.with_hour(d.hour() - d.hour() % v)),
    };
    rounded.and_then(|d| d.with_nanosecond(0)).unwrap_or(dt)
}

fn host(h: Host) -> &'static str {
    static NAMES: OnceLock<[String; 3]> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        let name = gethostname::gethostname().to_string_lossy().into_owned();
        let ip = std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), 0))
            .ok()
            .and_then(|mut a| a.find(|a| a.is_ipv4()).or_else(|| a.next()))
            .map_or_else(|| "127.0.0.1".to_string(), |a| a.ip().to_string());
        let fqdn = fqdn(&name, &ip);
        [name, ip, fqdn]
    });
    match h {
        Host::Name => &names[0],
        Host::Ip => &names[1],
        Host::Fqdn => &names[2],
    }
}

/// The host name if it is qualified, else the first qualified alias `/etc/hosts` gives it.
fn fqdn(name: &str, ip: &str) -> String {
    if name.contains('.') {
        return name.to_string();
    }
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    hosts
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 1 && (f[0] == ip || f[1..].contains(&name)))
        .find_map(|f| {
            f[1..]
                .iter()
                .find(|n| n.contains('.'))
                .map(|n| n.to_string())
        })
        .unwrap_or_else(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

    fn render(t: &str, h: &[(&str, &str)], ctx: &TimeContext) -> TestResult<String> {
        let t = PathTemplate::parse(t)?;
        let headers: Headers = h.iter().copied().collect();
        let mut out = String::new();
        t.render(&headers, ctx, &mut TimeCache::default(), &mut out)?;
        Ok(out)
    }

    fn utc(rounding: Option<Rounding>) -> TimeContext {
        TimeContext {
            zone: Some(chrono_tz::UTC),
            rounding,
            local_now: None,
        }
    }

    #[test]
    fn time_header_and_literal_escapes() -> TestResult {
        // 2024-03-05 07:08:09.123 UTC, a Tuesday, day 65.
        let ts = [("timestamp", "1709622489123"), ("host", "web1")];
        let got = render(
            "/logs/%{host}/%Y-%m-%d/%H%M%S/%y %j %k %l %p %z %s %t %e %n %a %b %D %%",
            &ts,
            &utc(None),
        )?;
        assert_eq!(
            got,
            "/logs/web1/2024-03-05/070809/24 065 7 7 AM +0000 1709622489 1709622489123 5 3 \
             Tue Mar 03/05/24 %"
        );
        assert_eq!(render("/x/%{missing}/y", &ts, &utc(None))?, "/x//y");
        let paris = TimeContext {
            zone: Some(chrono_tz::Europe::Paris),
            ..utc(None)
        };
        assert_eq!(render("%H %z", &ts, &paris)?, "08 +0100");
        Ok(())
    }

    #[test]
    fn rounding_and_missing_timestamp() -> TestResult {
        let ts = [("timestamp", "1709622489123")];
        let r = |unit, value| utc(Some(Rounding { unit, value }));
        assert_eq!(
            render("%H:%M:%S", &ts, &r(RoundUnit::Minute, 10))?,
            "07:00:00"
        );
        assert_eq!(
            render("%H:%M:%S", &ts, &r(RoundUnit::Second, 30))?,
            "07:08:00"
        );
        assert_eq!(render("%H:%M:%S", &ts, &r(RoundUnit::Hour, 6))?, "06:00:00");
        assert!(render("/x/%Y", &[], &utc(None)).is_err());
        assert_eq!(render("/x/%{h}", &[], &utc(None))?, "/x/");
        let local = TimeContext {
            local_now: Some(0),
            ..utc(None)
        };
        assert_eq!(render("%Y", &[], &local)?, "1970");
        Ok(())
    }

    #[test]
    fn parse_errors_and_prefixes() -> TestResult {
        assert!(PathTemplate::parse("/a/%Q").is_err());
        assert!(PathTemplate::parse("/a/%{x").is_err());
        assert!(PathTemplate::parse("/a/%[nope]").is_err());
        let t = PathTemplate::parse("/data/logs/%Y/x")?;
        assert_eq!(t.literal_prefix(), "/data/logs/");
        assert!(t.needs_time() && !t.is_literal());
        assert!(!host(Host::Name).is_empty() && !host(Host::Ip).is_empty());
        Ok(())
    }
}
