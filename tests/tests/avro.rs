//! Avro RPC between real sluice processes: sink → source delivery (plain and deflate),
//! `sluice send`, and hostile input that must only close the offending connection.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, ensure};
use sluice_integration::{Sluice, free_port, read_lines, run_sluice, wait_for};

const WAIT: Duration = Duration::from_secs(60);

fn collector(port: u16, out: &Path, compression: &str) -> String {
    format!(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = avro\n\
         a1.sources.r1.bind = 127.0.0.1\n\
         a1.sources.r1.port = {port}\n\
         a1.sources.r1.compression-type = {compression}\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.max-message-bytes = 1048576\n\
         a1.channels.c1.type = memory\n\
         a1.channels.c1.capacity = 100000\n\
         a1.channels.c1.transactionCapacity = 1000\n\
         a1.sinks.k1.type = file_roll\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.sink.directory = {}\n\
         a1.sinks.k1.sink.rollInterval = 0\n\
         a1.sinks.k1.sink.batchSize = 1000\n",
        out.display()
    )
}

fn sender(port: u16, total: u64, compression: &str) -> String {
    format!(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = seq\n\
         a1.sources.r1.batchSize = 100\n\
         a1.sources.r1.totalEvents = {total}\n\
         a1.sources.r1.channels = c1\n\
         a1.channels.c1.type = memory\n\
         a1.channels.c1.capacity = 10000\n\
         a1.channels.c1.transactionCapacity = 500\n\
         a1.sinks.k1.type = avro\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.hostname = 127.0.0.1\n\
         a1.sinks.k1.port = {port}\n\
         a1.sinks.k1.batch-size = 500\n\
         a1.sinks.k1.compression-type = {compression}\n\
         a1.sinks.k1.connect-timeout = 2000\n\
         a1.sinks.k1.request-timeout = 5000\n"
    )
}

fn check_sequence(out: &Path, total: u64) -> Result<()> {
    let lines = wait_for(
        &format!("{total} events in {}", out.display()),
        WAIT,
        || {
            let l = read_lines(out);
            (l.len() as u64 >= total).then_some(l)
        },
    )?;
    let set: BTreeSet<u64> = lines.iter().filter_map(|l| l.parse().ok()).collect();
    ensure!(
        set.len() as u64 == total && set.iter().copied().eq(0..total),
        "missing events"
    );
    Ok(())
}

#[test]
fn sluice_to_sluice_plain_and_deflate() -> Result<()> {
    for compression in ["none", "deflate"] {
        let tmp = tempfile::tempdir()?;
        let out = tmp.path().join("out");
        let port = free_port()?;
        let _c = Sluice::start(
            tmp.path(),
            "collector",
            &collector(port, &out, compression),
            &[],
        )?;
        let s = Sluice::start(
            tmp.path(),
            "sender",
            &sender(port, 20_000, compression),
            &[],
        )?;
        check_sequence(&out, 20_000)?;
        let created = s.counter("SINK.k1", "ConnectionCreatedCount")?;
        ensure!(
            created >= 1,
            "compression {compression}: no connection counted"
        );
    }
    Ok(())
}

#[test]
fn sink_retries_until_collector_appears() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let port = free_port()?;
    let s = Sluice::start(tmp.path(), "sender", &sender(port, 3_000, "none"), &[])?;
    wait_for(
        "connection failures while the collector is down",
        WAIT,
        || (s.counter("SINK.k1", "ConnectionFailedCount").ok()? > 0).then_some(()),
    )?;
    let _c = Sluice::start(tmp.path(), "collector", &collector(port, &out, "none"), &[])?;
    check_sequence(&out, 3_000)
}

#[test]
fn send_command_delivers_file_lines_with_headers() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let port = free_port()?;
    let conf = collector(port, &out, "none").replace(
        "a1.sinks.k1.type = file_roll",
        "a1.sinks.k1.type = file_roll\na1.sinks.k1.sink.serializer = TEXT",
    );
    let _c = Sluice::start(tmp.path(), "collector", &conf, &[])?;
    let input = tmp.path().join("input.txt");
    let body: String = (0..1234).map(|i| format!("{i}\n")).collect();
    std::fs::write(&input, body)?;
    let (code, _o, err) = run_sluice(&[
        "send",
        "-H",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-F",
        &input.display().to_string(),
    ])?;
    ensure!(code == 0, "{err}");
    ensure!(err.contains("1234 events sent"), "{err}");
    check_sequence(&out, 1234)
}

fn garbage_conn(port: u16, bytes: &[u8]) -> Result<bool> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(bytes)?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut buf = Vec::new();
    // The server must close the connection (EOF or reset), not hang.
    let closed = match s.read_to_end(&mut buf) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    Ok(closed)
}

/// Avro `long` (zig-zag varint).
fn zigzag(n: i64) -> Vec<u8> {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    let mut out = Vec::new();
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
    out
}

/// A valid handshake (announcing a protocol text) + metadata + `appendBatch`, followed by
/// `tail` as the parameters.
fn append_batch_request(tail: &[u8]) -> Vec<u8> {
    let proto = br#"{"protocol":"AvroSourceProtocol","messages":{"appendBatch":{}}}"#;
    let mut p = vec![0u8; 16]; // client hash
    p.extend(zigzag(1)); // clientProtocol: string branch
    p.extend(zigzag(proto.len() as i64));
    p.extend_from_slice(proto);
    p.extend([0u8; 16]); // server hash
    p.extend(zigzag(0)); // meta: null
    p.extend(zigzag(0)); // call metadata: empty map
    p.extend(zigzag(11));
    p.extend_from_slice(b"appendBatch");
    p.extend_from_slice(tail);
    let mut frame = Vec::new();
    for v in [1i32, 1, p.len() as i32] {
        frame.extend_from_slice(&v.to_be_bytes());
    }
    frame.extend(p);
    frame
}

#[test]
fn hostile_input_closes_only_that_connection() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let port = free_port()?;
    let c = Sluice::start(tmp.path(), "collector", &collector(port, &out, "none"), &[])?;
    let be = |v: &[i32]| v.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("absurd buffer count", be(&[1, i32::MAX])),
        ("absurd buffer length", be(&[1, 1, 0x7fff_fff0])),
        ("negative length", be(&[1, 1, -3])),
        (
            "truncated frame",
            [be(&[1, 1, 100]), b"short".to_vec()].concat(),
        ),
        ("bad handshake", [be(&[1, 1, 8]), vec![0xff; 8]].concat()),
        (
            "event block of 2^40 items",
            append_batch_request(&zigzag(1 << 40)),
        ),
        (
            "body claiming 1 TiB",
            append_batch_request(&[zigzag(1), zigzag(0), zigzag(1 << 40)].concat()),
        ),
    ];
    for (what, bytes) in &cases {
        ensure!(garbage_conn(port, bytes)?, "{what}: connection not closed");
    }
    // The source still serves well-behaved clients.
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, "0\n1\n2\n")?;
    let (code, _o, err) = run_sluice(&[
        "send",
        "-H",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-F",
        &input.display().to_string(),
    ])?;
    ensure!(code == 0, "{err}");
    check_sequence(&out, 3)?;
    let log = c.log_text();
    ensure!(
        log.contains("Closing Avro connection"),
        "no reason logged:\n{log}"
    );
    ensure!(
        log.contains("buffer count"),
        "absurd count not named:\n{log}"
    );
    Ok(())
}

#[test]
fn sluice_to_sluice_over_tls() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let port = free_port()?;
    let (cert, key) = sluice_integration::tls::self_signed_pem(tmp.path())?;
    let tls_source = format!(
        "a1.sources.r1.ssl = true\na1.sources.r1.ssl.certificate = {}\na1.sources.r1.ssl.key = {}\n",
        cert.display(),
        key.display()
    );
    let c = Sluice::start(
        tmp.path(),
        "collector",
        &(collector(port, &out, "none") + &tls_source),
        &[],
    )?;
    let tls_sink = format!(
        "a1.sinks.k1.ssl = true\na1.sinks.k1.ssl.ca = {}\n",
        cert.display()
    );
    let _s = Sluice::start(
        tmp.path(),
        "sender",
        &(sender(port, 5_000, "none") + &tls_sink),
        &[],
    )?;
    check_sequence(&out, 5_000)?;

    // A plain-text client cannot talk to the TLS source; the source says why and carries on.
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, "x\n")?;
    let (code, _o, _e) = run_sluice(&[
        "send",
        "-H",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-F",
        &input.display().to_string(),
    ])?;
    ensure!(code != 0, "plain-text send to a TLS source must fail");
    ensure!(
        c.log_text().contains("Closing Avro connection"),
        "{}",
        c.log_text()
    );
    Ok(())
}

#[test]
fn many_concurrent_clients() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let port = free_port()?;
    let _c = Sluice::start(tmp.path(), "collector", &collector(port, &out, "none"), &[])?;
    let bin = sluice_integration::sluice_bin()?;
    let clients: u64 = 16;
    let per: u64 = 500;
    let mut children = Vec::new();
    for c in 0..clients {
        let input = tmp.path().join(format!("in{c}.txt"));
        std::fs::write(
            &input,
            (0..per)
                .map(|i| format!("{}\n", c * per + i))
                .collect::<String>(),
        )?;
        children.push(
            std::process::Command::new(&bin)
                .args([
                    "send",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-b",
                    "50",
                    "-F",
                ])
                .arg(&input)
                .output(),
        );
    }
    for (i, out) in children.into_iter().enumerate() {
        let out = out?;
        ensure!(
            out.status.success(),
            "client {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    check_sequence(&out, clients * per)
}

#[test]
fn ip_filter_rules() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, "0\n")?;
    for (rules, allowed) in [
        ("deny:ip:127.0.0.1,allow:ip:*", false),
        ("allow:ip:127.*,deny:ip:*", true),
    ] {
        let out = tmp.path().join(format!("out-{allowed}"));
        let port = free_port()?;
        let conf = collector(port, &out, "none")
            + &format!("a1.sources.r1.ipFilter = true\na1.sources.r1.ipFilterRules = {rules}\n");
        let c = Sluice::start(tmp.path(), &format!("c-{allowed}"), &conf, &[])?;
        let (code, _o, err) = run_sluice(&[
            "send",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-F",
            &input.display().to_string(),
        ])?;
        ensure!((code == 0) == allowed, "rules {rules}: exit {code}: {err}");
        if allowed {
            check_sequence(&out, 1)?;
        } else {
            ensure!(
                c.log_text().contains("refused by ipFilterRules"),
                "{}",
                c.log_text()
            );
        }
    }
    Ok(())
}
