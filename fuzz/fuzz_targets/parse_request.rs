//! Request parsing (UTF-8 check, hex-literal rewrite, depth limit, JSON, keys)
//! and the hex rewrite itself, under arbitrary bytes.
//!
//! Input layout: byte 0 picks the depth limit; the rest is the payload.
//! Checks:
//! - `parse_request` never panics (no stack overflow on deep input either);
//! - `parse_request` (envelope fast path, then the general path) answers exactly
//!   like the general path alone (`message::parse_general`);
//! - a parsed request re-encoded as plain JSON parses to the same request;
//! - the error response for any message and any `id` is valid JSON;
//! - the hex rewrite never panics, leaves valid JSON unchanged (valid JSON has
//!   no hex literals), is idempotent, and only changes text outside strings
//!   (the rewritten text has the same string literals when both parse).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pear_server_fuzz::protocol::message::parse_general;
use pear_server_fuzz::protocol::{encode_error, parse_request, rewrite_hex_literals, ErrorCode};
use serde_json::{json, Value};

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push(k.clone());
            strings(x, out)
        }),
        _ => {}
    }
}

/// Equal, with floats compared approximately (serde_json's default float
/// parsing is not guaranteed to round-trip the last bit).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&d, payload)) = data.split_first() else {
        return;
    };
    let depth = [1usize, 2, 4, 32, 128][d as usize % 5];
    let parsed = parse_request(payload, depth);
    assert_eq!(parsed, parse_general(payload, depth), "fast path differs");
    match parsed {
        Ok(req) => {
            let mut obj = json!({"cmd": req.cmd, "request_data": req.request_data});
            if let Some(id) = &req.id {
                obj["id"] = id.clone();
            }
            let text = obj.to_string();
            // Re-encoding cannot be deeper than the original (same values).
            let again = parse_request(text.as_bytes(), depth.max(128))
                .unwrap_or_else(|e| panic!("re-encoded request refused: {e} {text}"));
            assert_eq!(again.cmd, req.cmd);
            let data = |r: &pear_server_fuzz::protocol::Request| {
                r.request_data
                    .clone()
                    .map(Value::Array)
                    .unwrap_or(Value::Null)
            };
            assert!(same(&data(&again), &data(&req)), "{again:?} != {req:?}");
            assert!(
                same(
                    again.id.as_ref().unwrap_or(&Value::Null),
                    req.id.as_ref().unwrap_or(&Value::Null)
                ),
                "{again:?} != {req:?}"
            );
            let mut out = Vec::new();
            encode_error(ErrorCode::InvalidMessage, "x", req.id.as_ref(), &mut out);
            serde_json::from_slice::<Value>(&out).expect("error response is JSON");
        }
        Err(bad) => {
            let mut out = Vec::new();
            encode_error(
                ErrorCode::InvalidMessage,
                &bad.error.to_string(),
                bad.id.as_ref(),
                &mut out,
            );
            serde_json::from_slice::<Value>(&out).expect("error response is JSON");
        }
    }

    if let Ok(text) = std::str::from_utf8(payload) {
        let once = rewrite_hex_literals(text);
        let twice = rewrite_hex_literals(&once);
        assert_eq!(once, twice, "hex rewrite is not idempotent");
        if let Ok(original) = serde_json::from_str::<Value>(text) {
            assert_eq!(once, text, "valid JSON was rewritten");
            let _ = original;
        }
        if let (Ok(a), Ok(b)) = (
            serde_json::from_str::<Value>(&format!("[{text}]")),
            serde_json::from_str::<Value>(&format!("[{once}]")),
        ) {
            let (mut sa, mut sb) = (Vec::new(), Vec::new());
            strings(&a, &mut sa);
            strings(&b, &mut sb);
            assert_eq!(sa, sb, "strings changed by the hex rewrite");
        }
    }
});
