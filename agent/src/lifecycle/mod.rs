//! Threads, stop signals and the backoff loop shared by source and sink runners.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// The message of a thread's panic payload (`panic!("...")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// Why a runner's thread ended although `stop` was never signalled (a panic, with its
/// message), if it did; takes the handle, so each failure is reported once.
pub fn thread_failure(
    stop: &StopSignal,
    thread: &mut Option<std::thread::JoinHandle<()>>,
) -> Option<String> {
    if stop.is_stopped() || !thread.as_ref().is_some_and(|t| t.is_finished()) {
        return None;
    }
    Some(match thread.take()?.join() {
        Err(panic) => format!("its thread panicked: {}", panic_message(&*panic)),
        Ok(()) => "its thread ended".to_string(),
    })
}

/// A stop flag whose waits wake up as soon as stop is requested.
#[derive(Clone, Default)]
pub struct StopSignal(Arc<(Mutex<bool>, Condvar)>);

impl StopSignal {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stop(&self) {
        *self.0.0.lock() = true;
        self.0.1.notify_all();
    }

    pub fn is_stopped(&self) -> bool {
        *self.0.0.lock()
    }

    /// Sleeps up to `d`; returns true if stop was requested.
    pub fn sleep(&self, d: Duration) -> bool {
        let mut stopped = self.0.0.lock();
        if !*stopped {
            let _ = self.0.1.wait_for(&mut stopped, d);
        }
        *stopped
    }
}

/// Flume's runner backoff: each consecutive backoff sleeps one more increment, up to a max.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub increment: Duration,
    pub max: Duration,
    consecutive: u32,
}

impl Backoff {
    pub fn new(increment: Duration, max: Duration) -> Self {
        Self {
            increment,
            max,
            consecutive: 0,
        }
    }

    pub fn reset(&mut self) {
        self.consecutive = 0;
    }

    /// The next sleep.
    pub fn next_delay(&mut self) -> Duration {
        self.consecutive = self.consecutive.saturating_add(1);
        (self.increment * self.consecutive).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_max() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(250));
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        assert_eq!(b.next_delay(), Duration::from_millis(200));
        assert_eq!(b.next_delay(), Duration::from_millis(250));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn stop_wakes_sleepers() {
        let s = StopSignal::new();
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.sleep(Duration::from_secs(30)));
        s.stop();
        assert!(t.join().unwrap_or(false));
    }
}
