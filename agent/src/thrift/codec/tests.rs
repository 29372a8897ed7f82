use proptest::prelude::*;

use super::*;

const BOTH: [Protocol; 2] = [Protocol::Compact, Protocol::Binary];

fn no_charge() -> impl FnMut(usize) -> Result<()> {
    |_| Ok(())
}

/// The frame's message, without the length.
fn unframe(frame: &[u8]) -> Bytes {
    let len = frame_len([frame[0], frame[1], frame[2], frame[3]]);
    assert_eq!(len, Some(frame.len() - 4));
    Bytes::copy_from_slice(&frame[4..])
}

fn request(proto: Protocol, events: &[Event], single: bool) -> Bytes {
    let mut out = Vec::new();
    assert!(encode_call(proto, &mut out, 7, events, single).is_ok());
    unframe(&out)
}

fn decode(proto: Protocol, msg: &Bytes) -> Result<Request> {
    decode_request(proto, msg, 1000, &mut no_charge())
}

fn sample() -> Vec<Event> {
    vec![
        Event::with_headers(
            [("host", "h1"), ("ünï", "çødé ✓"), ("empty", "")]
                .into_iter()
                .collect(),
            "first body",
        ),
        Event::new(""),
        Event::with_headers(
            [("k", "v".repeat(300))].into_iter().collect(),
            vec![0u8, 255, 7],
        ),
    ]
}

#[test]
fn batch_and_single_round_trip_in_both_protocols() -> Result<()> {
    for proto in BOTH {
        let events = sample();
        let req = decode(proto, &request(proto, &events, false))?;
        assert_eq!(req.header.name, "appendBatch");
        assert_eq!(req.header.seqid, 7);
        assert_eq!(req.call, Call::AppendBatch(events.clone()));
        let req = decode(proto, &request(proto, &events[..1], true))?;
        assert_eq!(req.header.name, "append");
        assert_eq!(req.call, Call::Append(events[0].clone()));
        let req = decode(proto, &request(proto, &[], false))?;
        assert_eq!(req.call, Call::AppendBatch(Vec::new()));
    }
    Ok(())
}

/// The bytes Thrift's Java library writes for `append_result {success: OK}` (seqid 1).
#[test]
fn replies_are_byte_exact() -> Result<()> {
    let mut out = Vec::new();
    assert!(encode_reply(Protocol::Binary, &mut out, "append", 1, Status::Ok).is_ok());
    let mut want = vec![0, 0, 0, 26, 0x80, 0x01, 0x00, 0x02, 0, 0, 0, 6];
    want.extend_from_slice(b"append");
    want.extend_from_slice(&[0, 0, 0, 1, 8, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(out, want);
    out.clear();
    assert!(encode_reply(Protocol::Compact, &mut out, "append", 1, Status::Failed).is_ok());
    // 0x82, version 1 | REPLY << 5, seqid 1, name; field 0 (long form: delta 0) i32 = 1.
    let mut want = vec![0, 0, 0, 14, 0x82, 0x41, 0x01, 0x06];
    want.extend_from_slice(b"append");
    want.extend_from_slice(&[0x05, 0x00, 0x02, 0x00]);
    assert_eq!(out, want);
    Ok(())
}

#[test]
fn replies_and_exceptions_decode() -> Result<()> {
    for proto in BOTH {
        for status in [Status::Ok, Status::Failed, Status::Error, Status::Unknown] {
            let mut out = Vec::new();
            assert!(encode_reply(proto, &mut out, "appendBatch", 42, status).is_ok());
            let reply = decode_reply(proto, &unframe(&out), "appendBatch", 42)?;
            assert_eq!(reply, Reply::Status(status));
            // Another call's reply is refused.
            assert!(decode_reply(proto, &unframe(&out), "appendBatch", 43).is_err());
            assert!(decode_reply(proto, &unframe(&out), "append", 42).is_err());
        }
        let mut out = Vec::new();
        assert!(
            encode_exception(proto, &mut out, "x", 3, UNKNOWN_METHOD, "Invalid method").is_ok()
        );
        assert_eq!(
            decode_reply(proto, &unframe(&out), "x", 3)?,
            Reply::Exception("Invalid method".into(), UNKNOWN_METHOD)
        );
    }
    Ok(())
}

/// Unknown fields of every type, before and after the known ones, at both levels.
#[test]
fn unknown_fields_are_skipped() -> Result<()> {
    for proto in BOTH {
        let mut out = Vec::new();
        let mut e = Encoder::new(proto, &mut out);
        e.message_begin("append", CALL, 5);
        e.struct_begin();
        e.bool_field(9, true);
        e.field_begin(T_I64, 20)?;
        e.write_i64(-1 << 40);
        e.field_begin(T_DOUBLE, 3)?;
        e.write_raw(&1.5f64.to_be_bytes());
        e.field_begin(T_STRUCT, 1)?;
        e.struct_begin();
        e.field_begin(T_LIST, 7)?;
        e.list_begin(T_I32, 20)?;
        for i in 0..20 {
            e.write_i32(i);
        }
        e.field_begin(T_STRING, 2)?;
        e.write_binary(b"the body");
        e.field_begin(T_MAP, 1)?;
        e.map_begin(T_STRING, T_STRING, 1)?;
        e.write_binary(b"a");
        e.write_binary(b"b");
        e.field_begin(T_MAP, 300)?;
        e.map_begin(T_I16, T_STRUCT, 1)?;
        e.write_i16(-3);
        e.struct_begin();
        e.bool_field(1, false);
        e.field_begin(T_BYTE, 2)?;
        e.write_raw(&[9]);
        e.struct_end();
        e.struct_end();
        e.field_begin(T_SET, 2)?;
        e.list_begin(T_STRING, 1)?;
        e.write_binary(b"s");
        e.struct_end();
        let req = decode(proto, &Bytes::from(out))?;
        let want = Event::with_headers([("a", "b")].into_iter().collect(), "the body");
        assert_eq!(req.call, Call::Append(want));
    }
    Ok(())
}

#[test]
fn an_unknown_method_is_reported_not_fatal() -> Result<()> {
    for proto in BOTH {
        let mut out = Vec::new();
        let mut e = Encoder::new(proto, &mut out);
        e.message_begin("ping", CALL, 1);
        e.struct_begin();
        e.field_begin(T_STRING, 1)?;
        e.write_binary(b"x");
        e.struct_end();
        let req = decode(proto, &Bytes::from(out))?;
        assert_eq!(
            (req.header.name.as_str(), req.call),
            ("ping", Call::Unknown)
        );
    }
    Ok(())
}

#[test]
fn the_old_binary_header_is_accepted() -> Result<()> {
    let strict = request(Protocol::Binary, &sample(), false);
    // Strict: version word, name, seqid. Old: name, type byte, seqid.
    let name_end = 8 + "appendBatch".len();
    let mut old = strict[4..name_end].to_vec();
    old.push(CALL);
    old.extend_from_slice(&strict[name_end..]);
    let req = decode(Protocol::Binary, &Bytes::from(old))?;
    assert_eq!(req.call, Call::AppendBatch(sample()));
    Ok(())
}

#[test]
fn the_wrong_protocol_is_named() {
    let compact = request(Protocol::Compact, &sample(), false);
    let binary = request(Protocol::Binary, &sample(), false);
    let e = decode(Protocol::Binary, &compact)
        .err()
        .map(|e| e.to_string());
    assert!(
        e.as_deref()
            .is_some_and(|e| e.contains("protocol = compact")),
        "{e:?}"
    );
    let e = decode(Protocol::Compact, &binary)
        .err()
        .map(|e| e.to_string());
    assert!(
        e.as_deref()
            .is_some_and(|e| e.contains("protocol = binary")),
        "{e:?}"
    );
}

#[test]
fn every_truncation_is_an_error() {
    for proto in BOTH {
        let msg = request(proto, &sample(), false);
        for n in 0..msg.len() {
            assert!(
                decode(proto, &msg.slice(..n)).is_err(),
                "{proto:?} prefix {n}"
            );
        }
        let mut longer = msg.to_vec();
        longer.push(0);
        assert_eq!(
            decode(proto, &Bytes::from(longer)).err(),
            Some(DecodeError::Trailing(1))
        );
    }
}

/// A message header, the args struct and its list field, then `tail` (the list header).
fn batch_prefix(proto: Protocol, tail: impl FnOnce(&mut Encoder<'_>)) -> Bytes {
    let mut out = Vec::new();
    let mut e = Encoder::new(proto, &mut out);
    e.message_begin("appendBatch", CALL, 1);
    e.struct_begin();
    let _ = e.field_begin(T_LIST, 1);
    tail(&mut e);
    Bytes::from(out)
}

#[test]
fn declared_sizes_beyond_the_frame_are_refused() {
    for proto in BOTH {
        // A list of i32::MAX events, a map of i32::MAX headers, a 2 GiB body.
        let list = batch_prefix(proto, |e| {
            let _ = e.list_begin(T_STRUCT, i32::MAX as usize);
        });
        assert!(
            matches!(
                decode(proto, &list),
                Err(DecodeError::Oversize { what: "list", .. })
            ),
            "{:?}",
            decode(proto, &list)
        );
        let map = batch_prefix(proto, |e| {
            let _ = e.list_begin(T_STRUCT, 1);
            e.struct_begin();
            let _ = e.field_begin(T_MAP, 1);
            let _ = e.map_begin(T_STRING, T_STRING, i32::MAX as usize);
        });
        assert!(matches!(
            decode(proto, &map),
            Err(DecodeError::Oversize { what: "map", .. })
        ));
        let body = batch_prefix(proto, |e| {
            let _ = e.list_begin(T_STRUCT, 1);
            e.struct_begin();
            let _ = e.field_begin(T_STRING, 2);
            match proto {
                Protocol::Binary => e.write_raw(&[0x7f, 0xff, 0xff, 0xff]),
                Protocol::Compact => e.write_raw(&[0xff, 0xff, 0xff, 0xff, 0x07]),
            }
        });
        assert!(matches!(
            decode(proto, &body),
            Err(DecodeError::Oversize {
                what: "event body",
                ..
            })
        ));
    }
    // Binary sizes are signed: a negative one is refused as such.
    let neg = batch_prefix(Protocol::Binary, |e| {
        e.write_raw(&[T_STRUCT, 0xff, 0xff, 0xff, 0xfe]);
    });
    assert_eq!(
        decode(Protocol::Binary, &neg).err(),
        Some(DecodeError::Negative {
            what: "list",
            size: -2
        })
    );
}

#[test]
fn batches_and_nesting_are_bounded() -> Result<()> {
    for proto in BOTH {
        let events = vec![Event::new("x"); 11];
        let msg = request(proto, &events, false);
        assert_eq!(
            decode_request(proto, &msg, 10, &mut no_charge()).err(),
            Some(DecodeError::TooManyEvents { max: 10 })
        );
        assert!(decode_request(proto, &msg, 11, &mut no_charge()).is_ok());
        // An unknown field nesting structs 40 deep.
        let mut out = Vec::new();
        let mut e = Encoder::new(proto, &mut out);
        e.message_begin("append", CALL, 1);
        e.struct_begin();
        for _ in 0..40 {
            e.field_begin(T_STRUCT, 4)?;
            e.struct_begin();
        }
        for _ in 0..41 {
            e.struct_end();
        }
        assert_eq!(
            decode(proto, &Bytes::from(out)).err(),
            Some(DecodeError::TooDeep)
        );
    }
    Ok(())
}

#[test]
fn a_refused_charge_stops_decoding() {
    for proto in BOTH {
        let msg = request(proto, &sample(), false);
        let mut budget = 200usize;
        let r = decode_request(proto, &msg, 100, &mut |n| {
            budget = budget
                .checked_sub(n)
                .ok_or_else(|| DecodeError::Starved("no memory".into()))?;
            Ok(())
        });
        assert_eq!(r.err(), Some(DecodeError::Starved("no memory".into())));
    }
}

#[test]
fn missing_required_fields_are_refused() {
    for proto in BOTH {
        let mut out = Vec::new();
        let mut e = Encoder::new(proto, &mut out);
        e.message_begin("append", CALL, 1);
        e.struct_begin();
        let _ = e.field_begin(T_STRUCT, 1);
        e.struct_begin();
        let _ = e.field_begin(T_STRING, 2);
        e.write_binary(b"body without headers");
        e.struct_end();
        e.struct_end();
        assert!(matches!(
            decode(proto, &Bytes::from(out)),
            Err(DecodeError::Invalid(_))
        ));
    }
}

fn arb_event() -> impl Strategy<Value = Event> {
    let headers = proptest::collection::vec(("\\PC{0,12}", "\\PC{0,40}"), 0..6);
    let body = proptest::collection::vec(any::<u8>(), 0..200);
    (headers, body).prop_map(|(h, b)| Event::with_headers(h.into_iter().collect(), b))
}

proptest! {
    #[test]
    fn any_batch_round_trips(events in proptest::collection::vec(arb_event(), 0..40), seq in any::<i32>()) {
        for proto in BOTH {
            let mut out = Vec::new();
            prop_assert!(encode_call(proto, &mut out, seq, &events, false).is_ok());
            let req = decode(proto, &unframe(&out));
            prop_assert!(req.is_ok(), "{:?}", req);
            if let Ok(req) = req {
                prop_assert_eq!(req.header.seqid, seq);
                prop_assert_eq!(req.call, Call::AppendBatch(events.clone()));
            }
        }
    }

    /// Garbage never panics, and a corrupted valid message decodes or fails cleanly.
    #[test]
    fn garbage_is_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), flip in any::<(usize, u8)>()) {
        for proto in BOTH {
            let _ = decode(proto, &Bytes::from(bytes.clone()));
            let _ = decode_reply(proto, &Bytes::from(bytes.clone()), "append", 1);
            let mut msg = request(proto, &sample(), false).to_vec();
            let i = flip.0 % msg.len();
            msg[i] ^= flip.1 | 1;
            let _ = decode(proto, &Bytes::from(msg));
        }
    }
}
