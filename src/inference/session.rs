//! A pool of ONNX Runtime sessions for one model file.
//!
//! `ort::Session::run` takes `&mut self`, so concurrent workers each need their own
//! session. Sessions are built once (intra-op threads 1, spinning off, all graph
//! optimisations: parallelism comes from running several sessions at once) and
//! borrowed round-robin; a worker that finds every session busy waits for one.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

use super::{runtime, InferenceError};

/// Model inputs/outputs larger than this are refused before ONNX Runtime sees them.
const MAX_MODEL_BYTES: u64 = 2 << 30;

pub struct SessionPool {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
}

impl SessionPool {
    /// Reads `path` once and builds `count` (at least 1) sessions from the bytes.
    pub fn load(path: &Path, count: usize) -> Result<SessionPool, InferenceError> {
        let env = runtime::environment()?;
        let load_err = |reason: String| InferenceError::Load {
            path: path.display().to_string(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| load_err(e.to_string()))?;
        if meta.len() > MAX_MODEL_BYTES {
            return Err(load_err(format!(
                "file is {} bytes, over the {MAX_MODEL_BYTES} byte limit",
                meta.len()
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| load_err(e.to_string()))?;
        let mut sessions = Vec::with_capacity(count.max(1));
        for _ in 0..count.max(1) {
            let b = Session::builder(env).map_err(|e| load_err(e.to_string()))?;
            let b = b
                .with_optimization_level(GraphOptimizationLevel::All)
                .map_err(|e| load_err(e.to_string()))?;
            let b = b
                .with_intra_threads(1)
                .map_err(|e| load_err(e.to_string()))?;
            let b = b
                .with_inter_threads(1)
                .map_err(|e| load_err(e.to_string()))?;
            let mut b = b
                .with_intra_op_spinning(false)
                .map_err(|e| load_err(e.to_string()))?;
            let session = b
                .commit_from_memory(&bytes)
                .map_err(|e| load_err(e.to_string()))?;
            sessions.push(Mutex::new(session));
        }
        Ok(SessionPool {
            sessions,
            next: AtomicUsize::new(0),
        })
    }

    /// Borrows a free session (or waits for the next one in turn).
    pub fn get(&self) -> MutexGuard<'_, Session> {
        let n = self.sessions.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            if let Ok(s) = self.sessions[(first + i) % n].try_lock() {
                return s;
            }
        }
        // A panic while a session was borrowed does not corrupt the session itself.
        self.sessions[first]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// Names and shapes of an image model's first input and output, with the input
/// checked to be `[B, 3, H, W]`. Shared by the detector and the classifier.
pub struct ImageIo {
    pub input_name: String,
    pub output_name: String,
    pub input_shape: Vec<i64>,
    pub output_shape: Vec<i64>,
}

impl ImageIo {
    /// Reads the I/O of `session`; `role` ("detector", "classifier") names the
    /// model in error messages.
    pub fn read(session: &Session, path: &Path, role: &str) -> Result<ImageIo, InferenceError> {
        let bad = |what: String| InferenceError::Incompatible {
            path: path.display().to_string(),
            what,
        };
        let input = session
            .inputs()
            .first()
            .ok_or_else(|| bad(format!("{role} has no input")))?;
        let output = session
            .outputs()
            .first()
            .ok_or_else(|| bad(format!("{role} has no output")))?;
        let shape_of = |t: &ort::value::ValueType| -> Vec<i64> {
            t.tensor_shape().map(|s| s.to_vec()).unwrap_or_default()
        };
        let input_shape = shape_of(input.dtype());
        if input_shape.len() != 4 || (input_shape[1] > 0 && input_shape[1] != 3) {
            return Err(bad(format!(
                "{role} input must be [B, 3, H, W], found {input_shape:?}"
            )));
        }
        Ok(ImageIo {
            input_name: input.name().to_owned(),
            output_name: output.name().to_owned(),
            input_shape,
            output_shape: shape_of(output.dtype()),
        })
    }
}
