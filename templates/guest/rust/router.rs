//! {{name}}: a sluice channel router guest (world `router` of wit/pipeline.wit).
//!
//! Sends events whose body starts with `config.match-prefix` (default `ERROR`) to the source's
//! second channel (bit 1) and every other event to its first (bit 0). A mask of 0 would route
//! an event nowhere (to the dead-letter channel when the source has one). Change
//! [`channels_for`] to make it yours; `./test.sh` runs the unit tests natively, `./build.sh`
//! builds `{{name}}.wasm`.

use sluice_guest::{Batch, Config, Router};

/// The guest's logic: the channel bit set (bit `i` = the source's `i`-th channel) of one body.
pub fn channels_for(match_prefix: &[u8], body: &[u8]) -> u64 {
    if body.starts_with(match_prefix) {
        1 << 1
    } else {
        1 << 0
    }
}

pub struct Guest {
    match_prefix: Vec<u8>,
}

impl Router for Guest {
    fn init(config: &Config) -> Result<Self, String> {
        let match_prefix = config.get("match-prefix").unwrap_or("ERROR");
        if match_prefix.is_empty() {
            return Err("config.match-prefix must not be empty".to_string());
        }
        Ok(Self {
            match_prefix: match_prefix.as_bytes().to_vec(),
        })
    }

    fn route(&mut self, batch: &Batch<'_>, out: &mut Vec<u64>) {
        out.extend(batch.iter().map(|e| channels_for(&self.match_prefix, e.body)));
    }
}

sluice_guest::export!(router: Guest);

#[cfg(test)]
mod tests {
    use sluice_guest::testing::{config, event, route};

    use super::*;

    #[test]
    fn errors_go_to_the_second_channel() -> Result<(), String> {
        let events = [event("ERROR disk full", &[]), event("hello", &[])];
        assert_eq!(route::<Guest>(&config(&[]), &events)?, vec![0b10, 0b01]);
        let custom = config(&[("match-prefix", "hel")]);
        assert_eq!(route::<Guest>(&custom, &events)?, vec![0b01, 0b10]);
        Ok(())
    }
}
