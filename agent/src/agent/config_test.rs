//! `sluice test`: unit tests for a config's routing, as `vector test` is for transforms.
//!
//! A test names a source, gives input events and says which events each of the source's
//! channels must receive. The runner builds that source's real interceptor chain (built-ins
//! and WebAssembly guests) and channel selector with the agent's own build code, puts a fresh
//! in-memory channel in place of each of the source's channels (nothing configured is opened:
//! no file channel directory, no Kafka topic, no port), and delivers the inputs one event per
//! batch, in order, through the same `ChannelProcessor` a running source uses. Sources and
//! sinks are never started.
//!
//! ```toml
//! [[tests]]
//! name = "routes by type and drops debug"
//! source = "r1"
//! inputs = [ { body = "hello a", headers = { type = "a" } }, { body = "DEBUG x" } ]
//! dropped = [ { body = "DEBUG x" } ]       # optional
//! [[tests.outputs]]
//! channel = "c1"
//! events = [ { body = "hello a" } ]        # headers given must match (a subset)
//! ```
//!
//! Matching: a listed channel must receive exactly its `events`, in order; an expected event
//! matches when its `body` (if given) equals the delivered body (read as UTF-8) and every
//! header it gives is present with that value (`absent = ["k"]` requires a header to be
//! missing). `events = []` means the channel receives nothing. An input *reaches no listed
//! channel* when none of the events its batch produced landed in a listed channel (an
//! interceptor or the selector dropped it, or it went only to unlisted channels). When the
//! test has `dropped`, those inputs, in order, must match it exactly; without `dropped` they
//! are allowed. An input whose batch fails (a guest fault, a selector refusal) fails the test
//! unless it is listed in `errors`, matched like `dropped`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::build::build_source_hooks;
use crate::channels::memory::{MemoryChannel, MemoryChannelConfig};
use crate::channels::{ChannelRef, TakeTransaction};
use crate::event::{Event, Headers};
use crate::topology::AgentConfig;

/// Room of each stand-in channel: far more than a test's inputs can produce.
const STAND_IN_CAPACITY: usize = 1 << 20;
/// Inputs per test at most (the runner keeps every delivered event).
pub const MAX_INPUTS: usize = 100_000;

/// A test file that could not be read or does not have the expected shape.
#[derive(Debug, thiserror::Error)]
pub enum TestFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    #[serde(default)]
    pub tests: Vec<TestCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    pub source: String,
    pub inputs: Vec<InputEvent>,
    #[serde(default)]
    pub outputs: Vec<Output>,
    pub dropped: Option<Vec<Expected>>,
    #[serde(default)]
    pub errors: Vec<Expected>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputEvent {
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    pub channel: String,
    pub events: Vec<Expected>,
}

/// What an expected event must look like.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent: Vec<String>,
}

impl Expected {
    /// Why `e` does not match, or `None` when it does.
    fn mismatch(&self, e: &Event) -> Option<String> {
        let mut why = Vec::new();
        if let Some(body) = &self.body {
            let got = e.body_text();
            if got != body.as_str() {
                why.push(format!("body {got:?}, expected {body:?}"));
            }
        }
        for (k, v) in &self.headers {
            match e.headers.get(k) {
                Some(got) if got == v => {}
                Some(got) => why.push(format!("header {k} = {got:?}, expected {v:?}")),
                None => why.push(format!("header {k} missing, expected {v:?}")),
            }
        }
        for k in &self.absent {
            if let Some(got) = e.headers.get(k) {
                why.push(format!("header {k} = {got:?}, expected absent"));
            }
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

/// Reads and parses a TOML test file.
pub fn load_tests(path: &Path) -> Result<TestFile, TestFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TestFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| TestFileError::Parse {
        path: path.display().to_string(),
        message: e.to_string().trim_end().to_string(),
    })
}

/// One test's outcome.
#[derive(Debug, serde::Serialize)]
pub struct TestResult {
    pub name: String,
    pub passed: bool,
    /// Readable lines saying what differed (empty when passed).
    pub failures: Vec<String>,
}

/// Runs every test of `file` against `config`; a test that cannot even be set up (an unknown
/// source, a guest that does not compile) fails with the reason.
pub fn run_tests(config: &AgentConfig, file: &TestFile) -> Vec<TestResult> {
    file.tests.iter().map(|t| run_one(config, t)).collect()
}

/// An event as one line of JSON, for diffs.
pub fn event_json(e: &Event) -> String {
    let headers: serde_json::Map<String, serde_json::Value> = e
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(v)))
        .collect();
    serde_json::json!({ "headers": headers, "body": e.body_text() }).to_string()
}

fn expected_json(x: &Expected) -> String {
    serde_json::to_string(x).unwrap_or_else(|e| format!("<{e}>"))
}

fn stand_in(name: &str) -> Arc<MemoryChannel> {
    Arc::new(MemoryChannel::new(
        name,
        MemoryChannelConfig {
            capacity: STAND_IN_CAPACITY,
            transaction_capacity: STAND_IN_CAPACITY,
            byte_capacity: u64::MAX,
            keep_alive: Duration::ZERO,
        },
    ))
}

fn drain(channel: &MemoryChannel) -> Result<Vec<Event>, String> {
    let take = TakeTransaction::begin(channel, STAND_IN_CAPACITY, Duration::ZERO)
        .map_err(|e| format!("cannot read the stand-in channel: {e}"))?;
    let events = take.events().to_vec();
    take.commit()
        .map_err(|e| format!("cannot read the stand-in channel: {e}"))?;
    Ok(events)
}

fn input_event(i: &InputEvent) -> Event {
    let headers: Headers = i
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Event::with_headers(headers, i.body.clone().into_bytes())
}

fn failed(name: &str, why: String) -> TestResult {
    TestResult {
        name: name.to_string(),
        passed: false,
        failures: vec![why],
    }
}

fn run_one(config: &AgentConfig, t: &TestCase) -> TestResult {
    let Some(source) = config.sources.iter().find(|s| s.name == t.source) else {
        let known: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
        return failed(
            &t.name,
            format!(
                "source `{}` is not in the config (sources: {})",
                t.source,
                known.join(", ")
            ),
        );
    };
    if t.inputs.len() > MAX_INPUTS {
        return failed(
            &t.name,
            format!("{} inputs; at most {MAX_INPUTS}", t.inputs.len()),
        );
    }
    let written: Vec<String> = source.written_channels().cloned().collect();
    for o in &t.outputs {
        if !written.contains(&o.channel) {
            return failed(
                &t.name,
                format!(
                    "outputs name channel `{}`, which is not a channel of source `{}` \
                     (its channels: {})",
                    o.channel,
                    t.source,
                    written.join(", ")
                ),
            );
        }
    }
    let channels: BTreeMap<String, Arc<MemoryChannel>> =
        written.iter().map(|c| (c.clone(), stand_in(c))).collect();
    let view: BTreeMap<String, ChannelRef> = channels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone() as ChannelRef))
        .collect();
    let prepared = match build_source_hooks(source, &view) {
        Ok(p) => p,
        Err(e) => return failed(&t.name, format!("cannot build source `{}`: {e}", t.source)),
    };
    let listed: Vec<&str> = t.outputs.iter().map(|o| o.channel.as_str()).collect();
    let mut delivered: BTreeMap<&str, Vec<(usize, Event)>> = BTreeMap::new();
    let mut dropped: Vec<usize> = Vec::new();
    let mut errors: Vec<(usize, String)> = Vec::new();
    for (n, input) in t.inputs.iter().enumerate() {
        if let Err(e) = prepared.processor.process_batch(vec![input_event(input)]) {
            errors.push((n, e.to_string()));
            // A failed batch leaves nothing behind (its transactions rolled back).
            continue;
        }
        let mut reached_listed = false;
        for (name, ch) in &channels {
            let events = match drain(ch) {
                Ok(e) => e,
                Err(why) => return failed(&t.name, why),
            };
            if !events.is_empty() && listed.contains(&name.as_str()) {
                reached_listed = true;
            }
            delivered
                .entry(name.as_str())
                .or_default()
                .extend(events.into_iter().map(|e| (n, e)));
        }
        if !reached_listed {
            dropped.push(n);
        }
    }
    let mut failures = Vec::new();
    for o in &t.outputs {
        let got = delivered
            .get(o.channel.as_str())
            .map_or(&[][..], |v| &v[..]);
        compare_list(
            &format!("channel {}", o.channel),
            &o.events,
            got,
            &mut failures,
        );
    }
    let inputs: Vec<Event> = t.inputs.iter().map(input_event).collect();
    if let Some(expected) = &t.dropped {
        let got: Vec<(usize, Event)> = dropped.iter().map(|&n| (n, inputs[n].clone())).collect();
        compare_list(
            "inputs that reached no listed channel (`dropped`)",
            expected,
            &got,
            &mut failures,
        );
    }
    let got_errors: Vec<(usize, Event)> = errors
        .iter()
        .map(|(n, _)| (*n, inputs[*n].clone()))
        .collect();
    if !errors.is_empty() || !t.errors.is_empty() {
        let before = failures.len();
        compare_list(
            "inputs whose batch failed (`errors`)",
            &t.errors,
            &got_errors,
            &mut failures,
        );
        if failures.len() > before {
            for (n, why) in &errors {
                failures.push(format!("  input #{}: {why}", n + 1));
            }
        }
    }
    TestResult {
        name: t.name.clone(),
        passed: failures.is_empty(),
        failures,
    }
}

/// Appends a readable diff of `expected` against `got` (each with the number of the input it
/// came from) when they differ.
fn compare_list(
    what: &str,
    expected: &[Expected],
    got: &[(usize, Event)],
    failures: &mut Vec<String>,
) {
    // Per position where both exist: why they differ (None: they match).
    let why: Vec<Option<String>> = expected
        .iter()
        .zip(got)
        .map(|(x, (_, e))| x.mismatch(e))
        .collect();
    if expected.len() == got.len() && why.iter().all(Option::is_none) {
        return;
    }
    let mut text = format!(
        "{what}: expected {} event(s), got {}",
        expected.len(),
        got.len()
    );
    for i in 0..expected.len().max(got.len()) {
        let x = expected.get(i);
        let g = got.get(i);
        let differs = why.get(i).map(Option::as_ref);
        let mark = if matches!(differs, Some(None)) {
            ' '
        } else {
            '!'
        };
        let _ = write!(text, "\n  {mark} #{}", i + 1);
        if let Some(x) = x {
            let _ = write!(text, "\n      expected {}", expected_json(x));
        } else {
            text.push_str("\n      expected (nothing)");
        }
        match g {
            Some((n, e)) => {
                let _ = write!(
                    text,
                    "\n      got      {} (from input #{})",
                    event_json(e),
                    n + 1
                );
            }
            None => text.push_str("\n      got      (nothing)"),
        }
        if let Some(Some(why)) = differs {
            let _ = write!(text, "\n      {why}");
        }
    }
    failures.push(text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Properties;

    fn config(text: &str) -> AgentConfig {
        let props = Properties::parse(Path::new("t.conf"), text);
        AgentConfig::from_properties(&props, "a1").expect("config")
    }

    const MULTIPLEX: &str = "\
a1.sources = r1
a1.channels = c1 c2
a1.sinks = k1 k2
a1.sources.r1.type = netcat
a1.sources.r1.bind = 127.0.0.1
a1.sources.r1.port = 1
a1.sources.r1.channels = c1 c2
a1.sources.r1.interceptors = f s
a1.sources.r1.interceptors.f.type = regex_filter
a1.sources.r1.interceptors.f.regex = ^DEBUG
a1.sources.r1.interceptors.f.excludeEvents = true
a1.sources.r1.interceptors.s.type = static
a1.sources.r1.interceptors.s.key = dc
a1.sources.r1.interceptors.s.value = east
a1.sources.r1.selector.type = multiplexing
a1.sources.r1.selector.header = type
a1.sources.r1.selector.mapping.a = c1
a1.sources.r1.selector.mapping.b = c2
a1.channels.c1.type = file
a1.channels.c1.checkpointDir = /nonexistent/never-opened/cp
a1.channels.c1.dataDirs = /nonexistent/never-opened/data
a1.channels.c2.type = memory
a1.sinks.k1.type = null
a1.sinks.k1.channel = c1
a1.sinks.k2.type = null
a1.sinks.k2.channel = c2
";

    fn tests(text: &str) -> TestFile {
        toml::from_str(text).expect("toml")
    }

    #[test]
    fn routes_filters_and_reports_drops() {
        let c = config(MULTIPLEX);
        let f = tests(
            r#"
[[tests]]
name = "routes"
source = "r1"
inputs = [ { body = "hello a", headers = { type = "a" } }, { body = "DEBUG x", headers = { type = "a" } },
           { body = "to b", headers = { type = "b" } }, { body = "no type" } ]
dropped = [ { body = "DEBUG x" }, { body = "no type" } ]
[[tests.outputs]]
channel = "c1"
events = [ { body = "hello a", headers = { dc = "east", type = "a" } } ]
[[tests.outputs]]
channel = "c2"
events = [ { body = "to b", absent = ["host"] } ]
"#,
        );
        let r = run_tests(&c, &f);
        assert!(r[0].passed, "{:#?}", r[0]);
    }

    #[test]
    fn a_wrong_expectation_fails_with_a_diff() {
        let c = config(MULTIPLEX);
        let f = tests(
            r#"
[[tests]]
name = "wrong"
source = "r1"
inputs = [ { body = "hello a", headers = { type = "a" } }, { body = "x", headers = { type = "b" } } ]
dropped = []
[[tests.outputs]]
channel = "c1"
events = [ { body = "hello b", headers = { dc = "west" } } ]
[[tests.outputs]]
channel = "c2"
events = []
"#,
        );
        let r = run_tests(&c, &f);
        assert!(!r[0].passed);
        let text = r[0].failures.join("\n");
        assert!(
            text.contains("body \"hello a\", expected \"hello b\"")
                && text.contains("header dc = \"east\", expected \"west\"")
                && text.contains("channel c2: expected 0 event(s), got 1"),
            "{text}"
        );
        // Unlisted drops are allowed without `dropped`; here nothing was dropped.
        assert!(!text.contains("dropped"), "{text}");
    }

    #[test]
    fn unknown_source_and_channel_are_named() {
        let c = config(MULTIPLEX);
        let f = tests(
            r#"
[[tests]]
name = "no source"
source = "r9"
inputs = []
[[tests]]
name = "no channel"
source = "r1"
inputs = []
[[tests.outputs]]
channel = "c7"
events = []
"#,
        );
        let r = run_tests(&c, &f);
        assert!(r[0].failures[0].contains("source `r9` is not in the config (sources: r1)"));
        assert!(r[1].failures[0].contains("channel `c7`, which is not a channel of source `r1`"));
    }

    #[test]
    fn bad_toml_names_the_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("t.toml");
        std::fs::write(&p, "[[tests]]\nname = \"x\"\nsource = 3\ninputs = []\n").expect("write");
        let e = load_tests(&p).expect_err("must fail").to_string();
        assert!(e.contains("t.toml") && e.contains("line 3"), "{e}");
        std::fs::write(
            &p,
            "[[tests]]\nname = \"x\"\nsource = \"r1\"\ninputs = []\nbogus = 1\n",
        )
        .expect("write");
        let e = load_tests(&p).expect_err("must fail").to_string();
        assert!(e.contains("bogus"), "{e}");
    }
}
