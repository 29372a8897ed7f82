//! Sends all events with the same key to the same sink (Rust counterpart of the JavaScript
//! sticky selector). Config: `config.header` (default `key`), `config.sinks` (default 2).
//! Events without the header go to sink 0.

use sluice_guest::{Batch, Config, SinkSelector};

pub struct Sticky {
    header: String,
    sinks: u32,
}

/// FNV-1a: stable across runs and languages, so the JS example picks the same sinks.
pub fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

impl SinkSelector for Sticky {
    fn init(config: &Config) -> Result<Self, String> {
        let sinks = config.get("sinks").unwrap_or("2");
        let sinks: u32 = sinks
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("config.sinks: `{sinks}` is not a positive number"))?;
        Ok(Self {
            header: config.get("header").unwrap_or("key").to_string(),
            sinks,
        })
    }

    fn select(&mut self, batch: &Batch<'_>, out: &mut Vec<u32>) {
        for e in batch.iter() {
            out.push(
                e.header(&self.header)
                    .map_or(0, |k| fnv1a(k.as_bytes()) % self.sinks),
            );
        }
    }
}

sluice_guest::export!(sink_selector: Sticky);

#[cfg(test)]
mod tests {
    use sluice_guest::testing::{config, event, select};

    use super::*;

    #[test]
    fn same_key_same_sink() -> Result<(), String> {
        let events = [
            event("1", &[("key", "alpha")]),
            event("2", &[("key", "beta")]),
            event("3", &[("key", "alpha")]),
            event("4", &[]),
        ];
        let out = select::<Sticky>(&config(&[]), &events)?;
        assert_eq!(out[0], out[2]);
        assert_eq!(out[3], 0);
        assert_eq!(out[0], fnv1a(b"alpha") % 2);
        Ok(())
    }
}
