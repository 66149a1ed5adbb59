//! Held-out regression guard through the real server: 80 labelled line scenes
//! generated from a seed never used in training (`tests/fixtures/heldout/`,
//! labels `normal`, `dark_spot`, `scab`, `dent`), classified over TCP in one
//! 0x01 request with the shipped models and the default decision
//! (`model.normal_threshold` 0.5).
//!
//! Python onnxruntime measured accuracy 0.7875 and normal-vs-defect 0.825 on these
//! scenes with the same pipeline, the 128 px detector and the 224 px classifier
//! (0.7875 / 0.8375 with the 192 px detector); this server, decoding the JPEGs with
//! the `image` crate, measured 0.7875 / 0.8125 then (0.8000 / 0.8500 with the 192 px
//! detector). With the classifier at 192 px (issue 11's budget) it measures
//! 0.8750 / 0.8875. The floors below (0.80 / 0.85) leave room for JPEG decoder
//! differences, and catch a pipeline or model regression.
//! Every scene holds a pear, so every one must get a box.

mod common;

use std::collections::BTreeMap;

use common::TestServer;
use serde_json::json;

const MIN_ACCURACY: f64 = 0.80;
const MIN_NORMAL_VS_DEFECT: f64 = 0.85;

#[test]
fn heldout_accuracy_through_the_server() {
    let folder = common::repo().join("tests/fixtures/heldout");
    let labels: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(folder.join("labels.json")).unwrap())
            .unwrap();
    assert!(labels.len() >= 60, "expected about 80 labelled scenes");
    for truth in labels.values() {
        assert!(
            ["normal", "dark_spot", "scab", "dent"].contains(&truth.as_str()),
            "unexpected label {truth}"
        );
    }
    let folder_yaml = serde_json::to_string(&folder.display().to_string()).unwrap();
    let server = TestServer::start(&[("model.img_path", &folder_yaml)]);
    let mut c = server.client();

    let names: Vec<&String> = labels.keys().collect();
    let request = json!({"cmd": 1, "request_data": names}).to_string();
    let v = c.request(&request);
    let items = v["response_data"].as_array().expect("items");
    assert_eq!(items.len(), labels.len());

    let (mut correct, mut binary_correct) = (0usize, 0usize);
    let mut confusions = Vec::new();
    for (item, name) in items.iter().zip(&names) {
        assert_eq!(item["file_name"], json!(name), "{item}");
        assert_eq!(item["error_code"], json!(0), "{item}");
        let truth = &labels[name.as_str()];
        let got = item["label"].as_str().expect("label");
        assert_ne!(got, "no_pear", "a pear scene answered no_pear: {item}");
        let bbox = item["bbox"].as_array().expect("a pear scene gets a bbox");
        assert_eq!(bbox.len(), 4, "{item}");
        if got == truth {
            correct += 1;
        } else {
            confusions.push(format!("{name}: {truth} -> {got}"));
        }
        if (truth == "normal") == (got == "normal") {
            binary_correct += 1;
        }
    }
    let n = labels.len() as f64;
    let accuracy = correct as f64 / n;
    let binary = binary_correct as f64 / n;
    eprintln!(
        "held-out ({} scenes): accuracy {accuracy:.4}, normal-vs-defect {binary:.4}, errors {confusions:?}",
        labels.len()
    );
    assert!(
        accuracy >= MIN_ACCURACY,
        "accuracy {accuracy:.3} < {MIN_ACCURACY}: {confusions:?}"
    );
    assert!(
        binary >= MIN_NORMAL_VS_DEFECT,
        "normal-vs-defect {binary:.3} < {MIN_NORMAL_VS_DEFECT}: {confusions:?}"
    );
}
