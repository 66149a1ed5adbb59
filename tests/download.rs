//! Model download over real HTTP on 127.0.0.1: a small HTTP/1.1 server in this file
//! serves good files, errors, oversized, slow, hanging and truncated bodies, and
//! redirects. After every failure the model folder must hold nothing new, temp
//! files included.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pear_server::download::{download_model, target_name, DownloadError, DownloadLimits};
use pear_server::protocol::ErrorCode;

const OK_LEN: usize = 20_000;
const LIMIT: u64 = 64 * 1024;
const BIG_LEN: usize = 200_000;

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

// ---------------------------------------------------------------- test server

struct Server {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let counter = Arc::clone(&counter);
                let port = addr.port();
                thread::spawn(move || {
                    // Errors here mean the client went away: that is what some tests do.
                    let _ = handle(stream, port, &counter);
                });
            }
        });
        Server { addr, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn read_request_path(stream: &mut TcpStream) -> std::io::Result<String> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || stream.read(&mut byte)? == 0 {
            return Err(std::io::Error::other("bad request head"));
        }
        if head.is_empty() && byte[0] == 0x16 {
            // A TLS ClientHello: this server is plain HTTP, so hang up at once.
            return Err(std::io::Error::other("TLS on a plain HTTP port"));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(path)) => Ok(path.to_owned()),
        _ => Err(std::io::Error::other("not a GET")),
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    headers: &[String],
    body: &[u8],
) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

fn redirect(stream: &mut TcpStream, location: &str) -> std::io::Result<()> {
    respond(
        stream,
        "302 Found",
        &[format!("Location: {location}"), "Content-Length: 0".into()],
        b"",
    )
}

fn handle(mut stream: TcpStream, port: u16, hits: &AtomicUsize) -> std::io::Result<()> {
    let path = read_request_path(&mut stream)?;
    hits.fetch_add(1, Ordering::SeqCst);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["files", _name] => {
            let b = body(OK_LEN);
            respond(
                &mut stream,
                "200 OK",
                &[format!("Content-Length: {}", b.len())],
                &b,
            )
        }
        ["missing.onnx"] => respond(
            &mut stream,
            "404 Not Found",
            &["Content-Length: 9".into()],
            b"not found",
        ),
        ["big-cl.onnx"] => {
            let b = body(BIG_LEN);
            respond(
                &mut stream,
                "200 OK",
                &[format!("Content-Length: {}", b.len())],
                &b,
            )
        }
        ["big-nocl.onnx"] => respond(&mut stream, "200 OK", &[], &body(BIG_LEN)),
        ["big-chunked.onnx"] => {
            respond(
                &mut stream,
                "200 OK",
                &["Transfer-Encoding: chunked".into()],
                b"",
            )?;
            for chunk in body(BIG_LEN).chunks(10_000) {
                stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
                stream.write_all(chunk)?;
                stream.write_all(b"\r\n")?;
            }
            stream.write_all(b"0\r\n\r\n")
        }
        ["slow.onnx"] => {
            // 100 bytes, one every 100 ms: 10 s in all, far past the tests' 1 s limit.
            respond(&mut stream, "200 OK", &["Content-Length: 100".into()], b"")?;
            for _ in 0..100 {
                stream.write_all(b"x")?;
                stream.flush()?;
                thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        }
        ["hang.onnx"] => {
            thread::sleep(Duration::from_secs(3));
            Ok(())
        }
        ["drop.onnx"] => {
            // Promises 1000 bytes, sends 100, closes.
            respond(
                &mut stream,
                "200 OK",
                &["Content-Length: 1000".into()],
                &body(100),
            )
        }
        ["drop-chunked.onnx"] => {
            // One whole chunk, then the connection closes before the next chunk.
            respond(
                &mut stream,
                "200 OK",
                &["Transfer-Encoding: chunked".into()],
                b"",
            )?;
            stream.write_all(b"64\r\n")?;
            stream.write_all(&body(100))?;
            stream.write_all(b"\r\n")
        }
        ["redirect", n, name] => {
            let n: u32 = n.parse().map_err(std::io::Error::other)?;
            if n == 0 {
                redirect(&mut stream, &format!("/files/{name}"))
            } else {
                redirect(&mut stream, &format!("/redirect/{}/{name}", n - 1))
            }
        }
        ["to-localhost", name] => redirect(
            &mut stream,
            &format!("http://localhost:{port}/files/{name}"),
        ),
        ["to-ftp", name] => redirect(&mut stream, &format!("ftp://127.0.0.1:{port}/{name}")),
        _ => respond(
            &mut stream,
            "404 Not Found",
            &["Content-Length: 0".into()],
            b"",
        ),
    }
}

// ---------------------------------------------------------------- helpers

struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pear-dl-{}-{}-{label}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("read model folder")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

fn limits() -> DownloadLimits {
    DownloadLimits {
        max_bytes: LIMIT,
        timeout: Duration::from_secs(1),
        allow_hosts: None,
        allow_private: true, // the test server is on loopback
    }
}

fn accept_all(_: &Path) -> Result<(), String> {
    Ok(())
}

/// Runs a download that must fail, and checks the folder holds exactly what it held before.
fn expect_failure(url: &str, limits: &DownloadLimits) -> DownloadError {
    let dir = TempDir::new("fail");
    std::fs::write(dir.path().join("existing.onnx"), b"old").expect("seed file");
    let before = entries(dir.path());
    let err = download_model(url, dir.path(), limits, &accept_all).expect_err("download must fail");
    assert_eq!(entries(dir.path()), before, "folder changed after {err:?}");
    assert_eq!(
        std::fs::read(dir.path().join("existing.onnx")).expect("read"),
        b"old"
    );
    err
}

// ---------------------------------------------------------------- success

#[test]
fn success_saves_under_url_name_after_validate() {
    let server = Server::start();
    let dir = TempDir::new("ok");
    let seen: Mutex<Vec<(PathBuf, Vec<u8>)>> = Mutex::new(Vec::new());
    let validate = |p: &Path| -> Result<(), String> {
        let data = std::fs::read(p).map_err(|e| e.to_string())?;
        seen.lock().expect("lock").push((p.to_path_buf(), data));
        Ok(())
    };
    let name = download_model(
        &server.url("/files/pear%20v2.onnx?token=1"),
        dir.path(),
        &limits(),
        &validate,
    )
    .expect("download");
    assert_eq!(name, "pear v2.onnx");
    assert_eq!(
        std::fs::read(dir.path().join(&name)).expect("saved file"),
        body(OK_LEN)
    );
    assert_eq!(
        entries(dir.path()),
        BTreeSet::from([name.clone()]),
        "no temp file left"
    );

    let seen = seen.into_inner().expect("lock");
    assert_eq!(seen.len(), 1, "validate called once");
    let (temp, data) = &seen[0];
    assert_eq!(data, &body(OK_LEN), "validate sees the complete file");
    let canonical = dir.path().canonicalize().expect("canonical");
    assert_eq!(
        temp.parent(),
        Some(canonical.as_path()),
        "temp file is in the model folder"
    );
    let temp_name = temp
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        temp_name.starts_with('.') && !temp_name.ends_with(".onnx"),
        "{temp_name}"
    );
}

#[test]
fn follows_up_to_three_redirects() {
    let server = Server::start();
    let dir = TempDir::new("redirect-ok");
    // /redirect/2 -> /redirect/1 -> /redirect/0 -> /files: three hops.
    let name = download_model(
        &server.url("/redirect/2/r.onnx"),
        dir.path(),
        &limits(),
        &accept_all,
    )
    .expect("three hops are allowed");
    assert_eq!(name, "r.onnx");
    assert_eq!(
        std::fs::read(dir.path().join("r.onnx")).expect("saved"),
        body(OK_LEN)
    );
    assert_eq!(entries(dir.path()), BTreeSet::from([name]));
}

#[test]
fn explicitly_allowed_host_may_be_private() {
    let server = Server::start();
    let dir = TempDir::new("allow-host");
    let limits = DownloadLimits {
        allow_hosts: Some(vec!["127.0.0.1".into()]),
        allow_private: false,
        ..limits()
    };
    let name = download_model(
        &server.url("/files/a.onnx"),
        dir.path(),
        &limits,
        &accept_all,
    )
    .expect("127.0.0.1 is explicitly allowed");
    assert_eq!(name, "a.onnx");
}

// ---------------------------------------------------------------- HTTP failures

#[test]
fn not_found() {
    let server = Server::start();
    let err = expect_failure(&server.url("/missing.onnx"), &limits());
    assert!(matches!(err, DownloadError::Http(404)), "{err:?}");
    assert_eq!(err.error_code(), ErrorCode::ResourceNotFound);
}

#[test]
fn too_large_by_content_length() {
    let server = Server::start();
    let err = expect_failure(&server.url("/big-cl.onnx"), &limits());
    assert!(
        matches!(err, DownloadError::TooLarge { limit: LIMIT }),
        "{err:?}"
    );
    assert_eq!(err.error_code(), ErrorCode::ResourceNotFound);
}

#[test]
fn too_large_without_content_length() {
    let server = Server::start();
    let err = expect_failure(&server.url("/big-nocl.onnx"), &limits());
    assert!(
        matches!(err, DownloadError::TooLarge { limit: LIMIT }),
        "{err:?}"
    );
}

#[test]
fn too_large_chunked() {
    let server = Server::start();
    let err = expect_failure(&server.url("/big-chunked.onnx"), &limits());
    assert!(
        matches!(err, DownloadError::TooLarge { limit: LIMIT }),
        "{err:?}"
    );
}

#[test]
fn slow_body_times_out() {
    let server = Server::start();
    let started = Instant::now();
    let err = expect_failure(&server.url("/slow.onnx"), &limits());
    assert!(matches!(err, DownloadError::Timeout), "{err:?}");
    assert_eq!(err.error_code(), ErrorCode::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn silent_server_times_out() {
    let server = Server::start();
    let started = Instant::now();
    let err = expect_failure(&server.url("/hang.onnx"), &limits());
    assert!(matches!(err, DownloadError::Timeout), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn connection_dropped_mid_body() {
    let server = Server::start();
    let err = expect_failure(&server.url("/drop.onnx"), &limits());
    assert!(matches!(err, DownloadError::Interrupted(_)), "{err:?}");
    assert_eq!(err.error_code(), ErrorCode::ResourceNotFound);
}

#[test]
fn chunked_connection_dropped_between_chunks() {
    let server = Server::start();
    let err = expect_failure(&server.url("/drop-chunked.onnx"), &limits());
    assert!(matches!(err, DownloadError::Interrupted(_)), "{err:?}");
}

#[test]
fn nothing_listening() {
    // Bind then drop, so the port is (almost certainly) closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let err = expect_failure(&format!("http://127.0.0.1:{port}/a.onnx"), &limits());
    assert!(matches!(err, DownloadError::Connect(_)), "{err:?}");
}

#[test]
fn four_redirects_are_too_many() {
    let server = Server::start();
    let err = expect_failure(&server.url("/redirect/3/r.onnx"), &limits());
    assert!(matches!(err, DownloadError::Connect(_)), "{err:?}");
}

#[test]
fn redirect_to_ftp_is_refused() {
    let server = Server::start();
    let err = expect_failure(&server.url("/to-ftp/r.onnx"), &limits());
    assert!(matches!(err, DownloadError::BadUrl(_)), "{err:?}");
}

// ---------------------------------------------------------------- validation

#[test]
fn validate_rejecting_leaves_nothing() {
    let server = Server::start();
    let dir = TempDir::new("invalid");
    let before = entries(dir.path());
    let called = AtomicUsize::new(0);
    let validate = |p: &Path| -> Result<(), String> {
        called.fetch_add(1, Ordering::SeqCst);
        assert!(p.exists(), "the temp file exists while validating");
        Err("not a model".into())
    };
    let err = download_model(
        &server.url("/files/bad.onnx"),
        dir.path(),
        &limits(),
        &validate,
    )
    .expect_err("validate refused");
    assert!(
        matches!(&err, DownloadError::Invalid(m) if m == "not a model"),
        "{err:?}"
    );
    assert_eq!(err.error_code(), ErrorCode::ResourceNotFound);
    assert_eq!(called.load(Ordering::SeqCst), 1);
    assert_eq!(entries(dir.path()), before);
}

#[test]
fn validate_panicking_leaves_nothing() {
    let server = Server::start();
    let dir = TempDir::new("panic");
    let before = entries(dir.path());
    let url = server.url("/files/p.onnx");
    let result = std::panic::catch_unwind(|| {
        download_model(
            &url,
            dir.path(),
            &limits(),
            &|_: &Path| -> Result<(), String> { panic!("validator blew up") },
        )
    });
    assert!(result.is_err());
    assert_eq!(entries(dir.path()), before);
}

// ---------------------------------------------------------------- names

#[test]
fn bad_names_are_refused_before_any_request() {
    let server = Server::start();
    for (path, want_code) in [
        ("/files/model.txt", ErrorCode::InvalidMessage),
        ("/files/model.onnx.exe", ErrorCode::InvalidMessage),
        ("/files/%2e%2e%2fx.onnx", ErrorCode::InvalidMessage),
        ("/files/a%2Fb.onnx", ErrorCode::InvalidMessage),
        ("/files/..%2F..%2Fetc%2Fx.onnx", ErrorCode::InvalidMessage),
        ("/files/a%00.onnx", ErrorCode::InvalidMessage),
        ("/files/.hidden.onnx", ErrorCode::InvalidMessage),
        ("/files/", ErrorCode::InvalidMessage),
    ] {
        let err = expect_failure(&server.url(path), &limits());
        assert!(
            matches!(err, DownloadError::BadUrl(_) | DownloadError::NotOnnx(_)),
            "{path}: {err:?}"
        );
        assert_eq!(err.error_code(), want_code, "{path}");
    }
    assert!(matches!(
        target_name(&server.url("/files/model.txt")),
        Err(DownloadError::NotOnnx(_))
    ));
    assert_eq!(server.hits(), 0, "no request was made for a refused name");
}

#[test]
fn non_http_schemes_are_refused() {
    for url in [
        "ftp://127.0.0.1/a.onnx",
        "file:///tmp/a.onnx",
        "data:,x.onnx",
        "not a url",
    ] {
        let err = expect_failure(url, &limits());
        assert!(matches!(err, DownloadError::BadUrl(_)), "{url}: {err:?}");
        assert_eq!(err.error_code(), ErrorCode::InvalidMessage);
    }
}

#[test]
fn existing_file_is_not_overwritten() {
    let server = Server::start();
    let err = expect_failure(&server.url("/files/existing.onnx"), &limits());
    assert!(matches!(err, DownloadError::AlreadyExists(_)), "{err:?}");
    assert_eq!(err.error_code(), ErrorCode::InvalidMessage);
    assert_eq!(server.hits(), 0, "refused before downloading");
}

#[test]
fn file_appearing_during_download_is_not_overwritten() {
    let server = Server::start();
    let dir = TempDir::new("race");
    let target = dir.path().join("late.onnx");
    // Another writer creates the name while we validate: the final link must not replace it.
    let validate = |_: &Path| -> Result<(), String> {
        std::fs::write(&target, b"theirs").map_err(|e| e.to_string())
    };
    let err = download_model(
        &server.url("/files/late.onnx"),
        dir.path(),
        &limits(),
        &validate,
    )
    .expect_err("name taken meanwhile");
    assert!(matches!(err, DownloadError::AlreadyExists(_)), "{err:?}");
    assert_eq!(std::fs::read(&target).expect("read"), b"theirs");
    assert_eq!(
        entries(dir.path()),
        BTreeSet::from(["late.onnx".to_owned()])
    );
}

#[test]
fn symlink_at_target_name_is_not_followed() {
    let server = Server::start();
    let outside = TempDir::new("outside");
    let dir = TempDir::new("symlink");
    let victim = outside.path().join("victim.onnx");
    std::os::unix::fs::symlink(&victim, dir.path().join("s.onnx")).expect("symlink");
    let before = entries(dir.path());
    let err = download_model(
        &server.url("/files/s.onnx"),
        dir.path(),
        &limits(),
        &accept_all,
    )
    .expect_err("dangling symlink occupies the name");
    assert!(matches!(err, DownloadError::AlreadyExists(_)), "{err:?}");
    assert!(!victim.exists(), "nothing written through the symlink");
    assert_eq!(entries(dir.path()), before);
}

// ---------------------------------------------------------------- host rules

fn strict() -> DownloadLimits {
    DownloadLimits {
        allow_private: false,
        ..limits()
    }
}

#[test]
fn private_addresses_are_refused() {
    let server = Server::start();
    let port = server.addr.port();
    for url in [
        format!("http://127.0.0.1:{port}/files/a.onnx"),
        format!("http://localhost:{port}/files/a.onnx"),
        format!("http://[::1]:{port}/files/a.onnx"),
        format!("http://[::ffff:127.0.0.1]:{port}/files/a.onnx"),
        format!("http://0.0.0.0:{port}/files/a.onnx"),
        format!("http://2130706433:{port}/files/a.onnx"), // 127.0.0.1 as one number
    ] {
        let err = expect_failure(&url, &strict());
        assert!(
            matches!(err, DownloadError::HostRefused(_)),
            "{url}: {err:?}"
        );
        assert_eq!(err.error_code(), ErrorCode::InvalidMessage);
    }
    assert_eq!(server.hits(), 0, "no connection reached the server");
}

#[test]
fn host_not_in_allow_list_is_refused() {
    let server = Server::start();
    let limits = DownloadLimits {
        allow_hosts: Some(vec!["models.example.com".into()]),
        allow_private: true,
        ..limits()
    };
    let err = expect_failure(&server.url("/files/a.onnx"), &limits);
    assert!(matches!(err, DownloadError::HostRefused(_)), "{err:?}");
    assert_eq!(server.hits(), 0);
}

#[test]
fn redirect_hops_are_checked_against_the_allow_list() {
    let server = Server::start();
    let limits = DownloadLimits {
        allow_hosts: Some(vec!["127.0.0.1".into()]),
        allow_private: false,
        ..limits()
    };
    let err = expect_failure(&server.url("/to-localhost/a.onnx"), &limits);
    assert!(matches!(err, DownloadError::HostRefused(_)), "{err:?}");
    assert_eq!(server.hits(), 1, "only the first hop reached the server");
}

#[test]
fn https_handshake_failure_is_an_error_not_a_panic() {
    // The test server speaks plain HTTP, so the TLS handshake fails: this runs the
    // rustls set-up path and checks it ends in an ordinary error.
    let server = Server::start();
    let url = format!("https://{}/files/a.onnx", server.addr);
    let err = expect_failure(&url, &limits());
    assert!(matches!(err, DownloadError::Connect(_)), "{err:?}");
}
