use std::sync::Arc;
use std::time::Duration;

use crate::config::{ConfigError, Props};

use super::budget::Budget;
use super::config::AvroSourceConfig;

fn config(extra: &[(&str, &str)]) -> Result<AvroSourceConfig, ConfigError> {
    let mut pairs = vec![("bind", "127.0.0.1"), ("port", "4141")];
    pairs.extend_from_slice(extra);
    AvroSourceConfig::from_props(&Props::from_pairs(&pairs))
}

#[test]
fn bounds_have_documented_defaults_and_ranges() -> Result<(), ConfigError> {
    let c = config(&[])?;
    assert_eq!(c.max_connections, 1000);
    assert_eq!(c.idle_timeout, Some(Duration::from_secs(60)));
    assert_eq!(c.read_timeout, Duration::from_secs(30));
    assert_eq!(c.max_buffered_bytes, 256 << 20);
    assert_eq!(c.max_message_bytes, 64 << 20);
    assert!((4..=64).contains(&c.workers()));
    assert_eq!(config(&[("threads", "3")])?.workers(), 3);
    assert_eq!(config(&[("idle-timeout", "0")])?.idle_timeout, None);
    // A larger max-message-bytes raises the default budget with it.
    let big = config(&[("max-message-bytes", "536870912")])?;
    assert_eq!(big.max_buffered_bytes, 512 << 20);
    for (key, value, says) in [
        (
            "max-buffered-bytes",
            "1048576",
            "at least max-message-bytes",
        ),
        ("read-timeout", "0", "1 to 86400000"),
        ("max-connections", "0", "1 to 1000000"),
        ("max-connections", "2000000", "1 to 1000000"),
        ("max-message-bytes", "4294967296", "1 to 2147483647"),
        ("threads", "100000", "0 to 4096"),
    ] {
        let err = config(&[(key, value)]).err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(
            err.contains(key) && err.contains(says),
            "{key} = {value}: {err}"
        );
    }
    Ok(())
}

/// The budget hands bytes to whichever waiter they fit, not strictly in arrival order.
#[test]
fn a_small_request_is_not_held_up_behind_a_large_one() -> Result<(), std::io::Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    rt.block_on(async {
        let budget = Arc::new(Budget::new(100));
        assert!(budget.try_take(60));
        let b = budget.clone();
        let large = tokio::spawn(async move { b.take(80).await });
        tokio::task::yield_now().await;
        // 40 free: the large waiter keeps waiting, a small one goes ahead.
        let small = tokio::time::timeout(Duration::from_secs(1), budget.take(30)).await;
        assert!(small.is_ok());
        assert!(!large.is_finished());
        budget.give(90);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), large)
                .await
                .is_ok()
        );
        assert_eq!(*budget.free.lock(), 20);
    });
    Ok(())
}
