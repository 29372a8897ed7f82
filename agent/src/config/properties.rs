//! Java `.properties` reader that remembers the line of every key.
//!
//! Follows `java.util.Properties.load`: `#`/`!` comments, `=`, `:` or whitespace as the
//! separator, trailing-backslash continuations, `\t \n \r \f \uXXXX` escapes. A key given twice
//! keeps its last value, as in Java.
//!
//! Several sources (`-f a.conf -f b.conf`, `--conf-uri`) are merged as Flume merges them: a key
//! of a later source replaces the earlier one. Every entry keeps its own origin (file or URI)
//! and line, so an error about a key names the source that set it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ConfigError;

/// Where keys were written: a file path, or a URI for a config read over HTTP; shared by all
/// the entries of one source.
pub type Origin = Arc<Path>;

/// One value and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub value: String,
    pub line: usize,
    pub origin: Origin,
}

impl Entry {
    /// `origin:line`, as errors and warnings print it.
    pub fn location(&self) -> String {
        format!("{}:{}", self.origin.display(), self.line)
    }
}

/// All keys of one or more merged properties sources.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Properties {
    /// The first source: named by errors about the config as a whole.
    pub file: PathBuf,
    /// Every source, in override order (later ones win).
    pub origins: Vec<Origin>,
    pub entries: BTreeMap<String, Entry>,
}

impl Properties {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|e| ConfigError::Io {
            file: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Self::parse(path, &decode(path, &bytes)?))
    }

    pub fn parse(file: &Path, text: &str) -> Self {
        let origin: Origin = Arc::from(file);
        let mut entries = BTreeMap::new();
        let mut lines = text.lines().enumerate();
        while let Some((idx, raw)) = lines.next() {
            let first_line = idx + 1;
            let trimmed = raw.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
                continue;
            }
            let mut logical = String::new();
            let mut current = trimmed.to_string();
            loop {
                if ends_with_continuation(&current) {
                    current.pop();
                    logical.push_str(&current);
                    match lines.next() {
                        Some((_, next)) => current = next.trim_start().to_string(),
                        None => break,
                    }
                } else {
                    logical.push_str(&current);
                    break;
                }
            }
            let (key, value) = split_key_value(&logical);
            entries.insert(
                unescape(&key),
                Entry {
                    value: unescape(&value),
                    line: first_line,
                    origin: origin.clone(),
                },
            );
        }
        Self {
            file: file.to_path_buf(),
            origins: vec![origin],
            entries,
        }
    }

    /// Adds `later`'s keys, replacing those set here (Flume's order for several sources).
    pub fn merge(&mut self, later: Properties) {
        if self.origins.is_empty() {
            self.file = later.file;
        }
        self.origins.extend(later.origins);
        self.entries.extend(later.entries);
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Keys starting with `prefix`, with the prefix removed.
    pub fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Entry)> {
        self.entries
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(move |(k, v)| (&k[prefix.len()..], v))
    }
}

/// An odd number of trailing backslashes continues the line.
fn ends_with_continuation(line: &str) -> bool {
    line.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

fn split_key_value(line: &str) -> (String, String) {
    let mut key = String::new();
    let mut chars = line.char_indices().peekable();
    let mut rest_start = line.len();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                key.push(c);
                if let Some((_, n)) = chars.next() {
                    key.push(n);
                }
            }
            '=' | ':' => {
                rest_start = i + 1;
                break;
            }
            c if c.is_whitespace() => {
                // Whitespace ends the key; an `=` or `:` may still follow it.
                let mut j = i;
                let bytes = line.as_bytes();
                while j < line.len() && (bytes[j] as char).is_whitespace() {
                    j += 1;
                }
                if j < line.len() && (bytes[j] == b'=' || bytes[j] == b':') {
                    j += 1;
                }
                rest_start = j;
                break;
            }
            _ => key.push(c),
        }
    }
    let value = line
        .get(rest_start..)
        .unwrap_or("")
        .trim_start()
        .to_string();
    (key, value)
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => {
                        out.push_str("\\u");
                        out.push_str(&hex);
                    }
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Properties {
        Properties::parse(Path::new("t.conf"), text)
    }

    #[test]
    fn separators_comments_and_lines() {
        let p = parse("# c\n! c\na1.sources = r1\n\na.b:c\nx y z\n  k=\n");
        assert_eq!(
            p.get("a1.sources").map(|e| (e.value.as_str(), e.line)),
            Some(("r1", 3))
        );
        assert_eq!(p.get("a.b").map(|e| e.value.as_str()), Some("c"));
        assert_eq!(p.get("x").map(|e| e.value.as_str()), Some("y z"));
        assert_eq!(p.get("k").map(|e| e.value.as_str()), Some(""));
    }

    #[test]
    fn continuation_and_escapes() {
        let p = parse("a = one \\\n    two\nb = tab\\there \\u0041\nc = x\\\\\n");
        assert_eq!(p.get("a").map(|e| e.value.as_str()), Some("one two"));
        assert_eq!(p.get("b").map(|e| e.value.as_str()), Some("tab\there A"));
        assert_eq!(p.get("c").map(|e| e.value.as_str()), Some("x\\"));
    }

    #[test]
    fn last_value_wins_and_prefix() {
        let p = parse("a.x = 1\na.y = 2\na.x = 3\nb = 4\n");
        assert_eq!(
            p.get("a.x").map(|e| (e.value.as_str(), e.line)),
            Some(("3", 3))
        );
        let keys: Vec<_> = p.with_prefix("a.").map(|(k, _)| k).collect();
        assert_eq!(keys, vec!["x", "y"]);
    }

    #[test]
    fn a_later_source_overrides_and_each_key_keeps_its_origin() {
        let mut p = parse("a = 1\nb = 2\n");
        p.merge(Properties::parse(
            Path::new("second.conf"),
            "\n\nb = 3\nc = 4\n",
        ));
        assert_eq!(p.file, Path::new("t.conf"));
        assert_eq!(p.origins.len(), 2);
        let at = |k: &str| p.get(k).map(|e| (e.value.clone(), e.location()));
        assert_eq!(at("a"), Some(("1".into(), "t.conf:1".into())));
        assert_eq!(at("b"), Some(("3".into(), "second.conf:3".into())));
        assert_eq!(at("c"), Some(("4".into(), "second.conf:4".into())));
    }
}

/// The file's text: UTF-8, except that a comment line may hold any bytes (read as ISO-8859-1,
/// as Java's `Properties.load(InputStream)` reads every line). A key or value that is not
/// UTF-8 is an error naming its line: sluice will not guess what a value meant.
pub fn decode(file: &Path, bytes: &[u8]) -> Result<String, ConfigError> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok(text.to_string());
    }
    let mut text = String::with_capacity(bytes.len());
    for (idx, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        match std::str::from_utf8(line) {
            Ok(l) => text.push_str(l),
            Err(e) => {
                let start = line.iter().position(|b| !b" \t\x0c".contains(b));
                let comment = start.is_some_and(|i| line[i] == b'#' || line[i] == b'!');
                if !comment {
                    return Err(ConfigError::Encoding {
                        file: file.to_path_buf(),
                        line: idx + 1,
                        message: format!(
                            "byte 0x{:02x} at column {} is not UTF-8; save the file as UTF-8 \
                             (or write the character as \\uXXXX)",
                            line[e.valid_up_to()],
                            e.valid_up_to() + 1
                        ),
                    });
                }
                text.extend(line.iter().map(|&b| char::from(b)));
            }
        }
    }
    Ok(text)
}

#[cfg(test)]
mod decode_tests {
    use super::*;

    #[test]
    fn comments_may_hold_latin1_and_values_may_not() {
        let f = Path::new("f.conf");
        let ok = decode(f, b"a = 1\n  # caf\xe9\n! \xff\nb = 2\n");
        assert_eq!(
            ok.ok().as_deref(),
            Some("a = 1\n  # caf\u{e9}\n! \u{ff}\nb = 2\n")
        );
        match decode(f, b"a = 1\nb = caf\xe9\n") {
            Err(ConfigError::Encoding { line, message, .. }) => {
                assert_eq!(line, 2);
                assert!(
                    message.contains("0xe9") && message.contains("column 8"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
