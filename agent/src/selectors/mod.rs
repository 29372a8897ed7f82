//! Channel selectors: which of a source's channels each event goes to, required or optional.
//!
//! A selector sees the whole batch and returns, per channel of the source (by index in
//! `a1.sources.r1.channels`), the events that channel must take (required) or may take
//! (optional). The channel processor then puts each list in that channel's transaction.

mod multiplexing;
mod replicating;

use crate::config::{ConfigError, Props};
use crate::event::Event;
use crate::wasm::{GuestError, Scope, WasmConfig};

pub use multiplexing::MultiplexingConfig;
pub use replicating::ReplicatingConfig;

/// Per-channel event lists, indexed like the source's channel list.
#[derive(Debug, Default, PartialEq)]
pub struct Routed {
    pub required: Vec<Vec<Event>>,
    pub optional: Vec<Vec<Event>>,
}

impl Routed {
    pub fn new(channels: usize) -> Self {
        Self {
            required: vec![Vec::new(); channels],
            optional: vec![Vec::new(); channels],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("channel selector: {0}")]
pub struct SelectorError(pub String);

pub trait ChannelSelector: Send + Sync {
    fn route(&self, events: Vec<Event>) -> Result<Routed, SelectorError>;
}

/// Stands in for a selector the agent must build itself; refuses every batch.
struct Unbuilt;

impl ChannelSelector for Unbuilt {
    fn route(&self, _events: Vec<Event>) -> Result<Routed, SelectorError> {
        Err(SelectorError(
            "this selector must be built by the agent".into(),
        ))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectorConfig {
    Replicating(ReplicatingConfig),
    Multiplexing(MultiplexingConfig),
    /// `tenant`: route by tenant (see `crate::tenants`); built by the agent, which holds the
    /// tenants' configuration.
    Tenant,
    /// `type = wasm`: a guest component implementing the `router` world.
    Wasm {
        config: WasmConfig,
        channels: usize,
    },
}

const TYPES: &[(&[&str], &str)] = &[
    (
        &[
            "replicating",
            "org.apache.flume.channel.ReplicatingChannelSelector",
        ],
        "replicating",
    ),
    (
        &[
            "multiplexing",
            "org.apache.flume.channel.MultiplexingChannelSelector",
        ],
        "multiplexing",
    ),
    (&["tenant"], "tenant"),
    (&["wasm"], "wasm"),
];

/// Resolves a space-separated channel list to indices into the source's `channels`.
pub(crate) fn channel_indices(
    p: &Props,
    key: &str,
    value: &str,
    channels: &[String],
) -> Result<Vec<usize>, ConfigError> {
    value
        .split_whitespace()
        .map(|name| {
            channels.iter().position(|c| c == name).ok_or_else(|| {
                p.error(
                    key,
                    format!("channel `{name}` is not one of this source's channels"),
                )
            })
        })
        .collect()
}

impl SelectorConfig {
    /// `p` holds the `selector.` keys; `channels` the source's channel list.
    pub fn from_props(p: &Props, channels: &[String]) -> Result<Self, ConfigError> {
        let kind = p.choice("type", "replicating", TYPES)?;
        Ok(match kind {
            "multiplexing" => Self::Multiplexing(MultiplexingConfig::from_props(p, channels)?),
            "tenant" => Self::Tenant,
            "wasm" => {
                if channels.len() > 64 {
                    return Err(p.error("type", "a wasm router handles at most 64 channels"));
                }
                Self::Wasm {
                    config: WasmConfig::from_props(p)?,
                    channels: channels.len(),
                }
            }
            _ => Self::Replicating(ReplicatingConfig::from_props(p, channels)?),
        })
    }

    /// Builds the selector; only a wasm router can fail (unreadable, not a component).
    pub fn build(&self, scope: &Scope) -> Result<Box<dyn ChannelSelector>, GuestError> {
        Ok(match self {
            Self::Replicating(c) => Box::new(c.clone()),
            Self::Multiplexing(c) => Box::new(c.clone()),
            Self::Tenant => Box::new(Unbuilt),
            Self::Wasm { config, channels } => Box::new(crate::wasm::router::WasmRouter::new(
                &scope.name,
                config,
                *channels,
                scope.counters(),
            )?),
        })
    }
}
