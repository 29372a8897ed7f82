//! Sink processors: which sink of a group runs next (Flume's `SinkProcessor`).
//!
//! `default` runs one sink; `failover` runs the highest-priority live sink and moves failing
//! sinks to a penalty box; `load_balance` spreads batches round-robin or at random, optionally
//! backing failed sinks off. A failed sink's batch was rolled back by its [`SinkSlot`], so
//! trying another sink never loses events.

mod failover;
mod load_balance;

use std::time::Duration;

use super::{SinkError, SinkSlot, SinkStatus};
use crate::config::{ConfigError, MAX_MILLIS, Props};
use crate::wasm::{GuestError, Scope, WasmConfig};

pub use failover::FailoverProcessor;
pub use load_balance::{LoadBalanceProcessor, SelectorKind};

pub trait SinkProcessor: Send {
    fn process(&mut self, wait: Duration) -> Result<SinkStatus, SinkError>;
    fn slots_mut(&mut self) -> &mut [SinkSlot];
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessorConfig {
    Default,
    /// `processor.priority.<sink>` (higher runs first) and `processor.maxpenalty` (ms).
    Failover {
        priorities: Vec<i64>,
        max_penalty: Duration,
    },
    /// `processor.backoff`, `processor.selector`, `processor.selector.maxTimeOut` (ms).
    LoadBalance {
        backoff: bool,
        selector: SelectorKind,
        max_timeout: Duration,
    },
    /// `processor.type = wasm`: a guest component implementing the `sink-selector` world.
    Wasm(WasmConfig),
}

const TYPES: &[(&[&str], &str)] = &[
    (
        &["default", "org.apache.flume.sink.DefaultSinkProcessor"],
        "default",
    ),
    (
        &["failover", "org.apache.flume.sink.FailoverSinkProcessor"],
        "failover",
    ),
    (
        &[
            "load_balance",
            "org.apache.flume.sink.LoadBalancingSinkProcessor",
        ],
        "load_balance",
    ),
    (&["wasm"], "wasm"),
];

impl ProcessorConfig {
    /// `p` holds the `processor.` keys of the group; `sinks` its member list.
    pub fn from_props(p: &Props, sinks: &[String]) -> Result<Self, ConfigError> {
        match p.choice("type", "default", TYPES)? {
            "wasm" => Ok(Self::Wasm(WasmConfig::from_props(p)?)),
            "failover" => {
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
                        return Err(p.error(&key, format!(
                            "priority {prio} is used by another sink of this group; priorities must differ"
                        )));
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
                Ok(Self::Failover {
                    priorities,
                    max_penalty: p.millis("maxpenalty", 30_000, 0..=MAX_MILLIS)?,
                })
            }
            "load_balance" => {
                let selector = p.choice(
                    "selector",
                    SelectorKind::RoundRobin,
                    &[
                        (&["round_robin"], SelectorKind::RoundRobin),
                        (&["random"], SelectorKind::Random),
                    ],
                )?;
                Ok(Self::LoadBalance {
                    backoff: p.bool("backoff", false)?,
                    selector,
                    max_timeout: p.millis("selector.maxTimeOut", 30_000, 0..=MAX_MILLIS)?,
                })
            }
            _ => {
                if sinks.len() > 1 {
                    return Err(p.error(
                        "type",
                        "the default processor runs one sink; use failover or load_balance for several",
                    ));
                }
                Ok(Self::Default)
            }
        }
    }

    /// Builds the processor; only a wasm sink selector can fail (unreadable, not a component,
    /// sinks reading different channels).
    pub fn build(
        &self,
        group: &str,
        slots: Vec<SinkSlot>,
        scope: &Scope,
    ) -> Result<Box<dyn SinkProcessor>, GuestError> {
        Ok(match self {
            Self::Wasm(c) => Box::new(crate::wasm::sink_selector::WasmSinkProcessor::new(
                group,
                c,
                slots,
                scope.counters(),
            )?),
            Self::Default => Box::new(DefaultProcessor { slots }),
            Self::Failover {
                priorities,
                max_penalty,
            } => Box::new(FailoverProcessor::new(
                group,
                slots,
                priorities,
                *max_penalty,
            )),
            Self::LoadBalance {
                backoff,
                selector,
                max_timeout,
            } => Box::new(LoadBalanceProcessor::new(
                group,
                slots,
                *selector,
                *backoff,
                *max_timeout,
            )),
        })
    }
}

/// One sink, run as is.
pub struct DefaultProcessor {
    slots: Vec<SinkSlot>,
}

impl DefaultProcessor {
    pub fn new(slot: SinkSlot) -> Self {
        Self { slots: vec![slot] }
    }
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

#[cfg(test)]
pub(crate) mod test_support {
    //! An in-process sink that fails on command, for processor unit tests.
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use crate::channels::memory::{MemoryChannel, MemoryChannelConfig};
    use crate::channels::{ChannelRef, PutTransaction};
    use crate::event::Event;
    use crate::sinks::{Sink, SinkError, SinkSlot};

    #[derive(Clone, Default)]
    pub struct Switch {
        pub failing: Arc<AtomicBool>,
        pub delivered: Arc<AtomicUsize>,
    }

    pub struct SwitchSink(pub String, pub Switch);

    impl Sink for SwitchSink {
        fn deliver(&mut self, events: &[Event]) -> Result<(), SinkError> {
            if self.1.failing.load(Ordering::SeqCst) {
                return Err(SinkError::Delivery {
                    sink: self.0.clone(),
                    message: "down".into(),
                });
            }
            self.1.delivered.fetch_add(events.len(), Ordering::SeqCst);
            Ok(())
        }
    }

    pub fn channel(events: usize) -> ChannelRef {
        let ch = Arc::new(MemoryChannel::new(
            "c1",
            MemoryChannelConfig {
                capacity: 10_000,
                transaction_capacity: 10_000,
                byte_capacity: u64::MAX,
                keep_alive: Duration::ZERO,
            },
        ));
        let mut tx = PutTransaction::begin(ch.as_ref());
        for i in 0..events {
            let _ = tx.put(Event::new(i.to_string()));
        }
        let _ = tx.commit();
        ch
    }

    pub fn slots(ch: &ChannelRef, n: usize, batch: usize) -> (Vec<SinkSlot>, Vec<Switch>) {
        let switches: Vec<Switch> = (0..n).map(|_| Switch::default()).collect();
        let slots = switches
            .iter()
            .enumerate()
            .map(|(i, sw)| {
                let name = format!("k{}", i + 1);
                SinkSlot::new(
                    &name,
                    Box::new(SwitchSink(name.clone(), sw.clone())),
                    ch.clone(),
                    batch,
                )
            })
            .collect();
        (slots, switches)
    }
}
