//! A misbehaving interceptor for the fault tests; `config.mode` picks the misbehaviour:
//!
//! - `loop`: never returns from `intercept`;
//! - `bomb`: allocates until memory runs out;
//! - `init-trap`: panics in `init`;
//! - `poison`: panics on a batch holding an event whose body is a number ending in `500`
//!   (with a `seq` source: one batch in every thousand events);
//! - `bad-verdicts`: returns one verdict too few;
//! - `check`: the isolation probe of the tenant tests: tags every event with `checked-by` =
//!   `config.expect` and panics if an event's `tenant` header is anything else;
//! - `probe`: tries to read the file `config.probe-path` and the clock at init, and tags every
//!   event with `probe` (`read:<bytes>` or `denied:<error>`) and `clock` (seconds since 1970);
//! - `chatty`: logs one 10 kB line per event (the host's rate limit must hold it back) and
//!   keeps every event;
//! - `instance`: the instance-pool probe: tags every event with `instance` (a random id drawn
//!   at init, so one per instance) and `instance-batch` (the batches this instance ran so far:
//!   per-instance state), after spinning `config.spin` iterations per batch (so calls from
//!   concurrent callers overlap).

use sluice_guest::{Batch, Config, Interceptor, Level, Verdicts, log};

pub struct Hostile {
    mode: String,
    expect: String,
    probe: String,
    clock: String,
    spin: u64,
    batches: u64,
}

/// A random id: std's `RandomState` is seeded from WASI's random source.
fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    format!("{:016x}", h.finish())
}

impl Interceptor for Hostile {
    fn init(config: &Config) -> Result<Self, String> {
        let mode = config.get("mode").unwrap_or("").to_string();
        if mode == "init-trap" {
            panic!("init-trap mode: trapping in init");
        }
        let mut probe = String::new();
        let mut clock = String::new();
        if mode == "probe" {
            let path = config.get("probe-path").unwrap_or("/etc/hostname");
            probe = match std::fs::read(path) {
                Ok(b) => format!("read:{}", b.len()),
                Err(e) => format!("denied:{:?}", e.kind()),
            };
            clock = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
                .to_string();
            log(
                Level::Info,
                &format!("probe {path}: {probe}, clock {clock}"),
            );
        }
        let mut expect = config.get("expect").unwrap_or("").to_string();
        if mode == "instance" {
            expect = random_id();
        }
        let spin = config.get("spin").and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(Self {
            mode,
            expect,
            probe,
            clock,
            spin,
            batches: 0,
        })
    }

    fn intercept(&mut self, batch: &Batch<'_>, out: &mut Verdicts) {
        match self.mode.as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "poison" => {
                if batch
                    .iter()
                    .any(|e| e.body_str().is_some_and(|b| b.ends_with("500")))
                {
                    panic!("poison event in batch");
                }
                for _ in batch.iter() {
                    out.keep();
                }
            }
            "bad-verdicts" => {
                for _ in batch.iter().skip(1) {
                    out.drop();
                }
            }
            "check" => {
                for e in batch.iter() {
                    let tenant = e.header("tenant").unwrap_or("");
                    if tenant != self.expect {
                        panic!(
                            "guest of tenant {} got an event of tenant {tenant}",
                            self.expect
                        );
                    }
                    let mut r = e.to_owned();
                    r.set_header("checked-by", &self.expect);
                    out.replace(&r);
                }
            }
            "probe" => {
                for e in batch.iter() {
                    let mut r = e.to_owned();
                    r.set_header("probe", &self.probe);
                    r.set_header("clock", &self.clock);
                    out.replace(&r);
                }
            }
            "instance" => {
                let mut n: u64 = 0;
                for _ in 0..self.spin {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
                self.batches += 1;
                let batches = self.batches.to_string();
                for e in batch.iter() {
                    let mut r = e.to_owned();
                    r.set_header("instance", &self.expect);
                    r.set_header("instance-batch", &batches);
                    out.replace(&r);
                }
            }
            "chatty" => {
                let pad = "x".repeat(10_000);
                for (i, _) in batch.iter().enumerate() {
                    log(Level::Warn, &format!("chatty guest line {i} {pad}"));
                    out.keep();
                }
            }
            _ => {
                for _ in batch.iter() {
                    out.keep();
                }
            }
        }
    }
}

sluice_guest::export!(interceptor: Hostile);

#[cfg(test)]
mod tests {
    use sluice_guest::testing::{Outcome, config, event, intercept};

    use super::*;

    #[test]
    fn check_tags_its_own_tenant() -> Result<(), String> {
        let out = intercept::<Hostile>(
            &config(&[("mode", "check"), ("expect", "C")]),
            &[event("x", &[("tenant", "C")])],
        )?;
        assert_eq!(
            out,
            vec![Outcome::Replace(event(
                "x",
                &[("checked-by", "C"), ("tenant", "C")]
            ))]
        );
        Ok(())
    }

    #[test]
    fn check_traps_on_a_foreign_tenant() {
        let foreign = std::panic::catch_unwind(|| {
            intercept::<Hostile>(
                &config(&[("mode", "check"), ("expect", "C")]),
                &[event("x", &[("tenant", "A")])],
            )
        });
        assert!(foreign.is_err());
    }
}
