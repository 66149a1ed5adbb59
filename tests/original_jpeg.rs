//! Bad JPEGs through the original-model path, over TCP: models exported from the
//! Python original (`tests/fixtures/export/`, whose metadata selects libjpeg-turbo's
//! full-size decode, `src/inference/libjpeg.rs`) asked about a real line photo and
//! about damaged copies of it in one 0x01 request.
//!
//! What is asserted: the whole photo answers error_code 0 with a result; a copy cut in
//! half, one cut just before its end-of-image marker, one whose frame header says
//! 7-bit samples (a fatal libjpeg error: its default handler would call exit()) and
//! one that is only a JPEG signature each answer error_code 2 with a message that says
//! what is wrong; the server is still running and answers the whole photo the same
//! afterwards, on the same connection and on a new one.

mod common;

use common::TestServer;
use serde_json::{json, Value};

const PHOTO: &str = "class6__619_70000583033920250924_133859-0.jpg";

fn fixture(path: &str) -> String {
    common::repo()
        .join("tests/fixtures")
        .join(path)
        .display()
        .to_string()
}

fn classify(c: &mut common::Client, names: &[&str]) -> Vec<Value> {
    let v = c.request(&json!({"cmd": 0x01, "request_data": names}).to_string());
    let items = v["response_data"].as_array().expect("items").clone();
    assert_eq!(items.len(), names.len(), "{v}");
    items
}

#[test]
fn damaged_jpegs_get_an_error_and_change_nothing() {
    let classifier = fixture("export/tiny_classifier.onnx");
    let detector = fixture("export/tiny_detector.onnx");
    let server = TestServer::start(&[
        ("model.model_path", &classifier),
        ("model.preprocessor_path", &detector),
        ("model.normal_threshold", "null"),
    ]);
    let bytes = std::fs::read(fixture(&format!("real/{PHOTO}"))).expect("photo");
    let sof = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline frame header");
    let mut seven_bit = bytes.clone();
    seven_bit[sof + 4] = 7;
    let images = server.images_dir();
    for (name, data) in [
        ("whole.jpg", &bytes[..]),
        ("half.jpg", &bytes[..bytes.len() / 2]),
        ("no_eoi.jpg", &bytes[..bytes.len() - 2]),
        ("seven_bit.jpg", &seven_bit[..]),
        ("signature.jpg", &b"\xFF\xD8\xFF"[..]),
    ] {
        std::fs::write(images.join(name), data).expect("write");
    }

    let mut c = server.client();
    let names = [
        "whole.jpg",
        "half.jpg",
        "no_eoi.jpg",
        "seven_bit.jpg",
        "signature.jpg",
    ];
    let items = classify(&mut c, &names);
    let whole = &items[0];
    assert_eq!(whole["error_code"], json!(0), "{whole}");
    assert!(whole["result"].is_u64(), "{whole}");
    for (item, says) in items[1..].iter().zip([
        "truncated JPEG",
        "truncated JPEG",
        "precision",
        "truncated JPEG",
    ]) {
        assert_eq!(item["error_code"], json!(2), "{item}");
        let message = item["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{says:?} not in {item}");
    }

    // Still up, same answer for the whole photo, old connection and new.
    let again = classify(&mut c, &["whole.jpg"]);
    assert_eq!(&again[0], whole);
    let fresh = classify(&mut server.client(), &["whole.jpg", "half.jpg"]);
    assert_eq!(&fresh[0], whole);
    assert_eq!(fresh[1], items[1]);
}
