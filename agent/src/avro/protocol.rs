//! Schemas of Flume's `AvroSourceProtocol` and Avro's IPC handshake, and the encoding of the
//! handshake and call envelopes through the `apache-avro` crate. Events, the hot path, have a
//! hand-written encoder (`encode.rs`) and decoder (`decode.rs`), checked against apache-avro.

use std::collections::HashMap;
use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::types::Value;
use md5::{Digest, Md5};

pub(crate) use super::decode::{
    read_bool, read_error, read_event, read_event_charged, read_events_charged,
    read_handshake_request, read_handshake_response, read_message_name, read_meta, read_status,
};
#[cfg(test)]
pub(crate) use super::decode::{read_events, read_string};
use crate::event::Event;

/// The protocol of flume-ng-sdk's `flume.avdl`, in Avro's JSON form.
pub(crate) const PROTOCOL_JSON: &str = r#"{"protocol":"AvroSourceProtocol","namespace":"org.apache.flume.source.avro","types":[{"type":"enum","name":"Status","symbols":["OK","FAILED","UNKNOWN"]},{"type":"record","name":"AvroFlumeEvent","fields":[{"name":"headers","type":{"type":"map","values":"string"}},{"name":"body","type":"bytes"}]}],"messages":{"append":{"request":[{"name":"event","type":"AvroFlumeEvent"}],"response":"Status"},"appendBatch":{"request":[{"name":"events","type":{"type":"array","items":"AvroFlumeEvent"}}],"response":"Status"}}}"#;

#[cfg(test)]
const EVENT: &str = r#"{"type":"record","name":"AvroFlumeEvent","namespace":"org.apache.flume.source.avro","fields":[{"name":"headers","type":{"type":"map","values":"string"}},{"name":"body","type":"bytes"}]}"#;

const HANDSHAKE_REQUEST: &str = r#"{"type":"record","name":"HandshakeRequest","namespace":"org.apache.avro.ipc","fields":[{"name":"clientHash","type":{"type":"fixed","name":"MD5","size":16}},{"name":"clientProtocol","type":["null","string"]},{"name":"serverHash","type":"MD5"},{"name":"meta","type":["null",{"type":"map","values":"bytes"}]}]}"#;

const HANDSHAKE_RESPONSE: &str = r#"{"type":"record","name":"HandshakeResponse","namespace":"org.apache.avro.ipc","fields":[{"name":"match","type":{"type":"enum","name":"HandshakeMatch","symbols":["BOTH","CLIENT","NONE"]}},{"name":"serverProtocol","type":["null","string"]},{"name":"serverHash","type":["null",{"type":"fixed","name":"MD5","size":16}]},{"name":"meta","type":["null",{"type":"map","values":"bytes"}]}]}"#;

pub(crate) struct Schemas {
    /// The event schemas are the oracle of the hand-written codec's tests.
    #[cfg(test)]
    pub(crate) event: Schema,
    #[cfg(test)]
    pub(crate) events: Schema,
    pub(crate) status: Schema,
    pub(crate) handshake_request: Schema,
    pub(crate) handshake_response: Schema,
    pub(crate) meta: Schema,
    pub(crate) string: Schema,
    pub(crate) boolean: Schema,
    pub(crate) error: Schema,
}

#[derive(Debug, thiserror::Error)]
#[error("avro: {0}")]
pub struct ProtocolError(pub(crate) String);

impl From<apache_avro::Error> for ProtocolError {
    fn from(e: apache_avro::Error) -> Self {
        Self(e.to_string())
    }
}

fn parse(json: &str) -> Schema {
    // The schemas are constants checked by the tests below; a failure here is a build bug.
    Schema::parse_str(json).unwrap_or(Schema::Null)
}

pub(crate) static SCHEMAS: LazyLock<Schemas> = LazyLock::new(|| Schemas {
    #[cfg(test)]
    events: Schema::array(parse(EVENT)),
    #[cfg(test)]
    event: parse(EVENT),
    status: parse(
        r#"{"type":"enum","name":"Status","namespace":"org.apache.flume.source.avro","symbols":["OK","FAILED","UNKNOWN"]}"#,
    ),
    handshake_request: parse(HANDSHAKE_REQUEST),
    handshake_response: parse(HANDSHAKE_RESPONSE),
    meta: parse(r#"{"type":"map","values":"bytes"}"#),
    string: Schema::String,
    boolean: Schema::Boolean,
    error: parse(r#"["string"]"#),
});

/// MD5 of the protocol text, as Avro identifies protocols in the handshake.
pub(crate) fn protocol_hash() -> [u8; 16] {
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
pub(crate) enum Match {
    Both,
    Client,
    None,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HandshakeRequest {
    pub(crate) client_hash: [u8; 16],
    pub(crate) client_protocol: Option<String>,
    pub(crate) server_hash: [u8; 16],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HandshakeResponse {
    pub(crate) matched: Match,
    pub(crate) server_protocol: Option<String>,
    pub(crate) server_hash: Option<[u8; 16]>,
}

fn write(out: &mut Vec<u8>, schema: &Schema, v: Value) -> Result<(), ProtocolError> {
    out.extend_from_slice(&apache_avro::to_avro_datum(schema, v)?);
    Ok(())
}

pub(crate) fn write_handshake_request(
    out: &mut Vec<u8>,
    h: &HandshakeRequest,
) -> Result<(), ProtocolError> {
    let proto = match &h.client_protocol {
        Some(p) => Value::Union(1, Box::new(Value::String(p.clone()))),
        None => Value::Union(0, Box::new(Value::Null)),
    };
    let v = Value::Record(vec![
        (
            "clientHash".into(),
            Value::Fixed(16, h.client_hash.to_vec()),
        ),
        ("clientProtocol".into(), proto),
        (
            "serverHash".into(),
            Value::Fixed(16, h.server_hash.to_vec()),
        ),
        ("meta".into(), Value::Union(0, Box::new(Value::Null))),
    ]);
    write(out, &SCHEMAS.handshake_request, v)
}

pub(crate) fn write_handshake_response(
    out: &mut Vec<u8>,
    h: &HandshakeResponse,
) -> Result<(), ProtocolError> {
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

pub(crate) fn write_empty_meta(out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    write(out, &SCHEMAS.meta, Value::Map(HashMap::new()))
}

pub(crate) fn write_string(out: &mut Vec<u8>, s: &str) -> Result<(), ProtocolError> {
    write(out, &SCHEMAS.string, Value::String(s.to_string()))
}

pub(crate) fn write_bool(out: &mut Vec<u8>, b: bool) -> Result<(), ProtocolError> {
    write(out, &SCHEMAS.boolean, Value::Boolean(b))
}

pub(crate) fn write_status(out: &mut Vec<u8>, s: Status) -> Result<(), ProtocolError> {
    let (i, sym) = s.symbol();
    write(out, &SCHEMAS.status, Value::Enum(i, sym.into()))
}

/// A remote error: `union {string}`.
pub(crate) fn write_error(out: &mut Vec<u8>, message: &str) -> Result<(), ProtocolError> {
    write(
        out,
        &SCHEMAS.error,
        Value::Union(0, Box::new(Value::String(message.to_string()))),
    )
}

/// `appendBatch`'s parameter, contiguous (see [`super::encode::EncodedEvents`] for the
/// vectored form the client sends).
#[cfg(test)]
pub(crate) fn write_events(out: &mut Vec<u8>, events: &[Event]) {
    out.extend(super::encode::EncodedEvents::new(events).slices().concat());
}

/// `append`'s parameter: one `AvroFlumeEvent` (also Flume's Kafka record format).
pub(crate) fn write_event(out: &mut Vec<u8>, e: &Event) {
    super::encode::put_event(out, e);
}

#[cfg(test)]
mod tests {
    use super::super::decode::Reader;
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
    }

    /// The hand-written encoding, read back by the bounded decoder.
    #[test]
    fn events_round_trip() -> Result<(), ProtocolError> {
        let mut e = Event::new(&b"\x00binary\xff"[..]);
        e.headers.insert("host", "h1");
        e.headers.insert("ünïcode", "välue");
        let events = vec![e, Event::new("second"), Event::new("")];
        let mut buf = Vec::new();
        write_events(&mut buf, &events);
        let mut r = Reader::new(buf);
        assert_eq!(read_events(&mut r, 10)?, events);
        assert_eq!(r.remaining(), 0);
        let mut buf = Vec::new();
        write_events(&mut buf, &events);
        assert!(
            read_events(&mut Reader::new(buf), 2).is_err(),
            "max events enforced"
        );
        Ok(())
    }

    #[test]
    fn handshake_and_reply_round_trip() -> Result<(), ProtocolError> {
        let req = HandshakeRequest {
            client_hash: protocol_hash(),
            client_protocol: Some(PROTOCOL_JSON.into()),
            server_hash: [7; 16],
        };
        let mut buf = Vec::new();
        write_handshake_request(&mut buf, &req)?;
        write_empty_meta(&mut buf)?;
        write_string(&mut buf, "appendBatch")?;
        let mut r = Reader::new(buf);
        assert_eq!(read_handshake_request(&mut r)?, req);
        read_meta(&mut r)?;
        assert_eq!(read_string(&mut r)?, "appendBatch");

        let resp = HandshakeResponse {
            matched: Match::Client,
            server_protocol: Some("p".into()),
            server_hash: Some([1; 16]),
        };
        let mut buf = Vec::new();
        write_handshake_response(&mut buf, &resp)?;
        write_empty_meta(&mut buf)?;
        write_bool(&mut buf, false)?;
        write_status(&mut buf, Status::Failed)?;
        write_bool(&mut buf, true)?;
        write_error(&mut buf, "boom")?;
        let mut r = Reader::new(buf);
        assert_eq!(read_handshake_response(&mut r)?, resp);
        read_meta(&mut r)?;
        assert!(!read_bool(&mut r)?);
        assert_eq!(read_status(&mut r)?, Status::Failed);
        assert!(read_bool(&mut r)?);
        assert_eq!(read_error(&mut r)?, "boom");
        Ok(())
    }

    #[test]
    fn declared_sizes_beyond_the_message_are_rejected() {
        // A block claiming 2^40 events, a string claiming 1 GiB: errors, no allocation.
        let mut huge_block = Vec::new();
        let n: i64 = 1 << 40;
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        while z >= 0x80 {
            huge_block.push((z as u8) | 0x80);
            z >>= 7;
        }
        huge_block.push(z as u8);
        assert!(read_events(&mut Reader::new(huge_block), usize::MAX).is_err());
        let long_string = vec![0x80, 0x80, 0x80, 0x80, 0x08, b'x'];
        assert!(read_string(&mut Reader::new(long_string)).is_err());
    }
}
