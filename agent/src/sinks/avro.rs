//! `avro`: Flume's AvroSink. Sends each batch as one `appendBatch` call and commits the take only
//! when the receiver answered OK. Failures (refused, timeout, broken connection) roll the batch
//! back; the connection is re-established on the next attempt (the runner backs off, and a sink
//! group can fail over meanwhile).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::avro::client::{ClientConfig, RpcClient, TlsClient};
use crate::config::{ConfigError, MAX_BATCH, MAX_MILLIS, MAX_SECONDS, Props};
use crate::event::Event;
use crate::metrics::SinkCounters;
use crate::pipeline::{BoxError, Sink, SinkContext, SinkError, SinkSpec};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AvroSinkConfig {
    pub(crate) client: ClientConfig,
    /// `batch-size` (default 100).
    pub(crate) batch_size: usize,
    /// `reset-connection-interval` seconds, 0 = never (default 0): reconnect periodically so a
    /// load balancer in front of several receivers can spread clients.
    pub(crate) reset_interval: Duration,
    /// `max-in-flight` (sluice; default 4, 1 = Flume's one call at a time): batches sent on the
    /// connection before the answer to the first is read. Each is its own take transaction.
    pub(crate) max_in_flight: usize,
}

/// The ticket of a batch delivered synchronously (before the handshake was done).
const DELIVERED: u64 = 0;

impl AvroSinkConfig {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
        let deflate = p.choice(
            "compression-type",
            false,
            &[(&["none"], false), (&["deflate"], true)],
        )?;
        let level = p.int("compression-level", 6u64, 0..=9)?;
        if level > 9 {
            return Err(p.error("compression-level", "must be between 0 and 9"));
        }
        let tls = TlsClient::from_props(p)?;
        let port = p.required("port")?;
        let port: u16 = port.parse().map_err(|_| {
            p.error(
                "port",
                format!("invalid value `{port}`; expected a TCP port"),
            )
        })?;
        Ok(Self {
            client: ClientConfig {
                host: p.required("hostname")?,
                port,
                connect_timeout: p.millis("connect-timeout", 20_000, 1000..=MAX_MILLIS)?,
                request_timeout: p.millis("request-timeout", 20_000, 1000..=MAX_MILLIS)?,
                deflate: deflate.then_some(level as u32),
                tls,
            },
            batch_size: p.int("batch-size", 100, 1..=MAX_BATCH)?,
            reset_interval: p.seconds("reset-connection-interval", 0, 0..=MAX_SECONDS)?,
            max_in_flight: p.int("max-in-flight", 4, 1..=MAX_IN_FLIGHT)?,
        })
    }
}

/// Upper bound of `max-in-flight`: beyond a few batches the pipe is full and more only holds
/// more events in open take transactions.
const MAX_IN_FLIGHT: usize = 16;

pub(crate) struct AvroSink {
    name: String,
    config: AvroSinkConfig,
    client: RpcClient,
    counters: Arc<SinkCounters>,
}

impl AvroSink {
    pub(crate) fn new(name: &str, config: AvroSinkConfig, counters: Arc<SinkCounters>) -> Self {
        let client = RpcClient::new(config.client.clone());
        Self {
            name: name.to_string(),
            config,
            client,
            counters,
        }
    }

    fn failed(&self, cause: crate::avro::client::RpcError) -> SinkError {
        if !self.client.is_connected() {
            self.counters
                .connection_closed
                .fetch_add(1, Ordering::Relaxed);
        }
        SinkError::Failed {
            sink: self.name.clone(),
            cause: Arc::new(cause),
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
                    tracing::info!(sink = %self.name, peer = %self.client.peer(), "Avro sink connected.");
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

impl Sink for AvroSink {
    fn deliver(&mut self, events: &[Event]) -> Result<(), SinkError> {
        self.ensure_connected()?;
        self.client.append_batch(events).map_err(|e| self.failed(e))
    }

    fn pipeline_depth(&self) -> usize {
        self.config.max_in_flight
    }

    /// Pipelines once the connection's handshake is done; the first batch on a connection
    /// goes synchronously (it carries the handshake, which may have to be repeated).
    fn send(&mut self, events: &[Event]) -> Result<u64, SinkError> {
        if self.client.in_flight() == 0 {
            self.ensure_connected()?;
        }
        if !self.client.is_established() {
            self.deliver(events)?;
            return Ok(DELIVERED);
        }
        let serial = self.client.send_batch(events).map_err(|e| self.failed(e))?;
        Ok(u64::from(serial as u32) + 1)
    }

    fn finish(&mut self, ticket: u64) -> Result<(), SinkError> {
        if ticket == DELIVERED {
            return Ok(());
        }
        let serial = (ticket - 1) as u32 as i32;
        self.client.receive(serial).map_err(|e| self.failed(e))
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

impl SinkSpec for AvroSinkConfig {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn build(&self, cx: &SinkContext) -> Result<Box<dyn Sink>, BoxError> {
        Ok(Box::new(AvroSink::new(
            &cx.cx.name,
            self.clone(),
            cx.counters.clone(),
        )))
    }
}
