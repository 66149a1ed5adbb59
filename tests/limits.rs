//! Limits and lifecycle over real loopback TCP: connection cap, idle timeout,
//! many concurrent clients, disconnects with work in flight, load shedding,
//! slow readers and graceful stop.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{first_code, TestServer};
use serde_json::json;

const CURRENT_MODEL: &str = r#"{"cmd": 0x22, "request_data": null}"#;

#[test]
fn connection_limit_closes_extras_and_keeps_existing() {
    let server = TestServer::start(&[("server.connection_limit", "3")]);
    let mut kept: Vec<_> = (0..3).map(|_| server.client()).collect();
    for c in kept.iter_mut() {
        assert_eq!(c.request(CURRENT_MODEL)["cmd"], json!(0x23));
    }
    let mut extra = server.client();
    let v = extra.read_json_line();
    assert_eq!(first_code(&v), 5, "{v}");
    assert!(extra.is_closed_by_server(Duration::from_secs(5)));
    for c in kept.iter_mut() {
        assert_eq!(c.request(CURRENT_MODEL)["cmd"], json!(0x23));
    }
    // A slot frees up when one leaves.
    drop(kept.pop());
    // Wait (on a kept connection: a new one would count against the cap)
    // until the server has counted the closed one out.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v = kept[0].request(r#"{"cmd": 0x40, "request_data": null}"#);
        if v["response_data"][0]["result"]["open_connections"] == json!(2) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never 2 open: {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut again = server.client();
    assert_eq!(again.request(CURRENT_MODEL)["cmd"], json!(0x23));
}

#[test]
fn idle_connections_are_closed() {
    let server = TestServer::start(&[("server.idle_timeout_secs", "1")]);
    let mut idle = server.client();
    // Slowloris: half a request, then silence.
    idle.send(br#"{"cmd": 0x22, "req"#);
    assert!(idle.is_closed_by_server(Duration::from_secs(5)));
    let mut active = server.client();
    assert_eq!(active.request(CURRENT_MODEL)["cmd"], json!(0x23));
}

#[test]
fn thousand_concurrent_clients() {
    let server = TestServer::start(&[]);
    let addr = server.addr;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let mut clients: Vec<_> = (0..125).map(|_| common::Client::connect(addr)).collect();
                for (i, c) in clients.iter_mut().enumerate() {
                    c.send(
                        format!(
                            r#"{{"cmd": 0x22, "request_data": null, "id": {}}}"#,
                            t * 1000 + i
                        )
                        .as_bytes(),
                    );
                }
                for (i, c) in clients.iter_mut().enumerate() {
                    let v = c.read_json_line();
                    assert_eq!(v["id"], json!(t * 1000 + i));
                    assert_eq!(v["cmd"], json!(0x23));
                }
                clients.len()
            })
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, 1000);
    let v = server
        .client()
        .request(r#"{"cmd": 0x40, "request_data": null}"#);
    assert!(
        v["response_data"][0]["result"]["accepted_connections"]
            .as_u64()
            .unwrap()
            >= 1001
    );
}

#[test]
fn disconnect_with_inference_in_flight() {
    let server = TestServer::start(&[("inference.workers", "1")]);
    for _ in 0..5 {
        let mut c = server.client();
        let names: Vec<&str> = vec!["\"normal_01.jpg\""; 50];
        c.send(format!(r#"{{"cmd": 1, "request_data": [{}]}}"#, names.join(",")).as_bytes());
        // Abortive close (RST), as when a client process dies: the server
        // must drop the connection and cancel its queued files.
        socket2::SockRef::from(&c.stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(c);
    }
    // New connections reuse the slab slots; they must get only their own replies.
    for i in 0..20 {
        let mut c = server.client();
        let v = c.request(&format!(
            r#"{{"cmd": 0x22, "request_data": null, "id": {i}}}"#
        ));
        assert_eq!(v["id"], json!(i));
        assert_eq!(v["cmd"], json!(0x23));
    }
    // The 250 abandoned files were cancelled, so new work is not stuck behind them.
    let mut c = server.client();
    let v = c.request(r#"{"cmd": 1, "request_data": ["normal_01.jpg"], "id": "last"}"#);
    assert_eq!(v["id"], json!("last"));
    assert_eq!(v["response_data"].as_array().unwrap().len(), 1);
    assert_eq!(first_code(&v), 0, "{v}");
    let status = c.request(r#"{"cmd": 0x40, "request_data": null}"#);
    assert_eq!(
        status["response_data"][0]["result"]["open_connections"],
        json!(1)
    );
}

#[test]
fn full_queue_answers_busy_at_once() {
    // Requests within capacity from several connections at once: the queue fills,
    // later ones are answered code 5 at once (before the queued work is done), and
    // the queued work still completes.
    const CONNS: usize = 10;
    const FILES: usize = 8;
    let server = TestServer::start(&[
        ("inference.queue_capacity", "8"),
        ("inference.workers", "1"),
        ("inference.max_batch", "1"),
    ]);
    let names = ["\"normal_01.jpg\""; FILES].join(",");
    let mut clients: Vec<_> = (0..CONNS).map(|_| server.client()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(format!(r#"{{"cmd": 1, "request_data": [{names}], "id": {i}}}"#).as_bytes());
    }
    // Each reply with the moment it arrived (order only, no timing goal).
    let replies: Vec<(std::time::Instant, serde_json::Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter_mut()
            .map(|c| {
                s.spawn(move || {
                    let v = c.read_json_line();
                    (std::time::Instant::now(), v)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let codes: Vec<_> = replies
        .iter()
        .map(|(_, v)| (v["id"].clone(), v["cmd"].clone(), first_code(v)))
        .collect();
    let busy: Vec<_> = replies.iter().filter(|(_, v)| first_code(v) == 5).collect();
    let done: Vec<_> = replies.iter().filter(|(_, v)| first_code(v) == 0).collect();
    assert_eq!(busy.len() + done.len(), CONNS, "(id, cmd, code): {codes:?}");
    assert!(!busy.is_empty(), "the queue never filled: {codes:?}");
    assert!(!done.is_empty(), "no queued work completed: {codes:?}");
    // Refused whole by the service (cmd null), not file by file by the queue.
    for (_, v) in &busy {
        assert_eq!(v["cmd"], json!(null), "(id, cmd, code): {codes:?}");
        let items = v["response_data"].as_array().unwrap();
        assert!(items.iter().all(|i| i["error_code"] == json!(5)), "{v}");
    }
    for (_, v) in &done {
        let items = v["response_data"].as_array().unwrap();
        assert_eq!(items.len(), FILES, "{v}");
        assert!(items.iter().all(|i| i["error_code"] == json!(0)), "{v}");
    }
    // "At once": every code 5 came before the last queued request was answered.
    let last_done = done.iter().map(|(t, _)| *t).max().unwrap();
    assert!(
        busy.iter().all(|(t, _)| *t < last_done),
        "a busy answer waited for the queue: {codes:?}"
    );
    // Once drained, the same connections are served again; a request larger
    // than the whole queue is refused.
    let v = clients[0].request(r#"{"cmd": 1, "request_data": ["normal_01.jpg"]}"#);
    assert_eq!(first_code(&v), 0, "{v}");
    let names = ["\"normal_01.jpg\""; 9].join(",");
    let v = clients[1].request(&format!(r#"{{"cmd": 1, "request_data": [{names}]}}"#));
    assert_eq!(first_code(&v), 5, "{v}");
}

#[test]
fn slow_reader_is_paused_not_buffered_forever() {
    let server = TestServer::start(&[("server.max_output_bytes", "4096")]);
    let mut slow = server.client();
    slow.stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    // Write requests without ever reading: the server must stop reading
    // (output bound), so our writes eventually block.
    let req = r#"{"cmd": 0x40, "request_data": null}"#.repeat(1000);
    let mut sent = 0usize;
    let mut blocked = false;
    for _ in 0..2000 {
        match slow.stream.write(req.as_bytes()) {
            Ok(n) => sent += n,
            Err(_) => {
                blocked = true;
                break;
            }
        }
    }
    assert!(
        blocked,
        "server kept reading {sent} bytes from a client that never reads"
    );
    // Other clients are served meanwhile.
    let mut other = server.client();
    for _ in 0..10 {
        assert_eq!(other.request(CURRENT_MODEL)["cmd"], json!(0x23));
    }
}

#[test]
fn sigterm_answers_in_flight_then_exits_zero() {
    let mut server = TestServer::start(&[("inference.workers", "1")]);
    let mut c = server.client();
    let names: Vec<&str> = vec!["\"normal_01.jpg\""; 20];
    c.send(format!(r#"{{"cmd": 1, "request_data": [{}]}}"#, names.join(",")).as_bytes());
    // The request is read and queued (its files are waiting) before the signal.
    server.wait_status("the request queued", |r| {
        r["queue_depth"].as_u64().unwrap_or(0) > 0
    });
    common::unsafe_kill(server.child.id(), libc::SIGTERM);
    server.wait_log("no longer accepting");
    // During the drain: new connections are refused while the process still
    // runs and the old connection's answer is still owed.
    let refused = std::net::TcpStream::connect(server.addr);
    assert!(refused.is_err(), "accepted a connection while draining");
    assert!(
        server.is_running(),
        "the server exited before the reply was read"
    );
    let v = c.read_json_line();
    assert_eq!(v["cmd"], json!(2));
    let items = v["response_data"].as_array().unwrap();
    assert_eq!(items.len(), 20);
    assert!(items.iter().all(|i| i["error_code"] == json!(0)), "{v}");
    let status = server.wait_exit(Duration::from_secs(20)).expect("exit");
    assert!(status.success(), "{status:?}\n{}", server.stderr());
}

#[test]
fn bad_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "server:\n  port: \"abc\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pear-server"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.port"), "{err}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pear-server"))
        .arg("--config")
        .arg(common::repo().join("config/server_config.yaml"))
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("max_inflight_per_connection"));
}
