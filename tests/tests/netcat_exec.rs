//! The `netcat`, `netcatudp` and `exec` sources on the real binary: netcat-openbsd's `nc` as
//! the client (installed by scripts/test), hostile clients (overlong lines, too many
//! connections), and real commands for exec.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use sluice_integration::{Sluice, free_port, read_lines, wait_for, wait_lines};

fn agent(source: &str, out: &Path, channel_extra: &str) -> String {
    format!(
        "\
a1.sources = r1
a1.channels = c1
a1.sinks = k1
{source}
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = 10000
a1.channels.c1.transactionCapacity = 1000
{channel_extra}
a1.sinks.k1.type = file_roll
a1.sinks.k1.channel = c1
a1.sinks.k1.sink.directory = {}
a1.sinks.k1.sink.rollInterval = 0
a1.sinks.k1.sink.serializer = header_and_text
",
        out.display()
    )
}

fn netcat(port: u16, extra: &str) -> String {
    format!(
        "a1.sources.r1.type = netcat\na1.sources.r1.bind = 127.0.0.1\na1.sources.r1.port = {port}\n{extra}"
    )
}

/// Runs netcat-openbsd's `nc` with `input` on its stdin; what the source answered.
fn nc(port: u16, input: &str) -> Result<String> {
    let mut child = Command::new("nc")
        .args(["-q", "2", "127.0.0.1", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("nc not found: install netcat-openbsd (apt-get install -y netcat-openbsd; scripts/test does)")?;
    child
        .stdin
        .take()
        .context("nc stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_listening(s: &Sluice) -> Result<()> {
    wait_for("the source to listen", Duration::from_secs(30), || {
        s.log_text().contains("source listening").then_some(())
    })
    .with_context(|| s.log_text())
}

#[test]
fn netcat_with_nc_acks_every_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    let port = free_port()?;
    let s = Sluice::start(dir.path(), "nc", &agent(&netcat(port, ""), &out, ""), &[])?;
    wait_listening(&s)?;
    let lines: Vec<String> = (0..200).map(|i| format!("line {i}")).collect();
    let answer = nc(port, &(lines.join("\n") + "\n"))?;
    ensure!(answer == "OK\n".repeat(200), "nc got {answer:?}");
    let got = wait_lines(&out, 200, Duration::from_secs(30))?;
    ensure!(
        got.iter()
            .map(|l| l.trim_start_matches("{} "))
            .eq(lines.iter().map(String::as_str))
    );
    // A line with \r keeps it, as Flume does (telnet sends \r\n).
    nc(port, "telnet style\r\n")?;
    wait_lines(&out, 201, Duration::from_secs(30))?;
    // Read raw: `str::lines` would drop the \r.
    let raw: Vec<u8> = std::fs::read_dir(&out)?
        .flatten()
        .flat_map(|e| std::fs::read(e.path()).unwrap_or_default())
        .collect();
    ensure!(
        raw.windows(14).any(|w| w == b"telnet style\r\n"),
        "the \\r was not kept"
    );
    Ok(())
}

#[test]
fn netcat_refuses_overlong_lines_and_extra_connections() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    let port = free_port()?;
    let conf = agent(
        &netcat(
            port,
            "a1.sources.r1.max-line-length = 16\na1.sources.r1.max-connections = 2\n",
        ),
        &out,
        "",
    );
    let s = Sluice::start(dir.path(), "hostile", &conf, &[])?;
    wait_listening(&s)?;
    // A good line, then one over the limit: the first is committed, the client told, closed.
    let mut c = TcpStream::connect(("127.0.0.1", port))?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    c.write_all(b"short\n")?;
    c.write_all(&[b'x'; 100])?;
    let mut answer = String::new();
    c.read_to_string(&mut answer)?;
    ensure!(
        answer == "OK\nFAILED: Event exceeds the maximum length (16 chars, including newline)\n",
        "{answer:?}"
    );
    wait_lines(&out, 1, Duration::from_secs(30))?;
    // Two idle connections hold the slots; a third is closed at once; the first two still work.
    let mut a = TcpStream::connect(("127.0.0.1", port))?;
    let mut b = TcpStream::connect(("127.0.0.1", port))?;
    std::thread::sleep(Duration::from_millis(300));
    let mut third = TcpStream::connect(("127.0.0.1", port))?;
    third.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = [0u8; 16];
    let n = third.read(&mut buf).unwrap_or(0);
    ensure!(n == 0, "the third connection was served");
    for (i, conn) in [&mut a, &mut b].into_iter().enumerate() {
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        conn.write_all(format!("held {i}\n").as_bytes())?;
        let mut ok = [0u8; 3];
        conn.read_exact(&mut ok)?;
        ensure!(&ok == b"OK\n");
    }
    wait_lines(&out, 3, Duration::from_secs(30))?;
    ensure!(s.log_text().contains("max-connections reached"));
    Ok(())
}

#[test]
fn netcat_tells_failed_when_the_channel_is_full() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    // No sink drains the channel: 10 fit, the rest are refused after keep-alive 0.
    let conf = format!(
        "a1.sources = r1\na1.channels = c1\n{}a1.sources.r1.channels = c1\n\
         a1.sources.r1.batchSize = 5\n\
         a1.channels.c1.type = memory\na1.channels.c1.capacity = 10\n\
         a1.channels.c1.transactionCapacity = 5\na1.channels.c1.keep-alive = 0\n",
        netcat(port, "")
    );
    let s = Sluice::start(dir.path(), "full", &conf, &[])?;
    wait_listening(&s)?;
    let mut answers = String::new();
    for i in 0..4 {
        answers.push_str(&nc(
            port,
            &format!("{}\n", ["a"; 5].map(|x| format!("{x}{i}")).join("\n")),
        )?);
    }
    let ok = answers.matches("OK\n").count();
    let failed = answers.matches("FAILED: ").count();
    ensure!(
        ok == 10 && failed == 10,
        "ok {ok}, failed {failed}: {answers:?}"
    );
    ensure!(s.counter("CHANNEL.c1", "ChannelSize")? == 10);
    Ok(())
}

#[test]
fn netcatudp_one_event_per_datagram_with_the_sender() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    let port = free_port()?;
    let src = format!(
        "a1.sources.r1.type = netcatudp\na1.sources.r1.bind = 127.0.0.1\na1.sources.r1.port = {port}\n\
         a1.sources.r1.remoteAddressHeader = remote\n"
    );
    let s = Sluice::start(dir.path(), "udp", &agent(&src, &out, ""), &[])?;
    wait_listening(&s)?;
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    let me = sock.local_addr()?;
    for i in 0..50 {
        sock.send_to(
            format!("datagram {i}\nignored after the newline").as_bytes(),
            ("127.0.0.1", port),
        )?;
        std::thread::sleep(Duration::from_millis(2));
    }
    let got = wait_lines(&out, 50, Duration::from_secs(30))?;
    let want = format!("{{remote=/{me}}} datagram 7");
    ensure!(got.contains(&want), "no `{want}` in {:?}", &got[..3]);
    Ok(())
}

#[test]
fn exec_runs_commands_restarts_and_is_killed_with_the_agent() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    // A command without a shell: 500 lines.
    let src = "a1.sources.r1.type = exec\na1.sources.r1.command = seq 1 500\na1.sources.r1.batchSize = 50\n";
    let s = Sluice::start(dir.path(), "seq", &agent(src, &out, ""), &[])?;
    let got = wait_lines(&out, 500, Duration::from_secs(30)).with_context(|| s.log_text())?;
    ensure!(
        got.iter()
            .map(|l| l.trim_start_matches("{} "))
            .eq((1..=500).map(|i| i.to_string()))
    );
    drop(s);

    // A shell command restarted every 200 ms.
    let out2 = dir.path().join("out2");
    std::fs::create_dir_all(&out2)?;
    let src = "a1.sources.r1.type = exec\na1.sources.r1.shell = /bin/sh -c\n\
               a1.sources.r1.command = echo one; echo two | tr a-z A-Z\n\
               a1.sources.r1.restart = true\na1.sources.r1.restartThrottle = 200\n\
               a1.sources.r1.batchTimeout = 50\n";
    let s = Sluice::start(dir.path(), "restart", &agent(src, &out2, ""), &[])?;
    let got = wait_lines(&out2, 6, Duration::from_secs(30)).with_context(|| s.log_text())?;
    ensure!(
        got.iter().filter(|l| l.ends_with("TWO")).count() >= 3,
        "{got:?}"
    );
    drop(s);

    // The command is killed when the agent stops.
    let pidfile = dir.path().join("child.pid");
    let src = format!(
        "a1.sources.r1.type = exec\na1.sources.r1.shell = /bin/sh -c\n\
         a1.sources.r1.command = echo $$ > {}; exec sleep 1000\n",
        pidfile.display()
    );
    let mut s = Sluice::start(dir.path(), "kill", &agent(&src, &out2, ""), &[])?;
    let pid: u32 = wait_for("the child's pid", Duration::from_secs(30), || {
        std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
    })?;
    ensure!(Path::new(&format!("/proc/{pid}")).exists());
    s.signal("TERM")?;
    s.wait(Duration::from_secs(30))?;
    wait_for("the child to be gone", Duration::from_secs(10), || {
        (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    })
    .or_else(|e| bail!("{e}: the command outlived the agent"))?;
    let _ = read_lines(&out2);
    Ok(())
}
