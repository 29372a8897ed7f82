//! `search_replace`: regular-expression search and replace on the body.
//!
//! Replacement strings use `$1`/`${name}` group references like Java's `replaceAll`; one
//! difference: Rust reads `$1a` as a group named `1a`, so write `${1}a`.

use bytes::Bytes;
use regex::Regex;

use crate::config::{ConfigError, Props};
use crate::event::Event;
use crate::pipeline::{Interceptor, InterceptorError};

#[derive(Clone, Debug)]
pub struct SearchReplaceConfig {
    /// `searchPattern` (required).
    pub search: Regex,
    /// `replaceString` (default empty).
    pub replace: String,
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
        Ok(Self {
            search,
            replace: p.get("replaceString").unwrap_or("").to_string(),
        })
    }
}

impl Interceptor for SearchReplaceConfig {
    fn intercept(&self, mut events: Vec<Event>) -> Result<Vec<Event>, InterceptorError> {
        for e in &mut events {
            let body = String::from_utf8_lossy(&e.body);
            if let std::borrow::Cow::Owned(s) =
                self.search.replace_all(&body, self.replace.as_str())
            {
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

    #[test]
    fn search_pattern_required() {
        assert!(SearchReplaceConfig::from_props(&Props::from_pairs(&[])).is_err());
    }
}
