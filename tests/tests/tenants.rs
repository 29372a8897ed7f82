//! A shared collector serving three tenants through one Avro source: B floods over its quota and
//! is throttled (its senders get backpressure), A and C are unaffected, and no event crosses
//! tenants.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use sluice_integration::{Sluice, free_port, read_lines, wait_for};

const WAIT: Duration = Duration::from_secs(120);

fn collector(port: u16, dir: &Path, b_quota: bool) -> String {
    let mut conf = format!(
        "a1.sources = r1\na1.channels = cA cB cC\na1.sinks = kA kB kC\n\
         a1.sources.r1.type = avro\n\
         a1.sources.r1.bind = 127.0.0.1\n\
         a1.sources.r1.port = {port}\n\
         a1.sources.r1.channels = cA cB cC\n\
         a1.sources.r1.selector.type = tenant\n\
         a1.tenants = A B C\n\
         a1.tenants.header = tenant\n\
         a1.tenants.A.channels = cA\n\
         a1.tenants.B.channels = cB\n\
         a1.tenants.C.channels = cC\n"
    );
    if b_quota {
        conf.push_str(
            "a1.tenants.B.quota.events-per-second = 500\n\
             a1.tenants.B.quota.burst = 1\n\
             a1.tenants.B.quota.policy = backpressure\n",
        );
    }
    for t in ["A", "B", "C"] {
        conf.push_str(&format!(
            "a1.channels.c{t}.type = memory\n\
             a1.channels.c{t}.capacity = 100000\n\
             a1.channels.c{t}.transactionCapacity = 1000\n\
             a1.sinks.k{t}.type = file_roll\n\
             a1.sinks.k{t}.channel = c{t}\n\
             a1.sinks.k{t}.sink.directory = {}\n\
             a1.sinks.k{t}.sink.rollInterval = 0\n\
             a1.sinks.k{t}.sink.batchSize = 1000\n\
             a1.sinks.k{t}.sink.serializer = header_and_text\n",
            dir.join(t).display()
        ));
    }
    conf
}

fn sender(tenant: &str, total: u64, port: u16) -> String {
    format!(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = seq\n\
         a1.sources.r1.totalEvents = {total}\n\
         a1.sources.r1.batchSize = 100\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.interceptors = t\n\
         a1.sources.r1.interceptors.t.type = static\n\
         a1.sources.r1.interceptors.t.key = tenant\n\
         a1.sources.r1.interceptors.t.value = {tenant}\n\
         a1.channels.c1.type = memory\n\
         a1.channels.c1.capacity = 10000\n\
         a1.channels.c1.transactionCapacity = 100\n\
         a1.sinks.k1.type = avro\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.hostname = 127.0.0.1\n\
         a1.sinks.k1.port = {port}\n\
         a1.sinks.k1.batch-size = 100\n"
    )
}

/// Lines of tenant `t`'s output, checking each carries `{tenant=t}`.
fn tenant_lines(dir: &Path, t: &str) -> Result<Vec<u64>> {
    let prefix = format!("{{tenant={t}}} ");
    read_lines(&dir.join(t))
        .iter()
        .map(|l| {
            l.strip_prefix(&prefix)
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("line {l:?} in tenant {t}'s output"))
        })
        .collect()
}

/// Runs C alone or with A and a flooding B; returns C's time to deliver everything.
fn run(with_others: bool) -> Result<Duration> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let port = free_port()?;
    let collector = Sluice::start(dir, "collector", &collector(port, dir, true), &[])?;
    let mut senders = Vec::new();
    if with_others {
        senders.push(Sluice::start(dir, "A", &sender("A", 5_000, port), &[])?);
        senders.push(Sluice::start(dir, "B", &sender("B", 1_000_000, port), &[])?);
    }
    let start = Instant::now();
    senders.push(Sluice::start(dir, "C", &sender("C", 20_000, port), &[])?);
    let c = wait_for("tenant C's 20000 events", WAIT, || {
        let v = tenant_lines(dir, "C").ok()?;
        (v.len() >= 20_000).then_some(v)
    })?;
    let c_time = start.elapsed();
    let mut sorted = c.clone();
    sorted.sort_unstable();
    sorted.dedup();
    ensure!(
        sorted.len() == 20_000 && sorted.iter().copied().eq(0..20_000),
        "C lost events"
    );
    if with_others {
        let a = wait_for("tenant A's 5000 events", WAIT, || {
            let v = tenant_lines(dir, "A").ok()?;
            (v.len() >= 5_000).then_some(v)
        })?;
        ensure!(a.len() == 5_000, "A: {} events", a.len());
        let b = tenant_lines(dir, "B")?;
        let hits = collector.counter("TENANT.B", "QuotaHitCount")?;
        let elapsed = start.elapsed().as_secs_f64();
        // Token bucket: at most rate × (elapsed + burst) events can have passed.
        ensure!(
            (b.len() as f64) <= 500.0 * (elapsed + 1.0) + 100.0,
            "B not throttled: {}",
            b.len()
        );
        ensure!(hits > 0, "no quota hit counted for B");
        let b_refused = senders[1].counter("SINK.k1", "EventWriteFail")?;
        ensure!(b_refused > 0, "B's sender saw no backpressure");
        ensure!(collector.counter("TENANT.C", "QuotaHitCount")? == 0);
        println!(
            "tenants: C delivered 20000 in {:.2} s; A 5000; B throttled to {} events in {elapsed:.1} s \
             ({hits} quota hits, {b_refused} refused batches at B's sender)",
            c_time.as_secs_f64(),
            b.len()
        );
    }
    Ok(c_time)
}

#[test]
fn flooding_tenant_is_throttled_and_others_are_unaffected() -> Result<()> {
    let alone = run(false)?;
    let shared = run(true)?;
    println!(
        "tenants: C alone {:.2} s, next to A and flooding B {:.2} s (ratio {:.2})",
        alone.as_secs_f64(),
        shared.as_secs_f64(),
        shared.as_secs_f64() / alone.as_secs_f64().max(1e-3)
    );
    Ok(())
}
