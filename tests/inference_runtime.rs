//! ONNX Runtime loading in a fresh process: a wrong path is a clear error naming the
//! fix, a file that is not a library is an error (not a panic), and after those the
//! default lookup still works and later calls are idempotent.

use std::path::Path;

use pear_server::inference::runtime::{backend_description, init_runtime, RuntimeError};

#[test]
fn bad_paths_are_errors_then_the_default_loads() {
    let e =
        init_runtime(Some(Path::new("/nonexistent/libonnxruntime.so"))).expect_err("missing file");
    assert!(matches!(e, RuntimeError::Missing { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("/nonexistent/libonnxruntime.so") && msg.contains("ORT_DYLIB_PATH"),
        "{msg}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("libonnxruntime.so.1.31.1");
    std::fs::write(&fake, b"not an ELF file").expect("write");
    let e = init_runtime(Some(&fake)).expect_err("not a library");
    assert!(matches!(e, RuntimeError::Load { .. }), "{e}");
    assert!(backend_description().contains("not loaded"));

    let first = init_runtime(None).expect("the library fetched by build.rs (or ORT_DYLIB_PATH)");
    assert!(first.is_file());
    assert!(
        backend_description().starts_with("onnxruntime "),
        "{}",
        backend_description()
    );
    // Idempotent: a later call, even with another path, reports the loaded library.
    assert_eq!(
        init_runtime(Some(Path::new("/elsewhere.so"))).expect("already loaded"),
        first
    );
}
