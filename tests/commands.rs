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

    // Names are resolved as the original resolves them (absolute alone,
    // relative joined onto the folder); a result outside the folder is "not
    // found" for that file (code 2), not a refusal of the whole request.
    for name in ["../secret.jpg", "/etc/passwd.jpg", "a/../../secret.jpg"] {
        let v = c.request(&format!(r#"{{"cmd": 1, "request_data": ["{name}"]}}"#));
        assert_eq!(v["cmd"], json!(2), "{name}: {v}");
        assert_eq!(first_code(&v), 2, "{name}: {v}");
        assert_eq!(v["response_data"][0]["result"], json!(null), "{name}: {v}");
    }
    let v = c.request(r#"{"cmd": 1, "request_data": ["escape.jpg"]}"#);
    assert_eq!(v["cmd"], json!(2));
    assert_eq!(first_code(&v), 2, "{v}");
    assert_eq!(v["response_data"][0]["result"], json!(null));

    for cmd in [0x26, 0x28] {
        // Outside the model folder: not found.
        let v = c.request(&format!(
            r#"{{"cmd": {cmd}, "request_data": ["/tmp/x.onnx"]}}"#
        ));
        assert_eq!(v["response_data"][0]["result"], json!(1), "{cmd}: {v}");
        assert_eq!(first_code(&v), 2, "{cmd}: {v}");
        // Not an .onnx name (its last component is `..`): refused.
        let v = c.request(&format!(
            r#"{{"cmd": {cmd}, "request_data": ["..\\x.onnx/.."]}}"#
        ));
        assert_eq!(v["cmd"], json!(null), "{cmd}: {v}");
        assert_eq!(first_code(&v), 1, "{cmd}: {v}");
    }
    // Inside the model folder through `..`: the detector is no classifier
    // (0x26: not loadable, code 2) and is in use (0x28: refused, code 1).
    let v = c.request(r#"{"cmd": 0x26, "request_data": ["../models/pear_detector.onnx"]}"#);
    assert_eq!(first_code(&v), 2, "{v}");
    let v = c.request(r#"{"cmd": 0x28, "request_data": ["../models/pear_detector.onnx"]}"#);
    assert_eq!(first_code(&v), 1, "{v}");
    assert_eq!(v["response_data"][0]["result"], json!(1), "{v}");
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

/// 0x01 resolves names as the Python original does (`os.path.join`): every
/// spelling that reaches a photo inside the image folder works; one that leads
/// outside is answered code 2 for that file only, the others normally.
#[test]
fn classify_names_resolve_like_the_original() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    let root = server.dir.path();
    let images = server.images_dir();
    std::fs::create_dir(images.join("sub")).unwrap();
    // A real photo outside the image folder, reachable by `..`, by its absolute
    // path and through a symlink planted inside.
    let outside = root.join("outside.jpg");
    std::fs::copy(images.join("normal_01.jpg"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, images.join("escape.jpg")).unwrap();

    let inside_abs = images.join("normal_01.jpg").display().to_string();
    let outside_abs = outside.display().to_string();
    let inside = [
        "normal_01.jpg",
        "./normal_01.jpg",
        "../images/normal_01.jpg",
        inside_abs.as_str(),
        "sub/../normal_01.jpg",
    ];
    let outside_names = [
        "../outside.jpg",
        outside_abs.as_str(),
        "/etc/pear-server-absent.jpg",
        "escape.jpg",
    ];
    // Interleaved, so per-file answers and their order are both checked.
    let mut names = Vec::new();
    for (i, name) in inside.iter().enumerate() {
        names.push(*name);
        if let Some(o) = outside_names.get(i) {
            names.push(*o);
        }
    }
    let v = c.request(&json!({"cmd": 0x01, "request_data": names}).to_string());
    assert_eq!(v["cmd"], json!(2), "{v}");
    let it = items(&v);
    assert_eq!(it.len(), names.len(), "{v}");
    let reference = it[0].clone();
    assert_eq!(reference["error_code"], json!(0), "{v}");
    assert!(reference["result"].is_u64(), "{v}");
    assert!(reference["bbox"].is_array(), "{v}");
    for (item, name) in it.iter().zip(&names) {
        assert_eq!(item["file_name"], json!(name), "{v}");
        if inside.contains(name) {
            // The very same photo: the very same answer.
            assert_eq!(item["error_code"], json!(0), "{name}: {item}");
            for key in ["result", "label", "confidence", "bbox"] {
                assert_eq!(item[key], reference[key], "{name}: {item}");
            }
        } else {
            assert_eq!(item["error_code"], json!(2), "{name}: {item}");
            assert_eq!(item["result"], json!(null), "{name}: {item}");
            assert!(item.get("label").is_none(), "{name}: {item}");
        }
    }
    assert!(outside.exists());
}

/// 0x26/0x28 take the same names: absolute or `..` names inside the model
/// folder work; outside it they are "not found" and nothing is loaded or deleted.
#[test]
fn model_names_resolve_like_the_original() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    let root = server.dir.path();
    let models = server.models_dir();
    for spare in ["spare1.onnx", "spare2.onnx", "spare3.onnx", "spare4.onnx"] {
        std::fs::copy(models.join("pear_classifier.onnx"), models.join(spare)).unwrap();
    }
    let outside = root.join("outside.onnx");
    std::fs::copy(models.join("pear_classifier.onnx"), &outside).unwrap();
    // An entry outside the folder whose target is inside.
    std::os::unix::fs::symlink(models.join("spare4.onnx"), root.join("alias.onnx")).unwrap();
    let current = |c: &mut common::Client| {
        let v = c.request(r#"{"cmd": 0x22, "request_data": null}"#);
        v["response_data"][0]["file_name"].clone()
    };
    let one = |c: &mut common::Client, cmd: u32, name: &str| {
        let v = c.request(&json!({"cmd": cmd, "request_data": [name]}).to_string());
        assert_eq!(v["cmd"], json!(cmd + 1), "{cmd:#x} {name}: {v}");
        assert_eq!(v["response_data"][0]["file_name"], json!(name), "{v}");
        v["response_data"][0].clone()
    };

    // 0x26 inside the folder: absolute, and through `..`.
    let abs = models.join("spare1.onnx").display().to_string();
    let item = one(&mut c, 0x26, &abs);
    assert_eq!(item["result"], json!(2), "{item}");
    assert_eq!(current(&mut c), json!("spare1.onnx"));
    let item = one(&mut c, 0x26, "../models/spare2.onnx");
    assert_eq!(item["result"], json!(2), "{item}");
    assert_eq!(current(&mut c), json!("spare2.onnx"));
    // A symlink outside whose target is inside: the result is inside, so it
    // loads (the target, named by its real file name).
    let item = one(&mut c, 0x26, "../alias.onnx");
    assert_eq!(item["result"], json!(2), "{item}");
    assert_eq!(current(&mut c), json!("spare4.onnx"));
    let item = one(&mut c, 0x26, "spare2.onnx");
    assert_eq!(item["result"], json!(2), "{item}");
    // 0x26 outside: not found, the model in use stays.
    for name in [outside.display().to_string(), "../outside.onnx".to_string()] {
        let item = one(&mut c, 0x26, &name);
        assert_eq!(item["result"], json!(1), "{name}: {item}");
        assert_eq!(item["error_code"], json!(2), "{name}: {item}");
        assert_eq!(current(&mut c), json!("spare2.onnx"), "{name}");
    }

    // 0x28 outside: not found, and the file is still there. An entry outside
    // is not deleted even when its target is inside (nor is the target).
    for name in [
        outside.display().to_string(),
        "../outside.onnx".to_string(),
        "../alias.onnx".to_string(),
        root.join("alias.onnx").display().to_string(),
    ] {
        let item = one(&mut c, 0x28, &name);
        assert_eq!(item["result"], json!(1), "{name}: {item}");
        assert_eq!(item["error_code"], json!(2), "{name}: {item}");
    }
    assert!(outside.is_file());
    assert!(root.join("alias.onnx").is_symlink());
    assert!(models.join("spare4.onnx").is_file());
    // 0x28 inside: absolute and `..` names delete; the model in use is refused
    // whatever its spelling.
    let item = one(&mut c, 0x28, &abs);
    assert_eq!(item["result"], json!(2), "{item}");
    assert!(!models.join("spare1.onnx").exists());
    let item = one(&mut c, 0x28, "../models/spare3.onnx");
    assert_eq!(item["result"], json!(2), "{item}");
    assert!(!models.join("spare3.onnx").exists());
    for name in [
        "../models/spare2.onnx".to_string(),
        models.join("spare2.onnx").display().to_string(),
    ] {
        let item = one(&mut c, 0x28, &name);
        assert_eq!(item["result"], json!(1), "{name}: {item}");
        assert_eq!(item["error_code"], json!(1), "{name}: {item}");
    }
    assert!(models.join("spare2.onnx").is_file());
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
        r#"{"cmd": 0x01, "request_data": ["normal_01.jpg", "missing.jpg", "garbage.png", "dark_spot_01.jpg"]}"#,
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
            "dark_spot_01.jpg"
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
    assert_eq!(it[3]["result"], json!(1), "{v}");
    assert_eq!(it[3]["label"], json!("dark_spot"), "{v}");
    assert_eq!(it[3]["bbox"].as_array().map(Vec::len), Some(4), "{v}");
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

/// Every sample photo of a pear (all but the empty scene).
fn pear_samples(server: &TestServer) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(server.images_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jpg") && !n.starts_with("empty"))
        .collect();
    names.sort();
    names
}

/// `model.no_pear_result` is what an empty scene answers; `model.normal_threshold`
/// 1.0 never answers normal, and answers the likeliest defect: the same class as
/// the default rule whenever that was a defect already.
#[test]
fn decision_keys_over_tcp() {
    let server = TestServer::start(&[("model.no_pear_result", "4")]);
    let mut c = server.client();
    let names = pear_samples(&server);
    assert!(names.len() >= 8, "{names:?}");
    let mut request = vec!["empty_01.jpg".to_string()];
    request.extend(names.iter().cloned());
    let v = c.request(&json!({"cmd": 0x01, "request_data": request}).to_string());
    let it = items(&v);
    assert_eq!(it.len(), request.len(), "{v}");
    assert_eq!(it[0]["error_code"], json!(0), "{v}");
    assert_eq!(it[0]["result"], json!(4), "{v}");
    assert_eq!(it[0]["label"], json!("no_pear"), "{v}");
    assert_eq!(it[0]["bbox"], json!(null), "{v}");
    let default_classes: Vec<u64> = it[1..]
        .iter()
        .map(|i| {
            assert_eq!(i["error_code"], json!(0), "{i}");
            assert!(i["bbox"].is_array(), "a pear photo answered no_pear: {i}");
            i["result"].as_u64().unwrap()
        })
        .collect();
    // The shipped samples include normal pears the default rule calls normal,
    // so the strict threshold below changes something.
    assert!(default_classes.contains(&0), "{v}");

    let strict = TestServer::start(&[("model.normal_threshold", "1.0")]);
    let mut c = strict.client();
    let v = c.request(&json!({"cmd": 0x01, "request_data": names}).to_string());
    let it = items(&v);
    assert_eq!(it.len(), names.len(), "{v}");
    for (item, default_class) in it.iter().zip(&default_classes) {
        assert_eq!(item["error_code"], json!(0), "{item}");
        let class = item["result"].as_u64().unwrap();
        assert_ne!(class, 0, "normal at normal_threshold 1.0: {item}");
        assert_ne!(item["label"], json!("normal"), "{item}");
        assert!(item["bbox"].is_array(), "{item}");
        let confidence = item["confidence"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&confidence), "{item}");
        if *default_class != 0 {
            assert_eq!(class, *default_class, "{item}");
        }
    }
    // The empty scene keeps the original's answer without the key.
    let v = c.request(r#"{"cmd": 0x01, "request_data": ["empty_01.jpg"]}"#);
    assert_eq!(v["response_data"][0]["result"], json!(0), "{v}");
}

/// A `no_pear_result` that is no class of the classifier stops the start with
/// one clear error naming the key.
#[test]
fn no_pear_result_out_of_range_is_a_startup_error() {
    let err = TestServer::try_start(&[("model.no_pear_result", "8")])
        .err()
        .expect("start should fail");
    assert!(err.contains("model.no_pear_result"), "{err}");
    assert!(err.contains("classes"), "{err}");
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
    // The spare model answers differently from the shipped one (the tiny parity
    // fixture), so each file's answer tells which model classified it.
    const FILES: usize = 200;
    // Not a test of the time limit: 200 files on one worker can take longer than the
    // default 10 s when the machine is loaded (seen at load average 8).
    let server = TestServer::start(&[
        ("inference.workers", "1"),
        ("inference.time_limit_ms", "600000"),
    ]);
    std::fs::copy(
        common::repo().join("tests/fixtures/parity/tiny_classifier.onnx"),
        server.models_dir().join("spare.onnx"),
    )
    .unwrap();
    let answer = |i: &Value| {
        (
            i["label"].clone(),
            i["confidence"].clone(),
            i["bbox"].clone(),
        )
    };
    let mut busy = server.client();
    let old = busy.request(r#"{"cmd": 1, "request_data": ["normal_01.jpg"]}"#);
    let old = answer(&items(&old)[0]);
    let names = vec!["\"normal_01.jpg\""; FILES].join(",");
    busy.send(format!(r#"{{"cmd": 1, "request_data": [{names}]}}"#).as_bytes());
    // The request is queued before the swap, and files are still waiting after it.
    server.wait_status("the request queued", |r| {
        r["queue_depth"].as_u64().unwrap_or(0) > 0
    });
    let mut admin = server.client();
    let v = admin.request(r#"{"cmd": 0x26, "request_data": ["spare.onnx"]}"#);
    assert_eq!(v["response_data"][0]["result"], json!(2), "{v}");
    let status = admin.request(r#"{"cmd": 0x40, "request_data": null}"#);
    let left = status["response_data"][0]["result"]["queue_depth"].clone();
    assert!(
        left.as_u64().unwrap_or(0) > 0,
        "the request was no longer in flight when the swap answered: {status}"
    );
    let new = admin.request(r#"{"cmd": 1, "request_data": ["normal_01.jpg"]}"#);
    let new = answer(&items(&new)[0]);
    // Every file of the running request is answered, each whole by the old or the
    // new model: any old ones first (started before the swap), then only new ones.
    let v = busy.read_json_line();
    let it = items(&v);
    assert_eq!(it.len(), FILES);
    assert!(it.iter().all(|i| i["error_code"] == json!(0)), "{v}");
    let by_new: Vec<bool> = it
        .iter()
        .map(|i| {
            let a = answer(i);
            assert!(a == old || a == new, "neither model's answer: {i}");
            a == new
        })
        .collect();
    assert!(
        by_new[FILES - 1],
        "files queued after the swap used the old model"
    );
    let first_new = by_new.iter().position(|&n| n).unwrap();
    assert!(
        by_new[first_new..].iter().all(|&n| n),
        "an old-model answer after a new-model one: {by_new:?}"
    );
    assert_ne!(old, new, "the spare model must answer differently");
    let v = admin.request(r#"{"cmd": 0x22, "request_data": null}"#);
    assert_eq!(v["response_data"][0]["file_name"], json!("spare.onnx"));
}
