//! `processor.type = wasm`: the guest picks, per event, which sink of the group delivers it.
//!
//! Transaction semantics: every sink of a wasm group must read the same channel. The processor
//! takes one batch from it in one take transaction, asks the guest for a sink per event, hands
//! each sink its share, and commits only when every share was delivered; if any sink fails the
//! whole batch is rolled back and redelivered later (shares already delivered may then be
//! delivered twice: at-least-once, like any sink retry). `on-error = pass` sends the batch to
//! the first sink; `drop` commits it undelivered (counted).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::counters::WasmCounters;
use super::guest::{Guest, GuestError, Hook};
use super::lower::BatchRef;
use super::{OnError, WasmConfig};
use crate::channels::{ChannelRef, TakeTransaction};
use crate::event::Event;
use crate::pipeline::{
    BoxError, BuildContext, ProcessorSpec, SinkError, SinkProcessor, SinkSlot, SinkStatus,
};

pub(crate) struct WasmSinkProcessor {
    group: String,
    guest: Guest,
    slots: Vec<SinkSlot>,
    channel: ChannelRef,
    batch_size: usize,
}

impl WasmSinkProcessor {
    pub(crate) fn new(
        group: &str,
        config: &WasmConfig,
        slots: Vec<SinkSlot>,
        counters: Arc<WasmCounters>,
    ) -> Result<Self, GuestError> {
        let guest = format!("{group}.processor");
        let Some(first) = slots.first() else {
            return Err(GuestError::NoSinks { guest });
        };
        let channel = first.channel.clone();
        let same = |c: &ChannelRef| std::ptr::addr_eq(Arc::as_ptr(c), Arc::as_ptr(&channel));
        if let Some(other) = slots.iter().find(|s| !same(&s.channel)) {
            return Err(GuestError::MixedChannels {
                guest,
                first: first.name.clone(),
                other: other.name.clone(),
            });
        }
        let batch_size = slots.iter().map(|s| s.batch_size).max().unwrap_or(100);
        Ok(Self {
            group: group.to_string(),
            guest: Guest::new(&guest, Hook::SinkSelector, config, counters)?,
            slots,
            channel,
            batch_size,
        })
    }

    fn group_err(&self, message: String) -> SinkError {
        SinkError::Group {
            group: self.group.clone(),
            message,
        }
    }
}

/// `processor.type = wasm`: the parsed keys of a guest implementing the `sink-selector` world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WasmSinkSelectorSpec(pub(crate) WasmConfig);

impl WasmSinkSelectorSpec {
    pub(crate) fn from_props(p: &crate::config::Props) -> Result<Self, crate::config::ConfigError> {
        let config = WasmConfig::from_props(p)?;
        if config.on_error == OnError::DeadLetter {
            return Err(p.error(
                "on-error",
                "`dead-letter` is for a source's interceptors and routers; a sink selector's \
                 batch is already committed to its channel (use fail, drop or pass)",
            ));
        }
        Ok(Self(config))
    }
}

impl ProcessorSpec for WasmSinkSelectorSpec {
    fn build(
        &self,
        group: &str,
        slots: Vec<SinkSlot>,
        cx: &BuildContext,
    ) -> Result<Box<dyn SinkProcessor>, BoxError> {
        let counters = super::counters(cx);
        Ok(Box::new(WasmSinkProcessor::new(
            group, &self.0, slots, counters,
        )?))
    }
}

/// What a sink-selector guest got wrong in its choices.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChoiceError {
    #[error("{choices} sink choices for {events} events")]
    Count { choices: usize, events: usize },
    #[error("event {event} sent to sink {sink}, but the group has {sinks} sinks")]
    UnknownSink {
        event: usize,
        sink: u32,
        sinks: usize,
    },
}

/// Checks the choices: one per event, each a sink of the group.
pub(crate) fn validate(events: usize, sinks: usize, choice: &[u32]) -> Result<(), ChoiceError> {
    if choice.len() != events {
        return Err(ChoiceError::Count {
            choices: choice.len(),
            events,
        });
    }
    if let Some((i, s)) = choice
        .iter()
        .enumerate()
        .find(|(_, s)| **s as usize >= sinks)
    {
        return Err(ChoiceError::UnknownSink {
            event: i,
            sink: *s,
            sinks,
        });
    }
    Ok(())
}

pub(crate) fn split(events: &[Event], sinks: usize, choice: &[u32]) -> Vec<Vec<Event>> {
    let mut parts = vec![Vec::new(); sinks];
    for (e, &s) in events.iter().zip(choice) {
        parts[s as usize].push(e.clone());
    }
    parts
}

impl SinkProcessor for WasmSinkProcessor {
    fn process(&mut self, wait: Duration) -> Result<SinkStatus, SinkError> {
        for s in &mut self.slots {
            s.ensure_started()?;
        }
        let tx = TakeTransaction::begin(self.channel.as_ref(), self.batch_size, wait)
            .map_err(|e| self.group_err(e.to_string()))?;
        if tx.is_empty() {
            for s in &mut self.slots {
                s.sink.idle()?;
            }
            return Ok(SinkStatus::Idle);
        }
        let c = self.guest.counters().clone();
        let n = tx.len();
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.events_in.fetch_add(n as u64, Ordering::Relaxed);
        let sinks = self.slots.len();
        let batch = match BatchRef::new(tx.events(), self.guest.config().body_prefix) {
            Ok(b) => b,
            Err(e) => {
                tx.rollback();
                return Err(self.group_err(e.to_string()));
            }
        };
        let result = self.guest.call(|store, f| {
            let choice = f.select(store, batch)?;
            Ok(validate(n, sinks, &choice).map(|()| choice))
        });
        let choice = match result {
            Ok(choice) => choice,
            Err(fault) => match self.guest.config().on_error {
                // Refused by `from_props`: a sink selector has no dead-letter channel.
                OnError::Fail | OnError::DeadLetter => {
                    c.policy_failed.fetch_add(1, Ordering::Relaxed);
                    tx.rollback();
                    return Err(
                        self.group_err(format!("wasm guest `{}`: {fault}", self.guest.name()))
                    );
                }
                OnError::Drop => {
                    c.policy_dropped.fetch_add(1, Ordering::Relaxed);
                    tx.commit().map_err(|e| self.group_err(e.to_string()))?;
                    return Ok(SinkStatus::Ready);
                }
                OnError::Pass => {
                    c.policy_passed.fetch_add(1, Ordering::Relaxed);
                    vec![0; n]
                }
            },
        };
        let parts = split(tx.events(), sinks, &choice);
        for (slot, part) in self.slots.iter_mut().zip(&parts) {
            if part.is_empty() {
                continue;
            }
            if let Err(e) = slot.deliver_part(part) {
                tx.rollback();
                return Err(e);
            }
        }
        tx.commit().map_err(|e| self.group_err(e.to_string()))?;
        c.events_out.fetch_add(n as u64, Ordering::Relaxed);
        Ok(SinkStatus::Ready)
    }

    fn slots_mut(&mut self) -> &mut [SinkSlot] {
        &mut self.slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices() {
        assert!(validate(2, 2, &[0, 1]).is_ok());
        assert!(validate(2, 2, &[0]).is_err());
        assert!(validate(1, 2, &[2]).is_err());
        let ev = |s: &str| Event::new(s.to_string());
        let parts = split(&[ev("a"), ev("b"), ev("c")], 2, &[1, 0, 1]);
        assert_eq!(parts, vec![vec![ev("b")], vec![ev("a"), ev("c")]]);
    }
}
