//! Netty transport framing: `serial`, `count`, then `count` × (`length`, bytes), big-endian.

use super::encode::write_all_vectored;
use std::io::{self, Read, Write};

use bytes::Bytes;

/// A decoded frame: the serial and the concatenated payload.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) serial: i32,
    pub(crate) payload: Vec<u8>,
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

/// The largest buffer count a frame of at most `max_bytes` can carry: every buffer costs at
/// least its 4-byte length.
fn check_count(count: i32, max_bytes: usize) -> Result<usize, FrameError> {
    if count < 0 || count as usize > max_bytes / 4 + 1 {
        return Err(FrameError::Invalid(format!(
            "buffer count {count} out of range"
        )));
    }
    Ok(count as usize)
}

fn check_len(len: i32, have: usize, max_bytes: usize) -> Result<usize, FrameError> {
    if len < 0 {
        return Err(FrameError::Invalid(format!("negative buffer length {len}")));
    }
    let len = len as usize;
    if have + len > max_bytes {
        return Err(FrameError::Invalid(format!(
            "message of more than {max_bytes} bytes (buffer of {len} after {have} bytes)"
        )));
    }
    Ok(len)
}

/// Reads one frame whose payload is at most `max_bytes`, from a blocking reader (the client
/// side). A clean end of stream before the first byte is [`FrameError::Closed`]. The payload
/// grows as its bytes arrive: a declared length is never allocated up front.
pub(crate) fn read_frame(r: &mut impl Read, max_bytes: usize) -> Result<Frame, FrameError> {
    let mut first = [0u8; 4];
    match r.read(&mut first[..1]) {
        Ok(0) => return Err(FrameError::Closed),
        Ok(_) => {}
        Err(e) => return Err(e.into()),
    }
    r.read_exact(&mut first[1..])?;
    let serial = i32::from_be_bytes(first);
    let count = check_count(read_i32(r)?, max_bytes)?;
    let mut payload = Vec::new();
    for _ in 0..count {
        let len = check_len(read_i32(r)?, payload.len(), max_bytes)?;
        let start = payload.len();
        r.by_ref().take(len as u64).read_to_end(&mut payload)?;
        if payload.len() - start < len {
            return Err(FrameError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("frame ends after {} of {len} bytes", payload.len() - start),
            )));
        }
    }
    Ok(Frame { serial, payload })
}

/// A frame as the server receives it: the payload in chunks (see [`FrameDecoder`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ChunkedFrame {
    pub(crate) serial: i32,
    pub(crate) chunks: Vec<Bytes>,
}

/// What [`FrameDecoder::feed`] did with its input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Feed {
    /// Took `consumed` bytes (all of the input); the frame is not complete yet.
    Consumed(usize),
    /// Took `consumed` bytes, then needs a new payload chunk of `bytes` before it can take the
    /// rest: charge them to a budget, then call [`FrameDecoder::grow`].
    NeedCapacity { consumed: usize, bytes: usize },
    /// Took `consumed` bytes and completed a frame.
    Frame {
        consumed: usize,
        frame: ChunkedFrame,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Serial,
    Count,
    Len,
    Data,
}

/// Smallest and largest payload chunk.
const MIN_CHUNK: usize = 16 * 1024;
const MAX_CHUNK: usize = 256 * 1024;

/// Incremental frame decoder for a non-blocking server, fed whatever bytes arrived.
///
/// The payload is received into chunks allocated only once bytes for them have arrived, each
/// as large as what was received so far (16 KiB to 256 KiB), never past the declared end of the
/// frame's last buffer nor `max_bytes`: so the memory of a frame in progress is at most twice
/// its received bytes plus 16 KiB (received + 256 KiB past that). Chunks are never grown by
/// copying. The caller grants each chunk ([`Feed::NeedCapacity`]), so it can bound the memory
/// of all connections together.
pub(crate) struct FrameDecoder {
    max_bytes: usize,
    int: [u8; 4],
    int_len: usize,
    stage: Stage,
    serial: i32,
    buffers_left: usize,
    /// Payload offset at which the current buffer ends.
    buffer_end: usize,
    received: usize,
    chunks: Vec<Bytes>,
    /// The chunk being filled (its capacity is its size).
    cur: Vec<u8>,
}

impl FrameDecoder {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            int: [0; 4],
            int_len: 0,
            stage: Stage::Serial,
            serial: 0,
            buffers_left: 0,
            buffer_end: 0,
            received: 0,
            chunks: Vec::new(),
            cur: Vec::new(),
        }
    }

    /// Between frames, with no byte of the next one received.
    pub(crate) fn is_idle(&self) -> bool {
        self.stage == Stage::Serial && self.int_len == 0
    }

    /// Payload bytes received so far of the current frame.
    pub(crate) fn received(&self) -> usize {
        self.received
    }

    /// Allocates the chunk of `bytes` asked for by [`Feed::NeedCapacity`].
    pub(crate) fn grow(&mut self, bytes: usize) {
        if !self.cur.is_empty() {
            self.chunks.push(Bytes::from(std::mem::take(&mut self.cur)));
        }
        self.cur = Vec::with_capacity(bytes);
    }

    /// Size of the next chunk.
    fn next_chunk(&self) -> usize {
        // The payload can end no later than the last buffer's declared end.
        let end = if self.buffers_left == 0 {
            self.buffer_end
        } else {
            self.max_bytes
        };
        self.received
            .clamp(MIN_CHUNK, MAX_CHUNK)
            .min(end - self.received)
            .max(1)
    }

    fn finish(&mut self) -> ChunkedFrame {
        self.stage = Stage::Serial;
        if !self.cur.is_empty() {
            self.chunks.push(Bytes::from(std::mem::take(&mut self.cur)));
        }
        self.cur = Vec::new();
        self.received = 0;
        ChunkedFrame {
            serial: self.serial,
            chunks: std::mem::take(&mut self.chunks),
        }
    }

    /// The chunk the next payload bytes go to and how many of the stream's next bytes belong
    /// to the current buffer's data, when both are non-zero: a reader may put up to that many
    /// bytes straight into the chunk's spare capacity (then [`Self::filled`], then
    /// [`Self::feed`] with no input to learn what follows).
    pub(crate) fn spare_payload(&mut self) -> Option<(&mut Vec<u8>, usize)> {
        if self.stage != Stage::Data {
            return None;
        }
        let want = self.buffer_end - self.received;
        let spare = self.cur.capacity() - self.cur.len();
        (want > 0 && spare > 0).then_some((&mut self.cur, want.min(spare)))
    }

    /// Counts `n` payload bytes a reader appended to the chunk of [`Self::spare_payload`].
    pub(crate) fn filled(&mut self, n: usize) {
        self.received += n;
    }

    /// Consumes a prefix of `input`; see [`Feed`].
    pub(crate) fn feed(&mut self, input: &[u8]) -> Result<Feed, FrameError> {
        let mut pos = 0;
        loop {
            if self.stage == Stage::Data {
                let want = self.buffer_end - self.received;
                if want == 0 {
                    if self.buffers_left == 0 {
                        return Ok(Feed::Frame {
                            consumed: pos,
                            frame: self.finish(),
                        });
                    }
                    self.stage = Stage::Len;
                    continue;
                }
                if pos == input.len() {
                    return Ok(Feed::Consumed(pos));
                }
                let spare = self.cur.capacity() - self.cur.len();
                if spare == 0 {
                    return Ok(Feed::NeedCapacity {
                        consumed: pos,
                        bytes: self.next_chunk(),
                    });
                }
                let n = want.min(spare).min(input.len() - pos);
                self.cur.extend_from_slice(&input[pos..pos + n]);
                self.received += n;
                pos += n;
                continue;
            }
            if pos == input.len() {
                return Ok(Feed::Consumed(pos));
            }
            let n = (4 - self.int_len).min(input.len() - pos);
            self.int[self.int_len..self.int_len + n].copy_from_slice(&input[pos..pos + n]);
            self.int_len += n;
            pos += n;
            if self.int_len < 4 {
                continue;
            }
            self.int_len = 0;
            let v = i32::from_be_bytes(self.int);
            match self.stage {
                Stage::Serial => {
                    self.serial = v;
                    self.stage = Stage::Count;
                }
                Stage::Count => {
                    self.buffers_left = check_count(v, self.max_bytes)?;
                    self.buffer_end = 0;
                    if self.buffers_left == 0 {
                        return Ok(Feed::Frame {
                            consumed: pos,
                            frame: self.finish(),
                        });
                    }
                    self.stage = Stage::Len;
                }
                Stage::Len | Stage::Data => {
                    let len = check_len(v, self.received, self.max_bytes)?;
                    self.buffers_left -= 1;
                    self.buffer_end = self.received + len;
                    self.stage = Stage::Data;
                }
            }
        }
    }
}

/// Writes `payload` as one frame with a single buffer.
pub(crate) fn write_frame(w: &mut impl Write, serial: i32, payload: &[u8]) -> io::Result<()> {
    write_frame_parts(w, serial, payload, &[])
}

/// Writes `head` followed by `parts` as one frame with a single buffer, without joining them:
/// the pieces go to the writer as they are ([`write_all_vectored`]).
pub(crate) fn write_frame_parts(
    w: &mut impl Write,
    serial: i32,
    head: &[u8],
    parts: &[&[u8]],
) -> io::Result<()> {
    let total = head.len() + parts.iter().map(|p| p.len()).sum::<usize>();
    let len = i32::try_from(total)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message over 2 GiB"))?;
    let mut frame = [0u8; 12];
    frame[..4].copy_from_slice(&serial.to_be_bytes());
    frame[4..8].copy_from_slice(&1i32.to_be_bytes());
    frame[8..].copy_from_slice(&len.to_be_bytes());
    let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 2);
    all.push(&frame);
    all.push(head);
    all.extend_from_slice(parts);
    write_all_vectored(w, &all)?;
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
mod decoder_tests {
    use super::*;

    /// Feeds `bytes` in pieces of `piece` bytes, granting every chunk; returns the frames
    /// (payloads joined) and the most memory a frame in progress held.
    pub(super) fn decode_all(
        bytes: &[u8],
        piece: usize,
        max: usize,
    ) -> Result<(Vec<Frame>, usize), FrameError> {
        let mut d = FrameDecoder::new(max);
        let mut frames = Vec::new();
        let (mut held, mut most) = (0, 0);
        for chunk in bytes.chunks(piece.max(1)) {
            let mut pos = 0;
            while pos < chunk.len() {
                match d.feed(&chunk[pos..])? {
                    Feed::Consumed(n) => pos += n,
                    Feed::NeedCapacity { consumed, bytes } => {
                        pos += consumed;
                        d.grow(bytes);
                        held += bytes;
                        most = most.max(held);
                        // At most twice what was received plus one small chunk (the byte
                        // that asked for this chunk is not counted yet).
                        assert!(
                            held <= 2 * d.received() + MIN_CHUNK,
                            "{held} {}",
                            d.received()
                        );
                        assert!(held <= max);
                    }
                    Feed::Frame { consumed, frame } => {
                        pos += consumed;
                        assert!(frame.chunks.iter().all(|c| !c.is_empty()));
                        frames.push(Frame {
                            serial: frame.serial,
                            payload: frame.chunks.concat(),
                        });
                        held = 0;
                    }
                }
            }
        }
        Ok((frames, most))
    }

    /// Frames 1 (`hello`), 2 (`ab` + `` + `c` in three buffers), as bytes.
    fn small_frames() -> Result<Vec<u8>, FrameError> {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, 1, b"hello")?;
        for v in [2i32, 3, 2] {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        bytes.extend_from_slice(b"ab");
        bytes.extend_from_slice(&0i32.to_be_bytes());
        bytes.extend_from_slice(&1i32.to_be_bytes());
        bytes.extend_from_slice(b"c");
        Ok(bytes)
    }

    #[test]
    fn pieces_of_any_size_decode_like_read_frame() -> Result<(), FrameError> {
        let mut bytes = small_frames()?;
        // A frame without buffers.
        bytes.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 0]);
        let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        write_frame(&mut bytes, 4, &big)?;
        for piece in [1, 3, 7, 4096, 1 << 20] {
            let (frames, _) = decode_all(&bytes, piece, 1 << 20)?;
            let got: Vec<_> = frames
                .iter()
                .map(|f| (f.serial, f.payload.as_slice()))
                .collect();
            assert_eq!(
                got,
                [(1, &b"hello"[..]), (2, b"abc"), (3, b""), (4, &big[..])],
                "piece {piece}"
            );
        }
        Ok(())
    }

    /// As the Avro source reads a plain connection: payload bytes straight into the chunk's
    /// spare room when the decoder offers it (at most `piece` at a time), else fed.
    fn decode_direct(bytes: &[u8], piece: usize, max: usize) -> Result<Vec<Frame>, FrameError> {
        let mut d = FrameDecoder::new(max);
        let mut frames = Vec::new();
        let mut pos = 0;
        let mut push = |frame: ChunkedFrame| {
            frames.push(Frame {
                serial: frame.serial,
                payload: frame.chunks.concat(),
            })
        };
        while pos < bytes.len() {
            if let Some((chunk, room)) = d.spare_payload() {
                let n = room.min(piece).min(bytes.len() - pos);
                chunk.extend_from_slice(&bytes[pos..pos + n]);
                assert!(chunk.len() <= chunk.capacity());
                d.filled(n);
                pos += n;
                if let Feed::Frame { frame, .. } = d.feed(&[])? {
                    push(frame);
                }
                continue;
            }
            let end = (pos + piece).min(bytes.len());
            match d.feed(&bytes[pos..end])? {
                Feed::Consumed(n) => pos += n,
                Feed::NeedCapacity { consumed, bytes } => {
                    pos += consumed;
                    d.grow(bytes);
                }
                Feed::Frame { consumed, frame } => {
                    pos += consumed;
                    push(frame);
                }
            }
        }
        Ok(frames)
    }

    #[test]
    fn direct_reads_into_the_chunk_decode_like_fed_bytes() -> Result<(), FrameError> {
        let mut bytes = small_frames()?;
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
        write_frame(&mut bytes, 4, &big)?;
        write_frame(&mut bytes, 5, b"after")?;
        for piece in [1, 5, 4096, 1 << 20] {
            let frames = decode_direct(&bytes, piece, 1 << 20)?;
            let (fed, _) = decode_all(&bytes, piece, 1 << 20)?;
            assert_eq!(frames.len(), 4, "piece {piece}");
            for (a, b) in frames.iter().zip(&fed) {
                assert_eq!(
                    (a.serial, &a.payload),
                    (b.serial, &b.payload),
                    "piece {piece}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn a_declared_length_is_not_allocated_before_its_bytes_arrive() -> Result<(), FrameError> {
        let mut d = FrameDecoder::new(64 << 20);
        let mut head = Vec::new();
        for v in [1i32, 1, 60_000_000] {
            head.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(d.feed(&head)?, Feed::Consumed(12));
        assert!(!d.is_idle());
        assert_eq!(
            d.feed(b"x")?,
            Feed::NeedCapacity {
                consumed: 0,
                bytes: MIN_CHUNK
            }
        );
        // The last buffer's declared end caps a chunk.
        let mut small = FrameDecoder::new(64 << 20);
        let mut head = Vec::new();
        for v in [1i32, 1, 10] {
            head.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(
            small.feed(&[head, b"0123456789".to_vec()].concat())?,
            Feed::NeedCapacity {
                consumed: 12,
                bytes: 10
            }
        );
        Ok(())
    }

    #[test]
    fn bad_headers_are_rejected_incrementally() {
        for (v, what) in [
            ([1i32, i32::MAX, 0], "buffer count"),
            ([1, 1, -5], "negative"),
            ([1, 1, 2_000_000], "message of more than"),
        ] {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_be_bytes()).collect();
            let mut d = FrameDecoder::new(1 << 20);
            let err = bytes
                .iter()
                .map(|b| d.feed(std::slice::from_ref(b)))
                .find_map(Result::err)
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(what), "{what}: {err}");
        }
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
        fn incremental_decoder_is_total_and_bounded(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            piece in 1usize..64,
        ) {
            if let Ok((frames, most)) = super::decoder_tests::decode_all(&bytes, piece, 256) {
                prop_assert!(most <= 256);
                prop_assert!(frames.iter().all(|f| f.payload.len() <= 256));
            }
        }

        #[test]
        fn incremental_decoder_matches_read_frame(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..4),
            piece in 1usize..5000,
        ) {
            let mut buf = Vec::new();
            for (i, p) in payloads.iter().enumerate() {
                write_frame(&mut buf, i as i32, p).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            let (frames, _) = super::decoder_tests::decode_all(&buf, piece, 4096)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let got: Vec<Vec<u8>> = frames.into_iter().map(|f| f.payload).collect();
            prop_assert_eq!(got, payloads);
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
