//! `WASM.<name>` counters: the host's own per guest, plus the counters a guest defines through
//! `host.counter-add` (at most [`MAX_GUEST_COUNTERS`] names, interned for the process's life).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::guest::Fault;
use crate::metrics::{MetricSet, Value, now_millis};

/// Guest-defined counters per guest (further names are ignored, with one warning).
const MAX_GUEST_COUNTERS: usize = 64;

/// `WASM.<name>` metrics.
#[derive(Debug, Default)]
pub struct WasmCounters {
    pub(crate) batches: AtomicU64,
    pub(crate) events_in: AtomicU64,
    pub(crate) events_out: AtomicU64,
    pub(crate) faults: AtomicU64,
    pub(crate) traps: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) memory: AtomicU64,
    pub(crate) bad_returns: AtomicU64,
    pub(crate) init_failures: AtomicU64,
    pub(crate) policy_failed: AtomicU64,
    pub(crate) policy_dropped: AtomicU64,
    pub(crate) policy_passed: AtomicU64,
    /// Faulted batches put into the dead-letter channel (`on-error = dead-letter`).
    pub(crate) policy_dead_lettered: AtomicU64,
    /// Events the guest rejected (interceptor) or routed nowhere into a dead-letter channel
    /// (router).
    pub(crate) rejected: AtomicU64,
    pub(crate) suspended: AtomicU64,
    pub(crate) instantiations: AtomicU64,
    /// Loads of the guest file compiled now / taken from the disk cache / from memory.
    pub(crate) compiles: AtomicU64,
    /// Loads compiled now by the baseline compiler (Winch), swapped for Cranelift's code later.
    pub(crate) baseline_compiles: AtomicU64,
    /// Swaps from baseline code to Cranelift's, and the last one's time from the baseline
    /// version's load to Cranelift's code being ready (compile + instantiate + init).
    pub(crate) optimized_swaps: AtomicU64,
    pub(crate) optimize_millis: AtomicU64,
    pub(crate) disk_cache_hits: AtomicU64,
    pub(crate) memory_cache_hits: AtomicU64,
    /// The last load: read the file and compile it or take it from a cache.
    pub(crate) load_micros: AtomicU64,
    /// Instances alive now (idle, in a call or being made).
    pub(crate) instances: AtomicU64,
    pub(crate) instantiate_micros: AtomicU64,
    pub(crate) reloads: AtomicU64,
    pub(crate) reload_failures: AtomicU64,
    pub(crate) reload_millis: AtomicU64,
    pub(crate) reload_swap_millis: AtomicU64,
    pub(crate) start_time: AtomicU64,
    /// `host.log` lines refused by the rate limit ([`super::guest_log`]).
    pub(crate) log_suppressed: AtomicU64,
    pub(super) log_bucket: Mutex<super::guest_log::LogBucket>,
    guest_counters: Mutex<BTreeMap<&'static str, u64>>,
}

impl WasmCounters {
    pub fn new() -> Arc<Self> {
        let c = Self::default();
        c.start_time.store(now_millis(), Ordering::Relaxed);
        Arc::new(c)
    }

    pub(super) fn add_guest(&self, guest: &str, name: &str, delta: u64) {
        let mut m = self.guest_counters.lock();
        if let Some(v) = m.get_mut(name) {
            *v = v.saturating_add(delta);
        } else if m.len() < MAX_GUEST_COUNTERS {
            m.insert(intern(name), delta);
        } else if m.len() == MAX_GUEST_COUNTERS {
            tracing::warn!(
                guest,
                counter = name,
                "Guest defined too many counters; ignored."
            );
            m.insert("GuestCountersDropped", 1);
        }
    }

    /// Counts a fault: `FaultCount` and the fault's own counter (a suspended batch only
    /// `SuspendedBatchCount`).
    pub(super) fn count(&self, fault: &Fault) {
        let specific = match fault {
            // Not a new fault: the consequence of earlier timeouts.
            Fault::Suspended(_) => {
                self.suspended.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Fault::Trap(_) => &self.traps,
            Fault::Timeout(_) => &self.timeouts,
            Fault::Memory(_) => &self.memory,
            Fault::BadReturn(_) => &self.bad_returns,
            Fault::Init(_) | Fault::Unavailable => &self.init_failures,
        };
        self.faults.fetch_add(1, Ordering::Relaxed);
        specific.fetch_add(1, Ordering::Relaxed);
    }
}

/// Guest counter names live as long as the process (bounded: 64 per guest, shared by name).
fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<std::collections::BTreeSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES.get_or_init(Default::default).lock();
    if let Some(n) = names.get(name) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
}

impl MetricSet for WasmCounters {
    fn snapshot(&self) -> Vec<(&'static str, Value)> {
        let c = |a: &AtomicU64| Value::Counter(a.load(Ordering::Relaxed));
        let mut v = vec![
            ("BatchCount", c(&self.batches)),
            ("EventInCount", c(&self.events_in)),
            ("EventOutCount", c(&self.events_out)),
            ("FaultCount", c(&self.faults)),
            ("TrapCount", c(&self.traps)),
            ("TimeoutCount", c(&self.timeouts)),
            ("MemoryLimitCount", c(&self.memory)),
            ("BadReturnCount", c(&self.bad_returns)),
            ("InitFailureCount", c(&self.init_failures)),
            ("BatchFailedCount", c(&self.policy_failed)),
            ("BatchDroppedCount", c(&self.policy_dropped)),
            ("BatchPassedCount", c(&self.policy_passed)),
            ("BatchDeadLetteredCount", c(&self.policy_dead_lettered)),
            ("EventRejectedCount", c(&self.rejected)),
            ("SuspendedBatchCount", c(&self.suspended)),
            ("InstantiateCount", c(&self.instantiations)),
            ("CompileCount", c(&self.compiles)),
            ("BaselineCompileCount", c(&self.baseline_compiles)),
            ("OptimizedSwapCount", c(&self.optimized_swaps)),
            (
                "OptimizeMillis",
                Value::Gauge(self.optimize_millis.load(Ordering::Relaxed)),
            ),
            ("DiskCacheHitCount", c(&self.disk_cache_hits)),
            ("MemoryCacheHitCount", c(&self.memory_cache_hits)),
            (
                "LoadMicros",
                Value::Gauge(self.load_micros.load(Ordering::Relaxed)),
            ),
            (
                "InstanceCount",
                Value::Gauge(self.instances.load(Ordering::Relaxed)),
            ),
            (
                "InstantiateMicros",
                Value::Gauge(self.instantiate_micros.load(Ordering::Relaxed)),
            ),
            ("ReloadCount", c(&self.reloads)),
            ("ReloadFailureCount", c(&self.reload_failures)),
            (
                "ReloadMillis",
                Value::Gauge(self.reload_millis.load(Ordering::Relaxed)),
            ),
            (
                "ReloadSwapMillis",
                Value::Gauge(self.reload_swap_millis.load(Ordering::Relaxed)),
            ),
            (
                "StartTime",
                Value::Gauge(self.start_time.load(Ordering::Relaxed)),
            ),
            ("LogSuppressedCount", c(&self.log_suppressed)),
        ];
        for (k, n) in self.guest_counters.lock().iter() {
            v.push((k, Value::Counter(*n)));
        }
        v
    }
}
