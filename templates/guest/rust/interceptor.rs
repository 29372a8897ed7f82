//! {{name}}: a sluice interceptor guest (world `interceptor` of wit/pipeline.wit).
//!
//! Drops events whose body starts with `config.drop-prefix` (default `DEBUG`), rejects empty
//! events (they go to the source's dead-letter channel, `deadLetter.channel`, with the reason)
//! and keeps the rest. Change [`decide`] to make it yours; `./test.sh` runs the unit tests
//! natively, `./build.sh` builds `{{name}}.wasm`.

use sluice_guest::{Batch, Config, Interceptor, Verdicts, counter_add};

/// What happens to one event.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Keep,
    Drop,
    Reject(&'static str),
}

/// The guest's logic, on one body.
pub fn decide(drop_prefix: &[u8], body: &[u8]) -> Decision {
    if body.is_empty() {
        Decision::Reject("empty body")
    } else if body.starts_with(drop_prefix) {
        Decision::Drop
    } else {
        Decision::Keep
    }
}

pub struct Guest {
    drop_prefix: Vec<u8>,
}

impl Interceptor for Guest {
    fn init(config: &Config) -> Result<Self, String> {
        let drop_prefix = config.get("drop-prefix").unwrap_or("DEBUG");
        if drop_prefix.is_empty() {
            return Err("config.drop-prefix must not be empty".to_string());
        }
        Ok(Self {
            drop_prefix: drop_prefix.as_bytes().to_vec(),
        })
    }

    fn intercept(&mut self, batch: &Batch<'_>, out: &mut Verdicts) {
        let mut dropped = 0;
        for e in batch.iter() {
            match decide(&self.drop_prefix, e.body) {
                Decision::Keep => out.keep(),
                Decision::Drop => {
                    dropped += 1;
                    out.drop();
                }
                Decision::Reject(reason) => out.reject(reason),
            }
        }
        if dropped > 0 {
            counter_add("dropped", dropped);
        }
    }
}

sluice_guest::export!(interceptor: Guest);

#[cfg(test)]
mod tests {
    use sluice_guest::testing::{Outcome, config, counters, event, intercept};

    use super::*;

    #[test]
    fn drops_by_prefix_rejects_empty_and_keeps_the_rest() -> Result<(), String> {
        let events = [event("DEBUG noise", &[]), event("", &[]), event("hello", &[])];
        let out = intercept::<Guest>(&config(&[]), &events)?;
        assert_eq!(
            out,
            vec![
                Outcome::Drop,
                Outcome::Reject("empty body".to_string()),
                Outcome::Keep
            ]
        );
        assert_eq!(counters().get("dropped"), Some(&1));
        let out = intercept::<Guest>(&config(&[("drop-prefix", "hel")]), &events[2..])?;
        assert_eq!(out, vec![Outcome::Drop]);
        Ok(())
    }

    #[test]
    fn refuses_an_empty_prefix() {
        assert!(intercept::<Guest>(&config(&[("drop-prefix", "")]), &[]).is_err());
    }
}
