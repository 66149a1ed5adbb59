//! ONNX Runtime loading: finds the shared library, opens it once per process with
//! `ort::init_from`, and keeps the single `ort` environment alive.
//!
//! The library is looked up in this order (first hit wins):
//! 1. the `override_path` argument of [`init_runtime`] (the config key);
//! 2. the `ORT_DYLIB_PATH` environment variable;
//! 3. `PEAR_ORT_DYLIB`, baked in at build time by `build.rs`: the project-local copy in
//!    `.ort/libonnxruntime.so.1.31.1`, fetched once from the `onnxruntime` PyPI wheel.
//!
//! Bare `ort::init()` is never used: it panics when the library is missing, while this
//! module turns every failure into a [`RuntimeError`] whose message names the fix.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;

/// Minimum ONNX Runtime version `ort` rc.15 with `api-31` accepts.
pub const REQUIRED_VERSION: &str = "1.31";

const FIX: &str = "fix: run `cargo build` with network access to PyPI so build.rs can fetch it into .ort/ \
(delete .ort/ to force a new fetch), or set ORT_DYLIB_PATH (or the config key) to a libonnxruntime.so >= 1.31";

/// Why ONNX Runtime could not be made ready.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error("no ONNX Runtime library configured (ORT_DYLIB_PATH unset and none baked in at build time); {FIX}")]
    NotConfigured,
    #[error("ONNX Runtime library not found at {path} (from {origin}); {FIX}")]
    Missing { path: PathBuf, origin: &'static str },
    #[error("cannot load ONNX Runtime from {path} (from {origin}): {reason}; {FIX}")]
    Load {
        path: PathBuf,
        origin: &'static str,
        reason: String,
    },
}

struct Runtime {
    path: PathBuf,
    env: Environment,
    version: String,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// Where the library would be loaded from, and which setting named it.
pub fn locate(override_path: Option<&Path>) -> Result<(PathBuf, &'static str), RuntimeError> {
    if let Some(p) = override_path {
        return Ok((p.to_path_buf(), "the configured override"));
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Ok((PathBuf::from(p), "ORT_DYLIB_PATH"));
    }
    match option_env!("PEAR_ORT_DYLIB") {
        Some(p) if !p.is_empty() => Ok((PathBuf::from(p), "the build-time default (.ort/)")),
        _ => Err(RuntimeError::NotConfigured),
    }
}

/// Loads ONNX Runtime and creates the process-wide environment. Idempotent: later calls
/// return the path loaded by the first successful call (a process can hold only one).
pub fn init_runtime(override_path: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt.path.clone());
    }
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt.path.clone());
    }
    let (path, origin) = locate(override_path)?;
    if !path.is_file() {
        return Err(RuntimeError::Missing { path, origin });
    }
    let path = path.canonicalize().unwrap_or(path);
    let load_err = |reason: String| RuntimeError::Load {
        path: path.clone(),
        origin,
        reason,
    };
    let builder = ort::init_from(&path).map_err(|e| load_err(e.to_string()))?;
    let env = builder
        .with_name("pear-server")
        .with_telemetry(false)
        .build()
        .map_err(|e| load_err(e.to_string()))?;
    let version = version_from_file_name(&path)
        .or_else(|| version_from_build_info(ort::info()))
        .unwrap_or_else(|| "(unknown version)".to_owned());
    let rt = RUNTIME.get_or_init(|| Runtime { path, env, version });
    Ok(rt.path.clone())
}

/// The environment, loading the runtime with the default lookup if nobody did yet.
pub fn environment() -> Result<&'static Environment, RuntimeError> {
    if RUNTIME.get().is_none() {
        init_runtime(None)?;
    }
    match RUNTIME.get() {
        Some(rt) => Ok(&rt.env),
        None => Err(RuntimeError::NotConfigured),
    }
}

/// Human-readable backend, e.g. `onnxruntime 1.31.1 (cpu)`; `not loaded` before init.
pub fn backend_description() -> String {
    match RUNTIME.get() {
        Some(rt) => format!("onnxruntime {} (cpu)", rt.version),
        None => "onnxruntime (not loaded)".to_owned(),
    }
}

/// The path of the loaded library, if any.
pub fn loaded_path() -> Option<&'static Path> {
    RUNTIME.get().map(|rt| rt.path.as_path())
}

/// `libonnxruntime.so.1.31.1` → `1.31.1` (the path is canonical, so a versionless
/// symlink has already been resolved to the real file).
fn version_from_file_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let v = name.strip_prefix("libonnxruntime.so.")?;
    (!v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.')).then(|| v.to_owned())
}

/// Pulls `1.31.1` out of ONNX Runtime's build info (`... git-branch=rel-1.31.1, ...`).
fn version_from_build_info(info: &str) -> Option<String> {
    let start = info.find("rel-")? + 4;
    let rest = &info[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let v = &rest[..end];
    (!v.is_empty()).then(|| v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parsing() {
        let info = "ORT Build Info: git-branch=rel-1.31.1, git-commit-id=abc, build type=Release";
        assert_eq!(version_from_build_info(info).as_deref(), Some("1.31.1"));
        assert_eq!(version_from_build_info("nothing"), None);
        let p = Path::new("/x/.ort/libonnxruntime.so.1.31.1");
        assert_eq!(version_from_file_name(p).as_deref(), Some("1.31.1"));
        assert_eq!(
            version_from_file_name(Path::new("/usr/lib/libonnxruntime.so")),
            None
        );
    }

    #[test]
    fn override_wins_and_missing_file_names_the_fix() {
        let (p, origin) = locate(Some(Path::new("/nope/libonnxruntime.so"))).expect("override");
        assert_eq!(p, PathBuf::from("/nope/libonnxruntime.so"));
        assert_eq!(origin, "the configured override");
        let e = RuntimeError::Missing { path: p, origin };
        assert!(e.to_string().contains("ORT_DYLIB_PATH"));
    }
}
