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

use std::path::Path;

use image::RgbImage;

use super::metadata;
use super::preprocess::{
    rect_window, resize_normalize_window_into, softmax, ChwTarget, Normalize, Rect, Window,
    IMAGENET_MEAN, IMAGENET_STD,
};
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
    pub fn preprocess_windows(&self, crops: &[(&RgbImage, Window)]) -> Vec<f32> {
        let (h, w) = self.model.size();
        let per = 3 * h * w;
        let mut buf = vec![0f32; per * crops.len()];
        for ((img, window), slot) in crops.iter().zip(buf.chunks_mut(per)) {
            let mut target = ChwTarget {
                data: slot,
                width: w,
                height: h,
            };
            resize_normalize_window_into(img, *window, w, h, &self.norm, &mut target, 0, 0);
        }
        buf
    }

    /// Runs a preprocessed buffer of `count` images; returns each image's probabilities.
    pub fn run(&self, buf: &[f32], count: usize) -> Result<Vec<Vec<f32>>, InferenceError> {
        let mut all = Vec::with_capacity(count);
        self.model.run_chunked(buf, count, |b, dims, data| {
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
