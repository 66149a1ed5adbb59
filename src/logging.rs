//! Logging setup: simplelog to the terminal (stderr, colour only on a TTY) and
//! to `logging.file` (parent folders created), at the configured level.
//!
//! Never: logs per byte or per event; per-request lines are debug level.

use std::fs::OpenOptions;
use std::io::IsTerminal;

use simplelog::{
    ColorChoice, CombinedLogger, ConfigBuilder, SharedLogger, TermLogger, TerminalMode, WriteLogger,
};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("logging.file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("logger already set")]
    AlreadySet,
}

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
        let file_err = |source| LogError::File {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(file_err)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(file_err)?;
        loggers.push(WriteLogger::new(level, log_config, file));
    }
    CombinedLogger::init(loggers).map_err(|_| LogError::AlreadySet)
}
