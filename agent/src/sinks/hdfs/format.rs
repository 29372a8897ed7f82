//! What goes into a file: the serializer (`text`, `header_and_text`, `avro_event`) and, for
//! `CompressedStream`, the codec.
//!
//! Every batch ends with [`FileEncoder::finish_batch`], whose bytes are written and `hsync`ed
//! before the take commits, so a file is readable up to its last committed batch even when the
//! agent dies before closing it:
//! - `avro_event` ends an Avro block at every batch (Flume's serializer `flush()` does the
//!   same); the container header goes before the first block.
//! - gzip ends a gzip member at every batch, as Flume's `HDFSCompressedDataStream.sync()` does
//!   (`finish()`, then `resetState()` on the next write): a file is a concatenation of members,
//!   which `gzip -d` and Hadoop's `GzipCodec` read as one stream.
//! - bzip2 likewise ends a bzip2 stream at every batch (`bzip2 -d` and Hadoop's `BZip2Codec`
//!   read concatenated streams).
//! - snappy is Hadoop's `SnappyCodec` format (`BlockCompressorStream`), not the snappy framing
//!   format: blocks of at most [`SNAPPY_BLOCK`] input bytes, each a big-endian u32 of its
//!   length, then one chunk: a u32 compressed length and raw snappy bytes. A batch ends on a
//!   block boundary.

use std::collections::HashMap;
use std::io::Write;
use std::sync::LazyLock;

use apache_avro::types::Value;
use apache_avro::{Codec as AvroCodec, Schema, Writer};
use flate2::Compression;
use flate2::write::GzEncoder;

use super::config::{AvroFileCodec, Codec, Serializer};
use crate::event::Event;

/// The largest input of one Hadoop snappy block: well under the 256 KiB buffer
/// (`io.compression.codec.snappy.buffersize`) Hadoop's decompressor reads a block into.
const SNAPPY_BLOCK: usize = 64 << 10;

/// The schema of Flume's `FlumeEventAvroEventSerializer` (record `Event`, no namespace).
pub(crate) const FLUME_EVENT_SCHEMA: &str = r#"{"type":"record","name":"Event","fields":[{"name":"headers","type":{"type":"map","values":"string"}},{"name":"body","type":"bytes"}]}"#;

static SCHEMA: LazyLock<Result<Schema, String>> =
    LazyLock::new(|| Schema::parse_str(FLUME_EVENT_SCHEMA).map_err(|e| e.to_string()));

#[derive(Debug, thiserror::Error)]
pub(crate) enum FormatError {
    #[error("avro_event serializer: {0}")]
    Avro(String),
    #[error("gzip: {0}")]
    Gzip(#[from] std::io::Error),
    #[error("bzip2: {0}")]
    Bzip2(std::io::Error),
    #[error("snappy: {0}")]
    Snappy(#[from] snap::Error),
}

enum Body {
    Datums(AvroBodyWriter),
    Text {
        newline: bool,
        headers: bool,
        buf: Vec<u8>,
    },
    Avro(Box<Writer<'static, Vec<u8>>>),
    Sequence(SequenceWriter),
}

/// Hadoop's `SequenceFile` format version 6, uncompressed, as Flume's `HDFSSequenceFile`
/// writes it: key `LongWritable` (the `timestamp` header, else the clock), value
/// `BytesWritable` or `Text` (the body), a sync marker after the header and at the end of
/// every batch.
struct SequenceWriter {
    text: bool,
    header_written: bool,
    sync: [u8; 16],
    buf: Vec<u8>,
}

/// Hadoop's `WritableUtils.writeVLong`.
fn write_vlong(out: &mut Vec<u8>, v: i64) {
    if (-112..=127).contains(&v) {
        out.push(v as u8);
        return;
    }
    let (mut len, v): (i64, i64) = if v < 0 { (-120, !v) } else { (-112, v) };
    let mut tmp = v;
    while tmp != 0 {
        tmp >>= 8;
        len -= 1;
    }
    out.push(len as u8);
    let bytes = if len < -120 {
        -(len + 120)
    } else {
        -(len + 112)
    };
    for i in (0..bytes).rev() {
        out.push(((v >> (8 * i)) & 0xff) as u8);
    }
}

/// Hadoop's `Text.writeString`.
fn write_text(out: &mut Vec<u8>, s: &[u8]) {
    write_vlong(out, s.len() as i64);
    out.extend_from_slice(s);
}

impl SequenceWriter {
    fn header(&mut self) {
        let value_class: &[u8] = if self.text {
            b"org.apache.hadoop.io.Text"
        } else {
            b"org.apache.hadoop.io.BytesWritable"
        };
        self.buf.extend_from_slice(b"SEQ\x06");
        write_text(&mut self.buf, b"org.apache.hadoop.io.LongWritable");
        write_text(&mut self.buf, value_class);
        // Not compressed, not block-compressed, no metadata (an int count of 0), then the
        // sync marker.
        self.buf.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        self.buf.extend_from_slice(&self.sync);
        self.header_written = true;
    }

    fn append(&mut self, e: &Event) {
        if !self.header_written {
            self.header();
        }
        let key = e
            .headers
            .get("timestamp")
            .and_then(|t| t.trim().parse::<i64>().ok())
            .unwrap_or_else(|| crate::metrics::now_millis() as i64);
        let mut value = Vec::with_capacity(e.body.len() + 5);
        if self.text {
            write_text(&mut value, &e.body);
        } else {
            value.extend_from_slice(&(e.body.len() as u32).to_be_bytes());
            value.extend_from_slice(&e.body);
        }
        let record = 8 + value.len();
        self.buf.extend_from_slice(&(record as u32).to_be_bytes());
        self.buf.extend_from_slice(&8u32.to_be_bytes());
        self.buf.extend_from_slice(&key.to_be_bytes());
        self.buf.extend_from_slice(&value);
    }

    fn finish_batch(&mut self) -> Vec<u8> {
        if !self.buf.is_empty() {
            self.buf.extend_from_slice(&(-1i32).to_be_bytes());
            self.buf.extend_from_slice(&self.sync);
        }
        std::mem::take(&mut self.buf)
    }
}

/// The header `AvroEventSerializer` takes the schema from.
pub(crate) const SCHEMA_LITERAL_HEADER: &str = "flume.avro.schema.literal";
/// The header it is taken from otherwise: a URL (`hdfs://`, `http(s)://`, `file:`) the sink
/// fetches once per URL.
pub(crate) const SCHEMA_URL_HEADER: &str = "flume.avro.schema.url";

/// Flume's `AvroEventSerializer`: an Avro object container file whose schema is the first
/// event's `flume.avro.schema.literal` and whose data are the bodies as they are (Java's
/// `DataFileWriter.appendEncoded`). A block ends at every batch and when it reaches the sync
/// interval.
struct AvroBodyWriter {
    codec: AvroFileCodec,
    sync_interval: usize,
    /// The file's schema, once the first event named it.
    schema: Option<String>,
    /// Whether an event with another schema was seen (warned once per file).
    warned: bool,
    sync: [u8; 16],
    block: Vec<u8>,
    count: i64,
    out: Vec<u8>,
}

impl AvroBodyWriter {
    fn append(&mut self, e: &Event) -> Result<(), FormatError> {
        let literal = e.headers.get(SCHEMA_LITERAL_HEADER);
        match (&self.schema, literal) {
            (None, Some(literal)) => {
                Schema::parse_str(literal).map_err(|err| {
                    FormatError::Avro(format!("the {SCHEMA_LITERAL_HEADER} header: {err}"))
                })?;
                self.header(literal);
                self.schema = Some(literal.to_string());
            }
            (None, None) => {
                return Err(FormatError::Avro(format!(
                    "AvroEventSerializer needs the schema of the file's first event: the event \
                     has neither a {SCHEMA_LITERAL_HEADER} nor a {SCHEMA_URL_HEADER} header"
                )));
            }
            (Some(file), Some(literal)) if file != literal && !self.warned => {
                self.warned = true;
                tracing::warn!(
                    "HDFS AvroEventSerializer: an event's schema differs from its file's \
                     (the file has its first event's); its body is written as it is, as in \
                     Flume. Put the schema in the path to keep schemas apart."
                );
            }
            _ => {}
        }
        self.block.extend_from_slice(&e.body);
        self.count += 1;
        if self.block.len() >= self.sync_interval {
            self.end_block()?;
        }
        Ok(())
    }

    /// `Obj\x01`, the metadata map (`avro.schema`, `avro.codec`), the sync marker.
    fn header(&mut self, schema: &str) {
        use crate::avro::encode::{put_long, put_str};
        let codec = match self.codec {
            AvroFileCodec::Null => "null",
            AvroFileCodec::Deflate => "deflate",
            AvroFileCodec::Snappy => "snappy",
        };
        self.out.extend_from_slice(b"Obj\x01");
        put_long(&mut self.out, 2);
        put_str(&mut self.out, "avro.schema");
        put_str(&mut self.out, schema);
        put_str(&mut self.out, "avro.codec");
        put_str(&mut self.out, codec);
        put_long(&mut self.out, 0);
        self.out.extend_from_slice(&self.sync);
    }

    fn end_block(&mut self) -> Result<(), FormatError> {
        use crate::avro::encode::put_long;
        if self.count == 0 {
            return Ok(());
        }
        let data = match self.codec {
            AvroFileCodec::Null => std::mem::take(&mut self.block),
            AvroFileCodec::Deflate => {
                let mut d = flate2::write::DeflateEncoder::new(Vec::new(), Compression::default());
                d.write_all(&self.block)?;
                self.block.clear();
                d.finish()?
            }
            AvroFileCodec::Snappy => {
                let mut c = snap::raw::Encoder::new().compress_vec(&self.block)?;
                c.extend_from_slice(&crc32fast::hash(&self.block).to_be_bytes());
                self.block.clear();
                c
            }
        };
        put_long(&mut self.out, self.count);
        put_long(&mut self.out, data.len() as i64);
        self.out.extend_from_slice(&data);
        self.out.extend_from_slice(&self.sync);
        self.count = 0;
        Ok(())
    }

    fn finish_batch(&mut self) -> Result<Vec<u8>, FormatError> {
        self.end_block()?;
        Ok(std::mem::take(&mut self.out))
    }
}

/// The encoder of one open file.
pub(crate) struct FileEncoder {
    body: Body,
    codec: Option<Codec>,
}

impl FileEncoder {
    pub(crate) fn new(serializer: Serializer, codec: Option<Codec>) -> Result<Self, FormatError> {
        let body = match serializer {
            Serializer::Text { append_newline } => Body::Text {
                newline: append_newline,
                headers: false,
                buf: Vec::new(),
            },
            Serializer::HeaderAndText { append_newline } => Body::Text {
                newline: append_newline,
                headers: true,
                buf: Vec::new(),
            },
            Serializer::AvroEvent { codec, .. } => {
                let schema = SCHEMA.as_ref().map_err(|e| FormatError::Avro(e.clone()))?;
                let codec = match codec {
                    AvroFileCodec::Null => AvroCodec::Null,
                    AvroFileCodec::Deflate => AvroCodec::Deflate(Default::default()),
                    AvroFileCodec::Snappy => AvroCodec::Snappy,
                };
                Body::Avro(Box::new(Writer::with_codec(schema, Vec::new(), codec)))
            }
            Serializer::AvroBody {
                codec,
                sync_interval,
            } => Body::Datums(AvroBodyWriter {
                codec,
                sync_interval,
                schema: None,
                warned: false,
                sync: rand::random(),
                block: Vec::new(),
                count: 0,
                out: Vec::new(),
            }),
            Serializer::SequenceFile { text } => Body::Sequence(SequenceWriter {
                text,
                header_written: false,
                sync: rand::random(),
                buf: Vec::new(),
            }),
        };
        Ok(Self { body, codec })
    }

    /// Whether this is an `AvroEventSerializer` file that has no schema yet.
    pub(crate) fn needs_schema(&self) -> bool {
        matches!(&self.body, Body::Datums(w) if w.schema.is_none())
    }

    /// Sets the schema of an `AvroEventSerializer` file from a fetched schema (before its
    /// first event); `what` names where it came from in errors.
    pub(crate) fn set_schema(&mut self, literal: &str, what: &str) -> Result<(), FormatError> {
        if let Body::Datums(w) = &mut self.body
            && w.schema.is_none()
        {
            Schema::parse_str(literal)
                .map_err(|err| FormatError::Avro(format!("the schema at {what}: {err}")))?;
            w.header(literal);
            w.schema = Some(literal.to_string());
        }
        Ok(())
    }

    pub(crate) fn append(&mut self, e: &Event) -> Result<(), FormatError> {
        match &mut self.body {
            Body::Text {
                newline,
                headers,
                buf,
            } => {
                if *headers {
                    buf.push(b'{');
                    for (i, (k, v)) in e.headers.iter().enumerate() {
                        if i > 0 {
                            buf.extend_from_slice(b", ");
                        }
                        buf.extend_from_slice(k.as_bytes());
                        buf.push(b'=');
                        buf.extend_from_slice(v.as_bytes());
                    }
                    buf.extend_from_slice(b"} ");
                }
                buf.extend_from_slice(&e.body);
                if *newline {
                    buf.push(b'\n');
                }
            }
            Body::Avro(w) => {
                let headers: HashMap<String, Value> = e
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                    .collect();
                let record = Value::Record(vec![
                    ("headers".into(), Value::Map(headers)),
                    ("body".into(), Value::Bytes(e.body.to_vec())),
                ]);
                w.append(record)
                    .map_err(|e| FormatError::Avro(e.to_string()))?;
            }
            Body::Sequence(w) => w.append(e),
            Body::Datums(w) => w.append(e)?,
        }
        Ok(())
    }

    /// The bytes of everything appended since the last call, ready to write and sync.
    pub(crate) fn finish_batch(&mut self) -> Result<Vec<u8>, FormatError> {
        let raw = match &mut self.body {
            Body::Text { buf, .. } => std::mem::take(buf),
            Body::Avro(w) => {
                w.flush().map_err(|e| FormatError::Avro(e.to_string()))?;
                std::mem::take(w.get_mut())
            }
            Body::Sequence(w) => w.finish_batch(),
            Body::Datums(w) => w.finish_batch()?,
        };
        match self.codec {
            None => Ok(raw),
            Some(Codec::Gzip) if raw.is_empty() => Ok(raw),
            Some(Codec::Gzip) => {
                let mut gz =
                    GzEncoder::new(Vec::with_capacity(raw.len() / 3), Compression::default());
                gz.write_all(&raw)?;
                Ok(gz.finish()?)
            }
            Some(Codec::Bzip2 | Codec::Snappy) if raw.is_empty() => Ok(raw),
            Some(Codec::Bzip2) => {
                let mut bz = bzip2::write::BzEncoder::new(
                    Vec::with_capacity(raw.len() / 3),
                    bzip2::Compression::default(),
                );
                bz.write_all(&raw).map_err(FormatError::Bzip2)?;
                bz.finish().map_err(FormatError::Bzip2)
            }
            Some(Codec::Snappy) => hadoop_snappy(&raw),
        }
    }
}

/// `raw` in Hadoop's `SnappyCodec` block format (see the module docs).
fn hadoop_snappy(raw: &[u8]) -> Result<Vec<u8>, FormatError> {
    let mut enc = snap::raw::Encoder::new();
    let mut out = Vec::with_capacity(raw.len() / 2 + 16);
    for block in raw.chunks(SNAPPY_BLOCK) {
        let compressed = enc.compress_vec(block)?;
        out.extend_from_slice(&(block.len() as u32).to_be_bytes());
        out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
        out.extend_from_slice(&compressed);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Headers;
    use std::io::Read;

    #[test]
    fn gzip_members_concatenate() -> Result<(), Box<dyn std::error::Error>> {
        let mut enc = FileEncoder::new(
            Serializer::Text {
                append_newline: true,
            },
            Some(Codec::Gzip),
        )?;
        enc.append(&Event::new("a"))?;
        let mut file = enc.finish_batch()?;
        enc.append(&Event::new("b"))?;
        file.extend(enc.finish_batch()?);
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&file[..]).read_to_string(&mut text)?;
        assert_eq!(text, "a\nb\n");
        Ok(())
    }

    #[test]
    fn bzip2_streams_and_snappy_blocks_read_back() -> Result<(), Box<dyn std::error::Error>> {
        let text = Serializer::Text {
            append_newline: true,
        };
        let mut enc = FileEncoder::new(text, Some(Codec::Bzip2))?;
        enc.append(&Event::new("a"))?;
        let mut file = enc.finish_batch()?;
        enc.append(&Event::new("b"))?;
        file.extend(enc.finish_batch()?);
        let mut s = String::new();
        bzip2::read::MultiBzDecoder::new(&file[..]).read_to_string(&mut s)?;
        assert_eq!(s, "a\nb\n");

        let big = "x".repeat(SNAPPY_BLOCK + 10);
        let mut enc = FileEncoder::new(text, Some(Codec::Snappy))?;
        enc.append(&Event::new(big.clone()))?;
        let file = enc.finish_batch()?;
        let (mut pos, mut out) = (0, Vec::new());
        let mut dec = snap::raw::Decoder::new();
        while pos < file.len() {
            let n = |at: usize| {
                u32::from_be_bytes([file[at], file[at + 1], file[at + 2], file[at + 3]]) as usize
            };
            let (raw_len, comp_len) = (n(pos), n(pos + 4));
            assert!(raw_len <= SNAPPY_BLOCK);
            let block = dec.decompress_vec(&file[pos + 8..pos + 8 + comp_len])?;
            assert_eq!(block.len(), raw_len);
            out.extend(block);
            pos += 8 + comp_len;
        }
        assert_eq!(String::from_utf8(out)?, format!("{big}\n"));
        Ok(())
    }

    #[test]
    fn avro_event_serializer_writes_bodies_as_data() -> Result<(), Box<dyn std::error::Error>> {
        let schema_json = r#"{"type":"record","name":"Click","fields":[{"name":"url","type":"string"},{"name":"n","type":"long"}]}"#;
        let schema = Schema::parse_str(schema_json)?;
        let datum = |url: &str, n: i64| -> Result<Vec<u8>, Box<dyn std::error::Error>> {
            let v = Value::Record(vec![
                ("url".into(), Value::String(url.into())),
                ("n".into(), Value::Long(n)),
            ]);
            Ok(apache_avro::to_avro_datum(&schema, v)?)
        };
        for codec in [
            AvroFileCodec::Null,
            AvroFileCodec::Deflate,
            AvroFileCodec::Snappy,
        ] {
            let s = Serializer::AvroBody {
                codec,
                sync_interval: 2_048_000,
            };
            let mut enc = FileEncoder::new(s, None)?;
            let h: Headers = [(SCHEMA_LITERAL_HEADER, schema_json)].into_iter().collect();
            enc.append(&Event::with_headers(h.clone(), datum("/a", 1)?))?;
            let mut file = enc.finish_batch()?;
            enc.append(&Event::with_headers(h, datum("/b", 2)?))?;
            enc.append(&Event::new(datum("/c", 3)?))?;
            file.extend(enc.finish_batch()?);
            let read: Vec<Value> =
                apache_avro::Reader::new(&file[..])?.collect::<Result<_, _>>()?;
            assert_eq!(read.len(), 3, "{codec:?}");
            assert_eq!(
                read[2],
                Value::Record(vec![
                    ("url".into(), Value::String("/c".into())),
                    ("n".into(), Value::Long(3)),
                ])
            );
        }
        let mut enc = FileEncoder::new(
            Serializer::AvroBody {
                codec: AvroFileCodec::Null,
                sync_interval: 1,
            },
            None,
        )?;
        let e = enc.append(&Event::new("x")).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains(SCHEMA_LITERAL_HEADER)));
        Ok(())
    }

    #[test]
    fn avro_blocks_per_batch_read_back() -> Result<(), Box<dyn std::error::Error>> {
        let s = Serializer::AvroEvent {
            codec: AvroFileCodec::Deflate,
            sync_interval: 2_048_000,
        };
        let mut enc = FileEncoder::new(s, None)?;
        let h: Headers = [("k", "v")].into_iter().collect();
        enc.append(&Event::with_headers(h, "one"))?;
        let mut file = enc.finish_batch()?;
        enc.append(&Event::new("two"))?;
        file.extend(enc.finish_batch()?);
        let reader = apache_avro::Reader::new(&file[..])?;
        let mut bodies = Vec::new();
        for v in reader {
            if let Value::Record(fields) = v? {
                for (name, f) in fields {
                    if let (true, Value::Bytes(b)) = (name == "body", f) {
                        bodies.push(String::from_utf8(b)?);
                    }
                }
            }
        }
        assert_eq!(bodies, ["one", "two"]);
        Ok(())
    }

    #[test]
    fn vlongs_like_hadoop() {
        let enc = |v: i64| {
            let mut out = Vec::new();
            write_vlong(&mut out, v);
            out
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(127), [127]);
        assert_eq!(enc(-112), [0x90]);
        assert_eq!(enc(128), [0x8f, 0x80]);
        assert_eq!(enc(300), [0x8e, 0x01, 0x2c]);
        assert_eq!(enc(-113), [0x87, 0x70]);
    }

    #[test]
    fn sequence_file_layout() -> Result<(), FormatError> {
        let mut enc = FileEncoder::new(Serializer::SequenceFile { text: false }, None)?;
        let h: Headers = [("timestamp", "5")].into_iter().collect();
        enc.append(&Event::with_headers(h, "ab"))?;
        let f = enc.finish_batch()?;
        assert!(f.starts_with(b"SEQ\x06\x21org.apache.hadoop.io.LongWritable"));
        let at = f.len() - 20 - 22;
        assert_eq!(&f[at..at + 8], [0, 0, 0, 14, 0, 0, 0, 8]);
        assert_eq!(
            &f[at + 8..at + 22],
            [0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 2, b'a', b'b']
        );
        assert_eq!(&f[f.len() - 20..f.len() - 16], [0xff; 4]);
        Ok(())
    }

    #[test]
    fn header_and_text() -> Result<(), FormatError> {
        let mut enc = FileEncoder::new(
            Serializer::HeaderAndText {
                append_newline: false,
            },
            None,
        )?;
        let h: Headers = [("a", "1"), ("b", "2")].into_iter().collect();
        enc.append(&Event::with_headers(h, "x"))?;
        assert_eq!(enc.finish_batch()?, b"{a=1, b=2} x");
        Ok(())
    }
}
