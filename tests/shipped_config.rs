//! `cargo run --release` with the shipped config unmodified answers 0x01 on a
//! sample (issue 15).
//!
//! What `cargo run --release` does is run `target/release/pear-server` with no
//! arguments from the checkout, so `--config` defaults to
//! `config/server_config.yaml` and its relative paths (`../models`,
//! `../samples`, `../logs`) resolve against `config/`. The test rebuilds that
//! layout in a temp folder (a byte copy of the shipped config, the shipped
//! models, `samples/`) and runs the binary there with no `--config`, so the
//! checkout's `logs/` and a `config/server_state.json` left by someone's 0x26
//! play no part. Two command-line overrides, not config edits: `--port 0`,
//! because a fixed 9090 in a test suite collides with whatever else runs on the
//! machine (and with SO_REUSEPORT a foreign server on 9090 would take some of the
//! test's connections), and `--host 127.0.0.1`, because tests use loopback only.
//!
//! The binary: `target/release/pear-server` when it exists and is newer than
//! every source file (so the suite never builds release itself, and never tests a
//! stale one); otherwise the test build of the same binary. Both come from the
//! same sources and the same `main`; the profiles differ in optimisation level
//! and debug assertions, neither of which changes what is answered, so the test
//! binary checks the same property (a release binary is then only faster).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::{first_code, repo, Client};
use serde_json::json;

fn newest_source(dir: &Path, newest: &mut SystemTime) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            newest_source(&path, newest);
        } else if let Ok(m) = entry.metadata().and_then(|m| m.modified()) {
            *newest = (*newest).max(m);
        }
    }
}

/// The release binary when it is fresh, else the test build; and which one.
fn server_binary() -> (PathBuf, &'static str) {
    let test_build = PathBuf::from(env!("CARGO_BIN_EXE_pear-server"));
    let release = test_build
        .parent()
        .and_then(Path::parent)
        .map(|target| target.join("release/pear-server"));
    let mut newest = SystemTime::UNIX_EPOCH;
    newest_source(&repo().join("src"), &mut newest);
    for f in ["Cargo.toml", "Cargo.lock", "build.rs"] {
        if let Ok(m) = std::fs::metadata(repo().join(f)).and_then(|m| m.modified()) {
            newest = newest.max(m);
        }
    }
    if let Some(release) = release {
        let fresh = std::fs::metadata(&release)
            .and_then(|m| m.modified())
            .is_ok_and(|built| built >= newest);
        if fresh {
            return (release, "release");
        }
    }
    (test_build, "test build")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn shipped_config_unmodified_answers_classify() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read(repo().join("config/server_config.yaml")).unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::write(dir.path().join("config/server_config.yaml"), &shipped).unwrap();
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    for name in ["pear_classifier.onnx", "pear_detector.onnx"] {
        std::fs::copy(
            common::assets().join("models").join(name),
            dir.path().join("models").join(name),
        )
        .unwrap();
    }
    copy_dir(
        &common::assets().join("samples"),
        &dir.path().join("samples"),
    );

    let (binary, which) = server_binary();
    eprintln!("testing the {which} binary {}", binary.display());
    let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let child = Command::new(&binary)
        .current_dir(dir.path())
        .args(["--host", "127.0.0.1", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut child = common::KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let log = || std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("did not start: {line:?}\n{}", log()));
    let mut c = Client::connect(addr.parse().unwrap());
    let v = c.request(r#"{"cmd": 0x01, "request_data": ["normal_01.jpg"]}"#);
    assert_eq!(v["cmd"], json!(2), "{v}");
    assert_eq!(first_code(&v), 0, "{v}");
    assert_eq!(
        v["response_data"][0]["file_name"],
        json!("normal_01.jpg"),
        "{v}"
    );
    assert_eq!(v["response_data"][0]["label"], json!("normal"), "{v}");
    // The shipped file was used as it is: unchanged, no warning about it, and
    // its log path (../logs from config/) written.
    assert_eq!(
        std::fs::read(dir.path().join("config/server_config.yaml")).unwrap(),
        shipped
    );
    assert!(dir.path().join("logs/pear_detection.log").is_file());
    assert!(!log().contains("unknown config key"), "{}", log());
    common::unsafe_kill(child.0.id(), libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}\n{}", log());
}
