//! Wire compatibility with real Apache Flume 1.11.0, both directions, with and without deflate:
//! every event arrives, with its headers (including non-ASCII values) intact.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, ensure};
use sluice_integration::flume::Flume;
use sluice_integration::{Sluice, free_port, read_lines, wait_for};

const TOTAL: u64 = 5_000;
const WAIT: Duration = Duration::from_secs(90);

/// A seq source tagging events with `origin`, feeding an Avro sink.
fn avro_sender(origin: &str, port: u16, compression: &str) -> String {
    format!(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = seq\n\
         a1.sources.r1.totalEvents = {TOTAL}\n\
         a1.sources.r1.batchSize = 100\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.interceptors = i1\n\
         a1.sources.r1.interceptors.i1.type = static\n\
         a1.sources.r1.interceptors.i1.key = origin\n\
         a1.sources.r1.interceptors.i1.value = {origin}\n\
         a1.channels.c1.type = memory\n\
         a1.channels.c1.capacity = 10000\n\
         a1.channels.c1.transactionCapacity = 1000\n\
         a1.sinks.k1.type = avro\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.hostname = 127.0.0.1\n\
         a1.sinks.k1.port = {port}\n\
         a1.sinks.k1.batch-size = 100\n\
         a1.sinks.k1.compression-type = {compression}\n"
    )
}

/// An Avro source feeding file_roll with Flume's header_and_text serializer.
fn avro_receiver(port: u16, out: &Path, compression: &str) -> String {
    format!(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = avro\n\
         a1.sources.r1.bind = 127.0.0.1\n\
         a1.sources.r1.port = {port}\n\
         a1.sources.r1.compression-type = {compression}\n\
         a1.sources.r1.channels = c1\n\
         a1.channels.c1.type = memory\n\
         a1.channels.c1.capacity = 10000\n\
         a1.channels.c1.transactionCapacity = 1000\n\
         a1.sinks.k1.type = file_roll\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.sink.directory = {}\n\
         a1.sinks.k1.sink.rollInterval = 0\n\
         a1.sinks.k1.sink.serializer = header_and_text\n",
        out.display()
    )
}

/// Waits for every line `{origin=<origin>} <n>` for n in 0..TOTAL.
fn expect_all(out: &Path, origin: &str) -> Result<()> {
    let lines = wait_for(
        &format!("{TOTAL} events in {}", out.display()),
        WAIT,
        || {
            let l = read_lines(out);
            (l.len() as u64 >= TOTAL).then_some(l)
        },
    )?;
    let prefix = format!("{{origin={origin}}} ");
    let mut seen = BTreeSet::new();
    for l in &lines {
        let Some(n) = l.strip_prefix(&prefix).and_then(|n| n.parse::<u64>().ok()) else {
            anyhow::bail!("unexpected line {l:?} (wanted the prefix {prefix:?})");
        };
        seen.insert(n);
    }
    ensure!(
        seen.iter().copied().eq(0..TOTAL),
        "missing events: {} distinct",
        seen.len()
    );
    Ok(())
}

#[test]
fn flume_avro_sink_to_sluice_avro_source() -> Result<()> {
    for compression in ["none", "deflate"] {
        let tmp = tempfile::tempdir()?;
        let out = tmp.path().join("out");
        let port = free_port()?;
        let _sluice = Sluice::start(
            tmp.path(),
            "sluice",
            &avro_receiver(port, &out, compression),
            &[],
        )?;
        // `\u00fc` keeps the file ASCII for Java's properties reader; both sides unescape it.
        let flume = Flume::start(
            tmp.path(),
            &avro_sender("flume-\\u00fcml", port, compression),
            "a1",
        )?;
        let r = expect_all(&out, "flume-üml");
        ensure!(
            r.is_ok(),
            "compression {compression}: {r:?}\nFlume log:\n{}",
            flume.log_tail(40)
        );
    }
    Ok(())
}

#[test]
fn sluice_avro_sink_to_flume_avro_source() -> Result<()> {
    for compression in ["none", "deflate"] {
        let tmp = tempfile::tempdir()?;
        let out = tmp.path().join("out");
        std::fs::create_dir_all(&out)?;
        let port = free_port()?;
        let flume = Flume::start(tmp.path(), &avro_receiver(port, &out, compression), "a1")?;
        let sluice = Sluice::start(
            tmp.path(),
            "sluice",
            &avro_sender("sluice-\\u00e9t\\u00e9", port, compression),
            &[],
        )?;
        let r = expect_all(&out, "sluice-été");
        ensure!(
            r.is_ok(),
            "compression {compression}: {r:?}\nsluice log:\n{}\nFlume log:\n{}",
            sluice.log_text(),
            flume.log_tail(40)
        );
    }
    Ok(())
}

#[test]
fn tls_both_ways_with_flume() -> Result<()> {
    // Flume's AvroSink (trust-all-certs) → sluice's AvroSource with PEM files.
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let port = free_port()?;
    let (cert, key) = sluice_integration::tls::self_signed_pem(tmp.path())?;
    let receiver = avro_receiver(port, &out, "none")
        + &format!(
            "a1.sources.r1.ssl = true\na1.sources.r1.ssl.certificate = {}\na1.sources.r1.ssl.key = {}\n",
            cert.display(),
            key.display()
        );
    let _sluice = Sluice::start(tmp.path(), "sluice", &receiver, &[])?;
    let sender = avro_sender("flume-tls", port, "none")
        + "a1.sinks.k1.ssl = true\na1.sinks.k1.trust-all-certs = true\n";
    let flume = Flume::start(tmp.path(), &sender, "a1")?;
    let r = expect_all(&out, "flume-tls");
    ensure!(r.is_ok(), "{r:?}\nFlume log:\n{}", flume.log_tail(40));
    drop(flume);

    // sluice's AvroSink (ssl.ca) → Flume's AvroSource with a PKCS12 keystore.
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out)?;
    let port = free_port()?;
    let (keystore, ca) = sluice_integration::tls::keytool_keystore(tmp.path())?;
    let receiver = avro_receiver(port, &out, "none")
        + &format!(
            "a1.sources.r1.ssl = true\na1.sources.r1.keystore = {}\n\
             a1.sources.r1.keystore-password = changeit\na1.sources.r1.keystore-type = PKCS12\n",
            keystore.display()
        );
    let flume = Flume::start(tmp.path(), &receiver, "a1")?;
    let sender = avro_sender("sluice-tls", port, "none")
        + &format!(
            "a1.sinks.k1.ssl = true\na1.sinks.k1.ssl.ca = {}\n",
            ca.display()
        );
    let sluice = Sluice::start(tmp.path(), "sluice", &sender, &[])?;
    let r = expect_all(&out, "sluice-tls");
    ensure!(
        r.is_ok(),
        "{r:?}\nsluice log:\n{}\nFlume log:\n{}",
        sluice.log_text(),
        flume.log_tail(40)
    );
    Ok(())
}
