//! Dead letters: events a hook could not handle, set aside in a source's `deadLetter.channel`
//! instead of being dropped.
//!
//! A hook (a WebAssembly interceptor or router) that rejects an event, faults under
//! `on-error = dead-letter`, or routes an event to no channel pushes it here with a reason. The
//! channel processor puts what was collected into the dead-letter channel in the same
//! all-or-nothing transaction as the batch's other required channels. A source without a
//! dead-letter channel collects nothing: rejected events are dropped (and counted) as before.

use crate::event::Event;

/// Header naming the hook (`<source>.<interceptor>` or `<source>.selector`) that set the event
/// aside.
pub const GUEST_HEADER: &str = "deadletter.guest";
/// Header saying why: the guest's reason for a rejection, `fault: <what failed>`, or `unrouted`.
pub const REASON_HEADER: &str = "deadletter.reason";
/// Header with when, in milliseconds since the Unix epoch.
pub const TIMESTAMP_HEADER: &str = "deadletter.timestamp";
/// Longest reason kept (bytes, cut at a character boundary; whitespace runs, newlines included,
/// become one space).
pub const MAX_REASON: usize = 1024;

/// The dead letters of one batch.
#[derive(Debug, Default)]
pub struct DeadLetters {
    enabled: bool,
    /// `deadLetter.unrouted`: a router's events for no channel are set aside too.
    unrouted: bool,
    events: Vec<Event>,
}

impl DeadLetters {
    /// `enabled`: the source has a dead-letter channel; `unrouted`: events a router sends
    /// to no channel go there too.
    pub fn new(enabled: bool, unrouted: bool) -> Self {
        Self {
            enabled,
            unrouted: enabled && unrouted,
            events: Vec::new(),
        }
    }

    /// Collects nothing (a source without a dead-letter channel, a hook called on its own).
    pub fn disabled() -> Self {
        Self::default()
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Whether a router's events for no channel are set aside (else dropped).
    pub fn takes_unrouted(&self) -> bool {
        self.unrouted
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Sets `events` aside with headers naming `guest`, `reason` and now; returns how many
    /// were kept (0 when disabled).
    pub fn push(
        &mut self,
        guest: &str,
        reason: &str,
        events: impl IntoIterator<Item = Event>,
    ) -> usize {
        if !self.enabled {
            return 0;
        }
        // One line: a trap's backtrace must not break a line-based sink's output.
        let one_line = reason.split_whitespace().collect::<Vec<_>>().join(" ");
        let reason = &one_line[..one_line.floor_char_boundary(MAX_REASON)];
        let now = crate::metrics::now_millis().to_string();
        let before = self.events.len();
        for mut e in events {
            e.headers.insert(GUEST_HEADER, guest);
            e.headers.insert(REASON_HEADER, reason);
            e.headers.insert(TIMESTAMP_HEADER, now.as_str());
            self.events.push(e);
        }
        self.events.len() - before
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    pub fn into_events(self) -> Vec<Event> {
        self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_collects_nothing_and_enabled_names_guest_reason_and_time() {
        let mut off = DeadLetters::disabled();
        assert_eq!(off.push("r1.i1", "bad", [Event::new("a")]), 0);
        assert!(off.is_empty());
        let mut on = DeadLetters::new(true, true);
        assert_eq!(on.push("g", "two\n  lines", [Event::new("x")]), 1);
        assert_eq!(on.events()[0].headers.get(REASON_HEADER), Some("two lines"));
        let mut on = DeadLetters::new(true, true);
        let long = "é".repeat(MAX_REASON);
        assert_eq!(
            on.push("r1.i1", &long, [Event::new("a"), Event::new("b")]),
            2
        );
        let e = &on.events()[1];
        assert_eq!(e.headers.get(GUEST_HEADER), Some("r1.i1"));
        let reason = e.headers.get(REASON_HEADER).unwrap_or_default();
        assert!(reason.len() <= MAX_REASON && reason.len() >= MAX_REASON - 1);
        assert!(
            e.headers
                .get(TIMESTAMP_HEADER)
                .is_some_and(|t| t.parse::<u64>().is_ok())
        );
        assert_eq!(e.body.as_ref(), b"b");
    }
}
