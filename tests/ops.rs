//! Operations: several reactors on one port, state that survives a restart,
//! systemd notifications, log reopening on SIGHUP, the metrics/health
//! listener. Real binary, real sockets on 127.0.0.1.

mod common;

use std::time::Duration;

use common::{first_code, http_get, Client, TestServer};

#[test]
fn two_reactors_answer_200_connections_and_count_them() {
    let server = TestServer::start(&[("server.reactors", "2")]);
    let mut clients: Vec<Client> = (0..200).map(|_| server.client()).collect();
    for c in clients.iter_mut() {
        c.send(br#"{"cmd": 0x22, "request_data": null}"#);
    }
    for c in clients.iter_mut() {
        let v = c.read_json_line();
        assert_eq!(v["cmd"], 0x23);
        assert_eq!(first_code(&v), 0);
        assert_eq!(v["response_data"][0]["file_name"], "pear_classifier.onnx");
    }
    // Every connection is still open: the status (answered by either
    // reactor) counts all of them, plus its own.
    let mut status = server.client();
    let v = status.request(r#"{"cmd": 0x40, "request_data": null}"#);
    let s = &v["response_data"][0]["result"];
    assert_eq!(s["open_connections"], 201, "{s}");
    assert_eq!(s["accepted_connections"], 201, "{s}");
    drop(clients);
    // Closes are counted down by whichever reactor owned the connection.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = status.request(r#"{"cmd": 0x40, "request_data": null}"#);
        let open = v["response_data"][0]["result"]["open_connections"].clone();
        if open == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "open_connections stuck at {open}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_reactors_stop_together_on_sigterm() {
    let mut server = TestServer::start(&[("server.reactors", "2")]);
    let mut c = server.client();
    let v = c.request(r#"{"cmd": 0x22, "request_data": null}"#);
    assert_eq!(first_code(&v), 0);
    let status = server.terminate();
    assert!(status.success(), "{status:?}\n{}", server.stderr());
}

fn item0(v: &serde_json::Value) -> &serde_json::Value {
    &v["response_data"][0]
}

#[test]
fn model_and_image_folder_survive_a_restart() {
    let mut server = TestServer::start(&[]);
    std::fs::copy(
        server.models_dir().join("pear_classifier.onnx"),
        server.models_dir().join("other.onnx"),
    )
    .unwrap();
    let images2 = server.dir.path().join("images2");
    std::fs::create_dir(&images2).unwrap();
    let images2 = images2.canonicalize().unwrap();

    let mut c = server.client();
    let v = c.request(r#"{"cmd": 0x26, "request_data": ["other.onnx"]}"#);
    assert_eq!(first_code(&v), 0, "{v}");
    let v = c.request(&format!(
        r#"{{"cmd": 0x30, "request_data": ["{}"]}}"#,
        images2.display()
    ));
    assert_eq!(first_code(&v), 0, "{v}");
    let state_file = server.dir.path().join("server_state.json");
    let saved = std::fs::read_to_string(&state_file).expect("state file written");
    assert!(saved.contains("other.onnx"), "{saved}");
    drop(c);

    server.restart(&[]).expect("restart");
    let mut c = server.client();
    let v = c.request(r#"{"cmd": 0x22, "request_data": null}"#);
    assert_eq!(item0(&v)["file_name"], "other.onnx", "{v}");
    let v = c.request(r#"{"cmd": 0x32, "request_data": null}"#);
    assert_eq!(item0(&v)["file_name"], images2.display().to_string(), "{v}");
    drop(c);

    // What the state file points at disappears: warned about, config wins.
    std::fs::remove_file(server.models_dir().join("other.onnx")).unwrap();
    std::fs::remove_dir(&images2).unwrap();
    server
        .restart(&[])
        .expect("restart with a stale state file");
    let mut c = server.client();
    let v = c.request(r#"{"cmd": 0x22, "request_data": null}"#);
    assert_eq!(item0(&v)["file_name"], "pear_classifier.onnx", "{v}");
    let v = c.request(r#"{"cmd": 0x32, "request_data": null}"#);
    let shown = item0(&v)["file_name"].as_str().unwrap().to_owned();
    assert!(shown.ends_with("/images"), "{shown}");
    let log = server.stderr();
    assert!(log.contains("no longer exists"), "{log}");
}

#[test]
fn a_broken_state_file_is_ignored_with_a_warning() {
    let mut server = TestServer::start(&[]);
    std::fs::write(server.dir.path().join("server_state.json"), "{oops").unwrap();
    server
        .restart(&[])
        .expect("starts despite a broken state file");
    let mut c = server.client();
    let v = c.request(r#"{"cmd": 0x22, "request_data": null}"#);
    assert_eq!(item0(&v)["file_name"], "pear_classifier.onnx", "{v}");
    assert!(
        server.stderr().contains("is not valid"),
        "{}",
        server.stderr()
    );
}

#[test]
fn systemd_gets_ready_then_stopping() {
    use std::os::unix::net::UnixDatagram;
    let mut server = TestServer::start(&[]);
    let sock_path = server.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let sock_str = sock_path.to_str().unwrap().to_owned();
    server
        .restart(&[("NOTIFY_SOCKET", &sock_str)])
        .expect("restart under NOTIFY_SOCKET");
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notify message");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg:?}");
    // READY comes after the listener is bound: a request is answered now.
    let mut c = server.client();
    assert_eq!(
        first_code(&c.request(r#"{"cmd": 0x22, "request_data": null}"#)),
        0
    );
    common::unsafe_kill(server.child.id(), libc::SIGTERM);
    let n = sock.recv(&mut buf).expect("a STOPPING message");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "STOPPING=1"), "{msg:?}");
    drop(c);
    let status = server.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn sighup_reopens_the_log_file() {
    let server = TestServer::start(&[]);
    let log = server.dir.path().join("logs/server.log");
    let mut c = server.client();
    c.request(r#"{"cmd": 0x22, "request_data": null}"#);
    let rotated = server.dir.path().join("logs/server.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    common::unsafe_kill(server.child.id(), libc::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !log.exists() {
        assert!(std::time::Instant::now() < deadline, "no fresh log file");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A new request after the reopen logs into the fresh file.
    let mut c2 = server.client();
    let v = c2.request(r#"{"cmd": 0x32, "request_data": null}"#);
    assert_eq!(first_code(&v), 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = std::fs::read_to_string(&log).unwrap_or_default();
        if fresh.contains("request current_image_folder") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fresh log lacks the request line: {fresh}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(!old.contains("request current_image_folder"), "{old}");
    drop(c);
}

#[test]
fn metrics_and_health_over_http() {
    let server = TestServer::start(&[
        ("metrics.listen", "\"127.0.0.1:0\""),
        ("server.reactors", "2"),
    ]);
    let maddr = server.metrics_addr();
    assert_eq!(http_get(maddr, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(http_get(maddr, "/readyz"), (200, "ready\n".to_owned()));
    assert_eq!(http_get(maddr, "/nope").0, 404);

    let mut c = server.client();
    for _ in 0..3 {
        assert_eq!(
            first_code(&c.request(r#"{"cmd": 0x22, "request_data": null}"#)),
            0
        );
    }
    let v = c.request(r#"{"cmd": 0x01, "request_data": ["normal_01.jpg", "missing.jpg"]}"#);
    assert_eq!(v["response_data"][1]["error_code"], 2, "{v}");
    c.request(r#"{"cmd": 0x77, "request_data": null}"#);

    let (status, text) = http_get(maddr, "/metrics");
    assert_eq!(status, 200);
    for needle in [
        "pear_open_connections 1",
        "pear_accepted_connections_total 1",
        "pear_rejected_connections_total 0",
        r#"pear_requests_total{cmd="current_model",error_code="0"} 3"#,
        r#"pear_requests_total{cmd="classify",error_code="0"} 1"#,
        r#"pear_requests_total{cmd="none",error_code="3"} 1"#,
        r#"pear_response_items_total{cmd="classify",error_code="0"} 1"#,
        r#"pear_response_items_total{cmd="classify",error_code="2"} 1"#,
        "pear_inference_queue_depth 0",
        "pear_request_latency_seconds_count 5",
        "pear_inference_batch_size_count",
        "pear_inference_latency_seconds_bucket",
        "pear_ready 1",
        "# EOF",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let bytes_in: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("pear_received_bytes_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(bytes_in > 100, "{bytes_in}");
}

#[test]
fn http_head_over_8k_is_refused() {
    use std::io::{Read, Write};
    let server = TestServer::start(&[("metrics.listen", "\"127.0.0.1:0\"")]);
    let maddr = server.metrics_addr();
    let mut s = std::net::TcpStream::connect(maddr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let big = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
    let _ = s.write_all(big.as_bytes());
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
}

#[test]
fn readyz_is_503_while_draining() {
    // A grace far above the ~8 s the 200 files take, so a loaded machine
    // cannot end the drain before the owed replies are written.
    let mut server = TestServer::start(&[
        ("metrics.listen", "\"127.0.0.1:0\""),
        ("server.shutdown_grace_secs", "120"),
    ]);
    let maddr = server.metrics_addr();
    // Enough queued classification that draining takes a while.
    let names = vec!["\"normal_01.jpg\""; 100].join(",");
    let mut c = server.client();
    for _ in 0..2 {
        c.send(format!(r#"{{"cmd": 0x01, "request_data": [{names}]}}"#).as_bytes());
    }
    // Read and queued before the signal.
    server.wait_status("the requests queued", |r| {
        r["queue_depth"].as_u64().unwrap_or(0) > 0
    });
    assert_eq!(http_get(maddr, "/readyz").0, 200);
    common::unsafe_kill(server.child.id(), libc::SIGTERM);
    server.wait_log("no longer accepting");
    assert_eq!(http_get(maddr, "/readyz"), (503, "draining\n".to_owned()));
    assert_eq!(http_get(maddr, "/healthz").0, 200);
    // The replies already owed are still delivered.
    for _ in 0..2 {
        let v = c.read_json_line();
        assert_eq!(v["cmd"], 0x02, "{v}");
    }
    let status = server.wait_exit(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn two_processes_share_one_port() {
    let mut first = TestServer::start(&[]);
    let port = first.addr.port().to_string();
    let stderr = first.dir.path().join("second.log");
    let (mut second, addr) =
        common::spawn_server_with(&first.config_path(), &stderr, &[], &["--port", &port])
            .expect("a second process binds the same port (SO_REUSEPORT)");
    assert_eq!(addr, first.addr);
    // Stop the first: new connections still get answers from the second.
    first.terminate();
    let mut c = Client::connect(addr);
    let v = c.request(r#"{"cmd": 0x22, "request_data": null}"#);
    assert_eq!(first_code(&v), 0);
    drop(c);
    common::unsafe_kill(second.id(), libc::SIGTERM);
    let _ = second.wait();
}
