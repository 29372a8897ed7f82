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
//! - JCEKS (`CE CE CE CE`) is refused for TLS with the `keytool` command that converts it.
//!
//! [`jceks_secret_keys`] reads the secret-key entries of a JCEKS store: Flume's file channel
//! encryption keeps its AES keys there (`keytool -genseckey -storetype JCEKS`).

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
    #[error("{} is not a JCEKS store (keytool -storetype JCEKS)", path.display())]
    NotJceks { path: PathBuf },
    #[error("{} has no secret key `{alias}`", path.display())]
    NoSecretKey { path: PathBuf, alias: String },
    #[error(
        "{}: secret key `{alias}` does not decrypt with its password (wrong key password, or \
         a protection other than PBEWithMD5AndTripleDES)",
        path.display()
    )]
    SecretKeyPassword { path: PathBuf, alias: String },
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
        "{}: the password is wrong (the store's integrity check failed)",
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
    /// Starts reading a JKS or JCEKS file: past its magic, version and entry count.
    fn store(path: &'a Path, bytes: &'a [u8]) -> Result<(Self, u32, u32), StoreError> {
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
        Ok((r, version, count))
    }

    /// Checks the SHA-1 integrity digest that follows the entries (JKS and JCEKS alike):
    /// `SHA1(password as UTF-16BE ‖ "Mighty Aphrodite" ‖ everything before it)`.
    fn check_digest(&mut self, password: &str) -> Result<(), StoreError> {
        let signed = self.pos;
        let digest = self.take(20)?;
        let mut data = utf16_be(password);
        data.extend_from_slice(JKS_WHITENER);
        data.extend_from_slice(&self.bytes[..signed]);
        if openssl::sha::sha1(&data) != digest {
            return Err(StoreError::JksPassword {
                path: self.path.into(),
            });
        }
        Ok(())
    }

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
        let (mut r, version, count) = Reader::store(path, bytes)?;
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
        if let Some(pw) = password {
            r.check_digest(pw)?;
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

/// The secret-key entries `aliases` of the JCEKS store at `path`, decrypted: (alias, key
/// bytes). The store's SHA-1 integrity digest is checked with `store_password`;
/// `key_password` gives each alias's password (Flume: `keys.<alias>.passwordFile`, else the
/// store's password).
pub fn jceks_secret_keys(
    path: &Path,
    store_password: &str,
    aliases: &[String],
    key_password: &dyn Fn(&str) -> String,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let bytes = read(path)?;
    if !matches!(format(&bytes), Format::Jceks) {
        return Err(StoreError::NotJceks { path: path.into() });
    }
    let (mut r, version, count) = Reader::store(path, &bytes)?;
    let mut sealed: Vec<(String, serial::Object)> = Vec::new();
    for _ in 0..count {
        let tag = r.u32()?;
        let alias = r.utf()?;
        let _created = r.take(8)?;
        match tag {
            1 => {
                let _protected = r.block()?;
                let n = r.u32()?;
                for _ in 0..n {
                    r.cert(version)?;
                }
            }
            2 => {
                r.cert(version)?;
            }
            3 => {
                let (object, used) =
                    serial::read_object(&bytes[r.pos..]).map_err(|what| r.bad(what))?;
                r.take(used)?;
                sealed.push((alias, object));
            }
            _ => return Err(r.bad("unknown entry type")),
        }
    }
    r.check_digest(store_password)?;
    let mut out = Vec::new();
    for alias in aliases {
        // keytool lower-cases JCEKS aliases.
        let Some((_, object)) = sealed.iter().find(|(a, _)| a.eq_ignore_ascii_case(alias)) else {
            return Err(StoreError::NoSecretKey {
                path: path.into(),
                alias: alias.clone(),
            });
        };
        let bad = || StoreError::SecretKeyPassword {
            path: path.into(),
            alias: alias.clone(),
        };
        let key = unseal(object, &key_password(alias)).ok_or_else(bad)?;
        out.push((alias.clone(), key));
    }
    Ok(out)
}

/// Opens a `SealedObjectForKeyProtector`: PBEWithMD5AndTripleDES over a serialized
/// `SecretKeySpec` (or `KeyRep`); the key bytes.
fn unseal(sealed: &serial::Object, password: &str) -> Option<Vec<u8>> {
    if sealed.string("sealAlg")? != "PBEWithMD5AndTripleDES" {
        return None;
    }
    let (0x30, params, _) = der(sealed.bytes("encodedParams")?)? else {
        return None;
    };
    let (0x04, salt, rest) = der(params)? else {
        return None;
    };
    let (0x02, count, _) = der(rest)? else {
        return None;
    };
    if salt.len() != 8 || count.is_empty() || count.len() > 4 {
        return None;
    }
    let iterations = count.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
    if iterations == 0 || iterations > 10_000_000 || !password.is_ascii() {
        return None;
    }
    let (key, iv) = pbe_md5_triple_des(password.as_bytes(), salt, iterations)?;
    let plain = openssl::symm::decrypt(
        openssl::symm::Cipher::des_ede3_cbc(),
        &key,
        Some(&iv),
        sealed.bytes("encryptedContent")?,
    )
    .ok()?;
    let (inner, _) = serial::read_object(&plain).ok()?;
    inner
        .bytes("key")
        .or_else(|| inner.bytes("encoded"))
        .map(<[u8]>::to_vec)
}

/// Sun's PBEWithMD5AndTripleDES key derivation: each salt half hashed with the password
/// `iterations` times (MD5), giving 24 key bytes and an 8-byte IV. Equal halves have the
/// first half permuted the way the JDK does it (including its index slip).
fn pbe_md5_triple_des(
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Option<([u8; 24], [u8; 8])> {
    let mut halves = [[0u8; 4]; 2];
    halves[0].copy_from_slice(salt.get(..4)?);
    halves[1].copy_from_slice(salt.get(4..8)?);
    if halves[0] == halves[1] {
        let h = halves[0];
        halves[0] = [h[3], h[0], h[1], h[3]];
    }
    let md5 = openssl::hash::MessageDigest::md5();
    let mut derived = Vec::with_capacity(32);
    for half in &halves {
        let mut digest: Vec<u8> = half.to_vec();
        for _ in 0..iterations {
            digest.extend_from_slice(password);
            digest = openssl::hash::hash(md5, &digest).ok()?.to_vec();
        }
        derived.extend_from_slice(&digest);
    }
    let key: [u8; 24] = derived.get(..24)?.try_into().ok()?;
    let iv: [u8; 8] = derived.get(24..32)?.try_into().ok()?;
    Some((key, iv))
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

/// Just enough of Java's object serialization (`ObjectOutputStream`) to read the objects a
/// JCEKS secret-key entry holds: objects whose fields are primitives, strings, byte arrays and
/// further such objects. Anything else is an error; every length is bounds-checked.
mod serial {
    use std::collections::BTreeMap;
    use std::rc::Rc;

    const STREAM_MAGIC: [u8; 4] = [0xAC, 0xED, 0x00, 0x05];
    const TC_NULL: u8 = 0x70;
    const TC_REFERENCE: u8 = 0x71;
    const TC_CLASSDESC: u8 = 0x72;
    const TC_OBJECT: u8 = 0x73;
    const TC_STRING: u8 = 0x74;
    const TC_ARRAY: u8 = 0x75;
    const TC_BLOCKDATA: u8 = 0x77;
    const TC_ENDBLOCKDATA: u8 = 0x78;
    const TC_LONGSTRING: u8 = 0x7C;
    const TC_ENUM: u8 = 0x7E;
    const BASE_HANDLE: u32 = 0x7E_0000;
    const SC_WRITE_METHOD: u8 = 0x01;
    const SC_SERIALIZABLE: u8 = 0x02;
    /// Nesting allowed (a key entry is two levels deep).
    const MAX_DEPTH: usize = 16;

    /// A field value.
    #[derive(Clone, Debug)]
    pub(super) enum Value {
        Null,
        Str(Rc<str>),
        Bytes(Rc<[u8]>),
        Object(Rc<Object>),
        Primitive,
    }

    /// An object's fields, over its whole class hierarchy.
    #[derive(Debug, Default)]
    pub(super) struct Object {
        fields: BTreeMap<String, Value>,
    }

    impl Object {
        pub(super) fn string(&self, name: &str) -> Option<&str> {
            match self.fields.get(name)? {
                Value::Str(s) => Some(s),
                _ => None,
            }
        }

        pub(super) fn bytes(&self, name: &str) -> Option<&[u8]> {
            match self.fields.get(name)? {
                Value::Bytes(b) => Some(b),
                _ => None,
            }
        }
    }

    #[derive(Debug)]
    struct ClassDesc {
        name: String,
        flags: u8,
        /// (type code, name)
        fields: Vec<(u8, String)>,
        super_class: Option<Rc<ClassDesc>>,
    }

    #[derive(Clone, Debug)]
    enum Handle {
        Class(Rc<ClassDesc>),
        Value(Value),
    }

    struct Parser<'a> {
        b: &'a [u8],
        pos: usize,
        handles: Vec<Handle>,
    }

    type R<T> = Result<T, &'static str>;

    /// Reads one serialized object (stream header included); the object and the bytes used.
    pub(super) fn read_object(b: &[u8]) -> R<(Object, usize)> {
        let mut p = Parser {
            b,
            pos: 0,
            handles: Vec::new(),
        };
        if p.take(4)? != STREAM_MAGIC {
            return Err("a secret key entry is not a serialized Java object");
        }
        match p.value(0)? {
            Value::Object(o) => {
                let o = Rc::try_unwrap(o).unwrap_or_else(|rc| Object {
                    fields: rc.fields.clone(),
                });
                Ok((o, p.pos))
            }
            _ => Err("a secret key entry does not hold an object"),
        }
    }

    impl<'a> Parser<'a> {
        fn take(&mut self, n: usize) -> R<&'a [u8]> {
            let end = self
                .pos
                .checked_add(n)
                .filter(|e| *e <= self.b.len())
                .ok_or("truncated serialized object")?;
            let s = &self.b[self.pos..end];
            self.pos = end;
            Ok(s)
        }

        fn u8(&mut self) -> R<u8> {
            Ok(self.take(1)?[0])
        }

        fn u16(&mut self) -> R<u16> {
            let b = self.take(2)?;
            Ok(u16::from_be_bytes([b[0], b[1]]))
        }

        fn u32(&mut self) -> R<u32> {
            let b = self.take(4)?;
            Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }

        fn utf(&mut self, long: bool) -> R<String> {
            let n = if long {
                usize::try_from(u64::from_be_bytes(
                    self.take(8)?.try_into().map_err(|_| "truncated")?,
                ))
                .map_err(|_| "string too long")?
            } else {
                usize::from(self.u16()?)
            };
            Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
        }

        /// A back reference's target (the handle follows `TC_REFERENCE`).
        fn reference(&mut self) -> R<Handle> {
            let h = self.u32()?;
            self.handle(h)
        }

        fn handle(&self, h: u32) -> R<Handle> {
            let i = h.checked_sub(BASE_HANDLE).ok_or("bad back reference")? as usize;
            self.handles.get(i).cloned().ok_or("bad back reference")
        }

        /// A class descriptor: new, a back reference, or null.
        fn class_desc(&mut self, depth: usize) -> R<Option<Rc<ClassDesc>>> {
            if depth > MAX_DEPTH {
                return Err("serialized object nested too deep");
            }
            match self.u8()? {
                TC_NULL => Ok(None),
                TC_REFERENCE => match self.reference()? {
                    Handle::Class(c) => Ok(Some(c)),
                    Handle::Value(_) => Err("a reference is not a class"),
                },
                TC_CLASSDESC => {
                    let name = self.utf(false)?;
                    let _uid = self.take(8)?;
                    let slot = self.handles.len();
                    self.handles.push(Handle::Value(Value::Null));
                    let flags = self.u8()?;
                    let n = self.u16()?;
                    let mut fields = Vec::with_capacity(usize::from(n).min(64));
                    for _ in 0..n {
                        let code = self.u8()?;
                        let fname = self.utf(false)?;
                        if matches!(code, b'L' | b'[') {
                            // The field's class name, a string or a reference to one.
                            let _ = self.value(depth + 1)?;
                        }
                        fields.push((code, fname));
                    }
                    self.skip_annotation()?;
                    let super_class = self.class_desc(depth + 1)?;
                    let desc = Rc::new(ClassDesc {
                        name,
                        flags,
                        fields,
                        super_class,
                    });
                    self.handles[slot] = Handle::Class(desc.clone());
                    Ok(Some(desc))
                }
                _ => Err("unsupported class descriptor"),
            }
        }

        fn skip_annotation(&mut self) -> R<()> {
            loop {
                match self.u8()? {
                    TC_ENDBLOCKDATA => return Ok(()),
                    TC_BLOCKDATA => {
                        let n = usize::from(self.u8()?);
                        self.take(n)?;
                    }
                    _ => return Err("unsupported class annotation"),
                }
            }
        }

        fn value(&mut self, depth: usize) -> R<Value> {
            if depth > MAX_DEPTH {
                return Err("serialized object nested too deep");
            }
            match self.u8()? {
                TC_NULL => Ok(Value::Null),
                TC_REFERENCE => match self.reference()? {
                    Handle::Value(v) => Ok(v),
                    Handle::Class(_) => Err("a reference is not a value"),
                },
                t @ (TC_STRING | TC_LONGSTRING) => {
                    let s: Rc<str> = Rc::from(self.utf(t == TC_LONGSTRING)?);
                    let v = Value::Str(s);
                    self.handles.push(Handle::Value(v.clone()));
                    Ok(v)
                }
                TC_ARRAY => {
                    let desc = self.class_desc(depth + 1)?.ok_or("array without a class")?;
                    if desc.name != "[B" {
                        return Err("only byte arrays are supported");
                    }
                    let n = self.u32()? as usize;
                    let v = Value::Bytes(Rc::from(self.take(n)?));
                    self.handles.push(Handle::Value(v.clone()));
                    Ok(v)
                }
                TC_OBJECT => {
                    let desc = self
                        .class_desc(depth + 1)?
                        .ok_or("object without a class")?;
                    let slot = self.handles.len();
                    self.handles.push(Handle::Value(Value::Null));
                    // Class data goes from the topmost superclass down.
                    let mut chain = Vec::new();
                    let mut c = Some(desc);
                    while let Some(d) = c {
                        if chain.len() > MAX_DEPTH {
                            return Err("class hierarchy too deep");
                        }
                        c = d.super_class.clone();
                        chain.push(d);
                    }
                    let mut object = Object::default();
                    for d in chain.iter().rev() {
                        if d.flags & SC_SERIALIZABLE == 0 {
                            return Err("unsupported (externalizable) object");
                        }
                        for (code, name) in &d.fields {
                            let v = match code {
                                b'B' | b'Z' => self.take(1).map(|_| Value::Primitive)?,
                                b'C' | b'S' => self.take(2).map(|_| Value::Primitive)?,
                                b'I' | b'F' => self.take(4).map(|_| Value::Primitive)?,
                                b'J' | b'D' => self.take(8).map(|_| Value::Primitive)?,
                                b'L' | b'[' => self.value(depth + 1)?,
                                _ => return Err("unknown field type"),
                            };
                            object.fields.insert(name.clone(), v);
                        }
                        if d.flags & SC_WRITE_METHOD != 0 {
                            self.skip_annotation()?;
                        }
                    }
                    let v = Value::Object(Rc::new(object));
                    self.handles[slot] = Handle::Value(v.clone());
                    Ok(v)
                }
                TC_ENUM => {
                    let _class = self.class_desc(depth + 1)?;
                    let slot = self.handles.len();
                    self.handles.push(Handle::Value(Value::Primitive));
                    let name = self.value(depth + 1)?;
                    self.handles[slot] = Handle::Value(name.clone());
                    Ok(name)
                }
                _ => Err("unsupported serialized value"),
            }
        }
    }
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
