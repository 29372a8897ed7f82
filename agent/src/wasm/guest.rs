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
//!
//! The guest's parts live by role: [`super::instance`] loads a file and makes instances,
//! [`super::host_state`] is a store's data, [`super::reloader`] prepares changed versions and
//! [`super::counters`] holds the `WASM.<name>` metrics.

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use wasmtime::Store;

use super::WasmConfig;
use super::counters::WasmCounters;
use super::engine::{Runtime, RuntimeError};
use super::host_state::HostState;
use super::instance::{LoadError, Loaded, Maker, classify};
use super::lower::BatchFn;
use super::reloader::{Pending, Reloader};

/// Shortest wait between two attempts to recreate an instance whose init keeps failing.
pub(crate) const RETRY: Duration = Duration::from_secs(1);

/// Which world a guest implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Interceptor,
    Router,
    SinkSelector,
}

impl Hook {
    pub(crate) fn world(self) -> &'static str {
        match self {
            Self::Interceptor => "interceptor",
            Self::Router => "router",
            Self::SinkSelector => "sink-selector",
        }
    }
}

/// A guest that cannot be built at all (unreadable, not a component, wrong world, or a hook
/// whose own settings do not fit it).
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("wasm guest `{guest}`: {source}")]
    Runtime {
        guest: String,
        #[source]
        source: RuntimeError,
    },
    #[error("wasm guest `{guest}`: {source}")]
    Load {
        guest: String,
        #[source]
        source: LoadError,
    },
    #[error("wasm guest `{guest}`: a wasm router handles at most 64 channels, not {channels}")]
    TooManyChannels { guest: String, channels: usize },
    #[error("wasm guest `{guest}`: the sink group has no sinks")]
    NoSinks { guest: String },
    #[error(
        "wasm guest `{guest}`: every sink of a wasm group must read the same channel; `{other}` \
         reads another one than `{first}`"
    )]
    MixedChannels {
        guest: String,
        first: String,
        other: String,
    },
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    #[error("trapped: {0:#}")]
    Trap(#[source] wasmtime::Error),
    #[error("exceeded limits.timeout ({0:?})")]
    Timeout(Duration),
    #[error("exceeded limits.memory ({0} bytes)")]
    Memory(u64),
    /// What the guest returned does not fit the batch (the adapter's check says why).
    #[error("bad return: {0}")]
    BadReturn(#[source] Box<dyn Error + Send + Sync>),
    #[error("init failed: {0}")]
    Init(#[source] InitFailure),
    #[error("no live instance (init failed; retrying every {RETRY:?})")]
    Unavailable,
    #[error("suspended for {0:?} more after repeated timeouts")]
    Suspended(Duration),
}

/// Why a new instance did not start.
#[derive(Debug, thiserror::Error)]
pub enum InitFailure {
    /// The guest's `init` returned this error.
    #[error("{0}")]
    Refused(String),
    /// Instantiating or running `init` faulted.
    #[error("{0}")]
    Faulted(#[source] Box<Fault>),
}

struct Slot {
    loaded: Arc<Loaded>,
    live: Option<super::instance::Live>,
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

/// A configured guest, shared by the hook that runs it.
pub struct Guest {
    maker: Arc<Maker>,
    slot: Mutex<Slot>,
    pending: Pending,
    _reloader: Option<Reloader>,
}

impl Guest {
    /// Compiles (or takes from the cache), links and checks the world; instantiates and inits.
    /// A failing `init` is not an error here: it is a fault, retried before later batches.
    pub(crate) fn new(
        name: &str,
        hook: Hook,
        config: &WasmConfig,
        counters: Arc<WasmCounters>,
    ) -> Result<Self, GuestError> {
        let runtime = Runtime::shared().map_err(|source| GuestError::Runtime {
            guest: name.to_string(),
            source,
        })?;
        let maker = Arc::new(Maker {
            name: Arc::from(name),
            hook,
            config: config.clone(),
            runtime,
            counters,
        });
        let loaded = Arc::new(maker.load().map_err(|source| GuestError::Load {
            guest: name.to_string(),
            source,
        })?);
        let live = match maker.instantiate(&loaded) {
            Ok(l) => Some(l),
            Err(f) => {
                maker.counters.count(&f);
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

    pub(crate) fn name(&self) -> &str {
        &self.maker.name
    }

    pub(crate) fn config(&self) -> &WasmConfig {
        &self.maker.config
    }

    pub(crate) fn counters(&self) -> &Arc<WasmCounters> {
        &self.maker.counters
    }

    /// Runs `f` on the live instance (recreating it first if needed). `f`'s inner error is a
    /// return the guest got wrong. A failure is counted, logged and drops the instance; the
    /// caller applies `on-error`.
    pub(crate) fn call<T, E>(
        &self,
        f: impl FnOnce(&mut Store<HostState>, BatchFn) -> wasmtime::Result<Result<T, E>>,
    ) -> Result<T, Fault>
    where
        E: Error + Send + Sync + 'static,
    {
        let mut slot = self.slot.lock();
        self.swap_in_pending(&mut slot);
        self.check_suspended(&mut slot)?;
        self.ensure_live(&mut slot)?;
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
            Ok(Err(bad)) => Fault::BadReturn(Box::new(bad)),
            Err(e) => classify(e, &live.store, &self.maker.config),
        };
        slot.live = None;
        self.count_timeouts(&mut slot, &fault);
        // Recreate right away (outside the retry pause) so one bad batch costs one batch.
        slot.next_retry = Instant::now();
        Err(self.fault(fault))
    }

    /// Takes over the version the reloader prepared, if any.
    fn swap_in_pending(&self, slot: &mut Slot) {
        if let Some((loaded, live, noticed)) = self.pending.lock().take() {
            slot.loaded = loaded;
            slot.live = Some(live);
            self.maker.counters.reload_swap_millis.store(
                noticed.elapsed().as_millis() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            slot.resume();
        }
    }

    fn check_suspended(&self, slot: &mut Slot) -> Result<(), Fault> {
        if let Some(until) = slot.suspended_until {
            let now = Instant::now();
            if now < until {
                let fault = Fault::Suspended(until - now);
                self.maker.counters.count(&fault);
                return Err(fault);
            }
            slot.suspended_until = None;
        }
        Ok(())
    }

    /// Recreates a dropped instance, at most once per [`RETRY`] while that keeps failing.
    fn ensure_live(&self, slot: &mut Slot) -> Result<(), Fault> {
        if slot.live.is_some() {
            return Ok(());
        }
        let now = Instant::now();
        if now < slot.next_retry {
            return Err(Fault::Unavailable);
        }
        slot.next_retry = now + RETRY;
        match self.maker.instantiate(&slot.loaded) {
            Ok(l) => {
                tracing::info!(guest = %self.maker.name, "Wasm guest instance recreated.");
                slot.live = Some(l);
                Ok(())
            }
            Err(fault) => Err(self.fault(fault)),
        }
    }

    /// Counts timeouts in a row and suspends the guest after `limits.suspend-after` of them.
    fn count_timeouts(&self, slot: &mut Slot, fault: &Fault) {
        if !matches!(fault, Fault::Timeout(_)) {
            slot.timeouts_in_row = 0;
            return;
        }
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
    }

    fn fault(&self, fault: Fault) -> Fault {
        self.maker.counters.count(&fault);
        tracing::warn!(guest = %self.maker.name, path = %self.maker.config.path.display(),
            fault = %fault, on_error = ?self.maker.config.on_error, "Wasm guest fault.");
        fault
    }
}
