//! One configured guest: its compiled component, its pool of instances, fault handling and
//! reload.
//!
//! A [`Guest`] keeps up to `limits.instances` instances. A call takes an idle instance of the
//! current version (the most recently used, so one caller keeps reusing one instance), makes a
//! new one while the pool may grow, or waits for one to come back; the call itself runs
//! outside the pool's lock, so callers on different threads (an Avro source's connections, the
//! tenants of a router) run the guest in parallel. Each instance has its own store: its own
//! memory limit and its own guest state. Before each call a reloaded version the reloader
//! prepared is swapped in (idle instances of the old version are dropped; busy ones finish
//! their batch and are dropped when they come back, so a batch runs on exactly one version). A
//! faulted instance is dropped and a new one made right away; when instantiation or `init`
//! keeps failing, at most once per [`RETRY`]. A call runs with a fresh epoch deadline; its error
//! is classified into a [`Fault`], counted and logged.
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
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use wasmtime::Store;

use super::WasmConfig;
use super::counters::WasmCounters;
use super::engine::{Runtime, RuntimeError};
use super::host_state::HostState;
use super::instance::{Live, LoadError, Loaded, Maker, classify};
use super::lower::BatchFn;
use super::reloader::{Pending, Prepared, Reloader, optimize_in_background};

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
    /// The WIT world's name.
    pub fn world_name(self) -> &'static str {
        self.world()
    }

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

/// An instance waiting for its next call, and the version it runs.
struct Idle {
    live: Live,
    generation: u64,
}

/// The guest's instances and the state they share.
struct Pool {
    /// The version new instances are made from.
    loaded: Arc<Loaded>,
    /// Bumped by each reload; an instance of an older generation is dropped when it comes back.
    generation: u64,
    /// Instances between calls, the most recently used last (so a single caller keeps one).
    idle: Vec<Idle>,
    /// Instances alive: idle, in a call, or being made. At most `limits.instances`.
    count: usize,
    /// No instance is made before this (after `init` failed, at most one try per [`RETRY`]).
    next_retry: Instant,
    /// The next instance replaces one dropped after a fault (logged once it is up).
    replacing: bool,
    /// Calls in a row that timed out (on any instance).
    timeouts_in_row: u32,
    /// While set and in the future, calls are not made.
    suspended_until: Option<Instant>,
    /// The next suspension's length.
    pause: Duration,
}

impl Pool {
    fn resume(&mut self) {
        self.timeouts_in_row = 0;
        self.suspended_until = None;
        self.pause = super::SUSPEND_FIRST;
    }
}

/// A configured guest, shared by the hook that runs it: a pool of up to `limits.instances`
/// instances, one per concurrent caller, each with its own store (memory, guest state).
pub struct Guest {
    maker: Arc<Maker>,
    pool: Mutex<Pool>,
    /// Signalled when an instance comes back to the pool or a place in it frees up.
    returned: Condvar,
    limit: usize,
    pending: Pending,
    _reloader: Option<Reloader>,
}

/// How long a caller waits for a busy pool before checking reloads and suspension again.
const POOL_WAIT: Duration = Duration::from_millis(100);

impl Guest {
    /// Compiles (or takes from the cache), links and checks the world; instantiates and inits
    /// the first instance (the others are made when callers overlap).
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
        let idle = match maker.instantiate(&loaded) {
            Ok(live) => vec![Idle {
                live,
                generation: 0,
            }],
            Err(f) => {
                maker.counters.count(&f);
                tracing::warn!(guest = name, fault = %f,
                    "Wasm guest failed to start; its batches follow on-error until it does.");
                Vec::new()
            }
        };
        maker
            .counters
            .instances
            .store(idle.len() as u64, Ordering::Relaxed);
        let pending: Pending = Arc::default();
        pending.lock().latest = Some(loaded.digest);
        optimize_in_background(maker.clone(), pending.clone(), &loaded);
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
            pool: Mutex::new(Pool {
                loaded,
                generation: 0,
                count: idle.len(),
                // Only a first instance that failed to start delays the next try.
                next_retry: if idle.is_empty() {
                    Instant::now() + RETRY
                } else {
                    Instant::now()
                },
                idle,
                replacing: false,
                timeouts_in_row: 0,
                suspended_until: None,
                pause: super::SUSPEND_FIRST,
            }),
            returned: Condvar::new(),
            limit: config.instances.max(1),
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

    /// Runs `f` on an instance of the pool (making one if none is free and the pool may grow,
    /// else waiting for one). `f`'s inner error is a return the guest got wrong. A failure is
    /// counted, logged and drops that instance; the caller applies `on-error`.
    pub(crate) fn call<T, E>(
        &self,
        f: impl FnOnce(&mut Store<HostState>, BatchFn) -> wasmtime::Result<Result<T, E>>,
    ) -> Result<T, Fault>
    where
        E: Error + Send + Sync + 'static,
    {
        let Idle {
            mut live,
            generation,
        } = self.checkout()?;
        live.store.set_epoch_deadline(self.maker.deadline_ticks());
        live.store.data_mut().limiter.hit = false;
        let fault = match f(&mut live.store, live.batch) {
            Ok(Ok(v)) => {
                self.checkin(Idle { live, generation });
                return Ok(v);
            }
            Ok(Err(bad)) => Fault::BadReturn(Box::new(bad)),
            Err(e) => classify(e, &live.store, &self.maker.config),
        };
        drop(live);
        {
            let mut pool = self.pool.lock();
            pool.count -= 1;
            self.count_timeouts(&mut pool, &fault);
            // Recreate right away (outside the retry pause) so one bad batch costs one batch.
            pool.next_retry = Instant::now();
            pool.replacing = true;
            self.set_instances(&pool);
        }
        self.returned.notify_one();
        Err(self.fault(fault))
    }

    /// An instance of the current version for one call: an idle one, a new one while the pool
    /// may grow, or the next one to come back.
    fn checkout(&self) -> Result<Idle, Fault> {
        let mut pool = self.pool.lock();
        loop {
            self.swap_in_pending(&mut pool);
            self.check_suspended(&mut pool)?;
            let mut stale = Vec::new();
            let mut found = None;
            while let Some(idle) = pool.idle.pop() {
                if idle.generation == pool.generation {
                    found = Some(idle);
                    break;
                }
                pool.count -= 1;
                stale.push(idle);
            }
            if !stale.is_empty() {
                self.set_instances(&pool);
            }
            if let Some(idle) = found {
                drop(pool);
                drop(stale);
                return Ok(idle);
            }
            if pool.count < self.limit && Instant::now() >= pool.next_retry {
                pool.count += 1;
                let loaded = pool.loaded.clone();
                let generation = pool.generation;
                drop(stale);
                let made = MutexGuard::unlocked(&mut pool, || self.maker.instantiate(&loaded));
                return match made {
                    Ok(live) => {
                        if std::mem::take(&mut pool.replacing) {
                            tracing::info!(guest = %self.maker.name, "Wasm guest instance recreated.");
                        }
                        self.set_instances(&pool);
                        Ok(Idle { live, generation })
                    }
                    Err(fault) => {
                        pool.count -= 1;
                        pool.next_retry = Instant::now() + RETRY;
                        drop(pool);
                        self.returned.notify_all();
                        Err(self.fault(fault))
                    }
                };
            }
            if pool.count == 0 {
                return Err(Fault::Unavailable);
            }
            // Every instance is in a call (or being made): wait for one to come back.
            self.returned.wait_for(&mut pool, POOL_WAIT);
        }
    }

    /// Gives an instance back after a successful call (one of an older version is dropped).
    fn checkin(&self, idle: Idle) {
        let mut pool = self.pool.lock();
        if pool.timeouts_in_row > 0 || pool.pause != super::SUSPEND_FIRST {
            pool.resume();
        }
        let stale = if idle.generation == pool.generation {
            pool.idle.push(idle);
            None
        } else {
            pool.count -= 1;
            self.set_instances(&pool);
            Some(idle)
        };
        drop(pool);
        self.returned.notify_one();
        drop(stale);
    }

    fn set_instances(&self, pool: &Pool) {
        self.maker
            .counters
            .instances
            .store(pool.count as u64, Ordering::Relaxed);
    }

    /// Takes over the version the reloader prepared, if any: its instance is the new
    /// version's first; idle ones of the old version are dropped, busy ones when they return.
    fn swap_in_pending(&self, pool: &mut Pool) {
        let next = self.pending.lock().next.take();
        if let Some(Prepared {
            loaded,
            live,
            noticed,
        }) = next
        {
            pool.loaded = loaded;
            pool.generation += 1;
            pool.count -= pool.idle.len();
            pool.idle.clear();
            pool.idle.push(Idle {
                live,
                generation: pool.generation,
            });
            pool.count += 1;
            // The new version may exceed the limit while old busy ones finish their batch.
            self.set_instances(pool);
            let c = &self.maker.counters;
            match noticed {
                Some(noticed) => {
                    c.reload_swap_millis
                        .store(noticed.elapsed().as_millis() as u64, Ordering::Relaxed);
                    pool.resume();
                }
                None => {
                    c.optimized_swaps.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn check_suspended(&self, pool: &mut Pool) -> Result<(), Fault> {
        if let Some(until) = pool.suspended_until {
            let now = Instant::now();
            if now < until {
                let fault = Fault::Suspended(until - now);
                self.maker.counters.count(&fault);
                return Err(fault);
            }
            pool.suspended_until = None;
        }
        Ok(())
    }

    /// Counts timeouts in a row and suspends the guest after `limits.suspend-after` of them.
    fn count_timeouts(&self, pool: &mut Pool, fault: &Fault) {
        if !matches!(fault, Fault::Timeout(_)) {
            pool.timeouts_in_row = 0;
            return;
        }
        pool.timeouts_in_row = pool.timeouts_in_row.saturating_add(1);
        let limit = self.maker.config.suspend_after;
        if limit > 0 && pool.timeouts_in_row >= limit {
            let pause = pool.pause;
            pool.suspended_until = Some(Instant::now() + pause);
            pool.pause = (pause * 2).min(super::SUSPEND_MAX);
            tracing::warn!(guest = %self.maker.name, timeouts = pool.timeouts_in_row,
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
