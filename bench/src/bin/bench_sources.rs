//! Network sources fed by the real clients users run: `netcat` (OpenBSD `nc`), `syslogtcp`
//! (util-linux `logger`, and raw TCP connections), `http` (`curl`) and `thrift` (Flume's own
//! thrift RPC client from flume-ng-sdk), each `source → memory → null`, the release `sluice` binary next to Apache Flume 1.11.0 with the same config in the
//! same run (issue #19).
//!
//! ```text
//! cargo build --release -p sluice --bin sluice --locked
//! cargo build --release -p sluice-bench --bin bench_sources --locked
//! target/release/bench_sources [-- OPTIONS]
//!   --clients N       concurrent client processes / connections      (default 4)
//!   --seconds S       measured window                                (default 10)
//!   --warmup S        seconds the clients run before the window      (default 5)
//!   --scenario NAME   netcat, syslogtcp, http, thrift or all         (default all)
//!   --client NAME     syslogtcp clients: logger, raw or both         (default both)
//!   --lines N         pre-generated events per client                (default 200000)
//!   --only SIDE       run only `sluice` or `flume`
//!   --settle S        seconds to wait for a quiet machine before a side (default 120)
//!   --force           measure even when the machine is not quiet
//!   --keep-dir        keep the agents' logs, the clients' stderr and the inputs
//! ```
//!
//! Pipeline on both sides: the source on 127.0.0.1 → memory channel (capacity 100000,
//! transactionCapacity 1000; sluice's sources commit up to `batchSize = 1000` lines that
//! arrived together, Flume's netcat and syslog sources commit each event alone) → `null` sink.
//!
//! Throughput is the growth of the source's `SOURCE.r1/EventAcceptedCount` (sluice: its
//! Flume-JSON metrics; Flume: its HTTP JSON monitoring) over the window, read at the window's
//! start and end while the clients run; the clients start before the warm-up and are stopped
//! after the window, so start-up and the clients' last partial run are not counted.
//!
//! Clients, each with its own pre-generated input written before the agent starts (realistic
//! 100–200 byte log lines with a sequence number, a timestamp and varying words; every event
//! of a run differs, a client that is restarted re-sends its file):
//! - **netcat**: `nc -q 1 127.0.0.1 PORT < lines-I.txt`, restarted in a loop until the window
//!   ends (`ack-every-event` is left at its default, true, on both sides: every line is
//!   answered `OK`).
//! - **syslogtcp**, `--client logger`: `logger --tcp -n 127.0.0.1 -P PORT --rfc3164 -f
//!   lines-I.txt` (newline framing: Flume reads nothing else), restarted likewise. logger
//!   writes one message per system call and may be the bottleneck; `--client raw` writes
//!   pre-generated RFC 3164 lines over N plain TCP connections instead, and `both` (the
//!   default) runs both and says whether logger saturated the agent.
//! - **http**: `curl -K http-I.curlrc`, one keep-alive connection per curl POSTing its
//!   pre-generated JSON batches (Flume's JSONHandler format, 100 events with headers each)
//!   one after the other, restarted likewise.
//! - **thrift**: one JVM running `FlumeThriftClient … load` (tests/java): N threads, each with
//!   its own `RpcClientFactory` thrift client (compact protocol, Flume's default on both ends),
//!   sending its `lines-I.txt` as events with the headers `host`, `client` and `seq` in
//!   `appendBatch` calls of 100 (flume-ng-sdk's default batch size), over and over.
//!
//! Machine: the 1-minute load average is printed before each side; the bench refuses to start
//! when it is above 1.5 or a `rustc`, `cargo` or `java` process of someone else runs, and
//! before each later side waits up to `--settle` seconds for that to clear (its own previous
//! side raised the load); `--force` measures anyway. CPU is the agent's user+system time over
//! the window; the clients' CPU is the bench's own plus its reaped children's (approximate: a
//! client run that straddles the window edge is counted when it ends). Peak RSS is the agent's
//! `VmHWM` (Flume with `-Xmx512m`).

use std::fmt::Write as _;
use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use sluice_bench::harness::{
    self, Only, Side, at_least_one, cpu_seconds, loadavg, memory_null_config, peak_rss_mib,
    positive_secs, print_load, sluice_release_bin, thousands,
};
use sluice_integration::flume::{FLUME_VERSION, Flume, FlumeOptions, ensure_flume};
use sluice_integration::{Sluice, flume_client, free_port, wait_for};

/// Network sources with real clients (nc, logger, curl, Flume's thrift client), sluice next to
/// Apache Flume
#[derive(Parser)]
struct Args {
    /// Concurrent clients (processes, or connections with `--client raw`)
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = at_least_one)]
    clients: usize,
    /// Measured seconds
    #[arg(long, value_name = "S", default_value = "10", value_parser = positive_secs)]
    seconds: Duration,
    /// Seconds the clients run before the window opens
    #[arg(long, value_name = "S", default_value = "5", value_parser = whole_secs)]
    warmup: Duration,
    /// Which source to measure
    #[arg(long, value_enum, default_value_t = Scenario::All)]
    scenario: Scenario,
    /// The syslogtcp clients: util-linux logger, raw TCP connections, or both
    #[arg(long, value_enum, default_value_t = SyslogClient::Both)]
    client: SyslogClient,
    /// Pre-generated events per client (a client re-sends them when restarted)
    #[arg(long, value_name = "N", default_value_t = 200_000, value_parser = at_least_one)]
    lines: usize,
    /// Seconds to wait before a side for the load average to drop to 1.5 and other
    /// engineers' rustc / cargo / java processes to end
    #[arg(long, value_name = "S", default_value = "120", value_parser = whole_secs)]
    settle: Duration,
    /// Measure even when the machine is not quiet (the output says so)
    #[arg(long)]
    force: bool,
    /// Keep the work directory (agent logs, client stderr, inputs) and print its path
    #[arg(long)]
    keep_dir: bool,
    #[command(flatten)]
    only: Only,
}

fn whole_secs(s: &str) -> Result<Duration, String> {
    s.parse()
        .map(Duration::from_secs)
        .map_err(|_| format!("`{s}` is not a whole number of seconds"))
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Netcat,
    Syslogtcp,
    Http,
    Thrift,
    All,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SyslogClient {
    Logger,
    Raw,
    Both,
}

/// One measured row: a source and the clients feeding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Run {
    Netcat,
    SyslogLogger,
    SyslogRaw,
    Http,
    Thrift,
}

impl Run {
    fn selected(a: &Args) -> Vec<Run> {
        let mut runs = Vec::new();
        let all = a.scenario == Scenario::All;
        if all || a.scenario == Scenario::Netcat {
            runs.push(Run::Netcat);
        }
        if all || a.scenario == Scenario::Syslogtcp {
            if a.client != SyslogClient::Raw {
                runs.push(Run::SyslogLogger);
            }
            if a.client != SyslogClient::Logger {
                runs.push(Run::SyslogRaw);
            }
        }
        if all || a.scenario == Scenario::Http {
            runs.push(Run::Http);
        }
        if all || a.scenario == Scenario::Thrift {
            runs.push(Run::Thrift);
        }
        runs
    }

    fn scenario(self) -> &'static str {
        match self {
            Run::Netcat => "netcat",
            Run::SyslogLogger | Run::SyslogRaw => "syslogtcp",
            Run::Http => "http",
            Run::Thrift => "thrift",
        }
    }

    fn client(self) -> &'static str {
        match self {
            Run::Netcat => "nc",
            Run::SyslogLogger => "logger",
            Run::SyslogRaw => "raw tcp",
            Run::Http => "curl",
            Run::Thrift => "flume-sdk",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Run::Netcat => "netcat",
            Run::SyslogLogger => "syslog-logger",
            Run::SyslogRaw => "syslog-raw",
            Run::Http => "http",
            Run::Thrift => "thrift",
        }
    }

    /// The source's lines for [`memory_null_config`] (type first), the same on both sides.
    fn source(self, port: u16) -> String {
        let (ty, bind_key) = match self {
            Run::Netcat => ("netcat", "bind"),
            Run::SyslogLogger | Run::SyslogRaw => ("syslogtcp", "host"),
            Run::Http => ("http", "bind"),
            Run::Thrift => ("thrift", "bind"),
        };
        format!("{ty}\na1.sources.r1.{bind_key} = 127.0.0.1\na1.sources.r1.port = {port}")
    }
}

/// Channel transaction, sluice source and sink batch.
const BATCH: usize = 1000;
/// Events per HTTP request (one JSON array).
const HTTP_BATCH: usize = 100;
/// Above this 1-minute load average the machine is not quiet.
const MAX_LOAD: f64 = 1.5;
/// Client runs per client and side at most (bounded loops; a run lasts a second or more).
const MAX_RUNS: u64 = 100_000;
/// What a side may take beyond warm-up and window before its clients are stopped regardless.
const CLIENT_GRACE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Event bodies

const LEVELS: [&str; 8] = [
    "INFO", "INFO", "INFO", "INFO", "DEBUG", "WARN", "WARN", "ERROR",
];
const SERVICES: [&str; 6] = [
    "checkout.api",
    "payments.worker",
    "search.frontend",
    "auth.session",
    "inventory.sync",
    "mail.queue",
];
const METHODS: [&str; 4] = ["GET", "GET", "POST", "PUT"];
const PATHS: [&str; 7] = [
    "/api/v1/orders",
    "/api/v1/cart",
    "/api/v2/search",
    "/login",
    "/api/v1/users",
    "/api/v1/invoices",
    "/static/app",
];
const STATUSES: [u32; 6] = [200, 200, 200, 201, 404, 503];
const USERS: [&str; 10] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
];
const NOTES: [&str; 10] = [
    "cache miss",
    "retrying upstream",
    "slow query",
    "served from replica",
    "token refreshed",
    "queue drained",
    "rate limited",
    "payload validated",
    "session resumed",
    "fallback used",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// One generated log event.
struct LogLine {
    /// 100–200 ASCII bytes, no newline or `\\`.
    text: String,
    level: &'static str,
    service: &'static str,
    /// Milliseconds since the Unix epoch.
    millis: i64,
}

/// Deterministic, varied log lines for one client: a sequence number, a timestamp advancing a
/// few milliseconds per line, and words picked by a SplitMix64 generator.
struct LogLines {
    client: usize,
    seq: u64,
    millis: i64,
    rng: u64,
}

impl LogLines {
    /// `stream` tells apart the generators of one client (one per kind of input).
    fn new(client: usize, stream: u64, start_millis: i64) -> Self {
        Self {
            client,
            seq: 0,
            millis: start_millis,
            rng: 0x9E37_79B9_7F4A_7C15
                ^ (client as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)
                ^ stream.wrapping_mul(0xA24B_AED4_963E_E407),
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[(self.next_u64() % from.len() as u64) as usize]
    }

    fn next_line(&mut self) -> LogLine {
        self.seq += 1;
        self.millis += (self.next_u64() % 5) as i64;
        let level = self.pick(&LEVELS);
        let service = self.pick(&SERVICES);
        let worker = self.next_u64() % 16;
        let method = self.pick(&METHODS);
        let path = self.pick(&PATHS);
        let id = self.next_u64() % 1_000_000;
        let status = self.pick(&STATUSES);
        let bytes = 64 + self.next_u64() % 60_000;
        let micros = self.next_u64() % 2_500_000;
        let user = self.pick(&USERS);
        let note = self.pick(&NOTES);
        let mut text = format!(
            "{} {level:<5} [{service}-{worker}] {method} {path}/{id} status={status} \
             bytes={bytes} duration_ms={}.{:03} user={user} client={} seq={} msg=\"{note}\"",
            iso8601(self.millis),
            micros / 1000,
            micros % 1000,
            self.client,
            self.seq,
        );
        text.truncate(200);
        LogLine {
            text,
            level,
            service,
            millis: self.millis,
        }
    }
}

/// (year, month 1–12, day 1–31) of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (days since the epoch, hour, minute, second, millisecond), UTC.
fn split_millis(millis: i64) -> (i64, i64, i64, i64, i64) {
    let secs = millis.div_euclid(1000);
    let day_secs = secs.rem_euclid(86_400);
    (
        secs.div_euclid(86_400),
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60,
        millis.rem_euclid(1000),
    )
}

/// `2026-12-02T04:31:07.123Z`.
fn iso8601(millis: i64) -> String {
    let (days, h, m, s, ms) = split_millis(millis);
    let (y, mo, d) = civil_from_days(days);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

/// One RFC 3164 message with its newline: `<PRI>Mmm dd hh:mm:ss host app[pid]: line`
/// (facility local0, severity from the level).
fn rfc3164(line: &LogLine, client: usize) -> String {
    let severity = match line.level {
        "ERROR" => 3,
        "WARN" => 4,
        "DEBUG" => 7,
        _ => 6,
    };
    let (days, h, m, s, _) = split_millis(line.millis);
    let (_, mo, d) = civil_from_days(days);
    let app = line.service.split('.').next().unwrap_or("app");
    format!(
        "<{}>{} {d:>2} {h:02}:{m:02}:{s:02} web-{client:02} {app}[{}]: {}\n",
        16 * 8 + severity,
        MONTHS[(mo - 1) as usize],
        1000 + client,
        line.text
    )
}

/// One event of Flume's JSONHandler format (`{"headers": {..}, "body": ".."}`). The generated
/// text is ASCII without control characters or `\\`: only its `"` need escaping.
fn json_event(out: &mut String, line: &LogLine, client: usize) {
    let _ = write!(
        out,
        "{{\"headers\":{{\"host\":\"web-{client:02}\",\"service\":\"{}\",\"level\":\"{}\",\
         \"timestamp\":\"{}\"}},\"body\":\"{}\"}}",
        line.service,
        line.level,
        line.millis,
        line.text.replace('"', "\\\"")
    );
}

// ---------------------------------------------------------------------------------------------
// Pre-generated client input

/// Every client's input, written (or, for raw connections, held) before any agent starts.
#[derive(Default)]
struct Inputs {
    /// `lines-I.txt`: one log line per line, for nc, logger and the thrift client.
    lines: Vec<PathBuf>,
    /// RFC 3164 messages, newline-framed, for the raw connections.
    raw: Vec<Arc<Vec<u8>>>,
    /// Per client, the JSON batch files `http-I-K.json` in sending order.
    http: Vec<Vec<PathBuf>>,
}

fn generate(dir: &Path, runs: &[Run], a: &Args) -> Result<Inputs> {
    let started = Instant::now();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut inputs = Inputs::default();
    let mut bytes = 0usize;
    for client in 0..a.clients {
        if [Run::Netcat, Run::SyslogLogger, Run::Thrift]
            .iter()
            .any(|r| runs.contains(r))
        {
            let mut lines = LogLines::new(client, 0, now);
            let mut text = String::with_capacity(a.lines * 180);
            for _ in 0..a.lines {
                text.push_str(&lines.next_line().text);
                text.push('\n');
            }
            let path = dir.join(format!("lines-{client}.txt"));
            std::fs::write(&path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            bytes += text.len();
            inputs.lines.push(path);
        }
        if runs.contains(&Run::SyslogRaw) {
            let mut lines = LogLines::new(client, 1, now);
            let mut text = String::with_capacity(a.lines * 220);
            for _ in 0..a.lines {
                text.push_str(&rfc3164(&lines.next_line(), client));
            }
            bytes += text.len();
            inputs.raw.push(Arc::new(text.into_bytes()));
        }
        if runs.contains(&Run::Http) {
            let mut lines = LogLines::new(client, 2, now);
            let mut files = Vec::new();
            for k in 0..a.lines.div_ceil(HTTP_BATCH) {
                let mut body = String::with_capacity(HTTP_BATCH * 260);
                body.push('[');
                for i in 0..HTTP_BATCH {
                    if i > 0 {
                        body.push(',');
                    }
                    json_event(&mut body, &lines.next_line(), client);
                }
                body.push(']');
                let path = dir.join(format!("http-{client}-{k}.json"));
                std::fs::write(&path, &body)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                bytes += body.len();
                files.push(path);
            }
            inputs.http.push(files);
        }
    }
    eprintln!(
        "Generated {:.1} MB of client input in {:.1?}.",
        bytes as f64 / 1e6,
        started.elapsed()
    );
    Ok(inputs)
}

/// A curl config POSTing `files` to `port` one after the other on one connection.
fn curlrc(files: &[PathBuf], port: u16) -> String {
    let mut rc = String::new();
    for f in files {
        let _ = writeln!(
            rc,
            "url = \"http://127.0.0.1:{port}/\"\n\
             header = \"Content-Type: application/json\"\n\
             header = \"Expect:\"\n\
             data-binary = \"@{}\"\n\
             next",
            f.display()
        );
    }
    rc
}

// ---------------------------------------------------------------------------------------------
// Clients

/// A client process, restarted until it is stopped.
struct ProcessClient {
    program: &'static str,
    args: Vec<String>,
    stdin: Option<PathBuf>,
    /// Its stderr, appended over all runs.
    stderr: PathBuf,
}

#[derive(Clone, Copy, Default)]
struct ClientStats {
    /// Process runs or TCP connections.
    runs: u64,
    /// Runs that exited non-zero or connections that broke.
    failed: u64,
}

/// The clients of one side, stopped (and joined) by [`Clients::finish`] or on drop.
struct Clients {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<ClientStats>>>,
    stderr: Vec<PathBuf>,
}

impl Clients {
    fn processes(specs: Vec<ProcessClient>, until: Instant) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stderr = specs.iter().map(|s| s.stderr.clone()).collect();
        let threads = specs
            .into_iter()
            .map(|spec| {
                let stop = stop.clone();
                std::thread::spawn(move || process_loop(&spec, &stop, until))
            })
            .collect();
        Self {
            stop,
            threads,
            stderr,
        }
    }

    fn raw(addr: SocketAddr, data: &[Arc<Vec<u8>>], until: Instant) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = data
            .iter()
            .map(|d| {
                let (stop, d) = (stop.clone(), d.clone());
                std::thread::spawn(move || raw_loop(addr, &d, &stop, until))
            })
            .collect();
        Self {
            stop,
            threads,
            stderr: Vec::new(),
        }
    }

    /// Stops every client and sums their runs.
    fn finish(mut self) -> Result<ClientStats> {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = ClientStats::default();
        for t in self.threads.drain(..) {
            let s = t
                .join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
            total.runs += s.runs;
            total.failed += s.failed;
        }
        if total.runs > 0 && total.failed == total.runs {
            bail!(
                "every client run failed; last client stderr:\n{}",
                self.stderr_tail()
            );
        }
        Ok(total)
    }

    fn stderr_tail(&self) -> String {
        let text = self
            .stderr
            .first()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn process_loop(spec: &ProcessClient, stop: &AtomicBool, until: Instant) -> Result<ClientStats> {
    let mut stats = ClientStats::default();
    while stats.runs < MAX_RUNS && !stop.load(Ordering::SeqCst) && Instant::now() < until {
        let started = Instant::now();
        let mut child = spawn(spec)?;
        stats.runs += 1;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if stop.load(Ordering::SeqCst) || Instant::now() >= until {
                // The window is over: this run's remaining events are not measured.
                let _ = child.kill();
                child.wait()?;
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if let Some(status) = status
            && !status.success()
        {
            stats.failed += 1;
            // A client that cannot connect fails at once: do not spin.
            if started.elapsed() < Duration::from_millis(200) {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    Ok(stats)
}

fn spawn(spec: &ProcessClient) -> Result<Child> {
    let stdin = match &spec.stdin {
        Some(p) => Stdio::from(
            std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
        ),
        None => Stdio::null(),
    };
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.stderr)
        .with_context(|| format!("cannot open {}", spec.stderr.display()))?;
    Command::new(spec.program)
        .args(&spec.args)
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("cannot start {}", spec.program))
}

/// Writes `data` over one TCP connection again and again (reconnecting if it breaks) until
/// stopped.
fn raw_loop(
    addr: SocketAddr,
    data: &[u8],
    stop: &AtomicBool,
    until: Instant,
) -> Result<ClientStats> {
    let mut stats = ClientStats::default();
    let running = || !stop.load(Ordering::SeqCst) && Instant::now() < until;
    while stats.runs < MAX_RUNS && running() {
        stats.runs += 1;
        let mut conn = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(c) => c,
            Err(_) => {
                stats.failed += 1;
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        conn.set_write_timeout(Some(Duration::from_millis(200)))?;
        let mut pos = 0;
        // At most one pass of `data` per 64 KiB write, `MAX_RUNS` passes per connection.
        let mut passes = 0u64;
        while running() && passes < MAX_RUNS {
            let end = (pos + (64 << 10)).min(data.len());
            match conn.write(&data[pos..end]) {
                Ok(n) => pos += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    stats.failed += 1;
                    break;
                }
            }
            if pos >= data.len() {
                pos = 0;
                passes += 1;
            }
        }
    }
    Ok(stats)
}

fn client_specs(
    run: Run,
    port: u16,
    inputs: &Inputs,
    dir: &Path,
    seconds: u64,
) -> Result<Vec<ProcessClient>> {
    if run == Run::Thrift {
        // One JVM, one thread and connection per client.
        return Ok(vec![ProcessClient {
            program: "java",
            args: flume_client::thrift_load_args(port, "compact", seconds, &inputs.lines)?,
            stdin: None,
            stderr: dir.join("client-0.err"),
        }]);
    }
    let port_s = port.to_string();
    let mut specs = Vec::new();
    let n = match run {
        Run::Netcat | Run::SyslogLogger => inputs.lines.len(),
        Run::Http => inputs.http.len(),
        Run::SyslogRaw | Run::Thrift => 0,
    };
    for i in 0..n {
        let stderr = dir.join(format!("client-{i}.err"));
        let spec = match run {
            Run::Netcat => ProcessClient {
                program: "nc",
                args: vec!["-q".into(), "1".into(), "127.0.0.1".into(), port_s.clone()],
                stdin: Some(inputs.lines[i].clone()),
                stderr,
            },
            Run::SyslogLogger => ProcessClient {
                program: "logger",
                args: vec![
                    "--tcp".into(),
                    "-n".into(),
                    "127.0.0.1".into(),
                    "-P".into(),
                    port_s.clone(),
                    "--rfc3164".into(),
                    "-t".into(),
                    "checkout".into(),
                    "-f".into(),
                    inputs.lines[i].display().to_string(),
                ],
                stdin: None,
                stderr,
            },
            Run::Http => {
                let rc = dir.join(format!("http-{i}.curlrc"));
                std::fs::write(&rc, curlrc(&inputs.http[i], port))
                    .with_context(|| format!("cannot write {}", rc.display()))?;
                ProcessClient {
                    program: "curl",
                    args: vec!["-sS".into(), "-K".into(), rc.display().to_string()],
                    stdin: None,
                    stderr,
                }
            }
            Run::SyslogRaw | Run::Thrift => continue,
        };
        specs.push(spec);
    }
    Ok(specs)
}

/// Fails naming the Debian package when a client tool is missing (or is another variant).
fn require_client_tools(runs: &[Run]) -> Result<()> {
    let probe = |tool: &str, arg: &str, must_say: &str, package: &str| -> Result<()> {
        let out = Command::new(tool)
            .arg(arg)
            .stdin(Stdio::null())
            .output()
            .with_context(|| {
                format!("cannot run `{tool}`: install it with `apt-get install -y {package}`")
            })?;
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        if !text.contains(must_say) {
            bail!(
                "`{tool} {arg}` does not look like {package}'s {tool}: install it with \
                 `apt-get install -y {package}`"
            );
        }
        Ok(())
    };
    if runs.contains(&Run::Netcat) {
        probe("nc", "-h", "OpenBSD", "netcat-openbsd")?;
    }
    if runs.contains(&Run::SyslogLogger) {
        probe("logger", "--version", "util-linux", "bsdutils")?;
    }
    if runs.contains(&Run::Http) {
        probe("curl", "--version", "curl", "curl")?;
    }
    if runs.contains(&Run::Thrift) {
        probe("java", "-version", "version", "openjdk-17-jdk-headless")?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The machine

/// The 1-minute load average.
fn load1() -> Result<f64> {
    let s = std::fs::read_to_string("/proc/loadavg").context("cannot read /proc/loadavg")?;
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .context("malformed /proc/loadavg")
}

/// `rustc`, `cargo` and `java` processes that are neither this bench nor one of its
/// ancestors (`cargo run`): other engineers' builds, tests and JVMs.
fn others_busy() -> Vec<String> {
    let mut ours = vec![std::process::id()];
    let mut pid = std::process::id();
    for _ in 0..64 {
        let Some(ppid) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1.to_string();
                rest.split_whitespace().nth(1)?.parse::<u32>().ok()
            })
        else {
            break;
        };
        if ppid <= 1 {
            break;
        }
        ours.push(ppid);
        pid = ppid;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut busy = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if ours.contains(&pid) {
            continue;
        }
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if matches!(comm, "rustc" | "cargo" | "java") {
            busy.push(format!("{comm} ({pid})"));
        }
    }
    busy.sort();
    busy
}

/// Prints the load average before `what`; waits up to `wait` for a quiet machine (load at
/// most [`MAX_LOAD`], no one else's rustc / cargo / java) and fails if it does not get quiet,
/// unless `force`.
fn quiet_machine(what: &str, wait: Duration, force: bool) -> Result<()> {
    let deadline = Instant::now() + wait;
    let mut said = false;
    // Bounded: one poll every 5 s up to `wait`, plus the final look.
    for _ in 0..=wait.as_secs() / 5 + 1 {
        let load = load1()?;
        let busy = others_busy();
        let quiet = load <= MAX_LOAD && busy.is_empty();
        if quiet || force || Instant::now() >= deadline {
            let mut line = format!("  load average before {what}: {}", loadavg());
            if !busy.is_empty() {
                let _ = write!(line, "; also running: {}", busy.join(", "));
            }
            if !quiet {
                line.push_str(if force {
                    " (NOT QUIET, measured because of --force)"
                } else {
                    " (not quiet)"
                });
            }
            println!("{line}");
            if !quiet && !force {
                bail!(
                    "the machine is not quiet before {what} (1-minute load {load:.2} > \
                     {MAX_LOAD} or other builds running: {}); retry later or pass --force",
                    if busy.is_empty() {
                        "none".into()
                    } else {
                        busy.join(", ")
                    }
                );
            }
            return Ok(());
        }
        if !said {
            eprintln!(
                "Waiting up to {} s for a quiet machine before {what} (load {load:.2}{}).",
                wait.as_secs(),
                if busy.is_empty() {
                    String::new()
                } else {
                    format!(", running: {}", busy.join(", "))
                }
            );
            said = true;
        }
        std::thread::sleep(
            Duration::from_secs(5).min(deadline.saturating_duration_since(Instant::now())),
        );
    }
    bail!("the machine did not get quiet before {what}")
}

/// user + system CPU seconds of this process and of its reaped children (the clients).
fn own_and_children_cpu() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("cannot read /proc/self/stat")?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let mut ticks = 0u64;
    // utime, stime, cutime, cstime: fields 14–17, 11–14 after the command.
    for i in 11..=14 {
        ticks += fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .context("short /proc stat")?;
    }
    Ok(ticks as f64 / 100.0)
}

// ---------------------------------------------------------------------------------------------
// One side

/// One side's numbers over the window.
#[derive(Clone, Copy)]
struct Measured {
    events_per_s: f64,
    rss_mib: f64,
    cpu_cores: f64,
    client_cpu_cores: f64,
    /// The counter measured.
    counter: Counter,
}

/// (component, name) of a Flume-JSON counter.
type Counter = (&'static str, &'static str);
const SOURCE_ACCEPTED: Counter = ("SOURCE.r1", "EventAcceptedCount");
const CHANNEL_PUTS: Counter = ("CHANNEL.c1", "EventPutSuccessCount");

enum Agent {
    Sluice(Sluice),
    Flume(Flume),
}

impl Agent {
    fn start(side: Side, dir: &Path, conf: &str) -> Result<Self> {
        Ok(match side {
            Side::Sluice => Agent::Sluice(Sluice::start(dir, "sluice", conf, &[])?),
            Side::Flume => {
                let opts = FlumeOptions {
                    log_level: "WARN".into(),
                    ..FlumeOptions::default()
                };
                Agent::Flume(Flume::start_with(dir, conf, "a1", &opts)?)
            }
        })
    }

    fn pid(&self) -> u32 {
        match self {
            Agent::Sluice(s) => s.pid(),
            Agent::Flume(f) => f.pid(),
        }
    }

    fn counter(&self, (component, name): Counter) -> Result<u64> {
        match self {
            Agent::Sluice(s) => s.counter(component, name),
            Agent::Flume(f) => f.counter(component, name),
        }
    }

    fn alive(&mut self) -> Result<()> {
        let exited = match self {
            Agent::Sluice(s) => s.child.try_wait()?,
            Agent::Flume(f) => f.child.try_wait()?,
        };
        if let Some(status) = exited {
            bail!("the agent exited ({status}); log:\n{}", self.log_tail());
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        match self {
            Agent::Sluice(s) => {
                let text = s.log_text();
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(40)..].join("\n")
            }
            Agent::Flume(f) => f.log_tail(40),
        }
    }
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Sluice => "sluice",
        Side::Flume => "Flume",
    }
}

/// Starts `side`'s agent for `run`, its clients, warms up, and measures the window.
fn run_side(side: Side, run: Run, a: &Args, inputs: &Inputs, dir: &Path) -> Result<Measured> {
    let name = side_name(side);
    let dir = dir.join(format!("{}-{}", run.slug(), name.to_lowercase()));
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let conf = memory_null_config(&run.source(port), BATCH, "");
    let started = Instant::now();
    let mut agent = Agent::start(side, &dir, &conf)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let ready = wait_for(
        &format!("{name}'s {} source on {addr}", run.scenario()),
        Duration::from_secs(60),
        || {
            (TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
                && agent.counter(CHANNEL_PUTS).is_ok())
            .then_some(())
        },
    );
    if let Err(e) = ready {
        agent.alive()?;
        bail!("{e}; log:\n{}", agent.log_tail());
    }
    // Flume 1.11's NetcatSource keeps its counts in a private CounterGroup and registers no
    // source counter: there the channel's puts (from its only source) stand in.
    let counter = match wait_for("the source counter", Duration::from_secs(3), || {
        agent.counter(SOURCE_ACCEPTED).is_ok().then_some(())
    }) {
        Ok(()) => SOURCE_ACCEPTED,
        Err(_) if side == Side::Flume => CHANNEL_PUTS,
        Err(e) => bail!("{e}; log:\n{}", agent.log_tail()),
    };
    eprintln!(
        "{name}: {} source ready {:.1?} after start (pid {}); {} {} clients.",
        run.scenario(),
        started.elapsed(),
        agent.pid(),
        a.clients,
        run.client()
    );
    let until = Instant::now() + a.warmup + a.seconds + CLIENT_GRACE;
    let clients = match run {
        Run::SyslogRaw => Clients::raw(addr, &inputs.raw, until),
        _ => Clients::processes(
            client_specs(
                run,
                port,
                inputs,
                &dir,
                (a.warmup + a.seconds + CLIENT_GRACE).as_secs(),
            )?,
            until,
        ),
    };
    std::thread::sleep(a.warmup);
    agent.alive()?;
    print_load(&format!("the {name} window"));
    let pid = agent.pid();
    let (c0, cpu0, ccpu0, t0) = (
        agent.counter(counter)?,
        cpu_seconds(pid)?,
        own_and_children_cpu()?,
        Instant::now(),
    );
    std::thread::sleep(a.seconds);
    let (c1, cpu1, ccpu1, t1) = (
        agent.counter(counter)?,
        cpu_seconds(pid)?,
        own_and_children_cpu()?,
        Instant::now(),
    );
    let rss_mib = peak_rss_mib(&[pid])?;
    let stats = clients.finish()?;
    agent.alive()?;
    let secs = (t1 - t0).as_secs_f64();
    let events = c1.saturating_sub(c0);
    eprintln!(
        "{name}: {events} events ({}/{}) in {secs:.2} s ({c1} in all), peak RSS {rss_mib:.1} \
         MiB; clients: {} runs, {} failed.",
        counter.0, counter.1, stats.runs, stats.failed
    );
    if events == 0 {
        bail!(
            "{name} accepted no event in the window; log:\n{}",
            agent.log_tail()
        );
    }
    Ok(Measured {
        events_per_s: events as f64 / secs,
        rss_mib,
        cpu_cores: (cpu1 - cpu0) / secs,
        client_cpu_cores: (ccpu1 - ccpu0) / secs,
        counter,
    })
}

// ---------------------------------------------------------------------------------------------

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    harness::report("bench_sources", bench(&args))
}

type SideResult = Option<Result<Measured, String>>;

fn bench(a: &Args) -> Result<()> {
    // Before anything of ours runs: refuse to start on a busy machine.
    quiet_machine("the bench", Duration::ZERO, a.force)?;
    let runs = Run::selected(a);
    require_client_tools(&runs)?;
    println!(
        "bench_sources: network source -> memory (capacity 100000, transactionCapacity {BATCH}) \
         -> null, {} clients, warm-up {} s, window {} s, {} events per client input",
        a.clients,
        a.warmup.as_secs(),
        a.seconds.as_secs(),
        a.lines
    );
    if a.only.runs(Side::Sluice) {
        println!("  sluice: {}", sluice_release_bin()?.display());
    }
    if a.only.runs(Side::Flume) {
        ensure_flume()?;
        println!("  Flume:  Apache Flume {FLUME_VERSION}, -Xmx512m");
    }
    println!(
        "  cores:  {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut dir = tempfile::tempdir()?;
    if a.keep_dir {
        dir.disable_cleanup(true);
        println!("  work directory (kept): {}", dir.path().display());
    }
    let inputs = generate(dir.path(), &runs, a)?;
    let mut results: Vec<(Run, SideResult, SideResult)> = Vec::new();
    for &run in &runs {
        let one = |side: Side| -> SideResult {
            if !a.only.runs(side) {
                return None;
            }
            let what = format!("{} {} ({})", side_name(side), run.scenario(), run.client());
            println!("{what}:");
            let r = quiet_machine(
                &what,
                if a.force { Duration::ZERO } else { a.settle },
                a.force,
            )
            .and_then(|()| run_side(side, run, a, &inputs, dir.path()));
            if let Err(e) = &r {
                eprintln!("{what}: {e:#}");
            }
            Some(r.map_err(|e| format!("{e:#}")))
        };
        let s = one(Side::Sluice);
        let f = one(Side::Flume);
        results.push((run, s, f));
    }
    print_table(a, &results);
    print_notes(&results);
    let failed: Vec<String> = results
        .iter()
        .flat_map(|(run, s, f)| {
            [(Side::Sluice, s), (Side::Flume, f)]
                .into_iter()
                .filter_map(move |(side, r)| match r {
                    Some(Err(e)) => Some(format!(
                        "{} {} ({}): {}",
                        side_name(side),
                        run.scenario(),
                        run.client(),
                        e.lines().next().unwrap_or("")
                    )),
                    _ => None,
                })
        })
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} side(s) could not run:\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
    Ok(())
}

fn ok(r: &SideResult) -> Option<&Measured> {
    r.as_ref().and_then(|r| r.as_ref().ok())
}

fn cell(r: &SideResult, f: impl Fn(&Measured) -> String) -> String {
    match r {
        None => "-".into(),
        Some(Ok(m)) => f(m),
        Some(Err(_)) => "error".into(),
    }
}

fn print_table(a: &Args, results: &[(Run, SideResult, SideResult)]) {
    println!(
        "\n{:<10} {:<8} {:>7} {:>12} {:>12} {:>9} {:>10} {:>10} {:>11} {:>11} {:>15}",
        "scenario",
        "client",
        "clients",
        "sluice ev/s",
        "Flume ev/s",
        "sl/Flume",
        "sl RSS MiB",
        "Fl RSS MiB",
        "sl CPU",
        "Fl CPU",
        "client CPU s/F"
    );
    for (run, s, f) in results {
        let ratio = match (ok(s), ok(f)) {
            (Some(s), Some(f)) if f.events_per_s > 0.0 => {
                format!("{:.2}x", s.events_per_s / f.events_per_s)
            }
            _ => "-".into(),
        };
        let client_cpu = format!(
            "{} / {}",
            cell(s, |m| format!("{:.2}", m.client_cpu_cores)),
            cell(f, |m| format!("{:.2}", m.client_cpu_cores))
        );
        println!(
            "{:<10} {:<8} {:>7} {:>12} {:>12} {:>9} {:>10} {:>10} {:>11} {:>11} {:>15}",
            run.scenario(),
            run.client(),
            a.clients,
            cell(s, |m| thousands(m.events_per_s)),
            cell(f, |m| thousands(m.events_per_s)),
            ratio,
            cell(s, |m| format!("{:.1}", m.rss_mib)),
            cell(f, |m| format!("{:.1}", m.rss_mib)),
            cell(s, |m| format!("{:.2}", m.cpu_cores)),
            cell(f, |m| format!("{:.2}", m.cpu_cores)),
            client_cpu,
        );
    }
    println!("  (CPU in cores over the window; client CPU is approximate, see the bench's docs)");
}

/// Which counter stood in for a missing source counter, and whether logger saturated each
/// side when the raw clients ran too.
fn print_notes(results: &[(Run, SideResult, SideResult)]) {
    for (run, s, f) in results {
        for (side, r) in [(Side::Sluice, s), (Side::Flume, f)] {
            if let Some(m) = ok(r)
                && m.counter != SOURCE_ACCEPTED
            {
                println!(
                    "  note: {} {} registers no source counter; measured {}/{} (its only \
                     source's puts)",
                    side_name(side),
                    run.scenario(),
                    m.counter.0,
                    m.counter.1
                );
            }
        }
    }
    let find = |run: Run| results.iter().find(|(r, ..)| *r == run);
    let (Some(logger), Some(raw)) = (find(Run::SyslogLogger), find(Run::SyslogRaw)) else {
        return;
    };
    for (side, l, r) in [
        (Side::Sluice, &logger.1, &raw.1),
        (Side::Flume, &logger.2, &raw.2),
    ] {
        let (Some(l), Some(r)) = (ok(l), ok(r)) else {
            continue;
        };
        let gain = r.events_per_s / l.events_per_s.max(1.0);
        if gain > 1.2 {
            println!(
                "  note: logger -f is too slow to saturate {}: raw TCP clients got {gain:.2}x its \
                 rate, so its logger row measures logger, not the source",
                side_name(side)
            );
        } else {
            println!(
                "  note: logger -f saturated {} (raw TCP clients: {gain:.2}x its rate)",
                side_name(side)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_realistic_and_differ() {
        let mut g = LogLines::new(3, 0, 1_764_650_000_000);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let l = g.next_line();
            assert!(
                (100..=200).contains(&l.text.len()),
                "{} bytes: {}",
                l.text.len(),
                l.text
            );
            assert!(l.text.is_ascii() && !l.text.contains(['\n', '\\']));
            assert!(seen.insert(l.text));
        }
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(iso8601(1_764_650_000_123), "2025-12-02T04:33:20.123Z");
    }

    #[test]
    fn syslog_and_json_framing() {
        let mut g = LogLines::new(1, 0, 1_764_650_000_000);
        let l = g.next_line();
        let m = rfc3164(&l, 1);
        assert!(m.starts_with('<') && m.ends_with('\n') && m.matches('\n').count() == 1);
        assert!(
            m.contains("Dec  2 04:33:2") && m.contains(" web-01 "),
            "{m}"
        );
        let mut j = String::new();
        json_event(&mut j, &l, 1);
        assert!(j.starts_with("{\"headers\":{\"host\":\"web-01\""), "{j}");
        assert!(
            j.ends_with("\"}") && j.contains(&l.text.replace('"', "\\\"")),
            "{j}"
        );
    }
}
