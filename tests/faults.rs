//! Fault injection over real loopback TCP, beyond what `tests/limits.rs` covers:
//! slot reuse while dead connections' inference is still running, a slow reader
//! next to well-behaved clients, corrupt models on 0x26, downloads that are too
//! large / too slow / cut off (against a real HTTP server in this file), a
//! panicking inference job (in-process server, through the test hook) and a
//! low RLIMIT_NOFILE (EMFILE on accept).
//!
//! Every wait is bounded: clients have read timeouts, load loops are bounded in
//! count and time.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{first_code, Client, TestServer};
use serde_json::{json, Value};

const CURRENT_MODEL: &str = r#"{"cmd": 0x22, "request_data": null}"#;

fn classify_many(n: usize, id: &str) -> String {
    let names = vec!["\"normal_01.jpg\""; n].join(",");
    format!(r#"{{"cmd": 1, "request_data": [{names}], "id": "{id}"}}"#)
}

fn rst(c: Client) {
    socket2::SockRef::from(&c.stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(c);
}

/// Every entry of a folder, hidden files included.
fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn status(c: &mut Client) -> Value {
    let v = c.request(r#"{"cmd": 0x40, "request_data": null}"#);
    v["response_data"][0]["result"].clone()
}

// ---------------------------------------------------------------------------
// Disconnect mid-inference, then slot reuse.
// ---------------------------------------------------------------------------

/// A connection dies (RST or FIN) with classification queued and running; the
/// very next connection takes its slab slot while the dead one's completions
/// are still arriving. Every reply a live connection reads must carry its own
/// `id`, nothing extra may arrive, and the server must not panic.
#[test]
fn slot_reuse_after_disconnect_mid_inference() {
    let server = TestServer::start(&[("inference.workers", "1")]);
    // Classification requests the server has read (its DEBUG line per request).
    let read_so_far = || server.stderr().matches(": request classify").count();
    for round in 0..12 {
        let before = read_so_far();
        let mut dead = server.client();
        dead.send(classify_many(24, &format!("dead-{round}")).as_bytes());
        // The dead connection's request is read (its files queued for the
        // worker) before the connection dies.
        let deadline = Instant::now() + Duration::from_secs(30);
        while read_so_far() <= before {
            assert!(
                Instant::now() < deadline,
                "round {round}: request never read"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        if round % 2 == 0 {
            rst(dead);
        } else {
            // Plain close: the server sees EOF and must still not mix things up.
            drop(dead);
        }
        // The new connections reuse the freed slot (the slab hands out the
        // lowest free key) while the dead one's results are in flight.
        let mut fresh: Vec<Client> = (0..3).map(|_| server.client()).collect();
        for (i, c) in fresh.iter_mut().enumerate() {
            c.send(
                format!(r#"{{"cmd": 0x22, "request_data": null, "id": "r{round}-c{i}-a"}}"#)
                    .as_bytes(),
            );
            c.send(
                format!(
                    r#"{{"cmd": 1, "request_data": ["normal_01.jpg", "dark_spot_01.jpg"], "id": "r{round}-c{i}-b"}}"#
                )
                .as_bytes(),
            );
        }
        for (i, c) in fresh.iter_mut().enumerate() {
            let a = c.read_json_line();
            assert_eq!(a["id"], json!(format!("r{round}-c{i}-a")), "{a}");
            assert_eq!(a["cmd"], json!(0x23), "{a}");
            let b = c.read_json_line();
            assert_eq!(b["id"], json!(format!("r{round}-c{i}-b")), "{b}");
            assert_eq!(b["cmd"], json!(2), "{b}");
            let items = b["response_data"].as_array().unwrap();
            assert_eq!(items.len(), 2, "{b}");
            assert_eq!(items[0]["file_name"], json!("normal_01.jpg"));
            assert_eq!(items[1]["file_name"], json!("dark_spot_01.jpg"));
            // Nothing stray is waiting: the next line is the answer to the next request.
            let c2 = c.request(&format!(
                r#"{{"cmd": 0x22, "request_data": null, "id": "r{round}-c{i}-c"}}"#
            ));
            assert_eq!(c2["id"], json!(format!("r{round}-c{i}-c")), "{c2}");
        }
    }
    // Every connection of this test is closed; the server notices soon.
    let mut c = server.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = status(&mut c);
    while s["open_connections"] != json!(1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        s = status(&mut c);
    }
    assert_eq!(s["open_connections"], json!(1), "{s}");
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

// ---------------------------------------------------------------------------
// Slow reader beside other clients.
// ---------------------------------------------------------------------------

/// A client pipelines requests and never reads. The server must stop reading
/// it (our writes block), keep serving everyone else promptly, and, once the
/// slow client finally reads, deliver every answer it owes, in order.
#[test]
fn slow_reader_does_not_stall_others_and_loses_nothing() {
    let server = TestServer::start(&[("server.max_output_bytes", "4096")]);
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    // Small buffers on our side keep the amount parked in the kernel modest.
    sock.set_recv_buffer_size(4096).unwrap();
    sock.set_send_buffer_size(4096).unwrap();
    sock.connect(&server.addr.into()).unwrap();
    let mut slow: TcpStream = sock.into();
    slow.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();

    // Fixed-width ids, so the number of complete requests follows from the bytes sent.
    let req = |i: usize| format!(r#"{{"cmd": 0x22, "request_data": null, "id": "{i:08}"}}"#);
    let len = req(0).len();
    let mut sent = 0usize;
    let mut blocked = false;
    let start = Instant::now();
    let mut i = 0usize;
    let mut pending: Vec<u8> = Vec::new();
    while i < 400_000 && start.elapsed() < Duration::from_secs(15) {
        if pending.is_empty() {
            for k in i..i + 64 {
                pending.extend_from_slice(req(k).as_bytes());
            }
            i += 64;
        }
        match slow.write(&pending) {
            Ok(n) => {
                sent += n;
                pending.drain(..n);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                blocked = true;
                break;
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    assert!(
        blocked,
        "the server kept reading {sent} bytes from a client that never reads"
    );
    let complete = sent / len;

    // Everyone else is served meanwhile, while the slow client still owes reads
    // (a stalled reactor would leave these unanswered: the client's read timeout
    // fails the test; no latency goal here, the benches measure that).
    let mut other = server.client();
    for _ in 0..200 {
        assert_eq!(other.request(CURRENT_MODEL)["cmd"], json!(0x23));
    }

    // Now read: every complete request gets its answer, in order, nothing lost.
    let mut reader = std::io::BufReader::new(slow.try_clone().unwrap());
    let mut line = String::new();
    for k in 0..complete {
        line.clear();
        let n = std::io::BufRead::read_line(&mut reader, &mut line)
            .unwrap_or_else(|e| panic!("reply {k} of {complete}: {e}"));
        assert!(n > 0, "server closed after {k} of {complete} replies");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["id"], json!(format!("{k:08}")), "{v}");
    }
    // Finish the partial request (if any) and one more; both are answered.
    slow.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(&pending).unwrap();
    for _ in 0..2 {
        line.clear();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["cmd"], json!(0x23), "{v}");
    }
}

// ---------------------------------------------------------------------------
// Corrupt models on 0x26.
// ---------------------------------------------------------------------------

/// Truncated, empty, garbage-with-a-plausible-header and directory "models":
/// each 0x26 fails with result 1 / code 2, the old model stays, classification
/// running at the same time keeps working.
#[test]
fn corrupt_models_keep_the_old_one() {
    let server = TestServer::start(&[]);
    let models = server.models_dir();
    let good = std::fs::read(models.join("pear_classifier.onnx")).unwrap();
    std::fs::write(models.join("truncated.onnx"), &good[..good.len() / 2]).unwrap();
    std::fs::write(models.join("head_only.onnx"), &good[..64.min(good.len())]).unwrap();
    std::fs::write(models.join("empty.onnx"), b"").unwrap();
    let mut flipped = good.clone();
    for b in flipped.iter_mut().skip(16).step_by(7) {
        *b ^= 0xa5;
    }
    std::fs::write(models.join("flipped.onnx"), &flipped).unwrap();
    std::fs::create_dir(models.join("dir.onnx")).unwrap();

    let mut busy = server.client();
    let mut c = server.client();
    for name in [
        "truncated.onnx",
        "head_only.onnx",
        "empty.onnx",
        "flipped.onnx",
        "dir.onnx",
    ] {
        // Classification in flight on another connection while the load fails.
        busy.send(classify_many(4, name).as_bytes());
        let v = c.request(&format!(r#"{{"cmd": 0x26, "request_data": ["{name}"]}}"#));
        assert_eq!(v["cmd"], json!(0x27), "{name}: {v}");
        assert_eq!(v["response_data"][0]["result"], json!(1), "{name}: {v}");
        assert_eq!(first_code(&v), 2, "{name}: {v}");
        let b = busy.read_json_line();
        assert_eq!(b["id"], json!(name));
        for item in b["response_data"].as_array().unwrap() {
            assert_eq!(item["error_code"], json!(0), "{b}");
        }
        let v = c.request(CURRENT_MODEL);
        assert_eq!(
            v["response_data"][0]["file_name"],
            json!("pear_classifier.onnx"),
            "after {name}"
        );
    }
    let v = c.request(r#"{"cmd": 0x01, "request_data": ["normal_01.jpg"]}"#);
    assert_eq!(first_code(&v), 0, "{v}");
    // The broken files are still there (0x26 never deletes) and nothing else appeared.
    assert!(models.join("truncated.onnx").exists());
    assert_eq!(entries(&models).len(), 7, "{:?}", entries(&models));
}

// ---------------------------------------------------------------------------
// Downloads (0x20) that fail, against a real HTTP server.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Misbehave {
    /// Content-Length over the server's limit.
    TooLargeDeclared,
    /// No Content-Length; the body just keeps coming past the limit.
    TooLargeStreamed,
    /// A byte every 300 ms: the whole-transfer time limit must fire.
    Slow,
    /// Content-Length promises more than is sent, then the connection closes.
    Interrupted,
    /// Headers, then silence.
    Silent,
}

/// A one-shot-per-connection HTTP server on 127.0.0.1 that misbehaves on purpose.
/// Stops when dropped.
struct BadHttp {
    port: u16,
    /// Connections accepted so far (a download has reached this server).
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BadHttp {
    fn start(how: Misbehave) -> BadHttp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((s, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        let flag = Arc::clone(&flag);
                        std::thread::spawn(move || {
                            let _ = serve_badly(s, how, &flag);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        BadHttp {
            port,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/models/{name}", self.port)
    }
}

impl Drop for BadHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_badly(mut s: TcpStream, how: Misbehave, stop: &AtomicBool) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut b = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = s.read(&mut b)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&b[..n]);
    }
    let chunk = vec![0x08u8; 16 * 1024];
    let t0 = Instant::now();
    let bounded = || !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(30);
    match how {
        Misbehave::TooLargeDeclared => {
            s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\n",
            )?;
            while bounded() {
                s.write_all(&chunk)?;
            }
        }
        Misbehave::TooLargeStreamed => {
            s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")?;
            while bounded() {
                s.write_all(&chunk)?;
            }
        }
        Misbehave::Slow => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n")?;
            while bounded() {
                s.write_all(b"x")?;
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        Misbehave::Interrupted => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 50000\r\nConnection: close\r\n\r\n")?;
            s.write_all(&chunk[..5000])?;
            s.flush()?;
            std::thread::sleep(Duration::from_millis(50));
            s.shutdown(Shutdown::Both)?;
        }
        Misbehave::Silent => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n")?;
            while bounded() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    Ok(())
}

#[test]
fn failed_downloads_leave_nothing_behind() {
    let server = TestServer::start(&[
        ("model.download_max_bytes", "100000"),
        ("model.download_timeout_secs", "2"),
    ]);
    let models = server.models_dir();
    let before = entries(&models);
    let cases = [
        (Misbehave::TooLargeDeclared, "big_declared.onnx", &[2][..]),
        (Misbehave::TooLargeStreamed, "big_streamed.onnx", &[2][..]),
        (Misbehave::Slow, "slow.onnx", &[4][..]),
        (Misbehave::Interrupted, "cut.onnx", &[2][..]),
        (Misbehave::Silent, "silent.onnx", &[4][..]),
    ];
    // All downloads at once on one connection (answers come back in request
    // order), while another connection checks the reactor stays responsive.
    let http: Vec<BadHttp> = cases
        .iter()
        .map(|(how, _, _)| BadHttp::start(*how))
        .collect();
    let mut c = server.client();
    for ((_, name, _), h) in cases.iter().zip(&http) {
        c.send(format!(r#"{{"cmd": 0x20, "request_data": ["{}"]}}"#, h.url(name)).as_bytes());
    }
    let mut other = server.client();
    for _ in 0..20 {
        assert_eq!(other.request(CURRENT_MODEL)["cmd"], json!(0x23));
    }
    for (_, name, codes) in &cases {
        let v = c.read_json_line();
        assert_eq!(v["cmd"], json!(0x21), "{name}: {v}");
        let item = &v["response_data"][0];
        assert_eq!(item["file_name"], json!(name), "{v}");
        assert_eq!(item["result"], json!(1), "{name}: {v}");
        let code = item["error_code"].as_i64().unwrap();
        assert!(codes.contains(&code), "{name}: code {code}: {v}");
    }
    drop(http);
    assert_eq!(entries(&models), before, "the model folder changed");
    let v = c.request(r#"{"cmd": 0x24, "request_data": null}"#);
    let listed: Vec<&Value> = v["response_data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["file_name"])
        .collect();
    assert_eq!(
        listed,
        vec![&json!("pear_classifier.onnx"), &json!("pear_detector.onnx")]
    );
}

// ---------------------------------------------------------------------------
// A panicking inference job, in an in-process server.
// ---------------------------------------------------------------------------

/// The binary has no fault-injection switch, so this one runs the library's
/// server (the same `Service` + `Reactor` as `main.rs`) on a thread and
/// installs the inference test hook that panics on one file name.
#[test]
fn panicking_job_is_code_6_and_the_server_stays_up() {
    use pear_server::config::{Config, Overrides};
    use pear_server::reactor::Reactor;
    use pear_server::service::Service;

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    std::fs::create_dir_all(dir.path().join("images")).unwrap();
    for name in ["pear_classifier.onnx", "pear_detector.onnx"] {
        std::fs::copy(
            common::assets().join("models").join(name),
            dir.path().join("models").join(name),
        )
        .unwrap();
    }
    for name in ["normal_01.jpg", "dark_spot_01.jpg"] {
        std::fs::copy(
            common::assets().join("samples").join(name),
            dir.path().join("images").join(name),
        )
        .unwrap();
    }
    std::fs::copy(
        dir.path().join("images/normal_01.jpg"),
        dir.path().join("images/boom.jpg"),
    )
    .unwrap();
    let path = common::write_config(dir.path(), &[("inference.workers", "2")]);
    let overrides = Overrides {
        host: Some("127.0.0.1".into()),
        port: Some(0),
        log_level: None,
    };
    let config = Config::load(&path, &overrides).unwrap().config;
    pear_server::inference::runtime::init_runtime(config.inference.ort_library.as_deref()).unwrap();
    let service = Arc::new(Service::start(config).unwrap());
    service
        .inference()
        .set_test_hook(Some(Arc::new(|name: &str| {
            if name == "boom.jpg" {
                panic!("injected failure in a job");
            }
        })));
    let (reactor, stop) = Reactor::bind(Arc::clone(&service)).unwrap();
    let addr = reactor.local_addr();
    let stopper = stop.clone();
    let thread = std::thread::spawn(move || reactor.run(stop));

    let mut c = Client::connect(addr);
    for round in 0..3 {
        let v = c.request(&format!(
            r#"{{"cmd": 1, "request_data": ["normal_01.jpg", "boom.jpg", "dark_spot_01.jpg"], "id": {round}}}"#
        ));
        assert_eq!(v["id"], json!(round));
        let items = v["response_data"].as_array().unwrap();
        assert_eq!(items.len(), 3, "{v}");
        assert_eq!(items[0]["error_code"], json!(0), "{v}");
        assert_eq!(items[1]["file_name"], json!("boom.jpg"), "{v}");
        assert_eq!(items[1]["error_code"], json!(6), "{v}");
        assert_eq!(items[1]["result"], json!(null), "{v}");
        assert_eq!(items[2]["error_code"], json!(0), "{v}");
    }
    // Another connection is unaffected.
    let mut d = Client::connect(addr);
    assert_eq!(d.request(CURRENT_MODEL)["cmd"], json!(0x23));
    let v = d.request(r#"{"cmd": 1, "request_data": ["normal_01.jpg"]}"#);
    assert_eq!(first_code(&v), 0, "{v}");
    assert!(!thread.is_finished(), "the reactor thread died");
    // Stop it: the reactor drains and returns normally.
    drop((c, d));
    stopper.stop();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !thread.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(thread.is_finished(), "the reactor did not stop");
    thread.join().unwrap().unwrap();
}

// ---------------------------------------------------------------------------
// Low RLIMIT_NOFILE: EMFILE on accept.
// ---------------------------------------------------------------------------

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn set_nofile(pid: u32, soft: u64) {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit(2) with valid pointers to rlimit structs; our own child's pid.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            std::ptr::null(),
            &mut old,
        )
    };
    assert_eq!(rc, 0, "prlimit get: {}", std::io::Error::last_os_error());
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: old.rlim_max,
    };
    // SAFETY: as above.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &new,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit set: {}", std::io::Error::last_os_error());
}

/// The server runs with a soft fd limit just above what it already uses. It
/// must keep serving the connections it has while accept fails with EMFILE,
/// and accept the waiting connections once some close.
#[test]
fn low_nofile_limit_keeps_serving_and_recovers() {
    let server = TestServer::start(&[]);
    let pid = server.child.id();
    // An answer shows the server settled (worker threads, sessions); the probe
    // stays open while the fds are counted, so no close is still in progress.
    let mut probe = server.client();
    assert_eq!(probe.request(CURRENT_MODEL)["cmd"], json!(0x23));
    let base = open_fds(pid);
    assert!(base > 0);
    let room = 8;
    set_nofile(pid, (base + room) as u64);
    drop(probe);

    // Open connections until one is not answered: the server is out of fds.
    let mut served: Vec<Client> = Vec::new();
    let mut waiting: Option<Client> = None;
    for i in 0..(room + 20) {
        let mut c = server.client();
        c.send(format!(r#"{{"cmd": 0x22, "request_data": null, "id": {i}}}"#).as_bytes());
        c.stream
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let mut buf = [0u8; 4096];
        match c.stream.read(&mut buf) {
            Ok(n) if n > 0 => {
                let v: Value = serde_json::from_slice(&buf[..n - 1]).unwrap();
                assert_eq!(v["id"], json!(i));
                served.push(c);
            }
            _ => {
                waiting = Some(c);
                break;
            }
        }
    }
    let mut waiting = waiting.expect("the fd limit was never reached");
    // (fd numbers, not counts, are limited: a gap below the highest fd allows one more)
    assert!(
        served.len() <= room + 2,
        "{} connections served with room for about {room} fds",
        served.len()
    );
    // The log says why (EMFILE), and the server is still alive.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.stderr().contains("pausing accepts") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        server.stderr().contains("pausing accepts"),
        "{}",
        server.stderr()
    );

    // Existing connections keep being served while accept keeps failing.
    for (k, c) in served.iter_mut().enumerate() {
        for j in 0..3 {
            let id = format!("s{k}-{j}");
            let v = c.request(&format!(
                r#"{{"cmd": 0x40, "request_data": null, "id": "{id}"}}"#
            ));
            assert_eq!(v["id"], json!(id), "{v}");
        }
    }

    // Free some fds: the waiting connection is accepted and answered.
    for c in served.drain(..served.len().min(4)) {
        drop(c);
    }
    waiting
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let v = waiting.read_json_line();
    assert_eq!(v["cmd"], json!(0x23), "{v}");
    // And new connections work again.
    let mut again = server.client();
    assert_eq!(again.request(CURRENT_MODEL)["cmd"], json!(0x23));
    for c in served.iter_mut() {
        assert_eq!(c.request(CURRENT_MODEL)["cmd"], json!(0x23));
    }
    drop(again);
    drop(waiting);
    drop(served);
    // Back to a normal limit: a burst of connections is fine.
    set_nofile(pid, 4096);
    let mut burst: Vec<Client> = (0..50).map(|_| server.client()).collect();
    for c in burst.iter_mut() {
        assert_eq!(c.request(CURRENT_MODEL)["cmd"], json!(0x23));
    }
}

// ---------------------------------------------------------------------------
// Slow downloads versus classification.
// ---------------------------------------------------------------------------

/// 0x20 downloads block a thread for up to `download_timeout_secs`. As many
/// slow downloads as there are workers must not stop other clients'
/// classification for that long.
#[test]
fn slow_downloads_do_not_stall_classification() {
    let server = TestServer::start(&[
        ("inference.workers", "2"),
        ("model.download_timeout_secs", "8"),
    ]);
    let http = [
        BadHttp::start(Misbehave::Silent),
        BadHttp::start(Misbehave::Silent),
    ];
    let mut a = server.client();
    for (i, h) in http.iter().enumerate() {
        a.send(
            format!(
                r#"{{"cmd": 0x20, "request_data": ["{}"]}}"#,
                h.url(&format!("stall{i}.onnx"))
            )
            .as_bytes(),
        );
    }
    // Both downloads have reached their (silent) servers and hang there.
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.iter().any(|h| h.accepted.load(Ordering::SeqCst) == 0) {
        assert!(Instant::now() < deadline, "the downloads never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut b = server.client();
    let v = b.request(r#"{"cmd": 1, "request_data": ["normal_01.jpg"]}"#);
    assert_eq!(first_code(&v), 0, "{v}");
    // Classification was answered while both downloads still hang: neither
    // download's answer (code 4 after 8 s) has arrived yet.
    a.stream.set_nonblocking(true).unwrap();
    let mut probe = [0u8; 1];
    let early = std::io::Read::read(&mut a.stream, &mut probe);
    assert!(
        matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "classification waited behind the slow downloads: {early:?}"
    );
    a.stream.set_nonblocking(false).unwrap();
    for _ in 0..2 {
        let v = a.read_json_line();
        assert_eq!(v["response_data"][0]["error_code"], json!(4), "{v}");
    }
}
