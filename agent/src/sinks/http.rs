//! `http`: Flume's HttpSink (`org.apache.flume.sink.http.HttpSink`). Each event's body is
//! `POST`ed to `endpoint` as one request (`Content-Type: contentTypeHeader`,
//! `Accept: acceptHeader`); events with an empty body are skipped, as in Flume.
//!
//! What a response does is looked up per status code as Flume does: `rollback.<code>`, then
//! `rollback.<first digit>XX`, then `defaultRollback` (and likewise `backoff.*`). A rolled-back
//! event fails the batch: the take is rolled back and retried after the runner's backoff. An
//! event whose code says "no rollback" is done: committed with the batch, and counted as dropped
//! (`HttpEventDropCount`) when the code is not 2xx. `backoff = true` with no rollback pauses the
//! sink for [`BACKOFF`] before its next request.
//!
//! Differences from Flume: a `2xx` answer commits (and does not back off) unless `rollback.2XX`,
//! `rollback.<code>`, `backoff.2XX` or `backoff.<code>` say otherwise — Flume applies
//! `defaultRollback` (true) to every code, so without `rollback.200 = false` it re-sends what
//! the server accepted; a rollback always backs off (Flume retries at once when `backoff` is
//! false for the code); `incrementMetrics.*` is accepted but `EventDrainSuccessCount` counts
//! every committed event. sluice's `batchSize` (default 1, Flume's one event per transaction)
//! takes several events per transaction, sent one request each.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::config::{ConfigError, MAX_BATCH, MAX_MILLIS, Props};
use crate::event::Event;
use crate::metrics::{Combined, ComponentType, HttpSinkCounters};
use crate::pipeline::{BoxError, Sink, SinkContext, SinkError, SinkSpec};

/// The pause after a committed answer whose code asks for a backoff (Flume's sink runner
/// starts backing off at one second).
const BACKOFF: Duration = Duration::from_secs(1);
/// The most of a response body read (and discarded) so the connection can be reused.
const MAX_RESPONSE_BYTES: u64 = 1 << 20;

/// Per-code overrides of one policy (`rollback`, `backoff` or `incrementMetrics`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Policy {
    default: bool,
    /// `"503"` or `"5XX"` → value.
    codes: HashMap<String, bool>,
}

impl Policy {
    fn parse(
        p: &Props,
        default_key: &str,
        default: bool,
        prefix: &str,
    ) -> Result<Self, ConfigError> {
        let default = p.bool(default_key, default)?;
        let mut codes = HashMap::new();
        for (code, _) in p.children(&format!("{prefix}.")) {
            let valid_code = match code.as_bytes() {
                [d, b'X', b'X'] | [d, b'x', b'x'] => (b'1'..=b'5').contains(d),
                [d, r @ ..] if r.len() == 2 => {
                    (b'1'..=b'5').contains(d) && r.iter().all(u8::is_ascii_digit)
                }
                _ => false,
            };
            if !valid_code {
                return Err(p.error(
                    &format!("{prefix}.{code}"),
                    "expected an HTTP status code (100 to 599) or a class such as 4XX",
                ));
            }
            let v = p.bool(&format!("{prefix}.{code}"), default)?;
            codes.insert(code.to_ascii_uppercase(), v);
        }
        Ok(Self { default, codes })
    }

    /// The explicit setting for `code` (code, then class), if any.
    fn explicit(&self, code: u16) -> Option<bool> {
        let exact = code.to_string();
        let class = format!("{}XX", code / 100);
        self.codes
            .get(&exact)
            .or_else(|| self.codes.get(&class))
            .copied()
    }

    /// Flume's lookup, except that a 2xx without an explicit setting is a success (`false`).
    fn for_code(&self, code: u16) -> bool {
        self.explicit(code)
            .unwrap_or(if (200..300).contains(&code) {
                false
            } else {
                self.default
            })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HttpSinkConfig {
    pub(crate) endpoint: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) content_type: String,
    pub(crate) accept: String,
    pub(crate) rollback: Policy,
    pub(crate) backoff: Policy,
    pub(crate) batch_size: usize,
}

impl HttpSinkConfig {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
        let endpoint = p.required("endpoint")?;
        let lower = endpoint.to_ascii_lowercase();
        let valid = (lower.starts_with("http://") || lower.starts_with("https://"))
            && endpoint
                .parse::<ureq::http::Uri>()
                .is_ok_and(|u| u.host().is_some_and(|h| !h.is_empty()));
        if !valid {
            return Err(p.error(
                "endpoint",
                format!("Endpoint URL invalid: `{endpoint}` (expected http://host[:port]/path)"),
            ));
        }
        let header = |key: &str, default: &str| -> Result<String, ConfigError> {
            let v = p.string(key, default);
            if v.is_empty() || v.bytes().any(|b| b < 0x20 || b == 0x7f) {
                return Err(p.error(
                    key,
                    "must be a non-empty header value without control characters",
                ));
            }
            Ok(v)
        };
        // Accepted for Flume's configurations; see the module's note on metrics.
        p.claim("defaultIncrementMetrics");
        p.claim("incrementMetrics");
        Ok(Self {
            endpoint,
            connect_timeout: p.millis("connectTimeout", 5000, 1..=MAX_MILLIS)?,
            request_timeout: p.millis("requestTimeout", 5000, 1..=MAX_MILLIS)?,
            content_type: header("contentTypeHeader", "text/plain")?,
            accept: header("acceptHeader", "text/plain")?,
            rollback: Policy::parse(p, "defaultRollback", true, "rollback")?,
            backoff: Policy::parse(p, "defaultBackoff", true, "backoff")?,
            batch_size: p.int("batchSize", 1, 1..=MAX_BATCH)?,
        })
    }
}

impl SinkSpec for HttpSinkConfig {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn build(&self, cx: &SinkContext) -> Result<Box<dyn Sink>, BoxError> {
        let own = HttpSinkCounters::new();
        cx.cx.register(
            ComponentType::Sink,
            Arc::new(Combined(cx.counters.clone(), own.clone())),
        );
        let mut tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()));
        if self.endpoint.to_ascii_lowercase().starts_with("https:") {
            let roots = crate::config::sources::native_roots()
                .map_err(|m| format!("endpoint {}: {m}", self.endpoint))?;
            tls = tls.root_certs(roots);
        }
        let tls = tls.build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(self.connect_timeout))
            .timeout_send_request(Some(self.request_timeout))
            .timeout_send_body(Some(self.request_timeout))
            .timeout_recv_response(Some(self.request_timeout))
            .timeout_recv_body(Some(self.request_timeout))
            .tls_config(tls)
            .build()
            .into();
        Ok(Box::new(HttpSink {
            name: cx.cx.name.clone(),
            config: self.clone(),
            agent,
            counters: own,
            paused_until: None,
        }))
    }
}

#[derive(Debug, thiserror::Error)]
enum HttpSinkError {
    #[error("POST {endpoint}: {source}")]
    Request {
        endpoint: String,
        #[source]
        source: ureq::Error,
    },
    #[error("POST {endpoint}: status {code}; the batch is rolled back")]
    RolledBack { endpoint: String, code: u16 },
}

struct HttpSink {
    name: String,
    config: HttpSinkConfig,
    agent: ureq::Agent,
    counters: Arc<HttpSinkCounters>,
    paused_until: Option<Instant>,
}

impl HttpSink {
    fn fail(&self, e: HttpSinkError) -> SinkError {
        SinkError::Failed {
            sink: self.name.clone(),
            cause: Arc::new(e),
        }
    }

    /// One request; the status code of the answer.
    fn post(&self, body: &[u8]) -> Result<u16, HttpSinkError> {
        let request_err = |source| HttpSinkError::Request {
            endpoint: self.config.endpoint.clone(),
            source,
        };
        let mut resp = self
            .agent
            .post(&self.config.endpoint)
            .header("Content-Type", &self.config.content_type)
            .header("Accept", &self.config.accept)
            .send(body)
            .map_err(request_err)?;
        let code = resp.status().as_u16();
        // Read what the server sent (bounded) so the connection is reused; its content does
        // not matter.
        let _ = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec();
        Ok(code)
    }
}

impl Sink for HttpSink {
    fn deliver(&mut self, events: &[Event]) -> Result<(), SinkError> {
        for event in events {
            if let Some(until) = self.paused_until.take() {
                let now = Instant::now();
                if until > now {
                    std::thread::sleep(until - now);
                }
            }
            if event.body.is_empty() {
                self.counters.empty.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sink = %self.name, "HTTP sink: processed an empty event (not sent).");
                continue;
            }
            let code = self.post(&event.body).map_err(|e| self.fail(e))?;
            if self.config.rollback.for_code(code) {
                tracing::info!(sink = %self.name, code, "HTTP sink: rolled back the batch for this status code.");
                return Err(self.fail(HttpSinkError::RolledBack {
                    endpoint: self.config.endpoint.clone(),
                    code,
                }));
            }
            if !(200..300).contains(&code) {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sink = %self.name, code,
                    "HTTP sink: status code configured without rollback; the event is dropped.");
            }
            if self.config.backoff.for_code(code) {
                self.paused_until = Some(Instant::now() + BACKOFF);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Props {
        Props::from_pairs(pairs)
    }

    #[test]
    fn per_code_then_class_then_default_and_2xx_commits() -> Result<(), ConfigError> {
        let c = HttpSinkConfig::from_props(&props(&[
            ("endpoint", "http://localhost:8080/x"),
            ("rollback.4XX", "false"),
            ("rollback.404", "true"),
            ("backoff.503", "false"),
        ]))?;
        assert!(!c.rollback.for_code(400));
        assert!(c.rollback.for_code(404));
        assert!(c.rollback.for_code(500));
        assert!(!c.rollback.for_code(200));
        assert!(!c.backoff.for_code(503));
        assert!(c.backoff.for_code(500));
        assert!(!c.backoff.for_code(204));
        let c = HttpSinkConfig::from_props(&props(&[
            ("endpoint", "http://h/"),
            ("rollback.200", "true"),
        ]))?;
        assert!(c.rollback.for_code(200));
        Ok(())
    }

    #[test]
    fn bad_values_name_the_key() {
        for (k, v) in [
            ("endpoint", "localhost:8080"),
            ("connectTimeout", "0"),
            ("requestTimeout", "-1"),
            ("rollback.99", "true"),
            ("backoff.6XX", "true"),
            ("rollback.500", "maybe"),
            ("batchSize", "0"),
        ] {
            let mut pairs = vec![("endpoint", "http://h/")];
            pairs.retain(|(pk, _)| *pk != k);
            pairs.push((k, v));
            let e = HttpSinkConfig::from_props(&props(&pairs));
            let msg = format!("{:?}", e.err());
            assert!(
                msg.contains(k.split('.').next().unwrap_or(k)),
                "{k}={v}: {msg}"
            );
        }
    }
}
