//! Turning a spooled file into events: Flume's `LINE` (`LineDeserializer`), `AVRO`
//! (`AvroEventDeserializer`, in [`super::avro_file`]) and `BlobDeserializer`.
//!
//! A deserializer reads from a [`FileInput`] and says, with [`Deserializer::mark`], which
//! position to record once everything it returned so far is committed; reading again after a
//! restart starts from that position ([`open`]). Positions are byte offsets in the file, so
//! the tracker file stays Flume's (`DurablePositionTracker`).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use bytes::Bytes;

use super::avro_file::AvroDeserializer;
use super::charset::{Charset, DecodeErrorPolicy, Step};
use super::config::{DeserializerConfig, SpoolDirConfig};
use crate::event::Event;

const BUF: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("cannot read: {0}")]
    Io(#[from] io::Error),
    #[error("byte {offset} is not valid {charset} input (decodeErrorPolicy = FAIL)")]
    Decode { offset: u64, charset: &'static str },
    #[error("not a readable Avro container file: {0}")]
    Avro(String),
}

/// One spooled file being deserialized.
pub(crate) trait Deserializer: Send {
    /// Appends up to `max` events; none at the end of the file.
    fn read_events(&mut self, max: usize, out: &mut Vec<Event>) -> Result<(), ReadError>;
    /// The position to record once every event returned so far is committed.
    fn mark(&self) -> u64;
}

/// Opens the deserializer `config` chooses on `file`, resuming at `position` (a value `mark`
/// returned, possibly by Flume).
pub(crate) fn open(
    config: &SpoolDirConfig,
    file: File,
    position: u64,
) -> Result<Box<dyn Deserializer>, ReadError> {
    Ok(match &config.deserializer {
        DeserializerConfig::Line {
            max_line_length,
            output_charset,
        } => Box::new(LineDeserializer::new(
            file,
            position,
            config.input_charset,
            config.decode_error_policy,
            *max_line_length,
            *output_charset,
        )?),
        DeserializerConfig::Blob { max_blob_length } => Box::new(BlobDeserializer {
            input: FileInput::new(file, position)?,
            max: *max_blob_length,
        }),
        DeserializerConfig::Avro { schema_type } => {
            Box::new(AvroDeserializer::new(file, position, *schema_type)?)
        }
    })
}

/// A buffered reader that knows its byte offset in the file.
pub(crate) struct FileInput {
    file: File,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// File offset of `buf[start]`.
    pos: u64,
}

impl FileInput {
    pub(crate) fn new(file: File, pos: u64) -> io::Result<Self> {
        let mut input = Self {
            file,
            buf: Vec::new(),
            start: 0,
            end: 0,
            pos: 0,
        };
        input.seek(pos)?;
        Ok(input)
    }

    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    pub(crate) fn seek(&mut self, pos: u64) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(pos))?;
        self.start = 0;
        self.end = 0;
        self.pos = pos;
        Ok(())
    }

    /// At least `want` bytes buffered unless the file ends first (so fewer means the end);
    /// returns every buffered byte. Reads up to the file's current end: data appended while
    /// the file is read is read too.
    pub(crate) fn fill(&mut self, want: usize) -> io::Result<&[u8]> {
        if self.end - self.start < want {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() < want.max(BUF) {
                self.buf.resize(want.max(BUF), 0);
            }
            while self.end < want {
                match self.file.read(&mut self.buf[self.end..]) {
                    Ok(0) => break,
                    Ok(n) => self.end += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(&self.buf[self.start..self.end])
    }

    pub(crate) fn consume(&mut self, n: usize) {
        let n = n.min(self.end - self.start);
        self.start += n;
        self.pos += n as u64;
    }

    /// Exactly `n` bytes, or `None` when the file ends first (nothing consumed then).
    pub(crate) fn take(&mut self, n: usize) -> io::Result<Option<Vec<u8>>> {
        let buf = self.fill(n)?;
        if buf.len() < n {
            return Ok(None);
        }
        let v = buf[..n].to_vec();
        self.consume(n);
        Ok(Some(v))
    }
}

/// Flume's `LineDeserializer`: one event per line, `\n` ending a line (a `\r` before it stays
/// in the body, as in Flume), the last line delivered even without a `\n`.
///
/// A line of `maxLineLength` characters or more is cut after `maxLineLength` characters
/// (counted as Java counts them, in UTF-16 units) and the rest is read as the next line, so a
/// line of exactly `maxLineLength` characters is followed by an empty event, as in Flume.
/// Unlike Flume, a character outside the Basic Multilingual Plane is never split between two
/// events (Flume writes `?` for each half).
pub(crate) struct LineDeserializer {
    input: FileInput,
    charset: Charset,
    policy: DecodeErrorPolicy,
    max: usize,
    output: Charset,
    /// UTF-8 in and out: a valid short line is copied as it is.
    fast: bool,
}

impl LineDeserializer {
    pub(crate) fn new(
        file: File,
        position: u64,
        charset: Charset,
        policy: DecodeErrorPolicy,
        max: usize,
        output: Charset,
    ) -> Result<Self, ReadError> {
        let mut head = [0u8; 2];
        let n = if charset == Charset::Utf16 {
            file.read_at(&mut head, 0)?
        } else {
            0
        };
        let (charset, bom) = charset.resolve_bom(&head[..n]);
        let position = position.max(bom as u64);
        Ok(Self {
            input: FileInput::new(file, position)?,
            charset,
            policy,
            max: max.max(1),
            output,
            fast: charset == Charset::Utf8 && output == Charset::Utf8,
        })
    }

    fn read_line(&mut self) -> Result<Option<Bytes>, ReadError> {
        if self.fast {
            let buf = self.input.fill(1)?;
            if buf.is_empty() {
                return Ok(None);
            }
            // `i` bytes are at most `i` characters: below the limit when `i < max`.
            let look = buf.len().min(self.max);
            if let Some(i) = buf[..look].iter().position(|b| *b == b'\n')
                && std::str::from_utf8(&buf[..i]).is_ok()
            {
                let body = Bytes::copy_from_slice(&buf[..i]);
                self.input.consume(i + 1);
                return Ok(Some(body));
            }
        }
        self.read_line_by_char()
    }

    fn read_line_by_char(&mut self) -> Result<Option<Bytes>, ReadError> {
        let start = self.input.position();
        let width = self.charset.max_char_len();
        let mut text = String::new();
        let mut units = 0usize;
        let mut any = false;
        loop {
            let step = self.charset.decode(self.input.fill(width)?);
            match step {
                Step::End => break,
                Step::Char(c, n) => {
                    self.input.consume(n);
                    any = true;
                    if c == '\n' {
                        break;
                    }
                    text.push(c);
                    units += c.len_utf16();
                }
                Step::Malformed(n) => match self.policy {
                    DecodeErrorPolicy::Fail => {
                        let offset = self.input.position();
                        self.input.seek(start)?;
                        return Err(ReadError::Decode {
                            offset,
                            charset: self.charset.name(),
                        });
                    }
                    DecodeErrorPolicy::Replace => {
                        self.input.consume(n);
                        any = true;
                        text.push(char::REPLACEMENT_CHARACTER);
                        units += 1;
                    }
                    DecodeErrorPolicy::Ignore => self.input.consume(n),
                },
            }
            if units >= self.max {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        let mut body = Vec::with_capacity(text.len());
        self.output.encode(&text, &mut body);
        Ok(Some(Bytes::from(body)))
    }
}

impl Deserializer for LineDeserializer {
    fn read_events(&mut self, max: usize, out: &mut Vec<Event>) -> Result<(), ReadError> {
        let before = out.len();
        while out.len() - before < max {
            match self.read_line() {
                Ok(Some(body)) => out.push(Event::new(body)),
                Ok(None) => break,
                // The lines before an undecodable one are delivered first; the next read
                // starts at that line and fails there.
                Err(ReadError::Decode { .. }) if out.len() > before => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn mark(&self) -> u64 {
        self.input.position()
    }
}

/// Flume's `BlobDeserializer`: the file as one event, or several of `maxBlobLength` bytes
/// when it is longer.
pub(crate) struct BlobDeserializer {
    input: FileInput,
    max: usize,
}

#[cfg(test)]
impl BlobDeserializer {
    pub(crate) fn for_test(input: FileInput, max: usize) -> Self {
        Self { input, max }
    }
}

impl Deserializer for BlobDeserializer {
    fn read_events(&mut self, max: usize, out: &mut Vec<Event>) -> Result<(), ReadError> {
        for _ in 0..max {
            let mut blob: Vec<u8> = Vec::new();
            while blob.len() < self.max {
                let buf = self.input.fill(1)?;
                if buf.is_empty() {
                    break;
                }
                let n = buf.len().min(self.max - blob.len());
                blob.extend_from_slice(&buf[..n]);
                self.input.consume(n);
            }
            if blob.is_empty() {
                break;
            }
            if blob.len() >= self.max {
                tracing::warn!(
                    max = self.max,
                    "File length exceeds maxBlobLength; the rest goes in the next event."
                );
            }
            out.push(Event::new(Bytes::from(blob)));
        }
        Ok(())
    }

    fn mark(&self) -> u64 {
        self.input.position()
    }
}
