//! `host`: sets a header to this machine's IP address or host name.

use std::net::ToSocketAddrs;

use crate::config::{ConfigError, Props};
use crate::event::{Event, SharedStr, edit_batch};
use crate::pipeline::{Interceptor, InterceptorError};

#[derive(Clone, Debug)]
pub struct HostConfig {
    /// `hostHeader` (default `host`).
    pub header: SharedStr,
    /// `useIP` (default true): the address the host name resolves to, else the name.
    pub use_ip: bool,
    /// `preserveExisting` (default false).
    pub preserve_existing: bool,
}

impl HostConfig {
    pub fn from_props(p: &Props) -> Result<Self, ConfigError> {
        Ok(Self {
            header: p.string("hostHeader", "host").into(),
            use_ip: p.bool("useIP", true)?,
            preserve_existing: p.bool("preserveExisting", false)?,
        })
    }
}

pub struct HostInterceptor {
    config: HostConfig,
    value: SharedStr,
}

/// This machine's host name.
pub fn local_hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// The address the host name resolves to (IPv4 first), like Java's
/// `InetAddress.getLocalHost().getHostAddress()`.
pub fn local_ip() -> String {
    let name = local_hostname();
    let addrs: Vec<_> = (name.as_str(), 0)
        .to_socket_addrs()
        .map(|a| a.collect())
        .unwrap_or_default();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .map_or_else(|| "127.0.0.1".to_string(), |a| a.ip().to_string())
}

impl HostInterceptor {
    pub fn new(config: &HostConfig) -> Self {
        let value = if config.use_ip {
            local_ip()
        } else {
            local_hostname()
        };
        Self {
            config: config.clone(),
            value: value.into(),
        }
    }
}

impl Interceptor for HostInterceptor {
    fn intercept(&self, mut events: Vec<Event>) -> Result<Vec<Event>, InterceptorError> {
        let HostConfig {
            header,
            preserve_existing,
            ..
        } = &self.config;
        edit_batch(&mut events, |h| {
            if !(*preserve_existing && h.contains_key(header)) {
                h.insert(header.clone(), self.value.clone());
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
    fn sets_hostname() {
        let k = HostConfig {
            header: "h".into(),
            use_ip: false,
            preserve_existing: false,
        };
        let out = run(&k, vec![Event::new("a")]);
        assert_eq!(out[0].headers.get("h"), Some(local_hostname().as_str()));
    }
}
