//! The reactor's front door: binding the listener, accepting connections under
//! the connection cap, and the back-off when the process runs out of file
//! descriptors.
//!
//! Owns: the listening socket's options, admission (a code-5 reply past
//! `server.connection_limit`) and the rate-limited warnings about both. Never:
//! blocks; a refused connection gets one best-effort write into a fresh socket.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::{Interest, Token};

use super::peer::Peer;
use super::Reactor;
use crate::metrics::METRICS;
use crate::protocol::{ErrorCode, Framer};

/// How long accepting pauses after EMFILE/ENFILE.
pub(super) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A warning that may repeat many times a second: written at most once a
/// second, saying how many times it happened since the last line.
#[derive(Debug, Default)]
pub(super) struct LogLimiter {
    last: Option<Instant>,
    count: u64,
}

impl LogLimiter {
    /// Counts one occurrence at `now`; returns the occurrences since the last
    /// line (this one included) when a line is due.
    fn hit(&mut self, now: Instant) -> Option<u64> {
        self.count += 1;
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

impl Reactor {
    pub(super) fn accept_all(&mut self) {
        if self.accept_paused_until.is_some() || self.drain_deadline.is_some() {
            return;
        }
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, addr)) => self.admit(stream, addr),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_fd_exhaustion(&e) => {
                    // Out of file descriptors: stop accepting for a moment
                    // instead of spinning on the same error; existing peers
                    // keep being served.
                    let now = Instant::now();
                    if let Some(n) = self.fd_exhaustion_log.hit(now) {
                        log::warn!(
                            "accept: {e}; pausing accepts for {ACCEPT_BACKOFF:?} ({n} time(s) since the last such line)"
                        );
                    }
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ECONNABORTED and friends concern one connection only.
                    log::debug!("accept: {e}");
                }
            }
        }
    }

    fn admit(&mut self, mut stream: mio::net::TcpStream, addr: SocketAddr) {
        if self.peers.len() >= self.limits.connection_limit {
            METRICS.connection_rejected();
            // One best-effort code-5 response; the socket is fresh so the
            // kernel buffer takes it without blocking.
            let mut body = Vec::new();
            crate::protocol::encode_error(
                ErrorCode::Busy,
                "server at its connection limit, retry later",
                None,
                &mut body,
            );
            body.push(b'\n');
            let _ = io::Write::write(&mut stream, &body);
            self.log_rejection(addr);
            return;
        }
        let _ = stream.set_nodelay(true);
        let generation = self.next_generation;
        self.next_generation += 1;
        let framer = Framer::new(self.limits.framing, self.limits.max_message);
        let entry = self.peers.vacant_entry();
        let token = Token(entry.key());
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
        {
            log::warn!("cannot register connection from {addr}: {e}");
            return;
        }
        entry.insert(Peer::new(stream, addr, token, generation, framer));
        METRICS.connection_opened();
        log::info!("connection opened: {addr} (open: {})", self.peers.len());
        // Data may already be waiting (edge-triggered: no event would say so).
        self.resume.push_back(token.0);
    }

    fn log_rejection(&mut self, addr: SocketAddr) {
        if let Some(n) = self.reject_log.hit(Instant::now()) {
            log::warn!(
                "connection limit {} reached: closed {n} new connection(s) (latest from {addr})",
                self.limits.connection_limit,
            );
        }
    }
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

/// `server.host:server.port` as a socket address.
pub(super) fn configured_addr(cfg: &crate::config::Config) -> io::Result<SocketAddr> {
    let host = if cfg.server.host == "localhost" {
        "127.0.0.1"
    } else {
        cfg.server.host.as_str()
    };
    let ip: std::net::IpAddr = host
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad host"))?;
    Ok(SocketAddr::new(ip, cfg.server.port))
}

/// A non-blocking listener with the given backlog, SO_REUSEADDR and
/// SO_REUSEPORT (always: sibling reactors and sibling processes may share the
/// port; the kernel spreads new connections over every listener).
pub(crate) fn bind_listener(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limiter_writes_once_a_second_with_the_count() {
        let mut limiter = LogLimiter::default();
        let t0 = Instant::now();
        assert_eq!(limiter.hit(t0), Some(1));
        for ms in [100, 200, 900] {
            assert_eq!(limiter.hit(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(limiter.hit(t0 + Duration::from_millis(1000)), Some(4));
        assert_eq!(limiter.hit(t0 + Duration::from_millis(1500)), None);
        assert_eq!(limiter.hit(t0 + Duration::from_millis(5000)), Some(2));
    }
}
