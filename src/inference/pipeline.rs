//! The two-stage pipeline (SPEC §3): detector → crop → classifier.
//!
//! 1. The source image (already decoded, RGB) is letterboxed into the detector input.
//! 2. Class-0 candidates at or above `confidence_threshold` go through NMS; the best box
//!    is mapped back to source pixels (clamped, rounded outwards to whole pixels).
//!    No candidate → verdict `no_pear` (class 0, confidence 0, no box), no classifier run.
//! 3. The box (or the whole image when there is no detector) is resized to the
//!    classifier input, normalised, classified; softmax, argmax, label.
//!
//! [`Pipeline::classify_batch`] runs each stage once for the whole slice when the
//! model's batch axis is dynamic (one image at a time otherwise). A `Pipeline` is
//! immutable and `Sync`; it holds `sessions` ONNX Runtime sessions per model so that
//! that many workers can run it at once.

use std::borrow::Cow;
use std::path::Path;

use image::{DynamicImage, RgbImage};

use super::classifier::Classifier;
use super::detector::{nms, Detection, Detector};
use super::preprocess::{argmax, pixel_box, Rect};
use super::InferenceError;

/// Label reported when the detector finds no pear.
pub const NO_PEAR: &str = "no_pear";

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

/// The answer for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Class index (0 = normal pear; also 0 for "no pear").
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
    classifier_file: String,
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
        let classifier_file = classifier
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| classifier.display().to_string());
        Ok(Pipeline {
            classifier: classifier_model,
            detector,
            confidence_threshold: opts.confidence_threshold,
            iou_threshold: opts.iou_threshold,
            classifier_file,
        })
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

    /// The whole pipeline for one image.
    pub fn classify(&self, img: &DynamicImage) -> Result<Verdict, InferenceError> {
        self.classify_batch(std::slice::from_ref(img))
            .pop()
            .unwrap_or_else(|| Err(InferenceError::Run("empty batch result".into())))
    }

    /// The whole pipeline for several images, batched per stage where the models allow.
    pub fn classify_batch(&self, imgs: &[DynamicImage]) -> Vec<Result<Verdict, InferenceError>> {
        let rgb: Vec<Cow<'_, RgbImage>> = imgs
            .iter()
            .map(|i| match i.as_rgb8() {
                Some(r) => Cow::Borrowed(r),
                None => Cow::Owned(i.to_rgb8()),
            })
            .collect();
        let refs: Vec<&RgbImage> = rgb.iter().map(|c| c.as_ref()).collect();
        self.analyze_rgb(&refs)
            .into_iter()
            .map(|r| r.map(|a| a.verdict))
            .collect()
    }

    /// Best pear box per image (source pixels, unrounded), or `None`. Without a
    /// detector every image gets `None`.
    pub fn detect(&self, imgs: &[&RgbImage]) -> Result<Vec<Option<Detection>>, InferenceError> {
        let Some(det) = &self.detector else {
            return Ok(vec![None; imgs.len()]);
        };
        let (buf, boxes) = det.preprocess(imgs);
        let cands = det.run(&buf, imgs.len(), self.confidence_threshold)?;
        Ok(cands
            .into_iter()
            .zip(boxes)
            .zip(imgs)
            .map(|((c, lb), img)| {
                nms(c, self.iou_threshold).first().map(|best| {
                    let [x1, y1, x2, y2] = lb.to_source(best.corners(), img.width(), img.height());
                    Detection {
                        x1,
                        y1,
                        x2,
                        y2,
                        score: best.score,
                    }
                })
            })
            .collect())
    }

    /// Classifies regions (one batch); returns probabilities per region.
    pub fn classify_regions(
        &self,
        regions: &[(&RgbImage, Rect)],
    ) -> Result<Vec<Vec<f32>>, InferenceError> {
        if regions.is_empty() {
            return Ok(Vec::new());
        }
        let buf = self.classifier.preprocess(regions);
        self.classifier.run(&buf, regions.len())
    }

    /// The whole pipeline with its intermediate numbers.
    pub fn analyze_rgb(&self, imgs: &[&RgbImage]) -> Vec<Result<Analysis, InferenceError>> {
        let empty = |img: &&RgbImage| img.width() == 0 || img.height() == 0;
        let valid: Vec<&RgbImage> = imgs.iter().filter(|i| !empty(i)).copied().collect();
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

    fn analyze_valid(&self, imgs: &[&RgbImage]) -> Result<Vec<Analysis>, InferenceError> {
        if imgs.is_empty() {
            return Ok(Vec::new());
        }
        let detections = self.detect(imgs)?;
        let mut regions = Vec::new();
        let mut bboxes = Vec::with_capacity(imgs.len());
        for (img, d) in imgs.iter().zip(&detections) {
            let bbox = match (&self.detector, d) {
                (None, _) => Some([0, 0, img.width(), img.height()]),
                (Some(_), Some(d)) => Some(pixel_box(d.corners(), img.width(), img.height())),
                (Some(_), None) => None, // no pear
            };
            if let Some(b) = bbox {
                regions.push((*img, Rect::from_corners(b)));
            }
            bboxes.push(bbox);
        }
        let mut probs = self.classify_regions(&regions)?.into_iter();
        let mut out = Vec::with_capacity(imgs.len());
        for (bbox, detection) in bboxes.into_iter().zip(detections) {
            let analysis = match bbox {
                None => Analysis {
                    verdict: Verdict {
                        class: 0,
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
                    let (class, confidence) = argmax(&p).ok_or_else(|| {
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
