//! The way back from the worker pools to the reactor: a channel of
//! [`Completion`]s plus one `mio::Waker`, and the [`Responder`] through which
//! the service's work answers. The contract between `crate::reactor` (which
//! makes tickets and reads completions) and `crate::service` (which answers
//! through them), so it sits below both.
//!
//! Every job is tagged with the peer's slab key *and* its generation, so a reply
//! for a connection that has closed meanwhile is dropped and can never reach a
//! newer peer that reuses the same slab slot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use crate::protocol::Item;

/// Identifies one request of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// Slab key of the peer.
    pub key: usize,
    /// Generation of the peer (unique per accepted connection).
    pub generation: u64,
    /// Sequence number of the request on that connection.
    pub seq: u64,
    /// The command (for per-command metrics).
    pub cmd: crate::protocol::Command,
    /// When the request was read (for the request latency histogram).
    pub started: std::time::Instant,
}

/// What a worker produced.
#[derive(Debug)]
pub enum Part {
    /// All items of a request.
    Whole(Vec<Item>),
    /// The item for file number `index` of a classify request.
    File { index: usize, item: Item },
}

#[derive(Debug)]
pub struct Completion {
    pub ticket: Ticket,
    pub part: Part,
}

/// Cheap to clone; handed to every job. Sends a completion and wakes the
/// reactor, coalescing wake-ups: only the first completion after the reactor
/// last drained the channel writes to the waker.
#[derive(Clone)]
pub struct Notifier {
    tx: Sender<Completion>,
    waker: Arc<mio::Waker>,
    wake_pending: Arc<AtomicBool>,
}

impl Notifier {
    pub fn new(tx: Sender<Completion>, waker: Arc<mio::Waker>) -> Notifier {
        Notifier {
            tx,
            waker,
            wake_pending: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn send(&self, completion: Completion) {
        // The receiver only disappears when the reactor has exited; the reply
        // then has nobody to go to.
        if self.tx.send(completion).is_err() {
            return;
        }
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.waker.wake() {
                log::error!("cannot wake the reactor: {e}");
            }
        }
    }

    /// Called by the reactor before it drains the channel.
    pub fn clear_wake(&self) {
        self.wake_pending.store(false, Ordering::Release);
    }
}

/// Where a slow command sends its answer: the reply's [`Ticket`] and the way
/// back to its reactor. The reactor makes one for each `Action::Later` once
/// the reply's place in the connection's order is reserved; the service hands
/// it (or clones of it, one per part) to the work it starts.
#[derive(Clone)]
pub struct Responder {
    ticket: Ticket,
    notifier: Notifier,
}

impl Responder {
    pub(crate) fn new(ticket: Ticket, notifier: Notifier) -> Responder {
        Responder { ticket, notifier }
    }

    /// Answers the whole request with `items`.
    pub fn whole(self, items: Vec<Item>) {
        self.part_done(Part::Whole(items));
    }

    /// Answers part `index` (of the reply's announced parts) with `item`.
    pub fn part(&self, index: usize, item: Item) {
        self.part_done(Part::File { index, item });
    }

    fn part_done(&self, part: Part) {
        self.notifier.send(Completion {
            ticket: self.ticket,
            part,
        });
    }
}
