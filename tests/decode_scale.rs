//! Scaled JPEG decoding does not change the verdicts on the real line photos
//! (`tests/fixtures/real/`, 2048×1536, listed in `labels.json`).
//!
//! Each photo runs through the shipped models twice: decoded at full size
//! ([`decode_image`]) and decoded as the workers do ([`decode_image_scaled`] with the
//! pipeline's [`Pipeline::min_decode_side`], 1/4 scale for these photos). Asserted per
//! photo: the same answer (class, or `no_pear` for both), p(normal) (what the reject
//! decision reads) within [`MAX_P_NORMAL_DIFF`], every class probability within
//! [`MAX_PROBABILITY_DIFF`], and the box in source pixels within [`MAX_BOX_DIFF`] of
//! the photo width on every edge. The differences are printed
//! (`cargo test --test decode_scale -- --nocapture`).
//!
//! Measured when written (shipped models of ac25b92, 1/4 scale): same class on all
//! 15 files; max probability difference 0.0697 on `class1__423…` and ≤ 0.025 on every
//! other photo; boxes within 3 px (0.15 % of the width); `normal0__501…` p(normal)
//! 0.5858 full / 0.5992 scaled. With the 128 px detector (issue 11's budget): same
//! class on all 15 files; max probability difference 0.034 (`class6__619…`), 0.006 on
//! `class1__423…`, which needed a wider bound (0.075) with the 192 px detector's box and
//! no longer does; boxes within 22 px (1.07 % of the width) on `class6__619…` and 2 px
//! on every other photo (one detector input pixel is 16 source pixels now);
//! `normal0__501…` p(normal) 0.843 full / 0.850 scaled. With the classifier at 192 px
//! (same budget work): same class on all 15 files; p(normal) within 0.011
//! (`normal0__501…` 0.846 / 0.835); the split between two defect classes moves more
//! (max 0.0905, `class4__698…`: scab 0.727 full / 0.817 scaled, dark spot the rest), so
//! the bound on every class probability is 0.10 and p(normal) has its own, tighter one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pear_server::inference::decode::{decode_image, decode_image_scaled};
use pear_server::inference::{Analysis, Decision, Pipeline, PipelineOptions};
use serde_json::Value;

const MAX_PROBABILITY_DIFF: f32 = 0.10;
const MAX_P_NORMAL_DIFF: f32 = 0.03;
/// Fraction of the photo width.
const MAX_BOX_DIFF: f32 = 0.02;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pipeline() -> Pipeline {
    let models = root().join("models");
    let opts = PipelineOptions {
        confidence_threshold: 0.5,
        iou_threshold: 0.45,
        img_size: 320,
        classes: Vec::new(),
        sessions: 1,
    };
    Pipeline::load(
        &models.join("pear_classifier.onnx"),
        Some(&models.join("pear_detector.onnx")),
        &opts,
    )
    .expect("load the shipped models")
    // The server's default decision (config/server_config.yaml).
    .with_decision(Decision {
        normal_threshold: Some(0.5),
        no_pear_result: 0,
    })
    .expect("decision")
}

fn one(results: Vec<Result<Analysis, pear_server::inference::InferenceError>>) -> Analysis {
    results
        .into_iter()
        .next()
        .expect("one result")
        .expect("analysis")
}

#[test]
fn scaled_decoding_keeps_the_verdicts_of_the_real_photos() {
    let folder = root().join("tests/fixtures/real");
    let labels: BTreeMap<String, Value> = serde_json::from_str(
        &std::fs::read_to_string(folder.join("labels.json")).expect("labels.json"),
    )
    .expect("labels json");
    assert_eq!(labels.len(), 15, "14 photos and the empty belt");
    let p = pipeline();
    let min_side = p.min_decode_side();
    println!("min_decode_side {min_side}");
    println!(
        "{:<48} {:>6} {:>9} {:>9} {:>15} {:>8} {:>7}",
        "photo", "factor", "class", "p(class)", "p(normal)", "max|dp|", "box px"
    );
    let (mut max_dp, mut max_box, mut scaled_photos) = (0f32, 0f32, 0usize);
    let mut problems = Vec::new();
    for name in labels.keys() {
        let bytes = std::fs::read(folder.join(name)).expect("read photo");
        let full_img = decode_image(&bytes).expect("full decode").to_rgb8();
        let scaled = decode_image_scaled(&bytes, min_side).expect("scaled decode");
        let scaled_img = scaled.image.to_rgb8();
        let s = scaled.scale;
        assert_eq!(
            (s.source_width, s.source_height),
            full_img.dimensions(),
            "{name}"
        );
        if full_img.width().min(full_img.height()) >= 2 * min_side {
            assert!(s.factor >= 2, "{name}: not scaled");
            scaled_photos += 1;
        }
        let full = one(p.analyze_rgb(&[&full_img]));
        let small = one(p.analyze_scaled(&[(&scaled_img, s)]));

        let dp = full
            .probabilities
            .iter()
            .zip(&small.probabilities)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let box_px = match (full.verdict.bbox, small.verdict.bbox) {
            (Some(a), Some(b)) => a
                .iter()
                .zip(&b)
                .map(|(x, y)| x.abs_diff(*y))
                .max()
                .unwrap_or(0) as f32,
            (None, None) => 0.0,
            _ => f32::INFINITY,
        };
        let p_normal = |a: &Analysis| a.probabilities.first().copied().unwrap_or(f32::NAN);
        println!(
            "{name:<48} {:>6} {:>4} {:>4} {:>4.3} {:>4.3} {:>7.4} {:>7.4} {dp:>8.4} {box_px:>7}",
            s.factor,
            full.verdict.class,
            small.verdict.class,
            full.verdict.confidence,
            small.verdict.confidence,
            p_normal(&full),
            p_normal(&small),
        );
        max_dp = max_dp.max(dp);
        max_box = max_box.max(box_px / full_img.width() as f32);

        if (full.verdict.class, &full.verdict.label) != (small.verdict.class, &small.verdict.label)
        {
            problems.push(format!(
                "{name}: class {} ({}) at full size, {} ({}) scaled; p(normal) {} vs {}",
                full.verdict.class,
                full.verdict.label,
                small.verdict.class,
                small.verdict.label,
                p_normal(&full),
                p_normal(&small)
            ));
        }
        let dp_normal = (p_normal(&full) - p_normal(&small)).abs();
        if full.probabilities.len() != small.probabilities.len()
            || dp > MAX_PROBABILITY_DIFF
            || dp_normal > MAX_P_NORMAL_DIFF
        {
            problems.push(format!(
                "{name}: probabilities {:?} at full size, {:?} scaled",
                full.probabilities, small.probabilities
            ));
        }
        if box_px > MAX_BOX_DIFF * full_img.width() as f32 {
            problems.push(format!(
                "{name}: box {:?} at full size, {:?} scaled",
                full.verdict.bbox, small.verdict.bbox
            ));
        }
    }
    println!(
        "max |p(full) - p(scaled)| {max_dp:.4}; max box difference {:.2} % of the width",
        max_box * 100.0
    );
    assert!(
        scaled_photos >= 14,
        "only {scaled_photos} photos were scaled"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
