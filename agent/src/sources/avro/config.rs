use std::net::IpAddr;
use std::time::Duration;

use regex::Regex;

use crate::config::{ConfigError, MAX_BATCH, MAX_MILLIS, Props};
use crate::pipeline::{BoxError, SourceContext, SourceInstance, SourceSpec};

use super::source::AvroSource;

#[derive(Clone, Debug)]
pub(crate) struct IpRule {
    pub(crate) allow: bool,
    pub(crate) pattern: Regex,
}

#[derive(Clone, Debug)]
pub(crate) struct AvroSourceConfig {
    /// `bind` (required).
    pub(crate) bind: String,
    /// `port` (required).
    pub(crate) port: u16,
    /// `threads`: requests decoded and committed at once (blocking worker threads); 0 (the
    /// default) = the number of CPUs, at least 4 and at most 64.
    pub(crate) threads: usize,
    /// `max-connections` (sluice; default 1000): open connections; further clients wait in the
    /// accept backlog.
    pub(crate) max_connections: usize,
    /// `idle-timeout` (sluice; ms, default 60000, 0 = never): a connection with no request in
    /// progress that sends nothing for this long is closed.
    pub(crate) idle_timeout: Option<Duration>,
    /// `read-timeout` (sluice; ms, default 30000): a client that sends nothing for this long
    /// in the middle of a request, or does not take its reply, is closed; also the longest
    /// wait for `max-buffered-bytes`.
    pub(crate) read_timeout: Duration,
    /// `max-buffered-bytes` (sluice; default 256 MiB, at least `max-message-bytes`): requests
    /// being received or processed, over all connections.
    pub(crate) max_buffered_bytes: usize,
    /// `compression-type`: `none` or `deflate` (default none).
    pub(crate) deflate: bool,
    /// `ipFilter` + `ipFilterRules`: `allow|deny:ip:<pattern>` rules, first match wins.
    pub(crate) ip_rules: Option<Vec<IpRule>>,
    /// `max-message-bytes` (sluice; default 64 MiB): larger requests close the connection.
    pub(crate) max_message_bytes: usize,
    /// `max-batch-events` (sluice; default 100000): larger batches close the connection.
    pub(crate) max_batch_events: usize,
    /// `ssl = true` with `ssl.certificate` and `ssl.key` (PEM).
    pub(crate) tls: Option<TlsFiles>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    pub(crate) certificate: std::path::PathBuf,
    pub(crate) key: std::path::PathBuf,
}

fn parse_rules(p: &Props) -> Result<Vec<IpRule>, ConfigError> {
    let text = p.required("ipFilterRules")?;
    let mut rules = Vec::new();
    for def in text.split(',').map(str::trim) {
        let parts: Vec<&str> = def.splitn(3, ':').collect();
        let form = "rules look like allow:ip:10.0.* or deny:ip:*, comma-separated";
        let [access, kind, pattern] = parts[..] else {
            return Err(p.error("ipFilterRules", format!("invalid rule `{def}`; {form}")));
        };
        let allow = match access {
            "allow" => true,
            "deny" => false,
            _ => return Err(p.error("ipFilterRules", format!("invalid rule `{def}`; {form}"))),
        };
        if kind != "ip" {
            return Err(p.error(
                "ipFilterRules",
                format!(
                    "rule `{def}`: only `ip` rules are supported (host-name rules need reverse DNS)"
                ),
            ));
        }
        let re = format!("^{}$", regex::escape(pattern).replace(r"\*", ".*"));
        let pattern =
            Regex::new(&re).map_err(|e| p.error("ipFilterRules", format!("rule `{def}`: {e}")))?;
        rules.push(IpRule { allow, pattern });
    }
    Ok(rules)
}

impl AvroSourceConfig {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
        let deflate = p.choice(
            "compression-type",
            false,
            &[(&["none"], false), (&["deflate"], true)],
        )?;
        let tls = if p.bool("ssl", false)? {
            let (certificate, key) = p.server_pem()?;
            Some(TlsFiles { certificate, key })
        } else {
            None
        };
        let ip_rules = if p.bool("ipFilter", false)? {
            Some(parse_rules(p)?)
        } else {
            None
        };
        let max_message_bytes = p.int("max-message-bytes", 64 << 20, 1..=i32::MAX as usize)?;
        let max_buffered_bytes = p.int(
            "max-buffered-bytes",
            (256 << 20).max(max_message_bytes),
            1..=1 << 40,
        )?;
        if max_buffered_bytes < max_message_bytes {
            return Err(p.error(
                "max-buffered-bytes",
                format!(
                    "must be at least max-message-bytes ({max_message_bytes}): a largest request \
                     could never be received"
                ),
            ));
        }
        let threads = p.int("threads", 0, 0..=4096)?;
        let max_connections = p.int("max-connections", 1000, 1..=1_000_000)?;
        let idle_timeout = p.millis("idle-timeout", 60_000, 0..=MAX_MILLIS)?;
        let read_timeout = p.millis("read-timeout", 30_000, 1..=MAX_MILLIS)?;
        Ok(Self {
            bind: p.required("bind")?,
            port: p.parse("port", 0u16, "a TCP port number").and_then(|v| {
                if p.get("port").is_none() {
                    Err(p.error("port", "is required"))
                } else {
                    Ok(v)
                }
            })?,
            threads,
            max_connections,
            idle_timeout: (!idle_timeout.is_zero()).then_some(idle_timeout),
            read_timeout,
            max_buffered_bytes,
            deflate,
            ip_rules,
            max_message_bytes,
            max_batch_events: p.int("max-batch-events", 100_000, 1..=MAX_BATCH)?,
            tls,
        })
    }

    /// Blocking workers: `threads`, or by default one per CPU, at least 4 and at most 64.
    pub(crate) fn workers(&self) -> usize {
        if self.threads > 0 {
            return self.threads;
        }
        std::thread::available_parallelism().map_or(4, |n| n.get().clamp(4, 64))
    }

    pub(super) fn allowed(&self, ip: IpAddr) -> bool {
        let Some(rules) = &self.ip_rules else {
            return true;
        };
        let s = ip.to_string();
        rules
            .iter()
            .find(|r| r.pattern.is_match(&s))
            .is_none_or(|r| r.allow)
    }
}

impl SourceSpec for AvroSourceConfig {
    fn build(&self, cx: &SourceContext) -> Result<SourceInstance, BoxError> {
        Ok(SourceInstance::Driven(Box::new(AvroSource::new(
            &cx.cx.name,
            self.clone(),
        ))))
    }
}
