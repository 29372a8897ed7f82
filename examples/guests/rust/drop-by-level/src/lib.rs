//! Drops events whose level is below a threshold.
//!
//! The level is the `level` header (`config.header` names another one) or, without it, the
//! first word of the body (`DEBUG ...`). Config: `config.min-level` (default `info`): events
//! below it are dropped; events without a recognisable level are kept.

use sluice_guest::{Batch, Config, Interceptor, Verdicts, counter_add};

const LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// Whether `b` can start a level word: most bodies are decided on their first byte.
#[inline(always)]
fn level_initial(b: u8) -> bool {
    matches!(b | 0x20, b't' | b'd' | b'i' | b'w' | b'e' | b'f')
}

/// The rank of a level word (`warning` = warn, `fatal` = error; a trailing `:` is ignored),
/// compared as ASCII bytes without case: this runs once per event.
#[inline(always)]
fn rank(word: &[u8]) -> Option<usize> {
    let word = word.strip_suffix(b":").unwrap_or(word);
    LEVELS
        .iter()
        .position(|l| l.as_bytes().eq_ignore_ascii_case(word))
        .or(if word.eq_ignore_ascii_case(b"warning") {
            Some(3)
        } else if word.eq_ignore_ascii_case(b"fatal") {
            Some(4)
        } else {
            None
        })
}

pub struct DropByLevel {
    header: String,
    min: usize,
}

impl Interceptor for DropByLevel {
    fn init(config: &Config) -> Result<Self, String> {
        let min = config.get("min-level").unwrap_or("info");
        Ok(Self {
            header: config.get("header").unwrap_or("level").to_string(),
            min: rank(min.as_bytes())
                .ok_or_else(|| format!("config.min-level: unknown level `{min}`"))?,
        })
    }

    fn intercept(&mut self, batch: &Batch<'_>, out: &mut Verdicts) {
        let mut dropped = 0;
        for e in batch.iter() {
            let level = match e.header(&self.header) {
                Some(h) => rank(h.as_bytes()),
                None if !e.body.first().is_some_and(|b| level_initial(*b)) => None,
                None => {
                    // A level word is at most 8 bytes ("warning:"): look no further, so the
                    // cost per event does not grow with the body.
                    let head = &e.body[..e.body.len().min(9)];
                    let end = head.iter().position(|b| *b == b' ').unwrap_or(head.len());
                    rank(&head[..end])
                }
            };
            if level.is_some_and(|l| l < self.min) {
                dropped += 1;
                out.drop();
            } else {
                out.keep();
            }
        }
        if dropped > 0 {
            counter_add("DroppedByLevel", dropped);
        }
    }
}

sluice_guest::export!(interceptor: DropByLevel);

#[cfg(test)]
mod tests {
    use sluice_guest::testing::{Outcome, config, event, intercept};

    use super::*;

    #[test]
    fn drops_below_the_threshold() -> Result<(), String> {
        let events = [
            event("x", &[("level", "debug")]),
            event("WARN disk almost full", &[]),
            event("DEBUG: noisy", &[]),
            event("no level here", &[]),
            event("x", &[("severity", "trace")]),
        ];
        let out = intercept::<DropByLevel>(&config(&[("min-level", "info")]), &events)?;
        use Outcome::{Drop, Keep};
        assert_eq!(out, vec![Drop, Keep, Drop, Keep, Keep]);
        let out = intercept::<DropByLevel>(
            &config(&[("min-level", "warn"), ("header", "severity")]),
            &events[4..],
        )?;
        assert_eq!(out, vec![Drop]);
        Ok(())
    }

    #[test]
    fn rejects_unknown_level() {
        assert!(intercept::<DropByLevel>(&config(&[("min-level", "loud")]), &[]).is_err());
    }
}
