//! The pear detector: a YOLOv8-detect ONNX export (ultralytics layout).
//!
//! Input `[B, 3, H, W]` RGB 0..1, letterboxed with grey 114 padding. The size comes from
//! the model's input shape when fixed, else the `imgsz` metadata, else the configured
//! `img_size`. Output `[B, 4 + nc, N]`: `cx, cy, w, h` in input pixels then the class
//! scores, already sigmoid (a transposed `[B, N, 4 + nc]` export is recognised too).
//! We keep class-0 candidates at or above the confidence threshold, run greedy NMS and
//! take the highest-scoring survivor, mapped back to source pixels.
//! When the batch axis is dynamic, several images run in one call.

use std::path::Path;

use image::RgbImage;

use super::metadata;
use super::preprocess::{letterbox_into, ChwTarget, Letterbox};
use super::session::ImageModel;
use super::InferenceError;

/// One detected box, corners in some pixel space (input or source).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
}

impl Detection {
    pub fn corners(&self) -> [f32; 4] {
        [self.x1, self.y1, self.x2, self.y2]
    }
    fn area(&self) -> f32 {
        (self.x2 - self.x1).max(0.0) * (self.y2 - self.y1).max(0.0)
    }
}

/// Intersection over union of two boxes (0 when either is empty).
pub fn iou(a: &Detection, b: &Detection) -> f32 {
    let w = (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0.0);
    let h = (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0.0);
    let inter = w * h;
    let union = a.area() + b.area() - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Greedy non-maximum suppression: highest score first, drop boxes overlapping a kept
/// one by more than `iou_threshold`. Returns the survivors, best first.
pub fn nms(mut dets: Vec<Detection>, iou_threshold: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut keep: Vec<Detection> = Vec::new();
    for d in dets {
        if keep.iter().all(|k| iou(k, &d) <= iou_threshold) {
            keep.push(d);
        }
    }
    keep
}

/// Decodes one image's YOLOv8 output. `data` is `rows x cols` row-major; when
/// `channels_first` the rows are channels (`[4+nc, N]`), else candidates (`[N, 4+nc]`).
/// Keeps candidates of `class` whose score is at least `conf`; boxes in input pixels.
pub fn decode_yolo(
    data: &[f32],
    rows: usize,
    cols: usize,
    channels_first: bool,
    class: usize,
    conf: f32,
) -> Vec<Detection> {
    let (channels, n) = if channels_first {
        (rows, cols)
    } else {
        (cols, rows)
    };
    if channels < 5 + class || data.len() < rows * cols {
        return Vec::new();
    }
    let at = |ch: usize, i: usize| {
        if channels_first {
            data[ch * n + i]
        } else {
            data[i * channels + ch]
        }
    };
    (0..n)
        .filter_map(|i| {
            let score = at(4 + class, i);
            // `partial_cmp` so that NaN scores are dropped too.
            if score.partial_cmp(&conf).is_none_or(|o| o.is_lt()) {
                return None;
            }
            let (cx, cy, w, h) = (at(0, i), at(1, i), at(2, i), at(3, i));
            let d = Detection {
                x1: cx - w / 2.0,
                y1: cy - h / 2.0,
                x2: cx + w / 2.0,
                y2: cy + h / 2.0,
                score,
            };
            d.corners().iter().all(|v| v.is_finite()).then_some(d)
        })
        .collect()
}

/// A loaded detector.
pub struct Detector {
    pub model: ImageModel,
    /// Class names from the metadata (informational).
    pub names: Option<Vec<String>>,
}

impl Detector {
    pub fn load(
        path: &Path,
        sessions: usize,
        fallback_size: u32,
    ) -> Result<Detector, InferenceError> {
        let model = ImageModel::load(path, sessions, "detector", "imgsz", fallback_size)?;
        let out_rank = model.output_shape.len();
        if out_rank != 3 {
            return Err(InferenceError::Incompatible {
                path: path.display().to_string(),
                what: format!("detector output must be [B, 4+nc, N], found rank {out_rank}"),
            });
        }
        let names = model
            .metadata("names")
            .and_then(|s| metadata::parse_names(&s));
        Ok(Detector { model, names })
    }

    /// Letterboxes `imgs` into one `[len, 3, H, W]` buffer.
    pub fn preprocess(&self, imgs: &[&RgbImage]) -> (Vec<f32>, Vec<Letterbox>) {
        let (h, w) = self.model.size();
        let per = 3 * h * w;
        let mut buf = vec![0f32; per * imgs.len()];
        let boxes = imgs
            .iter()
            .zip(buf.chunks_mut(per))
            .map(|(img, slot)| {
                letterbox_into(
                    img,
                    &mut ChwTarget {
                        data: slot,
                        width: w,
                        height: h,
                    },
                )
            })
            .collect();
        (buf, boxes)
    }

    /// Runs the model on a preprocessed buffer of `count` images and returns, per image,
    /// all class-0 candidates at or above `conf`, in input pixels.
    pub fn run(
        &self,
        buf: &[f32],
        count: usize,
        conf: f32,
    ) -> Result<Vec<Vec<Detection>>, InferenceError> {
        let mut all = Vec::with_capacity(count);
        self.model.run_chunked(buf, count, |b, dims, data| {
            if dims.len() != 3 || dims[0] != b {
                return Err(InferenceError::BadOutput(format!(
                    "detector output shape {dims:?} for batch {b}"
                )));
            }
            let (rows, cols) = (dims[1], dims[2]);
            // Channels are the short axis: 4+nc is small, N is in the thousands.
            let channels_first = rows <= cols;
            for i in 0..b {
                let one = &data[i * rows * cols..(i + 1) * rows * cols];
                all.push(decode_yolo(one, rows, cols, channels_first, 0, conf));
            }
            Ok(())
        })?;
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x1: f32, y1: f32, x2: f32, y2: f32, score: f32) -> Detection {
        Detection {
            x1,
            y1,
            x2,
            y2,
            score,
        }
    }

    #[test]
    fn iou_basics() {
        let a = det(0.0, 0.0, 10.0, 10.0, 1.0);
        assert!((iou(&a, &a) - 1.0).abs() < 1e-6);
        assert_eq!(iou(&a, &det(20.0, 20.0, 30.0, 30.0, 1.0)), 0.0);
        let half = det(5.0, 0.0, 15.0, 10.0, 1.0);
        assert!((iou(&a, &half) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(
            iou(&det(0.0, 0.0, 0.0, 0.0, 1.0), &det(0.0, 0.0, 0.0, 0.0, 1.0)),
            0.0
        );
    }

    #[test]
    fn nms_keeps_best_and_distinct() {
        let dets = vec![
            det(0.0, 0.0, 10.0, 10.0, 0.6),
            det(1.0, 1.0, 11.0, 11.0, 0.9),
            det(50.0, 50.0, 60.0, 60.0, 0.7),
        ];
        let kept = nms(dets, 0.45);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].score, 0.9);
        assert_eq!(kept[1].score, 0.7);
        // A loose threshold keeps overlapping boxes.
        let kept = nms(
            vec![
                det(0.0, 0.0, 10.0, 10.0, 0.6),
                det(1.0, 1.0, 11.0, 11.0, 0.9),
            ],
            0.9,
        );
        assert_eq!(kept.len(), 2);
    }

    #[test]
    fn decode_both_layouts() {
        // Two candidates, nc = 2: [cx, cy, w, h, s0, s1] per candidate.
        let cands = [
            [50.0, 40.0, 20.0, 10.0, 0.8, 0.1],
            [10.0, 10.0, 4.0, 4.0, 0.2, 0.9],
        ];
        let mut cf = vec![0f32; 12];
        let mut cl = vec![0f32; 12];
        for (i, c) in cands.iter().enumerate() {
            for (ch, v) in c.iter().enumerate() {
                cf[ch * 2 + i] = *v;
                cl[i * 6 + ch] = *v;
            }
        }
        for (data, rows, cols, first) in [(&cf, 6, 2, true), (&cl, 2, 6, false)] {
            let d = decode_yolo(data, rows, cols, first, 0, 0.5);
            assert_eq!(d, vec![det(40.0, 35.0, 60.0, 45.0, 0.8)]);
            assert_eq!(decode_yolo(data, rows, cols, first, 0, 0.1).len(), 2);
        }
        // Too few channels for class 0: nothing, no panic.
        assert!(decode_yolo(&[0.0; 8], 4, 2, true, 0, 0.0).is_empty());
        assert!(decode_yolo(&[f32::NAN; 5], 5, 1, true, 0, 0.0).is_empty());
    }
}
