//! The two-stage pipeline (SPEC §3): detector → crop → classifier.
//!
//! 1. The image (already decoded, RGB; a large JPEG at a reduced scale, see
//!    [`super::decode`]) is letterboxed into the detector input.
//! 2. Class-0 candidates at or above `confidence_threshold` go through NMS; the best box
//!    is mapped back to *source* pixels (through the letterbox, then times the decode
//!    scale factor; clamped, rounded outwards to whole pixels). No candidate → verdict
//!    `no_pear` (class [`Decision::no_pear_result`], 0 by default; confidence 0, no
//!    box), no classifier run.
//! 3. The box (or the whole image when there is no detector), widened by the
//!    classifier's `crop_margin` in source pixels, is mapped onto the decoded pixels,
//!    resized to the classifier input, normalised, classified; softmax, then [`decide`]
//!    (argmax, or the normal threshold of [`Decision`]), label.
//!
//! Decode scale: [`Pipeline::min_decode_side`] is the short side a decoded photo must
//! keep, computed once at load from the model input sizes: with a detector,
//! `max(detector side, ceil(classifier side / MIN_BOX_FRACTION))` so that a pear box of
//! [`MIN_BOX_FRACTION`] of the short side still has at least the classifier's input in
//! decoded pixels; without one, the classifier side (the whole image is the crop). The
//! line models (detector 128, classifier 192) give 320: a 2048×1536 photo is decoded
//! at 1/4 (512×384), a 480×360 one at full size. Models exported from the Python
//! original (`tools/export`: detector `pipeline` = `ultralytics_pt` or `crop_box` =
//! `truncate`, classifier `resize` = `shorter_side`) reproduce its pixels exactly, so
//! they always get the full-size decode, JPEG through the decoder closest to OpenCV's
//! ([`Pipeline::decode_plan`], [`DecodePlan::LikeOpenCv`]).
//!
//! [`Pipeline::classify_batch`] runs each stage once for the whole slice when the
//! model's batch axis is dynamic (one image at a time otherwise). A `Pipeline` is
//! immutable and `Sync`; it holds `sessions` ONNX Runtime sessions per model so that
//! that many workers can run it at once.

use std::borrow::Cow;
use std::path::Path;

use image::{DynamicImage, RgbImage};

use super::classifier::Classifier;
use super::classifier::ResizeMode;
use super::decode::{DecodePlan, DecodeScale, Decoded};
use super::detector::DetectorMode;
use super::detector::{Detection, Detector};
use super::preprocess::{argmax, pixel_box, rect_window, truncated_box, Rect, Window};
use super::InferenceError;

/// Label reported when the detector finds no pear.
pub const NO_PEAR: &str = "no_pear";

/// The smallest pear box, as a fraction of the photo's short side, that the decode
/// scale leaves at least the classifier's input in pixels (see the module doc). The
/// line's photos have the pear box at 40–95 % of the frame area, a box side of at
/// least ~0.6 of the short side; a smaller box is upsampled to the classifier input.
pub const MIN_BOX_FRACTION: f32 = 0.6;

/// An RGB image as decoded and how it maps to its source pixels.
pub type ScaledRgb<'a> = (&'a RgbImage, DecodeScale);

/// Settings for [`Pipeline::load`]; the fallbacks apply only when a model has no
/// fixed input size / no label metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineOptions {
    /// Minimum detector score for a pear box.
    pub confidence_threshold: f32,
    /// NMS overlap above which the weaker box is dropped.
    pub iou_threshold: f32,
    /// Input size when a model's input shape and metadata do not give one.
    pub img_size: u32,
    /// Classifier labels when the model has no `names` metadata.
    pub classes: Vec<String>,
    /// ONNX Runtime sessions per model: one per worker that may run at once.
    pub sessions: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            confidence_threshold: 0.5,
            iou_threshold: 0.45,
            img_size: 224,
            classes: Vec::new(),
            sessions: rayon::current_num_threads().max(1),
        }
    }
}

/// How probabilities become an answer (SPEC §3 "Decision"). Set with
/// [`Pipeline::with_decision`]; the default is the Python original's rule (plain
/// argmax, `no_pear` answered as class 0), which the parity tests rely on. The
/// server fills it from `model.normal_threshold` and `model.no_pear_result`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Decision {
    /// A pear is normal (class 0) only when p(normal) reaches this; otherwise the
    /// answer is the most likely defect class (1..K). `None` = plain argmax.
    pub normal_threshold: Option<f32>,
    /// The `result` answered when the detector finds no pear (label stays
    /// `no_pear`). Must be a class of the classifier.
    pub no_pear_result: usize,
}

impl Decision {
    /// Checks the decision against a classifier with `classes` classes.
    pub fn check(&self, classes: usize) -> Result<(), String> {
        if self.no_pear_result >= classes.max(1) {
            return Err(format!(
                "model.no_pear_result is {}, but the classifier has {classes} classes (0..{})",
                self.no_pear_result,
                classes.saturating_sub(1)
            ));
        }
        Ok(())
    }
}

/// The decision rule, a pure function of the softmax `probabilities` (index =
/// class, 0 = normal). Returns the class and its probability; `None` when there
/// are no probabilities.
///
/// - `normal_threshold: None`: argmax (the original's rule; the first of equal
///   maxima wins).
/// - `Some(t)`: class 0 when p(normal) ≥ t; otherwise the most likely of the
///   defect classes 1..K, even when p(normal) is the largest. With t = 0.5 this
///   differs from argmax only when p(normal) is the largest but below 0.5 (then a
///   defect is answered); above 0.5 p(normal) is the largest anyway. t = 0 always
///   answers normal, t = 1 answers normal only for p(normal) = 1 exactly. A
///   classifier with a single class always answers it.
pub fn decide(probabilities: &[f32], normal_threshold: Option<f32>) -> Option<(usize, f32)> {
    let (&p_normal, defects) = probabilities.split_first()?;
    match normal_threshold {
        None => argmax(probabilities),
        Some(t) if p_normal >= t || defects.is_empty() => Some((0, p_normal)),
        Some(_) => argmax(defects).map(|(i, p)| (i + 1, p)),
    }
}

/// The answer for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Class index (0 = normal pear; [`Decision::no_pear_result`] for "no pear").
    pub class: usize,
    pub label: String,
    /// Softmax probability of `class` (0 when no pear was found).
    pub confidence: f32,
    /// Pear box `[x1, y1, x2, y2]` in source pixels (exclusive right/bottom); the whole
    /// image when there is no detector; `None` when no pear was found.
    pub bbox: Option<[u32; 4]>,
}

/// A verdict with the numbers behind it (parity tests, diagnostics).
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub verdict: Verdict,
    /// All class probabilities; empty when no pear was found.
    pub probabilities: Vec<f32>,
    /// Best detector box in source pixels (unrounded), if any.
    pub detection: Option<Detection>,
}

/// Both models, ready to run. Cheap to share behind an `Arc`.
pub struct Pipeline {
    classifier: Classifier,
    detector: Option<Detector>,
    confidence_threshold: f32,
    iou_threshold: f32,
    decision: Decision,
    classifier_file: String,
    decode_plan: DecodePlan,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("classifier", &self.classifier_file)
            .field("detector", &self.detector.is_some())
            .finish()
    }
}

impl Pipeline {
    /// Loads both models (detector optional: `None` = classify the whole image).
    /// Blocking (reads files, builds sessions): call it on a worker or at startup.
    pub fn load(
        classifier: &Path,
        detector: Option<&Path>,
        opts: &PipelineOptions,
    ) -> Result<Pipeline, InferenceError> {
        let sessions = opts.sessions.max(1);
        let detector = detector
            .map(|d| Detector::load(d, sessions, opts.img_size))
            .transpose()?;
        let classifier_model =
            Classifier::load(classifier, sessions, opts.img_size, &opts.classes)?;
        let decode_plan = decode_plan(detector.as_ref(), &classifier_model);
        let classifier_file = classifier
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| classifier.display().to_string());
        Ok(Pipeline {
            classifier: classifier_model,
            detector,
            confidence_threshold: opts.confidence_threshold,
            iou_threshold: opts.iou_threshold,
            decision: Decision::default(),
            classifier_file,
            decode_plan,
        })
    }

    /// Sets how probabilities become an answer, after checking it against this
    /// classifier (the error names the config key).
    pub fn with_decision(mut self, decision: Decision) -> Result<Pipeline, InferenceError> {
        decision
            .check(self.classifier.labels.len())
            .map_err(|what| InferenceError::Incompatible {
                path: self.classifier_file.clone(),
                what,
            })?;
        self.decision = decision;
        Ok(self)
    }

    /// How probabilities become an answer.
    pub fn decision(&self) -> Decision {
        self.decision
    }

    /// The short side, in pixels, a decoded photo must keep (see the module doc):
    /// what [`crate::inference::queue::load_image`] is given.
    pub fn min_decode_side(&self) -> u32 {
        match self.decode_plan {
            DecodePlan::Scaled { min_short_side } => min_short_side,
            DecodePlan::LikeOpenCv => u32::MAX,
        }
    }

    /// How the workers decode a photo for these models (module doc):
    /// [`DecodePlan::LikeOpenCv`] for models fed as the Python original feeds them,
    /// else scaled by [`Pipeline::min_decode_side`].
    pub fn decode_plan(&self) -> DecodePlan {
        self.decode_plan
    }

    /// File name of the classifier, e.g. `pear_classifier.onnx`.
    pub fn classifier_file(&self) -> &str {
        &self.classifier_file
    }

    /// Classifier labels, index = class.
    pub fn labels(&self) -> &[String] {
        &self.classifier.labels
    }

    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    pub fn detector(&self) -> Option<&Detector> {
        self.detector.as_ref()
    }

    /// The whole pipeline for one image taken at full size.
    pub fn classify(&self, img: &DynamicImage) -> Result<Verdict, InferenceError> {
        self.classify_batch(std::slice::from_ref(img))
            .pop()
            .unwrap_or_else(|| Err(InferenceError::Run("empty batch result".into())))
    }

    /// The whole pipeline for several images taken at full size, batched per stage
    /// where the models allow.
    pub fn classify_batch(&self, imgs: &[DynamicImage]) -> Vec<Result<Verdict, InferenceError>> {
        let scaled: Vec<_> = imgs
            .iter()
            .map(|i| (i, DecodeScale::full(i.width(), i.height())))
            .collect();
        self.classify_images(&scaled)
    }

    /// The whole pipeline for one decoded image (any decode scale).
    pub fn classify_one(&self, img: &Decoded) -> Result<Verdict, InferenceError> {
        self.classify_decoded(std::slice::from_ref(img))
            .pop()
            .unwrap_or_else(|| Err(InferenceError::Run("empty batch result".into())))
    }

    /// The whole pipeline for several decoded images (any decode scale), batched per
    /// stage where the models allow. Boxes are answered in source pixels.
    pub fn classify_decoded(&self, imgs: &[Decoded]) -> Vec<Result<Verdict, InferenceError>> {
        let scaled: Vec<_> = imgs.iter().map(|d| (&d.image, d.scale)).collect();
        self.classify_images(&scaled)
    }

    fn classify_images(
        &self,
        imgs: &[(&DynamicImage, DecodeScale)],
    ) -> Vec<Result<Verdict, InferenceError>> {
        let rgb: Vec<Cow<'_, RgbImage>> = imgs
            .iter()
            .map(|(i, _)| match i.as_rgb8() {
                Some(r) => Cow::Borrowed(r),
                None => Cow::Owned(i.to_rgb8()),
            })
            .collect();
        let refs: Vec<ScaledRgb<'_>> = rgb
            .iter()
            .zip(imgs)
            .map(|(c, (_, scale))| (c.as_ref(), *scale))
            .collect();
        self.analyze_scaled(&refs)
            .into_iter()
            .map(|r| r.map(|a| a.verdict))
            .collect()
    }

    /// Best pear box per image taken at full size (source pixels, unrounded), or
    /// `None`. Without a detector every image gets `None`.
    pub fn detect(&self, imgs: &[&RgbImage]) -> Result<Vec<Option<Detection>>, InferenceError> {
        self.detect_scaled(&full_scale(imgs))
    }

    /// Best pear box per decoded image, in *source* pixels (unrounded), or `None`.
    pub fn detect_scaled(
        &self,
        imgs: &[ScaledRgb<'_>],
    ) -> Result<Vec<Option<Detection>>, InferenceError> {
        let Some(det) = &self.detector else {
            return Ok(vec![None; imgs.len()]);
        };
        let rgb: Vec<&RgbImage> = imgs.iter().map(|(img, _)| *img).collect();
        let best = det.best_boxes(&rgb, self.confidence_threshold, self.iou_threshold)?;
        Ok(best
            .into_iter()
            .zip(imgs)
            .map(|(d, (_, scale))| {
                d.map(|d| Detection::from_corners(scale.box_to_source(d.corners()), d.score))
            })
            .collect())
    }

    /// Classifies regions (one batch); returns probabilities per region.
    pub fn classify_regions(
        &self,
        regions: &[(&RgbImage, Rect)],
    ) -> Result<Vec<Vec<f32>>, InferenceError> {
        let windows: Vec<(&RgbImage, Window)> = regions
            .iter()
            .map(|(img, r)| (*img, rect_window(*r)))
            .collect();
        self.classify_windows(&windows)
    }

    /// [`Pipeline::classify_regions`] for crops with fractional edges.
    pub fn classify_windows(
        &self,
        regions: &[(&RgbImage, Window)],
    ) -> Result<Vec<Vec<f32>>, InferenceError> {
        self.classifier.classify_windows(regions)
    }

    /// The whole pipeline with its intermediate numbers, images taken at full size.
    pub fn analyze_rgb(&self, imgs: &[&RgbImage]) -> Vec<Result<Analysis, InferenceError>> {
        self.analyze_scaled(&full_scale(imgs))
    }

    /// The whole pipeline with its intermediate numbers, for decoded images of any
    /// decode scale (boxes in source pixels).
    pub fn analyze_scaled(&self, imgs: &[ScaledRgb<'_>]) -> Vec<Result<Analysis, InferenceError>> {
        let empty = |(img, _): &ScaledRgb<'_>| img.width() == 0 || img.height() == 0;
        let valid: Vec<ScaledRgb<'_>> = imgs.iter().filter(|i| !empty(i)).copied().collect();
        let mut results = match self.analyze_valid(&valid) {
            Ok(r) => r.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e); valid.len()],
        }
        .into_iter();
        imgs.iter()
            .map(|img| {
                if empty(img) {
                    Err(InferenceError::EmptyImage)
                } else {
                    results
                        .next()
                        .unwrap_or(Err(InferenceError::Run("missing result".into())))
                }
            })
            .collect()
    }

    fn analyze_valid(&self, imgs: &[ScaledRgb<'_>]) -> Result<Vec<Analysis>, InferenceError> {
        if imgs.is_empty() {
            return Ok(Vec::new());
        }
        let detections = self.detect_scaled(imgs)?;
        let mut regions = Vec::new();
        let mut bboxes = Vec::with_capacity(imgs.len());
        for ((img, scale), d) in imgs.iter().zip(&detections) {
            // Box and crop are chosen in source pixels, then the crop is mapped onto
            // the decoded pixels with fractional edges (whole pixels at full size).
            let (src_w, src_h) = (scale.source_width, scale.source_height);
            let bbox = match (&self.detector, d) {
                (None, _) => Some([0, 0, src_w, src_h]),
                (Some(det), Some(d)) if det.truncate_box => {
                    Some(truncated_box(d.corners(), src_w, src_h))
                }
                (Some(_), Some(d)) => Some(pixel_box(d.corners(), src_w, src_h)),
                (Some(_), None) => None, // no pear
            };
            if let Some(b) = bbox {
                let margin = self.classifier.crop_margin;
                let source = Rect::from_corners(b).widened(margin, src_w, src_h);
                regions.push((*img, scale.rect_to_window(source)));
            }
            bboxes.push(bbox);
        }
        let mut probs = self.classify_windows(&regions)?.into_iter();
        let mut out = Vec::with_capacity(imgs.len());
        for (bbox, detection) in bboxes.into_iter().zip(detections) {
            let analysis = match bbox {
                None => Analysis {
                    verdict: Verdict {
                        class: self.decision.no_pear_result,
                        label: NO_PEAR.to_owned(),
                        confidence: 0.0,
                        bbox: None,
                    },
                    probabilities: Vec::new(),
                    detection,
                },
                Some(bbox) => {
                    let p = probs.next().ok_or_else(|| {
                        InferenceError::BadOutput("too few classifier results".into())
                    })?;
                    let (class, confidence) = decide(&p, self.decision.normal_threshold)
                        .ok_or_else(|| {
                            InferenceError::BadOutput("classifier returned no classes".into())
                        })?;
                    Analysis {
                        verdict: Verdict {
                            class,
                            label: self.classifier.label(class),
                            confidence,
                            bbox: Some(bbox),
                        },
                        probabilities: p,
                        detection,
                    }
                }
            };
            out.push(analysis);
        }
        Ok(out)
    }
}

/// Images taken at full size.
fn full_scale<'a>(imgs: &[&'a RgbImage]) -> Vec<ScaledRgb<'a>> {
    imgs.iter()
        .map(|img| (*img, DecodeScale::full(img.width(), img.height())))
        .collect()
}

/// How photos are decoded for these models (module doc): the short side a decoded
/// photo must keep, or full size like OpenCV for models fed exactly as the Python
/// original feeds them.
fn decode_plan(detector: Option<&Detector>, classifier: &Classifier) -> DecodePlan {
    let exact_detector =
        detector.is_some_and(|d| matches!(d.mode, DetectorMode::Ultralytics(_)) || d.truncate_box);
    if exact_detector || classifier.resize == ResizeMode::ShorterSide {
        return DecodePlan::LikeOpenCv;
    }
    let side = |(h, w): (usize, usize)| u32::try_from(h.max(w)).unwrap_or(u32::MAX);
    let cls = side(classifier.model.size());
    let min_short_side = match detector {
        None => cls,
        Some(d) => {
            let for_box = (cls as f32 / MIN_BOX_FRACTION).ceil() as u32;
            side(d.model.size()).max(for_box)
        }
    };
    DecodePlan::Scaled { min_short_side }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: [f32; 4] = [0.45, 0.30, 0.20, 0.05];

    #[test]
    fn argmax_without_threshold() {
        assert_eq!(decide(&P, None), Some((0, 0.45)));
        assert_eq!(decide(&[0.2, 0.5, 0.3], None), Some((1, 0.5)));
        assert_eq!(decide(&[], None), None);
        assert_eq!(decide(&[], Some(0.5)), None);
    }

    #[test]
    fn normal_only_at_or_above_the_threshold() {
        // p(normal) is the largest but below 0.5: the likeliest defect wins.
        assert_eq!(decide(&P, Some(0.5)), Some((1, 0.30)));
        // At the threshold exactly: normal.
        assert_eq!(decide(&P, Some(0.45)), Some((0, 0.45)));
        assert_eq!(decide(&[0.5, 0.25, 0.25], Some(0.5)), Some((0, 0.5)));
        // Above 0.5 normal is the argmax anyway.
        assert_eq!(decide(&[0.9, 0.05, 0.05], Some(0.5)), Some((0, 0.9)));
        // A defect argmax stays that defect.
        assert_eq!(decide(&[0.1, 0.2, 0.7], Some(0.5)), Some((2, 0.7)));
        // Ties among defects: the first, as argmax.
        assert_eq!(decide(&[0.2, 0.4, 0.4], Some(0.5)), Some((1, 0.4)));
    }

    #[test]
    fn threshold_extremes() {
        assert_eq!(decide(&[0.01, 0.99], Some(0.0)), Some((0, 0.01)));
        assert_eq!(decide(&[0.999, 0.001], Some(1.0)), Some((1, 0.001)));
        assert_eq!(decide(&[1.0, 0.0], Some(1.0)), Some((0, 1.0)));
        // A NaN probability is never "normal enough".
        assert_eq!(decide(&[f32::NAN, 0.3, 0.6], Some(0.5)), Some((2, 0.6)));
        // One class: nothing else to answer.
        assert_eq!(decide(&[0.2], Some(0.5)), Some((0, 0.2)));
    }

    #[test]
    fn no_pear_result_must_be_a_class() {
        let d = |no_pear_result| Decision {
            normal_threshold: Some(0.5),
            no_pear_result,
        };
        assert!(d(0).check(8).is_ok());
        assert!(d(7).check(8).is_ok());
        let err = d(8).check(8).unwrap_err();
        assert!(err.starts_with("model.no_pear_result"), "{err}");
        assert!(err.contains("8 classes"), "{err}");
        assert!(d(0).check(0).is_ok());
        assert!(d(1).check(0).is_err());
        assert_eq!(Decision::default().normal_threshold, None);
        assert_eq!(Decision::default().no_pear_result, 0);
    }
}
