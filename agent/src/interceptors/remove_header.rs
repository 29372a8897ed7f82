//! `remove_header`: removes headers by name, by list, or by regular expression.

use regex::Regex;

use crate::config::{ConfigError, Props};
use crate::event::{Event, edit_batch};
use crate::pipeline::{Interceptor, InterceptorError};

#[derive(Clone, Debug)]
pub struct RemoveHeaderConfig {
    /// `withName`: one header name.
    pub with_name: Option<String>,
    /// `fromList`, split by `fromListSeparator` (default `\s*,\s*`).
    pub from_list: Vec<String>,
    /// `matching`: a regular expression matched against the whole header name.
    pub matching: Option<Regex>,
}

impl RemoveHeaderConfig {
    pub fn from_props(p: &Props) -> Result<Self, ConfigError> {
        let sep = p.string("fromListSeparator", r"\s*,\s*");
        let sep = Regex::new(&sep).map_err(|e| {
            p.error(
                "fromListSeparator",
                format!("invalid regular expression: {e}"),
            )
        })?;
        let from_list = p
            .get("fromList")
            .map(|l| {
                sep.split(l)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let matching = match p.get("matching") {
            Some(m) if !m.is_empty() => Some(
                Regex::new(&format!("^(?:{m})$"))
                    .map_err(|e| p.error("matching", format!("invalid regular expression: {e}")))?,
            ),
            _ => None,
        };
        Ok(Self {
            with_name: p.get("withName").map(str::to_string),
            from_list,
            matching,
        })
    }
}

impl Interceptor for RemoveHeaderConfig {
    fn intercept(&self, mut events: Vec<Event>) -> Result<Vec<Event>, InterceptorError> {
        edit_batch(&mut events, |h| {
            h.retain(|k, _| {
                self.with_name.as_deref() != Some(k)
                    && !self.from_list.iter().any(|n| n == k)
                    && !self.matching.as_ref().is_some_and(|r| r.is_match(k))
            });
        });
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::super::run;
    use super::*;
    use crate::event::Headers;

    #[test]
    fn removes_by_name_list_and_regex() -> Result<(), ConfigError> {
        let c = RemoveHeaderConfig::from_props(&Props::from_pairs(&[
            ("withName", "a"),
            ("fromList", "b , c"),
            ("matching", "tmp_.*"),
        ]))?;
        let h: Headers = [
            ("a", "1"),
            ("b", "2"),
            ("c", "3"),
            ("tmp_x", "4"),
            ("keep", "5"),
            ("xtmp_", "6"),
        ]
        .into_iter()
        .collect();
        let out = run(&c, vec![Event::with_headers(h, "x")]);
        let keys: Vec<_> = out[0].headers.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["keep", "xtmp_"]);
        Ok(())
    }
}
