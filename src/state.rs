//! State that survives a restart: the classifier chosen with 0x26 and the
//! folders chosen with 0x30 / 0x34, kept in a small JSON file next to the
//! config (`server_state.json`, or `server.state_file`).
//!
//! Precedence at start: the config file, then this state file, then the CLI
//! flags. Only what a command changed is stored, so a value nobody changed
//! keeps following the config file. An entry that points at something that no
//! longer exists is warned about and ignored.
//!
//! Owns: the file format, the atomic write (temp file in the same folder,
//! fsync, rename) and the checks on restore.
//!
//! Never: runs on the reactor (saving is called from the worker that made the
//! change, loading from `main` before the reactor starts), or writes anywhere
//! but the state file and its temp sibling.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError, Overrides};

/// What the commands changed. `None` = not changed, follow the config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedState {
    /// The classifier file (absolute, canonical), set by 0x26.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
    /// The image folder (absolute, canonical), set by 0x30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_folder: Option<PathBuf>,
    /// The model folder (absolute, canonical), set by 0x34.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_folder: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write state file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reads the state file; a missing file is an empty state.
pub fn load(path: &Path) -> Result<SavedState, StateError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SavedState::default()),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    serde_json::from_slice(&bytes).map_err(|source| StateError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Writes the state atomically: a temp file in the same folder, fsync, rename.
/// A crash leaves either the old file or the new one, never half of one.
pub fn save(path: &Path, state: &SavedState) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: path.to_owned(),
        source,
    };
    let mut body = serde_json::to_vec_pretty(state).map_err(|e| err(std::io::Error::other(e)))?;
    body.push(b'\n');
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "server_state.json".to_owned());
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Applies a loaded state to the config (model, image folder) and returns
/// the state actually kept (entries that still exist) plus one warning per
/// entry dropped. The model folder cannot be expressed in the config; the
/// caller hands `kept.model_folder` to the service.
pub fn apply(config: &mut Config, state: SavedState) -> (SavedState, Vec<String>) {
    let mut kept = SavedState::default();
    let mut warnings = Vec::new();
    if let Some(model) = state.model {
        if model.is_file() {
            config.model.model_path = model.clone();
            kept.model = Some(model);
        } else {
            warnings.push(format!(
                "state file: model {} no longer exists; using model.model_path from the config",
                model.display()
            ));
        }
    }
    if let Some(images) = state.image_folder {
        if images.is_dir() {
            config.model.img_path = images.clone();
            kept.image_folder = Some(images);
        } else {
            warnings.push(format!(
                "state file: image folder {} no longer exists; using model.img_path from the config",
                images.display()
            ));
        }
    }
    if let Some(models) = state.model_folder {
        if models.is_dir() {
            kept.model_folder = Some(models);
        } else {
            warnings.push(format!(
                "state file: model folder {} no longer exists; using the classifier's folder",
                models.display()
            ));
        }
    }
    (kept, warnings)
}

/// The config as the server runs it, with what went into it.
pub struct Effective {
    pub config: Config,
    /// `model.model_path` as the config file had it, before the state file.
    pub config_model: PathBuf,
    /// The state-file entries that were applied.
    pub restored: SavedState,
    /// Unknown keys, ignored options and dropped state entries, one line each.
    pub warnings: Vec<String>,
}

/// Loads a config file the way the server does. Precedence: the file, then
/// the state file (what 0x26/0x30/0x34 changed before a restart; an unreadable
/// one is a warning), then `overrides` (the CLI flags); then validates.
pub fn load_effective(path: &Path, overrides: &Overrides) -> Result<Effective, ConfigError> {
    let loaded = Config::load(path, &Overrides::default())?;
    let mut config = loaded.config;
    let mut warnings = loaded.warnings;
    let config_model = config.model.model_path.clone();
    let restored = match load(&config.state_file()) {
        Ok(saved) => {
            let (kept, dropped) = apply(&mut config, saved);
            warnings.extend(dropped);
            kept
        }
        Err(e) => {
            warnings.push(format!("{e}; ignoring it"));
            SavedState::default()
        }
    };
    config.apply(overrides);
    config.validate()?;
    Ok(Effective {
        config,
        config_model,
        restored,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            load(&dir.path().join("nope.json")).unwrap(),
            SavedState::default()
        );
    }

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server_state.json");
        let state = SavedState {
            model: Some(dir.path().join("m.onnx")),
            image_folder: None,
            model_folder: Some(dir.path().to_owned()),
        };
        save(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap(), state);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("server_state.json")]);
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains("image_folder"), "{text}");
    }

    #[test]
    fn garbage_is_a_parse_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        fs::write(&path, "{not json").unwrap();
        assert!(matches!(load(&path), Err(StateError::Parse { .. })));
    }

    #[test]
    fn entries_that_vanished_are_dropped_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.onnx");
        fs::write(&model, b"x").unwrap();
        let mut config = Config::default();
        let state = SavedState {
            model: Some(model.clone()),
            image_folder: Some(dir.path().join("gone")),
            model_folder: Some(dir.path().to_owned()),
        };
        let (kept, warnings) = apply(&mut config, state);
        assert_eq!(config.model.model_path, model);
        assert_eq!(kept.model, Some(model));
        assert_eq!(kept.image_folder, None);
        assert_eq!(kept.model_folder, Some(dir.path().to_owned()));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("gone"), "{warnings:?}");
    }
}
