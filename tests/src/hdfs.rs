//! A real HDFS for the tests: Hadoop's MiniDFSCluster (one NameNode, one DataNode) on
//! 127.0.0.1 with ephemeral ports, run by a small Java main (`tests/java/MiniDfs.java`)
//! compiled here with `javac` against `org.apache.hadoop:hadoop-client-minicluster` from Maven
//! Central.
//!
//! [`MiniDfs::shared`] starts one cluster per test binary (the first caller waits for it);
//! tests serialise on [`MiniDfs::lock`] because two cores are all a CI machine has. The cluster
//! lives until the test process exits: its stdin then reaches end of file and the Java side
//! shuts the cluster down and deletes its directories. Test data is read back with
//! `hdfs-native`, the client the sink uses, through [`MiniDfs::list`] and [`MiniDfs::read`].

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdfs_native::{Client, ClientBuilder};

use crate::maven;

/// The Hadoop release of the cluster (and of the client jars Flume's HDFS sink runs on).
pub const HADOOP_VERSION: &str = "3.3.6";
const MAIN_SOURCE: &str = include_str!("../java/MiniDfs.java");
const LOG4J: &str = "log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=%d %p %c{1}: %m%n
";

/// The jars MiniDfs.java runs on.
pub fn minicluster_lib() -> Result<PathBuf> {
    let deps = [
        format!("org.apache.hadoop:hadoop-client-minicluster:{HADOOP_VERSION}"),
        format!("org.apache.hadoop:hadoop-client-api:{HADOOP_VERSION}"),
        format!("org.apache.hadoop:hadoop-client-runtime:{HADOOP_VERSION}"),
        // MiniDFSCluster's shaded jar leaves these to the test classpath.
        "junit:junit:4.13.2".to_string(),
        "org.slf4j:slf4j-reload4j:1.7.36".to_string(),
        // Reads avro_event files back as Flume and avro-tools do.
        "org.apache.avro:avro:1.11.0".to_string(),
    ];
    let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
    // The directory names the dependency list, so changing it fetches afresh.
    let tag = fnv(&deps.join(" ")) as u32;
    let home = maven::cache_dir(&format!("minidfs-{HADOOP_VERSION}-{tag:08x}"))?;
    maven::fetch(&home, &deps)
}

/// The jars Flume 1.11's HDFS sink needs on top of Flume's own classpath: the sink
/// (`org.apache.flume.flume-ng-sinks:flume-hdfs-sink`) and Hadoop's shaded client. Only these
/// three go on the classpath; their transitive jars are already in Flume's `lib/`.
pub fn flume_hdfs_jars() -> Result<Vec<PathBuf>> {
    let home = maven::cache_dir(&format!("flume-hdfs-sink-{}", crate::flume::FLUME_VERSION))?;
    let sink = format!(
        "org.apache.flume.flume-ng-sinks:flume-hdfs-sink:{}",
        crate::flume::FLUME_VERSION
    );
    let api = format!("org.apache.hadoop:hadoop-client-api:{HADOOP_VERSION}");
    let runtime = format!("org.apache.hadoop:hadoop-client-runtime:{HADOOP_VERSION}");
    let lib = maven::fetch(&home, &[&sink, &api, &runtime])?;
    let jars = [
        lib.join(format!(
            "flume-hdfs-sink-{}.jar",
            crate::flume::FLUME_VERSION
        )),
        lib.join(format!("hadoop-client-api-{HADOOP_VERSION}.jar")),
        lib.join(format!("hadoop-client-runtime-{HADOOP_VERSION}.jar")),
    ];
    for j in &jars {
        if !j.is_file() {
            bail!("{} is missing after the Maven fetch", j.display());
        }
    }
    Ok(jars.to_vec())
}

/// FNV-1a, to name cache directories after their inputs.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Compiles MiniDfs.java into `<cache>/classes-<hash>` unless already there.
fn compile_main(lib: &Path) -> Result<PathBuf> {
    let hash = fnv(MAIN_SOURCE);
    let home = lib.parent().context("the jar directory has no parent")?;
    let classes = home.join(format!("classes-{hash:016x}"));
    if classes.join("MiniDfs.class").is_file() {
        return Ok(classes);
    }
    maven::require_tool("javac", "-version", "the MiniDFSCluster fixture")?;
    let staging = home.join(format!("classes.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    let src = staging.join("MiniDfs.java");
    std::fs::write(&src, MAIN_SOURCE)?;
    std::fs::write(staging.join("log4j.properties"), LOG4J)?;
    let out = Command::new("javac")
        .arg("-cp")
        .arg(lib.join("*"))
        .arg("-d")
        .arg(&staging)
        .arg(&src)
        .stdin(Stdio::null())
        .output()
        .context("cannot run javac")?;
    if !out.status.success() {
        bail!(
            "javac MiniDfs.java failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if std::fs::rename(&staging, &classes).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
        if !classes.join("MiniDfs.class").is_file() {
            bail!(
                "cannot move the compiled classes into {}",
                classes.display()
            );
        }
    }
    Ok(classes)
}

/// One Avro record as Java read it: schema full name, sorted headers, body.
pub type AvroRecord = (String, Vec<(String, String)>, Vec<u8>);

/// A running MiniDFSCluster.
pub struct MiniDfs {
    /// `hdfs://127.0.0.1:<port>`.
    pub url: String,
    child: Mutex<Child>,
    stdin: Mutex<ChildStdin>,
    lines: Mutex<Receiver<String>>,
    /// The JVM's stderr (Hadoop's log at WARN).
    pub log: PathBuf,
    runtime: tokio::runtime::Runtime,
    client: Client,
    serial: Mutex<()>,
}

impl MiniDfs {
    /// The cluster of this test binary, started on first use.
    pub fn shared() -> Result<&'static MiniDfs> {
        static CLUSTER: OnceLock<Result<MiniDfs, String>> = OnceLock::new();
        CLUSTER
            .get_or_init(|| Self::start().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("MiniDFSCluster did not start: {e}"))
    }

    /// Serialises the tests that use the cluster.
    pub fn lock(&self) -> MutexGuard<'_, ()> {
        self.serial
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn start() -> Result<Self> {
        let lib = minicluster_lib()?;
        let classes = compile_main(&lib)?;
        let base = std::env::temp_dir().join(format!("sluice-minidfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base)?;
        let log = base.with_extension("log");
        let started = Instant::now();
        let mut child = Command::new("java")
            .arg("-Xmx512m")
            .arg(format!(
                "-Dlog4j.configuration=file:{}",
                classes.join("log4j.properties").display()
            ))
            .arg("-cp")
            .arg(format!("{}:{}", classes.display(), lib.join("*").display()))
            .arg("MiniDfs")
            .arg(&base)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start java for MiniDFSCluster")?;
        let stdin = child.stdin.take().context("no stdin pipe")?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let url = loop {
            match rx.recv_timeout(Duration::from_secs(180)) {
                Ok(l) => {
                    if let Some(u) = l.strip_prefix("NAMENODE ") {
                        break u.trim().to_string();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    bail!("MiniDFSCluster did not print its NameNode address; log:\n{text}");
                }
            }
        };
        eprintln!("MiniDFSCluster at {url} after {:.1?}.", started.elapsed());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let client = ClientBuilder::new()
            .with_url(&url)
            .with_io_runtime(runtime.handle().clone())
            .build()?;
        Ok(Self {
            url,
            child: Mutex::new(child),
            stdin: Mutex::new(stdin),
            lines: Mutex::new(rx),
            log,
            runtime,
            client,
            serial: Mutex::new(()),
        })
    }

    /// Sends a command to MiniDfs.java and waits for its answer.
    pub fn command(&self, cmd: &str) -> Result<()> {
        self.command_output(cmd).map(drop)
    }

    /// Like [`Self::command`], returning the lines printed before the answer.
    pub fn command_output(&self, cmd: &str) -> Result<Vec<String>> {
        let mut output = Vec::new();
        let lines = self
            .lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        {
            let mut stdin = self
                .stdin
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            writeln!(stdin, "{cmd}")?;
            stdin.flush()?;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) if l == format!("DONE {cmd}") => return Ok(output),
                Ok(l) if l.starts_with(&format!("FAILED {cmd}")) => bail!("{l}"),
                Ok(l) => output.push(l),
                Err(RecvTimeoutError::Timeout) => bail!("MiniDFSCluster did not answer `{cmd}`"),
                Err(RecvTimeoutError::Disconnected) => {
                    let mut child = self
                        .child
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    bail!("MiniDFSCluster exited ({:?})", child.try_wait());
                }
            }
        }
    }

    pub fn stop_datanode(&self) -> Result<()> {
        self.command("stop-datanode")
    }

    pub fn start_datanode(&self) -> Result<()> {
        self.command("start-datanode")
    }

    /// `(key, value class, value)` of every record of a SequenceFile, read by Hadoop's own
    /// `SequenceFile.Reader` in the cluster's JVM.
    pub fn read_sequence_file(&self, path: &str) -> Result<Vec<(i64, String, Vec<u8>)>> {
        let mut records = Vec::new();
        for line in self.command_output(&format!("read-seq {path}"))? {
            let Some(rest) = line.strip_prefix("RECORD ") else {
                continue;
            };
            let parts: Vec<&str> = rest.split(' ').collect();
            let [key, class, hex] = parts[..] else {
                bail!("unexpected line from read-seq: {line}");
            };
            let value = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()?;
            records.push((key.parse()?, class.to_string(), value));
        }
        Ok(records)
    }

    /// `(schema full name, headers, body)` of every record of an Avro container file, read by
    /// Apache Avro's Java `DataFileStream` in the cluster's JVM.
    /// The lines of a compressed file as Hadoop's own codec (chosen by the file's extension,
    /// like `hadoop fs -text`) reads them: (codec class, lines).
    pub fn read_with_hadoop_codec(&self, path: &str) -> Result<(String, Vec<String>)> {
        let mut codec = String::new();
        let mut lines = Vec::new();
        for line in self.command_output(&format!("read-codec {path}"))? {
            if let Some(c) = line.strip_prefix("CODEC ") {
                codec = c.to_string();
            } else if let Some(hex) = line.strip_prefix("LINE ") {
                let bytes = (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
                    .collect::<Result<Vec<u8>, _>>()?;
                lines.push(String::from_utf8(bytes)?);
            }
        }
        Ok((codec, lines))
    }

    /// Every datum of an Avro container file of any schema, as Apache Avro's Java reader reads
    /// it and its writer encodes it again: (schema full name, datum bytes).
    pub fn read_avro_datums(&self, path: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        for line in self.command_output(&format!("read-datums {path}"))? {
            let Some(rest) = line.strip_prefix("DATUM ") else {
                continue;
            };
            let (name, hex) = rest
                .split_once(' ')
                .with_context(|| format!("unexpected line from read-datums: {line}"))?;
            let bytes = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()?;
            out.push((name.to_string(), bytes));
        }
        Ok(out)
    }

    pub fn read_avro_file(&self, path: &str) -> Result<Vec<AvroRecord>> {
        let unhex = |hex: &str| {
            (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
        };
        let mut records = Vec::new();
        for line in self.command_output(&format!("read-avro {path}"))? {
            let Some(rest) = line.strip_prefix("RECORD ") else {
                continue;
            };
            let parts: Vec<&str> = rest.split(' ').collect();
            let [name, headers, body] = parts[..] else {
                bail!("unexpected line from read-avro: {line}");
            };
            let headers = String::from_utf8(unhex(headers)?)?;
            let headers = headers
                .split(';')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            records.push((name.to_string(), headers, unhex(body)?));
        }
        Ok(records)
    }

    /// `hdfs://127.0.0.1:<port><path>`.
    pub fn uri(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Every file under `dir` (recursively), sorted by path; empty when `dir` is missing.
    pub fn list(&self, dir: &str) -> Result<Vec<(String, usize)>> {
        let listed = self.runtime.block_on(self.client.list_status(dir, true));
        let mut files: Vec<(String, usize)> = match listed {
            Ok(l) => l
                .into_iter()
                .filter(|s| !s.isdir)
                .map(|s| (s.path, s.length))
                .collect(),
            Err(hdfs_native::HdfsError::FileNotFound(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        files.sort();
        Ok(files)
    }

    /// Writes `bytes` to a new file `path` (e.g. a schema for `flume.avro.schema.url`).
    pub fn write(&self, path: &str, bytes: &[u8]) -> Result<()> {
        self.runtime
            .block_on(async {
                let mut w = self
                    .client
                    .create(path, hdfs_native::WriteOptions::default())
                    .await?;
                w.write_bytes(bytes::Bytes::copy_from_slice(bytes)).await?;
                w.close().await?;
                Ok::<_, anyhow::Error>(())
            })
            .with_context(|| format!("cannot write {path} to HDFS"))
    }

    /// A file's content (up to its visible length, which covers `hsync`ed data).
    pub fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.runtime
            .block_on(async {
                let mut r = self.client.read(path).await?;
                let len = r.file_length();
                Ok::<_, anyhow::Error>(r.read_bytes(len).await?.to_vec())
            })
            .with_context(|| format!("cannot read {path} from HDFS"))
    }
}
