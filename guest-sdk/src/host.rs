//! The host's imports: logging and counters. Natively (unit tests) they are recorded in
//! [`crate::testing`] instead.

/// Log levels, as the host's `log` takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

#[cfg(all(target_arch = "wasm32", feature = "interceptor"))]
use crate::__interceptor::sluice::pipeline as imports;
#[cfg(all(
    target_arch = "wasm32",
    feature = "router",
    not(feature = "interceptor")
))]
use crate::__router::sluice::pipeline as imports;
#[cfg(all(
    target_arch = "wasm32",
    feature = "sink-selector",
    not(feature = "interceptor"),
    not(feature = "router")
))]
use crate::__sink_selector::sluice::pipeline as imports;

/// Logs a line attributed to this guest in the agent's log.
pub fn log(level: Level, message: &str) {
    #[cfg(all(
        target_arch = "wasm32",
        any(feature = "interceptor", feature = "router", feature = "sink-selector")
    ))]
    {
        use imports::types::Level as L;
        let l = match level {
            Level::Trace => L::Trace,
            Level::Debug => L::Debug,
            Level::Info => L::Info,
            Level::Warn => L::Warn,
            Level::Error => L::Error,
        };
        imports::host::log(l, message);
    }
    #[cfg(not(all(
        target_arch = "wasm32",
        any(feature = "interceptor", feature = "router", feature = "sink-selector")
    )))]
    crate::testing::record_log(level, message);
}

/// Adds `delta` to this guest's counter `name` (a metric under the guest's `WASM.` entry).
pub fn counter_add(name: &str, delta: u64) {
    #[cfg(all(
        target_arch = "wasm32",
        any(feature = "interceptor", feature = "router", feature = "sink-selector")
    ))]
    imports::host::counter_add(name, delta);
    #[cfg(not(all(
        target_arch = "wasm32",
        any(feature = "interceptor", feature = "router", feature = "sink-selector")
    )))]
    crate::testing::record_counter(name, delta);
}
