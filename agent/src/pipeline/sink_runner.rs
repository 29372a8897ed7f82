//! The thread that drives one sink or sink group (Flume's `SinkRunner`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{SinkProcessor, SinkStatus, TAKE_WAIT};
use crate::lifecycle::{Backoff, StopSignal};

/// Runs a processor until stopped. Errors back off 1 s more per consecutive failure, up to 5 s.
pub struct SinkRunner {
    name: String,
    stop: StopSignal,
    /// Set when the runner should stop once its channels are empty (shutdown drain).
    drain: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SinkRunner {
    pub fn start(name: &str, mut processor: Box<dyn SinkProcessor>) -> std::io::Result<Self> {
        let stop = StopSignal::new();
        let drain = Arc::new(AtomicBool::new(false));
        let (s, d, n) = (stop.clone(), drain.clone(), name.to_string());
        let thread = std::thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn(move || {
                let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
                while !s.is_stopped() {
                    match processor.process(TAKE_WAIT) {
                        Ok(SinkStatus::Ready) => backoff.reset(),
                        Ok(SinkStatus::Idle) => {
                            backoff.reset();
                            if d.load(Ordering::SeqCst) {
                                break;
                            }
                        }
                        Err(e) => {
                            let delay = backoff.next_delay();
                            tracing::error!(sink = %n, error = %e, retry_in = ?delay,
                            "Sink batch failed; rolled back, will retry.");
                            s.sleep(delay);
                        }
                    }
                }
                for slot in processor.slots_mut() {
                    slot.stop();
                }
            })?;
        Ok(Self {
            name: name.to_string(),
            stop,
            drain,
            thread: Some(thread),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Lets the runner finish once its channels are empty (see [`Self::finish_by`]).
    pub fn begin_drain(&self) {
        self.drain.store(true, Ordering::SeqCst);
    }

    /// Waits until the runner finished (after [`Self::begin_drain`]) or `deadline`, then
    /// stops it and waits at most `grace` more. A runner still busy then (a delivery its peer
    /// does not answer) is left behind: its batch was not committed, so it stays in the
    /// channel. Returns whether the runner finished.
    pub fn finish_by(mut self, deadline: Instant, grace: Duration) -> bool {
        let Some(t) = self.thread.take() else {
            return true;
        };
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop.stop();
        let until = Instant::now() + grace;
        while !t.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !t.is_finished() {
            return false;
        }
        if let Err(panic) = t.join() {
            tracing::error!(sink = %self.name, reason = %crate::lifecycle::panic_message(&*panic),
                "Sink thread panicked.");
        }
        true
    }

    /// Stops the runner and waits for its current batch to settle.
    pub fn stop_now(mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take()
            && let Err(panic) = t.join()
        {
            tracing::error!(sink = %self.name, reason = %crate::lifecycle::panic_message(&*panic),
                "Sink thread panicked.");
        }
    }

    /// If the thread ended without being asked to (a panic), why; reported once.
    pub fn failure(&mut self) -> Option<String> {
        crate::lifecycle::thread_failure(&self.stop, &mut self.thread)
    }
}

impl Drop for SinkRunner {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
