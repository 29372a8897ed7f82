//! The character sets of `inputCharset` and `deserializer.outputCharset`, and the three
//! `decodeErrorPolicy` values, as Java's `CharsetDecoder` / `String.getBytes` apply them.
//!
//! Decoding goes one character at a time ([`Charset::decode`]), so a line can be cut after
//! `maxLineLength` characters exactly where Flume's `LineDeserializer` cuts it. A malformed
//! UTF-8 sequence is one error per maximal subpart (what Java's decoder and
//! `String::from_utf8_lossy` both do), so `REPLACE` writes one U+FFFD per such subpart.

use crate::config::{ConfigError, Props};

/// A supported character set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Charset {
    Utf8,
    Latin1,
    Ascii,
    /// `UTF-16`: a byte order mark at the start of the file chooses the order (default big
    /// endian); on output, every body starts with the mark FE FF, as Java writes it.
    Utf16,
    Utf16Be,
    Utf16Le,
}

/// `decodeErrorPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DecodeErrorPolicy {
    /// Stop at the first undecodable byte, with an error naming the file and offset.
    Fail,
    /// Put U+FFFD in its place.
    Replace,
    /// Drop it.
    Ignore,
}

/// One decoding step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// A character and the bytes it took.
    Char(char, usize),
    /// Bytes that are not a character in this charset.
    Malformed(usize),
    /// No byte left.
    End,
}

impl Charset {
    /// Parses `key` (Java charset names and their common aliases, any case).
    pub(crate) fn from_props(p: &Props, key: &str, default: Charset) -> Result<Self, ConfigError> {
        let Some(v) = p.get(key).filter(|v| !v.is_empty()) else {
            return Ok(default);
        };
        let cs = match v.to_ascii_uppercase().replace('_', "-").as_str() {
            "UTF-8" | "UTF8" => Charset::Utf8,
            "ISO-8859-1" | "ISO8859-1" | "LATIN1" | "ISO-LATIN-1" | "L1" => Charset::Latin1,
            "US-ASCII" | "ASCII" => Charset::Ascii,
            "UTF-16" | "UTF16" => Charset::Utf16,
            "UTF-16BE" | "UNICODEBIGUNMARKED" => Charset::Utf16Be,
            "UTF-16LE" | "UNICODELITTLEUNMARKED" => Charset::Utf16Le,
            _ => {
                return Err(p.error(
                    key,
                    format!(
                        "unsupported charset `{v}`; accepted: UTF-8, ISO-8859-1, US-ASCII, \
                         UTF-16, UTF-16BE, UTF-16LE"
                    ),
                ));
            }
        };
        p.show_as(key, cs.name());
        Ok(cs)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Charset::Utf8 => "UTF-8",
            Charset::Latin1 => "ISO-8859-1",
            Charset::Ascii => "US-ASCII",
            Charset::Utf16 => "UTF-16",
            Charset::Utf16Be => "UTF-16BE",
            Charset::Utf16Le => "UTF-16LE",
        }
    }

    /// The most bytes one character takes (a surrogate pair for UTF-16).
    pub(crate) fn max_char_len(self) -> usize {
        match self {
            Charset::Utf8 | Charset::Utf16 | Charset::Utf16Be | Charset::Utf16Le => 4,
            Charset::Latin1 | Charset::Ascii => 1,
        }
    }

    /// For `UTF-16`, the order given by a byte order mark at the start of `head` (the file's
    /// first bytes): the charset to decode with and the mark's length.
    pub(crate) fn resolve_bom(self, head: &[u8]) -> (Charset, usize) {
        match (self, head) {
            (Charset::Utf16, [0xFE, 0xFF, ..]) => (Charset::Utf16Be, 2),
            (Charset::Utf16, [0xFF, 0xFE, ..]) => (Charset::Utf16Le, 2),
            (Charset::Utf16, _) => (Charset::Utf16Be, 0),
            (cs, _) => (cs, 0),
        }
    }

    /// Decodes the character at the start of `buf`, which holds at least
    /// [`Self::max_char_len`] bytes unless the file ends there: an incomplete sequence is then
    /// malformed.
    pub(crate) fn decode(self, buf: &[u8]) -> Step {
        let Some(&b0) = buf.first() else {
            return Step::End;
        };
        match self {
            Charset::Latin1 => Step::Char(char::from(b0), 1),
            Charset::Ascii if b0 < 0x80 => Step::Char(char::from(b0), 1),
            Charset::Ascii => Step::Malformed(1),
            Charset::Utf8 => {
                if b0 < 0x80 {
                    return Step::Char(char::from(b0), 1);
                }
                let head = &buf[..buf.len().min(4)];
                match std::str::from_utf8(head) {
                    Ok(s) => first_char(s),
                    Err(e) if e.valid_up_to() > 0 => {
                        // `head[..valid_up_to]` is valid UTF-8 by the error's contract.
                        std::str::from_utf8(&head[..e.valid_up_to()])
                            .map_or(Step::Malformed(1), first_char)
                    }
                    // No length: a sequence cut by the end of the file.
                    Err(e) => Step::Malformed(e.error_len().unwrap_or(head.len())),
                }
            }
            Charset::Utf16 | Charset::Utf16Be | Charset::Utf16Le => {
                let le = self == Charset::Utf16Le;
                let unit = |b: &[u8]| {
                    if le {
                        u16::from_le_bytes([b[0], b[1]])
                    } else {
                        u16::from_be_bytes([b[0], b[1]])
                    }
                };
                if buf.len() < 2 {
                    return Step::Malformed(buf.len());
                }
                let u0 = unit(buf);
                match u0 {
                    0xD800..=0xDBFF => {
                        if buf.len() < 4 {
                            return Step::Malformed(buf.len().min(2));
                        }
                        let u1 = unit(&buf[2..]);
                        if (0xDC00..=0xDFFF).contains(&u1) {
                            let c = 0x10000
                                + ((u32::from(u0) - 0xD800) << 10)
                                + (u32::from(u1) - 0xDC00);
                            char::from_u32(c).map_or(Step::Malformed(4), |c| Step::Char(c, 4))
                        } else {
                            Step::Malformed(2)
                        }
                    }
                    0xDC00..=0xDFFF => Step::Malformed(2),
                    u => char::from_u32(u32::from(u))
                        .map_or(Step::Malformed(2), |c| Step::Char(c, 2)),
                }
            }
        }
    }

    /// Encodes `text` as Java's `String.getBytes(charset)` does: a character the charset
    /// cannot hold becomes `?`.
    pub(crate) fn encode(self, text: &str, out: &mut Vec<u8>) {
        match self {
            Charset::Utf8 => out.extend_from_slice(text.as_bytes()),
            Charset::Latin1 => out.extend(text.chars().map(|c| u8::try_from(c).unwrap_or(b'?'))),
            Charset::Ascii => out.extend(
                text.chars()
                    .map(|c| if c.is_ascii() { c as u8 } else { b'?' }),
            ),
            Charset::Utf16 | Charset::Utf16Be => {
                if self == Charset::Utf16 {
                    out.extend_from_slice(&[0xFE, 0xFF]);
                }
                for u in text.encode_utf16() {
                    out.extend_from_slice(&u.to_be_bytes());
                }
            }
            Charset::Utf16Le => {
                for u in text.encode_utf16() {
                    out.extend_from_slice(&u.to_le_bytes());
                }
            }
        }
    }
}

fn first_char(s: &str) -> Step {
    s.chars()
        .next()
        .map_or(Step::End, |c| Step::Char(c, c.len_utf8()))
}

impl DecodeErrorPolicy {
    pub(crate) fn from_props(p: &Props) -> Result<Self, ConfigError> {
        p.choice(
            "decodeErrorPolicy",
            DecodeErrorPolicy::Fail,
            &[
                (&["FAIL"], DecodeErrorPolicy::Fail),
                (&["REPLACE"], DecodeErrorPolicy::Replace),
                (&["IGNORE"], DecodeErrorPolicy::Ignore),
            ],
        )
    }
}
