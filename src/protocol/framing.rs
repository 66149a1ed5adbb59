//! Framing: cutting one connection's byte stream into messages, and framing responses.
//!
//! Owns style detection (JSON stream, 4-byte big-endian length prefix, 64-byte decimal
//! header), the per-message size limit and the response framing of each style.
//! It is pure and incremental: it never reads sockets, never copies or owns the input
//! buffer (the caller does), never rescans bytes it has already looked at, and never
//! looks inside a message beyond counting braces. It can hand the start of a JSON message
//! to [`super::reader`], whose envelope fast path then finds the end itself in the same
//! pass that parses it ([`Framer::json_message_at`], [`Framer::message_read`]).

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use super::scan::find_quote_or_backslash;

/// Length of the header of [`Framing::BinaryLength`].
pub const BINARY_HEADER_LEN: usize = 4;
/// Length of the header of [`Framing::DecimalHeader`].
pub const DECIMAL_HEADER_LEN: usize = 64;

/// Which framing styles a server accepts (config key `server.framing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FramingMode {
    /// Detect any of the three styles from the first non-whitespace byte.
    #[default]
    Auto,
    /// JSON stream only.
    Json,
    /// Either length style (binary prefix or decimal header).
    Length,
}

impl FramingMode {
    /// The config spelling: `auto`, `json` or `length`.
    pub fn as_str(self) -> &'static str {
        match self {
            FramingMode::Auto => "auto",
            FramingMode::Json => "json",
            FramingMode::Length => "length",
        }
    }
}

impl fmt::Display for FramingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `server.framing` value that is not `auto`, `json` or `length`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown framing mode {0:?} (expected auto, json or length)")]
pub struct UnknownFramingMode(pub String);

impl FromStr for FramingMode {
    type Err = UnknownFramingMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(FramingMode::Auto),
            "json" => Ok(FramingMode::Json),
            "length" => Ok(FramingMode::Length),
            other => Err(UnknownFramingMode(other.to_owned())),
        }
    }
}

/// The framing style detected on one connection. Responses use the same style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Concatenated JSON objects; responses end with `\n`.
    JsonStream,
    /// 4-byte big-endian length, then the payload.
    BinaryLength,
    /// 64 bytes of decimal length right-padded with spaces, then the payload.
    DecimalHeader,
}

impl Framing {
    /// Short name for logs: `json`, `binary-length`, `decimal-header`.
    pub fn name(self) -> &'static str {
        match self {
            Framing::JsonStream => "json",
            Framing::BinaryLength => "binary-length",
            Framing::DecimalHeader => "decimal-header",
        }
    }
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One complete message found at the front of the caller's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Where the message payload lies in the buffer passed to [`Framer::next_frame`].
    pub payload: Range<usize>,
    /// How many bytes of the buffer the caller must now drop (headers and
    /// leading whitespace included).
    pub consumed: usize,
}

/// Why a stream can no longer be framed. `Display` is the client-facing message.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The first non-whitespace byte selects no accepted framing style.
    #[error("unrecognised framing: a message may not start with byte 0x{0:02x}")]
    UnknownStyle(u8),
    /// A message (or a run of whitespace) is longer than the size limit.
    #[error("message exceeds the size limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// A malformed length header, or a stray byte between JSON messages.
    #[error("bad framing: {0}")]
    BadHeader(String),
}

/// Where the framer is inside the current message. Positions are offsets into the
/// caller's buffer, which starts at the first byte not yet consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between messages (or before the first one): skipping whitespace.
    Gap { pos: usize },
    /// Inside a JSON object that started at `start`; bytes before `pos` are scanned.
    Json {
        start: usize,
        pos: usize,
        depth: usize,
        in_string: bool,
        escape: bool,
    },
    /// Waiting for the 4 header bytes at `start`.
    BinaryHeader { start: usize },
    /// Reading the 64-byte decimal header at `start`; bytes before `pos` are validated
    /// and `len` is the value of the digits so far.
    DecimalHeader {
        start: usize,
        pos: usize,
        len: usize,
        padding: bool,
    },
    /// The header is done; waiting for `len` payload bytes at `start`.
    Body { start: usize, len: usize },
}

impl State {
    /// Bytes of the buffer this state has already looked at.
    fn scanned(self) -> usize {
        match self {
            State::Gap { pos } => pos,
            State::Json { pos, .. } => pos,
            State::BinaryHeader { start } => start,
            State::DecimalHeader { pos, .. } => pos,
            State::Body { start, .. } => start,
        }
    }
}

/// Incremental, per-connection message framer. See [`Framer::next_frame`].
#[derive(Debug, Clone)]
pub struct Framer {
    mode: FramingMode,
    max_message: usize,
    framing: Option<Framing>,
    state: State,
    failed: Option<FrameError>,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl Framer {
    /// A framer for a new connection accepting `mode`, with messages limited to
    /// `max_message` payload bytes.
    pub fn new(mode: FramingMode, max_message: usize) -> Framer {
        Framer {
            mode,
            max_message,
            framing: None,
            state: State::Gap { pos: 0 },
            failed: None,
        }
    }

    /// The style detected on this connection (None until the first non-whitespace byte).
    pub fn framing(&self) -> Option<Framing> {
        self.framing
    }

    /// Whitespace already skipped in front of the next message (between JSON messages,
    /// or before a connection's first message). The caller may drop that many bytes from
    /// the front of its buffer at once (e.g. to free an idle connection's buffer after a
    /// trailing `\n`) and then passes the shortened buffer; the framer forgets them.
    /// Returns 0 inside a message, and when nothing was skipped.
    pub fn discard_whitespace(&mut self) -> usize {
        match self.state {
            State::Gap { pos } if self.failed.is_none() => {
                self.state = State::Gap { pos: 0 };
                pos
            }
            _ => 0,
        }
    }

    /// Looks at the unconsumed input `buf` (the caller keeps bytes the framer has not
    /// consumed; on the next call `buf` starts with those same bytes, possibly longer).
    ///
    /// `Ok(Some(frame))`: `buf[frame.payload]` is one complete message; the caller then
    /// drops `frame.consumed` bytes (leading whitespace between JSON messages is included).
    /// `Ok(None)`: need more bytes. `Err`: the stream can no longer be trusted (the caller
    /// sends an error response and closes); every later call returns the same error.
    ///
    /// Incremental: bytes already scanned are not scanned again, so a message arriving one
    /// byte at a time costs O(n) in total. `TooLarge` is returned as soon as the buffered
    /// bytes of the message in progress exceed the limit; a declared length over the
    /// limit fails at once.
    pub fn next_frame(&mut self, buf: &[u8]) -> Result<Option<Frame>, FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if buf.len() < self.state.scanned() {
            // The caller broke the contract (its buffer shrank without a frame being
            // consumed). Never index out of bounds: start this message over.
            self.state = self.message_start(0);
        }
        match self.step(buf) {
            Ok(Some(frame)) => {
                self.state = self.message_start(0);
                Ok(Some(frame))
            }
            Ok(None) => Ok(None),
            Err(err) => {
                self.failed = Some(err.clone());
                Err(err)
            }
        }
    }

    /// Where the next message's bytes may lie, when it is a JSON object whose `{` is in
    /// `buf` and nothing after that `{` has been scanned yet: `buf[range.start]` is the
    /// `{` and `range.end` is where the size limit (or `buf`) ends. Leading whitespace is
    /// skipped and, on a connection's first message, the style detected, as
    /// [`Framer::next_frame`] would. `None` in every other case (a message partly scanned,
    /// a length style, a failed stream, only whitespace so far, any byte but `{`); the
    /// caller then uses `next_frame`, which also reports the errors.
    ///
    /// A caller that finds the message's end itself calls [`Framer::message_read`];
    /// one that does not calls `next_frame`, which goes on from here without
    /// rescanning, so a message costs at most one such look before the framer takes over.
    pub(crate) fn json_message_at(&mut self, buf: &[u8]) -> Option<Range<usize>> {
        if self.failed.is_some() {
            return None;
        }
        let State::Gap { pos } = self.state else {
            return None;
        };
        let rest = buf.get(pos..)?;
        let off = rest.iter().position(|&b| !is_ws(b))?;
        if rest.get(off) != Some(&b'{') {
            return None;
        }
        match self.framing {
            Some(Framing::JsonStream) => {}
            None if self.mode != FramingMode::Length => self.framing = Some(Framing::JsonStream),
            _ => return None,
        }
        let at = pos + off;
        self.state = State::Gap { pos: at };
        Some(at..at.saturating_add(self.max_message).min(buf.len()))
    }

    /// The caller found the end of the message [`Framer::json_message_at`] pointed at
    /// and drops the bytes up to it; the framer starts on the next message.
    pub(crate) fn message_read(&mut self) {
        self.state = self.message_start(0);
    }

    /// The state at the start of a message, at offset `at`, for the detected style.
    fn message_start(&self, at: usize) -> State {
        match self.framing {
            None | Some(Framing::JsonStream) => State::Gap { pos: at },
            Some(Framing::BinaryLength) => State::BinaryHeader { start: at },
            Some(Framing::DecimalHeader) => State::DecimalHeader {
                start: at,
                pos: at,
                len: 0,
                padding: false,
            },
        }
    }

    fn too_large(&self) -> FrameError {
        FrameError::TooLarge {
            limit: self.max_message,
        }
    }

    /// Picks the framing from the first non-whitespace byte of the connection.
    fn detect(&self, b: u8) -> Result<Framing, FrameError> {
        let framing = match b {
            b'{' => Framing::JsonStream,
            0x00 => Framing::BinaryLength,
            b'0'..=b'9' => Framing::DecimalHeader,
            other => return Err(FrameError::UnknownStyle(other)),
        };
        let accepted = match self.mode {
            FramingMode::Auto => true,
            FramingMode::Json => framing == Framing::JsonStream,
            FramingMode::Length => framing != Framing::JsonStream,
        };
        if accepted {
            Ok(framing)
        } else {
            Err(FrameError::UnknownStyle(b))
        }
    }

    /// Advances the state machine as far as `buf` allows.
    fn step(&mut self, buf: &[u8]) -> Result<Option<Frame>, FrameError> {
        loop {
            match self.state {
                State::Gap { pos } => {
                    let rest = buf.get(pos..).unwrap_or_default();
                    let Some(off) = rest.iter().position(|&b| !is_ws(b)) else {
                        if buf.len() > self.max_message {
                            // An endless run of whitespace would otherwise grow the
                            // caller's buffer without bound.
                            return Err(self.too_large());
                        }
                        self.state = State::Gap { pos: buf.len() };
                        return Ok(None);
                    };
                    let at = pos + off;
                    let b = rest.get(off).copied().unwrap_or_default();
                    match self.framing {
                        None => self.framing = Some(self.detect(b)?),
                        Some(Framing::JsonStream) if b != b'{' => {
                            return Err(FrameError::BadHeader(format!(
                                "expected '{{' to start the next JSON message, got byte 0x{b:02x}"
                            )));
                        }
                        Some(_) => {}
                    }
                    self.state = match self.framing {
                        Some(Framing::JsonStream) => State::Json {
                            start: at,
                            pos: at,
                            depth: 0,
                            in_string: false,
                            escape: false,
                        },
                        _ => self.message_start(at),
                    };
                }
                State::Json {
                    start,
                    pos,
                    depth,
                    in_string,
                    escape,
                } => return self.scan_json(buf, start, pos, depth, in_string, escape),
                State::BinaryHeader { start } => {
                    let Some(header) = buf.get(start..start.saturating_add(BINARY_HEADER_LEN))
                    else {
                        return Ok(None);
                    };
                    let mut be = [0u8; BINARY_HEADER_LEN];
                    be.copy_from_slice(header);
                    let len = u32::from_be_bytes(be);
                    let len = usize::try_from(len).map_err(|_| self.too_large())?;
                    if len > self.max_message {
                        return Err(self.too_large());
                    }
                    self.state = State::Body {
                        start: start + BINARY_HEADER_LEN,
                        len,
                    };
                }
                State::DecimalHeader {
                    start,
                    pos,
                    len,
                    padding,
                } => return self.scan_decimal(buf, start, pos, len, padding),
                State::Body { start, len } => {
                    let end = start.saturating_add(len);
                    if buf.len() < end {
                        return Ok(None);
                    }
                    return Ok(Some(Frame {
                        payload: start..end,
                        consumed: end,
                    }));
                }
            }
        }
    }

    /// Scans a JSON object for the brace that closes it, from `pos` on.
    fn scan_json(
        &mut self,
        buf: &[u8],
        start: usize,
        pos: usize,
        mut depth: usize,
        mut in_string: bool,
        mut escape: bool,
    ) -> Result<Option<Frame>, FrameError> {
        // Never look further than the size limit allows.
        let end = start.saturating_add(self.max_message).min(buf.len());
        let window = buf.get(..end).unwrap_or_default();
        let mut i = pos;
        while let Some(&b) = window.get(i) {
            if escape {
                escape = false;
                i += 1;
            } else if in_string {
                let rest = window.get(i..).unwrap_or_default();
                match find_quote_or_backslash(rest) {
                    None => i = end,
                    Some(off) => {
                        if rest.get(off) == Some(&b'"') {
                            in_string = false;
                        } else {
                            escape = true;
                        }
                        i += off + 1;
                    }
                }
            } else {
                i += 1;
                match b {
                    b'"' => in_string = true,
                    b'{' => depth += 1,
                    b'}' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return Ok(Some(Frame {
                                payload: start..i,
                                consumed: i,
                            }));
                        }
                    }
                    _ => {}
                }
            }
        }
        if buf.len() - start > self.max_message {
            return Err(self.too_large());
        }
        self.state = State::Json {
            start,
            pos: i,
            depth,
            in_string,
            escape,
        };
        Ok(None)
    }

    /// Validates the decimal header from `pos` on: digits, then only spaces.
    fn scan_decimal(
        &mut self,
        buf: &[u8],
        start: usize,
        pos: usize,
        mut len: usize,
        mut padding: bool,
    ) -> Result<Option<Frame>, FrameError> {
        let header_end = start.saturating_add(DECIMAL_HEADER_LEN);
        let end = header_end.min(buf.len());
        let mut i = pos;
        while i < end {
            let Some(&b) = buf.get(i) else { break };
            match b {
                b'0'..=b'9' if !padding => {
                    len = len
                        .checked_mul(10)
                        .and_then(|l| l.checked_add(usize::from(b - b'0')))
                        .filter(|&l| l <= self.max_message)
                        .ok_or_else(|| self.too_large())?;
                }
                b'0'..=b'9' => {
                    return Err(FrameError::BadHeader(
                        "digit after the space padding of the 64-byte length header".into(),
                    ));
                }
                b' ' if i == start => {
                    return Err(FrameError::BadHeader(
                        "the 64-byte length header must start with a digit".into(),
                    ));
                }
                b' ' => padding = true,
                other => {
                    return Err(FrameError::BadHeader(format!(
                        "byte 0x{other:02x} in the 64-byte length header (only digits, then spaces)"
                    )));
                }
            }
            i += 1;
        }
        if i < header_end {
            self.state = State::DecimalHeader {
                start,
                pos: i,
                len,
                padding,
            };
            return Ok(None);
        }
        self.state = State::Body {
            start: header_end,
            len,
        };
        self.step(buf)
    }
}

/// Append one framed response to `out`: JsonStream = payload + `\n`; BinaryLength = u32
/// BE length + payload; DecimalHeader = decimal length left-aligned, right-padded with
/// spaces to 64 bytes, + payload.
///
/// A payload over `u32::MAX` bytes cannot be expressed in the binary style; its header
/// then says `u32::MAX` (the server never produces such responses).
pub fn encode_frame(framing: Framing, payload: &[u8], out: &mut Vec<u8>) {
    encode_frame_with(framing, out, |out| out.extend_from_slice(payload));
}

/// Like [`encode_frame`], but `write` appends the payload to `out` directly, so the
/// payload needs no buffer of its own; the header is filled in afterwards.
pub fn encode_frame_with(framing: Framing, out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    match framing {
        Framing::JsonStream => {
            write(out);
            out.push(b'\n');
        }
        Framing::BinaryLength => {
            out.extend_from_slice(&[0; BINARY_HEADER_LEN]);
            write(out);
            let len = out.len() - at - BINARY_HEADER_LEN;
            let len = u32::try_from(len).unwrap_or(u32::MAX);
            if let Some(header) = out.get_mut(at..at + BINARY_HEADER_LEN) {
                header.copy_from_slice(&len.to_be_bytes());
            }
        }
        Framing::DecimalHeader => {
            out.resize(at + DECIMAL_HEADER_LEN, b' ');
            write(out);
            let len = out.len() - at - DECIMAL_HEADER_LEN;
            let mut digits = [0u8; 20];
            let n = format_decimal(len, &mut digits);
            if let (Some(header), Some(src)) = (out.get_mut(at..at + n), digits.get(..n)) {
                header.copy_from_slice(src);
            }
        }
    }
}

/// Writes `v` in decimal to the front of `buf`, returning the digit count.
fn format_decimal(mut v: usize, buf: &mut [u8; 20]) -> usize {
    let mut tmp = [0u8; 20];
    let mut n = 0;
    loop {
        tmp[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for (dst, src) in buf.iter_mut().zip(tmp[..n].iter().rev()) {
        *dst = *src;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1024;

    /// Feeds `input` in chunks of `chunk` bytes, keeping unconsumed bytes like the
    /// reactor does; returns the payloads, or the first error.
    fn feed(mode: FramingMode, input: &[u8], chunk: usize) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut framer = Framer::new(mode, MAX);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            while let Some(frame) = framer.next_frame(&buf)? {
                out.push(buf[frame.payload.clone()].to_vec());
                buf.drain(..frame.consumed);
            }
        }
        Ok(out)
    }

    fn decimal(payload: &[u8]) -> Vec<u8> {
        let mut v = format!("{:<64}", payload.len()).into_bytes();
        v.extend_from_slice(payload);
        v
    }

    fn binary(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn json_single_message_with_leading_whitespace() {
        let mut f = Framer::new(FramingMode::Auto, MAX);
        assert_eq!(f.next_frame(b" \r\n\t").unwrap(), None);
        assert_eq!(f.framing(), None);
        let buf = b" \r\n\t{\"cmd\": 1}\n";
        let frame = f.next_frame(buf).unwrap().unwrap();
        assert_eq!(&buf[frame.payload.clone()], b"{\"cmd\": 1}");
        assert_eq!(frame.consumed, 14);
        assert_eq!(f.framing(), Some(Framing::JsonStream));
        // The trailing newline alone is not a message.
        assert_eq!(f.next_frame(b"\n").unwrap(), None);
    }

    #[test]
    fn json_many_messages_in_one_buffer() {
        let input = b"{\"a\":1}{\"b\":2}\n\n  {\"c\":{\"d\":{}}}\r\n";
        let got = feed(FramingMode::Auto, input, input.len()).unwrap();
        assert_eq!(
            got,
            vec![
                b"{\"a\":1}".to_vec(),
                b"{\"b\":2}".to_vec(),
                b"{\"c\":{\"d\":{}}}".to_vec()
            ]
        );
    }

    #[test]
    fn json_braces_inside_strings_and_escapes() {
        let cases: [&[u8]; 5] = [
            br#"{"a":"}{"}"#,
            br#"{"a":"\"}"}"#,
            br#"{"a":"\\"}"#,
            br#"{"a":"\\\"}{"}"#,
            br#"{"a":["}",{"b":"{"}]}"#,
        ];
        for msg in cases {
            for chunk in [1, 2, 3, msg.len()] {
                let got = feed(FramingMode::Json, msg, chunk).unwrap();
                assert_eq!(got, vec![msg.to_vec()], "{:?} chunk {chunk}", msg);
            }
        }
    }

    #[test]
    fn json_incomplete_message_waits() {
        let mut f = Framer::new(FramingMode::Auto, MAX);
        assert_eq!(f.next_frame(br#"{"a":"}"#).unwrap(), None);
        assert_eq!(f.next_frame(br#"{"a":"}", "b": {}"#).unwrap(), None);
    }

    #[test]
    fn json_stray_byte_between_messages_is_bad_header() {
        for stray in [b'x', b'[', 0u8, b'1', b'}'] {
            let mut input = b"{\"a\":1} ".to_vec();
            input.push(stray);
            let err = feed(FramingMode::Auto, &input, 1).unwrap_err();
            assert!(matches!(err, FrameError::BadHeader(_)), "{stray}: {err:?}");
        }
    }

    #[test]
    fn json_scan_is_incremental() {
        // After each byte the framer has scanned exactly what it was given, so nothing
        // is rescanned on the next call.
        let mut msg = br#"{"cmd": 1, "request_data": [""#.to_vec();
        msg.extend(std::iter::repeat_n(b'a', 500));
        msg.extend_from_slice(br#"\"x"]}"#);
        let mut f = Framer::new(FramingMode::Auto, MAX);
        for n in 1..msg.len() {
            assert_eq!(f.next_frame(&msg[..n]).unwrap(), None);
            assert_eq!(f.state.scanned(), n);
        }
        let frame = f.next_frame(&msg).unwrap().unwrap();
        assert_eq!(frame.payload, 0..msg.len());
    }

    #[test]
    fn binary_length_frames() {
        let mut input = binary(b"{\"a\":1}");
        input.extend(binary(b""));
        input.extend(binary(b"xyz"));
        for chunk in [1, 3, 5, input.len()] {
            let got = feed(FramingMode::Auto, &input, chunk).unwrap();
            assert_eq!(
                got,
                vec![b"{\"a\":1}".to_vec(), b"".to_vec(), b"xyz".to_vec()]
            );
        }
        let mut f = Framer::new(FramingMode::Auto, MAX);
        f.next_frame(&input).unwrap();
        assert_eq!(f.framing(), Some(Framing::BinaryLength));
    }

    #[test]
    fn binary_length_over_limit_fails_at_once() {
        let mut f = Framer::new(FramingMode::Auto, MAX);
        let header = ((MAX + 1) as u32).to_be_bytes();
        assert_eq!(f.next_frame(&header[..3]).unwrap(), None);
        assert_eq!(
            f.next_frame(&header),
            Err(FrameError::TooLarge { limit: MAX })
        );
        // Exactly the limit is fine.
        let mut f = Framer::new(FramingMode::Auto, MAX);
        assert_eq!(f.next_frame(&(MAX as u32).to_be_bytes()).unwrap(), None);
    }

    #[test]
    fn length_styles_do_not_skip_whitespace_between_messages() {
        // After a binary frame, "\n\0\0\0" is a header declaring 0x0a000000 bytes.
        let mut input = binary(b"a");
        input.extend_from_slice(b"\n\0\0\0");
        assert_eq!(
            feed(FramingMode::Auto, &input, input.len()),
            Err(FrameError::TooLarge { limit: MAX })
        );
        // After a decimal frame, a space cannot start the next header.
        let mut input = decimal(b"a");
        input.extend_from_slice(b" 1");
        assert!(matches!(
            feed(FramingMode::Auto, &input, input.len()),
            Err(FrameError::BadHeader(_))
        ));
    }

    #[test]
    fn leading_whitespace_before_length_styles_is_skipped() {
        let mut input = b"\r\n ".to_vec();
        input.extend(decimal(b"{}"));
        assert_eq!(
            feed(FramingMode::Auto, &input, 1).unwrap(),
            vec![b"{}".to_vec()]
        );
    }

    #[test]
    fn decimal_header_frames() {
        let mut input = decimal(b"{\"a\":1}");
        input.extend(decimal(b""));
        input.extend(decimal(&[b'x'; 100]));
        for chunk in [1, 7, 64, input.len()] {
            let got = feed(FramingMode::Auto, &input, chunk).unwrap();
            assert_eq!(got, vec![b"{\"a\":1}".to_vec(), vec![], vec![b'x'; 100]]);
        }
        // Leading zeros are allowed; a full 64-digit header of zeros is length 0.
        let mut input = b"007".to_vec();
        input.resize(64, b' ');
        input.extend_from_slice(b"1234567");
        assert_eq!(
            feed(FramingMode::Length, &input, 1).unwrap(),
            vec![b"1234567".to_vec()]
        );
        let input = [b'0'; 64];
        assert_eq!(
            feed(FramingMode::Auto, &input, 1).unwrap(),
            vec![Vec::<u8>::new()]
        );
    }

    #[test]
    fn decimal_header_errors_are_found_early() {
        // A bad byte fails before the 64 header bytes are in.
        let mut f = Framer::new(FramingMode::Auto, MAX);
        assert!(matches!(
            f.next_frame(b"12{\"cmd\":1}"),
            Err(FrameError::BadHeader(_))
        ));
        let mut f = Framer::new(FramingMode::Auto, MAX);
        assert!(matches!(
            f.next_frame(b"12 3"),
            Err(FrameError::BadHeader(_))
        ));
        let mut f = Framer::new(FramingMode::Auto, MAX);
        assert!(matches!(
            f.next_frame(b"12\t"),
            Err(FrameError::BadHeader(_))
        ));
        // A declared length over the limit fails as soon as its digits say so.
        let mut f = Framer::new(FramingMode::Auto, MAX);
        assert_eq!(
            f.next_frame(b"10250"),
            Err(FrameError::TooLarge { limit: MAX })
        );
        let mut f = Framer::new(FramingMode::Auto, usize::MAX);
        assert!(matches!(
            f.next_frame(&[b'9'; 40]),
            Err(FrameError::TooLarge { .. })
        ));
        // Exactly the limit is fine.
        let mut f = Framer::new(FramingMode::Auto, MAX);
        assert_eq!(f.next_frame(b"1024   ").unwrap(), None);
    }

    #[test]
    fn unknown_style() {
        for (mode, input, byte) in [
            (FramingMode::Auto, &b"GET / HTTP/1.1\r\n"[..], b'G'),
            (FramingMode::Auto, b"  [1]", b'['),
            (FramingMode::Auto, b"\xef\xbb\xbf{}", 0xef),
            (FramingMode::Json, b"\0\0\0\x02{}", 0),
            (FramingMode::Json, b"2 ", b'2'),
            (FramingMode::Length, b"\n{}", b'{'),
        ] {
            let mut f = Framer::new(mode, MAX);
            assert_eq!(
                f.next_frame(input),
                Err(FrameError::UnknownStyle(byte)),
                "{mode:?} {input:?}"
            );
            assert_eq!(f.framing(), None);
        }
    }

    #[test]
    fn modes_accept_their_styles() {
        let json = b"{}".to_vec();
        let bin = binary(b"{}");
        let dec = decimal(b"{}");
        for (mode, input) in [
            (FramingMode::Auto, &json),
            (FramingMode::Auto, &bin),
            (FramingMode::Auto, &dec),
            (FramingMode::Json, &json),
            (FramingMode::Length, &bin),
            (FramingMode::Length, &dec),
        ] {
            assert_eq!(feed(mode, input, 1).unwrap(), vec![b"{}".to_vec()]);
        }
    }

    #[test]
    fn json_size_limit() {
        // Exactly the limit passes, one more byte fails, even before the object closes.
        let mut exact = b"{\"a\":\"".to_vec();
        exact.resize(MAX - 2, b'x');
        exact.extend_from_slice(b"\"}");
        assert_eq!(exact.len(), MAX);
        assert_eq!(
            feed(FramingMode::Auto, &exact, 100).unwrap(),
            vec![exact.clone()]
        );
        let mut f = Framer::new(FramingMode::Auto, MAX);
        let open = vec![b'{'; MAX];
        assert_eq!(f.next_frame(&open).unwrap(), None);
        let mut more = open.clone();
        more.push(b'}');
        assert_eq!(
            f.next_frame(&more),
            Err(FrameError::TooLarge { limit: MAX })
        );
        // A complete small message followed by a huge one: the first still comes out.
        let mut input = b"{}".to_vec();
        input.extend(vec![b'{'; MAX + 10]);
        let mut f = Framer::new(FramingMode::Auto, MAX);
        let frame = f.next_frame(&input).unwrap().unwrap();
        assert_eq!(frame.payload, 0..2);
        assert_eq!(
            f.next_frame(&input[2..]),
            Err(FrameError::TooLarge { limit: MAX })
        );
    }

    #[test]
    fn endless_whitespace_is_too_large() {
        let mut f = Framer::new(FramingMode::Auto, 16);
        assert_eq!(f.next_frame(&[b' '; 16]).unwrap(), None);
        assert_eq!(
            f.next_frame(&[b' '; 17]),
            Err(FrameError::TooLarge { limit: 16 })
        );
    }

    #[test]
    fn errors_are_sticky() {
        let mut f = Framer::new(FramingMode::Auto, MAX);
        assert_eq!(f.next_frame(b"x"), Err(FrameError::UnknownStyle(b'x')));
        assert_eq!(f.next_frame(b"{}"), Err(FrameError::UnknownStyle(b'x')));
    }

    #[test]
    fn shrinking_buffer_does_not_panic() {
        let mut f = Framer::new(FramingMode::Auto, MAX);
        assert_eq!(f.next_frame(b"{\"a\":").unwrap(), None);
        assert_eq!(f.next_frame(b"").unwrap(), None);
        assert_eq!(f.next_frame(b"{}").unwrap().unwrap().payload, 0..2);
    }

    #[test]
    fn encode_frame_styles() {
        let mut out = b"prev".to_vec();
        encode_frame(Framing::JsonStream, b"{}", &mut out);
        assert_eq!(out, b"prev{}\n");

        let mut out = Vec::new();
        encode_frame(Framing::BinaryLength, b"{\"a\":1}", &mut out);
        assert_eq!(out, b"\0\0\0\x07{\"a\":1}");

        let mut out = Vec::new();
        encode_frame(Framing::DecimalHeader, &[b'y'; 1234], &mut out);
        assert_eq!(&out[..64], format!("{:<64}", 1234).as_bytes());
        assert_eq!(&out[64..], &[b'y'; 1234][..]);

        let mut out = Vec::new();
        encode_frame(Framing::DecimalHeader, b"", &mut out);
        assert_eq!(out, format!("{:<64}", 0).as_bytes());
    }

    #[test]
    fn encoded_frames_are_framed_back() {
        for framing in [
            Framing::JsonStream,
            Framing::BinaryLength,
            Framing::DecimalHeader,
        ] {
            let mut wire = Vec::new();
            encode_frame(framing, b"{\"cmd\":35}", &mut wire);
            encode_frame_with(framing, &mut wire, |out| out.extend_from_slice(b"{}"));
            let got = feed(FramingMode::Auto, &wire, 1).unwrap();
            assert_eq!(got, vec![b"{\"cmd\":35}".to_vec(), b"{}".to_vec()]);
        }
    }

    #[test]
    fn whitespace_can_be_discarded_between_messages() {
        let mut f = Framer::new(FramingMode::Auto, 8);
        assert_eq!(f.discard_whitespace(), 0);
        assert_eq!(f.next_frame(b" \n").unwrap(), None);
        assert_eq!(f.discard_whitespace(), 2);
        assert_eq!(f.discard_whitespace(), 0);
        let frame = f.next_frame(b"{}\r\n").unwrap().unwrap();
        assert_eq!(frame.consumed, 2);
        assert_eq!(f.next_frame(b"\r\n").unwrap(), None);
        assert_eq!(f.discard_whitespace(), 2);
        // Discarding keeps endless whitespace from ever reaching the size limit.
        for _ in 0..10 {
            assert_eq!(f.next_frame(b"      ").unwrap(), None);
            assert_eq!(f.discard_whitespace(), 6);
        }
        assert_eq!(f.next_frame(b"{").unwrap(), None);
        assert_eq!(f.discard_whitespace(), 0);
        assert_eq!(f.next_frame(b"{}").unwrap().unwrap().payload, 0..2);
        // Length styles never skip whitespace once detected.
        let mut f = Framer::new(FramingMode::Auto, 8);
        assert_eq!(f.next_frame(b"1").unwrap(), None);
        assert_eq!(f.discard_whitespace(), 0);
    }

    #[test]
    fn framer_is_small() {
        // One per connection; SPEC §5 budgets 4 KiB per idle connection in all.
        let size = std::mem::size_of::<Framer>();
        assert!(size <= 128, "Framer is {size} bytes");
    }

    #[test]
    fn framing_mode_parsing() {
        assert_eq!("auto".parse(), Ok(FramingMode::Auto));
        assert_eq!("json".parse(), Ok(FramingMode::Json));
        assert_eq!("length".parse(), Ok(FramingMode::Length));
        assert!("JSON".parse::<FramingMode>().is_err());
        assert_eq!(FramingMode::default(), FramingMode::Auto);
        let m: FramingMode = serde_json::from_str("\"length\"").unwrap();
        assert_eq!(m, FramingMode::Length);
        assert!(serde_json::from_str::<FramingMode>("\"binary\"").is_err());
    }

    #[test]
    fn error_messages_are_client_readable() {
        assert_eq!(
            FrameError::TooLarge { limit: 10 }.to_string(),
            "message exceeds the size limit of 10 bytes"
        );
        assert_eq!(
            FrameError::UnknownStyle(b'G').to_string(),
            "unrecognised framing: a message may not start with byte 0x47"
        );
    }
}
