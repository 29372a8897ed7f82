//! The flat batch, read in place, and the builders guests return.

/// The `config.*` keys of the agent config (prefix removed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config(Vec<(String, String)>);

impl Config {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// A batch as the host sent it: four buffers, read without copying.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    bodies: &'a [u8],
    body_ends: &'a [u32],
    headers: &'a [u8],
    header_ends: &'a [u32],
}

impl<'a> Batch<'a> {
    pub fn new(
        bodies: &'a [u8],
        body_ends: &'a [u32],
        headers: &'a [u8],
        header_ends: &'a [u32],
    ) -> Self {
        Self {
            bodies,
            body_ends,
            headers,
            header_ends,
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.body_ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.body_ends.is_empty()
    }

    /// Event `i`; out-of-range offsets (a host bug) read as empty.
    #[inline]
    pub fn get(&self, i: usize) -> Option<Event<'a>> {
        let end = *self.body_ends.get(i)? as usize;
        let start = if i == 0 {
            0
        } else {
            self.body_ends[i - 1] as usize
        };
        let hend = self.header_ends.get(i).map_or(0, |e| *e as usize);
        let hstart = if i == 0 {
            0
        } else {
            self.header_ends.get(i - 1).map_or(0, |e| *e as usize)
        };
        Some(Event {
            body: self.bodies.get(start..end).unwrap_or_default(),
            headers: Headers(self.headers.get(hstart..hend).unwrap_or_default()),
        })
    }

    /// The events in order (reads each offset once).
    #[inline]
    pub fn iter(&self) -> Events<'a> {
        Events {
            batch: *self,
            i: 0,
            body_start: 0,
            header_start: 0,
        }
    }
}

/// Iterator over a [`Batch`]'s events.
pub struct Events<'a> {
    batch: Batch<'a>,
    i: usize,
    body_start: usize,
    header_start: usize,
}

impl<'a> Iterator for Events<'a> {
    type Item = Event<'a>;

    #[inline]
    fn next(&mut self) -> Option<Event<'a>> {
        let b = &self.batch;
        let end = *b.body_ends.get(self.i)? as usize;
        let hend = b
            .header_ends
            .get(self.i)
            .map_or(self.header_start, |e| *e as usize);
        let event = Event {
            body: b.bodies.get(self.body_start..end).unwrap_or_default(),
            headers: Headers(b.headers.get(self.header_start..hend).unwrap_or_default()),
        };
        self.i += 1;
        self.body_start = end;
        self.header_start = hend;
        Some(event)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.batch.len().saturating_sub(self.i);
        (n, Some(n))
    }
}

/// One event of a batch, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct Event<'a> {
    pub body: &'a [u8],
    pub headers: Headers<'a>,
}

impl<'a> Event<'a> {
    #[inline]
    pub fn header(&self, key: &str) -> Option<&'a str> {
        self.headers.get(key)
    }

    /// The body as text, if it is UTF-8.
    pub fn body_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.body).ok()
    }

    /// An owned copy of the headers only (empty body), to change and hand to
    /// [`Verdicts::set_headers`] without copying the body.
    pub fn headers_owned(&self) -> OwnedEvent {
        OwnedEvent {
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
        }
    }

    pub fn to_owned(&self) -> OwnedEvent {
        OwnedEvent {
            body: self.body.to_vec(),
            ..self.headers_owned()
        }
    }
}

/// An event's encoded headers.
#[derive(Clone, Copy, Debug)]
pub struct Headers<'a>(&'a [u8]);

impl<'a> Headers<'a> {
    /// The value of header `key`. Keys are compared as bytes and only the matching value is
    /// checked for UTF-8: this runs per event.
    #[inline]
    pub fn get(&self, key: &str) -> Option<&'a str> {
        let mut buf = self.0;
        while !buf.is_empty() {
            let (k, rest) = take_bytes(buf)?;
            let (v, rest) = take_bytes(rest)?;
            if k == key.as_bytes() {
                return std::str::from_utf8(v).ok();
            }
            buf = rest;
        }
        None
    }

    pub fn iter(&self) -> HeaderIter<'a> {
        HeaderIter(self.0)
    }
}

pub struct HeaderIter<'a>(&'a [u8]);

#[inline]
fn take_bytes(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = buf.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len) as usize;
    Some((rest.get(..len)?, rest.get(len..)?))
}

fn take_str(buf: &[u8]) -> Option<(&str, &[u8])> {
    let (len, rest) = buf.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len) as usize;
    let s = std::str::from_utf8(rest.get(..len)?).ok()?;
    Some((s, &rest[len..]))
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let (k, rest) = take_str(self.0)?;
        let (v, rest) = take_str(rest)?;
        self.0 = rest;
        Some((k, v))
    }
}

/// An event a guest builds (a replacement).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnedEvent {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl OwnedEvent {
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        Self {
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets a header (replacing an existing one).
    pub fn set_header(&mut self, key: &str, value: &str) {
        match self.headers.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = value.to_string(),
            None => self.headers.push((key.to_string(), value.to_string())),
        }
    }
}

/// `a == b`, eight bytes at a time: in WebAssembly a slice comparison calls a `memcmp` that
/// compares byte by byte, which dominated a tagging guest's cost per event.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (a8.remainder(), b8.remainder());
    let word = |c: &[u8]| c.try_into().map_or(0, u64::from_ne_bytes);
    a8.zip(b8).all(|(x, y)| word(x) == word(y)) && ra.iter().zip(rb).all(|(x, y)| x == y)
}

/// A batch being built, in the wire format.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchBuf {
    pub bodies: Vec<u8>,
    pub body_ends: Vec<u32>,
    pub headers: Vec<u8>,
    pub header_ends: Vec<u32>,
}

impl BatchBuf {
    pub fn push(&mut self, e: &OwnedEvent) {
        self.bodies.extend_from_slice(&e.body);
        self.end_event(e);
    }

    /// Pushes `e`'s headers with an empty body.
    pub fn push_headers(&mut self, e: &OwnedEvent) {
        self.end_event(e);
    }

    /// Pushes, with an empty body, `headers` with `key` set to `value`: entries are copied
    /// encoded, in key order, the new one where its key sorts (or in place of the old value).
    pub fn push_headers_with(&mut self, headers: Headers<'_>, key: &str, value: &str) {
        self.body_ends.push(self.bodies.len() as u32);
        let mut rest = headers.0;
        let mut placed = false;
        while let Some((k, after_key)) = take_bytes(rest) {
            let Some((_, after_value)) = take_bytes(after_key) else {
                break;
            };
            let entry = &rest[..rest.len() - after_value.len()];
            if !placed && k >= key.as_bytes() {
                self.push_entry(key, value);
                placed = true;
                if k == key.as_bytes() {
                    rest = after_value;
                    continue;
                }
            }
            self.headers.extend_from_slice(entry);
            rest = after_value;
        }
        if !placed {
            self.push_entry(key, value);
        }
        self.header_ends.push(self.headers.len() as u32);
    }

    fn push_entry(&mut self, key: &str, value: &str) {
        for part in [key.as_bytes(), value.as_bytes()] {
            self.headers
                .extend_from_slice(&(part.len() as u32).to_le_bytes());
            self.headers.extend_from_slice(part);
        }
    }

    /// Whether the last two events have equal headers.
    fn last_two_headers_equal(&self) -> bool {
        let n = self.header_ends.len();
        if n < 2 {
            return false;
        }
        let end = |i: usize| self.header_ends[i] as usize;
        let start = |i: usize| if i == 0 { 0 } else { end(i - 1) };
        same_bytes(
            &self.headers[start(n - 2)..end(n - 2)],
            &self.headers[start(n - 1)..end(n - 1)],
        )
    }

    /// Removes the last event (pushed by [`BatchBuf::push_headers`]: no body).
    fn pop_headers(&mut self) {
        self.body_ends.pop();
        self.header_ends.pop();
        let keep = self.header_ends.last().map_or(0, |e| *e as usize);
        self.headers.truncate(keep);
    }

    fn end_event(&mut self, e: &OwnedEvent) {
        self.body_ends.push(self.bodies.len() as u32);
        let mut sorted: Vec<&(String, String)> = e.headers.iter().collect();
        sorted.sort();
        for (k, v) in sorted {
            self.headers
                .extend_from_slice(&(k.len() as u32).to_le_bytes());
            self.headers.extend_from_slice(k.as_bytes());
            self.headers
                .extend_from_slice(&(v.len() as u32).to_le_bytes());
            self.headers.extend_from_slice(v.as_bytes());
        }
        self.header_ends.push(self.headers.len() as u32);
    }

    pub fn batch(&self) -> Batch<'_> {
        Batch::new(
            &self.bodies,
            &self.body_ends,
            &self.headers,
            &self.header_ends,
        )
    }
}

const KEEP: u8 = 0;
const DROP: u8 = 1;
const REPLACE: u8 = 2;
const SET_HEADERS: u8 = 3;
const REJECT: u8 = 4;
/// Set headers: those of the replacement event taken last (by a 2, 3 or 4 verdict before it in
/// the batch), without a replacement event of its own.
const SAME_HEADERS: u8 = 5;

/// An interceptor's answer: one verdict per event, in order. When every verdict is `keep`
/// nothing but an empty list goes back to the host, and nothing is written per event.
#[derive(Clone, Debug, Default)]
pub struct Verdicts {
    codes: Vec<u8>,
    /// Verdicts given while all were `keep` (not written to `codes` until one is not).
    kept: usize,
    changed: bool,
    replacements: BatchBuf,
    /// The last [`Verdicts::set_header`] call's input headers, key and value (its output is
    /// the last set-headers replacement): an equal call answers `same headers` (5).
    last_set: Option<LastSet>,
}

#[derive(Clone, Debug, Default)]
struct LastSet {
    input: Vec<u8>,
    key: String,
    value: String,
}

impl Verdicts {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            codes: Vec::with_capacity(n),
            ..Self::default()
        }
    }

    #[inline(always)]
    pub fn keep(&mut self) {
        if self.changed {
            self.codes.push(KEEP);
        } else {
            self.kept += 1;
        }
    }

    #[inline(always)]
    fn push(&mut self, code: u8) {
        if !self.changed {
            self.first_change(code);
        }
        self.codes.push(code);
    }

    /// The first verdict that is not `keep`: the kept ones are written out, and a guest that
    /// replaces one event of a batch tends to replace many, so the replacement offsets get
    /// room for the whole batch at once (the codes' capacity is the batch size).
    #[cold]
    fn first_change(&mut self, code: u8) {
        self.codes.resize(self.kept, KEEP);
        self.changed = true;
        if code != DROP {
            let n = self.codes.capacity();
            self.replacements.body_ends.reserve(n);
            self.replacements.header_ends.reserve(n);
        }
    }

    // `keep` / `drop` / `replace` mirror the WIT verdicts; this is not `Drop::drop`.
    #[allow(clippy::should_implement_trait)]
    #[inline]
    pub fn drop(&mut self) {
        self.push(DROP);
    }

    pub fn replace(&mut self, event: &OwnedEvent) {
        self.push(REPLACE);
        self.replacements.push(event);
        self.last_set = None;
    }

    /// Gives the event new headers (all of them: `event.headers` replaces the old set) and
    /// keeps its body, which is not sent back. `event.body` is ignored. The cheap way to tag or
    /// enrich events, and the only way to change an event whose body was cut by the host's
    /// `body-prefix`.
    pub fn set_headers(&mut self, event: &OwnedEvent) {
        self.push(SET_HEADERS);
        self.replacements.push_headers(event);
        self.last_set = None;
        if self.replacements.last_two_headers_equal() {
            // The same headers as the replacement before: one byte instead of a copy.
            self.replacements.pop_headers();
            if let Some(code) = self.codes.last_mut() {
                *code = SAME_HEADERS;
            }
        }
    }

    /// Gives `event` the header `key` = `value` (replacing its value if it has one), keeping
    /// its other headers and its body: [`Verdicts::set_headers`] without building an
    /// [`OwnedEvent`]. The event's encoded headers are copied straight into the reply with the
    /// key inserted in order, so tagging a batch allocates nothing per event.
    ///
    /// Events that come in with equal headers and get the same header (a tag on a whole
    /// batch) cost one replacement per run: the rest answer "same headers as the last one"
    /// (verdict 5), one byte each.
    #[inline]
    pub fn set_header(&mut self, event: &Event<'_>, key: &str, value: &str) {
        if let Some(last) = &self.last_set
            && same_bytes(&last.input, event.headers.0)
            && same_bytes(last.key.as_bytes(), key.as_bytes())
            && same_bytes(last.value.as_bytes(), value.as_bytes())
        {
            self.push(SAME_HEADERS);
            return;
        }
        self.push(SET_HEADERS);
        self.replacements
            .push_headers_with(event.headers, key, value);
        let last = self.last_set.get_or_insert_with(LastSet::default);
        last.input.clear();
        last.input.extend_from_slice(event.headers.0);
        last.key.clear();
        last.key.push_str(key);
        last.value.clear();
        last.value.push_str(value);
    }

    /// Rejects the event: the host puts it, unchanged, into the source's dead-letter channel
    /// (`deadLetter.channel`) with headers naming the guest, `reason` and the time; a source
    /// without one drops it. Hosts before verdict 4 refuse the batch (a bad return).
    pub fn reject(&mut self, reason: &str) {
        self.push(REJECT);
        self.replacements.push(&OwnedEvent::new(reason.as_bytes()));
        self.last_set = None;
    }

    pub fn len(&self) -> usize {
        if self.changed {
            self.codes.len()
        } else {
            self.kept
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The wire form: codes (empty when all kept) and the replacement batch.
    pub fn into_parts(self) -> (Vec<u8>, BatchBuf) {
        if self.changed {
            (self.codes, self.replacements)
        } else {
            (Vec::new(), BatchBuf::default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(pairs: &[(&str, &str)]) -> BatchBuf {
        let mut b = BatchBuf::default();
        b.push_headers(&OwnedEvent {
            headers: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
        });
        b
    }

    #[test]
    fn same_bytes_is_equality() {
        let a: Vec<u8> = (0..20u8).collect();
        for n in 0..=20 {
            assert!(same_bytes(&a[..n], &a[..n]));
            assert!(!same_bytes(&a[..n], &a[..n.saturating_sub(1)]) || n == 0);
            for i in 0..n {
                let mut b = a[..n].to_vec();
                b[i] ^= 1;
                assert!(!same_bytes(&a[..n], &b), "length {n}, byte {i}");
            }
        }
    }

    /// A tag on events that came in with equal headers costs one replacement per run.
    #[test]
    fn equal_edits_answer_same_headers() {
        let mut input = BatchBuf::default();
        for pairs in [&[][..], &[], &[("a", "1")], &[("a", "1")], &[]] {
            let e = encoded(pairs);
            input.push_headers(&OwnedEvent {
                headers: e
                    .batch()
                    .get(0)
                    .map(|e| e.to_owned().headers)
                    .unwrap_or_default(),
                body: Vec::new(),
            });
        }
        let mut fast = Verdicts::default();
        let mut owned = Verdicts::default();
        for e in input.batch().iter() {
            fast.set_header(&e, "t", "x");
            let mut o = e.headers_owned();
            o.set_header("t", "x");
            owned.set_headers(&o);
        }
        for v in [fast, owned] {
            let (codes, repl) = v.into_parts();
            assert_eq!(codes, [3, 5, 3, 5, 3]);
            assert_eq!(repl.body_ends.len(), 3);
        }
        // A replace or reject in between is the replacement a 5 would copy: no 5 after it.
        let events: Vec<Event<'_>> = input.batch().iter().collect();
        let mut v = Verdicts::default();
        v.set_header(&events[0], "t", "x");
        v.reject("no");
        v.set_header(&events[1], "t", "x");
        assert_eq!(v.into_parts().0, [3, 4, 3]);
    }

    /// `set_header` writes what building an owned event and `set_headers` would have written.
    #[test]
    fn a_header_set_in_place_matches_the_owned_path() {
        let cases: &[&[(&str, &str)]] = &[
            &[],
            &[("a", "1")],
            &[("m", "1")],
            &[("z", "1")],
            &[("a", "1"), ("z", "2")],
            &[("a", "1"), ("m", "old"), ("z", "2")],
            &[("m", "old")],
            &[("mm", "1"), ("m\u{e9}", "2")],
        ];
        for pairs in cases {
            let input = encoded(pairs);
            let event = input.batch().get(0).expect("one event");
            let mut fast = Verdicts::default();
            fast.set_header(&event, "m", "new");
            let mut owned = event.headers_owned();
            owned.set_header("m", "new");
            let mut slow = Verdicts::default();
            slow.set_headers(&owned);
            assert_eq!(fast.into_parts(), slow.into_parts(), "{pairs:?}");
        }
    }
}
