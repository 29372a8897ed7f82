//! Building components: the context a builder gets and the spec traits a parsed component
//! config implements.
//!
//! Parsing (`from_props`, pure) yields a spec; building (`build`, which may open files, compile
//! a WebAssembly guest or bind nothing yet) turns it into the running piece. A spec carries no
//! state of its own, so the agent may build it again (a restart after a failed reload).

use std::fmt;
use std::sync::Arc;

use super::{
    ChannelSelector, EventDrivenSource, Interceptor, PollConfig, PollableSource, Sink,
    SinkProcessor, SinkSlot,
};
use crate::metrics::{ComponentType, MetricSet, Registry, SinkCounters, SourceCounters};

/// A builder's failure cause: any error, kept whole for the chain of causes.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a component could not be built or started; names the component.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{component}: {source}")]
    Component {
        component: String,
        #[source]
        source: BoxError,
    },
    #[error("{component}: cannot start its thread: {source}")]
    Thread {
        component: String,
        #[source]
        source: std::io::Error,
    },
    #[error("channel {0}: not running")]
    ChannelNotRunning(String),
    #[error("{0}: not configured")]
    NotConfigured(String),
}

impl BuildError {
    pub fn component(component: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Component {
            component: component.into(),
            source: source.into(),
        }
    }
}

/// Where a component is being built: its name (`r1`, `r1.i1`, `r1.selector`, `g1.processor`,
/// `tenant.acme.i1`) and the registry its counters go to (a private one, published when the
/// agent's reload succeeds).
pub struct BuildContext {
    pub name: String,
    pub registry: Arc<Registry>,
}

impl BuildContext {
    pub fn new(name: impl Into<String>, registry: &Arc<Registry>) -> Self {
        Self {
            name: name.into(),
            registry: registry.clone(),
        }
    }

    /// A context whose metrics nobody reads, for unit tests and `sluice wasm test`.
    pub fn detached(name: impl Into<String>) -> Self {
        Self::new(name, &Registry::new())
    }

    /// The same registry under another name.
    pub fn child(&self, name: impl Into<String>) -> Self {
        Self::new(name, &self.registry)
    }

    /// Registers `set` under this context's name.
    pub fn register(&self, kind: ComponentType, set: Arc<dyn MetricSet>) {
        self.registry.register(kind, &self.name, set);
    }
}

/// A parsed interceptor (`a1.sources.r1.interceptors.i1.*`).
pub trait InterceptorSpec: fmt::Debug + Send + Sync {
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Interceptor>, BoxError>;
}

/// A parsed channel selector (`a1.sources.r1.selector.*`), over the source's channel list.
pub trait SelectorSpec: fmt::Debug + Send + Sync {
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn ChannelSelector>, BoxError>;
}

/// A parsed sink processor (`a1.sinkgroups.g1.processor.*`), over the group's sinks.
pub trait ProcessorSpec: fmt::Debug + Send + Sync {
    /// `group` names the sink group in errors; `cx` is the processor's own context.
    fn build(
        &self,
        group: &str,
        slots: Vec<SinkSlot>,
        cx: &BuildContext,
    ) -> Result<Box<dyn SinkProcessor>, BoxError>;
}

/// What a source's builder gets: the source's name, the registry, and the counters its
/// channel processor updates (a source with counters of its own registers both, combined).
pub struct SourceContext {
    pub cx: BuildContext,
    pub counters: Arc<SourceCounters>,
}

/// A built source, not started yet.
pub enum SourceInstance {
    /// Driven by a [`super::SourceRunner`] thread with this backoff.
    Polled(Box<dyn PollableSource>, PollConfig),
    /// Runs its own threads once started.
    Driven(Box<dyn EventDrivenSource>),
}

/// A parsed source (`a1.sources.r1.*`).
pub trait SourceSpec: fmt::Debug + Send + Sync {
    fn build(&self, cx: &SourceContext) -> Result<SourceInstance, BoxError>;
}

/// What a sink's builder gets: the sink's name, the registry (the slot's counters are already
/// registered under the name; a sink with counters of its own registers both, combined), and
/// those counters, for sinks that count connections themselves.
pub struct SinkContext {
    pub cx: BuildContext,
    pub counters: Arc<SinkCounters>,
}

/// A parsed sink (`a1.sinks.k1.*`).
pub trait SinkSpec: fmt::Debug + Send + Sync {
    /// `batchSize`: the most events one take transaction holds.
    fn batch_size(&self) -> usize;
    fn build(&self, cx: &SinkContext) -> Result<Box<dyn Sink>, BoxError>;
}
