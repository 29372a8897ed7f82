use std::collections::BTreeSet;

use super::*;

fn names<P>(table: &[Entry<P>]) -> Vec<&'static str> {
    table.iter().flat_map(|e| e.names.iter().copied()).collect()
}

/// No spelling (case-insensitive) belongs to two entries of one kind, and kinds are unique.
#[test]
fn names_and_kinds_are_unique_per_table() {
    fn check<P>(what: &str, table: &[Entry<P>]) {
        let mut seen = BTreeSet::new();
        for n in names(table) {
            assert!(seen.insert(n.to_ascii_lowercase()), "{what}: `{n}` twice");
        }
        let kinds: BTreeSet<_> = table.iter().map(|e| e.kind).collect();
        assert_eq!(kinds.len(), table.len(), "{what}: a kind twice");
        assert!(
            table.iter().all(|e| !e.names.is_empty()),
            "{what}: entry without names"
        );
    }
    check("sources", SOURCES);
    check("channels", CHANNELS);
    check("sinks", SINKS);
    check("interceptors", INTERCEPTORS);
    check("selectors", SELECTORS);
    check("processors", PROCESSORS);
}

#[test]
fn flume_class_names_and_short_names_resolve_case_insensitively() {
    for (name, kind) in [
        ("org.apache.flume.source.taildir.TaildirSource", "TAILDIR"),
        ("taildir", "TAILDIR"),
        ("org.apache.flume.source.SpoolDirectorySource", "spooldir"),
        ("SPOOLDIR", "spooldir"),
        ("org.apache.flume.source.kafka.KafkaSource", "kafka"),
        ("AVRO", "avro"),
        ("org.apache.flume.source.ThriftSource", "thrift"),
        ("Thrift", "thrift"),
    ] {
        assert_eq!(find(SOURCES, name).map(|e| e.kind), Some(kind), "{name}");
    }
    assert_eq!(
        find(CHANNELS, "org.apache.flume.channel.file.FileChannel").map(|e| e.kind),
        Some("file")
    );
    assert_eq!(
        find(SINKS, "org.apache.flume.sink.hdfs.HDFSEventSink").map(|e| e.kind),
        Some("hdfs")
    );
    assert_eq!(
        find(
            INTERCEPTORS,
            "org.apache.flume.interceptor.TimestampInterceptor$Builder"
        )
        .map(|e| e.kind),
        Some("timestamp")
    );
    assert!(find(SINKS, "lumberjack").is_none());
}

#[test]
fn every_entry_parses_its_own_defaults_or_names_a_missing_key() {
    // Each parser either accepts an empty component or fails on a named key: none panics.
    let p = Props::from_pairs(&[]);
    let channels = ["c1".to_string()];
    for e in SOURCES {
        if let Err(err) = (e.parse)(&p) {
            assert!(err.to_string().contains(':'), "{}: {err}", e.kind);
        }
    }
    for e in CHANNELS {
        let _ = (e.parse)(&p);
    }
    for e in SINKS {
        let _ = (e.parse)(&p);
    }
    for e in SELECTORS {
        let _ = (e.parse)(&p, &channels);
    }
    for e in PROCESSORS {
        let _ = (e.parse)(&p, &channels);
    }
}

#[test]
fn unknown_type_lists_what_is_accepted() {
    let p = Props::from_pairs(&[("type", "lumberjack")]);
    let err = resolve(SINKS, &p, "sink")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("unknown sink type `lumberjack`; accepted: avro, thrift, org.apache.flume.sink.kafka.KafkaSink, logger, null, file_roll, hdfs"),
        "{err}"
    );
    let missing = resolve(SINKS, &Props::from_pairs(&[]), "sink")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(missing.contains("sink type is required"), "{missing}");
}

#[test]
fn optional_type_defaults_and_special_types_are_the_callers() -> Result<(), ConfigError> {
    let none = Props::from_pairs(&[]);
    assert_eq!(selector(&none, &["c1".into()])?.kind, "replicating");
    assert_eq!(processor(&none, &["k1".into()])?.kind, "default");
    let tenant = Props::from_pairs(&[("type", "tenant")]);
    let found = resolve_or(SELECTORS, &tenant, DEFAULT_SELECTOR, &["tenant"])?;
    assert!(matches!(found, Err("tenant")));
    // Without the caller handling it, `tenant` is refused with the accepted list.
    let err = selector(&tenant, &["c1".into()])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains(
            "unknown value `tenant`; accepted: replicating, multiplexing, load_balancing, wasm"
        ),
        "{err}"
    );
    let bad = Props::from_pairs(&[("type", "fanout")]);
    let err = resolve_or(SELECTORS, &bad, DEFAULT_SELECTOR, &["tenant"])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("accepted: replicating, multiplexing, load_balancing, wasm, tenant"),
        "{err}"
    );
    Ok(())
}
