//! The pear detector: a YOLOv8-detect ONNX export (ultralytics layout).
//!
//! Input `[B, 3, H, W]` RGB 0..1, letterboxed with grey 114 padding. The size comes from
//! the model's input shape when fixed, else the `imgsz` metadata, else the configured
//! `img_size`. Output `[B, 4 + nc, N]`: `cx, cy, w, h` in input pixels then the class
//! scores, already sigmoid (a transposed `[B, N, 4 + nc]` export is recognised too).
//! We keep class-0 candidates at or above the confidence threshold, run greedy NMS and
//! take the highest-scoring survivor, mapped back to source pixels.
//! When the batch axis is dynamic, several images run in one call.
//!
//! Metadata `pipeline` = `ultralytics_pt` (written by `tools/export` for the Python
//! original's `.pt`) selects what `YOLO(path).predict(img)` does instead: the
//! [`StrideLetterbox`] (imgsz from `imgsz`, padded only to a multiple of `stride`, so
//! the H and W axes must be dynamic) with OpenCV's bilinear resize, every candidate
//! labelled with its best class, kept when that score is above `nms_conf` (0.25),
//! NMS per class at IoU `nms_iou` (0.7), at most 300 boxes by score; the first box of
//! class `crop_class` (0) is the pear when its score reaches `confidence_threshold`.
//! The config's `iou_threshold` does not apply to such a model.

use std::path::Path;

use image::RgbImage;

use super::metadata;
use super::preprocess::{
    letterbox_into, stride_letterbox_into, ChwTarget, Letterbox, StrideLetterbox,
};
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
    /// A box from its corners `[x1, y1, x2, y2]`.
    pub fn from_corners([x1, y1, x2, y2]: [f32; 4], score: f32) -> Detection {
        Detection {
            x1,
            y1,
            x2,
            y2,
            score,
        }
    }

    /// A box from the YOLO layout (centre and size); `None` when a corner is not finite.
    fn from_center(cx: f32, cy: f32, w: f32, h: f32, score: f32) -> Option<Detection> {
        let d = Detection::from_corners(
            [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
            score,
        );
        d.corners().iter().all(|v| v.is_finite()).then_some(d)
    }

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

/// One image's YOLOv8 output read by channel and candidate: `data` is `rows x cols`
/// row-major, the rows being channels (`[4+nc, N]`) when `channels_first`, else
/// candidates (`[N, 4+nc]`).
struct YoloOutput<'a> {
    data: &'a [f32],
    channels: usize,
    n: usize,
    channels_first: bool,
}

impl<'a> YoloOutput<'a> {
    /// `None` when the output has fewer than `min_channels` channels or fewer values
    /// than its shape says.
    fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        channels_first: bool,
        min_channels: usize,
    ) -> Option<YoloOutput<'a>> {
        let (channels, n) = if channels_first {
            (rows, cols)
        } else {
            (cols, rows)
        };
        (channels >= min_channels && data.len() >= rows * cols).then_some(YoloOutput {
            data,
            channels,
            n,
            channels_first,
        })
    }

    /// Channel `ch` of candidate `i` (both within the shape).
    fn at(&self, ch: usize, i: usize) -> f32 {
        if self.channels_first {
            self.data[ch * self.n + i]
        } else {
            self.data[i * self.channels + ch]
        }
    }
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
    let Some(out) = YoloOutput::new(data, rows, cols, channels_first, 5 + class) else {
        return Vec::new();
    };
    let at = |ch: usize, i: usize| out.at(ch, i);
    (0..out.n)
        .filter_map(|i| {
            let score = at(4 + class, i);
            // `partial_cmp` so that NaN scores are dropped too.
            if score.partial_cmp(&conf).is_none_or(|o| o.is_lt()) {
                return None;
            }
            Detection::from_center(at(0, i), at(1, i), at(2, i), at(3, i), score)
        })
        .collect()
}

/// What ultralytics' `predict` does with a `.pt` detector (module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UltralyticsPredict {
    /// Longest input side (`imgsz`), 640 by default.
    pub imgsz: u32,
    /// Padding multiple (`stride`), 32 by default.
    pub stride: u32,
    /// `predict`'s own confidence floor (strictly above), 0.25.
    pub conf: f32,
    /// `predict`'s NMS IoU, 0.7.
    pub iou: f32,
    /// `predict`'s `max_det`, 300.
    pub max_det: usize,
    /// The class whose first box is cropped, 0.
    pub crop_class: usize,
}

/// How a detector's input is made and its output read (chosen by metadata).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DetectorMode {
    /// Square letterbox to the input size (antialiased resize), class-0 candidates at
    /// or above `confidence_threshold`, greedy NMS at the config's `iou_threshold`.
    Square,
    /// The Python original's `YOLO(path).predict(img)` on a `.pt`.
    Ultralytics(UltralyticsPredict),
}

/// ultralytics' `non_max_suppression` (not agnostic, one label per box): each
/// candidate takes its best class; those scoring above `conf` are sorted by score,
/// a box is dropped when it overlaps a kept box of its class by more than `iou`, at
/// most `max_det` are kept. Returns (box, class) best first, boxes in input pixels.
pub fn ultralytics_nms(
    data: &[f32],
    rows: usize,
    cols: usize,
    channels_first: bool,
    p: &UltralyticsPredict,
) -> Vec<(Detection, usize)> {
    let Some(out) = YoloOutput::new(data, rows, cols, channels_first, 5) else {
        return Vec::new();
    };
    let (channels, at) = (out.channels, |ch: usize, i: usize| out.at(ch, i));
    let mut cands: Vec<(Detection, usize)> = (0..out.n)
        .filter_map(|i| {
            // The first of equal maxima, as torch's `max` on the CPU.
            let (class, score) = (4..channels).map(|ch| at(ch, i)).enumerate().fold(
                None,
                |best: Option<(usize, f32)>, (c, v)| match best {
                    Some((_, b)) if b >= v => best,
                    _ => Some((c, v)),
                },
            )?;
            if score.partial_cmp(&p.conf) != Some(std::cmp::Ordering::Greater) {
                return None;
            }
            Detection::from_center(at(0, i), at(1, i), at(2, i), at(3, i), score)
                .map(|d| (d, class))
        })
        .collect();
    cands.sort_by(|a, b| b.0.score.total_cmp(&a.0.score));
    let mut keep: Vec<(Detection, usize)> = Vec::new();
    for (d, c) in cands {
        if keep.len() >= p.max_det {
            break;
        }
        if keep.iter().all(|(k, kc)| *kc != c || iou(k, &d) <= p.iou) {
            keep.push((d, c));
        }
    }
    keep
}

/// A loaded detector.
pub struct Detector {
    pub model: ImageModel,
    /// Class names from the metadata (informational).
    pub names: Option<Vec<String>>,
    pub mode: DetectorMode,
    /// How the box becomes whole pixels for the crop and the answer (`crop_box`
    /// metadata: `truncate` = the Python original's `int()`; else rounded outwards).
    pub truncate_box: bool,
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
        let mode = detector_mode(&model, path)?;
        let truncate_box = match model.metadata("crop_box").as_deref().map(str::trim) {
            None | Some("") | Some("outward") => false,
            Some("truncate") => true,
            Some(other) => {
                return Err(InferenceError::Incompatible {
                    path: path.display().to_string(),
                    what: format!("unknown crop_box metadata {other:?}"),
                })
            }
        };
        Ok(Detector {
            model,
            names,
            mode,
            truncate_box,
        })
    }

    /// The best pear box of each image, in that image's pixels (unrounded), or `None`:
    /// `confidence_threshold` and `iou_threshold` are the config's.
    pub fn best_boxes(
        &self,
        imgs: &[&RgbImage],
        confidence_threshold: f32,
        iou_threshold: f32,
    ) -> Result<Vec<Option<Detection>>, InferenceError> {
        match self.mode {
            DetectorMode::Square => {
                let (buf, boxes) = self.preprocess(imgs);
                let cands = self.run(&buf, imgs.len(), confidence_threshold)?;
                Ok(cands
                    .into_iter()
                    .zip(boxes)
                    .zip(imgs)
                    .map(|((c, lb), img)| {
                        nms(c, iou_threshold).first().map(|best| {
                            Detection::from_corners(
                                lb.to_source(best.corners(), img.width(), img.height()),
                                best.score,
                            )
                        })
                    })
                    .collect())
            }
            DetectorMode::Ultralytics(p) => imgs
                .iter()
                .map(|img| self.predict_one(img, &p, confidence_threshold))
                .collect(),
        }
    }

    /// One image the ultralytics way (its input size depends on the aspect ratio).
    fn predict_one(
        &self,
        img: &RgbImage,
        p: &UltralyticsPredict,
        confidence_threshold: f32,
    ) -> Result<Option<Detection>, InferenceError> {
        let geo = StrideLetterbox::new(img.width(), img.height(), p.imgsz, p.stride);
        let (h, w) = (geo.dst_h as usize, geo.dst_w as usize);
        let mut buf = vec![0f32; 3 * h * w];
        stride_letterbox_into(
            img,
            p.imgsz,
            p.stride,
            &mut ChwTarget {
                data: &mut buf,
                width: w,
                height: h,
            },
        );
        let mut kept = Vec::new();
        self.model.run_shaped(&buf, 1, (h, w), |_, dims, data| {
            if dims.len() != 3 || dims[0] != 1 {
                return Err(InferenceError::BadOutput(format!(
                    "detector output shape {dims:?} for batch 1"
                )));
            }
            let (rows, cols) = (dims[1], dims[2]);
            kept = ultralytics_nms(data, rows, cols, rows <= cols, p);
            Ok(())
        })?;
        Ok(kept
            .into_iter()
            .find(|(_, c)| *c == p.crop_class)
            .filter(|(d, _)| d.score >= confidence_threshold)
            .map(|(d, _)| {
                Detection::from_corners(
                    geo.to_source(d.corners(), img.width(), img.height()),
                    d.score,
                )
            }))
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

/// Reads the `pipeline` metadata (module doc); an unknown value is refused rather
/// than run the wrong way.
fn detector_mode(model: &ImageModel, path: &Path) -> Result<DetectorMode, InferenceError> {
    let bad = |what: String| InferenceError::Incompatible {
        path: path.display().to_string(),
        what,
    };
    match model.metadata("pipeline").as_deref().map(str::trim) {
        None | Some("") | Some("square") => Ok(DetectorMode::Square),
        Some("ultralytics_pt") => {
            if !model.dynamic_hw {
                return Err(bad(
                    "pipeline ultralytics_pt needs dynamic H and W input axes".into(),
                ));
            }
            let num = |key: &str, default: f32| -> Result<f32, InferenceError> {
                match model.metadata(key) {
                    None => Ok(default),
                    Some(v) => v
                        .trim()
                        .parse::<f32>()
                        .ok()
                        .filter(|x| x.is_finite() && *x >= 0.0)
                        .ok_or_else(|| bad(format!("{key} metadata {v:?} is not a number"))),
                }
            };
            let imgsz = model
                .metadata("imgsz")
                .and_then(|s| metadata::parse_size(&s))
                .map(|(h, w)| h.max(w))
                .unwrap_or(640);
            Ok(DetectorMode::Ultralytics(UltralyticsPredict {
                imgsz,
                stride: num("stride", 32.0)?.max(1.0) as u32,
                conf: num("nms_conf", 0.25)?,
                iou: num("nms_iou", 0.7)?,
                max_det: 300,
                crop_class: num("crop_class", 0.0)? as usize,
            }))
        }
        Some(other) => Err(bad(format!("unknown pipeline metadata {other:?}"))),
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
