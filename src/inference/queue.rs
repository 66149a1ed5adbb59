//! The worker side of 0x01: a bounded job queue drained by tasks on the rayon pool,
//! with dynamic batching, cancellation, a time limit, panic isolation and model swap.
//!
//! Design:
//! - [`InferenceQueue::submit`] never blocks. It pushes the job onto a bounded
//!   `VecDeque` (full → [`SubmitError::Busy`] hands the job back, the caller answers
//!   code 5) and spawns one drain task on the pool. Every push is paired with a spawn
//!   and every task that finds work takes at least one job, so no job is stranded.
//! - Batching is opportunistic: a drain task takes its fair share of what is queued
//!   *now* (queue length / pool threads, at most `max_batch`), from every connection.
//!   Under load batches form by themselves; a shallow queue is spread over the workers;
//!   an idle server answers a lone request without waiting. `batch_delay > 0` lets a
//!   task wait that long for a fuller batch. Both are off by default (`max_batch` 1,
//!   no delay): on the shipped models batching did not win in `benches/pipeline.rs`
//!   (the detector has a fixed batch of 1, and the classifier ran at the same
//!   per-image cost at batch 8); they pay off for models with a dynamic batch axis
//!   where batch runs are cheaper per image.
//! - Per job, on the worker: cancelled before start → `Cancelled`; older than
//!   `time_limit` → `Timeout`; resolve with `crate::paths::resolve_confined`
//!   (missing/escaping → `NotFound`); read and decode (→ `Undecodable`; a large JPEG
//!   at a reduced scale, [`super::decode`]). Then the
//!   whole batch runs through [`Pipeline::classify_decoded`] on the pipeline that was
//!   current when the batch started; a job that ends past `time_limit` → `Timeout`.
//! - Every step runs under `catch_unwind`: a panic while loading one file fails only
//!   that job; a panic in the batched inference is retried image by image so only the
//!   culprit gets `Internal`. A panicking `done` callback is logged and swallowed. The
//!   pool thread always survives.
//! - [`InferenceQueue::swap`] replaces an `Arc<Pipeline>`; running batches keep the
//!   old one alive until they finish.

use std::collections::VecDeque;
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use super::decode::{DecodePlan, Decoded};
use super::pipeline::{Pipeline, Verdict};
use super::{runtime, InferenceError};

/// Largest image file read, in bytes.
pub const MAX_IMAGE_BYTES: u64 = 64 << 20;
pub use super::decode::{decode_image, MAX_IMAGE_SIDE};

/// Queue and batching settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Jobs waiting to start, at most; past it `submit` answers `Busy`.
    pub queue_capacity: usize,
    /// Most images per model run.
    pub max_batch: usize,
    /// How long a drain task may wait for a fuller batch (0 = never wait).
    pub batch_delay: Duration,
    /// A job not finished this long after `submit` answers `Timeout`.
    pub time_limit: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            queue_capacity: 1024,
            max_batch: 1,
            batch_delay: Duration::ZERO,
            time_limit: Duration::from_secs(30),
        }
    }
}

#[derive(Debug)]
struct CancelState {
    issued: AtomicU64,
    cancelled_below: AtomicU64,
}

/// Issues [`CancelToken`]s (one source per connection) and cancels every token issued
/// so far at once (0x03); tokens issued later are not affected.
#[derive(Debug, Clone)]
pub struct CancelSource(Arc<CancelState>);

impl Default for CancelSource {
    fn default() -> Self {
        Self::new()
    }
}

impl CancelSource {
    pub fn new() -> Self {
        CancelSource(Arc::new(CancelState {
            issued: AtomicU64::new(0),
            cancelled_below: AtomicU64::new(0),
        }))
    }

    pub fn token(&self) -> CancelToken {
        let seq = self.0.issued.fetch_add(1, Ordering::SeqCst);
        CancelToken {
            state: Arc::clone(&self.0),
            seq,
        }
    }

    /// Cancels every token issued so far.
    pub fn cancel_pending(&self) {
        let upto = self.0.issued.load(Ordering::SeqCst);
        self.0.cancelled_below.fetch_max(upto, Ordering::SeqCst);
    }
}

/// Checked by a worker before it starts a job.
#[derive(Debug, Clone)]
pub struct CancelToken {
    state: Arc<CancelState>,
    seq: u64,
}

impl CancelToken {
    pub fn is_cancelled(&self) -> bool {
        self.seq < self.state.cancelled_below.load(Ordering::SeqCst)
    }
}

/// One file of a 0x01 request.
pub struct ClassifyJob {
    /// Image folder (canonical) at request time.
    pub folder: PathBuf,
    /// Client name, already lexically checked by `crate::paths::check_name`.
    pub name: String,
    pub cancel: CancelToken,
    /// Called exactly once, from a worker thread.
    pub done: Box<dyn FnOnce(FileOutcome) + Send>,
}

impl std::fmt::Debug for ClassifyJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassifyJob")
            .field("folder", &self.folder)
            .field("name", &self.name)
            .field("cancelled", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// How one file ended.
#[derive(Debug, Clone, PartialEq)]
pub enum FileOutcome {
    Verdict(Verdict),
    /// Missing, unreadable, or resolving outside the folder (error code 2).
    NotFound(String),
    /// Not a decodable jpg/png (error code 2).
    Undecodable(String),
    /// Past the time limit (error code 4).
    Timeout,
    /// Cancelled by 0x03 before it started (error code 4, "cancelled").
    Cancelled,
    /// A panic or an inference failure (error code 6).
    Internal(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full; the job is handed back untouched.
    #[error("inference queue is full")]
    Busy(ClassifyJob),
}

/// See [`InferenceQueue::set_test_hook`].
pub type TestHook = Arc<dyn Fn(&str) + Send + Sync>;

struct Queued {
    job: ClassifyJob,
    submitted: Instant,
}

struct Inner {
    queue: Mutex<VecDeque<Queued>>,
    arrived: Condvar,
    cfg: QueueConfig,
    pipeline: RwLock<Arc<Pipeline>>,
    pool: Option<Arc<rayon::ThreadPool>>,
    hook: RwLock<Option<TestHook>>,
}

/// The inference queue of 0x01. Cloning shares the same queue and pipeline.
#[derive(Clone)]
pub struct InferenceQueue {
    inner: Arc<Inner>,
}

impl InferenceQueue {
    /// Runs jobs on the global rayon pool.
    pub fn new(cfg: QueueConfig, pipeline: Pipeline) -> InferenceQueue {
        Self::build(cfg, pipeline, None)
    }

    /// Runs jobs on `pool` instead of the global one (tests, benches).
    pub fn with_pool(
        cfg: QueueConfig,
        pipeline: Pipeline,
        pool: Arc<rayon::ThreadPool>,
    ) -> InferenceQueue {
        Self::build(cfg, pipeline, Some(pool))
    }

    fn build(
        mut cfg: QueueConfig,
        pipeline: Pipeline,
        pool: Option<Arc<rayon::ThreadPool>>,
    ) -> InferenceQueue {
        cfg.max_batch = cfg.max_batch.max(1);
        InferenceQueue {
            inner: Arc::new(Inner {
                queue: Mutex::new(VecDeque::new()),
                arrived: Condvar::new(),
                cfg,
                pipeline: RwLock::new(Arc::new(pipeline)),
                pool,
                hook: RwLock::new(None),
            }),
        }
    }

    /// Queues a job; never blocks. A full queue hands the job back.
    pub fn submit(&self, job: ClassifyJob) -> Result<(), SubmitError> {
        {
            let mut q = self.inner.lock_queue();
            if q.len() >= self.inner.cfg.queue_capacity {
                return Err(SubmitError::Busy(job));
            }
            q.push_back(Queued {
                job,
                submitted: Instant::now(),
            });
        }
        self.inner.arrived.notify_one();
        let inner = Arc::clone(&self.inner);
        let task = move || inner.drain();
        match &self.inner.pool {
            Some(pool) => pool.spawn(task),
            None => rayon::spawn(task),
        }
        Ok(())
    }

    /// Replaces the pipeline; batches already running finish on the old one.
    pub fn swap(&self, pipeline: Pipeline) {
        let new = Arc::new(pipeline);
        *self
            .inner
            .pipeline
            .write()
            .unwrap_or_else(|e| e.into_inner()) = new;
    }

    pub fn current(&self) -> Arc<Pipeline> {
        self.inner.current()
    }

    /// Jobs waiting to start.
    pub fn queue_depth(&self) -> usize {
        self.inner.lock_queue().len()
    }

    /// e.g. `onnxruntime 1.31.1 (cpu)`.
    pub fn backend(&self) -> String {
        runtime::backend_description()
    }

    /// Test hook: called with the file name at the start of every job, on the worker.
    /// Lets tests block, slow down or panic inside a job.
    #[doc(hidden)]
    pub fn set_test_hook(&self, hook: Option<TestHook>) {
        *self.inner.hook.write().unwrap_or_else(|e| e.into_inner()) = hook;
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

impl Inner {
    fn lock_queue(&self) -> MutexGuard<'_, VecDeque<Queued>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn current(&self) -> Arc<Pipeline> {
        Arc::clone(&self.pipeline.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// One drain task: take a batch (maybe waiting `batch_delay` for a fuller one), run it.
    fn drain(&self) {
        let workers = match &self.pool {
            Some(p) => p.current_num_threads(),
            None => rayon::current_num_threads(),
        }
        .max(1);
        let mut batch = Vec::new();
        {
            let mut q = self.lock_queue();
            if q.is_empty() {
                return;
            }
            // Take a fair share so a shallow queue is spread over the workers
            // instead of one worker batching everything while the others idle.
            let max = self.cfg.max_batch.min(q.len().div_ceil(workers)).max(1);
            let take = |q: &mut VecDeque<Queued>, batch: &mut Vec<Queued>| {
                let n = (max - batch.len()).min(q.len());
                batch.extend(q.drain(..n));
            };
            take(&mut q, &mut batch);
            if !self.cfg.batch_delay.is_zero() && batch.len() < max {
                let deadline = Instant::now() + self.cfg.batch_delay;
                while batch.len() < max {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    q = match self.arrived.wait_timeout(q, deadline - now) {
                        Ok((g, _)) => g,
                        Err(e) => e.into_inner().0,
                    };
                    take(&mut q, &mut batch);
                }
            }
        }
        self.run_batch(batch);
    }

    fn run_batch(&self, batch: Vec<Queued>) {
        let limit = self.cfg.time_limit;
        let hook = self.hook.read().unwrap_or_else(|e| e.into_inner()).clone();
        // Captured before any job starts: a swap from now on affects later batches only.
        let pipeline = self.current();
        let mut ready: Vec<Queued> = Vec::with_capacity(batch.len());
        let mut imgs: Vec<Decoded> = Vec::with_capacity(batch.len());
        let plan = pipeline.decode_plan();
        for q in batch {
            if q.job.cancel.is_cancelled() {
                finish(q, FileOutcome::Cancelled);
                continue;
            }
            if q.submitted.elapsed() > limit {
                finish(q, FileOutcome::Timeout);
                continue;
            }
            let loaded = catch_unwind(AssertUnwindSafe(|| {
                if let Some(h) = &hook {
                    h(&q.job.name);
                }
                load_image(&q.job.folder, &q.job.name, plan)
            }));
            match loaded {
                Ok(Ok(img)) => {
                    ready.push(q);
                    imgs.push(img);
                }
                Ok(Err(outcome)) => finish(q, outcome),
                Err(p) => finish(
                    q,
                    FileOutcome::Internal(format!("panic: {}", panic_message(&*p))),
                ),
            }
        }
        if ready.is_empty() {
            return;
        }
        let batch_started = Instant::now();
        let results = match catch_unwind(AssertUnwindSafe(|| pipeline.classify_decoded(&imgs))) {
            Ok(r) if r.len() == imgs.len() => r,
            _ => imgs
                .iter()
                .map(
                    |img| match catch_unwind(AssertUnwindSafe(|| pipeline.classify_one(img))) {
                        Ok(r) => r,
                        Err(p) => Err(InferenceError::Panic(panic_message(&*p))),
                    },
                )
                .collect(),
        };
        crate::metrics::METRICS.batch(imgs.len(), batch_started.elapsed());
        drop(imgs);
        for (q, r) in ready.into_iter().zip(results) {
            let outcome = match r {
                _ if q.submitted.elapsed() > limit => FileOutcome::Timeout,
                Ok(v) => FileOutcome::Verdict(v),
                Err(InferenceError::EmptyImage) => {
                    FileOutcome::Undecodable(format!("{}: empty image", q.job.name))
                }
                Err(e) => FileOutcome::Internal(e.to_string()),
            };
            finish(q, outcome);
        }
    }
}

fn finish(q: Queued, outcome: FileOutcome) {
    let name = q.job.name;
    if catch_unwind(AssertUnwindSafe(move || (q.job.done)(outcome))).is_err() {
        log::error!("completion callback for {name:?} panicked");
    }
}

/// Resolves `name` inside `folder`, reads and decodes it: the per-file work a worker
/// does before inference (also run by `pear-bench --raw-pipeline`). `name` must
/// already have passed `crate::paths::check_name`. Decoded by the pipeline's
/// [`Pipeline::decode_plan`] (a large JPEG at a reduced scale, or full size like
/// OpenCV), see [`super::decode`].
pub fn load_image(folder: &Path, name: &str, plan: DecodePlan) -> Result<Decoded, FileOutcome> {
    let not_found = || FileOutcome::NotFound(format!("{name}: not found"));
    let path = crate::paths::resolve_confined(folder, name).map_err(|_| not_found())?;
    let file = std::fs::File::open(&path).map_err(|_| not_found())?;
    let meta = file.metadata().map_err(|_| not_found())?;
    if !meta.is_file() {
        return Err(not_found());
    }
    let len = meta.len();
    if len > MAX_IMAGE_BYTES {
        return Err(FileOutcome::Undecodable(format!(
            "{name}: larger than {MAX_IMAGE_BYTES} bytes"
        )));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_IMAGE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|_| not_found())?;
    plan.decode(&bytes)
        .map_err(|e| FileOutcome::Undecodable(format!("{name}: {e}")))
}
