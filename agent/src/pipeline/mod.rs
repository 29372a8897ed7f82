//! The contract between components: the traits the agent drives (sources, sinks and the three
//! hooks: interceptor, channel selector, sink processor), the glue that moves a batch between
//! them ([`ChannelProcessor`] on the put side, [`SinkSlot`] on the take side), the runner
//! threads, and the build context and spec traits every component's builder implements.
//!
//! This module sits below every component — built-in sources, sinks, interceptors, selectors
//! and sink processors, and the WebAssembly adapters alike — and above `channels`, `metrics`,
//! `config` and `event`: a component depends on it, it depends on no component.

mod build;
mod channel_processor;
pub mod dead_letter;
mod interceptor;
mod selector;
mod sink;
mod sink_processor;
mod sink_runner;
mod source;
mod source_runner;

pub use build::{
    BoxError, BuildContext, BuildError, InterceptorSpec, ProcessorSpec, SelectorSpec, SinkContext,
    SinkSpec, SourceContext, SourceInstance, SourceSpec,
};
pub use channel_processor::{ChannelProcessor, ProcessError};
pub use dead_letter::DeadLetters;
pub use interceptor::{Interceptor, InterceptorChain, InterceptorError};
pub use selector::{ChannelSelector, Routed, SelectorError};
pub use sink::{Cause, Sink, SinkError, SinkSlot, SinkStatus, TAKE_WAIT};
pub use sink_processor::SinkProcessor;
pub use sink_runner::SinkRunner;
pub use source::{EventDrivenSource, PollConfig, PollStatus, PollableSource, SourceError};
pub use source_runner::SourceRunner;

#[cfg(test)]
pub(crate) use selector::ToAll;
#[cfg(test)]
pub(crate) use sink::test_support;
