//! Logging setup: simplelog to the terminal (stderr, colour only on a TTY) and
//! to `logging.file` (parent folders created), at the configured level. The
//! file goes through a [`ReopenableFile`] so SIGHUP can reopen it after
//! logrotate moved it ([`reopen`]).
//!
//! Never: logs per byte or per event; per-request lines are debug level.
//! [`reopen`] opens a file, so it must run off the reactor (`rayon::spawn`).

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use simplelog::{
    ColorChoice, CombinedLogger, ConfigBuilder, SharedLogger, TermLogger, TerminalMode, WriteLogger,
};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("logging.file {path}: {source}")]
    File { path: String, source: io::Error },
    #[error("logger already set")]
    AlreadySet,
    #[error("no log file configured")]
    NoFile,
}

/// A log file that can be reopened at the same path (logrotate's `create`
/// mode: the old file is renamed, the server starts writing a new one).
#[derive(Clone)]
pub struct ReopenableFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
    /// The start of a line not yet written (this handle's own).
    pending: Vec<u8>,
}

impl ReopenableFile {
    pub fn open(path: &Path) -> io::Result<ReopenableFile> {
        Ok(ReopenableFile {
            path: path.to_owned(),
            file: Arc::new(Mutex::new(open_append(path)?)),
            pending: Vec::new(),
        })
    }

    /// Opens the path again and swaps the new file in; lines written
    /// meanwhile go to the old file, none is lost or split.
    pub fn reopen(&self) -> io::Result<()> {
        let fresh = open_append(&self.path)?;
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let _ = file.flush();
        *file = fresh;
        Ok(())
    }
}

/// Collects a line (simplelog writes one record in several pieces) and
/// writes it whole, with one syscall, when its newline arrives: a reopen can
/// never split a line between the old file and the new one.
impl Write for ReopenableFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') {
            let result = self
                .file
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .write_all(&self.pending[..=end]);
            self.pending.drain(..=end);
            result?;
        } else if self.pending.len() > MAX_PENDING {
            self.flush()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let result = file.write_all(&self.pending);
        self.pending.clear();
        result?;
        file.flush()
    }
}

/// A line longer than this is written without waiting for its newline.
const MAX_PENDING: usize = 64 * 1024;

fn open_append(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// The process's log file, for [`reopen`].
static LOG_FILE: OnceLock<ReopenableFile> = OnceLock::new();

pub fn init(config: &Config) -> Result<(), LogError> {
    let level = config.log_level();
    let log_config = ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_thread_level(log::LevelFilter::Off)
        .set_target_level(log::LevelFilter::Off)
        .build();
    let mut loggers: Vec<Box<dyn SharedLogger>> = vec![TermLogger::new(
        level,
        log_config.clone(),
        TerminalMode::Stderr,
        if std::io::stderr().is_terminal() {
            ColorChoice::Auto
        } else {
            ColorChoice::Never
        },
    )];
    if let Some(path) = config.log_file() {
        let file = ReopenableFile::open(&path).map_err(|source| LogError::File {
            path: path.display().to_string(),
            source,
        })?;
        let _ = LOG_FILE.set(file.clone());
        loggers.push(WriteLogger::new(level, log_config, file));
    }
    CombinedLogger::init(loggers).map_err(|_| LogError::AlreadySet)
}

/// Reopens the log file at its configured path (SIGHUP, for logrotate).
/// Blocking (opens a file): call it from the worker pool.
pub fn reopen() -> Result<(), LogError> {
    let file = LOG_FILE.get().ok_or(LogError::NoFile)?;
    file.reopen().map_err(|source| LogError::File {
        path: file.path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_writes_to_a_fresh_file_after_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/a.log");
        let mut f = ReopenableFile::open(&path).unwrap();
        f.write_all(b"on").unwrap();
        f.write_all(b"e\n").unwrap();
        std::fs::rename(&path, dir.path().join("a.log.1")).unwrap();
        f.write_all(b"two\n").unwrap();
        f.reopen().unwrap();
        f.write_all(b"three\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.log.1")).unwrap(),
            "one\ntwo\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
    }
}
