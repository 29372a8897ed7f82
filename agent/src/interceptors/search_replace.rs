//! `search_replace`: regular-expression search and replace on the body.
//!
//! `replaceString` follows Java's `Matcher.replaceAll`: `$n` and `${name}` insert a group
//! (`$12` is group 12 only when the pattern has twelve groups, else group 1 and a `2`), `\x`
//! is a literal `x`, a group that did not take part inserts nothing. The template is parsed
//! once at configuration (a bad reference is a config error, where Java fails per event;
//! `${2}` is accepted as group 2, which Java refuses), and
//! the replacement loop reuses one set of capture slots, so an event costs the regex search
//! and one output buffer.

use bytes::Bytes;
use regex::{CaptureLocations, Regex};

use crate::config::{ConfigError, Props};
use crate::event::Event;
use crate::pipeline::{Interceptor, InterceptorError};

#[derive(Clone, Debug)]
pub struct SearchReplaceConfig {
    /// `searchPattern` (required).
    pub search: Regex,
    /// `replaceString` (default empty), parsed.
    pub replace: Vec<Piece>,
}

/// One part of a parsed replacement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Literal(String),
    Group(usize),
}

/// Parses Java's replacement syntax against `re`'s groups.
fn parse_replacement(template: &str, re: &Regex) -> Result<Vec<Piece>, String> {
    let groups = re.captures_len() - 1;
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => lit.push(escaped),
                None => return Err("a trailing `\\` escapes nothing".into()),
            },
            '$' => {
                let group = match chars.peek() {
                    Some('{') => {
                        chars.next();
                        let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                        // `${1}` (not Java, which wants a name) was sluice's way to write `$1`
                        // before a digit; it stays accepted.
                        let by_number = name.parse::<usize>().ok().filter(|&n| n <= groups);
                        by_number
                            .or_else(|| re.capture_names().position(|n| n == Some(name.as_str())))
                            .ok_or_else(|| format!("no group named `{name}` in searchPattern"))?
                    }
                    Some(d) if d.is_ascii_digit() => {
                        let mut n = 0usize;
                        let mut first = true;
                        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                            let next = n * 10 + d as usize;
                            if !first && next > groups {
                                break;
                            }
                            n = next;
                            first = false;
                            chars.next();
                        }
                        if n > groups {
                            return Err(format!("`${n}` but searchPattern has {groups} groups"));
                        }
                        n
                    }
                    _ => {
                        return Err(
                            "`$` must be followed by a group number or `{name}` (write `\\$` \
                             for a dollar sign)"
                                .into(),
                        );
                    }
                };
                if !lit.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut lit)));
                }
                pieces.push(Piece::Group(group));
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        pieces.push(Piece::Literal(lit));
    }
    Ok(pieces)
}

impl SearchReplaceConfig {
    pub fn from_props(p: &Props) -> Result<Self, ConfigError> {
        let src = p.required("searchPattern")?;
        let search = Regex::new(&src)
            .map_err(|e| p.error("searchPattern", format!("invalid regular expression: {e}")))?;
        let charset = p.string("charset", "UTF-8");
        if !charset.eq_ignore_ascii_case("UTF-8") && !charset.eq_ignore_ascii_case("UTF8") {
            return Err(p.error(
                "charset",
                format!("unsupported charset `{charset}`; accepted: UTF-8"),
            ));
        }
        let replace = parse_replacement(p.get("replaceString").unwrap_or(""), &search)
            .map_err(|e| p.error("replaceString", e))?;
        Ok(Self { search, replace })
    }

    /// `body` with every match replaced, or `None` when nothing matched.
    fn replace_all(&self, body: &str, locs: &mut CaptureLocations) -> Option<String> {
        let mut out: Option<String> = None;
        let (mut last, mut at) = (0, 0);
        while at <= body.len() {
            if self.search.captures_read_at(locs, body, at).is_none() {
                break;
            }
            let Some((start, end)) = locs.get(0) else {
                break;
            };
            let out = out.get_or_insert_with(|| String::with_capacity(body.len() + 16));
            out.push_str(&body[last..start]);
            for piece in &self.replace {
                match piece {
                    Piece::Literal(l) => out.push_str(l),
                    Piece::Group(g) => {
                        if let Some((s, e)) = locs.get(*g) {
                            out.push_str(&body[s..e]);
                        }
                    }
                }
            }
            last = end;
            at = if end > start {
                end
            } else {
                // An empty match: Java moves on by one character.
                match body[end..].chars().next() {
                    Some(c) => end + c.len_utf8(),
                    None => break,
                }
            };
        }
        let mut out = out?;
        out.push_str(&body[last..]);
        Some(out)
    }
}

impl Interceptor for SearchReplaceConfig {
    fn intercept(&self, mut events: Vec<Event>) -> Result<Vec<Event>, InterceptorError> {
        let mut locs = self.search.capture_locations();
        for e in &mut events {
            let replaced = self.replace_all(&e.body_text(), &mut locs);
            if let Some(s) = replaced {
                e.body = Bytes::from(s);
            }
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::super::run;
    use super::*;

    #[test]
    fn replaces_with_groups() -> Result<(), ConfigError> {
        let c = SearchReplaceConfig::from_props(&Props::from_pairs(&[
            ("searchPattern", r"user=(\w+)"),
            ("replaceString", "user=<${1}>"),
        ]))?;
        let out = run(&c, vec![Event::new("a user=bob b")]);
        assert_eq!(&out[0].body[..], b"a user=<bob> b");
        Ok(())
    }

    fn replace(pattern: &str, template: &str, body: &str) -> Result<String, ConfigError> {
        let c = SearchReplaceConfig::from_props(&Props::from_pairs(&[
            ("searchPattern", pattern),
            ("replaceString", template),
        ]))?;
        let out = run(&c, vec![Event::new(body.to_string())]);
        Ok(String::from_utf8_lossy(&out[0].body).into_owned())
    }

    /// Expected values are what Java's `"…".replaceAll(pattern, template)` returns.
    #[test]
    fn replacement_follows_java() -> Result<(), ConfigError> {
        assert_eq!(
            replace(r"(\w+)@(\w+)", "$2 at $1", "bob@host x")?,
            "host at bob x"
        );
        assert_eq!(
            replace(r"(a)", "$1b", "xa")?,
            "xab",
            "`$1b` is group 1 then b"
        );
        assert_eq!(
            replace(r"(a)", "$12", "xa")?,
            "xa2",
            "one group: `$12` is $1 then 2"
        );
        assert_eq!(replace(r"(?P<u>\w+)=", "${u}:", "k=v")?, "k:v");
        assert_eq!(replace(r"a", r"\$1", "cab")?, "c$1b", "an escaped dollar");
        assert_eq!(
            replace(r"(a)|b", "[$1]", "ab")?,
            "[a][]",
            "a group not taken part"
        );
        assert_eq!(replace(r"x*", "-", "ab")?, "-a-b-", "empty matches");
        assert_eq!(replace(r"é", "e", "café ü")?, "cafe ü");
        assert_eq!(replace(r"zzz", "y", "abc")?, "abc");
        Ok(())
    }

    #[test]
    fn bad_group_references_are_config_errors() {
        for t in ["$2", "${nope}", "$x", "a\\"] {
            let r = SearchReplaceConfig::from_props(&Props::from_pairs(&[
                ("searchPattern", "(a)"),
                ("replaceString", t),
            ]));
            assert!(r.is_err(), "{t:?} must be refused");
        }
    }

    #[test]
    fn search_pattern_required() {
        assert!(SearchReplaceConfig::from_props(&Props::from_pairs(&[])).is_err());
    }
}
