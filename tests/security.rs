//! Security pass over real TCP: hostile names on classify (0x01), change model
//! (0x26), delete model (0x28) and download (0x20), and the request limits
//! (files per request, message size, JSON depth).
//!
//! What "nothing outside the folders was touched" means here:
//! - a snapshot of every file outside `models/` and `images/` (name, size,
//!   content hash) is identical before and after;
//! - a secret image outside the image folder is never classified (a successful
//!   classification would prove it was read), and its marker bytes never
//!   appear in any reply;
//! - a FIFO outside the folders, reachable only through symlinks, never gets a
//!   reader: opening it for reading would block a worker, and our
//!   non-blocking open for writing succeeds exactly when a reader exists.

mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{first_code, Client, TestServer};
use serde_json::{json, Value};

/// Marker bytes appended to the secret (after the JPEG end marker, so the image
/// still decodes).
const MARKER: &str = "TOP-SECRET-7f3a9c";

struct Fixture {
    server: TestServer,
    secret: PathBuf,
    outside_model: PathBuf,
    fifo: PathBuf,
    outside_dir: PathBuf,
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

/// True when some process has the FIFO open for reading (or is blocked opening it).
fn fifo_has_reader(path: &Path) -> bool {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; the fd is closed right away.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_NONBLOCK) };
    if fd >= 0 {
        unsafe { libc::close(fd) };
        true
    } else {
        false
    }
}

fn setup() -> Fixture {
    let server = TestServer::start(&[]);
    let root = server.dir.path().to_owned();
    let images = server.images_dir();
    let models = server.models_dir();

    // A real, decodable pear image outside the image folder, with a marker.
    let secret = root.join("secret.jpg");
    let mut bytes = std::fs::read(images.join("normal_01.jpg")).unwrap();
    bytes.extend_from_slice(MARKER.as_bytes());
    std::fs::write(&secret, &bytes).unwrap();
    // A loadable model outside the model folder.
    let outside_model = root.join("outside.onnx");
    std::fs::copy(models.join("pear_classifier.onnx"), &outside_model).unwrap();
    // A FIFO outside both folders.
    let fifo = root.join("trap.jpg");
    mkfifo(&fifo);
    // A folder outside, with a copy of each.
    let outside_dir = root.join("outside");
    std::fs::create_dir(&outside_dir).unwrap();
    std::fs::copy(&secret, outside_dir.join("secret.jpg")).unwrap();
    std::fs::copy(&outside_model, outside_dir.join("victim.onnx")).unwrap();

    // Symlinks planted inside the folders that lead out.
    let link = |target: &Path, at: PathBuf| std::os::unix::fs::symlink(target, at).unwrap();
    link(&secret, images.join("escape.jpg"));
    link(&fifo, images.join("fifo.jpg"));
    link(&outside_dir, images.join("linkdir"));
    link(&outside_model, models.join("escape.onnx"));
    link(&fifo, models.join("fifo.onnx"));
    link(&outside_dir, models.join("linkdir"));
    link(Path::new("../outside.onnx"), models.join("relative.onnx"));
    Fixture {
        server,
        secret,
        outside_model,
        fifo,
        outside_dir,
    }
}

/// Every regular file under `root` outside `models/`, `images/` and `logs/`,
/// with its size and a content hash.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, u64)> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, (u64, u64)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_owned();
            if dir == root
                && ["models", "images", "logs", "stderr.log"]
                    .iter()
                    .any(|s| rel == Path::new(s))
            {
                continue;
            }
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(&p, root, out);
            } else if ft.is_file() {
                let data = std::fs::read(&p).unwrap();
                let hash = data.iter().fold(0xcbf29ce484222325u64, |h, &b| {
                    (h ^ b as u64).wrapping_mul(0x100000001b3)
                });
                out.insert(rel, (data.len() as u64, hash));
            } else {
                out.insert(rel, (u64::MAX, 0));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn request(c: &mut Client, cmd: u32, name: &str) -> Value {
    let body = json!({"cmd": cmd, "request_data": [name]}).to_string();
    let v = c.request(&body);
    let text = v.to_string();
    assert!(!text.contains(MARKER), "secret content leaked: {text}");
    v
}

/// Refused as a whole (code 1), or answered per item with a failure code in `codes`.
fn assert_refused_or(v: &Value, codes: &[i64], what: &str) {
    if v["cmd"].is_null() {
        assert_eq!(first_code(v), 1, "{what}: {v}");
    } else {
        let item = &v["response_data"][0];
        let code = item["error_code"].as_i64().unwrap();
        assert!(codes.contains(&code), "{what}: {v}");
        assert_ne!(item["result"], json!(2), "{what}: {v}");
    }
}

/// Names that must be refused lexically (code 1 for the whole request): they
/// can never name a file (NUL, empty, too long) or have no allowed extension.
fn lexical_refusals(ext: &str) -> Vec<String> {
    vec![
        format!("a\u{0}{ext}"),
        format!("\u{0}/../x{ext}"),
        format!("{}{ext}", "a".repeat(10_000)),
        format!("{}{ext}", "a/".repeat(5_000)),
        "..".to_string(),
        String::new(),
    ]
}

/// Names that lead outside the folder, by `..` or by an absolute path (the
/// original's `os.path.join` rule). Until SPEC §1 adopted that rule these were
/// refused lexically (code 1); now they are resolved on a worker and answered
/// "not found" (code 2) for that file, with nothing outside read.
fn outside_names(ext: &str, abs_target: &Path) -> Vec<String> {
    vec![
        format!("../secret{ext}"),
        format!("./../secret{ext}"),
        format!("a/../../secret{ext}"),
        format!("linkdir/../../secret{ext}"),
        format!("linkdir/../secret{ext}"),
        format!("../outside/secret{ext}"),
        format!("../outside/victim{ext}"),
        format!("../trap{ext}"),
        format!("{}", abs_target.display()),
        format!("/etc/passwd{ext}"),
        format!("//etc/x{ext}"),
    ]
}

/// Names that are not traversal lexically but must not reach anything outside:
/// unicode lookalikes, backslashes, percent-encodings (never decoded in names)
/// and symlinks out. Each is "not found" (code 2) or refused (code 1).
fn sneaky_names(ext: &str) -> Vec<String> {
    vec![
        format!("escape{ext}"),
        format!("fifo{ext}"),
        format!("linkdir/secret{ext}"),
        format!("linkdir/victim{ext}"),
        format!("\u{ff0e}\u{ff0e}/secret{ext}"),
        format!("\u{ff0e}\u{ff0e}\u{ff0f}secret{ext}"),
        format!("..\u{2215}secret{ext}"),
        format!("..\u{2044}secret{ext}"),
        format!("..\\secret{ext}"),
        format!("%2e%2e/secret{ext}"),
        format!("%2e%2e%2fsecret{ext}"),
        format!("..%2fsecret{ext}"),
        format!("\u{2024}\u{2024}/secret{ext}"),
        format!("...{ext}"),
        format!("./secret{ext}"),
    ]
}

#[test]
fn hostile_names_on_classify_read_nothing_outside() {
    let f = setup();
    let before = snapshot(f.server.dir.path());
    let mut c = f.server.client();
    for name in lexical_refusals(".jpg") {
        let v = request(&mut c, 0x01, &name);
        assert_eq!(v["cmd"], json!(null), "{name:.80}: {v}");
        assert_eq!(first_code(&v), 1, "{name:.80}: {v}");
    }
    let fifo_abs = f.fifo.display().to_string();
    for name in outside_names(".jpg", &f.secret)
        .into_iter()
        .chain([fifo_abs])
    {
        let v = request(&mut c, 0x01, &name);
        assert_eq!(v["cmd"], json!(2), "{name}: {v}");
        assert_eq!(first_code(&v), 2, "{name}: {v}");
        assert_eq!(v["response_data"][0]["result"], json!(null), "{name}: {v}");
    }
    for name in sneaky_names(".jpg") {
        let v = request(&mut c, 0x01, &name);
        assert_refused_or(&v, &[2], &name);
    }
    // The same names mixed into one request with good ones: the whole request
    // is refused if any is lexically bad; otherwise only the bad items fail.
    let v = c.request(r#"{"cmd": 1, "request_data": ["normal_01.jpg", "a\u0000.jpg"]}"#);
    assert_eq!(v["cmd"], json!(null), "{v}");
    assert_eq!(first_code(&v), 1, "{v}");
    let v = c.request(r#"{"cmd": 1, "request_data": ["normal_01.jpg", "../secret.jpg"]}"#);
    let items = v["response_data"].as_array().unwrap();
    assert_eq!(items[0]["error_code"], json!(0), "{v}");
    assert_eq!(items[1]["error_code"], json!(2), "{v}");
    let v = c.request(
        r#"{"cmd": 1, "request_data": ["normal_01.jpg", "escape.jpg", "linkdir/secret.jpg"]}"#,
    );
    let items = v["response_data"].as_array().unwrap();
    assert_eq!(items[0]["error_code"], json!(0), "{v}");
    assert_eq!(items[1]["error_code"], json!(2), "{v}");
    assert_eq!(items[2]["error_code"], json!(2), "{v}");
    assert!(!v.to_string().contains(MARKER));

    assert!(!fifo_has_reader(&f.fifo), "the server opened the FIFO");
    assert_eq!(snapshot(f.server.dir.path()), before);
    // Still serving.
    assert_eq!(
        c.request(r#"{"cmd": 0x22, "request_data": null}"#)["cmd"],
        json!(0x23)
    );
}

#[test]
fn hostile_names_on_change_and_delete_touch_nothing_outside() {
    let f = setup();
    let before = snapshot(f.server.dir.path());
    let models_before = common_entries(&f.server.models_dir());
    let mut c = f.server.client();
    for cmd in [0x26u32, 0x28] {
        for name in lexical_refusals(".onnx") {
            let v = request(&mut c, cmd, &name);
            assert_eq!(v["cmd"], json!(null), "{cmd:#x} {name:.80}: {v}");
            assert_eq!(first_code(&v), 1, "{cmd:#x} {name:.80}: {v}");
        }
        for name in outside_names(".onnx", &f.outside_model)
            .into_iter()
            .chain(["../outside.onnx".to_string()])
        {
            let v = request(&mut c, cmd, &name);
            assert_eq!(v["cmd"], json!(cmd + 1), "{cmd:#x} {name}: {v}");
            assert_eq!(v["response_data"][0]["result"], json!(1), "{name}: {v}");
            assert_eq!(first_code(&v), 2, "{cmd:#x} {name}: {v}");
        }
        for name in sneaky_names(".onnx")
            .into_iter()
            .chain(["relative.onnx".to_string()])
        {
            let v = request(&mut c, cmd, &name);
            assert_refused_or(&v, &[2], &format!("{cmd:#x} {name}"));
        }
        // Not an .onnx name: refused before anything is looked up.
        let v = request(&mut c, cmd, "linkdir/secret.jpg");
        assert_eq!(first_code(&v), 1, "{v}");
    }
    // The model in use did not change, the outside files are all there, and
    // the symlinks inside the model folder were not removed either (0x28 of a
    // name that resolves outside is "not found").
    let v = c.request(r#"{"cmd": 0x22, "request_data": null}"#);
    assert_eq!(
        v["response_data"][0]["file_name"],
        json!("pear_classifier.onnx")
    );
    assert!(f.outside_model.exists());
    assert!(f.outside_dir.join("victim.onnx").exists());
    assert_eq!(common_entries(&f.server.models_dir()), models_before);
    assert!(!fifo_has_reader(&f.fifo), "the server opened the FIFO");
    assert_eq!(snapshot(f.server.dir.path()), before);
    // A model reachable only through a symlink out of the folder is never listed.
    let v = c.request(r#"{"cmd": 0x24, "request_data": null}"#);
    let listed = v.to_string();
    assert!(!listed.contains("victim"), "{listed}");
}

fn common_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// An HTTP server that answers every GET with a valid model and counts requests.
struct ModelHttp {
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ModelHttp {
    fn start(model: Vec<u8>) -> ModelHttp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (Arc::clone(&hits), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        h.fetch_add(1, Ordering::SeqCst);
                        let _ = serve_model(stream, &model);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        ModelHttp {
            port,
            hits,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ModelHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_model(mut s: TcpStream, model: &[u8]) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut b = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        let n = s.read(&mut b)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&b[..n]);
    }
    write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        model.len()
    )?;
    s.write_all(model)
}

#[test]
fn hostile_download_urls_write_only_inside_the_model_folder() {
    let server = TestServer::start(&[]);
    let model = std::fs::read(server.models_dir().join("pear_classifier.onnx")).unwrap();
    let http = ModelHttp::start(model);
    let before = snapshot(server.dir.path());
    let base = format!("http://127.0.0.1:{}", http.port);
    let mut c = server.client();

    // Refused before any request is made (code 1 for the whole request).
    let refused = [
        "/%2e%2e%2fescape.onnx".to_string(),
        "/..%2fescape.onnx".to_string(),
        "/a%2fb.onnx".to_string(),
        "/%2Fetc%2Fescape.onnx".to_string(),
        "/x%00.onnx".to_string(),
        "/%00".to_string(),
        "/x%0a.onnx".to_string(),
        "/%2e%2e".to_string(),
        "/.hidden.onnx".to_string(),
        "/%2ehidden.onnx".to_string(),
        "/.onnx".to_string(),
        "/x.onnx%2f".to_string(),
        "/x%ZZ.onnx".to_string(),
        "/%ff%fe.onnx".to_string(),
        format!("/{}.onnx", "a".repeat(300)),
        format!("/{}.onnx", "a".repeat(10_000)),
        "/x.jpg".to_string(),
        // Leading dots are reserved for temp files, lookalike separators or not.
        "/..%E2%88%95div.onnx".to_string(),
        "/..%5cback.onnx".to_string(),
        "/".to_string(),
    ];
    for path in &refused {
        let url = format!("{base}{path}");
        let v = request(&mut c, 0x20, &url);
        assert_eq!(v["cmd"], json!(null), "{path:.80}: {v}");
        assert_eq!(first_code(&v), 1, "{path:.80}: {v}");
    }
    // Non-URLs and other schemes.
    for url in [
        "file:///etc/passwd.onnx".to_string(),
        "ftp://127.0.0.1/x.onnx".to_string(),
        "/etc/x.onnx".to_string(),
        "../x.onnx".to_string(),
        format!("http://127.0.0.1:{}\u{0}/x.onnx", http.port),
        "http:///x.onnx".to_string(),
    ] {
        let v = request(&mut c, 0x20, &url);
        assert_refused_or(&v, &[1, 2], &url);
    }
    assert_eq!(
        http.hits.load(Ordering::SeqCst),
        0,
        "a refused URL was fetched"
    );

    // Accepted, but the saved name is one plain component inside the model
    // folder (the URL parser resolves dot segments; percent-encoded lookalikes
    // stay literal characters). Query and fragment are ignored.
    let accepted = [
        ("/%2e%2e/dots.onnx", "dots.onnx"),
        ("/a/../../up.onnx", "up.onnx"),
        ("/q.onnx?name=../../escape.onnx", "q.onnx"),
        ("/frag.onnx#/../../escape.onnx", "frag.onnx"),
        ("/%EF%BC%8E%EF%BC%8E%EF%BC%8Fwide.onnx", "．．／wide.onnx"),
        ("/a..%E2%88%95div.onnx", "a..∕div.onnx"),
        ("/a..%5cback.onnx", "a..\\back.onnx"),
    ];
    for (path, saved) in accepted {
        let url = format!("{base}{path}");
        let v = request(&mut c, 0x20, &url);
        assert_eq!(v["cmd"], json!(0x21), "{path}: {v}");
        let item = &v["response_data"][0];
        assert_eq!(item["result"], json!(2), "{path}: {v}");
        assert_eq!(item["file_name"], json!(saved), "{path}: {v}");
        assert!(server.models_dir().join(saved).is_file(), "{saved}");
    }
    // Everything that appeared is directly inside the model folder.
    assert_eq!(snapshot(server.dir.path()), before);
    // A second download of an existing name does not overwrite it.
    let v = request(&mut c, 0x20, &format!("{base}/dots.onnx"));
    assert_eq!(v["response_data"][0]["result"], json!(1), "{v}");
    // The default policy (no private addresses) refuses loopback.
    drop(c);
    let strict = TestServer::start(&[("model.download_allow_private", "false")]);
    let mut c = strict.client();
    let hits = http.hits.load(Ordering::SeqCst);
    for host in [
        "127.0.0.1",
        "localhost",
        "[::1]",
        "127.1",
        "0x7f000001",
        "2130706433",
    ] {
        let url = format!("http://{host}:{}/private.onnx", http.port);
        let v = request(&mut c, 0x20, &url);
        assert_refused_or(&v, &[1, 2], &url);
    }
    assert_eq!(
        http.hits.load(Ordering::SeqCst),
        hits,
        "a private address was fetched"
    );
    assert!(!strict.models_dir().join("private.onnx").exists());
}

// ---------------------------------------------------------------------------
// Request limits.
// ---------------------------------------------------------------------------

#[test]
fn files_per_request_limit() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    let names = |n: usize| vec!["\"missing.jpg\""; n].join(",");
    // At the default limit (256): answered, one item per file.
    let v = c.request(&format!(
        r#"{{"cmd": 1, "request_data": [{}]}}"#,
        names(256)
    ));
    assert_eq!(v["cmd"], json!(2), "{v:.200}");
    assert_eq!(v["response_data"].as_array().unwrap().len(), 256);
    // One over: the whole request is refused with code 1.
    let v = c.request(&format!(
        r#"{{"cmd": 1, "request_data": [{}], "id": 9}}"#,
        names(257)
    ));
    assert_eq!(v["cmd"], json!(null));
    assert_eq!(first_code(&v), 1, "{v}");
    assert_eq!(v["id"], json!(9));
    // Far over (100,000 names in under 1 MiB): the same, and the connection lives on.
    let v = c.request(&format!(
        r#"{{"cmd": 1, "request_data": [{}]}}"#,
        vec!["\"a.jpg\""; 100_000].join(",")
    ));
    assert_eq!(first_code(&v), 1);
    assert_eq!(
        c.request(r#"{"cmd": 0x22, "request_data": null}"#)["cmd"],
        json!(0x23)
    );
}

/// Sends what the server takes; it may close (and reset) the connection
/// before everything is sent, which is what these tests provoke.
fn send_lossy(c: &mut Client, bytes: &[u8]) {
    c.stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = c.stream.write_all(bytes);
}

#[test]
fn message_size_limit_all_framings() {
    let server = TestServer::start(&[]);
    let limit = 1024 * 1024; // the shipped default
    let padded = |total: usize| {
        let head = r#"{"cmd": 0x22, "request_data": null, "pad": ""#;
        let tail = r#""}"#;
        format!(
            "{head}{}{tail}",
            "x".repeat(total - head.len() - tail.len())
        )
    };
    // Exactly at the limit: served.
    let mut c = server.client();
    let v = c.request(&padded(limit));
    assert_eq!(v["cmd"], json!(0x23));
    let mut c = server.client();
    c.send(&common::binary_frame(&padded(limit)));
    assert_eq!(c.read_binary_frame()["cmd"], json!(0x23));

    // One byte over: code 1, then the connection is closed.
    let mut c = server.client();
    send_lossy(&mut c, padded(limit + 1).as_bytes());
    assert_eq!(first_code(&c.read_json_line()), 1);
    assert!(c.is_closed_by_server(Duration::from_secs(5)));
    let mut c = server.client();
    send_lossy(&mut c, &common::decimal_frame(&padded(limit + 1)));
    assert_eq!(first_code(&c.read_decimal_frame()), 1);
    assert!(c.is_closed_by_server(Duration::from_secs(5)));

    // A declared length far over the limit is refused from the header alone:
    // the server does not wait for (or buffer) the body.
    let mut c = server.client();
    c.send(&0x00ff_ffffu32.to_be_bytes());
    assert_eq!(first_code(&c.read_binary_frame()), 1);
    assert!(c.is_closed_by_server(Duration::from_secs(5)));
    // (A first byte other than 0x00 is no length prefix at all: unknown framing.)
    let mut c = server.client();
    c.send(&u32::MAX.to_be_bytes());
    assert_eq!(first_code(&c.read_json_line()), 1);
    assert!(c.is_closed_by_server(Duration::from_secs(5)));
    let mut c = server.client();
    c.send(format!("{:<64}", "99999999999999999999999999").as_bytes());
    assert_eq!(first_code(&c.read_decimal_frame()), 1);
    assert!(c.is_closed_by_server(Duration::from_secs(5)));
    // An endless JSON string with no closing brace is cut at the limit too.
    let mut c = server.client();
    c.send(br#"{"cmd": 1, "x": ""#);
    let chunk = vec![b'y'; 64 * 1024];
    let mut sent = 0;
    c.stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    while sent <= limit + chunk.len() {
        if c.stream.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    assert_eq!(first_code(&c.read_json_line()), 1);
    assert!(c.is_closed_by_server(Duration::from_secs(5)));
    // Others are fine.
    let mut c = server.client();
    assert_eq!(
        c.request(r#"{"cmd": 0x22, "request_data": null}"#)["cmd"],
        json!(0x23)
    );
}

#[test]
fn json_depth_limit() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    let nested = |depth: usize| {
        // The top-level object is level 1; `x` adds depth - 1 arrays.
        format!(
            r#"{{"cmd": 0x22, "request_data": null, "id": 1, "x": {}{}}}"#,
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        )
    };
    let v = c.request(&nested(32));
    assert_eq!(v["cmd"], json!(0x23), "{v}");
    let v = c.request(&nested(33));
    assert_eq!(v["cmd"], json!(null));
    assert_eq!(first_code(&v), 1, "{v}");
    // Deep enough to blow a recursive parser's stack: refused, no crash.
    let v = c.request(&nested(400_000));
    assert_eq!(first_code(&v), 1);
    let deep_objects = format!(
        r#"{{"cmd": 0x22, "request_data": null, "x": {}1{}}}"#,
        r#"{"a":"#.repeat(100_000),
        "}".repeat(100_000)
    );
    let v = c.request(&deep_objects);
    assert_eq!(first_code(&v), 1);
    // Brackets inside strings do not count.
    let v = c.request(&format!(
        r#"{{"cmd": 0x22, "request_data": null, "x": "{}"}}"#,
        "[{".repeat(1000)
    ));
    assert_eq!(v["cmd"], json!(0x23), "{v}");
    // request_data nested too deep.
    let v = c.request(&format!(
        r#"{{"cmd": 1, "request_data": {}"a.jpg"{}}}"#,
        "[".repeat(40),
        "]".repeat(40)
    ));
    assert_eq!(first_code(&v), 1);
    assert_eq!(
        c.request(r#"{"cmd": 0x22, "request_data": null}"#)["cmd"],
        json!(0x23)
    );
}

// ---------------------------------------------------------------------------
// Log injection.
// ---------------------------------------------------------------------------

/// Client-supplied names and URLs must not be able to forge log lines: a
/// newline in them must not start a new line in the log. Only requests whose
/// names the server does log are sent (each one's text must reach the log, or
/// the case could not fail): a failed download (0x20) and a folder change
/// refused outside `model.allowed_roots` (0x30).
#[test]
fn newlines_in_requests_cannot_forge_log_lines() {
    let server = TestServer::start(&[]);
    let outside = tempfile::tempdir().unwrap();
    let forged = "FORGED-LOG-LINE";
    let dir = outside.path().join(format!("x\n{forged} dir"));
    std::fs::create_dir(&dir).unwrap();
    let mut c = server.client();
    let requests = [
        json!({"cmd": 0x20, "request_data": [format!("http://127.0.0.1:1/\n{forged} ERROR x.onnx")]}),
        json!({"cmd": 0x20, "request_data": [format!("http://127.0.0.1:1/a\r\n{forged} b.onnx")]}),
        json!({"cmd": 0x30, "request_data": [dir.to_str().unwrap()]}),
    ];
    for r in &requests {
        let v = c.request(&r.to_string());
        assert!(v["response_data"].is_array(), "{v}");
        assert_ne!(first_code(&v), 0, "{v}");
    }
    // Wait for each case's log line (escaped or not), then look for forged lines.
    let log = log_with_every_case(&server, forged, requests.len());
    for text in [log, server.stderr()] {
        for line in text.lines() {
            assert!(!line.starts_with(forged), "forged log line: {line:?}");
        }
    }
}

/// The same for names the server logs after a successful change or a failed
/// load (0x26, 0x28, 0x30 inside the roots).
#[test]
fn newlines_in_logged_model_and_folder_names_cannot_forge_log_lines() {
    let server = TestServer::start(&[]);
    let forged = "FORGED-LOG-LINE";
    let bad_model = format!("a\n{forged} b.onnx");
    let spare = format!("c\n{forged} d.onnx");
    std::fs::write(server.models_dir().join(&bad_model), b"not a model").unwrap();
    std::fs::copy(
        server.models_dir().join("pear_classifier.onnx"),
        server.models_dir().join(&spare),
    )
    .unwrap();
    let folder = server.dir.path().join(format!("y\n{forged} dir"));
    std::fs::create_dir(&folder).unwrap();
    let mut c = server.client();
    let requests = [
        json!({"cmd": 0x26, "request_data": [bad_model]}),
        json!({"cmd": 0x28, "request_data": [spare]}),
        json!({"cmd": 0x30, "request_data": [folder.to_str().unwrap()]}),
    ];
    for r in &requests {
        let v = c.request(&r.to_string());
        assert!(v["response_data"].is_array(), "{v}");
    }
    let log = log_with_every_case(&server, forged, requests.len());
    let forged_lines: Vec<&str> = log.lines().filter(|l| l.starts_with(forged)).collect();
    assert!(
        forged_lines.is_empty(),
        "forged log lines: {forged_lines:#?}"
    );
}

/// 0x20 of a complete download that is not a loadable model: refused (result 1,
/// code 2), nothing left in the model folder, the current model unchanged.
#[test]
fn complete_but_unloadable_download_is_refused_and_leaves_nothing() {
    let server = TestServer::start(&[]);
    let http = ModelHttp::start(b"this is not an onnx model, though complete".to_vec());
    let before = common_entries(&server.models_dir());
    let mut c = server.client();
    let v = c.request(
        &json!({"cmd": 0x20, "request_data": [format!("http://127.0.0.1:{}/junk.onnx", http.port)]})
            .to_string(),
    );
    assert_eq!(v["cmd"], json!(0x21), "{v}");
    assert_eq!(http.hits.load(Ordering::SeqCst), 1, "the file was fetched");
    let item = &v["response_data"][0];
    assert_eq!(item["result"], json!(1), "{v}");
    assert_eq!(item["error_code"], json!(2), "{v}");
    assert_eq!(common_entries(&server.models_dir()), before);
    let v = c.request(r#"{"cmd": 0x22, "request_data": null}"#);
    assert_eq!(
        v["response_data"][0]["file_name"],
        json!("pear_classifier.onnx")
    );
}

/// The server's log file once `needle` appears in it `cases` times (each case
/// reached the log, so a forged line could show), bounded by a generous deadline.
fn log_with_every_case(server: &TestServer, needle: &str, cases: usize) -> String {
    let log_file = server.dir.path().join("logs/server.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(&log_file).unwrap_or_default();
        if log.matches(needle).count() >= cases {
            return log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not every case reached the log (it could not fail):\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
