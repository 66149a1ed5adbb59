//! Configuration: the YAML file (`config/server_config.yaml`), its validation and
//! the CLI overrides.
//!
//! Owns: the typed schema, defaults, the rule that relative paths resolve against
//! the config file's directory, and the one clear error message (naming the key
//! path) that makes the server exit with code 2. An old config file holding only
//! the original Python server's keys still loads; unknown keys are warned about,
//! never fatal.
//!
//! Never: opens sockets, loads models or reads anything but the config file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::protocol::FramingMode;

/// A config problem: which key, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
}

fn invalid(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        problem: problem.into(),
    }
}

/// The whole file. Section names follow the original server's file.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    pub server: ServerSection,
    pub model: ModelSection,
    pub inference: InferenceSection,
    pub logging: LoggingSection,
    pub metrics: MetricsSection,
    /// Kept for compatibility with the original file; the codes are fixed by the
    /// protocol and this section is not consulted.
    #[serde(rename = "ERROR_CODE")]
    pub error_code: Option<serde_yaml::Value>,
    /// Directory of the config file; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerSection {
    pub host: String,
    pub port: u16,
    /// Listen backlog (the original's meaning of this key).
    pub max_connections: u32,
    /// Bytes read from a socket per `read` call.
    pub buffer_size: usize,
    /// Only "utf-8" is supported.
    pub encoding: String,
    /// Open connections allowed at once; past it new ones are closed at once.
    pub connection_limit: usize,
    /// Largest request message in bytes; a larger one gets code 1 and a close.
    pub max_message_bytes: usize,
    /// Largest JSON nesting depth accepted in a request.
    pub max_json_depth: usize,
    /// Most file names in one request.
    pub max_files_per_request: usize,
    /// Seconds without any traffic before a connection is closed (0 = never).
    pub idle_timeout_secs: u64,
    /// Requests of one connection being worked on at once; past it reading pauses.
    pub max_inflight_per_connection: usize,
    /// Pending reply bytes per connection before reading pauses.
    pub max_output_bytes: usize,
    /// Input and output buffer bytes over all connections together (the
    /// memory budget); past it reading pauses server-wide and a message that
    /// cannot fit is answered code 5. Split evenly between the reactors.
    pub max_buffered_bytes: usize,
    /// auto | json | length.
    pub framing: FramingMode,
    /// Seconds to finish in-flight work after SIGINT/SIGTERM.
    pub shutdown_grace_secs: u64,
    /// Reactor threads, each with its own SO_REUSEPORT listener on the same
    /// address; they share one worker pool and one model.
    pub reactors: usize,
    /// Where 0x26/0x30/0x34 changes are kept across restarts; null =
    /// `server_state.json` next to the config file.
    pub state_file: Option<PathBuf>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            host: "0.0.0.0".into(),
            port: 9090,
            max_connections: 5,
            buffer_size: 1024,
            encoding: "utf-8".into(),
            connection_limit: 65536,
            max_message_bytes: 1 << 20,
            max_json_depth: 32,
            max_files_per_request: 256,
            idle_timeout_secs: 300,
            max_inflight_per_connection: 32,
            max_output_bytes: 1 << 20,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            framing: FramingMode::Auto,
            shutdown_grace_secs: 10,
            reactors: 1,
            state_file: None,
        }
    }
}

/// Default of `server.max_buffered_bytes`: 256 MiB. Ordinary traffic holds far
/// less (a line PC's 0x01 is a few KiB; a connection between requests keeps at
/// most 4 KiB of input and 4 KiB of output buffer, so even 16,000 such
/// connections stay under half of it), and it still takes 256 messages of the
/// 1 MiB `max_message_bytes` at once. Without a budget the worst case is
/// `connection_limit` x (`max_message_bytes` + `max_output_bytes`), 128 GiB with
/// the defaults; with it the process stays near its working set (330-404 MiB
/// RSS in the 60-minute soak) plus 256 MiB and the documented slack: inside 1 GiB.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 256 << 20;

/// Default of `model.normal_threshold`: a pear is answered normal only when the
/// classifier gives p(normal) at least this. The one place to change it (the
/// model team sets the final value from their figures).
pub const DEFAULT_NORMAL_THRESHOLD: f32 = 0.5;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelSection {
    /// The classifier.
    pub model_path: PathBuf,
    /// The detector; null = classify the whole image.
    pub preprocessor_path: Option<PathBuf>,
    /// The image folder.
    pub img_path: PathBuf,
    pub confidence_threshold: f32,
    pub iou_threshold: f32,
    /// Detector input size when the model does not say.
    pub img_size: u32,
    /// Labels when the classifier's metadata has none.
    pub classes: Vec<String>,
    /// A pear is normal (class 0) only when p(normal) >= this; otherwise the
    /// most likely defect class is answered. 0..1; null = plain argmax, the
    /// Python original's rule (for a line moving its own models over).
    pub normal_threshold: Option<f32>,
    /// The `result` answered when the detector finds no pear (label `no_pear`).
    /// Must be a class of the classifier (checked when a model loads).
    pub no_pear_result: usize,
    pub download_max_bytes: u64,
    pub download_timeout_secs: u64,
    /// Hosts 0x20 may download from (unset = any public host).
    pub download_allow_hosts: Option<Vec<String>>,
    /// Allow downloads from loopback and private addresses.
    pub download_allow_private: bool,
    /// Folders (and their sub-folders) that 0x30/0x34 may switch to; unset = the
    /// config file's folder, the image folder and the model folder.
    pub allowed_roots: Option<Vec<PathBuf>>,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            model_path: PathBuf::from("../models/pear_classifier.onnx"),
            preprocessor_path: Some(PathBuf::from("../models/pear_detector.onnx")),
            img_path: PathBuf::from("../samples"),
            confidence_threshold: 0.5,
            iou_threshold: 0.45,
            img_size: 320,
            classes: [
                "normal",
                "black_spot",
                "bruise",
                "cut",
                "rot",
                "insect_hole",
                "scab",
                "mold",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            normal_threshold: Some(DEFAULT_NORMAL_THRESHOLD),
            no_pear_result: 0,
            download_max_bytes: 64 << 20,
            download_timeout_secs: 60,
            download_allow_hosts: None,
            download_allow_private: false,
            allowed_roots: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct InferenceSection {
    /// Worker threads in the pool (0 = one per core).
    pub workers: usize,
    /// Only "onnxruntime" (CPU) is built in.
    pub backend: String,
    /// Path of libonnxruntime.so; unset = `ORT_DYLIB_PATH`, then the copy the build fetched.
    pub ort_library: Option<PathBuf>,
    /// Files waiting for inference; past it requests get code 5.
    pub queue_capacity: usize,
    /// Largest classifier batch (1 = batching off).
    pub max_batch: usize,
    /// How long a batch may wait to fill, in milliseconds.
    pub batch_delay_ms: u64,
    /// A file not answered within this many milliseconds gets code 4.
    pub time_limit_ms: u64,
}

impl Default for InferenceSection {
    fn default() -> Self {
        InferenceSection {
            workers: 0,
            backend: "onnxruntime".into(),
            ort_library: None,
            queue_capacity: 1024,
            max_batch: 1,
            batch_delay_ms: 0,
            time_limit_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LoggingSection {
    /// DEBUG | INFO | WARNING | ERROR | CRITICAL (Python names) or trace/off.
    pub level: String,
    /// The original's Python format string: accepted and ignored.
    pub format: Option<String>,
    /// Log file; parent folders are created. null = terminal only.
    pub file: Option<PathBuf>,
}

impl Default for LoggingSection {
    fn default() -> Self {
        LoggingSection {
            level: "INFO".into(),
            format: None,
            file: Some(PathBuf::from("../logs/pear_detection.log")),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct MetricsSection {
    /// Address of the HTTP metrics/health listener; null = off.
    pub listen: Option<String>,
}

/// Command-line overrides; `None` keeps the file's value.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub log_level: Option<String>,
}

/// What loading produced besides the config: warnings to log once the logger runs.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads, parses, applies overrides and validates `path`.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Loaded, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base_dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."));
        let base_dir = base_dir
            .canonicalize()
            .unwrap_or_else(|_| base_dir.to_owned());
        let mut loaded = Config::from_yaml(&text, &base_dir).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        loaded.config.apply(overrides);
        loaded.config.validate()?;
        Ok(loaded)
    }

    /// Parses YAML text; relative paths will resolve against `base_dir`.
    /// Does not validate values (see [`Config::validate`]).
    pub fn from_yaml(text: &str, base_dir: &Path) -> Result<Loaded, ConfigError> {
        let mut warnings = Vec::new();
        let de = serde_yaml::Deserializer::from_str(text);
        let mut unknown = Vec::new();
        let parsed: Option<Config> = serde_ignored::deserialize(de, |p| {
            unknown.push(p.to_string());
        })
        .map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        // An empty file deserialises as unit/None: all defaults.
        let mut config = parsed.unwrap_or_default();
        for key in unknown {
            warnings.push(format!("unknown config key {key:?} ignored"));
        }
        if config.logging.format.is_some() {
            warnings
                .push("logging.format (a Python format string) is accepted and ignored".to_owned());
        }
        config.base_dir = base_dir.to_owned();
        Ok(Loaded { config, warnings })
    }

    pub fn apply(&mut self, o: &Overrides) {
        if let Some(h) = &o.host {
            self.server.host = h.clone();
        }
        if let Some(p) = o.port {
            self.server.port = p;
        }
        if let Some(l) = &o.log_level {
            self.logging.level = l.clone();
        }
    }

    /// Checks every value a running server relies on; the first problem found
    /// is returned, naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if !s.encoding.eq_ignore_ascii_case("utf-8") && !s.encoding.eq_ignore_ascii_case("utf8") {
            return Err(invalid(
                "server.encoding",
                format!("only \"utf-8\" is supported, got {:?}", s.encoding),
            ));
        }
        if s.host.parse::<std::net::IpAddr>().is_err() && s.host != "localhost" {
            return Err(invalid(
                "server.host",
                format!("expected an IP address or \"localhost\", got {:?}", s.host),
            ));
        }
        positive("server.max_connections", s.max_connections as u64)?;
        in_range("server.buffer_size", s.buffer_size as u64, 64, 16 << 20)?;
        positive("server.connection_limit", s.connection_limit as u64)?;
        in_range(
            "server.max_message_bytes",
            s.max_message_bytes as u64,
            64,
            1 << 30,
        )?;
        in_range("server.max_json_depth", s.max_json_depth as u64, 2, 1024)?;
        positive(
            "server.max_files_per_request",
            s.max_files_per_request as u64,
        )?;
        positive(
            "server.max_inflight_per_connection",
            s.max_inflight_per_connection as u64,
        )?;
        in_range("server.reactors", s.reactors as u64, 1, 64)?;
        in_range(
            "server.max_output_bytes",
            s.max_output_bytes as u64,
            1024,
            1 << 30,
        )?;
        // Each reactor gets an equal share; a share smaller than one message
        // could never take in a message of the size the server accepts.
        let least = s.max_message_bytes.saturating_mul(s.reactors);
        if s.max_buffered_bytes < least {
            return Err(invalid(
                "server.max_buffered_bytes",
                format!(
                    "expected at least server.max_message_bytes x server.reactors ({least}), got {}",
                    s.max_buffered_bytes
                ),
            ));
        }

        let m = &self.model;
        if !(0.0..=1.0).contains(&m.confidence_threshold) {
            return Err(invalid(
                "model.confidence_threshold",
                format!("expected a number 0..1, got {}", m.confidence_threshold),
            ));
        }
        if !(0.0..=1.0).contains(&m.iou_threshold) {
            return Err(invalid(
                "model.iou_threshold",
                format!("expected a number 0..1, got {}", m.iou_threshold),
            ));
        }
        if let Some(t) = m.normal_threshold.filter(|t| !(0.0..=1.0).contains(t)) {
            return Err(invalid(
                "model.normal_threshold",
                format!("expected a number 0..1 or null, got {t}"),
            ));
        }
        in_range("model.img_size", m.img_size as u64, 16, 4096)?;
        if m.model_path.as_os_str().is_empty() {
            return Err(invalid(
                "model.model_path",
                "must name the classifier .onnx file",
            ));
        }
        positive("model.download_max_bytes", m.download_max_bytes)?;
        positive("model.download_timeout_secs", m.download_timeout_secs)?;

        let i = &self.inference;
        if !i.backend.eq_ignore_ascii_case("onnxruntime") {
            return Err(invalid(
                "inference.backend",
                format!("only \"onnxruntime\" is built in, got {:?}", i.backend),
            ));
        }
        in_range("inference.workers", i.workers as u64, 0, 256)?;
        positive("inference.queue_capacity", i.queue_capacity as u64)?;
        in_range("inference.max_batch", i.max_batch as u64, 1, 256)?;
        positive("inference.time_limit_ms", i.time_limit_ms)?;

        parse_level(&self.logging.level).ok_or_else(|| {
            invalid(
                "logging.level",
                format!(
                    "expected DEBUG, INFO, WARNING, ERROR, CRITICAL, TRACE or OFF, got {:?}",
                    self.logging.level
                ),
            )
        })?;
        if let Some(addr) = &self.metrics.listen {
            addr.parse::<std::net::SocketAddr>().map_err(|_| {
                invalid(
                    "metrics.listen",
                    format!("expected an address like \"127.0.0.1:9100\", got {addr:?}"),
                )
            })?;
        }
        Ok(())
    }

    /// `p` as given, or joined to the config file's directory when relative.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }

    pub fn classifier_path(&self) -> PathBuf {
        self.resolve(&self.model.model_path)
    }
    pub fn detector_path(&self) -> Option<PathBuf> {
        self.model
            .preprocessor_path
            .as_deref()
            .map(|p| self.resolve(p))
    }
    pub fn image_folder(&self) -> PathBuf {
        self.resolve(&self.model.img_path)
    }
    /// The model folder starts as the directory of `model_path`.
    pub fn model_folder(&self) -> PathBuf {
        let classifier = self.classifier_path();
        classifier
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| self.base_dir.clone())
    }
    /// Where 0x30/0x34 may move the image and model folders: `model.allowed_roots`
    /// (relative entries against the config file's folder), else the config file's
    /// folder, the image folder and the model folder. Canonical where they exist.
    pub fn allowed_roots(&self) -> Vec<PathBuf> {
        let roots = match &self.model.allowed_roots {
            Some(list) => list.iter().map(|p| self.resolve(p)).collect(),
            None => vec![
                self.base_dir.clone(),
                self.image_folder(),
                self.model_folder(),
            ],
        };
        roots
            .into_iter()
            .map(|p| p.canonicalize().unwrap_or(p))
            .collect()
    }
    /// The state file (see [`crate::state`]).
    pub fn state_file(&self) -> PathBuf {
        match &self.server.state_file {
            Some(p) => self.resolve(p),
            None => self.base_dir.join("server_state.json"),
        }
    }
    pub fn log_file(&self) -> Option<PathBuf> {
        self.logging.file.as_deref().map(|p| self.resolve(p))
    }
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.server.idle_timeout_secs > 0)
            .then(|| Duration::from_secs(self.server.idle_timeout_secs))
    }
    pub fn log_level(&self) -> log::LevelFilter {
        parse_level(&self.logging.level).unwrap_or(log::LevelFilter::Info)
    }
    /// How the classifier's probabilities become an answer (`model.normal_threshold`,
    /// `model.no_pear_result`). `no_pear_result` is checked against the classifier
    /// when a model loads ([`crate::inference::Pipeline::with_decision`]).
    pub fn decision(&self) -> crate::inference::Decision {
        crate::inference::Decision {
            normal_threshold: self.model.normal_threshold,
            no_pear_result: self.model.no_pear_result,
        }
    }

    /// Worker threads, resolving 0 to the number of cores.
    pub fn workers(&self) -> usize {
        if self.inference.workers > 0 {
            self.inference.workers
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }
    }

    /// The effective configuration as YAML (for `--check-config`).
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

fn positive(key: &str, v: u64) -> Result<(), ConfigError> {
    if v == 0 {
        Err(invalid(key, "expected a positive integer, got 0"))
    } else {
        Ok(())
    }
}

fn in_range(key: &str, v: u64, lo: u64, hi: u64) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        Err(invalid(
            key,
            format!("expected an integer {lo}..{hi}, got {v}"),
        ))
    } else {
        Ok(())
    }
}

/// Python logging level names and Rust ones, case-insensitive.
pub fn parse_level(s: &str) -> Option<log::LevelFilter> {
    use log::LevelFilter::*;
    Some(match s.to_ascii_uppercase().as_str() {
        "OFF" | "NOTSET" => Off,
        "CRITICAL" | "FATAL" | "ERROR" => Error,
        "WARNING" | "WARN" => Warn,
        "INFO" => Info,
        "DEBUG" => Debug,
        "TRACE" => Trace,
        _ => return None,
    })
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_yaml())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let loaded = Config::from_yaml(text, Path::new("/cfg"))?;
        loaded.config.validate()?;
        Ok(loaded.config)
    }

    #[test]
    fn original_python_config_loads() {
        let text = r#"
server:
  host: "0.0.0.0"
  port: 9090
  max_connections: 5
  buffer_size: 1024
  encoding: "utf-8"
model:
  model_path: "models/best.onnx"
  preprocessor_path: "models/yolo.onnx"
  img_path: "images"
  confidence_threshold: 0.5
  img_size: 640
  classes: ["normal", "a", "b"]
logging:
  level: "INFO"
  format: "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
  file: "logs/pear_detection.log"
ERROR_CODE:
  no_error: 0
  invalid_message: 1
  resource_not_found: 2
  not_exist_command: 3
  timeout: 4
"#;
        let loaded = Config::from_yaml(text, Path::new("/cfg")).unwrap();
        loaded.config.validate().unwrap();
        let c = loaded.config;
        assert_eq!(c.server.port, 9090);
        assert_eq!(c.server.max_connections, 5);
        assert_eq!(c.classifier_path(), PathBuf::from("/cfg/models/best.onnx"));
        assert_eq!(c.model_folder(), PathBuf::from("/cfg/models"));
        assert_eq!(c.image_folder(), PathBuf::from("/cfg/images"));
        assert_eq!(c.server.connection_limit, 65536);
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        assert!(loaded.warnings[0].contains("logging.format"));
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = parse("server:\n  port: \"abc\"\n").unwrap_err().to_string();
        assert!(err.contains("server.port"), "{err}");
        let err = parse("server:\n  port: 70000\n").unwrap_err().to_string();
        assert!(err.contains("server.port"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = parse("server:\n  encoding: latin-1\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("server.encoding:"), "{err}");
        let err = parse("model:\n  confidence_threshold: 1.5\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("model.confidence_threshold:"), "{err}");
        let err = parse("logging:\n  level: LOUD\n").unwrap_err().to_string();
        assert!(err.starts_with("logging.level:"), "{err}");
        let err = parse("server:\n  framing: morse\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.framing"), "{err}");
        let err = parse("inference:\n  max_batch: 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("inference.max_batch:"), "{err}");
    }

    #[test]
    fn decision_keys() {
        let c = parse("").unwrap();
        assert_eq!(c.model.normal_threshold, Some(DEFAULT_NORMAL_THRESHOLD));
        assert_eq!(c.model.no_pear_result, 0);
        assert_eq!(
            c.decision().normal_threshold,
            Some(DEFAULT_NORMAL_THRESHOLD)
        );
        let c = parse("model:\n  normal_threshold: 0.8\n  no_pear_result: 4\n").unwrap();
        assert_eq!(c.model.normal_threshold, Some(0.8));
        assert_eq!(c.model.no_pear_result, 4);
        assert_eq!(
            c.decision(),
            crate::inference::Decision {
                normal_threshold: Some(0.8),
                no_pear_result: 4
            }
        );
        for ok in ["0", "1", "1.0", "0.0"] {
            let c = parse(&format!("model:\n  normal_threshold: {ok}\n")).unwrap();
            assert!(
                c.model
                    .normal_threshold
                    .is_some_and(|t| (0.0..=1.0).contains(&t)),
                "{ok}"
            );
        }
        // null: plain argmax, the Python original's rule.
        let c = parse(
            "model:
  normal_threshold: null
",
        )
        .unwrap();
        assert_eq!(c.model.normal_threshold, None);
        assert_eq!(c.decision().normal_threshold, None);
        for bad in ["1.01", "-0.1", ".nan", ".inf", "-.inf"] {
            let err = parse(&format!("model:\n  normal_threshold: {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("model.normal_threshold:"), "{bad}: {err}");
        }
        for bad in ["\"high\"", "[0.5]"] {
            let err = parse(&format!("model:\n  normal_threshold: {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("model.normal_threshold"), "{bad}: {err}");
        }
        for bad in ["-1", "0.5", "\"reject\""] {
            let err = parse(&format!("model:\n  no_pear_result: {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("model.no_pear_result"), "{bad}: {err}");
        }
        // The shipped file sets both keys.
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config/server_config.yaml"),
        )
        .unwrap();
        let loaded = Config::from_yaml(&shipped, Path::new("/cfg")).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        loaded.config.validate().unwrap();
        assert_eq!(loaded.config.model.no_pear_result, 0);
    }

    #[test]
    fn buffered_budget_holds_a_message_per_reactor() {
        let c = parse("").unwrap();
        assert_eq!(c.server.max_buffered_bytes, DEFAULT_MAX_BUFFERED_BYTES);
        parse(
            "server:\n  max_buffered_bytes: 2097152\n  max_message_bytes: 1048576\n  reactors: 2\n",
        )
        .unwrap();
        let err = parse(
            "server:\n  max_buffered_bytes: 2097151\n  max_message_bytes: 1048576\n  reactors: 2\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("server.max_buffered_bytes:"), "{err}");
    }

    #[test]
    fn unknown_keys_warn() {
        let loaded = Config::from_yaml("server:\n  portt: 1\nextra: 2\n", Path::new("/")).unwrap();
        assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
        assert!(loaded.warnings.iter().any(|w| w.contains("server.portt")));
    }

    #[test]
    fn overrides_win() {
        let mut c = parse("server:\n  port: 1234\n").unwrap();
        c.apply(&Overrides {
            port: Some(4321),
            host: Some("127.0.0.1".into()),
            log_level: Some("DEBUG".into()),
        });
        assert_eq!(c.server.port, 4321);
        assert_eq!(c.log_level(), log::LevelFilter::Debug);
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.server.port, 9090);
        assert_eq!(
            c.detector_path(),
            Some(PathBuf::from("/cfg/../models/pear_detector.onnx"))
        );
    }
}
