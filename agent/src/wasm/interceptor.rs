//! `type = wasm` interceptor: the guest returns a verdict per event (keep / drop / replace /
//! set-headers / reject).
//!
//! A rejected event goes to the source's dead-letter channel with the guest's reason, or is
//! dropped (counted like a drop) when the source has none; under `on-error = dead-letter` a
//! faulted batch goes there whole.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::bindings::Verdicts;
use super::codec::{DecodeError, Replacements};
use super::counters::WasmCounters;
use super::guest::{Guest, GuestError, Hook};
use super::lower::BatchRef;
use super::{OnError, WasmConfig};
use crate::event::Event;
use crate::pipeline::{
    BoxError, BuildContext, DeadLetters, Interceptor, InterceptorError, InterceptorSpec,
};

const KEEP: u8 = 0;
const DROP: u8 = 1;
const REPLACE: u8 = 2;
/// The next replacement's headers replace the event's; the event keeps its body.
const SET_HEADERS: u8 = 3;
/// The event goes to the dead-letter channel; the next replacement's body is the reason.
pub(crate) const REJECT: u8 = 4;
/// The event gets the headers of the replacement taken last (by a verdict 2, 3 or 4 before it),
/// keeps its body and takes no replacement: a tag on a whole batch sends one replacement.
pub(crate) const SAME_HEADERS: u8 = 5;

pub struct WasmInterceptor {
    guest: Guest,
}

impl WasmInterceptor {
    pub fn new(
        name: &str,
        config: &WasmConfig,
        counters: Arc<WasmCounters>,
    ) -> Result<Self, GuestError> {
        Ok(Self {
            guest: Guest::new(name, Hook::Interceptor, config, counters)?,
        })
    }
}

/// `type = wasm` in an interceptor chain: the parsed keys of a guest implementing the
/// `interceptor` world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WasmInterceptorSpec(pub(crate) WasmConfig);

impl InterceptorSpec for WasmInterceptorSpec {
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Interceptor>, BoxError> {
        let counters = super::counters(cx);
        Ok(Box::new(WasmInterceptor::new(&cx.name, &self.0, counters)?))
    }
}

/// What an interceptor guest got wrong in its verdicts.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum VerdictError {
    #[error(transparent)]
    Replacements(#[from] DecodeError),
    #[error("{replacements} replacement events without verdicts")]
    ReplacementsWithoutVerdicts { replacements: usize },
    #[error("{verdicts} verdicts for {events} events")]
    Count { verdicts: usize, events: usize },
    #[error(
        "event {event} was sent cut to body-prefix bytes and cannot be replaced whole (that \
         would lose the rest of its body); use set-headers (3)"
    )]
    CutReplaced { event: usize },
    #[error("unknown verdict {0}")]
    Unknown(u8),
    #[error("event {event}: same-headers verdict (5) before any replacement event was taken")]
    SameHeadersFirst { event: usize },
    #[error("{replaces} replace/set-headers/reject verdicts but {replacements} replacement events")]
    ReplacementCount {
        replaces: usize,
        replacements: usize,
    },
}

/// Checks the replacement events of `v` and the verdicts against a batch of `events`; `cut`
/// as for [`validate`].
pub(crate) fn decode_verdicts(
    v: Verdicts,
    events: usize,
    cut: impl Fn(usize) -> bool,
) -> Result<(Vec<u8>, Replacements), VerdictError> {
    let replacements = Replacements::new(v.replacements)?;
    validate(events, &v.codes, replacements.len(), cut)?;
    Ok((v.codes, replacements))
}

/// Checks verdicts against the batch; the error names what the guest got wrong. `cut(i)` says
/// whether event `i`'s body was cut by `body-prefix` (it may not be replaced whole).
pub(crate) fn validate(
    events: usize,
    codes: &[u8],
    replacements: usize,
    cut: impl Fn(usize) -> bool,
) -> Result<(), VerdictError> {
    if codes.is_empty() {
        if replacements != 0 {
            return Err(VerdictError::ReplacementsWithoutVerdicts { replacements });
        }
        return Ok(());
    }
    if codes.len() != events {
        return Err(VerdictError::Count {
            verdicts: codes.len(),
            events,
        });
    }
    let mut replaces = 0;
    for (i, &code) in codes.iter().enumerate() {
        match code {
            KEEP | DROP => {}
            SET_HEADERS | REJECT => replaces += 1,
            REPLACE if cut(i) => return Err(VerdictError::CutReplaced { event: i }),
            REPLACE => replaces += 1,
            SAME_HEADERS if replaces == 0 => {
                return Err(VerdictError::SameHeadersFirst { event: i });
            }
            SAME_HEADERS => {}
            other => return Err(VerdictError::Unknown(other)),
        }
    }
    if replaces != replacements {
        return Err(VerdictError::ReplacementCount {
            replaces,
            replacements,
        });
    }
    Ok(())
}

/// Applies validated verdicts, building each output event once; a rejected event goes to
/// `rejected` with its reason.
pub(crate) fn apply(
    events: Vec<Event>,
    codes: &[u8],
    mut replacements: Replacements,
    rejected: &mut Vec<(Event, String)>,
) -> Vec<Event> {
    if codes.is_empty() {
        return events;
    }
    if codes
        .iter()
        .all(|c| matches!(*c, KEEP | SET_HEADERS | SAME_HEADERS))
    {
        return with_new_headers(events, codes, replacements);
    }
    let mut out = Vec::with_capacity(events.len());
    for (mut e, &code) in events.into_iter().zip(codes) {
        match code {
            KEEP => out.push(e),
            REPLACE => {
                if let Some((headers, body)) = replacements.next_parts(true) {
                    out.push(Event { headers, body });
                }
            }
            SET_HEADERS => {
                if let Some((headers, _)) = replacements.next_parts(false) {
                    e.headers = headers;
                    out.push(e);
                }
            }
            SAME_HEADERS => {
                e.headers = replacements.last_headers();
                out.push(e);
            }
            REJECT => {
                let reason = replacements
                    .next()
                    .map(|r| r.body_text().into_owned())
                    .unwrap_or_default();
                rejected.push((e, reason));
            }
            _ => {}
        }
    }
    out
}

/// [`apply`] for a batch that only keeps events or sets their headers (an enrichment guest):
/// the events stay where they are and get their new headers in place.
fn with_new_headers(
    mut events: Vec<Event>,
    codes: &[u8],
    mut replacements: Replacements,
) -> Vec<Event> {
    for (e, &code) in events.iter_mut().zip(codes) {
        match code {
            SET_HEADERS => {
                if let Some((headers, _)) = replacements.next_parts(false) {
                    e.headers = headers;
                }
            }
            SAME_HEADERS => e.headers = replacements.last_headers(),
            _ => {}
        }
    }
    events
}

/// Shows a tap the events the guest dropped or replaced (as they came in; a replacement is
/// seen at the source's point after the chain).
fn tap_verdicts(guest: &str, events: &[Event], codes: &[u8]) {
    use crate::tap::{Point, publish};
    let pick = |want: &[u8]| -> Vec<Event> {
        events
            .iter()
            .zip(codes)
            .filter(|(_, c)| want.contains(c))
            .map(|(e, _)| e.clone())
            .collect()
    };
    let dropped = pick(&[DROP]);
    publish(guest, Point::Verdict("dropped"), &dropped);
    let replaced = pick(&[REPLACE, SET_HEADERS, SAME_HEADERS]);
    publish(guest, Point::Verdict("replaced"), &replaced);
    let rejected = pick(&[REJECT]);
    publish(guest, Point::Verdict("rejected"), &rejected);
}

impl Interceptor for WasmInterceptor {
    fn intercept(&self, events: Vec<Event>) -> Result<Vec<Event>, InterceptorError> {
        self.intercept_or_set_aside(events, &mut DeadLetters::disabled())
    }

    fn intercept_or_set_aside(
        &self,
        events: Vec<Event>,
        dead: &mut DeadLetters,
    ) -> Result<Vec<Event>, InterceptorError> {
        let c = self.guest.counters();
        let name = self.guest.name();
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.events_in
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        let prefix = self.guest.config().body_prefix;
        let batch = BatchRef::new(&events, prefix).map_err(|e| InterceptorError {
            interceptor: name.to_string(),
            cause: Arc::new(e),
        })?;
        let n = events.len();
        let cut =
            |i: usize| prefix.is_some_and(|p| events.get(i).is_some_and(|e| e.body.len() > p));
        let result = self.guest.call(|store, f| {
            let v = f.intercept(store, batch)?;
            Ok(decode_verdicts(v, n, cut))
        });
        match result {
            Ok((codes, replacements)) => {
                if crate::tap::active() {
                    tap_verdicts(name, &events, &codes);
                }
                let mut rejected = Vec::new();
                let out = apply(events, &codes, replacements, &mut rejected);
                c.events_out.fetch_add(out.len() as u64, Ordering::Relaxed);
                if !rejected.is_empty() {
                    c.rejected
                        .fetch_add(rejected.len() as u64, Ordering::Relaxed);
                    for (e, reason) in rejected {
                        dead.push(name, &reason, [e]);
                    }
                }
                Ok(out)
            }
            Err(fault) => match self.guest.config().on_error {
                OnError::DeadLetter if dead.is_enabled() => {
                    c.policy_dead_lettered.fetch_add(1, Ordering::Relaxed);
                    crate::tap::publish(
                        name,
                        crate::tap::Point::Verdict("dead-letter-on-fault"),
                        &events,
                    );
                    dead.push(name, &format!("fault: {fault}"), events);
                    Ok(Vec::new())
                }
                // Without a dead-letter channel (the config check requires one, but a hook
                // called on its own, as by `sluice wasm test`, has none) nothing is lost.
                OnError::Fail | OnError::DeadLetter => {
                    c.policy_failed.fetch_add(1, Ordering::Relaxed);
                    Err(InterceptorError {
                        interceptor: name.to_string(),
                        cause: Arc::new(fault),
                    })
                }
                OnError::Drop => {
                    c.policy_dropped.fetch_add(1, Ordering::Relaxed);
                    crate::tap::publish(
                        name,
                        crate::tap::Point::Verdict("dropped-on-fault"),
                        &events,
                    );
                    Ok(Vec::new())
                }
                OnError::Pass => {
                    c.policy_passed.fetch_add(1, Ordering::Relaxed);
                    c.events_out.fetch_add(n as u64, Ordering::Relaxed);
                    Ok(events)
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::bindings::Batch;
    use super::*;

    /// Replacement events in the wire form a guest returns.
    fn wire(events: Vec<Event>) -> Replacements {
        let mut b = Batch {
            bodies: Vec::new(),
            body_ends: Vec::new(),
            headers: Vec::new(),
            header_ends: Vec::new(),
        };
        for e in events {
            b.bodies.extend_from_slice(&e.body);
            b.body_ends.push(b.bodies.len() as u32);
            for (k, v) in e.headers.iter() {
                for part in [k.as_bytes(), v.as_bytes()] {
                    b.headers
                        .extend_from_slice(&(part.len() as u32).to_le_bytes());
                    b.headers.extend_from_slice(part);
                }
            }
            b.header_ends.push(b.headers.len() as u32);
        }
        match Replacements::new(b) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn verdicts() {
        let ev = |s: &str| Event::new(s.to_string());
        let events = vec![ev("a"), ev("b"), ev("c")];
        let whole = |_| false;
        assert_eq!(validate(3, &[], 0, whole), Ok(()));
        assert!(validate(3, &[0, 1], 0, whole).is_err());
        assert!(validate(3, &[0, 1, 2], 0, whole).is_err());
        assert!(validate(3, &[0, 1, 7], 0, whole).is_err());
        assert_eq!(validate(3, &[2, 1, 0], 1, whole), Ok(()));
        assert_eq!(validate(3, &[3, 2, 0], 2, whole), Ok(()));
        // A cut body may get new headers, not a whole replacement.
        assert_eq!(validate(3, &[3, 1, 0], 1, |i| i == 0), Ok(()));
        assert!(validate(3, &[2, 1, 0], 1, |i| i == 0).is_err());
        let mut rejected = Vec::new();
        assert_eq!(
            apply(
                events.clone(),
                &[2, 1, 0],
                wire(vec![ev("z")]),
                &mut rejected
            ),
            vec![ev("z"), ev("c")]
        );
        // A reject takes a replacement (its reason) and is allowed on a cut body.
        assert!(validate(3, &[4, 0, 0], 0, whole).is_err());
        assert_eq!(validate(3, &[4, 0, 0], 1, |i| i == 0), Ok(()));
        assert_eq!(
            apply(
                events.clone(),
                &[4, 1, 0],
                wire(vec![ev("too short")]),
                &mut rejected
            ),
            vec![ev("c")]
        );
        assert_eq!(rejected, vec![(ev("a"), "too short".to_string())]);
        let mut tagged = Event::new(String::new());
        tagged.headers.insert("t", "1");
        let mut want = ev("a");
        want.headers.insert("t", "1");
        assert_eq!(
            apply(
                events.clone(),
                &[3, 1, 1],
                wire(vec![tagged.clone()]),
                &mut rejected
            ),
            vec![want.clone()]
        );
        // Same headers (5): the last replacement's headers, no replacement of its own.
        assert_eq!(validate(3, &[3, 5, 5], 1, whole), Ok(()));
        assert_eq!(validate(3, &[3, 5, 0], 1, |i| i == 1), Ok(()));
        assert!(validate(3, &[5, 3, 0], 1, whole).is_err());
        assert!(validate(3, &[3, 5, 5], 3, whole).is_err());
        let mut want_c = ev("c");
        want_c.headers.insert("t", "1");
        assert_eq!(
            apply(
                events.clone(),
                &[3, 1, 5],
                wire(vec![tagged.clone()]),
                &mut rejected
            ),
            vec![want.clone(), want_c.clone()]
        );
        // Only keep / set-headers / same-headers: the headers change in place.
        assert_eq!(
            apply(events, &[3, 0, 5], wire(vec![tagged]), &mut rejected),
            vec![want, ev("b"), want_c]
        );
    }
}
