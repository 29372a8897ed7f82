//! Per-tenant counters, served as `TENANT.<name>` (Prometheus label `component="<name>"`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::{MetricSet, Value};

#[derive(Debug, Default)]
pub struct TenantCounters {
    pub event_received: AtomicU64,
    /// Passed quota and the tenant's interceptors, handed to the tenant's channels.
    pub event_routed: AtomicU64,
    /// Dropped by the quota (`policy = drop`) or, for `_unknown`, rejected.
    pub event_dropped: AtomicU64,
    pub quota_hits: AtomicU64,
    pub interceptor_dropped: AtomicU64,
    pub interceptor_errors: AtomicU64,
}

impl TenantCounters {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

impl MetricSet for TenantCounters {
    fn snapshot(&self) -> Vec<(&'static str, Value)> {
        let v = |a: &AtomicU64| Value::Counter(a.load(Ordering::Relaxed));
        vec![
            ("EventReceivedCount", v(&self.event_received)),
            ("EventRoutedCount", v(&self.event_routed)),
            ("EventDroppedCount", v(&self.event_dropped)),
            ("QuotaHitCount", v(&self.quota_hits)),
            ("InterceptorDroppedCount", v(&self.interceptor_dropped)),
            ("InterceptorErrorCount", v(&self.interceptor_errors)),
        ]
    }
}
