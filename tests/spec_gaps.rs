//! Parts of SPEC.md no other test touched (issue 15), over real TCP: code 4 over
//! `inference.time_limit_ms`, SIGINT, several frames in one write, the shape of
//! error responses, and `.jpeg` / upper-case / PNG names through the server.

mod common;

use common::{binary_frame, decimal_frame, first_code, TestServer};
use serde_json::{json, Value};

fn items(v: &Value) -> &Vec<Value> {
    v["response_data"].as_array().expect("response_data")
}

/// `request_data` is present and null (not merely absent).
fn request_data_is_null(v: &Value) -> bool {
    v.as_object()
        .and_then(|o| o.get("request_data"))
        .is_some_and(Value::is_null)
}

#[test]
fn classification_over_the_time_limit_is_code_4() {
    // One worker and a 1 ms limit: the last of 20 files waits behind 19
    // classifications (each a detector and a classifier run), far over 1 ms.
    const FILES: usize = 20;
    let server = TestServer::start(&[("inference.workers", "1"), ("inference.time_limit_ms", "1")]);
    let mut c = server.client();
    let names = ["\"normal_01.jpg\""; FILES].join(",");
    let v = c.request(&format!(r#"{{"cmd": 1, "request_data": [{names}]}}"#));
    assert_eq!(v["cmd"], json!(2), "{v}");
    let it = items(&v);
    assert_eq!(it.len(), FILES, "{v}");
    for i in it {
        assert_eq!(i["file_name"], json!("normal_01.jpg"), "{i}");
        let code = i["error_code"].as_i64().unwrap();
        assert!(code == 0 || code == 4, "{i}");
        if code == 4 {
            assert_eq!(i["result"], json!(null), "{i}");
        }
    }
    assert_eq!(it[FILES - 1]["error_code"], json!(4), "{v}");
    // The server is fine afterwards.
    let v = c.request(r#"{"cmd": 0x22, "request_data": null}"#);
    assert_eq!(first_code(&v), 0, "{v}");
}

#[test]
fn sigint_answers_in_flight_then_exits_zero() {
    let mut server = TestServer::start(&[("inference.workers", "1")]);
    let mut c = server.client();
    let names = ["\"normal_01.jpg\""; 20].join(",");
    c.send(format!(r#"{{"cmd": 1, "request_data": [{names}]}}"#).as_bytes());
    server.wait_status("the request queued", |r| {
        r["queue_depth"].as_u64().unwrap_or(0) > 0
    });
    common::unsafe_kill(server.child.id(), libc::SIGINT);
    server.wait_log("no longer accepting");
    assert!(
        std::net::TcpStream::connect(server.addr).is_err(),
        "accepted a connection while draining after SIGINT"
    );
    let v = c.read_json_line();
    assert_eq!(v["cmd"], json!(2), "{v}");
    assert_eq!(items(&v).len(), 20);
    assert!(items(&v).iter().all(|i| i["error_code"] == json!(0)), "{v}");
    let status = server
        .wait_exit(std::time::Duration::from_secs(30))
        .expect("exits after SIGINT");
    assert!(status.success(), "{status:?}\n{}", server.stderr());
}

#[test]
fn several_length_prefixed_frames_in_one_write() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    let mut bytes = Vec::new();
    for i in 0..3 {
        bytes.extend(binary_frame(&format!(
            r#"{{"cmd": 0x22, "request_data": null, "id": {i}}}"#
        )));
    }
    bytes.extend(binary_frame(
        r#"{"cmd": 1, "request_data": ["normal_01.jpg"], "id": 3}"#,
    ));
    c.send(&bytes);
    for i in 0..3 {
        let v = c.read_binary_frame();
        assert_eq!(v["id"], json!(i), "{v}");
        assert_eq!(v["cmd"], json!(0x23), "{v}");
    }
    let v = c.read_binary_frame();
    assert_eq!(v["id"], json!(3), "{v}");
    assert_eq!(first_code(&v), 0, "{v}");
}

#[test]
fn several_decimal_header_frames_in_one_write() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    let mut bytes = Vec::new();
    for i in 0..3 {
        bytes.extend(decimal_frame(&format!(
            r#"{{"cmd": 0x22, "request_data": null, "id": {i}}}"#
        )));
    }
    bytes.extend(decimal_frame(
        r#"{"cmd": 1, "request_data": ["normal_01.jpg"], "id": 3}"#,
    ));
    c.send(&bytes);
    for i in 0..3 {
        let v = c.read_decimal_frame();
        assert_eq!(v["id"], json!(i), "{v}");
        assert_eq!(v["cmd"], json!(0x23), "{v}");
    }
    let v = c.read_decimal_frame();
    assert_eq!(v["id"], json!(3), "{v}");
    assert_eq!(first_code(&v), 0, "{v}");
}

#[test]
fn error_responses_have_null_cmd_file_name_result_and_request_data() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    let cases = [
        (r#"{"cmd": 0x99, "request_data": null}"#, 3),
        (r#"{"cmd": 1}"#, 1),
        (r#"{"cmd": "one", "request_data": null}"#, 1),
        (r#"{"cmd": 1, "request_data": ["a.jpg", "b.gif"]}"#, 1),
        (r#"{"cmd": 1, "request_data": "a.jpg"}"#, 1),
    ];
    for (req, code) in cases {
        let v = c.request(req);
        assert_eq!(v["cmd"], json!(null), "{req}: {v}");
        assert!(
            request_data_is_null(&v),
            "{req}: request_data not null: {v}"
        );
        let it = items(&v);
        assert_eq!(it.len(), 1, "{req}: {v}");
        let item = it[0].as_object().expect("item object");
        assert_eq!(item.get("file_name"), Some(&json!(null)), "{req}: {v}");
        assert_eq!(item.get("result"), Some(&json!(null)), "{req}: {v}");
        assert_eq!(item.get("error_code"), Some(&json!(code)), "{req}: {v}");
        assert!(item.get("message").is_some_and(Value::is_string), "{v}");
    }
    // Normal responses carry request_data null too.
    let v = c.request(r#"{"cmd": 0x22, "request_data": null}"#);
    assert!(request_data_is_null(&v), "{v}");
}

#[test]
fn jpeg_upper_case_and_png_names_through_the_server() {
    let server = TestServer::start(&[]);
    let images = server.images_dir();
    let src = images.join("normal_01.jpg");
    std::fs::copy(&src, images.join("copy.jpeg")).unwrap();
    std::fs::copy(&src, images.join("COPY.JPG")).unwrap();
    std::fs::copy(&src, images.join("Copy.JpEg")).unwrap();
    let img = image::open(&src).expect("decode sample");
    img.save(images.join("copy.png")).unwrap();
    std::fs::copy(images.join("copy.png"), images.join("COPY.PNG")).unwrap();
    let mut c = server.client();
    let v = c.request(
        r#"{"cmd": 1, "request_data": ["normal_01.jpg", "copy.jpeg", "COPY.JPG", "Copy.JpEg", "copy.png", "COPY.PNG"]}"#,
    );
    assert_eq!(v["cmd"], json!(2), "{v}");
    let it = items(&v);
    assert_eq!(it.len(), 6, "{v}");
    let names = [
        "normal_01.jpg",
        "copy.jpeg",
        "COPY.JPG",
        "Copy.JpEg",
        "copy.png",
        "COPY.PNG",
    ];
    for (i, name) in it.iter().zip(names) {
        assert_eq!(i["file_name"], json!(name), "{v}");
        assert_eq!(i["error_code"], json!(0), "{name}: {i}");
    }
    // The same bytes give the same answer whatever the name's case or
    // extension; the PNG of the decoded photo the same class (its box may move
    // by a pixel if the server's JPEG decoder differs from the `image` crate's).
    for i in &it[1..4] {
        assert_eq!(
            (&i["result"], &i["label"], &i["confidence"], &i["bbox"]),
            (
                &it[0]["result"],
                &it[0]["label"],
                &it[0]["confidence"],
                &it[0]["bbox"]
            ),
            "{v}"
        );
    }
    for i in &it[4..] {
        assert_eq!(
            (&i["result"], &i["label"]),
            (&it[0]["result"], &it[0]["label"]),
            "{v}"
        );
        assert!(i["bbox"].is_array(), "{v}");
    }
}

#[test]
fn model_folder_change_then_list_and_change_model_there() {
    let server = TestServer::start(&[]);
    let real = server.dir.path().join("other_models");
    std::fs::create_dir(&real).unwrap();
    std::fs::copy(
        common::repo().join("tests/fixtures/parity/tiny_classifier.onnx"),
        real.join("tiny.onnx"),
    )
    .unwrap();
    std::fs::write(real.join("notes.txt"), b"not a model").unwrap();
    let link = server.dir.path().join("models_link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let mut c = server.client();
    let v = c.request(&json!({"cmd": 0x34, "request_data": [link.to_str().unwrap()]}).to_string());
    assert_eq!(v["cmd"], json!(0x35), "{v}");
    assert_eq!(v["response_data"][0]["result"], json!(2), "{v}");
    // The canonical path is echoed (the symlink resolved).
    let canonical = real.canonicalize().unwrap();
    assert_eq!(
        v["response_data"][0]["file_name"],
        json!(canonical.display().to_string()),
        "{v}"
    );
    // The loaded model stays loaded until 0x26.
    let v = c.request(r#"{"cmd": 0x22, "request_data": null}"#);
    assert_eq!(
        v["response_data"][0]["file_name"],
        json!("pear_classifier.onnx")
    );
    let v = c.request(r#"{"cmd": 0x24, "request_data": null}"#);
    let listed: Vec<_> = items(&v).iter().map(|i| i["file_name"].clone()).collect();
    assert_eq!(listed, vec![json!("tiny.onnx")], "{v}");
    let v = c.request(r#"{"cmd": 0x26, "request_data": ["tiny.onnx"]}"#);
    assert_eq!(v["response_data"][0]["result"], json!(2), "{v}");
    let v = c.request(r#"{"cmd": 0x22, "request_data": null}"#);
    assert_eq!(
        v["response_data"][0]["file_name"],
        json!("tiny.onnx"),
        "{v}"
    );
    // The old folder's model is no longer reachable by name.
    let v = c.request(r#"{"cmd": 0x26, "request_data": ["pear_classifier.onnx"]}"#);
    assert_eq!(v["response_data"][0]["result"], json!(1), "{v}");
    assert_eq!(first_code(&v), 2, "{v}");
    let v = c.request(r#"{"cmd": 1, "request_data": ["normal_01.jpg"]}"#);
    assert_eq!(first_code(&v), 0, "{v}");
}

#[test]
fn in_flight_limit_keeps_every_request_in_order() {
    // One request in flight per connection: 40 pipelined requests in one write,
    // classifications and cheap commands mixed, all answered, in order.
    let server = TestServer::start(&[("server.max_inflight_per_connection", "1")]);
    let mut c = server.client();
    let mut bytes = String::new();
    for i in 0..40 {
        if i % 4 == 0 {
            bytes += &format!(r#"{{"cmd": 1, "request_data": ["normal_01.jpg"], "id": {i}}}"#);
        } else {
            bytes += &format!(r#"{{"cmd": 0x22, "request_data": null, "id": {i}}}"#);
        }
    }
    c.send(bytes.as_bytes());
    for i in 0..40 {
        let v = c.read_json_line();
        assert_eq!(v["id"], json!(i), "{v}");
        assert_eq!(first_code(&v), 0, "{v}");
        let cmd = if i % 4 == 0 { 2 } else { 0x23 };
        assert_eq!(v["cmd"], json!(cmd), "{v}");
    }
}

#[test]
fn shutdown_grace_bounds_the_drain_with_work_still_running() {
    // 1000 files (4 requests of 250) on one worker take far longer than the
    // 1 s grace period.
    let mut server = TestServer::start(&[
        ("inference.workers", "1"),
        ("server.shutdown_grace_secs", "1"),
    ]);
    let mut c = server.client();
    let names = ["\"normal_01.jpg\""; 250].join(",");
    for _ in 0..4 {
        c.send(format!(r#"{{"cmd": 1, "request_data": [{names}]}}"#).as_bytes());
    }
    server.wait_status("the request queued", |r| {
        r["queue_depth"].as_u64().unwrap_or(0) > 0
    });
    common::unsafe_kill(server.child.id(), libc::SIGTERM);
    let status = server
        .wait_exit(std::time::Duration::from_secs(60))
        .expect("exits once the grace period is over");
    let log = server.stderr();
    assert!(log.contains("shutdown grace period over"), "{log}");
    assert!(status.success(), "{status:?}\n{log}");
    // The unfinished requests were not all answered: the connection just ends.
    assert!(c.is_closed_by_server(std::time::Duration::from_secs(5)));
}

#[test]
fn config_with_only_the_original_keys_serves() {
    // The original's own file layout (SPEC §2): no new key at all.
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let images = dir.path().join("test_photos");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::create_dir_all(&images).unwrap();
    for name in ["pear_classifier.onnx", "pear_detector.onnx"] {
        std::fs::copy(
            common::assets().join("models").join(name),
            models.join(name),
        )
        .unwrap();
    }
    std::fs::copy(
        common::assets().join("samples/normal_01.jpg"),
        images.join("normal_01.jpg"),
    )
    .unwrap();
    let config = dir.path().join("server_config.yaml");
    std::fs::write(
        &config,
        r#"server:
  host: "0.0.0.0"
  port: 9090
  max_connections: 5
  buffer_size: 1024
  encoding: "utf-8"
model:
  model_path: "models/pear_classifier.onnx"
  preprocessor_path: "models/pear_detector.onnx"
  img_path: "test_photos"
  confidence_threshold: 0.5
  img_size: 320
  classes: ["normal", "dark_spot", "bruise", "cut", "scab", "insect_hole", "dent", "mold"]
logging:
  level: "INFO"
  format: "%(asctime)s - %(levelname)s - %(message)s"
  file: "logs/pear_detection.log"
ERROR_CODE:
  no_error: 0
  invalid_message: 1
  resource_not_found: 2
  not_exist_command: 3
  timeout: 4
"#,
    )
    .unwrap();
    let stderr = dir.path().join("stderr.log");
    let (child, addr) =
        common::spawn_server(&config, &stderr, &[]).expect("starts from the original's keys");
    // Killed on any failure below.
    let mut child = common::KillOnDrop(child);
    let mut c = common::Client::connect(addr);
    let v = c.request(r#"{"cmd": 0x01, "request_data": ["normal_01.jpg"]}"#);
    assert_eq!(v["cmd"], json!(2), "{v}");
    assert_eq!(first_code(&v), 0, "{v}");
    assert_eq!(v["response_data"][0]["label"], json!("normal"), "{v}");
    assert!(dir.path().join("logs/pear_detection.log").exists());
    common::unsafe_kill(child.0.id(), libc::SIGTERM);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}
