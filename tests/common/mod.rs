//! Test harness: starts the real `pear-server` binary on 127.0.0.1 with a
//! config written into a temp folder (copies of the shipped models and
//! samples, so tests may change them), and speaks the protocol over real TCP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the models and sample images come from: the repo's `models/` and
/// `samples/`, or `$PEAR_TEST_ASSETS/{models,samples}` when set.
pub fn assets() -> PathBuf {
    std::env::var_os("PEAR_TEST_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(repo)
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub stderr_path: PathBuf,
}

/// Config overrides as (dotted key, YAML value) pairs.
pub type Overrides<'a> = &'a [(&'a str, &'a str)];

impl TestServer {
    pub fn start(overrides: Overrides) -> TestServer {
        Self::try_start(overrides).expect("server should start")
    }

    pub fn try_start(overrides: Overrides) -> Result<TestServer, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let models = dir.path().join("models");
        let images = dir.path().join("images");
        std::fs::create_dir_all(&models).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&images).map_err(|e| e.to_string())?;
        for name in ["pear_classifier.onnx", "pear_detector.onnx"] {
            std::fs::copy(assets().join("models").join(name), models.join(name))
                .map_err(|e| format!("copy {name}: {e}"))?;
        }
        for entry in std::fs::read_dir(assets().join("samples")).map_err(|e| e.to_string())? {
            let entry = entry.map_err(|e| e.to_string())?;
            std::fs::copy(entry.path(), images.join(entry.file_name()))
                .map_err(|e| e.to_string())?;
        }
        let config_path = write_config(dir.path(), overrides);
        let stderr_path = dir.path().join("stderr.log");
        let (child, addr) = spawn_server(&config_path, &stderr_path, &[])?;
        Ok(TestServer {
            addr,
            child,
            dir,
            stderr_path,
        })
    }

    /// SIGTERM, then start the binary again on the same folder and config
    /// (a new port); `extra_env` is set for the new process.
    pub fn restart(&mut self, extra_env: &[(&str, &str)]) -> Result<(), String> {
        let status = self.terminate();
        if !status.success() {
            return Err(format!("server exited with {status:?}"));
        }
        let config_path = self.dir.path().join("server_config.yaml");
        let (child, addr) = spawn_server(&config_path, &self.stderr_path, extra_env)?;
        self.child = child;
        self.addr = addr;
        Ok(())
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("server_config.yaml")
    }

    pub fn models_dir(&self) -> PathBuf {
        self.dir.path().join("models")
    }

    pub fn images_dir(&self) -> PathBuf {
        self.dir.path().join("images")
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// The server's stderr so far. Panics when the file cannot be read (a
    /// missing log must not pass a `!contains(..)` check unread).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_else(|e| {
            panic!(
                "cannot read the server's stderr {}: {e}",
                self.stderr_path.display()
            )
        })
    }

    /// Waits (bounded by a generous deadline) until the server's stderr
    /// contains `needle`; panics with the log otherwise.
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.stderr();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the server's stderr:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asks 0x40 on a fresh connection until `check` holds on its result
    /// (bounded by a generous deadline); returns that result.
    pub fn wait_status(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut c = self.client();
        loop {
            let v = c.request(r#"{"cmd": 0x40, "request_data": null}"#);
            let result = v["response_data"][0]["result"].clone();
            if check(&result) {
                return result;
            }
            assert!(Instant::now() < deadline, "never {what}: {result}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit status (bounded).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe_kill(self.child.id(), libc::SIGTERM);
        self.wait_exit(Duration::from_secs(20))
            .expect("server should exit after SIGTERM")
    }

    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server process started by a test, killed and reaped when the guard drops (on a
/// failed assertion too).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `pear-server --config CONFIG --host 127.0.0.1 --port 0`, appending
/// its stderr to `stderr_path`, and waits for its "listening on" line.
pub fn spawn_server(
    config_path: &Path,
    stderr_path: &Path,
    extra_env: &[(&str, &str)],
) -> Result<(Child, SocketAddr), String> {
    spawn_server_with(config_path, stderr_path, extra_env, &["--port", "0"])
}

/// Like [`spawn_server`] with explicit extra arguments (e.g. a fixed port).
pub fn spawn_server_with(
    config_path: &Path,
    stderr_path: &Path,
    extra_env: &[(&str, &str)],
    args: &[&str],
) -> Result<(Child, SocketAddr), String> {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stderr_path)
        .map_err(|e| e.to_string())?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_pear-server"))
        .arg("--config")
        .arg(config_path)
        .args(["--host", "127.0.0.1"])
        .args(args)
        .envs(extra_env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let Some(addr) = line.trim().strip_prefix("listening on ") else {
        let _ = child.kill();
        let _ = child.wait();
        let err = std::fs::read_to_string(stderr_path).unwrap_or_default();
        return Err(format!("server did not start: {line:?}\n{err}"));
    };
    let addr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    Ok((child, addr))
}

pub fn unsafe_kill(pid: u32, signal: i32) {
    // SAFETY: kill(2) on our own child's pid has no memory-safety concerns.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

/// The shipped config, with paths pointed at the temp folder and overrides applied.
pub fn write_config(dir: &Path, overrides: Overrides) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("config/server_config.yaml")).unwrap();
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let base: &[(&str, &str)] = &[
        ("model.model_path", "models/pear_classifier.onnx"),
        ("model.preprocessor_path", "models/pear_detector.onnx"),
        ("model.img_path", "images"),
        ("logging.file", "logs/server.log"),
        ("logging.level", "DEBUG"),
        ("model.download_allow_private", "true"),
    ];
    for (key, value) in base.iter().chain(overrides.iter()) {
        let value: serde_yaml::Value = serde_yaml::from_str(value).unwrap();
        let mut node = &mut doc;
        let parts: Vec<&str> = key.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let map = node.as_mapping_mut().expect("mapping");
            let k = serde_yaml::Value::String(part.to_string());
            if i + 1 == parts.len() {
                map.insert(k, value.clone());
                break;
            }
            if !map.contains_key(&k) {
                map.insert(k.clone(), serde_yaml::Value::Mapping(Default::default()));
            }
            node = map.get_mut(&k).unwrap();
        }
    }
    let path = dir.join("server_config.yaml");
    std::fs::write(&path, serde_yaml::to_string(&doc).unwrap()).unwrap();
    path
}

/// A blocking protocol client with a read timeout, so a broken server fails a
/// test instead of hanging it.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends one JSON-stream request and reads one response.
    pub fn request(&mut self, json: &str) -> Value {
        self.send(json.as_bytes());
        self.read_json_line()
    }

    /// Reads one newline-terminated JSON response.
    pub fn read_json_line(&mut self) -> Value {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return serde_json::from_slice(&line[..line.len() - 1]).unwrap_or_else(|e| {
                    panic!("bad JSON {:?}: {e}", String::from_utf8_lossy(&line))
                });
            }
            self.fill();
        }
    }

    /// Reads one 4-byte-length-prefixed response.
    pub fn read_binary_frame(&mut self) -> Value {
        let len = u32::from_be_bytes(self.read_exact_n(4).try_into().unwrap()) as usize;
        serde_json::from_slice(&self.read_exact_n(len)).unwrap()
    }

    /// Reads one 64-byte-decimal-header response.
    pub fn read_decimal_frame(&mut self) -> Value {
        let header = self.read_exact_n(64);
        let len: usize = String::from_utf8(header)
            .unwrap()
            .trim_end()
            .parse()
            .unwrap();
        serde_json::from_slice(&self.read_exact_n(len)).unwrap()
    }

    pub fn read_exact_n(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill();
        }
        self.buf.drain(..n).collect()
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 65536];
        let n = self.stream.read(&mut chunk).expect("read");
        assert!(
            n > 0,
            "server closed the connection; buffered: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// True when the server has closed the connection (EOF within the timeout).
    pub fn is_closed_by_server(&mut self, within: Duration) -> bool {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let mut chunk = [0u8; 4096];
        let deadline = Instant::now() + within;
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
            if Instant::now() >= deadline {
                return false;
            }
        }
    }
}

/// The error code of the first item of a response.
pub fn first_code(v: &Value) -> i64 {
    v["response_data"][0]["error_code"]
        .as_i64()
        .expect("error_code")
}

pub fn binary_frame(json: &str) -> Vec<u8> {
    let mut out = (json.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out
}

pub fn decimal_frame(json: &str) -> Vec<u8> {
    let mut out = format!("{:<64}", json.len()).into_bytes();
    out.extend_from_slice(json.as_bytes());
    out
}

impl TestServer {
    /// Waits for the server's log line naming the metrics address.
    pub fn metrics_addr(&self) -> SocketAddr {
        let log = self.wait_log("metrics and health on http://");
        let rest = log
            .split("metrics and health on http://")
            .nth(1)
            .unwrap_or_default();
        let addr = rest.split('/').next().unwrap_or_default();
        addr.parse().expect("metrics address")
    }
}

/// One HTTP/1.1 GET over a real socket; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text)
        .expect("server closes after the answer");
    let status = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    assert!(text.contains("Connection: close"), "{text}");
    (status, body)
}

/// The value of one unlabelled metric in a `/metrics` body.
pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
