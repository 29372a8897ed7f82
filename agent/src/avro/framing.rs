//! Netty transport framing: `serial`, `count`, then `count` × (`length`, bytes), big-endian.

use std::io::{self, Read, Write};

/// A decoded frame: the serial and the concatenated payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub serial: i32,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("bad frame: {0}")]
    Invalid(String),
}

fn read_i32(r: &mut impl Read) -> io::Result<i32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(i32::from_be_bytes(b))
}

/// Reads one frame whose payload is at most `max_bytes`. A clean end of stream before the first
/// byte is [`FrameError::Closed`].
pub fn read_frame(r: &mut impl Read, max_bytes: usize) -> Result<Frame, FrameError> {
    let mut first = [0u8; 4];
    match r.read(&mut first[..1]) {
        Ok(0) => return Err(FrameError::Closed),
        Ok(_) => {}
        Err(e) => return Err(e.into()),
    }
    r.read_exact(&mut first[1..])?;
    let serial = i32::from_be_bytes(first);
    let count = read_i32(r)?;
    // Every buffer costs at least its 4-byte length, so the count is bounded by the maximum.
    if count < 0 || count as usize > max_bytes / 4 + 1 {
        return Err(FrameError::Invalid(format!(
            "buffer count {count} out of range"
        )));
    }
    let mut payload = Vec::new();
    for _ in 0..count {
        let len = read_i32(r)?;
        if len < 0 {
            return Err(FrameError::Invalid(format!("negative buffer length {len}")));
        }
        let len = len as usize;
        if payload.len() + len > max_bytes {
            return Err(FrameError::Invalid(format!(
                "message of more than {max_bytes} bytes (buffer of {len} after {} bytes)",
                payload.len()
            )));
        }
        let start = payload.len();
        payload.resize(start + len, 0);
        r.read_exact(&mut payload[start..])?;
    }
    Ok(Frame { serial, payload })
}

/// Writes `payload` as one frame with a single buffer.
pub fn write_frame(w: &mut impl Write, serial: i32, payload: &[u8]) -> io::Result<()> {
    let len = i32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message over 2 GiB"))?;
    let mut head = [0u8; 12];
    head[..4].copy_from_slice(&serial.to_be_bytes());
    head[4..8].copy_from_slice(&1i32.to_be_bytes());
    head[8..].copy_from_slice(&len.to_be_bytes());
    w.write_all(&head)?;
    w.write_all(payload)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_multi_buffer() -> Result<(), FrameError> {
        let mut buf = Vec::new();
        write_frame(&mut buf, 7, b"hello")?;
        let f = read_frame(&mut &buf[..], 100)?;
        assert_eq!(
            f,
            Frame {
                serial: 7,
                payload: b"hello".to_vec()
            }
        );
        // Two buffers concatenate.
        let mut two = Vec::new();
        for v in [3i32, 2, 2] {
            two.extend_from_slice(&v.to_be_bytes());
        }
        two.extend_from_slice(b"ab");
        two.extend_from_slice(&1i32.to_be_bytes());
        two.extend_from_slice(b"c");
        let f = read_frame(&mut &two[..], 100)?;
        assert_eq!(f.payload, b"abc");
        Ok(())
    }

    #[test]
    fn absurd_sizes_are_rejected_before_allocating() {
        let mut huge_count = Vec::new();
        for v in [1i32, i32::MAX] {
            huge_count.extend_from_slice(&v.to_be_bytes());
        }
        assert!(matches!(
            read_frame(&mut &huge_count[..], 1 << 20),
            Err(FrameError::Invalid(_))
        ));
        let mut huge_len = Vec::new();
        for v in [1i32, 1, i32::MAX] {
            huge_len.extend_from_slice(&v.to_be_bytes());
        }
        assert!(matches!(
            read_frame(&mut &huge_len[..], 1 << 20),
            Err(FrameError::Invalid(_))
        ));
        let mut neg = Vec::new();
        for v in [1i32, 1, -5] {
            neg.extend_from_slice(&v.to_be_bytes());
        }
        assert!(matches!(
            read_frame(&mut &neg[..], 1 << 20),
            Err(FrameError::Invalid(_))
        ));
    }

    #[test]
    fn truncated_and_closed() {
        assert!(matches!(
            read_frame(&mut &[][..], 10),
            Err(FrameError::Closed)
        ));
        let trunc = [0u8, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, b'x'];
        assert!(matches!(
            read_frame(&mut &trunc[..], 100),
            Err(FrameError::Io(_))
        ));
    }
}

#[cfg(test)]
mod fuzz {
    //! Property tests standing in for a fuzz target: arbitrary bytes through the frame and
    //! request decoders never panic, never allocate past the limit, and valid frames survive.
    use proptest::prelude::*;

    use super::*;
    use crate::avro::decode::Reader;
    use crate::avro::protocol;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn frame_decoder_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(f) = read_frame(&mut &bytes[..], 256) {
                prop_assert!(f.payload.len() <= 256);
            }
        }

        #[test]
        fn request_decoders_are_total(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut r = Reader::new(bytes.clone());
            let _ = protocol::read_handshake_request(&mut r);
            let mut r = Reader::new(bytes.clone());
            let _ = protocol::read_events(&mut r, usize::MAX);
            let mut r = Reader::new(bytes);
            let _ = protocol::read_meta(&mut r).and_then(|_| protocol::read_string(&mut r));
        }

        #[test]
        fn frames_round_trip(serial in any::<i32>(), payload in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut buf = Vec::new();
            write_frame(&mut buf, serial, &payload).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let f = read_frame(&mut &buf[..], 4096).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(f, Frame { serial, payload });
        }
    }
}
