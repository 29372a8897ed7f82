//! The Apache Flume 1.11.0 fixture runs the real Flume: seq -> memory -> null moves events.

use std::time::Duration;

use anyhow::Result;
use sluice_integration::flume::Flume;
use sluice_integration::wait_for;

const CONF: &str = "\
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = seq
a1.sources.r1.batchSize = 100
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = 10000
a1.channels.c1.transactionCapacity = 1000
a1.sinks.k1.type = null
a1.sinks.k1.batchSize = 100
a1.sinks.k1.channel = c1
";

#[test]
fn flume_runs_seq_memory_null() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let flume = Flume::start(dir.path(), CONF, "a1")?;
    assert!(flume.pid() > 0);

    // Flume 1.11's NullSink registers no SinkCounter, so the sink's drain shows up as the
    // channel's EventTakeSuccessCount (takes committed by the sink).
    let drained = |f: &Flume| f.counter("CHANNEL.c1", "EventTakeSuccessCount").ok();
    let first = wait_for(
        "Flume's sink to drain events",
        Duration::from_secs(30),
        || drained(&flume).filter(|&n| n > 0),
    )?;
    let later = wait_for("the drained count to grow", Duration::from_secs(30), || {
        drained(&flume).filter(|&n| n > first)
    })?;
    assert!(later > first);

    let m = flume.metrics()?;
    assert_eq!(m["CHANNEL.c1"]["Type"], "CHANNEL", "{m}");
    assert_eq!(m["CHANNEL.c1"]["ChannelCapacity"], "10000", "{m}");
    assert!(
        flume.counter("SOURCE.r1", "EventAcceptedCount")? >= later,
        "{m}"
    );
    assert!(
        flume.log_text().contains("Starting Sink k1"),
        "log4j2 log:\n{}",
        flume.log_tail(40)
    );
    Ok(())
}
