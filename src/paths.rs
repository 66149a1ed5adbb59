//! Name confinement: the one place that decides whether a client-supplied file or
//! model name may be used, and resolves it inside its folder.
//!
//! Two steps, kept apart on purpose:
//! - [`check_name`] is purely lexical and cheap, so the reactor may call it while
//!   validating a request (absolute paths, `..`, NUL bytes, empty or oversized
//!   names are refused: error code 1 for the whole request).
//! - [`resolve_confined`] touches the disk (it follows symlinks), so it runs only
//!   on a worker. A name whose real path leaves the folder is reported as not
//!   found, exactly like a missing file, so a client learns nothing about what
//!   lies outside.

use std::io;
use std::path::{Component, Path, PathBuf};

/// Longest name accepted in a request, in bytes. Longer names are refused
/// lexically, before any filesystem call.
pub const MAX_NAME_LEN: usize = 255;

/// Why a name was refused before touching the disk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty file name")]
    Empty,
    #[error("file name longer than {MAX_NAME_LEN} bytes")]
    TooLong,
    #[error("file name contains a NUL byte")]
    Nul,
    #[error("absolute paths are not allowed: {0:?}")]
    Absolute(String),
    #[error("'..' is not allowed in file names: {0:?}")]
    ParentDir(String),
}

/// Lexical check of a client-supplied name. Accepts plain relative names, with
/// sub-folders (`line3/a.jpg`), and refuses everything that could climb out.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    if name.contains('\0') {
        return Err(NameError::Nul);
    }
    let path = Path::new(name);
    for component in path.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(NameError::ParentDir(name.to_owned())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(NameError::Absolute(name.to_owned()))
            }
        }
    }
    Ok(())
}

/// Resolves `name` inside `folder`, following symlinks, and checks that the
/// result is still inside the folder. `folder` should already be canonical.
///
/// Returns `NotFound` when the file does not exist *or* when its real path leaves
/// the folder. Runs on a worker thread only (it touches the disk).
pub fn resolve_confined(folder: &Path, name: &str) -> io::Result<PathBuf> {
    if check_name(name).is_err() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad name"));
    }
    let real_folder = folder.canonicalize()?;
    let real = real_folder.join(name).canonicalize()?;
    if real.starts_with(&real_folder) && real != real_folder {
        Ok(real)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            "resolves outside its folder",
        ))
    }
}

/// The path `name` would have inside `folder`, for creating a new file there
/// (downloads). Lexically checked; the folder itself must be canonical. The file
/// name must be a single component so nothing is created in a sub-folder.
pub fn new_file_in(folder: &Path, name: &str) -> Result<PathBuf, NameError> {
    check_name(name)?;
    let mut components = Path::new(name).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(_)), None) => Ok(folder.join(name)),
        _ => Err(NameError::ParentDir(name.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_refusals() {
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert!(matches!(
            check_name("../x.jpg"),
            Err(NameError::ParentDir(_))
        ));
        assert!(matches!(
            check_name("a/../../x.jpg"),
            Err(NameError::ParentDir(_))
        ));
        assert!(matches!(
            check_name("/etc/passwd.jpg"),
            Err(NameError::Absolute(_))
        ));
        assert_eq!(check_name("a\0.jpg"), Err(NameError::Nul));
        assert_eq!(check_name(&"a".repeat(10_000)), Err(NameError::TooLong));
        assert!(check_name("a.jpg").is_ok());
        assert!(check_name("line3/a.jpg").is_ok());
        assert!(check_name("0x1.jpg").is_ok());
    }

    #[test]
    fn symlink_out_of_folder_is_not_found() {
        let base = std::env::temp_dir().join(format!("pear-paths-{}", std::process::id()));
        let inside = base.join("inside");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::write(base.join("secret.jpg"), b"x").unwrap();
        std::fs::write(inside.join("ok.jpg"), b"y").unwrap();
        let _ = std::fs::remove_file(inside.join("escape.jpg"));
        std::os::unix::fs::symlink(base.join("secret.jpg"), inside.join("escape.jpg")).unwrap();
        assert!(resolve_confined(&inside, "ok.jpg").is_ok());
        let err = resolve_confined(&inside, "escape.jpg").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let err = resolve_confined(&inside, "missing.jpg").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
