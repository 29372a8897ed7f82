//! Several config sources on the real binary: two `-f` files merged (the second overriding and
//! adding), errors naming the second file's line, a reload when the second file changes;
//! `--conf-uri` over HTTP with Basic auth (refused without the right password, reloaded when
//! the document changes, a fetch failure keeping the running config), over HTTPS with a test CA
//! (trusted through SSL_CERT_FILE, an unknown CA refused), and `file:` URIs; `sluice send` over
//! TLS to an Avro source.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use sluice_integration::{Sluice, read_lines, run_sluice, sluice_bin, wait_for, wait_lines};

const WAIT: Duration = Duration::from_secs(30);

fn seq_to_file_roll(total: u64, dir: &Path) -> String {
    format!(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = seq\n\
         a1.sources.r1.totalEvents = {total}\n\
         a1.sources.r1.channels = c1\n\
         a1.channels.c1.type = memory\n\
         a1.sinks.k1.type = file_roll\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.sink.directory = {}\n\
         a1.sinks.k1.sink.rollInterval = 0\n",
        dir.display()
    )
}

/// A source that keeps producing, so a reload shows up as output in the new directory.
fn stress_to_file_roll(dir: &Path) -> String {
    format!(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = stress\n\
         a1.sources.r1.size = 4\n\
         a1.sources.r1.batchSize = 10\n\
         a1.sources.r1.maxEventsPerSecond = 200\n\
         a1.sources.r1.channels = c1\n\
         a1.channels.c1.type = memory\n\
         a1.sinks.k1.type = file_roll\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.sink.directory = {}\n\
         a1.sinks.k1.sink.rollInterval = 0\n",
        dir.display()
    )
}

fn has_output(dir: &Path) -> Option<()> {
    (!read_lines(dir).is_empty()).then_some(())
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn two_files_merge_and_errors_name_the_second_file() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (d1, d2, d3) = (
        tmp.path().join("d1"),
        tmp.path().join("d2"),
        tmp.path().join("d3"),
    );
    let first = tmp.path().join("first.conf");
    std::fs::write(&first, seq_to_file_roll(5, &d1))?;
    // Overrides k1's directory and adds a channel and a sink fed by the same source.
    let second = tmp.path().join("second.conf");
    let second_text = format!(
        "a1.sinks.k1.sink.directory = {}\n\
         a1.channels = c1 c2\n\
         a1.sinks = k1 k2\n\
         a1.sources.r1.channels = c1 c2\n\
         a1.channels.c2.type = memory\n\
         a1.sinks.k2.type = file_roll\n\
         a1.sinks.k2.channel = c2\n\
         a1.sinks.k2.sink.directory = {}\n\
         a1.sinks.k2.sink.rollInterval = 0\n",
        d2.display(),
        d3.display()
    );
    std::fs::write(&second, &second_text)?;
    let (f1, f2) = (s(&first), s(&second));

    let (rc, stdout, stderr) = run_sluice(&["check", "-n", "a1", "-f", &f1, "-f", &f2])?;
    ensure!(rc == 0, "check of the merged config failed: {stderr}");
    ensure!(
        stdout.contains(&format!("agent a1 ({f1}, {f2})")),
        "check names both files: {stdout}"
    );
    ensure!(
        stdout.contains("sink k2"),
        "the second file's sink: {stdout}"
    );

    let mut agent = Sluice::start_file(tmp.path(), "merged", &first, &["-f", &f2])?;
    let lines = wait_lines(&d2, 5, WAIT)?;
    ensure!(lines.len() == 5, "d2: {lines:?}");
    wait_lines(&d3, 5, WAIT)?;
    ensure!(
        read_lines(&d1).is_empty(),
        "the overridden directory got events"
    );
    agent.signal("TERM")?;
    ensure!(agent.wait(WAIT)? == Some(0), "{}", agent.log_text());

    // An unknown key and an error in the second file are reported at its lines.
    std::fs::write(&second, format!("{second_text}a1.sinks.k2.nosuch = 1\n"))?;
    let (rc, _, stderr) = run_sluice(&["check", "-n", "a1", "-f", &f1, "-f", &f2])?;
    ensure!(rc == 0, "{stderr}");
    ensure!(
        stderr.contains(&format!("{f2}:10: a1.sinks.k2.nosuch")),
        "the warning names the second file and line: {stderr}"
    );
    std::fs::write(
        &second,
        format!("{second_text}a1.channels.c2.capacity = lots\n"),
    )?;
    let (rc, _, stderr) = run_sluice(&["check", "-n", "a1", "-f", &f1, "-f", &f2])?;
    ensure!(rc != 0, "a bad value in the second file must fail check");
    ensure!(
        stderr.contains(&format!(
            "{f2}:10: a1.channels.c2.capacity: invalid value `lots`"
        )),
        "the error names the second file and line: {stderr}"
    );
    // In the other order the first file's lists win: c2 and k2 are not listed, and the keys
    // of the second file are reported unused at their lines there.
    let (rc, _, stderr) = run_sluice(&["check", "-n", "a1", "-f", &f2, "-f", &f1])?;
    ensure!(rc == 0, "{stderr}");
    ensure!(
        stderr.contains(&format!("{f2}:10: a1.channels.c2.capacity: ignored")),
        "{stderr}"
    );
    // A missing file is named.
    let missing = s(&tmp.path().join("missing.conf"));
    let (rc, _, stderr) = run_sluice(&["check", "-n", "a1", "-f", &f1, "-f", &missing])?;
    ensure!(
        rc != 0 && stderr.contains(&missing),
        "a missing file is named: {stderr}"
    );
    Ok(())
}

#[test]
fn substitution_spans_files_and_reports_the_file_of_the_reference() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let first = tmp.path().join("first.conf");
    std::fs::write(&first, seq_to_file_roll(3, &out))?;
    let second = tmp.path().join("second.conf");
    std::fs::write(
        &second,
        "# totals\na1.sources.r1.totalEvents = ${sys:TOTAL}\n",
    )?;
    let (f1, f2) = (s(&first), s(&second));
    let (rc, stdout, stderr) =
        run_sluice(&["check", "-n", "a1", "-f", &f1, "-f", &f2, "-D", "TOTAL=9"])?;
    ensure!(rc == 0, "{stderr}");
    ensure!(stdout.contains("totalEvents = 9"), "{stdout}");
    let (rc, _, stderr) = run_sluice(&["check", "-n", "a1", "-f", &f1, "-f", &f2])?;
    ensure!(rc != 0, "an unset -D property must fail");
    ensure!(
        stderr.contains(&format!("{f2}:2: a1.sources.r1.totalEvents: no -D TOTAL=")),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn a_change_in_the_second_file_reloads_and_a_broken_one_is_rejected() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (d1, d2, d3) = (
        tmp.path().join("d1"),
        tmp.path().join("d2"),
        tmp.path().join("d3"),
    );
    let first = tmp.path().join("first.conf");
    std::fs::write(&first, stress_to_file_roll(&d1))?;
    let second = tmp.path().join("second.conf");
    let dir_key = |d: &Path| format!("a1.sinks.k1.sink.directory = {}\n", d.display());
    std::fs::write(&second, dir_key(&d2))?;
    let f2 = s(&second);
    let agent = Sluice::start_file(
        tmp.path(),
        "reload",
        &first,
        &["-f", &f2, "--reload-interval", "1"],
    )?;
    wait_for("output in d2", WAIT, || has_output(&d2))?;
    std::fs::write(&second, dir_key(&d3))?;
    wait_for("output in d3 after the second file changed", WAIT, || {
        has_output(&d3)
    })?;
    ensure!(
        read_lines(&d1).is_empty(),
        "d1 was overridden from the start"
    );

    std::fs::write(&second, "a1.channels.c1.capacity = lots\n")?;
    wait_for("the rejected config in the log", WAIT, || {
        agent
            .log_text()
            .contains("Rejected the changed configuration")
            .then_some(())
    })?;
    let log = agent.log_text();
    ensure!(
        log.contains(&format!("{f2}:1: a1.channels.c1.capacity")),
        "the rejection names the second file: {log}"
    );
    let n = read_lines(&d3).len();
    wait_for("the running pipeline to keep writing to d3", WAIT, || {
        (read_lines(&d3).len() > n).then_some(())
    })?;
    Ok(())
}

/// An HTTP server on loopback serving one document at any path, with Basic auth, a
/// `Last-Modified` per version of the document and `304` for a matching `If-Modified-Since`.
struct ConfigServer {
    port: u16,
    /// (status, body, version)
    document: Arc<Mutex<(u16, String, u32)>>,
    not_modified: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ConfigServer {
    fn start(user: &str, password: &str, document: String) -> Result<Self> {
        use base64::Engine as _;
        let server = tiny_http::Server::http("127.0.0.1:0")
            .map_err(|e| anyhow::anyhow!("cannot start the test HTTP server: {e}"))?;
        let port = server
            .server_addr()
            .to_ip()
            .context("the test server has no IP address")?
            .port();
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let document = Arc::new(Mutex::new((200, document, 0)));
        let not_modified = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (doc, halt, nm) = (document.clone(), stop.clone(), not_modified.clone());
        let thread = std::thread::spawn(move || {
            while !halt.load(Ordering::SeqCst) {
                let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(100)) else {
                    continue;
                };
                let header = |name: &str| {
                    request
                        .headers()
                        .iter()
                        .find(|h| h.field.to_string().eq_ignore_ascii_case(name))
                        .map(|h| h.value.as_str().to_string())
                };
                let authorized = header("Authorization").as_deref() == Some(expected.as_str());
                let response = if authorized {
                    let (status, body, version) = doc.lock().map(|d| d.clone()).unwrap_or_default();
                    let last_modified = format!("Tue, 01 Dec 2026 10:00:{version:02} GMT");
                    if status == 200
                        && header("If-Modified-Since").as_deref() == Some(last_modified.as_str())
                    {
                        nm.fetch_add(1, Ordering::SeqCst);
                        tiny_http::Response::from_string("").with_status_code(304)
                    } else {
                        let lm = tiny_http::Header::from_bytes("Last-Modified", last_modified)
                            .map_err(|()| "bad header");
                        let response =
                            tiny_http::Response::from_string(body).with_status_code(status);
                        match lm {
                            Ok(h) => response.with_header(h),
                            Err(_) => response,
                        }
                    }
                } else {
                    tiny_http::Response::from_string("who are you?").with_status_code(401)
                };
                let _ = request.respond(response);
            }
        });
        Ok(Self {
            port,
            document,
            not_modified,
            stop,
            thread: Some(thread),
        })
    }

    /// A new version of the document (a new `Last-Modified`).
    fn set(&self, status: u16, body: String) {
        if let Ok(mut d) = self.document.lock() {
            let version = d.2 + 1;
            *d = (status, body, version);
        }
    }

    fn uri(&self) -> String {
        format!("http://127.0.0.1:{}/agents/a1.properties", self.port)
    }
}

impl Drop for ConfigServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn conf_uri_over_http_with_basic_auth_runs_and_reloads() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (d1, d2) = (tmp.path().join("d1"), tmp.path().join("d2"));
    let server = ConfigServer::start("flume", "s3cret", stress_to_file_roll(&d1))?;
    let uri = server.uri();

    let (rc, _, stderr) = run_sluice(&["check", "-n", "a1", "--conf-uri", &uri])?;
    ensure!(rc != 0, "no credentials must fail");
    ensure!(
        stderr.contains(&uri) && stderr.contains("HTTP status 401"),
        "the error names the URI and the status: {stderr}"
    );
    ensure!(stderr.contains("--conf-user"), "{stderr}");
    let wrong = [
        "--conf-uri",
        &uri,
        "--conf-user",
        "flume",
        "--conf-password",
        "guess",
    ];
    let (rc, _, stderr) = run_sluice(&[&["check", "-n", "a1"][..], &wrong].concat())?;
    ensure!(rc != 0, "a wrong password must fail");
    ensure!(
        stderr.contains(&format!("{uri}: cannot fetch config: HTTP status 401")),
        "{stderr}"
    );
    match Sluice::start_args(tmp.path(), "wrong", &wrong) {
        Ok(_) => anyhow::bail!("the agent must not run without the right password"),
        Err(e) => ensure!(
            format!("{e:#}").contains("HTTP status 401"),
            "the agent says why it exits: {e:#}"
        ),
    }
    ensure!(
        read_lines(&d1).is_empty(),
        "nothing ran with a wrong password"
    );

    let right = [
        "--conf-uri",
        &uri,
        "--conf-user",
        "flume",
        "--conf-password",
        "s3cret",
        "--reload-interval",
        "1",
    ];
    let (rc, stdout, stderr) = run_sluice(&[
        "check",
        "-n",
        "a1",
        "--conf-uri",
        &uri,
        "--conf-user",
        "flume",
        "--conf-password",
        "s3cret",
    ])?;
    ensure!(rc == 0, "{stderr}");
    ensure!(stdout.contains(&format!("agent a1 ({uri})")), "{stdout}");
    let agent = Sluice::start_args(tmp.path(), "http", &right)?;
    wait_for("output in d1", WAIT, || has_output(&d1))?;
    // Unchanged: the agent asks with If-Modified-Since and takes the 304 as "no change".
    wait_for("two 304 answers", WAIT, || {
        (server.not_modified.load(Ordering::SeqCst) >= 2).then_some(())
    })?;
    ensure!(
        !agent.log_text().contains("Cannot read a config source"),
        "a 304 is not a failure: {}",
        agent.log_text()
    );

    server.set(200, stress_to_file_roll(&d2));
    wait_for("output in d2 after the document changed", WAIT, || {
        has_output(&d2)
    })?;

    // The server fails: the running config stays, the warning names the URI.
    server.set(503, "down".into());
    wait_for("the fetch failure in the log", WAIT, || {
        agent
            .log_text()
            .lines()
            .any(|l| l.contains("Cannot read a config source") && l.contains(&uri))
            .then_some(())
    })?;
    let n = read_lines(&d2).len();
    wait_for("the pipeline to keep running", WAIT, || {
        (read_lines(&d2).len() > n).then_some(())
    })?;

    // A document over the 16 MiB limit is refused with the reason.
    server.set(200, "#".repeat(17 << 20));
    let (rc, _, stderr) = run_sluice(&[
        "check",
        "-n",
        "a1",
        "--conf-uri",
        &uri,
        "--conf-user",
        "flume",
        "--conf-password",
        "s3cret",
    ])?;
    ensure!(rc != 0, "an oversized document must fail");
    ensure!(
        stderr.contains(&uri) && stderr.contains("larger than 16 MiB"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn a_silent_config_server_times_out() -> Result<()> {
    // Connections complete in the kernel's backlog; nothing ever answers.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let uri = format!("http://{}/a1.conf", listener.local_addr()?);
    let started = std::time::Instant::now();
    let (rc, _, stderr) = run_sluice(&[
        "check",
        "-n",
        "a1",
        "--conf-uri",
        &uri,
        "--conf-timeout",
        "1",
    ])?;
    ensure!(rc != 0, "a server that never answers must fail");
    ensure!(
        stderr.contains(&uri) && stderr.contains("timed out"),
        "the error names the URI and the timeout: {stderr}"
    );
    ensure!(
        started.elapsed() < Duration::from_secs(15),
        "--conf-timeout 1 took {:?}",
        started.elapsed()
    );
    let (rc, _, stderr) = run_sluice(&["check", "-n", "a1", "-u", &uri, "--conf-timeout", "0"])?;
    ensure!(
        rc != 0 && stderr.contains("--conf-timeout"),
        "0 is out of range: {stderr}"
    );
    drop(listener);
    Ok(())
}

#[test]
fn file_uris_mix_with_files_in_command_line_order() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (d1, d2) = (tmp.path().join("d1"), tmp.path().join("d2"));
    let first = tmp.path().join("first.conf");
    std::fs::write(&first, seq_to_file_roll(4, &d1))?;
    let second = tmp.path().join("second.conf");
    std::fs::write(
        &second,
        format!("a1.sinks.k1.sink.directory = {}\n", d2.display()),
    )?;
    let (f1, f2) = (s(&first), s(&second));
    let u2 = format!("file://{f2}");
    let (rc, stdout, stderr) = run_sluice(&["check", "-n", "a1", "-f", &f1, "--conf-uri", &u2])?;
    ensure!(rc == 0, "{stderr}");
    ensure!(
        stdout.contains(&format!("sink.directory = {}", d2.display())),
        "the URI given last overrides: {stdout}"
    );
    let (rc, stdout, stderr) = run_sluice(&["check", "-n", "a1", "--conf-uri", &u2, "-f", &f1])?;
    ensure!(rc == 0, "{stderr}");
    ensure!(
        stdout.contains(&format!("sink.directory = {}", d1.display())),
        "the file given last overrides: {stdout}"
    );
    let u1 = format!("file://{f1}");
    let mut agent = Sluice::start_args(tmp.path(), "file-uri", &["--conf-uri", &u1, "-u", &u2])?;
    wait_lines(&d2, 4, WAIT)?;
    agent.signal("TERM")?;
    ensure!(agent.wait(WAIT)? == Some(0), "{}", agent.log_text());

    let (rc, _, stderr) = run_sluice(&["check", "-n", "a1", "--conf-uri", "ftp://h/a.conf"])?;
    ensure!(
        rc != 0 && stderr.contains("accepted: file:, http:, https:"),
        "{stderr}"
    );
    Ok(())
}

/// A test CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, cert DER, key DER).
fn ca_and_server_cert(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>, Vec<u8>)> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca = ca_params.self_signed(&ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    let ca_pem = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&ca_pem, ca.pem())?;
    Ok((ca_pem, cert.der().to_vec(), key.serialize_der()))
}

/// An HTTPS server on loopback answering every request with `body`, one connection at a time.
struct TlsServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TlsServer {
    fn start(cert: Vec<u8>, key: Vec<u8>, body: String) -> Result<Self> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )?;
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        let thread = std::thread::spawn(move || {
            while !halt.load(Ordering::SeqCst) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = serve_one(&config, stream, &body);
            }
        });
        Ok(Self {
            port,
            stop,
            thread: Some(thread),
        })
    }
}

fn serve_one(
    config: &Arc<rustls::ServerConfig>,
    stream: std::net::TcpStream,
    body: &str,
) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let conn = rustls::ServerConnection::new(config.clone())?;
    let mut tls = BufReader::new(rustls::StreamOwned::new(conn, stream));
    // The request head, bounded in lines.
    for _ in 0..100 {
        let mut line = String::new();
        if tls.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let tls = tls.get_mut();
    write!(
        tls,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    tls.flush()?;
    tls.conn.send_close_notify();
    let _ = tls.flush();
    Ok(())
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `sluice <args>` with `SSL_CERT_FILE` set to `roots`: (exit code, stdout, stderr).
fn sluice_with_roots(roots: &Path, args: &[&str]) -> Result<(i32, String, String)> {
    let o = Command::new(sluice_bin()?)
        .args(args)
        .env("SSL_CERT_FILE", roots)
        .env_remove("SSL_CERT_DIR")
        .stdin(Stdio::null())
        .output()?;
    Ok((
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    ))
}

#[test]
fn conf_uri_over_https_verifies_the_server() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let (ca, cert, key) = ca_and_server_cert(tmp.path(), "trusted")?;
    let (other_ca, _, _) = ca_and_server_cert(tmp.path(), "other")?;
    let server = TlsServer::start(cert, key, seq_to_file_roll(2, &out))?;
    let uri = format!("https://127.0.0.1:{}/a1.conf", server.port);

    let (rc, stdout, stderr) = sluice_with_roots(&ca, &["check", "-n", "a1", "--conf-uri", &uri])?;
    ensure!(
        rc == 0,
        "the test CA is trusted through SSL_CERT_FILE: {stderr}"
    );
    ensure!(stdout.contains("source r1: seq"), "{stdout}");

    let (rc, _, stderr) = sluice_with_roots(&other_ca, &["check", "-n", "a1", "--conf-uri", &uri])?;
    ensure!(rc != 0, "a certificate of an unknown CA must be refused");
    ensure!(
        stderr.contains(&uri) && stderr.contains("certificate is not trusted"),
        "the error names the URI and the cause: {stderr}"
    );
    let mut agent = Command::new(sluice_bin()?)
        .args(["agent", "-n", "a1", "--conf-uri", &uri])
        .env("SSL_CERT_FILE", &other_ca)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let exited = wait_for("the agent to refuse the server", WAIT, || {
        agent.try_wait().ok().flatten()
    });
    if exited.is_err() {
        let _ = agent.kill();
    }
    let status = exited?;
    ensure!(!status.success(), "the agent must not start: {status}");
    ensure!(read_lines(&out).is_empty(), "nothing ran");
    Ok(())
}

fn avro_collector(port: u16, out: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = avro\n\
         a1.sources.r1.bind = 127.0.0.1\n\
         a1.sources.r1.port = {port}\n\
         a1.sources.r1.ssl = true\n\
         a1.sources.r1.ssl.certificate = {}\n\
         a1.sources.r1.ssl.key = {}\n\
         a1.sources.r1.channels = c1\n\
         a1.channels.c1.type = memory\n\
         a1.sinks.k1.type = file_roll\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.sink.directory = {}\n\
         a1.sinks.k1.sink.rollInterval = 0\n",
        cert.display(),
        key.display(),
        out.display()
    )
}

#[test]
fn send_over_tls_to_an_avro_source() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let (cert, key) = sluice_integration::tls::self_signed_pem(tmp.path())?;
    let (other_ca, _, _) = ca_and_server_cert(tmp.path(), "other")?;
    let port = sluice_integration::free_port()?;
    let _collector = Sluice::start(
        tmp.path(),
        "collector",
        &avro_collector(port, &out, &cert, &key),
        &[],
    )?;
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, "one\ntwo\nthree\n")?;
    let peer = format!("127.0.0.1:{port}");
    let ca = s(&cert);

    // Bounded retries while the source binds.
    let (code, _, stderr) = wait_for("sluice send over TLS", WAIT, || {
        let r = sluice_integration::sluice_send(port, &input, &["--ssl", "--truststore", &ca]);
        match r {
            Ok((0, o, e)) => Some((0, o, e)),
            Ok((_, _, e)) if e.contains("Connection refused") => None,
            Ok((c, o, e)) => Some((c, o, e)),
            Err(_) => None,
        }
    })?;
    ensure!(code == 0, "send over TLS failed: {stderr}");
    let lines = wait_lines(&out, 3, WAIT)?;
    ensure!(lines == ["one", "two", "three"], "{lines:?}");

    let (code, _, stderr) =
        sluice_integration::sluice_send(port, &input, &["--ssl", "--truststore", &s(&other_ca)])?;
    ensure!(code != 0, "an untrusted server certificate must fail");
    ensure!(
        stderr.contains(&peer) && stderr.to_lowercase().contains("certificate"),
        "the error names the peer and the cause: {stderr}"
    );
    let (code, _, stderr) = sluice_integration::sluice_send(port, &input, &["--ssl"])?;
    ensure!(
        code != 0 && stderr.contains("--truststore"),
        "--ssl without trust says what is missing: {stderr}"
    );
    let (code, _, stderr) = sluice_integration::sluice_send(
        port,
        &input,
        &["--ssl", "--truststore", &ca, "--truststore-type", "JKS"],
    )?;
    ensure!(
        code != 0 && stderr.contains("keytool -exportcert"),
        "a Java truststore type is refused with the conversion: {stderr}"
    );
    let (code, _, stderr) =
        sluice_integration::sluice_send(port, &input, &["--ssl", "--trust-all-certs"])?;
    ensure!(code == 0, "trust-all-certs: {stderr}");
    wait_lines(&out, 6, WAIT)?;
    Ok(())
}
