//! The running agent: builds components from an [`AgentConfig`], starts them in Flume's order
//! (channels, then sinks, then sources), reloads a changed config by restarting only what
//! changed, and shuts down with a bounded drain.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::channels::file::FileChannel;
use crate::channels::memory::MemoryChannel;
use crate::channels::processor::ChannelProcessor;
use crate::channels::{ChannelRef, PutTransaction, TakeTransaction};
use crate::config::{AgentConfig, ChannelKind, SinkConfig, SinkKind, SourceConfig, SourceKind};
use crate::interceptors::InterceptorChain;
use crate::metrics::{
    Combined, ComponentType, KafkaSinkCounters, KafkaSourceCounters, Registry, SinkCounters,
    SourceCounters,
};
use crate::selectors::{ChannelSelector, SelectorConfig};
use crate::sinks::avro::AvroSink;
use crate::sinks::file_roll::FileRollSink;
use crate::sinks::group::{DefaultProcessor, SinkProcessor};
use crate::sinks::hdfs::HdfsSink;
use crate::sinks::kafka::KafkaSink;
use crate::sinks::logger::LoggerSink;
use crate::sinks::null::NullSink;
use crate::sinks::runner::SinkRunner;
use crate::sinks::{Sink, SinkSlot};
use crate::sources::avro::AvroSource;
use crate::sources::kafka::KafkaSource;
use crate::sources::seq::SeqSource;
use crate::sources::stress::StressSource;
use crate::sources::taildir::TaildirSource;
use crate::sources::{EventDrivenSource, PollConfig, PollableSource, SourceRunner};
use crate::tenants::TenantRouter;
use crate::wasm::Scope;

#[derive(Debug, thiserror::Error)]
#[error("{component}: {message}")]
pub struct BuildError {
    pub component: String,
    pub message: String,
}

fn spawn_err(component: &str, e: std::io::Error) -> BuildError {
    BuildError {
        component: component.to_string(),
        message: format!("cannot start thread: {e}"),
    }
}

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
}

/// A sink runner's unit: a sink group, or a sink outside any group.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum RunnerKey {
    Group(String),
    Sink(String),
}

pub struct Agent {
    registry: Arc<Registry>,
    config: AgentConfig,
    channels: BTreeMap<String, ChannelRef>,
    sources: BTreeMap<String, RunningSource>,
    runners: BTreeMap<RunnerKey, SinkRunner>,
}

impl Agent {
    pub fn start(config: AgentConfig, registry: Arc<Registry>) -> Result<Self, BuildError> {
        let mut agent = Self {
            registry,
            config: config.clone(),
            channels: BTreeMap::new(),
            sources: BTreeMap::new(),
            runners: BTreeMap::new(),
        };
        for c in &config.channels {
            agent.start_channel(&c.name, &c.kind)?;
        }
        for key in runner_keys(&config) {
            agent.start_runner(&config, &key)?;
        }
        for s in &config.sources {
            agent.start_source(s)?;
        }
        tracing::info!(
            agent = %config.agent,
            sources = config.sources.len(),
            channels = config.channels.len(),
            sinks = config.sinks.len(),
            "Agent started."
        );
        Ok(agent)
    }

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    fn start_channel(&mut self, name: &str, kind: &ChannelKind) -> Result<(), BuildError> {
        let ch: ChannelRef = match kind {
            ChannelKind::Memory(c) => Arc::new(MemoryChannel::new(name, c.clone())),
            ChannelKind::File(c) => {
                Arc::new(FileChannel::open(name, c.clone()).map_err(|e| BuildError {
                    component: format!("channel {name}"),
                    message: e.to_string(),
                })?)
            }
        };
        self.registry
            .register(ComponentType::Channel, name, ch.metric_set());
        self.channels.insert(name.to_string(), ch);
        Ok(())
    }

    fn channel(&self, name: &str) -> Result<ChannelRef, BuildError> {
        self.channels.get(name).cloned().ok_or_else(|| BuildError {
            component: format!("channel {name}"),
            message: "not running".into(),
        })
    }

    fn start_source(&mut self, s: &SourceConfig) -> Result<(), BuildError> {
        let channels = s
            .channels
            .iter()
            .map(|c| self.channel(c))
            .collect::<Result<Vec<_>, _>>()?;
        let guest_err = |e: crate::wasm::GuestError| BuildError {
            component: format!("source {}", s.name),
            message: e.to_string(),
        };
        let interceptors = s
            .interceptors
            .iter()
            .map(|i| {
                let scope = Scope::new(format!("{}.{}", s.name, i.name), &self.registry);
                i.kind.build(&scope).map_err(guest_err)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let interceptors = InterceptorChain::new(interceptors);
        let counters = SourceCounters::new();
        self.registry
            .register(ComponentType::Source, &s.name, counters.clone());
        let selector: Box<dyn ChannelSelector> = match (&s.selector, &self.config.tenants) {
            (SelectorConfig::Tenant, Some(t)) => Box::new(
                TenantRouter::new(t, &s.channels, &self.registry).map_err(|message| {
                    BuildError {
                        component: format!("source {}", s.name),
                        message,
                    }
                })?,
            ),
            (other, _) => other
                .build(&Scope::new(format!("{}.selector", s.name), &self.registry))
                .map_err(guest_err)?,
        };
        let processor = Arc::new(ChannelProcessor::new(
            &s.name,
            interceptors,
            selector,
            channels,
            counters.clone(),
        ));
        let (source, poll): (Box<dyn PollableSource>, PollConfig) = match &s.kind {
            SourceKind::Avro(c) => {
                let mut src = AvroSource::new(&s.name, c.clone());
                src.start(processor).map_err(|e| BuildError {
                    component: format!("source {}", s.name),
                    message: e.to_string(),
                })?;
                self.sources
                    .insert(s.name.clone(), RunningSource::Driven(Box::new(src)));
                return Ok(());
            }
            SourceKind::Kafka(c) => {
                let kafka = KafkaSourceCounters::new();
                self.registry.register(
                    ComponentType::Source,
                    &s.name,
                    Arc::new(Combined(counters, kafka.clone())),
                );
                (
                    Box::new(KafkaSource::new(&s.name, c.clone(), kafka)),
                    c.poll.clone(),
                )
            }
            SourceKind::Seq(c) => (Box::new(SeqSource::new(c.clone())), c.poll.clone()),
            SourceKind::Stress(c) => (Box::new(StressSource::new(c.clone())), c.poll.clone()),
            SourceKind::Taildir(c) => {
                let source = TaildirSource::new(&s.name, c.clone()).map_err(|e| BuildError {
                    component: format!("source {}", s.name),
                    message: e.to_string(),
                })?;
                (Box::new(source), c.poll.clone())
            }
        };
        let runner = SourceRunner::start(&s.name, source, processor, poll)
            .map_err(|e| spawn_err(&s.name, e))?;
        self.sources
            .insert(s.name.clone(), RunningSource::Polled(runner));
        Ok(())
    }

    fn slot(&self, k: &SinkConfig) -> Result<SinkSlot, BuildError> {
        let counters = SinkCounters::new();
        let mut extra: Option<Arc<KafkaSinkCounters>> = None;
        let (sink, batch): (Box<dyn Sink>, usize) = match &k.kind {
            SinkKind::Avro(c) => (
                Box::new(AvroSink::new(&k.name, c.clone(), counters.clone())),
                c.batch_size,
            ),
            SinkKind::Kafka(c) => {
                let kafka = KafkaSinkCounters::new();
                extra = Some(kafka.clone());
                (
                    Box::new(KafkaSink::new(&k.name, c.clone(), kafka)),
                    c.batch_size,
                )
            }
            SinkKind::Logger(c) => (Box::new(LoggerSink::new(&k.name, c)), c.batch_size),
            SinkKind::Null(c) => (Box::new(NullSink), c.batch_size),
            SinkKind::FileRoll(c) => (
                Box::new(FileRollSink::new(&k.name, c.clone())),
                c.batch_size,
            ),
            SinkKind::Hdfs(c) => (
                Box::new(HdfsSink::new(&k.name, (**c).clone(), counters.clone())),
                c.batch_size,
            ),
        };
        let slot =
            SinkSlot::with_counters(&k.name, sink, self.channel(&k.channel)?, batch, counters);
        match extra {
            Some(kafka) => self.registry.register(
                ComponentType::Sink,
                &k.name,
                Arc::new(Combined(slot.counters.clone(), kafka)),
            ),
            None => self
                .registry
                .register(ComponentType::Sink, &k.name, slot.counters.clone()),
        }
        Ok(slot)
    }

    fn start_runner(&mut self, config: &AgentConfig, key: &RunnerKey) -> Result<(), BuildError> {
        let sink = |n: &str| {
            config
                .sinks
                .iter()
                .find(|k| k.name == n)
                .ok_or_else(|| BuildError {
                    component: format!("sink {n}"),
                    message: "not configured".into(),
                })
        };
        let (name, processor): (String, Box<dyn SinkProcessor>) = match key {
            RunnerKey::Sink(n) => (
                n.clone(),
                Box::new(DefaultProcessor::new(self.slot(sink(n)?)?)),
            ),
            RunnerKey::Group(g) => {
                let Some(gc) = config.sinkgroups.iter().find(|x| &x.name == g) else {
                    return Err(BuildError {
                        component: format!("sinkgroup {g}"),
                        message: "not configured".into(),
                    });
                };
                let slots = gc
                    .sinks
                    .iter()
                    .map(|n| sink(n).and_then(|k| self.slot(k)))
                    .collect::<Result<Vec<_>, _>>()?;
                let scope = Scope::new(format!("{g}.processor"), &self.registry);
                let processor = gc
                    .processor
                    .build(g, slots, &scope)
                    .map_err(|e| BuildError {
                        component: format!("sinkgroup {g}"),
                        message: e.to_string(),
                    })?;
                (g.clone(), processor)
            }
        };
        let runner = SinkRunner::start(&name, processor).map_err(|e| spawn_err(&name, e))?;
        self.runners.insert(key.clone(), runner);
        Ok(())
    }

    /// Applies a new configuration, restarting only the components whose keys (or whose
    /// channels) changed. Events left in a replaced memory channel move to its successor.
    pub fn reload(&mut self, new: AgentConfig) -> Result<(), BuildError> {
        let old = std::mem::replace(&mut self.config, new.clone());
        let changed_channels: BTreeSet<String> = changed(
            old.channels.iter().map(|c| (c.name.clone(), &c.raw)),
            new.channels.iter().map(|c| (c.name.clone(), &c.raw)),
        );
        let mut changed_sources: BTreeSet<String> = changed(
            old.sources.iter().map(|s| (s.name.clone(), &s.raw)),
            new.sources.iter().map(|s| (s.name.clone(), &s.raw)),
        );
        let tenants_changed =
            old.tenants.as_ref().map(|t| &t.raw) != new.tenants.as_ref().map(|t| &t.raw);
        for s in old.sources.iter().chain(&new.sources) {
            let by_tenant = matches!(s.selector, SelectorConfig::Tenant);
            if s.channels.iter().any(|c| changed_channels.contains(c))
                || (by_tenant && tenants_changed)
            {
                changed_sources.insert(s.name.clone());
            }
        }
        let old_units = runner_units(&old);
        let new_units = runner_units(&new);
        let mut changed_units: BTreeSet<RunnerKey> = BTreeSet::new();
        for (key, fp) in old_units.iter().chain(&new_units) {
            let same = old_units.get(key) == Some(fp) && new_units.get(key) == Some(fp);
            let touches = fp.channels.iter().any(|c| changed_channels.contains(c));
            if !same || touches {
                changed_units.insert(key.clone());
            }
        }
        if changed_channels.is_empty() && changed_sources.is_empty() && changed_units.is_empty() {
            tracing::info!("Configuration unchanged after reload.");
            return Ok(());
        }
        tracing::info!(
            channels = ?changed_channels, sources = ?changed_sources, sinks = ?changed_units,
            "Reloading changed components."
        );

        for name in &changed_sources {
            if let Some(r) = self.sources.remove(name) {
                r.stop();
                self.registry.unregister(ComponentType::Source, name);
            }
        }
        for key in &changed_units {
            if let Some(r) = self.runners.remove(key) {
                drop(r);
            }
            if let RunnerKey::Sink(n) = key {
                self.registry.unregister(ComponentType::Sink, n);
            }
        }
        let mut leftovers: BTreeMap<String, ChannelRef> = BTreeMap::new();
        for name in &changed_channels {
            if let Some(ch) = self.channels.remove(name) {
                ch.close();
                self.registry.unregister(ComponentType::Channel, name);
                leftovers.insert(name.clone(), ch);
            }
        }
        for c in new
            .channels
            .iter()
            .filter(|c| changed_channels.contains(&c.name))
        {
            self.start_channel(&c.name, &c.kind)?;
        }
        for (name, old_ch) in leftovers {
            if old_ch.is_durable() {
                // The successor reopens the same files and replays what the old one stored.
                continue;
            }
            let moved = match self.channels.get(&name) {
                Some(new_ch) => transfer(old_ch.as_ref(), new_ch.as_ref()),
                None => 0,
            };
            let lost = old_ch.size();
            if moved > 0 {
                tracing::info!(channel = %name, events = moved, "Moved events to the reconfigured channel.");
            }
            if lost > 0 {
                tracing::warn!(channel = %name, events = lost,
                    "Events left in a removed or too small channel were discarded.");
            }
        }
        for key in runner_keys(&new)
            .into_iter()
            .filter(|k| changed_units.contains(k))
        {
            self.start_runner(&new, &key)?;
        }
        for s in new
            .sources
            .iter()
            .filter(|s| changed_sources.contains(&s.name))
        {
            self.start_source(s)?;
        }
        Ok(())
    }

    /// Stops sources, lets sinks drain for up to `drain`, then closes channels. Returns the
    /// events left in channels per channel.
    pub fn shutdown(mut self, drain: Duration) -> Vec<(String, usize)> {
        for (_, r) in std::mem::take(&mut self.sources) {
            r.stop();
        }
        let deadline = Instant::now() + drain;
        let runners = std::mem::take(&mut self.runners);
        for (_, r) in runners {
            r.drain_until(deadline);
        }
        let mut left = Vec::new();
        for (name, ch) in std::mem::take(&mut self.channels) {
            ch.close();
            left.push((name, ch.size()));
        }
        left
    }
}

fn transfer(from: &dyn crate::channels::Channel, to: &dyn crate::channels::Channel) -> usize {
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

/// Names whose raw keys differ, were added, or were removed.
fn changed<'a>(
    old: impl Iterator<Item = (String, &'a BTreeMap<String, String>)>,
    new: impl Iterator<Item = (String, &'a BTreeMap<String, String>)>,
) -> BTreeSet<String> {
    let old: BTreeMap<_, _> = old.collect();
    let new: BTreeMap<_, _> = new.collect();
    old.keys()
        .chain(new.keys())
        .filter(|k| old.get(*k) != new.get(*k))
        .cloned()
        .collect()
}

fn runner_keys(c: &AgentConfig) -> Vec<RunnerKey> {
    runner_units(c).into_keys().collect()
}

/// What a sink runner depends on: its keys and the channels it reads.
#[derive(Debug, PartialEq, Eq)]
struct UnitPrint {
    raw: Vec<BTreeMap<String, String>>,
    channels: Vec<String>,
}

fn runner_units(c: &AgentConfig) -> BTreeMap<RunnerKey, UnitPrint> {
    let mut units = BTreeMap::new();
    let mut grouped = BTreeSet::new();
    for g in &c.sinkgroups {
        let mut raw = vec![g.raw.clone()];
        let mut channels = Vec::new();
        for n in &g.sinks {
            grouped.insert(n.clone());
            if let Some(k) = c.sinks.iter().find(|k| &k.name == n) {
                raw.push(k.raw.clone());
                channels.push(k.channel.clone());
            }
        }
        units.insert(
            RunnerKey::Group(g.name.clone()),
            UnitPrint { raw, channels },
        );
    }
    for k in c.sinks.iter().filter(|k| !grouped.contains(&k.name)) {
        units.insert(
            RunnerKey::Sink(k.name.clone()),
            UnitPrint {
                raw: vec![k.raw.clone()],
                channels: vec![k.channel.clone()],
            },
        );
    }
    units
}
