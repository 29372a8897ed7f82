//! Avro RPC between real sluice processes: sink → source delivery (plain and deflate),
//! `sluice send`, hostile input that must only close the offending connection, and the
//! source's bounds (memory, threads, connections, timeouts) measured on the running process.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use sluice_integration::{
    Sluice, free_port, read_lines, rss_kib, sluice_send, thread_count, wait_for,
};

const WAIT: Duration = Duration::from_secs(60);

/// Tests that hold hundreds of client sockets take ephemeral ports that `free_port` may have
/// just handed to another test's collector: they run alone.
static PORTS: RwLock<()> = RwLock::new(());

fn shared_ports() -> RwLockReadGuard<'static, ()> {
    PORTS.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive_ports() -> RwLockWriteGuard<'static, ()> {
    PORTS.write().unwrap_or_else(|e| e.into_inner())
}

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
    let _ports = shared_ports();
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

/// The sender keeps `max-in-flight` batches on the wire; the collector (a file channel, so what
/// it acknowledged survives) is killed with SIGKILL mid-stream and restarted. Batches in flight
/// when it died are rolled back and sent again: every event arrives (duplicates allowed).
#[test]
fn pipelined_batches_survive_a_collector_killed_mid_stream() -> Result<()> {
    let _ports = shared_ports();
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let port = free_port()?;
    let total = 40_000u64;
    let collector_conf = collector(port, &out, "none").replace(
        "a1.channels.c1.type = memory\n",
        &format!(
            "a1.channels.c1.type = file\na1.channels.c1.checkpointDir = {}\n\
             a1.channels.c1.dataDirs = {}\n",
            tmp.path().join("cp").display(),
            tmp.path().join("data").display()
        ),
    );
    let sender_conf = sender(port, total, "none") + "a1.sinks.k1.max-in-flight = 4\n";
    let mut c = Sluice::start(tmp.path(), "collector", &collector_conf, &[])?;
    let s = Sluice::start(tmp.path(), "sender", &sender_conf, &[])?;
    wait_for("a quarter of the events at the collector", WAIT, || {
        (c.counter("SOURCE.r1", "EventAcceptedCount").ok()? >= total / 4).then_some(())
    })?;
    c.kill9()?;
    let _c = Sluice::start(tmp.path(), "collector", &collector_conf, &[])?;
    let got = wait_for(
        &format!("all {total} events in {}", out.display()),
        WAIT,
        || {
            let set: BTreeSet<u64> = read_lines(&out)
                .iter()
                .filter_map(|l| l.parse().ok())
                .collect();
            (set.len() as u64 == total).then_some(set)
        },
    )?;
    ensure!(got.iter().copied().eq(0..total), "unexpected event numbers");
    ensure!(
        s.counter("SINK.k1", "ConnectionCreatedCount")? >= 2,
        "the sender reconnected after the kill"
    );
    Ok(())
}

#[test]
fn sink_retries_until_collector_appears() -> Result<()> {
    let _ports = shared_ports();
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
    let _ports = shared_ports();
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
    let (code, _o, err) = sluice_send(port, &input, &[])?;
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
    let _ports = shared_ports();
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
    let (code, _o, err) = sluice_send(port, &input, &[])?;
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
    let _ports = shared_ports();
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
    let (code, _o, _e) = sluice_send(port, &input, &[])?;
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
    let _ports = shared_ports();
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
    let _ports = shared_ports();
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
        let (code, _o, err) = sluice_send(port, &input, &[])?;
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

/// `sluice send` of the numbered lines `from..from + n`.
fn send_lines(dir: &Path, port: u16, from: u64, n: u64) -> Result<Duration> {
    let input = dir.join(format!("in-{from}.txt"));
    std::fs::write(
        &input,
        (from..from + n)
            .map(|i| format!("{i}\n"))
            .collect::<String>(),
    )?;
    let t = Instant::now();
    let (code, _o, err) = sluice_send(port, &input, &[])?;
    ensure!(code == 0, "sluice send failed: {err}");
    Ok(t.elapsed())
}

/// A frame header declaring one buffer of `len` bytes.
fn frame_header(len: i32) -> Vec<u8> {
    [1i32, 1, len]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

/// Connects with a bounded wait (a server that stopped accepting must not hang the test).
fn connect(port: u16) -> Result<TcpStream> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    Ok(TcpStream::connect_timeout(&addr, Duration::from_secs(5))?)
}

/// Waits until the server closed `s` (end of stream or reset); fails after `limit`.
fn wait_closed(s: &mut TcpStream, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut b = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        ensure!(!left.is_zero(), "connection still open after {limit:?}");
        s.set_read_timeout(Some(left))?;
        match s.read(&mut b) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => bail!("connection still open after {limit:?}: {e}"),
        }
    }
}

/// Samples the RSS of `pid` every 20 ms until dropped; `max()` is the largest sample.
struct RssSampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(0));
        let (s, m) = (stop.clone(), max.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Ok(kib) = rss_kib(pid) {
                    m.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self {
            stop,
            max,
            thread: Some(thread),
        }
    }

    fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const MIB: u64 = 1024;

/// Clients declaring 60 MB frames in 12-byte headers and stalling cost almost nothing; clients
/// that really send megabytes and stall take at most `max-buffered-bytes` together; valid
/// clients are served meanwhile, and every stalled client is closed after `read-timeout`.
#[test]
fn huge_declared_frames_and_stalled_clients_keep_memory_bounded() -> Result<()> {
    let _ports = exclusive_ports();
    const BUDGET_MIB: u64 = 64;
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let port = free_port()?;
    // The default max-message-bytes (64 MiB) admits the declared 60 MB frames.
    let conf = collector(port, &out, "none")
        .replace("a1.sources.r1.max-message-bytes = 1048576\n", "")
        + &format!(
            "a1.sources.r1.max-buffered-bytes = {}\na1.sources.r1.read-timeout = 4000\n",
            BUDGET_MIB << 20
        );
    let c = Sluice::start(tmp.path(), "collector", &conf, &[])?;
    let pid = c.pid();
    send_lines(tmp.path(), port, 0, 100)?;
    check_sequence(&out, 100)?;
    let (rss0, threads0) = (rss_kib(pid)?, thread_count(pid)?);
    let sampler = RssSampler::start(pid);

    // 50 clients each declare a 60 MB frame, then send nothing more.
    let mut stalled = Vec::new();
    for _ in 0..50 {
        let mut s = connect(port)?;
        s.write_all(&frame_header(60_000_000))?;
        stalled.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let served_in = send_lines(tmp.path(), port, 100, 100)?;
    check_sequence(&out, 200)?;
    let (rss1, threads1) = (sampler.max(), thread_count(pid)?);

    // 24 clients each send 4 MiB of a declared 60 MB frame (96 MiB in all, more than the
    // budget), then stall. The source stops reading them when the budget is used up.
    let heavy: Vec<_> = (0..24)
        .map(|_| {
            std::thread::spawn(move || -> Result<TcpStream> {
                let mut s = connect(port)?;
                s.set_write_timeout(Some(Duration::from_secs(2)))?;
                s.write_all(&frame_header(60_000_000))?;
                let chunk = vec![0x55u8; 64 * 1024];
                for _ in 0..64 {
                    if s.write_all(&chunk).is_err() {
                        break;
                    }
                }
                Ok(s)
            })
        })
        .collect();
    for h in heavy {
        stalled.push(
            h.join()
                .map_err(|_| anyhow::anyhow!("client thread panicked"))??,
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    // A valid client gets its turn at the latest when the stalled holders are closed.
    let served_heavy_in = send_lines(tmp.path(), port, 200, 100)?;
    check_sequence(&out, 300)?;
    let rss2 = sampler.max();
    drop(sampler);
    eprintln!(
        "RSS at rest {} MiB; 50 clients declaring 60 MB: max {} MiB (+{} KiB), threads {threads0} \
         -> {threads1}, valid client served in {served_in:?}; 24 clients sending 4 MiB each: max \
         {} MiB (+{} MiB), valid client served in {served_heavy_in:?}",
        rss0 / MIB,
        rss1 / MIB,
        rss1.saturating_sub(rss0),
        rss2 / MIB,
        rss2.saturating_sub(rss0) / MIB,
    );
    ensure!(
        rss1.saturating_sub(rss0) < 16 * MIB,
        "50 declared 60 MB frames took RSS from {rss0} to {rss1} KiB"
    );
    ensure!(
        threads1 <= threads0 + 2,
        "threads went from {threads0} to {threads1}"
    );
    // The bound docs/avro.md states: max-buffered-bytes + 16 MiB + the connections' state
    // (here 74 × under 40 KiB: 3 MiB) + with transparent huge pages up to 1 MiB per connection
    // receiving at once (24).
    ensure!(
        rss2.saturating_sub(rss0) < (BUDGET_MIB + 16 + 3 + 24) * MIB,
        "clients sending 96 MiB took RSS from {rss0} to {rss2} KiB (budget {BUDGET_MIB} MiB)"
    );
    let t = Instant::now();
    for s in &mut stalled {
        wait_closed(s, Duration::from_secs(20))?;
    }
    eprintln!("stalled clients closed {:?} later", t.elapsed());
    // The reason is logged right after the socket is closed.
    wait_for("the stall logged", WAIT, || {
        c.log_text().contains("stalled mid-request").then_some(())
    })?;
    Ok(())
}

/// With `threads = 2`, 300 clients that connect and send nothing take no thread and lock no
/// one out; they are closed after `idle-timeout`.
#[test]
fn idle_connections_take_no_thread_and_are_closed_after_idle_timeout() -> Result<()> {
    let _ports = exclusive_ports();
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let port = free_port()?;
    let conf = collector(port, &out, "none")
        + "a1.sources.r1.threads = 2\na1.sources.r1.idle-timeout = 3000\n";
    let c = Sluice::start(tmp.path(), "collector", &conf, &[])?;
    let pid = c.pid();
    send_lines(tmp.path(), port, 0, 10)?;
    check_sequence(&out, 10)?;
    let (rss0, threads0) = (rss_kib(pid)?, thread_count(pid)?);
    let opened = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(connect(port)?);
    }
    wait_for("300 open connections", WAIT, || {
        (c.counter("SOURCE.r1", "OpenConnectionCount").ok()? >= 300).then_some(())
    })?;
    let (rss1, threads1) = (rss_kib(pid)?, thread_count(pid)?);
    // More silent clients than threads: a real client is still served.
    let served_in = send_lines(tmp.path(), port, 10, 10)?;
    check_sequence(&out, 20)?;
    for s in &mut idle {
        wait_closed(s, Duration::from_secs(20))?;
    }
    let closed_after = opened.elapsed();
    wait_for("no open connection", WAIT, || {
        (c.counter("SOURCE.r1", "OpenConnectionCount").ok()? == 0).then_some(())
    })?;
    eprintln!(
        "300 idle connections: threads {threads0} -> {threads1}, RSS {} -> {} MiB ({} KiB per \
         connection), valid client served in {served_in:?}, all closed {closed_after:?} after \
         opening (idle-timeout 3 s)",
        rss0 / MIB,
        rss1 / MIB,
        rss1.saturating_sub(rss0) / 300
    );
    ensure!(
        threads1 <= threads0 + 2,
        "300 idle connections took threads from {threads0} to {threads1}"
    );
    ensure!(
        closed_after >= Duration::from_millis(2500),
        "idle connections closed after {closed_after:?}, before the 3 s idle-timeout"
    );
    Ok(())
}

/// `max-connections` caps open connections: the next client waits in the accept backlog and
/// is served once an idle connection was closed.
#[test]
fn max_connections_queues_clients_until_a_slot_frees() -> Result<()> {
    let _ports = shared_ports();
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let port = free_port()?;
    let conf = collector(port, &out, "none")
        + "a1.sources.r1.max-connections = 5\na1.sources.r1.idle-timeout = 2000\n";
    let c = Sluice::start(tmp.path(), "collector", &conf, &[])?;
    let idle: Vec<_> = (0..5).map(|_| connect(port)).collect::<Result<_>>()?;
    wait_for("5 open connections", WAIT, || {
        (c.counter("SOURCE.r1", "OpenConnectionCount").ok()? == 5).then_some(())
    })?;
    let dir = tmp.path().to_path_buf();
    let sender = std::thread::spawn(move || send_lines(&dir, port, 0, 10));
    let mut most = 0;
    while !sender.is_finished() {
        most = most.max(c.counter("SOURCE.r1", "OpenConnectionCount")?);
        std::thread::sleep(Duration::from_millis(50));
    }
    let waited = sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender panicked"))??;
    check_sequence(&out, 10)?;
    drop(idle);
    ensure!(
        most <= 5,
        "{most} connections open with max-connections = 5"
    );
    ensure!(
        waited >= Duration::from_millis(1000),
        "the sixth client was served after {waited:?}, before an idle connection was closed"
    );
    ensure!(
        c.log_text().contains("All connections in use"),
        "{}",
        c.log_text()
    );
    Ok(())
}

/// A TLS client that stops in the middle of its handshake is closed after `read-timeout`
/// (not the longer `idle-timeout`), while TLS clients keep being served.
#[test]
fn stalled_tls_handshake_is_closed_after_read_timeout() -> Result<()> {
    let _ports = shared_ports();
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let port = free_port()?;
    let (cert, key) = sluice_integration::tls::self_signed_pem(tmp.path())?;
    let conf = collector(port, &out, "none")
        + &format!(
            "a1.sources.r1.ssl = true\na1.sources.r1.ssl.certificate = {}\n\
             a1.sources.r1.ssl.key = {}\na1.sources.r1.read-timeout = 1500\n",
            cert.display(),
            key.display()
        );
    let c = Sluice::start(tmp.path(), "collector", &conf, &[])?;
    // A TLS record header announcing a 300-byte ClientHello, then nothing.
    let mut stalled = connect(port)?;
    stalled.write_all(&[0x16, 0x03, 0x01, 0x01, 0x2c])?;
    let t = Instant::now();
    let tls_sink = format!(
        "a1.sinks.k1.ssl = true\na1.sinks.k1.ssl.ca = {}\n",
        cert.display()
    );
    let _s = Sluice::start(
        tmp.path(),
        "sender",
        &(sender(port, 1_000, "none") + &tls_sink),
        &[],
    )?;
    check_sequence(&out, 1_000)?;
    wait_closed(&mut stalled, Duration::from_secs(20))?;
    let closed_after = t.elapsed();
    ensure!(
        closed_after >= Duration::from_millis(1000),
        "closed after {closed_after:?}, before the 1.5 s read-timeout"
    );
    wait_for("the stall logged", WAIT, || {
        c.log_text().contains("stalled mid-request").then_some(())
    })?;
    Ok(())
}
