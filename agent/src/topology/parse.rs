//! Parsing each listed component through the registry, collecting every error.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    AgentConfig, ChannelConfig, DeadLetterConfig, SinkConfig, SinkGroupConfig, SourceConfig,
};
use crate::config::{ConfigError, ConfigErrors, Props};
use crate::pipeline::SelectorSpec;
use crate::registry::{self, InterceptorConfig, Typed};
use crate::tenants::{TenantRouterSpec, TenantsConfig};

/// The state of one parse: the agent's keys, the component lists, and what was found wrong.
pub(super) struct Builder {
    pub file: PathBuf,
    pub agent: String,
    pub top: Props,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<String>,
    pub lists: Lists,
}

/// `a1.sources`, `a1.channels`, `a1.sinks`, `a1.sinkgroups`, `a1.tenants` as written.
#[derive(Clone)]
pub(super) struct Lists {
    pub sources: Vec<String>,
    pub channels: Vec<String>,
    pub sinks: Vec<String>,
    pub sinkgroups: Vec<String>,
    pub tenants: Vec<String>,
}

impl Builder {
    pub fn new(file: &Path, agent: &str, top: &Props) -> Self {
        let lists = Lists {
            sources: top.list("sources"),
            channels: top.list("channels"),
            sinks: top.list("sinks"),
            sinkgroups: top.list("sinkgroups"),
            tenants: top.list("tenants"),
        };
        Self {
            file: file.to_path_buf(),
            agent: agent.to_string(),
            top: top.clone(),
            errors: Vec::new(),
            warnings: Vec::new(),
            lists,
        }
    }

    pub fn collect<T>(&mut self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.errors.push(e)).ok()
    }

    /// Every listed component, parsed; those with errors are left out (the errors are kept).
    pub fn topology(&mut self) -> AgentConfig {
        let lists = self.lists.clone();
        if lists.channels.is_empty() {
            let e = self
                .top
                .error("channels", "at least one channel is required");
            self.errors.push(e);
        }
        let channels = lists
            .channels
            .iter()
            .filter_map(|n| self.channel(n))
            .collect();
        let known_channels: BTreeSet<String> = lists.channels.iter().cloned().collect();
        let tenants = self.tenants(&lists.tenants);
        let sources = lists
            .sources
            .iter()
            .filter_map(|n| self.source(n, &known_channels, tenants.as_ref()))
            .collect();
        let sinks = lists
            .sinks
            .iter()
            .filter_map(|n| self.sink(n, &known_channels))
            .collect();
        let known_sinks: BTreeSet<String> = lists.sinks.iter().cloned().collect();
        let mut grouped = BTreeMap::new();
        let sinkgroups = lists
            .sinkgroups
            .iter()
            .filter_map(|n| self.group(n, &known_sinks, &mut grouped))
            .collect();
        AgentConfig {
            agent: self.agent.clone(),
            file: self.file.clone(),
            origins: Vec::new(),
            sources,
            channels,
            sinks,
            sinkgroups,
            tenants,
            warnings: Vec::new(),
            secrets: Vec::new(),
        }
    }

    /// The config, or every error sorted by line.
    pub fn finish(mut self, mut config: AgentConfig) -> Result<AgentConfig, ConfigErrors> {
        if !self.errors.is_empty() {
            self.errors.sort_by_key(|e| match e {
                ConfigError::Invalid { line, .. } => *line,
                _ => 0,
            });
            return Err(ConfigErrors(self.errors));
        }
        config.warnings = self.warnings;
        Ok(config)
    }

    fn warn_unused(&mut self, p: &Props) {
        for (key, at) in p.unused() {
            self.warnings
                .push(format!("{at}: {key}: unknown key, ignored"));
        }
    }

    fn not_listed(&self, what: &str, name: &str) -> String {
        format!("{what} `{name}` is not listed in {}.{what}s", self.agent)
    }

    fn channel(&mut self, name: &str) -> Option<ChannelConfig> {
        let p = self.top.component(&format!("channels.{name}."), "channels");
        let entry = self.collect(registry::resolve(registry::CHANNELS, &p, "channel"))?;
        let spec = self.collect((entry.parse)(&p))?;
        self.warn_unused(&p);
        Some(ChannelConfig {
            name: name.to_string(),
            kind: entry.kind,
            spec,
            settings: p.settings(),
            raw: p.raw(),
        })
    }

    fn tenants(&mut self, names: &[String]) -> Option<Arc<TenantsConfig>> {
        for n in names.iter().filter(|n| n.contains('.')) {
            // A dot would make `a1.tenants.<name>.*` keys ambiguous.
            let e = self
                .top
                .error("tenants", format!("tenant name `{n}` may not contain `.`"));
            self.errors.push(e);
        }
        if names.is_empty() {
            return None;
        }
        let parsed = TenantsConfig::from_props(&self.top.component("tenants.", "tenants"), names);
        self.collect(parsed).map(Arc::new)
    }

    fn source(
        &mut self,
        name: &str,
        known: &BTreeSet<String>,
        tenants: Option<&Arc<TenantsConfig>>,
    ) -> Option<SourceConfig> {
        let p = self.top.component(&format!("sources.{name}."), "sources");
        let source = self
            .collect(registry::resolve(registry::SOURCES, &p, "source"))
            .and_then(|e| {
                let spec = self.collect((e.parse)(&p))?;
                Some(Typed { kind: e.kind, spec })
            });
        let channels = p.list("channels");
        if channels.is_empty() {
            self.errors
                .push(p.error("channels", "a source needs at least one channel"));
        }
        for c in channels.iter().filter(|c| !known.contains(*c)) {
            self.errors
                .push(p.error("channels", self.not_listed("channel", c)));
        }
        let selector = self.source_selector(&p, &channels, tenants);
        let mut interceptors = Vec::new();
        for iname in p.list("interceptors") {
            let ip = p.sub(&format!("interceptors.{iname}."));
            if let Some(interceptor) = self.collect(registry::interceptor(&ip)) {
                interceptors.push(InterceptorConfig {
                    name: iname,
                    interceptor,
                });
            }
        }
        let dead_letter = self.dead_letter(&p, known, &interceptors);
        self.warn_unused(&p);
        Some(SourceConfig {
            name: name.to_string(),
            source: source?,
            channels,
            selector: selector?,
            interceptors,
            dead_letter,
            settings: p.settings(),
            raw: p.raw(),
        })
    }

    /// A source's `deadLetter.*`; a hook with `on-error = dead-letter` needs the channel.
    fn dead_letter(
        &mut self,
        p: &Props,
        known: &BTreeSet<String>,
        interceptors: &[InterceptorConfig],
    ) -> Option<DeadLetterConfig> {
        let channel = p
            .get("deadLetter.channel")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        let unrouted = self.collect(p.bool("deadLetter.unrouted", true));
        let hooks = interceptors
            .iter()
            .map(|i| format!("interceptors.{}.on-error", i.name))
            .chain(["selector.on-error".to_string()]);
        for key in hooks {
            if channel.is_none() && p.get(&key).is_some_and(|v| v.trim() == "dead-letter") {
                self.errors.push(p.error(
                    &key,
                    "`dead-letter` needs the source's deadLetter.channel (the channel the \
                     faulted batches go to)",
                ));
            }
        }
        let channel = channel?;
        if channel.split_whitespace().count() != 1 {
            self.errors
                .push(p.error("deadLetter.channel", "names exactly one channel"));
            return None;
        }
        if !known.contains(&channel) {
            self.errors
                .push(p.error("deadLetter.channel", self.not_listed("channel", &channel)));
        }
        Some(DeadLetterConfig {
            channel,
            unrouted: unrouted.unwrap_or(true),
        })
    }

    /// A source's selector: one of the registry's, or `tenant`, which routes by the agent's
    /// `a1.tenants` and so is resolved here, where those are known.
    fn source_selector(
        &mut self,
        p: &Props,
        channels: &[String],
        tenants: Option<&Arc<TenantsConfig>>,
    ) -> Option<Typed<dyn SelectorSpec>> {
        let sp = p.sub("selector.");
        let found = self.collect(registry::resolve_or(
            registry::SELECTORS,
            &sp,
            registry::DEFAULT_SELECTOR,
            &[TenantRouterSpec::KIND],
        ))?;
        match found {
            Ok(entry) => {
                let spec = self.collect((entry.parse)(&sp, channels))?;
                Some(Typed {
                    kind: entry.kind,
                    spec,
                })
            }
            Err(_tenant) => {
                let Some(tenants) = tenants else {
                    let e = p.error(
                        "selector.type",
                        format!(
                            "`tenant` routing needs {}.tenants and their keys",
                            self.agent
                        ),
                    );
                    self.errors.push(e);
                    return None;
                };
                Some(Typed {
                    kind: TenantRouterSpec::KIND,
                    spec: Arc::new(TenantRouterSpec {
                        tenants: tenants.clone(),
                        channels: channels.to_vec(),
                    }),
                })
            }
        }
    }

    fn sink(&mut self, name: &str, known: &BTreeSet<String>) -> Option<SinkConfig> {
        let p = self.top.component(&format!("sinks.{name}."), "sinks");
        let sink = self
            .collect(registry::resolve(registry::SINKS, &p, "sink"))
            .and_then(|e| {
                let spec = self.collect((e.parse)(&p))?;
                Some(Typed { kind: e.kind, spec })
            });
        let channel = match p.get("channel") {
            Some(c) if c.split_whitespace().count() == 1 => {
                if !known.contains(c) {
                    self.errors
                        .push(p.error("channel", self.not_listed("channel", c)));
                }
                Some(c.to_string())
            }
            Some(c) if !c.is_empty() => {
                self.errors
                    .push(p.error("channel", "a sink reads exactly one channel"));
                None
            }
            _ => {
                self.errors.push(p.error("channel", "is required"));
                None
            }
        };
        self.warn_unused(&p);
        Some(SinkConfig {
            name: name.to_string(),
            sink: sink?,
            channel: channel?,
            settings: p.settings(),
            raw: p.raw(),
        })
    }

    fn group(
        &mut self,
        name: &str,
        known: &BTreeSet<String>,
        grouped: &mut BTreeMap<String, String>,
    ) -> Option<SinkGroupConfig> {
        let p = self
            .top
            .component(&format!("sinkgroups.{name}."), "sinkgroups");
        let sinks = p.list("sinks");
        if sinks.is_empty() {
            self.errors
                .push(p.error("sinks", "a sink group needs at least one sink"));
        }
        for s in &sinks {
            if !known.contains(s) {
                self.errors
                    .push(p.error("sinks", self.not_listed("sink", s)));
            } else if let Some(other) = grouped.insert(s.clone(), name.to_string()) {
                self.errors.push(p.error(
                    "sinks",
                    format!("sink `{s}` is already in sink group `{other}`"),
                ));
            }
        }
        let processor = self.collect(registry::processor(&p.sub("processor."), &sinks));
        self.warn_unused(&p);
        Some(SinkGroupConfig {
            name: name.to_string(),
            sinks,
            processor: processor?,
            settings: p.settings(),
            raw: p.raw(),
        })
    }
}
