//! pear-server: a headless TCP service that inspects pear images for defects.
//!
//! The data path (see `docs/ARCHITECTURE.md`):
//! one `mio` reactor thread ([`reactor`]) frames bytes into requests ([`protocol`]),
//! hands real work (inference, model loads, directory scans) to a `rayon` pool
//! ([`inference`], [`models`]) and gets results back through a channel plus a
//! `mio::Waker`. [`config`] owns the YAML file and the CLI overrides.

pub mod config;
pub mod inference;
pub mod models;
pub mod protocol;
pub mod reactor;
