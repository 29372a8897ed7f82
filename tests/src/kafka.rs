//! A real Apache Kafka broker (KRaft, one node acting as broker and controller) as a child
//! process on loopback.
//!
//! The jars come from Maven Central (`org.apache.kafka:kafka_2.13` and its runtime
//! dependencies, plus log4j2 so the broker writes a log) through [`crate::maven`], cached in
//! `~/.cache/sluice-tests/kafka-<version>/lib`. [`KafkaBroker::start`] writes a
//! `server.properties` with two ports that were free on 127.0.0.1 (client and controller),
//! formats the log directory with `kafka.tools.StorageTool` (a fresh cluster id per broker),
//! then runs `kafka.Kafka` with `-Xmx512m` and waits until the client port accepts
//! connections. [`KafkaBroker::restart`] stops and starts the same broker (same ports, same
//! data) for failure tests.
//!
//! [`shared`] starts one broker per test binary on first use; a watchdog shell process kills
//! the JVM when the test process exits, since statics are never dropped. Tests that share it
//! take [`serial`] so they run one at a time (and a restart never surprises another test).
//!
//! Besides PLAINTEXT the broker listens with TLS (`ssl_bootstrap`, client certificate
//! required) and SASL_SSL (`sasl_bootstrap`, SCRAM and PLAIN user [`SASL_USER`], created at
//! format time with `--add-scram`); the CA and the Java key and trust stores are made with
//! `keytool` ([`KafkaStores`]).
//!
//! Topics are created and test records produced or counted with `rdkafka` (the same bundled
//! librdkafka the agent uses).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::tls::{KafkaStores, STORE_PASSWORD};
use crate::{free_port, maven, wait_for};

/// The SASL user the fixture creates (SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN).
pub const SASL_USER: &str = "alice";
/// Its password.
pub const SASL_PASSWORD: &str = "alice-secret";

/// The Kafka release the fixture runs.
pub const KAFKA_VERSION: &str = "4.3.1";
/// log4j2 as Flume's fixture uses it: Kafka 4.3 logs through slf4j 1.7, so the binding is
/// `log4j-slf4j-impl`.
const LOG4J_VERSION: &str = "2.18.0";

fn home() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SLUICE_KAFKA_HOME") {
        return Ok(PathBuf::from(p));
    }
    maven::cache_dir(&format!("kafka-{KAFKA_VERSION}"))
}

/// Fetches the broker's jars if needed; returns the `lib/` directory.
pub fn ensure_kafka() -> Result<PathBuf> {
    let pom = maven::pom(
        "kafka-runtime",
        &[
            ("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
            ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
            (
                "org.apache.logging.log4j",
                "log4j-slf4j-impl",
                LOG4J_VERSION,
            ),
        ],
    );
    maven::ensure_classpath(
        &home()?,
        &pom,
        "kafka_2.13-",
        &format!("the Kafka {KAFKA_VERSION} fixture"),
    )
}

/// Fetches `kafka-tools` (Kafka's own `ProducerPerformance`) if needed; returns its `lib/`.
pub fn ensure_kafka_tools() -> Result<PathBuf> {
    let pom = maven::pom(
        "kafka-tools-runtime",
        &[
            ("org.apache.kafka", "kafka-tools", KAFKA_VERSION),
            ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
            (
                "org.apache.logging.log4j",
                "log4j-slf4j-impl",
                LOG4J_VERSION,
            ),
        ],
    );
    maven::ensure_classpath(
        &maven::cache_dir(&format!("kafka-tools-{KAFKA_VERSION}"))?,
        &pom,
        "kafka-tools-",
        &format!("Kafka {KAFKA_VERSION}'s ProducerPerformance"),
    )
}

/// What Kafka's `ProducerPerformance` printed last.
#[derive(Clone, Copy, Debug)]
pub struct ProducerPerf {
    pub records: u64,
    pub records_per_s: f64,
    pub mb_per_s: f64,
}

fn log4j2_xml(log_file: &Path) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="file" fileName="{}" append="true">
      <PatternLayout pattern="%d{{ISO8601}} %-5p [%t] %c{{1}}: %m%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/>
    <Logger name="org.apache.kafka" level="WARN"/>
    <Root level="WARN"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"#,
        log_file.display()
    )
}

/// A running single-node KRaft broker, killed on drop.
pub struct KafkaBroker {
    child: Option<Child>,
    watchdog: Option<Child>,
    /// `127.0.0.1:<port>` for clients.
    pub bootstrap: String,
    /// The TLS listener, which requires a client certificate signed by [`Self::stores`]' CA.
    pub ssl_bootstrap: String,
    /// The SASL_SSL listener: SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN for user
    /// [`SASL_USER`] with [`SASL_PASSWORD`]; no client certificate.
    pub sasl_bootstrap: String,
    /// The CA and stores the TLS listeners and their clients use.
    pub stores: KafkaStores,
    pub dir: PathBuf,
    lib: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl KafkaBroker {
    /// Formats a new log directory under a fresh temporary directory and starts the broker.
    pub fn start() -> Result<Self> {
        let lib = ensure_kafka()?;
        let tmp = tempfile::Builder::new().prefix("sluice-kafka-").tempdir()?;
        let dir = tmp.path().to_path_buf();
        let port = free_port()?;
        let controller = free_port()?;
        let ssl_port = free_port()?;
        let sasl_port = free_port()?;
        let data = dir.join("data");
        let tls = dir.join("tls");
        std::fs::create_dir_all(&tls)?;
        let stores = KafkaStores::create(&tls)?;
        let pw = STORE_PASSWORD;
        let props = format!(
            "\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller},SSL://127.0.0.1:{ssl_port},SASL_SSL://127.0.0.1:{sasl_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},SSL://127.0.0.1:{ssl_port},SASL_SSL://127.0.0.1:{sasl_port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL
ssl.keystore.type=PKCS12
ssl.keystore.location={keystore}
ssl.keystore.password={pw}
ssl.key.password={pw}
ssl.truststore.type=PKCS12
ssl.truststore.location={truststore}
ssl.truststore.password={pw}
listener.name.ssl.ssl.client.auth=required
listener.name.sasl_ssl.ssl.client.auth=none
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_{SASL_USER}=\"{SASL_PASSWORD}\";
log.dirs={}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.consumer.heartbeat.interval.ms=1000
group.consumer.min.heartbeat.interval.ms=1000
message.max.bytes=1048588
",
            data.display(),
            keystore = stores.broker_keystore.display(),
            truststore = stores.truststore_p12.display(),
        );
        std::fs::write(dir.join("server.properties"), props)?;
        std::fs::write(dir.join("log4j2.xml"), log4j2_xml(&dir.join("broker.log")))?;
        let cluster_id = cluster_id();
        let out = Command::new("java")
            .arg("-Xmx256m")
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                dir.join("log4j2.xml").display()
            ))
            .arg("-cp")
            .arg(lib.join("*"))
            .arg("kafka.tools.StorageTool")
            .args(["format", "-t", &cluster_id, "-c"])
            .arg(dir.join("server.properties"))
            .args([
                "--add-scram",
                &format!("SCRAM-SHA-256=[name={SASL_USER},password={SASL_PASSWORD}]"),
            ])
            .args([
                "--add-scram",
                &format!("SCRAM-SHA-512=[name={SASL_USER},password={SASL_PASSWORD}]"),
            ])
            .stdin(Stdio::null())
            .output()
            .context("cannot run java for kafka.tools.StorageTool")?;
        if !out.status.success() {
            bail!(
                "kafka-storage format failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut broker = Self {
            child: None,
            watchdog: None,
            bootstrap: format!("127.0.0.1:{port}"),
            ssl_bootstrap: format!("127.0.0.1:{ssl_port}"),
            sasl_bootstrap: format!("127.0.0.1:{sasl_port}"),
            stores,
            dir,
            lib,
            _tmp: Some(tmp),
        };
        broker.launch()?;
        Ok(broker)
    }

    fn launch(&mut self) -> Result<()> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.out"))?;
        let child = Command::new("java")
            .arg("-Xmx512m")
            .arg("-XX:+UseSerialGC")
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.dir.join("log4j2.xml").display()
            ))
            .arg("-cp")
            .arg(self.lib.join("*"))
            .arg("kafka.Kafka")
            .arg(self.dir.join("server.properties"))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("cannot start java for kafka.Kafka")?;
        // Statics are never dropped: kill the JVM when this test process goes away.
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {me} 2>/dev/null && kill -0 {jvm} 2>/dev/null; do sleep 1; done; \
                 kill -9 {jvm} 2>/dev/null",
                me = std::process::id(),
                jvm = child.id()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the broker watchdog")?;
        self.child = Some(child);
        self.watchdog = Some(watchdog);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let addr = self.bootstrap.clone();
        let child = self.child.as_mut().context("broker not started")?;
        let r = wait_for(
            "the Kafka broker to answer",
            Duration::from_secs(90),
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some(Err(format!("the broker exited with {status}")));
                }
                let sock = addr.parse().ok()?;
                std::net::TcpStream::connect_timeout(&sock, Duration::from_millis(200)).ok()?;
                let client: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &addr)
                    .create()
                    .ok()?;
                let md = client.fetch_metadata(None, Duration::from_secs(2)).ok()?;
                (!md.brokers().is_empty()).then_some(Ok(()))
            },
        );
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => bail!(
                "{e}; output:\n{}\nlog:\n{}",
                self.out_text(),
                self.log_tail(40)
            ),
            Err(e) => bail!(
                "{e}; output:\n{}\nlog:\n{}",
                self.out_text(),
                self.log_tail(40)
            ),
        }
    }

    pub fn out_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("broker.out")).unwrap_or_default()
    }

    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the JVM (SIGKILL) and its watchdog.
    pub fn kill(&mut self) -> Result<()> {
        for c in [self.child.take(), self.watchdog.take()]
            .into_iter()
            .flatten()
        {
            let mut c = c;
            if c.try_wait()?.is_none() {
                c.kill()?;
            }
            c.wait()?;
        }
        Ok(())
    }

    /// Stops the broker (SIGTERM, then SIGKILL after 20 s).
    pub fn stop(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = wait_for("the broker to stop", Duration::from_secs(20), || {
                c.try_wait().ok().flatten()
            });
        }
        self.kill()
    }

    /// Starts the stopped broker again with the same ports and data.
    pub fn start_again(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("the broker is still running");
        }
        self.launch()
    }

    /// Creates `topic` with `partitions` partitions (replication 1) and waits for its metadata.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .context("cannot create a Kafka admin client")?;
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = block_on(admin.create_topics([&new], &opts))
            .with_context(|| format!("cannot create topic {topic}"))?;
        for r in results {
            if let Err((name, e)) = r {
                bail!("cannot create topic {name}: {e}");
            }
        }
        let probe: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()?;
        wait_for(
            &format!("topic {topic} to have {partitions} partitions with leaders"),
            Duration::from_secs(30),
            || {
                let md = probe
                    .fetch_metadata(Some(topic), Duration::from_secs(2))
                    .ok()?;
                let t = md.topics().first()?;
                let ready = t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions().iter().all(|p| p.leader() >= 0);
                ready.then_some(())
            },
        )
    }

    /// Produces `records` (key, value) to `topic` and waits until all are acknowledged.
    pub fn produce(&self, topic: &str, records: &[(Option<String>, Vec<u8>)]) -> Result<()> {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .context("cannot create a Kafka producer")?;
        for (key, value) in records {
            let mut rec: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).payload(value);
            if let Some(k) = key {
                rec = rec.key(k.as_str());
            }
            let mut rec = rec;
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((e, r)) => {
                        if e.rdkafka_error_code()
                            != Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        {
                            bail!("cannot produce to {topic}: {e}");
                        }
                        rec = r;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        }
        producer
            .flush(Duration::from_secs(60))
            .with_context(|| format!("producing to {topic} did not finish"))?;
        Ok(())
    }

    /// Fills `topic` with `count` records of `body` bytes (no key) as fast as one producer can,
    /// for benchmarks.
    pub fn produce_bulk(&self, topic: &str, count: u64, body: usize) -> Result<()> {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("acks", "1")
            .set("linger.ms", "20")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "1000000")
            .create()
            .context("cannot create a Kafka producer")?;
        let value = vec![b'x'; body];
        for _ in 0..count {
            let mut rec: BaseRecord<'_, (), [u8]> = BaseRecord::to(topic).payload(&value);
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((e, r)) => {
                        if e.rdkafka_error_code()
                            != Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        {
                            bail!("cannot produce to {topic}: {e}");
                        }
                        rec = r;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
        producer
            .flush(Duration::from_secs(300))
            .with_context(|| format!("producing to {topic} did not finish"))?;
        Ok(())
    }

    /// Runs Kafka's own producer benchmark (`org.apache.kafka.tools.ProducerPerformance`,
    /// kafka-tools) against `bootstrap` (one of this broker's listeners): `records` records of
    /// `size` bytes to `topic` as fast as it can, with the producer settings of
    /// `producer_config` (a properties file: `bootstrap.servers` and any TLS keys go there).
    pub fn producer_performance(
        &self,
        topic: &str,
        records: u64,
        size: usize,
        producer_config: &str,
    ) -> Result<ProducerPerf> {
        let lib = ensure_kafka_tools()?;
        let conf = self.dir.join(format!("producer-perf-{topic}.properties"));
        std::fs::write(&conf, producer_config)?;
        std::fs::write(
            self.dir.join("tools-log4j2.xml"),
            log4j2_xml(&self.dir.join("tools.log")),
        )?;
        let out = Command::new("java")
            .arg("-Xmx512m")
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.dir.join("tools-log4j2.xml").display()
            ))
            .arg("-cp")
            .arg(lib.join("*"))
            .arg("org.apache.kafka.tools.ProducerPerformance")
            .args(["--topic", topic, "--num-records", &records.to_string()])
            .args(["--record-size", &size.to_string(), "--throughput", "-1"])
            .arg("--producer.config")
            .arg(&conf)
            .stdin(Stdio::null())
            .output()
            .context("cannot run java for ProducerPerformance")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "ProducerPerformance failed ({}):\n{text}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // "1000000 records sent, 512345.6 records/sec (125.08 MB/sec), …"
        let last = text
            .lines()
            .rev()
            .find(|l| l.contains(" records sent, "))
            .with_context(|| format!("no summary in ProducerPerformance's output:\n{text}"))?;
        let num = |before: &str| -> Option<f64> {
            let head = last.split(before).next()?;
            head.rsplit([' ', '(']).next()?.parse().ok()
        };
        match (num(" records sent"), num(" records/sec"), num(" MB/sec")) {
            (Some(n), Some(rps), Some(mbps)) => Ok(ProducerPerf {
                records: n as u64,
                records_per_s: rps,
                mb_per_s: mbps,
            }),
            _ => bail!("cannot read ProducerPerformance's summary: {last}"),
        }
    }

    /// Produces records with headers through a raw producer.
    pub fn producer(&self) -> Result<ThreadedProducer<DefaultProducerContext>> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("acks", "all")
            .create()
            .context("cannot create a Kafka producer")
    }

    /// The sum over partitions of the high watermarks of `topic`: how many records it holds.
    pub fn record_count(&self, topic: &str) -> Result<i64> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()?;
        let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let t = md.topics().first().context("no topic metadata")?;
        let mut total = 0;
        for p in t.partitions() {
            let (lo, hi) = c.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            total += hi - lo;
        }
        Ok(total)
    }

    /// Reads every record of `topic` from the beginning (values only), up to `expected`
    /// records or `timeout`.
    pub fn read_all(&self, topic: &str, expected: usize, timeout: Duration) -> Result<Vec<Record>> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", format!("reader-{}", cluster_id()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()?;
        c.subscribe(&[topic])?;
        let deadline = std::time::Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < expected && std::time::Instant::now() < deadline {
            use rdkafka::message::{Headers, Message};
            match c.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|x| {
                                    (
                                        x.key.to_string(),
                                        x.value.map(<[u8]>::to_vec).unwrap_or_default(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push(Record {
                        partition: m.partition(),
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                        headers,
                    });
                }
                Some(Err(e)) => bail!("reading {topic}: {e}"),
                None => {}
            }
        }
        Ok(out)
    }
}

/// One record read back by [`KafkaBroker::read_all`].
#[derive(Clone, Debug)]
pub struct Record {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A Kafka cluster id: 16 random bytes in URL-safe base64 without padding (22 characters),
/// starting with a letter.
fn cluster_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits: u128 = 0;
    for i in 0..2u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        bits = (bits << 64) | u128::from(h.finish());
    }
    (0..22)
        .map(|i| {
            let six = ((bits >> (i * 6)) & 63) as usize;
            // A leading `-` would make kafka-storage read the id as an option: the first
            // character is a letter (52 of the 64).
            let c = if i == 0 { six % 52 } else { six };
            ALPHABET[c] as char
        })
        .collect()
}

/// The broker shared by the tests of this binary, started on first use.
pub fn shared() -> Result<&'static Mutex<KafkaBroker>> {
    static BROKER: OnceLock<Mutex<KafkaBroker>> = OnceLock::new();
    static START: Mutex<()> = Mutex::new(());
    let _g = START
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(b) = BROKER.get() {
        return Ok(b);
    }
    let broker = KafkaBroker::start()?;
    Ok(BROKER.get_or_init(|| Mutex::new(broker)))
}

/// Serialises the tests that use [`shared`]: hold the guard for the whole test.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Locks the shared broker (a poisoned lock from a failed test is still usable).
pub fn lock(b: &'static Mutex<KafkaBroker>) -> MutexGuard<'static, KafkaBroker> {
    b.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on this thread (rdkafka's admin futures are completed by its
/// own background thread, so parking until woken is enough).
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
}
