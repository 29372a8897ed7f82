//! The unit that flows through a pipeline: a header map and a body.
//!
//! Cloning an [`Event`] is cheap: the body is a reference-counted [`Bytes`] and the headers
//! are shared copy-on-write, so replicating one event into several channels copies no data.
//! An event without headers allocates nothing for them.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

/// Flume's event headers: a string map, shared copy-on-write between clones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Option<Arc<BTreeMap<String, String>>>);

impl Headers {
    pub fn new() -> Self {
        Self(None)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.as_ref()?.get(key).map(String::as_str)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.0.as_ref().is_some_and(|m| m.contains_key(key))
    }

    /// Sets `key`, returning the previous value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Option<String> {
        Arc::make_mut(self.0.get_or_insert_with(Default::default)).insert(key.into(), value.into())
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let map = self.0.as_mut()?;
        if !map.contains_key(key) {
            return None;
        }
        Arc::make_mut(map).remove(key)
    }

    /// Keeps only the headers for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        if let Some(map) = self.0.as_mut() {
            if map.iter().all(|(k, v)| keep(k, v)) {
                return;
            }
            Arc::make_mut(map).retain(|k, v| keep(k, v));
        }
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// Bytes taken by keys and values, for size accounting.
    pub fn byte_len(&self) -> usize {
        self.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Headers {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        let map: BTreeMap<String, String> = iter
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        if map.is_empty() {
            Self(None)
        } else {
            Self(Some(Arc::new(map)))
        }
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

    /// Body length; Flume's memory channel accounts bytes by body only.
    pub fn body_len(&self) -> usize {
        self.body.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_until_written() {
        let mut a = Event::new("x");
        a.headers.insert("k", "v");
        let mut b = a.clone();
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
    }

    #[test]
    fn retain_and_remove() {
        let mut h: Headers = [("a", "1"), ("b", "2"), ("c", "3")].into_iter().collect();
        assert_eq!(h.remove("b"), Some("2".into()));
        assert_eq!(h.remove("zz"), None);
        h.retain(|k, _| k != "a");
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![("c", "3")]);
    }
}
