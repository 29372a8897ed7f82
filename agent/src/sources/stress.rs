//! `stress`: Flume's StressSource, a load generator. Every event shares one body buffer of
//! `size` bytes, so generating costs no copy. The bytes are Flume's (`Byte.MAX_VALUE`, 0x7F),
//! so interceptors that read bodies do the same work on both in a side-by-side benchmark.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::{ConfigError, MAX_BATCH, Props};
use crate::event::Event;
use crate::pipeline::{
    BoxError, ChannelProcessor, PollConfig, PollStatus, PollableSource, SourceContext, SourceError,
    SourceInstance, SourceSpec,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StressConfig {
    /// `size`: body bytes (default 500).
    pub(crate) size: usize,
    /// `maxTotalEvents`: events to attempt, -1 = unlimited (default -1).
    pub(crate) max_total: Option<u64>,
    /// `maxSuccessfulEvents`: events to deliver, -1 = unlimited (default -1).
    pub(crate) max_successful: Option<u64>,
    /// `batchSize` (default 1).
    pub(crate) batch_size: usize,
    /// `maxEventsPerSecond`: rate limit, 0 = none (default 0).
    pub(crate) max_per_second: u64,
    pub(crate) poll: PollConfig,
}

fn limit(p: &Props, key: &str) -> Result<Option<u64>, ConfigError> {
    let v: i64 = p.int(key, -1i64, -1..=i64::MAX)?;
    Ok(u64::try_from(v).ok())
}

impl StressConfig {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
        Ok(Self {
            size: p.int("size", 500, 0..=64 << 20)?,
            max_total: limit(p, "maxTotalEvents")?,
            max_successful: limit(p, "maxSuccessfulEvents")?,
            batch_size: p.int("batchSize", 1, 1..=MAX_BATCH)?,
            max_per_second: p.int("maxEventsPerSecond", 0u64, 0..=1_000_000_000)?,
            poll: PollConfig::from_props(p)?,
        })
    }
}

/// Flume's StressSource fills its buffer with `Byte.MAX_VALUE`.
const FLUME_STRESS_BYTE: u8 = 0x7F;

pub(crate) struct StressSource {
    config: StressConfig,
    body: Bytes,
    attempted: u64,
    succeeded: u64,
    window_start: Instant,
    window_count: u64,
}

impl StressSource {
    pub(crate) fn new(config: StressConfig) -> Self {
        let body = vec![FLUME_STRESS_BYTE; config.size];
        Self {
            body: Bytes::from(body),
            config,
            attempted: 0,
            succeeded: 0,
            window_start: Instant::now(),
            window_count: 0,
        }
    }
}

impl PollableSource for StressSource {
    fn process(&mut self, processor: &ChannelProcessor) -> Result<PollStatus, SourceError> {
        let mut n = self.config.batch_size as u64;
        if let Some(max) = self.config.max_total {
            n = n.min(max.saturating_sub(self.attempted));
        }
        if let Some(max) = self.config.max_successful {
            n = n.min(max.saturating_sub(self.succeeded));
        }
        if n == 0 {
            return Ok(PollStatus::Backoff);
        }
        if self.config.max_per_second > 0 {
            let elapsed = self.window_start.elapsed();
            if elapsed >= Duration::from_secs(1) {
                self.window_start = Instant::now();
                self.window_count = 0;
            } else if self.window_count >= self.config.max_per_second {
                std::thread::sleep(Duration::from_secs(1) - elapsed);
                return Ok(PollStatus::Ready);
            }
            n = n.min(self.config.max_per_second - self.window_count);
            self.window_count += n;
        }
        let batch: Vec<Event> = (0..n).map(|_| Event::new(self.body.clone())).collect();
        self.attempted += n;
        processor.process_batch(batch)?;
        self.succeeded += n;
        Ok(PollStatus::Ready)
    }
}

impl SourceSpec for StressConfig {
    fn build(&self, _: &SourceContext) -> Result<SourceInstance, BoxError> {
        Ok(SourceInstance::Polled(
            Box::new(StressSource::new(self.clone())),
            self.poll.clone(),
        ))
    }
}
