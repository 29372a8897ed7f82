//! Live taps: copies of the events passing a point of the pipeline, for `sluice tap`.
//!
//! Points: `source` (a source's events after its interceptor chain: what a guest produced),
//! `channel` (what was committed into a channel), `sink` (what a sink delivered and
//! committed), `verdict` (an event a WebAssembly interceptor dropped or replaced, named by the
//! guest). With no tap connected a point costs one relaxed atomic load per batch.
//!
//! A connected tap is a [`Subscription`]: a queue of event copies (an `Event` clone shares its
//! body and headers) bounded to about [`QUEUE`] events, filled by the pipeline threads one
//! message per batch; when it is full (the client reads slower than events pass) the rest of
//! the batch is skipped and counted at once — never queued without bound, never waited for,
//! and at a cost per batch, not per event. Formatting to JSON happens on the tap's own thread
//! ([`Subscription::next_line`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::Duration;

use std::io::Write;

use base64::Engine as _;
use parking_lot::Mutex;

use crate::event::Event;
use crate::metrics::{MetricSet, Value};

/// Events a subscription holds before it skips (concurrent publishers may each add one batch
/// more).
pub const QUEUE: usize = 4096;
/// Connected taps at most.
pub const MAX_SUBSCRIBERS: usize = 8;

/// Where in the pipeline an event was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    Source,
    Channel,
    Sink,
    Verdict(&'static str),
}

impl Point {
    fn name(self) -> &'static str {
        match self {
            Point::Source => "source",
            Point::Channel => "channel",
            Point::Sink => "sink",
            Point::Verdict(_) => "verdict",
        }
    }
}

struct Tapped {
    component: Arc<str>,
    point: Point,
    event: Event,
}

struct Subscriber {
    id: u64,
    /// Component names to copy; empty: all.
    components: Vec<String>,
    /// Keep one event in `every`.
    every: u64,
    seen: AtomicU64,
    skipped: AtomicU64,
    /// Events sent and not yet taken by the tap's thread.
    queued: AtomicUsize,
    tx: Sender<Vec<Tapped>>,
}

static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static HUB: Mutex<Vec<Arc<Subscriber>>> = Mutex::new(Vec::new());
static COUNTERS: TapCounters = TapCounters {
    tapped: AtomicU64::new(0),
    skipped: AtomicU64::new(0),
};

/// Whether any tap is connected: check before building what [`publish`] needs.
#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed) > 0
}

/// Whether a connected tap wants `component`'s events and has room for some: the pipeline
/// copies a batch it is about to hand on only then.
pub fn wants(component: &str) -> bool {
    active()
        && HUB.lock().iter().any(|s| {
            (s.components.is_empty() || s.components.iter().any(|c| c == component))
                && s.queued.load(Ordering::Relaxed) < QUEUE
        })
}

/// Copies `events` seen at `point` of `component` to every tap that wants them.
pub fn publish(component: &str, point: Point, events: &[Event]) {
    if !active() || events.is_empty() {
        return;
    }
    let subs: Vec<Arc<Subscriber>> = HUB.lock().clone();
    let mut name: Option<Arc<str>> = None;
    let n = events.len() as u64;
    for s in subs {
        if !s.components.is_empty() && !s.components.iter().any(|c| c == component) {
            continue;
        }
        // The sampled events of this batch: positions first, first + every, ...
        let start = s.seen.fetch_add(n, Ordering::Relaxed);
        let first = (s.every - start % s.every) % s.every;
        let picked = if first < n {
            (n - first).div_ceil(s.every)
        } else {
            0
        };
        let room = QUEUE.saturating_sub(s.queued.load(Ordering::Relaxed)) as u64;
        let take = picked.min(room);
        if picked > take {
            s.skipped.fetch_add(picked - take, Ordering::Relaxed);
            COUNTERS.skipped.fetch_add(picked - take, Ordering::Relaxed);
        }
        if take == 0 {
            continue;
        }
        let component = name.get_or_insert_with(|| Arc::from(component)).clone();
        let batch: Vec<Tapped> = (0..take)
            .filter_map(|k| events.get((first + k * s.every) as usize))
            .map(|e| Tapped {
                component: component.clone(),
                point,
                event: e.clone(),
            })
            .collect();
        let sent = batch.len();
        s.queued.fetch_add(sent, Ordering::Relaxed);
        if s.tx.send(batch).is_ok() {
            COUNTERS.tapped.fetch_add(sent as u64, Ordering::Relaxed);
        }
    }
}

/// Why a tap could not connect.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("{MAX_SUBSCRIBERS} taps are connected already")]
    TooMany,
    #[error("sample must be greater than 0 and at most 1, not {0}")]
    Sample(f64),
}

/// One connected tap; dropping it disconnects.
pub struct Subscription {
    sub: Arc<Subscriber>,
    rx: Receiver<Vec<Tapped>>,
    pending: VecDeque<Tapped>,
    base64: bool,
    reported_skips: u64,
}

impl Subscription {
    /// Connects a tap for `components` (empty: all) keeping a fraction `sample` of the events
    /// (as one in round(1/sample)); `base64` writes every body in base64.
    pub fn new(components: Vec<String>, sample: f64, base64: bool) -> Result<Self, TapError> {
        if !(sample > 0.0 && sample <= 1.0) {
            return Err(TapError::Sample(sample));
        }
        let every = (1.0 / sample).round().max(1.0) as u64;
        let (tx, rx) = channel();
        let sub = Arc::new(Subscriber {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            components,
            every,
            seen: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            tx,
        });
        let mut hub = HUB.lock();
        if hub.len() >= MAX_SUBSCRIBERS {
            return Err(TapError::TooMany);
        }
        hub.push(sub.clone());
        ACTIVE.store(hub.len(), Ordering::Relaxed);
        Ok(Self {
            sub,
            rx,
            pending: VecDeque::new(),
            base64,
            reported_skips: 0,
        })
    }

    /// Events skipped so far because this tap's queue was full.
    pub fn skipped(&self) -> u64 {
        self.sub.skipped.load(Ordering::Relaxed)
    }

    /// The next JSON line (without newline), waiting up to `wait`: an event, or when events
    /// were skipped since the last report `{"point":"tap","skipped":N}` (the running total).
    /// `None` when nothing came.
    pub fn next_line(&mut self, wait: Duration) -> Option<String> {
        let skipped = self.skipped();
        if skipped != self.reported_skips {
            self.reported_skips = skipped;
            return Some(serde_json::json!({ "point": "tap", "skipped": skipped }).to_string());
        }
        if self.pending.is_empty() {
            match self.rx.recv_timeout(wait) {
                Ok(batch) => self.pending.extend(batch),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
        self.pop()
    }

    /// A queued line without waiting.
    pub fn try_next_line(&mut self) -> Option<String> {
        if self.pending.is_empty()
            && let Ok(batch) = self.rx.try_recv()
        {
            self.pending.extend(batch);
        }
        self.pop()
    }

    fn pop(&mut self) -> Option<String> {
        let t = self.pending.pop_front()?;
        self.sub.queued.fetch_sub(1, Ordering::Relaxed);
        Some(self.format(&t))
    }

    fn format(&self, t: &Tapped) -> String {
        let headers: serde_json::Map<String, serde_json::Value> = t
            .event
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(v)))
            .collect();
        let mut obj = serde_json::Map::new();
        obj.insert("component".into(), t.component.as_ref().into());
        obj.insert("point".into(), t.point.name().into());
        if let Point::Verdict(v) = t.point {
            obj.insert("verdict".into(), v.into());
        }
        obj.insert("headers".into(), headers.into());
        match std::str::from_utf8(&t.event.body) {
            Ok(text) if !self.base64 => {
                obj.insert("body".into(), text.into());
            }
            _ => {
                obj.insert(
                    "body".into(),
                    base64::engine::general_purpose::STANDARD
                        .encode(&t.event.body)
                        .into(),
                );
                obj.insert("base64".into(), true.into());
            }
        }
        serde_json::Value::Object(obj).to_string()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut hub = HUB.lock();
        hub.retain(|s| s.id != self.sub.id);
        ACTIVE.store(hub.len(), Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP: `GET /tap?component=NAME&sample=R&base64=true` on the metrics server

/// Seconds without events after which a tap writes an empty line (a client that went away is
/// noticed then).
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// Lines written between flushes at most.
const LINES_PER_FLUSH: usize = 1024;

fn respond_text(req: tiny_http::Request, code: u16, text: &str) {
    let resp = tiny_http::Response::from_string(format!("{text}\n")).with_status_code(code);
    if let Err(e) = req.respond(resp) {
        tracing::debug!(error = %e, "Tap client went away.");
    }
}

/// `/tap` when the agent runs without `--tap`.
pub fn refuse(req: tiny_http::Request) {
    respond_text(
        req,
        403,
        "tapping is disabled: start the agent with --tap (it exposes event data)",
    );
}

/// What a `/tap` request asked for.
#[derive(Debug, PartialEq)]
struct TapQuery {
    components: Vec<String>,
    sample: f64,
    base64: bool,
}

fn parse_query(url: &str) -> Result<TapQuery, String> {
    let mut q = TapQuery {
        components: Vec::new(),
        sample: 1.0,
        base64: false,
    };
    let Some((_, query)) = url.split_once('?') else {
        return Ok(q);
    };
    for (k, v) in crate::urlencoded::query_pairs(query) {
        match k.as_str() {
            "component" => q.components.push(v),
            "sample" => {
                q.sample = v
                    .parse()
                    .map_err(|_| format!("sample: `{v}` is not a number"))?;
            }
            "base64" => q.base64 = matches!(v.as_str(), "true" | "1" | ""),
            other => {
                return Err(format!(
                    "unknown parameter `{other}` (component, sample, base64)"
                ));
            }
        }
    }
    Ok(q)
}

/// `/tap` with `--tap`: streams JSON lines until the client goes away, from a thread of its
/// own (at most [`MAX_SUBSCRIBERS`] at once).
pub fn serve(req: tiny_http::Request) {
    let q = match parse_query(req.url()) {
        Ok(q) => q,
        Err(e) => return respond_text(req, 400, &e),
    };
    let mut sub = match Subscription::new(q.components, q.sample, q.base64) {
        Ok(s) => s,
        Err(e @ TapError::TooMany) => return respond_text(req, 503, &e.to_string()),
        Err(e) => return respond_text(req, 400, &e.to_string()),
    };
    let peer = req
        .remote_addr()
        .map_or_else(|| "?".to_string(), |a| a.to_string());
    let spawned = std::thread::Builder::new()
        .name("tap-client".into())
        .spawn(move || {
            let mut w = req.into_writer();
            tracing::info!(peer = %peer, "Tap connected.");
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\
                        Cache-Control: no-store\r\nConnection: close\r\n\r\n";
            let mut result = w.write_all(head.as_bytes()).and_then(|()| w.flush());
            let mut idle = Duration::ZERO;
            let tick = Duration::from_secs(1);
            while result.is_ok() {
                result = match sub.next_line(tick) {
                    Some(line) => {
                        idle = Duration::ZERO;
                        let mut r = w
                            .write_all(line.as_bytes())
                            .and_then(|()| w.write_all(b"\n"));
                        for _ in 0..LINES_PER_FLUSH {
                            let Some(more) = sub.try_next_line() else {
                                break;
                            };
                            r = r
                                .and_then(|()| w.write_all(more.as_bytes()))
                                .and_then(|()| w.write_all(b"\n"));
                        }
                        r.and_then(|()| w.flush())
                    }
                    None => {
                        idle += tick;
                        if idle >= KEEP_ALIVE {
                            idle = Duration::ZERO;
                            w.write_all(b"\n").and_then(|()| w.flush())
                        } else {
                            Ok(())
                        }
                    }
                };
            }
            tracing::info!(peer = %peer, skipped = sub.skipped(), "Tap disconnected.");
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "Cannot start a tap thread.");
    }
}

/// `sluice tap`'s side: opens `/tap?query` on `addr` and returns the stream of lines after a
/// 200, or the agent's answer as the error.
pub fn connect(
    addr: &str,
    query: &str,
) -> std::io::Result<std::io::BufReader<std::net::TcpStream>> {
    use std::io::{BufRead, Read};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    write!(
        stream,
        "GET /tap?{query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut r = std::io::BufReader::new(stream);
    let mut status = String::new();
    r.read_line(&mut status)?;
    let code = status.split_whitespace().nth(1).unwrap_or("").to_string();
    // Headers, up to the blank line (bounded).
    let mut chunked = false;
    for _ in 0..100 {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        chunked |= h
            .to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked");
    }
    if code != "200" {
        let mut body = String::new();
        r.by_ref().take(4096).read_to_string(&mut body)?;
        let body = if chunked {
            // A short error body is one chunk: drop the size lines.
            body.lines()
                .filter(|l| !l.chars().all(|c| c.is_ascii_hexdigit()))
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            body.trim().to_string()
        };
        return Err(std::io::Error::other(format!(
            "{} {}",
            status.trim(),
            body.trim()
        )));
    }
    Ok(r)
}

/// The taps' counters, shown as component `TAP.tap` when tapping is enabled.
pub struct TapCounters {
    tapped: AtomicU64,
    skipped: AtomicU64,
}

/// The process's tap counters, for the metrics registry.
pub fn counters() -> Arc<dyn MetricSet> {
    Arc::new(CountersView)
}

struct CountersView;

impl MetricSet for CountersView {
    fn snapshot(&self) -> Vec<(&'static str, Value)> {
        vec![
            (
                "EventTappedCount",
                Value::Counter(COUNTERS.tapped.load(Ordering::Relaxed)),
            ),
            (
                "EventSkippedCount",
                Value::Counter(COUNTERS.skipped.load(Ordering::Relaxed)),
            ),
            (
                "OpenConnectionCount",
                Value::Gauge(ACTIVE.load(Ordering::Relaxed) as u64),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hub is process-wide: the tests that subscribe run in this one test.
    #[test]
    fn taps_copy_filter_sample_and_skip() {
        assert!(!active());
        publish("r1", Point::Source, &[Event::new("unseen")]);
        let mut all = Subscription::new(Vec::new(), 1.0, false).expect("tap");
        let mut some = Subscription::new(vec!["c1".into()], 0.5, false).expect("tap");
        assert!(active());
        let mut e = Event::new("hello");
        e.headers.insert("h", "v");
        publish("r1", Point::Source, std::slice::from_ref(&e));
        publish("c1", Point::Channel, &[Event::new("a"), Event::new("b")]);
        publish(
            "r1.g",
            Point::Verdict("dropped"),
            &[Event::new(vec![0xff_u8, 0x00])],
        );
        let w = Duration::from_millis(100);
        assert_eq!(
            all.next_line(w).as_deref(),
            Some(r#"{"body":"hello","component":"r1","headers":{"h":"v"},"point":"source"}"#)
        );
        assert!(
            all.next_line(w)
                .is_some_and(|l| l.contains(r#""body":"a""#))
        );
        assert!(
            all.next_line(w)
                .is_some_and(|l| l.contains(r#""body":"b""#))
        );
        let v = all.next_line(w).expect("verdict");
        assert!(
            v.contains(r#""base64":true"#)
                && v.contains(r#""body":"/wA=""#)
                && v.contains(r#""verdict":"dropped""#),
            "{v}"
        );
        assert_eq!(all.next_line(Duration::ZERO), None);
        // c1 only, one in two.
        assert!(
            some.next_line(w)
                .is_some_and(|l| l.contains(r#""body":"a""#))
        );
        assert_eq!(some.next_line(Duration::ZERO), None);
        drop(some);
        // A full queue skips and says so.
        let batch: Vec<Event> = (0..QUEUE + 10).map(|i| Event::new(i.to_string())).collect();
        publish("r1", Point::Source, &batch);
        assert_eq!(all.skipped(), 10);
        assert_eq!(
            all.next_line(w).as_deref(),
            Some(r#"{"point":"tap","skipped":10}"#)
        );
        assert!(
            all.next_line(w)
                .is_some_and(|l| l.contains(r#""body":"0""#))
        );
        assert!(Subscription::new(Vec::new(), 0.0, false).is_err());
        drop(all);
        assert!(!active());
    }

    #[test]
    fn queries() {
        assert_eq!(
            parse_query("/tap?component=r1&component=a%20b&sample=0.25&base64=true"),
            Ok(TapQuery {
                components: vec!["r1".into(), "a b".into()],
                sample: 0.25,
                base64: true
            })
        );
        assert!(parse_query("/tap?sample=x").is_err());
        assert!(parse_query("/tap?bogus=1").is_err());
    }
}
