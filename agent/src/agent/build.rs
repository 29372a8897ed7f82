//! Building one component from its spec: channels open, sources and sink runners get their
//! hooks (guests compile here), counters go to the private registry of the reload.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::RunningSource;
use super::diff::RunnerKey;
use crate::channels::{Channel, ChannelRef, ChannelSpec, PutTransaction, TakeTransaction};
use crate::metrics::{ComponentType, Registry, SinkCounters, SourceCounters};
use crate::pipeline::{
    BuildContext, BuildError, ChannelProcessor, InterceptorChain, SinkContext, SinkProcessor,
    SinkSlot, SourceContext, SourceInstance, SourceRunner,
};
use crate::registry;
use crate::topology::{AgentConfig, SinkConfig, SourceConfig};

/// A source whose hooks are built; the source itself is made and started in the swap, after
/// the one it replaces stopped (it may reuse its port, position file or consumer group).
pub(super) struct PreparedSource {
    pub(super) config: SourceConfig,
    pub(super) processor: Arc<ChannelProcessor>,
    pub(super) staged: Arc<Registry>,
}

pub(super) struct PreparedRunner {
    pub(super) name: String,
    pub(super) processor: Box<dyn SinkProcessor>,
    pub(super) staged: Arc<Registry>,
}

pub(super) struct PreparedChannel {
    pub(super) channel: ChannelRef,
    pub(super) spec: Arc<dyn ChannelSpec>,
    pub(super) staged: Arc<Registry>,
}

pub(super) fn open_channel(
    name: &str,
    spec: &Arc<dyn ChannelSpec>,
) -> Result<PreparedChannel, BuildError> {
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
pub(super) fn retire_memory_channel(
    name: &str,
    old: &dyn Channel,
    successor: Option<&dyn Channel>,
) {
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
pub(super) fn build_source_hooks(
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
    let dead_letter = s
        .dead_letter
        .as_ref()
        .map(|d| lookup(view, &d.channel))
        .transpose()?;
    let unrouted = s.dead_letter.as_ref().is_some_and(|d| d.unrouted);
    let processor = Arc::new(
        ChannelProcessor::new(
            &s.name,
            InterceptorChain::new(interceptors),
            selector,
            channels,
            counters,
        )
        .with_dead_letter(dead_letter, unrouted),
    );
    Ok(PreparedSource {
        config: s.clone(),
        processor,
        staged,
    })
}

/// Makes the source itself and starts it.
pub(super) fn start_source(
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
pub(super) fn build_runner(
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
pub(super) fn transfer(from: &dyn Channel, to: &dyn Channel) -> usize {
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
