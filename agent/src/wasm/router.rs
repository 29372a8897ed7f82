//! `selector.type = wasm`: the guest returns, per event, a bit set of the source's channels.
//!
//! Every routed channel is required: the channel processor puts each channel's share in its
//! own transaction and commits only when all of them prepared, so a split batch is delivered
//! whole or rolled back whole. A mask of 0 drops the event (`EventInCount` − `EventOutCount`),
//! or sets it aside in the source's dead-letter channel (reason `unrouted`) when the source has
//! one and `deadLetter.unrouted` is on. `on-error = pass` sends the batch to every channel,
//! `on-error = dead-letter` to the dead-letter channel.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::counters::WasmCounters;
use super::guest::{Guest, GuestError, Hook};
use super::lower::BatchRef;
use super::{OnError, WasmConfig};
use crate::config::{ConfigError, Props};
use crate::event::Event;
use crate::pipeline::{
    BoxError, BuildContext, ChannelSelector, DeadLetters, Routed, SelectorError, SelectorSpec,
};

pub(crate) struct WasmRouter {
    guest: Guest,
    channels: usize,
}

impl WasmRouter {
    pub(crate) fn new(
        name: &str,
        config: &WasmConfig,
        channels: usize,
        counters: Arc<WasmCounters>,
    ) -> Result<Self, GuestError> {
        if channels > MAX_CHANNELS {
            return Err(GuestError::TooManyChannels {
                guest: name.to_string(),
                channels,
            });
        }
        Ok(Self {
            guest: Guest::new(name, Hook::Router, config, counters)?,
            channels,
        })
    }
}

/// The most channels a router's 64-bit mask addresses.
pub(crate) const MAX_CHANNELS: usize = 64;

/// `selector.type = wasm`: the parsed keys of a guest implementing the `router` world, over the
/// source's channels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WasmRouterSpec {
    pub(crate) config: WasmConfig,
    pub(crate) channels: usize,
}

impl WasmRouterSpec {
    pub(crate) fn from_props(p: &Props, channels: &[String]) -> Result<Self, ConfigError> {
        if channels.len() > MAX_CHANNELS {
            return Err(p.error("type", "a wasm router handles at most 64 channels"));
        }
        Ok(Self {
            config: WasmConfig::from_props(p)?,
            channels: channels.len(),
        })
    }
}

impl SelectorSpec for WasmRouterSpec {
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn ChannelSelector>, BoxError> {
        let counters = super::counters(cx);
        Ok(Box::new(WasmRouter::new(
            &cx.name,
            &self.config,
            self.channels,
            counters,
        )?))
    }
}

/// What a router guest got wrong in its masks.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RouteError {
    #[error("{routes} routes for {events} events")]
    Count { routes: usize, events: usize },
    #[error(
        "event {event} routed to channel bit set {mask:#x}, but the source has {channels} channels"
    )]
    UnknownChannel {
        event: usize,
        mask: u64,
        channels: usize,
    },
}

/// Every channel's bit, for `channels` channels.
fn all_channels(channels: usize) -> u64 {
    if channels >= 64 {
        u64::MAX
    } else {
        (1u64 << channels) - 1
    }
}

/// Checks the masks: one per event, no bit beyond the source's channels.
pub(crate) fn validate(events: usize, channels: usize, masks: &[u64]) -> Result<(), RouteError> {
    if masks.len() != events {
        return Err(RouteError::Count {
            routes: masks.len(),
            events,
        });
    }
    let allowed = all_channels(channels);
    if let Some((i, m)) = masks.iter().enumerate().find(|(_, m)| *m & !allowed != 0) {
        return Err(RouteError::UnknownChannel {
            event: i,
            mask: *m,
            channels,
        });
    }
    Ok(())
}

/// Splits the batch by mask; events for no channel go to `unrouted` when given, else are
/// dropped.
pub(crate) fn split(
    events: Vec<Event>,
    channels: usize,
    masks: &[u64],
    mut unrouted: Option<&mut Vec<Event>>,
) -> Routed {
    let mut routed = Routed::new(channels);
    for (e, &mask) in events.into_iter().zip(masks) {
        if mask == 0 {
            if let Some(u) = unrouted.as_deref_mut() {
                u.push(e);
            }
            continue;
        }
        let last = 63 - mask.leading_zeros() as usize;
        for ch in 0..channels {
            if mask & (1 << ch) != 0 {
                if ch == last {
                    routed.required[ch].push(e);
                    break;
                }
                routed.required[ch].push(e.clone());
            }
        }
    }
    routed
}

impl ChannelSelector for WasmRouter {
    fn route(&self, events: Vec<Event>) -> Result<Routed, SelectorError> {
        self.route_or_set_aside(events, &mut DeadLetters::disabled())
    }

    fn route_or_set_aside(
        &self,
        events: Vec<Event>,
        dead: &mut DeadLetters,
    ) -> Result<Routed, SelectorError> {
        let c = self.guest.counters();
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.events_in
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        let batch = BatchRef::new(&events, self.guest.config().body_prefix).map_err(|e| {
            SelectorError::Failed {
                context: format!("wasm guest `{}`", self.guest.name()),
                cause: Arc::new(e),
            }
        })?;
        let (n, channels) = (events.len(), self.channels);
        let result = self.guest.call(|store, f| {
            let masks = f.route(store, batch)?;
            Ok(validate(n, channels, &masks).map(|()| masks))
        });
        match result {
            Ok(masks) => {
                let routed = masks.iter().filter(|m| **m != 0).count();
                c.events_out.fetch_add(routed as u64, Ordering::Relaxed);
                if routed < n && crate::tap::active() {
                    let unrouted: Vec<Event> = events
                        .iter()
                        .zip(&masks)
                        .filter(|(_, m)| **m == 0)
                        .map(|(e, _)| e.clone())
                        .collect();
                    crate::tap::publish(
                        self.guest.name(),
                        crate::tap::Point::Verdict("unrouted"),
                        &unrouted,
                    );
                }
                if routed == n || !dead.takes_unrouted() {
                    return Ok(split(events, channels, &masks, None));
                }
                let mut unrouted = Vec::new();
                let out = split(events, channels, &masks, Some(&mut unrouted));
                c.rejected
                    .fetch_add(unrouted.len() as u64, Ordering::Relaxed);
                dead.push(self.guest.name(), "unrouted", unrouted);
                Ok(out)
            }
            Err(fault) => match self.guest.config().on_error {
                OnError::DeadLetter if dead.is_enabled() => {
                    c.policy_dead_lettered.fetch_add(1, Ordering::Relaxed);
                    crate::tap::publish(
                        self.guest.name(),
                        crate::tap::Point::Verdict("dead-letter-on-fault"),
                        &events,
                    );
                    dead.push(self.guest.name(), &format!("fault: {fault}"), events);
                    Ok(Routed::new(channels))
                }
                OnError::Fail | OnError::DeadLetter => {
                    c.policy_failed.fetch_add(1, Ordering::Relaxed);
                    Err(SelectorError::Failed {
                        context: format!("wasm guest `{}`", self.guest.name()),
                        cause: Arc::new(fault),
                    })
                }
                OnError::Drop => {
                    c.policy_dropped.fetch_add(1, Ordering::Relaxed);
                    crate::tap::publish(
                        self.guest.name(),
                        crate::tap::Point::Verdict("dropped-on-fault"),
                        &events,
                    );
                    Ok(Routed::new(channels))
                }
                OnError::Pass => {
                    c.policy_passed.fetch_add(1, Ordering::Relaxed);
                    c.events_out.fetch_add(n as u64, Ordering::Relaxed);
                    Ok(split(
                        events,
                        channels,
                        &vec![all_channels(channels); n],
                        None,
                    ))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert!(validate(2, 2, &[1, 2]).is_ok());
        assert!(validate(2, 2, &[1]).is_err());
        assert!(validate(1, 2, &[4]).is_err());
        let ev = |s: &str| Event::new(s.to_string());
        let mut unrouted = Vec::new();
        let r = split(
            vec![ev("a"), ev("b"), ev("c"), ev("d")],
            2,
            &[1, 3, 0, 2],
            Some(&mut unrouted),
        );
        assert_eq!(r.required[0], vec![ev("a"), ev("b")]);
        assert_eq!(r.required[1], vec![ev("b"), ev("d")]);
        assert_eq!(unrouted, vec![ev("c")]);
    }
}
