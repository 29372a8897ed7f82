//! Flume's `AvroEventDeserializer`: one event per record of an Avro container file, the body
//! the record in Avro binary encoding (re-encoded with the file's schema, as Flume does) and a
//! header `flume.avro.schema.hash` (the hex CRC-64-AVRO fingerprint of the schema's parsing
//! form) or, with `deserializer.schemaType = LITERAL`, `flume.avro.schema.literal` (the schema
//! as the file's `avro.schema` metadata holds it).
//!
//! Positions are Flume's: the offset of the sync marker before the block being read (`sync`
//! scans forward from it), so a tracker file written by Flume resumes here and vice versa.
//! Within a run a batch the channel refused is sent again as it is (Flume re-reads the block,
//! duplicating its committed records); after a crash, the records of a partly delivered block
//! are delivered again (at most one block), as with Flume.

use std::collections::VecDeque;
use std::fs::File;
use std::str::FromStr;

use apache_avro::rabin::Rabin;
use apache_avro::{Codec, Schema};
use bytes::Bytes;

use super::config::SchemaType;
use super::deserializer::{Deserializer, FileInput, ReadError};
use crate::event::{Event, Headers};

pub(crate) const SCHEMA_HASH_HEADER: &str = "flume.avro.schema.hash";
pub(crate) const SCHEMA_LITERAL_HEADER: &str = "flume.avro.schema.literal";
const MAGIC: &[u8; 4] = b"Obj\x01";
const SYNC: usize = 16;

pub(crate) struct AvroDeserializer {
    input: FileInput,
    schema: Schema,
    codec: Codec,
    sync: [u8; SYNC],
    headers: Headers,
    /// Records of the current block not returned yet.
    block: VecDeque<Bytes>,
    /// Offset of the sync marker before the current block.
    block_marker: u64,
    /// Offset of the sync marker ending the current block: the position once it is read.
    next_marker: u64,
}

fn bad(m: impl Into<String>) -> ReadError {
    ReadError::Avro(m.into())
}

/// A zig-zag varint; `None` at the end of the file before its first byte.
fn read_long(input: &mut FileInput) -> Result<Option<i64>, ReadError> {
    let mut v: u64 = 0;
    let mut shift = 0u32;
    loop {
        let next = input.fill(1)?.first().copied();
        let Some(b) = next else {
            return if shift == 0 {
                Ok(None)
            } else {
                Err(bad(format!(
                    "the file ends inside a number at byte {}",
                    input.position()
                )))
            };
        };
        input.consume(1);
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return Err(bad(format!(
                "a number too long at byte {}",
                input.position()
            )));
        }
    }
    Ok(Some(((v >> 1) as i64) ^ -((v & 1) as i64)))
}

fn need_long(input: &mut FileInput, what: &str) -> Result<i64, ReadError> {
    let at = input.position();
    read_long(input)?.ok_or_else(|| bad(format!("the file ends at byte {at}, in the {what}")))
}

fn need_bytes(input: &mut FileInput, n: i64, what: &str) -> Result<Vec<u8>, ReadError> {
    let at = input.position();
    let n = usize::try_from(n)
        .ok()
        .filter(|n| *n <= i32::MAX as usize)
        .ok_or_else(|| bad(format!("invalid {what} length {n} at byte {at}")))?;
    input
        .take(n)?
        .ok_or_else(|| bad(format!("the file ends inside the {what} at byte {at}")))
}

impl AvroDeserializer {
    /// Reads the header, then goes to the first block after `position`.
    pub(crate) fn new(
        file: File,
        position: u64,
        schema_type: SchemaType,
    ) -> Result<Self, ReadError> {
        let mut input = FileInput::new(file, 0)?;
        let magic = need_bytes(&mut input, 4, "header")?;
        if magic != MAGIC {
            return Err(bad("no Avro magic `Obj\\x01` at its start"));
        }
        let (mut schema_json, mut codec_name) = (None, None);
        loop {
            let mut n = need_long(&mut input, "header metadata")?;
            if n == 0 {
                break;
            }
            if n < 0 {
                need_long(&mut input, "header metadata")?;
                n = -n;
            }
            for _ in 0..n {
                let len = need_long(&mut input, "header metadata")?;
                let key = need_bytes(&mut input, len, "metadata key")?;
                let len = need_long(&mut input, "header metadata")?;
                let value = need_bytes(&mut input, len, "metadata value")?;
                match key.as_slice() {
                    b"avro.schema" => schema_json = Some(value),
                    b"avro.codec" => codec_name = Some(value),
                    _ => {}
                }
            }
        }
        let sync: [u8; SYNC] = need_bytes(&mut input, SYNC as i64, "header sync marker")?
            .try_into()
            .map_err(|_| bad("short sync marker"))?;
        let header_end = input.position();
        let schema_json = schema_json
            .ok_or_else(|| bad("no avro.schema in its header"))
            .and_then(|j| String::from_utf8(j).map_err(|e| bad(format!("avro.schema: {e}"))))?;
        let schema =
            Schema::parse_str(&schema_json).map_err(|e| bad(format!("avro.schema: {e}")))?;
        let codec_name = codec_name.map_or_else(
            || Ok("null".to_string()),
            |c| String::from_utf8(c).map_err(|e| bad(format!("avro.codec: {e}"))),
        )?;
        let codec = Codec::from_str(&codec_name)
            .map_err(|_| bad(format!("unsupported avro.codec `{codec_name}`")))?;
        let headers: Headers = match schema_type {
            SchemaType::Hash => [(
                SCHEMA_HASH_HEADER,
                schema.fingerprint::<Rabin>().to_string(),
            )]
            .into_iter()
            .collect(),
            SchemaType::Literal => [(SCHEMA_LITERAL_HEADER, schema_json)].into_iter().collect(),
        };
        let first_marker = header_end - SYNC as u64;
        let mut d = Self {
            input,
            schema,
            codec,
            sync,
            headers,
            block: VecDeque::new(),
            block_marker: first_marker,
            next_marker: first_marker,
        };
        d.sync_from(position.max(first_marker))?;
        Ok(d)
    }

    /// Java's `DataFileReader.sync`: to just after the first sync marker at or after `from`
    /// (the end of the file if there is none).
    fn sync_from(&mut self, from: u64) -> Result<(), ReadError> {
        self.input.seek(from)?;
        loop {
            let at = self.input.position();
            let buf = self.input.fill(SYNC)?;
            if buf.len() < SYNC {
                let n = buf.len();
                self.input.consume(n);
                self.next_marker = self.input.position();
                self.block_marker = self.next_marker;
                return Ok(());
            }
            if buf[..SYNC] == self.sync {
                self.input.consume(SYNC);
                self.block_marker = at;
                self.next_marker = at;
                return Ok(());
            }
            self.input.consume(1);
        }
    }

    /// Reads the next block's records; false at the end of the file.
    fn next_block(&mut self) -> Result<bool, ReadError> {
        let Some(count) = read_long(&mut self.input)? else {
            return Ok(false);
        };
        let size = need_long(&mut self.input, "block size")?;
        let mut data = need_bytes(&mut self.input, size, "block")?;
        let at = self.input.position();
        let marker = need_bytes(&mut self.input, SYNC as i64, "block sync marker")?;
        if marker != self.sync {
            return Err(bad(format!("invalid sync marker at byte {at}")));
        }
        self.codec
            .decompress(&mut data)
            .map_err(|e| bad(format!("block before byte {at}: {e}")))?;
        let count = usize::try_from(count)
            .map_err(|_| bad(format!("negative record count before byte {at}")))?;
        let mut rest: &[u8] = &data;
        for _ in 0..count {
            let value = apache_avro::from_avro_datum(&self.schema, &mut rest, None)
                .map_err(|e| bad(format!("record in the block before byte {at}: {e}")))?;
            let bytes = apache_avro::to_avro_datum(&self.schema, value)
                .map_err(|e| bad(format!("record in the block before byte {at}: {e}")))?;
            self.block.push_back(Bytes::from(bytes));
        }
        self.block_marker = self.next_marker;
        self.next_marker = at;
        Ok(true)
    }
}

impl Deserializer for AvroDeserializer {
    fn read_events(&mut self, max: usize, out: &mut Vec<Event>) -> Result<(), ReadError> {
        let mut n = 0;
        while n < max {
            if self.block.is_empty() && !self.next_block()? {
                break;
            }
            while n < max
                && let Some(body) = self.block.pop_front()
            {
                out.push(Event::with_headers(self.headers.clone(), body));
                n += 1;
            }
        }
        Ok(())
    }

    fn mark(&self) -> u64 {
        if self.block.is_empty() {
            self.next_marker
        } else {
            self.block_marker
        }
    }
}
