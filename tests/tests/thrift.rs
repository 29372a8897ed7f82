//! The thrift source and sink against real Apache Flume 1.11.0 (its ThriftSink, ThriftSource
//! and the flume-ng-sdk thrift `RpcClient`), in the compact and the binary protocol, plain and
//! TLS; hostile clients; a full channel answered `FAILED` without losing what was committed.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use sluice_integration::flume::Flume;
use sluice_integration::flume_client::thrift_send;
use sluice_integration::{Sluice, free_port, read_lines, wait_for};

const TOTAL: u64 = 2_000;
const WAIT: Duration = Duration::from_secs(90);
const PROTOCOLS: [&str; 2] = ["compact", "binary"];

/// A seq source whose events get the headers `origin` and `tier`, feeding a thrift sink.
fn thrift_sender(origin: &str, port: u16, protocol: &str) -> String {
    format!(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = seq\n\
         a1.sources.r1.totalEvents = {TOTAL}\n\
         a1.sources.r1.batchSize = 100\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.interceptors = i1 i2\n\
         a1.sources.r1.interceptors.i1.type = static\n\
         a1.sources.r1.interceptors.i1.key = origin\n\
         a1.sources.r1.interceptors.i1.value = {origin}\n\
         a1.sources.r1.interceptors.i2.type = static\n\
         a1.sources.r1.interceptors.i2.key = tier\n\
         a1.sources.r1.interceptors.i2.value = edge 1\n\
         a1.channels.c1.type = memory\n\
         a1.channels.c1.capacity = 10000\n\
         a1.channels.c1.transactionCapacity = 1000\n\
         a1.sinks.k1.type = thrift\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.hostname = 127.0.0.1\n\
         a1.sinks.k1.port = {port}\n\
         a1.sinks.k1.batch-size = 100\n\
         a1.sinks.k1.protocol = {protocol}\n"
    )
}

/// A thrift source feeding file_roll with Flume's header_and_text serializer.
fn thrift_receiver(port: u16, out: &Path, protocol: &str) -> String {
    format!(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = thrift\n\
         a1.sources.r1.bind = 127.0.0.1\n\
         a1.sources.r1.port = {port}\n\
         a1.sources.r1.protocol = {protocol}\n\
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

/// A header_and_text line `{k1=v1, k2=v2} body`: the headers (in whatever order the writer
/// printed them) and the body.
fn parse_line(line: &str) -> Option<(BTreeSet<String>, &str)> {
    let rest = line.strip_prefix('{')?;
    let (headers, body) = rest.split_once("} ")?;
    let set = if headers.is_empty() {
        BTreeSet::new()
    } else {
        headers.split(", ").map(str::to_string).collect()
    };
    Some((set, body))
}

/// Waits for `n` lines in `out` and checks each has exactly `headers(body)` and the numbers
/// (the body's last word) are `range`.
fn expect_lines(
    out: &Path,
    range: std::ops::Range<u64>,
    headers: impl Fn(u64) -> Vec<String>,
    body_prefix: &str,
) -> Result<()> {
    let n = range.end - range.start;
    let lines = wait_for(&format!("{n} events in {}", out.display()), WAIT, || {
        let l = read_lines(out);
        (l.len() as u64 >= n).then_some(l)
    })?;
    let mut seen = BTreeSet::new();
    for l in &lines {
        let Some((got, body)) = parse_line(l) else {
            bail!("unexpected line {l:?}");
        };
        let Some(i) = body
            .strip_prefix(body_prefix)
            .and_then(|n| n.parse::<u64>().ok())
        else {
            bail!("unexpected body in {l:?} (wanted {body_prefix:?} and a number)");
        };
        let want: BTreeSet<String> = headers(i).into_iter().collect();
        ensure!(got == want, "line {l:?}: headers {got:?}, wanted {want:?}");
        seen.insert(i);
    }
    ensure!(
        lines.len() as u64 == n && seen.iter().copied().eq(range.clone()),
        "wanted events {range:?} once each; got {} lines, {} distinct",
        lines.len(),
        seen.len()
    );
    Ok(())
}

fn origin_and_tier(origin: &str) -> impl Fn(u64) -> Vec<String> + '_ {
    move |_| vec![format!("origin={origin}"), "tier=edge 1".to_string()]
}

#[test]
fn flume_thrift_sink_to_sluice_thrift_source() -> Result<()> {
    for protocol in PROTOCOLS {
        let tmp = tempfile::tempdir()?;
        let out = tmp.path().join("out");
        let port = free_port()?;
        let sluice = Sluice::start(
            tmp.path(),
            "sluice",
            &thrift_receiver(port, &out, protocol),
            &[],
        )?;
        // `\u00fc` keeps the file ASCII for Java's properties reader; both sides unescape it.
        let flume = Flume::start(
            tmp.path(),
            &thrift_sender("flume-\\u00fcml", port, protocol),
            "a1",
        )?;
        let r = expect_lines(&out, 0..TOTAL, origin_and_tier("flume-üml"), "");
        ensure!(
            r.is_ok(),
            "protocol {protocol}: {r:?}\nsluice log:\n{}\nFlume log:\n{}",
            sluice.log_text(),
            flume.log_tail(40)
        );
        ensure!(sluice.counter("SOURCE.r1", "EventAcceptedCount")? == TOTAL);
    }
    Ok(())
}

#[test]
fn sluice_thrift_sink_to_flume_thrift_source() -> Result<()> {
    for protocol in PROTOCOLS {
        let tmp = tempfile::tempdir()?;
        let out = tmp.path().join("out");
        std::fs::create_dir_all(&out)?;
        let port = free_port()?;
        let flume = Flume::start(tmp.path(), &thrift_receiver(port, &out, protocol), "a1")?;
        let sluice = Sluice::start(
            tmp.path(),
            "sluice",
            &thrift_sender("sluice-\\u00e9t\\u00e9", port, protocol),
            &[],
        )?;
        let r = expect_lines(&out, 0..TOTAL, origin_and_tier("sluice-été"), "");
        ensure!(
            r.is_ok(),
            "protocol {protocol}: {r:?}\nsluice log:\n{}\nFlume log:\n{}",
            sluice.log_text(),
            flume.log_tail(40)
        );
    }
    Ok(())
}

fn sdk_headers(i: u64) -> Vec<String> {
    vec![
        "origin=sdk-üé".to_string(),
        format!("n={i}"),
        "empty=".to_string(),
    ]
}

#[test]
fn flume_sdk_thrift_client_append_and_append_batch() -> Result<()> {
    for protocol in PROTOCOLS {
        let tmp = tempfile::tempdir()?;
        let out = tmp.path().join("out");
        let port = free_port()?;
        let sluice = Sluice::start(
            tmp.path(),
            "sluice",
            &thrift_receiver(port, &out, protocol),
            &[],
        )?;
        let single = thrift_send(port, protocol, false, 0, 20)?;
        ensure!(
            single.ok,
            "append, {protocol}: {}\n{}",
            single.output,
            sluice.log_text()
        );
        let batch = thrift_send(port, protocol, true, 20, 500)?;
        ensure!(
            batch.ok,
            "appendBatch, {protocol}: {}\n{}",
            batch.output,
            sluice.log_text()
        );
        let r = expect_lines(&out, 0..520, sdk_headers, "sdk ");
        ensure!(
            r.is_ok(),
            "{protocol}: {r:?}\nsluice log:\n{}",
            sluice.log_text()
        );
        ensure!(sluice.counter("SOURCE.r1", "AppendReceivedCount")? == 20);
        ensure!(sluice.counter("SOURCE.r1", "AppendAcceptedCount")? == 20);
        ensure!(sluice.counter("SOURCE.r1", "EventAcceptedCount")? == 520);
    }
    Ok(())
}

// A compact-protocol client written here from the spec, independent of the agent's codec.

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    varint(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// The start of a compact `appendBatch` call: header, then the args' list field header.
fn batch_head(seq: u32) -> Vec<u8> {
    let mut m = vec![0x82, 0x21];
    varint(&mut m, u64::from(seq));
    string(&mut m, b"appendBatch");
    m.push(0x19);
    m
}

/// A framed compact `appendBatch` of events with header `k` and the given bodies.
fn compact_batch(seq: u32, bodies: &[String]) -> Vec<u8> {
    let mut m = batch_head(seq);
    if bodies.len() < 15 {
        m.push(((bodies.len() as u8) << 4) | 12);
    } else {
        m.push(0xfc);
        varint(&mut m, bodies.len() as u64);
    }
    for b in bodies {
        m.extend_from_slice(&[0x1b, 0x01, 0x88]);
        string(&mut m, b"k");
        string(&mut m, b"raw");
        m.push(0x18);
        string(&mut m, b.as_bytes());
        m.push(0);
    }
    m.push(0);
    framed(m)
}

fn framed(m: Vec<u8>) -> Vec<u8> {
    let mut f = (m.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(&m);
    f
}

/// Reads one compact reply frame and returns its status.
fn read_status(s: &mut TcpStream, seq: u32) -> Result<i64> {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).context("reply length")?;
    let len = u32::from_be_bytes(head) as usize;
    ensure!(len < 1024, "reply of {len} bytes");
    let mut r = vec![0u8; len];
    s.read_exact(&mut r).context("reply")?;
    let mut want = vec![0x82, 0x41];
    varint(&mut want, u64::from(seq));
    string(&mut want, b"appendBatch");
    want.extend_from_slice(&[0x05, 0x00]);
    ensure!(r.starts_with(&want), "reply {r:02x?}");
    let rest = &r[want.len()..];
    ensure!(rest.len() == 2 && rest[1] == 0, "reply {r:02x?}");
    let z = u64::from(rest[0]);
    Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
}

fn connect(port: u16) -> Result<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    Ok(s)
}

/// Waits until the server closes `s` (EOF or reset); how long that took.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Result<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(limit))?;
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) | Err(_) if start.elapsed() < limit => Ok(start.elapsed()),
        Ok(0) | Err(_) => bail!("not closed within {limit:?}"),
        Ok(n) => bail!("the server answered {n} bytes instead of closing"),
    }
}

#[test]
fn hostile_clients_are_closed_and_others_served() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let port = free_port()?;
    let conf = thrift_receiver(port, &out, "compact")
        + "a1.sources.r1.read-timeout = 2000\na1.sources.r1.max-message-bytes = 1048576\n";
    let sluice = Sluice::start(tmp.path(), "sluice", &conf, &[])?;
    let mut good = wait_for("the thrift source", Duration::from_secs(20), || {
        connect(port).ok()
    })?;
    good.write_all(&compact_batch(1, &["before".into()]))?;
    ensure!(read_status(&mut good, 1)? == 0, "OK before");

    // Slow: a frame header declaring 1000 bytes, 10 of them, then nothing.
    let mut slow = connect(port)?;
    slow.write_all(&1000u32.to_be_bytes())?;
    slow.write_all(&[0x82; 10])?;
    let slow_since = Instant::now();

    // A declared frame of 2 GiB: refused before any of it is read.
    let mut huge = connect(port)?;
    huge.write_all(&0x7fff_ffffu32.to_be_bytes())?;
    closed_within(&mut huge, Duration::from_secs(5)).context("huge frame")?;

    // A list declaring 2^31 - 1 events inside a 20-byte frame.
    let mut list = connect(port)?;
    let mut m = batch_head(1);
    m.push(0xfc);
    varint(&mut m, 0x7fff_ffff);
    list.write_all(&framed(m))?;
    closed_within(&mut list, Duration::from_secs(5)).context("huge list")?;

    // A header map declaring 2^31 - 1 pairs.
    let mut map = connect(port)?;
    let mut m = batch_head(1);
    m.extend_from_slice(&[0x1c, 0x1b]);
    varint(&mut m, 0x7fff_ffff);
    m.push(0x88);
    map.write_all(&framed(m))?;
    closed_within(&mut map, Duration::from_secs(5)).context("huge map")?;

    // Garbage, and a binary-protocol message on the compact source.
    let mut garbage = connect(port)?;
    garbage.write_all(&framed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()))?;
    closed_within(&mut garbage, Duration::from_secs(5)).context("garbage")?;
    let mut binary = connect(port)?;
    binary.write_all(&framed(vec![0x80, 0x01, 0x00, 0x01, 0, 0, 0, 0]))?;
    closed_within(&mut binary, Duration::from_secs(5)).context("binary")?;

    // The good connection is still served while the slow one stalls.
    ensure!(
        slow_since.elapsed() < Duration::from_millis(1800),
        "test too slow"
    );
    good.write_all(&compact_batch(2, &["during".into()]))?;
    ensure!(read_status(&mut good, 2)? == 0, "OK during");
    let took = closed_within(&mut slow, Duration::from_secs(10)).context("slow client")?;
    ensure!(
        slow_since.elapsed() >= Duration::from_millis(1500),
        "the slow client was closed after {took:?}, before read-timeout"
    );
    let bodies: Vec<String> = (0..40).map(|i| format!("after {i}")).collect();
    good.write_all(&compact_batch(3, &bodies))?;
    ensure!(read_status(&mut good, 3)? == 0, "OK after");

    let lines = wait_for("42 events", WAIT, || {
        let l = read_lines(&out);
        (l.len() >= 42).then_some(l)
    })?;
    ensure!(lines.len() == 42, "{lines:?}");
    ensure!(lines.iter().all(|l| l.starts_with("{k=raw} ")), "{lines:?}");
    let log = sluice.log_text();
    for reason in [
        "max-message-bytes = 1048576",
        "declares size 2147483647",
        "stalled mid-request",
        "set protocol = binary",
    ] {
        ensure!(log.contains(reason), "no {reason:?} in the log:\n{log}");
    }
    Ok(())
}

#[test]
fn a_full_channel_answers_failed_and_loses_nothing_committed() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let (port, next_hop) = (free_port()?, free_port()?);
    // The sink's next hop is down: the channel fills up and stays full.
    let conf = format!(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = thrift\n\
         a1.sources.r1.bind = 127.0.0.1\n\
         a1.sources.r1.port = {port}\n\
         a1.sources.r1.channels = c1\n\
         a1.channels.c1.type = memory\n\
         a1.channels.c1.capacity = 10\n\
         a1.channels.c1.transactionCapacity = 10\n\
         a1.channels.c1.keep-alive = 1\n\
         a1.sinks.k1.type = thrift\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.hostname = 127.0.0.1\n\
         a1.sinks.k1.port = {next_hop}\n\
         a1.sinks.k1.batch-size = 10\n\
         a1.sinks.k1.connect-timeout = 1000\n"
    );
    let sluice = Sluice::start(tmp.path(), "sluice", &conf, &[])?;
    let first = thrift_send(port, "compact", true, 0, 10)?;
    ensure!(
        first.ok,
        "first batch: {}\n{}",
        first.output,
        sluice.log_text()
    );
    let refused = thrift_send(port, "compact", true, 10, 5)?;
    ensure!(
        !refused.ok && refused.output.contains("FAILED"),
        "Flume's client should report FAILED: {}",
        refused.output
    );
    let mut raw = connect(port)?;
    raw.write_all(&compact_batch(1, &["refused".into()]))?;
    ensure!(read_status(&mut raw, 1)? == 1, "FAILED to the raw client");
    ensure!(sluice.counter("SOURCE.r1", "ChannelWriteFail")? >= 2);
    ensure!(sluice.counter("SINK.k1", "ConnectionFailedCount")? >= 1);

    // The next hop comes up: exactly the committed batch arrives.
    let receiver = thrift_receiver(next_hop, &out, "compact");
    let next = Sluice::start(tmp.path(), "next", &receiver, &[])?;
    let r = expect_lines(&out, 0..10, sdk_headers, "sdk ");
    ensure!(r.is_ok(), "{r:?}\nsender log:\n{}", sluice.log_text());
    std::thread::sleep(Duration::from_secs(2));
    ensure!(read_lines(&out).len() == 10, "{:?}", read_lines(&out));
    ensure!(next.counter("SOURCE.r1", "EventAcceptedCount")? == 10);
    Ok(())
}

/// A PKCS12 truststore (password `changeit`) holding `cert`, for Flume's ThriftSink.
fn truststore(dir: &Path, cert: &Path) -> Result<std::path::PathBuf> {
    let ts = dir.join("truststore.p12");
    let out = Command::new("keytool")
        .args([
            "-importcert",
            "-noprompt",
            "-alias",
            "sluice",
            "-storetype",
            "PKCS12",
        ])
        .args(["-storepass", "changeit", "-keystore"])
        .arg(&ts)
        .arg("-file")
        .arg(cert)
        .output()
        .context("keytool not found: install a JDK (apt-get install -y openjdk-17-jdk-headless)")?;
    ensure!(
        out.status.success(),
        "keytool -importcert failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(ts)
}

#[test]
fn tls_both_ways_with_flume() -> Result<()> {
    // Flume's ThriftSink (a truststore) → sluice's ThriftSource with PEM files.
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let port = free_port()?;
    let (cert, key) = sluice_integration::tls::self_signed_pem(tmp.path())?;
    let receiver = thrift_receiver(port, &out, "compact")
        + &format!(
            "a1.sources.r1.ssl = true\na1.sources.r1.ssl.certificate = {}\na1.sources.r1.ssl.key = {}\n",
            cert.display(),
            key.display()
        );
    let sluice = Sluice::start(tmp.path(), "sluice", &receiver, &[])?;
    let ts = truststore(tmp.path(), &cert)?;
    let sender = thrift_sender("flume-tls", port, "compact")
        + &format!(
            "a1.sinks.k1.ssl = true\na1.sinks.k1.truststore = {}\n\
             a1.sinks.k1.truststore-password = changeit\na1.sinks.k1.truststore-type = PKCS12\n",
            ts.display()
        );
    let flume = Flume::start(tmp.path(), &sender, "a1")?;
    let r = expect_lines(&out, 0..TOTAL, origin_and_tier("flume-tls"), "");
    ensure!(
        r.is_ok(),
        "{r:?}\nsluice log:\n{}\nFlume log:\n{}",
        sluice.log_text(),
        flume.log_tail(40)
    );
    drop(flume);

    // sluice's ThriftSink (ssl.ca) → Flume's ThriftSource with a PKCS12 keystore.
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out)?;
    let port = free_port()?;
    let (keystore, ca) = sluice_integration::tls::keytool_keystore(tmp.path())?;
    let receiver = thrift_receiver(port, &out, "binary")
        + &format!(
            "a1.sources.r1.ssl = true\na1.sources.r1.keystore = {}\n\
             a1.sources.r1.keystore-password = changeit\na1.sources.r1.keystore-type = PKCS12\n",
            keystore.display()
        );
    let flume = Flume::start(tmp.path(), &receiver, "a1")?;
    let sender = thrift_sender("sluice-tls", port, "binary")
        + &format!(
            "a1.sinks.k1.ssl = true\na1.sinks.k1.ssl.ca = {}\n",
            ca.display()
        );
    let sluice = Sluice::start(tmp.path(), "sluice", &sender, &[])?;
    let r = expect_lines(&out, 0..TOTAL, origin_and_tier("sluice-tls"), "");
    ensure!(
        r.is_ok(),
        "{r:?}\nsluice log:\n{}\nFlume log:\n{}",
        sluice.log_text(),
        flume.log_tail(40)
    );
    Ok(())
}
