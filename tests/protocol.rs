//! Wire protocol over real loopback TCP: framings, splitting, pipelining,
//! id echo, hex literals and every whole-request error of SPEC §1.

mod common;

use std::time::Duration;

use common::{binary_frame, decimal_frame, first_code, TestServer};
use serde_json::json;

const CURRENT_MODEL: &str = r#"{"cmd": 0x22, "request_data": null}"#;

#[test]
fn json_stream_framing_and_response_shape() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    let v = c.request(CURRENT_MODEL);
    assert_eq!(v["cmd"], json!(0x23));
    assert_eq!(v["request_data"], json!(null));
    let item = &v["response_data"][0];
    assert_eq!(item["file_name"], json!("pear_classifier.onnx"));
    assert_eq!(item["result"], json!(2));
    assert_eq!(item["error_code"], json!(0));
}

#[test]
fn binary_length_framing() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    c.send(&binary_frame(CURRENT_MODEL));
    let v = c.read_binary_frame();
    assert_eq!(v["cmd"], json!(0x23));
    // The style sticks for the connection.
    c.send(&binary_frame(r#"{"cmd": 50, "request_data": []}"#));
    let v = c.read_binary_frame();
    assert_eq!(v["cmd"], json!(51));
}

#[test]
fn decimal_header_framing() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    c.send(&decimal_frame(CURRENT_MODEL));
    let v = c.read_decimal_frame();
    assert_eq!(v["cmd"], json!(0x23));
}

#[test]
fn one_byte_writes_and_many_messages_in_one_write() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    for b in CURRENT_MODEL.as_bytes() {
        c.send(&[*b]);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(c.read_json_line()["cmd"], json!(0x23));

    let many = format!("{CURRENT_MODEL}\n  {CURRENT_MODEL}{CURRENT_MODEL}\r\n");
    c.send(many.as_bytes());
    for _ in 0..3 {
        assert_eq!(c.read_json_line()["cmd"], json!(0x23));
    }
    // Binary framing split into single bytes.
    let mut b = server.client();
    for byte in binary_frame(CURRENT_MODEL) {
        b.send(&[byte]);
    }
    assert_eq!(b.read_binary_frame()["cmd"], json!(0x23));
}

#[test]
fn hundred_pipelined_requests_answer_in_order() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    let mut batch = String::new();
    for i in 0..100 {
        // Mix commands answered at once and ones that go to the worker pool.
        let cmd = if i % 3 == 0 { "0x24" } else { "0x22" };
        batch.push_str(&format!(
            r#"{{"cmd": {cmd}, "request_data": null, "id": {i}}}"#
        ));
    }
    c.send(batch.as_bytes());
    for i in 0..100 {
        let v = c.read_json_line();
        assert_eq!(v["id"], json!(i), "response {i} out of order: {v}");
        let expected = if i % 3 == 0 { 0x25 } else { 0x23 };
        assert_eq!(v["cmd"], json!(expected));
    }
}

#[test]
fn id_is_echoed_and_hex_only_outside_strings() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    let v = c.request(r#"{"cmd": 0X22, "request_data": [], "id": "abc-0x1", "extra": 0x10}"#);
    assert_eq!(v["id"], json!("abc-0x1"));
    assert_eq!(v["cmd"], json!(0x23));
    // "0x1.jpg" must stay a name (it is simply not found).
    let v = c.request(r#"{"cmd": 0x01, "request_data": ["0x1.jpg"], "id": 7}"#);
    assert_eq!(v["id"], json!(7));
    assert_eq!(v["response_data"][0]["file_name"], json!("0x1.jpg"));
    assert_eq!(first_code(&v), 2);
}

#[test]
fn whole_request_errors() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    let cases: &[(&str, i64)] = &[
        (r#"{"cmd": "x", "request_data": null}"#, 1),
        (r#"{"request_data": null}"#, 1),
        (r#"{"cmd": 34}"#, 1),
        (r#"{"cmd": 34, "request_data": 5}"#, 1),
        (r#"{"cmd": 0x01, "request_data": ["a.gif"]}"#, 1),
        (r#"{"cmd": 0x01, "request_data": ["a.jpg", "b.bmp"]}"#, 1),
        (r#"{"cmd": 0x01, "request_data": []}"#, 1),
        (r#"{"cmd": 0x01, "request_data": [1]}"#, 1),
        (r#"{"cmd": 0x22, "request_data": ["x"]}"#, 1),
        (r#"{"cmd": 0x26, "request_data": []}"#, 1),
        (r#"{"cmd": 0x99, "request_data": null}"#, 3),
        (r#"{"cmd": -1, "request_data": null}"#, 3),
        (r#"{"cmd": 0x01, "request_data": [], "x": {"y": tru}}"#, 1),
    ];
    for (request, code) in cases {
        let v = c.request(request);
        assert_eq!(v["cmd"], json!(null), "{request} -> {v}");
        assert_eq!(first_code(&v), *code, "{request} -> {v}");
        assert_eq!(v["response_data"][0]["result"], json!(null));
        assert!(v["response_data"][0]["message"].is_string());
    }
    // The connection is still usable after all of that.
    assert_eq!(c.request(CURRENT_MODEL)["cmd"], json!(0x23));
}

#[test]
fn unknown_first_byte_gets_code_1_then_close() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let v = c.read_json_line();
    assert_eq!(first_code(&v), 1);
    assert!(c.is_closed_by_server(Duration::from_secs(5)));
}

#[test]
fn oversized_message_gets_code_1_then_close() {
    let server = TestServer::start(&[("server.max_message_bytes", "1024")]);
    let mut c = server.client();
    let big = format!(
        r#"{{"cmd": 1, "request_data": ["{}.jpg"]}}"#,
        "a".repeat(2000)
    );
    c.send(big.as_bytes());
    let v = c.read_json_line();
    assert_eq!(first_code(&v), 1, "{v}");
    assert!(c.is_closed_by_server(Duration::from_secs(5)));
    // A declared binary length over the limit fails at once, without the body.
    let mut b = server.client();
    b.send(&[0, 0, 0x10, 0]);
    assert_eq!(first_code(&b.read_binary_frame()), 1);
    assert!(b.is_closed_by_server(Duration::from_secs(5)));
    // Other clients are unaffected.
    assert_eq!(server.client().request(CURRENT_MODEL)["cmd"], json!(0x23));
}

#[test]
fn deep_json_is_refused() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    let deep = format!(
        r#"{{"cmd": 34, "request_data": null, "x": {}1{}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let v = c.request(&deep);
    assert_eq!(first_code(&v), 1);
    assert_eq!(c.request(CURRENT_MODEL)["cmd"], json!(0x23));
}

#[test]
fn half_closed_client_still_gets_its_answers() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    c.send(format!("{CURRENT_MODEL}{CURRENT_MODEL}").as_bytes());
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(c.read_json_line()["cmd"], json!(0x23));
    assert_eq!(c.read_json_line()["cmd"], json!(0x23));
    assert!(c.is_closed_by_server(Duration::from_secs(5)));
}
