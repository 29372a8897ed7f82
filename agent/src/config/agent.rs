//! The topology of one agent: which sources, channels, sinks and sink groups exist and how
//! they connect.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{ConfigError, ConfigErrors, Properties, Props, resolve_type};
use crate::channels::file::FileChannelConfig;
use crate::channels::memory::MemoryChannelConfig;
use crate::interceptors::InterceptorKind;
use crate::selectors::SelectorConfig;
use crate::sinks::avro::AvroSinkConfig;
use crate::sinks::file_roll::FileRollConfig;
use crate::sinks::group::ProcessorConfig;
use crate::sinks::hdfs::config::HdfsConfig;
use crate::sinks::kafka::KafkaSinkConfig;
use crate::sinks::logger::LoggerConfig;
use crate::sinks::null::NullConfig;
use crate::sources::avro::AvroSourceConfig;
use crate::sources::kafka::KafkaSourceConfig;
use crate::sources::seq::SeqConfig;
use crate::sources::stress::StressConfig;
use crate::sources::taildir::TaildirConfig;
use crate::tenants::TenantsConfig;

#[derive(Clone, Debug)]
pub enum SourceKind {
    Avro(AvroSourceConfig),
    Kafka(KafkaSourceConfig),
    Seq(SeqConfig),
    Stress(StressConfig),
    Taildir(TaildirConfig),
}

#[derive(Clone, Debug)]
pub enum ChannelKind {
    Memory(MemoryChannelConfig),
    File(FileChannelConfig),
}

#[derive(Clone, Debug)]
pub enum SinkKind {
    Avro(AvroSinkConfig),
    Kafka(KafkaSinkConfig),
    Logger(LoggerConfig),
    Null(NullConfig),
    FileRoll(FileRollConfig),
    Hdfs(Box<HdfsConfig>),
}

#[derive(Clone, Debug)]
pub struct InterceptorConfig {
    pub name: String,
    pub kind: InterceptorKind,
}

#[derive(Clone, Debug)]
pub struct SourceConfig {
    pub name: String,
    pub kind: SourceKind,
    pub channels: Vec<String>,
    pub selector: SelectorConfig,
    pub interceptors: Vec<InterceptorConfig>,
    /// All keys as written, for change detection on reload.
    pub raw: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct ChannelConfig {
    pub name: String,
    pub kind: ChannelKind,
    pub raw: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct SinkConfig {
    pub name: String,
    pub kind: SinkKind,
    pub channel: String,
    pub raw: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct SinkGroupConfig {
    pub name: String,
    pub sinks: Vec<String>,
    pub processor: ProcessorConfig,
    pub raw: BTreeMap<String, String>,
}

/// A validated agent configuration.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub agent: String,
    pub file: PathBuf,
    pub sources: Vec<SourceConfig>,
    pub channels: Vec<ChannelConfig>,
    pub sinks: Vec<SinkConfig>,
    pub sinkgroups: Vec<SinkGroupConfig>,
    /// `a1.tenants`: per-tenant routing for sources with `selector.type = tenant`.
    pub tenants: Option<TenantsConfig>,
    /// Unknown keys and ignored components, as `file:line: key: message`.
    pub warnings: Vec<String>,
}

const SOURCE_TYPES: &[(&[&str], &str)] = &[
    (&["avro", "org.apache.flume.source.AvroSource"], "avro"),
    (&["org.apache.flume.source.kafka.KafkaSource"], "kafka"),
    (
        &["seq", "org.apache.flume.source.SequenceGeneratorSource"],
        "seq",
    ),
    (
        &["stress", "org.apache.flume.source.StressSource"],
        "stress",
    ),
    (
        &["TAILDIR", "org.apache.flume.source.taildir.TaildirSource"],
        "taildir",
    ),
];

const CHANNEL_TYPES: &[(&[&str], &str)] = &[
    (
        &["memory", "org.apache.flume.channel.MemoryChannel"],
        "memory",
    ),
    (
        &["file", "org.apache.flume.channel.file.FileChannel"],
        "file",
    ),
];

const SINK_TYPES: &[(&[&str], &str)] = &[
    (&["avro", "org.apache.flume.sink.AvroSink"], "avro"),
    (&["org.apache.flume.sink.kafka.KafkaSink"], "kafka"),
    (&["logger", "org.apache.flume.sink.LoggerSink"], "logger"),
    (&["null", "org.apache.flume.sink.NullSink"], "null"),
    (
        &["file_roll", "org.apache.flume.sink.RollingFileSink"],
        "file_roll",
    ),
    (
        &["hdfs", "org.apache.flume.sink.hdfs.HDFSEventSink"],
        "hdfs",
    ),
];

impl ChannelKind {
    /// The directories a durable channel holds (locks) while open.
    pub fn dirs(&self) -> Vec<PathBuf> {
        match self {
            Self::Memory(_) => Vec::new(),
            Self::File(c) => std::iter::once(&c.checkpoint_dir)
                .chain(&c.backup_checkpoint_dir)
                .chain(&c.data_dirs)
                .cloned()
                .collect(),
        }
    }
}

impl AgentConfig {
    /// A config with no components: what an agent runs before its first config is applied.
    pub fn empty(agent: &str, file: &Path) -> Self {
        Self {
            agent: agent.to_string(),
            file: file.to_path_buf(),
            sources: Vec::new(),
            channels: Vec::new(),
            sinks: Vec::new(),
            sinkgroups: Vec::new(),
            tenants: None,
            warnings: Vec::new(),
        }
    }

    pub fn load(path: &Path, agent: &str) -> Result<Self, ConfigErrors> {
        let props = Properties::load(path)?;
        Self::from_properties(&props, agent)
    }

    pub fn from_properties(props: &Properties, agent: &str) -> Result<Self, ConfigErrors> {
        let mut b = Builder {
            file: props.file.clone(),
            agent: agent.to_string(),
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        let root = format!("{agent}.");
        if props.with_prefix(&root).next().is_none() {
            return Err(ConfigError::File {
                file: props.file.clone(),
                message: format!(
                    "no keys for agent `{agent}` (expected `{agent}.sources`, \
                     `{agent}.channels`, `{agent}.sinks`); check -n/--name"
                ),
            }
            .into());
        }
        let top = Props::new(&props.file, &root, props.entries.clone(), 1);
        let source_names = top.list("sources");
        let channel_names = top.list("channels");
        let sink_names = top.list("sinks");
        let group_names = top.list("sinkgroups");
        let tenant_names = top.list("tenants");
        if channel_names.is_empty() {
            b.errors
                .push(top.error("channels", "at least one channel is required"));
        }

        let channels: Vec<ChannelConfig> = channel_names
            .iter()
            .filter_map(|n| b.channel(&top, n))
            .collect();
        let known_channels: BTreeSet<&str> = channel_names.iter().map(String::as_str).collect();

        let sources: Vec<SourceConfig> = source_names
            .iter()
            .filter_map(|n| b.source(&top, n, &known_channels))
            .collect();
        let sinks: Vec<SinkConfig> = sink_names
            .iter()
            .filter_map(|n| b.sink(&top, n, &known_channels))
            .collect();
        let known_sinks: BTreeSet<&str> = sink_names.iter().map(String::as_str).collect();
        let mut grouped: BTreeMap<String, String> = BTreeMap::new();
        let sinkgroups: Vec<SinkGroupConfig> = group_names
            .iter()
            .filter_map(|n| b.group(&top, n, &known_sinks, &mut grouped))
            .collect();

        for (list, names) in [
            ("sources", &source_names),
            ("channels", &channel_names),
            ("sinks", &sink_names),
            ("sinkgroups", &group_names),
        ] {
            let mut seen = BTreeSet::new();
            for n in names.iter() {
                if !seen.insert(n) {
                    b.errors
                        .push(top.error(list, format!("`{n}` is listed twice")));
                }
            }
        }
        for n in tenant_names.iter().filter(|n| n.contains('.')) {
            // A dot would make `a1.tenants.<name>.*` keys ambiguous.
            b.errors
                .push(top.error("tenants", format!("tenant name `{n}` may not contain `.`")));
        }
        let tenants = if tenant_names.is_empty() {
            None
        } else {
            b.collect(TenantsConfig::from_props(
                &top.sub("tenants."),
                &tenant_names,
            ))
        };
        if let Some(t) = &tenants {
            for tc in &t.tenants {
                for c in tc
                    .channels
                    .iter()
                    .filter(|c| !known_channels.contains(c.as_str()))
                {
                    b.errors
                        .push(top.sub(&format!("tenants.{}.", tc.name)).error(
                            "channels",
                            format!("channel `{c}` is not listed in {agent}.channels"),
                        ));
                }
            }
        }
        for s in sources
            .iter()
            .filter(|s| matches!(s.selector, SelectorConfig::Tenant))
        {
            let sp = top.sub(&format!("sources.{}.", s.name));
            match &tenants {
                None => b.errors.push(sp.error(
                    "selector.type",
                    format!("`tenant` routing needs {agent}.tenants and their keys"),
                )),
                Some(t) => {
                    for tc in &t.tenants {
                        for c in tc.channels.iter().filter(|c| !s.channels.contains(c)) {
                            b.errors.push(sp.error(
                                "channels",
                                format!(
                                    "tenant `{}` writes to `{c}`, which is not in this list",
                                    tc.name
                                ),
                            ));
                        }
                    }
                }
            }
        }
        for c in &channels {
            let used = sources.iter().any(|s| s.channels.contains(&c.name))
                || sinks.iter().any(|s| s.channel == c.name);
            if !used {
                b.warnings.push(format!(
                    "{}: channel `{}` is connected to no source or sink",
                    b.file.display(),
                    c.name
                ));
            }
        }
        for (full_key, line) in top.unused() {
            let key = full_key.strip_prefix(&root).unwrap_or(&full_key);
            let listed = |kind: &str, names: &[String]| {
                key.strip_prefix(kind)
                    .and_then(|r| r.split('.').next())
                    .is_some_and(|n| names.iter().any(|x| x == n))
            };
            if listed("sources.", &source_names)
                || listed("channels.", &channel_names)
                || listed("sinks.", &sink_names)
                || listed("sinkgroups.", &group_names)
                || (!tenant_names.is_empty() && key.starts_with("tenants."))
            {
                continue;
            }
            b.warnings.push(format!(
                "{}:{line}: {full_key}: ignored (unknown key, or a component not listed \
                 in {agent}.sources/channels/sinks/sinkgroups)",
                b.file.display()
            ));
        }
        if !b.errors.is_empty() {
            b.errors.sort_by_key(|e| match e {
                ConfigError::Invalid { line, .. } => *line,
                _ => 0,
            });
            return Err(ConfigErrors(b.errors));
        }
        Ok(Self {
            agent: agent.to_string(),
            file: props.file.clone(),
            sources,
            channels,
            sinks,
            sinkgroups,
            tenants,
            warnings: b.warnings,
        })
    }

    /// A human-readable description of the resolved topology, for `sluice check`.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "agent {} ({})", self.agent, self.file.display());
        for c in &self.channels {
            let _ = writeln!(s, "  channel {}: {:?}", c.name, c.kind);
        }
        for src in &self.sources {
            let _ = writeln!(
                s,
                "  source {} -> [{}] selector {:?}",
                src.name,
                src.channels.join(", "),
                src.selector
            );
            let _ = writeln!(s, "    {:?}", src.kind);
            for i in &src.interceptors {
                let _ = writeln!(s, "    interceptor {}: {:?}", i.name, i.kind);
            }
        }
        for k in &self.sinks {
            let _ = writeln!(s, "  sink {} <- {}: {:?}", k.name, k.channel, k.kind);
        }
        for g in &self.sinkgroups {
            let _ = writeln!(
                s,
                "  sinkgroup {} [{}]: {:?}",
                g.name,
                g.sinks.join(", "),
                g.processor
            );
        }
        s
    }
}

struct Builder {
    file: PathBuf,
    agent: String,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

impl Builder {
    fn collect<T>(&mut self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.errors.push(e)).ok()
    }

    fn warn_unused(&mut self, p: &Props) {
        for (key, line) in p.unused() {
            self.warnings.push(format!(
                "{}:{line}: {key}: unknown key, ignored",
                self.file.display()
            ));
        }
    }

    fn component(&self, top: &Props, kind: &str, name: &str) -> Props {
        let p = top.sub(&format!("{kind}.{name}."));
        // Errors about missing keys point at the component's `type` line.
        let line = p
            .keys
            .get(&p.full("type"))
            .map_or(p.anchor_line, |e| e.line);
        Props {
            anchor_line: line,
            ..p
        }
    }

    fn channel(&mut self, top: &Props, name: &str) -> Option<ChannelConfig> {
        let p = self.component(top, "channels", name);
        let kind = self.collect(resolve_type(&p, "channel", CHANNEL_TYPES))?;
        let kind = match kind {
            "memory" => self.collect(MemoryChannelConfig::from_props(&p).map(ChannelKind::Memory)),
            "file" => self.collect(FileChannelConfig::from_props(&p).map(ChannelKind::File)),
            _ => None,
        }?;
        self.warn_unused(&p);
        Some(ChannelConfig {
            name: name.to_string(),
            kind,
            raw: p.raw(),
        })
    }

    fn source(&mut self, top: &Props, name: &str, known: &BTreeSet<&str>) -> Option<SourceConfig> {
        let p = self.component(top, "sources", name);
        let kind = self.collect(resolve_type(&p, "source", SOURCE_TYPES));
        let kind = match kind {
            Some("avro") => self.collect(AvroSourceConfig::from_props(&p).map(SourceKind::Avro)),
            Some("kafka") => self.collect(KafkaSourceConfig::from_props(&p).map(SourceKind::Kafka)),
            Some("seq") => self.collect(SeqConfig::from_props(&p).map(SourceKind::Seq)),
            Some("stress") => self.collect(StressConfig::from_props(&p).map(SourceKind::Stress)),
            Some("taildir") => self.collect(TaildirConfig::from_props(&p).map(SourceKind::Taildir)),
            _ => None,
        };
        let channels = p.list("channels");
        if channels.is_empty() {
            self.errors
                .push(p.error("channels", "a source needs at least one channel"));
        }
        for c in &channels {
            if !known.contains(c.as_str()) {
                self.errors.push(p.error(
                    "channels",
                    format!("channel `{c}` is not listed in {}.channels", self.agent),
                ));
            }
        }
        let selector = self.collect(SelectorConfig::from_props(&p.sub("selector."), &channels));
        let mut interceptors = Vec::new();
        for iname in p.list("interceptors") {
            let ip = p.sub(&format!("interceptors.{iname}."));
            if let Some(kind) = self.collect(InterceptorKind::from_props(&ip)) {
                interceptors.push(InterceptorConfig { name: iname, kind });
            }
        }
        self.warn_unused(&p);
        Some(SourceConfig {
            name: name.to_string(),
            kind: kind?,
            channels,
            selector: selector?,
            interceptors,
            raw: p.raw(),
        })
    }

    fn sink(&mut self, top: &Props, name: &str, known: &BTreeSet<&str>) -> Option<SinkConfig> {
        let p = self.component(top, "sinks", name);
        let kind = self.collect(resolve_type(&p, "sink", SINK_TYPES));
        let kind = match kind {
            Some("avro") => self.collect(AvroSinkConfig::from_props(&p).map(SinkKind::Avro)),
            Some("kafka") => self.collect(KafkaSinkConfig::from_props(&p).map(SinkKind::Kafka)),
            Some("logger") => self.collect(LoggerConfig::from_props(&p).map(SinkKind::Logger)),
            Some("null") => self.collect(NullConfig::from_props(&p).map(SinkKind::Null)),
            Some("file_roll") => {
                self.collect(FileRollConfig::from_props(&p).map(SinkKind::FileRoll))
            }
            Some("hdfs") => {
                self.collect(HdfsConfig::from_props(&p).map(|c| SinkKind::Hdfs(Box::new(c))))
            }
            _ => None,
        };
        let channel = match p.get("channel") {
            Some(c) if c.split_whitespace().count() == 1 => {
                if !known.contains(c) {
                    self.errors.push(p.error(
                        "channel",
                        format!("channel `{c}` is not listed in {}.channels", self.agent),
                    ));
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
            kind: kind?,
            channel: channel?,
            raw: p.raw(),
        })
    }

    fn group(
        &mut self,
        top: &Props,
        name: &str,
        known: &BTreeSet<&str>,
        grouped: &mut BTreeMap<String, String>,
    ) -> Option<SinkGroupConfig> {
        let p = self.component(top, "sinkgroups", name);
        let sinks = p.list("sinks");
        if sinks.is_empty() {
            self.errors
                .push(p.error("sinks", "a sink group needs at least one sink"));
        }
        for s in &sinks {
            if !known.contains(s.as_str()) {
                self.errors.push(p.error(
                    "sinks",
                    format!("sink `{s}` is not listed in {}.sinks", self.agent),
                ));
            } else if let Some(other) = grouped.insert(s.clone(), name.to_string()) {
                self.errors.push(p.error(
                    "sinks",
                    format!("sink `{s}` is already in sink group `{other}`"),
                ));
            }
        }
        let processor = self.collect(ProcessorConfig::from_props(&p.sub("processor."), &sinks));
        self.warn_unused(&p);
        Some(SinkGroupConfig {
            name: name.to_string(),
            sinks,
            processor: processor?,
            raw: p.raw(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentConfig, ConfigErrors> {
        AgentConfig::from_properties(&Properties::parse(Path::new("f.conf"), text), "a1")
    }

    const BASIC: &str = "\
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = seq
a1.sources.r1.channels = c1
a1.channels.c1.type = org.apache.flume.channel.MemoryChannel
a1.channels.c1.capacity = 1000
a1.sinks.k1.type = logger
a1.sinks.k1.channel = c1
";

    #[test]
    fn basic_topology() -> Result<(), ConfigErrors> {
        let c = parse(BASIC)?;
        assert_eq!(c.sources.len(), 1);
        assert_eq!(c.sinks[0].channel, "c1");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        Ok(())
    }

    #[test]
    fn unknown_type_names_line_and_choices() {
        let text = BASIC.replace("type = logger", "type = lumberjack");
        let err = parse(&text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("f.conf:8: a1.sinks.k1.type: unknown sink type `lumberjack`"),
            "{err}"
        );
        assert!(err.contains("logger, null, file_roll"), "{err}");
    }

    #[test]
    fn bad_value_and_unknown_key() {
        let text =
            format!("{BASIC}a1.channels.c1.transactionCapacity = lots\na1.sinks.k1.colour = red\n");
        let err = parse(&text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("f.conf:10: a1.channels.c1.transactionCapacity: invalid value `lots`")
        );
        let ok = parse(&format!("{BASIC}a1.sinks.k1.colour = red\n"));
        let warnings = ok.map(|c| c.warnings).unwrap_or_default();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("f.conf:10: a1.sinks.k1.colour")),
            "{warnings:?}"
        );
    }

    #[test]
    fn unknown_channel_reference() {
        let text = BASIC.replace("a1.sinks.k1.channel = c1", "a1.sinks.k1.channel = c9");
        let err = parse(&text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("f.conf:9: a1.sinks.k1.channel: channel `c9` is not listed"),
            "{err}"
        );
    }

    #[test]
    fn wrong_agent_name() {
        let err =
            AgentConfig::from_properties(&Properties::parse(Path::new("f.conf"), BASIC), "zz")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
        assert!(err.contains("no keys for agent `zz`"), "{err}");
    }
}
