//! The syslog sources on the real binary with real clients: util-linux `logger` (TCP and UDP,
//! RFC 3164 and RFC 5424, newline and octet-counting framing) and a real rsyslogd that the
//! test starts on its own config, forwarding to sluice (both installed by scripts/test).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use sluice_integration::{Sluice, free_port, read_lines, wait_for};

fn file_roll(out: &Path) -> String {
    format!(
        "\
a1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = 10000
a1.channels.c1.transactionCapacity = 1000
a1.sinks = k1
a1.sinks.k1.type = file_roll
a1.sinks.k1.channel = c1
a1.sinks.k1.sink.directory = {}
a1.sinks.k1.sink.rollInterval = 0
a1.sinks.k1.sink.serializer = header_and_text
",
        out.display()
    )
}

/// `{k=v, ...} body` into headers and body.
fn parse(line: &str) -> (BTreeMap<String, String>, String) {
    let mut h = BTreeMap::new();
    let Some((inside, body)) = line.strip_prefix('{').and_then(|r| r.split_once("} ")) else {
        return (h, line.to_string());
    };
    for kv in inside.split(", ") {
        if let Some((k, v)) = kv.split_once('=') {
            h.insert(k.to_string(), v.to_string());
        }
    }
    (h, body.to_string())
}

fn logger(args: &[&str], message: &str) -> Result<()> {
    let out = Command::new("logger")
        .args(args)
        .arg(message)
        .output()
        .context("logger not found: install bsdutils (util-linux)")?;
    if !out.status.success() {
        bail!(
            "logger {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The event whose body contains `needle`, waiting for it.
fn find(out: &Path, needle: &str, s: &Sluice) -> Result<(BTreeMap<String, String>, String)> {
    wait_for(
        &format!("an event with `{needle}`"),
        Duration::from_secs(30),
        || {
            read_lines(out)
                .iter()
                .map(|l| parse(l))
                .find(|(_, b)| b.contains(needle))
        },
    )
    .with_context(|| s.log_text())
}

#[test]
fn logger_over_tcp_udp_and_multiport() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    let (tcp, udp, m1, m2) = (free_port()?, free_port()?, free_port()?, free_port()?);
    let conf = format!(
        "\
a1.sources = r1 r2 r3
a1.sources.r1.type = syslogtcp
a1.sources.r1.host = 127.0.0.1
a1.sources.r1.port = {tcp}
a1.sources.r1.clientIPHeader = client
a1.sources.r1.channels = c1
a1.sources.r2.type = syslogudp
a1.sources.r2.host = 127.0.0.1
a1.sources.r2.port = {udp}
a1.sources.r2.keepFields = true
a1.sources.r2.channels = c1
a1.sources.r3.type = multiport_syslogtcp
a1.sources.r3.host = 127.0.0.1
a1.sources.r3.ports = {m1} {m2}
a1.sources.r3.portHeader = port
a1.sources.r3.eventSize = 40
a1.sources.r3.channels = c1
{}",
        file_roll(&out)
    );
    let s = Sluice::start(dir.path(), "syslog", &conf, &[])?;
    wait_for("the sources to listen", Duration::from_secs(30), || {
        (s.log_text().matches("source listening").count() >= 4).then_some(())
    })
    .with_context(|| s.log_text())?;
    let p = |n: u16| n.to_string();

    logger(
        &[
            "--tcp",
            "-n",
            "127.0.0.1",
            "-P",
            &p(tcp),
            "--rfc5424",
            "-p",
            "local4.notice",
            "-t",
            "app",
        ],
        "tcp rfc5424",
    )?;
    let (h, body) = find(&out, "tcp rfc5424", &s)?;
    ensure!(
        h.get("Facility").map(String::as_str) == Some("20")
            && h.get("Severity").map(String::as_str) == Some("5"),
        "{h:?}"
    );
    ensure!(
        h.get("version").map(String::as_str) == Some("1")
            && h.contains_key("host")
            && h.contains_key("timestamp"),
        "{h:?}"
    );
    ensure!(
        h.get("client").map(String::as_str) == Some("127.0.0.1"),
        "{h:?}"
    );
    ensure!(
        body.starts_with("app "),
        "the header fields left the body: {body:?}"
    );
    let ts: i64 = h["timestamp"].parse()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    ensure!(
        (now - ts).abs() < 60_000,
        "timestamp {ts} is not now ({now})"
    );

    logger(
        &[
            "--tcp",
            "-n",
            "127.0.0.1",
            "-P",
            &p(tcp),
            "--rfc3164",
            "-p",
            "user.err",
            "-t",
            "app",
        ],
        "tcp rfc3164",
    )?;
    let (h, body) = find(&out, "tcp rfc3164", &s)?;
    ensure!(
        h.get("Facility").map(String::as_str) == Some("1")
            && h.get("Severity").map(String::as_str) == Some("3"),
        "{h:?}"
    );
    ensure!(
        h.contains_key("host") && h.contains_key("timestamp") && !body.starts_with('<'),
        "{h:?} {body:?}"
    );

    logger(
        &[
            "--tcp",
            "--octet-count",
            "-n",
            "127.0.0.1",
            "-P",
            &p(tcp),
            "--rfc5424",
        ],
        "octet counted",
    )?;
    let (h, _) = find(&out, "octet counted", &s)?;
    ensure!(!h.contains_key("flume.syslog.status"), "{h:?}");

    logger(
        &[
            "--udp",
            "-n",
            "127.0.0.1",
            "-P",
            &p(udp),
            "--rfc3164",
            "-p",
            "mail.info",
        ],
        "over udp",
    )?;
    let (h, body) = find(&out, "over udp", &s)?;
    ensure!(
        h.get("Facility").map(String::as_str) == Some("2") && body.starts_with("<22>"),
        "keepFields = true keeps the whole message: {h:?} {body:?}"
    );

    logger(
        &["--tcp", "-n", "127.0.0.1", "-P", &p(m2), "--rfc3164"],
        "second port",
    )?;
    let (h, _) = find(&out, "second port", &s)?;
    ensure!(h.get("port") == Some(&m2.to_string()), "{h:?}");
    // Over eventSize (40): Incomplete.
    logger(
        &["--tcp", "-n", "127.0.0.1", "-P", &p(m1), "--rfc3164"],
        &"long ".repeat(20),
    )?;
    wait_for("an Incomplete event", Duration::from_secs(30), || {
        read_lines(&out).iter().map(|l| parse(l)).find(|(h, _)| {
            h.get("flume.syslog.status").map(String::as_str) == Some("Incomplete")
                && h.get("port") == Some(&m1.to_string())
        })
    })?;
    Ok(())
}

struct Rsyslogd(Child);

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts rsyslogd on its own config: UDP in on a free port, forwarded to sluice's syslogtcp
/// port with `forward` (extra `omfwd` parameters) after `global` (extra `global()`
/// parameters); sends a probe until it arrives in `out`. Returns rsyslogd and its UDP port.
fn rsyslog_relay(
    dir: &Path,
    s: &Sluice,
    out: &Path,
    sluice_port: u16,
    global: &str,
    forward: &str,
) -> Result<(Rsyslogd, u16)> {
    let rs_port = free_port()?;
    let work = dir.join("rsyslog");
    std::fs::create_dir_all(&work)?;
    let rs_conf = work.join("rsyslog.conf");
    std::fs::write(
        &rs_conf,
        format!(
            "global(workDirectory=\"{w}\" {global})\n\
             module(load=\"imudp\")\n\
             input(type=\"imudp\" address=\"127.0.0.1\" port=\"{rs_port}\")\n\
             action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{sluice_port}\" protocol=\"tcp\" \
             TCP_Framing=\"octet-counted\" {forward})\n",
            w = work.display()
        ),
    )?;
    let child = Command::new("rsyslogd")
        .arg("-n")
        .arg("-f")
        .arg(&rs_conf)
        .arg("-i")
        .arg(work.join("rsyslogd.pid"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context(
            "rsyslogd not found: install rsyslog (apt-get install -y rsyslog; scripts/test does)",
        )?;
    let mut rs = Rsyslogd(child);
    std::thread::sleep(Duration::from_millis(500));
    if let Some(status) = rs.0.try_wait()? {
        let mut err = String::new();
        if let Some(mut e) = rs.0.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        bail!("rsyslogd exited ({status}): {err}");
    }
    // rsyslogd may take a moment to open its input: resend until the first one arrives.
    wait_for("rsyslog to forward", Duration::from_secs(30), || {
        logger(
            &[
                "--udp",
                "-n",
                "127.0.0.1",
                "-P",
                &rs_port.to_string(),
                "--rfc3164",
                "-t",
                "probe",
            ],
            "probe",
        )
        .ok()?;
        std::thread::sleep(Duration::from_millis(200));
        read_lines(out)
            .iter()
            .any(|l| l.contains("probe"))
            .then_some(())
    })
    .with_context(|| s.log_text())?;
    Ok((rs, rs_port))
}

/// Sends 20 messages through rsyslog and checks they arrive parsed.
fn relay_twenty(s: &Sluice, out: &Path, rs_port: u16) -> Result<()> {
    for i in 0..20 {
        logger(
            &[
                "--udp",
                "-n",
                "127.0.0.1",
                "-P",
                &rs_port.to_string(),
                "--rfc3164",
                "-p",
                "daemon.warning",
                "-t",
                "relay",
            ],
            &format!("relayed {i}"),
        )?;
    }
    let lines = wait_for("20 relayed messages", Duration::from_secs(30), || {
        let got: Vec<(BTreeMap<String, String>, String)> = read_lines(out)
            .iter()
            .map(|l| parse(l))
            .filter(|(_, b)| b.contains("relayed "))
            .collect();
        (got.len() >= 20).then_some(got)
    })
    .with_context(|| s.log_text())?;
    for (h, b) in &lines {
        ensure!(
            h.get("Facility").map(String::as_str) == Some("3")
                && h.get("Severity").map(String::as_str) == Some("4"),
            "{h:?} {b}"
        );
        ensure!(
            h.contains_key("host") && h.contains_key("timestamp"),
            "{h:?}"
        );
    }
    Ok(())
}

#[test]
fn rsyslog_forwards_to_sluice() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    let sluice_port = free_port()?;
    let conf = format!(
        "a1.sources = r1\na1.sources.r1.type = syslogtcp\na1.sources.r1.host = 127.0.0.1\n\
         a1.sources.r1.port = {sluice_port}\na1.sources.r1.channels = c1\n{}",
        file_roll(&out)
    );
    let s = Sluice::start(dir.path(), "rsyslog", &conf, &[])?;
    wait_for("the source to listen", Duration::from_secs(30), || {
        s.log_text().contains("source listening").then_some(())
    })?;
    let (rs, rs_port) = rsyslog_relay(dir.path(), &s, &out, sluice_port, "", "")?;
    relay_twenty(&s, &out, rs_port)?;
    drop(rs);
    Ok(())
}

/// rsyslog's GnuTLS driver (rsyslog-gnutls, installed by scripts/test) forwarding to a
/// syslogtcp source with `ssl = true`, verifying sluice's certificate against a test CA.
#[test]
fn rsyslog_forwards_over_tls() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    let (ca, cert, key) = sluice_integration::tls::ca_signed_pem(dir.path())?;
    let sluice_port = free_port()?;
    let conf = format!(
        "a1.sources = r1\na1.sources.r1.type = syslogtcp\na1.sources.r1.host = 127.0.0.1\n\
         a1.sources.r1.port = {sluice_port}\na1.sources.r1.channels = c1\n\
         a1.sources.r1.ssl = true\na1.sources.r1.ssl.certificate = {}\n\
         a1.sources.r1.ssl.key = {}\n{}",
        cert.display(),
        key.display(),
        file_roll(&out)
    );
    let s = Sluice::start(dir.path(), "rsyslog-tls", &conf, &[])?;
    wait_for("the source to listen", Duration::from_secs(30), || {
        s.log_text().contains("source listening").then_some(())
    })?;
    let (rs, rs_port) = rsyslog_relay(
        dir.path(),
        &s,
        &out,
        sluice_port,
        &format!("DefaultNetstreamDriverCAFile=\"{}\"", ca.display()),
        "StreamDriver=\"gtls\" StreamDriverMode=\"1\" StreamDriverAuthMode=\"x509/name\" \
         StreamDriverPermittedPeers=\"localhost\"",
    )?;
    relay_twenty(&s, &out, rs_port)?;
    drop(rs);
    // A client speaking plain TCP to the TLS port is closed; nothing of it arrives.
    let before = read_lines(&out).len();
    logger(
        &[
            "--tcp",
            "-n",
            "127.0.0.1",
            "-P",
            &sluice_port.to_string(),
            "--rfc3164",
            "-t",
            "plain",
        ],
        "plain text to a tls port",
    )
    .ok();
    std::thread::sleep(Duration::from_millis(500));
    ensure!(read_lines(&out).len() == before);
    ensure!(!read_lines(&out).iter().any(|l| l.contains("plain text")));
    Ok(())
}
