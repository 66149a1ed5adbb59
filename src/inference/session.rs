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
use ort::value::TensorRef;

use super::{metadata, runtime, InferenceError};

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

/// An image model ready to run, the part the detector and the classifier
/// share: its sessions, its first input (`[B, 3, H, W]`) and output, the input
/// size and whether the batch axis is dynamic.
pub struct ImageModel {
    pool: SessionPool,
    /// "detector", "classifier": names the model in error messages.
    role: &'static str,
    input_name: String,
    output_name: String,
    /// The first output's shape as the graph declares it (`-1` = dynamic).
    pub output_shape: Vec<i64>,
    /// Model input height and width.
    pub input_h: u32,
    pub input_w: u32,
    /// Whether several images can share one run.
    pub dynamic_batch: bool,
    /// Whether the H and W axes are dynamic (inputs of any size).
    pub dynamic_hw: bool,
}

impl ImageModel {
    /// Builds `sessions` sessions of `path` and reads its I/O. The input size
    /// is the graph's fixed one, else the `size_key` metadata, else
    /// `fallback_size`.
    pub fn load(
        path: &Path,
        sessions: usize,
        role: &'static str,
        size_key: &str,
        fallback_size: u32,
    ) -> Result<ImageModel, InferenceError> {
        let pool = SessionPool::load(path, sessions)?;
        let session = pool.get();
        let io = ImageIo::read(&session, path, role)?;
        let shape = &io.input_shape;
        let (input_h, input_w) = match (shape[2], shape[3]) {
            (h, w) if h > 0 && w > 0 => (h as u32, w as u32),
            _ => custom(&session, size_key)
                .and_then(|s| metadata::parse_size(&s))
                .unwrap_or((fallback_size, fallback_size)),
        };
        if input_h == 0 || input_w == 0 {
            return Err(InferenceError::Incompatible {
                path: path.display().to_string(),
                what: format!("{role} input size is unknown (img_size is 0)"),
            });
        }
        let dynamic_batch = shape[0] <= 0;
        let dynamic_hw = shape[2] <= 0 && shape[3] <= 0;
        drop(session);
        Ok(ImageModel {
            pool,
            role,
            input_name: io.input_name,
            output_name: io.output_name,
            output_shape: io.output_shape,
            input_h,
            input_w,
            dynamic_batch,
            dynamic_hw,
        })
    }

    /// A custom metadata value of the model (read at load time only).
    pub fn metadata(&self, key: &str) -> Option<String> {
        custom(&self.pool.get(), key)
    }

    /// Input height and width.
    pub fn size(&self) -> (usize, usize) {
        (self.input_h as usize, self.input_w as usize)
    }

    /// Runs `count` preprocessed images (`buf` is `[count, 3, H, W]`) through
    /// the model, all at once when its batch axis is dynamic, else one by one,
    /// and hands each run's output to `each(batch, dims, data)`.
    pub fn run_chunked(
        &self,
        buf: &[f32],
        count: usize,
        mut each: impl FnMut(usize, &[usize], &[f32]) -> Result<(), InferenceError>,
    ) -> Result<(), InferenceError> {
        let (h, w) = self.size();
        self.run_shaped(buf, count, (h, w), &mut each)
    }

    /// [`ImageModel::run_chunked`] for images of `hw` = (height, width), which may
    /// differ from [`ImageModel::size`] when the model's H and W axes are dynamic.
    pub fn run_shaped(
        &self,
        buf: &[f32],
        count: usize,
        hw: (usize, usize),
        mut each: impl FnMut(usize, &[usize], &[f32]) -> Result<(), InferenceError>,
    ) -> Result<(), InferenceError> {
        let role = self.role;
        let (h, w) = hw;
        if h == 0 || w == 0 {
            return Err(InferenceError::Run(format!("{role}: empty input {h}x{w}")));
        }
        let run_err = |e: ort::Error| InferenceError::Run(format!("{role}: {e}"));
        let chunk = if self.dynamic_batch { count.max(1) } else { 1 };
        for part in buf.chunks(chunk * 3 * h * w) {
            let b = part.len() / (3 * h * w);
            let input = TensorRef::from_array_view(([b, 3, h, w], part)).map_err(run_err)?;
            let mut session = self.pool.get();
            let outputs = session
                .run(ort::inputs![self.input_name.as_str() => input])
                .map_err(run_err)?;
            let out = outputs.get(&self.output_name).ok_or_else(|| {
                InferenceError::BadOutput(format!("{role} output {:?} missing", self.output_name))
            })?;
            let (shape, data) = out.try_extract_tensor::<f32>().map_err(run_err)?;
            let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            each(b, &dims, data)?;
        }
        Ok(())
    }
}

fn custom(session: &Session, key: &str) -> Option<String> {
    session.metadata().ok().and_then(|m| m.custom(key))
}

/// Names and shapes of an image model's first input and output, with the input
/// checked to be `[B, 3, H, W]`.
struct ImageIo {
    input_name: String,
    output_name: String,
    input_shape: Vec<i64>,
    output_shape: Vec<i64>,
}

impl ImageIo {
    /// Reads the I/O of `session`; `role` ("detector", "classifier") names the
    /// model in error messages.
    fn read(session: &Session, path: &Path, role: &str) -> Result<ImageIo, InferenceError> {
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
