//! `thrift`: Flume's ThriftSink. Sends each batch as one `appendBatch` call (compact protocol
//! by default, or binary, over framed transport, optionally TLS) and commits the take only when
//! the receiver answered `OK`. Anything else (`FAILED`, an exception, a timeout, a broken
//! connection) rolls the batch back; the runner backs off and the next attempt reconnects if
//! the connection was lost.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::avro::client::TlsClient;
use crate::config::{ConfigError, MAX_BATCH, MAX_MILLIS, MAX_SECONDS, Props};
use crate::event::Event;
use crate::metrics::SinkCounters;
use crate::pipeline::{BoxError, Sink, SinkContext, SinkError, SinkSpec};
use crate::thrift::Protocol;
use crate::thrift::client::{ClientConfig, ThriftClient};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ThriftSinkConfig {
    pub(crate) client: ClientConfig,
    /// `batch-size` (default 100).
    pub(crate) batch_size: usize,
    /// `reset-connection-interval` seconds, 0 = never (default 0).
    pub(crate) reset_interval: Duration,
}

impl ThriftSinkConfig {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
        if p.bool("kerberos", false)? {
            return Err(p.error(
                "kerberos",
                "kerberos = true (Thrift over SASL/GSSAPI) is not supported by sluice's thrift \
                 sink; use ssl = true for an encrypted connection",
            ));
        }
        p.claim("client-principal");
        p.claim("client-keytab");
        p.claim("server-principal");
        let protocol = p.choice(
            "protocol",
            Protocol::Compact,
            &[
                (&["compact"], Protocol::Compact),
                (&["binary"], Protocol::Binary),
            ],
        )?;
        let tls = TlsClient::from_props(p)?;
        let host = p.required("hostname")?;
        if p.get("port").is_none_or(str::is_empty) {
            return Err(p.error("port", "is required"));
        }
        Ok(Self {
            client: ClientConfig {
                host,
                port: p.int("port", 0u16, 0..=u16::MAX)?,
                connect_timeout: p.millis("connect-timeout", 20_000, 1000..=MAX_MILLIS)?,
                request_timeout: p.millis("request-timeout", 20_000, 1000..=MAX_MILLIS)?,
                protocol,
                tls,
            },
            batch_size: p.int("batch-size", 100, 1..=MAX_BATCH)?,
            reset_interval: p.seconds("reset-connection-interval", 0, 0..=MAX_SECONDS)?,
        })
    }
}

pub(crate) struct ThriftSink {
    name: String,
    config: ThriftSinkConfig,
    client: ThriftClient,
    counters: Arc<SinkCounters>,
}

impl ThriftSink {
    pub(crate) fn new(name: &str, config: ThriftSinkConfig, counters: Arc<SinkCounters>) -> Self {
        let client = ThriftClient::new(config.client.clone());
        Self {
            name: name.to_string(),
            config,
            client,
            counters,
        }
    }

    fn ensure_connected(&mut self) -> Result<(), SinkError> {
        let reset = !self.config.reset_interval.is_zero()
            && self
                .client
                .connection_age()
                .is_some_and(|a| a >= self.config.reset_interval);
        if reset || self.client.close_if_closed_by_peer() {
            self.client.close();
            self.counters
                .connection_closed
                .fetch_add(1, Ordering::Relaxed);
        }
        if !self.client.is_connected() {
            match self.client.connect() {
                Ok(()) => {
                    self.counters
                        .connection_created
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        sink = %self.name,
                        peer = %self.client.peer(),
                        protocol = self.config.client.protocol.name(),
                        "Thrift sink connected."
                    );
                }
                Err(e) => {
                    self.counters
                        .connection_failed
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(SinkError::Failed {
                        sink: self.name.clone(),
                        cause: Arc::new(e),
                    });
                }
            }
        }
        Ok(())
    }
}

impl Sink for ThriftSink {
    fn deliver(&mut self, events: &[Event]) -> Result<(), SinkError> {
        self.ensure_connected()?;
        self.client.append_batch(events).map_err(|cause| {
            if !self.client.is_connected() {
                self.counters
                    .connection_closed
                    .fetch_add(1, Ordering::Relaxed);
            }
            SinkError::Failed {
                sink: self.name.clone(),
                cause: Arc::new(cause),
            }
        })
    }

    fn stop(&mut self) {
        if self.client.is_connected() {
            self.client.close();
            self.counters
                .connection_closed
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl SinkSpec for ThriftSinkConfig {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn build(&self, cx: &SinkContext) -> Result<Box<dyn Sink>, BoxError> {
        Ok(Box::new(ThriftSink::new(
            &cx.cx.name,
            self.clone(),
            cx.counters.clone(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &[(&str, &str)]) -> Result<ThriftSinkConfig, ConfigError> {
        let mut pairs = vec![("hostname", "127.0.0.1"), ("port", "4545")];
        pairs.extend_from_slice(extra);
        ThriftSinkConfig::from_props(&Props::from_pairs(&pairs))
    }

    #[test]
    fn defaults_follow_flume_and_keys_have_ranges() -> Result<(), ConfigError> {
        let c = config(&[])?;
        assert_eq!(c.batch_size, 100);
        assert_eq!(c.client.connect_timeout, Duration::from_secs(20));
        assert_eq!(c.client.request_timeout, Duration::from_secs(20));
        assert_eq!(c.client.protocol, Protocol::Compact);
        assert_eq!(c.reset_interval, Duration::ZERO);
        assert!(c.client.tls.is_none());
        let c = config(&[("protocol", "binary"), ("reset-connection-interval", "30")])?;
        assert_eq!(c.client.protocol, Protocol::Binary);
        assert_eq!(c.reset_interval, Duration::from_secs(30));
        for (key, value, says) in [
            ("batch-size", "0", "1 to 1000000"),
            ("connect-timeout", "999", "1000 to 86400000"),
            ("request-timeout", "99999999999", "1000 to 86400000"),
            ("reset-connection-interval", "100000", "0 to 86400"),
            ("port", "65536", "0 to 65535"),
            ("protocol", "json", "accepted: compact, binary"),
            ("kerberos", "true", "not supported"),
            ("ssl", "true", "ssl.ca"),
        ] {
            let err = config(&[(key, value)]).err().map(|e| e.to_string());
            let err = err.unwrap_or_default();
            assert!(err.contains(says), "{key} = {value}: {err}");
        }
        let err = config(&[("ssl", "true"), ("truststore", "/ts.jks")]).err();
        let err = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("keytool -exportcert"), "{err}");
        let c = config(&[("ssl", "true"), ("ssl.ca", "/ca.pem")])?;
        assert!(c.client.tls.is_some_and(|t| !t.trust_all));
        Ok(())
    }
}
