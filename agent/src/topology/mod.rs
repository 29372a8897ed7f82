//! The topology of one agent: which sources, channels, sinks, sink groups and tenants exist,
//! what type each is, and how they connect.
//!
//! [`AgentConfig::from_properties`] is pure: it resolves every component's `type` through the
//! registry, parses its keys into a spec, checks the cross-references (channels named by
//! sources and sinks, sinks named by groups, tenants' channels) and collects every error of the
//! file at once. Unknown keys come back as warnings, because Flume ignores them and existing
//! configs rely on that. `describe` renders the result for `sluice check`, `graph` as
//! Graphviz DOT for `sluice graph`.

mod checks;
mod describe;
mod graph;
mod parse;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::channels::ChannelSpec;
use crate::config::sources::ConfigSources;
use crate::config::{ConfigError, ConfigErrors, Origin, Properties, Props};
use crate::pipeline::{ProcessorSpec, SelectorSpec, SinkSpec, SourceSpec};
use crate::registry::{InterceptorConfig, Typed};
use crate::tenants::TenantsConfig;

pub use describe::Setting;

/// A source: its type, channels, selector and interceptor chain.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    pub name: String,
    pub source: Typed<dyn SourceSpec>,
    pub channels: Vec<String>,
    /// `selector.*`; `kind` is `tenant` for a source routing by `a1.tenants`.
    pub selector: Typed<dyn SelectorSpec>,
    pub interceptors: Vec<InterceptorConfig>,
    /// `deadLetter.*`: where the hooks set aside what they reject, route nowhere or fault on.
    pub dead_letter: Option<DeadLetterConfig>,
    /// The effective values that differ from the defaults, for `sluice check`.
    pub settings: Vec<Setting>,
    /// All keys as written, for change detection on reload.
    pub raw: BTreeMap<String, String>,
}

/// A source's `deadLetter.channel` and `deadLetter.unrouted`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterConfig {
    pub channel: String,
    /// Events a router sends to no channel go to the dead-letter channel (default true).
    pub unrouted: bool,
}

impl SourceConfig {
    /// Every channel the source puts into: its `channels`, then its dead-letter channel.
    pub fn written_channels(&self) -> impl Iterator<Item = &String> {
        self.channels
            .iter()
            .chain(self.dead_letter.as_ref().map(|d| &d.channel))
    }
}

#[derive(Clone, Debug)]
pub struct ChannelConfig {
    pub name: String,
    pub kind: &'static str,
    pub spec: Arc<dyn ChannelSpec>,
    pub settings: Vec<Setting>,
    pub raw: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct SinkConfig {
    pub name: String,
    pub sink: Typed<dyn SinkSpec>,
    pub channel: String,
    pub settings: Vec<Setting>,
    pub raw: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct SinkGroupConfig {
    pub name: String,
    pub sinks: Vec<String>,
    pub processor: Typed<dyn ProcessorSpec>,
    pub settings: Vec<Setting>,
    pub raw: BTreeMap<String, String>,
}

/// A validated agent configuration.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub agent: String,
    /// The first config source (file or URI).
    pub file: PathBuf,
    /// Every config source, in override order.
    pub origins: Vec<Origin>,
    pub sources: Vec<SourceConfig>,
    pub channels: Vec<ChannelConfig>,
    pub sinks: Vec<SinkConfig>,
    pub sinkgroups: Vec<SinkGroupConfig>,
    /// `a1.tenants`: per-tenant routing for sources with `selector.type = tenant`.
    pub tenants: Option<Arc<TenantsConfig>>,
    /// Unknown keys and ignored components, as `file:line: key: message`.
    pub warnings: Vec<String>,
    /// Values config filters supplied (`${f['key']}`): masked wherever the config is shown.
    pub secrets: Vec<String>,
}

impl AgentConfig {
    /// A config with no components: what an agent runs before its first config is applied.
    pub fn empty(agent: &str, file: &Path) -> Self {
        Self {
            agent: agent.to_string(),
            file: file.to_path_buf(),
            origins: Vec::new(),
            sources: Vec::new(),
            channels: Vec::new(),
            sinks: Vec::new(),
            sinkgroups: Vec::new(),
            tenants: None,
            warnings: Vec::new(),
            secrets: Vec::new(),
        }
    }

    pub fn load(path: &Path, agent: &str) -> Result<Self, ConfigErrors> {
        let props = Properties::load(path)?;
        Self::from_properties(&props, agent)
    }

    /// Reads every source (in order, later keys overriding earlier ones) and parses `agent`.
    pub fn load_sources(sources: &mut ConfigSources, agent: &str) -> Result<Self, ConfigErrors> {
        let props = sources.load()?;
        Self::from_properties(&props, agent)
    }

    /// Resolves `${…}` references (`config::substitute`), then parses and checks `agent`.
    pub fn from_properties(props: &Properties, agent: &str) -> Result<Self, ConfigErrors> {
        let mut props = props.clone();
        let substituted =
            crate::config::substitute::apply(&mut props, agent).map_err(ConfigErrors)?;
        let mut config = Self::from_resolved(&props, agent)?;
        config.origins = props.origins.clone();
        config.warnings.extend(substituted.warnings);
        config.secrets = substituted.secrets;
        Ok(config)
    }

    fn from_resolved(props: &Properties, agent: &str) -> Result<Self, ConfigErrors> {
        let root = format!("{agent}.");
        if props.with_prefix(&root).next().is_none() {
            let names: Vec<String> = props
                .origins
                .iter()
                .map(|o| o.display().to_string())
                .collect();
            return Err(ConfigError::File {
                file: if names.len() > 1 {
                    PathBuf::from(names.join(", "))
                } else {
                    props.file.clone()
                },
                message: format!(
                    "no keys for agent `{agent}` (expected `{agent}.sources`, \
                     `{agent}.channels`, `{agent}.sinks`); check -n/--name"
                ),
            }
            .into());
        }
        let top = Props::new(&props.file, &root, props.entries.clone(), 1);
        // Read by the substitution above.
        top.claim("configfilters");
        let mut b = parse::Builder::new(&props.file, agent, &top);
        let config = b.topology();
        checks::cross_references(&mut b, &config);
        checks::unused_keys(&mut b);
        b.finish(config)
    }
}
