//! Pipeline behaviour on the tiny fixture models (tools/ort/make_tiny_models.py):
//! detection/no detection, the no-detector path, metadata fallbacks, batching vs
//! single images, fixed-batch models, and load errors.

use std::path::{Path, PathBuf};

use image::{DynamicImage, Rgb, RgbImage};
use pear_server::inference::{InferenceError, Pipeline, PipelineOptions};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name)
}

fn opts() -> PipelineOptions {
    PipelineOptions {
        sessions: 2,
        ..PipelineOptions::default()
    }
}

/// Blue background with a yellow "pear" rectangle at (x, y, w, h).
fn scene(w: u32, h: u32, pear: Option<(u32, u32, u32, u32)>) -> DynamicImage {
    let mut img = RgbImage::from_pixel(w, h, Rgb([10, 20, 200]));
    if let Some((px, py, pw, ph)) = pear {
        for y in py..py + ph {
            for x in px..px + pw {
                img.put_pixel(x, y, Rgb([230, 210, 30]));
            }
        }
    }
    DynamicImage::ImageRgb8(img)
}

#[test]
fn detects_a_pear_and_reports_its_box() {
    let p = Pipeline::load(
        &fixture("tiny_classifier.onnx"),
        Some(&fixture("tiny_detector.onnx")),
        &opts(),
    )
    .expect("load");
    assert_eq!(p.classifier_file(), "tiny_classifier.onnx");
    assert_eq!(p.labels().len(), 8);
    assert_eq!(p.labels()[0], "normal");
    let det = p.detector().expect("detector");
    assert_eq!(
        (
            det.model.input_w,
            det.model.input_h,
            det.model.dynamic_batch
        ),
        (320, 320, true)
    );
    assert_eq!(det.names.as_deref(), Some(&["pear".to_owned()][..]));

    let v = p
        .classify(&scene(640, 480, Some((300, 200, 120, 140))))
        .expect("classify");
    let bbox = v.bbox.expect("a pear box");
    assert!(bbox[2] <= 640 && bbox[3] <= 480, "{bbox:?}");
    // The box overlaps the pear.
    assert!(
        bbox[0] < 420 && bbox[2] > 300 && bbox[1] < 340 && bbox[3] > 200,
        "{bbox:?}"
    );
    assert!(v.class < 8 && v.confidence > 0.0 && v.confidence <= 1.0);
    assert_eq!(v.label, p.labels()[v.class]);
}

#[test]
fn no_pear_means_class_zero_without_box() {
    let p = Pipeline::load(
        &fixture("tiny_classifier.onnx"),
        Some(&fixture("tiny_detector.onnx")),
        &opts(),
    )
    .expect("load");
    let v = p.classify(&scene(200, 300, None)).expect("classify");
    assert_eq!((v.class, v.label.as_str(), v.bbox), (0, "no_pear", None));
}

#[test]
fn without_detector_the_whole_image_is_classified() {
    let p = Pipeline::load(&fixture("tiny_classifier.onnx"), None, &opts()).expect("load");
    assert!(p.detector().is_none());
    let v = p.classify(&scene(64, 48, None)).expect("classify");
    assert_eq!(v.bbox, Some([0, 0, 64, 48]));
    // Grey-scale and RGBA inputs are converted.
    let grey = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(30, 30, image::Luma([128])));
    assert!(p.classify(&grey).is_ok());
    let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
        30,
        30,
        image::Rgba([1, 2, 3, 0]),
    ));
    assert!(p.classify(&rgba).is_ok());
    // An image with no pixels is an error, not a panic.
    let empty = DynamicImage::ImageRgb8(RgbImage::new(0, 0));
    assert!(matches!(
        p.classify(&empty),
        Err(InferenceError::EmptyImage)
    ));
}

#[test]
fn labels_fall_back_to_config_then_to_indices() {
    let classes: Vec<String> = (0..8).map(|i| format!("cfg{i}")).collect();
    let o = PipelineOptions {
        classes: classes.clone(),
        img_size: 64,
        ..opts()
    };
    let p = Pipeline::load(&fixture("tiny_classifier_nometa.onnx"), None, &o).expect("load");
    assert_eq!(p.labels(), &classes[..]);
    // The input shape is fixed in the graph, so img_size is not used.
    let model = &p.classifier().model;
    assert_eq!((model.input_w, model.input_h), (96, 96));
    let short = PipelineOptions {
        classes: vec!["a".into()],
        ..opts()
    };
    let p = Pipeline::load(&fixture("tiny_classifier_nometa.onnx"), None, &short).expect("load");
    assert_eq!(p.labels()[0], "a");
    assert_eq!(p.labels()[7], "class_7");
}

#[test]
fn batch_matches_single_and_fixed_batch_detector_works() {
    let imgs = vec![
        scene(640, 480, Some((300, 200, 120, 140))),
        scene(200, 300, None),
        scene(333, 777, Some((10, 400, 200, 250))),
    ];
    for det in ["tiny_detector.onnx", "tiny_detector_b1.onnx"] {
        let p = Pipeline::load(
            &fixture("tiny_classifier.onnx"),
            Some(&fixture(det)),
            &opts(),
        )
        .expect("load");
        let batch = p.classify_batch(&imgs);
        assert_eq!(batch.len(), 3);
        for (img, b) in imgs.iter().zip(batch) {
            let one = p.classify(img).expect("single");
            let b = b.expect("batch");
            assert_eq!(
                (one.class, &one.label, one.bbox),
                (b.class, &b.label, b.bbox),
                "{det}"
            );
            assert!((one.confidence - b.confidence).abs() < 1e-5);
        }
    }
}

#[test]
fn load_errors_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let corrupt = dir.path().join("corrupt.onnx");
    std::fs::write(&corrupt, b"this is not a protobuf at all").expect("write");
    let e = Pipeline::load(&corrupt, None, &opts()).expect_err("corrupt model");
    assert!(matches!(e, InferenceError::Load { .. }), "{e}");
    let missing = dir.path().join("missing.onnx");
    let e = Pipeline::load(&missing, None, &opts()).expect_err("missing model");
    assert!(matches!(e, InferenceError::Load { .. }), "{e}");
    // A classifier given as the detector: output rank 2, refused up front.
    let e = Pipeline::load(
        &fixture("tiny_classifier.onnx"),
        Some(&fixture("tiny_classifier.onnx")),
        &opts(),
    )
    .expect_err("wrong model kind");
    assert!(matches!(e, InferenceError::Incompatible { .. }), "{e}");
    // Truncated model.
    let bytes = std::fs::read(fixture("tiny_detector.onnx")).expect("read");
    let trunc = dir.path().join("trunc.onnx");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).expect("write");
    assert!(Pipeline::load(&fixture("tiny_classifier.onnx"), Some(&trunc), &opts()).is_err());
}
