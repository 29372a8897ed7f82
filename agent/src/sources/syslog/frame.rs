//! Splitting a TCP syslog stream into messages: newline framing (Flume's) and, as an addition,
//! octet counting (RFC 6587 `LEN SP MSG`, what `logger --octet-count` and rsyslog's
//! `TCP_Frame="octet-counted"` send), told apart per message by its first byte.

/// A message and whether it was cut at `eventSize`.
pub(crate) type Message = (Vec<u8>, bool);

#[derive(Debug)]
enum State {
    /// Between messages.
    Start,
    /// Reading the digits of an octet count.
    Count(Vec<u8>),
    /// Reading `left` more bytes of an octet-counted message.
    Counted { left: usize },
    /// Skipping the part of an octet-counted message beyond `eventSize`.
    Skip { left: usize },
    /// Reading a newline-terminated message.
    Line,
}

#[derive(Debug)]
pub(crate) struct Framer {
    max: usize,
    state: State,
    buf: Vec<u8>,
}

impl Framer {
    pub(crate) fn new(event_size: usize) -> Self {
        Self {
            max: event_size,
            state: State::Start,
            buf: Vec::new(),
        }
    }

    /// Feeds bytes; appends the messages they complete to `out`.
    pub(crate) fn feed(&mut self, mut data: &[u8], out: &mut Vec<Message>) {
        while !data.is_empty() {
            match &mut self.state {
                State::Start => {
                    let b = data[0];
                    if b == b'\n' || b == b'\r' {
                        data = &data[1..];
                    } else if b.is_ascii_digit() {
                        self.state = State::Count(Vec::new());
                    } else {
                        self.state = State::Line;
                    }
                }
                State::Count(digits) => {
                    let b = data[0];
                    if b.is_ascii_digit() && digits.len() < 10 {
                        digits.push(b);
                        data = &data[1..];
                    } else if b == b' ' && !digits.is_empty() {
                        let n = std::str::from_utf8(digits)
                            .ok()
                            .and_then(|s| s.parse::<usize>().ok())
                            .unwrap_or(0);
                        data = &data[1..];
                        self.buf.clear();
                        self.state = State::Counted { left: n };
                        if n == 0 {
                            self.state = State::Start;
                        }
                    } else {
                        // Not an octet count: the digits start a newline-framed message.
                        self.buf = std::mem::take(digits);
                        self.state = State::Line;
                    }
                }
                State::Counted { left } => {
                    let room = self.max - self.buf.len();
                    let take = (*left).min(data.len()).min(room);
                    self.buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    *left -= take;
                    if *left == 0 {
                        out.push((std::mem::take(&mut self.buf), false));
                        self.state = State::Start;
                    } else if self.buf.len() >= self.max {
                        out.push((std::mem::take(&mut self.buf), true));
                        self.state = State::Skip { left: *left };
                    }
                }
                State::Skip { left } => {
                    let take = (*left).min(data.len());
                    data = &data[take..];
                    *left -= take;
                    if *left == 0 {
                        self.state = State::Start;
                    }
                }
                State::Line => {
                    let room = self.max - self.buf.len();
                    // The newline does not count against eventSize.
                    let window = &data[..data.len().min(room + 1)];
                    match window.iter().position(|b| *b == b'\n') {
                        Some(i) => {
                            self.buf.extend_from_slice(&window[..i]);
                            data = &data[i + 1..];
                            out.push((std::mem::take(&mut self.buf), false));
                            self.state = State::Start;
                        }
                        None => {
                            let window = &window[..window.len().min(room)];
                            self.buf.extend_from_slice(window);
                            data = &data[window.len()..];
                            if self.buf.len() >= self.max {
                                // Flume's Incomplete event; the rest is read as a new message.
                                out.push((std::mem::take(&mut self.buf), true));
                                self.state = State::Start;
                            }
                        }
                    }
                }
            }
        }
    }

    /// The message in progress at the end of the stream, if any (a last line without `\n`).
    pub(crate) fn finish(&mut self) -> Option<Message> {
        let state = std::mem::replace(&mut self.state, State::Start);
        match state {
            State::Line if !self.buf.is_empty() => Some((std::mem::take(&mut self.buf), false)),
            State::Counted { .. } if !self.buf.is_empty() => {
                Some((std::mem::take(&mut self.buf), true))
            }
            _ => None,
        }
    }
}

/// A UDP datagram's message: up to its first newline, at most `max` bytes.
pub(crate) fn datagram(data: &[u8], max: usize) -> Message {
    let end = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let msg = &data[..end];
    if msg.len() > max {
        (msg[..max].to_vec(), true)
    } else {
        (msg.to_vec(), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(max: usize, chunks: &[&[u8]]) -> Vec<Message> {
        let mut f = Framer::new(max);
        let mut out = Vec::new();
        for c in chunks {
            f.feed(c, &mut out);
        }
        out.extend(f.finish());
        out
    }

    #[test]
    fn newline_and_octet_counted_frames_in_any_chunking() {
        let stream: &[u8] = b"<13>a b\n11 <13>one\ntwo\n<14>c\n";
        let want: Vec<Message> = vec![
            (b"<13>a b".to_vec(), false),
            (b"<13>one\ntwo".to_vec(), false),
            (b"<14>c".to_vec(), false),
        ];
        assert_eq!(all(100, &[stream]), want);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(all(100, &bytes), want);
    }

    #[test]
    fn event_size_cuts_messages() {
        assert_eq!(
            all(4, &[b"<13>abcdef\n"]),
            vec![
                (b"<13>".to_vec(), true),
                (b"abcd".to_vec(), true),
                (b"ef".to_vec(), false)
            ]
        );
        assert_eq!(
            all(4, &[b"8 <13>abcd<14>x\n<15>\n"]),
            vec![
                (b"<13>".to_vec(), true),
                (b"<14>".to_vec(), true),
                (b"x".to_vec(), false),
                (b"<15>".to_vec(), false)
            ]
        );
        assert_eq!(
            datagram(b"<13>hello\nrest", 100),
            (b"<13>hello".to_vec(), false)
        );
        assert_eq!(datagram(b"<13>hello", 5), (b"<13>h".to_vec(), true));
    }
}
