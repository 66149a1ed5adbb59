//! pear-server: a headless TCP service that inspects pear images for defects.
//!
//! The data path (see `docs/ARCHITECTURE.md`):
//! one `mio` reactor thread ([`reactor`]) frames bytes into requests ([`protocol`])
//! and asks [`service`] how to answer each; the service answers from memory or
//! hands the real work (inference, model loads, directory scans, downloads) to a
//! `rayon` pool ([`inference`], [`models`], [`download`]), whose results come back
//! to the reactor through a channel plus a `mio::Waker`. [`config`] owns the YAML
//! file and the CLI overrides; [`paths`] decides which client-supplied names may
//! be used; [`metrics`] is the one home of the counters.

#![forbid(unsafe_code)]

pub mod cli;
pub(crate) mod completion;
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
