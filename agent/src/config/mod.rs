//! Flume's properties format and the typed reading of one component's keys.
//!
//! Parsing is pure: [`Props`] reads keys, applies defaults and checks values, but opens no file
//! and binds no port. Every error names the file, line and key. The agent's topology (which
//! components exist and how they connect) is `crate::topology`'s; building the running
//! pipeline is `crate::agent`'s.

mod properties;
pub mod sources;
pub mod substitute;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

pub use properties::{Entry, Origin, Properties};

/// Largest batch any source or sink takes (`batchSize`, `transactionCapacity`, ...): a batch is
/// held in memory whole, so this bounds one batch's allocation.
pub const MAX_BATCH: usize = 1_000_000;
/// Longest timeout or interval in milliseconds (one day); longer values overflow no clock but
/// are certainly typos.
pub const MAX_MILLIS: u64 = 86_400_000;
/// Longest timeout or interval in seconds (one day).
pub const MAX_SECONDS: u64 = 86_400;
/// Longest roll interval in seconds (31 days).
pub const MAX_ROLL_SECONDS: u64 = 31 * 86_400;

/// A user-caused configuration problem, located in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read config file: {message}", file.display())]
    Io { file: PathBuf, message: String },
    #[error("{}:{line}: {message}", file.display())]
    Encoding {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}:{line}: {key}: {message}", file.display())]
    Invalid {
        file: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    #[error("{}: {message}", file.display())]
    File { file: PathBuf, message: String },
    /// A config URI (`--conf-uri`) that could not be read: the URI and why (HTTP status,
    /// TLS, timeout, size).
    #[error("{uri}: cannot fetch config: {message}")]
    Fetch { uri: String, message: String },
}

/// Every error found in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}

/// One key's effective value, for `sluice check`: the key (relative to the component), the
/// value as the component uses it, and the line it was set on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// What a getter read: the effective value and the default it replaced (`None` when the key
/// has no default, e.g. a required path).
#[derive(Clone, Debug)]
struct Read {
    value: String,
    default: Option<String>,
}

/// The keys of one component (prefix removed), with typed getters that report errors at the
/// right line and remember which keys were read (so the rest can be warned about) and what
/// they resolved to (so `sluice check` can show the values that differ from the defaults).
#[derive(Clone, Debug)]
pub struct Props {
    /// Source and line used for errors about missing keys: the component's `type` line.
    anchor: Origin,
    prefix: String,
    keys: Rc<BTreeMap<String, Entry>>,
    anchor_line: usize,
    used: Rc<RefCell<BTreeSet<String>>>,
    read: Rc<RefCell<BTreeMap<String, Read>>>,
}

impl Props {
    pub fn new(
        file: &Path,
        prefix: &str,
        keys: BTreeMap<String, Entry>,
        anchor_line: usize,
    ) -> Self {
        Self {
            anchor: Arc::from(file),
            prefix: prefix.to_string(),
            keys: Rc::new(keys),
            anchor_line,
            used: Rc::default(),
            read: Rc::default(),
        }
    }

    /// Builds props from literal pairs, for tests and embedded defaults.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let origin: Origin = Arc::from(Path::new("<inline>"));
        let keys = pairs
            .iter()
            .enumerate()
            .map(|(i, (k, v))| {
                (
                    k.to_string(),
                    Entry {
                        value: v.to_string(),
                        line: i + 1,
                        origin: origin.clone(),
                    },
                )
            })
            .collect();
        Self::new(Path::new("<inline>"), "", keys, 0)
    }

    /// The keys under `sub` (e.g. `"selector."`), sharing the used-key record.
    pub fn sub(&self, sub: &str) -> Self {
        Self {
            anchor: self.anchor.clone(),
            prefix: format!("{}{sub}", self.prefix),
            keys: self.keys.clone(),
            anchor_line: self.anchor_line,
            used: self.used.clone(),
            read: self.read.clone(),
        }
    }

    /// The keys of one component (`sub` = `"sources.r1."`). Errors about its missing keys
    /// point at its `type` line, or, without one, at the line of `declared_by` (the list that
    /// named it, e.g. `sources`).
    pub fn component(&self, sub: &str, declared_by: &str) -> Self {
        let p = self.sub(sub);
        let (anchor, line) = self
            .keys
            .get(&p.full("type"))
            .or_else(|| self.keys.get(&self.full(declared_by)))
            .map_or((self.anchor.clone(), self.anchor_line), |e| {
                (e.origin.clone(), e.line)
            });
        Self {
            anchor,
            anchor_line: line,
            ..p
        }
    }

    /// The line of `key`, if it is set.
    pub fn line(&self, key: &str) -> Option<usize> {
        self.keys.get(&self.full(key)).map(|e| e.line)
    }

    /// `file:line` of `key` (relative to the prefix), for warnings.
    pub fn place(&self, key: &str) -> String {
        let line = self.line(key).map_or(String::new(), |l| format!(":{l}"));
        format!("{}{line}", self.origin(key).display())
    }

    /// The file or URI that set `key`, else the one of this component's `type` line.
    pub fn origin(&self, key: &str) -> &Path {
        self.keys
            .get(&self.full(key))
            .map_or(&self.anchor, |e| &e.origin)
    }

    /// The prefix of these keys (`a1.sources.r1.`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn entry(&self, key: &str) -> Option<&Entry> {
        let full = self.full(key);
        let e = self.keys.get(&full)?;
        self.read
            .borrow_mut()
            .entry(full.clone())
            .or_insert_with(|| Read {
                value: e.value.trim().to_string(),
                default: None,
            });
        self.used.borrow_mut().insert(full);
        Some(e)
    }

    /// Records what a typed getter made of `key` (only keys that are set are shown, so a
    /// default never appears on its own).
    fn resolved(&self, key: &str, value: impl fmt::Display, default: impl fmt::Display) {
        let full = self.full(key);
        if self.keys.contains_key(&full) {
            self.read.borrow_mut().insert(
                full,
                Read {
                    value: value.to_string(),
                    default: Some(default.to_string()),
                },
            );
        }
    }

    /// The keys under this prefix that are set to something other than their default, in
    /// file order, keys relative to the prefix.
    pub fn settings(&self) -> Vec<Setting> {
        let read = self.read.borrow();
        let mut out: Vec<Setting> = read
            .range(self.prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&self.prefix))
            .filter(|(_, r)| r.default.as_ref() != Some(&r.value))
            .map(|(k, r)| Setting {
                key: k[self.prefix.len()..].to_string(),
                value: r.value.clone(),
                line: self.keys.get(k).map_or(0, |e| e.line),
            })
            .collect();
        out.sort_by_key(|s| s.line);
        out
    }

    /// An error about `key`, at its source and line (or the component's `type` line if
    /// absent).
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let full = self.full(key);
        let (file, line) = self
            .keys
            .get(&full)
            .map_or((&self.anchor, self.anchor_line), |e| (&e.origin, e.line));
        ConfigError::Invalid {
            file: file.to_path_buf(),
            line,
            key: full,
            message: message.into(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entry(key).map(|e| e.value.trim())
    }

    pub fn string(&self, key: &str, default: &str) -> String {
        let v = self.get(key).unwrap_or(default).to_string();
        self.resolved(key, &v, default);
        v
    }

    pub fn required(&self, key: &str) -> Result<String, ConfigError> {
        match self.get(key) {
            Some(v) if !v.is_empty() => Ok(v.to_string()),
            _ => Err(self.error(key, "is required")),
        }
    }

    /// The PEM certificate and key of a TLS server (`ssl.certificate`, `ssl.key`) once `ssl`
    /// is on; Flume's Java keystore keys are read, and when given the error explains how to
    /// convert the keystore to PEM.
    pub fn server_pem(&self) -> Result<(std::path::PathBuf, std::path::PathBuf), ConfigError> {
        let hint = if self.get("keystore").is_some() {
            "; sluice reads PEM, not Java keystores: `keytool -importkeystore -srckeystore \
             keystore.jks -destkeystore ks.p12 -deststoretype PKCS12`, then `openssl pkcs12 \
             -in ks.p12 -nokeys -out cert.pem` and `openssl pkcs12 -in ks.p12 -nocerts -nodes \
             -out key.pem`"
        } else {
            ""
        };
        let need = |key: &str| {
            self.get(key)
                .filter(|v| !v.is_empty())
                .map(std::path::PathBuf::from)
                .ok_or_else(|| {
                    self.error(key, format!("ssl = true needs {key} (a PEM file){hint}"))
                })
        };
        let files = (need("ssl.certificate")?, need("ssl.key")?);
        for k in [
            "keystore",
            "keystore-password",
            "keystorePassword",
            "keystore-type",
        ] {
            self.claim(k);
        }
        Ok(files)
    }

    /// A number (or other `FromStr` value); `what` describes the accepted values.
    pub fn parse<T: FromStr + fmt::Display>(
        &self,
        key: &str,
        default: T,
        what: &str,
    ) -> Result<T, ConfigError> {
        let value: T = match self.get(key) {
            None | Some("") => return Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| self.error(key, format!("invalid value `{v}`; expected {what}")))?,
        };
        self.resolved(key, &value, &default);
        Ok(value)
    }

    /// An integer in `range` (inclusive); the error names the range. Every numeric key goes
    /// through here (or [`Self::millis`] / [`Self::seconds`]), so each has a stated range that
    /// `sluice check` enforces and docs/configuration.md lists.
    pub fn int<T>(&self, key: &str, default: T, range: RangeInclusive<T>) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        let (min, max) = (*range.start(), *range.end());
        match self.get(key) {
            None | Some("") => Ok(default),
            Some(v) => match v.parse::<T>() {
                Ok(n) if range.contains(&n) => {
                    self.resolved(key, n, default);
                    Ok(n)
                }
                Ok(_) => Err(self.error(
                    key,
                    format!("`{v}` is out of range; accepted: {min} to {max}"),
                )),
                Err(_) => Err(self.error(
                    key,
                    format!("invalid value `{v}`; expected an integer from {min} to {max}"),
                )),
            },
        }
    }

    /// A duration in milliseconds, in `range_ms`.
    pub fn millis(
        &self,
        key: &str,
        default_ms: u64,
        range_ms: RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        Ok(Duration::from_millis(self.int(key, default_ms, range_ms)?))
    }

    /// A duration in seconds, in `range_s`.
    pub fn seconds(
        &self,
        key: &str,
        default_s: u64,
        range_s: RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(self.int(key, default_s, range_s)?))
    }

    /// `true` or `false` (any case). Flume reads any other word as false; sluice rejects it.
    pub fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key) {
            None | Some("") => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => {
                self.resolved(key, true, default);
                Ok(true)
            }
            Some(v) if v.eq_ignore_ascii_case("false") => {
                self.resolved(key, false, default);
                Ok(false)
            }
            Some(v) => Err(self.error(key, format!("invalid value `{v}`; accepted: true, false"))),
        }
    }

    /// A whitespace-separated list.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// One of a fixed set of words; `choices` pairs every accepted spelling with its value.
    pub fn choice<T: Clone + PartialEq>(
        &self,
        key: &str,
        default: T,
        choices: &[(&[&str], T)],
    ) -> Result<T, ConfigError> {
        let Some(v) = self.get(key).filter(|v| !v.is_empty()) else {
            return Ok(default);
        };
        let name_of = |x: &T| choices.iter().find(|(_, c)| c == x).map(|(n, _)| n[0]);
        for (names, value) in choices {
            if names.iter().any(|n| n.eq_ignore_ascii_case(v)) {
                self.resolved(key, names[0], name_of(&default).unwrap_or_default());
                return Ok(value.clone());
            }
        }
        let accepted: Vec<&str> = choices.iter().map(|(n, _)| n[0]).collect();
        Err(self.error(
            key,
            format!("unknown value `{v}`; accepted: {}", accepted.join(", ")),
        ))
    }

    /// Direct children `prefix<name>` → value, e.g. `mapping.US = c1`.
    pub fn children(&self, sub: &str) -> Vec<(String, String)> {
        let full = self.full(sub);
        let mut out = Vec::new();
        for (k, e) in self.keys.range(full.clone()..) {
            let Some(rest) = k.strip_prefix(&full) else {
                break;
            };
            self.used.borrow_mut().insert(k.clone());
            self.read
                .borrow_mut()
                .entry(k.clone())
                .or_insert_with(|| Read {
                    value: e.value.trim().to_string(),
                    default: None,
                });
            out.push((rest.to_string(), e.value.trim().to_string()));
        }
        out
    }

    /// Sets what `sluice check` shows for `key` (set in the file): e.g. a Java client key with
    /// the librdkafka property it became.
    pub fn show_as(&self, key: &str, shown: impl Into<String>) {
        let full = self.full(key);
        if self.keys.contains_key(&full) {
            self.used.borrow_mut().insert(full.clone());
            self.read.borrow_mut().insert(
                full,
                Read {
                    value: shown.into(),
                    default: None,
                },
            );
        }
    }

    /// Marks every key under `sub` as read (handled elsewhere).
    pub fn claim(&self, sub: &str) {
        let _ = self.children(sub);
    }

    /// Keys under this props' prefix that nothing read: `(full key, "origin:line")`.
    pub fn unused(&self) -> Vec<(String, String)> {
        let used = self.used.borrow();
        self.keys
            .range(self.prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&self.prefix))
            .filter(|(k, _)| !used.contains(*k))
            .map(|(k, e)| (k.clone(), e.location()))
            .collect()
    }

    /// The raw key/values (prefix removed), for change detection on reload.
    pub fn raw(&self) -> BTreeMap<String, String> {
        self.keys
            .range(self.prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&self.prefix))
            .map(|(k, e)| (k[self.prefix.len()..].to_string(), e.value.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_the_keys_set_to_other_than_their_default_in_file_order() {
        let p = Props::from_pairs(&[
            ("capacity", "100"),
            ("keep-alive", "3"),
            ("mode", "fast"),
            ("flag", "TRUE"),
            ("path", "/x"),
            ("mapping.US", "c1"),
            ("never-read", "1"),
        ]);
        assert_eq!(p.int("capacity", 100u64, 1..=1000), Ok(100));
        assert_eq!(p.int("keep-alive", 5u64, 0..=60), Ok(3));
        let modes: &[(&[&str], &str)] = &[(&["slow"], "slow"), (&["fast"], "fast")];
        assert_eq!(p.choice("mode", "slow", modes), Ok("fast"));
        assert_eq!(p.bool("flag", false), Ok(true));
        assert_eq!(p.required("path").ok().as_deref(), Some("/x"));
        assert_eq!(p.children("mapping.").len(), 1);
        assert_eq!(p.int("absent", 7u32, 0..=9), Ok(7));
        let shown: Vec<(String, String)> =
            p.settings().into_iter().map(|s| (s.key, s.value)).collect();
        let expected = [
            ("keep-alive", "3"),
            ("mode", "fast"),
            ("flag", "true"),
            ("path", "/x"),
            ("mapping.US", "c1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(shown, expected);
        // A sub-view shares the record and shows its own keys without the prefix.
        let sub = p.sub("mapping.");
        assert_eq!(sub.settings().len(), 1);
        assert_eq!(sub.settings()[0].key, "US");
    }

    #[test]
    fn errors_name_the_source_of_the_key_or_of_the_type_line() {
        let mut merged = Properties::parse(Path::new("first.conf"), "a1.sinks.k1.type = null\n");
        merged.merge(Properties::parse(
            Path::new("second.conf"),
            "\na1.channels.c1.type = memory\na1.sinks.k1.batchSize = x\n",
        ));
        let top = Props::new(&merged.file, "a1.", merged.entries.clone(), 1);
        let sink = top.component("sinks.k1.", "sinks");
        let bad = sink
            .int("batchSize", 100u32, 1..=10)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            bad.as_deref(),
            Some(
                "second.conf:3: a1.sinks.k1.batchSize: invalid value `x`; expected an integer \
                 from 1 to 10"
            )
        );
        // A missing key is reported at the component's `type` line, in its own file.
        assert_eq!(
            sink.required("channel")
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("first.conf:1: a1.sinks.k1.channel: is required")
        );
        let channel = top.component("channels.c1.", "channels");
        assert_eq!(
            channel
                .required("x")
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("second.conf:2: a1.channels.c1.x: is required")
        );
        assert_eq!(channel.origin("type"), Path::new("second.conf"));
    }
}
