//! The global memory budget (`server.max_buffered_bytes`) over real TCP: many
//! clients sending large messages at once. The server's buffers (the
//! `pear_buffered_bytes_peak` gauge, the highest sum it ever held) stay within
//! the budget plus the documented slack; every message is answered, either
//! normally or with code 5 (then the client sends it again on a new
//! connection, as a code-5 answer asks); and a small request is answered while
//! connections wait for the budget.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{http_get, metric, TestServer};
use serde_json::{json, Value};

const BUDGET: usize = 2 << 20;
const MAX_MESSAGE: usize = 256 << 10;
/// docs/RELIABILITY.md "Memory budget": the read that crosses the line (one
/// 16 KiB read, and the input buffer doubling: at most one message) plus the
/// replies of requests already accepted (here a few hundred bytes each).
const SLACK: usize = MAX_MESSAGE + (64 << 10);
const CLIENTS: usize = 24;
const MESSAGES: usize = 3;
/// Each message: a 0x22 with an `id` and ~200 KiB of padding (an extra key,
/// which requests may carry), written 4 KiB at a time.
const PAD: usize = 200 << 10;

fn message(id: &str) -> Vec<u8> {
    let pad = "x".repeat(PAD);
    format!(r#"{{"cmd": 34, "request_data": null, "id": "{id}", "pad": "{pad}"}}"#).into_bytes()
}

/// Sends one message on `stream` and reads its one answer line. A write that
/// fails (the server refused the message and closed) still leaves the answer
/// to read.
fn send_and_answer(stream: &mut TcpStream, bytes: &[u8]) -> Value {
    for chunk in bytes.chunks(4096) {
        if stream.write_all(chunk).is_err() {
            break;
        }
    }
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) => line.push(byte[0]),
            Ok(_) => panic!("closed without an answer ({} bytes)", line.len()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("no answer: {e}"),
        }
    }
    serde_json::from_slice(&line).expect("answer is JSON")
}

/// One client: sends its messages one after the other; a message answered
/// code 5 (busy) is sent again on a new connection. Returns how many answers
/// were code 5.
fn client(addr: SocketAddr, n: usize, deadline: Instant) -> usize {
    let mut busy = 0;
    let mut stream: Option<TcpStream> = None;
    for m in 0..MESSAGES {
        let id = format!("c{n}-m{m}");
        let bytes = message(&id);
        loop {
            assert!(Instant::now() < deadline, "{id} never answered normally");
            let s = stream.get_or_insert_with(|| {
                let s = TcpStream::connect(addr).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                s
            });
            let v = send_and_answer(s, &bytes);
            if v["cmd"] == json!(0x23) {
                assert_eq!(v["id"], json!(id), "{v}");
                assert_eq!(v["response_data"][0]["error_code"], json!(0), "{v}");
                break;
            }
            // Refused for the budget: whole-request error, then the server closes.
            assert_eq!(v["cmd"], Value::Null, "{v}");
            assert_eq!(v["response_data"][0]["error_code"], json!(5), "{v}");
            busy += 1;
            stream = None;
        }
    }
    busy
}

fn scrape(addr: SocketAddr, name: &str) -> f64 {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    metric(&body, name).unwrap_or_else(|| panic!("no {name} in\n{body}"))
}

#[test]
fn large_messages_stay_within_the_budget_and_are_all_answered() {
    let server = TestServer::start(&[
        ("server.max_buffered_bytes", &BUDGET.to_string()),
        ("server.max_message_bytes", &MAX_MESSAGE.to_string()),
        ("metrics.listen", "\"127.0.0.1:0\""),
        ("logging.level", "INFO"),
    ]);
    let maddr = server.metrics_addr();
    assert_eq!(scrape(maddr, "pear_buffered_bytes_budget"), BUDGET as f64);
    let addr = server.addr;
    let deadline = Instant::now() + Duration::from_secs(240);
    let finished = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let finished = Arc::clone(&finished);
            std::thread::spawn(move || {
                let busy = client(addr, n, deadline);
                finished.fetch_add(1, Ordering::SeqCst);
                busy
            })
        })
        .collect();

    // Connections start to wait for the budget; a small request on a new
    // connection is answered meanwhile.
    loop {
        if scrape(maddr, "pear_budget_waits_total") > 0.0 {
            break;
        }
        assert!(
            finished.load(Ordering::SeqCst) < CLIENTS,
            "every client finished and no connection ever waited for the budget"
        );
        assert!(
            Instant::now() < deadline,
            "no connection waited for the budget"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut small = server.client();
    let v = small.request(r#"{"cmd": 0x22, "request_data": null, "id": "small"}"#);
    assert_eq!(v["cmd"], json!(0x23), "{v}");
    assert_eq!(v["id"], json!("small"), "{v}");

    let busy: usize = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .sum();

    let peak = scrape(maddr, "pear_buffered_bytes_peak") as usize;
    assert!(
        peak <= BUDGET + SLACK,
        "buffers peaked at {peak} bytes, over the budget {BUDGET} + slack {SLACK}"
    );
    // Without a budget the 24 connections would hold 24 messages at once.
    assert!(
        peak > BUDGET / 2,
        "the load never reached the budget: {peak}"
    );
    assert_eq!(
        scrape(maddr, "pear_budget_refusals_total") as usize,
        busy,
        "every refusal counted once, every one seen by a client"
    );
    // Everything sent is answered; once the clients are gone the buffers are
    // given back (connections still open hold at most their kept 4 KiB + 4 KiB).
    drop(small);
    let give_back = Instant::now() + Duration::from_secs(30);
    while scrape(maddr, "pear_buffered_bytes") > 0.0 {
        assert!(Instant::now() < give_back, "buffers not given back");
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = server.stderr();
    assert!(!log.contains("panicked"), "{log}");
}
