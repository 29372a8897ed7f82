//! The `http` source on the real binary with curl as the client: Flume's JSONHandler and
//! BLOBHandler, Flume's status codes (200 after the commit, 400 bad body, 503 channel full),
//! bounded requests (413), slow clients, many concurrent requests, TLS.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use sluice_integration::tls::self_signed_pem;
use sluice_integration::{Sluice, free_port, read_lines, wait_for, wait_lines};

fn agent(source: &str, out: &Path, channel: &str) -> String {
    format!(
        "\
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = http
a1.sources.r1.bind = 127.0.0.1
a1.sources.r1.channels = c1
{source}
a1.channels.c1.type = memory
{channel}
a1.sinks.k1.type = file_roll
a1.sinks.k1.channel = c1
a1.sinks.k1.sink.directory = {}
a1.sinks.k1.sink.rollInterval = 0
a1.sinks.k1.sink.serializer = header_and_text
",
        out.display()
    )
}

/// Runs curl with `args`; (HTTP status code, response body).
fn curl(args: &[&str]) -> Result<(u16, String)> {
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "30", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .context("curl not found: install curl (apt-get install -y curl; scripts/test does)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    let code = code.trim().parse().with_context(|| {
        format!(
            "curl {args:?}: no status code in {text:?}; stderr {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((code, body.to_string()))
}

fn start(dir: &Path, name: &str, conf: &str) -> Result<Sluice> {
    let s = Sluice::start(dir, name, conf, &[])?;
    wait_for("the http source to listen", Duration::from_secs(30), || {
        s.log_text().contains("HTTP source listening").then_some(())
    })
    .with_context(|| s.log_text())?;
    Ok(s)
}

#[test]
fn json_handler_with_curl_commits_then_answers_200() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    let port = free_port()?;
    let s = start(
        dir.path(),
        "json",
        &agent(&format!("a1.sources.r1.port = {port}"), &out, ""),
    )?;
    let url = format!("http://127.0.0.1:{port}/");
    let body = r#"[{"headers":{"type":"a","n":7},"body":"first event"},{"headers":{},"body":"second ünïcode"}]"#;
    let (code, _) = curl(&[
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        body,
        &url,
    ])?;
    ensure!(code == 200, "status {code}");
    let lines = wait_lines(&out, 2, Duration::from_secs(30))?;
    ensure!(
        lines
            .iter()
            .any(|l| l.contains("type=a") && l.contains("n=7") && l.ends_with("first event")),
        "{lines:?}"
    );
    ensure!(
        lines.iter().any(|l| l.ends_with("second ünïcode")),
        "{lines:?}"
    );
    // GET is handled like POST, as in Flume.
    let (code, _) = curl(&[
        "-X",
        "GET",
        "--data-binary",
        r#"[{"body":"via get"}]"#,
        &url,
    ])?;
    ensure!(code == 200, "GET status {code}");
    wait_lines(&out, 3, Duration::from_secs(30))?;
    // Malformed bodies: 400 with Flume's message; nothing committed.
    for bad in [
        r#"[{"body":"x""#,
        r#"{"body":"x"}"#,
        r#"[{"body":{"a":1}}]"#,
    ] {
        let (code, msg) = curl(&["--data-binary", bad, &url])?;
        ensure!(code == 400, "{bad}: status {code}");
        ensure!(msg.contains("Bad request from client"), "{bad}: {msg}");
    }
    // An unsupported charset is Flume's 500.
    let (code, _) = curl(&[
        "-H",
        "Content-Type: application/json; charset=ISO-8859-1",
        "--data-binary",
        "[]",
        &url,
    ])?;
    ensure!(code == 500, "charset status {code}");
    // TRACE and OPTIONS are forbidden, other methods not allowed.
    ensure!(curl(&["-X", "TRACE", &url])?.0 == 403);
    ensure!(curl(&["-X", "OPTIONS", &url])?.0 == 403);
    ensure!(curl(&["-X", "PUT", "--data-binary", "[]", &url])?.0 == 405);
    std::thread::sleep(Duration::from_millis(500));
    ensure!(read_lines(&out).len() == 3, "{:?}", read_lines(&out));
    ensure!(s.counter("SOURCE.r1", "EventAcceptedCount")? == 3);
    ensure!(s.counter("SOURCE.r1", "EventReadFail")? >= 4);
    Ok(())
}

#[test]
fn full_channel_is_503_and_nothing_committed_is_lost() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    // No sink drains the channel: 10 events fit.
    let conf = format!(
        "\
a1.sources = r1
a1.channels = c1
a1.sources.r1.type = http
a1.sources.r1.bind = 127.0.0.1
a1.sources.r1.port = {port}
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = 10
a1.channels.c1.transactionCapacity = 10
a1.channels.c1.keep-alive = 0
"
    );
    let s = start(dir.path(), "full", &conf)?;
    let url = format!("http://127.0.0.1:{port}/");
    let mut codes = Vec::new();
    for i in 0..4 {
        let body = format!(
            "[{}]",
            (0..4)
                .map(|j| format!(r#"{{"body":"e{i}-{j}"}}"#))
                .collect::<Vec<_>>()
                .join(",")
        );
        let (code, msg) = curl(&["--data-binary", &body, &url])?;
        if code == 503 {
            ensure!(msg.contains("Channel might be full"), "{msg}");
        }
        codes.push(code);
    }
    // 2 batches of 4 fit in 10, the third and fourth do not.
    ensure!(codes == [200, 200, 503, 503], "{codes:?}");
    ensure!(s.counter("SOURCE.r1", "EventAcceptedCount")? == 8);
    ensure!(s.counter("SOURCE.r1", "ChannelWriteFail")? == 2);
    ensure!(s.counter("CHANNEL.c1", "ChannelSize")? == 8);
    Ok(())
}

#[test]
fn oversize_slow_and_concurrent_clients() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    let port = free_port()?;
    let s = start(
        dir.path(),
        "hostile",
        &agent(
            &format!(
                "a1.sources.r1.port = {port}
a1.sources.r1.handler = org.apache.flume.source.http.BLOBHandler
a1.sources.r1.handler.mandatoryParameters = i
a1.sources.r1.max-request-bytes = 1024
a1.sources.r1.request-timeout = 1000
a1.sources.r1.QueuedThreadPool.maxThreads = 4"
            ),
            &out,
            "a1.channels.c1.capacity = 10000\na1.channels.c1.transactionCapacity = 100",
        ),
    )?;
    let url = format!("http://127.0.0.1:{port}/");
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'x'; 4096])?;
    let big_arg = format!("@{}", big.display());
    // Declared too large: refused before the body is read.
    let (code, msg) = curl(&["--data-binary", &big_arg, &format!("{url}?i=big")])?;
    ensure!(code == 413, "status {code}: {msg}");
    // Chunked (no length): refused once it grows past the limit.
    let (code, _) = curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &big_arg,
        &format!("{url}?i=chunked"),
    ])?;
    ensure!(code == 413, "chunked status {code}");
    // A missing mandatory parameter is Flume's 500.
    ensure!(curl(&["--data-binary", "x", &url])?.0 == 500);

    // Slow clients: one sends half a request line and stalls, one sends headers and stalls in
    // the body. Both are cut off after request-timeout while others are served.
    let mut stalled_head = TcpStream::connect(("127.0.0.1", port))?;
    stalled_head.write_all(b"POST /?i=slow HTTP/1.1\r\nHost: x\r\n")?;
    let mut stalled_body = TcpStream::connect(("127.0.0.1", port))?;
    stalled_body.write_all(
        b"POST /?i=slowbody HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part",
    )?;
    // Many concurrent requests (curl's parallel mode, 8 at a time), each a distinct event.
    let t0 = Instant::now();
    let out_text = Command::new("curl")
        .args([
            "-s",
            "-Z",
            "--parallel-max",
            "8",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}\n",
        ])
        .args(["--data-binary", "blob body"])
        .arg(format!("{url}?i=[1-300]"))
        .output()?;
    let codes = String::from_utf8_lossy(&out_text.stdout).into_owned();
    ensure!(
        codes.lines().filter(|c| *c == "200").count() == 300,
        "parallel codes: {codes}"
    );
    let lines = wait_lines(&out, 300, Duration::from_secs(30))?;
    for i in 1..=300 {
        let tag = format!("i={i}}}");
        ensure!(lines.iter().any(|l| l.contains(&tag)), "event {i} missing");
    }
    // The stalled connections were closed (408 for the body) within a few timeouts.
    for (what, conn) in [("head", &mut stalled_head), ("body", &mut stalled_body)] {
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut buf = Vec::new();
        let _ = conn.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf);
        if what == "body" {
            ensure!(
                text.starts_with("HTTP/1.1 408"),
                "stalled body got {text:?}"
            );
        }
    }
    ensure!(
        t0.elapsed() < Duration::from_secs(25),
        "took {:?}",
        t0.elapsed()
    );
    ensure!(read_lines(&out).len() == 300);
    ensure!(s.counter("SOURCE.r1", "EventAcceptedCount")? == 300);
    Ok(())
}

#[test]
fn tls_with_pem_and_curl() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    let (cert, key) = self_signed_pem(dir.path())?;
    let port = free_port()?;
    let _s = start(
        dir.path(),
        "tls",
        &agent(
            &format!(
                "a1.sources.r1.port = {port}\na1.sources.r1.ssl = true\na1.sources.r1.ssl.certificate = {}\na1.sources.r1.ssl.key = {}",
                cert.display(),
                key.display()
            ),
            &out,
            "",
        ),
    )?;
    let cacert = cert.display().to_string();
    let (code, _) = curl(&[
        "--cacert",
        &cacert,
        "--data-binary",
        r#"[{"headers":{"h":"v"},"body":"over tls"}]"#,
        &format!("https://localhost:{port}/"),
    ])?;
    ensure!(code == 200, "status {code}");
    let lines = wait_lines(&out, 1, Duration::from_secs(30))?;
    ensure!(
        lines[0].ends_with("over tls") && lines[0].contains("h=v"),
        "{lines:?}"
    );
    // Plain HTTP to the TLS port gets no answer.
    let plain = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["--data-binary", "[]", &format!("http://127.0.0.1:{port}/")])
        .output()?;
    ensure!(String::from_utf8_lossy(&plain.stdout) != "200");
    Ok(())
}

#[test]
fn check_refuses_unknown_handlers_and_keystores() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let conf = dir.path().join("f.conf");
    std::fs::write(
        &conf,
        "a1.sources = r1\na1.channels = c1\na1.sources.r1.type = http\na1.sources.r1.port = 5140\n\
         a1.sources.r1.channels = c1\na1.sources.r1.handler = org.example.MyHandler\n\
         a1.channels.c1.type = memory\n",
    )?;
    let (code, _, err) =
        sluice_integration::run_sluice(&["check", "-n", "a1", "-f", &conf.display().to_string()])?;
    ensure!(
        code != 0 && err.contains("handler") && err.contains("org.example.MyHandler"),
        "{err}"
    );
    std::fs::write(
        &conf,
        "a1.sources = r1\na1.channels = c1\na1.sources.r1.type = http\na1.sources.r1.port = 5140\n\
         a1.sources.r1.channels = c1\na1.sources.r1.enableSSL = true\n\
         a1.sources.r1.keystore = /etc/ks.jks\na1.channels.c1.type = memory\n",
    )?;
    let (code, _, err) =
        sluice_integration::run_sluice(&["check", "-n", "a1", "-f", &conf.display().to_string()])?;
    ensure!(
        code != 0 && err.contains("ssl.certificate") && err.contains("keytool"),
        "{err}"
    );
    Ok(())
}
