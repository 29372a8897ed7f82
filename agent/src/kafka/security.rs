//! TLS and SASL for the Kafka clients: Flume's (Java) key names turned into librdkafka's.
//!
//! - Trust store (`ssl.truststore.location` / `.password`, or inline
//!   `ssl.truststore.certificates`): read by [`stores`] in any format and given to
//!   librdkafka as `ssl.ca.pem`. Without one, librdkafka probes the system's CA locations.
//! - Key store (`ssl.keystore.location` / `.password`, `ssl.key.password`, or inline
//!   `ssl.keystore.key` + `ssl.keystore.certificate.chain`): read the same way and given as
//!   `ssl.certificate.pem` + `ssl.key.pem` (client authentication).
//! - Flume's global stores: when the component names none and TLS is on, the JVM's
//!   `-Djavax.net.ssl.trustStore=…` / `keyStore` (with `…Password`), else the
//!   `FLUME_SSL_TRUSTSTORE_PATH` / `FLUME_SSL_KEYSTORE_PATH` (`…_PASSWORD`) environment
//!   variables, as Flume reads them.
//! - `sasl.jaas.config`: the PLAIN and SCRAM login modules' `username` / `password` become
//!   `sasl.username` / `sasl.password`; Kerberos' `keyTab` / `principal` become
//!   `sasl.kerberos.keytab` / `sasl.kerberos.principal`.
//! - `sasl.mechanism` (Java's and librdkafka's default: GSSAPI) is checked against what this
//!   librdkafka was built with, so a missing mechanism is a config error, not a start failure.
//!
//! Store and TLS keys under `security.protocol = PLAINTEXT` / `SASL_PLAINTEXT` are ignored
//! with a warning, as the Java client ignores them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use rdkafka::ClientConfig;

use super::stores;
use crate::config::{ConfigError, Props};

/// The keys this module reads (besides `security.protocol` and `sasl.mechanism`, which the
/// mapping has already set).
const STORE_KEYS: &[&str] = &[
    "ssl.truststore.location",
    "ssl.truststore.password",
    "ssl.truststore.type",
    "ssl.truststore.certificates",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.keystore.type",
    "ssl.keystore.key",
    "ssl.keystore.certificate.chain",
    "ssl.key.password",
];

/// librdkafka's `builtin.features` (e.g. `gzip,snappy,ssl,sasl,...,sasl_scram`).
fn builtin_features() -> &'static str {
    static FEATURES: OnceLock<String> = OnceLock::new();
    FEATURES.get_or_init(|| {
        ClientConfig::new()
            .create_native_config()
            .and_then(|c| c.get("builtin.features"))
            .unwrap_or_default()
    })
}

fn built_with(feature: &str) -> bool {
    builtin_features().split(',').any(|f| f.trim() == feature)
}

/// Reads the TLS and SASL keys of `all` (the children of `prefix`) into `config`.
pub(super) fn apply(
    p: &Props,
    prefix: &str,
    all: &BTreeMap<String, String>,
    config: &mut ClientConfig,
) -> Result<(), ConfigError> {
    let key = |k: &str| format!("{prefix}{k}");
    let get = |k: &str| all.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let protocol = config
        .get("security.protocol")
        .unwrap_or("plaintext")
        .to_string();
    let tls = matches!(protocol.as_str(), "ssl" | "sasl_ssl");
    let sasl = protocol.starts_with("sasl_");

    if !tls {
        for k in STORE_KEYS.iter().filter(|k| get(k).is_some()) {
            tracing::warn!(
                "{}: {}{} is ignored: security.protocol is {protocol}, without TLS.",
                p.place(&key(k)),
                p.prefix(),
                key(k)
            );
        }
    } else {
        trust_store(p, prefix, all, config)?;
        key_store(p, prefix, all, config)?;
    }

    if let Some(jaas) = get("sasl.jaas.config") {
        let full = key("sasl.jaas.config");
        let login = parse_jaas(jaas).map_err(|m| p.error(&full, m))?;
        for (ours, value) in login.settings(config.get("sasl.mechanism")) {
            let value = value.map_err(|m| p.error(&full, m))?;
            if config.get(ours).is_some_and(|v| v != value) {
                return Err(p.error(
                    &full,
                    format!("sets {ours}, which {} sets otherwise; keep one", key(ours)),
                ));
            }
            config.set(ours, value);
        }
        if !sasl {
            tracing::warn!(
                "{}: {}{full} is ignored: security.protocol is {protocol}, without SASL.",
                p.place(&full),
                p.prefix()
            );
        }
    }

    if sasl {
        let mechanism = config.get("sasl.mechanism").unwrap_or("GSSAPI").to_string();
        let at = if config.get("sasl.mechanism").is_some() {
            key("sasl.mechanism")
        } else {
            key("security.protocol")
        };
        match mechanism.as_str() {
            "GSSAPI" if !built_with("sasl_gssapi") => {
                return Err(p.error(
                    &at,
                    "SASL mechanism GSSAPI (Kerberos; Kafka's default when sasl.mechanism is \
                     not set) is not available: this sluice's librdkafka is built without \
                     Cyrus SASL (libsasl2). Use SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN, or \
                     build sluice with the rdkafka crate's `gssapi` feature (docs/kafka.md)",
                ));
            }
            "GSSAPI" | "OAUTHBEARER" => {}
            "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512" => {
                for k in ["sasl.username", "sasl.password"] {
                    if config.get(k).is_none_or(str::is_empty) {
                        return Err(p.error(
                            &at,
                            format!(
                                "SASL {mechanism} needs {} (or a sasl.jaas.config with the \
                                 user name and password)",
                                key(k)
                            ),
                        ));
                    }
                }
            }
            other => {
                return Err(p.error(
                    &at,
                    format!(
                        "unknown SASL mechanism `{other}`; expected PLAIN, SCRAM-SHA-256, \
                         SCRAM-SHA-512, OAUTHBEARER or GSSAPI"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A global store from Flume's JVM system property or environment variable.
struct Global {
    path: String,
    password: Option<String>,
    origin: String,
}

fn global(sys: &str, env: &str) -> Option<Global> {
    let prop = |name: &str| crate::config::substitute::system_property(name);
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(path) = prop(sys) {
        return Some(Global {
            path,
            password: prop(&format!("{sys}Password")),
            origin: format!("-D{sys}"),
        });
    }
    var(&format!("{env}_PATH")).map(|path| Global {
        path,
        password: var(&format!("{env}_PASSWORD")),
        origin: format!("{env}_PATH"),
    })
}

/// Reads Flume's global `kind` (`trust` or `key`) store, if one is set: errors are reported
/// at `security.protocol`, naming where the store came from.
fn global_store<T>(
    p: &Props,
    prefix: &str,
    kind: &str,
    read: impl FnOnce(&Path, Option<&str>) -> Result<T, stores::StoreError>,
) -> Result<Option<(String, T)>, ConfigError> {
    let (sys, env) = match kind {
        "trust" => ("javax.net.ssl.trustStore", "FLUME_SSL_TRUSTSTORE"),
        _ => ("javax.net.ssl.keyStore", "FLUME_SSL_KEYSTORE"),
    };
    let Some(g) = global(sys, env) else {
        return Ok(None);
    };
    let at = format!("{prefix}security.protocol");
    let store = read(Path::new(&g.path), g.password.as_deref()).map_err(|e| {
        p.error(
            &at,
            format!(
                "the global {kind} store ({}): {}",
                g.origin,
                error_chain(&e)
            ),
        )
    })?;
    Ok(Some((at, store)))
}

fn trust_store(
    p: &Props,
    prefix: &str,
    all: &BTreeMap<String, String>,
    config: &mut ClientConfig,
) -> Result<(), ConfigError> {
    let key = |k: &str| format!("{prefix}{k}");
    let get = |k: &str| all.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let own_ca = config.get("ssl.ca.location").is_some() || config.get("ssl.ca.pem").is_some();
    let pem = if let Some(inline) = get("ssl.truststore.certificates") {
        let full = key("ssl.truststore.certificates");
        openssl::x509::X509::stack_from_pem(inline.as_bytes())
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| p.error(&full, "holds no PEM certificate"))?;
        Some((full, inline.to_string()))
    } else if let Some(path) = get("ssl.truststore.location") {
        let full = key("ssl.truststore.location");
        let pem = stores::trust_store_pem(Path::new(path), get("ssl.truststore.password"))
            .map_err(|e| p.error(&full, error_chain(&e)))?;
        Some((full, pem))
    } else if own_ca {
        None
    } else {
        global_store(p, prefix, "trust", stores::trust_store_pem)?
    };
    match pem {
        Some((at, _)) if own_ca => Err(p.error(
            &at,
            "and ssl.ca.location / ssl.ca.pem are both set; keep one",
        )),
        Some((_, pem)) => {
            config.set("ssl.ca.pem", pem);
            Ok(())
        }
        None => {
            if !own_ca {
                // A statically linked OpenSSL knows no system CA directory of its own.
                config.set("ssl.ca.location", "probe");
            }
            Ok(())
        }
    }
}

fn key_store(
    p: &Props,
    prefix: &str,
    all: &BTreeMap<String, String>,
    config: &mut ClientConfig,
) -> Result<(), ConfigError> {
    let key = |k: &str| format!("{prefix}{k}");
    let get = |k: &str| all.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let own = [
        "ssl.certificate.location",
        "ssl.certificate.pem",
        "ssl.key.location",
        "ssl.key.pem",
    ]
    .iter()
    .any(|k| config.get(k).is_some());
    let key_password = get("ssl.key.password");
    let client = if let Some(inline) = get("ssl.keystore.key") {
        let full = key("ssl.keystore.key");
        let chain = get("ssl.keystore.certificate.chain").ok_or_else(|| {
            p.error(
                &full,
                format!("needs {}", key("ssl.keystore.certificate.chain")),
            )
        })?;
        Some((
            full,
            inline_key(inline, chain, key_password)
                .map_err(|m| p.error(&key("ssl.keystore.key"), m))?,
        ))
    } else if let Some(path) = get("ssl.keystore.location") {
        let full = key("ssl.keystore.location");
        let k = stores::key_store(Path::new(path), get("ssl.keystore.password"), key_password)
            .map_err(|e| p.error(&full, error_chain(&e)))?;
        Some((full, k))
    } else if own {
        if let Some(pw) = key_password {
            config.set("ssl.key.password", pw);
        }
        None
    } else {
        global_store(p, prefix, "key", |path, pw| {
            stores::key_store(path, pw, key_password)
        })?
    };
    match client {
        Some((at, _)) if own => Err(p.error(
            &at,
            "and librdkafka's ssl.certificate.* / ssl.key.* are both set; keep one",
        )),
        Some((_, k)) => {
            config.set("ssl.certificate.pem", k.certificate_pem);
            config.set("ssl.key.pem", k.key_pem);
            Ok(())
        }
        None => Ok(()),
    }
}

/// Kafka's `ssl.keystore.key` (PEM, encrypted with `ssl.key.password` if given) and
/// `ssl.keystore.certificate.chain` (PEM).
fn inline_key(key: &str, chain: &str, password: Option<&str>) -> Result<stores::ClientKey, String> {
    let pkey = match password {
        Some(pw) => {
            openssl::pkey::PKey::private_key_from_pem_passphrase(key.as_bytes(), pw.as_bytes())
        }
        None => openssl::pkey::PKey::private_key_from_pem(key.as_bytes()),
    }
    .map_err(|e| format!("is not a PEM private key (or ssl.key.password is wrong): {e}"))?;
    let pem = pkey
        .private_key_to_pem_pkcs8()
        .map_err(|e| format!("cannot write the key as PEM: {e}"))?;
    openssl::x509::X509::stack_from_pem(chain.as_bytes())
        .ok()
        .filter(|c| !c.is_empty())
        .ok_or("ssl.keystore.certificate.chain holds no PEM certificate")?;
    Ok(stores::ClientKey {
        certificate_pem: chain.to_string(),
        key_pem: String::from_utf8_lossy(&pem).into_owned(),
    })
}

/// An error and its causes, one after the other.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// One JAAS login module entry, as Kafka's `sasl.jaas.config` holds it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Login {
    /// The class's simple name (`ScramLoginModule`).
    module: String,
    options: BTreeMap<String, String>,
}

/// Parses `<class> <flag> key="value" key2=value2;` (Java's JAAS syntax, one entry).
pub(super) fn parse_jaas(text: &str) -> Result<Login, String> {
    let mut chars = text.trim().chars().peekable();
    let word = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| -> String {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut w = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() || c == '=' || c == ';' {
                break;
            }
            w.push(c);
            chars.next();
        }
        w
    };
    let class = word(&mut chars);
    let flag = word(&mut chars);
    if class.is_empty()
        || !["required", "requisite", "sufficient", "optional"].contains(&flag.as_str())
    {
        return Err(
            "is not a JAAS login module entry (`<LoginModule class> required key=\"value\" …;`)"
                .to_string(),
        );
    }
    let mut options = BTreeMap::new();
    loop {
        let name = word(&mut chars);
        if name.is_empty() {
            match chars.next() {
                Some(';') => break,
                None => return Err("misses the closing `;`".to_string()),
                Some(c) => return Err(format!("unexpected `{c}`")),
            }
        }
        if chars.next() != Some('=') {
            return Err(format!("option `{name}` has no `=value`"));
        }
        let value = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => v.push(c),
                        None => return Err(format!("option `{name}`: unterminated quote")),
                    },
                    Some(c) => v.push(c),
                    None => return Err(format!("option `{name}`: unterminated quote")),
                }
            }
            v
        } else {
            word(&mut chars)
        };
        options.insert(name, value);
    }
    if chars.any(|c| !c.is_whitespace()) {
        return Err("holds more than one login module entry; Kafka clients take one".to_string());
    }
    let module = class.rsplit('.').next().unwrap_or(&class).to_string();
    Ok(Login { module, options })
}

impl Login {
    /// The librdkafka properties this entry sets, given the configured mechanism.
    fn settings(&self, mechanism: Option<&str>) -> Vec<(&'static str, Result<String, String>)> {
        let opt = |name: &str| {
            self.options
                .get(name)
                .cloned()
                .ok_or_else(|| format!("{} has no `{name}` option", self.module))
        };
        let expect = |ok: &[&str]| -> Result<(), String> {
            match mechanism {
                Some(m) if !ok.contains(&m) => Err(format!(
                    "uses {}, which does not fit sasl.mechanism = {m}",
                    self.module
                )),
                _ => Ok(()),
            }
        };
        let fail = |e: String| vec![("sasl.username", Err(e))];
        match self.module.as_str() {
            "PlainLoginModule" => match expect(&["PLAIN"]) {
                Ok(()) => vec![
                    ("sasl.username", opt("username")),
                    ("sasl.password", opt("password")),
                ],
                Err(e) => fail(e),
            },
            "ScramLoginModule" => match expect(&["SCRAM-SHA-256", "SCRAM-SHA-512"]) {
                Ok(()) => vec![
                    ("sasl.username", opt("username")),
                    ("sasl.password", opt("password")),
                ],
                Err(e) => fail(e),
            },
            "Krb5LoginModule" => match expect(&["GSSAPI"]) {
                Ok(()) => {
                    let mut out = Vec::new();
                    if self.options.contains_key("keyTab") {
                        out.push(("sasl.kerberos.keytab", opt("keyTab")));
                    }
                    if self.options.contains_key("principal") {
                        out.push(("sasl.kerberos.principal", opt("principal")));
                    }
                    out
                }
                Err(e) => fail(e),
            },
            "OAuthBearerLoginModule" => fail(
                "OAuthBearerLoginModule's options have no librdkafka equivalent; set \
                 sasl.oauthbearer.method = oidc with sasl.oauthbearer.client.id, \
                 sasl.oauthbearer.client.secret and sasl.oauthbearer.token.endpoint.url, or \
                 sasl.oauthbearer.config for unsecured tokens"
                    .to_string(),
            ),
            other => fail(format!(
                "unknown login module `{other}`; expected PlainLoginModule, ScramLoginModule \
                 or Krb5LoginModule"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaas_entries_parse() {
        let l = parse_jaas(
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required
               username="alice" password="p\"w;d";"#,
        );
        let l = l.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(l.module, "ScramLoginModule");
        assert_eq!(l.options.get("username").map(String::as_str), Some("alice"));
        assert_eq!(
            l.options.get("password").map(String::as_str),
            Some("p\"w;d")
        );

        let k = parse_jaas(
            "com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true \
             keyTab=/etc/k.keytab principal=\"flume@EXAMPLE.COM\";",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(k.options.get("useKeyTab").map(String::as_str), Some("true"));

        for bad in [
            "",
            "ScramLoginModule",
            "ScramLoginModule required username=\"a\"",
            "ScramLoginModule required username=\"a;",
            "ScramLoginModule required username",
            "A required; B required;",
        ] {
            assert!(parse_jaas(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn jaas_module_must_fit_the_mechanism() {
        let l = parse_jaas("x.PlainLoginModule required username=u password=p;")
            .unwrap_or_else(|e| panic!("{e}"));
        let ok = l.settings(Some("PLAIN"));
        assert!(ok.iter().all(|(_, v)| v.is_ok()), "{ok:?}");
        let bad = l.settings(Some("SCRAM-SHA-256"));
        assert!(bad.iter().any(|(_, v)| v.is_err()), "{bad:?}");
    }
}
