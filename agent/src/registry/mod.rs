//! The component registry: for each kind (source, channel, sink, interceptor, channel selector,
//! sink processor), one table mapping Flume's short name and Java class name(s) to the parser
//! of the component's config. A parsed config is a spec (`crate::pipeline::*Spec`,
//! `crate::channels::ChannelSpec`) that builds the running component, so the agent builds every
//! component the same way. `sluice check`'s "accepted:" lists come from these tables.
//!
//! Adding a component: write its module (config with `from_props`, the component, and the spec
//! impl), then add one [`Entry`] to the table of its kind below. See docs/architecture.md.
//!
//! The `tenant` channel selector is not here: it routes by the agent-level `a1.tenants` keys,
//! so the topology (`crate::topology`) resolves it where it sees those keys.

use std::sync::Arc;

use crate::channels::ChannelSpec;
use crate::channels::file::FileChannelConfig;
use crate::channels::kafka::KafkaChannelConfig;
use crate::channels::memory::MemoryChannelConfig;
use crate::channels::spillable::SpillableConfig;
use crate::config::{ConfigError, Props};
use crate::interceptors::{
    HostConfig, RegexExtractorConfig, RegexFilterConfig, RemoveHeaderConfig, SearchReplaceConfig,
    StaticConfig, TimestampConfig, UuidConfig,
};
use crate::pipeline::{InterceptorSpec, ProcessorSpec, SelectorSpec, SinkSpec, SourceSpec};
use crate::processors::{DefaultConfig, FailoverConfig, LoadBalanceConfig};
use crate::selectors::{LoadBalancingConfig, MultiplexingConfig, ReplicatingConfig};
use crate::sinks::avro::AvroSinkConfig;
use crate::sinks::file_roll::FileRollConfig;
use crate::sinks::hdfs::config::HdfsConfig;
use crate::sinks::http::HttpSinkConfig;
use crate::sinks::kafka::KafkaSinkConfig;
use crate::sinks::logger::LoggerConfig;
use crate::sinks::null::NullConfig;
use crate::sinks::thrift::ThriftSinkConfig;
use crate::sources::avro::AvroSourceConfig;
use crate::sources::exec::ExecConfig;
use crate::sources::http::HttpSourceConfig;
use crate::sources::kafka::KafkaSourceConfig;
use crate::sources::netcat::{NetcatConfig, NetcatUdpConfig};
use crate::sources::seq::SeqConfig;
use crate::sources::spooldir::SpoolDirConfig;
use crate::sources::stress::StressConfig;
use crate::sources::syslog::{SyslogTcpConfig, SyslogUdpConfig};
use crate::sources::taildir::TaildirConfig;
use crate::sources::thrift::ThriftSourceConfig;
use crate::wasm::{WasmConfig, WasmInterceptorSpec, WasmRouterSpec, WasmSinkSelectorSpec};

#[cfg(test)]
mod tests;

/// One component type: the name `check` and `graph` show, every spelling `type` accepts
/// (case-insensitive; the first is the one error messages list), and its config parser.
pub struct Entry<P> {
    pub kind: &'static str,
    pub names: &'static [&'static str],
    pub parse: P,
}

pub type SourceParse = fn(&Props) -> Result<Arc<dyn SourceSpec>, ConfigError>;
pub type ChannelParse = fn(&Props) -> Result<Arc<dyn ChannelSpec>, ConfigError>;
pub type SinkParse = fn(&Props) -> Result<Arc<dyn SinkSpec>, ConfigError>;
pub type InterceptorParse = fn(&Props) -> Result<Arc<dyn InterceptorSpec>, ConfigError>;
/// Selectors parse over the source's channel list.
pub type SelectorParse = fn(&Props, &[String]) -> Result<Arc<dyn SelectorSpec>, ConfigError>;
/// Sink processors parse over the group's sink list.
pub type ProcessorParse = fn(&Props, &[String]) -> Result<Arc<dyn ProcessorSpec>, ConfigError>;

pub const SOURCES: &[Entry<SourceParse>] = &[
    Entry {
        kind: "avro",
        names: &["avro", "org.apache.flume.source.AvroSource"],
        parse: |p| Ok(Arc::new(AvroSourceConfig::from_props(p)?)),
    },
    Entry {
        kind: "thrift",
        names: &["thrift", "org.apache.flume.source.ThriftSource"],
        parse: |p| Ok(Arc::new(ThriftSourceConfig::from_props(p)?)),
    },
    Entry {
        kind: "kafka",
        names: &["org.apache.flume.source.kafka.KafkaSource"],
        parse: |p| Ok(Arc::new(KafkaSourceConfig::from_props(p)?)),
    },
    Entry {
        kind: "seq",
        names: &["seq", "org.apache.flume.source.SequenceGeneratorSource"],
        parse: |p| Ok(Arc::new(SeqConfig::from_props(p)?)),
    },
    Entry {
        kind: "stress",
        names: &["stress", "org.apache.flume.source.StressSource"],
        parse: |p| Ok(Arc::new(StressConfig::from_props(p)?)),
    },
    Entry {
        kind: "netcat",
        names: &["netcat", "org.apache.flume.source.NetcatSource"],
        parse: |p| Ok(Arc::new(NetcatConfig::from_props(p)?)),
    },
    Entry {
        kind: "netcatudp",
        names: &["netcatudp", "org.apache.flume.source.NetcatUdpSource"],
        parse: |p| Ok(Arc::new(NetcatUdpConfig::from_props(p)?)),
    },
    Entry {
        kind: "syslogtcp",
        names: &["syslogtcp", "org.apache.flume.source.SyslogTcpSource"],
        parse: |p| Ok(Arc::new(SyslogTcpConfig::single(p)?)),
    },
    Entry {
        kind: "multiport_syslogtcp",
        names: &[
            "multiport_syslogtcp",
            "org.apache.flume.source.MultiportSyslogTCPSource",
        ],
        parse: |p| Ok(Arc::new(SyslogTcpConfig::multiport(p)?)),
    },
    Entry {
        kind: "syslogudp",
        names: &["syslogudp", "org.apache.flume.source.SyslogUDPSource"],
        parse: |p| Ok(Arc::new(SyslogUdpConfig::from_props(p)?)),
    },
    Entry {
        kind: "exec",
        names: &["exec", "org.apache.flume.source.ExecSource"],
        parse: |p| Ok(Arc::new(ExecConfig::from_props(p)?)),
    },
    Entry {
        kind: "http",
        names: &["http", "org.apache.flume.source.http.HTTPSource"],
        parse: |p| Ok(Arc::new(HttpSourceConfig::from_props(p)?)),
    },
    Entry {
        kind: "TAILDIR",
        names: &["TAILDIR", "org.apache.flume.source.taildir.TaildirSource"],
        parse: |p| Ok(Arc::new(TaildirConfig::from_props(p)?)),
    },
    Entry {
        kind: "spooldir",
        names: &["spooldir", "org.apache.flume.source.SpoolDirectorySource"],
        parse: |p| Ok(Arc::new(SpoolDirConfig::from_props(p)?)),
    },
];

pub const CHANNELS: &[Entry<ChannelParse>] = &[
    Entry {
        kind: "memory",
        names: &["memory", "org.apache.flume.channel.MemoryChannel"],
        parse: |p| Ok(Arc::new(MemoryChannelConfig::from_props(p)?)),
    },
    Entry {
        kind: "file",
        names: &["file", "org.apache.flume.channel.file.FileChannel"],
        parse: |p| Ok(Arc::new(FileChannelConfig::from_props(p)?)),
    },
    Entry {
        kind: "kafka",
        names: &["org.apache.flume.channel.kafka.KafkaChannel"],
        parse: |p| Ok(Arc::new(KafkaChannelConfig::from_props(p)?)),
    },
    Entry {
        kind: "SPILLABLEMEMORY",
        names: &[
            "SPILLABLEMEMORY",
            "org.apache.flume.channel.SpillableMemoryChannel",
        ],
        parse: |p| Ok(Arc::new(SpillableConfig::from_props(p)?)),
    },
];

pub const SINKS: &[Entry<SinkParse>] = &[
    Entry {
        kind: "avro",
        names: &["avro", "org.apache.flume.sink.AvroSink"],
        parse: |p| Ok(Arc::new(AvroSinkConfig::from_props(p)?)),
    },
    Entry {
        kind: "thrift",
        names: &["thrift", "org.apache.flume.sink.ThriftSink"],
        parse: |p| Ok(Arc::new(ThriftSinkConfig::from_props(p)?)),
    },
    Entry {
        kind: "kafka",
        names: &["org.apache.flume.sink.kafka.KafkaSink"],
        parse: |p| Ok(Arc::new(KafkaSinkConfig::from_props(p)?)),
    },
    Entry {
        kind: "logger",
        names: &["logger", "org.apache.flume.sink.LoggerSink"],
        parse: |p| Ok(Arc::new(LoggerConfig::from_props(p)?)),
    },
    Entry {
        kind: "null",
        names: &["null", "org.apache.flume.sink.NullSink"],
        parse: |p| Ok(Arc::new(NullConfig::from_props(p)?)),
    },
    Entry {
        kind: "file_roll",
        names: &["file_roll", "org.apache.flume.sink.RollingFileSink"],
        parse: |p| Ok(Arc::new(FileRollConfig::from_props(p)?)),
    },
    Entry {
        kind: "hdfs",
        names: &["hdfs", "org.apache.flume.sink.hdfs.HDFSEventSink"],
        parse: |p| Ok(Arc::new(HdfsConfig::from_props(p)?)),
    },
    Entry {
        kind: "http",
        names: &["http", "org.apache.flume.sink.http.HttpSink"],
        parse: |p| Ok(Arc::new(HttpSinkConfig::from_props(p)?)),
    },
];

pub const INTERCEPTORS: &[Entry<InterceptorParse>] = &[
    Entry {
        kind: "wasm",
        names: &["wasm"],
        parse: |p| Ok(Arc::new(WasmInterceptorSpec(WasmConfig::from_props(p)?))),
    },
    Entry {
        kind: "regex_extractor",
        names: &[
            "regex_extractor",
            "org.apache.flume.interceptor.RegexExtractorInterceptor$Builder",
        ],
        parse: |p| Ok(Arc::new(RegexExtractorConfig::from_props(p)?)),
    },
    Entry {
        kind: "timestamp",
        names: &[
            "timestamp",
            "org.apache.flume.interceptor.TimestampInterceptor$Builder",
        ],
        parse: |p| Ok(Arc::new(TimestampConfig::from_props(p)?)),
    },
    Entry {
        kind: "host",
        names: &[
            "host",
            "org.apache.flume.interceptor.HostInterceptor$Builder",
        ],
        parse: |p| Ok(Arc::new(HostConfig::from_props(p)?)),
    },
    Entry {
        kind: "static",
        names: &[
            "static",
            "org.apache.flume.interceptor.StaticInterceptor$Builder",
        ],
        parse: |p| Ok(Arc::new(StaticConfig::from_props(p)?)),
    },
    Entry {
        kind: "remove_header",
        names: &[
            "remove_header",
            "org.apache.flume.interceptor.RemoveHeaderInterceptor$Builder",
        ],
        parse: |p| Ok(Arc::new(RemoveHeaderConfig::from_props(p)?)),
    },
    Entry {
        kind: "regex_filter",
        names: &[
            "regex_filter",
            "org.apache.flume.interceptor.RegexFilteringInterceptor$Builder",
        ],
        parse: |p| Ok(Arc::new(RegexFilterConfig::from_props(p)?)),
    },
    Entry {
        kind: "uuid",
        names: &[
            "uuid",
            "org.apache.flume.sink.solr.morphline.UUIDInterceptor$Builder",
        ],
        parse: |p| Ok(Arc::new(UuidConfig::from_props(p)?)),
    },
    Entry {
        kind: "search_replace",
        names: &[
            "search_replace",
            "org.apache.flume.interceptor.SearchAndReplaceInterceptor$Builder",
        ],
        parse: |p| Ok(Arc::new(SearchReplaceConfig::from_props(p)?)),
    },
];

/// The selector a source without `selector.type` gets.
pub const DEFAULT_SELECTOR: &str = "replicating";

pub const SELECTORS: &[Entry<SelectorParse>] = &[
    Entry {
        kind: "replicating",
        names: &[
            "replicating",
            "org.apache.flume.channel.ReplicatingChannelSelector",
        ],
        parse: |p, channels| Ok(Arc::new(ReplicatingConfig::from_props(p, channels)?)),
    },
    Entry {
        kind: "multiplexing",
        names: &[
            "multiplexing",
            "org.apache.flume.channel.MultiplexingChannelSelector",
        ],
        parse: |p, channels| Ok(Arc::new(MultiplexingConfig::from_props(p, channels)?)),
    },
    Entry {
        kind: "load_balancing",
        names: &[
            "load_balancing",
            "org.apache.flume.channel.LoadBalancingChannelSelector",
        ],
        parse: |p, channels| Ok(Arc::new(LoadBalancingConfig::from_props(p, channels)?)),
    },
    Entry {
        kind: "wasm",
        names: &["wasm"],
        parse: |p, channels| Ok(Arc::new(WasmRouterSpec::from_props(p, channels)?)),
    },
];

/// The processor a sink group without `processor.type` gets, and every lone sink runs under.
pub const DEFAULT_PROCESSOR: &str = "default";

pub const PROCESSORS: &[Entry<ProcessorParse>] = &[
    Entry {
        kind: "default",
        names: &["default", "org.apache.flume.sink.DefaultSinkProcessor"],
        parse: |p, sinks| Ok(Arc::new(DefaultConfig::from_props(p, sinks)?)),
    },
    Entry {
        kind: "failover",
        names: &["failover", "org.apache.flume.sink.FailoverSinkProcessor"],
        parse: |p, sinks| Ok(Arc::new(FailoverConfig::from_props(p, sinks)?)),
    },
    Entry {
        kind: "load_balance",
        names: &[
            "load_balance",
            "org.apache.flume.sink.LoadBalancingSinkProcessor",
        ],
        parse: |p, sinks| Ok(Arc::new(LoadBalanceConfig::from_props(p, sinks)?)),
    },
    Entry {
        kind: "wasm",
        names: &["wasm"],
        parse: |p, _| Ok(Arc::new(WasmSinkSelectorSpec::from_props(p)?)),
    },
];

impl<P> Entry<P> {
    fn accepts(&self, name: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// The entry whose names include `name` (case-insensitive).
pub fn find<'a, P>(table: &'a [Entry<P>], name: &str) -> Option<&'a Entry<P>> {
    table.iter().find(|e| e.accepts(name))
}

/// The spelling of each entry that error messages list, then `extra` (types the caller
/// resolves itself).
pub fn accepted<P>(table: &[Entry<P>], extra: &[&'static str]) -> Vec<&'static str> {
    table
        .iter()
        .map(|e| e.names[0])
        .chain(extra.iter().copied())
        .collect()
}

/// The entry named by a component's required `type` key (sources, channels, sinks,
/// interceptors); `what` names the kind in errors.
pub fn resolve<'a, P>(
    table: &'a [Entry<P>],
    p: &Props,
    what: &str,
) -> Result<&'a Entry<P>, ConfigError> {
    let Some(v) = p.get("type").filter(|v| !v.is_empty()) else {
        return Err(p.error("type", format!("{what} type is required")));
    };
    find(table, v).ok_or_else(|| {
        p.error(
            "type",
            format!(
                "unknown {what} type `{v}`; accepted: {} (or the matching Flume class name)",
                accepted(table, &[]).join(", ")
            ),
        )
    })
}

/// The type named by an optional `type` key (selectors, sink processors), `default` when
/// absent. `extra` are types the caller handles itself: `Ok(Err(name))` is one of them.
pub fn resolve_or<'a, P>(
    table: &'a [Entry<P>],
    p: &Props,
    default: &str,
    extra: &[&'static str],
) -> Result<Result<&'a Entry<P>, &'static str>, ConfigError> {
    let v = p.get("type").filter(|v| !v.is_empty()).unwrap_or(default);
    if let Some(e) = find(table, v) {
        return Ok(Ok(e));
    }
    if let Some(x) = extra.iter().find(|x| x.eq_ignore_ascii_case(v)) {
        return Ok(Err(x));
    }
    Err(unknown_value(p, v, accepted(table, extra)))
}

fn unknown_value(p: &Props, v: &str, accepted: Vec<&str>) -> ConfigError {
    p.error(
        "type",
        format!("unknown value `{v}`; accepted: {}", accepted.join(", ")),
    )
}

/// [`resolve_or`] with no type of the caller's own: the entry, or the error listing the table.
fn resolve_optional<'a, P>(
    table: &'a [Entry<P>],
    p: &Props,
    default: &str,
) -> Result<&'a Entry<P>, ConfigError> {
    let v = p.get("type").filter(|v| !v.is_empty()).unwrap_or(default);
    find(table, v).ok_or_else(|| unknown_value(p, v, accepted(table, &[])))
}

/// A parsed component: the registry's kind name (for `check` and `graph`) and its spec.
#[derive(Debug)]
pub struct Typed<S: ?Sized> {
    pub kind: &'static str,
    pub spec: Arc<S>,
}

/// Cloning shares the spec (the derive would require `S: Clone`).
impl<S: ?Sized> Clone for Typed<S> {
    fn clone(&self) -> Self {
        Self {
            kind: self.kind,
            spec: self.spec.clone(),
        }
    }
}

/// `p` holds one interceptor's keys (`...interceptors.i1.`).
pub fn interceptor(p: &Props) -> Result<Typed<dyn InterceptorSpec>, ConfigError> {
    let e = resolve(INTERCEPTORS, p, "interceptor")?;
    Ok(Typed {
        kind: e.kind,
        spec: (e.parse)(p)?,
    })
}

/// `p` holds the `selector.` keys; `channels` the channel list they route over. The `tenant`
/// selector is not one of these (see the module header).
pub fn selector(p: &Props, channels: &[String]) -> Result<Typed<dyn SelectorSpec>, ConfigError> {
    let e = resolve_optional(SELECTORS, p, DEFAULT_SELECTOR)?;
    Ok(Typed {
        kind: e.kind,
        spec: (e.parse)(p, channels)?,
    })
}

/// `p` holds a group's `processor.` keys; `sinks` its member list.
pub fn processor(p: &Props, sinks: &[String]) -> Result<Typed<dyn ProcessorSpec>, ConfigError> {
    let e = resolve_optional(PROCESSORS, p, DEFAULT_PROCESSOR)?;
    Ok(Typed {
        kind: e.kind,
        spec: (e.parse)(p, sinks)?,
    })
}

/// The processor every sink outside a group runs under.
pub fn default_processor() -> Typed<dyn ProcessorSpec> {
    Typed {
        kind: DEFAULT_PROCESSOR,
        spec: Arc::new(DefaultConfig),
    }
}

/// One interceptor of a chain: its name in `interceptors = i1 i2` and what it is.
#[derive(Clone, Debug)]
pub struct InterceptorConfig {
    pub name: String,
    pub interceptor: Typed<dyn InterceptorSpec>,
}
