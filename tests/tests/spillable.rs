//! The spillable memory channel (`SPILLABLEMEMORY`) on the real binary: what spilled to the
//! overflow survives SIGKILL (only the memory part is lost, as Flume documents), a graceful
//! stop moves the memory part to disk and loses nothing, and events leave in order.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use sluice_integration::{Sluice, read_lines, wait_for};

fn channel(dir: &Path, memory: usize) -> String {
    format!(
        "\
a1.channels = c1
a1.channels.c1.type = SPILLABLEMEMORY
a1.channels.c1.memoryCapacity = {memory}
a1.channels.c1.overflowCapacity = 1000000
a1.channels.c1.overflowTimeout = 0
a1.channels.c1.transactionCapacity = 100
a1.channels.c1.checkpointDir = {}
a1.channels.c1.dataDirs = {}
a1.channels.c1.minimumRequiredSpace = 1048576
",
        dir.join("checkpoint").display(),
        dir.join("data").display()
    )
}

fn source(n: usize) -> String {
    format!(
        "\
a1.sources = r1
a1.sources.r1.type = seq
a1.sources.r1.totalEvents = {n}
a1.sources.r1.batchSize = 100
a1.sources.r1.channels = c1
"
    )
}

fn sink(out: &Path) -> String {
    format!(
        "\
a1.sinks = k1
a1.sinks.k1.type = file_roll
a1.sinks.k1.channel = c1
a1.sinks.k1.sink.directory = {}
a1.sinks.k1.sink.rollInterval = 0
a1.sinks.k1.sink.batchSize = 100
",
        out.display()
    )
}

fn put_all(s: &Sluice, n: usize) -> Result<()> {
    wait_for("every put committed", Duration::from_secs(60), || {
        (s.counter("CHANNEL.c1", "EventPutSuccessCount").ok()? >= n as u64).then_some(())
    })
    .with_context(|| s.log_text())?;
    Ok(())
}

/// Events past the memory part spill; SIGKILL loses the memory part only, and the overflow is
/// delivered after the restart, in order.
#[test]
fn sigkill_loses_at_most_the_memory_part() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let chan = dir.path().join("chan");
    let (n, memory) = (5000, 300);
    let mut s = Sluice::start(
        dir.path(),
        "fill",
        &format!("{}{}", source(n), channel(&chan, memory)),
        &[],
    )?;
    put_all(&s, n)?;
    let spilled = s.counter("CHANNEL.c1", "SpilledEventCount")?;
    ensure!(
        spilled == (n - memory) as u64,
        "{spilled} events spilled, expected {}",
        n - memory
    );
    s.kill9()?;

    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    let d = Sluice::start(
        dir.path(),
        "drain",
        &format!("{}{}", channel(&chan, memory), sink(&out)),
        &[],
    )?;
    let lines = wait_for("the overflow delivered", Duration::from_secs(60), || {
        let l = read_lines(&out);
        (l.len() >= n - memory).then_some(l)
    })
    .with_context(|| d.log_text())?;
    std::thread::sleep(Duration::from_millis(500));
    let lines = if read_lines(&out).len() > lines.len() {
        read_lines(&out)
    } else {
        lines
    };
    let expected: Vec<String> = (memory..n).map(|i| i.to_string()).collect();
    ensure!(
        lines == expected,
        "after SIGKILL the overflow ({} events) arrives in order and only it: got {} lines, \
         first {:?}",
        expected.len(),
        lines.len(),
        lines.first()
    );
    eprintln!(
        "spillable: {n} put, {spilled} spilled, SIGKILL lost the {memory} in memory, {} delivered",
        lines.len()
    );
    Ok(())
}

/// A graceful stop moves the memory part into the overflow: nothing is lost, and what was
/// in memory and what had spilled both arrive.
#[test]
fn graceful_stop_loses_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let chan = dir.path().join("chan");
    let (n, memory) = (2000, 1500);
    let mut s = Sluice::start(
        dir.path(),
        "fill",
        &format!("{}{}", source(n), channel(&chan, memory)),
        &[],
    )?;
    put_all(&s, n)?;
    s.signal("TERM")?;
    ensure!(
        s.wait(Duration::from_secs(30))?.is_some(),
        "the agent stopped"
    );
    ensure!(
        s.log_text()
            .contains("Moved the memory part into the overflow"),
        "memory part moved on close:\n{}",
        s.log_text()
    );

    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    let d = Sluice::start(
        dir.path(),
        "drain",
        &format!("{}{}", channel(&chan, memory), sink(&out)),
        &[],
    )?;
    let lines = wait_for("every event delivered", Duration::from_secs(60), || {
        let l = read_lines(&out);
        (l.len() >= n).then_some(l)
    })
    .with_context(|| d.log_text())?;
    let mut got: Vec<u64> = lines.iter().filter_map(|l| l.parse().ok()).collect();
    got.sort_unstable();
    got.dedup();
    ensure!(got.len() == n, "{} distinct of {n}", got.len());
    Ok(())
}
