//! The `hdfs` sink against a real HDFS (Hadoop's MiniDFSCluster): rolls, path escapes, file
//! formats read back event by event, SIGKILL recovery of in-use files, DataNode restart.
//! Files are read back with `hdfs-native`. Every wait is bounded; nothing asserts timings.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use sluice_integration::hdfs::MiniDfs;
use sluice_integration::{Sluice, free_port, run_sluice, wait_for};

const WAIT: Duration = Duration::from_secs(90);

fn channel(name: &str) -> String {
    format!(
        "a1.channels.{name}.type = memory\n\
         a1.channels.{name}.capacity = 100000\n\
         a1.channels.{name}.transactionCapacity = 1000\n"
    )
}

/// An `hdfs` sink `name` reading `ch`, writing under `dir`, plus extra `hdfs.*`/serializer keys.
fn sink(name: &str, ch: &str, dfs: &MiniDfs, dir: &str, extra: &[(&str, &str)]) -> String {
    let mut s = format!(
        "a1.sinks.{name}.type = hdfs\n\
         a1.sinks.{name}.channel = {ch}\n\
         a1.sinks.{name}.hdfs.path = {}\n\
         a1.sinks.{name}.hdfs.retryInterval = 1\n",
        dfs.uri(dir)
    );
    if !extra.iter().any(|(k, _)| *k == "hdfs.fileType") {
        s.push_str(&format!("a1.sinks.{name}.hdfs.fileType = DataStream\n"));
    }
    for (k, v) in extra {
        s.push_str(&format!("a1.sinks.{name}.{k} = {v}\n"));
    }
    s
}

fn seq_source(total: u64, batch: u64, channels: &str) -> String {
    format!(
        "a1.sources = r1\n\
         a1.sources.r1.type = seq\n\
         a1.sources.r1.totalEvents = {total}\n\
         a1.sources.r1.batchSize = {batch}\n\
         a1.sources.r1.channels = {channels}\n"
    )
}

fn drained(agent: &Sluice, sink: &str) -> u64 {
    agent
        .counter(&format!("SINK.{sink}"), "EventDrainSuccessCount")
        .unwrap_or(0)
}

fn wait_drained(agent: &Sluice, sink: &str, n: u64) -> Result<()> {
    wait_for(&format!("{sink} to deliver {n} events"), WAIT, || {
        (drained(agent, sink) >= n).then_some(())
    })
    .with_context(|| agent.log_text())
}

/// SIGTERM, then waits for a clean exit (the sink closes and renames its files).
fn stop(mut agent: Sluice) -> Result<()> {
    agent.signal("TERM")?;
    let code = agent.wait(WAIT)?;
    if code != Some(0) {
        bail!("sluice exited with {code:?}; log:\n{}", agent.log_text());
    }
    Ok(())
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::to_string)
        .collect()
}

/// `(name, lines)` of every file under `dir`, in name order (the file counter grows).
fn text_files(dfs: &MiniDfs, dir: &str) -> Result<Vec<(String, Vec<String>)>> {
    dfs.list(dir)?
        .into_iter()
        .map(|(p, _)| Ok((p.clone(), lines(&dfs.read(&p)?))))
        .collect()
}

fn no_tmp(dfs: &MiniDfs, dir: &str) -> Result<()> {
    let left: Vec<String> = dfs
        .list(dir)?
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.ends_with(".tmp"))
        .collect();
    if !left.is_empty() {
        bail!("in-use files left under {dir}: {left:?}");
    }
    Ok(())
}

fn numbers(range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

#[test]
fn rolls_by_count_size_and_interval() -> Result<()> {
    let dfs = MiniDfs::shared()?;
    let _serial = dfs.lock();
    let tmp = tempfile::tempdir()?;
    let none = [
        ("hdfs.rollCount", "0"),
        ("hdfs.rollSize", "0"),
        ("hdfs.rollInterval", "0"),
    ];
    let with = |k: &'static str, v: &'static str| -> Vec<(&'static str, &'static str)> {
        let mut e: Vec<(&str, &str)> = none.iter().copied().filter(|(x, _)| *x != k).collect();
        e.push((k, v));
        e.push(("hdfs.batchSize", "5"));
        e
    };
    let conf = format!(
        "a1.channels = c1 c2 c3\na1.sinks = k1 k2 k3\n{}{}{}{}{}{}{}",
        seq_source(25, 5, "c1 c2 c3"),
        channel("c1"),
        channel("c2"),
        channel("c3"),
        sink(
            "k1",
            "c1",
            dfs,
            "/rolls/count",
            &with("hdfs.rollCount", "10")
        ),
        sink("k2", "c2", dfs, "/rolls/size", &with("hdfs.rollSize", "10")),
        sink(
            "k3",
            "c3",
            dfs,
            "/rolls/interval",
            &with("hdfs.rollInterval", "1")
        ),
    );
    let agent = Sluice::start(tmp.path(), "rolls", &conf, &[])?;
    for k in ["k1", "k2", "k3"] {
        wait_drained(&agent, k, 25)?;
    }
    // The interval closes and renames the file while the agent runs.
    let interval = wait_for("the interval roll to rename the file", WAIT, || {
        let files = text_files(dfs, "/rolls/interval").ok()?;
        files
            .iter()
            .all(|(p, _)| !p.ends_with(".tmp"))
            .then_some(files)
    })?;
    let all: Vec<String> = interval.iter().flat_map(|(_, l)| l.clone()).collect();
    assert_eq!(all, numbers(0..25));
    // Count: two full files are closed, the third is still in use and holds the synced
    // "20\n".."24\n", 15 bytes (its length as the NameNode reports it after hsync; hdfs-native's reader
    // does not read the unfinished last block of a file in use).
    let count = dfs.list("/rolls/count")?;
    let shape: Vec<(bool, usize)> = count
        .iter()
        .map(|(p, n)| (p.ends_with(".tmp"), *n))
        .collect();
    assert_eq!(shape, [(false, 20), (false, 30), (true, 15)], "{count:?}");
    stop(agent)?;

    let count = text_files(dfs, "/rolls/count")?;
    let sizes: Vec<usize> = count.iter().map(|(_, l)| l.len()).collect();
    assert_eq!(sizes, [10, 10, 5]);
    assert!(
        count.iter().all(|(p, _)| p.contains("/FlumeData.")),
        "{count:?}"
    );
    let all: Vec<String> = count.iter().flat_map(|(_, l)| l.clone()).collect();
    assert_eq!(all, numbers(0..25));

    // Size: Flume rolls before an event once the file holds >= rollSize body bytes.
    let mut expected: Vec<Vec<String>> = vec![Vec::new()];
    let mut bytes = 0;
    for b in numbers(0..25) {
        if bytes >= 10 {
            expected.push(Vec::new());
            bytes = 0;
        }
        bytes += b.len();
        if let Some(f) = expected.last_mut() {
            f.push(b);
        }
    }
    let size: Vec<Vec<String>> = text_files(dfs, "/rolls/size")?
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    assert_eq!(size, expected);
    for d in ["/rolls/count", "/rolls/size", "/rolls/interval"] {
        no_tmp(dfs, d)?;
    }
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Sends `bodies` with `headers` to the Avro source at `port` with `sluice send`.
fn send(
    dir: &Path,
    port: u16,
    name: &str,
    bodies: &[String],
    headers: &[(&str, &str)],
) -> Result<()> {
    let file = dir.join(format!("{name}.txt"));
    std::fs::write(&file, bodies.join("\n") + "\n")?;
    let hfile = dir.join(format!("{name}.headers"));
    let h: String = headers.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&hfile, h)?;
    let port = port.to_string();
    let (code, out, err) = run_sluice(&[
        "send",
        "-H",
        "127.0.0.1",
        "-p",
        &port,
        "-F",
        &file.to_string_lossy(),
        "-R",
        &hfile.to_string_lossy(),
    ])?;
    if code != 0 {
        bail!("sluice send failed ({code}): {out}{err}");
    }
    Ok(())
}

fn avro_agent(dir: &Path, name: &str, port: u16, sink_conf: &str) -> Result<Sluice> {
    let conf = format!(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = avro\n\
         a1.sources.r1.bind = 127.0.0.1\n\
         a1.sources.r1.port = {port}\n\
         a1.sources.r1.channels = c1\n{}{sink_conf}",
        channel("c1")
    );
    Sluice::start(dir, name, &conf, &[])
}

#[test]
fn path_escapes_with_headers_and_rounding() -> Result<()> {
    let dfs = MiniDfs::shared()?;
    let _serial = dfs.lock();
    let tmp = tempfile::tempdir()?;
    let port = free_port()?;
    let k1 = sink(
        "k1",
        "c1",
        dfs,
        "/esc/%{app}/%Y-%m-%d/%H%M",
        &[
            ("hdfs.filePrefix", "%{app}-%[localhost]"),
            ("hdfs.fileSuffix", ".log"),
            ("hdfs.round", "true"),
            ("hdfs.roundValue", "10"),
            ("hdfs.roundUnit", "minute"),
            ("hdfs.timeZone", "UTC"),
            ("hdfs.rollCount", "0"),
            ("hdfs.rollSize", "0"),
            ("hdfs.rollInterval", "0"),
        ],
    );
    let agent = avro_agent(tmp.path(), "esc", port, &k1)?;
    let web: Vec<String> = (0..10).map(|i| format!("web-{i}")).collect();
    let db: Vec<String> = (0..7).map(|i| format!("db-{i}")).collect();
    // 2024-03-05 07:08:09.123 UTC and 2024-03-05 15:19:59 UTC.
    send(
        tmp.path(),
        port,
        "web",
        &web,
        &[("app", "web"), ("timestamp", "1709622489123")],
    )?;
    send(
        tmp.path(),
        port,
        "db",
        &db,
        &[("app", "db"), ("timestamp", "1709651999000")],
    )?;
    wait_drained(&agent, "k1", 17)?;
    stop(agent)?;

    let files = text_files(dfs, "/esc")?;
    assert_eq!(files.len(), 2, "{files:?}");
    let host = hostname();
    let find = |dir: &str| {
        files
            .iter()
            .find(|(p, _)| p.starts_with(dir))
            .with_context(|| format!("no file under {dir}: {files:?}"))
    };
    let (p, l) = find("/esc/db/2024-03-05/1510/")?;
    assert!(
        p.starts_with(&format!("/esc/db/2024-03-05/1510/db-{host}.")) && p.ends_with(".log"),
        "{p}"
    );
    assert_eq!(l, &db);
    let (p, l) = find("/esc/web/2024-03-05/0700/")?;
    assert!(
        p.starts_with(&format!("/esc/web/2024-03-05/0700/web-{host}.")),
        "{p}"
    );
    assert_eq!(l, &web);
    Ok(())
}

/// Sorted headers and body of one event.
type HeadersAndBody = (Vec<(String, String)>, String);

/// `(headers, body)` of every record of an Avro container file.
fn avro_events(bytes: &[u8]) -> Result<Vec<HeadersAndBody>> {
    use apache_avro::types::Value;
    let reader = apache_avro::Reader::new(bytes)?;
    let schema = reader.writer_schema().canonical_form();
    assert!(schema.contains(r#""name":"Event""#), "{schema}");
    let mut out = Vec::new();
    for v in reader {
        let Value::Record(fields) = v? else {
            bail!("not a record")
        };
        let mut headers = Vec::new();
        let mut body = String::new();
        for (name, f) in fields {
            match (name.as_str(), f) {
                ("headers", Value::Map(m)) => {
                    for (k, v) in m {
                        if let Value::String(v) = v {
                            headers.push((k, v));
                        }
                    }
                }
                ("body", Value::Bytes(b)) => body = String::from_utf8(b)?,
                other => bail!("unexpected field {other:?}"),
            }
        }
        headers.sort();
        out.push((headers, body));
    }
    Ok(out)
}

#[test]
fn text_gzip_and_avro_event_files_read_back() -> Result<()> {
    let dfs = MiniDfs::shared()?;
    let _serial = dfs.lock();
    let tmp = tempfile::tempdir()?;
    let common = [
        ("hdfs.rollCount", "100"),
        ("hdfs.rollSize", "0"),
        ("hdfs.rollInterval", "0"),
        ("hdfs.batchSize", "20"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        common.iter().chain(extra).copied().collect()
    };
    let conf = format!(
        "a1.channels = c1 c2 c3\na1.sinks = k1 k2 k3\n{}\
         a1.sources.r1.interceptors = i1\n\
         a1.sources.r1.interceptors.i1.type = static\n\
         a1.sources.r1.interceptors.i1.key = dc\n\
         a1.sources.r1.interceptors.i1.value = eu-1\n{}{}{}{}{}{}",
        seq_source(250, 25, "c1 c2 c3"),
        channel("c1"),
        channel("c2"),
        channel("c3"),
        sink("k1", "c1", dfs, "/formats/text", &with(&[])),
        sink(
            "k2",
            "c2",
            dfs,
            "/formats/gzip",
            &with(&[
                ("hdfs.fileType", "CompressedStream"),
                ("hdfs.codeC", "gzip")
            ])
        ),
        sink(
            "k3",
            "c3",
            dfs,
            "/formats/avro",
            &with(&[
                ("serializer", "avro_event"),
                ("serializer.compressionCodec", "deflate")
            ])
        ),
    );
    let agent = Sluice::start(tmp.path(), "formats", &conf, &[])?;
    for k in ["k1", "k2", "k3"] {
        wait_drained(&agent, k, 250)?;
    }
    stop(agent)?;
    let expected = numbers(0..250);

    let text = text_files(dfs, "/formats/text")?;
    assert_eq!(text.len(), 3);
    let all: Vec<String> = text.into_iter().flat_map(|(_, l)| l).collect();
    assert_eq!(all, expected);

    let gz = dfs.list("/formats/gzip")?;
    assert_eq!(gz.len(), 3, "{gz:?}");
    let mut all = Vec::new();
    for (p, _) in &gz {
        assert!(p.ends_with(".gz"), "{p}");
        let mut s = String::new();
        flate2::read::MultiGzDecoder::new(&dfs.read(p)?[..]).read_to_string(&mut s)?;
        all.extend(s.lines().map(str::to_string));
    }
    assert_eq!(all, expected);

    let av = dfs.list("/formats/avro")?;
    assert_eq!(av.len(), 3, "{av:?}");
    let mut all = Vec::new();
    let mut java = Vec::new();
    for (p, _) in &av {
        all.extend(avro_events(&dfs.read(p)?)?);
        java.extend(dfs.read_avro_file(p)?);
    }
    let want: Vec<HeadersAndBody> = expected
        .iter()
        .map(|b| (vec![("dc".to_string(), "eu-1".to_string())], b.clone()))
        .collect();
    assert_eq!(all, want);
    // Apache Avro's Java reader (Flume's, avro-tools') reads the same events.
    let java: Vec<HeadersAndBody> = java
        .into_iter()
        .filter(|(name, _, _)| name == "Event")
        .map(|(_, h, b)| (h, String::from_utf8_lossy(&b).into_owned()))
        .collect();
    assert_eq!(java, want);
    Ok(())
}

/// `hdfs.codeC` gzip, bzip2 and snappy: each file, batches of 20 events ending mid-file, is
/// read back by Hadoop's own codec (`CompressionCodecFactory` by extension, as `hadoop fs
/// -text` reads it) in the MiniDFS JVM, in order and complete; and `avro_event` files with
/// Avro's snappy codec by Apache Avro's Java reader.
#[test]
fn compressed_files_read_back_by_hadoop_and_avro_java() -> Result<()> {
    let dfs = MiniDfs::shared()?;
    let _serial = dfs.lock();
    let tmp = tempfile::tempdir()?;
    let codecs = [
        ("gzip", "org.apache.hadoop.io.compress.GzipCodec", ".gz"),
        (
            "org.apache.hadoop.io.compress.BZip2Codec",
            "org.apache.hadoop.io.compress.BZip2Codec",
            ".bz2",
        ),
        (
            "SnappyCodec",
            "org.apache.hadoop.io.compress.SnappyCodec",
            ".snappy",
        ),
    ];
    let mut conf = format!(
        "a1.channels = c1 c2 c3 c4\na1.sinks = k1 k2 k3 k4\n{}{}{}{}{}{}",
        seq_source(250, 25, "c1 c2 c3 c4"),
        channel("c1"),
        channel("c2"),
        channel("c3"),
        channel("c4"),
        // avro_event with Avro's own snappy block codec, read by Apache Avro's Java reader.
        sink(
            "k4",
            "c4",
            dfs,
            "/codecs/avro-snappy",
            &[
                ("hdfs.rollCount", "100"),
                ("hdfs.rollSize", "0"),
                ("hdfs.rollInterval", "0"),
                ("hdfs.batchSize", "20"),
                ("hdfs.fileType", "DataStream"),
                ("serializer", "avro_event"),
                ("serializer.compressionCodec", "snappy"),
            ],
        ),
    );
    for (i, (codec, _, _)) in codecs.iter().enumerate() {
        let dir = format!("/codecs/{i}");
        conf.push_str(&sink(
            &format!("k{}", i + 1),
            &format!("c{}", i + 1),
            dfs,
            &dir,
            &[
                ("hdfs.rollCount", "100"),
                ("hdfs.rollSize", "0"),
                ("hdfs.rollInterval", "0"),
                ("hdfs.batchSize", "20"),
                ("hdfs.fileType", "CompressedStream"),
                ("hdfs.codeC", codec),
            ],
        ));
    }
    let agent = Sluice::start(tmp.path(), "codecs", &conf, &[])?;
    for k in ["k1", "k2", "k3", "k4"] {
        wait_drained(&agent, k, 250)?;
    }
    stop(agent)?;
    let expected = numbers(0..250);
    let mut bodies = Vec::new();
    for (p, _) in &dfs.list("/codecs/avro-snappy")? {
        for (name, _, body) in dfs.read_avro_file(p)? {
            ensure!(name == "Event", "{p}: schema {name}");
            bodies.push(String::from_utf8(body)?);
        }
    }
    ensure!(
        bodies == expected,
        "Avro's Java reader read {} snappy events",
        bodies.len()
    );
    for (i, (_, class, ext)) in codecs.iter().enumerate() {
        let files = dfs.list(&format!("/codecs/{i}"))?;
        ensure!(files.len() == 3, "{class}: {files:?}");
        let mut all = Vec::new();
        for (p, _) in &files {
            ensure!(p.ends_with(ext), "{p}");
            let (used, lines) = dfs.read_with_hadoop_codec(p)?;
            ensure!(used == *class, "{p} read with {used}");
            all.extend(lines);
        }
        ensure!(
            all == expected,
            "{class}: Hadoop read {} lines, not the 250 written",
            all.len()
        );
    }
    Ok(())
}

/// `serializer = org.apache.flume.sink.hdfs.AvroEventSerializer$Builder`: bodies that are
/// Avro datums (here records of one 10-byte `fixed`, lines tailed from a file), the schema in
/// the `flume.avro.schema.literal` header set by an interceptor, written as an Avro container
/// (snappy) that Apache Avro's Java reader reads back datum for datum.
#[test]
fn avro_event_serializer_files_read_back_by_avro_java() -> Result<()> {
    avro_event_serializer(false)
}

/// The same with the schema in a file on HDFS, named by the `flume.avro.schema.url` header.
#[test]
fn avro_event_serializer_schema_from_hdfs_url() -> Result<()> {
    avro_event_serializer(true)
}

fn avro_event_serializer(from_url: bool) -> Result<()> {
    let dfs = MiniDfs::shared()?;
    let _serial = dfs.lock();
    let tmp = tempfile::tempdir()?;
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let bodies: Vec<String> = (0..150).map(|i| format!("click-{i:04}")).collect();
    std::fs::write(logs.join("clicks.log"), bodies.join("\n") + "\n")?;
    let schema = r#"{"type":"record","name":"Click","namespace":"com.example","fields":[{"name":"id","type":{"type":"fixed","name":"Id","size":10}}]}"#;
    let out = if from_url {
        "/avro-body-url"
    } else {
        "/avro-body"
    };
    let (header, value) = if from_url {
        dfs.write("/schemas/click.avsc", schema.as_bytes())?;
        ("flume.avro.schema.url", dfs.uri("/schemas/click.avsc"))
    } else {
        ("flume.avro.schema.literal", schema.to_string())
    };
    let conf = format!(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = TAILDIR\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.filegroups = f1\n\
         a1.sources.r1.filegroups.f1 = {}/clicks\\\\.log\n\
         a1.sources.r1.positionFile = {}\n\
         a1.sources.r1.batchSize = 20\n\
         a1.sources.r1.interceptors = s\n\
         a1.sources.r1.interceptors.s.type = static\n\
         a1.sources.r1.interceptors.s.key = {header}\n\
         a1.sources.r1.interceptors.s.value = {value}\n\
         {}{}",
        logs.display(),
        tmp.path().join("pos.json").display(),
        channel("c1"),
        sink(
            "k1",
            "c1",
            dfs,
            out,
            &[
                ("hdfs.rollCount", "100"),
                ("hdfs.rollSize", "0"),
                ("hdfs.rollInterval", "0"),
                ("hdfs.batchSize", "20"),
                ("hdfs.fileType", "DataStream"),
                (
                    "serializer",
                    "org.apache.flume.sink.hdfs.AvroEventSerializer$Builder"
                ),
                ("serializer.compressionCodec", "snappy"),
            ],
        ),
    );
    let agent = Sluice::start(tmp.path(), "avro-body", &conf, &[])?;
    wait_drained(&agent, "k1", 150)?;
    stop(agent)?;
    let files = dfs.list(out)?;
    ensure!(files.len() == 2, "{files:?}");
    let mut read = Vec::new();
    for (p, _) in &files {
        for (name, datum) in dfs.read_avro_datums(p)? {
            ensure!(name == "com.example.Click", "{p}: schema {name}");
            read.push(String::from_utf8(datum)?);
        }
    }
    ensure!(
        read == bodies,
        "Avro's Java reader read {} of 150 datums",
        read.len()
    );
    Ok(())
}

/// Numbers found in `files`, counting only whole lines (a killed writer may leave a partial
/// last line).
fn numbers_in(files: &[(String, Vec<String>)]) -> BTreeSet<u64> {
    files
        .iter()
        .flat_map(|(_, l)| l.iter().filter_map(|x| x.parse().ok()))
        .collect()
}

#[test]
fn sigkill_mid_file_then_restart_renames_the_in_use_file() -> Result<()> {
    let dfs = MiniDfs::shared()?;
    let _serial = dfs.lock();
    let tmp = tempfile::tempdir()?;
    let total = 20_000;
    let conf = format!(
        "a1.channels = c1\na1.sinks = k1\n{}{}{}",
        seq_source(total, 100, "c1"),
        channel("c1"),
        sink(
            "k1",
            "c1",
            dfs,
            "/kill",
            &[
                ("hdfs.rollCount", "0"),
                ("hdfs.rollSize", "0"),
                ("hdfs.rollInterval", "0")
            ]
        ),
    );
    let mut first = Sluice::start(tmp.path(), "kill1", &conf, &[])?;
    wait_drained(&first, "k1", 1000)?;
    let committed = drained(&first, "k1");
    first.kill9()?;
    let before = text_files(dfs, "/kill")?;
    assert_eq!(before.len(), 1, "{before:?}");
    let (tmp_path, _) = &before[0];
    assert!(tmp_path.ends_with(".tmp"), "{tmp_path}");

    let second = Sluice::start(tmp.path(), "kill2", &conf, &[])?;
    wait_drained(&second, "k1", total)?;
    stop(second)?;
    no_tmp(dfs, "/kill")?;
    let after = text_files(dfs, "/kill")?;
    let renamed = tmp_path.trim_end_matches(".tmp");
    let (_, recovered) = after
        .iter()
        .find(|(p, _)| p == renamed)
        .with_context(|| format!("{renamed} is missing: {after:?}"))?;
    // Every batch committed before the kill was synced, so it survived in the old file.
    let whole = recovered
        .iter()
        .filter(|l| l.parse::<u64>().is_ok())
        .count() as u64;
    assert!(whole >= committed, "{whole} lines < {committed} committed");
    let seen = numbers_in(&after);
    let missing: Vec<u64> = (0..total).filter(|n| !seen.contains(n)).take(10).collect();
    assert!(missing.is_empty(), "missing events, first: {missing:?}");
    Ok(())
}

#[test]
fn datanode_restart_mid_stream_loses_nothing() -> Result<()> {
    let dfs = MiniDfs::shared()?;
    let _serial = dfs.lock();
    let tmp = tempfile::tempdir()?;
    let port = free_port()?;
    let k1 = sink(
        "k1",
        "c1",
        dfs,
        "/dnrestart",
        &[
            ("hdfs.rollCount", "0"),
            ("hdfs.rollSize", "0"),
            ("hdfs.rollInterval", "0"),
            ("hdfs.callTimeout", "10000"),
        ],
    );
    let agent = avro_agent(tmp.path(), "dn", port, &k1)?;
    let part = |r: std::ops::Range<u64>| numbers(r);
    send(tmp.path(), port, "p1", &part(0..1000), &[])?;
    wait_drained(&agent, "k1", 1000)?;

    dfs.stop_datanode()?;
    let restarted = (|| {
        send(tmp.path(), port, "p2", &part(1000..2000), &[])?;
        wait_for("a failed delivery while the DataNode is down", WAIT, || {
            (agent.counter("SINK.k1", "EventWriteFail").unwrap_or(0) > 0).then_some(())
        })
    })();
    // Start the DataNode again whatever happened, so later tests have a cluster.
    dfs.start_datanode()?;
    restarted?;
    send(tmp.path(), port, "p3", &part(2000..3000), &[])?;
    wait_drained(&agent, "k1", 3000)?;
    stop(agent)?;

    no_tmp(dfs, "/dnrestart")?;
    let seen = numbers_in(&text_files(dfs, "/dnrestart")?);
    let missing: Vec<u64> = (0..3000).filter(|n| !seen.contains(n)).take(10).collect();
    assert!(missing.is_empty(), "missing events, first: {missing:?}");
    Ok(())
}

#[test]
fn sequence_files_read_by_hadoop() -> Result<()> {
    let dfs = MiniDfs::shared()?;
    let _serial = dfs.lock();
    let tmp = tempfile::tempdir()?;
    let common = [
        ("hdfs.fileType", "SequenceFile"),
        ("hdfs.rollCount", "50"),
        ("hdfs.rollSize", "0"),
        ("hdfs.rollInterval", "0"),
        ("hdfs.batchSize", "20"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        common.iter().chain(extra).copied().collect()
    };
    let conf = format!(
        "a1.channels = c1 c2\na1.sinks = k1 k2\n{}\
         a1.sources.r1.interceptors = i1\n\
         a1.sources.r1.interceptors.i1.type = static\n\
         a1.sources.r1.interceptors.i1.key = timestamp\n\
         a1.sources.r1.interceptors.i1.value = 1709622489123\n{}{}{}{}",
        seq_source(120, 30, "c1 c2"),
        channel("c1"),
        channel("c2"),
        sink("k1", "c1", dfs, "/seq/writable", &with(&[])),
        sink(
            "k2",
            "c2",
            dfs,
            "/seq/text",
            &with(&[("hdfs.writeFormat", "Text")])
        ),
    );
    let agent = Sluice::start(tmp.path(), "seq", &conf, &[])?;
    for k in ["k1", "k2"] {
        wait_drained(&agent, k, 120)?;
    }
    stop(agent)?;
    for (dir, class) in [
        ("/seq/writable", "org.apache.hadoop.io.BytesWritable"),
        ("/seq/text", "org.apache.hadoop.io.Text"),
    ] {
        let files = dfs.list(dir)?;
        assert_eq!(files.len(), 3, "{files:?}");
        let mut records = Vec::new();
        for (p, _) in &files {
            records.extend(dfs.read_sequence_file(p)?);
        }
        let want: Vec<(i64, String, Vec<u8>)> = numbers(0..120)
            .into_iter()
            .map(|b| (1_709_622_489_123, class.to_string(), b.into_bytes()))
            .collect();
        assert_eq!(records, want, "{dir}");
    }
    Ok(())
}
