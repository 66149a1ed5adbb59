//! The reactor: one thread, one `mio::Poll`, a `Slab` of [`Peer`]s.
//!
//! Owns: accepting connections ([`accept`]), reading and framing requests,
//! asking [`crate::service::Service`] how to answer each, keeping replies in
//! request order, collecting the parts that come back through the completion
//! channel, flushing, idle timeouts, and the graceful stop on SIGINT/SIGTERM.
//! It counts each reply once, when it becomes ready.
//!
//! Never: blocks, touches the filesystem, runs a model, or knows what a command
//! does. For an `Action::Later` it reserves the reply's place and hands the
//! service a [`Responder`] (a [`Ticket`]: slab key + generation + sequence, and
//! the way back); the parts come back as [`Completion`]s.
//!
//! Loop shape (after Redis' `ae.c`): wait for events → handle them → handle
//! completions → flush every peer that has new output → sleep again. WRITABLE
//! interest is registered only while a peer has output the kernel would not
//! take.

mod accept;
pub mod control;
pub(crate) mod http;
mod peer;
mod replies;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::completion::{Completion, Notifier, Responder, Ticket};
use crate::metrics::METRICS;
use crate::protocol::{BadRequest, Command, ErrorCode, FramingMode, Item, Request};
use crate::service::{Action, Service};
pub use control::{ReactorOptions, StopHandle};
pub use http::HttpBindError;
use peer::{Peer, ReadOutcome};
use replies::Filled;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
const SIGNALS: Token = Token(usize::MAX - 3);
const HTTP_LISTENER: Token = Token(usize::MAX - 4);

/// Read at most this many times from one peer per wake-up, so one fast
/// client cannot starve the others; the rest waits in the resume queue.
const READS_PER_TURN: usize = 8;
/// How often idle connections are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Limits copied out of the config, used on every event.
#[derive(Debug, Clone)]
struct Limits {
    framing: FramingMode,
    connection_limit: usize,
    max_message: usize,
    max_depth: usize,
    max_in_flight: usize,
    max_output: usize,
    idle_timeout: Option<Duration>,
    shutdown_grace: Duration,
    /// This reactor's share of `server.max_buffered_bytes`: no peer reads
    /// while the buffers hold this much.
    budget: usize,
    /// A peer in the middle of a message reads only below this (7/8 of the
    /// budget), so the last eighth stays free for new, small requests.
    partial_budget: usize,
}

impl Limits {
    fn of(cfg: &crate::config::Config) -> Limits {
        let share = cfg.server.max_buffered_bytes / cfg.server.reactors.max(1);
        Limits {
            framing: cfg.server.framing,
            connection_limit: cfg.server.connection_limit,
            max_message: cfg.server.max_message_bytes,
            max_depth: cfg.server.max_json_depth,
            max_in_flight: cfg.server.max_inflight_per_connection,
            max_output: cfg.server.max_output_bytes,
            idle_timeout: cfg.idle_timeout(),
            shutdown_grace: Duration::from_secs(cfg.server.shutdown_grace_secs),
            budget: share,
            partial_budget: share - share / 8,
        }
    }
}

/// Why the reactor could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReactorError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("reactor setup failed: {0}")]
    Setup(#[from] io::Error),
    #[error(transparent)]
    Metrics(#[from] HttpBindError),
}

/// A bound server, ready to run. Binding is separate from running so the
/// caller (and tests) can learn the address, e.g. after binding port 0.
pub struct Reactor {
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    peers: Slab<Peer>,
    next_generation: u64,
    completions: Receiver<Completion>,
    notifier: Notifier,
    /// Only the reactor that owns the process signals has these.
    signals: Option<Signals>,
    on_drain: Option<control::Hook>,
    on_hangup: Option<control::Hook>,
    /// The metrics/health listener, on the one reactor that serves it.
    http: Option<http::HttpEndpoint>,
    service: Arc<Service>,
    limits: Limits,
    scratch: Vec<u8>,
    /// Peers with new output to flush before sleeping.
    dirty: Vec<usize>,
    /// Peers with more to do without waiting for an event (fairness, resumed reads).
    resume: VecDeque<usize>,
    accept_paused_until: Option<Instant>,
    /// The clock read once per loop turn, right after `poll` returns: a
    /// request's start time and a peer's last activity. One clock read per
    /// turn instead of two per request on the hot path.
    now: Instant,
    next_sweep: Instant,
    drain_deadline: Option<Instant>,
    /// Connections closed since the drain began (logged once, as a summary).
    closed_in_drain: usize,
    /// Bytes held in all peers' buffers (the sum of [`Peer::buffered`]), kept
    /// up to date at the four places buffers change: `drive`, `deliver`,
    /// `flush_peer` and release.
    buffered: usize,
    /// Peers waiting for the memory budget, in the order they started to
    /// wait (slab key and generation: a slot may be reused meanwhile).
    budget_queue: VecDeque<(usize, u64)>,
    /// Bytes of partial messages held by the peers in `budget_queue`.
    budget_held: usize,
    /// Connection-limit rejections and accept's fd exhaustion can repeat many
    /// times a second; each is logged at most once a second, with a count.
    reject_log: accept::LogLimiter,
    fd_exhaustion_log: accept::LogLimiter,
}

impl Reactor {
    /// Binds the listener (backlog = `server.max_connections`, as in the
    /// original) and prepares the loop: the single-reactor setup.
    pub fn bind(service: Arc<Service>) -> Result<(Reactor, StopHandle), ReactorError> {
        Reactor::bind_with(service, ReactorOptions::default())
    }

    /// Binds with explicit [`ReactorOptions`] (one of several reactors).
    pub fn bind_with(
        service: Arc<Service>,
        options: ReactorOptions,
    ) -> Result<(Reactor, StopHandle), ReactorError> {
        let cfg = service.config();
        let addr = match options.addr {
            Some(a) => a,
            None => accept::configured_addr(cfg)?,
        };
        let std_listener = accept::bind_listener(addr, cfg.server.max_connections)
            .map_err(|source| ReactorError::Bind { addr, source })?;
        let mut listener = TcpListener::from_std(std_listener);
        let local_addr = listener.local_addr()?;

        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = mpsc::channel();
        let notifier = Notifier::new(tx, Arc::clone(&waker));
        let signals = if options.signals {
            let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
            poll.registry()
                .register(&mut signals, SIGNALS, Interest::READABLE)?;
            Some(signals)
        } else {
            None
        };

        let http = match (&cfg.metrics.listen, options.metrics) {
            (Some(addr), true) => Some(http::HttpEndpoint::bind(
                addr,
                poll.registry(),
                HTTP_LISTENER,
            )?),
            _ => None,
        };
        let limits = Limits::of(cfg);
        METRICS.set_buffered_budget(cfg.server.max_buffered_bytes);
        let scratch = vec![0u8; cfg.server.buffer_size.max(16 * 1024)];
        let stop_flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reactor = Reactor {
            poll,
            listener: Some(listener),
            local_addr,
            peers: Slab::new(),
            next_generation: 1,
            completions: rx,
            notifier,
            signals,
            on_drain: options.on_drain,
            on_hangup: options.on_hangup,
            http,
            service,
            limits,
            scratch,
            dirty: Vec::new(),
            resume: VecDeque::new(),
            accept_paused_until: None,
            now: Instant::now(),
            next_sweep: Instant::now() + SWEEP_EVERY,
            drain_deadline: None,
            closed_in_drain: 0,
            buffered: 0,
            budget_queue: VecDeque::new(),
            budget_held: 0,
            reject_log: accept::LogLimiter::default(),
            fd_exhaustion_log: accept::LogLimiter::default(),
        };
        Ok((reactor, StopHandle(waker, stop_flag)))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served, if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|h| h.local_addr().ok())
    }

    /// Runs until a stop signal (or [`StopHandle::stop`]) and the bounded drain
    /// that follows. Returns once every owed reply is written or the grace
    /// period ran out.
    pub fn run(mut self, stop: StopHandle) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            self.flush_dirty();
            self.admit_budget_waiters();
            if let Some(deadline) = self.drain_deadline {
                if self.peers.is_empty() {
                    log::info!(
                        "all replies delivered; {} connection(s) closed while draining; stopping",
                        self.closed_in_drain
                    );
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    log::warn!(
                        "shutdown grace period over; {} connection(s) closed while draining, \
                         closing {} with replies still owed",
                        self.closed_in_drain,
                        self.peers.len()
                    );
                    return Ok(());
                }
            }
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {
                        if stop.requested() {
                            self.begin_drain("stop requested");
                        }
                    }
                    SIGNALS => self.on_signals(),
                    token if token == HTTP_LISTENER || token.0 >= http::HTTP_BASE => {
                        self.http_event(token)
                    }
                    Token(key) => {
                        if let Some(p) = self.peers.get_mut(key) {
                            p.on_event(event);
                        }
                        self.drive(key);
                    }
                }
            }
            self.drain_completions();
            let resume: Vec<usize> = self.resume.drain(..).collect();
            for key in resume {
                self.drive(key);
            }
            self.timers();
        }
    }

    fn poll_timeout(&self) -> Duration {
        if !self.resume.is_empty() {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let mut wake_at = self.next_sweep;
        if let Some(t) = self.accept_paused_until {
            wake_at = wake_at.min(t);
        }
        if let Some(t) = self.drain_deadline {
            wake_at = wake_at.min(t);
        }
        wake_at.saturating_duration_since(now)
    }

    /// Advances one peer as far as it can go without blocking: frames and
    /// dispatches buffered requests and reads more while allowed. The peer is
    /// then flushed (and released if it is done) before the reactor sleeps.
    fn drive(&mut self, key: usize) {
        let Some(before) = self.peers.get(key).map(Peer::buffered) else {
            return;
        };
        let mut reads = 0;
        loop {
            self.dispatch_buffered(key);
            let Some(peer) = self.peers.get_mut(key) else {
                break;
            };
            if !peer.wants_input(self.limits.max_in_flight, self.limits.max_output)
                || !peer.readable()
            {
                break;
            }
            if reads == READS_PER_TURN {
                self.resume.push_back(key);
                break;
            }
            // The budget check: two comparisons per read while nobody waits.
            let held = self
                .buffered
                .wrapping_add(peer.buffered())
                .wrapping_sub(before);
            if (held >= self.limits.partial_budget || !self.budget_queue.is_empty())
                && must_wait(&self.limits, self.budget_queue.is_empty(), peer, held)
            {
                self.wait_for_budget(key);
                break;
            }
            reads += 1;
            match peer.read_some(&mut self.scratch, self.now) {
                ReadOutcome::Data(n) => METRICS.bytes_in(n),
                ReadOutcome::Eof => {}
                ReadOutcome::WouldBlock | ReadOutcome::Failed => break,
            }
        }
        if let Some(peer) = self.peers.get_mut(key) {
            peer.set_budget_turn(false);
            let after = peer.buffered();
            self.account(before, after);
        }
        self.mark_dirty(key);
    }

    /// Moves this reactor's buffered-bytes figure (and the process-wide gauge)
    /// from one peer's `before` to its `after`.
    #[inline]
    fn account(&mut self, before: usize, after: usize) {
        if before != after {
            self.buffered = self.buffered.wrapping_add(after).wrapping_sub(before);
            METRICS.buffered_changed(before, after);
        }
    }

    /// The peer wants to read but the buffers hold the budget. It waits in
    /// the budget queue (first come, first resumed) unless it holds a partial
    /// message and the waiting peers' partial messages already hold half the
    /// budget: then the message is refused with code 5 and its bytes freed.
    /// Without that cap, peers each holding part of a message could fill the
    /// budget and wait for each other forever; with it, at least half the
    /// budget is held by what frees itself (replies being written, requests
    /// being worked on), so the queue always moves.
    fn wait_for_budget(&mut self, key: usize) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        if peer.budget_hold().is_some() {
            return; // Already queued (woken by an event before its turn).
        }
        let partial = peer.partial_message();
        if partial > 0 && self.budget_held + partial > self.limits.budget / 2 {
            log::debug!(
                "{}: memory budget reached; refusing a {partial}-byte partial message",
                peer.addr()
            );
            peer.refuse_for_budget();
            METRICS.reply(None, ErrorCode::Busy, &[], self.now);
            METRICS.budget_refusal();
            return;
        }
        peer.set_budget_hold(Some(partial));
        self.budget_held += partial;
        self.budget_queue.push_back((key, peer.generation()));
        METRICS.budget_wait();
    }

    /// Resumes waiting peers, oldest first, while the buffers have room: about
    /// one peer per read's worth of room, so each resumed peer gets to read;
    /// one that finds the budget gone again queues at the back (round robin).
    fn admit_budget_waiters(&mut self) {
        if self.budget_queue.is_empty() || self.buffered >= self.limits.partial_budget {
            return;
        }
        let room = self.limits.partial_budget - self.buffered;
        let mut admit = room / self.scratch.len().max(1) + 1;
        while admit > 0 {
            let Some((key, generation)) = self.budget_queue.pop_front() else {
                break;
            };
            let Some(peer) = self.peers.get_mut(key) else {
                continue;
            };
            if peer.generation() != generation {
                continue;
            }
            if let Some(hold) = peer.budget_hold() {
                self.budget_held -= hold;
                peer.set_budget_hold(None);
            }
            peer.set_budget_turn(true);
            self.resume.push_back(key);
            admit -= 1;
        }
    }

    /// Frames and dispatches the requests already in the peer's input buffer,
    /// while backpressure allows. Requests are handled in place (the buffer is
    /// lent out of the peer meanwhile) and the consumed bytes dropped once.
    fn dispatch_buffered(&mut self, key: usize) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let mut input = peer.take_input();
        let mut start = 0;
        while let Some(peer) = self.peers.get_mut(key) {
            if !peer.wants_input(self.limits.max_in_flight, self.limits.max_output) {
                break;
            }
            let rest = input.get(start..).unwrap_or_default();
            match peer.next_request(rest, self.limits.max_depth) {
                Ok(Some(framed)) => {
                    start += framed.frame.consumed;
                    self.handle_request(key, framed.request);
                }
                Ok(None) => {
                    // Drop whitespace between messages now, so an idle
                    // connection holds no buffer for a trailing newline.
                    start += peer.discard_whitespace();
                    break;
                }
                Err(e) => {
                    // The stream can no longer be trusted: answer once, then close.
                    log::debug!("{}: framing error: {e}", peer.addr());
                    peer.reply_error(ErrorCode::InvalidMessage, &e.to_string(), None);
                    peer.stop_reading("framing error");
                    start = input.len();
                    break;
                }
            }
        }
        if let Some(peer) = self.peers.get_mut(key) {
            input.drain(..start.min(input.len()));
            peer.restore_input(input);
        }
    }

    /// Takes one parsed request (or why it is not one), asks the service how to answer it, and either
    /// answers at once or reserves the reply's place and lets the service
    /// start the work ([`Action::Later`]).
    fn handle_request(&mut self, key: usize, parsed: Result<Request, BadRequest>) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let started = self.now;
        let request = match parsed {
            Ok(r) => r,
            Err(bad) => {
                log::debug!("{}: bad request: {}", peer.addr(), bad.error);
                let answer = Answer::Error(None, ErrorCode::InvalidMessage, &bad.error.to_string());
                return answer_now(peer, bad.id.as_ref(), answer, started);
            }
        };
        let id = request.id;
        let Some(cmd) = Command::from_code(request.cmd) else {
            let message = format!("unknown command {:#04x}", request.cmd);
            let answer = Answer::Error(None, ErrorCode::NotExistCommand, &message);
            return answer_now(peer, id.as_ref(), answer, started);
        };
        log::debug!("{}: request {}", peer.addr(), cmd.name());
        match self
            .service
            .dispatch(cmd, request.request_data, peer.cancel())
        {
            Err(refusal) => {
                let answer = Answer::Error(Some(cmd), refusal.code, &refusal.message);
                answer_now(peer, id.as_ref(), answer, started);
            }
            Ok(Action::Now(items)) => {
                answer_now(peer, id.as_ref(), Answer::Items(cmd, &items), started)
            }
            Ok(Action::Later { parts, start }) => {
                let seq = peer.reply_later(cmd.response_code(), id, parts);
                let ticket = Ticket {
                    key,
                    generation: peer.generation(),
                    seq,
                    cmd,
                    started,
                };
                start(Responder::new(ticket, self.notifier.clone()));
            }
        }
    }

    fn drain_completions(&mut self) {
        self.notifier.clear_wake();
        while let Ok(c) = self.completions.try_recv() {
            self.deliver(c);
        }
    }

    /// Puts a worker's part where it belongs, if its peer still exists; a
    /// reply it completes is counted here.
    fn deliver(&mut self, Completion { ticket, part }: Completion) {
        let Some(peer) = self.peers.get_mut(ticket.key) else {
            return;
        };
        if peer.generation() != ticket.generation {
            return; // The connection closed; this slot now belongs to someone else.
        }
        let before = peer.buffered();
        let filled = peer.fill(ticket.seq, part);
        let after = peer.buffered();
        self.account(before, after);
        if let Filled::Ready { items, promoted } = filled {
            METRICS.reply(Some(ticket.cmd), ErrorCode::NoError, &items, ticket.started);
            if promoted {
                // A reply left the in-flight set: the peer may take more input.
                self.resume.push_back(ticket.key);
                self.mark_dirty(ticket.key);
            }
        }
    }

    fn mark_dirty(&mut self, key: usize) {
        self.dirty.push(key);
    }

    /// Writes every peer with new output (one write per peer per loop turn)
    /// and releases the peers that are done.
    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for key in dirty.drain(..) {
            self.flush_peer(key);
        }
        self.dirty = dirty;
    }

    fn flush_peer(&mut self, key: usize) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let pending = peer.pending_output();
        let before = peer.buffered();
        let all_written = peer.flush(self.poll.registry());
        METRICS.bytes_out(pending - peer.pending_output().min(pending));
        let after = peer.buffered();
        let done = peer.done();
        self.account(before, after);
        if done {
            let peer = self.peers.remove(key);
            self.account(after, 0);
            if let Some(hold) = peer.budget_hold() {
                self.budget_held -= hold;
            }
            METRICS.connection_closed();
            let level = if self.drain_deadline.is_some() {
                self.closed_in_drain += 1;
                log::Level::Debug
            } else {
                log::Level::Info
            };
            peer.release(self.poll.registry(), self.peers.len(), level);
        } else if all_written && pending >= self.limits.max_output {
            // Backpressure lifted: read again.
            self.resume.push_back(key);
        }
    }

    fn on_signals(&mut self) {
        let got: Vec<i32> = match self.signals.as_mut() {
            Some(s) => s.pending().collect(),
            None => return,
        };
        for signal in got {
            if signal == SIGHUP {
                log::info!("SIGHUP: reopening the log file");
                if let Some(hook) = self.on_hangup.as_mut() {
                    hook();
                }
            } else {
                self.begin_drain("signal received");
            }
        }
    }

    fn begin_drain(&mut self, why: &str) {
        if self.drain_deadline.is_some() {
            return;
        }
        if let Some(mut hook) = self.on_drain.take() {
            hook();
        }
        log::info!(
            "{why}: no longer accepting; finishing in-flight requests (up to {:?})",
            self.limits.shutdown_grace
        );
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.drain_deadline = Some(Instant::now() + self.limits.shutdown_grace);
        for (key, peer) in self.peers.iter_mut() {
            peer.stop_reading("server shutting down");
            self.dirty.push(key);
        }
    }

    /// One event of the metrics/health listener. `/readyz` turns 503 as soon
    /// as this reactor drains (it keeps answering while replies are owed).
    fn http_event(&mut self, token: Token) {
        let Some(endpoint) = self.http.as_mut() else {
            return;
        };
        let service = &self.service;
        let draining = self.drain_deadline.is_some();
        let answer = |route: http::Route| -> http::Answer {
            match route {
                http::Route::Healthz => http::Answer::text(200, "ok\n"),
                http::Route::Readyz if draining => http::Answer::text(503, "draining\n"),
                http::Route::Readyz => http::Answer::text(200, "ready\n"),
                http::Route::Metrics => http::Answer {
                    status: 200,
                    content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body: service.metrics_text(!draining),
                },
                http::Route::NotFound => http::Answer::text(404, "not found\n"),
            }
        };
        endpoint.event(token, self.poll.registry(), &answer);
    }

    fn timers(&mut self) {
        let now = Instant::now();
        if self.accept_paused_until.is_some_and(|t| now >= t) {
            self.accept_paused_until = None;
            self.accept_all();
        }
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_EVERY;
        // Debug builds (every test server) check the running figure against
        // the sum it stands for, once a second.
        debug_assert_eq!(
            self.buffered,
            self.peers.iter().map(|(_, p)| p.buffered()).sum::<usize>(),
            "buffered-bytes accounting drifted"
        );
        if let Some(h) = self.http.as_mut() {
            h.sweep(self.poll.registry());
        }
        let Some(idle) = self.limits.idle_timeout else {
            return;
        };
        for (key, peer) in self.peers.iter_mut() {
            if peer.idle(now, idle) {
                peer.close("idle timeout");
                self.dirty.push(key);
            }
        }
    }
}

/// Whether a peer that wants to read must wait for the budget, the buffers
/// holding `held` bytes: a message in progress reads below 7/8 of the budget,
/// a new one below the whole budget (the last eighth is kept for small
/// requests), and while peers wait (`nobody_waits` false) nobody overtakes
/// them except the ones whose turn it is.
fn must_wait(limits: &Limits, nobody_waits: bool, peer: &Peer, held: usize) -> bool {
    if !nobody_waits && !peer.budget_turn() {
        return true;
    }
    held >= limits.budget || (held >= limits.partial_budget && peer.partial_message() > 0)
}

/// An answer ready at once.
enum Answer<'a> {
    /// A command's normal response.
    Items(Command, &'a [Item]),
    /// A whole-request error (`cmd: null`), for a command if one was known.
    Error(Option<Command>, ErrorCode, &'a str),
}

/// Queues an answer ready at once and counts it: with [`Reactor::deliver`],
/// the other place a reply becomes ready.
fn answer_now(
    peer: &mut Peer,
    id: Option<&serde_json::Value>,
    answer: Answer<'_>,
    started: Instant,
) {
    match answer {
        Answer::Items(cmd, items) => {
            peer.reply_now(cmd.response_code(), items, id);
            METRICS.reply(Some(cmd), ErrorCode::NoError, items, started);
        }
        Answer::Error(cmd, code, message) => {
            peer.reply_error(code, message, id);
            METRICS.reply(cmd, code, &[], started);
        }
    }
}
