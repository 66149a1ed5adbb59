//! Build script: makes sure an ONNX Runtime shared library is available, so that
//! `cargo run --release` and `cargo test` stay the only two commands on a fresh machine.
//!
//! `ort` is built with `load-dynamic`: nothing is linked at build time, the library is
//! opened at run time (`crate::inference::runtime::init_runtime`). This script:
//! - bakes the absolute path of the project-local copy into the binary as the
//!   `PEAR_ORT_DYLIB` compile-time environment variable (the last fallback at run time);
//! - fetches that copy once, if it is missing, from the PyPI wheel `onnxruntime==1.31.1`
//!   (the only reachable ONNX Runtime build), with `pip download` and Python's
//!   `zipfile`, into the git-ignored `.ort/` folder;
//! - skips the fetch when `ORT_DYLIB_PATH` is set (the user brings their own library)
//!   or when the file already exists (the usual, fast case);
//! - never fails the build: on any problem it prints a `cargo:warning` that says how
//!   to fix it, and the server reports the same at start-up.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const ORT_VERSION: &str = "1.31.1";
const LIB_NAME: &str = "libonnxruntime.so.1.31.1";
const WHEEL_MEMBER: &str = "onnxruntime/capi/libonnxruntime.so.1.31.1";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ORT_DYLIB_PATH");
    println!("cargo:rerun-if-env-changed=PEAR_SKIP_ORT_FETCH");

    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let ort_dir = manifest_dir.join(".ort");
    let lib_path = ort_dir.join(LIB_NAME);
    // When the file is missing cargo treats this as changed and reruns us next build,
    // which is exactly the retry we want; when it exists the script is not rerun.
    println!("cargo:rerun-if-changed={}", lib_path.display());
    println!("cargo:rustc-env=PEAR_ORT_DYLIB={}", lib_path.display());

    if lib_path.is_file() {
        return;
    }
    if env::var_os("ORT_DYLIB_PATH").is_some() || env::var_os("PEAR_SKIP_ORT_FETCH").is_some() {
        return;
    }
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os != "linux" || arch != "x86_64" {
        warn(&format!(
            "no bundled ONNX Runtime for {os}/{arch}: set ORT_DYLIB_PATH to an ONNX Runtime >= {ORT_VERSION} shared library"
        ));
        return;
    }
    if let Err(e) = fetch(&ort_dir, &lib_path) {
        warn(&format!(
            "could not fetch ONNX Runtime {ORT_VERSION} into {}: {e}",
            ort_dir.display()
        ));
        warn(&format!(
            "fix: `pip download onnxruntime=={ORT_VERSION} --no-deps --only-binary=:all: --python-version 3.11 \
             --platform manylinux_2_28_x86_64 -d /tmp/ort` and unzip `{WHEEL_MEMBER}` to {}, \
             or set ORT_DYLIB_PATH to an existing libonnxruntime.so (>= {ORT_VERSION})",
            lib_path.display()
        ));
    }
}

fn warn(msg: &str) {
    println!("cargo:warning={msg}");
}

fn python() -> Option<&'static str> {
    ["python3", "python"].into_iter().find(|p| {
        Command::new(p)
            .args(["-m", "pip", "--version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

fn fetch(ort_dir: &Path, lib_path: &Path) -> Result<(), String> {
    let py = python().ok_or("no python3 with pip found on PATH")?;
    fs::create_dir_all(ort_dir).map_err(|e| format!("create {}: {e}", ort_dir.display()))?;
    // Unique scratch names: two cargo invocations (test and release) may run us at once.
    let tag = std::process::id();
    let wheel_dir = ort_dir.join(format!("wheel-{tag}"));
    let tmp_lib = ort_dir.join(format!("{LIB_NAME}.part-{tag}"));
    let result = (|| {
        let out = Command::new(py)
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(format!("onnxruntime=={ORT_VERSION}"))
            .args([
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.11",
            ])
            .args(["--platform", "manylinux_2_28_x86_64", "-d"])
            .arg(&wheel_dir)
            .output()
            .map_err(|e| format!("run pip: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pip download failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let script = "import sys, zipfile, glob, shutil\n\
                      whl = glob.glob(sys.argv[1] + '/onnxruntime-*.whl')[0]\n\
                      with zipfile.ZipFile(whl) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n\
                      \x20   shutil.copyfileobj(src, dst)\n";
        let out = Command::new(py)
            .args(["-c", script])
            .arg(&wheel_dir)
            .arg(WHEEL_MEMBER)
            .arg(&tmp_lib)
            .output()
            .map_err(|e| format!("run python: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "extracting {WHEEL_MEMBER} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        fs::rename(&tmp_lib, lib_path).map_err(|e| format!("rename into place: {e}"))
    })();
    let _ = fs::remove_dir_all(&wheel_dir);
    let _ = fs::remove_file(&tmp_lib);
    result
}
