//! Tags every event with `guest-version` = the `SLUICE_TAG` the guest was built with (the hot
//! reload test builds it twice, as v1 and v2).

use sluice_guest::{Batch, Config, Interceptor, Verdicts};

pub struct Tagger;

const TAG: &str = match option_env!("SLUICE_TAG") {
    Some(t) => t,
    None => "v0",
};

impl Interceptor for Tagger {
    fn init(_: &Config) -> Result<Self, String> {
        Ok(Tagger)
    }

    fn intercept(&mut self, batch: &Batch<'_>, out: &mut Verdicts) {
        for e in batch.iter() {
            // Headers only: the body stays on the host side, and the event's headers are
            // copied encoded with the tag inserted (no allocation per event).
            out.set_header(&e, "guest-version", TAG);
        }
    }
}

sluice_guest::export!(interceptor: Tagger);

#[cfg(test)]
mod tests {
    use sluice_guest::testing::{Outcome, config, event, intercept};

    use super::*;

    #[test]
    fn tags() -> Result<(), String> {
        let out = intercept::<Tagger>(&config(&[]), &[event("a", &[])])?;
        assert_eq!(
            out,
            vec![Outcome::Replace(event("a", &[("guest-version", TAG)]))]
        );
        Ok(())
    }
}
