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

/// An interceptor's answer: one verdict per event, in order. When every verdict is `keep`
/// nothing but an empty list goes back to the host, and nothing is written per event.
#[derive(Clone, Debug, Default)]
pub struct Verdicts {
    codes: Vec<u8>,
    /// Verdicts given while all were `keep` (not written to `codes` until one is not).
    kept: usize,
    changed: bool,
    replacements: BatchBuf,
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

    #[inline]
    fn push(&mut self, code: u8) {
        if !self.changed {
            self.codes.resize(self.kept, KEEP);
            self.changed = true;
        }
        self.codes.push(code);
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
    }

    /// Gives the event new headers (all of them: `event.headers` replaces the old set) and
    /// keeps its body, which is not sent back. `event.body` is ignored. The cheap way to tag or
    /// enrich events, and the only way to change an event whose body was cut by the host's
    /// `body-prefix`.
    pub fn set_headers(&mut self, event: &OwnedEvent) {
        self.push(SET_HEADERS);
        self.replacements.push_headers(event);
    }

    /// Rejects the event: the host puts it, unchanged, into the source's dead-letter channel
    /// (`deadLetter.channel`) with headers naming the guest, `reason` and the time; a source
    /// without one drops it. Hosts before verdict 4 refuse the batch (a bad return).
    pub fn reject(&mut self, reason: &str) {
        self.push(REJECT);
        self.replacements.push(&OwnedEvent::new(reason.as_bytes()));
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
