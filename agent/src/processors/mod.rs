//! Flume's sink processors: which sink of a group runs next (the
//! [`crate::pipeline::SinkProcessor`] trait lives in the pipeline; the WebAssembly sink selector
//! in `crate::wasm`).
//!
//! `default` runs one sink; `failover` runs the highest-priority live sink and moves failing
//! sinks to a penalty box; `load_balance` spreads batches round-robin or at random, optionally
//! backing failed sinks off. A failed sink's batch was rolled back by its
//! [`crate::pipeline::SinkSlot`], so trying another sink never loses events.

mod failover;
mod load_balance;

use std::time::Duration;

use crate::config::{ConfigError, MAX_MILLIS, Props};
use crate::pipeline::{
    BoxError, BuildContext, ProcessorSpec, SinkError, SinkProcessor, SinkSlot, SinkStatus,
};

pub use failover::FailoverProcessor;
pub use load_balance::{LoadBalanceProcessor, SelectorKind};

/// `processor.type = default`: the group's one sink runs as is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultConfig;

impl DefaultConfig {
    pub fn from_props(p: &Props, sinks: &[String]) -> Result<Self, ConfigError> {
        if sinks.len() > 1 {
            return Err(p.error(
                "type",
                "the default processor runs one sink; use failover or load_balance for several",
            ));
        }
        Ok(Self)
    }
}

impl ProcessorSpec for DefaultConfig {
    fn build(
        &self,
        _: &str,
        slots: Vec<SinkSlot>,
        _: &BuildContext,
    ) -> Result<Box<dyn SinkProcessor>, BoxError> {
        Ok(Box::new(DefaultProcessor { slots }))
    }
}

/// `processor.type = failover`: `processor.priority.<sink>` (higher runs first) and
/// `processor.maxpenalty` (ms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverConfig {
    /// One per sink of the group, in the group's order.
    pub priorities: Vec<i64>,
    pub max_penalty: Duration,
}

impl FailoverConfig {
    pub fn from_props(p: &Props, sinks: &[String]) -> Result<Self, ConfigError> {
        let mut priorities = Vec::with_capacity(sinks.len());
        let mut next = 0i64;
        for s in sinks {
            let key = format!("priority.{s}");
            let prio = match p.get(&key) {
                Some(_) => p.int(&key, 0i64, i64::from(i32::MIN)..=i64::from(i32::MAX))?,
                None => {
                    next -= 1;
                    next
                }
            };
            if priorities.contains(&prio) {
                return Err(p.error(
                    &key,
                    format!(
                        "priority {prio} is used by another sink of this group; \
                         priorities must differ"
                    ),
                ));
            }
            priorities.push(prio);
        }
        for (name, _) in p.children("priority.") {
            if !sinks.contains(&name) {
                return Err(p.error(
                    &format!("priority.{name}"),
                    format!("sink `{name}` is not in this group"),
                ));
            }
        }
        Ok(Self {
            priorities,
            max_penalty: p.millis("maxpenalty", 30_000, 0..=MAX_MILLIS)?,
        })
    }
}

impl ProcessorSpec for FailoverConfig {
    fn build(
        &self,
        group: &str,
        slots: Vec<SinkSlot>,
        _: &BuildContext,
    ) -> Result<Box<dyn SinkProcessor>, BoxError> {
        Ok(Box::new(FailoverProcessor::new(
            group,
            slots,
            &self.priorities,
            self.max_penalty,
        )))
    }
}

/// `processor.type = load_balance`: `processor.backoff`, `processor.selector`,
/// `processor.selector.maxTimeOut` (ms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadBalanceConfig {
    pub backoff: bool,
    pub selector: SelectorKind,
    pub max_timeout: Duration,
}

impl LoadBalanceConfig {
    pub fn from_props(p: &Props, _sinks: &[String]) -> Result<Self, ConfigError> {
        let selector = p.choice(
            "selector",
            SelectorKind::RoundRobin,
            &[
                (&["round_robin"], SelectorKind::RoundRobin),
                (&["random"], SelectorKind::Random),
            ],
        )?;
        Ok(Self {
            backoff: p.bool("backoff", false)?,
            selector,
            max_timeout: p.millis("selector.maxTimeOut", 30_000, 0..=MAX_MILLIS)?,
        })
    }
}

impl ProcessorSpec for LoadBalanceConfig {
    fn build(
        &self,
        group: &str,
        slots: Vec<SinkSlot>,
        _: &BuildContext,
    ) -> Result<Box<dyn SinkProcessor>, BoxError> {
        Ok(Box::new(LoadBalanceProcessor::new(
            group,
            slots,
            self.selector,
            self.backoff,
            self.max_timeout,
        )))
    }
}

/// One sink, run as is.
pub struct DefaultProcessor {
    slots: Vec<SinkSlot>,
}

impl SinkProcessor for DefaultProcessor {
    fn process(&mut self, wait: Duration) -> Result<SinkStatus, SinkError> {
        match self.slots.first_mut() {
            Some(s) => s.process(wait),
            None => Ok(SinkStatus::Idle),
        }
    }

    fn slots_mut(&mut self) -> &mut [SinkSlot] {
        &mut self.slots
    }
}
