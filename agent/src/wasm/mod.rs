//! WebAssembly hooks: user logic as sandboxed components (wit/pipeline.wit).
//!
//! Three hooks share one host: an `interceptor` (keep / drop / replace per event), a channel
//! `router` (a channel set per event) and a `sink-selector` (a sink per event of a sink
//! group's batch). Each is called once per batch.
//!
//! Shape of the host (see [`engine`] and [`guest`]):
//! - one process-wide [`engine::Runtime`]: a wasmtime `Engine` with epoch interruption, a
//!   `Linker` with the `host` interface and WASI (capabilities denied unless granted), an epoch
//!   ticker thread owned by a Drop guard, and a cache of compiled components keyed by the
//!   file's digest, so restarts and config reloads do not recompile;
//! - per configured hook, one [`guest::Guest`]: an `InstancePre` built when the agent builds the
//!   component, a pool of up to `limits.instances` instances (one per concurrent caller), one
//!   `Store` per instance with a memory limiter and a per-batch epoch deadline, and a reloader that compiles a changed file off the hot path. Its parts live by
//!   role: [`instance`] (load a file, make a store and run `init`), [`host_state`] (a store's
//!   data: WASI, limiter, the `host` interface), [`reloader`] and [`counters`].
//!
//! Errors keep their cause: a guest that cannot be built is a [`GuestError`] whose source is
//! the [`LoadError`] / [`CompileError`] / [`RuntimeError`] (and through it the I/O or wasmtime
//! error); a failed call is a [`Fault`] whose source is the trap or what the guest returned
//! wrong (the adapters' `VerdictError`, `RouteError`, `ChoiceError`).
//!
//! Invariants:
//! - a guest fault (trap, timeout, memory limit, bad return, failed init) never propagates as a
//!   panic: the batch follows `on-error`, the instance is dropped and recreated, and
//!   `FaultCount` plus the fault's own counter are incremented with a warning naming the guest;
//! - a hot reload takes effect between two batches of each caller: a batch runs from start to
//!   end on one instance of one version, so every event is processed by exactly one version.

pub(crate) mod bindings;
pub(crate) mod codec;
pub(crate) mod counters;
pub(crate) mod engine;
pub(crate) mod guest;
pub(crate) mod guest_log;
mod host_state;
mod instance;
pub mod interceptor;
pub(crate) mod lower;
mod reloader;
pub(crate) mod router;
pub mod scaffold;
pub(crate) mod sink_selector;
pub mod tester;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{ConfigError, Props};
use crate::metrics::ComponentType;
use crate::pipeline::BuildContext;

pub use counters::WasmCounters;
pub use engine::{CompileError, RuntimeError};
pub use guest::{Fault, Guest, GuestError, Hook, InitFailure};
pub use instance::LoadError;
pub use interceptor::WasmInterceptorSpec;
pub use lower::BatchTooLarge;
pub use router::WasmRouterSpec;
pub use sink_selector::WasmSinkSelectorSpec;

/// Fresh guest counters, registered under `WASM.<the context's name>`.
fn counters(cx: &BuildContext) -> Arc<WasmCounters> {
    let c = WasmCounters::new();
    cx.register(ComponentType::Wasm, c.clone());
    c
}

/// What happens to a batch when the guest faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Roll the batch back; the source retries it later (nothing is lost).
    Fail,
    /// Discard the batch (counted).
    Drop,
    /// Let the batch through unchanged (interceptor), to every channel (router), or to the
    /// group's first sink (sink selector).
    Pass,
    /// Put the batch into the source's `deadLetter.channel`, with headers naming the guest and
    /// the fault (interceptors and routers; the source must have a dead-letter channel).
    DeadLetter,
}

/// The keys shared by every wasm hook: `path`, `config.*`, `limits.*`, `on-error`, `grant.*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WasmConfig {
    /// The component file (`path`), relative to the config file's folder.
    pub path: PathBuf,
    /// `config.<key> = <value>` pairs, passed to the guest's `init`.
    pub config: Vec<(String, String)>,
    /// `limits.memory`: largest linear memory, bytes (default 64 MiB; `k`/`m`/`g` suffixes).
    pub memory: u64,
    /// `limits.timeout`: CPU time per call, ms (default 1000).
    pub timeout: Duration,
    /// `on-error`: `fail` (default), `drop`, `pass` or `dead-letter`.
    pub on_error: OnError,
    /// `reload`: watch the file and hot-swap a changed component (default true).
    pub reload: bool,
    /// `grant.fs`: a host folder the guest may read, preopened at the same path (default none).
    pub grant_fs: Option<PathBuf>,
    /// `grant.clock`: real wall and monotonic clocks (default false: clocks read zero).
    pub grant_clock: bool,
    /// `limits.suspend-after`: timeouts in a row after which the guest is suspended (its
    /// batches follow `on-error` without running it) for a pause that starts at
    /// [`SUSPEND_FIRST`] and doubles up to [`SUSPEND_MAX`]; 0 = never (default 3).
    pub suspend_after: u32,
    /// `body-prefix`: send the guest at most this many bytes of each body (default: all).
    /// Headers always go in full. An interceptor may not `replace` an event whose body was
    /// cut (that would lose the rest); it can keep, drop or `set-headers` it.
    pub body_prefix: Option<usize>,
    /// `limits.instances`: most instances of the guest at once, one per concurrent caller
    /// (default [`DEFAULT_INSTANCES`]); each has its own `limits.memory` and its own state.
    pub instances: usize,
}

pub const DEFAULT_INSTANCES: usize = 4;
/// Largest `limits.instances`.
pub const MAX_INSTANCES: usize = 256;

pub const DEFAULT_SUSPEND_AFTER: u32 = 3;
/// First suspension of a guest that keeps timing out.
pub const SUSPEND_FIRST: Duration = Duration::from_secs(1);
/// Longest suspension (a reload or a successful call ends it sooner).
pub const SUSPEND_MAX: Duration = Duration::from_secs(60);

pub const DEFAULT_MEMORY: u64 = 64 << 20;
pub const DEFAULT_TIMEOUT_MS: u64 = 1000;

impl WasmConfig {
    pub fn from_props(p: &Props) -> Result<Self, ConfigError> {
        let raw = p.required("path")?;
        let mut path = PathBuf::from(&raw);
        // Relative to the file that set it; a config read over HTTP has no directory.
        let origin = p.origin("path");
        if path.is_relative()
            && !crate::config::sources::is_remote(origin)
            && let Some(dir) = origin.parent()
        {
            path = dir.join(path);
        }
        let memory = match p.get("limits.memory").filter(|v| !v.is_empty()) {
            None => DEFAULT_MEMORY,
            Some(v) => parse_size(v).ok_or_else(|| {
                p.error(
                    "limits.memory",
                    format!("invalid size `{v}`; expected bytes with an optional k, m or g suffix"),
                )
            })?,
        };
        if !(1 << 16..=4 << 30).contains(&memory) {
            return Err(p.error(
                "limits.memory",
                "must be from 64k (one wasm page) to 4g (a 32-bit guest's address space)",
            ));
        }
        let timeout = p.millis("limits.timeout", DEFAULT_TIMEOUT_MS, 1..=60_000)?;
        if timeout.is_zero() {
            return Err(p.error("limits.timeout", "must be greater than 0"));
        }
        let on_error = p.choice(
            "on-error",
            OnError::Fail,
            &[
                (&["fail"], OnError::Fail),
                (&["drop"], OnError::Drop),
                (&["pass"], OnError::Pass),
                (&["dead-letter"], OnError::DeadLetter),
            ],
        )?;
        let grant_fs = p
            .get("grant.fs")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Ok(Self {
            path,
            config: p.children("config."),
            memory,
            timeout,
            on_error,
            reload: p.bool("reload", true)?,
            grant_fs,
            grant_clock: p.bool("grant.clock", false)?,
            suspend_after: p.int("limits.suspend-after", DEFAULT_SUSPEND_AFTER, 0..=1_000_000)?,
            instances: p.int("limits.instances", DEFAULT_INSTANCES, 1..=MAX_INSTANCES)?,
            body_prefix: match p.get("body-prefix").filter(|v| !v.trim().is_empty()) {
                None => None,
                Some(v) => Some(v.trim().parse::<usize>().map_err(|_| {
                    p.error(
                        "body-prefix",
                        format!("invalid value `{v}`; expected a number of bytes"),
                    )
                })?),
            },
        })
    }
}

/// `65536`, `64k`, `64m`, `1g` (binary multiples, case-insensitive, optional `b`/`ib`).
fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim().to_ascii_lowercase();
    let v = v.trim_end_matches("ib").trim_end_matches('b');
    let (num, shift) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 10),
        'm' => (&v[..v.len() - 1], 20),
        'g' => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Some(65536));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("16MiB"), Some(16 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn keys_and_defaults() -> Result<(), ConfigError> {
        let p = Props::from_pairs(&[
            ("path", "/g/f.wasm"),
            ("config.level", "warn"),
            ("on-error", "drop"),
            ("limits.timeout", "50"),
        ]);
        let c = WasmConfig::from_props(&p)?;
        assert_eq!(c.path, PathBuf::from("/g/f.wasm"));
        assert_eq!(c.config, vec![("level".to_string(), "warn".to_string())]);
        assert_eq!(c.on_error, OnError::Drop);
        assert_eq!(c.timeout, Duration::from_millis(50));
        assert_eq!(c.memory, DEFAULT_MEMORY);
        assert!(c.reload && !c.grant_clock && c.grant_fs.is_none());
        assert_eq!(c.suspend_after, DEFAULT_SUSPEND_AFTER);
        assert_eq!(c.body_prefix, None);
        assert_eq!(c.instances, DEFAULT_INSTANCES);
        for bad in ["0", "257", "x"] {
            let p = Props::from_pairs(&[("path", "f.wasm"), ("limits.instances", bad)]);
            assert!(
                WasmConfig::from_props(&p).is_err(),
                "limits.instances = {bad}"
            );
        }
        let p = Props::from_pairs(&[("path", "f.wasm"), ("body-prefix", "16")]);
        assert_eq!(WasmConfig::from_props(&p)?.body_prefix, Some(16));
        let bad = Props::from_pairs(&[("path", "f.wasm"), ("body-prefix", "-1")]);
        assert!(WasmConfig::from_props(&bad).is_err());
        let bad = Props::from_pairs(&[("path", "f.wasm"), ("on-error", "explode")]);
        assert!(WasmConfig::from_props(&bad).is_err());
        Ok(())
    }
}
