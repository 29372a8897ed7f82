//! What a reload changes: a pure comparison of two [`AgentConfig`]s, with no I/O.
//!
//! A component is *changed* when its own keys differ, or when something it depends on is
//! added, changed or removed: a source depends on its channels (and, with the `tenant`
//! selector, on `a1.tenants.*`); a sink runner (one sink, or a sink group with its member
//! sinks) on its keys, its members' keys and the channels they read. Unchanged components keep
//! running untouched through a reload.

use std::collections::{BTreeMap, BTreeSet};

use crate::tenants::TenantRouterSpec;
use crate::topology::AgentConfig;

/// A sink runner's unit: a sink group, or a sink outside any group.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RunnerKey {
    Group(String),
    Sink(String),
}

impl std::fmt::Display for RunnerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Group(g) => write!(f, "sinkgroup {g}"),
            Self::Sink(s) => write!(f, "sink {s}"),
        }
    }
}

/// One kind of component, sorted by what a reload does with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changes<K: Ord> {
    pub added: BTreeSet<K>,
    pub changed: BTreeSet<K>,
    pub removed: BTreeSet<K>,
    pub unchanged: BTreeSet<K>,
}

impl<K: Ord + Clone> Changes<K> {
    fn between<V: PartialEq>(old: &BTreeMap<K, V>, new: &BTreeMap<K, V>) -> Self {
        let mut c = Self {
            added: BTreeSet::new(),
            changed: BTreeSet::new(),
            removed: BTreeSet::new(),
            unchanged: BTreeSet::new(),
        };
        for (k, v) in old {
            match new.get(k) {
                None => c.removed.insert(k.clone()),
                Some(n) if n == v => c.unchanged.insert(k.clone()),
                Some(_) => c.changed.insert(k.clone()),
            };
        }
        for k in new.keys().filter(|k| !old.contains_key(*k)) {
            c.added.insert(k.clone());
        }
        c
    }

    /// Moves an unchanged component to `changed` (a dependency of it changed).
    fn touch(&mut self, k: &K) {
        if self.unchanged.remove(k) {
            self.changed.insert(k.clone());
        }
    }

    /// Components of the old config that stop: changed and removed.
    pub fn stopping(&self) -> impl Iterator<Item = &K> {
        self.changed.iter().chain(&self.removed)
    }

    /// Components of the new config that start: added and changed.
    pub fn starting(&self) -> impl Iterator<Item = &K> {
        self.added.iter().chain(&self.changed)
    }

    pub fn is_quiet(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Everything a reload from `old` to `new` adds, changes, removes and keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigDiff {
    pub channels: Changes<String>,
    pub sources: Changes<String>,
    pub runners: Changes<RunnerKey>,
}

impl ConfigDiff {
    pub fn between(old: &AgentConfig, new: &AgentConfig) -> Self {
        let by_name = |c: &AgentConfig| -> BTreeMap<String, _> {
            c.channels
                .iter()
                .map(|ch| (ch.name.clone(), ch.raw.clone()))
                .collect()
        };
        let channels = Changes::between(&by_name(old), &by_name(new));
        let moved: BTreeSet<&String> = channels
            .added
            .iter()
            .chain(&channels.changed)
            .chain(&channels.removed)
            .collect();

        let source_prints = |c: &AgentConfig| -> BTreeMap<String, _> {
            c.sources
                .iter()
                .map(|s| (s.name.clone(), s.raw.clone()))
                .collect()
        };
        let mut sources = Changes::between(&source_prints(old), &source_prints(new));
        let tenants_changed =
            old.tenants.as_ref().map(|t| &t.raw) != new.tenants.as_ref().map(|t| &t.raw);
        for s in &new.sources {
            let by_tenant = s.selector.kind == TenantRouterSpec::KIND;
            if s.written_channels().any(|c| moved.contains(c)) || (by_tenant && tenants_changed) {
                sources.touch(&s.name);
            }
        }

        let old_units = runner_units(old);
        let new_units = runner_units(new);
        let mut runners = Changes::between(&old_units, &new_units);
        for (key, unit) in &new_units {
            if unit.channels.iter().any(|c| moved.contains(c)) {
                runners.touch(key);
            }
        }
        Self {
            channels,
            sources,
            runners,
        }
    }

    pub fn is_quiet(&self) -> bool {
        self.channels.is_quiet() && self.sources.is_quiet() && self.runners.is_quiet()
    }
}

/// What a sink runner depends on: its keys and the channels it reads.
#[derive(Debug, PartialEq, Eq)]
pub struct UnitPrint {
    raw: Vec<BTreeMap<String, String>>,
    pub channels: Vec<String>,
}

/// The sink runners of a config: one per sink group, one per sink outside every group.
pub fn runner_units(c: &AgentConfig) -> BTreeMap<RunnerKey, UnitPrint> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Properties;
    use crate::topology::AgentConfig;

    fn config(text: &str) -> AgentConfig {
        let props = Properties::parse(std::path::Path::new("test.conf"), text);
        match AgentConfig::from_properties(&props, "a1") {
            Ok(c) => c,
            Err(e) => panic!("test config is invalid: {e}"),
        }
    }

    const BASE: &str = "\
a1.sources = r1 r2
a1.channels = c1 c2
a1.sinks = k1 k2 k3
a1.sinkgroups = g1
a1.sources.r1.type = seq
a1.sources.r1.channels = c1
a1.sources.r2.type = seq
a1.sources.r2.channels = c2
a1.channels.c1.type = memory
a1.channels.c2.type = memory
a1.sinks.k1.type = null
a1.sinks.k1.channel = c1
a1.sinks.k2.type = null
a1.sinks.k2.channel = c2
a1.sinks.k3.type = null
a1.sinks.k3.channel = c2
a1.sinkgroups.g1.sinks = k2 k3
a1.sinkgroups.g1.processor.type = failover
";

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn identical_configs_change_nothing() {
        let d = ConfigDiff::between(&config(BASE), &config(BASE));
        assert!(d.is_quiet());
        assert_eq!(d.channels.unchanged, set(&["c1", "c2"]));
        assert_eq!(d.sources.unchanged, set(&["r1", "r2"]));
        assert_eq!(d.runners.unchanged.len(), 2);
    }

    #[test]
    fn a_changed_channel_restarts_its_source_and_sink_only() {
        let new = BASE.replace(
            "a1.channels.c1.type = memory",
            "a1.channels.c1.type = memory\na1.channels.c1.capacity = 5000",
        );
        let d = ConfigDiff::between(&config(BASE), &config(&new));
        assert_eq!(d.channels.changed, set(&["c1"]));
        assert_eq!(d.channels.unchanged, set(&["c2"]));
        assert_eq!(d.sources.changed, set(&["r1"]));
        assert_eq!(d.sources.unchanged, set(&["r2"]));
        assert_eq!(
            d.runners.changed,
            [RunnerKey::Sink("k1".into())].into_iter().collect()
        );
        assert!(d.runners.unchanged.contains(&RunnerKey::Group("g1".into())));
    }

    #[test]
    fn a_group_member_change_restarts_the_group() {
        let new = BASE.replace("a1.sinks.k3.type = null", "a1.sinks.k3.type = logger");
        let d = ConfigDiff::between(&config(BASE), &config(&new));
        assert_eq!(
            d.runners.changed,
            [RunnerKey::Group("g1".into())].into_iter().collect()
        );
        assert!(d.channels.is_quiet());
        assert!(d.sources.is_quiet());
    }

    #[test]
    fn added_and_removed_components_are_reported_as_such() {
        let new = BASE
            .replace("a1.channels = c1 c2", "a1.channels = c1 c2 c3")
            .replace(
                "a1.sources.r1.channels = c1",
                "a1.sources.r1.channels = c1 c3",
            )
            .replace("a1.sinks = k1 k2 k3", "a1.sinks = k2 k3")
            .replace("a1.sinks.k1.type = null\na1.sinks.k1.channel = c1\n", "")
            + "a1.channels.c3.type = memory\n";
        let d = ConfigDiff::between(&config(BASE), &config(&new));
        assert_eq!(d.channels.added, set(&["c3"]));
        assert_eq!(d.sources.changed, set(&["r1"]));
        assert_eq!(
            d.runners.removed,
            [RunnerKey::Sink("k1".into())].into_iter().collect()
        );
        assert_eq!(d.channels.stopping().count(), 0);
        assert_eq!(d.channels.starting().count(), 1);
    }
}
