//! Rejects events that lack a required header, so they land in the source's dead-letter channel
//! (`deadLetter.channel`) with the reason, instead of being dropped or delivered half-formed.
//!
//! Config: `config.headers` — the required header names, separated by spaces or commas
//! (at least one); `config.non-empty = true` also rejects a header whose value is empty.

use sluice_guest::{Batch, Config, Interceptor, Verdicts, counter_add};

pub struct RequireHeaders {
    headers: Vec<String>,
    non_empty: bool,
}

impl Interceptor for RequireHeaders {
    fn init(config: &Config) -> Result<Self, String> {
        let headers: Vec<String> = config
            .get("headers")
            .unwrap_or("")
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect();
        if headers.is_empty() {
            return Err("config.headers must name at least one header".to_string());
        }
        let non_empty = match config.get("non-empty").unwrap_or("false") {
            "true" => true,
            "false" => false,
            other => return Err(format!("config.non-empty: `{other}` is not true or false")),
        };
        Ok(Self { headers, non_empty })
    }

    fn intercept(&mut self, batch: &Batch<'_>, out: &mut Verdicts) {
        let mut rejected = 0;
        for e in batch.iter() {
            let missing = self.headers.iter().find(|h| match e.header(h) {
                None => true,
                Some(v) => self.non_empty && v.is_empty(),
            });
            match missing {
                Some(h) => {
                    rejected += 1;
                    out.reject(&format!("missing header `{h}`"));
                }
                None => out.keep(),
            }
        }
        if rejected > 0 {
            counter_add("rejected", rejected);
        }
    }
}

sluice_guest::export!(interceptor: RequireHeaders);

#[cfg(test)]
mod tests {
    use sluice_guest::testing::{Outcome, config, event, intercept};

    use super::*;

    #[test]
    fn rejects_events_missing_a_header_with_the_reason() -> Result<(), String> {
        let events = [
            event("ok", &[("host", "h1"), ("level", "INFO")]),
            event("no level", &[("host", "h1")]),
            event("empty host", &[("host", ""), ("level", "WARN")]),
        ];
        let out = intercept::<RequireHeaders>(&config(&[("headers", "host, level")]), &events)?;
        assert_eq!(
            out,
            vec![
                Outcome::Keep,
                Outcome::Reject("missing header `level`".to_string()),
                Outcome::Keep
            ]
        );
        let strict = config(&[("headers", "host level"), ("non-empty", "true")]);
        let out = intercept::<RequireHeaders>(&strict, &events[2..])?;
        assert_eq!(
            out,
            vec![Outcome::Reject("missing header `host`".to_string())]
        );
        Ok(())
    }

    #[test]
    fn needs_a_header_list() {
        assert!(intercept::<RequireHeaders>(&config(&[]), &[]).is_err());
        let bad = config(&[("headers", "a"), ("non-empty", "yes")]);
        assert!(intercept::<RequireHeaders>(&bad, &[]).is_err());
    }
}
