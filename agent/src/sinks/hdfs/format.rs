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

use std::collections::HashMap;
use std::io::Write;
use std::sync::LazyLock;

use apache_avro::types::Value;
use apache_avro::{Codec as AvroCodec, Schema, Writer};
use flate2::Compression;
use flate2::write::GzEncoder;

use super::config::{Codec, Serializer};
use crate::event::Event;

/// The schema of Flume's `FlumeEventAvroEventSerializer` (record `Event`, no namespace).
pub const FLUME_EVENT_SCHEMA: &str = r#"{"type":"record","name":"Event","fields":[{"name":"headers","type":{"type":"map","values":"string"}},{"name":"body","type":"bytes"}]}"#;

static SCHEMA: LazyLock<Result<Schema, String>> =
    LazyLock::new(|| Schema::parse_str(FLUME_EVENT_SCHEMA).map_err(|e| e.to_string()));

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("avro_event serializer: {0}")]
    Avro(String),
    #[error("gzip: {0}")]
    Gzip(#[from] std::io::Error),
}

enum Body {
    Text {
        newline: bool,
        headers: bool,
        buf: Vec<u8>,
    },
    Avro(Box<Writer<'static, Vec<u8>>>),
}

/// The encoder of one open file.
pub struct FileEncoder {
    body: Body,
    codec: Option<Codec>,
}

impl FileEncoder {
    pub fn new(serializer: Serializer, codec: Option<Codec>) -> Result<Self, FormatError> {
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
            Serializer::AvroEvent { deflate, .. } => {
                let schema = SCHEMA.as_ref().map_err(|e| FormatError::Avro(e.clone()))?;
                let codec = if deflate {
                    AvroCodec::Deflate(Default::default())
                } else {
                    AvroCodec::Null
                };
                Body::Avro(Box::new(Writer::with_codec(schema, Vec::new(), codec)))
            }
        };
        Ok(Self { body, codec })
    }

    pub fn append(&mut self, e: &Event) -> Result<(), FormatError> {
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
        }
        Ok(())
    }

    /// The bytes of everything appended since the last call, ready to write and sync.
    pub fn finish_batch(&mut self) -> Result<Vec<u8>, FormatError> {
        let raw = match &mut self.body {
            Body::Text { buf, .. } => std::mem::take(buf),
            Body::Avro(w) => {
                w.flush().map_err(|e| FormatError::Avro(e.to_string()))?;
                std::mem::take(w.get_mut())
            }
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
        }
    }
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
    fn avro_blocks_per_batch_read_back() -> Result<(), Box<dyn std::error::Error>> {
        let s = Serializer::AvroEvent {
            deflate: true,
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
