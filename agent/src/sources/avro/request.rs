use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::avro::decode::Reader;
use crate::avro::protocol::{
    HandshakeResponse, Match, PROTOCOL_JSON, ProtocolError, Status, protocol_hash,
    read_event_charged, read_events_charged, read_handshake_request, read_message_name, read_meta,
    write_bool, write_empty_meta, write_error, write_handshake_response, write_status,
};
use crate::event::Event;

use super::budget::Held;
use super::source::Shared;
use super::{DECODE_STEP, MAX_KNOWN_PROTOCOLS};

fn write_status_reply(out: &mut Vec<u8>, status: Status) -> Result<(), ProtocolError> {
    write_empty_meta(out)?;
    write_bool(out, false)?;
    write_status(out, status)
}

/// Builds the response to one request payload; decoded headers are charged to `held`.
pub(super) fn respond(
    shared: &Shared,
    payload: Vec<Bytes>,
    established: &mut bool,
    held: &mut Held,
) -> Result<Vec<u8>, ProtocolError> {
    let mut r = Reader::from_chunks(payload);
    let mut out = Vec::with_capacity(64);
    if !*established {
        if !answer_handshake(shared, &mut r, &mut out)? {
            return Ok(out);
        }
        *established = true;
    }
    read_meta(&mut r)?;
    let message = read_message_name(&mut r)?;
    let counters = shared.processor.counters();
    let single = message == "append";
    if single {
        counters.append_received.fetch_add(1, Ordering::Relaxed);
    }
    let decoded = match message.as_str() {
        // A handshake-only "ping".
        "" => return Ok(out),
        "appendBatch" | "append" => decode_events(shared, &mut r, single, held)?,
        other => {
            write_empty_meta(&mut out)?;
            write_bool(&mut out, true)?;
            write_error(&mut out, &format!("unknown message `{other}`"))?;
            return Ok(out);
        }
    };
    let status = match decoded {
        Err(reason) => {
            tracing::warn!(source = %shared.name, %reason, "Batch refused; answering FAILED.");
            Status::Failed
        }
        Ok(events) => match shared.processor.process_batch(events) {
            Ok(()) => {
                if single {
                    counters.append_accepted.fetch_add(1, Ordering::Relaxed);
                }
                Status::Ok
            }
            Err(e) => {
                tracing::warn!(source = %shared.name, error = %e, "Batch refused; answering FAILED.");
                Status::Failed
            }
        },
    };
    write_status_reply(&mut out, status)?;
    Ok(out)
}

/// Reads the client's handshake and writes the answer to `out`; false when the client's
/// protocol is not one we serve (the reply is then only the handshake response).
fn answer_handshake(
    shared: &Shared,
    r: &mut Reader,
    out: &mut Vec<u8>,
) -> Result<bool, ProtocolError> {
    let hs = read_handshake_request(r)?;
    let ours = protocol_hash();
    let known = {
        let mut k = shared.known_protocols.lock();
        if hs.client_hash == ours || k.contains(&hs.client_hash) {
            true
        } else if let Some(text) = &hs.client_protocol {
            // A client protocol we can serve names the same messages.
            let ok = text.contains("AvroSourceProtocol") && text.contains("appendBatch");
            if ok && k.len() < MAX_KNOWN_PROTOCOLS {
                k.insert(hs.client_hash);
            }
            ok
        } else {
            false
        }
    };
    let matched = match (known, hs.server_hash == ours) {
        (false, _) => Match::None,
        (true, true) => Match::Both,
        (true, false) => Match::Client,
    };
    let resp = HandshakeResponse {
        matched,
        server_protocol: (matched != Match::Both).then(|| PROTOCOL_JSON.to_string()),
        server_hash: (matched != Match::Both).then_some(ours),
    };
    write_handshake_response(out, &resp)?;
    Ok(matched != Match::None)
}

/// Decodes the events of an `append` (`single`) or `appendBatch`, charging their headers to
/// `held`. The inner `Err` is a batch refused for want of budget (answered FAILED); the outer
/// one a malformed request.
fn decode_events(
    shared: &Shared,
    r: &mut Reader,
    single: bool,
    held: &mut Held,
) -> Result<Result<Vec<Event>, String>, ProtocolError> {
    let limit = shared.config.read_timeout;
    let mut starved = None;
    let mut reserved = 0usize;
    let mut used = 0usize;
    let decoded = {
        let mut charge = |n: usize| {
            used += n;
            if used > reserved {
                let step = (used - reserved).max(DECODE_STEP);
                if let Err(e) = held.take_blocking(step, limit) {
                    let reason = e.to_string();
                    starved = Some(reason.clone());
                    return Err(ProtocolError(reason));
                }
                reserved += step;
            }
            Ok(())
        };
        if single {
            read_event_charged(r, &mut charge).map(|e| vec![e])
        } else {
            read_events_charged(r, shared.config.max_batch_events, &mut charge)
        }
    };
    match (decoded, starved) {
        (Ok(events), _) => Ok(Ok(events)),
        (Err(_), Some(reason)) => Ok(Err(reason)),
        (Err(e), None) => Err(e),
    }
}
