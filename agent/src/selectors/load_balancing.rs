//! `load_balancing` (Flume 1.10+'s `org.apache.flume.channel.LoadBalancingChannelSelector`):
//! each event goes to exactly one of the source's channels, chosen by `selector.policy`:
//! `round_robin` (the default; the rotation carries on across batches) or `random`. No channel
//! is optional.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::{ConfigError, Props};
use crate::event::Event;
use crate::pipeline::{ChannelSelector, Routed, SelectorError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    RoundRobin,
    Random,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadBalancingConfig {
    pub channels: usize,
    /// `policy` (default `round_robin`).
    pub policy: Policy,
}

impl LoadBalancingConfig {
    pub fn from_props(p: &Props, channels: &[String]) -> Result<Self, ConfigError> {
        let policy = p.choice(
            "policy",
            Policy::RoundRobin,
            &[
                (&["round_robin"], Policy::RoundRobin),
                (&["random"], Policy::Random),
            ],
        )?;
        if p.get("optional").is_some() {
            return Err(p.error(
                "optional",
                "the load_balancing selector has no optional channels: every event goes to \
                 one channel",
            ));
        }
        Ok(Self {
            channels: channels.len(),
            policy,
        })
    }
}

/// The selector of one source: the config and where the rotation is.
pub struct LoadBalancing {
    config: LoadBalancingConfig,
    next: AtomicUsize,
}

impl LoadBalancing {
    pub fn new(config: &LoadBalancingConfig) -> Self {
        Self {
            config: config.clone(),
            next: AtomicUsize::new(0),
        }
    }
}

impl ChannelSelector for LoadBalancing {
    fn route(&self, events: Vec<Event>) -> Result<Routed, SelectorError> {
        let n = self.config.channels.max(1);
        let mut routed = Routed::new(self.config.channels);
        if self.config.channels == 0 {
            return Ok(routed);
        }
        let count = events.len();
        match self.config.policy {
            Policy::RoundRobin => {
                let start = self.next.fetch_add(count, Ordering::Relaxed) % n;
                for (i, e) in events.into_iter().enumerate() {
                    routed.required[(start + i) % n].push(e);
                }
            }
            Policy::Random => {
                for e in events {
                    routed.required[rand::random_range(0..n)].push(e);
                }
            }
        }
        Ok(routed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chans(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn round_robin_rotates_across_batches() -> Result<(), Box<dyn std::error::Error>> {
        let c = LoadBalancingConfig::from_props(&Props::from_pairs(&[]), &chans(3))?;
        assert_eq!(c.policy, Policy::RoundRobin);
        let s = LoadBalancing::new(&c);
        let r = s.route((0..4).map(|i| Event::new(i.to_string())).collect())?;
        let sizes: Vec<usize> = r.required.iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 1, 1]);
        let r = s.route((0..2).map(|i| Event::new(i.to_string())).collect())?;
        let sizes: Vec<usize> = r.required.iter().map(Vec::len).collect();
        assert_eq!(sizes, [0, 1, 1], "the rotation goes on where it was");
        assert!(r.optional.iter().all(Vec::is_empty));
        Ok(())
    }

    #[test]
    fn random_sends_each_event_once_and_policy_is_checked() -> Result<(), Box<dyn std::error::Error>>
    {
        let c = LoadBalancingConfig::from_props(
            &Props::from_pairs(&[("policy", "random")]),
            &chans(2),
        )?;
        let r =
            LoadBalancing::new(&c).route((0..1000).map(|i| Event::new(i.to_string())).collect())?;
        let sizes: Vec<usize> = r.required.iter().map(Vec::len).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 1000);
        assert!(sizes.iter().all(|s| *s > 300), "{sizes:?}");
        let bad =
            LoadBalancingConfig::from_props(&Props::from_pairs(&[("policy", "sticky")]), &chans(2));
        assert!(bad.is_err_and(|e| e.to_string().contains("round_robin")));
        Ok(())
    }
}
