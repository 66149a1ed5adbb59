//! The envelope fast path: the common request read in one pass over the borrowed bytes.
//!
//! Almost every request on the wire is a flat envelope such as
//! `{"cmd": 0x22, "request_data": null}` or `{"cmd": 1, "request_data": ["a.jpg"], "id": 7}`.
//! The general path ([`super::message::parse_general`]) walks such a payload three times
//! (hex rewrite into a new string, depth check, serde) and the JSON framer a fourth.
//! This module reads the envelope once, straight from the caller's buffer: it finds where
//! the object closes (so it can stand in for the framer's brace scan), reads `cmd` in
//! decimal or hex, and copies out only the values the [`Request`] owns.
//!
//! It owns the shape it accepts and nothing else: `cmd` and `request_data` once each,
//! `id` at most once, no other key; `cmd` a non-negative integer that fits i64 (decimal
//! without leading zeros, or hex); `request_data` `null` or a list of strings; `id`
//! `null`, a string or such an integer; strings without escapes or control bytes;
//! whitespace anywhere JSON allows it. It must never answer differently from the general
//! path: on anything outside that shape (including every error) it returns `None` and
//! the general path decides, so its answers are a subset of the general path's, which
//! `src/protocol/proptests.rs` checks. It never allocates for what it skips, never looks
//! past the bytes it is given, and never panics.

use serde_json::Value;

use super::message::Request;
use super::scan::find_string_stop;

/// Digits a decimal integer may have here: 19 always fit a u64 (checked against i64 below).
const MAX_DECIMAL_DIGITS: usize = 19;
/// Hex digits an integer may have here: 16 hold a u64 (checked against i64 below).
const MAX_HEX_DIGITS: usize = 16;

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Reads `bytes`, which must start with the `{` of an envelope; returns where the
/// object ends (just past its `}`) and the request, or `None` when the bytes are not a
/// complete envelope of the fast path's shape within `bytes` or would nest deeper than
/// `max_depth`. Bytes after the `}` are not looked at.
pub(crate) fn read_envelope(bytes: &[u8], max_depth: usize) -> Option<(usize, Request)> {
    let mut c = Cursor { bytes, pos: 0 };
    if max_depth < 1 {
        return None;
    }
    c.expect(b'{')?;
    let mut cmd = None;
    let mut data: Option<Option<Vec<Value>>> = None;
    let mut id: Option<Value> = None;
    loop {
        c.skip_ws();
        let key = c.key()?;
        c.skip_ws();
        c.expect(b':')?;
        c.skip_ws();
        match key {
            Key::Cmd if cmd.is_none() => cmd = Some(c.integer()?),
            Key::RequestData if data.is_none() => {
                data = Some(match c.peek()? {
                    b'n' => c.null().map(|()| None)?,
                    b'[' if max_depth >= 2 => Some(c.list_of_strings()?),
                    _ => return None,
                });
            }
            Key::Id if id.is_none() => {
                id = Some(match c.peek()? {
                    b'n' => c.null().map(|()| Value::Null)?,
                    b'"' => Value::String(c.plain_str()?.to_owned()),
                    _ => Value::from(c.integer()?),
                });
            }
            // One of ours repeated (the general path rejects that).
            _ => return None,
        }
        c.skip_ws();
        match c.next()? {
            b',' => continue,
            b'}' => break,
            _ => return None,
        }
    }
    let request = Request {
        cmd: cmd?,
        request_data: data?,
        id,
    };
    Some((c.pos, request))
}

/// Parses a whole payload (leading and trailing whitespace allowed) when it is an
/// envelope of the fast path's shape; `None` otherwise.
pub(crate) fn parse_envelope(payload: &[u8], max_depth: usize) -> Option<Request> {
    let start = payload.iter().position(|&b| !is_ws(b))?;
    let rest = payload.get(start..)?;
    let (end, request) = read_envelope(rest, max_depth)?;
    rest.get(end..)?
        .iter()
        .all(|&b| is_ws(b))
        .then_some(request)
}

/// The keys the fast path reads; any other key leaves the message to the general path.
#[derive(Clone, Copy)]
enum Key {
    Cmd,
    RequestData,
    Id,
}

impl Key {
    /// Each key as it stands between its quotes, with the closing quote.
    const QUOTED: [(&'static [u8], Key); 3] = [
        (b"cmd\"", Key::Cmd),
        (b"request_data\"", Key::RequestData),
        (b"id\"", Key::Id),
    ];
}

/// A position in the borrowed bytes. Every method returns `None` instead of reading
/// past the end.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    fn null(&mut self) -> Option<()> {
        let end = self.pos.checked_add(4)?;
        (self.bytes.get(self.pos..end)? == b"null").then_some(())?;
        self.pos = end;
        Some(())
    }

    /// One of the three keys, quoted and spelt without escapes.
    fn key(&mut self) -> Option<Key> {
        self.expect(b'"')?;
        let rest = self.bytes.get(self.pos..)?;
        let (quoted, key) = Key::QUOTED
            .into_iter()
            .find(|(quoted, _)| rest.starts_with(quoted))?;
        self.pos += quoted.len();
        Some(key)
    }

    /// A string without escapes or control bytes, starting at its `"`.
    fn plain_str(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let rest = self.bytes.get(self.pos..)?;
        let len = find_string_stop(rest)?;
        if rest.get(len) != Some(&b'"') {
            return None;
        }
        let text = std::str::from_utf8(rest.get(..len)?).ok()?;
        self.pos += len + 1;
        Some(text)
    }

    /// `[` plain strings separated by commas `]`.
    fn list_of_strings(&mut self) -> Option<Vec<Value>> {
        self.expect(b'[')?;
        let mut list = Vec::new();
        self.skip_ws();
        if self.peek()? == b']' {
            self.pos += 1;
            return Some(list);
        }
        loop {
            self.skip_ws();
            list.push(Value::String(self.plain_str()?.to_owned()));
            self.skip_ws();
            match self.next()? {
                b',' => continue,
                b']' => return Some(list),
                _ => return None,
            }
        }
    }

    /// A non-negative integer that fits i64: decimal without leading zeros, or a hex
    /// literal (`0x`/`0X`, at most 16 digits) as the hex rewrite would turn it into
    /// decimal. The token must end where JSON lets a number end here (whitespace, `,`
    /// or `}`), so `1.5`, `1e3`, `01` and `0x1g` are left to the general path.
    fn integer(&mut self) -> Option<i64> {
        let rest = self.bytes.get(self.pos..)?;
        let (value, len) = match rest {
            [b'0', b'x' | b'X', digits @ ..] => {
                let (value, n) = digits_value(digits, 16, MAX_HEX_DIGITS)?;
                (value, n + 2)
            }
            [b'0', ..] => (0, 1),
            [b'1'..=b'9', ..] => digits_value(rest, 10, MAX_DECIMAL_DIGITS)?,
            _ => return None,
        };
        match rest.get(len) {
            Some(&b) if is_ws(b) || b == b',' || b == b'}' => {}
            _ => return None,
        }
        let value = i64::try_from(value).ok()?;
        self.pos += len;
        Some(value)
    }
}

/// The value of the run of digits (in `radix`, 10 or 16) at the start of `bytes` and
/// its length; `None` when there is none or more than `max` (so the value cannot
/// overflow: 16 hex or 19 decimal digits fit a u64).
fn digits_value(bytes: &[u8], radix: u32, max: usize) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    let mut n = 0;
    for &b in bytes {
        let Some(d) = char::from(b).to_digit(radix) else {
            break;
        };
        n += 1;
        if n > max {
            return None;
        }
        value = value * u64::from(radix) + u64::from(d);
    }
    (n > 0).then_some((value, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::parse_general;
    use serde_json::json;

    fn fast(s: &str) -> Option<Request> {
        parse_envelope(s.as_bytes(), 32)
    }

    #[test]
    fn common_envelopes_take_the_fast_path() {
        for (s, cmd, data, id) in [
            (r#"{"cmd": 0x22, "request_data": null}"#, 0x22, None, None),
            (r#"{"cmd":34,"request_data":null}"#, 34, None, None),
            (
                " {\"request_data\" :\t[\"a.jpg\", \"b ä.png\"],\n\"cmd\": 0X01 } \r\n",
                1,
                Some(vec![json!("a.jpg"), json!("b ä.png")]),
                None,
            ),
            (
                r#"{"cmd": 0, "request_data": [], "id": "x-1"}"#,
                0,
                Some(vec![]),
                Some(json!("x-1")),
            ),
            (
                r#"{"id": 0x7, "cmd": 9223372036854775807, "request_data": null}"#,
                i64::MAX,
                None,
                Some(json!(7)),
            ),
            (
                r#"{"id": null, "cmd": 0x7fffffffffffffff, "request_data": null}"#,
                i64::MAX,
                None,
                Some(Value::Null),
            ),
        ] {
            let got = fast(s).unwrap_or_else(|| panic!("not on the fast path: {s}"));
            assert_eq!(got.cmd, cmd, "{s}");
            assert_eq!(got.request_data, data, "{s}");
            assert_eq!(got.id, id, "{s}");
            assert_eq!(Ok(got), parse_general(s.as_bytes(), 32), "{s}");
        }
    }

    #[test]
    fn everything_else_is_left_to_the_general_path() {
        for s in [
            "",
            "{}",
            "[]",
            r#"{"cmd": 1}"#,
            r#"{"request_data": null}"#,
            r#"{"cmd": 1, "request_data": null, "x": 1}"#,
            r#"{"cmd": 1, "cmd": 2, "request_data": null}"#,
            r#"{"cmd": 1, "request_data": null, "request_data": null}"#,
            r#"{"cmd": 1, "request_data": null, "id": 1, "id": 2}"#,
            r#"{"cmd": 1, "request_data": null,}"#,
            r#"{"cmd": 1 "request_data": null}"#,
            r#"{"cmd": -1, "request_data": null}"#,
            r#"{"cmd": -0x1, "request_data": null}"#,
            r#"{"cmd": 01, "request_data": null}"#,
            r#"{"cmd": 1.0, "request_data": null}"#,
            r#"{"cmd": 1e2, "request_data": null}"#,
            r#"{"cmd": 0x, "request_data": null}"#,
            r#"{"cmd": 0x1g, "request_data": null}"#,
            r#"{"cmd": 0x8000000000000000, "request_data": null}"#,
            r#"{"cmd": 0x00000000000000001, "request_data": null}"#,
            r#"{"cmd": 9223372036854775808, "request_data": null}"#,
            r#"{"cmd": 12345678901234567890, "request_data": null}"#,
            r#"{"cmd": "1", "request_data": null}"#,
            r#"{"cmd": 1, "request_data": nul}"#,
            r#"{"cmd": 1, "request_data": nulll}"#,
            r#"{"cmd": 1, "request_data": [1]}"#,
            r#"{"cmd": 1, "request_data": ["a",]}"#,
            r#"{"cmd": 1, "request_data": ["a\"b"]}"#,
            "{\"cmd\": 1, \"request_data\": [\"a\tb\"]}",
            r#"{"cmd": 1, "request_data": {}}"#,
            r#"{"cmd": 1, "request_data": null, "id": {"n": 1}}"#,
            r#"{"cmd": 1, "request_data": null, "id": true}"#,
            r#"{"c\u006dd": 1, "request_data": null}"#,
            r#"{"cmd": 1, "request_data": null} x"#,
            r#"{"cmd": 1, "request_data": null"#,
        ] {
            assert_eq!(fast(s), None, "{s}");
        }
        assert_eq!(
            parse_envelope(b"{\"cmd\": 1, \"request_data\": [\"\xff\"]}", 32),
            None
        );
    }

    #[test]
    fn depth_limit_is_left_to_the_general_path() {
        let list = br#"{"cmd": 1, "request_data": ["a"]}"#;
        let null = br#"{"cmd": 1, "request_data": null}"#;
        assert_eq!(parse_envelope(list, 1), None);
        assert!(parse_envelope(list, 2).is_some());
        assert!(parse_envelope(null, 1).is_some());
        assert_eq!(parse_envelope(null, 0), None);
    }

    #[test]
    fn read_envelope_stops_at_the_closing_brace() {
        let wire = br#"{"cmd": 0x22, "request_data": null}{"cmd": 1"#;
        let (end, request) = read_envelope(wire, 32).unwrap();
        assert_eq!(end, 35);
        assert_eq!(request.cmd, 0x22);
        // An incomplete envelope is not read.
        for n in 0..end {
            assert_eq!(read_envelope(&wire[..n], 32), None, "{n}");
        }
    }
}
