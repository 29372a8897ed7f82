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

pub mod diff;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use diff::{ConfigDiff, RunnerKey};

use crate::channels::{Channel, ChannelRef, ChannelSpec, PutTransaction, TakeTransaction};
use crate::metrics::{ComponentType, Registry, SinkCounters, SourceCounters};
use crate::pipeline::{
    BuildContext, BuildError, ChannelProcessor, EventDrivenSource, InterceptorChain, SinkContext,
    SinkProcessor, SinkRunner, SinkSlot, SourceContext, SourceInstance, SourceRunner,
};
use crate::registry;
use crate::topology::{AgentConfig, SinkConfig, SourceConfig};

/// The metrics a component registered while it was built: a private registry, and the keys
/// it held once published to the agent's.
type MetricKeys = Vec<(ComponentType, String)>;

/// A running source: polled by a runner thread, or driving itself.
enum RunningSource {
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

struct RunningChannel {
    channel: ChannelRef,
    spec: Arc<dyn ChannelSpec>,
    metrics: MetricKeys,
}

struct Running<T> {
    unit: T,
    metrics: MetricKeys,
}

/// A source whose hooks are built; the source itself is made and started in the swap, after
/// the one it replaces stopped (it may reuse its port, position file or consumer group).
struct PreparedSource {
    config: SourceConfig,
    processor: Arc<ChannelProcessor>,
    staged: Arc<Registry>,
}

struct PreparedRunner {
    name: String,
    processor: Box<dyn SinkProcessor>,
    staged: Arc<Registry>,
}

struct PreparedChannel {
    channel: ChannelRef,
    spec: Arc<dyn ChannelSpec>,
    staged: Arc<Registry>,
}

pub struct Agent {
    registry: Arc<Registry>,
    config: AgentConfig,
    channels: BTreeMap<String, RunningChannel>,
    sources: BTreeMap<String, Running<RunningSource>>,
    runners: BTreeMap<RunnerKey, Running<SinkRunner>>,
}

/// Copies a private registry's entries into the agent's; returns their keys.
fn publish(registry: &Registry, staged: &Registry) -> MetricKeys {
    let mut keys = Vec::new();
    for (kind, name, set) in staged.entries() {
        registry.register(kind, &name, set);
        keys.push((kind, name));
    }
    keys
}

fn unpublish(registry: &Registry, keys: &MetricKeys) {
    for (kind, name) in keys {
        registry.unregister(*kind, name);
    }
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

    fn apply(&mut self, new: AgentConfig) -> Result<(), BuildError> {
        let old = std::mem::replace(&mut self.config, new.clone());
        let diff = ConfigDiff::between(&old, &new);
        let prepared = match self.prepare(&new, &diff) {
            Ok(p) => p,
            Err(e) => {
                self.config = old;
                return Err(e);
            }
        };
        let mut swapped = Swapped::default();
        match self.swap(&new, &diff, prepared, &mut swapped) {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e,
                    "Reload failed while swapping components; restoring the previous ones.");
                self.roll_back(&old, swapped);
                self.config = old;
                Err(e)
            }
        }
    }

    /// Phase 1: builds what can be built while the old pipeline runs.
    fn prepare(&self, new: &AgentConfig, diff: &ConfigDiff) -> Result<Prepared, BuildError> {
        let mut p = Prepared::default();
        // Directories held by durable channels that stop in this reload.
        let held: Vec<PathBuf> = diff
            .channels
            .stopping()
            .filter_map(|n| self.channels.get(n))
            .flat_map(|c| c.spec.dirs())
            .collect();
        for name in diff.channels.starting() {
            let Some(c) = new.channels.iter().find(|c| &c.name == name) else {
                continue;
            };
            if c.spec.dirs().iter().any(|d| held.contains(d)) {
                p.deferred_channels.push(name.clone());
                continue;
            }
            let ch = open_channel(name, &c.spec)?;
            p.channels.insert(name.clone(), ch);
        }
        let view = self.channel_view(&p.channels);
        for name in diff.sources.starting() {
            let Some(s) = new.sources.iter().find(|s| &s.name == name) else {
                continue;
            };
            if s.channels.iter().any(|c| p.deferred_channels.contains(c)) {
                p.deferred_sources.push(name.clone());
                continue;
            }
            let ps = build_source_hooks(s, &view)?;
            p.sources.push(ps);
        }
        for key in diff.runners.starting() {
            let reads = diff::runner_units(new)
                .get(key)
                .map(|u| u.channels.clone())
                .unwrap_or_default();
            if reads.iter().any(|c| p.deferred_channels.contains(c)) {
                p.deferred_runners.push(key.clone());
                continue;
            }
            let r = build_runner(new, key, &view)?;
            p.runners.push((key.clone(), r));
        }
        Ok(p)
    }

    /// The channels the new config's components read: prepared ones, else running ones.
    fn channel_view(
        &self,
        prepared: &BTreeMap<String, PreparedChannel>,
    ) -> BTreeMap<String, ChannelRef> {
        let mut view: BTreeMap<String, ChannelRef> = self
            .channels
            .iter()
            .map(|(n, c)| (n.clone(), c.channel.clone()))
            .collect();
        for (n, c) in prepared {
            view.insert(n.clone(), c.channel.clone());
        }
        view
    }

    /// Phase 2: stops what is replaced and starts what was prepared. On error `done` holds
    /// what was done so far, for [`Self::roll_back`].
    fn swap(
        &mut self,
        new: &AgentConfig,
        diff: &ConfigDiff,
        mut p: Prepared,
        done: &mut Swapped,
    ) -> Result<(), BuildError> {
        for name in diff.sources.stopping() {
            if let Some(r) = self.sources.remove(name) {
                r.unit.stop();
                done.stopped_sources.push((name.clone(), r.metrics));
            }
        }
        for key in diff.runners.stopping() {
            if let Some(r) = self.runners.remove(key) {
                r.unit.stop_now();
                done.stopped_runners.push((key.clone(), r.metrics));
            }
        }
        // Durable channels that are replaced or removed close now; memory ones stay open
        // (holding their events) until the new pipeline runs.
        let stopping: Vec<String> = diff.channels.stopping().cloned().collect();
        for name in &stopping {
            let durable = self
                .channels
                .get(name)
                .is_some_and(|c| c.channel.is_durable());
            if durable && let Some(c) = self.channels.remove(name) {
                c.channel.close();
                done.closed_durable.push((name.clone(), c));
            }
        }
        for name in std::mem::take(&mut p.deferred_channels) {
            let Some(c) = new.channels.iter().find(|c| c.name == name) else {
                continue;
            };
            let ch = open_channel(&name, &c.spec)?;
            p.channels.insert(name, ch);
        }
        // From here the new channels are live: what new components put into them must go
        // back to the old channels if the swap fails.
        let view = {
            let mut v: BTreeMap<String, ChannelRef> = self
                .channels
                .iter()
                .filter(|(n, _)| !stopping.contains(n))
                .map(|(n, c)| (n.clone(), c.channel.clone()))
                .collect();
            for (n, c) in &p.channels {
                v.insert(n.clone(), c.channel.clone());
            }
            v
        };
        done.new_channels = std::mem::take(&mut p.channels);
        for name in std::mem::take(&mut p.deferred_sources) {
            let Some(s) = new.sources.iter().find(|s| s.name == name) else {
                continue;
            };
            let ps = build_source_hooks(s, &view)?;
            p.sources.push(ps);
        }
        for key in std::mem::take(&mut p.deferred_runners) {
            let r = build_runner(new, &key, &view)?;
            p.runners.push((key, r));
        }
        for (key, r) in std::mem::take(&mut p.runners) {
            let runner =
                SinkRunner::start(&r.name, r.processor).map_err(|source| BuildError::Thread {
                    component: key.to_string(),
                    source,
                })?;
            done.started_runners.push((key, runner, r.staged));
        }
        for ps in std::mem::take(&mut p.sources) {
            let name = ps.config.name.clone();
            let running = start_source(ps.config.clone(), ps.processor, &ps.staged)?;
            done.started_sources.push((name, running, ps.staged));
        }
        // Success: publish metrics, move memory events, retire what is gone.
        for (_, keys) in &done.stopped_sources {
            unpublish(&self.registry, keys);
        }
        for (_, keys) in &done.stopped_runners {
            unpublish(&self.registry, keys);
        }
        for (name, c) in std::mem::take(&mut done.closed_durable) {
            unpublish(&self.registry, &c.metrics);
            // A successor on the same directories replays them; otherwise they stay on disk.
            let replayed = done
                .new_channels
                .get(&name)
                .is_some_and(|n| n.spec.dirs() == c.spec.dirs());
            if !replayed && c.channel.size() > 0 {
                tracing::warn!(channel = %name, events = c.channel.size(),
                    "A removed or replaced file channel kept its events on disk; a file channel \
                     on the same directories drains them.");
            }
        }
        let mut new_channels = std::mem::take(&mut done.new_channels);
        for name in &stopping {
            let Some(c) = self.channels.remove(name) else {
                continue;
            };
            unpublish(&self.registry, &c.metrics);
            let successor = new_channels.get(name).map(|n| n.channel.clone());
            retire_memory_channel(name, c.channel.as_ref(), successor.as_deref());
        }
        for (name, c) in std::mem::take(&mut new_channels) {
            let metrics = publish(&self.registry, &c.staged);
            self.channels.insert(
                name,
                RunningChannel {
                    channel: c.channel,
                    spec: c.spec,
                    metrics,
                },
            );
        }
        for (key, unit, staged) in std::mem::take(&mut done.started_runners) {
            let metrics = publish(&self.registry, &staged);
            self.runners.insert(key, Running { unit, metrics });
        }
        for (name, unit, staged) in std::mem::take(&mut done.started_sources) {
            let metrics = publish(&self.registry, &staged);
            self.sources.insert(name, Running { unit, metrics });
        }
        Ok(())
    }

    /// Undoes a failed swap: the new components stop, the old ones come back.
    fn roll_back(&mut self, old: &AgentConfig, mut done: Swapped) {
        for (_, s, _) in std::mem::take(&mut done.started_sources) {
            s.stop();
        }
        for (_, r, _) in std::mem::take(&mut done.started_runners) {
            r.stop_now();
        }
        // Events new sources put into new channels go back where the old sources would have
        // put them; new channels close.
        for (name, c) in std::mem::take(&mut done.new_channels) {
            if let Some(old_ch) = self.channels.get(&name) {
                let moved = transfer(c.channel.as_ref(), old_ch.channel.as_ref());
                if moved > 0 {
                    tracing::info!(channel = %name, events = moved,
                        "Moved events back to the previous channel.");
                }
            }
            c.channel.close();
        }
        for (name, c) in std::mem::take(&mut done.closed_durable) {
            match open_channel(&name, &c.spec) {
                Ok(reopened) => {
                    let metrics = publish(&self.registry, &reopened.staged);
                    self.channels.insert(
                        name,
                        RunningChannel {
                            channel: reopened.channel,
                            spec: reopened.spec,
                            metrics,
                        },
                    );
                }
                Err(e) => tracing::error!(error = %e,
                    "Cannot reopen the previous channel after a failed reload; its events stay \
                     on disk for the next start."),
            }
        }
        let view: BTreeMap<String, ChannelRef> = self
            .channels
            .iter()
            .map(|(n, c)| (n.clone(), c.channel.clone()))
            .collect();
        for (key, _) in std::mem::take(&mut done.stopped_runners) {
            let restarted = build_runner(old, &key, &view).and_then(|r| {
                SinkRunner::start(&r.name, r.processor)
                    .map(|unit| (unit, r.staged))
                    .map_err(|source| BuildError::Thread {
                        component: key.to_string(),
                        source,
                    })
            });
            match restarted {
                Ok((unit, staged)) => {
                    let metrics = publish(&self.registry, &staged);
                    self.runners.insert(key, Running { unit, metrics });
                }
                Err(e) => tracing::error!(error = %e,
                    "Cannot restart the previous sink runner after a failed reload."),
            }
        }
        for (name, _) in std::mem::take(&mut done.stopped_sources) {
            let Some(s) = old.sources.iter().find(|s| s.name == name) else {
                continue;
            };
            let restarted = build_source_hooks(s, &view).and_then(|ps| {
                start_source(ps.config, ps.processor, &ps.staged).map(|u| (u, ps.staged))
            });
            match restarted {
                Ok((unit, staged)) => {
                    let metrics = publish(&self.registry, &staged);
                    self.sources.insert(name, Running { unit, metrics });
                }
                Err(e) => tracing::error!(error = %e,
                    "Cannot restart the previous source after a failed reload."),
            }
        }
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

/// What [`Agent::prepare`] built.
#[derive(Default)]
struct Prepared {
    channels: BTreeMap<String, PreparedChannel>,
    deferred_channels: Vec<String>,
    sources: Vec<PreparedSource>,
    deferred_sources: Vec<String>,
    runners: Vec<(RunnerKey, PreparedRunner)>,
    deferred_runners: Vec<RunnerKey>,
}

/// Dropping what was prepared (a failed reload) closes the prepared channels, still empty,
/// which releases their files; the swap moves the channels it starts out first.
impl Drop for Prepared {
    fn drop(&mut self) {
        for (_, c) in std::mem::take(&mut self.channels) {
            c.channel.close();
        }
    }
}

/// What a swap did before it failed.
#[derive(Default)]
struct Swapped {
    stopped_sources: Vec<(String, MetricKeys)>,
    stopped_runners: Vec<(RunnerKey, MetricKeys)>,
    closed_durable: Vec<(String, RunningChannel)>,
    new_channels: BTreeMap<String, PreparedChannel>,
    started_runners: Vec<(RunnerKey, SinkRunner, Arc<Registry>)>,
    started_sources: Vec<(String, RunningSource, Arc<Registry>)>,
}

fn open_channel(name: &str, spec: &Arc<dyn ChannelSpec>) -> Result<PreparedChannel, BuildError> {
    let channel = spec
        .open(name)
        .map_err(|e| BuildError::component(format!("channel {name}"), e))?;
    let staged = Registry::new();
    staged.register(ComponentType::Channel, name, channel.metric_set());
    Ok(PreparedChannel {
        channel,
        spec: spec.clone(),
        staged,
    })
}

/// Moves a replaced memory channel's events to its successor (if any) and closes it; what does
/// not fit is discarded with a warning (a reload that shrinks a memory channel).
fn retire_memory_channel(name: &str, old: &dyn Channel, successor: Option<&dyn Channel>) {
    old.close();
    if old.is_durable() {
        return;
    }
    let moved = successor.map_or(0, |s| transfer(old, s));
    let lost = old.size();
    if moved > 0 {
        tracing::info!(channel = %name, events = moved, "Moved events to the reconfigured channel.");
    }
    if lost > 0 {
        tracing::warn!(channel = %name, events = lost,
            "Events left in a removed or too small channel were discarded.");
    }
}

fn lookup(view: &BTreeMap<String, ChannelRef>, name: &str) -> Result<ChannelRef, BuildError> {
    view.get(name)
        .cloned()
        .ok_or_else(|| BuildError::ChannelNotRunning(name.to_string()))
}

/// Builds a source's interceptors, selector and channel processor (guests compile here).
fn build_source_hooks(
    s: &SourceConfig,
    view: &BTreeMap<String, ChannelRef>,
) -> Result<PreparedSource, BuildError> {
    let staged = Registry::new();
    let component = format!("source {}", s.name);
    let channels = s
        .channels
        .iter()
        .map(|c| lookup(view, c))
        .collect::<Result<Vec<_>, _>>()?;
    let interceptors = s
        .interceptors
        .iter()
        .map(|i| {
            let cx = BuildContext::new(format!("{}.{}", s.name, i.name), &staged);
            i.interceptor
                .spec
                .build(&cx)
                .map_err(|e| BuildError::component(&component, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let counters = SourceCounters::new();
    staged.register(ComponentType::Source, &s.name, counters.clone());
    let selector = s
        .selector
        .spec
        .build(&BuildContext::new(format!("{}.selector", s.name), &staged))
        .map_err(|e| BuildError::component(&component, e))?;
    let processor = Arc::new(ChannelProcessor::new(
        &s.name,
        InterceptorChain::new(interceptors),
        selector,
        channels,
        counters,
    ));
    Ok(PreparedSource {
        config: s.clone(),
        processor,
        staged,
    })
}

/// Makes the source itself and starts it.
fn start_source(
    s: SourceConfig,
    processor: Arc<ChannelProcessor>,
    staged: &Arc<Registry>,
) -> Result<RunningSource, BuildError> {
    let component = format!("source {}", s.name);
    let cx = SourceContext {
        cx: BuildContext::new(&s.name, staged),
        counters: processor.counters().clone(),
    };
    let instance = s
        .source
        .spec
        .build(&cx)
        .map_err(|e| BuildError::component(&component, e))?;
    match instance {
        SourceInstance::Driven(mut src) => {
            src.start(processor)
                .map_err(|e| BuildError::component(&component, e))?;
            Ok(RunningSource::Driven(src))
        }
        SourceInstance::Polled(source, poll) => {
            SourceRunner::start(&s.name, source, processor, poll)
                .map(RunningSource::Polled)
                .map_err(|e| BuildError::component(&component, e))
        }
    }
}

fn build_slot(
    k: &SinkConfig,
    view: &BTreeMap<String, ChannelRef>,
    staged: &Arc<Registry>,
) -> Result<SinkSlot, BuildError> {
    let counters = SinkCounters::new();
    // A sink with counters of its own registers both under the same name, replacing these.
    staged.register(ComponentType::Sink, &k.name, counters.clone());
    let cx = SinkContext {
        cx: BuildContext::new(&k.name, staged),
        counters: counters.clone(),
    };
    let sink = k
        .sink
        .spec
        .build(&cx)
        .map_err(|e| BuildError::component(format!("sink {}", k.name), e))?;
    let channel = lookup(view, &k.channel)?;
    Ok(SinkSlot::with_counters(
        &k.name,
        sink,
        channel,
        k.sink.spec.batch_size(),
        counters,
    ))
}

/// Builds a sink runner's processor (a group's selector guest compiles here), not started.
fn build_runner(
    config: &AgentConfig,
    key: &RunnerKey,
    view: &BTreeMap<String, ChannelRef>,
) -> Result<PreparedRunner, BuildError> {
    let staged = Registry::new();
    let sink = |n: &str| {
        config
            .sinks
            .iter()
            .find(|k| k.name == n)
            .ok_or_else(|| BuildError::NotConfigured(format!("sink {n}")))
    };
    let (name, members, processor) = match key {
        RunnerKey::Sink(n) => (n.clone(), vec![n.clone()], registry::default_processor()),
        RunnerKey::Group(g) => {
            let Some(gc) = config.sinkgroups.iter().find(|x| &x.name == g) else {
                return Err(BuildError::NotConfigured(format!("sinkgroup {g}")));
            };
            (g.clone(), gc.sinks.clone(), gc.processor.clone())
        }
    };
    let slots = members
        .iter()
        .map(|n| sink(n).and_then(|k| build_slot(k, view, &staged)))
        .collect::<Result<Vec<_>, _>>()?;
    let cx = BuildContext::new(format!("{name}.processor"), &staged);
    let processor: Box<dyn SinkProcessor> = processor
        .spec
        .build(&name, slots, &cx)
        .map_err(|e| BuildError::component(key.to_string(), e))?;
    Ok(PreparedRunner {
        name,
        processor,
        staged,
    })
}

/// Moves every event from `from` to `to` in transactions; returns how many moved.
fn transfer(from: &dyn Channel, to: &dyn Channel) -> usize {
    let mut moved = 0;
    let batch = from.transaction_capacity().min(to.transaction_capacity());
    loop {
        let Ok(take) = TakeTransaction::begin(from, batch, Duration::ZERO) else {
            break;
        };
        if take.is_empty() {
            break;
        }
        let put = PutTransaction::with_events(to, take.events().to_vec());
        match put.and_then(|p| p.commit()) {
            Ok(()) => {
                moved += take.len();
                if take.commit().is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    moved
}
