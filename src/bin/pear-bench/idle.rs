//! Idle connections: opening many of them quickly and holding them open.
//!
//! Owns non-blocking connects from rotating loopback source addresses (a bounded number
//! in flight at once, so the server's accept queue is not overrun) and noticing when
//! the server closes one. Must never send a byte on an idle connection, never retry a
//! failed connect, and never wait past its deadline.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::sys;

/// Connects started but not yet finished, at most.
const IN_FLIGHT: usize = 512;

/// Errors that make holding idle connections impossible at all.
#[derive(Debug, thiserror::Error)]
pub enum IdleError {
    #[error("poll: {0}")]
    Poll(#[source] io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Open,
}

struct Slot {
    stream: TcpStream,
    state: State,
}

/// The idle connections of this process, with their own poll.
pub struct IdleSet {
    poll: Poll,
    slots: Vec<Option<Slot>>,
    /// Connections asked for.
    pub wanted: usize,
    /// Connections that completed their handshake.
    pub connected: usize,
    /// Connects that failed (or were still pending at the deadline).
    pub failed: usize,
    /// Established connections the server closed since.
    pub closed_by_peer: usize,
    /// Time it took to open them.
    pub open_time: Duration,
    /// First connect error seen, for the report.
    pub first_error: Option<String>,
}

impl IdleSet {
    /// Opens `n` idle connections to `target`, giving up on the stragglers at `deadline`.
    pub fn open(target: SocketAddr, n: usize, deadline: Instant) -> Result<IdleSet, IdleError> {
        let start = Instant::now();
        let mut set = IdleSet {
            poll: Poll::new().map_err(IdleError::Poll)?,
            slots: Vec::with_capacity(n),
            wanted: n,
            connected: 0,
            failed: 0,
            closed_by_peer: 0,
            open_time: Duration::ZERO,
            first_error: None,
        };
        let mut events = Events::with_capacity(1024);
        let mut in_flight = 0usize;
        let mut next = 0usize;
        while set.connected + set.failed < n {
            while in_flight < IN_FLIGHT && next < n {
                let idx = next;
                next += 1;
                match sys::connect_from(sys::source_addr(idx), target) {
                    Ok(std_stream) => {
                        let mut stream = TcpStream::from_std(std_stream);
                        let reg = set.poll.registry().register(
                            &mut stream,
                            Token(idx),
                            Interest::READABLE | Interest::WRITABLE,
                        );
                        match reg {
                            Ok(()) => {
                                set.slots.push(Some(Slot {
                                    stream,
                                    state: State::Connecting,
                                }));
                                in_flight += 1;
                            }
                            Err(e) => set.fail(e.to_string()),
                        }
                    }
                    Err(e) => set.fail(e.to_string()),
                }
                if set.slots.len() < next {
                    set.slots.push(None);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                set.fail_pending("connect deadline passed".into());
                break;
            }
            let timeout = deadline
                .saturating_duration_since(now)
                .min(Duration::from_millis(100));
            if let Err(e) = set.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(IdleError::Poll(e));
                }
            }
            for event in events.iter() {
                let idx = event.token().0;
                let was_connecting = matches!(
                    set.slots.get(idx),
                    Some(Some(Slot {
                        state: State::Connecting,
                        ..
                    }))
                );
                if was_connecting {
                    match set.finish_connect(idx) {
                        Some(true) => {
                            in_flight -= 1;
                            set.connected += 1;
                        }
                        Some(false) => in_flight -= 1,
                        None => {}
                    }
                } else if event.is_readable() || event.is_read_closed() {
                    set.check_closed(idx);
                }
            }
        }
        set.open_time = start.elapsed();
        Ok(set)
    }

    fn fail(&mut self, msg: String) {
        self.failed += 1;
        if self.first_error.is_none() {
            self.first_error = Some(msg);
        }
    }

    /// Counts every connect still pending as failed and drops it.
    fn fail_pending(&mut self, msg: String) {
        for i in 0..self.slots.len() {
            let pending = matches!(
                self.slots.get(i),
                Some(Some(Slot {
                    state: State::Connecting,
                    ..
                }))
            );
            if pending {
                if let Some(slot) = self.slots.get_mut(i) {
                    *slot = None;
                }
                self.fail(msg.clone());
            }
        }
    }

    /// Some(true) = connected, Some(false) = failed, None = not yet.
    fn finish_connect(&mut self, idx: usize) -> Option<bool> {
        let entry = self.slots.get_mut(idx)?;
        let slot = entry.as_mut()?;
        let outcome = match slot.stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match slot.stream.peer_addr() {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return None,
                Err(e) => Err(e),
            },
        };
        match outcome {
            Ok(()) => {
                slot.state = State::Open;
                Some(true)
            }
            Err(e) => {
                *entry = None;
                self.fail(e.to_string());
                Some(false)
            }
        }
    }

    /// Drains an open connection; if the server closed it, counts and drops it.
    fn check_closed(&mut self, idx: usize) {
        let Some(entry) = self.slots.get_mut(idx) else {
            return;
        };
        let Some(slot) = entry.as_mut() else {
            return;
        };
        let mut scratch = [0u8; 512];
        let closed = loop {
            match slot.stream.read(&mut scratch) {
                Ok(0) => break true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break true,
            }
        };
        if closed {
            *entry = None;
            self.closed_by_peer += 1;
        }
    }

    /// Connections still open.
    pub fn open_now(&self) -> usize {
        self.connected.saturating_sub(self.closed_by_peer)
    }

    /// Holds the connections until `deadline` or until `stop` is set, noticing closes.
    pub fn hold(&mut self, deadline: Instant, stop: &AtomicBool) -> Result<(), IdleError> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            if now >= deadline || stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let timeout = deadline
                .saturating_duration_since(now)
                .min(Duration::from_millis(100));
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(IdleError::Poll(e));
                }
            }
            for event in events.iter() {
                if event.is_readable() || event.is_read_closed() {
                    self.check_closed(event.token().0);
                }
            }
        }
    }
}
