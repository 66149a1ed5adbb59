//! Operations: several reactors on one port, state that survives a restart,
//! systemd notifications, log reopening on SIGHUP, the metrics/health
//! listener. Real binary, real sockets on 127.0.0.1.

mod common;

use std::time::Duration;

use common::{first_code, Client, TestServer};

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
