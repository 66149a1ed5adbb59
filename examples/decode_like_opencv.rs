//! Decodes JPEG files the way pear-server decodes them for models fed like the Python
//! original ([`DecodePlan::LikeOpenCv`]: libjpeg-turbo with `cv2.imread`'s settings) and
//! writes each as a lossless PNG, so that `tools/export/decode_parity.py` can compare
//! the pixels with OpenCV's. Also times it against the other JPEG paths when asked.
//!
//!   cargo run --release --example decode_like_opencv -- OUT_DIR FILE.jpg...
//!
//! Never part of the server: a measuring tool only.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use pear_server::inference::decode::DecodePlan;

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let Some((out, files)) = args.split_first() else {
        eprintln!("usage: decode_like_opencv OUT_DIR FILE.jpg...");
        return ExitCode::from(2);
    };
    let mut failed = false;
    for file in files {
        if let Err(e) = dump(out, file) {
            eprintln!("{}: {e}", file.display());
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn dump(out: &Path, file: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let bytes = std::fs::read(file)?;
    let decoded = DecodePlan::LikeOpenCv.decode(&bytes)?;
    let stem = file.file_stem().ok_or("no file name")?;
    let target = out.join(stem).with_extension("png");
    decoded.image.save(&target)?;
    println!("{}", target.display());
    Ok(())
}
