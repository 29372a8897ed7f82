//! Where an agent's config comes from: files (`-f/--conf-file`) and URIs (`--conf-uri`:
//! `file:`, `http:`, `https:`), several of them, read in command-line order and merged, a key of
//! a later source replacing an earlier one (Flume >= 1.10's `UriConfigurationProvider`).
//!
//! HTTP follows Flume's `HttpConfigurationSource`: a GET with `Authorization: Basic` when
//! `--conf-user` and `--conf-password` are given, `If-Modified-Since` with the last
//! `Last-Modified` the server sent (a `304` reuses the document read before), `200` is the
//! document, any other status is an error naming the URI and the status. Unlike Flume, which
//! logs a source it cannot read and goes on with the others, a source that cannot be read fails
//! the whole load: an agent never runs on part of its config. Certificates are always verified
//! against the system's roots (`rustls-native-certs`: `SSL_CERT_FILE` / `SSL_CERT_DIR` replace
//! them), every request has a timeout, and a document is at most [`MAX_DOCUMENT`] bytes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use super::{ConfigError, Origin, Properties, properties};

/// Largest config document read over HTTP (16 MiB): a config is a few kilobytes, and a larger
/// answer is a wrong URI, not a config.
pub const MAX_DOCUMENT: u64 = 16 << 20;
/// Default time limit of one HTTP request, connection included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Accepted `--conf-timeout` values, in seconds.
pub const TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 1..=600;

/// One config source, as named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// `-f PATH`, or a `file:` URI.
    File(PathBuf),
    /// An `http:` or `https:` URI.
    Http(String),
}

impl ConfigSource {
    /// A `--conf-uri` value: `file:` (a local path, read like `-f`), `http:` or `https:`.
    pub fn from_uri(uri: &str) -> Result<Self, String> {
        let scheme = uri.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("http" | "https") => Ok(Self::Http(uri.to_string())),
            Some("file") => file_uri_path(uri).map(Self::File),
            _ => Err(format!(
                "--conf-uri {uri}: unsupported URI; accepted: file:, http:, https:"
            )),
        }
    }

    /// The file path or URI, as errors name it.
    pub fn name(&self) -> String {
        match self {
            Self::File(p) => p.display().to_string(),
            Self::Http(u) => u.clone(),
        }
    }
}

/// Whether `origin` (an entry's source) was read over HTTP rather than from a file.
pub fn is_remote(origin: &Path) -> bool {
    let s = origin.to_string_lossy();
    s.starts_with("http://") || s.starts_with("https://")
}

/// `file:/x`, `file:///x` or `file://localhost/x` with `%XX` escapes decoded.
fn file_uri_path(uri: &str) -> Result<PathBuf, String> {
    let rest = &uri["file:".len()..];
    let path = match rest.strip_prefix("//") {
        Some(after) => {
            let slash = after.find('/').unwrap_or(after.len());
            let host = &after[..slash];
            if !host.is_empty() && !host.eq_ignore_ascii_case("localhost") {
                return Err(format!(
                    "--conf-uri {uri}: a file: URI names a local file; host `{host}` is not \
                     supported"
                ));
            }
            &after[slash..]
        }
        None => rest,
    };
    if !path.starts_with('/') {
        return Err(format!(
            "--conf-uri {uri}: a file: URI needs an absolute path"
        ));
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(PathBuf::from(
        <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out),
    ))
}

/// HTTP settings shared by every URI: `--conf-user`, `--conf-password`, `--conf-timeout`.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    pub user: Option<String>,
    pub password: Option<String>,
    pub timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            user: None,
            password: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// What the last successful GET of a URI returned, for `If-Modified-Since`.
#[derive(Clone, Debug, Default)]
struct Cached {
    last_modified: Option<String>,
    body: Vec<u8>,
}

/// The sources of one agent's config and what is needed to read them again (reload).
pub struct ConfigSources {
    sources: Vec<ConfigSource>,
    http: Option<ureq::Agent>,
    authorization: Option<String>,
    /// Per source (`None` for files).
    cached: Vec<Option<Cached>>,
}

impl ConfigSources {
    /// Prepares the sources; loads the system's root certificates if a URI is `https:`.
    pub fn new(sources: Vec<ConfigSource>, options: &HttpOptions) -> Result<Self, ConfigError> {
        let remote = sources.iter().any(|s| matches!(s, ConfigSource::Http(_)));
        let http = if remote {
            Some(http_agent(&sources, options)?)
        } else {
            None
        };
        // Flume sends credentials only when both are given.
        let authorization = match (&options.user, &options.password) {
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )),
            _ => None,
        };
        let cached = sources.iter().map(|_| None).collect();
        Ok(Self {
            sources,
            http,
            authorization,
            cached,
        })
    }

    pub fn sources(&self) -> &[ConfigSource] {
        &self.sources
    }

    /// Whether any source is read over HTTP (Flume polls those every 300 s by default).
    pub fn has_remote(&self) -> bool {
        self.http.is_some()
    }

    /// Reads every source, in order: their raw bytes. The first one that cannot be read is the
    /// error (naming its file or URI).
    pub fn read(&mut self) -> Result<Vec<Vec<u8>>, ConfigError> {
        let mut out = Vec::with_capacity(self.sources.len());
        for i in 0..self.sources.len() {
            let bytes = match &self.sources[i] {
                ConfigSource::File(p) => std::fs::read(p).map_err(|e| ConfigError::Io {
                    file: p.clone(),
                    message: e.to_string(),
                })?,
                ConfigSource::Http(uri) => {
                    let fetched = self.fetch(uri, self.cached[i].as_ref())?;
                    let body = fetched.body.clone();
                    self.cached[i] = Some(fetched);
                    body
                }
            };
            out.push(bytes);
        }
        Ok(out)
    }

    /// Parses documents read by [`Self::read`] and merges them (later keys win).
    pub fn parse(&self, documents: &[Vec<u8>]) -> Result<Properties, ConfigError> {
        parse(&self.sources, documents)
    }

    /// [`Self::read`] then [`Self::parse`].
    pub fn load(&mut self) -> Result<Properties, ConfigError> {
        let documents = self.read()?;
        self.parse(&documents)
    }

    fn fetch(&self, uri: &str, cached: Option<&Cached>) -> Result<Cached, ConfigError> {
        let error = |message: String| ConfigError::Fetch {
            uri: uri.to_string(),
            message,
        };
        let Some(agent) = &self.http else {
            return Err(error("no HTTP client".into()));
        };
        let mut request = agent.get(uri);
        if let Some(a) = &self.authorization {
            request = request.header("Authorization", a);
        }
        if let Some(since) = cached.and_then(|c| c.last_modified.as_deref()) {
            request = request.header("If-Modified-Since", since);
        }
        let mut response = request.call().map_err(|e| error(describe(&e)))?;
        let status = response.status();
        if status.as_u16() == 304
            && let Some(c) = cached
        {
            return Ok(c.clone());
        }
        if status.as_u16() != 200 {
            let hint = match status.as_u16() {
                401 | 403 if self.authorization.is_none() => {
                    "; the server wants credentials: --conf-user and --conf-password"
                }
                401 | 403 => "; check --conf-user and --conf-password",
                _ => "",
            };
            return Err(error(format!(
                "HTTP status {} {}{hint}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )));
        }
        let last_modified = response
            .headers()
            .get("last-modified")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_DOCUMENT)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => error(format!(
                    "the document is larger than {} MiB, the limit for a config",
                    MAX_DOCUMENT >> 20
                )),
                e => error(format!("reading the document: {}", describe(&e))),
            })?;
        Ok(Cached {
            last_modified,
            body,
        })
    }
}

/// Parses the documents of `sources` (one each, as [`ConfigSources::read`] returns them) and
/// merges them in order, later keys winning.
pub fn parse(sources: &[ConfigSource], documents: &[Vec<u8>]) -> Result<Properties, ConfigError> {
    let mut merged = Properties::default();
    for (source, bytes) in sources.iter().zip(documents) {
        let origin: Origin = match source {
            ConfigSource::File(p) => Arc::from(p.as_path()),
            ConfigSource::Http(u) => Arc::from(Path::new(u)),
        };
        let text = properties::decode(&origin, bytes)?;
        merged.merge(Properties::parse(&origin, &text));
    }
    Ok(merged)
}

/// ureq's error, with what a user can do about a certificate it refused.
fn describe(e: &ureq::Error) -> String {
    // rustls' errors come straight, or inside the I/O error of the TLS stream.
    let tls = match e {
        ureq::Error::Rustls(t) => Some(t),
        ureq::Error::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    match (e, tls) {
        (_, Some(rustls::Error::InvalidCertificate(c))) => format!(
            "TLS: the server's certificate is not trusted ({c:?}); sluice verifies it against \
             the system's root certificates, or the PEM file named by SSL_CERT_FILE"
        ),
        (_, Some(t)) => format!("TLS: {t}"),
        (ureq::Error::Timeout(t), _) => format!("timed out ({t}); see --conf-timeout"),
        (e, None) => e.to_string(),
    }
}

/// The system's root certificates for verifying HTTPS servers (shared with the http sink).
pub(crate) fn native_roots() -> Result<ureq::tls::RootCerts, String> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why = found
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(format!(
            "no root certificates to verify the server with ({why}); install the system's CA \
             certificates or name a PEM file with SSL_CERT_FILE"
        ));
    }
    let roots: Vec<ureq::tls::Certificate<'static>> = found
        .certs
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    Ok(ureq::tls::RootCerts::Specific(Arc::new(roots)))
}

/// One client for every URI: redirects followed (without the credentials, ureq's default),
/// statuses returned rather than raised, TLS with ring and the system's roots.
fn http_agent(sources: &[ConfigSource], options: &HttpOptions) -> Result<ureq::Agent, ConfigError> {
    let mut tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()));
    let https = sources.iter().find(
        |s| matches!(s, ConfigSource::Http(u) if u.to_ascii_lowercase().starts_with("https:")),
    );
    if let Some(s) = https {
        let roots = native_roots().map_err(|message| ConfigError::Fetch {
            uri: s.name(),
            message,
        })?;
        tls = tls.root_certs(roots);
    }
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(options.timeout))
        .tls_config(tls.build())
        .build();
    Ok(config.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_their_kind() {
        assert_eq!(
            ConfigSource::from_uri("file:///etc/a%20b.conf"),
            Ok(ConfigSource::File(PathBuf::from("/etc/a b.conf")))
        );
        assert_eq!(
            ConfigSource::from_uri("file:/etc/a.conf"),
            Ok(ConfigSource::File(PathBuf::from("/etc/a.conf")))
        );
        assert_eq!(
            ConfigSource::from_uri("file://localhost/a.conf"),
            Ok(ConfigSource::File(PathBuf::from("/a.conf")))
        );
        assert!(ConfigSource::from_uri("file://other/a.conf").is_err());
        assert!(ConfigSource::from_uri("file:a.conf").is_err());
        assert_eq!(
            ConfigSource::from_uri("HTTPS://h/a.conf"),
            Ok(ConfigSource::Http("HTTPS://h/a.conf".into()))
        );
        let e = ConfigSource::from_uri("classpath:a.conf");
        assert!(e.is_err_and(|m| m.contains("accepted: file:, http:, https:")));
        assert!(is_remote(Path::new("http://h/a")));
        assert!(!is_remote(Path::new("/etc/a")));
    }

    #[test]
    fn files_merge_in_order() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (a, b) = (dir.path().join("a.conf"), dir.path().join("b.conf"));
        std::fs::write(&a, "x = 1\ny = 2\n")?;
        std::fs::write(&b, "y = 3\n")?;
        let mut s = ConfigSources::new(
            vec![ConfigSource::File(a.clone()), ConfigSource::File(b.clone())],
            &HttpOptions::default(),
        )?;
        let p = s.load()?;
        assert_eq!(p.file, a);
        assert_eq!(
            p.get("y").map(|e| e.location()),
            Some(format!("{}:1", b.display()))
        );
        assert_eq!(p.get("x").map(|e| e.value.as_str()), Some("1"));
        std::fs::remove_file(&b)?;
        assert!(matches!(s.load(), Err(ConfigError::Io { file, .. }) if file == b));
        Ok(())
    }
}
