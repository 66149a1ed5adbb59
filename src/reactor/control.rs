//! How one reactor is set up when several run side by side: where it binds,
//! whether it owns the process signals, what it tells the rest of the process
//! when it starts draining or gets SIGHUP, and whether it serves the HTTP
//! metrics/health listener.
//!
//! Owns: [`ReactorOptions`] and the [`StopHandle`] that stops a reactor from
//! another thread.
//!
//! Never: blocks or touches the disk. The hooks it carries run on the reactor
//! thread, so they must be cheap (a waker, a datagram to systemd, a
//! `rayon::spawn`); anything slower belongs on the pool.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mio::Waker;

/// A hook run on the reactor thread; must not block.
pub type Hook = Box<dyn FnMut() + Send>;

/// Per-reactor settings. `ReactorOptions::default()` is the single-reactor
/// setup: bind the configured address, own SIGINT/SIGTERM/SIGHUP, no hooks.
pub struct ReactorOptions {
    /// Bind here instead of `server.host:server.port` (used to bind the
    /// second and later reactors to the port the first one got for port 0).
    pub addr: Option<SocketAddr>,
    /// Handle SIGINT/SIGTERM (drain) and SIGHUP (the `on_hangup` hook). Only
    /// one reactor per process should; the others stop through a [`StopHandle`].
    pub signals: bool,
    /// Serve `metrics.listen` (at most one reactor per process).
    pub metrics: bool,
    /// Called once when this reactor starts draining (stop siblings, tell systemd).
    pub on_drain: Option<Hook>,
    /// Called on SIGHUP (reopen the log file, off the reactor).
    pub on_hangup: Option<Hook>,
}

impl Default for ReactorOptions {
    fn default() -> Self {
        ReactorOptions {
            addr: None,
            signals: true,
            metrics: true,
            on_drain: None,
            on_hangup: None,
        }
    }
}

impl ReactorOptions {
    /// A sibling reactor: binds `addr` (SO_REUSEPORT), no signals, no metrics.
    pub fn sibling(addr: SocketAddr) -> ReactorOptions {
        ReactorOptions {
            addr: Some(addr),
            signals: false,
            metrics: false,
            on_drain: None,
            on_hangup: None,
        }
    }
}

/// A handle that stops a running reactor from another thread (tests,
/// embedding, sibling reactors).
#[derive(Clone)]
pub struct StopHandle(pub(super) Arc<Waker>, pub(super) Arc<AtomicBool>);

impl StopHandle {
    pub fn stop(&self) {
        self.1.store(true, Ordering::Release);
        let _ = self.0.wake();
    }

    pub(super) fn requested(&self) -> bool {
        self.1.load(Ordering::Acquire)
    }
}
