use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::source::Shared;

/// The `max-buffered-bytes` budget. Not first-come-first-served: a waiter takes its bytes as
/// soon as they are free, so a small request is not held up behind a large one waiting for
/// megabytes.
pub(super) struct Budget {
    total: usize,
    pub(super) free: Mutex<usize>,
    freed: Notify,
}

impl Budget {
    pub(super) fn new(total: usize) -> Self {
        Self {
            total,
            free: Mutex::new(total),
            freed: Notify::new(),
        }
    }

    pub(super) fn try_take(&self, n: usize) -> bool {
        let mut free = self.free.lock();
        if *free >= n {
            *free -= n;
            true
        } else {
            false
        }
    }

    pub(super) async fn take(&self, n: usize) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a release in between is not missed.
            freed.as_mut().enable();
            if self.try_take(n) {
                return;
            }
            freed.await;
        }
    }

    pub(super) fn give(&self, n: usize) {
        *self.free.lock() += n;
        self.freed.notify_waiters();
    }
}

/// Why a request could not get room in the [`Budget`].
#[derive(Debug, thiserror::Error)]
pub(super) enum BudgetError {
    #[error("the request needs more than max-buffered-bytes ({total})")]
    TooLarge { total: usize },
    #[error("{source}")]
    NoRuntime {
        source: tokio::runtime::TryCurrentError,
    },
    #[error("no memory for decoding within {millis} ms (max-buffered-bytes = {total} in use)")]
    TimedOut { millis: u128, total: usize },
}

/// Bytes taken from the [`Budget`], given back on drop.
pub(super) struct Held {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Held {
    pub(super) fn new(shared: &Shared) -> Self {
        Self {
            budget: shared.budget.clone(),
            bytes: 0,
        }
    }

    /// Waits until `n` more bytes are free.
    pub(super) async fn take(&mut self, n: usize) -> Result<(), BudgetError> {
        if self.bytes + n > self.budget.total {
            return Err(BudgetError::TooLarge {
                total: self.budget.total,
            });
        }
        self.budget.take(n).await;
        self.bytes += n;
        Ok(())
    }

    /// [`Held::take`] from a blocking worker, waiting at most `limit`.
    pub(super) fn take_blocking(&mut self, n: usize, limit: Duration) -> Result<(), BudgetError> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|source| BudgetError::NoRuntime { source })?;
        let total = self.budget.total;
        handle
            .block_on(tokio::time::timeout(limit, self.take(n)))
            .unwrap_or(Err(BudgetError::TimedOut {
                millis: limit.as_millis(),
                total,
            }))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.give(self.bytes);
        }
    }
}
