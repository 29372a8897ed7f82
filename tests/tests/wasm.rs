//! WebAssembly hooks end to end with the real `sluice` binary and guests built from source:
//! every example guest in a real pipeline, hostile guests (each fault kind and policy), hot
//! reload with exact event accounting, capabilities, and `sluice wasm test`.
//!
//! Inputs with headers come from a TAILDIR source reading files the test writes, with a
//! `regex_extractor` interceptor turning the first word of each line into a header.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use sluice_integration::{Sluice, guests, read_lines, run_sluice, wait_for, wait_lines};

const WAIT: Duration = Duration::from_secs(60);

fn write_lines(path: &Path, lines: &[String]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    for l in lines {
        writeln!(f, "{l}")?;
    }
    Ok(())
}

/// TAILDIR source `r1` on `logs/*.log` into `channels`, with `first word -> header` extraction.
fn taildir(dir: &Path, channels: &str, header: &str) -> String {
    format!(
        "a1.sources = r1\n\
         a1.sources.r1.type = TAILDIR\n\
         a1.sources.r1.channels = {channels}\n\
         a1.sources.r1.filegroups = f1\n\
         a1.sources.r1.filegroups.f1 = {}/logs/.*\\\\.log\n\
         a1.sources.r1.positionFile = {}/pos.json\n\
         a1.sources.r1.batchSize = 100\n\
         a1.sources.r1.backoffSleepIncrement = 100\n\
         a1.sources.r1.maxBackoffSleep = 500\n\
         a1.sources.r1.interceptors = x w\n\
         a1.sources.r1.interceptors.x.type = regex_extractor\n\
         a1.sources.r1.interceptors.x.regex = ^(\\\\w+)\n\
         a1.sources.r1.interceptors.x.serializers = s\n\
         a1.sources.r1.interceptors.x.serializers.s.name = {header}\n",
        dir.display(),
        dir.display()
    )
}

fn seq(total: u64, channels: &str) -> String {
    format!(
        "a1.sources = r1\n\
         a1.sources.r1.type = seq\n\
         a1.sources.r1.batchSize = 100\n\
         a1.sources.r1.totalEvents = {total}\n\
         a1.sources.r1.channels = {channels}\n\
         a1.sources.r1.backoffSleepIncrement = 100\n\
         a1.sources.r1.maxBackoffSleep = 500\n\
         a1.sources.r1.interceptors = w\n"
    )
}

fn memory(name: &str) -> String {
    format!(
        "a1.channels.{name}.type = memory\n\
         a1.channels.{name}.capacity = 100000\n\
         a1.channels.{name}.transactionCapacity = 1000\n\
         a1.channels.{name}.keep-alive = 0\n"
    )
}

fn file_roll(name: &str, channel: &str, dir: &Path) -> String {
    format!(
        "a1.sinks.{name}.type = file_roll\n\
         a1.sinks.{name}.channel = {channel}\n\
         a1.sinks.{name}.sink.directory = {}\n\
         a1.sinks.{name}.sink.rollInterval = 0\n\
         a1.sinks.{name}.sink.batchSize = 100\n\
         a1.sinks.{name}.sink.serializer = header_and_text\n",
        dir.display()
    )
}

/// `w` as a wasm interceptor of r1 with extra keys.
fn wasm_interceptor(path: &Path, keys: &[(&str, &str)]) -> String {
    let mut s = format!(
        "a1.sources.r1.interceptors.w.type = wasm\na1.sources.r1.interceptors.w.path = {}\n",
        path.display()
    );
    for (k, v) in keys {
        s.push_str(&format!("a1.sources.r1.interceptors.w.{k} = {v}\n"));
    }
    s
}

/// One-channel, one-sink pipeline: `source` → c1 → file_roll into `out`.
fn simple(source: &str, extra: &str, out: &Path) -> String {
    format!(
        "{source}{extra}a1.channels = c1\n{}a1.sinks = k1\n{}",
        memory("c1"),
        file_roll("k1", "c1", out)
    )
}

/// Bodies of file_roll lines written with header_and_text: `{k=v, ...} body`.
fn parse_line(line: &str) -> (BTreeMap<String, String>, String) {
    let mut headers = BTreeMap::new();
    let Some(rest) = line.strip_prefix('{') else {
        return (headers, line.to_string());
    };
    let Some((h, body)) = rest.split_once("} ") else {
        return (headers, line.to_string());
    };
    for kv in h.split(", ") {
        if let Some((k, v)) = kv.split_once('=') {
            headers.insert(k.to_string(), v.to_string());
        }
    }
    (headers, body.to_string())
}

fn wait_count(dir: &Path, n: usize) -> Result<Vec<String>> {
    wait_lines(dir, n, WAIT)
}

fn wait_counter(agent: &Sluice, comp: &str, name: &str, at_least: u64) -> Result<u64> {
    wait_for(&format!("{comp} {name} >= {at_least}"), WAIT, || {
        agent.counter(comp, name).ok().filter(|v| *v >= at_least)
    })
    .with_context(|| {
        format!(
            "metrics: {:?}\nlog:\n{}",
            agent.metrics().ok(),
            agent.log_text()
        )
    })
}

const LEVELS: [&str; 5] = ["DEBUG", "INFO", "WARN", "TRACE", "ERROR"];

#[test]
fn rust_drop_by_level_filters_in_a_real_pipeline() -> Result<()> {
    drop_by_level_filters(&guests::rust("drop-by-level", None)?)
}

#[test]
fn c_drop_by_level_filters_in_a_real_pipeline() -> Result<()> {
    drop_by_level_filters(&guests::c_drop_by_level()?)
}

/// The drop-by-level guest at `wasm` (Rust or C) behind a TAILDIR source: DEBUG and TRACE
/// lines dropped and counted, the rest delivered in order.
fn drop_by_level_filters(wasm: &Path) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    std::fs::create_dir_all(tmp.path().join("logs"))?;
    let lines: Vec<String> = (0..1000)
        .map(|i| format!("{} event {i}", LEVELS[i % 5]))
        .collect();
    write_lines(&tmp.path().join("logs/app.log"), &lines)?;
    let out = tmp.path().join("out");
    let conf = simple(
        &taildir(tmp.path(), "c1", "lvl"),
        &wasm_interceptor(wasm, &[("config.min-level", "info")]),
        &out,
    );
    let agent = Sluice::start(tmp.path(), "a", &conf, &[])?;
    wait_count(&out, 600)?;
    wait_counter(&agent, "WASM.r1.w", "DroppedByLevel", 400)?;
    std::thread::sleep(Duration::from_millis(500));
    let got: Vec<String> = read_lines(&out).iter().map(|l| parse_line(l).1).collect();
    let want: Vec<String> = lines
        .iter()
        .filter(|l| !l.starts_with("DEBUG") && !l.starts_with("TRACE"))
        .cloned()
        .collect();
    ensure!(got == want, "kept {} lines, want {}", got.len(), want.len());
    ensure!(agent.counter("WASM.r1.w", "DroppedByLevel")? == 400);
    ensure!(agent.counter("WASM.r1.w", "EventInCount")? == 1000);
    ensure!(agent.counter("WASM.r1.w", "EventOutCount")? == 600);
    ensure!(agent.counter("WASM.r1.w", "FaultCount")? == 0);
    ensure!(agent.counter("SOURCE.r1", "InterceptorDroppedCount")? == 400);
    Ok(())
}

#[test]
fn c_pii_mask_transforms_in_a_real_pipeline() -> Result<()> {
    let wasm = guests::c_pii_mask()?;
    let tmp = tempfile::tempdir()?;
    std::fs::create_dir_all(tmp.path().join("logs"))?;
    let lines: Vec<String> = (0..300)
        .map(|i| match i % 3 {
            0 => format!(
                "user{i} signed in as bob.smith{i}@example.com from 10.0.0.{}",
                i % 250
            ),
            1 => format!("card 4111 1111 1111 {:04} charged", i),
            _ => format!("plain line {i}"),
        })
        .collect();
    write_lines(&tmp.path().join("logs/app.log"), &lines)?;
    let out = tmp.path().join("out");
    let conf = simple(
        &taildir(tmp.path(), "c1", "first"),
        &wasm_interceptor(&wasm, &[]),
        &out,
    );
    let agent = Sluice::start(tmp.path(), "a", &conf, &[])?;
    wait_count(&out, 300)?;
    let got: Vec<(BTreeMap<String, String>, String)> =
        read_lines(&out).iter().map(|l| parse_line(l)).collect();
    ensure!(got.len() == 300, "{} lines", got.len());
    for (i, (headers, body)) in got.iter().enumerate() {
        match i % 3 {
            0 => {
                ensure!(
                    !body.contains('@') || body.contains("***@"),
                    "email not masked: {body}"
                );
                ensure!(body.contains("***@example.com"), "line {i}: {body}");
                ensure!(
                    headers.get("pii-masked").map(String::as_str) == Some("1"),
                    "{headers:?}"
                );
            }
            1 => {
                ensure!(
                    body.contains("**** **** **** ****"),
                    "card not masked: {body}"
                );
                ensure!(headers.get("pii-masked").map(String::as_str) == Some("1"));
            }
            _ => {
                ensure!(body == &lines[i], "untouched line changed: {body}");
                ensure!(!headers.contains_key("pii-masked"));
            }
        }
    }
    ensure!(agent.counter("WASM.r1.w", "MaskedEvents")? == 200);
    Ok(())
}

/// Two channels c1 → `d1`, c2 → `d2`; r1 routes with the router guest at `wasm`.
fn router_pipeline(tmp: &Path, wasm: &Path) -> Result<(Sluice, PathBuf, PathBuf, Vec<String>)> {
    std::fs::create_dir_all(tmp.join("logs"))?;
    let tenants = ["acme", "globex", "initech", "both"];
    let lines: Vec<String> = (0..400)
        .map(|i| format!("{} request {i}", tenants[i % 4]))
        .collect();
    write_lines(&tmp.join("logs/app.log"), &lines)?;
    let (d1, d2) = (tmp.join("d1"), tmp.join("d2"));
    let conf = format!(
        "{}a1.sources.r1.interceptors = x\n\
         a1.sources.r1.selector.type = wasm\n\
         a1.sources.r1.selector.path = {}\n\
         a1.sources.r1.selector.config.route.acme = 0\n\
         a1.sources.r1.selector.config.route.globex = 1\n\
         a1.sources.r1.selector.config.route.both = 0 1\n\
         a1.sources.r1.selector.config.default =\n\
         a1.channels = c1 c2\n{}{}a1.sinks = k1 k2\n{}{}",
        taildir(tmp, "c1 c2", "tenant"),
        wasm.display(),
        memory("c1"),
        memory("c2"),
        file_roll("k1", "c1", &d1),
        file_roll("k2", "c2", &d2)
    );
    let agent = Sluice::start(tmp, "a", &conf, &[])?;
    Ok((agent, d1, d2, lines))
}

fn check_routed(agent: &Sluice, d1: &Path, d2: &Path, lines: &[String]) -> Result<()> {
    wait_count(d1, 200)?;
    wait_count(d2, 200)?;
    wait_counter(agent, "WASM.r1.selector", "EventInCount", 400)?;
    std::thread::sleep(Duration::from_millis(300));
    let bodies =
        |d: &Path| -> Vec<String> { read_lines(d).iter().map(|l| parse_line(l).1).collect() };
    let want = |t: &[&str]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| t.iter().any(|t| l.starts_with(&format!("{t} "))))
            .cloned()
            .collect()
    };
    ensure!(
        bodies(d1) == want(&["acme", "both"]),
        "c1 got the wrong events"
    );
    ensure!(
        bodies(d2) == want(&["globex", "both"]),
        "c2 got the wrong events"
    );
    ensure!(
        agent.counter("WASM.r1.selector", "EventOutCount")? == 300,
        "initech is dropped"
    );
    ensure!(agent.counter("WASM.r1.selector", "FaultCount")? == 0);
    Ok(())
}

#[test]
fn python_tenant_router_routes_in_a_real_pipeline() -> Result<()> {
    let wasm = guests::python_tenant_router()?;
    let tmp = tempfile::tempdir()?;
    let (agent, d1, d2, lines) = router_pipeline(tmp.path(), &wasm)?;
    check_routed(&agent, &d1, &d2, &lines)?;
    ensure!(agent.counter("WASM.r1.selector", "UnknownTenant")? == 100);
    Ok(())
}

#[test]
fn rust_header_router_routes_in_a_real_pipeline() -> Result<()> {
    let wasm = guests::rust("header-router", None)?;
    let tmp = tempfile::tempdir()?;
    let (agent, d1, d2, lines) = router_pipeline(tmp.path(), &wasm)?;
    check_routed(&agent, &d1, &d2, &lines)
}

fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// Sink group g1 (k1 → `d1`, k2 → `d2`, one channel) with the selector guest at `wasm`.
fn check_sticky(wasm: &Path) -> Result<Sluice> {
    let tmp = tempfile::tempdir()?;
    std::fs::create_dir_all(tmp.path().join("logs"))?;
    let keys: Vec<String> = (0..10).map(|k| format!("user{k}")).collect();
    let lines: Vec<String> = (0..500)
        .map(|i| format!("{} click {i}", keys[i % 10]))
        .collect();
    write_lines(&tmp.path().join("logs/app.log"), &lines)?;
    let (d1, d2) = (tmp.path().join("d1"), tmp.path().join("d2"));
    let conf = format!(
        "{}a1.sources.r1.interceptors = x\n\
         a1.channels = c1\n{}a1.sinks = k1 k2\n{}{}\
         a1.sinkgroups = g1\n\
         a1.sinkgroups.g1.sinks = k1 k2\n\
         a1.sinkgroups.g1.processor.type = wasm\n\
         a1.sinkgroups.g1.processor.path = {}\n\
         a1.sinkgroups.g1.processor.config.header = key\n\
         a1.sinkgroups.g1.processor.config.sinks = 2\n",
        taildir(tmp.path(), "c1", "key"),
        memory("c1"),
        file_roll("k1", "c1", &d1),
        file_roll("k2", "c1", &d2),
        wasm.display()
    );
    let agent = Sluice::start(tmp.path(), "a", &conf, &[])?;
    wait_for("500 events over both sinks", WAIT, || {
        (read_lines(&d1).len() + read_lines(&d2).len() >= 500).then_some(())
    })?;
    std::thread::sleep(Duration::from_millis(300));
    let mut seen = BTreeSet::new();
    for (sink, dir) in [(0u32, &d1), (1u32, &d2)] {
        for line in read_lines(dir) {
            let (headers, body) = parse_line(&line);
            let key = headers.get("key").context("no key header")?;
            ensure!(
                fnv1a(key.as_bytes()) % 2 == sink,
                "{key} went to sink {sink}"
            );
            ensure!(seen.insert(body.clone()), "duplicate {body}");
        }
    }
    ensure!(seen.len() == 500, "{} distinct events", seen.len());
    ensure!(
        agent.counter("SINK.k1", "EventDrainSuccessCount")?
            + agent.counter("SINK.k2", "EventDrainSuccessCount")?
            == 500
    );
    ensure!(agent.counter("WASM.g1.processor", "FaultCount")? == 0);
    drop(tmp);
    Ok(agent)
}

#[test]
fn js_sticky_selector_selects_sinks_in_a_real_pipeline() -> Result<()> {
    let wasm = guests::js_sticky_selector()?;
    check_sticky(&wasm).map(drop)
}

#[test]
fn rust_sticky_selector_selects_sinks_in_a_real_pipeline() -> Result<()> {
    let wasm = guests::rust("sticky-selector", None)?;
    check_sticky(&wasm).map(drop)
}

/// A seq pipeline of `total` events through the hostile guest in `mode`.
fn hostile(
    mode: &str,
    total: u64,
    keys: &[(&str, &str)],
) -> Result<(Sluice, PathBuf, tempfile::TempDir)> {
    let wasm = guests::rust("hostile", None)?;
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let mut k = vec![("config.mode", mode)];
    k.extend_from_slice(keys);
    let conf = simple(&seq(total, "c1"), &wasm_interceptor(&wasm, &k), &out);
    let agent = Sluice::start(tmp.path(), "a", &conf, &[])?;
    Ok((agent, out, tmp))
}

fn alive(agent: &mut Sluice) -> Result<()> {
    ensure!(
        agent.child.try_wait()?.is_none(),
        "the agent exited:\n{}",
        agent.log_text()
    );
    agent.metrics().map(drop)
}

#[test]
fn infinite_loop_times_out_and_batches_drop() -> Result<()> {
    let (mut agent, out, _tmp) = hostile(
        "loop",
        1000,
        &[("limits.timeout", "50"), ("on-error", "drop")],
    )?;
    wait_counter(&agent, "WASM.r1.w", "TimeoutCount", 3)?;
    wait_counter(&agent, "SOURCE.r1", "EventAcceptedCount", 1000)?;
    alive(&mut agent)?;
    ensure!(agent.counter("WASM.r1.w", "BatchDroppedCount")? == 10);
    // Three timeouts in a row suspend the guest (limits.suspend-after): the batches after
    // that are dropped without running it. Every batch either timed out or was suspended.
    let timeouts = agent.counter("WASM.r1.w", "TimeoutCount")?;
    let suspended = agent.counter("WASM.r1.w", "SuspendedBatchCount")?;
    ensure!(
        timeouts + suspended == 10 && suspended > 0,
        "{timeouts} timeouts + {suspended} suspended batches"
    );
    ensure!(
        agent.counter("WASM.r1.w", "InstantiateCount")? >= timeouts,
        "instance recreated after each fault"
    );
    ensure!(agent.log_text().contains("Wasm guest suspended"));
    ensure!(read_lines(&out).is_empty());
    ensure!(agent.log_text().contains("Wasm guest fault.") && agent.log_text().contains("r1.w"));
    Ok(())
}

/// A guest that logs a 10 kB line per event: the host writes at most its burst plus its rate,
/// each line cut to 4 kB, counts the rest, and every event still flows.
#[test]
fn a_chatty_guest_is_rate_limited() -> Result<()> {
    let started = std::time::Instant::now();
    let (mut agent, out, _tmp) = hostile("chatty", 5000, &[])?;
    let got = wait_count(&out, 5000)?;
    ensure!(got.len() == 5000);
    alive(&mut agent)?;
    let elapsed = started.elapsed().as_secs_f64();
    let log = agent.log_text();
    let written = log.matches("chatty guest line").count();
    let allowed = 100 + (10.0 * elapsed).ceil() as usize;
    ensure!(
        written > 0 && written <= allowed,
        "{written} guest lines written in {elapsed:.1} s (at most {allowed})"
    );
    let suppressed = agent.counter("WASM.r1.w", "LogSuppressedCount")?;
    ensure!(
        suppressed as usize + written == 5000,
        "{suppressed} suppressed + {written} written"
    );
    let longest = log
        .lines()
        .filter(|l| l.contains("chatty guest line"))
        .map(str::len)
        .max()
        .unwrap_or(0);
    ensure!(
        longest < 4096 + 300,
        "a guest line of {longest} bytes was written"
    );
    Ok(())
}

#[test]
fn memory_bomb_hits_the_limit_and_batches_pass() -> Result<()> {
    let (mut agent, out, _tmp) = hostile(
        "bomb",
        1000,
        &[("limits.memory", "16m"), ("on-error", "pass")],
    )?;
    let got = wait_count(&out, 1000)?;
    ensure!(got.len() == 1000);
    alive(&mut agent)?;
    ensure!(agent.counter("WASM.r1.w", "MemoryLimitCount")? == 10);
    ensure!(agent.counter("WASM.r1.w", "BatchPassedCount")? == 10);
    Ok(())
}

#[test]
fn trap_in_init_fails_batches_until_fixed_and_loses_nothing() -> Result<()> {
    let (mut agent, out, _tmp) = hostile("init-trap", 500, &[("on-error", "fail")])?;
    wait_counter(&agent, "WASM.r1.w", "InitFailureCount", 2)?;
    wait_counter(&agent, "SOURCE.r1", "GenericProcessingFail", 2)?;
    alive(&mut agent)?;
    ensure!(read_lines(&out).is_empty());
    ensure!(agent.counter("SOURCE.r1", "EventAcceptedCount")? == 0);
    Ok(())
}

#[test]
fn trap_mid_batch_drops_exactly_the_poisoned_batches() -> Result<()> {
    let (mut agent, out, _tmp) = hostile("poison", 10_000, &[("on-error", "drop")])?;
    wait_counter(&agent, "SOURCE.r1", "EventAcceptedCount", 10_000)?;
    let got = wait_count(&out, 9000)?;
    std::thread::sleep(Duration::from_millis(300));
    alive(&mut agent)?;
    let nums: BTreeSet<u64> = got
        .iter()
        .filter_map(|l| parse_line(l).1.parse().ok())
        .collect();
    let want: BTreeSet<u64> = (0..10_000u64).filter(|n| n % 1000 / 100 != 5).collect();
    ensure!(
        got.len() == 9000 && nums == want,
        "delivered {} events",
        got.len()
    );
    ensure!(agent.counter("WASM.r1.w", "TrapCount")? == 10);
    ensure!(agent.counter("WASM.r1.w", "BatchDroppedCount")? == 10);
    Ok(())
}

#[test]
fn bad_verdicts_are_a_fault_and_fail_the_batch() -> Result<()> {
    let (mut agent, out, _tmp) = hostile("bad-verdicts", 300, &[("on-error", "fail")])?;
    wait_counter(&agent, "WASM.r1.w", "BadReturnCount", 3)?;
    alive(&mut agent)?;
    ensure!(read_lines(&out).is_empty());
    ensure!(agent.counter("SOURCE.r1", "EventAcceptedCount")? == 0);
    ensure!(agent.log_text().contains("verdicts for 100 events"));
    Ok(())
}

#[test]
fn out_of_range_route_is_a_fault() -> Result<()> {
    let wasm = guests::rust("header-router", None)?;
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let conf = format!(
        "{}a1.sources.r1.interceptors =\n\
         a1.sources.r1.selector.type = wasm\n\
         a1.sources.r1.selector.path = {}\n\
         a1.sources.r1.selector.config.mode = out-of-range\n\
         a1.sources.r1.selector.on-error = drop\n\
         a1.channels = c1\n{}a1.sinks = k1\n{}",
        seq(1000, "c1"),
        wasm.display(),
        memory("c1"),
        file_roll("k1", "c1", &out)
    );
    let mut agent = Sluice::start(tmp.path(), "a", &conf, &[])?;
    wait_counter(&agent, "WASM.r1.selector", "BadReturnCount", 10)?;
    wait_counter(&agent, "SOURCE.r1", "EventAcceptedCount", 1000)?;
    alive(&mut agent)?;
    ensure!(read_lines(&out).is_empty());
    ensure!(agent.log_text().contains("the source has 1 channels"));
    Ok(())
}

#[test]
fn guest_without_grants_cannot_open_files_or_read_the_clock() -> Result<()> {
    let secret_dir = tempfile::tempdir()?;
    let secret = secret_dir.path().join("secret.txt");
    std::fs::write(&secret, "top secret")?;
    let probe = secret.display().to_string();
    let (_agent, out, _tmp) = hostile("probe", 100, &[("config.probe-path", &probe)])?;
    let got = wait_count(&out, 100)?;
    let (headers, _) = parse_line(&got[0]);
    ensure!(
        headers
            .get("probe")
            .is_some_and(|p| p.starts_with("denied:")),
        "the guest read the file: {headers:?}"
    );
    ensure!(
        headers.get("clock").map(String::as_str) == Some("0"),
        "{headers:?}"
    );

    let dir = secret_dir.path().display().to_string();
    let (_agent, out, _tmp) = hostile(
        "probe",
        100,
        &[
            ("config.probe-path", &probe),
            ("grant.fs", &dir),
            ("grant.clock", "true"),
        ],
    )?;
    let got = wait_count(&out, 100)?;
    let (headers, _) = parse_line(&got[0]);
    ensure!(
        headers.get("probe").map(String::as_str) == Some("read:10"),
        "{headers:?}"
    );
    ensure!(
        headers
            .get("clock")
            .and_then(|c| c.parse::<u64>().ok())
            .is_some_and(|c| c > 1_600_000_000),
        "{headers:?}"
    );
    Ok(())
}

/// Replaces `dst` the way deployment tools do: write a temporary file, then rename over.
#[test]
fn hot_reload_swaps_between_batches_with_exact_accounting() -> Result<()> {
    let v1 = guests::rust("tagger", Some("v1"))?;
    let v2 = guests::rust("tagger", Some("v2"))?;
    let tmp = tempfile::tempdir()?;
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let guest = tmp.path().join("guest.wasm");
    guests::install(&v1, &guest)?;
    let out = tmp.path().join("out");
    let conf = simple(
        &taildir(tmp.path(), "c1", "first").replace("interceptors = x w", "interceptors = w"),
        &wasm_interceptor(&guest, &[]),
        &out,
    );
    let agent = Sluice::start(tmp.path(), "a", &conf, &[])?;
    let log = logs.join("app.log");
    let total = 6200u64;
    let mut next = 0u64;
    let mut write = |n: u64| -> Result<()> {
        let lines: Vec<String> = (next..next + n).map(|i| format!("e {i}")).collect();
        next += n;
        write_lines(&log, &lines)
    };
    for _ in 0..10 {
        write(200)?;
        std::thread::sleep(Duration::from_millis(30));
    }
    wait_count(&out, 1000)?;
    // A broken file leaves v1 running.
    std::fs::write(logs.join("../broken.wasm"), b"not a component")?;
    guests::install(&tmp.path().join("broken.wasm"), &guest)?;
    wait_counter(&agent, "WASM.r1.w", "ReloadFailureCount", 1)?;
    for _ in 0..10 {
        write(200)?;
        std::thread::sleep(Duration::from_millis(30));
    }
    guests::install(&v2, &guest)?;
    for _ in 0..10 {
        write(200)?;
        std::thread::sleep(Duration::from_millis(30));
    }
    wait_counter(&agent, "WASM.r1.w", "ReloadCount", 1)?;
    // The swap may land after every line above was processed (a cold compile takes longer
    // than writing them): lines written once the reload is counted must meet v2.
    write(200)?;
    let got = wait_count(&out, total as usize)?;
    std::thread::sleep(Duration::from_millis(500));
    let got = if got.len() as u64 == total {
        got
    } else {
        read_lines(&out)
    };
    ensure!(
        got.len() as u64 == total,
        "{} events for {total} written",
        got.len()
    );
    let mut seen = BTreeSet::new();
    let mut versions = Vec::new();
    for line in &got {
        let (headers, body) = parse_line(line);
        ensure!(seen.insert(body.clone()), "processed twice: {body}");
        versions.push(headers.get("guest-version").cloned().unwrap_or_default());
    }
    let first_v2 = versions
        .iter()
        .position(|v| v == "v2")
        .context("v2 never ran")?;
    ensure!(
        first_v2 >= 2000,
        "v2 ran before it was installed (at {first_v2})"
    );
    ensure!(
        versions[..first_v2].iter().all(|v| v == "v1"),
        "events before the swap not all v1"
    );
    ensure!(
        versions[first_v2..].iter().all(|v| v == "v2"),
        "v1 ran again after the swap"
    );
    ensure!(agent.counter("WASM.r1.w", "ReloadCount")? == 1);
    ensure!(agent.counter("WASM.r1.w", "FaultCount")? == 0);
    ensure!(agent.counter("WASM.r1.w", "EventOutCount")? == total);
    ensure!(
        agent
            .log_text()
            .contains("Wasm guest reload failed; the running version stays.")
    );
    // Written in place (no rename) also reloads, once the writer has closed the file.
    std::fs::copy(&v1, &guest)?;
    wait_counter(&agent, "WASM.r1.w", "ReloadCount", 2)?;
    write(10)?;
    let got = wait_count(&out, total as usize + 10)?;
    ensure!(
        got[total as usize..].iter().all(|l| parse_line(l)
            .0
            .get("guest-version")
            .map(String::as_str)
            == Some("v1")),
        "after the in-place copy of v1: {:?}",
        &got[total as usize..]
    );
    Ok(())
}

#[test]
fn wrong_world_is_a_start_error_naming_the_guest() -> Result<()> {
    let wasm = guests::rust("header-router", None)?;
    let tmp = tempfile::tempdir()?;
    let conf = simple(
        &seq(10, "c1"),
        &wasm_interceptor(&wasm, &[]),
        &tmp.path().join("out"),
    );
    let conf_path = tmp.path().join("a.conf");
    std::fs::write(&conf_path, conf)?;
    // The metrics endpoint comes up before the pipeline is built, so the agent may get as far
    // as announcing it before it exits.
    if let Ok(mut agent) = Sluice::start_file(tmp.path(), "a", &conf_path, &[]) {
        let code = agent.wait(WAIT)?;
        ensure!(
            code.is_some_and(|c| c != 0),
            "the agent ran a router as an interceptor"
        );
    }
    let log = std::fs::read_to_string(tmp.path().join("a.log")).unwrap_or_default();
    ensure!(
        log.contains("r1.w") && log.contains("`interceptor` world"),
        "log:\n{log}"
    );
    Ok(())
}

#[test]
fn wasm_test_command_prints_verdicts() -> Result<()> {
    let wasm = guests::rust("drop-by-level", None)?;
    let tmp = tempfile::tempdir()?;
    let input = tmp.path().join("events.jsonl");
    std::fs::write(
        &input,
        "{\"headers\": {\"level\": \"debug\"}, \"body\": \"noisy\"}\n\"WARN disk\"\n{\"body\": \"plain\"}\n",
    )?;
    let wasm_s = wasm.display().to_string();
    let input_s = input.display().to_string();
    let (code, stdout, stderr) = run_sluice(&[
        "wasm",
        "test",
        &wasm_s,
        "--world",
        "interceptor",
        "--input",
        &input_s,
        "--config",
        "min-level=info",
    ])?;
    ensure!(code == 0, "exit {code}: {stderr}");
    let verdicts: Vec<String> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["verdict"].as_str().unwrap_or_default().to_string())
        .collect();
    ensure!(verdicts == ["drop", "keep", "keep"], "{stdout}");
    ensure!(
        stderr.contains("3 events: 2 kept/routed, 1 dropped"),
        "{stderr}"
    );
    Ok(())
}

/// `body-prefix` cuts what the guest sees, never what is delivered: the tagger's set-headers
/// verdicts (headers only) keep each event's whole body; a guest that replaces a cut event
/// whole is refused (bad return) instead of truncating it.
#[test]
fn body_prefix_cuts_what_the_guest_sees_not_what_is_delivered() -> Result<()> {
    let tagger = guests::rust("tagger", Some("v0"))?;
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let conf = simple(
        &seq(1000, "c1"),
        &wasm_interceptor(&tagger, &[("body-prefix", "1")]),
        &out,
    );
    let agent = Sluice::start(tmp.path(), "a", &conf, &[])?;
    let got = wait_count(&out, 1000)?;
    let mut bodies = BTreeSet::new();
    for line in &got {
        let (headers, body) = parse_line(line);
        ensure!(
            headers.get("guest-version").map(String::as_str) == Some("v0"),
            "{line}"
        );
        bodies.insert(body.parse::<u64>()?);
    }
    ensure!(bodies.len() == 1000 && bodies.iter().copied().eq(0..1000));
    ensure!(agent.counter("WASM.r1.w", "FaultCount")? == 0);

    // The probe mode replaces every event whole (`to_owned` + `replace`).
    let (agent, out, _tmp) = hostile("probe", 300, &[("body-prefix", "1"), ("on-error", "drop")])?;
    // Every batch of 100 holds bodies longer than one byte: all three are refused and dropped.
    wait_counter(&agent, "WASM.r1.w", "BatchDroppedCount", 3)?;
    wait_counter(&agent, "SOURCE.r1", "EventAcceptedCount", 300)?;
    ensure!(agent.counter("WASM.r1.w", "BadReturnCount")? == 3);
    ensure!(read_lines(&out).is_empty(), "a cut event was delivered");
    ensure!(agent.log_text().contains("cannot be replaced whole"));
    Ok(())
}

/// The tagger sets one header on events whose own headers differ in runs (a regex_extractor
/// before it copies each seq body's tens digit): the SDK answers "same headers" (verdict 5)
/// within a run and a new replacement where the input changes, and every delivered event has
/// its own header plus the tag, never a neighbour's.
#[test]
fn a_tag_keeps_each_events_own_headers_across_runs() -> Result<()> {
    let tagger = guests::rust("tagger", Some("v0"))?;
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let source = seq(2000, "c1").replace(
        "a1.sources.r1.interceptors = w\n",
        "a1.sources.r1.interceptors = d w\n\
         a1.sources.r1.interceptors.d.type = regex_extractor\n\
         a1.sources.r1.interceptors.d.regex = (\\\\d)\\\\d$\n\
         a1.sources.r1.interceptors.d.serializers = s\n\
         a1.sources.r1.interceptors.d.serializers.s.name = tens\n",
    );
    let conf = simple(&source, &wasm_interceptor(&tagger, &[]), &out);
    let agent = Sluice::start(tmp.path(), "a", &conf, &[])?;
    let got = wait_count(&out, 2000)?;
    let mut bodies = BTreeSet::new();
    for line in &got {
        let (headers, body) = parse_line(line);
        let n: u64 = body.parse()?;
        let want_tens = (n >= 10).then(|| ((n / 10) % 10).to_string());
        ensure!(
            headers.get("tens") == want_tens.as_ref()
                && headers.get("guest-version").map(String::as_str) == Some("v0")
                && headers.len() == 1 + usize::from(n >= 10),
            "{line}"
        );
        bodies.insert(n);
    }
    ensure!(bodies.len() == 2000 && bodies.iter().copied().eq(0..2000));
    ensure!(agent.counter("WASM.r1.w", "FaultCount")? == 0);
    ensure!(agent.counter("WASM.r1.w", "EventOutCount")? == 2000);
    Ok(())
}

/// An Avro source whose connection threads all call one guest: with `limits.instances = 3`
/// eight concurrent `sluice send` clients are served by up to three instances in parallel, each
/// with its own state (its own batch numbering); with `limits.instances = 1` by exactly one.
/// Nothing is lost or duplicated either way.
#[test]
fn concurrent_callers_get_their_own_instances_up_to_the_limit() -> Result<()> {
    let wasm = guests::rust("hostile", None)?;
    let tmp = tempfile::tempdir()?;
    const SENDERS: usize = 8;
    const PER_SENDER: usize = 1500;
    let mut inputs = Vec::new();
    for s in 0..SENDERS {
        let path = tmp.path().join(format!("in{s}.txt"));
        let body: String = (0..PER_SENDER).map(|i| format!("s{s}-{i}\n")).collect();
        std::fs::write(&path, body)?;
        inputs.push(path);
    }
    for limit in [3usize, 1] {
        let out = tmp.path().join(format!("out{limit}"));
        let port = sluice_integration::free_port()?;
        let source = format!(
            "a1.sources = r1\n\
             a1.sources.r1.type = avro\n\
             a1.sources.r1.bind = 127.0.0.1\n\
             a1.sources.r1.port = {port}\n\
             a1.sources.r1.channels = c1\n\
             a1.sources.r1.interceptors = w\n"
        );
        let limit_s = limit.to_string();
        let keys = [
            ("config.mode", "instance"),
            ("config.spin", "3000000"),
            ("limits.instances", limit_s.as_str()),
        ];
        let conf = simple(&source, &wasm_interceptor(&wasm, &keys), &out);
        let agent = Sluice::start(tmp.path(), &format!("a{limit}"), &conf, &[])?;
        // The metrics server comes up before the guest is compiled and the source listens.
        wait_for("the agent to start", WAIT, || {
            agent.log_text().contains("Agent started").then_some(())
        })?;
        let senders: Vec<_> = inputs
            .iter()
            .map(|input| {
                let input = input.clone();
                std::thread::spawn(move || sluice_integration::sluice_send(port, &input, &[]))
            })
            .collect();
        for s in senders {
            let (code, _o, err) = s
                .join()
                .map_err(|_| anyhow::anyhow!("a sender thread panicked"))??;
            ensure!(
                code == 0,
                "sluice send failed: {err}\nagent log:\n{}",
                agent.log_text()
            );
        }
        let lines = wait_count(&out, SENDERS * PER_SENDER)?;
        // Per instance: the batch numbers it stamped, and the events of each.
        let mut per_instance: BTreeMap<String, BTreeMap<u64, usize>> = BTreeMap::new();
        let mut bodies = BTreeSet::new();
        for line in &lines {
            let (h, body) = parse_line(line);
            let id = h
                .get("instance")
                .cloned()
                .context("an event without `instance`")?;
            let batch: u64 = h
                .get("instance-batch")
                .and_then(|b| b.parse().ok())
                .context("an event without `instance-batch`")?;
            *per_instance
                .entry(id)
                .or_default()
                .entry(batch)
                .or_default() += 1;
            bodies.insert(body);
        }
        ensure!(
            bodies.len() == SENDERS * PER_SENDER && lines.len() == bodies.len(),
            "{} lines, {} distinct bodies",
            lines.len(),
            bodies.len()
        );
        let gauge = agent.counter("WASM.r1.w", "InstanceCount")?;
        println!(
            "limits.instances = {limit}: {} instances served {} batches (InstanceCount {gauge}): {:?}",
            per_instance.len(),
            per_instance.values().map(BTreeMap::len).sum::<usize>(),
            per_instance.values().map(BTreeMap::len).collect::<Vec<_>>()
        );
        if limit == 1 {
            ensure!(per_instance.len() == 1, "{} instances", per_instance.len());
        } else {
            ensure!(
                (2..=limit).contains(&per_instance.len()),
                "{} instances served 8 concurrent senders with limits.instances = {limit}",
                per_instance.len()
            );
        }
        ensure!(gauge >= 1 && gauge <= limit as u64, "InstanceCount {gauge}");
        // Each instance counted only its own batches: 1, 2, ... with no gaps or repeats.
        for (id, batches) in &per_instance {
            let numbers: Vec<u64> = batches.keys().copied().collect();
            let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
            ensure!(
                numbers == expected,
                "instance {id} stamped batches {numbers:?}"
            );
        }
        ensure!(agent.counter("WASM.r1.w", "FaultCount")? == 0);
    }
    Ok(())
}

/// The on-disk cache of compiled guests: the first start compiles and writes a `.cwasm`, a
/// restart loads it without compiling, a corrupted file is refused by its checksum (the guest
/// is compiled again and the file rewritten), and the folder is kept under
/// `SLUICE_WASM_CACHE_MAX_BYTES` by deleting the least recently used files.
#[test]
fn restarts_load_compiled_guests_from_the_disk_cache() -> Result<()> {
    let wasm = guests::rust("drop-by-level", None)?;
    let tmp = tempfile::tempdir()?;
    let cache = tmp.path().join("cache");
    let cache_s = cache.display().to_string();
    let conf = simple(
        &seq(100, "c1"),
        &wasm_interceptor(&wasm, &[("reload", "false")]),
        &tmp.path().join("out"),
    );
    let env = [("SLUICE_WASM_CACHE_DIR", cache_s.as_str())];
    let cwasm = || -> Result<Vec<PathBuf>> {
        Ok(std::fs::read_dir(&cache)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
            .collect())
    };
    let start = |run: &str| -> Result<(u64, u64, u64)> {
        let mut a = Sluice::start_env(tmp.path(), run, &conf, &env)?;
        wait_counter(&a, "WASM.r1.w", "BatchCount", 1)?;
        if a.counter("WASM.r1.w", "BaselineCompileCount")? > 0 {
            // Baseline code serves at once; Cranelift's is compiled (and cached) behind it.
            wait_counter(&a, "WASM.r1.w", "CompileCount", 1)?;
        }
        let r = (
            a.counter("WASM.r1.w", "CompileCount")?,
            a.counter("WASM.r1.w", "DiskCacheHitCount")?,
            a.counter("WASM.r1.w", "LoadMicros")?,
        );
        a.signal("TERM")?;
        a.wait(Duration::from_secs(30))?;
        println!(
            "{run}: compiled {}, from the disk cache {}, load {} µs",
            r.0, r.1, r.2
        );
        Ok(r)
    };
    let (compiled, hits, _) = start("first")?;
    ensure!(
        compiled == 1 && hits == 0,
        "first start: {compiled} compiles, {hits} hits"
    );
    let files = cwasm()?;
    ensure!(files.len() == 1, "cache files: {files:?}");
    let (compiled, hits, _) = start("restart")?;
    ensure!(
        compiled == 0 && hits == 1,
        "restart: {compiled} compiles, {hits} hits"
    );
    // One flipped byte in the middle: the checksum refuses it.
    let mut bytes = std::fs::read(&files[0])?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&files[0], &bytes)?;
    let mut a = Sluice::start_env(tmp.path(), "corrupt", &conf, &env)?;
    wait_counter(&a, "WASM.r1.w", "BatchCount", 1)?;
    wait_counter(&a, "WASM.r1.w", "CompileCount", 1)?;
    ensure!(
        a.log_text().contains("fails its checksum"),
        "no warning for the corrupted file:\n{}",
        a.log_text()
    );
    a.signal("TERM")?;
    a.wait(Duration::from_secs(30))?;
    let (compiled, hits, _) = start("rewritten")?;
    ensure!(
        compiled == 0 && hits == 1,
        "after the rewrite: {compiled} compiles, {hits} hits"
    );
    // A limit below the one file's size: a stale file goes, the file just written stays.
    let stale = cache.join("0000000000000000-00.cwasm");
    std::fs::write(&stale, vec![0u8; 4096])?;
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .append(true)
        .open(&stale)?
        .set_modified(old)?;
    std::fs::remove_file(&files[0])?;
    let small = [
        ("SLUICE_WASM_CACHE_DIR", cache_s.as_str()),
        ("SLUICE_WASM_CACHE_MAX_BYTES", "1"),
    ];
    let mut a = Sluice::start_env(tmp.path(), "bounded", &conf, &small)?;
    wait_counter(&a, "WASM.r1.w", "BatchCount", 1)?;
    wait_counter(&a, "WASM.r1.w", "CompileCount", 1)?;
    a.signal("TERM")?;
    a.wait(Duration::from_secs(30))?;
    ensure!(!stale.exists(), "the least recently used file was kept");
    ensure!(cwasm()?.len() == 1, "cache files: {:?}", cwasm()?);
    Ok(())
}

/// (headers, body) of every line file_roll wrote into `dir`.
fn delivered(dir: &Path) -> Vec<(BTreeMap<String, String>, String)> {
    read_lines(dir).iter().map(|l| parse_line(l)).collect()
}

#[test]
fn dead_letters_take_rejected_and_unrouted_events_with_their_reasons() -> Result<()> {
    let validator = guests::rust("require-headers", None)?;
    let router = guests::rust("header-router", None)?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("logs"))?;
    // 400 lines with a tenant (initech is routed nowhere), 100 without one (rejected).
    let tenants = ["acme", "globex", "initech", "both"];
    let mut lines: Vec<String> = (0..400)
        .map(|i| format!("{} request {i}", tenants[i % 4]))
        .collect();
    lines.extend((0..100).map(|i| format!("- orphan {i}")));
    write_lines(&dir.join("logs/app.log"), &lines)?;
    let (d1, d2, dl) = (dir.join("d1"), dir.join("d2"), dir.join("dl"));
    let conf = format!(
        "{}a1.sources.r1.interceptors = x w\n{}\
         a1.sources.r1.selector.type = wasm\n\
         a1.sources.r1.selector.path = {}\n\
         a1.sources.r1.selector.config.route.acme = 0\n\
         a1.sources.r1.selector.config.route.globex = 1\n\
         a1.sources.r1.selector.config.route.both = 0 1\n\
         a1.sources.r1.selector.config.default =\n\
         a1.sources.r1.deadLetter.channel = dead\n\
         a1.channels = c1 c2 dead\n{}{}{}a1.sinks = k1 k2 k3\n{}{}{}",
        taildir(dir, "c1 c2", "tenant"),
        wasm_interceptor(&validator, &[("config.headers", "tenant")]),
        router.display(),
        memory("c1"),
        memory("c2"),
        memory("dead"),
        file_roll("k1", "c1", &d1),
        file_roll("k2", "c2", &d2),
        file_roll("k3", "dead", &dl)
    );
    let agent = Sluice::start(dir, "a", &conf, &[])?;
    wait_count(&dl, 200)?;
    wait_count(&d1, 200)?;
    wait_count(&d2, 200)?;
    std::thread::sleep(Duration::from_millis(300));
    let dead = delivered(&dl);
    let reasons: BTreeMap<(String, String), usize> =
        dead.iter().fold(BTreeMap::new(), |mut m, (h, _)| {
            let key = (
                h.get("deadletter.guest").cloned().unwrap_or_default(),
                h.get("deadletter.reason").cloned().unwrap_or_default(),
            );
            *m.entry(key).or_default() += 1;
            m
        });
    let want: BTreeMap<(String, String), usize> = [
        (("r1.w".into(), "missing header `tenant`".into()), 100),
        (("r1.selector".into(), "unrouted".into()), 100),
    ]
    .into();
    ensure!(
        reasons == want,
        "dead letters by guest and reason: {reasons:?}"
    );
    let bodies: BTreeSet<&str> = dead.iter().map(|(_, b)| b.as_str()).collect();
    let expected: BTreeSet<&str> = lines
        .iter()
        .filter(|l| l.starts_with("- ") || l.starts_with("initech "))
        .map(String::as_str)
        .collect();
    ensure!(
        bodies == expected,
        "the dead letters are the rejected and unrouted lines"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    ensure!(
        dead.iter().all(|(h, _)| h
            .get("deadletter.timestamp")
            .and_then(|t| t.parse::<u64>().ok())
            .is_some_and(|t| t <= now && now - t < 120_000)),
        "every dead letter says when"
    );
    // The routed events are as without dead letters.
    ensure!(read_lines(&d1).len() == 200 && read_lines(&d2).len() == 200);
    ensure!(agent.counter("SOURCE.r1", "EventDeadLetteredCount")? == 200);
    ensure!(agent.counter("SOURCE.r1", "InterceptorDroppedCount")? == 0);
    ensure!(agent.counter("WASM.r1.w", "EventRejectedCount")? == 100);
    ensure!(agent.counter("WASM.r1.w", "rejected")? == 100);
    ensure!(agent.counter("WASM.r1.selector", "EventRejectedCount")? == 100);
    Ok(())
}

#[test]
fn a_faulted_batch_goes_to_the_dead_letter_channel_with_the_fault() -> Result<()> {
    let wasm = guests::rust("hostile", None)?;
    let tmp = tempfile::tempdir()?;
    let (out, dl) = (tmp.path().join("out"), tmp.path().join("dl"));
    let conf = format!(
        "{}{}a1.sources.r1.deadLetter.channel = dead\n\
         a1.channels = c1 dead\n{}{}a1.sinks = k1 k2\n{}{}",
        seq(10_000, "c1"),
        wasm_interceptor(
            &wasm,
            &[("config.mode", "poison"), ("on-error", "dead-letter")]
        ),
        memory("c1"),
        memory("dead"),
        file_roll("k1", "c1", &out),
        file_roll("k2", "dead", &dl)
    );
    let mut agent = Sluice::start(tmp.path(), "a", &conf, &[])?;
    wait_counter(&agent, "SOURCE.r1", "EventAcceptedCount", 10_000)?;
    let got = wait_count(&out, 9000)?;
    let dead = wait_count(&dl, 1000)?;
    std::thread::sleep(Duration::from_millis(300));
    alive(&mut agent)?;
    // Each poisoned batch (the hundred events 500..599 of every thousand) went whole.
    let nums = |lines: &[String]| -> BTreeSet<u64> {
        lines
            .iter()
            .filter_map(|l| parse_line(l).1.parse().ok())
            .collect()
    };
    let poisoned: BTreeSet<u64> = (0..10_000u64).filter(|n| n % 1000 / 100 == 5).collect();
    ensure!(
        got.len() == 9000 && dead.len() == 1000,
        "{} + {}",
        got.len(),
        dead.len()
    );
    ensure!(
        nums(&dead) == poisoned,
        "the dead letters are the poisoned batches"
    );
    ensure!(nums(&got).is_disjoint(&poisoned));
    let reasons: BTreeSet<String> = dead
        .iter()
        .map(|l| {
            parse_line(l)
                .0
                .get("deadletter.reason")
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    ensure!(
        reasons
            .iter()
            .all(|r| r.starts_with("fault: ") && r.contains("trap")),
        "reasons: {reasons:?}"
    );
    ensure!(agent.counter("WASM.r1.w", "BatchDeadLetteredCount")? == 10);
    ensure!(agent.counter("WASM.r1.w", "TrapCount")? == 10);
    ensure!(agent.counter("SOURCE.r1", "EventDeadLetteredCount")? == 1000);
    Ok(())
}

#[test]
fn dead_letter_without_a_channel_is_a_config_error() -> Result<()> {
    let wasm = guests::rust("hostile", None)?;
    let tmp = tempfile::tempdir()?;
    let conf = simple(
        &seq(10, "c1"),
        &wasm_interceptor(&wasm, &[("on-error", "dead-letter")]),
        &tmp.path().join("out"),
    );
    let path = tmp.path().join("a.conf");
    std::fs::write(&path, &conf)?;
    let p = path.to_string_lossy().to_string();
    let (code, out, err) = run_sluice(&["check", "-n", "a1", "-f", &p])?;
    ensure!(code != 0, "check accepted it:\n{out}");
    ensure!(
        err.contains("a1.sources.r1.interceptors.w.on-error") && err.contains("deadLetter.channel"),
        "the error names the key and what is missing:\n{err}"
    );
    let bad = format!("{conf}a1.sources.r1.deadLetter.channel = nowhere\n");
    std::fs::write(&path, bad)?;
    let (code, _, err) = run_sluice(&["check", "-n", "a1", "-f", &p])?;
    ensure!(
        code != 0 && err.contains("a1.sources.r1.deadLetter.channel"),
        "{err}"
    );
    Ok(())
}

/// A guest in no cache serves baseline (Winch) code at once and swaps to Cranelift's between
/// two batches; a changed file does the same; every event is delivered exactly once.
#[test]
fn new_guests_serve_baseline_code_then_swap_to_cranelift() -> Result<()> {
    let v1 = guests::rust("tagger", Some("v1"))?;
    let v2 = guests::rust("tagger", Some("v2"))?;
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("tagger.wasm");
    guests::install(&v1, &path)?;
    let cache = tmp.path().join("cache").display().to_string();
    let out = tmp.path().join("out");
    let total = 1_000_000u64;
    let conf = simple(&seq(total, "c1"), &wasm_interceptor(&path, &[]), &out);
    let env = [("SLUICE_WASM_CACHE_DIR", cache.as_str())];
    let agent = Sluice::start_env(tmp.path(), "a", &conf, &env)?;
    let w = "WASM.r1.w";
    wait_counter(&agent, w, "BatchCount", 1)?;
    ensure!(
        agent.counter(w, "BaselineCompileCount")? == 1 && agent.counter(w, "CompileCount")? <= 1,
        "the first load is baseline code"
    );
    let baseline_us = agent.counter(w, "LoadMicros")?;
    wait_counter(&agent, w, "OptimizedSwapCount", 1)?;
    println!(
        "start: baseline load {baseline_us} µs, Cranelift ready {} ms later",
        agent.counter(w, "OptimizeMillis")?
    );
    guests::install(&v2, &path)?;
    wait_counter(&agent, w, "ReloadCount", 1)?;
    wait_counter(&agent, w, "OptimizedSwapCount", 2)?;
    ensure!(agent.counter(w, "BaselineCompileCount")? == 2);
    println!(
        "reload: baseline load {} µs, swap {} ms after the change, Cranelift ready {} ms later",
        agent.counter(w, "LoadMicros")?,
        agent.counter(w, "ReloadSwapMillis")?,
        agent.counter(w, "OptimizeMillis")?
    );
    wait_counter(&agent, "SINK.k1", "EventDrainSuccessCount", total)?;
    let lines = read_lines(&out);
    let nums: BTreeSet<u64> = lines
        .iter()
        .filter_map(|l| parse_line(l).1.parse().ok())
        .collect();
    ensure!(
        lines.len() as u64 == total && nums.len() as u64 == total,
        "{} lines, {} distinct of {total}",
        lines.len(),
        nums.len()
    );
    ensure!(agent.counter(w, "FaultCount")? == 0);
    Ok(())
}
