//! The closed-loop load of one thread: its own `mio` poll over its share of the active
//! connections, each keeping `pipeline` requests outstanding.
//!
//! Owns request pacing, response recognition (pear frames via the library's [`Framer`],
//! or redis `+PONG\r\n` lines) and latency recording. Must never run past its time
//! window or request budget, never reconnect a connection the server closed (that is
//! counted as an I/O error), and never parse more of a response than the first
//! `"error_code":` number.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use pear_server::protocol::{Framer, FramingMode};

/// How long, after the window closes, outstanding responses are still awaited.
const GRACE: Duration = Duration::from_secs(2);
/// Upper bound on one response frame (status replies are the biggest, well under this).
const MAX_RESPONSE: usize = 16 << 20;
/// Initial size of a connection's input buffer.
const READ_CHUNK: usize = 16 * 1024;
/// Largest latency the histograms hold, in nanoseconds (60 s).
pub const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// Errors that stop a load thread before it produces numbers.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("connecting to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("poll: {0}")]
    Poll(#[source] io::Error),
    #[error("histogram: {0}")]
    Histogram(String),
}

/// What a thread sends: pre-framed requests, used round-robin, and how replies look.
#[derive(Debug, Clone)]
pub struct Wire {
    /// Each entry is one complete request as it goes on the wire.
    pub frames: Vec<Vec<u8>>,
    pub redis: bool,
}

/// The work of one thread.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: SocketAddr,
    pub conns: usize,
    pub pipeline: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Most requests this thread may send in total (warm-up included).
    pub max_requests: u64,
    /// Offset into the payload rotation, so threads do not all start on the same line.
    pub first_payload: usize,
}

/// What one thread measured inside its window.
pub struct Outcome {
    /// Latency of every response received inside the window, in nanoseconds.
    pub hist: Histogram<u64>,
    /// Responses received inside the window.
    pub requests: u64,
    /// Responses inside the window whose first `error_code` was non-zero (or missing).
    pub errors: u64,
    /// Connections lost (closed by the server or failed) during the run.
    pub io_errors: u64,
    /// How much of the measuring window ran: the whole `duration`, or less when
    /// the request budget ran out first.
    pub measured: Duration,
}

/// A fresh, empty latency histogram.
pub fn new_histogram() -> Result<Histogram<u64>, LoadError> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
        .map_err(|e| LoadError::Histogram(e.to_string()))
}

/// Cuts responses out of a connection's input.
enum Replies {
    Pear(Framer),
    Redis,
}

impl Replies {
    /// The next complete reply at the front of `buf`: (bytes consumed, is_error).
    fn next(&mut self, buf: &[u8]) -> Result<Option<(usize, bool)>, ()> {
        match self {
            Replies::Pear(framer) => match framer.next_frame(buf) {
                Ok(Some(frame)) => {
                    let payload = buf.get(frame.payload).unwrap_or_default();
                    Ok(Some((frame.consumed, is_error_response(payload))))
                }
                Ok(None) => Ok(None),
                Err(_) => Err(()),
            },
            Replies::Redis => {
                let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                    return if buf.len() > MAX_RESPONSE {
                        Err(())
                    } else {
                        Ok(None)
                    };
                };
                Ok(Some((end + 2, buf.first() != Some(&b'+'))))
            }
        }
    }
}

/// True unless the first `"error_code":` in `payload` is followed by the number 0.
pub fn is_error_response(payload: &[u8]) -> bool {
    const KEY: &[u8] = b"\"error_code\":";
    let Some(at) = payload.windows(KEY.len()).position(|w| w == KEY) else {
        return true;
    };
    let rest = payload.get(at + KEY.len()..).unwrap_or_default();
    let mut digits = rest.iter().skip_while(|b| b.is_ascii_whitespace());
    match (digits.next(), digits.next()) {
        (Some(b'0'), Some(next)) => next.is_ascii_digit(),
        (Some(b'0'), None) => false,
        _ => true,
    }
}

struct Conn {
    stream: TcpStream,
    /// Input buffer; bytes `rstart..rlen` are received but not yet consumed.
    rbuf: Vec<u8>,
    rstart: usize,
    rlen: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    sent_at: VecDeque<Instant>,
    replies: Replies,
    next_payload: usize,
    alive: bool,
}

/// Counters shared by the connections of one thread.
struct Tally {
    hist: Histogram<u64>,
    requests: u64,
    errors: u64,
    io_errors: u64,
    sent: u64,
    outstanding: u64,
    measure_from: Instant,
    stop_at: Instant,
}

impl Conn {
    /// Appends `n` requests to the output buffer, stamped `now`.
    fn enqueue(&mut self, n: usize, wire: &Wire, now: Instant, tally: &mut Tally, budget: u64) {
        for _ in 0..n {
            if tally.sent >= budget {
                return;
            }
            let idx = self.next_payload % wire.frames.len().max(1);
            self.next_payload = self.next_payload.wrapping_add(1);
            if let Some(frame) = wire.frames.get(idx) {
                self.wbuf.extend_from_slice(frame);
                self.sent_at.push_back(now);
                tally.sent += 1;
                tally.outstanding += 1;
            }
        }
    }

    /// Writes what is buffered until done or the socket is full. Err = connection lost.
    fn flush(&mut self) -> io::Result<()> {
        while self.wpos < self.wbuf.len() {
            let pending = self.wbuf.get(self.wpos..).unwrap_or_default();
            match self.stream.write(pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        Ok(())
    }

    /// Reads until the socket is drained; returns how many replies completed.
    /// Err = the connection is lost (EOF, reset, or an unframeable reply).
    fn read_replies(&mut self, tally: &mut Tally) -> Result<usize, ()> {
        let mut eof = false;
        loop {
            if self.rlen == self.rbuf.len() {
                if self.rstart > 0 {
                    self.rbuf.copy_within(self.rstart..self.rlen, 0);
                    self.rlen -= self.rstart;
                    self.rstart = 0;
                } else if self.rbuf.len() < MAX_RESPONSE + READ_CHUNK {
                    self.rbuf.resize(self.rbuf.len() * 2, 0);
                } else {
                    return Err(());
                }
            }
            let room = self.rbuf.get_mut(self.rlen..).unwrap_or_default();
            match self.stream.read(room) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => self.rlen += n,
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => {}
                    _ => return Err(()),
                },
            }
        }
        let now = Instant::now();
        let mut done = 0;
        loop {
            let pending = self.rbuf.get(self.rstart..self.rlen).unwrap_or_default();
            let Some((consumed, is_error)) = self.replies.next(pending)? else {
                break;
            };
            self.rstart += consumed;
            done += 1;
            let Some(sent) = self.sent_at.pop_front() else {
                // A reply nobody asked for: the stream is out of step.
                return Err(());
            };
            tally.outstanding = tally.outstanding.saturating_sub(1);
            if now >= tally.measure_from && now < tally.stop_at {
                let ns = u64::try_from(now.duration_since(sent).as_nanos()).unwrap_or(u64::MAX);
                tally.hist.saturating_record(ns.clamp(1, MAX_LATENCY_NS));
                tally.requests += 1;
                if is_error {
                    tally.errors += 1;
                }
            }
        }
        if self.rstart == self.rlen {
            self.rstart = 0;
            self.rlen = 0;
        }
        if eof {
            return Err(());
        }
        Ok(done)
    }
}

/// Connects this thread's connections (blocking, before the clock starts).
pub fn connect_all(plan: &Plan, wire: &Wire) -> Result<Vec<ConnSlot>, LoadError> {
    let mut out = Vec::with_capacity(plan.conns);
    for i in 0..plan.conns {
        let err = |source| LoadError::Connect {
            addr: plan.target,
            source,
        };
        let std_stream = std::net::TcpStream::connect_timeout(&plan.target, Duration::from_secs(5))
            .map_err(err)?;
        std_stream.set_nodelay(true).map_err(err)?;
        std_stream.set_nonblocking(true).map_err(err)?;
        let replies = if wire.redis {
            Replies::Redis
        } else {
            Replies::Pear(Framer::new(FramingMode::Auto, MAX_RESPONSE))
        };
        out.push(ConnSlot(Conn {
            stream: TcpStream::from_std(std_stream),
            rbuf: vec![0; READ_CHUNK],
            rstart: 0,
            rlen: 0,
            wbuf: Vec::with_capacity(4 * 1024),
            wpos: 0,
            sent_at: VecDeque::with_capacity(plan.pipeline),
            replies,
            next_payload: plan.first_payload.wrapping_add(i),
            alive: true,
        }));
    }
    Ok(out)
}

/// A connected, not yet started connection (opaque outside this module).
pub struct ConnSlot(Conn);

/// Runs the closed loop over `slots` until the window closes and the replies owed are
/// in (or the grace period ends).
pub fn run(plan: &Plan, wire: &Wire, slots: Vec<ConnSlot>) -> Result<Outcome, LoadError> {
    let mut conns: Vec<Conn> = slots.into_iter().map(|s| s.0).collect();
    let mut poll = Poll::new().map_err(LoadError::Poll)?;
    for (i, c) in conns.iter_mut().enumerate() {
        poll.registry()
            .register(
                &mut c.stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(LoadError::Poll)?;
    }
    let t0 = Instant::now();
    let measure_from = t0 + plan.warmup;
    let stop_at = measure_from + plan.duration;
    let hard_end = stop_at + GRACE;
    let mut tally = Tally {
        hist: new_histogram()?,
        requests: 0,
        errors: 0,
        io_errors: 0,
        sent: 0,
        outstanding: 0,
        measure_from,
        stop_at,
    };
    let budget = plan.max_requests;

    for c in conns.iter_mut() {
        c.enqueue(plan.pipeline, wire, Instant::now(), &mut tally, budget);
        if c.flush().is_err() {
            lose(c, &mut tally, &poll);
        }
    }

    let mut events = Events::with_capacity(1024);
    loop {
        let now = Instant::now();
        // Done: time is up, or the request budget is spent and answered (the
        // run then ends early instead of idling until `stop_at`).
        let spent = tally.sent >= budget && tally.outstanding == 0;
        if now >= hard_end || (now >= stop_at && tally.outstanding == 0) || spent {
            break;
        }
        if conns.iter().all(|c| !c.alive) {
            break;
        }
        let until = if now < stop_at { stop_at } else { hard_end };
        let timeout = until
            .saturating_duration_since(now)
            .min(Duration::from_millis(100));
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(LoadError::Poll(e));
        }
        for event in events.iter() {
            let Some(c) = conns.get_mut(event.token().0) else {
                continue;
            };
            if !c.alive {
                continue;
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                match c.read_replies(&mut tally) {
                    Ok(done) => {
                        let now = Instant::now();
                        if now < stop_at && done > 0 {
                            c.enqueue(done, wire, now, &mut tally, budget);
                        }
                    }
                    Err(()) => {
                        lose(c, &mut tally, &poll);
                        continue;
                    }
                }
            }
            if c.wpos < c.wbuf.len() && c.flush().is_err() {
                lose(c, &mut tally, &poll);
            }
        }
    }
    let measured = Instant::now()
        .min(stop_at)
        .saturating_duration_since(measure_from);
    Ok(Outcome {
        hist: tally.hist,
        requests: tally.requests,
        errors: tally.errors,
        io_errors: tally.io_errors,
        measured,
    })
}

/// Marks a connection lost: its outstanding requests will never be answered.
fn lose(c: &mut Conn, tally: &mut Tally, poll: &Poll) {
    c.alive = false;
    tally.io_errors += 1;
    tally.outstanding = tally.outstanding.saturating_sub(c.sent_at.len() as u64);
    c.sent_at.clear();
    let _ = poll.registry().deregister(&mut c.stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_detection() {
        assert!(!is_error_response(
            br#"{"cmd":35,"response_data":[{"file_name":"m.onnx","result":2,"error_code":0}]}"#
        ));
        assert!(!is_error_response(br#"{"error_code": 0}"#));
        assert!(is_error_response(br#"{"error_code":2}"#));
        assert!(is_error_response(br#"{"error_code":05}"#));
        assert!(is_error_response(br#"{"error_code":null}"#));
        assert!(is_error_response(br#"{"result":2}"#));
        // Only the first one counts.
        assert!(!is_error_response(
            br#"[{"error_code":0},{"error_code":2}]"#
        ));
    }

    #[test]
    fn redis_replies() {
        let mut r = Replies::Redis;
        assert_eq!(r.next(b"+PONG\r\n+PO"), Ok(Some((7, false))));
        assert_eq!(r.next(b"+PO"), Ok(None));
        assert_eq!(r.next(b"-ERR x\r\n"), Ok(Some((8, true))));
    }

    #[test]
    fn pear_replies_in_every_framing() {
        use pear_server::protocol::{encode_frame, Framing};
        for framing in [
            Framing::JsonStream,
            Framing::BinaryLength,
            Framing::DecimalHeader,
        ] {
            let mut wire = Vec::new();
            encode_frame(framing, br#"{"error_code":0}"#, &mut wire);
            encode_frame(framing, br#"{"error_code":3}"#, &mut wire);
            let mut r = Replies::Pear(Framer::new(FramingMode::Auto, MAX_RESPONSE));
            let (used, err) = r.next(&wire).unwrap().unwrap();
            assert!(!err);
            let (rest, err) = r.next(&wire[used..]).unwrap().unwrap();
            assert!(err);
            // JSON: a reply's newline is consumed as the gap before the next reply.
            let tail = &wire[used + rest..];
            assert!(tail.iter().all(|b| *b == b'\n'), "{framing:?}");
            assert_eq!(r.next(tail), Ok(None));
        }
    }
}
