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
    assert!(err.contains("f.conf:10: a1.channels.c1.transactionCapacity: invalid value `lots`"));
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
    let err = AgentConfig::from_properties(&Properties::parse(Path::new("f.conf"), BASIC), "zz")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("no keys for agent `zz`"), "{err}");
}

#[test]
fn tenant_channels_must_be_listed() {
    let text = "a1.sources = r1\na1.channels = ca\na1.sinks = k1\n\
                a1.sources.r1.type = seq\na1.sources.r1.channels = ca\n\
                a1.sources.r1.selector.type = tenant\n\
                a1.channels.ca.type = memory\na1.sinks.k1.type = null\na1.sinks.k1.channel = ca\n\
                a1.tenants = A C\na1.tenants.A.channels = ca\na1.tenants.C.channels = cz\n";
    let e = AgentConfig::from_properties(&Properties::parse(Path::new("t.conf"), text), "a1")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("a1.tenants.C.channels: channel `cz` is not listed"),
        "{e}"
    );
}

#[test]
fn dotted_tenant_names_are_a_config_error() {
    let text = "a1.sources = r1\na1.channels = c\na1.sinks = k\n\
                a1.sources.r1.type = seq\na1.sources.r1.channels = c\n\
                a1.sources.r1.selector.type = tenant\n\
                a1.channels.c.type = memory\na1.sinks.k.type = null\na1.sinks.k.channel = c\n\
                a1.tenants = eu.acme\n";
    let err = AgentConfig::from_properties(&Properties::parse(Path::new("t.conf"), text), "a1")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("a1.tenants") && err.contains("eu.acme"),
        "{err}"
    );
}

#[test]
fn a_missing_type_points_at_the_line_that_declared_the_component() {
    let text = "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
                a1.sources.r1.channels = c1\n\
                a1.channels.c1.type = memory\n\
                a1.sinks.k1.type = null\na1.sinks.k1.channel = c1\n";
    let err = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains("f.conf:1: a1.sources.r1.type: source type is required"),
        "{err}"
    );
    // A component with a type: missing keys point at its `type` line.
    let text = "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
                a1.sources.r1.type = seq\na1.sources.r1.channels = c1\n\
                a1.channels.c1.type = memory\n\
                a1.sinks.k1.type = null\n";
    let err = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains("f.conf:7: a1.sinks.k1.channel: is required"),
        "{err}"
    );
    let text = "a1.channels = c1\na1.sinks = k1\n\
                a1.channels.c1.type = memory\n\
                a1.sinks = k1\na1.sinks.k1.channel = c1\n";
    let err = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains("f.conf:4: a1.sinks.k1.type: sink type is required"),
        "{err}"
    );
}

#[test]
fn describe_shows_types_and_only_non_default_values() -> Result<(), ConfigErrors> {
    let text = format!(
        "{BASIC}a1.channels.c1.transactionCapacity = 100\n\
         a1.sources.r1.interceptors = ts\n\
         a1.sources.r1.interceptors.ts.type = timestamp\n\
         a1.sources.r1.interceptors.ts.headerName = when\n\
         a1.sources.r1.selector.type = replicating\n"
    );
    let c = parse(&text)?;
    let d = c.describe();
    let expected = "\
agent a1 (f.conf)
  source r1: seq -> c1
    interceptor ts: timestamp
      headerName = when
  channel c1: memory
    capacity = 1000
  sink k1: logger <- c1
";
    assert_eq!(d, expected);
    Ok(())
}

#[test]
fn graph_is_dot_with_every_component_and_edge() -> Result<(), ConfigErrors> {
    let text = "a1.sources = r1\na1.channels = c1\na1.sinks = k1 k2\na1.sinkgroups = g1\n\
                a1.sources.r1.type = seq\na1.sources.r1.channels = c1\n\
                a1.channels.c1.type = memory\n\
                a1.sinks.k1.type = null\na1.sinks.k1.channel = c1\n\
                a1.sinks.k2.type = null\na1.sinks.k2.channel = c1\n\
                a1.sinkgroups.g1.sinks = k1 k2\na1.sinkgroups.g1.processor.type = failover\n";
    let g = parse(text)?.graph();
    assert!(g.starts_with("digraph \"a1\" {\n"), "{g}");
    for edge in [
        "\"source/r1\" -> \"selector/r1\";",
        "\"selector/r1\" -> \"channel/c1\";",
        "\"channel/c1\" -> \"sinkgroup/g1\";",
        "\"sinkgroup/g1\" -> \"sink/k1\";",
        "\"sinkgroup/g1\" -> \"sink/k2\";",
    ] {
        assert!(g.contains(edge), "{edge} missing in\n{g}");
    }
    assert_eq!(
        g.matches("\"channel/c1\" -> \"sinkgroup/g1\"").count(),
        1,
        "{g}"
    );
    assert!(g.contains("label=\"g1\\n(failover)\""), "{g}");
    assert!(g.trim_end().ends_with('}'));
    Ok(())
}
