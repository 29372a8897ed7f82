//! `load_balance`: each call starts at the next sink (round_robin) or a random one and runs the
//! first that does not fail. With `backoff`, a failed sink is skipped for 1 s doubled per
//! consecutive failure, up to `selector.maxTimeOut`.

use std::time::{Duration, Instant};

use rand::Rng;

use crate::pipeline::{SinkError, SinkProcessor, SinkSlot, SinkStatus};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectorKind {
    RoundRobin,
    Random,
}

pub struct LoadBalanceProcessor {
    group: String,
    slots: Vec<SinkSlot>,
    selector: SelectorKind,
    backoff: bool,
    max_timeout: Duration,
    next: usize,
    failures: Vec<u32>,
    backoff_until: Vec<Option<Instant>>,
}

impl LoadBalanceProcessor {
    pub fn new(
        group: &str,
        slots: Vec<SinkSlot>,
        selector: SelectorKind,
        backoff: bool,
        max_timeout: Duration,
    ) -> Self {
        let n = slots.len();
        Self {
            group: group.to_string(),
            slots,
            selector,
            backoff,
            max_timeout,
            next: 0,
            failures: vec![0; n],
            backoff_until: vec![None; n],
        }
    }

    fn order(&mut self) -> Vec<usize> {
        let n = self.slots.len();
        let start = match self.selector {
            SelectorKind::RoundRobin => {
                let s = self.next % n.max(1);
                self.next = self.next.wrapping_add(1);
                s
            }
            SelectorKind::Random => rand::rng().random_range(0..n.max(1)),
        };
        let now = Instant::now();
        (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| !self.backoff || self.backoff_until[i].is_none_or(|t| t <= now))
            .collect()
    }
}

impl SinkProcessor for LoadBalanceProcessor {
    fn process(&mut self, wait: Duration) -> Result<SinkStatus, SinkError> {
        let mut last_err = None;
        for i in self.order() {
            match self.slots[i].process(wait) {
                Ok(status) => {
                    self.failures[i] = 0;
                    self.backoff_until[i] = None;
                    return Ok(status);
                }
                Err(e) => {
                    tracing::warn!(group = %self.group, sink = %self.slots[i].name, error = %e,
                        "Sink failed; trying the next sink.");
                    self.failures[i] = self.failures[i].saturating_add(1);
                    if self.backoff {
                        let shift = (self.failures[i] - 1).min(20);
                        let d = (Duration::from_secs(1) * (1u32 << shift)).min(self.max_timeout);
                        self.backoff_until[i] = Some(Instant::now() + d);
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(SinkError::Group {
            group: self.group.clone(),
            message: match last_err {
                Some(e) => format!("unable to load balance: every sink failed (last: {e})"),
                None => "unable to load balance: every sink is backed off".into(),
            },
        })
    }

    fn slots_mut(&mut self) -> &mut [SinkSlot] {
        &mut self.slots
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::pipeline::test_support::{channel, slots};

    #[test]
    fn round_robin_spreads_and_skips_failed() -> Result<(), SinkError> {
        let ch = channel(100);
        let (s, sw) = slots(&ch, 2, 10);
        let mut p = LoadBalanceProcessor::new(
            "g1",
            s,
            SelectorKind::RoundRobin,
            true,
            Duration::from_secs(30),
        );
        for _ in 0..4 {
            p.process(Duration::ZERO)?;
        }
        assert_eq!(sw[0].delivered.load(Ordering::SeqCst), 20);
        assert_eq!(sw[1].delivered.load(Ordering::SeqCst), 20);
        sw[0].failing.store(true, Ordering::SeqCst);
        for _ in 0..4 {
            p.process(Duration::ZERO)?;
        }
        assert_eq!(
            sw[1].delivered.load(Ordering::SeqCst),
            60,
            "k2 took every batch"
        );
        assert_eq!(ch.size(), 20, "no event lost");
        Ok(())
    }

    #[test]
    fn random_delivers_everything() -> Result<(), SinkError> {
        let ch = channel(50);
        let (s, sw) = slots(&ch, 3, 5);
        let mut p =
            LoadBalanceProcessor::new("g1", s, SelectorKind::Random, false, Duration::from_secs(1));
        for _ in 0..10 {
            p.process(Duration::ZERO)?;
        }
        let total: usize = sw.iter().map(|s| s.delivered.load(Ordering::SeqCst)).sum();
        assert_eq!(total, 50);
        Ok(())
    }
}
