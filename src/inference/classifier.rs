//! The defect classifier: an image classifier ONNX export (our trainer or timm).
//!
//! Input `[B, 3, H, W]`, RGB normalised with `mean`/`std` (metadata, else ImageNet);
//! the size comes from the fixed input shape, else the `input_size` metadata, else the
//! configured `img_size`. Output `[B, K]` logits; softmax gives the probabilities.
//! Labels come from the `names` metadata (JSON list/object or ultralytics dict), else
//! from the configured `classes`, else `class_<i>`. The source region is resized to the
//! input without keeping the aspect ratio (bilinear, antialiased). `crop_margin`
//! metadata (a fraction, default 0) widens the detector's box on every side before
//! the crop, for classifiers trained on the pear with some of its surroundings.
//!
//! Two more metadata keys describe models fed the way the Python original feeds its
//! timm classifier (written by `tools/export`):
//! - `resize` = `shorter_side`: torchvision's `Resize(N)` on a PIL image (N from
//!   `input_size`): the shorter side to N, the longer `int(N · long / short)`, with
//!   Pillow's 8-bit two-pass bilinear resampling bit for bit; the model's H and W axes
//!   must be dynamic, and each crop runs on its own (their shapes differ). Default
//!   `stretch`: straight to the input size, as above.
//! - `channel_order` = `bgr`: the model's first plane gets the blue channel (the
//!   original hands OpenCV's BGR pixels to PIL as if they were RGB); mean/std still
//!   apply by plane. Default `rgb`.

use std::path::Path;

use image::RgbImage;

use super::metadata;
use super::preprocess::{
    pillow_resize_u8, rect_window, resize_normalize_window_into, shorter_side_size, softmax,
    u8_to_chw, ChannelOrder, ChwTarget, Normalize, Rect, Window, IMAGENET_MEAN, IMAGENET_STD,
};

/// How a crop becomes the classifier's input (`resize` metadata, module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResizeMode {
    /// Straight to the input size, aspect not kept (antialiased bilinear in `f32`).
    #[default]
    Stretch,
    /// torchvision `Resize(N)` on a PIL image: shorter side to N, aspect kept.
    ShorterSide,
}
use super::session::ImageModel;
use super::InferenceError;

pub struct Classifier {
    pub model: ImageModel,
    pub labels: Vec<String>,
    pub norm: Normalize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Fraction of the box's width/height added on each side before cropping.
    pub crop_margin: f32,
    pub resize: ResizeMode,
    pub channel_order: ChannelOrder,
}

/// Largest accepted `crop_margin` (a box three times its size is no longer a crop).
const MAX_CROP_MARGIN: f32 = 1.0;

impl Classifier {
    pub fn load(
        path: &Path,
        sessions: usize,
        fallback_size: u32,
        fallback_labels: &[String],
    ) -> Result<Classifier, InferenceError> {
        let model = ImageModel::load(path, sessions, "classifier", "input_size", fallback_size)?;
        let out_shape = &model.output_shape;
        if out_shape.len() != 2 {
            return Err(InferenceError::Incompatible {
                path: path.display().to_string(),
                what: format!("classifier output must be [B, K], found {out_shape:?}"),
            });
        }
        let mean = model
            .metadata("mean")
            .and_then(|s| metadata::parse_triplet(&s))
            .unwrap_or(IMAGENET_MEAN);
        let std = model
            .metadata("std")
            .and_then(|s| metadata::parse_triplet(&s))
            .filter(|s| s.iter().all(|v| *v > 0.0))
            .unwrap_or(IMAGENET_STD);
        let crop_margin = match model
            .metadata("crop_margin")
            .map(|s| s.trim().parse::<f32>())
        {
            None => 0.0,
            Some(Ok(m)) if (0.0..=MAX_CROP_MARGIN).contains(&m) => m,
            Some(_) => {
                return Err(InferenceError::Incompatible {
                    path: path.display().to_string(),
                    what: format!("crop_margin metadata must be a number in 0..={MAX_CROP_MARGIN}"),
                })
            }
        };
        let bad = |what: String| InferenceError::Incompatible {
            path: path.display().to_string(),
            what,
        };
        let resize = match model.metadata("resize").as_deref().map(str::trim) {
            None | Some("") | Some("stretch") => ResizeMode::Stretch,
            Some("shorter_side") if model.dynamic_hw => ResizeMode::ShorterSide,
            Some("shorter_side") => {
                return Err(bad(
                    "resize shorter_side needs dynamic H and W input axes".into()
                ))
            }
            Some(other) => return Err(bad(format!("unknown resize metadata {other:?}"))),
        };
        let channel_order = match model.metadata("channel_order").as_deref().map(str::trim) {
            None | Some("") => ChannelOrder::Rgb,
            Some(v) if v.eq_ignore_ascii_case("rgb") => ChannelOrder::Rgb,
            Some(v) if v.eq_ignore_ascii_case("bgr") => ChannelOrder::Bgr,
            Some(other) => return Err(bad(format!("unknown channel_order metadata {other:?}"))),
        };
        let mut labels = model
            .metadata("names")
            .and_then(|s| metadata::parse_names(&s))
            .unwrap_or_else(|| fallback_labels.to_vec());
        if out_shape[1] > 0 {
            let k = out_shape[1] as usize;
            if labels.len() != k {
                log::warn!(
                    "{}: {} labels for {k} outputs; missing ones are named class_<i>",
                    path.display(),
                    labels.len()
                );
            }
            labels.truncate(k);
            while labels.len() < k {
                labels.push(format!("class_{}", labels.len()));
            }
        }
        Ok(Classifier {
            model,
            labels,
            norm: Normalize::mean_std(mean, std),
            mean,
            std,
            crop_margin,
            resize,
            channel_order,
        })
    }

    /// Label of class `i` (`class_<i>` past the known labels).
    pub fn label(&self, i: usize) -> String {
        self.labels
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("class_{i}"))
    }

    /// Resizes and normalises each (image, region) into one `[len, 3, H, W]` buffer.
    pub fn preprocess(&self, crops: &[(&RgbImage, Rect)]) -> Vec<f32> {
        let windows: Vec<(&RgbImage, Window)> = crops
            .iter()
            .map(|(img, r)| (*img, rect_window(*r)))
            .collect();
        self.preprocess_windows(&windows)
    }

    /// [`Classifier::preprocess`] for crops with fractional edges (an image decoded
    /// at a reduced scale); whole-pixel windows give the same buffer as `preprocess`.
    /// For [`ResizeMode::Stretch`] models (all crops have the input size).
    pub fn preprocess_windows(&self, crops: &[(&RgbImage, Window)]) -> Vec<f32> {
        let (h, w) = self.model.size();
        let per = 3 * h * w;
        let mut buf = vec![0f32; per * crops.len()];
        // BGR: fill the planes as RGB with the normalisation of the plane each
        // channel ends up in, then swap the first and last plane.
        let norm = match self.channel_order {
            ChannelOrder::Rgb => self.norm,
            ChannelOrder::Bgr => Normalize {
                scale: [self.norm.scale[2], self.norm.scale[1], self.norm.scale[0]],
                bias: [self.norm.bias[2], self.norm.bias[1], self.norm.bias[0]],
            },
        };
        for ((img, window), slot) in crops.iter().zip(buf.chunks_mut(per)) {
            let mut target = ChwTarget {
                data: slot,
                width: w,
                height: h,
            };
            resize_normalize_window_into(img, *window, w, h, &norm, &mut target, 0, 0);
            if self.channel_order == ChannelOrder::Bgr {
                let (first, rest) = slot.split_at_mut(h * w);
                first.swap_with_slice(&mut rest[h * w..]);
            }
        }
        buf
    }

    /// One crop as a [`ResizeMode::ShorterSide`] model takes it: the window's whole
    /// pixels, Pillow's 8-bit resize, planes in the model's channel order. Returns the
    /// `[3, H, W]` buffer and (H, W).
    pub fn preprocess_shorter_side(
        &self,
        img: &RgbImage,
        window: Window,
    ) -> (Vec<f32>, (usize, usize)) {
        let rect = whole_pixels(window, img.width(), img.height());
        let n = self.model.size().0 as u32;
        let (ow, oh) = shorter_side_size(rect.w, rect.h, n);
        let resized = pillow_resize_u8(img, rect, ow, oh);
        let (h, w) = (oh as usize, ow as usize);
        let mut buf = vec![0f32; 3 * h * w];
        u8_to_chw(
            &resized,
            self.channel_order,
            &self.norm,
            &mut ChwTarget {
                data: &mut buf,
                width: w,
                height: h,
            },
        );
        (buf, (h, w))
    }

    /// Probabilities of each crop: one batch for stretch models, one run per crop
    /// for shorter-side ones.
    pub fn classify_windows(
        &self,
        crops: &[(&RgbImage, Window)],
    ) -> Result<Vec<Vec<f32>>, InferenceError> {
        if crops.is_empty() {
            return Ok(Vec::new());
        }
        match self.resize {
            ResizeMode::Stretch => {
                let buf = self.preprocess_windows(crops);
                self.run(&buf, crops.len())
            }
            ResizeMode::ShorterSide => {
                let mut all = Vec::with_capacity(crops.len());
                for (img, window) in crops {
                    let (buf, hw) = self.preprocess_shorter_side(img, *window);
                    all.extend(self.run_hw(&buf, 1, hw)?);
                }
                Ok(all)
            }
        }
    }

    /// Runs a preprocessed buffer of `count` images; returns each image's probabilities.
    pub fn run(&self, buf: &[f32], count: usize) -> Result<Vec<Vec<f32>>, InferenceError> {
        self.run_hw(buf, count, self.model.size())
    }

    fn run_hw(
        &self,
        buf: &[f32],
        count: usize,
        hw: (usize, usize),
    ) -> Result<Vec<Vec<f32>>, InferenceError> {
        let mut all = Vec::with_capacity(count);
        self.model.run_shaped(buf, count, hw, |b, dims, data| {
            if dims.len() != 2 || dims[0] != b || dims[1] == 0 {
                return Err(InferenceError::BadOutput(format!(
                    "classifier output shape {dims:?} for batch {b}"
                )));
            }
            all.extend(data.chunks(dims[1]).take(b).map(softmax));
            Ok(())
        })?;
        Ok(all)
    }
}

/// The whole pixels a window covers (edges rounded outwards), inside the image.
fn whole_pixels(window: Window, img_w: u32, img_h: u32) -> Rect {
    let fix = |v: f64, hi: u32| {
        if v.is_finite() {
            v.clamp(0.0, f64::from(hi))
        } else {
            0.0
        }
    };
    let x1 = fix(window[0], img_w).floor() as u32;
    let y1 = fix(window[1], img_h).floor() as u32;
    let x2 = (fix(window[2], img_w).ceil() as u32).max(x1 + 1);
    let y2 = (fix(window[3], img_h).ceil() as u32).max(y1 + 1);
    Rect::from_corners([x1, y1, x2, y2])
}
