//! {{name}}: a sluice sink selector guest (world `sink-selector` of wit/pipeline.wit).
//!
//! Sends events with the same body to the same sink of the group: sink = FNV-1a(body) mod
//! `config.sinks` (default 2; set it to the group's sink count). Change [`sink_for`] to make
//! it yours; `./test.sh` runs the unit tests natively, `./build.sh` builds `{{name}}.wasm`.

use sluice_guest::{Batch, Config, SinkSelector};

/// 32-bit FNV-1a.
pub fn fnv1a(data: &[u8]) -> u32 {
    data.iter()
        .fold(0x811c_9dc5, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// The guest's logic: the sink (index in the group's `sinks`) of one body.
pub fn sink_for(sinks: u32, body: &[u8]) -> u32 {
    fnv1a(body) % sinks
}

pub struct Guest {
    sinks: u32,
}

impl SinkSelector for Guest {
    fn init(config: &Config) -> Result<Self, String> {
        let raw = config.get("sinks").unwrap_or("2");
        match raw.parse::<u32>() {
            Ok(sinks) if sinks > 0 => Ok(Self { sinks }),
            _ => Err(format!("config.sinks: `{raw}` is not a positive number")),
        }
    }

    fn select(&mut self, batch: &Batch<'_>, out: &mut Vec<u32>) {
        out.extend(batch.iter().map(|e| sink_for(self.sinks, e.body)));
    }
}

sluice_guest::export!(sink_selector: Guest);

#[cfg(test)]
mod tests {
    use sluice_guest::testing::{config, event, select};

    use super::*;

    #[test]
    fn the_same_body_goes_to_the_same_sink() -> Result<(), String> {
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
        let events = [event("a", &[]), event("b", &[]), event("a", &[])];
        let got = select::<Guest>(&config(&[("sinks", "3")]), &events)?;
        assert_eq!(got, vec![fnv1a(b"a") % 3, fnv1a(b"b") % 3, fnv1a(b"a") % 3]);
        assert!(select::<Guest>(&config(&[("sinks", "0")]), &events).is_err());
        Ok(())
    }
}
