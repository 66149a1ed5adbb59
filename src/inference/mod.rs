//! Inference: owns ONNX Runtime, preprocessing, the detector + classifier pipeline and
//! the worker-side job queue. Never touches sockets: the service submits
//! [`ClassifyJob`]s to the [`InferenceQueue`] and gets each [`FileOutcome`] back
//! through the job's callback.
//!
//! - [`runtime`]: finds and loads the ONNX Runtime shared library (`ort` load-dynamic).
//! - [`decode`]: image decoding. A JPEG much larger than the models need is decoded
//!   at 1/2, 1/4 or 1/8 scale in the DCT domain: the smallest scale whose short side
//!   stays at or above [`Pipeline::min_decode_side`] (computed from the model input
//!   sizes when the pipeline loads: 320 px for the line models, so a 2048×1536 photo
//!   is decoded at 512×384). PNG and small JPEGs are decoded at full size. Boxes are
//!   always answered in source pixels.
//! - [`libjpeg`]: JPEG with OpenCV's pixels (libjpeg-turbo, `cv2.imread`'s settings)
//!   for models fed exactly as the Python original feeds them.
//! - [`preprocess`]: letterbox geometry, the fused resize+normalise into CHW tensors.
//! - [`detector`], [`classifier`]: the two models, their metadata and output decoding.
//! - [`pipeline`]: detector → crop → classifier, batched per stage.
//! - [`queue`]: bounded queue, dynamic batching, cancellation, time limit, swap.

pub mod classifier;
pub mod decode;
pub mod detector;
pub mod libjpeg;
pub mod metadata;
pub mod pipeline;
pub mod preprocess;
pub mod queue;
pub mod runtime;
mod session;

pub use decode::{DecodeScale, Decoded};
pub use pipeline::{decide, Analysis, Decision, Pipeline, PipelineOptions, Verdict};
pub use queue::{
    CancelSource, CancelToken, ClassifyJob, FileOutcome, InferenceQueue, QueueConfig, SubmitError,
};
pub use runtime::{init_runtime, RuntimeError};

/// Why loading or running a model failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InferenceError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("cannot load model {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("model {path} is not usable here: {what}")]
    Incompatible { path: String, what: String },
    #[error("inference failed: {0}")]
    Run(String),
    #[error("unexpected model output: {0}")]
    BadOutput(String),
    #[error("image has no pixels")]
    EmptyImage,
    #[error("panic during inference: {0}")]
    Panic(String),
}

/// Checks that `path` is a model ONNX Runtime can load (used by 0x20 before a
/// downloaded file is kept). Builds one session and drops it.
pub fn check_model_file(path: &std::path::Path) -> Result<(), InferenceError> {
    session::SessionPool::load(path, 1).map(drop)
}
