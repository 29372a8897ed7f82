//! `seq`: Flume's sequence generator. Event bodies are the decimal numbers 0, 1, 2, …
//! A batch the channel refuses is generated again (same numbers), so none is lost.

use crate::config::{ConfigError, MAX_BATCH, Props};
use crate::event::Event;
use crate::pipeline::{
    BoxError, ChannelProcessor, PollConfig, PollStatus, PollableSource, SourceContext, SourceError,
    SourceInstance, SourceSpec,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SeqConfig {
    /// `batchSize` (default 1).
    pub(crate) batch_size: usize,
    /// `totalEvents` (default unlimited).
    pub(crate) total_events: u64,
    pub(crate) poll: PollConfig,
}

impl SeqConfig {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
        Ok(Self {
            batch_size: p.int("batchSize", 1, 1..=MAX_BATCH)?,
            total_events: p.int("totalEvents", u64::MAX, 0..=u64::MAX)?,
            poll: PollConfig::from_props(p)?,
        })
    }
}

pub(crate) struct SeqSource {
    config: SeqConfig,
    sent: u64,
}

impl SeqSource {
    pub(crate) fn new(config: SeqConfig) -> Self {
        Self { config, sent: 0 }
    }
}

impl PollableSource for SeqSource {
    fn process(&mut self, processor: &ChannelProcessor) -> Result<PollStatus, SourceError> {
        let remaining = self.config.total_events - self.sent;
        if remaining == 0 {
            return Ok(PollStatus::Backoff);
        }
        let n = (self.config.batch_size as u64).min(remaining);
        let mut buf = itoa_buf();
        let batch: Vec<Event> = (self.sent..self.sent + n)
            .map(|i| Event::new(buf.format(i).to_owned()))
            .collect();
        processor.process_batch(batch)?;
        self.sent += n;
        Ok(PollStatus::Ready)
    }
}

/// Formats integers without going through `fmt`.
struct ItoaBuf([u8; 20]);

fn itoa_buf() -> ItoaBuf {
    ItoaBuf([0; 20])
}

impl ItoaBuf {
    fn format(&mut self, mut v: u64) -> &[u8] {
        let mut i = self.0.len();
        loop {
            i -= 1;
            self.0[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        &self.0[i..]
    }
}

impl SourceSpec for SeqConfig {
    fn build(&self, _: &SourceContext) -> Result<SourceInstance, BoxError> {
        Ok(SourceInstance::Polled(
            Box::new(SeqSource::new(self.clone())),
            self.poll.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        let mut b = itoa_buf();
        assert_eq!(b.format(0), b"0");
        assert_eq!(b.format(1234567890), b"1234567890");
        assert_eq!(b.format(u64::MAX), u64::MAX.to_string().as_bytes());
    }
}
