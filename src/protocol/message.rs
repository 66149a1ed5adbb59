//! Messages: decoding one framed request and encoding responses.
//!
//! Owns the request shape of SPEC §1 (`cmd` integer, `request_data` list or null, `id`
//! echoed), the nesting-depth limit, and the exact key order of responses and error
//! responses. It must never decide what a command means (that is the dispatcher's job),
//! never touch the framing, and never panic on client input.

use serde::de::IgnoredAny;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::codes::ErrorCode;
use super::hexlit::rewrite_hex_literals;
use super::scan::skip_string;

/// A request that has the required shape. `cmd` may still be an unknown command.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub cmd: i64,
    /// `None` when the client sent `"request_data": null`.
    pub request_data: Option<Vec<Value>>,
    /// The client's `"id"`, echoed in the response.
    pub id: Option<Value>,
}

/// Why a payload is not a valid request. `Display` is the client-facing message.
/// Every variant is answered with [`ErrorCode::InvalidMessage`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("message is not valid UTF-8")]
    NotUtf8,
    #[error("message is not valid JSON: {0}")]
    NotJson(String),
    #[error("message must be a JSON object")]
    NotObject,
    #[error("missing key \"{0}\"")]
    MissingKey(&'static str),
    #[error("key \"{key}\" must be {expected}")]
    WrongType {
        key: &'static str,
        expected: &'static str,
    },
    #[error("JSON nested deeper than {limit} levels")]
    TooDeep { limit: usize },
}

impl ParseError {
    /// The error code to answer with.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InvalidMessage
    }
}

/// A request that could not be parsed, with its `id` when the JSON parsed far enough
/// to have one (so the error response can still echo it).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error}")]
pub struct BadRequest {
    pub error: ParseError,
    pub id: Option<Value>,
}

impl From<ParseError> for BadRequest {
    fn from(error: ParseError) -> Self {
        BadRequest { error, id: None }
    }
}

/// The three keys we read; any other key is skipped without being kept.
#[derive(Deserialize)]
struct RawRequest {
    #[serde(default, deserialize_with = "present")]
    cmd: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    request_data: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
}

/// `Some(value)` for a key that is present, even when its value is `null`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Fails when arrays/objects nest deeper than `limit` (the top-level object is level 1).
/// Runs before the JSON parser so that deep input cannot exhaust the stack.
fn check_depth(bytes: &[u8], limit: usize) -> Result<(), ParseError> {
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        match b {
            b'"' => i = skip_string(bytes, i),
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return Err(ParseError::TooDeep { limit });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The general path of [`crate::protocol::parse_request`], for any payload: UTF-8
/// check, hex rewrite, JSON nesting-depth limit (checked before parsing, so deep input
/// can't blow the stack), then `cmd` must be an integer and `request_data` a list or
/// null (both keys required); extra keys are ignored and `id` is kept. Every error
/// answer comes from here; the envelope fast path only ever gives what this gives.
///
/// Note: a repeated key among `cmd`, `request_data` and `id` is rejected as not JSON.
pub fn parse_general(payload: &[u8], max_depth: usize) -> Result<Request, BadRequest> {
    let text = std::str::from_utf8(payload).map_err(|_| ParseError::NotUtf8)?;
    let text = rewrite_hex_literals(text);
    check_depth(text.as_bytes(), max_depth)?;
    if text.bytes().find(|&b| !is_ws(b)) != Some(b'{') {
        return Err(match serde_json::from_str::<IgnoredAny>(&text) {
            Ok(_) => ParseError::NotObject,
            Err(e) => ParseError::NotJson(e.to_string()),
        }
        .into());
    }
    let raw: RawRequest =
        serde_json::from_str(&text).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let id = raw.id;
    let fail = |error: ParseError, id: Option<Value>| BadRequest { error, id };
    let cmd = match raw.cmd {
        None => return Err(fail(ParseError::MissingKey("cmd"), id)),
        Some(v) => match v.as_i64() {
            Some(cmd) => cmd,
            None => {
                let error = ParseError::WrongType {
                    key: "cmd",
                    expected: "an integer",
                };
                return Err(fail(error, id));
            }
        },
    };
    let request_data = match raw.request_data {
        None => return Err(fail(ParseError::MissingKey("request_data"), id)),
        Some(Value::Null) => None,
        Some(Value::Array(list)) => Some(list),
        Some(_) => {
            let error = ParseError::WrongType {
                key: "request_data",
                expected: "a list or null",
            };
            return Err(fail(error, id));
        }
    };
    Ok(Request {
        cmd,
        request_data,
        id,
    })
}

/// One response item. Serialises with keys in this order: `file_name`, `result`,
/// `error_code`, then the `extra` keys in order (e.g. `label`, `confidence`, `bbox`,
/// `message`). Extra keys must not repeat the three fixed ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub file_name: Option<String>,
    pub result: Value,
    pub error_code: ErrorCode,
    pub extra: Vec<(&'static str, Value)>,
}

impl Item {
    /// Success: `result` 2, `error_code` 0.
    pub fn ok(file_name: Option<String>) -> Item {
        Item {
            file_name,
            result: Value::from(2),
            error_code: ErrorCode::NoError,
            extra: Vec::new(),
        }
    }

    /// Failure: `result` 1, the given code, and a `"message"`.
    pub fn failed(file_name: Option<String>, code: ErrorCode, message: impl Into<String>) -> Item {
        Item {
            file_name,
            result: Value::from(1),
            error_code: code,
            extra: vec![("message", Value::String(message.into()))],
        }
    }

    /// Sets `result` (e.g. a class index, or `null`).
    pub fn with_result(mut self, result: Value) -> Item {
        self.result = result;
        self
    }

    /// Appends an extra key (after `error_code` and any earlier extras).
    pub fn with(mut self, key: &'static str, v: Value) -> Item {
        self.extra.push((key, v));
        self
    }
}

impl Serialize for Item {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3 + self.extra.len()))?;
        map.serialize_entry("file_name", &self.file_name)?;
        map.serialize_entry("result", &self.result)?;
        map.serialize_entry("error_code", &self.error_code.as_u8())?;
        for (key, value) in &self.extra {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// The response envelope; field order is the wire key order.
#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    cmd: Option<i64>,
    response_data: T,
    request_data: (),
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
}

/// The single item of an error response.
#[derive(Serialize)]
struct ErrorItem<'a> {
    file_name: (),
    result: (),
    error_code: u8,
    message: &'a str,
}

/// Serialises into `out`. Writing to a `Vec` cannot fail, and none of our types can
/// fail to serialise (no maps with non-string keys, no non-finite floats in a `Value`).
fn write_json<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    let at = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        // Unreachable in practice; never leave half a document behind.
        out.truncate(at);
        out.extend_from_slice(br#"{"cmd":null,"response_data":[],"request_data":null}"#);
    }
}

/// Compact JSON `{"cmd":cmd,"response_data":[items..],"request_data":null}` plus `"id"`
/// last when `Some`. Appends to `out` (no trailing newline; framing adds it).
///
/// Written by hand rather than through serde: the keys are fixed ASCII, so only
/// the values go through `serde_json`'s escaping. The bytes are the same as
/// serialising the envelope with serde (`Item`'s `Serialize` gives the key order;
/// a test checks both agree). On the 0x22 path this took the encoder from about
/// 1,200 to 400 instructions per response (callgrind, `tools/p1-ab.sh` notes).
pub fn encode_response(cmd: i64, items: &[Item], id: Option<&Value>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"cmd\":");
    out.extend_from_slice(itoa::Buffer::new().format(cmd).as_bytes());
    out.extend_from_slice(b",\"response_data\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item.write_json(out);
    }
    out.extend_from_slice(b"],\"request_data\":null");
    if let Some(id) = id {
        out.extend_from_slice(b",\"id\":");
        write_json(out, id);
    }
    out.push(b'}');
}

impl Item {
    /// This item as compact JSON, keys in the order of its `Serialize` impl.
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"file_name\":");
        match &self.file_name {
            Some(name) => write_json(out, name),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"result\":");
        write_json(out, &self.result);
        out.extend_from_slice(b",\"error_code\":");
        out.extend_from_slice(
            itoa::Buffer::new()
                .format(self.error_code.as_u8())
                .as_bytes(),
        );
        for (key, value) in &self.extra {
            out.push(b',');
            write_json(out, key);
            out.push(b':');
            write_json(out, value);
        }
        out.push(b'}');
    }
}

/// `{"cmd":null,"response_data":[{"file_name":null,"result":null,"error_code":N,"message":"..."}],"request_data":null}`
/// plus `"id"` last when `Some`. Appends to `out`.
pub fn encode_error(code: ErrorCode, message: &str, id: Option<&Value>, out: &mut Vec<u8>) {
    let envelope = Envelope {
        cmd: None,
        response_data: [ErrorItem {
            file_name: (),
            result: (),
            error_code: code.as_u8(),
            message,
        }],
        request_data: (),
        id,
    };
    write_json(out, &envelope);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Command;
    use serde_json::json;

    const DEPTH: usize = 32;

    fn parse(s: &str) -> Result<Request, BadRequest> {
        parse_general(s.as_bytes(), DEPTH)
    }

    fn err(s: &str) -> ParseError {
        parse(s).unwrap_err().error
    }

    #[test]
    fn typical_request_with_hex_cmd() {
        let r = parse(r#"{"cmd": 0x01, "request_data": ["a.jpg", "b.png"]}"#).unwrap();
        assert_eq!(r.cmd, 1);
        assert_eq!(Command::from_code(r.cmd), Some(Command::Classify));
        assert_eq!(r.request_data, Some(vec![json!("a.jpg"), json!("b.png")]));
        assert_eq!(r.id, None);
    }

    #[test]
    fn null_data_extra_keys_and_id() {
        let r =
            parse(r#"{"x": {"deep": [1]}, "cmd": 34, "request_data": null, "id": "abc"}"#).unwrap();
        assert_eq!(r.cmd, 0x22);
        assert_eq!(r.request_data, None);
        assert_eq!(r.id, Some(json!("abc")));
        let r = parse(r#"{"cmd": 0x22, "request_data": [], "id": {"n": [0x7]}}"#).unwrap();
        assert_eq!(r.request_data, Some(vec![]));
        assert_eq!(r.id, Some(json!({"n": [7]})));
        // Unknown commands parse; dispatch answers code 3.
        let r = parse(r#"{"cmd": -5, "request_data": null}"#).unwrap();
        assert_eq!(Command::from_code(r.cmd), None);
    }

    #[test]
    fn string_contents_are_kept() {
        let r = parse(r#"{"cmd": 1, "request_data": ["0x1.jpg", "\"0x2\".png"]}"#).unwrap();
        assert_eq!(
            r.request_data,
            Some(vec![json!("0x1.jpg"), json!("\"0x2\".png")])
        );
    }

    #[test]
    fn not_utf8() {
        let e = parse_general(b"{\"cmd\": 1, \"request_data\": [\"\xff\"]}", DEPTH).unwrap_err();
        assert_eq!(e.error, ParseError::NotUtf8);
        assert_eq!(e.id, None);
    }

    #[test]
    fn not_json() {
        for s in [
            "",
            "   ",
            "{",
            "{\"cmd\": 1, \"request_data\": null",
            "{\"cmd\": 1, \"request_data\": null} trailing",
            "{'cmd': 1}",
            "{\"cmd\": 0x1g, \"request_data\": null}",
            "{\"cmd\": 0x10000000000000000, \"request_data\": null}",
            "nonsense",
            "{\"cmd\": 1, \"cmd\": 2, \"request_data\": null}",
        ] {
            assert!(matches!(err(s), ParseError::NotJson(_)), "{s:?}");
        }
    }

    #[test]
    fn not_object() {
        for s in ["[1, 2]", "\"cmd\"", "1", "null", " 0x1 "] {
            assert_eq!(err(s), ParseError::NotObject, "{s:?}");
        }
    }

    #[test]
    fn missing_keys() {
        assert_eq!(
            err(r#"{"request_data": null}"#),
            ParseError::MissingKey("cmd")
        );
        assert_eq!(err(r#"{"cmd": 1}"#), ParseError::MissingKey("request_data"));
        assert_eq!(err("{}"), ParseError::MissingKey("cmd"));
    }

    #[test]
    fn wrong_types() {
        let int = ("cmd", "an integer");
        let list = ("request_data", "a list or null");
        for (s, (key, expected)) in [
            (r#"{"cmd": "1", "request_data": null}"#, int),
            (r#"{"cmd": 1.0, "request_data": null}"#, int),
            (r#"{"cmd": null, "request_data": null}"#, int),
            (
                r#"{"cmd": 18446744073709551615, "request_data": null}"#,
                int,
            ),
            (r#"{"cmd": 1, "request_data": "a.jpg"}"#, list),
            (r#"{"cmd": 1, "request_data": {}}"#, list),
            (r#"{"cmd": 1, "request_data": 0}"#, list),
        ] {
            assert_eq!(err(s), ParseError::WrongType { key, expected }, "{s}");
        }
    }

    #[test]
    fn id_is_kept_for_shape_errors() {
        let e = parse(r#"{"id": 7, "cmd": "x", "request_data": null}"#).unwrap_err();
        assert_eq!(e.id, Some(json!(7)));
        let e = parse(r#"{"id": [1], "cmd": 1}"#).unwrap_err();
        assert_eq!(e.id, Some(json!([1])));
        let e = parse(r#"{"id": 7, "cmd": 1,"#).unwrap_err();
        assert_eq!(e.id, None);
    }

    #[test]
    fn nesting_limit() {
        let ok = format!(
            "{{\"cmd\":1,\"request_data\":{}{}}}",
            "[".repeat(DEPTH - 1),
            "]".repeat(DEPTH - 1)
        );
        assert!(parse(&ok).is_ok());
        let deep = format!(
            "{{\"cmd\":1,\"request_data\":{}{}}}",
            "[".repeat(DEPTH),
            "]".repeat(DEPTH)
        );
        assert_eq!(err(&deep), ParseError::TooDeep { limit: DEPTH });
        // Brackets in strings do not count.
        let s = format!("{{\"cmd\":1,\"request_data\":[\"{}\"]}}", "[{".repeat(100));
        assert!(parse(&s).is_ok());
        // Very deep input is rejected without touching the stack.
        let huge = "[".repeat(1_000_000);
        assert_eq!(err(&huge), ParseError::TooDeep { limit: DEPTH });
        let huge = format!("{{\"a\":{}", "{\"a\":".repeat(1_000_000));
        assert_eq!(err(&huge), ParseError::TooDeep { limit: DEPTH });
    }

    #[test]
    fn parse_errors_display_for_clients() {
        assert_eq!(
            ParseError::MissingKey("cmd").to_string(),
            "missing key \"cmd\""
        );
        assert_eq!(
            ParseError::WrongType {
                key: "request_data",
                expected: "a list or null"
            }
            .to_string(),
            "key \"request_data\" must be a list or null"
        );
        assert_eq!(ParseError::NotObject.code(), ErrorCode::InvalidMessage);
    }

    #[test]
    fn response_encoding_key_order() {
        let items = [
            Item::ok(Some("a.jpg".into()))
                .with_result(json!(3))
                .with("label", json!("bruise"))
                .with("confidence", json!(0.5))
                .with("bbox", json!([1, 2, 3, 4])),
            Item::failed(
                Some("b.png".into()),
                ErrorCode::ResourceNotFound,
                "no such file",
            )
            .with_result(Value::Null),
            Item::ok(None),
        ];
        let mut out = b"keep".to_vec();
        encode_response(0x02, &items, None, &mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            concat!(
                r#"keep{"cmd":2,"response_data":["#,
                r#"{"file_name":"a.jpg","result":3,"error_code":0,"label":"bruise","confidence":0.5,"bbox":[1,2,3,4]},"#,
                r#"{"file_name":"b.png","result":null,"error_code":2,"message":"no such file"},"#,
                r#"{"file_name":null,"result":2,"error_code":0}"#,
                r#"],"request_data":null}"#
            )
        );
    }

    #[test]
    fn hand_written_encoder_matches_serde() {
        let items = [
            Item::ok(Some("we\"ird\\name\n\u{1}é.jpg".into()))
                .with("label", json!("scab"))
                .with("confidence", json!(0.125))
                .with("bbox", json!([0, -1, 2.5, null])),
            Item::failed(None, ErrorCode::Timeout, "slow \"file\"\t").with_result(Value::Null),
            Item::ok(Some(String::new())).with_result(json!({"nested": [1, {"a": "b"}]})),
        ];
        for id in [None, Some(json!("abc")), Some(json!({"n": [7, "x\u{7f}"]}))] {
            for n in 0..=items.len() {
                for cmd in [0_i64, 0x23, -5, i64::MAX] {
                    let mut ours = Vec::new();
                    encode_response(cmd, &items[..n], id.as_ref(), &mut ours);
                    let serde = serde_json::to_vec(&Envelope {
                        cmd: Some(cmd),
                        response_data: &items[..n],
                        request_data: (),
                        id: id.as_ref(),
                    })
                    .unwrap();
                    assert_eq!(
                        String::from_utf8_lossy(&ours),
                        String::from_utf8_lossy(&serde)
                    );
                }
            }
        }
    }

    #[test]
    fn response_with_id_puts_it_last() {
        let mut out = Vec::new();
        encode_response(0x23, &[], Some(&json!({"k": "v"})), &mut out);
        assert_eq!(
            out,
            br#"{"cmd":35,"response_data":[],"request_data":null,"id":{"k":"v"}}"#
        );
    }

    #[test]
    fn error_encoding() {
        let mut out = Vec::new();
        encode_error(
            ErrorCode::NotExistCommand,
            "unknown cmd \"9\"",
            None,
            &mut out,
        );
        assert_eq!(
            out,
            br#"{"cmd":null,"response_data":[{"file_name":null,"result":null,"error_code":3,"message":"unknown cmd \"9\""}],"request_data":null}"#
        );
        let mut out = Vec::new();
        encode_error(ErrorCode::Busy, "busy", Some(&json!(12)), &mut out);
        assert_eq!(
            out,
            br#"{"cmd":null,"response_data":[{"file_name":null,"result":null,"error_code":5,"message":"busy"}],"request_data":null,"id":12}"#
        );
    }

    #[test]
    fn failed_item_shape() {
        let item = Item::failed(None, ErrorCode::Timeout, "cancelled");
        assert_eq!(
            serde_json::to_string(&item).unwrap(),
            r#"{"file_name":null,"result":1,"error_code":4,"message":"cancelled"}"#
        );
    }
}
