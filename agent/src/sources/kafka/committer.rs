use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::consumer_context::SourceContext;

/// Commits offsets on its own thread, so a commit's round trip to the broker overlaps reading
/// the next batch.
pub(super) struct Committer {
    request: Option<mpsc::Sender<()>>,
    done: mpsc::Receiver<()>,
    in_flight: bool,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    pub(super) fn start(
        name: &str,
        consumer: Arc<BaseConsumer<SourceContext>>,
    ) -> std::io::Result<Self> {
        let (request, requests) = mpsc::channel::<()>();
        let (finished, done) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("commit-{name}"))
            .spawn(move || {
                while requests.recv().is_ok() {
                    consumer.context().commit(&consumer, None);
                    if finished.send(()).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self {
            request: Some(request),
            done,
            in_flight: false,
            thread: Some(thread),
        })
    }

    /// Starts committing everything in `uncommitted` (unless a commit is already running).
    pub(super) fn request(&mut self) {
        if !self.in_flight
            && let Some(r) = &self.request
        {
            self.in_flight = r.send(()).is_ok();
        }
    }

    /// Waits for the running commit (if any) to succeed or fail.
    pub(super) fn wait(&mut self) {
        if std::mem::take(&mut self.in_flight) {
            let _ = self.done.recv();
        }
    }

    /// Waits up to `timeout` for the running commit; true when none is running any more.
    pub(super) fn wait_for(&mut self, timeout: Duration) -> bool {
        if self.in_flight {
            match self.done.recv_timeout(timeout) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => self.in_flight = false,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        !self.in_flight
    }

    /// True when a commit was running and has just ended.
    pub(super) fn just_finished(&mut self) -> bool {
        self.in_flight && self.wait_for(Duration::ZERO)
    }

    pub(super) fn stop(&mut self) {
        self.wait();
        self.request = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
