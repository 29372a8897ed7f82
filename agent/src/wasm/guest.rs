//! One configured guest: its compiled component, its live instance, fault handling and reload.
//!
//! A [`Guest`] serialises calls under one lock. Before each call it swaps in a reloaded
//! instance if the reloader prepared one, and recreates a faulted instance (at most once per
//! [`RETRY`] when instantiation or `init` keeps failing). A call runs with a fresh epoch
//! deadline; its error is classified into a [`Fault`], counted and logged, and the instance is
//! dropped so the next batch starts from a clean one.
//!
//! A guest that times out `limits.suspend-after` calls in a row is suspended: for a pause
//! (1 s, doubling up to 60 s) its batches follow `on-error` without running it, so a looping
//! guest costs its host at most `suspend-after` × `limits.timeout` of CPU per pause instead of
//! a core. A call that succeeds, or a reload, ends the suspension.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use wasmtime::component::{InstancePre, ResourceTable};
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::WasmConfig;
use super::bindings::{self, Level};
use super::engine::{Digest16, Runtime, TICK};
use super::lower::BatchFn;
use crate::metrics::{MetricSet, Value, now_millis};

/// Shortest wait between two attempts to recreate an instance whose init keeps failing.
pub const RETRY: Duration = Duration::from_secs(1);

/// How long a reload waits for a file that is still being written (no rename onto it, no
/// close by its writer yet).
const SETTLE: Duration = Duration::from_millis(50);
/// Guest-defined counters per guest (further names are ignored, with one warning).
const MAX_GUEST_COUNTERS: usize = 64;

/// Which world a guest implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Interceptor,
    Router,
    SinkSelector,
}

impl Hook {
    pub fn world(self) -> &'static str {
        match self {
            Self::Interceptor => "interceptor",
            Self::Router => "router",
            Self::SinkSelector => "sink-selector",
        }
    }
}

/// A guest that cannot be built at all (unreadable, not a component, wrong world).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("wasm guest `{guest}`: {message}")]
pub struct GuestError {
    pub guest: String,
    pub message: String,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("trapped: {0}")]
    Trap(String),
    #[error("exceeded limits.timeout ({0:?})")]
    Timeout(Duration),
    #[error("exceeded limits.memory ({0} bytes)")]
    Memory(u64),
    #[error("bad return: {0}")]
    BadReturn(String),
    #[error("init failed: {0}")]
    Init(String),
    #[error("no live instance (init failed; retrying every {RETRY:?})")]
    Unavailable,
    #[error("suspended for {0:?} more after repeated timeouts")]
    Suspended(Duration),
}

/// `WASM.<name>` metrics.
#[derive(Debug, Default)]
pub struct WasmCounters {
    pub batches: AtomicU64,
    pub events_in: AtomicU64,
    pub events_out: AtomicU64,
    pub faults: AtomicU64,
    pub traps: AtomicU64,
    pub timeouts: AtomicU64,
    pub memory: AtomicU64,
    pub bad_returns: AtomicU64,
    pub init_failures: AtomicU64,
    pub policy_failed: AtomicU64,
    pub policy_dropped: AtomicU64,
    pub policy_passed: AtomicU64,
    pub suspended: AtomicU64,
    pub instantiations: AtomicU64,
    pub instantiate_micros: AtomicU64,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    pub reload_millis: AtomicU64,
    pub reload_swap_millis: AtomicU64,
    pub start_time: AtomicU64,
    /// `host.log` lines refused by the rate limit ([`super::guest_log`]).
    pub log_suppressed: AtomicU64,
    log_bucket: Mutex<super::guest_log::LogBucket>,
    guest_counters: Mutex<BTreeMap<&'static str, u64>>,
}

impl WasmCounters {
    pub fn new() -> Arc<Self> {
        let c = Self::default();
        c.start_time.store(now_millis(), Ordering::Relaxed);
        Arc::new(c)
    }

    fn add_guest(&self, guest: &str, name: &str, delta: u64) {
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
            ("SuspendedBatchCount", c(&self.suspended)),
            ("InstantiateCount", c(&self.instantiations)),
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

/// Refuses memory growth past `limits.memory` and remembers that it did.
struct MemoryLimiter {
    max: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// A store's data: WASI (with only granted capabilities), the limiter, the guest's identity.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    guest: Arc<str>,
    counters: Arc<WasmCounters>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::interceptor::sluice::pipeline::types::Host for HostState {}

impl bindings::host::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        use super::guest_log::{Verdict, clip};
        let guest = &*self.guest;
        let verdict = self
            .counters
            .log_bucket
            .lock()
            .admit(std::time::Instant::now());
        match verdict {
            Verdict::Suppress => {
                self.counters.log_suppressed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Verdict::Write { suppressed } if suppressed > 0 => tracing::warn!(
                guest,
                suppressed,
                "Guest log lines were suppressed by the rate limit."
            ),
            Verdict::Write { .. } => {}
        }
        let message = clip(&message);
        match level {
            Level::Trace => tracing::trace!(guest, "{message}"),
            Level::Debug => tracing::debug!(guest, "{message}"),
            Level::Info => tracing::info!(guest, "{message}"),
            Level::Warn => tracing::warn!(guest, "{message}"),
            Level::Error => tracing::error!(guest, "{message}"),
        }
    }

    fn counter_add(&mut self, name: String, delta: u64) {
        self.counters.add_guest(&self.guest, &name, delta);
    }
}

/// Clocks for guests without `grant.clock`: always zero.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A running instance: its store and its batch function (called with events lowered straight
/// into guest memory).
pub struct Live {
    pub store: Store<HostState>,
    pub batch: BatchFn,
}

/// A compiled, linked version of the guest file.
struct Loaded {
    pre: InstancePre<HostState>,
    digest: Digest16,
}

struct Slot {
    loaded: Arc<Loaded>,
    live: Option<Live>,
    next_retry: Instant,
    /// Calls in a row that timed out.
    timeouts_in_row: u32,
    /// While set and in the future, calls are not made.
    suspended_until: Option<Instant>,
    /// The next suspension's length.
    pause: Duration,
}

impl Slot {
    fn resume(&mut self) {
        self.timeouts_in_row = 0;
        self.suspended_until = None;
        self.pause = super::SUSPEND_FIRST;
    }
}

/// What a reloader prepared, waiting for the next batch.
/// The new version, its instance, and when the file change was noticed.
type Pending = Arc<Mutex<Option<(Arc<Loaded>, Live, Instant)>>>;

/// Everything needed to make instances, shared with the reloader thread.
struct Maker {
    name: Arc<str>,
    hook: Hook,
    config: WasmConfig,
    runtime: Arc<Runtime>,
    counters: Arc<WasmCounters>,
}

impl Maker {
    fn load(&self) -> Result<Loaded, String> {
        let (component, digest) = self.runtime.load(&self.config.path)?;
        let pre = self
            .runtime
            .linker
            .instantiate_pre(&component)
            .map_err(|e| {
                format!(
                    "cannot link (does it import more than WASI and sluice:pipeline/host?): {e:#}"
                )
            })?;
        // Check the world now so a wrong component is a config-time error, not a fault.
        let exports: &[&str] = match self.hook {
            Hook::Interceptor => &["init", "intercept"],
            Hook::Router => &["init", "route"],
            Hook::SinkSelector => &["init", "select"],
        };
        if let Some(missing) = exports
            .iter()
            .find(|e| component.get_export_index(None, e).is_none())
        {
            return Err(format!(
                "does not implement the `{}` world of sluice:pipeline@0.1.0 (no `{missing}` \
                 export)",
                self.hook.world()
            ));
        }
        let world_ok = match self.hook {
            Hook::Interceptor => {
                bindings::interceptor::InterceptorPre::new(pre.clone()).map(|_| ())
            }
            Hook::Router => bindings::router::RouterPre::new(pre.clone()).map(|_| ()),
            Hook::SinkSelector => {
                bindings::sink_selector::SinkSelectorPre::new(pre.clone()).map(|_| ())
            }
        };
        world_ok.map_err(|e| {
            format!(
                "does not implement the `{}` world of sluice:pipeline@0.1.0: {e:#}",
                self.hook.world()
            )
        })?;
        Ok(Loaded { pre, digest })
    }

    fn wasi(&self) -> WasiCtx {
        let mut b = WasiCtxBuilder::new();
        b.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if !self.config.grant_clock {
            b.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
        }
        if let Some(dir) = &self.config.grant_fs {
            let guest_path = dir.to_string_lossy().into_owned();
            if let Err(e) = b.preopened_dir(dir, guest_path, FsPerms::ReadOnly) {
                tracing::warn!(guest = %self.name, dir = %dir.display(), error = %e,
                    "Cannot grant folder to guest.");
            }
        }
        b.build()
    }

    /// Instantiates and runs `init`.
    fn instantiate(&self, loaded: &Loaded) -> Result<Live, Fault> {
        let started = Instant::now();
        let state = HostState {
            wasi: self.wasi(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                max: usize::try_from(self.config.memory).unwrap_or(usize::MAX),
                hit: false,
            },
            guest: self.name.clone(),
            counters: self.counters.clone(),
        };
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(self.deadline_ticks());
        let init = Self::init_result(self.hook, &mut store, &loaded.pre, &self.config);
        let batch = match init {
            Ok(Ok(batch)) => batch,
            Ok(Err(msg)) => return Err(Fault::Init(msg)),
            Err(e) => {
                return Err(Fault::Init(classify(&e, &store, &self.config).to_string()));
            }
        };
        self.counters.instantiations.fetch_add(1, Ordering::Relaxed);
        self.counters
            .instantiate_micros
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(Live { store, batch })
    }

    fn init_result(
        hook: Hook,
        store: &mut Store<HostState>,
        pre: &InstancePre<HostState>,
        config: &WasmConfig,
    ) -> wasmtime::Result<Result<BatchFn, String>> {
        let config = &config.config;
        let instance = pre.instantiate(&mut *store)?;
        let init = match hook {
            Hook::Interceptor => {
                let e = bindings::interceptor::Interceptor::new(&mut *store, &instance)?;
                e.call_init(&mut *store, config)?
            }
            Hook::Router => {
                let e = bindings::router::Router::new(&mut *store, &instance)?;
                e.call_init(&mut *store, config)?
            }
            Hook::SinkSelector => {
                let e = bindings::sink_selector::SinkSelector::new(&mut *store, &instance)?;
                e.call_init(&mut *store, config)?
            }
        };
        if let Err(msg) = init {
            return Ok(Err(msg));
        }
        Ok(Ok(BatchFn::new(&mut *store, &instance, hook)?))
    }

    fn deadline_ticks(&self) -> u64 {
        (self.config.timeout.as_nanos() / TICK.as_nanos()).max(1) as u64 + 1
    }

    fn count(&self, fault: &Fault) {
        let c = &self.counters;
        let specific = match fault {
            // Not a new fault: the consequence of earlier timeouts.
            Fault::Suspended(_) => {
                c.suspended.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Fault::Trap(_) => &c.traps,
            Fault::Timeout(_) => &c.timeouts,
            Fault::Memory(_) => &c.memory,
            Fault::BadReturn(_) => &c.bad_returns,
            Fault::Init(_) | Fault::Unavailable => &c.init_failures,
        };
        c.faults.fetch_add(1, Ordering::Relaxed);
        specific.fetch_add(1, Ordering::Relaxed);
    }
}

/// Names a wasmtime error: limiter hit, epoch deadline, or another trap.
fn classify(e: &wasmtime::Error, store: &Store<HostState>, config: &WasmConfig) -> Fault {
    if store.data().limiter.hit {
        return Fault::Memory(config.memory);
    }
    if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return Fault::Timeout(config.timeout);
    }
    Fault::Trap(format!("{e:#}"))
}

/// A configured guest, shared by the hook that runs it.
pub struct Guest {
    maker: Arc<Maker>,
    slot: Mutex<Slot>,
    pending: Pending,
    _reloader: Option<super::guest::Reloader>,
}

impl Guest {
    /// Compiles (or takes from the cache), links and checks the world; instantiates and inits.
    /// A failing `init` is not an error here: it is a fault, retried before later batches.
    pub fn new(
        name: &str,
        hook: Hook,
        config: &WasmConfig,
        counters: Arc<WasmCounters>,
    ) -> Result<Self, GuestError> {
        let err = |message: String| GuestError {
            guest: name.to_string(),
            message,
        };
        let runtime = Runtime::shared().map_err(err)?;
        let maker = Arc::new(Maker {
            name: Arc::from(name),
            hook,
            config: config.clone(),
            runtime,
            counters,
        });
        let loaded = Arc::new(maker.load().map_err(err)?);
        let live = match maker.instantiate(&loaded) {
            Ok(l) => Some(l),
            Err(f) => {
                maker.count(&f);
                tracing::warn!(guest = name, fault = %f,
                    "Wasm guest failed to start; its batches follow on-error until it does.");
                None
            }
        };
        let pending: Pending = Arc::default();
        let reloader = if config.reload {
            match Reloader::start(maker.clone(), pending.clone(), loaded.digest) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(guest = name, error = %e, "Hot reload disabled: cannot watch the file.");
                    None
                }
            }
        } else {
            None
        };
        Ok(Self {
            maker,
            slot: Mutex::new(Slot {
                loaded,
                live,
                next_retry: Instant::now() + RETRY,
                timeouts_in_row: 0,
                suspended_until: None,
                pause: super::SUSPEND_FIRST,
            }),
            pending,
            _reloader: reloader,
        })
    }

    pub fn name(&self) -> &str {
        &self.maker.name
    }

    pub fn config(&self) -> &WasmConfig {
        &self.maker.config
    }

    pub fn counters(&self) -> &Arc<WasmCounters> {
        &self.maker.counters
    }

    /// Runs `f` on the live instance (recreating it first if needed). A failure is counted,
    /// logged and drops the instance; the caller applies `on-error`.
    pub fn call<T>(
        &self,
        f: impl FnOnce(&mut Store<HostState>, BatchFn) -> wasmtime::Result<Result<T, String>>,
    ) -> Result<T, Fault> {
        let mut slot = self.slot.lock();
        if let Some((loaded, live, noticed)) = self.pending.lock().take() {
            slot.loaded = loaded;
            slot.live = Some(live);
            self.maker
                .counters
                .reload_swap_millis
                .store(noticed.elapsed().as_millis() as u64, Ordering::Relaxed);
            slot.resume();
        }
        if let Some(until) = slot.suspended_until {
            let now = Instant::now();
            if now < until {
                let fault = Fault::Suspended(until - now);
                self.maker.count(&fault);
                return Err(fault);
            }
            slot.suspended_until = None;
        }
        if slot.live.is_none() {
            let now = Instant::now();
            if now < slot.next_retry {
                return Err(Fault::Unavailable);
            }
            slot.next_retry = now + RETRY;
            match self.maker.instantiate(&slot.loaded) {
                Ok(l) => {
                    tracing::info!(guest = %self.maker.name, "Wasm guest instance recreated.");
                    slot.live = Some(l);
                }
                Err(fault) => return Err(self.fault(fault)),
            }
        }
        let Some(live) = slot.live.as_mut() else {
            return Err(Fault::Unavailable);
        };
        live.store.set_epoch_deadline(self.maker.deadline_ticks());
        live.store.data_mut().limiter.hit = false;
        let fault = match f(&mut live.store, live.batch) {
            Ok(Ok(v)) => {
                if slot.timeouts_in_row > 0 || slot.pause != super::SUSPEND_FIRST {
                    slot.resume();
                }
                return Ok(v);
            }
            Ok(Err(msg)) => Fault::BadReturn(msg),
            Err(e) => classify(&e, &live.store, &self.maker.config),
        };
        slot.live = None;
        if matches!(fault, Fault::Timeout(_)) {
            slot.timeouts_in_row = slot.timeouts_in_row.saturating_add(1);
            let limit = self.maker.config.suspend_after;
            if limit > 0 && slot.timeouts_in_row >= limit {
                let pause = slot.pause;
                slot.suspended_until = Some(Instant::now() + pause);
                slot.pause = (pause * 2).min(super::SUSPEND_MAX);
                tracing::warn!(guest = %self.maker.name, timeouts = slot.timeouts_in_row,
                    pause = ?pause, on_error = ?self.maker.config.on_error,
                    "Wasm guest suspended after repeated timeouts; its batches follow on-error.");
            }
        } else {
            slot.timeouts_in_row = 0;
        }
        // Recreate right away (outside the retry pause) so one bad batch costs one batch.
        slot.next_retry = Instant::now();
        Err(self.fault(fault))
    }

    fn fault(&self, fault: Fault) -> Fault {
        self.maker.count(&fault);
        tracing::warn!(guest = %self.maker.name, path = %self.maker.config.path.display(),
            fault = %fault, on_error = ?self.maker.config.on_error, "Wasm guest fault.");
        fault
    }
}

/// Watches the guest file; on a change compiles, instantiates and inits the new version on
/// its own thread and leaves it in `pending` for the next batch. A version that fails leaves
/// the running one in place.
pub struct Reloader {
    _watcher: notify::RecommendedWatcher,
}

impl Reloader {
    fn start(maker: Arc<Maker>, pending: Pending, digest: Digest16) -> Result<Self, String> {
        use notify::Watcher;
        let path = maker.config.path.clone();
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let file_name = path.file_name().map(|n| n.to_os_string());
        // `true` when the event says the file is whole: renamed onto (an atomic install) or
        // closed by a writer.
        let (tx, rx) = std::sync::mpsc::channel::<bool>();
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            use notify::EventKind;
            use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
            let Ok(ev) = ev else { return };
            let ours = |p: &PathBuf| p.file_name() == file_name.as_deref();
            if !ev.paths.iter().any(ours) {
                return;
            }
            let complete = match ev.kind {
                // A rename's destination is the last path; renamed away is not complete.
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                    ev.paths.last().is_some_and(ours)
                }
                EventKind::Modify(ModifyKind::Name(RenameMode::To))
                | EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
                EventKind::Access(_) => return,
                _ => false,
            };
            let _ = tx.send(complete);
        })
        .map_err(|e| e.to_string())?;
        watcher
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        std::thread::Builder::new()
            .name("wasm-reload".into())
            .spawn(move || reload_loop(&maker, &pending, digest, &rx))
            .map_err(|e| e.to_string())?;
        Ok(Self { _watcher: watcher })
    }
}

/// Runs until the watcher (and with it the sender) is dropped.
fn reload_loop(
    maker: &Maker,
    pending: &Pending,
    mut current: Digest16,
    rx: &std::sync::mpsc::Receiver<bool>,
) {
    use std::sync::mpsc::RecvTimeoutError;
    while let Ok(mut complete) = rx.recv() {
        let noticed = Instant::now();
        // Unless the file is known to be whole (renamed over, or its writer closed it), give
        // the writer up to SETTLE to finish, coalescing the burst of events one copy makes.
        let settle_until = noticed + SETTLE;
        while !complete {
            match rx.recv_timeout(settle_until.saturating_duration_since(Instant::now())) {
                Ok(c) => complete = c,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        while rx.try_recv().is_ok() {}
        let started = Instant::now();
        let loaded = match maker.load() {
            Ok(l) if l.digest == current => continue,
            Ok(l) => Arc::new(l),
            Err(e) => {
                maker
                    .counters
                    .reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(guest = %maker.name, error = %e,
                    "Wasm guest reload failed; the running version stays.");
                continue;
            }
        };
        match maker.instantiate(&loaded) {
            Ok(live) => {
                current = loaded.digest;
                *pending.lock() = Some((loaded, live, noticed));
                let ms = started.elapsed().as_millis() as u64;
                maker.counters.reloads.fetch_add(1, Ordering::Relaxed);
                maker.counters.reload_millis.store(ms, Ordering::Relaxed);
                tracing::info!(guest = %maker.name, compile_and_init_ms = ms,
                    "Wasm guest reloaded; it takes over at the next batch.");
            }
            Err(f) => {
                maker
                    .counters
                    .reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(guest = %maker.name, fault = %f,
                    "Wasm guest reload failed; the running version stays.");
            }
        }
    }
}
