//! Host-side bindings of `wit/pipeline.wit`, one module per world.
//!
//! The `types` and `host` interfaces are generated once (in `interceptor`) and shared by the
//! other worlds through `with`, so the host implements `host` a single time.

pub(crate) mod interceptor {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "interceptor",
    });
}

pub(crate) mod router {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "router",
        with: {
            "sluice:pipeline/types": super::interceptor::sluice::pipeline::types,
            "sluice:pipeline/host": super::interceptor::sluice::pipeline::host,
        },
    });
}

pub(crate) mod sink_selector {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "sink-selector",
        with: {
            "sluice:pipeline/types": super::interceptor::sluice::pipeline::types,
            "sluice:pipeline/host": super::interceptor::sluice::pipeline::host,
        },
    });
}

pub(crate) use interceptor::sluice::pipeline::host;
pub(crate) use interceptor::sluice::pipeline::types::{Batch, Level, Verdicts};
