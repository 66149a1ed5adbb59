//! The reactor: one thread, one `mio::Poll`, a `Slab` of [`Peer`]s.
//!
//! Owns: accepting connections (with a connection cap and EMFILE back-off),
//! reading and framing requests, dispatching them through
//! [`crate::service::Service`], collecting worker results from the completion
//! channel, writing replies in request order, idle timeouts, and the graceful
//! stop on SIGINT/SIGTERM.
//!
//! Never: blocks, touches the filesystem, or runs a model. Anything that may
//! block goes to the rayon pool tagged with a [`Ticket`] (slab key +
//! generation + sequence) and comes back as a [`Completion`].
//!
//! Loop shape (after Redis' `ae.c`): wait for events → handle them → handle
//! completions → flush every peer that has new output → sleep again. WRITABLE
//! interest is registered only while a peer has output the kernel would not
//! take.

pub mod completion;
pub mod control;
pub mod http;
pub mod peer;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::inference::{ClassifyJob, FileOutcome, SubmitError};
use crate::metrics::METRICS;
use crate::protocol::{parse_request, Command, ErrorCode, Framer, Item};
use crate::service::{outcome_item, Action, Service, Work};
pub use completion::{Completion, Notifier, Part, Ticket};
pub use control::{ReactorOptions, StopHandle};
use peer::{Peer, Phase};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
const SIGNALS: Token = Token(usize::MAX - 3);
const HTTP_LISTENER: Token = Token(usize::MAX - 4);

/// Read at most this many times from one peer per wake-up, so one fast
/// client cannot starve the others; the rest waits in the resume queue.
const READS_PER_TURN: usize = 8;
/// How often idle connections are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How long accepting pauses after EMFILE/ENFILE.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Limits copied out of the config, used on every event.
#[derive(Debug, Clone)]
struct Limits {
    connection_limit: usize,
    max_message: usize,
    max_depth: usize,
    max_in_flight: usize,
    max_output: usize,
    idle_timeout: Option<Duration>,
    shutdown_grace: Duration,
}

/// Why the reactor could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReactorError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("reactor setup failed: {0}")]
    Setup(#[from] io::Error),
    #[error(transparent)]
    Metrics(#[from] http::HttpBindError),
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
    /// Connection-limit rejections and accept's fd exhaustion can repeat many
    /// times a second; each is logged at most once a second, with a count.
    reject_log: LogLimiter,
    fd_exhaustion_log: LogLimiter,
}

/// A warning that may repeat many times a second: written at most once a
/// second, saying how many times it happened since the last line.
#[derive(Debug, Default)]
struct LogLimiter {
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
            None => configured_addr(cfg)?,
        };
        let std_listener = bind_listener(addr, cfg.server.max_connections)
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
        let limits = Limits {
            connection_limit: cfg.server.connection_limit,
            max_message: cfg.server.max_message_bytes,
            max_depth: cfg.server.max_json_depth,
            max_in_flight: cfg.server.max_inflight_per_connection,
            max_output: cfg.server.max_output_bytes,
            idle_timeout: cfg.idle_timeout(),
            shutdown_grace: Duration::from_secs(cfg.server.shutdown_grace_secs),
        };
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
            reject_log: LogLimiter::default(),
            fd_exhaustion_log: LogLimiter::default(),
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
            if let Some(deadline) = self.drain_deadline {
                if self.peers.is_empty() {
                    log::info!("all replies delivered; stopping");
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    log::warn!(
                        "shutdown grace period over; closing {} connection(s) with replies still owed",
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
                            if event.is_readable() || event.is_read_closed() || event.is_error() {
                                p.readable = true;
                            }
                            if event.is_read_closed() || event.is_error() {
                                p.hung_up = true;
                            }
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

    fn accept_all(&mut self) {
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
        let stats = &self.service.stats;
        if self.peers.len() >= self.limits.connection_limit {
            stats.rejected.fetch_add(1, Ordering::Relaxed);
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
        let framer = Framer::new(
            self.service.config().server.framing,
            self.limits.max_message,
        );
        let entry = self.peers.vacant_entry();
        let key = entry.key();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), Interest::READABLE)
        {
            log::warn!("cannot register connection from {addr}: {e}");
            return;
        }
        entry.insert(Peer::new(stream, addr, generation, framer));
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        // add/sub, not store: several reactors share these counters.
        stats.open_connections.fetch_add(1, Ordering::Relaxed);
        log::info!("connection opened: {addr} (open: {})", self.peers.len());
        // Data may already be waiting (edge-triggered: no event would say so).
        self.resume.push_back(key);
    }

    fn log_rejection(&mut self, addr: SocketAddr) {
        if let Some(n) = self.reject_log.hit(Instant::now()) {
            log::warn!(
                "connection limit {} reached: closed {n} new connection(s) (latest from {addr})",
                self.limits.connection_limit,
            );
        }
    }

    /// Advances one peer as far as it can go without blocking: frames and
    /// dispatches buffered requests, reads more while allowed, and closes it
    /// when it is finished or broken.
    fn drive(&mut self, key: usize) {
        let mut reads = 0;
        loop {
            self.dispatch_buffered(key);
            let Some(peer) = self.peers.get_mut(key) else {
                return;
            };
            if !peer.wants_input(self.limits.max_in_flight, self.limits.max_output)
                || !peer.readable
            {
                break;
            }
            if reads == READS_PER_TURN {
                self.resume.push_back(key);
                break;
            }
            reads += 1;
            match peer.read_some(&mut self.scratch, self.now) {
                Ok(0) => {
                    peer.phase = Phase::Closing;
                    peer.readable = false;
                    peer.close_reason = "closed by client";
                }
                Ok(n) => METRICS.bytes_in(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::debug!("read from {}: {e}", peer.addr);
                    peer.close_reason = "read error";
                    self.close(key);
                    return;
                }
            }
        }
        self.mark_dirty(key);
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
            match peer.framer.next_frame(rest) {
                Ok(Some(frame)) => {
                    let payload = start + frame.payload.start..start + frame.payload.end;
                    start += frame.consumed;
                    self.handle_request(key, input.get(payload).unwrap_or_default());
                }
                Ok(None) => {
                    // Drop whitespace between messages now, so an idle
                    // connection holds no buffer for a trailing newline.
                    start += peer.framer.discard_whitespace();
                    break;
                }
                Err(e) => {
                    // The stream can no longer be trusted: answer once, then close.
                    log::debug!("{}: framing error: {e}", peer.addr);
                    peer.reply_error(ErrorCode::InvalidMessage, &e.to_string(), None);
                    peer.phase = Phase::Closing;
                    peer.close_reason = "framing error";
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

    fn handle_request(&mut self, key: usize, payload: &[u8]) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let stats = &self.service.stats;
        let started = self.now;
        let request = match parse_request(payload, self.limits.max_depth) {
            Ok(r) => r,
            Err(bad) => {
                log::debug!("{}: bad request: {}", peer.addr, bad.error);
                peer.reply_error(
                    ErrorCode::InvalidMessage,
                    &bad.error.to_string(),
                    bad.id.as_ref(),
                );
                stats.requests_served.fetch_add(1, Ordering::Relaxed);
                answered_now(None, ErrorCode::InvalidMessage, &[], started);
                return;
            }
        };
        let Some(cmd) = Command::from_code(request.cmd) else {
            peer.reply_error(
                ErrorCode::NotExistCommand,
                &format!("unknown command {:#04x}", request.cmd),
                request.id.as_ref(),
            );
            stats.requests_served.fetch_add(1, Ordering::Relaxed);
            answered_now(None, ErrorCode::NotExistCommand, &[], started);
            return;
        };
        log::debug!("{}: request {}", peer.addr, cmd.name());
        let action = match self.service.dispatch(cmd, request.request_data) {
            Ok(a) => a,
            Err(refusal) => {
                peer.reply_error(refusal.code, &refusal.message, request.id.as_ref());
                stats.requests_served.fetch_add(1, Ordering::Relaxed);
                answered_now(Some(cmd), refusal.code, &[], started);
                return;
            }
        };
        let rcmd = cmd.response_code();
        let generation = peer.generation;
        let ticket_for = |seq| Ticket {
            key,
            generation,
            seq,
            cmd,
            started,
        };
        match action {
            Action::Reply(items) => {
                peer.reply_now(rcmd, &items, request.id.as_ref());
                stats.requests_served.fetch_add(1, Ordering::Relaxed);
                answered_now(Some(cmd), ErrorCode::NoError, &items, started);
            }
            Action::Cancel => {
                peer.cancel.cancel_pending();
                peer.reply_now(rcmd, &[Item::ok(None)], request.id.as_ref());
                stats.requests_served.fetch_add(1, Ordering::Relaxed);
                answered_now(Some(cmd), ErrorCode::NoError, &[Item::ok(None)], started);
            }
            Action::Work(work) => {
                METRICS.request(Some(cmd), ErrorCode::NoError);
                let seq = peer.reply_later(rcmd, request.id, 1);
                let ticket = ticket_for(seq);
                spawn_work(work, ticket, self.notifier.clone());
            }
            Action::Classify(names) => {
                let inference = self.service.inference();
                if inference.queue_depth() + names.len()
                    > self.service.config().inference.queue_capacity
                {
                    peer.reply_error(
                        ErrorCode::Busy,
                        "inference queue full, retry later",
                        request.id.as_ref(),
                    );
                    stats.requests_served.fetch_add(1, Ordering::Relaxed);
                    answered_now(Some(cmd), ErrorCode::Busy, &[], started);
                    return;
                }
                METRICS.request(Some(cmd), ErrorCode::NoError);
                let seq = peer.reply_later(rcmd, request.id, names.len());
                let ticket = ticket_for(seq);
                let folder = self.service.image_folder();
                let mut refused = Vec::new();
                for (index, name) in names.into_iter().enumerate() {
                    let notifier = self.notifier.clone();
                    let reply_name = name.clone();
                    let job = ClassifyJob {
                        folder: folder.clone(),
                        name,
                        cancel: peer.cancel.token(),
                        done: Box::new(move |outcome: FileOutcome| {
                            notifier.send(Completion {
                                ticket,
                                part: Part::File {
                                    index,
                                    item: outcome_item(reply_name, outcome),
                                },
                            })
                        }),
                    };
                    if let Err(SubmitError::Busy(job)) = inference.submit(job) {
                        refused.push((index, job.name));
                    }
                }
                for (index, name) in refused {
                    let item = Item::failed(
                        Some(name),
                        ErrorCode::Busy,
                        "inference queue full, retry later",
                    );
                    self.deliver(ticket, Part::File { index, item });
                }
            }
        }
    }

    fn drain_completions(&mut self) {
        self.notifier.clear_wake();
        while let Ok(c) = self.completions.try_recv() {
            self.deliver(c.ticket, c.part);
        }
    }

    /// Puts a worker result where it belongs, if its peer still exists.
    fn deliver(&mut self, ticket: Ticket, part: Part) {
        let Some(peer) = self.peers.get_mut(ticket.key) else {
            return;
        };
        if peer.generation != ticket.generation {
            return; // The connection closed; this slot now belongs to someone else.
        }
        let became_ready = match part {
            Part::Whole(items) => {
                for item in &items {
                    METRICS.item(ticket.cmd, item.error_code);
                }
                peer.fill(ticket.seq, None, items)
            }
            Part::File { index, item } => {
                METRICS.item(ticket.cmd, item.error_code);
                peer.fill(ticket.seq, Some(index), vec![item])
            }
        };
        if became_ready {
            METRICS.request_latency(ticket.started.elapsed());
            self.service
                .stats
                .requests_served
                .fetch_add(1, Ordering::Relaxed);
            // A reply left the in-flight set: the peer may take more input.
            self.resume.push_back(ticket.key);
            self.mark_dirty(ticket.key);
        }
    }

    fn mark_dirty(&mut self, key: usize) {
        self.dirty.push(key);
    }

    /// Writes every peer with new output (one write per peer per loop turn),
    /// adjusts WRITABLE interest, and closes the peers that are finished.
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
        let was_backpressured = pending >= self.limits.max_output;
        let flushed = peer.flush();
        METRICS.bytes_out(pending - peer.pending_output().min(pending));
        match flushed {
            Ok(all_written) => {
                let want_write = !all_written;
                if want_write != peer.write_interest {
                    let interest = if want_write {
                        Interest::READABLE | Interest::WRITABLE
                    } else {
                        Interest::READABLE
                    };
                    if let Err(e) =
                        self.poll
                            .registry()
                            .reregister(&mut peer.stream, Token(key), interest)
                    {
                        log::warn!("reregister {}: {e}", peer.addr);
                    }
                    peer.write_interest = want_write;
                }
                if peer.finished() {
                    self.close(key);
                } else if all_written && was_backpressured {
                    self.resume.push_back(key);
                }
            }
            Err(e) => {
                log::debug!("write to {}: {e}", peer.addr);
                peer.close_reason = "write error";
                self.close(key);
            }
        }
    }

    fn close(&mut self, key: usize) {
        if !self.peers.contains(key) {
            return;
        }
        let mut peer = self.peers.remove(key);
        // Queued inference for this connection would be wasted work.
        peer.cancel.cancel_pending();
        let _ = self.poll.registry().deregister(&mut peer.stream);
        self.service
            .stats
            .open_connections
            .fetch_sub(1, Ordering::Relaxed);
        log::info!(
            "connection closed: {} ({}; open: {})",
            peer.addr,
            peer.close_reason,
            self.peers.len()
        );
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
        let keys: Vec<usize> = self.peers.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(p) = self.peers.get_mut(key) {
                p.phase = Phase::Closing;
                p.close_reason = "server shutting down";
            }
            self.mark_dirty(key);
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
                    body: crate::metrics::Snapshot::take(gauges(service, !draining)).encode(),
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
        if let Some(h) = self.http.as_mut() {
            h.sweep(self.poll.registry());
        }
        let Some(idle) = self.limits.idle_timeout else {
            return;
        };
        let expired: Vec<usize> = self
            .peers
            .iter()
            .filter(|(_, p)| p.in_flight() == 0 && now.duration_since(p.last_active) >= idle)
            .map(|(k, _)| k)
            .collect();
        for key in expired {
            if let Some(p) = self.peers.get_mut(key) {
                p.close_reason = "idle timeout";
            }
            self.close(key);
        }
    }
}

/// Runs blocking work on the rayon pool; a panic becomes an internal-error
/// item instead of taking the process down (rayon aborts on panics in spawn).
/// Management work (downloads, model loads, directory scans) runs on its own
/// small pool, so a slow download can never hold the inference workers of the
/// global pool (and so stall every client's classification).
fn management_pool() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(MANAGEMENT_THREADS)
            .thread_name(|i| format!("pear-mgmt-{i}"))
            .build()
            .unwrap_or_else(|e| panic!("cannot start the management pool: {e}"))
    })
}

/// Threads for management commands; more concurrent ones queue.
const MANAGEMENT_THREADS: usize = 2;

fn spawn_work(work: Work, ticket: Ticket, notifier: Notifier) {
    management_pool().spawn(move || {
        let items = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
            Ok(items) => items,
            Err(_) => {
                log::error!("a worker job panicked; answering internal_error");
                vec![Item::failed(
                    None,
                    ErrorCode::InternalError,
                    "internal error",
                )]
            }
        };
        notifier.send(Completion {
            ticket,
            part: Part::Whole(items),
        });
    });
}

/// Counts a request answered at once (no worker involved).
fn answered_now(cmd: Option<Command>, code: ErrorCode, items: &[Item], started: Instant) {
    METRICS.request(cmd, code);
    if let Some(cmd) = cmd {
        for item in items {
            METRICS.item(cmd, item.error_code);
        }
    }
    METRICS.request_latency(started.elapsed());
}

/// The gauges `/metrics` reads from the service.
fn gauges(service: &Service, ready: bool) -> crate::metrics::Gauges {
    let s = &service.stats;
    crate::metrics::Gauges {
        open_connections: s.open_connections.load(Ordering::Relaxed) as u64,
        accepted: s.accepted.load(Ordering::Relaxed),
        rejected: s.rejected.load(Ordering::Relaxed),
        queue_depth: service.inference().queue_depth() as u64,
        queue_capacity: service.config().inference.queue_capacity as u64,
        ready,
        uptime_secs: s.started.elapsed().as_secs_f64(),
    }
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

/// `server.host:server.port` as a socket address.
fn configured_addr(cfg: &crate::config::Config) -> io::Result<SocketAddr> {
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
