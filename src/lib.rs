//! pear-server: a headless TCP service that inspects pear images for defects.
//!
//! The data path (see `docs/ARCHITECTURE.md`):
//! one `mio` reactor thread ([`reactor`]) frames bytes into requests ([`protocol`]),
//! hands real work (inference, model loads, directory scans, downloads) to a
//! `rayon` pool ([`inference`], [`models`], [`download`]) and gets results back
//! through a channel plus a `mio::Waker`. [`config`] owns the YAML file and the
//! CLI overrides; [`paths`] decides which client-supplied names may be used.

pub mod cli;
pub mod config;
pub mod download;
pub mod inference;
pub mod logging;
pub mod metrics;
pub mod models;
pub mod notify;
pub mod paths;
pub mod protocol;
pub mod reactor;
pub mod service;
pub mod state;
