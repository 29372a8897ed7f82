//! `regex_extractor`: copies the capture groups of the first match in the body into headers
//! (`serializers = s1 s2`, `serializers.s1.name = header`), group 1 to the first serializer.

use regex::Regex;

use crate::config::{ConfigError, Props};
use crate::event::{Event, SharedStr};
use crate::pipeline::{Interceptor, InterceptorError};

#[derive(Clone, Debug)]
pub struct RegexExtractorConfig {
    /// `regex` (required).
    pub regex: Regex,
    /// Header names from `serializers.<s>.name`, in `serializers` order.
    pub names: Vec<SharedStr>,
}

const PASS_THROUGH: &[&str] = &[
    "org.apache.flume.interceptor.RegexExtractorInterceptorPassThroughSerializer",
    "passthrough",
];

impl RegexExtractorConfig {
    pub fn from_props(p: &Props) -> Result<Self, ConfigError> {
        let src = p.required("regex")?;
        let regex = Regex::new(&src)
            .map_err(|e| p.error("regex", format!("invalid regular expression: {e}")))?;
        let mut names = Vec::new();
        for s in p.list("serializers") {
            let sp = p.sub(&format!("serializers.{s}."));
            if let Some(t) = sp
                .get("type")
                .filter(|t| !PASS_THROUGH.iter().any(|x| x.eq_ignore_ascii_case(t)))
            {
                return Err(sp.error(
                    "type",
                    format!(
                        "serializer `{t}` is not supported; accepted: the pass-through serializer"
                    ),
                ));
            }
            names.push(sp.required("name")?.into());
        }
        if names.len() > regex.captures_len() - 1 {
            return Err(p.error(
                "serializers",
                format!(
                    "{} serializers but the regex has {} capture groups",
                    names.len(),
                    regex.captures_len() - 1
                ),
            ));
        }
        Ok(Self { regex, names })
    }
}

impl Interceptor for RegexExtractorConfig {
    fn intercept(&self, mut events: Vec<Event>) -> Result<Vec<Event>, InterceptorError> {
        // One set of capture slots for the whole batch.
        let mut locs = self.regex.capture_locations();
        for e in &mut events {
            let body = e.body_text();
            if self.regex.captures_read(&mut locs, &body).is_none() {
                continue;
            }
            let values: smallvec::SmallVec<[(SharedStr, SharedStr); 4]> = self
                .names
                .iter()
                .enumerate()
                .filter_map(|(i, n)| {
                    locs.get(i + 1)
                        .map(|(s, end)| (n.clone(), body[s..end].into()))
                })
                .collect();
            drop(body);
            for (k, v) in values {
                e.headers.insert(k, v);
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
    fn extracts_groups_into_headers() -> Result<(), ConfigError> {
        let c = RegexExtractorConfig::from_props(&Props::from_pairs(&[
            ("regex", r"(\w+):(\d+)"),
            ("serializers", "a b"),
            ("serializers.a.name", "host"),
            ("serializers.b.name", "port"),
        ]))?;
        let out = run(&c, vec![Event::new("to db:5432 now"), Event::new("-")]);
        assert_eq!(out[0].headers.get("host"), Some("db"));
        assert_eq!(out[0].headers.get("port"), Some("5432"));
        assert!(out[1].headers.is_empty());
        Ok(())
    }
}
