//! The operator tools against a real server: `pear-client` commands, output and exit
//! codes, and one short `pear-bench` run whose JSON line must parse.

mod common;

use std::process::{Command, Output};

use common::TestServer;
use serde_json::Value;

fn client(server: &TestServer, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pear-client"))
        .arg("--addr")
        .arg(server.addr.to_string())
        .args(["--timeout", "30"])
        .args(args)
        .output()
        .expect("run pear-client")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_out(out: &Output) -> Value {
    serde_json::from_str(stdout(out).trim()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            stdout(out),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn model_models_and_status() {
    let server = TestServer::start(&[]);

    let out = client(&server, &["model"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("pear_classifier.onnx"),
        "{}",
        stdout(&out)
    );

    let out = client(&server, &["--json", "models"]);
    assert_eq!(out.status.code(), Some(0));
    let v = json_out(&out);
    assert_eq!(v["cmd"], 0x25);
    let names: Vec<&str> = v["response_data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["file_name"].as_str())
        .collect();
    assert_eq!(names, ["pear_classifier.onnx", "pear_detector.onnx"]);

    let out = client(&server, &["status"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains("version"), "{text}");
    assert!(text.contains("current_model"), "{text}");

    let out = client(&server, &["folder", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let folder = json_out(&out)["response_data"][0]["file_name"].clone();
    assert_eq!(
        folder.as_str().map(std::path::PathBuf::from),
        Some(server.images_dir().canonicalize().unwrap())
    );
}

#[test]
fn raw_in_every_framing() {
    let server = TestServer::start(&[]);
    for framing in ["json", "binary", "decimal"] {
        let out = client(
            &server,
            &[
                "--framing",
                framing,
                "--json",
                "raw",
                r#"{"cmd": 0x22, "request_data": null, "id": "x1"}"#,
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{framing}");
        let v = json_out(&out);
        assert_eq!(v["cmd"], 0x23, "{framing}");
        assert_eq!(v["id"], "x1", "{framing}");
        assert_eq!(
            v["response_data"][0]["file_name"], "pear_classifier.onnx",
            "{framing}"
        );
    }
}

#[test]
fn failures_exit_nonzero() {
    let server = TestServer::start(&[]);

    // An item with error_code != 0 → exit 1, and the table names the code.
    let out = client(&server, &["classify", "normal_01.jpg", "missing.jpg"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("resource_not_found"), "{text}");
    assert!(text.contains("normal_01.jpg"), "{text}");

    // An error response (unknown command) → exit 1.
    let out = client(
        &server,
        &["--json", "raw", r#"{"cmd": 0x99, "request_data": null}"#],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_out(&out)["response_data"][0]["error_code"], 3);

    // Deleting a model that does not exist → exit 1.
    let out = client(&server, &["delete", "nothing.onnx"]);
    assert_eq!(out.status.code(), Some(1));

    // Usage errors and connection errors → exit 2.
    let out = client(&server, &["use"]);
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_pear-client"))
        .args(["--addr", "127.0.0.1:1", "model"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
}

#[test]
fn help_has_an_example_per_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_pear-client"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for cmd in [
        "classify",
        "model",
        "models",
        "use",
        "delete",
        "download",
        "folder",
        "model-folder",
        "status",
        "raw",
    ] {
        assert!(
            text.contains(&format!("pear-client {cmd} ")),
            "no example for {cmd}:\n{text}"
        );
    }
}

#[test]
fn bench_short_run_reports_json() {
    let server = TestServer::start(&[]);
    let out = Command::new(env!("CARGO_BIN_EXE_pear-bench"))
        .arg("--addr")
        .arg(server.addr.to_string())
        .args(["--conns", "2", "--duration", "1", "--warmup", "0.2"])
        .output()
        .expect("run pear-bench");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_out(&out);
    assert_eq!(v["mode"], "pear");
    assert_eq!(v["conns"], 2);
    assert!(v["rps"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert!(v["requests"].as_u64().unwrap() > 0, "{v}");
    for key in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"] {
        assert!(v[key].as_f64().is_some(), "{key} in {v}");
    }
}

#[test]
fn bench_refuses_non_loopback_targets() {
    let out = Command::new(env!("CARGO_BIN_EXE_pear-bench"))
        .args(["--addr", "192.0.2.1:9090", "--duration", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}
