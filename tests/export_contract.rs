//! The contract of models exported from the Python original (`tools/export`), checked
//! without torch: `tests/fixtures/export/` holds two tiny models with the metadata
//! `export.py` writes (detector `pipeline` = `ultralytics_pt`, `crop_box` = `truncate`,
//! dynamic H/W; classifier `resize` = `shorter_side`, `channel_order` = `bgr`, dynamic
//! H/W), three PNG photos and `reference.json`: what the original's code path answers
//! with these models (cv2, ultralytics LetterBox + NMS + scale_boxes, int() crop, PIL,
//! torchvision Resize/ToTensor/Normalize), written by `tools/export/make_tiny.py`.
//!
//! The images go through the workers' own decode (`load_image` with the pipeline's
//! `decode_plan`), so the full-size decode such models need is checked too.

use std::path::PathBuf;

use pear_server::inference::classifier::ResizeMode;
use pear_server::inference::decode::DecodePlan;
use pear_server::inference::detector::DetectorMode;
use pear_server::inference::preprocess::ChannelOrder;
use pear_server::inference::queue::load_image;
use pear_server::inference::{Pipeline, PipelineOptions};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/export")
}

fn load(threshold: f32) -> Pipeline {
    let opts = PipelineOptions {
        confidence_threshold: threshold,
        sessions: 1,
        ..PipelineOptions::default()
    };
    Pipeline::load(
        &dir().join("tiny_classifier.onnx"),
        Some(&dir().join("tiny_detector.onnx")),
        &opts,
    )
    .expect("tiny exported models load")
}

#[test]
fn metadata_selects_the_original_pipeline() {
    let p = load(0.5);
    let det = p.detector().expect("detector");
    match det.mode {
        DetectorMode::Ultralytics(u) => {
            assert_eq!(
                (u.imgsz, u.stride, u.crop_class, u.max_det),
                (160, 32, 0, 300)
            );
            assert!((u.conf - 0.25).abs() < 1e-6 && (u.iou - 0.7).abs() < 1e-6);
        }
        DetectorMode::Square => panic!("pipeline metadata ignored"),
    }
    assert!(det.truncate_box);
    let cls = p.classifier();
    assert_eq!(cls.resize, ResizeMode::ShorterSide);
    assert_eq!(cls.channel_order, ChannelOrder::Bgr);
    assert_eq!(cls.model.size(), (48, 48));
    assert_eq!(cls.labels.len(), 8);
    // Exact pixels: never the scaled JPEG decode.
    assert_eq!(p.min_decode_side(), u32::MAX);
    assert_eq!(p.decode_plan(), DecodePlan::LikeOpenCv);
}

#[test]
fn answers_as_the_original_code_path() {
    let raw = std::fs::read_to_string(dir().join("reference.json")).expect("reference");
    let reference: Value = serde_json::from_str(&raw).expect("reference json");
    let threshold = reference["confidence_threshold"]
        .as_f64()
        .expect("threshold") as f32;
    let p = load(threshold);
    let files = reference["files"].as_object().expect("files");
    assert_eq!(files.len(), 3);
    for (name, want) in files {
        let img =
            load_image(&dir(), name, p.decode_plan()).unwrap_or_else(|_| panic!("{name} decodes"));
        assert_eq!(img.scale.factor, 1, "{name}: full-size decode");
        let analysis = p
            .analyze_scaled(&[(img.image.as_rgb8().expect("rgb"), img.scale)])
            .pop()
            .expect("one result")
            .expect("pipeline runs");
        let v = &analysis.verdict;
        assert_eq!(
            v.class as u64,
            want["class"].as_u64().expect("class"),
            "{name}"
        );
        let want_box: Vec<u32> = want["box"]
            .as_array()
            .expect("box")
            .iter()
            .map(|x| x.as_u64().expect("int") as u32)
            .collect();
        // int() of the same float: exact.
        assert_eq!(v.bbox.map(|b| b.to_vec()), Some(want_box), "{name}");
        let want_p: Vec<f64> = want["probabilities"]
            .as_array()
            .expect("probabilities")
            .iter()
            .map(|x| x.as_f64().expect("float"))
            .collect();
        assert_eq!(analysis.probabilities.len(), want_p.len(), "{name}");
        for (i, (got, exp)) in analysis.probabilities.iter().zip(&want_p).enumerate() {
            assert!(
                (f64::from(*got) - exp).abs() < 1e-4,
                "{name} p[{i}]: {got} vs {exp}"
            );
        }
        let score = want["score"].as_f64().expect("score");
        let det = analysis.detection.expect("detection");
        assert!((f64::from(det.score) - score).abs() < 1e-4, "{name}");
    }
}

#[test]
fn no_class0_box_above_the_threshold_is_no_pear() {
    // Every class-0 score is below 1.0: nothing passes, result 0 as the original.
    let p = load(1.0);
    let img = load_image(&dir(), "photo_0.png", p.decode_plan()).expect("decodes");
    let v = p
        .analyze_scaled(&[(img.image.as_rgb8().expect("rgb"), img.scale)])
        .pop()
        .expect("one")
        .expect("runs")
        .verdict;
    assert_eq!((v.class, v.bbox), (0, None));
}
