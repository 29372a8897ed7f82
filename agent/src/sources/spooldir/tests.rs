use std::fs::File;
use std::path::Path;

use apache_avro::types::Value;
use apache_avro::{Schema, Writer};

use super::avro_file::{AvroDeserializer, SCHEMA_HASH_HEADER, SCHEMA_LITERAL_HEADER};
use super::charset::{Charset, DecodeErrorPolicy, Step};
use super::config::{DeserializerConfig, SchemaType, SpoolDirConfig};
use super::deserializer::{BlobDeserializer, Deserializer, FileInput, LineDeserializer, ReadError};
use super::tracker::{PositionTracker, Saved};
use crate::config::{ConfigError, Props};
use crate::event::Event;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn file_with(dir: &Path, name: &str, data: &[u8]) -> std::io::Result<File> {
    let p = dir.join(name);
    std::fs::write(&p, data)?;
    File::open(p)
}

fn line_reader(
    data: &[u8],
    charset: Charset,
    policy: DecodeErrorPolicy,
    max: usize,
    output: Charset,
) -> Result<(tempfile::TempDir, LineDeserializer), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let f = file_with(dir.path(), "f", data)?;
    let r = LineDeserializer::new(f, 0, charset, policy, max, output)?;
    Ok((dir, r))
}

fn bodies(events: &[Event]) -> Vec<Vec<u8>> {
    events.iter().map(|e| e.body.to_vec()).collect()
}

fn read_all(d: &mut dyn Deserializer, batch: usize) -> Result<Vec<Vec<u8>>, ReadError> {
    let mut all = Vec::new();
    loop {
        let mut out = Vec::new();
        d.read_events(batch, &mut out)?;
        if out.is_empty() {
            return Ok(all);
        }
        all.extend(bodies(&out));
    }
}

fn strings(v: &[&str]) -> Vec<Vec<u8>> {
    v.iter().map(|s| s.as_bytes().to_vec()).collect()
}

#[test]
fn utf8_decoding_reports_maximal_subparts() {
    assert_eq!(Charset::Utf8.decode(b"a"), Step::Char('a', 1));
    assert_eq!(Charset::Utf8.decode("é!".as_bytes()), Step::Char('é', 2));
    assert_eq!(Charset::Utf8.decode("😀".as_bytes()), Step::Char('😀', 4));
    assert_eq!(
        Charset::Utf8.decode(b"\xff\x41\x41\x41"),
        Step::Malformed(1)
    );
    // A truncated 3-byte sequence followed by ASCII: the two bytes are one error.
    assert_eq!(Charset::Utf8.decode(b"\xe2\x82A"), Step::Malformed(2));
    // Cut by the end of the file.
    assert_eq!(Charset::Utf8.decode(b"\xe2\x82"), Step::Malformed(2));
    assert_eq!(Charset::Utf8.decode(b""), Step::End);
    assert_eq!(Charset::Ascii.decode(b"\xe9"), Step::Malformed(1));
    assert_eq!(Charset::Latin1.decode(b"\xe9"), Step::Char('é', 1));
    assert_eq!(
        Charset::Utf16Be.decode(&[0xD8, 0x3D, 0xDE, 0x00]),
        Step::Char('😀', 4)
    );
    assert_eq!(Charset::Utf16Le.decode(&[0x41, 0x00]), Step::Char('A', 2));
    assert_eq!(
        Charset::Utf16Be.decode(&[0xDC, 0x00, 0, 0x41]),
        Step::Malformed(2)
    );
    assert_eq!(
        Charset::Utf16.resolve_bom(&[0xFF, 0xFE]),
        (Charset::Utf16Le, 2)
    );
    assert_eq!(
        Charset::Utf16.resolve_bom(&[0, 0x41]),
        (Charset::Utf16Be, 0)
    );
}

#[test]
fn encoding_replaces_unmappable_characters_like_java() {
    let mut out = Vec::new();
    Charset::Latin1.encode("é€", &mut out);
    assert_eq!(out, b"\xe9?");
    out.clear();
    Charset::Ascii.encode("aé", &mut out);
    assert_eq!(out, b"a?");
    out.clear();
    Charset::Utf16.encode("A", &mut out);
    assert_eq!(out, [0xFE, 0xFF, 0, 0x41]);
    out.clear();
    Charset::Utf16Le.encode("A", &mut out);
    assert_eq!(out, [0x41, 0]);
}

#[test]
fn lines_keep_cr_and_the_last_unterminated_line() -> TestResult {
    let (_d, mut r) = line_reader(
        b"one\r\ntwo\n\nthree",
        Charset::Utf8,
        DecodeErrorPolicy::Fail,
        2048,
        Charset::Utf8,
    )?;
    assert_eq!(
        read_all(&mut r, 2)?,
        strings(&["one\r", "two", "", "three"])
    );
    assert_eq!(r.mark(), 15);
    Ok(())
}

#[test]
fn long_lines_are_split_as_flumes_line_deserializer_does() -> TestResult {
    // max 4: a 3-character line fits; exactly 4 is cut before its `\n`, which then ends an
    // empty line; 10 characters become 4 + 4 + 2.
    let (_d, mut r) = line_reader(
        b"abc\nabcd\n0123456789\n",
        Charset::Utf8,
        DecodeErrorPolicy::Fail,
        4,
        Charset::Utf8,
    )?;
    assert_eq!(
        read_all(&mut r, 100)?,
        strings(&["abc", "abcd", "", "0123", "4567", "89"])
    );
    // Characters are counted, not bytes (the slow path): "ééé" fits in 4.
    let (_d, mut r) = line_reader(
        "ééé\néééé\n".as_bytes(),
        Charset::Utf8,
        DecodeErrorPolicy::Fail,
        4,
        Charset::Utf8,
    )?;
    assert_eq!(read_all(&mut r, 100)?, strings(&["ééé", "éééé", ""]));
    // A supplementary character is two Java chars and is never split.
    let (_d, mut r) = line_reader(
        "abc😀d\n".as_bytes(),
        Charset::Utf8,
        DecodeErrorPolicy::Fail,
        4,
        Charset::Utf8,
    )?;
    assert_eq!(read_all(&mut r, 100)?, strings(&["abc😀", "d"]));
    Ok(())
}

#[test]
fn decode_error_policies() -> TestResult {
    let data = b"good\nbad\xff\xfe line\nafter\n";
    let (_d, mut r) = line_reader(
        data,
        Charset::Utf8,
        DecodeErrorPolicy::Replace,
        2048,
        Charset::Utf8,
    )?;
    assert_eq!(
        read_all(&mut r, 100)?,
        strings(&["good", "bad\u{FFFD}\u{FFFD} line", "after"])
    );
    let (_d, mut r) = line_reader(
        data,
        Charset::Utf8,
        DecodeErrorPolicy::Ignore,
        2048,
        Charset::Utf8,
    )?;
    assert_eq!(
        read_all(&mut r, 100)?,
        strings(&["good", "bad line", "after"])
    );

    // FAIL: the good line is delivered, then the read fails at the bad byte, every time.
    let (_d, mut r) = line_reader(
        data,
        Charset::Utf8,
        DecodeErrorPolicy::Fail,
        2048,
        Charset::Utf8,
    )?;
    let mut out = Vec::new();
    r.read_events(100, &mut out)?;
    assert_eq!(bodies(&out), strings(&["good"]));
    assert_eq!(r.mark(), 5);
    for _ in 0..2 {
        let mut out = Vec::new();
        match r.read_events(100, &mut out) {
            Err(ReadError::Decode { offset, charset }) => {
                assert_eq!((offset, charset), (8, "UTF-8"));
            }
            other => panic!("expected a decode error, got {other:?} with {out:?}"),
        }
        assert_eq!(r.mark(), 5);
    }
    // US-ASCII: bytes above 0x7F are errors too.
    let (_d, mut r) = line_reader(
        b"caf\xe9\n",
        Charset::Ascii,
        DecodeErrorPolicy::Replace,
        2048,
        Charset::Utf8,
    )?;
    assert_eq!(read_all(&mut r, 100)?, strings(&["caf\u{FFFD}"]));
    Ok(())
}

#[test]
fn charsets_in_and_out() -> TestResult {
    let (_d, mut r) = line_reader(
        b"caf\xe9\n",
        Charset::Latin1,
        DecodeErrorPolicy::Fail,
        2048,
        Charset::Utf8,
    )?;
    assert_eq!(read_all(&mut r, 100)?, strings(&["café"]));
    let (_d, mut r) = line_reader(
        "café\n".as_bytes(),
        Charset::Utf8,
        DecodeErrorPolicy::Fail,
        2048,
        Charset::Latin1,
    )?;
    assert_eq!(read_all(&mut r, 100)?, vec![b"caf\xe9".to_vec()]);
    // UTF-16 little endian with a byte order mark; positions count bytes.
    let mut data = vec![0xFF, 0xFE];
    for u in "hé\nyo\n".encode_utf16() {
        data.extend_from_slice(&u.to_le_bytes());
    }
    let (d, mut r) = line_reader(
        &data,
        Charset::Utf16,
        DecodeErrorPolicy::Fail,
        2048,
        Charset::Utf8,
    )?;
    let mut out = Vec::new();
    r.read_events(1, &mut out)?;
    assert_eq!(bodies(&out), strings(&["hé"]));
    assert_eq!(r.mark(), 8);
    // Resuming in the middle keeps the order the mark at the start gave.
    let f = File::open(d.path().join("f"))?;
    let mut again = LineDeserializer::new(
        f,
        8,
        Charset::Utf16,
        DecodeErrorPolicy::Fail,
        2048,
        Charset::Utf8,
    )?;
    assert_eq!(read_all(&mut again, 10)?, strings(&["yo"]));
    Ok(())
}

#[test]
fn a_line_reader_resumes_at_its_mark() -> TestResult {
    let dir = tempfile::tempdir()?;
    let data: String = (0..50).map(|i| format!("line-{i}\n")).collect();
    let f = file_with(dir.path(), "f", data.as_bytes())?;
    let mut r = LineDeserializer::new(
        f,
        0,
        Charset::Utf8,
        DecodeErrorPolicy::Fail,
        2048,
        Charset::Utf8,
    )?;
    let mut out = Vec::new();
    r.read_events(20, &mut out)?;
    let mark = r.mark();
    let f = File::open(dir.path().join("f"))?;
    let mut again = LineDeserializer::new(
        f,
        mark,
        Charset::Utf8,
        DecodeErrorPolicy::Fail,
        2048,
        Charset::Utf8,
    )?;
    let rest = read_all(&mut again, 7)?;
    let want: Vec<Vec<u8>> = (20..50).map(|i| format!("line-{i}").into_bytes()).collect();
    assert_eq!(rest, want);
    Ok(())
}

#[test]
fn blobs_are_cut_at_max_blob_length() -> TestResult {
    let dir = tempfile::tempdir()?;
    let f = file_with(dir.path(), "b", b"0123456789")?;
    let mut b = BlobDeserializer::for_test(FileInput::new(f, 0)?, 4);
    let mut out = Vec::new();
    b.read_events(1, &mut out)?;
    assert_eq!(bodies(&out), strings(&["0123"]));
    assert_eq!(b.mark(), 4);
    assert_eq!(read_all(&mut b, 10)?, strings(&["4567", "89"]));
    let f = file_with(dir.path(), "whole", b"line one\nline two\n")?;
    let mut b = BlobDeserializer::for_test(FileInput::new(f, 0)?, 100_000_000);
    assert_eq!(read_all(&mut b, 10)?, strings(&["line one\nline two\n"]));
    Ok(())
}

const RECORD: &str = r#"{"type":"record","name":"Rec","namespace":"t","fields":[{"name":"n","type":"long"},{"name":"s","type":"string"}]}"#;

/// An Avro container file of `n` records in blocks of about `per_block` records.
fn avro_file(path: &Path, n: i64, per_block: i64) -> Result<Schema, Box<dyn std::error::Error>> {
    let schema = Schema::parse_str(RECORD)?;
    let mut w = Writer::new(&schema, Vec::new());
    for i in 0..n {
        w.append(Value::Record(vec![
            ("n".into(), Value::Long(i)),
            ("s".into(), Value::String(format!("rec-{i}"))),
        ]))?;
        if (i + 1) % per_block == 0 {
            w.flush()?;
        }
    }
    std::fs::write(path, w.into_inner()?)?;
    Ok(schema)
}

fn record_n(schema: &Schema, body: &[u8]) -> Result<i64, Box<dyn std::error::Error>> {
    let mut r = body;
    match apache_avro::from_avro_datum(schema, &mut r, None)? {
        Value::Record(fields) => match fields.first() {
            Some((_, Value::Long(n))) => Ok(*n),
            other => Err(format!("unexpected field {other:?}").into()),
        },
        other => Err(format!("unexpected value {other:?}").into()),
    }
}

#[test]
fn avro_records_become_events_with_the_schema_hash() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("a.avro");
    let schema = avro_file(&path, 25, 10)?;
    let mut d = AvroDeserializer::new(File::open(&path)?, 0, SchemaType::Hash)?;
    let mut out = Vec::new();
    d.read_events(100, &mut out)?;
    assert_eq!(out.len(), 25);
    let hash = schema
        .fingerprint::<apache_avro::rabin::Rabin>()
        .to_string();
    for (i, e) in out.iter().enumerate() {
        assert_eq!(record_n(&schema, &e.body)?, i as i64);
        assert_eq!(e.headers.get(SCHEMA_HASH_HEADER), Some(hash.as_str()));
    }
    let mut d = AvroDeserializer::new(File::open(&path)?, 0, SchemaType::Literal)?;
    let mut out = Vec::new();
    d.read_events(1, &mut out)?;
    let literal = out
        .first()
        .and_then(|e| e.headers.get(SCHEMA_LITERAL_HEADER))
        .ok_or("no literal header")?;
    assert_eq!(Schema::parse_str(literal)?, schema);
    Ok(())
}

#[test]
fn avro_positions_are_block_sync_markers() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("a.avro");
    let schema = avro_file(&path, 30, 10)?;
    let mut d = AvroDeserializer::new(File::open(&path)?, 0, SchemaType::Hash)?;
    let start = d.mark();
    let mut out = Vec::new();
    // 15 records: the second block is half read, so the mark is the marker before it.
    d.read_events(15, &mut out)?;
    let mid = d.mark();
    assert!(mid > start, "{mid} > {start}");
    let mut again = AvroDeserializer::new(File::open(&path)?, mid, SchemaType::Hash)?;
    let mut rest = Vec::new();
    again.read_events(100, &mut rest)?;
    let ns: Vec<i64> = rest
        .iter()
        .map(|e| record_n(&schema, &e.body))
        .collect::<Result<_, _>>()?;
    assert_eq!(ns, (10..30).collect::<Vec<_>>());
    // Whole blocks read: the mark moves past them, so nothing is read twice.
    let mut d = AvroDeserializer::new(File::open(&path)?, 0, SchemaType::Hash)?;
    let mut out = Vec::new();
    d.read_events(20, &mut out)?;
    let mut again = AvroDeserializer::new(File::open(&path)?, d.mark(), SchemaType::Hash)?;
    let mut rest = Vec::new();
    again.read_events(100, &mut rest)?;
    assert_eq!(record_n(&schema, &rest[0].body)?, 20);
    assert_eq!(rest.len(), 10);
    // At the end: nothing more.
    let mut end = AvroDeserializer::new(File::open(&path)?, again.mark(), SchemaType::Hash)?;
    let mut none = Vec::new();
    end.read_events(100, &mut none)?;
    assert!(none.is_empty());
    Ok(())
}

#[test]
fn a_file_that_is_not_avro_is_an_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let f = file_with(dir.path(), "x", b"plain text\n")?;
    match AvroDeserializer::new(f, 0, SchemaType::Hash) {
        Err(ReadError::Avro(m)) => assert!(m.contains("magic"), "{m}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("plain text read as Avro"),
    }
    Ok(())
}

#[test]
fn tracker_roundtrip_and_torn_tail() -> TestResult {
    let dir = tempfile::tempdir()?;
    let meta = dir.path().join(".flumespool-main.meta");
    assert_eq!(PositionTracker::load(&meta)?, None);
    let target = Path::new("/var/spool/in/app.log");
    let mut t = PositionTracker::create(&meta, target, 0)?;
    t.store(120)?;
    t.store(300)?;
    let want = Saved {
        target: target.to_path_buf(),
        position: 300,
    };
    assert_eq!(PositionTracker::load(&meta)?, Some(want.clone()));
    // A block cut by a kill is ignored: the last complete record counts.
    t.store(999_999)?;
    let len = std::fs::metadata(&meta)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&meta)?
        .set_len(len - 5)?;
    assert_eq!(PositionTracker::load(&meta)?, Some(want));
    PositionTracker::delete(&meta)?;
    assert_eq!(PositionTracker::load(&meta)?, None);
    Ok(())
}

const TRACKER_SCHEMA: &str = r#"{"type":"record","name":"TransferStateFileMeta","namespace":"org.apache.flume.serialization","fields":[{"name":"offset","type":"long"}]}"#;

#[test]
fn tracker_files_are_avro_containers_like_flumes() -> TestResult {
    let dir = tempfile::tempdir()?;
    // Written by an Avro library as DurablePositionTracker writes it: one record per block.
    let schema = Schema::parse_str(TRACKER_SCHEMA)?;
    let mut w = Writer::new(&schema, Vec::new());
    w.add_user_metadata("file".into(), "/spool/a.log")?;
    for off in [0i64, 4096, 8192] {
        w.append(Value::Record(vec![("offset".into(), Value::Long(off))]))?;
        w.flush()?;
    }
    let flume = dir.path().join("flume.meta");
    std::fs::write(&flume, w.into_inner()?)?;
    assert_eq!(
        PositionTracker::load(&flume)?,
        Some(Saved {
            target: "/spool/a.log".into(),
            position: 8192
        })
    );
    // Ours, read by the Avro library.
    let ours = dir.path().join(".flumespool-main.meta");
    let mut t = PositionTracker::create(&ours, Path::new("/spool/b.log"), 10)?;
    t.store(20)?;
    t.store(30)?;
    let bytes = std::fs::read(&ours)?;
    let r = apache_avro::Reader::new(&bytes[..])?;
    assert_eq!(
        r.user_metadata().get("file").map(Vec::as_slice),
        Some(b"/spool/b.log".as_slice())
    );
    assert_eq!(r.writer_schema(), &schema);
    let offsets: Vec<Value> = r.collect::<Result<_, _>>()?;
    assert_eq!(
        offsets,
        [10, 20, 30]
            .iter()
            .map(|o| Value::Record(vec![("offset".into(), Value::Long(*o))]))
            .collect::<Vec<_>>()
    );
    Ok(())
}

#[test]
fn config_defaults_and_flume_keys() -> Result<(), ConfigError> {
    let c = SpoolDirConfig::from_props(&Props::from_pairs(&[("spoolDir", "/var/spool")]))?;
    assert_eq!(c.file_suffix, ".COMPLETED");
    assert_eq!(c.batch_size, 100);
    assert_eq!(c.poll_delay.as_millis(), 500);
    assert_eq!(c.max_backoff.as_millis(), 4000);
    assert_eq!(c.tracker_dir, Path::new(".flumespool"));
    assert_eq!(
        (c.file_header.clone(), c.basename_header.clone()),
        (None, None)
    );
    assert!(c.include.is_match("anything.log") && !c.ignore.is_match("anything.log"));
    assert_eq!(
        c.deserializer,
        DeserializerConfig::Line {
            max_line_length: 2048,
            output_charset: Charset::Utf8
        }
    );
    let c = SpoolDirConfig::from_props(&Props::from_pairs(&[
        ("spoolDir", "/s"),
        ("fileHeader", "true"),
        ("basenameHeader", "true"),
        ("basenameHeaderKey", "bn"),
        ("includePattern", "[a-z]+\\.log"),
        ("inputCharset", "iso-8859-1"),
        ("decodeErrorPolicy", "replace"),
        (
            "deserializer",
            "org.apache.flume.serialization.AvroEventDeserializer$Builder",
        ),
        ("deserializer.schemaType", "literal"),
    ]))?;
    assert_eq!(c.file_header.as_deref(), Some("file"));
    assert_eq!(c.basename_header.as_deref(), Some("bn"));
    // Java's `matches`: the whole name.
    assert!(c.include.is_match("app.log") && !c.include.is_match("app.log.1"));
    assert_eq!(c.input_charset, Charset::Latin1);
    assert_eq!(c.decode_error_policy, DecodeErrorPolicy::Replace);
    assert_eq!(
        c.deserializer,
        DeserializerConfig::Avro {
            schema_type: SchemaType::Literal
        }
    );
    let c = SpoolDirConfig::from_props(&Props::from_pairs(&[
        ("spoolDir", "/s"),
        (
            "deserializer",
            "org.apache.flume.sink.solr.morphline.BlobDeserializer$Builder",
        ),
        ("deserializer.maxBlobLength", "1000"),
    ]))?;
    assert_eq!(
        c.deserializer,
        DeserializerConfig::Blob {
            max_blob_length: 1000
        }
    );
    // Flume's deprecated bufferMaxLineLength sets the line limit.
    let c = SpoolDirConfig::from_props(&Props::from_pairs(&[
        ("spoolDir", "/s"),
        ("bufferMaxLineLength", "77"),
    ]))?;
    assert!(matches!(
        c.deserializer,
        DeserializerConfig::Line {
            max_line_length: 77,
            ..
        }
    ));
    Ok(())
}

#[test]
fn config_errors_name_the_key() {
    for (pairs, key) in [
        (vec![], "spoolDir"),
        (
            vec![("deserializer", "com.example.MyDeserializer$Builder")],
            "deserializer",
        ),
        (vec![("inputCharset", "EBCDIC")], "inputCharset"),
        (
            vec![("deserializer.outputCharset", "KOI8-R")],
            "deserializer.outputCharset",
        ),
        (vec![("includePattern", "(")], "includePattern"),
        (vec![("deletePolicy", "delay")], "deletePolicy"),
        (vec![("trackingPolicy", "inode")], "trackingPolicy"),
        (vec![("consumeOrder", "largest")], "consumeOrder"),
        (vec![("decodeErrorPolicy", "skip")], "decodeErrorPolicy"),
        (vec![("batchSize", "0")], "batchSize"),
        (vec![("pollDelay", "0")], "pollDelay"),
        (
            vec![("deserializer.maxLineLength", "0")],
            "deserializer.maxLineLength",
        ),
        (vec![("fileSuffix", "")], "fileSuffix"),
    ] {
        let mut all = vec![("spoolDir", "/s")];
        if key == "spoolDir" {
            all.clear();
        }
        all.extend(pairs);
        match SpoolDirConfig::from_props(&Props::from_pairs(&all)) {
            Ok(_) => panic!("{all:?} accepted"),
            Err(e) => assert!(e.to_string().contains(key), "{key}: {e}"),
        }
    }
}
