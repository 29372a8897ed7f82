//! SDK for sluice WebAssembly guests.
//!
//! A guest implements one trait — [`Interceptor`], [`Router`] or [`SinkSelector`] — and
//! exports it with [`export!`]; this crate owns the `sluice:pipeline@0.1.0` bindings, so the
//! guest crate needs no bindings of its own. Enable the feature of the world the guest
//! implements (`interceptor`, `router` or `sink-selector`) and build for `wasm32-wasip2`:
//!
//! ```ignore
//! use sluice_guest::{Batch, Config, Interceptor, Verdicts};
//!
//! struct DropDebug;
//!
//! impl Interceptor for DropDebug {
//!     fn init(_config: &Config) -> Result<Self, String> {
//!         Ok(DropDebug)
//!     }
//!     fn intercept(&mut self, batch: &Batch<'_>, out: &mut Verdicts) {
//!         for event in batch.iter() {
//!             if event.header("level") == Some("debug") { out.drop() } else { out.keep() }
//!         }
//!     }
//! }
//!
//! sluice_guest::export!(interceptor: DropDebug);
//! ```
//!
//! Guest logic is unit-tested natively with [`testing`], which drives the trait through the
//! same flat batch encoding the host sends.
//!
//! The batch format (see `wit/pipeline.wit`): bodies concatenated with one end offset per
//! event; headers encoded per event as `u32le key-len, key, u32le value-len, value` entries in a
//! second buffer with its own end offsets. [`Batch`] reads it in place, without copying.

extern crate self as sluice_guest;

mod batch;
mod host;
pub mod testing;

pub use batch::{Batch, Config, Event, Events, Headers, OwnedEvent, Verdicts};
pub use host::{Level, counter_add, log};

/// Per-event keep / drop / replace.
pub trait Interceptor: Sized + 'static {
    /// Called once per instance with the `config.*` keys of the agent config.
    fn init(config: &Config) -> Result<Self, String>;
    /// Push exactly one verdict per event of `batch` into `out`, in order.
    fn intercept(&mut self, batch: &Batch<'_>, out: &mut Verdicts);
}

/// Per-event channel set: bit `i` = the source's `i`-th channel; 0 drops the event.
pub trait Router: Sized + 'static {
    fn init(config: &Config) -> Result<Self, String>;
    /// Push exactly one channel mask per event of `batch` into `out`, in order.
    fn route(&mut self, batch: &Batch<'_>, out: &mut Vec<u64>);
}

/// Per-event sink: the index of the group's sink (in `sinks` order) that delivers it.
pub trait SinkSelector: Sized + 'static {
    fn init(config: &Config) -> Result<Self, String>;
    /// Push exactly one sink index per event of `batch` into `out`, in order.
    fn select(&mut self, batch: &Batch<'_>, out: &mut Vec<u32>);
}

#[doc(hidden)]
pub mod __rt {
    pub use std::cell::RefCell;
    pub use std::thread_local;
    #[cfg(any(feature = "interceptor", feature = "router", feature = "sink-selector"))]
    pub use wit_bindgen;
}

#[cfg(feature = "interceptor")]
#[doc(hidden)]
pub mod __interceptor {
    wit_bindgen::generate!({
        path: "../wit",
        world: "interceptor",
        pub_export_macro: true,
        export_macro_name: "__export_interceptor",
        runtime_path: "::sluice_guest::__rt::wit_bindgen::rt",
        generate_all,
    });
}

#[cfg(feature = "router")]
#[doc(hidden)]
pub mod __router {
    wit_bindgen::generate!({
        path: "../wit",
        world: "router",
        pub_export_macro: true,
        export_macro_name: "__export_router",
        runtime_path: "::sluice_guest::__rt::wit_bindgen::rt",
        generate_all,
    });
}

#[cfg(feature = "sink-selector")]
#[doc(hidden)]
pub mod __sink_selector {
    wit_bindgen::generate!({
        path: "../wit",
        world: "sink-selector",
        pub_export_macro: true,
        export_macro_name: "__export_sink_selector",
        runtime_path: "::sluice_guest::__rt::wit_bindgen::rt",
        generate_all,
    });
}

/// Exports a guest: `export!(interceptor: T)`, `export!(router: T)` or
/// `export!(sink_selector: T)`. The crate's matching feature must be enabled.
#[macro_export]
macro_rules! export {
    (interceptor: $ty:ty) => {
        const _: () = {
            use $crate::__interceptor::sluice::pipeline::types as __t;
            $crate::__rt::thread_local! {
                static STATE: $crate::__rt::RefCell<Option<$ty>> =
                    const { $crate::__rt::RefCell::new(None) };
            }
            struct __Export;
            impl $crate::__interceptor::Guest for __Export {
                fn init(config: __t::Config) -> Result<(), String> {
                    let state = <$ty as $crate::Interceptor>::init(&$crate::Config::new(config))?;
                    STATE.with(|s| *s.borrow_mut() = Some(state));
                    Ok(())
                }
                fn intercept(events: __t::Batch) -> __t::Verdicts {
                    let batch = $crate::Batch::new(
                        &events.bodies,
                        &events.body_ends,
                        &events.headers,
                        &events.header_ends,
                    );
                    let mut out = $crate::Verdicts::with_capacity(batch.len());
                    STATE.with(|s| match s.borrow_mut().as_mut() {
                        Some(state) => $crate::Interceptor::intercept(state, &batch, &mut out),
                        None => panic!("intercept called before a successful init"),
                    });
                    let (codes, r) = out.into_parts();
                    __t::Verdicts {
                        codes,
                        replacements: __t::Batch {
                            bodies: r.bodies,
                            body_ends: r.body_ends,
                            headers: r.headers,
                            header_ends: r.header_ends,
                        },
                    }
                }
            }
            $crate::__interceptor::__export_interceptor!(
                __Export with_types_in $crate::__interceptor
            );
        };
    };
    (router: $ty:ty) => {
        const _: () = {
            use $crate::__router::sluice::pipeline::types as __t;
            $crate::__rt::thread_local! {
                static STATE: $crate::__rt::RefCell<Option<$ty>> =
                    const { $crate::__rt::RefCell::new(None) };
            }
            struct __Export;
            impl $crate::__router::Guest for __Export {
                fn init(config: __t::Config) -> Result<(), String> {
                    let state = <$ty as $crate::Router>::init(&$crate::Config::new(config))?;
                    STATE.with(|s| *s.borrow_mut() = Some(state));
                    Ok(())
                }
                fn route(events: __t::Batch) -> Vec<u64> {
                    let batch = $crate::Batch::new(
                        &events.bodies,
                        &events.body_ends,
                        &events.headers,
                        &events.header_ends,
                    );
                    let mut out = Vec::with_capacity(batch.len());
                    STATE.with(|s| match s.borrow_mut().as_mut() {
                        Some(state) => $crate::Router::route(state, &batch, &mut out),
                        None => panic!("route called before a successful init"),
                    });
                    out
                }
            }
    $crate::__router::__export_router!(__Export with_types_in $crate::__router);
        };
    };
    (sink_selector: $ty:ty) => {
        const _: () = {
            use $crate::__sink_selector::sluice::pipeline::types as __t;
            $crate::__rt::thread_local! {
                static STATE: $crate::__rt::RefCell<Option<$ty>> =
                    const { $crate::__rt::RefCell::new(None) };
            }
            struct __Export;
            impl $crate::__sink_selector::Guest for __Export {
                fn init(config: __t::Config) -> Result<(), String> {
                    let state = <$ty as $crate::SinkSelector>::init(&$crate::Config::new(config))?;
                    STATE.with(|s| *s.borrow_mut() = Some(state));
                    Ok(())
                }
                fn select(events: __t::Batch) -> Vec<u32> {
                    let batch = $crate::Batch::new(
                        &events.bodies,
                        &events.body_ends,
                        &events.headers,
                        &events.header_ends,
                    );
                    let mut out = Vec::with_capacity(batch.len());
                    STATE.with(|s| match s.borrow_mut().as_mut() {
                        Some(state) => $crate::SinkSelector::select(state, &batch, &mut out),
                        None => panic!("select called before a successful init"),
                    });
                    out
                }
            }
            $crate::__sink_selector::__export_sink_selector!(
                __Export with_types_in $crate::__sink_selector
            );
        };
    };
}
