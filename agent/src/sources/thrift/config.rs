use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ConfigError, MAX_BATCH, MAX_MILLIS, Props};
use crate::pipeline::{BoxError, SourceContext, SourceInstance, SourceSpec};
use crate::thrift::{FLUME_MAX_FRAME, Protocol};

use super::source::ThriftSource;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    pub(crate) certificate: PathBuf,
    pub(crate) key: PathBuf,
}

#[derive(Clone, Debug)]
pub(crate) struct ThriftSourceConfig {
    /// `bind` (required).
    pub(crate) bind: String,
    /// `port` (required).
    pub(crate) port: u16,
    /// `protocol`: `compact` (default, as Flume) or `binary`.
    pub(crate) protocol: Protocol,
    /// `threads`: requests decoded and committed at once; 0 (the default) = the number of
    /// CPUs, at least 4 and at most 64.
    pub(crate) threads: usize,
    /// `max-connections` (sluice; default 1000).
    pub(crate) max_connections: usize,
    /// `idle-timeout` (sluice; ms, default 60000, 0 = never).
    pub(crate) idle_timeout: Option<Duration>,
    /// `read-timeout` (sluice; ms, default 30000): mid-frame silence, reply not taken, and the
    /// longest wait for `max-buffered-bytes`.
    pub(crate) read_timeout: Duration,
    /// `max-message-bytes` (sluice; default 16384000, Thrift's default frame limit in Flume).
    pub(crate) max_message_bytes: usize,
    /// `max-buffered-bytes` (sluice; default 256 MiB, at least `max-message-bytes`).
    pub(crate) max_buffered_bytes: usize,
    /// `max-batch-events` (sluice; default 100000): a larger `appendBatch` closes the
    /// connection.
    pub(crate) max_batch_events: usize,
    /// `ssl = true` with `ssl.certificate` and `ssl.key` (PEM).
    pub(crate) tls: Option<TlsFiles>,
}

impl ThriftSourceConfig {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
        if p.bool("kerberos", false)? {
            return Err(p.error(
                "kerberos",
                "kerberos = true (Thrift over SASL/GSSAPI) is not supported by sluice's thrift \
                 source; use ssl = true for an encrypted connection",
            ));
        }
        // Only used with kerberos = true.
        p.claim("agent-principal");
        p.claim("agent-keytab");
        let protocol = p.choice(
            "protocol",
            Protocol::Compact,
            &[
                (&["compact"], Protocol::Compact),
                (&["binary"], Protocol::Binary),
            ],
        )?;
        let tls = if p.bool("ssl", false)? {
            let keystore_hint = if p.get("keystore").is_some() {
                "; sluice reads PEM, not Java keystores: `keytool -importkeystore -srckeystore \
                 keystore.jks -destkeystore ks.p12 -deststoretype PKCS12`, then `openssl pkcs12 \
                 -in ks.p12 -nokeys -out cert.pem` and `openssl pkcs12 -in ks.p12 -nocerts -nodes \
                 -out key.pem`"
            } else {
                ""
            };
            let need = |key: &str| {
                p.get(key)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
                    .ok_or_else(|| {
                        p.error(
                            key,
                            format!("ssl = true needs {key} (a PEM file){keystore_hint}"),
                        )
                    })
            };
            let tls = TlsFiles {
                certificate: need("ssl.certificate")?,
                key: need("ssl.key")?,
            };
            p.claim("keystore");
            Some(tls)
        } else {
            None
        };
        let max_message_bytes =
            p.int("max-message-bytes", FLUME_MAX_FRAME, 1..=i32::MAX as usize)?;
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
        let idle_timeout = p.millis("idle-timeout", 60_000, 0..=MAX_MILLIS)?;
        let bind = p.required("bind")?;
        if p.get("port").is_none_or(str::is_empty) {
            return Err(p.error("port", "is required"));
        }
        Ok(Self {
            bind,
            port: p.int("port", 0u16, 0..=u16::MAX)?,
            protocol,
            threads: p.int("threads", 0, 0..=4096)?,
            max_connections: p.int("max-connections", 1000, 1..=1_000_000)?,
            idle_timeout: (!idle_timeout.is_zero()).then_some(idle_timeout),
            read_timeout: p.millis("read-timeout", 30_000, 1..=MAX_MILLIS)?,
            max_message_bytes,
            max_buffered_bytes,
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
}

impl SourceSpec for ThriftSourceConfig {
    fn build(&self, cx: &SourceContext) -> Result<SourceInstance, BoxError> {
        Ok(SourceInstance::Driven(Box::new(ThriftSource::new(
            &cx.cx.name,
            self.clone(),
        ))))
    }
}
