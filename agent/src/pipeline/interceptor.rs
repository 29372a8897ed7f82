//! Interceptors: per-batch event transforms run in chain order before channel selection.
//!
//! An interceptor receives the whole batch and returns the events to keep (modified, fewer, or
//! even more); it is called once per batch so a WebAssembly interceptor crosses the sandbox
//! boundary once. An error fails the batch: the source's transaction rolls back and it retries.

use super::{Cause, DeadLetters};
use crate::event::Event;

/// An interceptor failed a batch (the source's transaction rolls back); `cause` says why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("interceptor `{interceptor}`: {cause}")]
pub struct InterceptorError {
    pub interceptor: String,
    #[source]
    pub cause: Cause,
}

pub trait Interceptor: Send + Sync {
    fn intercept(&self, events: Vec<Event>) -> Result<Vec<Event>, InterceptorError>;

    /// As [`Interceptor::intercept`], with the batch's dead letters: an interceptor that can
    /// set events aside (a WebAssembly guest's `reject` verdict, a fault under
    /// `on-error = dead-letter`) pushes them there instead of dropping them.
    fn intercept_or_set_aside(
        &self,
        events: Vec<Event>,
        _dead: &mut DeadLetters,
    ) -> Result<Vec<Event>, InterceptorError> {
        self.intercept(events)
    }
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

    pub fn intercept(&self, events: Vec<Event>) -> Result<Vec<Event>, InterceptorError> {
        self.intercept_or_set_aside(events, &mut DeadLetters::disabled())
    }

    /// Runs the chain; what an interceptor sets aside goes to `dead`.
    pub fn intercept_or_set_aside(
        &self,
        mut events: Vec<Event>,
        dead: &mut DeadLetters,
    ) -> Result<Vec<Event>, InterceptorError> {
        for i in &self.interceptors {
            events = i.intercept_or_set_aside(events, dead)?;
            if events.is_empty() {
                break;
            }
        }
        Ok(events)
    }
}
