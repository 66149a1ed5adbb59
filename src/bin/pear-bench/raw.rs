//! The raw pipeline in process: the baseline the server's classification images/s are
//! held against (issue 5, P3).
//!
//! Owns loading what the server would load and running the per-file work of its
//! inference workers without the server around it. The models, image folder and worker
//! count come from the server's own config through the library, as `pear-server` reads
//! it (config file, then the state file, then validation); the pipeline is built by
//! [`Service::start`], so it is the very `Pipeline` (one ONNX Runtime session per model
//! per worker) the server's workers share; the payload goes through the server's own
//! parsing and 0x01 validation ([`parse_request`], [`Service::classify_names`]). Each of the
//! `inference.workers` threads then loops over the named files: read and decode
//! ([`load_image`], the worker's own function), [`Pipeline::classify_one`] (one image, as the
//! server with `max_batch: 1`), record the latency. Completions inside the measuring
//! window count, as in the network modes; a "request" here is one image.
//!
//! Must never open a socket, never write anything (no state file, no log file, no
//! model), never run past warm-up + duration or the request budget, and never
//! reimplement a step the server runs: a change to the worker path must show up here.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use pear_server::config::{Config, ConfigError, Overrides};
use pear_server::inference::queue::load_image;
use pear_server::inference::{init_runtime, Pipeline, RuntimeError};
use pear_server::protocol::{parse_request, Command};
use pear_server::service::{Service, StartError};
use pear_server::state;

use crate::load::{new_histogram, LoadError, Outcome, MAX_LATENCY_NS};

/// Why the raw pipeline could not run.
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error("config: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("payload {payload:?}: {why}")]
    Payload { payload: String, why: String },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("starting a raw pipeline thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("a raw pipeline thread panicked")]
    ThreadPanic,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RawPlan {
    /// The server config file (as given to `pear-server --config`).
    pub config: PathBuf,
    /// Requests as they would go on the wire (JSON, hex literals allowed); every one
    /// must be a 0x01. Their file names are used round-robin.
    pub payloads: Vec<String>,
    pub warmup: Duration,
    pub duration: Duration,
    /// Most images classified in total (warm-up included).
    pub max_requests: u64,
}

/// What the run measured, one [`Outcome`] per worker thread.
pub struct RawRun {
    pub outcomes: Vec<Outcome>,
    pub workers: usize,
    /// Classifier file name, e.g. `pear_classifier.onnx`.
    pub model: String,
    pub detector: bool,
}

/// Reads the config as `pear-server` does: the file, then what 0x26/0x30 saved in the
/// state file (read only), then validation: [`state::load_effective`], as the server. Warnings go to stderr.
fn server_config(path: &Path) -> Result<Config, RawError> {
    let effective = state::load_effective(path, &Overrides::default())?;
    for w in effective.warnings {
        eprintln!("pear-bench: config warning: {w}");
    }
    Ok(effective.config)
}

fn file_names(service: &Arc<Service>, payloads: &[String]) -> Result<Vec<String>, RawError> {
    let depth = service.config().server.max_json_depth;
    let mut names = Vec::new();
    for p in payloads {
        let bad = |why: String| RawError::Payload {
            payload: p.clone(),
            why,
        };
        let req = parse_request(p.as_bytes(), depth).map_err(|e| bad(e.error.to_string()))?;
        if Command::from_code(req.cmd) != Some(Command::Classify) {
            return Err(bad(
                "--raw-pipeline runs 0x01 (classify) requests only".into()
            ));
        }
        let list = service
            .classify_names(req.request_data)
            .map_err(|refusal| bad(refusal.message))?;
        names.extend(list);
    }
    Ok(names)
}

/// Loads the server's models and runs the raw pipeline on its worker count.
pub fn run(plan: &RawPlan) -> Result<RawRun, RawError> {
    let config = server_config(&plan.config)?;
    init_runtime(config.inference.ort_library.as_deref())?;
    if config.inference.max_batch > 1 {
        eprintln!(
            "pear-bench: inference.max_batch is {}; the raw pipeline runs one image at a \
             time (the server's max_batch 1 path)",
            config.inference.max_batch
        );
    }
    let workers = config.workers();
    let service = Arc::new(Service::start(config)?);
    let names = Arc::new(file_names(&service, &plan.payloads)?);
    let folder = Arc::new(service.image_folder());
    let pipeline = service.inference().current();
    let budget = plan.max_requests.div_ceil(workers as u64);
    let barrier = Arc::new(Barrier::new(workers));
    let mut handles = Vec::with_capacity(workers);
    for t in 0..workers {
        let (names, folder, pipeline, barrier) = (
            Arc::clone(&names),
            Arc::clone(&folder),
            Arc::clone(&pipeline),
            Arc::clone(&barrier),
        );
        let (warmup, duration) = (plan.warmup, plan.duration);
        let handle = std::thread::Builder::new()
            .name(format!("raw-worker-{t}"))
            .spawn(move || {
                barrier.wait();
                worker(
                    &pipeline,
                    &folder,
                    &names,
                    t * 7919,
                    warmup,
                    duration,
                    budget,
                )
            })
            .map_err(RawError::Spawn)?;
        handles.push(handle);
    }
    let mut outcomes = Vec::with_capacity(workers);
    for h in handles {
        outcomes.push(h.join().map_err(|_| RawError::ThreadPanic)??);
    }
    Ok(RawRun {
        outcomes,
        workers,
        model: pipeline.classifier_file().to_owned(),
        detector: pipeline.detector().is_some(),
    })
}

/// One worker thread's closed loop: the next file, read + decode + classify, record.
fn worker(
    pipeline: &Pipeline,
    folder: &Path,
    names: &[String],
    first: usize,
    warmup: Duration,
    duration: Duration,
    budget: u64,
) -> Result<Outcome, RawError> {
    let mut out = Outcome {
        hist: new_histogram()?,
        requests: 0,
        errors: 0,
        io_errors: 0,
        measured: duration,
    };
    let t0 = Instant::now();
    let measure_from = t0 + warmup;
    let stop_at = measure_from + duration;
    let mut done = 0u64;
    let mut next = first;
    while done < budget {
        let started = Instant::now();
        if started >= stop_at {
            break;
        }
        let name = &names[next % names.len()];
        next = next.wrapping_add(1);
        let ok = match load_image(folder, name, pipeline.decode_plan()) {
            Ok(img) => pipeline.classify_one(&img).is_ok(),
            Err(_) => false,
        };
        done += 1;
        let now = Instant::now();
        if now >= measure_from && now < stop_at {
            let ns = u64::try_from(now.duration_since(started).as_nanos()).unwrap_or(u64::MAX);
            out.hist.saturating_record(ns.clamp(1, MAX_LATENCY_NS));
            out.requests += 1;
            if !ok {
                out.errors += 1;
            }
        }
    }
    out.measured = Instant::now()
        .min(stop_at)
        .saturating_duration_since(measure_from);
    Ok(out)
}
