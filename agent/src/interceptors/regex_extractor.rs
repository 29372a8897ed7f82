//! `regex_extractor`: copies the capture groups of the first match in the body into headers
//! (`serializers = s1 s2`, `serializers.s1.name = header`), group 1 to the first serializer.
//! A serializer passes the text through, or (`MillisSerializer`, with `pattern`) reads it as a
//! Joda date and writes its epoch milliseconds.

use regex::Regex;

use super::joda::JodaPattern;

use crate::config::{ConfigError, Props};
use crate::event::{Event, SharedStr};
use crate::pipeline::{Interceptor, InterceptorError};

#[derive(Clone, Debug)]
pub struct RegexExtractorConfig {
    /// `regex` (required).
    pub regex: Regex,
    /// `serializers.<s>.name` and how the group is written, in `serializers` order.
    pub serializers: Vec<Serializer>,
}

#[derive(Clone, Debug)]
pub struct Serializer {
    pub name: SharedStr,
    /// `type = …MillisSerializer`: the group read with `pattern`, written as epoch ms.
    pub millis: Option<JodaPattern>,
}

const PASS_THROUGH: &[&str] = &[
    "org.apache.flume.interceptor.RegexExtractorInterceptorPassThroughSerializer",
    "passthrough",
];
const MILLIS: &[&str] = &[
    "org.apache.flume.interceptor.RegexExtractorInterceptorMillisSerializer",
    "millis",
];

impl RegexExtractorConfig {
    pub fn from_props(p: &Props) -> Result<Self, ConfigError> {
        let src = p.required("regex")?;
        let regex = Regex::new(&src)
            .map_err(|e| p.error("regex", format!("invalid regular expression: {e}")))?;
        let mut serializers = Vec::new();
        for s in p.list("serializers") {
            let sp = p.sub(&format!("serializers.{s}."));
            let is = |names: &[&str], t: &str| names.iter().any(|x| x.eq_ignore_ascii_case(t));
            let millis = match sp.get("type").filter(|t| !t.is_empty()) {
                None => None,
                Some(t) if is(PASS_THROUGH, t) => None,
                Some(t) if is(MILLIS, t) => {
                    let pattern = sp.required("pattern")?;
                    Some(JodaPattern::new(&pattern).map_err(|e| {
                        sp.error("pattern", format!("is not a supported Joda pattern: {e}"))
                    })?)
                }
                Some(t) => {
                    return Err(sp.error(
                        "type",
                        format!(
                            "serializer `{t}` is not supported; accepted: {} (pass-through), {}",
                            PASS_THROUGH[0], MILLIS[0]
                        ),
                    ));
                }
            };
            serializers.push(Serializer {
                name: sp.required("name")?.into(),
                millis,
            });
        }
        if serializers.len() > regex.captures_len() - 1 {
            return Err(p.error(
                "serializers",
                format!(
                    "{} serializers but the regex has {} capture groups",
                    serializers.len(),
                    regex.captures_len() - 1
                ),
            ));
        }
        Ok(Self { regex, serializers })
    }
}

impl Interceptor for RegexExtractorConfig {
    fn intercept(&self, mut events: Vec<Event>) -> Result<Vec<Event>, InterceptorError> {
        // One set of capture slots for the whole batch.
        let mut locs = self.regex.capture_locations();
        let mut warned = false;
        for e in &mut events {
            let body = e.body_text();
            if self.regex.captures_read(&mut locs, &body).is_none() {
                continue;
            }
            let mut values: smallvec::SmallVec<[(SharedStr, SharedStr); 4]> =
                smallvec::SmallVec::new();
            for (i, ser) in self.serializers.iter().enumerate() {
                let Some((s, end)) = locs.get(i + 1) else {
                    continue;
                };
                let text = &body[s..end];
                match &ser.millis {
                    None => values.push((ser.name.clone(), text.into())),
                    Some(pattern) => match pattern.millis(text) {
                        Ok(ms) => values.push((ser.name.clone(), ms.to_string().into())),
                        // Flume's serializer throws and fails the batch; one bad date only
                        // leaves its header out here.
                        Err(why) => {
                            if !warned {
                                warned = true;
                                tracing::warn!(
                                    header = %ser.name, value = text,
                                    "regex_extractor: the value does not match the \
                                     MillisSerializer pattern ({why}); header left out \
                                     (logged once per batch)."
                                );
                            }
                        }
                    },
                }
            }
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

    #[test]
    fn millis_serializer_writes_epoch_millis() -> Result<(), ConfigError> {
        let c = RegexExtractorConfig::from_props(&Props::from_pairs(&[
            ("regex", r"^(\S+ \S+ \S+) (\w+)"),
            ("serializers", "t l"),
            (
                "serializers.t.type",
                "org.apache.flume.interceptor.RegexExtractorInterceptorMillisSerializer",
            ),
            ("serializers.t.name", "timestamp"),
            ("serializers.t.pattern", "yyyy-MM-dd HH:mm:ss Z"),
            ("serializers.l.name", "level"),
        ]))?;
        let out = run(
            &c,
            vec![
                Event::new("2012-10-17 14:34:44 +0000 INFO up"),
                Event::new("yesterday at noon WARN x"),
            ],
        );
        assert_eq!(out[0].headers.get("timestamp"), Some("1350484484000"));
        assert_eq!(out[0].headers.get("level"), Some("INFO"));
        assert_eq!(out[1].headers.get("timestamp"), None);
        assert_eq!(out[1].headers.get("level"), Some("WARN"));
        for (k, v) in [
            ("serializers.t.pattern", "yyyy zzz"),
            ("serializers.t.type", "x.Y"),
        ] {
            let mut pairs = vec![
                ("regex", "(.*)"),
                ("serializers", "t"),
                ("serializers.t.name", "n"),
                (
                    "serializers.t.type",
                    "org.apache.flume.interceptor.RegexExtractorInterceptorMillisSerializer",
                ),
                ("serializers.t.pattern", "yyyy"),
            ];
            pairs.retain(|(pk, _)| *pk != k);
            pairs.push((k, v));
            let e = RegexExtractorConfig::from_props(&Props::from_pairs(&pairs));
            assert!(e.is_err_and(|e| e.to_string().contains(k)), "{k}");
        }
        Ok(())
    }
}
