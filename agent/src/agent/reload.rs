//! Start and reload: prepare what the new config adds or changes, swap it in, roll back on
//! failure (the phases are described in the header of `super`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::build::{
    PreparedChannel, PreparedRunner, PreparedSource, build_runner, build_source_hooks,
    open_channel, retire_memory_channel, start_source, transfer,
};
use super::diff::{self, ConfigDiff, RunnerKey};
use super::{Agent, MetricKeys, Running, RunningChannel, RunningSource};
use crate::channels::ChannelRef;
use crate::metrics::Registry;
use crate::pipeline::{BuildError, SinkRunner};
use crate::topology::AgentConfig;

/// Copies a private registry's entries into the agent's; returns their keys.
pub(super) fn publish(registry: &Registry, staged: &Registry) -> MetricKeys {
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
    pub(super) fn apply(&mut self, new: AgentConfig) -> Result<(), BuildError> {
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
        let stopping = self.stop_replaced(diff, done);
        for name in std::mem::take(&mut p.deferred_channels) {
            let Some(c) = new.channels.iter().find(|c| c.name == name) else {
                continue;
            };
            let ch = open_channel(&name, &c.spec)?;
            p.channels.insert(name, ch);
        }
        // From here the new channels are live: what new components put into them must go
        // back to the old channels if the swap fails.
        let mut view: BTreeMap<String, ChannelRef> = self
            .channels
            .iter()
            .filter(|(n, _)| !stopping.contains(n))
            .map(|(n, c)| (n.clone(), c.channel.clone()))
            .collect();
        for (n, c) in &p.channels {
            view.insert(n.clone(), c.channel.clone());
        }
        done.new_channels = std::mem::take(&mut p.channels);
        for name in std::mem::take(&mut p.deferred_sources) {
            let Some(s) = new.sources.iter().find(|s| s.name == name) else {
                continue;
            };
            p.sources.push(build_source_hooks(s, &view)?);
        }
        for key in std::mem::take(&mut p.deferred_runners) {
            let r = build_runner(new, &key, &view)?;
            p.runners.push((key, r));
        }
        Self::start_prepared(p, done)?;
        self.commit_swap(&stopping, done);
        Ok(())
    }

    /// Stops the sources and runners being replaced or removed, and closes the durable
    /// channels among the channels that stop (memory ones stay open, holding their events,
    /// until the new pipeline runs). Returns the channels that stop.
    fn stop_replaced(&mut self, diff: &ConfigDiff, done: &mut Swapped) -> Vec<String> {
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
        stopping
    }

    /// Starts the prepared runners, then the prepared sources (so a source's first batch
    /// finds its sinks running).
    fn start_prepared(mut p: Prepared, done: &mut Swapped) -> Result<(), BuildError> {
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
        Ok(())
    }

    /// The swap succeeded: publishes the new metrics, moves memory events to their
    /// successors, retires what is gone.
    fn commit_swap(&mut self, stopping: &[String], done: &mut Swapped) {
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
        let new_channels = std::mem::take(&mut done.new_channels);
        for name in stopping {
            let Some(c) = self.channels.remove(name) else {
                continue;
            };
            unpublish(&self.registry, &c.metrics);
            let successor = new_channels.get(name).map(|n| n.channel.clone());
            retire_memory_channel(name, c.channel.as_ref(), successor.as_deref());
        }
        for (name, c) in new_channels {
            let metrics = publish(&self.registry, &c.staged);
            let running = RunningChannel {
                channel: c.channel,
                spec: c.spec,
                metrics,
            };
            self.channels.insert(name, running);
        }
        for (key, unit, staged) in std::mem::take(&mut done.started_runners) {
            let metrics = publish(&self.registry, &staged);
            self.runners.insert(key, Running { unit, metrics });
        }
        for (name, unit, staged) in std::mem::take(&mut done.started_sources) {
            let metrics = publish(&self.registry, &staged);
            self.sources.insert(name, Running { unit, metrics });
        }
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
}

/// What [`Agent::prepare`] built.
#[derive(Default)]
pub(super) struct Prepared {
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
pub(super) struct Swapped {
    stopped_sources: Vec<(String, MetricKeys)>,
    stopped_runners: Vec<(RunnerKey, MetricKeys)>,
    closed_durable: Vec<(String, RunningChannel)>,
    new_channels: BTreeMap<String, PreparedChannel>,
    started_runners: Vec<(RunnerKey, SinkRunner, Arc<Registry>)>,
    started_sources: Vec<(String, RunningSource, Arc<Registry>)>,
}
