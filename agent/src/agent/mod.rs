//! The running agent: builds components from an [`AgentConfig`], starts them in Flume's order
//! (channels, then sinks, then sources), reloads a changed config transactionally, watches its
//! component threads, and shuts down within a deadline.
//!
//! Reload (and start, which is a reload from the empty config) follows [`ConfigDiff`]:
//! 1. *Prepare*, touching nothing that runs: open every added or changed channel (except a
//!    durable one that reuses the directories of a channel it replaces: it can only open once
//!    that one is closed), build the interceptors, selectors and sink processors (WebAssembly
//!    guests compile and `init` here) of every added or changed source and sink runner. A
//!    failure drops what was prepared and leaves the pipeline as it was.
//! 2. *Swap*: stop the old sources and runners being replaced, open the deferred durable
//!    channels, start the new runners, then the new sources, move the events of replaced
//!    memory channels into their successors, close what was removed.
//! 3. A failure during the swap *rolls back*: new components stop, events they put into new
//!    channels go back to the old ones, old durable channels reopen (replaying their files),
//!    old runners and sources restart. Nothing committed is dropped either way.
//!
//! Metrics: each component registers its counters (its own, its WebAssembly guests', its
//! tenants', its group's member sinks') on a private registry while it is built; they are
//! published to the agent's registry when the swap succeeds and unpublished when the
//! component stops for good.

mod build;
pub mod config_test;
pub mod diff;
mod reload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use diff::{ConfigDiff, RunnerKey};

use crate::channels::{ChannelRef, ChannelSpec};
use crate::metrics::{ComponentType, Registry};
use crate::pipeline::{BuildError, EventDrivenSource, SinkRunner, SourceRunner};
use crate::topology::AgentConfig;

/// The metrics a component registered while it was built: a private registry, and the keys
/// it held once published to the agent's.
pub(super) type MetricKeys = Vec<(ComponentType, String)>;

/// A running source: polled by a runner thread, or driving itself.
pub(super) enum RunningSource {
    Polled(SourceRunner),
    Driven(Box<dyn EventDrivenSource>),
}

impl RunningSource {
    fn stop(self) {
        match self {
            Self::Polled(r) => r.join(),
            Self::Driven(mut s) => s.stop(),
        }
    }

    /// Why the source stopped working on its own (its thread panicked), if it did.
    fn failure(&mut self) -> Option<String> {
        match self {
            Self::Polled(r) => r.failure(),
            Self::Driven(_) => None,
        }
    }
}

pub(super) struct RunningChannel {
    pub(super) channel: ChannelRef,
    pub(super) spec: Arc<dyn ChannelSpec>,
    pub(super) metrics: MetricKeys,
}

pub(super) struct Running<T> {
    pub(super) unit: T,
    pub(super) metrics: MetricKeys,
}

pub struct Agent {
    registry: Arc<Registry>,
    config: AgentConfig,
    channels: BTreeMap<String, RunningChannel>,
    sources: BTreeMap<String, Running<RunningSource>>,
    runners: BTreeMap<RunnerKey, Running<SinkRunner>>,
}

impl Agent {
    pub fn start(config: AgentConfig, registry: Arc<Registry>) -> Result<Self, BuildError> {
        let mut agent = Self {
            registry,
            config: AgentConfig::empty(&config.agent, &config.file),
            channels: BTreeMap::new(),
            sources: BTreeMap::new(),
            runners: BTreeMap::new(),
        };
        let (sources, channels, sinks) = (
            config.sources.len(),
            config.channels.len(),
            config.sinks.len(),
        );
        let name = config.agent.clone();
        agent.apply(config)?;
        tracing::info!(agent = %name, sources, channels, sinks, "Agent started.");
        Ok(agent)
    }

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Applies a new configuration: only the components whose keys (or whose channels)
    /// changed restart, and only once everything new could be built. On error the running
    /// pipeline is as it was before the call; nothing committed is lost.
    pub fn reload(&mut self, new: AgentConfig) -> Result<(), BuildError> {
        let diff = ConfigDiff::between(&self.config, &new);
        if diff.is_quiet() {
            tracing::info!("Configuration unchanged after reload.");
            self.config = new;
            return Ok(());
        }
        tracing::info!(
            channels = ?diff.channels.starting().chain(&diff.channels.removed).collect::<Vec<_>>(),
            sources = ?diff.sources.starting().chain(&diff.sources.removed).collect::<Vec<_>>(),
            sinks = ?diff.runners.starting().chain(&diff.runners.removed)
                .map(ToString::to_string).collect::<Vec<_>>(),
            "Reloading changed components."
        );
        self.apply(new)
    }

    /// Components whose thread ended on its own (a panic): `(component, reason)`.
    pub fn failures(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, s) in &mut self.sources {
            if let Some(why) = s.unit.failure() {
                out.push((format!("source {name}"), why));
            }
        }
        for (key, r) in &mut self.runners {
            if let Some(why) = r.unit.failure() {
                out.push((key.to_string(), why));
            }
        }
        out
    }

    /// Stops sources, lets sinks drain until `deadline`, then closes channels, so that the
    /// whole shutdown ends by `deadline` plus a short grace, whatever the sinks' peers do.
    /// Returns the events left per channel.
    pub fn shutdown(mut self, deadline: Instant) -> Vec<(String, usize)> {
        // Sources stop in parallel; one blocked on a full channel ends its wait while the
        // sinks keep draining.
        let sources: Vec<_> = std::mem::take(&mut self.sources)
            .into_iter()
            .map(|(name, s)| {
                let stop = move || s.unit.stop();
                (name, spawn_stop("source", stop))
            })
            .collect();
        for (name, stopper) in sources {
            if !finish_by(stopper, deadline) {
                tracing::warn!(source = %name, "Source did not stop before the drain deadline.");
            }
        }
        let runners: Vec<_> = std::mem::take(&mut self.runners).into_iter().collect();
        for (_, r) in &runners {
            r.unit.begin_drain();
        }
        for (key, r) in runners {
            if !r.unit.finish_by(deadline, GRACE) {
                tracing::warn!(sink = %key,
                    "Sink runner still busy at the drain deadline; its batch stays in the channel.");
            }
        }
        let mut left = Vec::new();
        for (name, c) in std::mem::take(&mut self.channels) {
            c.channel.close();
            left.push((name, c.channel.size()));
        }
        left
    }
}

/// How long a stop waits past the deadline for a thread that was told to stop.
const GRACE: Duration = Duration::from_millis(500);

fn spawn_stop(what: &str, f: impl FnOnce() + Send + 'static) -> Option<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("stop-{what}"))
        .spawn(f)
        .ok()
}

/// Waits for `t` until `deadline`; a thread still running then is left behind.
fn finish_by(t: Option<JoinHandle<()>>, deadline: Instant) -> bool {
    let Some(t) = t else {
        return false;
    };
    while !t.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if t.is_finished() {
        let _ = t.join();
        true
    } else {
        false
    }
}
