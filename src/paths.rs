//! Name confinement: the one place that decides whether a client-supplied file or
//! model name may be used, and resolves it inside its folder.
//!
//! Names are resolved as the Python original resolves them (`os.path.join`): an
//! absolute name stands alone, a relative one is joined onto the folder, so clients
//! that send `../photos/a.jpg` or `/data/photos/a.jpg` keep working. What is
//! confined is the *result*, not the spelling. Two steps, kept apart on purpose:
//! - [`check_name`] is purely lexical and cheap, so the reactor may call it while
//!   validating a request. It refuses only what can never name a file: empty
//!   names, NUL bytes, names longer than [`MAX_NAME_LEN`] (error code 1 for the
//!   whole request). `..` and absolute names pass: where they lead is decided by
//!   the next step.
//! - [`resolve_confined`] touches the disk (it follows symlinks), so it runs only
//!   on a worker. A name whose real path is not inside the folder is reported as
//!   not found, exactly like a missing file (error code 2 for that one file), so a
//!   client learns nothing about what lies outside, and nothing there is read.

use std::io;
use std::path::{Component, Path, PathBuf};

/// Longest name accepted in a request, in bytes (Linux `PATH_MAX`, as names may
/// be absolute paths). Longer names are refused lexically, before any
/// filesystem call.
pub const MAX_NAME_LEN: usize = 4096;

/// Longest single file name ([`new_file_in`]), in bytes (Linux `NAME_MAX`).
pub const MAX_FILE_NAME_LEN: usize = 255;

/// Why a name was refused before touching the disk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty file name")]
    Empty,
    #[error("file name longer than {0} bytes")]
    TooLong(usize),
    #[error("file name contains a NUL byte")]
    Nul,
    #[error("not a plain file name (no folders, no '..', not absolute): {0:?}")]
    NotPlain(String),
}

/// Lexical check of a client-supplied name: refuses only names that can never
/// name a file (empty, NUL byte, too long). Relative names with sub-folders or
/// `..`, and absolute names, pass; [`resolve_confined`] decides where they lead.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(MAX_NAME_LEN));
    }
    if name.contains('\0') {
        return Err(NameError::Nul);
    }
    Ok(())
}

/// `name` as the original resolves it: absolute stands alone, relative is joined
/// onto `folder` (`Path::join` replaces the base for an absolute name, as
/// `os.path.join` does).
fn joined(folder: &Path, name: &str) -> PathBuf {
    folder.join(name)
}

fn outside() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "resolves outside its folder")
}

/// Resolves `name` against `folder` (absolute names stand alone, relative ones are
/// joined onto it), following symlinks, and accepts the result only when it lies
/// inside the folder (the folder itself does not count).
///
/// Returns `NotFound` when the file does not exist *or* when its real path is
/// outside the folder. Runs on a worker thread only (it touches the disk).
pub fn resolve_confined(folder: &Path, name: &str) -> io::Result<PathBuf> {
    if check_name(name).is_err() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad name"));
    }
    let real_folder = folder.canonicalize()?;
    let real = joined(&real_folder, name).canonicalize()?;
    if real.starts_with(&real_folder) && real != real_folder {
        Ok(real)
    } else {
        Err(outside())
    }
}

/// The directory entry `name` designates in `folder` (for deleting it), with the
/// folders on the way resolved (symlinks followed) but the last component kept as
/// named, so a symlink is the entry itself, not its target. Accepted only when
/// that entry lies directly or deeper inside the folder, and its target (symlinks
/// followed) does too; otherwise `NotFound`. Runs on a worker thread only.
pub fn confined_entry(folder: &Path, name: &str) -> io::Result<PathBuf> {
    let real_folder = folder.canonicalize()?;
    resolve_confined(&real_folder, name)?;
    let path = joined(&real_folder, name);
    let (Some(parent), Some(file)) = (path.parent(), path.file_name()) else {
        return Err(outside());
    };
    let entry = parent.canonicalize()?.join(file);
    if entry.starts_with(&real_folder) && entry != real_folder {
        Ok(entry)
    } else {
        Err(outside())
    }
}

/// The path `name` would have inside `folder`, for creating a new file there
/// (downloads). Stricter than client names: one plain component only (no `/`,
/// no `..`, not absolute), at most [`MAX_FILE_NAME_LEN`] bytes, so nothing is
/// created in a sub-folder or outside. The folder itself must be canonical.
pub fn new_file_in(folder: &Path, name: &str) -> Result<PathBuf, NameError> {
    check_name(name)?;
    if name.len() > MAX_FILE_NAME_LEN {
        return Err(NameError::TooLong(MAX_FILE_NAME_LEN));
    }
    let mut components = Path::new(name).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(_)), None) if !name.contains('/') => Ok(folder.join(name)),
        _ => Err(NameError::NotPlain(name.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_refusals() {
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert_eq!(check_name("a\0.jpg"), Err(NameError::Nul));
        assert_eq!(
            check_name(&"a".repeat(10_000)),
            Err(NameError::TooLong(MAX_NAME_LEN))
        );
        assert!(check_name(&"a".repeat(MAX_NAME_LEN)).is_ok());
        assert!(check_name("a.jpg").is_ok());
        assert!(check_name("line3/a.jpg").is_ok());
        assert!(check_name("0x1.jpg").is_ok());
        // Where these lead is decided on the disk, not here.
        assert!(check_name("../x.jpg").is_ok());
        assert!(check_name("/etc/passwd.jpg").is_ok());
    }

    #[test]
    fn new_files_are_one_plain_component() {
        let f = Path::new("/m");
        assert_eq!(new_file_in(f, "a.onnx"), Ok(PathBuf::from("/m/a.onnx")));
        for bad in [
            "../a.onnx",
            "/a.onnx",
            "sub/a.onnx",
            "a.onnx/",
            "..",
            ".",
            "a/.",
        ] {
            assert!(
                matches!(new_file_in(f, bad), Err(NameError::NotPlain(_))),
                "{bad}"
            );
        }
        assert_eq!(
            new_file_in(f, &"a".repeat(256)),
            Err(NameError::TooLong(MAX_FILE_NAME_LEN))
        );
        assert_eq!(new_file_in(f, ""), Err(NameError::Empty));
    }

    /// A temp tree: `base/inside/{ok.jpg, sub/deep.jpg, escape.jpg -> ../secret.jpg,
    /// in_link.jpg -> ok.jpg}`, `base/secret.jpg`, `base/out_link.jpg -> inside/ok.jpg`.
    fn tree(tag: &str) -> (PathBuf, PathBuf) {
        let base = std::env::temp_dir().join(format!("pear-paths-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let inside = base.join("inside");
        std::fs::create_dir_all(inside.join("sub")).unwrap();
        std::fs::write(base.join("secret.jpg"), b"x").unwrap();
        std::fs::write(inside.join("ok.jpg"), b"y").unwrap();
        std::fs::write(inside.join("sub/deep.jpg"), b"z").unwrap();
        std::os::unix::fs::symlink(base.join("secret.jpg"), inside.join("escape.jpg")).unwrap();
        std::os::unix::fs::symlink("ok.jpg", inside.join("in_link.jpg")).unwrap();
        std::os::unix::fs::symlink(inside.join("ok.jpg"), base.join("out_link.jpg")).unwrap();
        let base = base.canonicalize().unwrap();
        (base.clone(), base.join("inside"))
    }

    #[test]
    fn names_resolve_like_os_path_join_and_stay_inside() {
        let (base, inside) = tree("resolve");
        let ok = inside.join("ok.jpg");
        let abs = ok.display().to_string();
        for name in [
            "ok.jpg",
            "./ok.jpg",
            "../inside/ok.jpg",
            "sub/../ok.jpg",
            abs.as_str(),
        ] {
            assert_eq!(resolve_confined(&inside, name).unwrap(), ok, "{name}");
        }
        assert_eq!(
            resolve_confined(&inside, "sub/deep.jpg").unwrap(),
            inside.join("sub/deep.jpg")
        );
        // A symlink inside to a file inside resolves to its target.
        assert_eq!(resolve_confined(&inside, "in_link.jpg").unwrap(), ok);
        let secret = base.join("secret.jpg").display().to_string();
        for name in [
            "escape.jpg",
            "missing.jpg",
            "../secret.jpg",
            "sub/../../secret.jpg",
            secret.as_str(),
            "/etc/passwd",
            ".",
            "..",
            "../inside",
        ] {
            let err = resolve_confined(&inside, name).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{name}");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn entries_to_delete_are_inside_too() {
        let (base, inside) = tree("entry");
        let ok = inside.join("ok.jpg");
        assert_eq!(confined_entry(&inside, "ok.jpg").unwrap(), ok);
        assert_eq!(confined_entry(&inside, "../inside/ok.jpg").unwrap(), ok);
        assert_eq!(
            confined_entry(&inside, &ok.display().to_string()).unwrap(),
            ok
        );
        // The symlink itself is the entry, not its target.
        assert_eq!(
            confined_entry(&inside, "in_link.jpg").unwrap(),
            inside.join("in_link.jpg")
        );
        // Outside entries are refused even when their target is inside; inside
        // entries whose target is outside too.
        for name in ["../out_link.jpg", "escape.jpg", "../secret.jpg"] {
            let err = confined_entry(&inside, name).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{name}");
        }
        let out_link = base.join("out_link.jpg").display().to_string();
        assert!(confined_entry(&inside, &out_link).is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
