//! The unit that flows through a pipeline: a header map and a body.
//!
//! Cloning an [`Event`] is cheap: the body is a reference-counted [`Bytes`] and the headers
//! are shared copy-on-write, so replicating one event into several channels copies no data.
//!
//! # Headers without per-event allocations
//! Flume's headers are a string map. Here a map is a sorted small vector of [`SharedStr`]
//! pairs behind one `Arc`:
//! - an event without headers allocates nothing for them;
//! - a key or value of at most 23 bytes is stored inline (no allocation),
//!   a longer one in an `Arc<str>`, so the key and the constant value an interceptor sets are
//!   reference-count increments, never copies;
//! - up to four headers sit inside the map's own allocation (one allocation per distinct map);
//! - [`edit_batch`] applies a header edit once per distinct input map of a batch: events that
//!   came in sharing a map (none at all, or one set upstream) leave sharing one map, so
//!   `static`, `host` and `timestamp` allocate once per batch rather than once per event.
//!
//! Iteration is in key order (as the former `BTreeMap`), which keeps every encoding that
//! writes headers (file channel records, the logger sink, HDFS text) deterministic. A key
//! appears at most once; a later insert of the same key replaces the value, as Java's
//! `HashMap.put` does.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;

/// A header key or value: an immutable string that clones without copying. At most 23
/// bytes are stored inline (no allocation); a longer string is shared behind an `Arc`.
pub type SharedStr = smol_str::SmolStr;

/// The pairs of one map, sorted by key, keys unique; four fit in the map's own allocation.
type Pairs = SmallVec<[(SharedStr, SharedStr); 4]>;

/// Flume's event headers: a string map, shared copy-on-write between clones.
#[derive(Clone, Default)]
pub struct Headers(Option<Arc<Pairs>>);

impl Headers {
    pub fn new() -> Self {
        Self(None)
    }

    fn pairs(&self) -> &[(SharedStr, SharedStr)] {
        self.0.as_deref().map_or(&[], |p| p.as_slice())
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.pairs().binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        let i = self.find(key).ok()?;
        Some(self.pairs()[i].1.as_str())
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key`, returning the previous value.
    pub fn insert(
        &mut self,
        key: impl Into<SharedStr>,
        value: impl Into<SharedStr>,
    ) -> Option<SharedStr> {
        let key = key.into();
        let value = value.into();
        let pos = self.find(&key);
        let pairs = Arc::make_mut(self.0.get_or_insert_with(Default::default));
        match pos {
            Ok(i) => Some(std::mem::replace(&mut pairs[i].1, value)),
            Err(i) => {
                pairs.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<SharedStr> {
        let i = self.find(key).ok()?;
        let map = self.0.as_mut()?;
        let (_, v) = Arc::make_mut(map).remove(i);
        if map.is_empty() {
            self.0 = None;
        }
        Some(v)
    }

    /// Keeps only the headers for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        if self.pairs().iter().all(|(k, v)| keep(k, v)) {
            return;
        }
        if let Some(map) = self.0.as_mut() {
            Arc::make_mut(map).retain(|(k, v)| keep(k, v));
            if map.is_empty() {
                self.0 = None;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.pairs().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs().iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Bytes taken by keys and values, for size accounting.
    pub fn byte_len(&self) -> usize {
        self.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// Whether both are the same shared map (or both empty): implies equality, costs nothing.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Makes `self` share `other`'s map when the two are equal, so that equal maps of one
    /// batch (a decoded Avro batch, a guest's output) hold one allocation. Cheap when they
    /// differ early.
    pub fn share_if_equal(&mut self, other: &Self) {
        if self.ptr_eq(other) || self.len() != other.len() {
            return;
        }
        let same = self
            .pairs()
            .iter()
            .zip(other.pairs())
            .all(|((k1, v1), (k2, v2))| k1 == k2 && v1 == v2);
        if same {
            *self = other.clone();
        }
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.ptr_eq(other) || self.pairs() == other.pairs()
    }
}

impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<SharedStr>, V: Into<SharedStr>> FromIterator<(K, V)> for Headers {
    /// A later pair with the same key replaces an earlier one (Java's `HashMap.put`); the
    /// pairs are sorted once, so building from `n` pairs costs `n log n`, never `n²`.
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        let mut pairs: Pairs = iter
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        if pairs.is_empty() {
            return Self(None);
        }
        // Stable: equal keys keep their arrival order, and the last of each run wins.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Pairs = SmallVec::with_capacity(pairs.len());
        for (k, v) in pairs {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = v,
                _ => out.push((k, v)),
            }
        }
        Self(Some(Arc::new(out)))
    }
}

/// Applies `edit` to the headers of every event, once per distinct input map: an event whose
/// map is the one the previous event came in with gets the previous event's result (shared)
/// instead of running `edit` again. `edit` must depend on the headers only (not the body);
/// `static`, `host` and `timestamp` use it so a batch costs them one map, not one per event.
pub fn edit_batch(events: &mut [Event], mut edit: impl FnMut(&mut Headers)) {
    // The input map is held so its address cannot be reused by another map meanwhile.
    let mut last: Option<(Headers, Headers)> = None;
    for e in events {
        if let Some((input, output)) = &last
            && input.ptr_eq(&e.headers)
        {
            e.headers = output.clone();
            continue;
        }
        let input = e.headers.clone();
        edit(&mut e.headers);
        last = Some((input, e.headers.clone()));
    }
}

/// A Flume event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub headers: Headers,
    pub body: Bytes,
}

impl Event {
    pub fn new(body: impl Into<Bytes>) -> Self {
        Self {
            headers: Headers::new(),
            body: body.into(),
        }
    }

    pub fn with_headers(headers: Headers, body: impl Into<Bytes>) -> Self {
        Self {
            headers,
            body: body.into(),
        }
    }

    /// The body as text, as Java's `new String(body, UTF_8)` reads it: an invalid sequence
    /// becomes U+FFFD. A valid body (the common case) is borrowed after one fast check;
    /// `String::from_utf8_lossy` alone walks it chunk by chunk at a fraction of the speed.
    pub fn body_text(&self) -> std::borrow::Cow<'_, str> {
        match std::str::from_utf8(&self.body) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(&self.body),
        }
    }

    /// Body length; Flume's memory channel accounts bytes by body only.
    pub fn body_len(&self) -> usize {
        self.body.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn clones_share_until_written() {
        let mut a = Event::new("x");
        a.headers.insert("k", "v");
        let mut b = a.clone();
        assert!(a.headers.ptr_eq(&b.headers));
        b.headers.insert("k", "w");
        assert_eq!(a.headers.get("k"), Some("v"));
        assert_eq!(b.headers.get("k"), Some("w"));
    }

    #[test]
    fn empty_headers_do_not_allocate() {
        let e = Event::new("body");
        assert!(e.headers.0.is_none());
        let h: Headers = Vec::<(String, String)>::new().into_iter().collect();
        assert!(h.0.is_none());
        let mut h: Headers = [("a", "1")].into_iter().collect();
        h.remove("a");
        assert!(h.0.is_none(), "a map emptied by remove is dropped");
    }

    #[test]
    fn retain_and_remove() {
        let mut h: Headers = [("a", "1"), ("b", "2"), ("c", "3")].into_iter().collect();
        assert_eq!(h.remove("b").as_deref(), Some("2"));
        assert_eq!(h.remove("zz"), None);
        h.retain(|k, _| k != "a");
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![("c", "3")]);
    }

    #[test]
    fn later_pairs_win_when_collecting() {
        let h: Headers = [("k", "1"), ("a", "x"), ("k", "2")].into_iter().collect();
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![("a", "x"), ("k", "2")]);
    }

    #[test]
    fn short_strings_are_inline() {
        assert!(!SharedStr::from("timestamp").is_heap_allocated());
        assert!(!SharedStr::from("x".repeat(23)).is_heap_allocated());
        assert!(SharedStr::from("x".repeat(24)).is_heap_allocated());
    }

    #[test]
    fn a_batch_edit_runs_once_per_distinct_input_map() {
        let shared: Headers = [("file", "/var/log/a")].into_iter().collect();
        let mut events = vec![
            Event::new("1"),
            Event::new("2"),
            Event::with_headers(shared.clone(), "3"),
            Event::with_headers(shared.clone(), "4"),
            Event::new("5"),
        ];
        let mut runs = 0;
        edit_batch(&mut events, |h| {
            runs += 1;
            h.insert("dc", "eu");
        });
        assert_eq!(runs, 3);
        assert!(events[0].headers.ptr_eq(&events[1].headers));
        assert!(events[2].headers.ptr_eq(&events[3].headers));
        assert_eq!(events[3].headers.get("file"), Some("/var/log/a"));
        assert_eq!(events[4].headers.get("dc"), Some("eu"));
        assert_eq!(shared.len(), 1, "the input map is untouched");
    }

    #[test]
    fn equal_maps_are_shared() {
        let a: Headers = [("k", "v"), ("x", "y")].into_iter().collect();
        let mut b: Headers = [("k", "v"), ("x", "y")].into_iter().collect();
        let mut c: Headers = [("k", "v"), ("x", "z")].into_iter().collect();
        b.share_if_equal(&a);
        c.share_if_equal(&a);
        assert!(b.ptr_eq(&a));
        assert!(!c.ptr_eq(&a));
    }

    proptest! {
        /// Any sequence of inserts and removes leaves the same map as a `BTreeMap` given the
        /// same operations, iterated in the same order.
        #[test]
        fn behaves_like_a_btreemap(
            ops in proptest::collection::vec(
                (any::<bool>(), "[a-e]{1,2}", "[a-z]{0,30}"), 0..64)
        ) {
            let mut h = Headers::new();
            let mut m = BTreeMap::new();
            for (insert, k, v) in ops {
                if insert {
                    let old = h.insert(k.as_str(), v.as_str()).map(String::from);
                    prop_assert_eq!(old, m.insert(k, v));
                } else {
                    prop_assert_eq!(h.remove(&k).map(String::from), m.remove(&k));
                }
                let got: Vec<(&str, &str)> = h.iter().collect();
                let want: Vec<(&str, &str)> =
                    m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                prop_assert_eq!(got, want);
            }
        }
    }
}
