//! Shutdown with many open connections: the drain logs one summary line, not one
//! INFO line per closed connection (with 14k connections those lines made the drain
//! take seconds).

mod common;

use common::{first_code, TestServer};

#[test]
fn drain_logs_one_summary_line_for_many_connections() {
    const N: usize = 200;
    let mut server = TestServer::start(&[]);
    let mut clients: Vec<_> = (0..N).map(|_| server.client()).collect();
    // One answer each: every connection is accepted and open when the signal comes.
    for c in clients.iter_mut() {
        assert_eq!(
            first_code(&c.request(r#"{"cmd": 0x22, "request_data": null}"#)),
            0
        );
    }
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    let log = server.stderr();
    let drain = log
        .split("no longer accepting")
        .nth(1)
        .unwrap_or_else(|| panic!("no drain line in the log:\n{log}"));
    // Test servers log at DEBUG; the per-connection lines must be there only at DEBUG.
    assert_eq!(
        drain.matches("[INFO] connection closed:").count(),
        0,
        "INFO lines per closed connection while draining:\n{drain}"
    );
    assert!(
        drain.contains(&format!("{N} connection(s) closed while draining")),
        "no summary line:\n{drain}"
    );
    drop(clients);
}
