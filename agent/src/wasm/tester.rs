//! `sluice wasm test`: runs a guest over sample events and reports what it decided, so guest
//! authors can check a component without an agent.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::guest::{Guest, Hook};
use super::lower::{BatchRef, BatchTooLarge};
use super::{WasmConfig, interceptor, router, sink_selector};
use crate::event::{Event, Headers};

#[derive(Debug, thiserror::Error)]
pub enum TestError {
    #[error("{0}")]
    Input(String),
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {source}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Batch(#[from] BatchTooLarge),
    #[error(transparent)]
    Guest(#[from] super::GuestError),
    #[error("guest fault: {0}")]
    Fault(#[from] super::Fault),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// Reads JSON lines: `{"headers": {"k": "v"}, "body": "text"}` (both optional) or a bare JSON
/// string used as the body.
pub fn read_events(input: impl BufRead, source: &Path) -> Result<Vec<Event>, TestError> {
    let mut out = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(|e| TestError::Read {
            path: source.to_path_buf(),
            source: e,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |m: String| TestError::Input(format!("{}:{}: {m}", source.display(), n + 1));
        let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| TestError::Json {
            path: source.to_path_buf(),
            line: n + 1,
            source: e,
        })?;
        let event = match v {
            serde_json::Value::String(body) => Event::new(body),
            serde_json::Value::Object(o) => {
                let body = match o.get("body") {
                    None => String::new(),
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(_) => return Err(bad("`body` must be a string".into())),
                };
                let mut headers = Headers::new();
                if let Some(h) = o.get("headers") {
                    let Some(h) = h.as_object() else {
                        return Err(bad("`headers` must be an object".into()));
                    };
                    for (k, v) in h {
                        let Some(v) = v.as_str() else {
                            return Err(bad(format!("header `{k}` must be a string")));
                        };
                        headers.insert(k.clone(), v.to_string());
                    }
                }
                Event {
                    headers,
                    body: body.into(),
                }
            }
            _ => return Err(bad("expected an object or a string".into())),
        };
        out.push(event);
    }
    Ok(out)
}

pub(crate) fn event_json(e: &Event) -> serde_json::Value {
    let headers: serde_json::Map<String, serde_json::Value> = e
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect();
    serde_json::json!({
        "headers": headers,
        "body": String::from_utf8_lossy(&e.body),
    })
}

/// What `run` needs besides the guest: the world, batch size, and the fan-out to check
/// indices against.
pub struct TestPlan {
    pub hook: Hook,
    pub batch: usize,
    pub targets: usize,
}

/// Running totals over the batches of one test.
#[derive(Default)]
struct Tally {
    /// The next input event's index.
    index: usize,
    kept: usize,
    dropped: usize,
    replaced: usize,
    rejected: usize,
}

/// Runs `events` through the guest in batches; writes one JSON line per input event to `out`
/// and returns a one-line summary.
pub fn run(
    config: &WasmConfig,
    plan: &TestPlan,
    events: &[Event],
    out: &mut impl Write,
) -> Result<String, TestError> {
    let started = Instant::now();
    let guest = Guest::new("test", plan.hook, config, super::WasmCounters::new())?;
    let instantiate = started.elapsed();
    let started = Instant::now();
    let mut t = Tally::default();
    for chunk in events.chunks(plan.batch.max(1)) {
        let batch = BatchRef::new(chunk, config.body_prefix)?;
        match plan.hook {
            Hook::Interceptor => intercept(&guest, config, chunk, batch, &mut t, out)?,
            Hook::Router => route(&guest, plan.targets, batch, chunk.len(), &mut t, out)?,
            Hook::SinkSelector => select(&guest, plan.targets, batch, chunk.len(), &mut t, out)?,
        }
    }
    Ok(format!(
        "{} events: {} kept/routed, {} dropped, {} replaced, {} rejected; \
         instantiate+init {:.1} ms, run {:.1} ms",
        events.len(),
        t.kept,
        t.dropped,
        t.replaced,
        t.rejected,
        instantiate.as_secs_f64() * 1000.0,
        started.elapsed().as_secs_f64() * 1000.0
    ))
}

/// One interceptor batch: a verdict line per event.
fn intercept(
    guest: &Guest,
    config: &WasmConfig,
    chunk: &[Event],
    batch: BatchRef<'_>,
    t: &mut Tally,
    out: &mut impl Write,
) -> Result<(), TestError> {
    let cut = |i: usize| {
        config
            .body_prefix
            .is_some_and(|p| chunk.get(i).is_some_and(|e| e.body.len() > p))
    };
    let n = chunk.len();
    let (codes, repl) = guest.call(|store, f| {
        let v = f.intercept(store, batch)?;
        Ok(interceptor::decode_verdicts(v, n, cut))
    })?;
    let mut repl = repl.into_iter();
    for (i, e) in chunk.iter().enumerate() {
        let index = t.index;
        let code = codes.get(i).copied().unwrap_or(0);
        let line = match code {
            0 => {
                t.kept += 1;
                serde_json::json!({"index": index, "verdict": "keep", "event": event_json(e)})
            }
            1 => {
                t.dropped += 1;
                serde_json::json!({"index": index, "verdict": "drop"})
            }
            interceptor::REJECT => {
                t.rejected += 1;
                let reason = repl.next().map(|r| r.body_text().into_owned());
                serde_json::json!({"index": index, "verdict": "reject", "reason": reason})
            }
            3 | interceptor::SAME_HEADERS => {
                t.replaced += 1;
                let headers = match code {
                    3 => repl.next().map(|r| r.headers).unwrap_or_default(),
                    _ => repl.last_headers(),
                };
                let r = event_json(&Event {
                    headers,
                    body: e.body.clone(),
                });
                serde_json::json!({"index": index, "verdict": "set-headers", "event": r})
            }
            _ => {
                t.replaced += 1;
                let r = repl.next().map(|r| event_json(&r));
                serde_json::json!({"index": index, "verdict": "replace", "event": r})
            }
        };
        writeln!(out, "{line}")?;
        t.index += 1;
    }
    Ok(())
}

/// One router batch: a channel list per event.
fn route(
    guest: &Guest,
    targets: usize,
    batch: BatchRef<'_>,
    n: usize,
    t: &mut Tally,
    out: &mut impl Write,
) -> Result<(), TestError> {
    let masks = guest.call(|store, f| {
        let m = f.route(store, batch)?;
        Ok(router::validate(n, targets, &m).map(|()| m))
    })?;
    for m in masks {
        let channels: Vec<u32> = (0..64).filter(|b| m & (1 << b) != 0).collect();
        if channels.is_empty() {
            t.dropped += 1;
        } else {
            t.kept += 1;
        }
        writeln!(
            out,
            "{}",
            serde_json::json!({"index": t.index, "channels": channels})
        )?;
        t.index += 1;
    }
    Ok(())
}

/// One sink-selector batch: a sink index per event.
fn select(
    guest: &Guest,
    targets: usize,
    batch: BatchRef<'_>,
    n: usize,
    t: &mut Tally,
    out: &mut impl Write,
) -> Result<(), TestError> {
    let choice = guest.call(|store, f| {
        let c = f.select(store, batch)?;
        Ok(sink_selector::validate(n, targets, &c).map(|()| c))
    })?;
    for s in choice {
        t.kept += 1;
        writeln!(out, "{}", serde_json::json!({"index": t.index, "sink": s}))?;
        t.index += 1;
    }
    Ok(())
}
