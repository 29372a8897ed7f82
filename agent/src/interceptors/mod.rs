//! Interceptors: per-batch event transforms run in chain order before channel selection.
//!
//! An interceptor receives the whole batch and returns the events to keep (modified, fewer, or
//! even more); it is called once per batch so a WebAssembly interceptor crosses the sandbox
//! boundary once. An error fails the batch: the source's transaction rolls back and it retries.

mod host;
mod regex_extractor;
mod regex_filter;
mod remove_header;
mod search_replace;
mod static_header;
mod timestamp;

use crate::config::{ConfigError, Props, resolve_type};
use crate::event::Event;
use crate::wasm::{GuestError, Scope, WasmConfig};

pub use host::HostConfig;
pub use regex_extractor::RegexExtractorConfig;
pub use regex_filter::RegexFilterConfig;
pub use remove_header::RemoveHeaderConfig;
pub use search_replace::SearchReplaceConfig;
pub use static_header::StaticConfig;
pub use timestamp::TimestampConfig;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("interceptor `{interceptor}`: {message}")]
pub struct InterceptorError {
    pub interceptor: String,
    pub message: String,
}

pub trait Interceptor: Send + Sync {
    fn intercept(&self, events: Vec<Event>) -> Result<Vec<Event>, InterceptorError>;
}

/// The configured interceptors of one source, run in order.
#[derive(Default)]
pub struct InterceptorChain {
    interceptors: Vec<Box<dyn Interceptor>>,
}

impl InterceptorChain {
    pub fn new(interceptors: Vec<Box<dyn Interceptor>>) -> Self {
        Self { interceptors }
    }

    pub fn is_empty(&self) -> bool {
        self.interceptors.is_empty()
    }

    pub fn intercept(&self, mut events: Vec<Event>) -> Result<Vec<Event>, InterceptorError> {
        for i in &self.interceptors {
            events = i.intercept(events)?;
            if events.is_empty() {
                break;
            }
        }
        Ok(events)
    }
}

#[derive(Clone, Debug)]
pub enum InterceptorKind {
    Timestamp(TimestampConfig),
    Host(HostConfig),
    Static(StaticConfig),
    RemoveHeader(RemoveHeaderConfig),
    RegexFilter(RegexFilterConfig),
    RegexExtractor(RegexExtractorConfig),
    SearchReplace(SearchReplaceConfig),
    /// `type = wasm`: a guest component implementing the `interceptor` world.
    Wasm(WasmConfig),
}

const TYPES: &[(&[&str], &str)] = &[
    (&["wasm"], "wasm"),
    (
        &[
            "regex_extractor",
            "org.apache.flume.interceptor.RegexExtractorInterceptor$Builder",
        ],
        "regex_extractor",
    ),
    (
        &[
            "timestamp",
            "org.apache.flume.interceptor.TimestampInterceptor$Builder",
        ],
        "timestamp",
    ),
    (
        &[
            "host",
            "org.apache.flume.interceptor.HostInterceptor$Builder",
        ],
        "host",
    ),
    (
        &[
            "static",
            "org.apache.flume.interceptor.StaticInterceptor$Builder",
        ],
        "static",
    ),
    (
        &[
            "remove_header",
            "org.apache.flume.interceptor.RemoveHeaderInterceptor$Builder",
        ],
        "remove_header",
    ),
    (
        &[
            "regex_filter",
            "org.apache.flume.interceptor.RegexFilteringInterceptor$Builder",
        ],
        "regex_filter",
    ),
    (
        &[
            "search_replace",
            "org.apache.flume.interceptor.SearchAndReplaceInterceptor$Builder",
        ],
        "search_replace",
    ),
];

impl InterceptorKind {
    pub fn from_props(p: &Props) -> Result<Self, ConfigError> {
        Ok(match resolve_type(p, "interceptor", TYPES)? {
            "timestamp" => Self::Timestamp(TimestampConfig::from_props(p)?),
            "host" => Self::Host(HostConfig::from_props(p)?),
            "static" => Self::Static(StaticConfig::from_props(p)?),
            "remove_header" => Self::RemoveHeader(RemoveHeaderConfig::from_props(p)?),
            "regex_filter" => Self::RegexFilter(RegexFilterConfig::from_props(p)?),
            "regex_extractor" => Self::RegexExtractor(RegexExtractorConfig::from_props(p)?),
            "wasm" => Self::Wasm(WasmConfig::from_props(p)?),
            _ => Self::SearchReplace(SearchReplaceConfig::from_props(p)?),
        })
    }

    /// Builds the interceptor; only a wasm guest can fail (unreadable, not a component).
    pub fn build(&self, scope: &Scope) -> Result<Box<dyn Interceptor>, GuestError> {
        Ok(match self {
            Self::Wasm(c) => Box::new(crate::wasm::interceptor::WasmInterceptor::new(
                &scope.name,
                c,
                scope.counters(),
            )?),
            Self::Timestamp(c) => Box::new(c.clone()),
            Self::Host(c) => Box::new(host::HostInterceptor::new(c)),
            Self::Static(c) => Box::new(c.clone()),
            Self::RemoveHeader(c) => Box::new(c.clone()),
            Self::RegexFilter(c) => Box::new(c.clone()),
            Self::RegexExtractor(c) => Box::new(c.clone()),
            Self::SearchReplace(c) => Box::new(c.clone()),
        })
    }
}

#[cfg(test)]
pub(crate) fn run(kind: &InterceptorKind, events: Vec<Event>) -> Vec<Event> {
    kind.build(&Scope::detached("test"))
        .and_then(|i| {
            i.intercept(events).map_err(|e| GuestError {
                guest: e.interceptor,
                message: e.message,
            })
        })
        .unwrap_or_default()
}
