use std::time::Duration;

use crate::config::{ConfigError, Props};
use crate::thrift::{FLUME_MAX_FRAME, Protocol};

use super::config::ThriftSourceConfig;

fn config(extra: &[(&str, &str)]) -> Result<ThriftSourceConfig, ConfigError> {
    let mut pairs = vec![("bind", "127.0.0.1"), ("port", "4141")];
    pairs.extend_from_slice(extra);
    ThriftSourceConfig::from_props(&Props::from_pairs(&pairs))
}

fn error(extra: &[(&str, &str)]) -> String {
    config(extra)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

#[test]
fn defaults_follow_flume_and_bounds_have_ranges() -> Result<(), ConfigError> {
    let c = config(&[])?;
    assert_eq!(c.protocol, Protocol::Compact);
    assert_eq!(c.max_connections, 1000);
    assert_eq!(c.idle_timeout, Some(Duration::from_secs(60)));
    assert_eq!(c.read_timeout, Duration::from_secs(30));
    assert_eq!(c.max_message_bytes, FLUME_MAX_FRAME);
    assert_eq!(c.max_buffered_bytes, 256 << 20);
    assert_eq!(c.max_batch_events, 100_000);
    assert!(c.tls.is_none());
    assert!((4..=64).contains(&c.workers()));
    assert_eq!(config(&[("threads", "3")])?.workers(), 3);
    assert_eq!(
        config(&[("protocol", "BINARY")])?.protocol,
        Protocol::Binary
    );
    assert_eq!(config(&[("idle-timeout", "0")])?.idle_timeout, None);
    for (key, value, says) in [
        ("protocol", "json", "accepted: compact, binary"),
        ("port", "70000", "0 to 65535"),
        ("threads", "100000", "0 to 4096"),
        ("max-connections", "0", "1 to 1000000"),
        ("read-timeout", "0", "1 to 86400000"),
        ("idle-timeout", "-1", "0 to 86400000"),
        ("max-message-bytes", "4294967296", "1 to 2147483647"),
        ("max-buffered-bytes", "1000", "at least max-message-bytes"),
        ("max-batch-events", "0", "1 to 1000000"),
    ] {
        let err = error(&[(key, value)]);
        assert!(
            err.contains(key) && err.contains(says),
            "{key} = {value}: {err}"
        );
    }
    let missing = ThriftSourceConfig::from_props(&Props::from_pairs(&[("bind", "0.0.0.0")]));
    let missing = missing.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        missing.contains("port") && missing.contains("required"),
        "{missing}"
    );
    Ok(())
}

#[test]
fn kerberos_is_refused_and_tls_needs_pem_files() -> Result<(), ConfigError> {
    let err = error(&[("kerberos", "true"), ("agent-principal", "flume/_HOST@R")]);
    assert!(
        err.contains("kerberos") && err.contains("not supported"),
        "{err}"
    );
    // Without kerberos the principal and keytab are accepted (and unused).
    let p = Props::from_pairs(&[
        ("bind", "0.0.0.0"),
        ("port", "1"),
        ("kerberos", "false"),
        ("agent-principal", "x"),
        ("agent-keytab", "/k"),
    ]);
    ThriftSourceConfig::from_props(&p)?;
    assert!(p.unused().is_empty(), "{:?}", p.unused());
    let err = error(&[("ssl", "true"), ("keystore", "/ks.jks")]);
    assert!(
        err.contains("ssl.certificate") && err.contains("keytool"),
        "{err}"
    );
    let c = config(&[
        ("ssl", "true"),
        ("ssl.certificate", "/c.pem"),
        ("ssl.key", "/k.pem"),
    ])?;
    assert!(c.tls.is_some_and(|t| t.key.to_str() == Some("/k.pem")));
    Ok(())
}
