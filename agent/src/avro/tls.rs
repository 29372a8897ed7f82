//! TLS for the Avro source and sink (`ssl = true`), with PEM files.
//!
//! Layering follows Flume's Netty pipeline: TCP, then the optional zlib stream, then TLS, then
//! the Avro frames.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::transport::{Reader, Writer};

/// A PEM file that cannot be used for TLS; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("{}: cannot read PEM certificates: {source}", path.display())]
    ReadCerts {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("{}: bad PEM certificate: {source}", path.display())]
    BadCert {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("{}: no CERTIFICATE block found", path.display())]
    NoCert { path: PathBuf },
    #[error("{}: cannot read a PEM private key: {source}", path.display())]
    ReadKey {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("{}: unusable CA certificate: {source}", path.display())]
    BadCa {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the configuration (`path` is empty when no file is involved).
    #[error("{}: {source}", path.display())]
    Config {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// A host name TLS cannot verify a certificate against.
#[derive(Debug, thiserror::Error)]
#[error("server name {host}: {source}")]
struct BadServerName {
    host: String,
    #[source]
    source: rustls_pki_types::InvalidDnsNameError,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|source| TlsFileError::ReadCerts {
            path: path.to_path_buf(),
            source,
        })?
        .collect::<Result<_, _>>()
        .map_err(|source| TlsFileError::BadCert {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsFileError::NoCert {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// A server configuration from a PEM certificate chain and private key.
pub(crate) fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsFileError> {
    let chain = certs(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsFileError::ReadKey {
        path: key.to_path_buf(),
        source,
    })?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key_der))
        .map_err(|source| TlsFileError::Config {
            path: cert.to_path_buf(),
            source,
        })?;
    Ok(Arc::new(config))
}

/// A client configuration trusting the PEM CA file, or anything with `trust_all`.
pub(crate) fn client_config(
    ca: Option<&Path>,
    trust_all: bool,
) -> Result<Arc<ClientConfig>, TlsFileError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsFileError::Config {
            path: PathBuf::new(),
            source,
        })?;
    let config = if trust_all {
        let algs = provider().signature_verification_algorithms;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(TrustAll(algs)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        if let Some(ca) = ca {
            for c in certs(ca)? {
                roots.add(c).map_err(|source| TlsFileError::BadCa {
                    path: ca.to_path_buf(),
                    source,
                })?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// `trust-all-certs = true`: accept any server certificate (still encrypted, not authenticated).
#[derive(Debug)]
struct TrustAll(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for TrustAll {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// The (possibly compressed) byte streams joined back into one duplex stream for rustls.
struct Duplex {
    r: Reader,
    w: Writer,
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.r.read(buf)
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.w.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

type Shared<C> = Arc<Mutex<rustls::StreamOwned<C, Duplex>>>;

struct TlsReader<C>(Shared<C>);
struct TlsWriter<C>(Shared<C>);

impl<C, S> Read for TlsReader<C>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<S>> + Send,
    S: rustls::SideData,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.lock().read(buf)
    }
}

impl<C, S> Write for TlsWriter<C>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<S>> + Send,
    S: rustls::SideData,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().flush()
    }
}

/// Wraps the streams of an accepted connection in TLS (the handshake happens on first use).
/// The agent's server side runs on `server_io` instead; this blocking form serves the tests'
/// echo servers.
#[cfg(test)]
pub(crate) fn accept(
    config: &Arc<ServerConfig>,
    r: Reader,
    w: Writer,
) -> io::Result<(Reader, Writer)> {
    let conn = rustls::ServerConnection::new(config.clone()).map_err(io::Error::other)?;
    let shared = Arc::new(Mutex::new(rustls::StreamOwned::new(conn, Duplex { r, w })));
    Ok((
        Box::new(TlsReader(shared.clone())),
        Box::new(TlsWriter(shared)),
    ))
}

/// Wraps the streams of an outgoing connection to `host` in TLS.
pub(crate) fn connect(
    config: &Arc<ClientConfig>,
    host: &str,
    r: Reader,
    w: Writer,
) -> io::Result<(Reader, Writer)> {
    let name = ServerName::try_from(host.to_string()).map_err(|source| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            BadServerName {
                host: host.to_string(),
                source,
            },
        )
    })?;
    let conn = rustls::ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
    let shared = Arc::new(Mutex::new(rustls::StreamOwned::new(conn, Duplex { r, w })));
    Ok((
        Box::new(TlsReader(shared.clone())),
        Box::new(TlsWriter(shared)),
    ))
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;
    use crate::avro::framing::{read_frame, write_frame};
    use crate::avro::transport::split;

    fn self_signed(dir: &Path) -> Result<(PathBuf, PathBuf), Box<dyn std::error::Error>> {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, ck.cert.pem())?;
        std::fs::write(&key, ck.key_pair.serialize_pem())?;
        Ok((cert, key))
    }

    fn round_trip(deflate: Option<u32>, ca: bool) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (cert, key) = self_signed(dir.path())?;
        let server_cfg = server_config(&cert, &key)?;
        let client_cfg = client_config(ca.then_some(cert.as_path()), !ca)?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let server = std::thread::spawn(move || -> Result<(), String> {
            let (s, _) = listener.accept().map_err(|e| e.to_string())?;
            let (r, w) = split(&s, deflate).map_err(|e| e.to_string())?;
            let (mut r, mut w) = accept(&server_cfg, r, w).map_err(|e| e.to_string())?;
            let f = read_frame(&mut r, 1 << 20).map_err(|e| e.to_string())?;
            write_frame(&mut w, f.serial, &f.payload).map_err(|e| e.to_string())
        });
        let c = TcpStream::connect(addr)?;
        c.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
        let (r, w) = split(&c, deflate)?;
        let (mut r, mut w) = connect(&client_cfg, "127.0.0.1", r, w)?;
        write_frame(&mut w, 9, b"secret")?;
        let f = read_frame(&mut r, 1 << 20)?;
        assert_eq!((f.serial, f.payload.as_slice()), (9, &b"secret"[..]));
        server.join().map_err(|_| "server panicked")??;
        Ok(())
    }

    #[test]
    fn tls_with_ca_and_with_trust_all_and_deflate() -> Result<(), Box<dyn std::error::Error>> {
        round_trip(None, true)?;
        round_trip(None, false)?;
        round_trip(Some(6), true)
    }

    #[test]
    fn missing_or_bad_pem_names_the_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a certificate")?;
        let err = server_config(&bad, &bad)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("bad.pem"), "{err}");
        Ok(())
    }
}
