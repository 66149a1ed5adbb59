//! Model store: the files in the model folder and the folder changes of
//! 0x24 (list), 0x28 (delete), 0x30/0x34 (change image/model folder).
//!
//! Every function here touches the disk, so each runs on a worker thread, never
//! on the reactor. Names arrive lexically checked by [`crate::paths::check_name`];
//! here they are resolved as the original resolves them (absolute names stand
//! alone, relative ones are joined onto the model folder), with symlinks
//! followed, and used only when the result lies inside the model folder.

use std::io;
use std::path::{Path, PathBuf};

use crate::paths;

/// Why a model-store operation failed; each maps to a protocol error code.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file or folder does not exist (or resolves outside its folder).
    #[error("{0} not found")]
    NotFound(String),
    /// The operation is refused on purpose (e.g. deleting the loaded model).
    #[error("{0}")]
    Refused(String),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// True for names the model store manages: `*.onnx`, any case.
pub fn is_model_name(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// Every `.onnx` file in `folder`, sorted by name. Hidden files (such as the
/// temp files of a download in progress) are skipped.
pub fn list_models(folder: &Path) -> Result<Vec<String>, StoreError> {
    let entries = std::fs::read_dir(folder).map_err(|e| not_found_or_io(e, folder))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') || !is_model_name(&name) {
            continue;
        }
        // Follow symlinks for the type, but only list regular files.
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Resolves a model name against `folder` (symlinks followed); `NotFound` unless
/// the result lies inside it.
pub fn resolve_model(folder: &Path, name: &str) -> Result<PathBuf, StoreError> {
    paths::resolve_confined(folder, name).map_err(|_| StoreError::NotFound(name.to_owned()))
}

/// Deletes `name` from `folder` unless it is one of the `loaded` model files.
/// Both the directory entry the name designates and what it resolves to must lie
/// inside `folder` (else `NotFound`, nothing deleted).
pub fn delete_model(folder: &Path, name: &str, loaded: &[PathBuf]) -> Result<(), StoreError> {
    let real = resolve_model(folder, name)?;
    let entry =
        paths::confined_entry(folder, name).map_err(|_| StoreError::NotFound(name.to_owned()))?;
    let is_loaded = loaded
        .iter()
        .any(|p| p.canonicalize().map(|c| c == real).unwrap_or(false));
    if is_loaded {
        return Err(StoreError::Refused(format!(
            "{name} is the model in use and cannot be deleted"
        )));
    }
    // Remove the directory entry the client named (a symlink itself, not its target).
    std::fs::remove_file(&entry).map_err(|e| not_found_or_io(e, Path::new(name)))?;
    Ok(())
}

/// Resolves a folder path given by a client (relative to `base_dir`) to a
/// canonical, existing directory.
pub fn existing_dir(base_dir: &Path, path: &str) -> Result<PathBuf, StoreError> {
    if path.is_empty() || path.contains('\0') {
        return Err(StoreError::NotFound(path.to_owned()));
    }
    let p = Path::new(path);
    let joined = if p.is_absolute() {
        p.to_owned()
    } else {
        base_dir.join(p)
    };
    match joined.canonicalize() {
        Ok(real) if real.is_dir() => Ok(real),
        _ => Err(StoreError::NotFound(format!("folder {path}"))),
    }
}

fn not_found_or_io(e: io::Error, what: &Path) -> StoreError {
    if e.kind() == io::ErrorKind::NotFound {
        StoreError::NotFound(what.display().to_string())
    } else {
        StoreError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_folder(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pear-models-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.canonicalize().unwrap()
    }

    #[test]
    fn lists_sorted_onnx_only() {
        let d = temp_folder("list");
        for n in ["b.onnx", "a.ONNX", "c.txt", ".a.onnx.part-1"] {
            std::fs::write(d.join(n), b"x").unwrap();
        }
        std::fs::create_dir(d.join("dir.onnx")).unwrap();
        assert_eq!(list_models(&d).unwrap(), vec!["a.ONNX", "b.onnx"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn delete_refuses_loaded_and_missing() {
        let d = temp_folder("delete");
        std::fs::write(d.join("cur.onnx"), b"x").unwrap();
        std::fs::write(d.join("old.onnx"), b"x").unwrap();
        let loaded = vec![d.join("cur.onnx")];
        assert!(matches!(
            delete_model(&d, "cur.onnx", &loaded),
            Err(StoreError::Refused(_))
        ));
        assert!(matches!(
            delete_model(&d, "nope.onnx", &loaded),
            Err(StoreError::NotFound(_))
        ));
        delete_model(&d, "old.onnx", &loaded).unwrap();
        assert!(!d.join("old.onnx").exists());
        // Absolute and `..` names: the same rule, inside the folder only.
        let folder_name = d.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(matches!(
            delete_model(&d, &format!("../{folder_name}/cur.onnx"), &loaded),
            Err(StoreError::Refused(_))
        ));
        std::fs::write(d.join("a.onnx"), b"x").unwrap();
        delete_model(&d, &d.join("a.onnx").display().to_string(), &loaded).unwrap();
        assert!(!d.join("a.onnx").exists());
        std::fs::write(d.join("b.onnx"), b"x").unwrap();
        delete_model(&d, &format!("../{folder_name}/b.onnx"), &loaded).unwrap();
        assert!(!d.join("b.onnx").exists());
        let outside = d.with_file_name(format!("{folder_name}-outside.onnx"));
        std::fs::write(&outside, b"x").unwrap();
        for name in [
            outside.display().to_string(),
            format!("../{folder_name}-outside.onnx"),
        ] {
            assert!(
                matches!(
                    delete_model(&d, &name, &loaded),
                    Err(StoreError::NotFound(_))
                ),
                "{name}"
            );
        }
        assert!(outside.exists());
        std::fs::remove_file(&outside).unwrap();
        assert!(d.join("cur.onnx").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn folders_must_exist() {
        let d = temp_folder("dirs");
        std::fs::create_dir(d.join("imgs")).unwrap();
        assert_eq!(existing_dir(&d, "imgs").unwrap(), d.join("imgs"));
        assert!(existing_dir(&d, "missing").is_err());
        std::fs::write(d.join("file"), b"x").unwrap();
        assert!(existing_dir(&d, "file").is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
