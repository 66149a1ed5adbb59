//! One connection: its socket, input buffer, framer, [`ReplyQueue`] and where
//! it is in its life. The states and transitions are described in
//! `docs/LIFECYCLE.md`.
//!
//! Owns: its own state. The reactor drives it through verbs ([`Peer::on_event`],
//! [`Peer::read_some`], [`Peer::stop_reading`], [`Peer::close`],
//! [`Peer::flush`], [`Peer::release`]) and never writes its fields. Never:
//! blocks or does real work; complete requests are handed back to the reactor,
//! which dispatches them.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use serde_json::Value;

use super::replies::{Filled, ReplyQueue, KEEP_CAPACITY};
use crate::completion::Part;
use crate::inference::CancelSource;
use crate::protocol::{
    encode_error, encode_response, ErrorCode, FrameError, Framed, Framer, Framing, Item,
};

/// Where a peer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading requests (possibly paused by backpressure, see [`Peer::wants_input`]).
    Open,
    /// No more requests will be read (client sent EOF, the stream can no longer
    /// be trusted, or the server is shutting down); close once every owed reply
    /// has been written.
    Closing,
    /// Broken or expired: nothing more is read or written; the reactor
    /// releases it before it next sleeps.
    Closed,
}

/// How a read went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadOutcome {
    /// This many bytes were added to the input buffer.
    Data(usize),
    /// Nothing more to read for now.
    WouldBlock,
    /// The client sent EOF: the peer stopped reading.
    Eof,
    /// The read failed: the peer is closed.
    Failed,
}

pub(crate) struct Peer {
    stream: TcpStream,
    addr: SocketAddr,
    token: Token,
    generation: u64,
    framer: Framer,
    phase: Phase,
    /// Bytes read but not yet consumed by the framer.
    input: Vec<u8>,
    replies: ReplyQueue,
    /// The kernel may hold unread bytes (edge-triggered: set on a readable
    /// event, cleared on WouldBlock or on a short read, see [`Peer::read_some`]).
    readable: bool,
    /// An event reported EOF or an error already queued behind the data: keep
    /// reading until the read that returns it, even after short reads.
    hung_up: bool,
    /// WRITABLE interest is registered (only while output is pending).
    write_interest: bool,
    last_active: Instant,
    cancel: CancelSource,
    close_reason: &'static str,
    /// In the reactor's budget queue (waiting for memory to read again), holding
    /// this many bytes of a partial message (see `Reactor::wait_for_budget`).
    budget_hold: Option<usize>,
    /// Let out of the budget queue for this turn: may read although others wait.
    budget_turn: bool,
}

impl Peer {
    /// A peer for a stream registered READABLE under `token`.
    pub(crate) fn new(
        stream: TcpStream,
        addr: SocketAddr,
        token: Token,
        generation: u64,
        framer: Framer,
    ) -> Peer {
        Peer {
            stream,
            addr,
            token,
            generation,
            framer,
            phase: Phase::Open,
            input: Vec::new(),
            replies: ReplyQueue::default(),
            readable: true,
            hung_up: false,
            write_interest: false,
            last_active: Instant::now(),
            cancel: CancelSource::new(),
            close_reason: "closed by client",
            budget_hold: None,
            budget_turn: false,
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Unique per accepted connection: tells this peer from a later one in
    /// the same slab slot.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Cancels this connection's queued inference (0x03).
    pub(crate) fn cancel(&self) -> &CancelSource {
        &self.cancel
    }

    /// Takes in a readiness event for this peer's socket.
    pub(crate) fn on_event(&mut self, event: &Event) {
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.readable = true;
        }
        if event.is_read_closed() || event.is_error() {
            self.hung_up = true;
        }
    }

    /// The kernel may hold bytes for us.
    pub(crate) fn readable(&self) -> bool {
        self.readable
    }

    /// Requests accepted but not yet fully answered into the output buffer.
    pub(crate) fn in_flight(&self) -> usize {
        self.replies.in_flight()
    }

    pub(crate) fn pending_output(&self) -> usize {
        self.replies.pending_output()
    }

    /// Bytes of memory held in this connection's buffers (input capacity,
    /// output capacity, framed replies waiting their turn): its share of
    /// `server.max_buffered_bytes`.
    pub(crate) fn buffered(&self) -> usize {
        self.input.capacity() + self.replies.buffered()
    }

    /// Bytes of a message read only in part (the input holds nothing else
    /// when the peer wants input: complete messages are dispatched first).
    pub(crate) fn partial_message(&self) -> usize {
        self.input.len()
    }

    /// See [`Peer::budget_hold`]: `Some(bytes held)` while queued for budget.
    pub(crate) fn budget_hold(&self) -> Option<usize> {
        self.budget_hold
    }

    pub(crate) fn set_budget_hold(&mut self, hold: Option<usize>) {
        self.budget_hold = hold;
    }

    pub(crate) fn budget_turn(&self) -> bool {
        self.budget_turn
    }

    pub(crate) fn set_budget_turn(&mut self, turn: bool) {
        self.budget_turn = turn;
    }

    /// The memory budget has no room for the rest of the partial message:
    /// answer it code 5 and drop what was read. The rest of the message is
    /// still on its way and a JSON stream cannot be skipped without reading
    /// it, so the connection reads nothing more and closes once its owed
    /// replies are written (as after a framing error).
    pub(crate) fn refuse_for_budget(&mut self) {
        self.reply_error(
            ErrorCode::Busy,
            "server memory budget reached (server.max_buffered_bytes): message refused, retry later",
            None,
        );
        self.stop_reading("memory budget reached");
        self.input = Vec::new();
    }

    /// True when the peer may take another request: open, under its in-flight
    /// limit and with room in its output buffer. False = backpressure.
    pub(crate) fn wants_input(&self, max_in_flight: usize, max_output: usize) -> bool {
        self.phase == Phase::Open
            && self.in_flight() < max_in_flight
            && self.pending_output() < max_output
    }

    /// Nothing owed and nothing heard for `idle` by `now`. A peer queued for
    /// the memory budget is never idle: the server stopped reading it, so its
    /// silence is the server's, and it keeps its place until its turn.
    pub(crate) fn idle(&self, now: Instant, idle: Duration) -> bool {
        self.in_flight() == 0
            && self.budget_hold.is_none()
            && now.duration_since(self.last_active) >= idle
    }

    /// Ready to be released: closed, or closing with every owed reply written.
    pub(crate) fn done(&self) -> bool {
        match self.phase {
            Phase::Open => false,
            Phase::Closing => self.replies.is_empty(),
            Phase::Closed => true,
        }
    }

    /// Reads no more requests; owed replies are still written, then the peer
    /// is done. `reason` is logged at release.
    pub(crate) fn stop_reading(&mut self, reason: &'static str) {
        if self.phase != Phase::Closed {
            self.phase = Phase::Closing;
            self.readable = false;
            self.close_reason = reason;
        }
    }

    /// Gives up on the connection: nothing more is read or written.
    pub(crate) fn close(&mut self, reason: &'static str) {
        if self.phase != Phase::Closed {
            self.phase = Phase::Closed;
            self.close_reason = reason;
        }
    }

    /// Lends the input buffer out (so requests can be handled from it while
    /// the peer is borrowed elsewhere); give it back with [`Peer::restore_input`].
    pub(crate) fn take_input(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.input)
    }

    pub(crate) fn restore_input(&mut self, input: Vec<u8>) {
        self.input = input;
        if self.input.is_empty() && self.input.capacity() > KEEP_CAPACITY {
            self.input = Vec::new();
        }
    }

    /// The next complete request at the start of `buf`, framed and parsed (see
    /// [`Framer::next_request`]).
    pub(crate) fn next_request(
        &mut self,
        buf: &[u8],
        max_depth: usize,
    ) -> Result<Option<Framed>, FrameError> {
        self.framer.next_request(buf, max_depth)
    }

    /// See [`Framer::discard_whitespace`].
    pub(crate) fn discard_whitespace(&mut self) -> usize {
        self.framer.discard_whitespace()
    }

    /// Reads what the socket has into `scratch`, then into the input buffer,
    /// and marks the peer active at `now` (the reactor's turn clock). EOF
    /// stops reading; an error closes the peer.
    ///
    /// A short read (less than `scratch` holds) also clears `readable`: the
    /// socket was drained at that moment, and with edge-triggered epoll any
    /// byte arriving later raises a new event. This saves the second `recv`
    /// that would only return EAGAIN, one of three syscalls per request on
    /// the 0x22 path. Not when the event already reported EOF or an error
    /// (`hung_up`): no new edge would announce those.
    pub(crate) fn read_some(&mut self, scratch: &mut [u8], now: Instant) -> ReadOutcome {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => {
                    self.stop_reading("closed by client");
                    return ReadOutcome::Eof;
                }
                Ok(n) => {
                    self.input.extend_from_slice(&scratch[..n]);
                    self.last_active = now;
                    if n < scratch.len() && !self.hung_up {
                        self.readable = false;
                    }
                    return ReadOutcome::Data(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return ReadOutcome::WouldBlock;
                }
                Err(e) => {
                    log::debug!("read from {}: {e}", self.addr);
                    self.close("read error");
                    return ReadOutcome::Failed;
                }
            }
        }
    }

    fn framing(&self) -> Framing {
        self.framer.framing().unwrap_or(Framing::JsonStream)
    }

    /// Queues a finished response (items ready now).
    pub(crate) fn reply_now(&mut self, cmd: i64, items: &[Item], id: Option<&Value>) {
        let framing = self.framing();
        self.replies
            .push_ready(framing, |out| encode_response(cmd, items, id, out));
    }

    /// Queues an error response (`cmd: null`).
    pub(crate) fn reply_error(&mut self, code: ErrorCode, message: &str, id: Option<&Value>) {
        let framing = self.framing();
        self.replies
            .push_ready(framing, |out| encode_error(code, message, id, out));
    }

    /// Reserves a place for a reply that will come in `parts` parts; returns
    /// its sequence number.
    pub(crate) fn reply_later(&mut self, cmd: i64, id: Option<Value>, parts: usize) -> u64 {
        self.replies.reserve(cmd, id, parts)
    }

    /// Stores a worker's part of reply `seq` (see [`ReplyQueue::fill`]).
    pub(crate) fn fill(&mut self, seq: u64, part: Part) -> Filled {
        let framing = self.framing();
        self.replies.fill(framing, seq, part)
    }

    /// Writes pending output until done or WouldBlock, and keeps WRITABLE
    /// interest registered exactly while output is left. Returns true when
    /// everything was written; a write error closes the peer.
    pub(crate) fn flush(&mut self, registry: &Registry) -> bool {
        if self.phase == Phase::Closed {
            return false;
        }
        let all_written = match self.replies.write_to(&mut self.stream) {
            Ok(all) => all,
            Err(e) => {
                log::debug!("write to {}: {e}", self.addr);
                self.close("write error");
                return false;
            }
        };
        let want_write = !all_written;
        if want_write != self.write_interest {
            let interest = if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if let Err(e) = registry.reregister(&mut self.stream, self.token, interest) {
                log::warn!("reregister {}: {e}", self.addr);
            }
            self.write_interest = want_write;
        }
        all_written
    }

    /// Ends the connection: cancels its queued inference (it would be wasted
    /// work), deregisters the socket and logs why (`open` peers remain) at `level`:
    /// info normally, debug during a shutdown drain (the reactor logs one summary
    /// line instead of one line per connection).
    pub(crate) fn release(mut self, registry: &Registry, open: usize, level: log::Level) {
        self.cancel.cancel_pending();
        let _ = registry.deregister(&mut self.stream);
        log::log!(
            level,
            "connection closed: {} ({}; open: {open})",
            self.addr,
            self.close_reason,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FramingMode;

    fn loopback_peer() -> (Peer, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let client = std::net::TcpStream::connect(listener.local_addr().expect("addr"))
            .expect("connect loopback");
        let (server, addr) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        let framer = Framer::new(FramingMode::Auto, 1 << 20);
        let peer = Peer::new(TcpStream::from_std(server), addr, Token(7), 1, framer);
        (peer, client)
    }

    #[test]
    fn a_silent_peer_is_idle_unless_it_waits_for_the_budget() {
        let (mut peer, _client) = loopback_peer();
        let later = Instant::now() + Duration::from_secs(5);
        let timeout = Duration::from_secs(1);
        assert!(!peer.idle(Instant::now(), timeout), "just heard from");
        assert!(peer.idle(later, timeout), "silent past the timeout");
        peer.set_budget_hold(Some(0));
        assert!(
            !peer.idle(later, timeout),
            "queued for the memory budget: the silence is the server's"
        );
        peer.set_budget_hold(None);
        assert!(peer.idle(later, timeout));
    }
}
