//! `regex_filter`: keeps (or, with `excludeEvents`, drops) events whose body matches.

use regex::Regex;

use crate::config::{ConfigError, Props};
use crate::event::Event;
use crate::pipeline::{Interceptor, InterceptorError};

#[derive(Clone, Debug)]
pub struct RegexFilterConfig {
    /// `regex` (default `.*`), searched anywhere in the body like Java's `Matcher.find`.
    pub regex: Regex,
    /// `excludeEvents` (default false): drop matching events instead of keeping them.
    pub exclude: bool,
}

impl RegexFilterConfig {
    pub fn from_props(p: &Props) -> Result<Self, ConfigError> {
        let src = p.string("regex", ".*");
        let regex = Regex::new(&src)
            .map_err(|e| p.error("regex", format!("invalid regular expression: {e}")))?;
        Ok(Self {
            regex,
            exclude: p.bool("excludeEvents", false)?,
        })
    }
}

impl Interceptor for RegexFilterConfig {
    fn intercept(&self, mut events: Vec<Event>) -> Result<Vec<Event>, InterceptorError> {
        events.retain(|e| {
            let body = e.body_text();
            self.regex.is_match(&body) != self.exclude
        });
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::super::run;
    use super::*;

    fn bodies(events: &[Event]) -> Vec<&[u8]> {
        events.iter().map(|e| &e.body[..]).collect()
    }

    #[test]
    fn include_and_exclude() -> Result<(), ConfigError> {
        let events = || {
            vec![
                Event::new("ERROR x"),
                Event::new("INFO y"),
                Event::new("ERROR z"),
            ]
        };
        let inc = RegexFilterConfig::from_props(&Props::from_pairs(&[("regex", "^ERROR")]))?;
        let out = run(&inc, events());
        assert_eq!(bodies(&out), [&b"ERROR x"[..], b"ERROR z"]);
        let exc = RegexFilterConfig::from_props(&Props::from_pairs(&[
            ("regex", "^ERROR"),
            ("excludeEvents", "true"),
        ]))?;
        let out = run(&exc, events());
        assert_eq!(bodies(&out), [&b"INFO y"[..]]);
        Ok(())
    }

    #[test]
    fn bad_regex_names_key() {
        let err = RegexFilterConfig::from_props(&Props::from_pairs(&[("regex", "(")]));
        assert!(err.is_err_and(|e| e.to_string().contains("regex: invalid regular expression")));
    }
}
