//! The `sluice` command line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use sluice::agent::Agent;
use sluice::config::sources::{ConfigSource, ConfigSources, HttpOptions};
use sluice::metrics::Registry;
use sluice::metrics::http::MetricsServer;
use sluice::topology::AgentConfig;

mod cli;

/// Events are allocated on source threads and freed on sink threads. On that pattern glibc's
/// `malloc`/`free` took over a quarter of the Kafka source's perf samples; mimalloc's
/// per-thread heaps with delayed remote frees do not (bench_kafka source: 258 k -> 380 k/s).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Log collection agent compatible with Apache Flume"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an agent from a Flume properties file (like `flume-ng agent`).
    Agent {
        /// Agent name: the prefix of the keys to use (`a1` in `a1.sources = r1`).
        #[arg(short = 'n', long = "name")]
        name: String,
        #[command(flatten)]
        conf: ConfArgs,
        /// Flume's configuration directory option; accepted and ignored.
        #[arg(short = 'c', long = "conf")]
        conf_dir: Option<PathBuf>,
        /// Serve metrics over HTTP here (e.g. 127.0.0.1:34545): Flume JSON at /metrics,
        /// Prometheus text at /metrics/prometheus.
        #[arg(long)]
        metrics_addr: Option<String>,
        /// Java-style system properties; `flume.monitoring.type=http` with
        /// `flume.monitoring.port=N` enables metrics on 0.0.0.0:N like Flume.
        #[arg(short = 'D', value_name = "KEY=VALUE")]
        defines: Vec<String>,
        /// Do not poll the config sources for changes.
        #[arg(long)]
        no_reload_conf: bool,
        /// Seconds between checks of the config sources (1 to 86400; default 30, or 300 when a
        /// source is an http(s) URI, as Flume). Flume's name, --poll-interval, is accepted.
        #[arg(long, alias = "poll-interval", value_parser = clap::value_parser!(u64).range(1..=86_400))]
        reload_interval: Option<u64>,
        /// Seconds from SIGTERM/SIGINT until the agent exits, sinks draining meanwhile (0 to
        /// 86400). A second signal exits at once.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=86_400))]
        drain_timeout: u64,
        /// Serve live copies of events at /tap of the metrics server, for `sluice tap`. It
        /// exposes event data to whoever reaches --metrics-addr: keep that on loopback.
        #[arg(long)]
        tap: bool,
    },
    /// Send a file's lines (or stdin's) as events to an Avro source, like `flume-ng avro-client`.
    Send {
        /// Host of the Avro source.
        #[arg(short = 'H', long = "host")]
        host: String,
        /// Port of the Avro source.
        #[arg(short = 'p', long = "port")]
        port: u16,
        /// File to send, one event per line; stdin when absent.
        #[arg(short = 'F', long = "filename")]
        file: Option<PathBuf>,
        /// Header file: `key=value` per line, added to every event (Flume's -R).
        #[arg(short = 'R', long = "headerFile")]
        header_file: Option<PathBuf>,
        /// Events per appendBatch call.
        #[arg(short = 'b', long = "batch-size", default_value_t = 100)]
        batch_size: usize,
        /// Compress with deflate (the source must use compression-type = deflate).
        #[arg(long)]
        deflate: bool,
        #[command(flatten)]
        tls: SendTls,
    },
    /// Validate a config file and print the resolved topology: each component with its type
    /// and the keys set to non-default values; warnings and errors go to stderr.
    Check {
        #[arg(short = 'n', long = "name")]
        name: String,
        #[command(flatten)]
        conf: ConfArgs,
        /// Java-style system properties, for `${sys:NAME}` in values.
        #[arg(short = 'D', value_name = "KEY=VALUE")]
        defines: Vec<String>,
    },
    /// Print the pipeline as Graphviz DOT (sources, interceptors, selectors, channels, sink
    /// groups, sinks); render it with `dot -Tsvg`.
    Graph {
        #[arg(short = 'n', long = "name")]
        name: String,
        #[command(flatten)]
        conf: ConfArgs,
        /// Java-style system properties, for `${sys:NAME}` in values.
        #[arg(short = 'D', value_name = "KEY=VALUE")]
        defines: Vec<String>,
    },
    /// Run config unit tests: feed each test's input events through a source's real
    /// interceptors and selector (no source or sink is started, channels are in-memory
    /// stand-ins) and check what each channel receives. Exit 0 when every test passes, 1 when
    /// one fails, 2 when the config or the test file is invalid.
    Test {
        #[arg(short = 'n', long = "name")]
        name: String,
        #[command(flatten)]
        conf: ConfArgs,
        /// Java-style system properties, for `${sys:NAME}` in values.
        #[arg(short = 'D', value_name = "KEY=VALUE")]
        defines: Vec<String>,
        /// The tests (TOML: `[[tests]]` with name, source, inputs, outputs, dropped, errors).
        tests: PathBuf,
        /// `text` (a line per test, a diff per failure) or `json` (one document, for CI).
        #[arg(long, value_parser = ["text", "json"], default_value = "text")]
        format: String,
    },
    /// Print live events of a running agent started with `--tap`, one JSON object per line:
    /// `{"component", "point", "headers", "body"}` (points: source after its interceptors,
    /// channel, sink, verdict of a guest).
    Tap {
        /// The agent's --metrics-addr (HOST:PORT).
        #[arg(long)]
        addr: String,
        /// Only this component (a source, channel, sink or guest name); repeatable.
        #[arg(long = "component", value_name = "NAME")]
        components: Vec<String>,
        /// Stop after N events (1 to 10^9).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
        limit: Option<u64>,
        /// Keep this fraction of the events (greater than 0, at most 1).
        #[arg(long, value_name = "R", default_value_t = 1.0)]
        sample: f64,
        /// Write every body in base64 (`"base64": true`); by default only bodies that are not
        /// UTF-8 are.
        #[arg(long)]
        base64: bool,
    },
    /// A live dashboard of a running agent (its --metrics-addr): events/s in and out per
    /// source, channel, sink, guest and tenant, channel fill, sink failures and latency,
    /// blocked sources; refreshed every --interval seconds; q quits.
    Top {
        /// The agent's --metrics-addr (IP:PORT).
        #[arg(long)]
        addr: String,
        /// Seconds between refreshes (0.2 to 60).
        #[arg(long, default_value_t = 1.0, value_parser = parse_interval)]
        interval: f64,
    },
    /// Tools for WebAssembly guest authors.
    Wasm {
        #[command(subcommand)]
        command: WasmCommand,
    },
}

/// Where the config comes from (agent, check, graph). Several sources are merged in the order
/// given, `-f` and `--conf-uri` mixed, a later one overriding the keys of an earlier one.
#[derive(Args)]
struct ConfArgs {
    /// A Flume properties file; repeatable.
    #[arg(short = 'f', long = "conf-file", required_unless_present = "conf_uri")]
    conf_file: Vec<PathBuf>,
    /// A config URI: file:, http: or https: (certificates verified against the system's
    /// roots, or the PEM file in SSL_CERT_FILE); repeatable.
    #[arg(short = 'u', long = "conf-uri")]
    conf_uri: Vec<String>,
    /// User name for http(s) config URIs (HTTP Basic, with --conf-password).
    #[arg(long, requires = "conf_password")]
    conf_user: Option<String>,
    /// Password for http(s) config URIs.
    #[arg(long, requires = "conf_user")]
    conf_password: Option<String>,
    /// Seconds one http(s) request may take, connection included (1 to 600).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    conf_timeout: u64,
    /// Command-line order of the sources, filled from the parsed matches.
    #[arg(skip)]
    order: Vec<ConfigSource>,
}

impl ConfArgs {
    /// The sources in command-line order (clap keeps each option's values apart).
    fn order_from(&mut self, matches: &clap::ArgMatches) -> Result<(), String> {
        let files = matches.indices_of("conf_file").into_iter().flatten();
        let uris = matches.indices_of("conf_uri").into_iter().flatten();
        let mut indexed: Vec<(usize, ConfigSource)> = files
            .zip(self.conf_file.iter())
            .map(|(i, f)| (i, ConfigSource::File(f.clone())))
            .collect();
        for (i, u) in uris.zip(self.conf_uri.iter()) {
            indexed.push((i, ConfigSource::from_uri(u)?));
        }
        indexed.sort_by_key(|(i, _)| *i);
        self.order = indexed.into_iter().map(|(_, s)| s).collect();
        Ok(())
    }

    fn sources(&self) -> Result<ConfigSources, sluice::config::ConfigError> {
        let options = HttpOptions {
            user: self.conf_user.clone(),
            password: self.conf_password.clone(),
            timeout: Duration::from_secs(self.conf_timeout),
        };
        ConfigSources::new(self.order.clone(), &options)
    }
}

/// `sluice send` over TLS, as the Avro sink's `ssl`, `truststore`, `trust-all-certs`.
#[derive(Args)]
struct SendTls {
    /// Connect with TLS (the source must have ssl = true).
    #[arg(long)]
    ssl: bool,
    /// CA certificates to trust, PEM (the Avro sink's ssl.ca; a Java truststore must be
    /// exported to PEM first: `keytool -exportcert -rfc`).
    #[arg(long, value_name = "PATH", requires = "ssl")]
    truststore: Option<PathBuf>,
    /// Accepted for Flume's truststore options; a PEM file has no password.
    #[arg(long, value_name = "PASSWORD", requires = "truststore")]
    truststore_password: Option<String>,
    /// PEM (the default); JKS and PKCS12 are refused with the command that converts them.
    #[arg(long, value_name = "TYPE", requires = "truststore")]
    truststore_type: Option<String>,
    /// Accept any server certificate (encrypted, not authenticated).
    #[arg(long, requires = "ssl", conflicts_with = "truststore")]
    trust_all_certs: bool,
}

impl SendTls {
    fn client(&self) -> Result<Option<sluice::avro::client::TlsClient>, String> {
        if !self.ssl {
            return Ok(None);
        }
        let export = "export the CA to PEM with `keytool -exportcert -rfc -keystore \
                      truststore.jks -alias <ca> -file ca.pem` and pass that file";
        if let Some(t) = self.truststore_type.as_deref()
            && !t.eq_ignore_ascii_case("pem")
        {
            return Err(format!(
                "--truststore-type {t}: sluice reads PEM CA files only; {export}"
            ));
        }
        if let Some(path) = &self.truststore {
            let bytes = std::fs::read(path)
                .map_err(|e| format!("cannot read truststore {}: {e}", path.display()))?;
            if !bytes
                .windows(b"-----BEGIN CERTIFICATE-----".len())
                .any(|w| w == b"-----BEGIN CERTIFICATE-----")
            {
                return Err(format!(
                    "truststore {}: no PEM certificate in it (a Java truststore?); {export}",
                    path.display()
                ));
            }
            if self.truststore_password.is_some() {
                tracing::warn!("--truststore-password is ignored: a PEM file has no password.");
            }
        } else if !self.trust_all_certs {
            return Err("--ssl needs --truststore (a PEM CA file) or --trust-all-certs".into());
        }
        Ok(Some(sluice::avro::client::TlsClient {
            ca: self.truststore.clone(),
            trust_all: self.trust_all_certs,
        }))
    }
}

#[derive(Subcommand)]
enum WasmCommand {
    /// Write a ready guest project: the guest (logic split from the bindings glue), native unit
    /// tests (`test.sh`), `build.sh` making NAME.wasm, the WIT, an agent config using it, config
    /// unit tests and sample events.
    New {
        /// The guest's language.
        #[arg(long, value_parser = ["rust", "c", "python", "js"])]
        lang: String,
        /// The world it implements.
        #[arg(long, value_parser = ["interceptor", "router", "sink-selector"])]
        world: String,
        /// The project folder (must not exist, or be empty).
        #[arg(long)]
        dir: PathBuf,
        /// The guest's name (lower-case letters, digits, `-`): the component is NAME.wasm.
        name: String,
    },
    /// Run a guest component over sample events and print its decision per event (JSON lines
    /// on stdout, a summary on stderr).
    Test {
        /// The component (.wasm).
        component: PathBuf,
        /// The world it implements.
        #[arg(long, value_parser = ["interceptor", "router", "sink-selector"], default_value = "interceptor")]
        world: String,
        /// JSON lines: `{"headers": {...}, "body": "..."}` or a bare string; stdin when absent.
        #[arg(long)]
        input: Option<PathBuf>,
        /// `key=value` passed to the guest's init, like `config.key = value` in an agent config.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// Events per batch call.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Channels (router) or sinks (sink selector) that returned indices are checked against.
        #[arg(long, default_value_t = 2)]
        targets: usize,
        /// Memory limit in bytes (k/m/g suffixes accepted).
        #[arg(long, default_value = "64m")]
        memory: String,
        /// Time limit per call, ms.
        #[arg(long, default_value_t = 1000)]
        timeout: u64,
    },
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.2..=60.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}`: seconds from 0.2 to 60")),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,apache_avro=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    init_logging();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let mut command = cli.command;
    if let (
        Command::Agent { conf, .. }
        | Command::Check { conf, .. }
        | Command::Graph { conf, .. }
        | Command::Test { conf, .. },
        Some((_, sub)),
    ) = (&mut command, matches.subcommand())
        && let Err(e) = conf.order_from(sub)
    {
        eprintln!("sluice: {e}");
        return ExitCode::from(2);
    }
    match command {
        Command::Check {
            name,
            conf,
            defines,
        } => {
            sluice::config::substitute::set_system_properties(&defines);
            check(&name, &conf, AgentConfig::describe)
        }
        Command::Graph {
            name,
            conf,
            defines,
        } => {
            sluice::config::substitute::set_system_properties(&defines);
            check(&name, &conf, AgentConfig::graph)
        }
        Command::Top { addr, interval } => cli::top::run(&addr, Duration::from_secs_f64(interval)),
        Command::Tap {
            addr,
            components,
            limit,
            sample,
            base64,
        } => tap_client(&addr, &components, limit, sample, base64),
        Command::Test {
            name,
            conf,
            defines,
            tests,
            format,
        } => {
            sluice::config::substitute::set_system_properties(&defines);
            config_tests(&name, &conf, &tests, format == "json")
        }
        Command::Wasm {
            command:
                WasmCommand::New {
                    lang,
                    world,
                    dir,
                    name,
                },
        } => wasm_new(&lang, &world, &dir, &name),
        Command::Wasm {
            command:
                WasmCommand::Test {
                    component,
                    world,
                    input,
                    config,
                    batch,
                    targets,
                    memory,
                    timeout,
                },
        } => wasm_test(
            &component,
            &world,
            input.as_deref(),
            &config,
            batch,
            targets,
            &memory,
            timeout,
        ),
        Command::Send {
            host,
            port,
            file,
            header_file,
            batch_size,
            deflate,
            tls,
        } => {
            let sent = tls.client().and_then(|tls| {
                send(
                    &host,
                    port,
                    file.as_deref(),
                    header_file.as_deref(),
                    batch_size,
                    deflate,
                    tls,
                )
            });
            match sent {
                Ok(n) => {
                    eprintln!("sluice send: {n} events sent to {host}:{port}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sluice send: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Agent {
            name,
            conf,
            conf_dir: _,
            metrics_addr,
            defines,
            no_reload_conf,
            reload_interval,
            drain_timeout,
            tap,
        } => {
            sluice::config::substitute::set_system_properties(&defines);
            let metrics_addr = metrics_addr.or_else(|| flume_monitoring_addr(&defines));
            let sources = match conf.sources() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("sluice: {e}");
                    return ExitCode::from(2);
                }
            };
            // Flume: 30 s for files, 300 s when a source is read over HTTP.
            let default_interval = if sources.has_remote() { 300 } else { 30 };
            let every = reload_interval.unwrap_or(default_interval).max(1);
            let reload = (!no_reload_conf).then(|| Duration::from_secs(every));
            run_agent(
                &name,
                sources,
                metrics_addr,
                reload,
                Duration::from_secs(drain_timeout),
                tap,
            )
        }
    }
}

/// Loads and validates the config, then prints `render` of it (`check`, `graph`).
fn check(name: &str, conf: &ConfArgs, render: fn(&AgentConfig) -> String) -> ExitCode {
    match load_config(name, conf) {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            print!("{}", render(&c));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Reads and parses agent `name` from the config sources (check, graph, test); on errors
/// prints each (`error: file:line: ...`) and gives exit status 2.
fn load_config(name: &str, conf: &ConfArgs) -> Result<AgentConfig, ExitCode> {
    conf.sources()
        .map_err(sluice::config::ConfigErrors::from)
        .and_then(|mut s| AgentConfig::load_sources(&mut s, name))
        .map_err(|errors| {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            ExitCode::from(2)
        })
}

/// `sluice tap`: streams /tap of an agent to stdout.
fn tap_client(
    addr: &str,
    components: &[String],
    limit: Option<u64>,
    sample: f64,
    base64: bool,
) -> ExitCode {
    use std::io::{BufRead, Write};
    if !(sample > 0.0 && sample <= 1.0) {
        eprintln!("sluice tap: --sample must be greater than 0 and at most 1, not {sample}");
        return ExitCode::from(2);
    }
    let mut query = format!("sample={sample}");
    for c in components {
        query.push_str("&component=");
        query.push_str(&sluice::urlencoded::encode(c));
    }
    if base64 {
        query.push_str("&base64=true");
    }
    let stream = match sluice::tap::connect(addr, &query) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sluice tap: {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut events = 0u64;
    for line in stream.lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("sluice tap: {addr}: {e}");
                return ExitCode::from(1);
            }
        };
        // Keep-alive lines.
        if line.is_empty() {
            continue;
        }
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            // stdout closed (`| head`): done.
            return ExitCode::SUCCESS;
        }
        if !line.starts_with(r#"{"point":"tap""#) {
            events += 1;
            if limit.is_some_and(|l| events >= l) {
                return ExitCode::SUCCESS;
            }
        }
    }
    eprintln!("sluice tap: {addr}: the agent closed the stream");
    ExitCode::from(1)
}

/// `sluice test`: loads the config, runs the tests, prints the results.
fn config_tests(name: &str, conf: &ConfArgs, tests: &Path, json: bool) -> ExitCode {
    use sluice::agent::config_test;
    let config = match load_config(name, conf) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let file = match config_test::load_tests(tests) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if file.tests.is_empty() {
        eprintln!("error: {}: no [[tests]]", tests.display());
        return ExitCode::from(2);
    }
    let results = config_test::run_tests(&config, &file);
    let failed = results.iter().filter(|r| !r.passed).count();
    if json {
        let doc = serde_json::json!({
            "passed": results.len() - failed,
            "failed": failed,
            "tests": results,
        });
        println!("{doc}");
    } else {
        for r in &results {
            println!("{} {}", if r.passed { "ok  " } else { "FAIL" }, r.name);
            for f in &r.failures {
                for line in f.lines() {
                    println!("      {line}");
                }
            }
        }
        println!("{} passed, {failed} failed", results.len() - failed);
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        if !json {
            let names: Vec<&str> = results
                .iter()
                .filter(|r| !r.passed)
                .map(|r| r.name.as_str())
                .collect();
            eprintln!("failed: {}", names.join(", "));
        }
        ExitCode::from(1)
    }
}

fn send(
    host: &str,
    port: u16,
    file: Option<&Path>,
    header_file: Option<&Path>,
    batch_size: usize,
    deflate: bool,
    tls: Option<sluice::avro::client::TlsClient>,
) -> Result<u64, String> {
    use std::io::BufRead;

    use sluice::avro::client::{ClientConfig, RpcClient};
    use sluice::{Event, Headers};

    let headers: Headers = match header_file {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| format!("cannot read header file {}: {e}", p.display()))?
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .filter_map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            })
            .collect(),
        None => Headers::new(),
    };
    let input: Box<dyn BufRead> = match file {
        Some(p) => Box::new(std::io::BufReader::new(
            std::fs::File::open(p).map_err(|e| format!("cannot open {}: {e}", p.display()))?,
        )),
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let mut client = RpcClient::new(ClientConfig {
        host: host.to_string(),
        port,
        connect_timeout: Duration::from_secs(20),
        request_timeout: Duration::from_secs(20),
        deflate: deflate.then_some(6),
        tls,
    });
    let mut batch = Vec::with_capacity(batch_size.max(1));
    let mut sent = 0u64;
    let mut flush = |batch: &mut Vec<Event>| -> Result<(), String> {
        if batch.is_empty() {
            return Ok(());
        }
        client.append_batch(batch).map_err(|e| e.to_string())?;
        sent += batch.len() as u64;
        batch.clear();
        Ok(())
    };
    for line in input.split(b'\n') {
        let mut line = line.map_err(|e| format!("read failed: {e}"))?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        batch.push(Event::with_headers(headers.clone(), line));
        if batch.len() >= batch_size.max(1) {
            flush(&mut batch)?;
        }
    }
    flush(&mut batch)?;
    Ok(sent)
}

fn flume_monitoring_addr(defines: &[String]) -> Option<String> {
    let get = |k: &str| {
        defines
            .iter()
            .find_map(|d| d.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
    };
    match (get("flume.monitoring.type"), get("flume.monitoring.port")) {
        (Some(t), Some(port)) if t.eq_ignore_ascii_case("http") => Some(format!("0.0.0.0:{port}")),
        _ => None,
    }
}

fn run_agent(
    name: &str,
    mut sources: ConfigSources,
    metrics_addr: Option<String>,
    reload: Option<Duration>,
    drain: Duration,
    tap: bool,
) -> ExitCode {
    if tap && metrics_addr.is_none() {
        eprintln!("sluice: --tap needs --metrics-addr (the tap is served on that HTTP server)");
        return ExitCode::from(2);
    }
    let loaded = sources.read().and_then(|docs| {
        let props = sources.parse(&docs)?;
        Ok((docs, props))
    });
    let (documents, config) = match loaded
        .map_err(sluice::config::ConfigErrors::from)
        .and_then(|(docs, props)| Ok((docs, AgentConfig::from_properties(&props, name)?)))
    {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!("{e}");
            }
            eprintln!("sluice: invalid configuration:\n{errors}");
            return ExitCode::from(2);
        }
    };
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let registry = Registry::new();
    let routes: Vec<sluice::metrics::http::Route> = if tap {
        registry.register(
            sluice::metrics::ComponentType::Tap,
            "tap",
            sluice::tap::counters(),
        );
        vec![("/tap", Arc::new(sluice::tap::serve))]
    } else {
        vec![("/tap", Arc::new(sluice::tap::refuse))]
    };
    let _metrics = match metrics_addr.map(|a| MetricsServer::start(&a, registry.clone(), routes)) {
        Some(Ok(server)) => {
            tracing::info!(addr = %server.addr, "Metrics listening on http://{}/metrics.", server.addr);
            Some(server)
        }
        Some(Err(e)) => {
            eprintln!("sluice: {e}");
            return ExitCode::from(1);
        }
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    if let Err(e) = install_signal_handlers(&stop) {
        eprintln!("sluice: cannot install signal handler: {e}");
        return ExitCode::from(1);
    }
    let mut watcher = match ConfigWatcher::new(name, sources, documents, reload) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("sluice: cannot start the config poller: {e}");
            return ExitCode::from(1);
        }
    };
    let mut agent = match Agent::start(config, registry) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sluice: {e}");
            return ExitCode::from(1);
        }
    };
    let mut failed: Vec<(String, String)> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        failed = agent.failures();
        if !failed.is_empty() {
            break;
        }
        watcher.poll(&mut agent);
    }
    // The drain clock starts when the signal arrives, not when sources have stopped.
    stop_agent(agent, Instant::now() + drain, drain, &failed)
}

/// The first SIGTERM/SIGINT sets `stop` (a drain starts); a second one while it runs exits at
/// once (status 130, as a shell reports an interrupted program).
fn install_signal_handlers(stop: &Arc<AtomicBool>) -> std::io::Result<()> {
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // Order matters: the conditional exit must see the flag as the first signal left it.
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())?;
        signal_hook::flag::register(sig, stop.clone())?;
    }
    Ok(())
}

/// Polls the config sources and reloads the agent when the text of any of them changed
/// (Flume's `PollingPropertiesFileConfigurationProvider` / `UriConfigurationProvider`).
/// Reading happens on a thread of its own, so a slow config server never delays the main loop
/// (signals, failure checks); parsing and the reload happen on the main thread.
struct ConfigWatcher<'a> {
    name: &'a str,
    sources: Vec<ConfigSource>,
    /// One message per check from the poller thread (`None` without reload).
    reads: Option<std::sync::mpsc::Receiver<Result<Vec<Vec<u8>>, sluice::config::ConfigError>>>,
    /// Tells the poller thread to end (it is not joined: a read may be waiting on a server).
    stop: Arc<AtomicBool>,
    /// The documents of the config the agent runs, one per source. A reload that fails to
    /// build is retried at the next poll even if no source changed again (a full disk, a port
    /// in use, a guest file still being written can all go away).
    applied: Vec<Vec<u8>>,
    /// Documents that failed to parse: parsing reads only them, so it fails the same way.
    rejected: Option<Vec<Vec<u8>>>,
}

impl Drop for ConfigWatcher<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl<'a> ConfigWatcher<'a> {
    fn new(
        name: &'a str,
        mut sources: ConfigSources,
        applied: Vec<Vec<u8>>,
        every: Option<Duration>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let list = sources.sources().to_vec();
        let reads = match every {
            Some(every) => {
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                let halt = stop.clone();
                std::thread::Builder::new()
                    .name("conf-poller".into())
                    .spawn(move || {
                        while sleep_unless(&halt, every) {
                            let read = sources.read();
                            if halt.load(Ordering::SeqCst) || tx.send(read).is_err() {
                                return;
                            }
                        }
                    })?;
                Some(rx)
            }
            None => None,
        };
        Ok(Self {
            name,
            sources: list,
            reads,
            stop,
            applied,
            rejected: None,
        })
    }

    fn poll(&mut self, agent: &mut Agent) {
        let Some(Ok(documents)) = self.reads.as_ref().map(|r| r.try_recv()) else {
            return;
        };
        let documents = match documents {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e,
                    "Cannot read a config source; keeping the running configuration.");
                return;
            }
        };
        if documents == self.applied || self.rejected.as_ref() == Some(&documents) {
            return;
        }
        let parsed = sluice::config::sources::parse(&self.sources, &documents)
            .map_err(sluice::config::ConfigErrors::from)
            .and_then(|props| AgentConfig::from_properties(&props, self.name));
        match parsed {
            Ok(new) => {
                for w in &new.warnings {
                    tracing::warn!("{w}");
                }
                match agent.reload(new) {
                    Ok(()) => self.applied = documents,
                    Err(e) => tracing::error!(error = %e,
                        "Reload failed; the running pipeline is unchanged and the reload is \
                         retried at the next check."),
                }
            }
            Err(errors) => {
                self.rejected = Some(documents);
                tracing::error!(
                    "Rejected the changed configuration; the running one is kept:\n{errors}"
                );
            }
        }
    }
}

/// Sleeps `d` in short steps; false as soon as `stop` is set.
fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let until = Instant::now() + d;
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(100)));
    }
}

/// Shuts the agent down by `deadline` and reports what is left; status 3 when a component
/// had stopped on its own.
fn stop_agent(
    agent: Agent,
    deadline: Instant,
    drain: Duration,
    failed: &[(String, String)],
) -> ExitCode {
    for (component, why) in failed {
        tracing::error!(component = %component, reason = %why,
            "A component stopped unexpectedly; stopping the agent.");
    }
    tracing::info!(drain = ?drain, "Stopping: sources stopping, draining sinks.");
    let left = agent.shutdown(deadline);
    for (channel, n) in &left {
        if *n > 0 {
            tracing::warn!(channel = %channel, events = n, "Events left in channel at shutdown.");
        } else {
            tracing::info!(channel = %channel, "Channel empty at shutdown.");
        }
    }
    tracing::info!("Agent stopped.");
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

fn wasm_new(lang: &str, world: &str, dir: &Path, name: &str) -> ExitCode {
    use sluice::wasm::Hook;
    use sluice::wasm::scaffold::{Lang, Project, write};
    let (Some(lang), Some(world)) = (
        Lang::parse(lang),
        match world {
            "interceptor" => Some(Hook::Interceptor),
            "router" => Some(Hook::Router),
            "sink-selector" => Some(Hook::SinkSelector),
            _ => None,
        },
    ) else {
        eprintln!("sluice wasm new: unknown --lang {lang} or --world {world}");
        return ExitCode::from(2);
    };
    // C projects build with the sluice-guest-tool installed beside this binary, if any.
    let tool = std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("sluice-guest-tool"))
        .filter(|t| t.is_file())
        .unwrap_or_else(|| PathBuf::from("sluice-guest-tool"));
    let project = Project {
        lang,
        world,
        name: name.to_string(),
        tool,
    };
    match project.files().and_then(|files| write(dir, &files)) {
        Ok(()) => {
            println!(
                "Wrote {} ({} guest `{name}`). Next: cd {} && ./test.sh && ./build.sh",
                dir.display(),
                world.world_name(),
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice wasm new: {e}");
            ExitCode::from(1)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn wasm_test(
    component: &Path,
    world: &str,
    input: Option<&Path>,
    config: &[String],
    batch: usize,
    targets: usize,
    memory: &str,
    timeout: u64,
) -> ExitCode {
    use sluice::wasm::{Hook, tester};
    let mut pairs = vec![
        ("path".to_string(), component.display().to_string()),
        ("limits.memory".to_string(), memory.to_string()),
        ("limits.timeout".to_string(), timeout.to_string()),
        ("reload".to_string(), "false".to_string()),
    ];
    for kv in config {
        let Some((k, v)) = kv.split_once('=') else {
            eprintln!("sluice wasm test: --config {kv}: expected KEY=VALUE");
            return ExitCode::from(2);
        };
        pairs.push((format!("config.{k}"), v.to_string()));
    }
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let wasm_config =
        match sluice::wasm::WasmConfig::from_props(&sluice::config::Props::from_pairs(&refs)) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("sluice wasm test: {e}");
                return ExitCode::from(2);
            }
        };
    let hook = match world {
        "router" => Hook::Router,
        "sink-selector" => Hook::SinkSelector,
        _ => Hook::Interceptor,
    };
    let events = match input {
        Some(p) => std::fs::File::open(p)
            .map_err(|e| tester::TestError::Input(format!("{}: {e}", p.display())))
            .and_then(|f| tester::read_events(std::io::BufReader::new(f), p)),
        None => tester::read_events(std::io::stdin().lock(), Path::new("<stdin>")),
    };
    let plan = tester::TestPlan {
        hook,
        batch,
        targets,
    };
    let result = events.and_then(|events| {
        tester::run(&wasm_config, &plan, &events, &mut std::io::stdout().lock())
    });
    match result {
        Ok(summary) => {
            eprintln!("sluice wasm test: {summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice wasm test: {e}");
            ExitCode::from(1)
        }
    }
}
