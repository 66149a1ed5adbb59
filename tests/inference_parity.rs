//! Parity with a Python onnxruntime reference (tools/parity/make_reference.py): for
//! every `tests/fixtures/parity/reference*.json`, the Rust pipeline must give the same
//! class, the same box (±1 px) and probabilities within 1e-3 on the same images. The
//! probabilities cover the classifier's crop too: the detector box widened by the
//! `crop_margin` metadata exactly as `Rect::widened` does. A reference must name the
//! hash of every model it was made with (else the test fails, asking to regenerate it).
//!
//! The 1e-3 bound is checked on lossless PNG fixtures, where both sides start from the
//! same pixels, so it measures preprocessing + inference only (we see ~1e-7). JPEG
//! fixtures are checked too, but with `JPEG_TOLERANCE`: Pillow (libjpeg-turbo) and the
//! `image` crate (zune-jpeg) decode the same file to pixels that differ by a level or
//! two, which is a decoder difference, not a pipeline one.

use std::path::{Path, PathBuf};

use pear_server::inference::queue::decode_image;
use pear_server::inference::{Pipeline, PipelineOptions};
use serde_json::Value;

const TOLERANCE: f64 = 1e-3;
const JPEG_TOLERANCE: f64 = 1e-2;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn references() -> Vec<PathBuf> {
    let dir = root().join("tests/fixtures/parity");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.starts_with("reference") && n.ends_with(".json")
        })
        .collect();
    v.sort();
    v
}

/// FNV-1a 64 (same as make_reference.py), to tell "the model changed" from "we differ".
fn fnv1a64(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read model");
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x}")
}

fn check(reference: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(reference).expect("read reference");
    let r: Value = serde_json::from_str(&text).expect("reference json");
    let path = |k: &str| r[k].as_str().map(|p| root().join(p));
    let classifier = path("classifier").expect("classifier path");
    let detector = path("detector");
    let regenerate = r["command"]
        .as_str()
        .unwrap_or("tools/parity/make_reference.py")
        .to_owned();
    // Every model the reference names must carry its hash: a reference without one
    // cannot tell "the model changed" from "the pipeline differs", so it fails here
    // instead of being checked (or skipped) silently.
    for (model, key) in [
        (Some(&classifier), "classifier_fnv1a64"),
        (detector.as_ref(), "detector_fnv1a64"),
    ] {
        let Some(m) = model else { continue };
        let want = r[key].as_str().unwrap_or_else(|| {
            panic!(
                "{} has no {key} for {}; regenerate it with:\n{regenerate}",
                reference.display(),
                m.display()
            )
        });
        assert_eq!(
            fnv1a64(m),
            want,
            "{} changed since {} was written; regenerate it with:\n{regenerate}",
            m.display(),
            reference.display(),
        );
    }
    let opts = PipelineOptions {
        confidence_threshold: r["confidence_threshold"].as_f64().expect("conf") as f32,
        iou_threshold: r["iou_threshold"].as_f64().expect("iou") as f32,
        img_size: r["img_size"].as_u64().expect("img_size") as u32,
        classes: r["classes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        sessions: 1,
    };
    let pipeline = Pipeline::load(&classifier, detector.as_deref(), &opts).expect("load models");
    // The crop widening (`crop_margin` metadata) is read the same way on both sides.
    let margin = r["crop_margin"].as_f64().unwrap_or_else(|| {
        panic!(
            "{} has no crop_margin; regenerate it with:\n{regenerate}",
            reference.display()
        )
    });
    assert_eq!(
        pipeline.classifier().crop_margin,
        margin as f32,
        "{}: crop_margin",
        reference.display()
    );
    let dir = reference.parent().expect("parent");
    let mut problems = Vec::new();
    let images = r["images"].as_array().expect("images");
    assert!(!images.is_empty());
    for item in images {
        let file = item["file"].as_str().expect("file");
        let bytes = std::fs::read(dir.join(file)).expect("read image");
        let img = decode_image(&bytes).expect("decode").to_rgb8();
        let got = pipeline
            .analyze_rgb(&[&img])
            .pop()
            .expect("one result")
            .expect("analysis");
        let want_class = item["class"].as_u64().expect("class") as usize;
        let name = format!("{}: {file}", reference.display());
        if got.verdict.class != want_class
            || got.verdict.label != item["label"].as_str().unwrap_or("")
        {
            problems.push(format!(
                "{name}: class {} {:?}, want {item}",
                got.verdict.class, got.verdict.label
            ));
        }
        let want_box: Option<Vec<i64>> = item["bbox"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).collect());
        let got_box = got
            .verdict
            .bbox
            .map(|b| b.iter().map(|&v| i64::from(v)).collect::<Vec<_>>());
        let box_ok = match (&want_box, &got_box) {
            (Some(w), Some(g)) => w.iter().zip(g).all(|(a, b)| (a - b).abs() <= 1),
            (None, None) => true,
            _ => false,
        };
        if !box_ok {
            problems.push(format!("{name}: bbox {got_box:?}, want {want_box:?}"));
        }
        let want_p: Vec<f64> = item["probabilities"]
            .as_array()
            .expect("probabilities")
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        if want_p.len() != got.probabilities.len() {
            problems.push(format!(
                "{name}: {} probabilities, want {}",
                got.probabilities.len(),
                want_p.len()
            ));
            continue;
        }
        let worst = want_p
            .iter()
            .zip(&got.probabilities)
            .map(|(w, g)| (w - f64::from(*g)).abs())
            .fold(0.0, f64::max);
        eprintln!(
            "{name}: {} {:.4} bbox {got_box:?} max |dp| = {worst:.2e}",
            got.verdict.label, got.verdict.confidence
        );
        let lossless = file.to_ascii_lowercase().ends_with(".png");
        let tolerance = if lossless { TOLERANCE } else { JPEG_TOLERANCE };
        if worst > tolerance {
            problems.push(format!(
                "{name}: max probability difference {worst:.2e} > {tolerance}"
            ));
        }
    }
    problems
}

#[test]
fn rust_pipeline_matches_python_reference() {
    let refs = references();
    assert!(!refs.is_empty(), "no reference*.json fixtures");
    let problems: Vec<String> = refs.iter().flat_map(|r| check(r)).collect();
    assert!(
        problems.is_empty(),
        "parity failures:\n{}",
        problems.join("\n")
    );
}
