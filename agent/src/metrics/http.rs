//! The metrics endpoint: Flume's JSON at `/metrics`, Prometheus text at
//! `/metrics/prometheus`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::Registry;

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsServerError {
    #[error("cannot listen for metrics on {addr}: {source}")]
    Listen {
        addr: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("metrics address {addr} is not an IP address")]
    NotIp { addr: String },
    #[error("cannot start metrics thread: {source}")]
    Thread { source: std::io::Error },
}

/// An extra path of the server and its handler (`/tap`), which owns the request (and answers
/// it from a thread of its own when it streams).
pub type Route = (&'static str, Arc<dyn Fn(tiny_http::Request) + Send + Sync>);

/// A running HTTP server; dropping it stops the server.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl MetricsServer {
    pub fn start(
        addr: &str,
        registry: Arc<Registry>,
        routes: Vec<Route>,
    ) -> Result<Self, MetricsServerError> {
        let server =
            tiny_http::Server::http(addr).map_err(|source| MetricsServerError::Listen {
                addr: addr.to_string(),
                source,
            })?;
        let local = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| MetricsServerError::NotIp {
                addr: addr.to_string(),
            })?;
        let server = Arc::new(server);
        let srv = server.clone();
        let thread = std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || {
                for req in srv.incoming_requests() {
                    let path = req.url().split('?').next().unwrap_or("").to_string();
                    if let Some((_, handler)) = routes.iter().find(|(p, _)| *p == path) {
                        handler(req);
                        continue;
                    }
                    let (body, ctype, code) = match path.as_str() {
                        "/metrics" | "/metrics/" => {
                            (registry.flume_json().to_string(), "application/json", 200)
                        }
                        "/metrics/prometheus" => (
                            registry.prometheus_text(),
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            200,
                        ),
                        _ => (
                            "not found; try /metrics or /metrics/prometheus\n".into(),
                            "text/plain",
                            404,
                        ),
                    };
                    let mut resp = tiny_http::Response::from_string(body).with_status_code(code);
                    if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", ctype) {
                        resp = resp.with_header(h);
                    }
                    if let Err(e) = req.respond(resp) {
                        tracing::debug!(error = %e, "Metrics client went away.");
                    }
                }
            })
            .map_err(|source| MetricsServerError::Thread { source })?;
        Ok(Self {
            server,
            thread: Some(thread),
            addr: local,
        })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
