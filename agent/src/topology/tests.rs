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
