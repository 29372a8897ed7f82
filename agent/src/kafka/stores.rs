//! Java key and trust stores read into PEM for librdkafka.
//!
//! Flume's Kafka sections name Java stores (`ssl.truststore.location = truststore.jks`,
//! `ssl.keystore.location = client.keystore.jks`). librdkafka reads PEM, and PKCS#12 for the
//! key store only, so sluice reads the store itself when the config is loaded, whatever its
//! format, and hands librdkafka PEM text (`ssl.ca.pem`, `ssl.certificate.pem`, `ssl.key.pem`).
//! Reading at load time means `sluice check` reports a wrong password or a missing file.
//!
//! Formats, told apart by their first bytes (the `*.type` keys are not needed):
//! - JKS (`FE ED FE ED`): trusted certificate entries, and private key entries protected with
//!   Sun's key protector (SHA-1 key stream, OID 1.3.6.1.4.1.42.2.17.1.1). The store's SHA-1
//!   integrity digest is checked when a password is given, as Java does.
//! - PKCS#12 (DER), read with OpenSSL: what `keytool` writes by default since Java 9.
//! - PEM (`-----BEGIN`): certificates, and for a key store a private key too (Kafka's
//!   `ssl.*.type = PEM`).
//! - JCEKS (`CE CE CE CE`) is refused with the `keytool` command that converts it.

use std::path::{Path, PathBuf};

use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

const JKS_MAGIC: u32 = 0xFEED_FEED;
const JCEKS_MAGIC: u32 = 0xCECE_CECE;
/// Sun's JKS key protector.
const JKS_KEY_PROTECTOR_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x2a, 0x02, 0x11, 0x01, 0x01];
/// Whitener JKS mixes into its integrity digest.
const JKS_WHITENER: &[u8] = b"Mighty Aphrodite";
/// The largest store file read (a trust store of every public CA is well under 1 MiB).
const MAX_STORE_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is larger than 16 MiB; not a key or trust store", path.display())]
    TooLarge { path: PathBuf },
    #[error(
        "{} is a JCEKS store, which sluice cannot read; convert it with `keytool -importkeystore \
         -srcstoretype JCEKS -srckeystore {} -deststoretype PKCS12 -destkeystore store.p12`",
        path.display(),
        path.display()
    )]
    Jceks { path: PathBuf },
    #[error("{} is not a valid JKS store: {what}", path.display())]
    JksFormat { path: PathBuf, what: &'static str },
    #[error(
        "{}: the password is wrong (the JKS store's integrity check failed)",
        path.display()
    )]
    JksPassword { path: PathBuf },
    #[error(
        "{}: the key password is wrong (key entry `{alias}` does not decrypt; set ssl.key.password \
         when it differs from the store's password)",
        path.display()
    )]
    JksKeyPassword { path: PathBuf, alias: String },
    #[error(
        "{}: key entry `{alias}` is protected with an algorithm other than Sun's JKS key \
         protector; convert the store with `keytool -importkeystore -deststoretype PKCS12`",
        path.display()
    )]
    JksKeyAlgorithm { path: PathBuf, alias: String },
    #[error(
        "{}: cannot read it as PKCS#12 (wrong password, or a store written with legacy \
         algorithms: re-export it with a current JDK's `keytool -importkeystore \
         -deststoretype PKCS12`)",
        path.display()
    )]
    Pkcs12 {
        path: PathBuf,
        source: openssl::error::ErrorStack,
    },
    #[error("{}: cannot read it as PEM", path.display())]
    Pem {
        path: PathBuf,
        source: openssl::error::ErrorStack,
    },
    #[error("{}: it holds no certificate", path.display())]
    NoCertificates { path: PathBuf },
    #[error("{}: it holds no private key entry", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: it holds {count} private key entries; keep only the client's", path.display())]
    SeveralKeys { path: PathBuf, count: usize },
    #[error("cannot write a certificate or key as PEM")]
    ToPem { source: openssl::error::ErrorStack },
}

/// A client certificate with its private key, as PEM.
#[derive(Clone)]
pub struct ClientKey {
    /// The certificate, followed by the rest of its chain.
    pub certificate_pem: String,
    /// The private key, PKCS#8, unencrypted (it stays in memory).
    pub key_pem: String,
}

/// Reads the certificates of a trust store (any format above) as one PEM text.
pub fn trust_store_pem(path: &Path, password: Option<&str>) -> Result<String, StoreError> {
    let bytes = read(path)?;
    let certs = match format(&bytes) {
        Format::Jks => {
            let jks = Jks::parse(path, &bytes, password)?;
            let mut certs = jks.trusted;
            for k in jks.keys {
                certs.extend(k.chain);
            }
            certs
        }
        Format::Jceks => return Err(StoreError::Jceks { path: path.into() }),
        Format::Pem => X509::stack_from_pem(&bytes).map_err(|source| StoreError::Pem {
            path: path.into(),
            source,
        })?,
        Format::Pkcs12 => {
            let parsed = parse_pkcs12(path, &bytes, password)?;
            let mut certs: Vec<X509> = parsed.cert.into_iter().collect();
            certs.extend(parsed.ca.into_iter().flatten());
            certs
        }
    };
    if certs.is_empty() {
        return Err(StoreError::NoCertificates { path: path.into() });
    }
    certs_pem(&certs)
}

/// Reads the client key and certificate chain of a key store (any format above).
pub fn key_store(
    path: &Path,
    store_password: Option<&str>,
    key_password: Option<&str>,
) -> Result<ClientKey, StoreError> {
    let bytes = read(path)?;
    let (key, chain) = match format(&bytes) {
        Format::Jks => {
            let jks = Jks::parse(path, &bytes, store_password)?;
            let count = jks.keys.len();
            let mut keys = jks.keys.into_iter();
            let (Some(entry), None) = (keys.next(), keys.next()) else {
                return Err(if count == 0 {
                    StoreError::NoKey { path: path.into() }
                } else {
                    StoreError::SeveralKeys {
                        path: path.into(),
                        count,
                    }
                });
            };
            let password = key_password.or(store_password).unwrap_or("");
            let key = entry.decrypt(path, password)?;
            (key, entry.chain)
        }
        Format::Jceks => return Err(StoreError::Jceks { path: path.into() }),
        Format::Pem => {
            let certs = X509::stack_from_pem(&bytes).map_err(|source| StoreError::Pem {
                path: path.into(),
                source,
            })?;
            let key = match key_password {
                Some(pw) => PKey::private_key_from_pem_passphrase(&bytes, pw.as_bytes()),
                None => PKey::private_key_from_pem(&bytes),
            }
            .map_err(|source| StoreError::Pem {
                path: path.into(),
                source,
            })?;
            (key, certs)
        }
        Format::Pkcs12 => {
            let parsed = parse_pkcs12(path, &bytes, store_password)?;
            let key = parsed
                .pkey
                .ok_or_else(|| StoreError::NoKey { path: path.into() })?;
            let mut chain: Vec<X509> = parsed.cert.into_iter().collect();
            chain.extend(parsed.ca.into_iter().flatten());
            (key, chain)
        }
    };
    if chain.is_empty() {
        return Err(StoreError::NoCertificates { path: path.into() });
    }
    let key_pem = key
        .private_key_to_pem_pkcs8()
        .map_err(|source| StoreError::ToPem { source })?;
    Ok(ClientKey {
        certificate_pem: certs_pem(&chain)?,
        key_pem: String::from_utf8_lossy(&key_pem).into_owned(),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, StoreError> {
    let len = std::fs::metadata(path)
        .map_err(|source| StoreError::Read {
            path: path.into(),
            source,
        })?
        .len();
    if len > MAX_STORE_BYTES {
        return Err(StoreError::TooLarge { path: path.into() });
    }
    std::fs::read(path).map_err(|source| StoreError::Read {
        path: path.into(),
        source,
    })
}

enum Format {
    Jks,
    Jceks,
    Pem,
    Pkcs12,
}

fn format(bytes: &[u8]) -> Format {
    match bytes
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    {
        Some(JKS_MAGIC) => Format::Jks,
        Some(JCEKS_MAGIC) => Format::Jceks,
        _ if bytes.trim_ascii_start().starts_with(b"-----BEGIN") => Format::Pem,
        _ => Format::Pkcs12,
    }
}

fn parse_pkcs12(
    path: &Path,
    bytes: &[u8],
    password: Option<&str>,
) -> Result<openssl::pkcs12::ParsedPkcs12_2, StoreError> {
    let err = |source| StoreError::Pkcs12 {
        path: path.into(),
        source,
    };
    Pkcs12::from_der(bytes)
        .map_err(err)?
        .parse2(password.unwrap_or(""))
        .map_err(err)
}

fn certs_pem(certs: &[X509]) -> Result<String, StoreError> {
    let mut out = String::new();
    for c in certs {
        let pem = c.to_pem().map_err(|source| StoreError::ToPem { source })?;
        out.push_str(&String::from_utf8_lossy(&pem));
    }
    Ok(out)
}

/// A JKS private key entry, still encrypted.
struct JksKey {
    alias: String,
    /// `EncryptedPrivateKeyInfo`, DER.
    protected: Vec<u8>,
    chain: Vec<X509>,
}

struct Jks {
    trusted: Vec<X509>,
    keys: Vec<JksKey>,
}

/// Reads big-endian fields of a JKS file.
struct Reader<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| self.bad("truncated"))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u16(&mut self) -> Result<u16, StoreError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Java's `writeUTF`: a u16 length and modified UTF-8 (read lossily: aliases only).
    fn utf(&mut self) -> Result<String, StoreError> {
        let n = usize::from(self.u16()?);
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }

    /// A length-prefixed block.
    fn block(&mut self) -> Result<&'a [u8], StoreError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn cert(&mut self, version: u32) -> Result<X509, StoreError> {
        if version == 2 {
            let kind = self.utf()?;
            if kind != "X.509" {
                return Err(self.bad("a certificate is not X.509"));
            }
        }
        let der = self.block()?;
        X509::from_der(der).map_err(|_| self.bad("a certificate does not parse"))
    }

    fn bad(&self, what: &'static str) -> StoreError {
        StoreError::JksFormat {
            path: self.path.into(),
            what,
        }
    }
}

impl Jks {
    fn parse(path: &Path, bytes: &[u8], password: Option<&str>) -> Result<Self, StoreError> {
        let mut r = Reader {
            path,
            bytes,
            pos: 0,
        };
        let _magic = r.u32()?;
        let version = r.u32()?;
        if version != 1 && version != 2 {
            return Err(r.bad("unknown version"));
        }
        let count = r.u32()?;
        let mut jks = Jks {
            trusted: Vec::new(),
            keys: Vec::new(),
        };
        for _ in 0..count {
            let tag = r.u32()?;
            let alias = r.utf()?;
            let _created = r.take(8)?;
            match tag {
                1 => {
                    let protected = r.block()?.to_vec();
                    let n = r.u32()?;
                    let mut chain = Vec::new();
                    for _ in 0..n {
                        chain.push(r.cert(version)?);
                    }
                    jks.keys.push(JksKey {
                        alias,
                        protected,
                        chain,
                    });
                }
                2 => jks.trusted.push(r.cert(version)?),
                _ => return Err(r.bad("unknown entry type")),
            }
        }
        let signed = r.pos;
        let digest = r.take(20)?;
        if let Some(pw) = password {
            let mut data = utf16_be(pw);
            data.extend_from_slice(JKS_WHITENER);
            data.extend_from_slice(&bytes[..signed]);
            if openssl::sha::sha1(&data) != digest {
                return Err(StoreError::JksPassword { path: path.into() });
            }
        }
        Ok(jks)
    }
}

impl JksKey {
    /// Undoes Sun's key protector: `salt(20) ‖ key ⊕ stream ‖ check(20)`, where the stream is
    /// `SHA1(pw ‖ salt)`, `SHA1(pw ‖ previous)`, … and `check = SHA1(pw ‖ key)`.
    fn decrypt(&self, path: &Path, password: &str) -> Result<PKey<Private>, StoreError> {
        let algorithm = || StoreError::JksKeyAlgorithm {
            path: path.into(),
            alias: self.alias.clone(),
        };
        let (oid, encrypted) = encrypted_private_key_info(&self.protected).ok_or_else(algorithm)?;
        if oid != JKS_KEY_PROTECTOR_OID || encrypted.len() < 40 {
            return Err(algorithm());
        }
        let pw = utf16_be(password);
        let (salt, rest) = encrypted.split_at(20);
        let (cipher, check) = rest.split_at(rest.len() - 20);
        let mut plain = Vec::with_capacity(cipher.len());
        let mut digest = openssl::sha::sha1(&[pw.as_slice(), salt].concat());
        for chunk in cipher.chunks(20) {
            plain.extend(chunk.iter().zip(digest.iter()).map(|(c, d)| c ^ d));
            digest = openssl::sha::sha1(&[pw.as_slice(), &digest].concat());
        }
        if openssl::sha::sha1(&[pw.as_slice(), &plain].concat()) != check {
            return Err(StoreError::JksKeyPassword {
                path: path.into(),
                alias: self.alias.clone(),
            });
        }
        PKey::private_key_from_pkcs8(&plain).map_err(|_| algorithm())
    }
}

/// Java's `char`s of the password, two bytes each.
fn utf16_be(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// One DER element: (tag, contents, rest).
fn der(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (l, r) = rest.split_at(n);
        rest = r;
        l.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// `EncryptedPrivateKeyInfo ::= SEQUENCE { AlgorithmIdentifier, OCTET STRING }`: (OID, data).
fn encrypted_private_key_info(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (0x30, seq, _) = der(bytes)? else {
        return None;
    };
    let (0x30, alg, rest) = der(seq)? else {
        return None;
    };
    let (0x06, oid, _) = der(alg)? else {
        return None;
    };
    let (0x04, data, _) = der(rest)? else {
        return None;
    };
    Some((oid, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_reads_short_and_long_lengths() {
        assert_eq!(
            der(&[0x04, 2, 7, 8, 9]),
            Some((0x04, &[7u8, 8][..], &[9u8][..]))
        );
        let mut long = vec![0x04, 0x81, 200];
        long.extend(std::iter::repeat_n(1u8, 200));
        assert_eq!(der(&long).map(|(_, c, _)| c.len()), Some(200));
        assert_eq!(der(&[0x04, 0x81]), None);
        assert_eq!(der(&[0x04, 5, 1]), None);
    }

    #[test]
    fn truncated_jks_is_an_error_not_a_panic() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t.jks");
        let mut bytes = JKS_MAGIC.to_be_bytes().to_vec();
        bytes.extend(2u32.to_be_bytes());
        bytes.extend(5u32.to_be_bytes());
        bytes.extend(2u32.to_be_bytes());
        std::fs::write(&path, &bytes)?;
        let e = trust_store_pem(&path, Some("changeit"))
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("truncated")),
            "{e:?}"
        );
        std::fs::write(&path, JCEKS_MAGIC.to_be_bytes())?;
        let e = trust_store_pem(&path, None).err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("keytool -importkeystore")),
            "{e:?}"
        );
        Ok(())
    }
}
