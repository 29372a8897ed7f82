//! Flume's built-in channel selectors, `replicating`, `multiplexing` and `load_balancing` (the
//! [`crate::pipeline::ChannelSelector`] trait lives in the pipeline; the WebAssembly router in
//! `crate::wasm`, tenant routing in `crate::tenants`). Each config is parsed by `from_props`
//! over the source's channel list and is itself the selector.

mod load_balancing;
mod multiplexing;
mod replicating;

use crate::config::{ConfigError, Props};
use crate::pipeline::{BoxError, BuildContext, ChannelSelector, SelectorSpec};

pub use load_balancing::LoadBalancingConfig;
pub use multiplexing::MultiplexingConfig;
pub use replicating::ReplicatingConfig;

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

impl SelectorSpec for ReplicatingConfig {
    fn build(&self, _: &BuildContext) -> Result<Box<dyn ChannelSelector>, BoxError> {
        Ok(Box::new(self.clone()))
    }
}

impl SelectorSpec for MultiplexingConfig {
    fn build(&self, _: &BuildContext) -> Result<Box<dyn ChannelSelector>, BoxError> {
        Ok(Box::new(self.clone()))
    }
}

impl SelectorSpec for LoadBalancingConfig {
    fn build(&self, _: &BuildContext) -> Result<Box<dyn ChannelSelector>, BoxError> {
        Ok(Box::new(load_balancing::LoadBalancing::new(self)))
    }
}
