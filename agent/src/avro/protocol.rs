//! Schemas and encoding of Flume's `AvroSourceProtocol` and Avro's IPC handshake, through the
//! `apache-avro` crate.

use std::collections::HashMap;
use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::types::Value;
use bytes::Bytes;
use md5::{Digest, Md5};

use crate::event::{Event, Headers};

/// The protocol of flume-ng-sdk's `flume.avdl`, in Avro's JSON form.
pub const PROTOCOL_JSON: &str = r#"{"protocol":"AvroSourceProtocol","namespace":"org.apache.flume.source.avro","types":[{"type":"enum","name":"Status","symbols":["OK","FAILED","UNKNOWN"]},{"type":"record","name":"AvroFlumeEvent","fields":[{"name":"headers","type":{"type":"map","values":"string"}},{"name":"body","type":"bytes"}]}],"messages":{"append":{"request":[{"name":"event","type":"AvroFlumeEvent"}],"response":"Status"},"appendBatch":{"request":[{"name":"events","type":{"type":"array","items":"AvroFlumeEvent"}}],"response":"Status"}}}"#;

const EVENT: &str = r#"{"type":"record","name":"AvroFlumeEvent","namespace":"org.apache.flume.source.avro","fields":[{"name":"headers","type":{"type":"map","values":"string"}},{"name":"body","type":"bytes"}]}"#;

const HANDSHAKE_REQUEST: &str = r#"{"type":"record","name":"HandshakeRequest","namespace":"org.apache.avro.ipc","fields":[{"name":"clientHash","type":{"type":"fixed","name":"MD5","size":16}},{"name":"clientProtocol","type":["null","string"]},{"name":"serverHash","type":"MD5"},{"name":"meta","type":["null",{"type":"map","values":"bytes"}]}]}"#;

const HANDSHAKE_RESPONSE: &str = r#"{"type":"record","name":"HandshakeResponse","namespace":"org.apache.avro.ipc","fields":[{"name":"match","type":{"type":"enum","name":"HandshakeMatch","symbols":["BOTH","CLIENT","NONE"]}},{"name":"serverProtocol","type":["null","string"]},{"name":"serverHash","type":["null",{"type":"fixed","name":"MD5","size":16}]},{"name":"meta","type":["null",{"type":"map","values":"bytes"}]}]}"#;

pub struct Schemas {
    pub event: Schema,
    pub events: Schema,
    pub status: Schema,
    pub handshake_request: Schema,
    pub handshake_response: Schema,
    pub meta: Schema,
    pub string: Schema,
    pub boolean: Schema,
    pub error: Schema,
}

#[derive(Debug, thiserror::Error)]
#[error("avro: {0}")]
pub struct ProtocolError(pub String);

impl From<apache_avro::Error> for ProtocolError {
    fn from(e: apache_avro::Error) -> Self {
        Self(e.to_string())
    }
}

fn parse(json: &str) -> Schema {
    // The schemas are constants checked by the tests below; a failure here is a build bug.
    Schema::parse_str(json).unwrap_or(Schema::Null)
}

pub static SCHEMAS: LazyLock<Schemas> = LazyLock::new(|| {
    let event = parse(EVENT);
    Schemas {
        events: Schema::array(event.clone()),
        event,
        status: parse(
            r#"{"type":"enum","name":"Status","namespace":"org.apache.flume.source.avro","symbols":["OK","FAILED","UNKNOWN"]}"#,
        ),
        handshake_request: parse(HANDSHAKE_REQUEST),
        handshake_response: parse(HANDSHAKE_RESPONSE),
        meta: parse(r#"{"type":"map","values":"bytes"}"#),
        string: Schema::String,
        boolean: Schema::Boolean,
        error: parse(r#"["string"]"#),
    }
});

/// MD5 of the protocol text, as Avro identifies protocols in the handshake.
pub fn protocol_hash() -> [u8; 16] {
    Md5::digest(PROTOCOL_JSON.as_bytes()).into()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Failed,
    Unknown,
}

impl Status {
    fn symbol(self) -> (u32, &'static str) {
        match self {
            Self::Ok => (0, "OK"),
            Self::Failed => (1, "FAILED"),
            Self::Unknown => (2, "UNKNOWN"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    Both,
    Client,
    None,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeRequest {
    pub client_hash: [u8; 16],
    pub client_protocol: Option<String>,
    pub server_hash: [u8; 16],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeResponse {
    pub matched: Match,
    pub server_protocol: Option<String>,
    pub server_hash: Option<[u8; 16]>,
}

fn read(schema: &Schema, r: &mut &[u8]) -> Result<Value, ProtocolError> {
    Ok(apache_avro::from_avro_datum(schema, r, None)?)
}

fn write(out: &mut Vec<u8>, schema: &Schema, v: Value) -> Result<(), ProtocolError> {
    out.extend_from_slice(&apache_avro::to_avro_datum(schema, v)?);
    Ok(())
}

fn md5_of(v: &Value) -> Option<[u8; 16]> {
    match v {
        Value::Fixed(16, b) => b.as_slice().try_into().ok(),
        Value::Union(_, inner) => md5_of(inner),
        _ => None,
    }
}

fn opt_string(v: &Value) -> Option<String> {
    match v {
        Value::Union(_, inner) => opt_string(inner),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn field<'a>(fields: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

pub fn read_handshake_request(r: &mut &[u8]) -> Result<HandshakeRequest, ProtocolError> {
    let Value::Record(f) = read(&SCHEMAS.handshake_request, r)? else {
        return Err(ProtocolError("handshake request is not a record".into()));
    };
    let bad = || ProtocolError("malformed handshake request".into());
    Ok(HandshakeRequest {
        client_hash: field(&f, "clientHash").and_then(md5_of).ok_or_else(bad)?,
        client_protocol: field(&f, "clientProtocol").and_then(opt_string),
        server_hash: field(&f, "serverHash").and_then(md5_of).ok_or_else(bad)?,
    })
}

pub fn write_handshake_request(out: &mut Vec<u8>, h: &HandshakeRequest) -> Result<(), ProtocolError> {
    let proto = match &h.client_protocol {
        Some(p) => Value::Union(1, Box::new(Value::String(p.clone()))),
        None => Value::Union(0, Box::new(Value::Null)),
    };
    let v = Value::Record(vec![
        ("clientHash".into(), Value::Fixed(16, h.client_hash.to_vec())),
        ("clientProtocol".into(), proto),
        ("serverHash".into(), Value::Fixed(16, h.server_hash.to_vec())),
        ("meta".into(), Value::Union(0, Box::new(Value::Null))),
    ]);
    write(out, &SCHEMAS.handshake_request, v)
}

pub fn read_handshake_response(r: &mut &[u8]) -> Result<HandshakeResponse, ProtocolError> {
    let Value::Record(f) = read(&SCHEMAS.handshake_response, r)? else {
        return Err(ProtocolError("handshake response is not a record".into()));
    };
    let matched = match field(&f, "match") {
        Some(Value::Enum(0, _)) => Match::Both,
        Some(Value::Enum(1, _)) => Match::Client,
        Some(Value::Enum(2, _)) => Match::None,
        other => return Err(ProtocolError(format!("bad handshake match {other:?}"))),
    };
    Ok(HandshakeResponse {
        matched,
        server_protocol: field(&f, "serverProtocol").and_then(opt_string),
        server_hash: field(&f, "serverHash").and_then(md5_of),
    })
}

pub fn write_handshake_response(out: &mut Vec<u8>, h: &HandshakeResponse) -> Result<(), ProtocolError> {
    let m = match h.matched {
        Match::Both => (0, "BOTH"),
        Match::Client => (1, "CLIENT"),
        Match::None => (2, "NONE"),
    };
    let proto = match &h.server_protocol {
        Some(p) => Value::Union(1, Box::new(Value::String(p.clone()))),
        None => Value::Union(0, Box::new(Value::Null)),
    };
    let hash = match &h.server_hash {
        Some(x) => Value::Union(1, Box::new(Value::Fixed(16, x.to_vec()))),
        None => Value::Union(0, Box::new(Value::Null)),
    };
    let v = Value::Record(vec![
        ("match".into(), Value::Enum(m.0, m.1.into())),
        ("serverProtocol".into(), proto),
        ("serverHash".into(), hash),
        ("meta".into(), Value::Union(0, Box::new(Value::Null))),
    ]);
    write(out, &SCHEMAS.handshake_response, v)
}

pub fn read_meta(r: &mut &[u8]) -> Result<(), ProtocolError> {
    read(&SCHEMAS.meta, r).map(|_| ())
}

pub fn write_empty_meta(out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    write(out, &SCHEMAS.meta, Value::Map(HashMap::new()))
}

pub fn read_string(r: &mut &[u8]) -> Result<String, ProtocolError> {
    match read(&SCHEMAS.string, r)? {
        Value::String(s) => Ok(s),
        other => Err(ProtocolError(format!("expected a string, got {other:?}"))),
    }
}

pub fn write_string(out: &mut Vec<u8>, s: &str) -> Result<(), ProtocolError> {
    write(out, &SCHEMAS.string, Value::String(s.to_string()))
}

pub fn read_bool(r: &mut &[u8]) -> Result<bool, ProtocolError> {
    match read(&SCHEMAS.boolean, r)? {
        Value::Boolean(b) => Ok(b),
        other => Err(ProtocolError(format!("expected a boolean, got {other:?}"))),
    }
}

pub fn write_bool(out: &mut Vec<u8>, b: bool) -> Result<(), ProtocolError> {
    write(out, &SCHEMAS.boolean, Value::Boolean(b))
}

pub fn read_status(r: &mut &[u8]) -> Result<Status, ProtocolError> {
    match read(&SCHEMAS.status, r)? {
        Value::Enum(0, _) => Ok(Status::Ok),
        Value::Enum(1, _) => Ok(Status::Failed),
        Value::Enum(2, _) => Ok(Status::Unknown),
        other => Err(ProtocolError(format!("bad status {other:?}"))),
    }
}

pub fn write_status(out: &mut Vec<u8>, s: Status) -> Result<(), ProtocolError> {
    let (i, sym) = s.symbol();
    write(out, &SCHEMAS.status, Value::Enum(i, sym.into()))
}

/// A remote error: `union {string}`.
pub fn read_error(r: &mut &[u8]) -> Result<String, ProtocolError> {
    Ok(opt_string(&read(&SCHEMAS.error, r)?).unwrap_or_else(|| "unknown remote error".into()))
}

pub fn write_error(out: &mut Vec<u8>, message: &str) -> Result<(), ProtocolError> {
    write(out, &SCHEMAS.error, Value::Union(0, Box::new(Value::String(message.to_string()))))
}

fn event_value(e: &Event) -> Value {
    let headers: HashMap<String, Value> =
        e.headers.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect();
    Value::Record(vec![
        ("headers".into(), Value::Map(headers)),
        ("body".into(), Value::Bytes(e.body.to_vec())),
    ])
}

fn value_event(v: Value) -> Result<Event, ProtocolError> {
    let Value::Record(fields) = v else {
        return Err(ProtocolError("event is not a record".into()));
    };
    let mut headers = Headers::new();
    let mut body = Bytes::new();
    for (name, v) in fields {
        match (name.as_str(), v) {
            ("headers", Value::Map(m)) => {
                for (k, v) in m {
                    if let Value::String(s) = v {
                        headers.insert(k, s);
                    }
                }
            }
            ("body", Value::Bytes(b)) => body = Bytes::from(b),
            _ => {}
        }
    }
    Ok(Event { headers, body })
}

pub fn write_events(out: &mut Vec<u8>, events: &[Event]) -> Result<(), ProtocolError> {
    write(out, &SCHEMAS.events, Value::Array(events.iter().map(event_value).collect()))
}

pub fn read_events(r: &mut &[u8]) -> Result<Vec<Event>, ProtocolError> {
    match read(&SCHEMAS.events, r)? {
        Value::Array(items) => items.into_iter().map(value_event).collect(),
        other => Err(ProtocolError(format!("expected an array of events, got {other:?}"))),
    }
}

pub fn write_event(out: &mut Vec<u8>, e: &Event) -> Result<(), ProtocolError> {
    write(out, &SCHEMAS.event, event_value(e))
}

pub fn read_event(r: &mut &[u8]) -> Result<Event, ProtocolError> {
    value_event(read(&SCHEMAS.event, r)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_parse() {
        for s in [
            &SCHEMAS.event,
            &SCHEMAS.status,
            &SCHEMAS.handshake_request,
            &SCHEMAS.handshake_response,
            &SCHEMAS.meta,
            &SCHEMAS.error,
        ] {
            assert_ne!(*s, Schema::Null);
        }
        assert!(apache_avro::schema::Schema::parse_str(EVENT).is_ok());
    }

    #[test]
    fn events_round_trip() -> Result<(), ProtocolError> {
        let mut e = Event::new(&b"\x00binary\xff"[..]);
        e.headers.insert("host", "h1");
        e.headers.insert("ünïcode", "välue");
        let events = vec![e, Event::new("second")];
        let mut buf = Vec::new();
        write_events(&mut buf, &events)?;
        let mut r = &buf[..];
        assert_eq!(read_events(&mut r)?, events);
        assert!(r.is_empty());
        Ok(())
    }

    #[test]
    fn handshake_round_trip() -> Result<(), ProtocolError> {
        let req = HandshakeRequest {
            client_hash: protocol_hash(),
            client_protocol: Some(PROTOCOL_JSON.into()),
            server_hash: [7; 16],
        };
        let mut buf = Vec::new();
        write_handshake_request(&mut buf, &req)?;
        assert_eq!(read_handshake_request(&mut &buf[..])?, req);
        let resp = HandshakeResponse {
            matched: Match::Client,
            server_protocol: Some("p".into()),
            server_hash: Some([1; 16]),
        };
        let mut buf = Vec::new();
        write_handshake_response(&mut buf, &resp)?;
        assert_eq!(read_handshake_response(&mut &buf[..])?, resp);
        Ok(())
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for junk in [&b""[..], b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x02\x10abc"] {
            assert!(read_events(&mut &junk[..]).is_err() || junk.is_empty());
            let _ = read_handshake_request(&mut &junk[..]);
        }
    }
}
