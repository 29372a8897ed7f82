//! From a guest file to a live instance: load (compile or take from the cache, link, check the
//! world), then instantiate a fresh `Store` and run the guest's `init`.
//!
//! Invariant: a wrong component (unreadable, not a component, missing imports, wrong world) is
//! a [`LoadError`] when the agent builds the hook, never a fault at the first batch; whatever
//! goes wrong while instantiating or in `init` is a [`Fault::Init`] (counted and retried).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use wasmtime::component::InstancePre;
use wasmtime::{Store, Trap};

use super::WasmConfig;
use super::bindings;
use super::counters::WasmCounters;
use super::engine::{CompileError, Compiled, Digest16, Origin, Runtime, TICK};
use super::guest::{Fault, Hook, InitFailure};
use super::host_state::HostState;
use super::lower::BatchFn;

/// Why a guest file cannot become a linked component of its world.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error("cannot link (does it import more than WASI and sluice:pipeline/host?): {0:#}")]
    Link(#[source] wasmtime::Error),
    #[error(
        "does not implement the `{world}` world of sluice:pipeline@0.1.0 (no `{export}` export)"
    )]
    MissingExport {
        world: &'static str,
        export: &'static str,
    },
    #[error("does not implement the `{world}` world of sluice:pipeline@0.1.0: {source:#}")]
    WrongWorld {
        world: &'static str,
        #[source]
        source: wasmtime::Error,
    },
}

/// A running instance: its store and its batch function (called with events lowered straight
/// into guest memory).
pub(crate) struct Live {
    pub(crate) store: Store<HostState>,
    pub(crate) batch: BatchFn,
}

/// A compiled, linked version of the guest file.
pub(super) struct Loaded {
    pre: InstancePre<HostState>,
    pub(super) digest: Digest16,
    /// Baseline (Winch) code: Cranelift's is to replace it.
    pub(super) baseline: bool,
    /// The file's bytes, for Cranelift, when this is baseline code.
    pub(super) bytes: Option<Arc<[u8]>>,
}

/// Everything needed to make instances, shared with the reloader thread.
pub(super) struct Maker {
    pub(super) name: Arc<str>,
    pub(super) hook: Hook,
    pub(super) config: WasmConfig,
    pub(super) runtime: Arc<Runtime>,
    pub(super) counters: Arc<WasmCounters>,
}

impl Maker {
    /// Loads the file: Cranelift's code from a cache, else baseline code compiled now (see
    /// [`Maker::optimize`]), else Cranelift's compiled now.
    pub(super) fn load(&self) -> Result<Loaded, LoadError> {
        let started = Instant::now();
        let compiled = self.runtime.load_quick(&self.config.path)?;
        self.link(compiled, started)
    }

    /// Cranelift's code for a version loaded as baseline code.
    pub(super) fn optimize(&self, bytes: &[u8]) -> Result<Loaded, LoadError> {
        let started = Instant::now();
        let compiled = self.runtime.optimize(&self.config.path, bytes)?;
        self.link(compiled, started)
    }

    fn link(&self, compiled: Compiled, started: Instant) -> Result<Loaded, LoadError> {
        let Compiled {
            component,
            digest,
            origin,
            bytes,
        } = compiled;
        let micros = started.elapsed().as_micros() as u64;
        self.counters.load_micros.store(micros, Ordering::Relaxed);
        let count = match origin {
            Origin::Compiled => &self.counters.compiles,
            Origin::Baseline => &self.counters.baseline_compiles,
            Origin::Disk => &self.counters.disk_cache_hits,
            Origin::Memory => &self.counters.memory_cache_hits,
        };
        count.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(guest = %self.name, from = ?origin, micros, "Wasm guest loaded.");
        let baseline = origin == Origin::Baseline;
        let pre = self
            .runtime
            .tier(baseline)
            .linker
            .instantiate_pre(&component)
            .map_err(LoadError::Link)?;
        // Check the world now so a wrong component is a config-time error, not a fault.
        let exports: &[&'static str] = match self.hook {
            Hook::Interceptor => &["init", "intercept"],
            Hook::Router => &["init", "route"],
            Hook::SinkSelector => &["init", "select"],
        };
        if let Some(missing) = exports
            .iter()
            .find(|e| component.get_export_index(None, e).is_none())
        {
            return Err(LoadError::MissingExport {
                world: self.hook.world(),
                export: missing,
            });
        }
        self.check_world(&pre)?;
        Ok(Loaded {
            pre,
            digest,
            baseline,
            bytes: bytes.filter(|_| baseline),
        })
    }

    /// The exports' types match the hook's world (names alone were checked in `load`).
    fn check_world(&self, pre: &InstancePre<HostState>) -> Result<(), LoadError> {
        let world_ok = match self.hook {
            Hook::Interceptor => {
                bindings::interceptor::InterceptorPre::new(pre.clone()).map(|_| ())
            }
            Hook::Router => bindings::router::RouterPre::new(pre.clone()).map(|_| ()),
            Hook::SinkSelector => {
                bindings::sink_selector::SinkSelectorPre::new(pre.clone()).map(|_| ())
            }
        };
        world_ok.map_err(|source| LoadError::WrongWorld {
            world: self.hook.world(),
            source,
        })
    }

    /// Instantiates and runs `init`.
    pub(super) fn instantiate(&self, loaded: &Loaded) -> Result<Live, Fault> {
        let started = Instant::now();
        let state = HostState::new(self.name.clone(), &self.config, self.counters.clone());
        let mut store = Store::new(&self.runtime.tier(loaded.baseline).engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(self.deadline_ticks());
        let init = Self::init_result(self.hook, &mut store, &loaded.pre, &self.config);
        let batch = match init {
            Ok(Ok(batch)) => batch,
            Ok(Err(msg)) => return Err(Fault::Init(InitFailure::Refused(msg))),
            Err(e) => {
                let fault = classify(e, &store, &self.config);
                return Err(Fault::Init(InitFailure::Faulted(Box::new(fault))));
            }
        };
        self.counters.instantiations.fetch_add(1, Ordering::Relaxed);
        self.counters
            .instantiate_micros
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(Live { store, batch })
    }

    /// The outer error is wasmtime's (trap, limit, missing export); the inner one is the
    /// message the guest's `init` returned.
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

    pub(super) fn deadline_ticks(&self) -> u64 {
        (self.config.timeout.as_nanos() / TICK.as_nanos()).max(1) as u64 + 1
    }
}

/// Names a wasmtime error: limiter hit, epoch deadline, or another trap.
pub(super) fn classify(e: wasmtime::Error, store: &Store<HostState>, config: &WasmConfig) -> Fault {
    if store.data().limiter.hit {
        return Fault::Memory(config.memory);
    }
    if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return Fault::Timeout(config.timeout);
    }
    Fault::Trap(e)
}
