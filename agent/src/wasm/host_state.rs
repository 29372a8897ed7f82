//! A store's data: WASI with only the granted capabilities, the memory limiter, and the
//! `host` interface a guest imports (`log`, rate-limited; `counter-add`).
//!
//! Invariant: a guest without `grant.clock` reads clocks that stay at zero, and one without
//! `grant.fs` sees no file system; network access is never granted.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::WasmConfig;
use super::bindings::{self, Level};
use super::counters::WasmCounters;

/// Refuses memory growth past `limits.memory` and remembers that it did.
pub(super) struct MemoryLimiter {
    max: usize,
    /// Set when a growth was refused; cleared before each call.
    pub(super) hit: bool,
}

impl MemoryLimiter {
    pub(super) fn new(max_bytes: u64) -> Self {
        Self {
            max: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            hit: false,
        }
    }
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
    pub(super) limiter: MemoryLimiter,
    guest: Arc<str>,
    counters: Arc<WasmCounters>,
}

impl HostState {
    pub(super) fn new(guest: Arc<str>, config: &WasmConfig, counters: Arc<WasmCounters>) -> Self {
        Self {
            wasi: wasi(&guest, config),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(config.memory),
            guest,
            counters,
        }
    }
}

/// WASI with no network and only the granted folder and clocks.
fn wasi(guest: &str, config: &WasmConfig) -> WasiCtx {
    let mut b = WasiCtxBuilder::new();
    b.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    if !config.grant_clock {
        b.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
    }
    if let Some(dir) = &config.grant_fs {
        let guest_path = dir.to_string_lossy().into_owned();
        if let Err(e) = b.preopened_dir(dir, guest_path, FsPerms::ReadOnly) {
            tracing::warn!(guest, dir = %dir.display(), error = %e,
                "Cannot grant folder to guest.");
        }
    }
    b.build()
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
