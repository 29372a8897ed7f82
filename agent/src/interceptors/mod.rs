//! Flume's built-in interceptors (the [`crate::pipeline::Interceptor`] trait and the chain live
//! in the pipeline; the WebAssembly one in `crate::wasm`). Each config is parsed by
//! `from_props` and built through [`InterceptorSpec`]; the registry maps Flume's type names to
//! them.

mod host;
mod joda;
mod regex_extractor;
mod regex_filter;
mod remove_header;
mod search_replace;
mod static_header;
mod timestamp;
mod uuid;

use crate::pipeline::{BoxError, BuildContext, Interceptor, InterceptorSpec};

pub use host::HostConfig;
pub use regex_extractor::RegexExtractorConfig;
pub use regex_filter::RegexFilterConfig;
pub use remove_header::RemoveHeaderConfig;
pub use search_replace::SearchReplaceConfig;
pub use static_header::StaticConfig;
pub use timestamp::TimestampConfig;
pub use uuid::UuidConfig;

/// Built-ins whose parsed config is itself the interceptor (it holds no state).
macro_rules! config_is_interceptor {
    ($($config:ty),*) => {$(
        impl InterceptorSpec for $config {
            fn build(&self, _: &BuildContext) -> Result<Box<dyn Interceptor>, BoxError> {
                Ok(Box::new(self.clone()))
            }
        }
    )*};
}

config_is_interceptor!(
    TimestampConfig,
    StaticConfig,
    RemoveHeaderConfig,
    RegexFilterConfig,
    RegexExtractorConfig,
    SearchReplaceConfig,
    UuidConfig
);

impl InterceptorSpec for HostConfig {
    fn build(&self, _: &BuildContext) -> Result<Box<dyn Interceptor>, BoxError> {
        Ok(Box::new(host::HostInterceptor::new(self)))
    }
}

#[cfg(test)]
pub(crate) fn run(
    spec: &dyn InterceptorSpec,
    events: Vec<crate::event::Event>,
) -> Vec<crate::event::Event> {
    spec.build(&BuildContext::detached("test"))
        .ok()
        .and_then(|i| i.intercept(events).ok())
        .unwrap_or_default()
}
