//! systemd readiness (`Type=notify`): `READY=1` once the models are loaded and
//! every listener is bound, `STOPPING=1` when draining starts. Through the
//! `sd-notify` crate: a few lines over `NOTIFY_SOCKET`, no libsystemd and no
//! D-Bus. Without `NOTIFY_SOCKET` (not under systemd) every call is a no-op.
//!
//! Owns: the notify messages. Never: fails the server (an unreachable socket
//! is logged at debug and ignored) or sends anything but these states.

use sd_notify::NotifyState;

/// Tells systemd the server is up: models loaded, listeners bound.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd the server is draining. One datagram on a local socket:
/// cheap enough for the reactor thread.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("draining in-flight requests"),
    ]);
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        log::debug!("sd_notify: {e}");
    }
}
