//! One connection: its socket, input buffer, framer, the replies it is owed in
//! request order, and its bounded output buffer. The states and transitions are
//! described in `docs/LIFECYCLE.md`.
//!
//! A peer never blocks and never does real work: complete requests are handed
//! back to the reactor, which dispatches them.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;
use serde_json::Value;

use crate::inference::CancelSource;
use crate::protocol::{
    encode_error, encode_frame_with, encode_response, ErrorCode, Framer, Framing, Item,
};

/// Where a peer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading requests (possibly paused by backpressure, see [`Peer::wants_input`]).
    Open,
    /// No more requests will be read (client sent EOF, the stream can no longer
    /// be trusted, or the server is shutting down); close once every owed reply
    /// has been written.
    Closing,
}

/// A reply owed to the client, in request order.
enum Reply {
    /// Still waiting for workers.
    Waiting {
        cmd: i64,
        id: Option<Value>,
        items: Vec<Option<Item>>,
        missing: usize,
    },
    /// Encoded and framed, waiting for the replies before it.
    Ready(Vec<u8>),
}

pub struct Peer {
    pub stream: TcpStream,
    pub addr: SocketAddr,
    pub generation: u64,
    pub framer: Framer,
    pub phase: Phase,
    /// Bytes read but not yet consumed by the framer.
    input: Vec<u8>,
    /// Framed replies not yet written; `output[written..]` is pending.
    output: Vec<u8>,
    written: usize,
    replies: VecDeque<Reply>,
    /// Sequence number of `replies.front()`.
    first_seq: u64,
    /// The kernel may hold unread bytes (edge-triggered: set on a readable
    /// event, cleared on WouldBlock or on a short read, see [`Peer::read_some`]).
    pub readable: bool,
    /// An event reported EOF or an error already queued behind the data: keep
    /// reading until the read that returns it, even after short reads.
    pub hung_up: bool,
    /// WRITABLE interest is registered (only while output is pending).
    pub write_interest: bool,
    pub last_active: Instant,
    pub cancel: CancelSource,
    pub close_reason: &'static str,
}

/// Buffers larger than this are released when they empty, so idle
/// connections cost little memory.
const KEEP_CAPACITY: usize = 4096;

impl Peer {
    pub fn new(stream: TcpStream, addr: SocketAddr, generation: u64, framer: Framer) -> Peer {
        Peer {
            stream,
            addr,
            generation,
            framer,
            phase: Phase::Open,
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
            replies: VecDeque::new(),
            first_seq: 0,
            readable: true,
            hung_up: false,
            write_interest: false,
            last_active: Instant::now(),
            cancel: CancelSource::new(),
            close_reason: "closed by client",
        }
    }

    /// Requests accepted but not yet fully answered into the output buffer.
    pub fn in_flight(&self) -> usize {
        self.replies.len()
    }

    pub fn pending_output(&self) -> usize {
        self.output.len() - self.written
    }

    /// True when the peer may take another request: open, under its in-flight
    /// limit and with room in its output buffer. False = backpressure.
    pub fn wants_input(&self, max_in_flight: usize, max_output: usize) -> bool {
        self.phase == Phase::Open
            && self.in_flight() < max_in_flight
            && self.pending_output() < max_output
    }

    /// Done: nothing more will be read and everything owed has been written.
    pub fn finished(&self) -> bool {
        self.phase == Phase::Closing && self.replies.is_empty() && self.pending_output() == 0
    }

    pub fn input(&self) -> &[u8] {
        &self.input
    }

    /// Lends the input buffer out (so requests can be handled from it while
    /// the peer is borrowed elsewhere); give it back with [`Peer::restore_input`].
    pub fn take_input(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.input)
    }

    pub fn restore_input(&mut self, input: Vec<u8>) {
        self.input = input;
        if self.input.is_empty() && self.input.capacity() > KEEP_CAPACITY {
            self.input = Vec::new();
        }
    }

    /// Reads what the socket has into `scratch`, then into the input buffer,
    /// and marks the peer active at `now` (the reactor's turn clock).
    /// Returns bytes read; Ok(0) means EOF. WouldBlock clears `readable`.
    ///
    /// A short read (less than `scratch` holds) also clears `readable`: the
    /// socket was drained at that moment, and with edge-triggered epoll any
    /// byte arriving later raises a new event. This saves the second `recv`
    /// that would only return EAGAIN, one of three syscalls per request on
    /// the 0x22 path. Not when the event already reported EOF or an error
    /// ([`Peer::hung_up`]): no new edge would announce those.
    pub fn read_some(&mut self, scratch: &mut [u8], now: Instant) -> io::Result<usize> {
        loop {
            match self.stream.read(scratch) {
                Ok(n) => {
                    self.input.extend_from_slice(&scratch[..n]);
                    if n > 0 {
                        self.last_active = now;
                        if n < scratch.len() && !self.hung_up {
                            self.readable = false;
                        }
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        self.readable = false;
                    }
                    return Err(e);
                }
            }
        }
    }

    fn framing(&self) -> Framing {
        self.framer.framing().unwrap_or(Framing::JsonStream)
    }

    /// Queues a finished response (items ready now).
    pub fn reply_now(&mut self, cmd: i64, items: &[Item], id: Option<&Value>) {
        self.push_ready(|out| encode_response(cmd, items, id, out));
    }

    /// Queues an error response (`cmd: null`).
    pub fn reply_error(&mut self, code: ErrorCode, message: &str, id: Option<&Value>) {
        self.push_ready(|out| encode_error(code, message, id, out));
    }

    /// Frames a ready reply. When nothing is owed before it (the common case)
    /// it is encoded straight into the output buffer: no extra allocation or
    /// copy on the hot path.
    fn push_ready(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        let framing = self.framing();
        if self.replies.is_empty() {
            if self.pending_output() == 0 {
                self.output.clear();
                self.written = 0;
            }
            encode_frame_with(framing, &mut self.output, encode);
            self.first_seq += 1;
        } else {
            let mut framed = Vec::with_capacity(128);
            encode_frame_with(framing, &mut framed, encode);
            self.replies.push_back(Reply::Ready(framed));
        }
    }

    /// Reserves a place for a reply that workers will fill with `n` items;
    /// returns its sequence number.
    pub fn reply_later(&mut self, cmd: i64, id: Option<Value>, n: usize) -> u64 {
        let seq = self.first_seq + self.replies.len() as u64;
        self.replies.push_back(Reply::Waiting {
            cmd,
            id,
            items: (0..n).map(|_| None).collect(),
            missing: n,
        });
        seq
    }

    /// Stores a worker's result. Returns true when a reply became ready to send.
    pub fn fill(&mut self, seq: u64, index: Option<usize>, new_items: Vec<Item>) -> bool {
        let Some(pos) = seq.checked_sub(self.first_seq) else {
            return false;
        };
        let framing = self.framing();
        let Some(reply) = self.replies.get_mut(pos as usize) else {
            return false;
        };
        let Reply::Waiting {
            cmd,
            id,
            items,
            missing,
        } = reply
        else {
            return false;
        };
        match index {
            Some(i) => {
                if let (Some(slot), Some(item)) = (items.get_mut(i), new_items.into_iter().next()) {
                    if slot.is_none() {
                        *missing -= 1;
                    }
                    *slot = Some(item);
                }
            }
            None => {
                *items = new_items.into_iter().map(Some).collect();
                *missing = 0;
            }
        }
        if *missing > 0 {
            return false;
        }
        let done: Vec<Item> = items.drain(..).flatten().collect();
        let mut framed = Vec::with_capacity(64 + 96 * done.len());
        encode_frame_with(framing, &mut framed, |out| {
            encode_response(*cmd, &done, id.as_ref(), out)
        });
        *reply = Reply::Ready(framed);
        self.promote()
    }

    /// Moves ready replies from the front of the queue into the output
    /// buffer. Returns true when anything moved.
    fn promote(&mut self) -> bool {
        let mut moved = false;
        while let Some(Reply::Ready(_)) = self.replies.front() {
            if let Some(Reply::Ready(bytes)) = self.replies.pop_front() {
                if self.pending_output() == 0 {
                    self.output.clear();
                    self.written = 0;
                }
                self.output.extend_from_slice(&bytes);
                self.first_seq += 1;
                moved = true;
            }
        }
        moved
    }

    /// Writes pending output until done or WouldBlock. Returns Ok(true) when
    /// everything was written.
    pub fn flush(&mut self) -> io::Result<bool> {
        while self.written < self.output.len() {
            match self.stream.write(&self.output[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.output.clear();
        self.written = 0;
        if self.output.capacity() > KEEP_CAPACITY {
            self.output = Vec::new();
        }
        Ok(true)
    }
}
