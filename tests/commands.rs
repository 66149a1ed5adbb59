//! Every command end to end over loopback TCP, and the confinement of names.

mod common;

use common::{first_code, TestServer};
use serde_json::{json, Value};

fn items(v: &Value) -> &Vec<Value> {
    v["response_data"].as_array().expect("response_data list")
}

#[test]
fn list_change_and_delete_models() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    std::fs::copy(
        server.models_dir().join("pear_classifier.onnx"),
        server.models_dir().join("spare.onnx"),
    )
    .unwrap();
    std::fs::write(server.models_dir().join("notes.txt"), b"x").unwrap();

    let v = c.request(r#"{"cmd": 0x24, "request_data": null}"#);
    assert_eq!(v["cmd"], json!(0x25));
    let names: Vec<&str> = items(&v)
        .iter()
        .map(|i| i["file_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["pear_classifier.onnx", "pear_detector.onnx", "spare.onnx"]
    );
    assert!(items(&v).iter().all(|i| i["result"] == json!(2)));

    // Switch to the spare, then the old one may be deleted but not the spare.
    let v = c.request(r#"{"cmd": 0x26, "request_data": ["spare.onnx"]}"#);
    assert_eq!(v["cmd"], json!(0x27));
    assert_eq!(v["response_data"][0]["result"], json!(2), "{v}");
    let v = c.request(r#"{"cmd": 0x22, "request_data": null}"#);
    assert_eq!(v["response_data"][0]["file_name"], json!("spare.onnx"));

    let v = c.request(r#"{"cmd": 0x28, "request_data": ["spare.onnx"]}"#);
    assert_eq!(v["response_data"][0]["result"], json!(1));
    assert_eq!(first_code(&v), 1);
    assert!(server.models_dir().join("spare.onnx").exists());
    // The detector is in use too.
    let v = c.request(r#"{"cmd": 0x28, "request_data": ["pear_detector.onnx"]}"#);
    assert_eq!(first_code(&v), 1);

    let v = c.request(r#"{"cmd": 0x28, "request_data": ["pear_classifier.onnx"]}"#);
    assert_eq!(v["cmd"], json!(0x29));
    assert_eq!(v["response_data"][0]["result"], json!(2), "{v}");
    assert!(!server.models_dir().join("pear_classifier.onnx").exists());

    let v = c.request(r#"{"cmd": 0x28, "request_data": ["pear_classifier.onnx"]}"#);
    assert_eq!(v["response_data"][0]["result"], json!(1));
    assert_eq!(first_code(&v), 2);

    // A missing model cannot be switched to; the current one stays.
    let v = c.request(r#"{"cmd": 0x26, "request_data": ["nope.onnx"]}"#);
    assert_eq!(v["response_data"][0]["result"], json!(1));
    assert_eq!(first_code(&v), 2);
    let v = c.request(r#"{"cmd": 0x22, "request_data": []}"#);
    assert_eq!(v["response_data"][0]["file_name"], json!("spare.onnx"));
}

#[test]
fn corrupt_model_keeps_the_old_one() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    std::fs::write(
        server.models_dir().join("broken.onnx"),
        b"not a model at all",
    )
    .unwrap();
    let v = c.request(r#"{"cmd": 0x26, "request_data": ["broken.onnx"]}"#);
    assert_eq!(v["response_data"][0]["result"], json!(1));
    assert_eq!(first_code(&v), 2);
    let v = c.request(r#"{"cmd": 0x22, "request_data": []}"#);
    assert_eq!(
        v["response_data"][0]["file_name"],
        json!("pear_classifier.onnx")
    );
    // And classification still works on the old model.
    let v = c.request(r#"{"cmd": 0x01, "request_data": ["normal_01.jpg"]}"#);
    assert_eq!(first_code(&v), 0, "{v}");
}

#[test]
fn image_and_model_folders() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    let v = c.request(r#"{"cmd": 0x32, "request_data": null}"#);
    assert_eq!(v["cmd"], json!(0x33));
    let images = server.images_dir().canonicalize().unwrap();
    assert_eq!(
        v["response_data"][0]["file_name"],
        json!(images.display().to_string())
    );

    let other = server.dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    // Relative to the config file's directory.
    let v = c.request(r#"{"cmd": 0x30, "request_data": ["other"]}"#);
    assert_eq!(v["cmd"], json!(0x31));
    let other = other.canonicalize().unwrap();
    assert_eq!(
        v["response_data"][0]["file_name"],
        json!(other.display().to_string())
    );
    let v = c.request(r#"{"cmd": 0x32, "request_data": null}"#);
    assert_eq!(
        v["response_data"][0]["file_name"],
        json!(other.display().to_string())
    );

    let v = c.request(r#"{"cmd": 0x30, "request_data": ["/does/not/exist"]}"#);
    assert_eq!(v["response_data"][0]["result"], json!(1));
    assert_eq!(first_code(&v), 2);

    // Model folder: empty folder lists as not found; the loaded model stays.
    let v = c.request(&format!(
        r#"{{"cmd": 0x34, "request_data": ["{}"]}}"#,
        other.display()
    ));
    assert_eq!(v["cmd"], json!(0x35));
    assert_eq!(v["response_data"][0]["result"], json!(2));
    let v = c.request(r#"{"cmd": 0x24, "request_data": null}"#);
    assert_eq!(items(&v).len(), 1);
    assert_eq!(v["response_data"][0]["file_name"], json!(null));
    assert_eq!(v["response_data"][0]["result"], json!(1));
    assert_eq!(first_code(&v), 2);
    let v = c.request(r#"{"cmd": 0x22, "request_data": null}"#);
    assert_eq!(
        v["response_data"][0]["file_name"],
        json!("pear_classifier.onnx")
    );
    let v = c.request(r#"{"cmd": 0x34, "request_data": ["missing-folder"]}"#);
    assert_eq!(v["response_data"][0]["result"], json!(1));
    assert_eq!(first_code(&v), 2);
}

#[test]
fn server_status() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    c.request(r#"{"cmd": 0x22, "request_data": null}"#);
    let v = c.request(r#"{"cmd": 0x40, "request_data": null}"#);
    assert_eq!(v["cmd"], json!(0x41));
    let s = &v["response_data"][0]["result"];
    assert_eq!(s["version"], json!(env!("CARGO_PKG_VERSION")));
    assert_eq!(s["open_connections"], json!(1));
    assert!(s["requests_served"].as_u64().unwrap() >= 1);
    assert_eq!(s["current_model"], json!("pear_classifier.onnx"));
    assert!(s["backend"].as_str().unwrap().contains("onnxruntime"));
    assert!(s["queue_depth"].is_u64());
    assert!(s["uptime_secs"].is_number());
}

#[test]
fn traversal_is_refused() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    // A secret next to the image folder, and a symlink pointing at it.
    let secret = server.dir.path().join("secret.jpg");
    std::fs::copy(server.images_dir().join("normal_01.jpg"), &secret).unwrap();
    std::os::unix::fs::symlink(&secret, server.images_dir().join("escape.jpg")).unwrap();
    let outside_model = server.dir.path().join("outside.onnx");
    std::fs::copy(
        server.models_dir().join("pear_classifier.onnx"),
        &outside_model,
    )
    .unwrap();
    std::os::unix::fs::symlink(&outside_model, server.models_dir().join("out.onnx")).unwrap();

    for name in ["../secret.jpg", "/etc/passwd.jpg", "a/../../secret.jpg"] {
        let v = c.request(&format!(r#"{{"cmd": 1, "request_data": ["{name}"]}}"#));
        assert_eq!(v["cmd"], json!(null), "{name}: {v}");
        assert_eq!(first_code(&v), 1, "{name}: {v}");
    }
    let v = c.request(r#"{"cmd": 1, "request_data": ["escape.jpg"]}"#);
    assert_eq!(v["cmd"], json!(2));
    assert_eq!(first_code(&v), 2, "{v}");
    assert_eq!(v["response_data"][0]["result"], json!(null));

    for cmd in [0x26, 0x28] {
        for name in [
            "../models/pear_detector.onnx",
            "/tmp/x.onnx",
            "..\\x.onnx/..",
        ] {
            let v = c.request(&format!(r#"{{"cmd": {cmd}, "request_data": ["{name}"]}}"#));
            assert_eq!(first_code(&v), 1, "{cmd} {name}: {v}");
        }
    }
    // A model symlink leading out of the folder is "not found" for use and delete.
    for cmd in [0x26, 0x28] {
        let v = c.request(&format!(
            r#"{{"cmd": {cmd}, "request_data": ["out.onnx"]}}"#
        ));
        assert_eq!(v["response_data"][0]["result"], json!(1), "{v}");
        assert_eq!(first_code(&v), 2, "{cmd}: {v}");
    }
    assert!(outside_model.exists());
    assert!(secret.exists());
    assert!(server.models_dir().join("pear_detector.onnx").exists());
}

#[test]
fn classify_mixed_files_in_order() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    std::fs::write(
        server.images_dir().join("garbage.png"),
        b"this is not a png",
    )
    .unwrap();
    let v = c.request(
        r#"{"cmd": 0x01, "request_data": ["normal_01.jpg", "missing.jpg", "garbage.png", "bruise_01.jpg"]}"#,
    );
    assert_eq!(v["cmd"], json!(2));
    let it = items(&v);
    assert_eq!(it.len(), 4);
    let names: Vec<&str> = it
        .iter()
        .map(|i| i["file_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "normal_01.jpg",
            "missing.jpg",
            "garbage.png",
            "bruise_01.jpg"
        ]
    );
    assert_eq!(it[0]["error_code"], json!(0));
    assert_eq!(it[0]["result"], json!(0), "{v}");
    assert_eq!(it[0]["label"], json!("normal"));
    assert!(it[0]["confidence"].as_f64().unwrap() > 0.0);
    assert_eq!(it[0]["bbox"].as_array().unwrap().len(), 4);
    assert_eq!(it[1]["error_code"], json!(2));
    assert_eq!(it[1]["result"], json!(null));
    assert_eq!(it[2]["error_code"], json!(2));
    assert_eq!(it[3]["error_code"], json!(0));
    assert_eq!(it[3]["label"], json!("bruise"), "{v}");
}

#[test]
fn no_pear_scene() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    let v = c.request(r#"{"cmd": 0x01, "request_data": ["empty_01.jpg"]}"#);
    let item = &v["response_data"][0];
    assert_eq!(item["error_code"], json!(0), "{v}");
    assert_eq!(item["result"], json!(0));
    assert_eq!(item["label"], json!("no_pear"));
    assert_eq!(item["bbox"], json!(null));
}

#[test]
fn stop_classification_cancels_queued_work() {
    // One worker and a long queue so most of the files are still waiting.
    let server = TestServer::start(&[("inference.workers", "1"), ("inference.max_batch", "1")]);
    let mut c = server.client();
    let names: Vec<String> = (0..200).map(|_| "\"normal_01.jpg\"".to_string()).collect();
    c.send(format!(r#"{{"cmd": 1, "request_data": [{}]}}"#, names.join(",")).as_bytes());
    c.send(br#"{"cmd": 0x03, "request_data": null}"#);
    let v = c.read_json_line();
    assert_eq!(v["cmd"], json!(2));
    let it = items(&v);
    assert_eq!(it.len(), 200);
    let cancelled = it
        .iter()
        .filter(|i| i["error_code"] == json!(4) && i["message"] == json!("cancelled"))
        .count();
    let done = it.iter().filter(|i| i["error_code"] == json!(0)).count();
    assert!(cancelled > 0, "nothing was cancelled");
    assert_eq!(cancelled + done, 200);
    let v = c.read_json_line();
    assert_eq!(v["cmd"], json!(4));
    assert_eq!(v["response_data"][0]["result"], json!(2));
    // Later requests are not affected by the earlier cancel.
    let v = c.request(r#"{"cmd": 1, "request_data": ["normal_01.jpg"]}"#);
    assert_eq!(first_code(&v), 0);
}

#[test]
fn model_swap_while_classifying() {
    let server = TestServer::start(&[("inference.workers", "1")]);
    std::fs::copy(
        server.models_dir().join("pear_classifier.onnx"),
        server.models_dir().join("spare.onnx"),
    )
    .unwrap();
    let mut busy = server.client();
    let names: Vec<&str> = vec!["\"normal_01.jpg\""; 100];
    busy.send(format!(r#"{{"cmd": 1, "request_data": [{}]}}"#, names.join(",")).as_bytes());
    let mut admin = server.client();
    let v = admin.request(r#"{"cmd": 0x26, "request_data": ["spare.onnx"]}"#);
    assert_eq!(v["response_data"][0]["result"], json!(2), "{v}");
    // Every file of the running request is answered, by the old or the new model.
    let v = busy.read_json_line();
    let it = items(&v);
    assert_eq!(it.len(), 100);
    assert!(
        it.iter()
            .all(|i| i["error_code"] == json!(0) && i["label"] == json!("normal")),
        "{v}"
    );
    let v = admin.request(r#"{"cmd": 0x22, "request_data": null}"#);
    assert_eq!(v["response_data"][0]["file_name"], json!("spare.onnx"));
}
