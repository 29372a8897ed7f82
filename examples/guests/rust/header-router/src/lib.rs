//! Routes each event to a channel chosen by a header (Rust counterpart of the Python tenant
//! router, also used by the tests' hostile cases).
//!
//! Config: `config.header` (default `tenant`); `config.route.<value> = <i> [<j> ...]` channel
//! indices for a header value; `config.default` indices for other values (default `0`); an
//! empty list drops the event. `config.mode = out-of-range` routes everything to channel 63,
//! to exercise the host's checks.

use sluice_guest::{Batch, Config, Router};

pub struct HeaderRouter {
    header: String,
    routes: Vec<(String, u64)>,
    default: u64,
    out_of_range: bool,
}

fn mask(list: &str) -> Result<u64, String> {
    list.split_whitespace().try_fold(0u64, |m, i| {
        let i: u32 = i
            .parse()
            .map_err(|_| format!("`{i}` is not a channel index"))?;
        if i >= 64 {
            return Err(format!("channel index {i} is over 63"));
        }
        Ok(m | 1 << i)
    })
}

impl Router for HeaderRouter {
    fn init(config: &Config) -> Result<Self, String> {
        let mut routes = Vec::new();
        for (k, v) in config.iter() {
            if let Some(value) = k.strip_prefix("route.") {
                routes.push((value.to_string(), mask(v)?));
            }
        }
        Ok(Self {
            header: config.get("header").unwrap_or("tenant").to_string(),
            routes,
            default: mask(config.get("default").unwrap_or("0"))?,
            out_of_range: config.get("mode") == Some("out-of-range"),
        })
    }

    fn route(&mut self, batch: &Batch<'_>, out: &mut Vec<u64>) {
        for e in batch.iter() {
            if self.out_of_range {
                out.push(1 << 63);
                continue;
            }
            let m = e
                .header(&self.header)
                .and_then(|v| self.routes.iter().find(|(k, _)| k == v))
                .map_or(self.default, |(_, m)| *m);
            out.push(m);
        }
    }
}

sluice_guest::export!(router: HeaderRouter);

#[cfg(test)]
mod tests {
    use sluice_guest::testing::{config, event, route};

    use super::*;

    #[test]
    fn routes_by_header() -> Result<(), String> {
        let c = config(&[("route.acme", "1"), ("route.both", "0 1"), ("default", "0")]);
        let events = [
            event("a", &[("tenant", "acme")]),
            event("b", &[("tenant", "both")]),
            event("c", &[]),
        ];
        assert_eq!(route::<HeaderRouter>(&c, &events)?, vec![0b10, 0b11, 0b01]);
        Ok(())
    }
}
