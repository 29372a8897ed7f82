//! `failover`: the live sink with the highest priority runs; a sink that fails is penalised
//! (1 s doubled per consecutive failure, up to `maxpenalty`) and the next one takes over within
//! the same call. Penalised sinks are retried once their penalty expired.

use std::time::{Duration, Instant};

use crate::pipeline::{SinkError, SinkProcessor, SinkSlot, SinkStatus};

const FAILURE_PENALTY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Health {
    failures: u32,
    penalty_until: Option<Instant>,
}

pub struct FailoverProcessor {
    group: String,
    /// Sorted by priority, highest first.
    slots: Vec<SinkSlot>,
    health: Vec<Health>,
    max_penalty: Duration,
}

impl FailoverProcessor {
    pub fn new(
        group: &str,
        slots: Vec<SinkSlot>,
        priorities: &[i64],
        max_penalty: Duration,
    ) -> Self {
        let mut ranked: Vec<(i64, SinkSlot)> = priorities
            .iter()
            .copied()
            .chain(std::iter::repeat(i64::MIN))
            .zip(slots)
            .collect();
        ranked.sort_by_key(|r| std::cmp::Reverse(r.0));
        let slots: Vec<SinkSlot> = ranked.into_iter().map(|(_, s)| s).collect();
        let health = slots.iter().map(|_| Health::default()).collect();
        Self {
            group: group.to_string(),
            slots,
            health,
            max_penalty,
        }
    }

    fn penalise(&mut self, i: usize) {
        let h = &mut self.health[i];
        h.failures = h.failures.saturating_add(1);
        let shift = (h.failures - 1).min(20);
        let penalty = (FAILURE_PENALTY * (1u32 << shift)).min(self.max_penalty);
        h.penalty_until = Some(Instant::now() + penalty);
    }
}

impl SinkProcessor for FailoverProcessor {
    fn process(&mut self, wait: Duration) -> Result<SinkStatus, SinkError> {
        let now = Instant::now();
        let mut last_err = None;
        for i in 0..self.slots.len() {
            if self.health[i].penalty_until.is_some_and(|t| t > now) {
                continue;
            }
            match self.slots[i].process(wait) {
                Ok(status) => {
                    let h = &mut self.health[i];
                    if h.failures > 0 && status == SinkStatus::Ready {
                        tracing::info!(group = %self.group, sink = %self.slots[i].name,
                            "Sink recovered.");
                        *h = Health::default();
                    }
                    return Ok(status);
                }
                Err(e) => {
                    tracing::warn!(group = %self.group, sink = %self.slots[i].name, error = %e,
                        "Sink failed; failing over to the next sink.");
                    self.penalise(i);
                    last_err = Some(e);
                }
            }
        }
        Err(SinkError::Group {
            group: self.group.clone(),
            message: match last_err {
                Some(e) => format!("all sinks failed, nothing left to fail over to (last: {e})"),
                None => "every sink is penalised after failures".into(),
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
    fn highest_priority_first_then_failover_then_back() -> Result<(), SinkError> {
        let ch = channel(100);
        let (s, sw) = slots(&ch, 2, 10);
        // k2 has the higher priority.
        let mut p = FailoverProcessor::new("g1", s, &[5, 10], Duration::from_millis(50));
        p.process(Duration::ZERO)?;
        assert_eq!(sw[1].delivered.load(Ordering::SeqCst), 10);
        assert_eq!(sw[0].delivered.load(Ordering::SeqCst), 0);

        sw[1].failing.store(true, Ordering::SeqCst);
        p.process(Duration::ZERO)?;
        assert_eq!(
            sw[0].delivered.load(Ordering::SeqCst),
            10,
            "k1 took over in the same call"
        );
        assert_eq!(
            ch.size(),
            80,
            "the failed batch was rolled back and redelivered by k1"
        );

        sw[1].failing.store(false, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(60));
        p.process(Duration::ZERO)?;
        assert_eq!(
            sw[1].delivered.load(Ordering::SeqCst),
            20,
            "k2 is back after its penalty"
        );
        Ok(())
    }

    #[test]
    fn all_failed_is_an_error_and_loses_nothing() {
        let ch = channel(10);
        let (s, sw) = slots(&ch, 2, 10);
        for w in &sw {
            w.failing.store(true, Ordering::SeqCst);
        }
        let mut p = FailoverProcessor::new("g1", s, &[1, 2], Duration::from_secs(1));
        assert!(matches!(
            p.process(Duration::ZERO),
            Err(SinkError::Group { .. })
        ));
        assert_eq!(ch.size(), 10);
    }
}
