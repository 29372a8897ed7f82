//! The rate limit on a guest's `host.log` calls.
//!
//! Each guest (all its instances together) may log [`BURST`] lines at once and
//! [`PER_SECOND`] lines per second after that (a token bucket). Lines past the limit are
//! counted (`LogSuppressedCount`) and not written; the next line that passes says how many
//! were suppressed before it. A line is cut to [`MAX_LINE`] bytes. So a guest that logs per
//! event, in a loop, or with huge messages cannot flood the agent's log or slow its batches.

use std::time::Instant;

/// Lines a guest may log at once.
pub(crate) const BURST: f64 = 100.0;
/// Lines per second a guest may log over time.
pub(crate) const PER_SECOND: f64 = 10.0;
/// Longest line written, bytes (longer messages are cut at a character boundary).
pub(crate) const MAX_LINE: usize = 4096;

/// A guest's log allowance.
#[derive(Debug)]
pub(crate) struct LogBucket {
    tokens: f64,
    last: Option<Instant>,
    /// Lines refused since the last line that passed.
    suppressed: u64,
}

impl Default for LogBucket {
    fn default() -> Self {
        Self {
            tokens: BURST,
            last: None,
            suppressed: 0,
        }
    }
}

/// What to do with one line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Write it; `suppressed` lines were refused since the previous one written.
    Write {
        suppressed: u64,
    },
    Suppress,
}

impl LogBucket {
    pub(crate) fn admit(&mut self, now: Instant) -> Verdict {
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * PER_SECOND;
            self.tokens = (self.tokens + refill).min(BURST);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Verdict::Write {
                suppressed: std::mem::take(&mut self.suppressed),
            }
        } else {
            self.suppressed += 1;
            Verdict::Suppress
        }
    }
}

/// `message` cut to at most [`MAX_LINE`] bytes, at a character boundary.
pub(crate) fn clip(message: &str) -> &str {
    &message[..message.floor_char_boundary(MAX_LINE)]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_passes_then_lines_are_suppressed_and_counted() {
        let mut b = LogBucket::default();
        let t0 = Instant::now();
        for _ in 0..BURST as usize {
            assert_eq!(b.admit(t0), Verdict::Write { suppressed: 0 });
        }
        for _ in 0..5 {
            assert_eq!(b.admit(t0), Verdict::Suppress);
        }
        // A tenth of a second later one line is allowed again, and reports the five.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(b.admit(t1), Verdict::Write { suppressed: 5 });
        assert_eq!(b.admit(t1), Verdict::Suppress);
    }

    #[test]
    fn the_allowance_refills_up_to_the_burst_only() {
        let mut b = LogBucket::default();
        let t0 = Instant::now();
        b.admit(t0);
        let later = t0 + Duration::from_secs(3600);
        let passed = (0..1000)
            .filter(|_| matches!(b.admit(later), Verdict::Write { .. }))
            .count();
        assert_eq!(passed, BURST as usize);
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        let s = "é".repeat(MAX_LINE);
        let cut = clip(&s);
        assert!(cut.len() <= MAX_LINE && cut.len() >= MAX_LINE - 1);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(clip("short"), "short");
    }
}
