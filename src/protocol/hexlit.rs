//! Hex literals: the original protocol lets clients write numbers as `0x01`.
//!
//! Owns the rewrite of integer hex literals that stand outside JSON strings into decimal,
//! so that a standard JSON parser accepts the message. It must never change anything
//! inside a string (`"0x1.jpg"` stays as it is), never validate JSON (the parser does
//! that), never allocate when nothing changes, and never panic.

use std::borrow::Cow;

use super::scan::skip_string;

/// Bytes that may stand right before or after a number token in JSON.
fn is_delimiter(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t' | b'\n' | b'\r' | b',' | b':' | b'[' | b']' | b'{' | b'}'
    )
}

/// A hex literal found in the source: `src[start..end]` is replaced by `value`
/// (with a leading `-` kept when `negative`).
struct Literal {
    start: usize,
    end: usize,
    value: u64,
    negative: bool,
}

/// Tries to read a hex literal whose `0` is at `zero`. `start` is where the token begins
/// (`zero`, or `zero - 1` when a minus sign precedes it).
fn literal_at(bytes: &[u8], start: usize, zero: usize, negative: bool) -> Option<Literal> {
    if !matches!(bytes.get(zero + 1), Some(b'x' | b'X')) {
        return None;
    }
    let digits_start = zero + 2;
    let mut value: u64 = 0;
    let mut overflow = false;
    let mut end = digits_start;
    while let Some(&b) = bytes.get(end) {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => break,
        };
        match value.checked_mul(16).map(|v| v | u64::from(d)) {
            Some(v) => value = v,
            None => overflow = true,
        }
        end += 1;
    }
    if end == digits_start || overflow {
        return None;
    }
    // The literal must end the token: `0x1fz` or `0x1.5` is not a hex integer.
    if bytes.get(end).is_some_and(|&b| !is_delimiter(b)) {
        return None;
    }
    // A negative value must fit i64: magnitude up to 2^63.
    if negative && value > 1u64 << 63 {
        return None;
    }
    Some(Literal {
        start,
        end,
        value,
        negative,
    })
}

/// Rewrites integer hex literals (`0x1f`, `0X2A`, optionally negative) that stand OUTSIDE
/// JSON strings to decimal. Inside strings nothing changes (`"0x1.jpg"` stays); escapes
/// inside strings are respected. Returns the input borrowed when nothing changed.
/// A literal that does not fit i64/u64 is left as is (the JSON parser then rejects it).
/// Never panics.
pub fn rewrite_hex_literals(src: &str) -> Cow<'_, str> {
    let bytes = src.as_bytes();
    let mut out: Option<String> = None;
    // Bytes of `src` before `copied` are already in `out`.
    let mut copied = 0;
    let mut i = 0;
    // The byte before `i` outside strings (None at the start of the input).
    let mut prev: Option<u8> = None;
    let mut prev2: Option<u8> = None;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                i = skip_string(bytes, i + 1);
                prev2 = prev;
                prev = Some(b'"');
                continue;
            }
            b'0' => {
                let token = if prev.is_none_or(is_delimiter) {
                    Some((i, false))
                } else if prev == Some(b'-') && prev2.is_none_or(is_delimiter) {
                    Some((i - 1, true))
                } else {
                    None
                };
                if let Some(lit) = token.and_then(|(start, neg)| literal_at(bytes, start, i, neg)) {
                    // Literal boundaries sit on ASCII bytes, so these are char boundaries.
                    let Some(before) = src.get(copied..lit.start) else {
                        return Cow::Borrowed(src);
                    };
                    let buf = out.get_or_insert_with(|| String::with_capacity(src.len()));
                    buf.push_str(before);
                    if lit.negative {
                        buf.push('-');
                    }
                    push_decimal(buf, lit.value);
                    copied = lit.end;
                    i = lit.end;
                    prev2 = Some(b'0');
                    prev = Some(b'0');
                    continue;
                }
            }
            _ => {}
        }
        prev2 = prev;
        prev = Some(b);
        i += 1;
    }
    match out {
        None => Cow::Borrowed(src),
        Some(mut buf) => match src.get(copied..) {
            Some(rest) => {
                buf.push_str(rest);
                Cow::Owned(buf)
            }
            None => Cow::Borrowed(src),
        },
    }
}

/// Appends `v` in decimal without a temporary allocation.
fn push_decimal(out: &mut String, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut n = tmp.len();
    loop {
        n -= 1;
        tmp[n] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if let Some(Ok(digits)) = tmp.get(n..).map(std::str::from_utf8) {
        out.push_str(digits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(s: &str) -> String {
        rewrite_hex_literals(s).into_owned()
    }

    #[test]
    fn rewrites_hex_outside_strings() {
        assert_eq!(
            rw(r#"{"cmd": 0x01, "request_data": ["a.jpg", "b.png"]}"#),
            r#"{"cmd": 1, "request_data": ["a.jpg", "b.png"]}"#
        );
        assert_eq!(rw(r#"{"cmd":0X2a}"#), r#"{"cmd":42}"#);
        assert_eq!(
            rw(r#"{"cmd":0x2A,"x":[0xff,0x0]}"#),
            r#"{"cmd":42,"x":[255,0]}"#
        );
        assert_eq!(rw("0x10"), "16");
        assert_eq!(rw(" 0x10 "), " 16 ");
        assert_eq!(rw("[0x1,\n0x2\t]"), "[1,\n2\t]");
        assert_eq!(rw("0x0000000000000000000000001"), "1");
    }

    #[test]
    fn negative_literals() {
        assert_eq!(rw("[-0x10]"), "[-16]");
        assert_eq!(rw("-0x8000000000000000"), "-9223372036854775808");
        // Below i64::MIN: left alone.
        assert_eq!(rw("-0x8000000000000001"), "-0x8000000000000001");
        // A minus that does not start the token.
        assert_eq!(rw("[1-0x10]"), "[1-0x10]");
        assert_eq!(rw("[--0x10]"), "[--0x10]");
    }

    #[test]
    fn limits_of_u64() {
        assert_eq!(rw("0xffffffffffffffff"), "18446744073709551615");
        assert_eq!(rw("0x10000000000000000"), "0x10000000000000000");
    }

    #[test]
    fn strings_are_never_touched() {
        for s in [
            r#"{"request_data": ["0x1.jpg"]}"#,
            r#"{"0x10": "0x10"}"#,
            r#"["a\"0x1", "\\", 0x1g]"#,
            r#"["\\\" 0x1 "]"#,
            "\"unterminated 0x1",
        ] {
            assert!(matches!(rewrite_hex_literals(s), Cow::Borrowed(_)), "{s}");
        }
        assert_eq!(
            rw(r#"["\\", 0x1, "0x2\"0x3", 0x4]"#),
            r#"["\\", 1, "0x2\"0x3", 4]"#
        );
    }

    #[test]
    fn things_that_are_not_hex_integers() {
        for s in [
            "0x", "0xg", "0x1g", "0x1.5", "10x5", "a0x5", "0x1_0", "+0x1", "00x1", "0x-1", "1.0x2",
            "0xé", "é0x1",
        ] {
            assert_eq!(rw(s), s);
        }
    }

    #[test]
    fn borrowed_when_unchanged_owned_when_changed() {
        assert!(matches!(
            rewrite_hex_literals(r#"{"cmd": 1}"#),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            rewrite_hex_literals(r#"{"cmd": 0x1}"#),
            Cow::Owned(_)
        ));
    }

    #[test]
    fn multibyte_text_around_literals() {
        assert_eq!(
            rw("{\"ä\":0x1,\"ö\":[\"ü\",0x2]}"),
            "{\"ä\":1,\"ö\":[\"ü\",2]}"
        );
    }
}
