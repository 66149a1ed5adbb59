//! Commands: what each `cmd` of the protocol does, and the state they share
//! (folders, loaded models, the inference queue).
//!
//! Owns: every command's meaning. [`Service::dispatch`] runs on the reactor
//! thread, so it only validates and decides: it answers from memory
//! ([`Action::Now`]) or reserves a later answer ([`Action::Later`]) and hands
//! the blocking part to a pool itself: inference jobs to the inference queue,
//! everything else (disk, downloads, model loads) to the management pool.
//! Never: touches the disk or a model on the reactor, or knows about sockets,
//! framing or reply order; the [`Responder`] it answers through is all it
//! sees of the reactor.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::{json, Value};

use crate::completion::Responder;
use crate::config::Config;
use crate::download::{self, DownloadLimits};
use crate::inference::{
    CancelSource, CancelToken, ClassifyJob, Decision, FileOutcome, InferenceQueue, Pipeline,
    PipelineOptions, SubmitError,
};
use crate::metrics::{Snapshot, METRICS};
use crate::models::{self, StoreError};
use crate::paths;
use crate::protocol::{Command, ErrorCode, Item};
use crate::state::{self, SavedState};

/// How a request is answered.
pub(crate) enum Action {
    /// At once, with these items.
    Now(Vec<Item>),
    /// Later, in `parts` parts. The reactor reserves the reply's place in the
    /// connection's order, then calls `start` at once, on the reactor thread,
    /// with the [`Responder`] the parts go to; `start` only hands work over
    /// (submits, spawns), it never does it.
    Later { parts: usize, start: Start },
}

/// Starts the work of an [`Action::Later`].
pub(crate) type Start = Box<dyn FnOnce(Responder)>;

/// A whole-request error response (`cmd: null`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    pub fn invalid(message: impl Into<String>) -> Refusal {
        Refusal {
            code: ErrorCode::InvalidMessage,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone)]
struct Folders {
    images: PathBuf,
    models: PathBuf,
}

/// The model files currently loaded (canonical paths).
#[derive(Debug, Clone)]
struct LoadedModels {
    classifier: PathBuf,
    /// `classifier`'s file name, worked out once per swap: 0x22 answers it on
    /// the reactor's hot path.
    classifier_name: String,
    detector: Option<PathBuf>,
}

impl LoadedModels {
    fn new(classifier: PathBuf, detector: Option<PathBuf>) -> LoadedModels {
        LoadedModels {
            classifier_name: file_name(&classifier),
            classifier,
            detector,
        }
    }

    fn set_classifier(&mut self, classifier: PathBuf) {
        *self = LoadedModels::new(classifier, self.detector.take());
    }
}

/// Shared state behind every command. One per server, behind an `Arc`.
pub struct Service {
    config: Config,
    folders: RwLock<Folders>,
    loaded: RwLock<LoadedModels>,
    inference: InferenceQueue,
    pipeline_options: PipelineOptions,
    /// `model.normal_threshold` / `model.no_pear_result`, applied to every model loaded.
    decision: Decision,
    /// Where 0x30/0x34 may move the folders (`Config::allowed_roots`, canonical).
    allowed_roots: Vec<PathBuf>,
    download_limits: DownloadLimits,
    /// What 0x26/0x30/0x34 changed (and what was restored at start); the
    /// lock also serialises writes of the state file.
    changed: Mutex<SavedState>,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("model.img_path: image folder {0} does not exist or is not a directory")]
    ImageFolder(String),
    #[error("model.model_path: {0}")]
    Model(String),
    /// The decision keys do not fit the classifier (the message names the key).
    #[error("{0}")]
    Decision(String),
}

impl Service {
    /// Loads the configured models (blocking) and sets up the shared state.
    pub fn start(config: Config) -> Result<Service, StartError> {
        let images = config
            .image_folder()
            .canonicalize()
            .ok()
            .filter(|p| p.is_dir())
            .ok_or_else(|| StartError::ImageFolder(config.image_folder().display().to_string()))?;
        let classifier = config.classifier_path();
        let classifier = classifier
            .canonicalize()
            .map_err(|e| StartError::Model(format!("cannot open {}: {e}", classifier.display())))?;
        let detector = match config.detector_path() {
            Some(d) => Some(d.canonicalize().map_err(|e| {
                StartError::Model(format!(
                    "model.preprocessor_path: cannot open {}: {e}",
                    d.display()
                ))
            })?),
            None => None,
        };
        let models = classifier
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| config.base_dir.clone());
        let pipeline_options = PipelineOptions {
            confidence_threshold: config.model.confidence_threshold,
            iou_threshold: config.model.iou_threshold,
            img_size: config.model.img_size,
            classes: config.model.classes.clone(),
            sessions: config.workers(),
        };
        let decision = config.decision();
        let pipeline = Pipeline::load(&classifier, detector.as_deref(), &pipeline_options)
            .map_err(|e| StartError::Model(e.to_string()))?
            .with_decision(decision)
            .map_err(|e| StartError::Decision(e.to_string()))?;
        let inference = InferenceQueue::new(
            crate::inference::QueueConfig {
                queue_capacity: config.inference.queue_capacity,
                max_batch: config.inference.max_batch,
                batch_delay: Duration::from_millis(config.inference.batch_delay_ms),
                time_limit: Duration::from_millis(config.inference.time_limit_ms),
            },
            pipeline,
        );
        METRICS.mark_started();
        let download_limits = DownloadLimits {
            max_bytes: config.model.download_max_bytes,
            timeout: Duration::from_secs(config.model.download_timeout_secs),
            allow_hosts: config.model.download_allow_hosts.clone(),
            allow_private: config.model.download_allow_private,
        };
        Ok(Service {
            folders: RwLock::new(Folders { images, models }),
            loaded: RwLock::new(LoadedModels::new(classifier, detector)),
            inference,
            pipeline_options,
            decision,
            allowed_roots: config.allowed_roots(),
            download_limits,
            changed: Mutex::new(SavedState::default()),
            config,
        })
    }

    /// Takes over what was restored from the state file at start: the model
    /// folder (which the config cannot express) and the record of what
    /// commands changed, so the next save keeps it. Call before serving.
    pub fn restore(&self, restored: SavedState) {
        if let Some(models) = &restored.model_folder {
            write(&self.folders).models = models.clone();
        }
        *self.changed.lock().unwrap_or_else(|p| p.into_inner()) = restored;
    }

    /// Records a change made by a command and writes the state file. Runs on
    /// the worker that made the change; a failed write is logged, the change
    /// itself stands.
    fn persist(&self, change: impl FnOnce(&mut SavedState)) {
        let mut changed = self.changed.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut changed);
        let path = self.config.state_file();
        if let Err(e) = state::save(&path, &changed) {
            log::warn!("{e}; the change will not survive a restart");
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn inference(&self) -> &InferenceQueue {
        &self.inference
    }

    pub fn image_folder(&self) -> PathBuf {
        read(&self.folders).images
    }

    pub fn model_folder(&self) -> PathBuf {
        read(&self.folders).models
    }

    /// File name of the classifier in use.
    pub fn current_model(&self) -> String {
        let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        loaded.classifier_name.clone()
    }

    /// The `/metrics` text: every counter, this service's inference queue,
    /// and whether the asking reactor is `ready`.
    pub fn metrics_text(&self, ready: bool) -> String {
        let capacity = self.config.inference.queue_capacity;
        Snapshot::take(self.inference.queue_depth(), capacity, ready).encode()
    }

    /// Validates a request and decides how to answer it. Runs on the reactor:
    /// no disk, no model. `cancel` is the connection's (0x01 takes a token
    /// from it, 0x03 cancels what it issued).
    pub(crate) fn dispatch(
        self: &Arc<Self>,
        cmd: Command,
        data: Option<Vec<Value>>,
        cancel: &CancelSource,
    ) -> Result<Action, Refusal> {
        match cmd {
            Command::Classify => self.classify(data, cancel),
            Command::StopClassification => {
                no_args(cmd, data)?;
                cancel.cancel_pending();
                Ok(Action::Now(vec![Item::ok(None)]))
            }
            Command::CurrentModel => {
                no_args(cmd, data)?;
                Ok(Action::Now(vec![Item::ok(Some(self.current_model()))]))
            }
            Command::CurrentImageFolder => {
                no_args(cmd, data)?;
                let folder = path_string(&self.image_folder());
                Ok(Action::Now(vec![Item::ok(Some(folder))]))
            }
            Command::ServerStatus => {
                no_args(cmd, data)?;
                Ok(Action::Now(vec![self.status_item()]))
            }
            Command::ListModels => {
                no_args(cmd, data)?;
                let me = Arc::clone(self);
                Ok(on_pool(move || me.list_models()))
            }
            Command::ChangeModel => {
                let name = model_name(cmd, data)?;
                let me = Arc::clone(self);
                Ok(on_pool(move || vec![me.change_model(&name)]))
            }
            Command::DeleteModel => {
                let name = model_name(cmd, data)?;
                let me = Arc::clone(self);
                Ok(on_pool(move || vec![me.delete_model(&name)]))
            }
            Command::ChangeImageFolder | Command::ChangeModelFolder => {
                let path = one_string(cmd, data)?;
                let me = Arc::clone(self);
                Ok(on_pool(move || vec![me.change_folder(cmd, &path)]))
            }
            Command::DownloadModel => {
                let url = one_string(cmd, data)?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(Refusal::invalid(
                        "download needs an http:// or https:// URL",
                    ));
                }
                download::target_name(&url).map_err(|e| Refusal::invalid(e.to_string()))?;
                let me = Arc::clone(self);
                Ok(on_pool(move || vec![me.download(&url)]))
            }
        }
    }

    /// 0x01: one inference job per file, each answering its own part. A
    /// request the queue cannot take whole is refused at once with code 5.
    fn classify(&self, data: Option<Vec<Value>>, cancel: &CancelSource) -> Result<Action, Refusal> {
        let names = self.classify_names(data)?;
        if self.inference.queue_depth() + names.len() > self.config.inference.queue_capacity {
            return Err(Refusal {
                code: ErrorCode::Busy,
                message: QUEUE_FULL.to_owned(),
            });
        }
        let inference = self.inference.clone();
        let folder = self.image_folder();
        let cancel = cancel.token();
        Ok(Action::Later {
            parts: names.len(),
            start: Box::new(move |responder| {
                submit_files(&inference, &folder, names, &cancel, &responder)
            }),
        })
    }

    /// Checks the `request_data` of a 0x01 request: the image names to classify.
    pub fn classify_names(&self, data: Option<Vec<Value>>) -> Result<Vec<String>, Refusal> {
        let list = data.ok_or_else(|| Refusal::invalid("classify needs a list of image names"))?;
        if list.is_empty() {
            return Err(Refusal::invalid("classify needs at least one image name"));
        }
        let limit = self.config.server.max_files_per_request;
        if list.len() > limit {
            return Err(Refusal::invalid(format!(
                "too many files in one request: {} (limit {limit})",
                list.len()
            )));
        }
        let mut names = Vec::with_capacity(list.len());
        for v in list {
            let Value::String(name) = v else {
                return Err(Refusal::invalid("image names must be strings"));
            };
            paths::check_name(&name).map_err(|e| Refusal::invalid(e.to_string()))?;
            if !is_image_name(&name) {
                return Err(Refusal::invalid(format!(
                    "unsupported extension: {name:?} (expected .jpg, .jpeg or .png)"
                )));
            }
            names.push(name);
        }
        Ok(names)
    }

    fn status_item(&self) -> Item {
        let m = &METRICS;
        let status = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": m.uptime().as_secs_f64(),
            "open_connections": m.open_connections(),
            "accepted_connections": m.accepted(),
            "rejected_connections": m.rejected(),
            "requests_served": m.requests_served(),
            "queue_depth": self.inference.queue_depth(),
            "backend": self.inference.backend(),
            "current_model": self.current_model(),
            "image_folder": path_string(&self.image_folder()),
            "model_folder": path_string(&self.model_folder()),
        });
        let mut item = Item::ok(None);
        item.result = status;
        item
    }

    fn list_models(&self) -> Vec<Item> {
        match models::list_models(&self.model_folder()) {
            Ok(names) if !names.is_empty() => {
                names.into_iter().map(|n| Item::ok(Some(n))).collect()
            }
            Ok(_) => vec![Item::failed(
                None,
                ErrorCode::ResourceNotFound,
                "no .onnx model in the model folder",
            )],
            Err(e) => vec![store_failure(None, e)],
        }
    }

    fn change_model(&self, name: &str) -> Item {
        let path = match models::resolve_model(&self.model_folder(), name) {
            Ok(p) => p,
            Err(e) => return store_failure(Some(name), e),
        };
        let detector = read(&self.loaded).detector;
        let loaded = Pipeline::load(&path, detector.as_deref(), &self.pipeline_options)
            .and_then(|p| p.with_decision(self.decision));
        match loaded {
            Ok(pipeline) => {
                self.inference.swap(pipeline);
                write(&self.loaded).set_classifier(path);
                log::info!("model changed to {name:?}");
                // Read the live value under the state lock: with concurrent changes
                // the last write holds the value actually in use.
                self.persist(|s| s.model = Some(read(&self.loaded).classifier));
                Item::ok(Some(name.to_owned()))
            }
            Err(e) => {
                log::warn!(
                    "model change to {name:?} failed, keeping the old model: {:?}",
                    e.to_string()
                );
                Item::failed(
                    Some(name.to_owned()),
                    ErrorCode::ResourceNotFound,
                    format!("cannot load {name}: {e}"),
                )
            }
        }
    }

    fn delete_model(&self, name: &str) -> Item {
        let loaded = read(&self.loaded);
        let in_use: Vec<PathBuf> = std::iter::once(loaded.classifier)
            .chain(loaded.detector)
            .collect();
        match models::delete_model(&self.model_folder(), name, &in_use) {
            Ok(()) => {
                log::info!("model {name:?} deleted");
                Item::ok(Some(name.to_owned()))
            }
            Err(e) => store_failure(Some(name), e),
        }
    }

    fn change_folder(&self, cmd: Command, path: &str) -> Item {
        match models::existing_dir(&self.config.base_dir, path) {
            Ok(real) if !self.allowed_roots.iter().any(|r| real.starts_with(r)) => {
                log::warn!(
                    "{} to {path:?} refused: outside model.allowed_roots",
                    cmd.name()
                );
                Item::failed(
                    Some(path.to_owned()),
                    ErrorCode::InvalidMessage,
                    "folder outside model.allowed_roots",
                )
            }
            Ok(real) => {
                let shown = path_string(&real);
                {
                    let mut folders = write(&self.folders);
                    if cmd == Command::ChangeImageFolder {
                        folders.images = real;
                    } else {
                        folders.models = real;
                    }
                }
                log::info!("{} changed to {shown:?}", cmd.name());
                if cmd == Command::ChangeImageFolder {
                    self.persist(|s| s.image_folder = Some(self.image_folder()));
                } else {
                    self.persist(|s| s.model_folder = Some(self.model_folder()));
                }
                Item::ok(Some(shown))
            }
            Err(e) => store_failure(Some(path), e),
        }
    }

    fn download(&self, url: &str) -> Item {
        let validate = |p: &Path| -> Result<(), String> {
            crate::inference::check_model_file(p).map_err(|e| e.to_string())
        };
        match download::download_model(url, &self.model_folder(), &self.download_limits, &validate)
        {
            Ok(name) => {
                log::info!("model downloaded from {url:?} as {name}");
                Item::ok(Some(name))
            }
            Err(e) => {
                log::warn!("download of {url:?} failed: {e}");
                let name = download::target_name(url).ok();
                Item::failed(name, e.error_code(), e.to_string())
            }
        }
    }
}

const QUEUE_FULL: &str = "inference queue full, retry later";

/// Queues one inference job per file of a 0x01 request; each answers part
/// `index` of the reply. A job the queue hands back answers code 5 at once.
fn submit_files(
    inference: &InferenceQueue,
    folder: &Path,
    names: Vec<String>,
    cancel: &CancelToken,
    responder: &Responder,
) {
    for (index, name) in names.into_iter().enumerate() {
        let part = responder.clone();
        let reply_name = name.clone();
        let job = ClassifyJob {
            folder: folder.to_owned(),
            name,
            cancel: cancel.clone(),
            done: Box::new(move |outcome: FileOutcome| {
                part.part(index, outcome_item(reply_name, outcome))
            }),
        };
        if let Err(SubmitError::Busy(job)) = inference.submit(job) {
            let item = Item::failed(Some(job.name), ErrorCode::Busy, QUEUE_FULL);
            responder.part(index, item);
        }
    }
}

/// An answer computed on the management pool, in one part.
fn on_pool(work: impl FnOnce() -> Vec<Item> + Send + 'static) -> Action {
    Action::Later {
        parts: 1,
        start: Box::new(move |responder| spawn_work(work, responder)),
    }
}

/// Threads for management commands; more concurrent ones queue.
const MANAGEMENT_THREADS: usize = 2;

/// Management work (downloads, model loads, directory scans) runs on its own
/// small pool, so a slow download can never hold the inference workers of the
/// global pool (and so stall every client's classification).
fn management_pool() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(MANAGEMENT_THREADS)
            .thread_name(|i| format!("pear-mgmt-{i}"))
            .build()
            .unwrap_or_else(|e| panic!("cannot start the management pool: {e}"))
    })
}

/// Runs blocking work on the management pool and answers with its items; a
/// panic becomes an internal-error item instead of taking the process down
/// (rayon aborts on panics in spawn).
fn spawn_work(work: impl FnOnce() -> Vec<Item> + Send + 'static, responder: Responder) {
    management_pool().spawn(move || {
        let items = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
            Ok(items) => items,
            Err(_) => {
                log::error!("a worker job panicked; answering internal_error");
                vec![Item::failed(
                    None,
                    ErrorCode::InternalError,
                    "internal error",
                )]
            }
        };
        responder.whole(items);
    });
}

/// The response item for one classified file.
fn outcome_item(name: String, outcome: FileOutcome) -> Item {
    let (code, message) = match outcome {
        FileOutcome::Verdict(v) => {
            let bbox = v.bbox.map_or(Value::Null, |b| json!(b));
            let mut item = Item::ok(Some(name));
            item.result = json!(v.class);
            return item
                .with("label", Value::String(v.label))
                .with("confidence", json!(v.confidence))
                .with("bbox", bbox);
        }
        FileOutcome::NotFound(m) => (ErrorCode::ResourceNotFound, m),
        FileOutcome::Undecodable(m) => (ErrorCode::ResourceNotFound, m),
        FileOutcome::Timeout => (ErrorCode::Timeout, "timeout".to_owned()),
        FileOutcome::Cancelled => (ErrorCode::Timeout, "cancelled".to_owned()),
        FileOutcome::Internal(m) => (ErrorCode::InternalError, m),
    };
    let mut item = Item::failed(Some(name), code, message);
    item.result = Value::Null;
    item
}

fn store_failure(name: Option<&str>, e: StoreError) -> Item {
    let code = match e {
        StoreError::NotFound(_) => ErrorCode::ResourceNotFound,
        StoreError::Refused(_) => ErrorCode::InvalidMessage,
        StoreError::Io(_) => ErrorCode::InternalError,
    };
    Item::failed(name.map(str::to_owned), code, e.to_string())
}

fn is_image_name(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| {
            ["jpg", "jpeg", "png"]
                .iter()
                .any(|x| e.eq_ignore_ascii_case(x))
        })
}

fn no_args(cmd: Command, data: Option<Vec<Value>>) -> Result<(), Refusal> {
    match data {
        None => Ok(()),
        Some(v) if v.is_empty() => Ok(()),
        Some(_) => Err(Refusal::invalid(format!(
            "{} takes no request_data (null or [])",
            cmd.name()
        ))),
    }
}

fn one_string(cmd: Command, data: Option<Vec<Value>>) -> Result<String, Refusal> {
    match data.as_deref() {
        Some([Value::String(s)]) => Ok(s.clone()),
        _ => Err(Refusal::invalid(format!(
            "{} needs request_data with exactly one string",
            cmd.name()
        ))),
    }
}

fn model_name(cmd: Command, data: Option<Vec<Value>>) -> Result<String, Refusal> {
    let name = one_string(cmd, data)?;
    paths::check_name(&name).map_err(|e| Refusal::invalid(e.to_string()))?;
    if !models::is_model_name(&name) {
        return Err(Refusal::invalid(format!(
            "{name:?} is not an .onnx model name"
        )));
    }
    Ok(name)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn path_string(p: &Path) -> String {
    p.display().to_string()
}

/// Poison-tolerant lock helpers: a panicked writer cannot leave these small
/// records half-written, so the value is still good.
fn read<T: Clone>(lock: &RwLock<T>) -> T {
    match lock.read() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_extensions() {
        assert!(is_image_name("a.JPG"));
        assert!(is_image_name("b.jpeg"));
        assert!(is_image_name("0x1.png"));
        assert!(!is_image_name("c.gif"));
        assert!(!is_image_name("jpg"));
    }

    #[test]
    fn argument_shapes() {
        assert!(no_args(Command::CurrentModel, None).is_ok());
        assert!(no_args(Command::CurrentModel, Some(vec![])).is_ok());
        assert!(no_args(Command::CurrentModel, Some(vec![json!("x")])).is_err());
        assert_eq!(
            one_string(Command::ChangeModel, Some(vec![json!("m.onnx")])).unwrap(),
            "m.onnx"
        );
        assert!(one_string(Command::ChangeModel, Some(vec![json!(1)])).is_err());
        // `..` and absolute names are resolved (and confined) on a worker.
        assert!(model_name(Command::DeleteModel, Some(vec![json!("../m.onnx")])).is_ok());
        assert!(model_name(Command::DeleteModel, Some(vec![json!("/m/m.onnx")])).is_ok());
        assert!(model_name(Command::DeleteModel, Some(vec![json!("m\u{0}.onnx")])).is_err());
        assert!(model_name(Command::DeleteModel, Some(vec![json!("m.txt")])).is_err());
    }
}
