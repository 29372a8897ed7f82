//! Two-tier HA with real processes: two tier-1 agents (seq → file channel → load_balance group
//! of two Avro sinks) feed two collectors (Avro source → file channel → file_roll). One
//! collector is SIGKILLed mid-stream and restarted later; every event must arrive at least once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use sluice_integration::{Sluice, free_port, read_lines, wait_for};

const PER_TIER: u64 = 30_000;

fn collector(tmp: &Path, name: &str, port: u16) -> String {
    let d = tmp.join(name);
    format!(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = avro\n\
         a1.sources.r1.bind = 127.0.0.1\n\
         a1.sources.r1.port = {port}\n\
         a1.sources.r1.channels = c1\n\
         a1.channels.c1.type = file\n\
         a1.channels.c1.checkpointDir = {cp}\n\
         a1.channels.c1.dataDirs = {data}\n\
         a1.channels.c1.capacity = 200000\n\
         a1.channels.c1.transactionCapacity = 1000\n\
         a1.sinks.k1.type = file_roll\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.sink.directory = {out}\n\
         a1.sinks.k1.sink.rollInterval = 0\n\
         a1.sinks.k1.sink.batchSize = 1000\n\
         a1.sinks.k1.sink.serializer = header_and_text\n",
        cp = d.join("checkpoint").display(),
        data = d.join("data").display(),
        out = d.join("out").display(),
    )
}

fn tier1(tmp: &Path, name: &str, ports: [u16; 2]) -> String {
    let d = tmp.join(name);
    format!(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1 k2\na1.sinkgroups = g1\n\
         a1.sources.r1.type = seq\n\
         a1.sources.r1.totalEvents = {PER_TIER}\n\
         a1.sources.r1.batchSize = 100\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.interceptors = t\n\
         a1.sources.r1.interceptors.t.type = static\n\
         a1.sources.r1.interceptors.t.key = tier1\n\
         a1.sources.r1.interceptors.t.value = {name}\n\
         a1.channels.c1.type = file\n\
         a1.channels.c1.checkpointDir = {cp}\n\
         a1.channels.c1.dataDirs = {data}\n\
         a1.channels.c1.capacity = 200000\n\
         a1.channels.c1.transactionCapacity = 1000\n\
         a1.sinks.k1.type = avro\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.hostname = 127.0.0.1\n\
         a1.sinks.k1.port = {p1}\n\
         a1.sinks.k1.batch-size = 200\n\
         a1.sinks.k1.connect-timeout = 1000\n\
         a1.sinks.k1.request-timeout = 5000\n\
         a1.sinks.k2.type = avro\n\
         a1.sinks.k2.channel = c1\n\
         a1.sinks.k2.hostname = 127.0.0.1\n\
         a1.sinks.k2.port = {p2}\n\
         a1.sinks.k2.batch-size = 200\n\
         a1.sinks.k2.connect-timeout = 1000\n\
         a1.sinks.k2.request-timeout = 5000\n\
         a1.sinkgroups.g1.sinks = k1 k2\n\
         a1.sinkgroups.g1.processor.type = load_balance\n\
         a1.sinkgroups.g1.processor.backoff = true\n\
         a1.sinkgroups.g1.processor.selector = round_robin\n\
         a1.sinkgroups.g1.processor.selector.maxTimeOut = 2000\n",
        cp = d.join("checkpoint").display(),
        data = d.join("data").display(),
        p1 = ports[0],
        p2 = ports[1],
    )
}

fn out_dir(tmp: &Path, collector: &str) -> PathBuf {
    tmp.join(collector).join("out")
}

/// `(tier-1 name, sequence number)` → times seen, over both collectors.
fn tally(tmp: &Path) -> Result<BTreeMap<(String, u64), u32>> {
    let mut seen = BTreeMap::new();
    for c in ["c1", "c2"] {
        for line in read_lines(&out_dir(tmp, c)) {
            let Some((head, n)) = line.rsplit_once("} ") else {
                bail!("bad line {line:?}")
            };
            let tier = head.trim_start_matches("{tier1=").to_string();
            let n: u64 = n.parse()?;
            *seen.entry((tier, n)).or_insert(0) += 1;
        }
    }
    Ok(seen)
}

#[test]
fn collector_killed_and_restarted_loses_nothing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let t = tmp.path();
    let ports = [free_port()?, free_port()?];
    let c1_conf = t.join("c1.conf");
    std::fs::write(&c1_conf, collector(t, "c1", ports[0]))?;
    let mut c1 = Sluice::start_file(t, "c1", &c1_conf, &[])?;
    let c2 = Sluice::start(t, "c2", &collector(t, "c2", ports[1]), &[])?;
    let _t1 = Sluice::start(t, "t1", &tier1(t, "t1", ports), &[])?;
    let _t2 = Sluice::start(t, "t2", &tier1(t, "t2", ports), &[])?;

    // Mid-stream: both collectors have received something, well before the end.
    wait_for(
        "both collectors to receive events",
        Duration::from_secs(120),
        || {
            let (a, b) = (
                read_lines(&out_dir(t, "c1")).len(),
                read_lines(&out_dir(t, "c2")).len(),
            );
            (a > 500 && b > 500).then_some(())
        },
    )?;
    c1.kill9()?;
    let killed_at = Instant::now();
    let c2_at_kill = c2.counter("SOURCE.r1", "EventAcceptedCount")?;
    // The survivor carries the full load once it receives more than its half again.
    let takeover = wait_for(
        "the survivor to carry the load",
        Duration::from_secs(120),
        || {
            let now = c2.counter("SOURCE.r1", "EventAcceptedCount").ok()?;
            (now >= c2_at_kill + 2_000).then(|| killed_at.elapsed())
        },
    )?;
    wait_for(
        "tier-1 to send everything to the survivor",
        Duration::from_secs(240),
        || {
            let seen = tally(t).ok()?;
            (seen.len() as u64 >= 2 * PER_TIER - 5_000).then_some(())
        },
    )
    .ok();

    // Restart the killed collector: its file channel delivers what it had committed.
    let _c1 = Sluice::start_file(t, "c1-restarted", &c1_conf, &[])?;
    let seen = wait_for(
        "every event at least once",
        Duration::from_secs(240),
        || {
            let seen = tally(t).ok()?;
            (seen.len() as u64 == 2 * PER_TIER).then_some(seen)
        },
    );
    let seen = match seen {
        Ok(s) => s,
        Err(e) => {
            let s = tally(t)?;
            bail!("{e}: {} of {} distinct events", s.len(), 2 * PER_TIER);
        }
    };
    let total: u64 = seen.values().map(|&n| u64::from(n)).sum();
    let duplicates = total - seen.len() as u64;
    for tier in ["t1", "t2"] {
        for n in 0..PER_TIER {
            ensure!(
                seen.contains_key(&(tier.to_string(), n)),
                "missing {tier}/{n}"
            );
        }
    }
    println!(
        "two-tier HA: {} events from 2 tier-1 agents, {} delivered, {duplicates} duplicates \
         ({:.2}%); the survivor accepted 2000 more events {:.2} s after the SIGKILL",
        2 * PER_TIER,
        total,
        duplicates as f64 * 100.0 / (2 * PER_TIER) as f64,
        takeover.as_secs_f64()
    );
    Ok(())
}
