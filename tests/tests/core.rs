//! The agent core, end to end with the real `sluice` binary: delivery, routing, sink groups
//! with a failing sink, backpressure, config errors, SIGTERM drain and config reload.
//!
//! A "failing sink" here is a real file_roll sink whose `sink.directory` path is occupied by a
//! regular file: it cannot create its output and fails every batch until the file is removed.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use sluice_integration::{Sluice, read_lines, run_sluice, wait_for};

const WAIT: Duration = Duration::from_secs(60);

fn numbers(dir: &Path) -> Vec<u64> {
    read_lines(dir)
        .iter()
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// Waits until `dir` holds at least `n` lines.
fn wait_lines(dir: &Path, n: usize) -> Result<Vec<u64>> {
    wait_for(&format!("{n} lines in {}", dir.display()), WAIT, || {
        let v = numbers(dir);
        (v.len() >= n).then_some(v)
    })
}

fn assert_exactly(values: &[u64], n: u64) -> Result<()> {
    let set: BTreeSet<u64> = values.iter().copied().collect();
    ensure!(
        values.len() as u64 == n,
        "expected {n} events, got {}",
        values.len()
    );
    ensure!(
        set.len() as u64 == n,
        "duplicates: {} distinct of {}",
        set.len(),
        values.len()
    );
    ensure!(set.iter().copied().eq(0..n), "missing sequence numbers");
    Ok(())
}

fn pipeline(total: u64, extra: &str, sinks: &str) -> String {
    format!(
        "a1.sources = r1\n\
         a1.sources.r1.type = seq\n\
         a1.sources.r1.batchSize = 100\n\
         a1.sources.r1.totalEvents = {total}\n\
         a1.sources.r1.backoffSleepIncrement = 100\n\
         a1.sources.r1.maxBackoffSleep = 500\n\
         {extra}\n{sinks}\n"
    )
}

fn file_roll(name: &str, channel: &str, dir: &Path) -> String {
    format!(
        "a1.sinks.{name}.type = file_roll\n\
         a1.sinks.{name}.channel = {channel}\n\
         a1.sinks.{name}.sink.directory = {}\n\
         a1.sinks.{name}.sink.rollInterval = 0\n\
         a1.sinks.{name}.sink.batchSize = 100\n",
        dir.display()
    )
}

fn memory(name: &str, capacity: usize) -> String {
    format!(
        "a1.channels.{name}.type = memory\n\
         a1.channels.{name}.capacity = {capacity}\n\
         a1.channels.{name}.transactionCapacity = 100\n\
         a1.channels.{name}.keep-alive = 0\n"
    )
}

#[test]
fn events_in_equal_events_out() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let conf = pipeline(
        20_000,
        &format!(
            "a1.sources.r1.channels = c1\na1.channels = c1\n{}",
            memory("c1", 10_000)
        ),
        &format!("a1.sinks = k1\n{}", file_roll("k1", "c1", &out)),
    );
    let agent = Sluice::start(tmp.path(), "a", &conf, &[])?;
    let got = wait_lines(&out, 20_000)?;
    assert_exactly(&got, 20_000)?;
    let drained = wait_for("EventDrainSuccessCount = 20000", WAIT, || {
        (agent.counter("SINK.k1", "EventDrainSuccessCount").ok()? == 20_000).then_some(())
    });
    ensure!(
        drained.is_ok(),
        "metrics never reached 20000: {:?}",
        agent.metrics()
    );
    ensure!(agent.counter("SOURCE.r1", "EventAcceptedCount")? == 20_000);
    ensure!(agent.counter("CHANNEL.c1", "EventPutSuccessCount")? == 20_000);
    let prom = sluice_integration::http::get(
        agent.metrics_addr.as_deref().unwrap_or_default(),
        "/metrics/prometheus",
    )?;
    ensure!(prom.contains("sluice_sink_event_drain_success_count_total{component=\"k1\"} 20000"));
    Ok(())
}

#[test]
fn replicating_and_multiplexing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (d1, d2, d3) = (
        tmp.path().join("d1"),
        tmp.path().join("d2"),
        tmp.path().join("d3"),
    );
    // r1 replicates to c1 and c2; r2 multiplexes on the last digit of the body.
    let conf = format!(
        "a1.sources = r1 r2\n\
         a1.channels = c1 c2 c3 c4\n\
         a1.sinks = k1 k2 k3 k4\n\
         a1.sources.r1.type = seq\n\
         a1.sources.r1.totalEvents = 1000\n\
         a1.sources.r1.batchSize = 50\n\
         a1.sources.r1.channels = c1 c2\n\
         a1.sources.r2.type = seq\n\
         a1.sources.r2.totalEvents = 1000\n\
         a1.sources.r2.batchSize = 50\n\
         a1.sources.r2.channels = c3 c4\n\
         a1.sources.r2.interceptors = x\n\
         a1.sources.r2.interceptors.x.type = regex_extractor\n\
         a1.sources.r2.interceptors.x.regex = (\\\\d)$\n\
         a1.sources.r2.interceptors.x.serializers = s\n\
         a1.sources.r2.interceptors.x.serializers.s.name = digit\n\
         a1.sources.r2.selector.type = multiplexing\n\
         a1.sources.r2.selector.header = digit\n\
         a1.sources.r2.selector.mapping.0 = c3\n\
         a1.sources.r2.selector.mapping.5 = c3\n\
         a1.sources.r2.selector.default = c4\n\
         {}{}{}{}{}{}{}\
         a1.sinks.k4.type = null\na1.sinks.k4.channel = c4\n",
        memory("c1", 2000),
        memory("c2", 2000),
        memory("c3", 2000),
        memory("c4", 2000),
        file_roll("k1", "c1", &d1),
        file_roll("k2", "c2", &d2),
        file_roll("k3", "c3", &d3),
    );
    let agent = Sluice::start(tmp.path(), "a", &conf, &[])?;
    assert_exactly(&wait_lines(&d1, 1000)?, 1000)?;
    assert_exactly(&wait_lines(&d2, 1000)?, 1000)?;
    let routed = wait_lines(&d3, 200)?;
    ensure!(routed.len() == 200, "c3 got {} events", routed.len());
    ensure!(
        routed.iter().all(|n| n % 5 == 0),
        "only bodies ending in 0 or 5 go to c3"
    );
    let others = wait_for("k4 to drain 800 events", WAIT, || {
        (agent.counter("SINK.k4", "EventDrainSuccessCount").ok()? == 800).then_some(())
    });
    ensure!(others.is_ok(), "{:?}", agent.metrics());
    Ok(())
}

/// `load_balancing` (Flume 1.10+'s selector) with the `uuid` interceptor, by Flume's class
/// names: round robin splits 1000 events 500/500, random sends each event to one channel;
/// every event arrives once, with its own UUID.
#[test]
fn load_balancing_selector_and_uuid_interceptor() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dirs: Vec<_> = (1..=4).map(|i| tmp.path().join(format!("d{i}"))).collect();
    let source = |name: &str, channels: &str, policy: &str| {
        format!(
            "a1.sources.{name}.type = seq\n\
             a1.sources.{name}.totalEvents = 1000\n\
             a1.sources.{name}.batchSize = 30\n\
             a1.sources.{name}.channels = {channels}\n\
             a1.sources.{name}.selector.type = org.apache.flume.channel.LoadBalancingChannelSelector\n\
             a1.sources.{name}.selector.policy = {policy}\n\
             a1.sources.{name}.interceptors = u\n\
             a1.sources.{name}.interceptors.u.type = org.apache.flume.sink.solr.morphline.UUIDInterceptor$Builder\n\
             a1.sources.{name}.interceptors.u.headerName = eventId\n\
             a1.sources.{name}.interceptors.u.prefix = {name}-\n"
        )
    };
    let mut conf = format!(
        "a1.sources = r1 r2\na1.channels = c1 c2 c3 c4\na1.sinks = k1 k2 k3 k4\n{}{}",
        source("r1", "c1 c2", "round_robin"),
        source("r2", "c3 c4", "random"),
    );
    for (i, d) in dirs.iter().enumerate() {
        conf.push_str(&memory(&format!("c{}", i + 1), 2000));
        conf.push_str(&file_roll(
            &format!("k{}", i + 1),
            &format!("c{}", i + 1),
            d,
        ));
        conf.push_str(&format!(
            "a1.sinks.k{}.sink.serializer = header_and_text\n",
            i + 1
        ));
    }
    let agent = Sluice::start(tmp.path(), "lb", &conf, &[])?;
    let lines = |d: &Path| read_lines(d);
    wait_for("2000 events in the four directories", WAIT, || {
        (dirs.iter().map(|d| lines(d).len()).sum::<usize>() >= 2000).then_some(())
    })
    .with_context(|| agent.log_text())?;
    let count: Vec<usize> = dirs.iter().map(|d| lines(d).len()).collect();
    ensure!(
        count[0] == 500 && count[1] == 500,
        "round robin split {count:?}"
    );
    ensure!(
        count[2] + count[3] == 1000,
        "random lost or doubled events: {count:?}"
    );
    ensure!(
        count[2] > 300 && count[3] > 300,
        "random is lopsided: {count:?}"
    );
    for (source, pair) in [("r1", &dirs[..2]), ("r2", &dirs[2..])] {
        let mut ids = BTreeSet::new();
        let mut bodies = Vec::new();
        for d in pair {
            for l in lines(d) {
                // `{eventId=r1-…} 17`
                let (head, body) = l.split_once("} ").context("no headers")?;
                let id = head
                    .split("eventId=")
                    .nth(1)
                    .map(|v| v.split([',', '}']).next().unwrap_or(v).to_string())
                    .with_context(|| format!("no eventId header: {l}"))?;
                let uuid = id
                    .strip_prefix(&format!("{source}-"))
                    .with_context(|| format!("no prefix: {id}"))?;
                ensure!(
                    uuid.len() == 36 && uuid.as_bytes()[14] == b'4',
                    "not a v4 UUID: {uuid}"
                );
                ids.insert(id);
                bodies.push(body.parse::<u64>()?);
            }
        }
        ensure!(ids.len() == 1000, "{source}: {} distinct ids", ids.len());
        bodies.sort_unstable();
        assert_exactly(&bodies, 1000)?;
    }
    Ok(())
}

#[test]
fn failover_moves_to_backup_and_back() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (d1, d2) = (tmp.path().join("primary"), tmp.path().join("backup"));
    std::fs::write(&d1, "blocks the primary sink")?;
    let conf = format!(
        "a1.sources = r1\n\
         a1.channels = c1\n\
         a1.sinks = k1 k2\n\
         a1.sinkgroups = g1\n\
         a1.sources.r1.type = stress\n\
         a1.sources.r1.size = 8\n\
         a1.sources.r1.batchSize = 10\n\
         a1.sources.r1.maxEventsPerSecond = 2000\n\
         a1.sources.r1.channels = c1\n\
         {}{}{}\
         a1.sinkgroups.g1.sinks = k1 k2\n\
         a1.sinkgroups.g1.processor.type = failover\n\
         a1.sinkgroups.g1.processor.priority.k1 = 10\n\
         a1.sinkgroups.g1.processor.priority.k2 = 5\n\
         a1.sinkgroups.g1.processor.maxpenalty = 1000\n",
        memory("c1", 10_000),
        file_roll("k1", "c1", &d1),
        file_roll("k2", "c1", &d2),
    );
    let agent = Sluice::start(tmp.path(), "a", &conf, &[])?;
    wait_for("the backup sink to take over", WAIT, || {
        (read_lines(&d2).len() >= 500).then_some(())
    })?;
    let failures = agent.counter("SINK.k1", "EventWriteFail")?
        + agent.counter("SINK.k1", "ConnectionFailedCount")?;
    ensure!(failures > 0, "{:?}", agent.metrics());
    std::fs::remove_file(&d1)?;
    wait_for("the primary sink to come back", WAIT, || {
        (read_lines(&d1).len() >= 500).then_some(())
    })?;
    // Once back, the primary takes every batch: the backup stops growing.
    let backup_then = read_lines(&d2).len();
    std::thread::sleep(Duration::from_millis(1500));
    ensure!(
        read_lines(&d2).len() == backup_then,
        "backup still written after primary recovered"
    );
    Ok(())
}

#[test]
fn load_balance_spreads_and_skips_failed_sink() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (d1, d2) = (tmp.path().join("k1"), tmp.path().join("k2"));
    std::fs::write(&d1, "blocks k1")?;
    let conf = pipeline(
        5_000,
        &format!(
            "a1.sources.r1.channels = c1\na1.channels = c1\n{}",
            memory("c1", 10_000)
        ),
        &format!(
            "a1.sinks = k1 k2\na1.sinkgroups = g1\n{}{}\
             a1.sinkgroups.g1.sinks = k1 k2\n\
             a1.sinkgroups.g1.processor.type = load_balance\n\
             a1.sinkgroups.g1.processor.selector = round_robin\n\
             a1.sinkgroups.g1.processor.backoff = true\n",
            file_roll("k1", "c1", &d1),
            file_roll("k2", "c1", &d2)
        ),
    );
    let agent = Sluice::start(tmp.path(), "a", &conf, &[])?;
    assert_exactly(&wait_lines(&d2, 5_000)?, 5_000)?;
    let failures = agent.counter("SINK.k1", "EventWriteFail")?
        + agent.counter("SINK.k1", "ConnectionFailedCount")?;
    ensure!(failures > 0, "{:?}", agent.metrics());
    drop(agent);

    // Both healthy: round robin gives both sinks work, and together exactly every event.
    let tmp = tempfile::tempdir()?;
    let (d1, d2) = (tmp.path().join("k1"), tmp.path().join("k2"));
    let conf = pipeline(
        5_000,
        &format!(
            "a1.sources.r1.channels = c1\na1.channels = c1\n{}",
            memory("c1", 10_000)
        ),
        &format!(
            "a1.sinks = k1 k2\na1.sinkgroups = g1\n{}{}\
             a1.sinkgroups.g1.sinks = k1 k2\n\
             a1.sinkgroups.g1.processor.type = load_balance\n",
            file_roll("k1", "c1", &d1),
            file_roll("k2", "c1", &d2)
        ),
    );
    let _agent = Sluice::start(tmp.path(), "a", &conf, &[])?;
    let all = wait_for("5000 events over both sinks", WAIT, || {
        let mut v = numbers(&d1);
        v.extend(numbers(&d2));
        (v.len() >= 5_000).then_some(v)
    })?;
    assert_exactly(&all, 5_000)?;
    ensure!(
        !numbers(&d1).is_empty() && !numbers(&d2).is_empty(),
        "round robin used one sink only"
    );
    Ok(())
}

#[test]
fn full_memory_channel_backpressures_without_loss() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    std::fs::write(&out, "sink blocked until this file goes")?;
    let conf = pipeline(
        5_000,
        &format!(
            "a1.sources.r1.channels = c1\na1.channels = c1\n{}",
            memory("c1", 300)
        ),
        &format!("a1.sinks = k1\n{}", file_roll("k1", "c1", &out)),
    );
    let agent = Sluice::start(tmp.path(), "a", &conf, &[])?;
    wait_for("the source to hit a full channel", WAIT, || {
        (agent.counter("SOURCE.r1", "ChannelWriteFail").ok()? > 0).then_some(())
    })?;
    ensure!(
        agent.counter("CHANNEL.c1", "ChannelSize")? == 300,
        "{:?}",
        agent.metrics()
    );
    ensure!(
        agent.log_text().contains("The channel is full"),
        "no backpressure warning logged"
    );
    std::fs::remove_file(&out)?;
    assert_exactly(&wait_lines(&out, 5_000)?, 5_000)?;
    Ok(())
}

#[test]
fn config_errors_name_file_line_and_key() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let bad = tmp.path().join("bad.conf");
    std::fs::write(
        &bad,
        "a1.sources = r1\n\
         a1.channels = c1\n\
         a1.sinks = k1\n\
         a1.sources.r1.type = seq\n\
         a1.sources.r1.channels = c1\n\
         a1.channels.c1.type = memory\n\
         a1.channels.c1.capacity = many\n\
         a1.sinks.k1.type = org.apache.flume.sink.NoSuchSink\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.shoeSize = 44\n",
    )?;
    let path = bad.display().to_string();
    let (code, _out, err) = run_sluice(&["check", "-n", "a1", "-f", &path])?;
    ensure!(code == 2, "exit code {code}");
    ensure!(
        err.contains(&format!(
            "{path}:7: a1.channels.c1.capacity: invalid value `many`"
        )),
        "{err}"
    );
    ensure!(
        err.contains(&format!("{path}:8: a1.sinks.k1.type: unknown sink type")),
        "{err}"
    );
    ensure!(
        err.contains("accepted: ") && err.contains("logger, null, file_roll"),
        "{err}"
    );

    let (code, _out, err) = run_sluice(&["agent", "-n", "a1", "-f", &path])?;
    ensure!(
        code == 2,
        "agent must refuse a broken config, exit code {code}: {err}"
    );

    // Unknown keys are warnings, as in Flume.
    let good = tmp.path().join("good.conf");
    let text = std::fs::read_to_string(&bad)?
        .replace("capacity = many", "capacity = 100")
        .replace(
            "org.apache.flume.sink.NoSuchSink",
            "org.apache.flume.sink.NullSink",
        );
    std::fs::write(&good, text)?;
    let (code, out, err) = run_sluice(&["check", "-n", "a1", "-f", &good.display().to_string()])?;
    ensure!(code == 0, "{err}");
    ensure!(
        err.contains("good.conf:10: a1.sinks.k1.shoeSize: unknown key, ignored"),
        "{err}"
    );
    ensure!(out.contains("sink k1: null <- c1"), "{out}");
    ensure!(out.contains("channel c1: memory\n"), "{out}");

    // The same pipeline as Graphviz DOT, and the same errors for a broken file.
    let (code, out, err) = run_sluice(&["graph", "-n", "a1", "-f", &good.display().to_string()])?;
    ensure!(code == 0, "{err}");
    ensure!(out.starts_with("digraph \"a1\" {"), "{out}");
    ensure!(out.contains("\"channel/c1\" -> \"sink/k1\";"), "{out}");
    let (code, _out, err) = run_sluice(&["graph", "-n", "a1", "-f", &path])?;
    ensure!(
        code == 2 && err.contains("unknown sink type"),
        "{code}: {err}"
    );
    Ok(())
}

#[test]
fn sigterm_drains_channel_and_exits_zero() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let conf = pipeline(
        200_000,
        &format!(
            "a1.sources.r1.channels = c1\na1.channels = c1\n{}",
            memory("c1", 100_000)
        ),
        &format!("a1.sinks = k1\n{}", file_roll("k1", "c1", &out)),
    );
    let mut agent = Sluice::start(tmp.path(), "a", &conf, &["--drain-timeout", "60"])?;
    wait_for("some output", WAIT, || {
        (!read_lines(&out).is_empty()).then_some(())
    })?;
    agent.signal("TERM")?;
    let code = agent.wait(Duration::from_secs(90))?;
    ensure!(code == Some(0), "exit code {code:?}\n{}", agent.log_text());
    let got = numbers(&out);
    // FIFO channel drained completely: the output is exactly 0..n with no gap.
    assert_exactly(&got, got.len() as u64)?;
    ensure!(
        !agent.log_text().contains("Events left in channel"),
        "{}",
        agent.log_text()
    );
    Ok(())
}

#[test]
fn config_reload_restarts_changed_sink_and_rejects_broken_config() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (d1, d2) = (tmp.path().join("d1"), tmp.path().join("d2"));
    let conf = |dir: &Path| {
        format!(
            "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
             a1.sources.r1.type = stress\n\
             a1.sources.r1.size = 4\n\
             a1.sources.r1.batchSize = 10\n\
             a1.sources.r1.maxEventsPerSecond = 1000\n\
             a1.sources.r1.channels = c1\n{}{}",
            memory("c1", 10_000),
            file_roll("k1", "c1", dir)
        )
    };
    let agent = Sluice::start(tmp.path(), "a", &conf(&d1), &["--reload-interval", "1"])?;
    wait_for("output in d1", WAIT, || {
        (!read_lines(&d1).is_empty()).then_some(())
    })?;
    std::fs::write(&agent.conf, conf(&d2))?;
    wait_for("output in d2 after reload", WAIT, || {
        (!read_lines(&d2).is_empty()).then_some(())
    })?;
    ensure!(agent.log_text().contains("Reloading changed components"));
    let d1_after = read_lines(&d1).len();

    std::fs::write(
        &agent.conf,
        conf(&d2).replace("type = memory", "type = nosuch"),
    )?;
    wait_for("the rejected config in the log", WAIT, || {
        agent
            .log_text()
            .contains("Rejected the changed configuration")
            .then_some(())
    })?;
    let n = read_lines(&d2).len();
    wait_for("the old pipeline to keep running", WAIT, || {
        (read_lines(&d2).len() > n).then_some(())
    })?;
    ensure!(
        read_lines(&d1).len() == d1_after,
        "the replaced sink kept writing"
    );
    Ok(())
}
