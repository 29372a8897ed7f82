//! Flume's HTTP source handlers: how a request becomes events.
//!
//! - [`Handler::Json`] (`org.apache.flume.source.http.JSONHandler`): the body is a JSON array of
//!   `{"headers": {"k": "v", …}, "body": "…"}`. The request's charset (`Content-Type: …;
//!   charset=…`) is UTF-8 when absent; UTF-16 and UTF-32 are accepted as in Flume, any other is
//!   refused. Each event's body is its `body` string encoded in that charset (Java's
//!   `String.getBytes`: UTF-16 gets a big-endian byte-order mark). As Gson does, numbers and
//!   booleans are taken as their text, and a missing or `null` body is an empty body; a `null`
//!   header value leaves the header out.
//! - [`Handler::Blob`] (`org.apache.flume.source.http.BLOBHandler`): the whole body is one
//!   event whose headers are the request's query parameters (the first value of each, decoded
//!   as a servlet decodes them); `handler.mandatoryParameters` lists parameters the request
//!   must carry.

use bytes::Bytes;
use serde_json::Value;

use crate::event::{Event, Headers};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Handler {
    Json,
    Blob { mandatory: Vec<String> },
}

/// Why a request carried no usable events, with the HTTP status Flume answers.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandlerError {
    /// Flume's `HTTPBadRequestException`: 400.
    #[error("Bad request from client. {0}")]
    BadRequest(String),
    /// Any other handler exception: Flume answers 500.
    #[error("Deserializer threw unexpected exception. {0}")]
    Unexpected(String),
}

impl HandlerError {
    pub(crate) fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Unexpected(_) => 500,
        }
    }
}

/// The charsets the JSON handler accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Charset {
    Utf8,
    Utf16,
    Utf32,
}

impl Handler {
    /// Turns one request into events. `content_type` is the request's `Content-Type`, `query`
    /// the raw query string.
    pub(crate) fn events(
        &self,
        content_type: Option<&str>,
        query: Option<&str>,
        body: Bytes,
    ) -> Result<Vec<Event>, HandlerError> {
        match self {
            Self::Json => json_events(content_type, &body),
            Self::Blob { mandatory } => {
                let mut headers = Headers::new();
                for (k, v) in crate::urlencoded::query_pairs(query.unwrap_or("")) {
                    if !headers.contains_key(&k) {
                        headers.insert(k, v);
                    }
                }
                if let Some(missing) = mandatory.iter().find(|m| !headers.contains_key(m)) {
                    return Err(HandlerError::Unexpected(format!(
                        "Please specify {missing} parameter in the request."
                    )));
                }
                Ok(vec![Event::with_headers(headers, body)])
            }
        }
    }
}

fn charset_of(content_type: Option<&str>) -> Result<Charset, HandlerError> {
    let Some(ct) = content_type else {
        return Ok(Charset::Utf8);
    };
    let named = ct.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_string())
    });
    match named {
        None => Ok(Charset::Utf8),
        Some(c) if c.eq_ignore_ascii_case("utf-8") => Ok(Charset::Utf8),
        Some(c) if c.eq_ignore_ascii_case("utf-16") => Ok(Charset::Utf16),
        Some(c) if c.eq_ignore_ascii_case("utf-32") => Ok(Charset::Utf32),
        // Flume throws UnsupportedCharsetException, which the source answers with 500.
        Some(c) => Err(HandlerError::Unexpected(format!(
            "JSON handler supports UTF-8, UTF-16 and UTF-32 only (the request names `{c}`)."
        ))),
    }
}

fn decode(charset: Charset, bytes: &[u8]) -> Result<String, HandlerError> {
    let bad = |what: &str| HandlerError::BadRequest(format!("Request body is not valid {what}."));
    match charset {
        Charset::Utf8 => {
            let b = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
            String::from_utf8(b.to_vec()).map_err(|_| bad("UTF-8"))
        }
        Charset::Utf16 => {
            // Java's UTF-16 decoder: a byte-order mark picks the order, big-endian without one.
            let (little, b) = match bytes {
                [0xFF, 0xFE, rest @ ..] => (true, rest),
                [0xFE, 0xFF, rest @ ..] => (false, rest),
                _ => (false, bytes),
            };
            if !b.len().is_multiple_of(2) {
                return Err(bad("UTF-16"));
            }
            let units = b.chunks_exact(2).map(|c| {
                if little {
                    u16::from_le_bytes([c[0], c[1]])
                } else {
                    u16::from_be_bytes([c[0], c[1]])
                }
            });
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .map_err(|_| bad("UTF-16"))
        }
        Charset::Utf32 => {
            if !bytes.len().is_multiple_of(4) {
                return Err(bad("UTF-32"));
            }
            bytes
                .chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect::<Option<String>>()
                .ok_or_else(|| bad("UTF-32"))
        }
    }
}

fn encode(charset: Charset, s: &str) -> Bytes {
    match charset {
        Charset::Utf8 => Bytes::copy_from_slice(s.as_bytes()),
        Charset::Utf16 => {
            let mut out = Vec::with_capacity(2 + s.len() * 2);
            if !s.is_empty() {
                out.extend_from_slice(&[0xFE, 0xFF]);
            }
            for u in s.encode_utf16() {
                out.extend_from_slice(&u.to_be_bytes());
            }
            Bytes::from(out)
        }
        Charset::Utf32 => Bytes::from(
            s.chars()
                .flat_map(|c| u32::from(c).to_be_bytes())
                .collect::<Vec<u8>>(),
        ),
    }
}

/// Gson's string reading: strings as they are, numbers and booleans as their text.
fn text(v: &Value) -> Option<Result<String, ()>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(Ok(s.clone())),
        Value::Number(n) => Some(Ok(n.to_string())),
        Value::Bool(b) => Some(Ok(b.to_string())),
        Value::Array(_) | Value::Object(_) => Some(Err(())),
    }
}

fn json_events(content_type: Option<&str>, body: &[u8]) -> Result<Vec<Event>, HandlerError> {
    let charset = charset_of(content_type)?;
    let text_body = decode(charset, body)?;
    let syntax = |detail: String| {
        HandlerError::BadRequest(format!("Request has invalid JSON Syntax. {detail}"))
    };
    if text_body.trim().is_empty() {
        // Gson reads an empty document as null: no events.
        return Ok(Vec::new());
    }
    let parsed: Value = serde_json::from_str(&text_body).map_err(|e| syntax(e.to_string()))?;
    let items = match parsed {
        // Gson reads an empty document as null: no events.
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => return Err(syntax("Expected a JSON array of events.".into())),
    };
    let mut events = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(mut fields) = item else {
            return Err(syntax(format!("Event {i} is not a JSON object.")));
        };
        let mut headers = Headers::new();
        match fields.remove("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (k, v) in map {
                    match text(&v) {
                        None => {}
                        Some(Ok(s)) => {
                            headers.insert(k, s);
                        }
                        Some(Err(())) => {
                            return Err(syntax(format!(
                                "Event {i}: header `{k}` is not a string."
                            )));
                        }
                    }
                }
            }
            Some(_) => return Err(syntax(format!("Event {i}: headers is not a JSON object."))),
        }
        let body = match fields.get("body").and_then(text) {
            None => Bytes::new(),
            Some(Ok(s)) => encode(charset, &s),
            Some(Err(())) => return Err(syntax(format!("Event {i}: body is not a string."))),
        };
        events.push(Event::with_headers(headers, body));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(e: &Event) -> &[u8] {
        &e.body
    }

    #[test]
    fn json_events_with_headers_numbers_and_nulls() -> Result<(), HandlerError> {
        let events = Handler::Json.events(
            Some("application/json"),
            None,
            Bytes::from_static(
                br#"[{"headers":{"a":"1","n":5,"t":true,"z":null},"body":"hello"},{"body":null},{}]"#,
            ),
        )?;
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].headers.get("a"), Some("1"));
        assert_eq!(events[0].headers.get("n"), Some("5"));
        assert_eq!(events[0].headers.get("t"), Some("true"));
        assert_eq!(events[0].headers.get("z"), None);
        assert_eq!(body_of(&events[0]), b"hello");
        assert!(body_of(&events[1]).is_empty());
        assert!(body_of(&events[2]).is_empty());
        Ok(())
    }

    #[test]
    fn bad_json_is_a_bad_request() {
        for bad in [
            &b"[{"[..],
            b"{\"body\":\"x\"}",
            b"[1]",
            b"[{\"body\":{}}]",
            b"[{\"headers\":[]}]",
            b"\xff\xfe",
        ] {
            let r = Handler::Json.events(None, None, Bytes::copy_from_slice(bad));
            assert!(
                matches!(r, Err(HandlerError::BadRequest(_))),
                "{:?} gave {r:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // An empty document is no events, as with Gson.
        assert!(matches!(
            Handler::Json
                .events(None, None, Bytes::new())
                .map(|e| e.len()),
            Ok(0)
        ));
    }

    #[test]
    fn charsets_as_java_encodes_them() -> Result<(), HandlerError> {
        let mut utf16 = vec![0xFE, 0xFF];
        for u in r#"[{"body":"é"}]"#.encode_utf16() {
            utf16.extend_from_slice(&u.to_be_bytes());
        }
        let e =
            Handler::Json.events(Some("application/json; charset=UTF-16"), None, utf16.into())?;
        assert_eq!(body_of(&e[0]), &[0xFE, 0xFF, 0x00, 0xE9]);
        let utf32: Vec<u8> =
            r#"[{"body":"é"}]"#.chars().flat_map(|c| u32::from(c).to_be_bytes()).collect();
        let e = Handler::Json.events(Some("text/json;charset=\"utf-32\""), None, utf32.into())?;
        assert_eq!(body_of(&e[0]), &[0, 0, 0, 0xE9]);
        let r = Handler::Json.events(
            Some("application/json; charset=ISO-8859-1"),
            None,
            Bytes::from_static(b"[]"),
        );
        assert!(matches!(r, Err(HandlerError::Unexpected(_))));
        Ok(())
    }

    #[test]
    fn blob_takes_query_parameters_as_headers() -> Result<(), HandlerError> {
        let h = Handler::Blob {
            mandatory: vec!["host".into()],
        };
        let e = h.events(
            None,
            Some("host=a%20b&x=1&x=2&plus=c+d&bad=%zz&tail=%4"),
            Bytes::from_static(b"\x00\x01raw"),
        )?;
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].headers.get("host"), Some("a b"));
        assert_eq!(e[0].headers.get("x"), Some("1"));
        assert_eq!(e[0].headers.get("plus"), Some("c d"));
        assert_eq!(e[0].headers.get("bad"), Some("%zz"));
        assert_eq!(e[0].headers.get("tail"), Some("%4"));
        assert_eq!(body_of(&e[0]), b"\x00\x01raw");
        let missing = h.events(None, Some("x=1"), Bytes::new());
        assert!(matches!(missing, Err(HandlerError::Unexpected(_))));
        Ok(())
    }
}
