//! Property tests across the protocol module: random splits of valid streams, arbitrary
//! bytes, the hex rewrite against a decimal rendering of the same document, and the
//! envelope fast path (alone and fused with framing) against the general path.

use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::Value;

use super::envelope::parse_envelope;
use super::message::parse_general;
use super::*;

const MAX: usize = 1 << 20;

/// Feeds `input` in chunks whose sizes cycle through `sizes`, keeping unconsumed bytes
/// as the reactor does. Returns the payloads, or the first error.
fn feed_chunked(
    mode: FramingMode,
    input: &[u8],
    sizes: &[usize],
) -> Result<Vec<Vec<u8>>, FrameError> {
    feed_chunked_discarding(mode, input, sizes, false)
}

/// Like [`feed_chunked`]; with `discard`, also drops skipped whitespace after each chunk.
fn feed_chunked_discarding(
    mode: FramingMode,
    input: &[u8],
    sizes: &[usize],
    discard: bool,
) -> Result<Vec<Vec<u8>>, FrameError> {
    let mut framer = Framer::new(mode, MAX);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut k = 0;
    while at < input.len() {
        let n = sizes
            .get(k % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .max(1);
        k += 1;
        let end = (at + n).min(input.len());
        buf.extend_from_slice(&input[at..end]);
        at = end;
        while let Some(frame) = framer.next_frame(&buf)? {
            out.push(buf[frame.payload.clone()].to_vec());
            buf.drain(..frame.consumed);
        }
        if discard {
            let n = framer.discard_whitespace();
            buf.drain(..n);
        }
    }
    Ok(out)
}

/// Strings that look like trouble for a brace counter or a hex scanner.
fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[{}\\[\\]\"\\\\0xXa-fA-F1-9 ,:\n-]{0,16}",]
}

/// Arbitrary JSON values (no floats, so rendering is exact).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        tricky_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((tricky_string(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A JSON object message, rendered compactly or pretty (whitespace inside).
fn json_message() -> impl Strategy<Value = Vec<u8>> {
    (vec((tricky_string(), json_value()), 0..5), any::<bool>()).prop_map(|(kv, pretty)| {
        let obj = Value::Object(kv.into_iter().collect());
        if pretty {
            serde_json::to_vec_pretty(&obj).unwrap()
        } else {
            serde_json::to_vec(&obj).unwrap()
        }
    })
}

fn whitespace() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just(""),
        Just(" "),
        Just("\n"),
        Just("\r\n"),
        Just("\t \n ")
    ]
}

/// A JSON document whose integers are written in hex or decimal at random.
#[derive(Debug, Clone)]
enum Doc {
    Null,
    Str(String),
    /// A non-negative integer; `true` = written in hex (with `0x` or `0X`).
    Pos(u64, Option<bool>),
    /// A negative integer by magnitude (at most 2^63).
    Neg(u64, Option<bool>),
    Arr(Vec<Doc>),
    Obj(Vec<(String, Doc)>),
}

fn doc() -> impl Strategy<Value = Doc> {
    let hex = prop_oneof![Just(None), Just(Some(false)), Just(Some(true))];
    let leaf = prop_oneof![
        Just(Doc::Null),
        tricky_string().prop_map(Doc::Str),
        (any::<u64>(), hex.clone()).prop_map(|(v, h)| Doc::Pos(v, h)),
        (0..=(1u64 << 63), hex).prop_map(|(v, h)| Doc::Neg(v, h)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Doc::Arr),
            vec((tricky_string(), inner), 0..6).prop_map(Doc::Obj),
        ]
    })
}

/// Renders `d`; with `hex` false every integer is decimal.
fn render(d: &Doc, hex: bool, out: &mut String) {
    let int = |v: u64, h: Option<bool>, out: &mut String| match h {
        Some(upper) if hex => out.push_str(&format!("{}{v:x}", if upper { "0X" } else { "0x" })),
        _ => out.push_str(&v.to_string()),
    };
    match d {
        Doc::Null => out.push_str("null"),
        Doc::Str(s) => out.push_str(&serde_json::to_string(s).unwrap()),
        Doc::Pos(v, h) => int(*v, *h, out),
        Doc::Neg(v, h) => {
            out.push('-');
            int(*v, *h, out);
        }
        Doc::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render(item, hex, out);
            }
            out.push(']');
        }
        Doc::Obj(kv) => {
            out.push('{');
            for (i, (k, v)) in kv.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).unwrap());
                out.push(':');
                render(v, hex, out);
            }
            out.push('}');
        }
    }
}

/// Bytes drawn mostly from the protocol's interesting alphabet.
fn protocol_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..300),
        vec(
            prop::sample::select(b"{}[]\"\\0xX19aF- ,:\n\0".to_vec()),
            0..300
        ),
    ]
}

/// An integer token as clients write one, with the spellings JSON or the hex rewrite
/// treat specially (sign, leading zeros, overflow, fractions, bad hex).
fn int_token() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..=i64::MAX).prop_map(|v| v.to_string()),
        (0..=i64::MAX, any::<bool>(), any::<bool>(), 0usize..3).prop_map(|(v, x, upper, zeros)| {
            let digits = if upper {
                format!("{v:X}")
            } else {
                format!("{v:x}")
            };
            format!(
                "{}{}{digits}",
                if x { "0X" } else { "0x" },
                "0".repeat(zeros)
            )
        }),
        any::<u64>().prop_map(|v| format!("0x{v:x}")),
        any::<u64>().prop_map(|v| v.to_string()),
        any::<i64>().prop_map(|v| v.to_string()),
        prop::sample::select(vec![
            "0",
            "-0",
            "-0x0",
            "-0x1",
            "01",
            "00",
            "0x0",
            "1.0",
            "1e2",
            "0x",
            "0x1g",
            "0x1.5",
            "\"1\"",
            "null",
            "true",
            "0x8000000000000000",
            "0x7fffffffffffffff",
            "9223372036854775807",
            "9223372036854775808",
            "0x00000000000000001",
            "-9223372036854775808",
            "1 2",
            "0xffffffffffffffff",
            "+1",
        ])
        .prop_map(String::from),
    ]
}

/// A string token: plain, escaped by serde, or raw bytes JSON may not allow.
fn string_token() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z0-9._ äö/-]{0,12}".prop_map(|s| format!("\"{s}\"")),
        1 => tricky_string().prop_map(|s| serde_json::to_string(&s).unwrap()),
        1 => vec(prop::sample::select(b"\"\\\x01\t\x7fa".to_vec()), 0..4)
            .prop_map(|b| format!("\"{}\"", String::from_utf8(b).unwrap())),
    ]
}

/// A `request_data` value: null, a list of strings, or something else.
fn data_token() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just("null".to_string()),
        3 => (vec(string_token(), 0..4), whitespace()).prop_map(|(names, ws)| {
            format!("[{ws}{}{ws}]", names.join(&format!(",{ws}")))
        }),
        1 => prop::sample::select(vec![
            "[]", "{}", "[1]", "[\"a\",]", "\"a.jpg\"", "nul", "nulll", "[[\"a\"]]", "0x1",
        ])
        .prop_map(String::from),
    ]
}

/// An `id` value of any kind.
fn id_token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_string()),
        string_token(),
        int_token(),
        json_value().prop_map(|v| v.to_string()),
    ]
}

/// A request envelope as a client might write it: the three keys in any order, some
/// missing, repeated or joined by another key, any whitespace, any trailing bytes.
fn envelope_text() -> impl Strategy<Value = String> {
    let key = |k: &'static str| {
        prop_oneof![
            8 => Just(format!("\"{k}\"")),
            1 => Just("\"c\\u006dd\"".to_string()),
        ]
    };
    (
        (
            prop::option::weighted(0.9, (key("cmd"), int_token())),
            prop::option::weighted(0.9, (key("request_data"), data_token())),
            prop::option::of((key("id"), id_token())),
            prop::option::weighted(0.1, (string_token(), id_token())),
            prop::option::weighted(0.1, (key("cmd"), int_token())),
        ),
        vec(whitespace(), 8),
        prop::sample::select(vec!["", " ", "\r\n", "x", "}", ","]),
        any::<u64>(),
    )
        .prop_map(|((cmd, data, id, extra, again), ws, trailing, seed)| {
            let mut entries: Vec<(String, String)> = [cmd, data, id, extra, again]
                .into_iter()
                .flatten()
                .collect();
            // A cheap deterministic shuffle: the key order must not matter.
            let n = entries.len();
            for i in (1..n).rev() {
                let j = (seed.rotate_left(i as u32) as usize) % (i + 1);
                entries.swap(i, j);
            }
            let w = |i: usize| ws[i % ws.len()];
            let body: Vec<String> = entries
                .iter()
                .enumerate()
                .map(|(i, (k, v))| format!("{}{k}{}:{}{v}{}", w(i), w(i + 1), w(i + 2), w(i + 3)))
                .collect();
            format!("{}{{{}}}{trailing}", w(5), body.join(","))
        })
}

/// An envelope of the shape every client sends (the fast path's shape).
fn common_envelope() -> impl Strategy<Value = String> {
    (
        (0..=i64::MAX, 0u8..3),
        prop::option::of(vec("[a-zA-Z0-9._ äö/-]{0,12}", 0..4)),
        prop::option::of(prop_oneof![
            Just(Value::Null),
            (0..=i64::MAX).prop_map(Value::from),
            "[a-z0-9-]{0,8}".prop_map(Value::from),
        ]),
        any::<bool>(),
        whitespace(),
    )
        .prop_map(|((cmd, style), names, id, id_first, ws)| {
            let cmd = match style {
                0 => cmd.to_string(),
                1 => format!("0x{cmd:x}"),
                _ => format!("0X{cmd:X}"),
            };
            let data = names.map_or(Value::Null, Value::from).to_string();
            let id = id
                .map(|v| format!("\"id\":{ws}{v},{ws}"))
                .unwrap_or_default();
            let (head, tail) = if id_first {
                (id, String::new())
            } else {
                (String::new(), id)
            };
            let tail = tail.trim_end_matches(|c: char| c == ',' || c.is_whitespace());
            let tail = if tail.is_empty() {
                String::new()
            } else {
                format!(",{tail}")
            };
            format!("{{{ws}{head}\"cmd\":{ws}{cmd},{ws}\"request_data\":{ws}{data}{tail}{ws}}}")
        })
}

type Parsed = (Vec<u8>, usize, Result<Request, BadRequest>);

/// Feeds `input` in chunks like the reactor (unconsumed bytes kept, skipped whitespace
/// dropped when no message is complete) and reads requests with [`Framer::next_request`]
/// (`fused`) or with [`Framer::next_frame`] then [`parse_general`].
fn feed_requests(
    mode: FramingMode,
    max: usize,
    input: &[u8],
    sizes: &[usize],
    depth: usize,
    fused: bool,
) -> (Vec<Parsed>, Option<FrameError>) {
    let mut framer = Framer::new(mode, max);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut k = 0;
    while at < input.len() {
        let n = sizes[k % sizes.len()].max(1);
        k += 1;
        let end = (at + n).min(input.len());
        buf.extend_from_slice(&input[at..end]);
        at = end;
        loop {
            let next = if fused {
                framer.next_request(&buf, depth)
            } else {
                framer.next_frame(&buf).map(|f| {
                    f.map(|frame| {
                        let request = parse_general(&buf[frame.payload.clone()], depth);
                        Framed { frame, request }
                    })
                })
            };
            match next {
                Ok(Some(Framed { frame, request })) => {
                    out.push((buf[frame.payload.clone()].to_vec(), frame.consumed, request));
                    buf.drain(..frame.consumed);
                }
                Ok(None) => {
                    let n = framer.discard_whitespace();
                    buf.drain(..n);
                    break;
                }
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

proptest! {
    // No regression files: this module may only write under src/protocol.
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// (1) JSON stream: any split of a valid stream yields the same messages.
    #[test]
    fn json_stream_splits(
        msgs in vec((whitespace(), json_message()), 1..6),
        trailing in whitespace(),
        sizes in vec(1usize..40, 1..8),
    ) {
        let mut wire = Vec::new();
        for (ws, m) in &msgs {
            wire.extend_from_slice(ws.as_bytes());
            wire.extend_from_slice(m);
        }
        wire.extend_from_slice(trailing.as_bytes());
        let expected: Vec<Vec<u8>> = msgs.into_iter().map(|(_, m)| m).collect();
        for mode in [FramingMode::Auto, FramingMode::Json] {
            prop_assert_eq!(&feed_chunked(mode, &wire, &sizes)?, &expected);
            prop_assert_eq!(&feed_chunked_discarding(mode, &wire, &sizes, true)?, &expected);
        }
        prop_assert_eq!(&feed_chunked(FramingMode::Auto, &wire, &[wire.len()])?, &expected);
    }

    /// (1) Length styles: any split yields the same payloads, whatever the payload bytes.
    #[test]
    fn length_style_splits(
        binary in any::<bool>(),
        payloads in vec(vec(any::<u8>(), 0..200), 1..6),
        sizes in vec(1usize..80, 1..8),
    ) {
        let framing = if binary { Framing::BinaryLength } else { Framing::DecimalHeader };
        let mut wire = Vec::new();
        for p in &payloads {
            encode_frame(framing, p, &mut wire);
        }
        // The very first message must be detectable: a binary header starts with 0x00
        // (payloads < 16 MiB) and a decimal one with a digit, which encode_frame ensures.
        for mode in [FramingMode::Auto, FramingMode::Length] {
            prop_assert_eq!(&feed_chunked(mode, &wire, &sizes)?, &payloads);
        }
    }

    /// (2) Arbitrary bytes in arbitrary chunks never panic the framer, and a failed
    /// framer keeps failing.
    #[test]
    fn framer_never_panics(
        input in protocol_bytes(),
        sizes in vec(1usize..50, 1..8),
        max in 0usize..200,
    ) {
        for mode in [FramingMode::Auto, FramingMode::Json, FramingMode::Length] {
            let mut framer = Framer::new(mode, max);
            let mut buf = Vec::new();
            let mut at = 0;
            let mut k = 0;
            while at < input.len() {
                let end = (at + sizes[k % sizes.len()]).min(input.len());
                k += 1;
                buf.extend_from_slice(&input[at..end]);
                at = end;
                loop {
                    match framer.next_frame(&buf) {
                        Ok(Some(frame)) => {
                            prop_assert!(frame.payload.end <= frame.consumed);
                            prop_assert!(frame.consumed <= buf.len());
                            prop_assert!(frame.payload.len() <= max);
                            let _ = parse_request(&buf[frame.payload.clone()], 8);
                            buf.drain(..frame.consumed);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            prop_assert_eq!(framer.next_frame(&buf), Err(e));
                            at = input.len();
                            break;
                        }
                    }
                }
            }
        }
    }

    /// (2) Arbitrary input never panics the hex rewrite or the request parser.
    #[test]
    fn rewrite_and_parse_never_panic(input in protocol_bytes(), text in any::<String>()) {
        let _ = parse_request(&input, 4);
        let _ = parse_request(text.as_bytes(), 4);
        let _ = rewrite_hex_literals(&text);
        if let Ok(s) = std::str::from_utf8(&input) {
            let _ = rewrite_hex_literals(s);
        }
    }

    /// (3) Rewriting a document with hex integers gives exactly its decimal rendering:
    /// string contents never change, every hex integer becomes its decimal value.
    #[test]
    fn hex_rewrite_matches_decimal_rendering(d in doc()) {
        let mut hex = String::new();
        render(&d, true, &mut hex);
        let mut dec = String::new();
        render(&d, false, &mut dec);
        let rewritten = rewrite_hex_literals(&hex);
        prop_assert_eq!(rewritten.as_ref(), dec.as_str());
        // And the result is the JSON a parser would read from the decimal text.
        let a: Value = serde_json::from_str(&rewritten).unwrap();
        let b: Value = serde_json::from_str(&dec).unwrap();
        prop_assert_eq!(a, b);
        // Decimal-only input is returned borrowed.
        prop_assert!(matches!(rewrite_hex_literals(&dec), std::borrow::Cow::Borrowed(_)));
    }

    /// Any well-formed request survives framing and parsing in every style, with hex cmd.
    #[test]
    fn requests_round_trip(
        cmd in any::<i64>(),
        names in vec(tricky_string(), 0..4),
        id in proptest::option::of(json_value()),
        framing_pick in 0u8..3,
    ) {
        let mut obj = serde_json::Map::new();
        obj.insert("request_data".into(), Value::from(names.clone()));
        if let Some(id) = &id {
            obj.insert("id".into(), id.clone());
        }
        let body = serde_json::to_string(&Value::Object(obj)).unwrap();
        let sign = if cmd < 0 { "-" } else { "" };
        let text = format!("{{\"cmd\": {sign}0x{:x}, {}", cmd.unsigned_abs(), &body[1..]);
        let framing = [Framing::JsonStream, Framing::BinaryLength, Framing::DecimalHeader]
            [usize::from(framing_pick)];
        let mut wire = Vec::new();
        encode_frame(framing, text.as_bytes(), &mut wire);
        let frames = feed_chunked(FramingMode::Auto, &wire, &[3, 1, 7])?;
        prop_assert_eq!(frames.len(), 1);
        let req = parse_request(&frames[0], 16).unwrap();
        prop_assert_eq!(req.cmd, cmd);
        let expected: Vec<Value> = names.into_iter().map(Value::from).collect();
        prop_assert_eq!(req.request_data, Some(expected));
        prop_assert_eq!(req.id, id);
    }

    /// The envelope fast path gives exactly what the general path gives, or stands
    /// aside: on envelopes of every spelling, cut short, or with one byte changed, at
    /// every depth limit; and `parse_request` always answers like the general path.
    #[test]
    fn envelope_fast_path_gives_what_the_general_path_gives(
        text in envelope_text(),
        cut in any::<prop::sample::Index>(),
        flip in (any::<prop::sample::Index>(), prop::sample::select(b"{}[]\",:0xX \n\x01\\".to_vec())),
        depth in prop::sample::select(vec![0usize, 1, 2, 3, 32]),
    ) {
        let bytes = text.as_bytes();
        let mut flipped = bytes.to_vec();
        if !flipped.is_empty() {
            let i = flip.0.index(flipped.len());
            flipped[i] = flip.1;
        }
        for payload in [bytes.to_vec(), bytes[..cut.index(bytes.len() + 1)].to_vec(), flipped] {
            let general = parse_general(&payload, depth);
            if let Some(fast) = parse_envelope(&payload, depth) {
                prop_assert_eq!(Ok(fast), general.clone(), "{:?}", String::from_utf8_lossy(&payload));
            }
            prop_assert_eq!(parse_request(&payload, depth), general);
        }
    }

    /// Envelopes of the common shape do take the fast path (so the property above is
    /// not vacuous), with the general path's answer.
    #[test]
    fn common_envelopes_take_the_fast_path(text in common_envelope()) {
        let fast = parse_envelope(text.as_bytes(), 2);
        prop_assert!(fast.is_some(), "{}", text);
        prop_assert_eq!(Ok(fast.unwrap()), parse_general(text.as_bytes(), 2));
    }

    /// Framing and parsing fused (`next_request`) gives the same frames, requests and
    /// errors as `next_frame` followed by the general parse, for streams of envelopes,
    /// other JSON messages and arbitrary bytes, in every mode, cut anywhere, under any
    /// size limit.
    #[test]
    fn fused_reading_gives_what_framing_then_parsing_gives(
        msgs in vec(prop_oneof![
            4 => envelope_text().prop_map(String::into_bytes),
            2 => common_envelope().prop_map(String::into_bytes),
            1 => json_message(),
            1 => protocol_bytes(),
        ], 1..6),
        length_style in prop::option::of(any::<bool>()),
        sizes in vec(1usize..60, 1..8),
        max in prop::sample::select(vec![1usize, 17, 40, 300, MAX]),
        depth in prop::sample::select(vec![1usize, 2, 32]),
    ) {
        let mut wire = Vec::new();
        for m in &msgs {
            match length_style {
                None => wire.extend_from_slice(m),
                Some(binary) => {
                    let framing = if binary { Framing::BinaryLength } else { Framing::DecimalHeader };
                    encode_frame(framing, m, &mut wire);
                }
            }
        }
        for mode in [FramingMode::Auto, FramingMode::Json, FramingMode::Length] {
            for split in [&sizes[..], &[wire.len().max(1)][..]] {
                let fused = feed_requests(mode, max, &wire, split, depth, true);
                let general = feed_requests(mode, max, &wire, split, depth, false);
                prop_assert_eq!(fused, general);
            }
        }
    }
}
