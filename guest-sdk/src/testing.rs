//! Native test stub: runs guest logic through the same flat batch encoding the host uses,
//! without WebAssembly, and records what the guest logged and counted.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::batch::BatchBuf;
use crate::{Config, Interceptor, Level, OwnedEvent, Router, SinkSelector, Verdicts};

thread_local! {
    static LOGS: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
    static COUNTERS: RefCell<BTreeMap<String, u64>> = const { RefCell::new(BTreeMap::new()) };
}

#[cfg_attr(
    all(
        target_arch = "wasm32",
        any(feature = "interceptor", feature = "router", feature = "sink-selector")
    ),
    allow(dead_code)
)]
pub(crate) fn record_log(level: Level, message: &str) {
    LOGS.with(|l| l.borrow_mut().push((level, message.to_string())));
}

#[cfg_attr(
    all(
        target_arch = "wasm32",
        any(feature = "interceptor", feature = "router", feature = "sink-selector")
    ),
    allow(dead_code)
)]
pub(crate) fn record_counter(name: &str, delta: u64) {
    COUNTERS.with(|c| *c.borrow_mut().entry(name.to_string()).or_default() += delta);
}

/// Lines logged on this thread so far (and clears them).
pub fn take_logs() -> Vec<(Level, String)> {
    LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

/// This thread's counters so far.
pub fn counters() -> BTreeMap<String, u64> {
    COUNTERS.with(|c| c.borrow().clone())
}

/// `config.*` pairs from literals.
pub fn config(pairs: &[(&str, &str)]) -> Config {
    Config::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// An event from a body and header pairs.
pub fn event(body: &str, headers: &[(&str, &str)]) -> OwnedEvent {
    OwnedEvent {
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

fn encode(events: &[OwnedEvent]) -> BatchBuf {
    let mut b = BatchBuf::default();
    for e in events {
        b.push(e);
    }
    b
}

/// What an interceptor did to one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Keep,
    Drop,
    Replace(OwnedEvent),
    /// Set aside in the dead-letter channel, with this reason.
    Reject(String),
}

/// Runs `init` then one `intercept` call; checks there is one verdict per event.
pub fn intercept<T: Interceptor>(
    config: &Config,
    events: &[OwnedEvent],
) -> Result<Vec<Outcome>, String> {
    let mut guest = T::init(config)?;
    intercept_with(&mut guest, events)
}

/// One `intercept` call on an initialised guest.
pub fn intercept_with<T: Interceptor>(
    guest: &mut T,
    events: &[OwnedEvent],
) -> Result<Vec<Outcome>, String> {
    let buf = encode(events);
    let mut out = Verdicts::with_capacity(events.len());
    guest.intercept(&buf.batch(), &mut out);
    if out.len() != events.len() {
        return Err(format!(
            "{} verdicts for {} events",
            out.len(),
            events.len()
        ));
    }
    let (codes, repl) = out.into_parts();
    if codes.is_empty() {
        return Ok(vec![Outcome::Keep; events.len()]);
    }
    let repl = repl.batch();
    let mut next = 0;
    // The headers of the replacement taken last (what verdict 5 gives an event).
    let mut last: Vec<(String, String)> = Vec::new();
    Ok(codes
        .iter()
        .enumerate()
        .map(|(i, c)| match c {
            0 => Outcome::Keep,
            1 => Outcome::Drop,
            4 => {
                let e = repl.get(next).map(|e| e.to_owned()).unwrap_or_default();
                next += 1;
                last = e.headers;
                Outcome::Reject(String::from_utf8_lossy(&e.body).into_owned())
            }
            3 | 5 => {
                // What the host makes of it: the new headers on the event's own body.
                if *c == 3 {
                    last = repl
                        .get(next)
                        .map(|e| e.to_owned().headers)
                        .unwrap_or_default();
                    next += 1;
                }
                Outcome::Replace(OwnedEvent {
                    headers: last.clone(),
                    body: events[i].body.clone(),
                })
            }
            _ => {
                let e = repl.get(next).map(|e| e.to_owned()).unwrap_or_default();
                next += 1;
                last = e.headers.clone();
                Outcome::Replace(e)
            }
        })
        .collect())
}

/// Runs `init` then one `route` call; checks there is one mask per event.
pub fn route<T: Router>(config: &Config, events: &[OwnedEvent]) -> Result<Vec<u64>, String> {
    let mut guest = T::init(config)?;
    let buf = encode(events);
    let mut out = Vec::new();
    guest.route(&buf.batch(), &mut out);
    if out.len() != events.len() {
        return Err(format!("{} routes for {} events", out.len(), events.len()));
    }
    Ok(out)
}

/// Runs `init` then one `select` call; checks there is one sink per event.
pub fn select<T: SinkSelector>(config: &Config, events: &[OwnedEvent]) -> Result<Vec<u32>, String> {
    let mut guest = T::init(config)?;
    let buf = encode(events);
    let mut out = Vec::new();
    guest.select(&buf.batch(), &mut out);
    if out.len() != events.len() {
        return Err(format!(
            "{} sink choices for {} events",
            out.len(),
            events.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Batch;

    struct Upper;

    impl Interceptor for Upper {
        fn init(_: &Config) -> Result<Self, String> {
            Ok(Upper)
        }
        fn intercept(&mut self, batch: &Batch<'_>, out: &mut Verdicts) {
            for e in batch.iter() {
                match e.header("op") {
                    Some("drop") => out.drop(),
                    Some("reject") => out.reject("op says reject"),
                    Some("up") => {
                        let mut r = e.to_owned();
                        r.body = r.body.to_ascii_uppercase();
                        crate::counter_add("upper", 1);
                        out.replace(&r);
                    }
                    _ => out.keep(),
                }
            }
        }
    }

    #[test]
    fn verdicts_round_trip_through_the_flat_encoding() -> Result<(), String> {
        let events = vec![
            event("a", &[("op", "drop")]),
            event("b", &[("op", "up"), ("z", "1")]),
            event("c", &[]),
            event("d", &[("op", "reject")]),
        ];
        let out = intercept::<Upper>(&config(&[]), &events)?;
        assert_eq!(
            out,
            vec![
                Outcome::Drop,
                Outcome::Replace(event("B", &[("op", "up"), ("z", "1")])),
                Outcome::Keep,
                Outcome::Reject("op says reject".to_string()),
            ]
        );
        assert_eq!(counters().get("upper"), Some(&1));
        let all_kept = intercept::<Upper>(&config(&[]), &[event("x", &[])])?;
        assert_eq!(all_kept, vec![Outcome::Keep]);
        Ok(())
    }

    #[test]
    fn config_lookup() {
        let c = config(&[("level", "warn")]);
        assert_eq!(c.get("level"), Some("warn"));
        assert_eq!(c.get("other"), None);
    }
}
