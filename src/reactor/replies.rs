//! The replies one connection is owed, in request order, and the framed bytes
//! waiting to be written.
//!
//! Owns: reply ordering. Every request gets a sequence number; a reply answered
//! at once goes straight to the output when nothing is owed before it, else it
//! waits, framed, behind the replies still waiting for workers. Never: touches a
//! socket ([`ReplyQueue::write_to`] takes any `io::Write`), so the ordering is
//! tested here with plain buffers.

use std::collections::VecDeque;
use std::io::{self, Write};

use serde_json::Value;

use crate::completion::Part;
use crate::protocol::{encode_frame_with, encode_response, Framing, Item};

/// Buffers larger than this are released when they empty, so idle
/// connections cost little memory.
pub(crate) const KEEP_CAPACITY: usize = 4096;

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

/// What [`ReplyQueue::fill`] did with a part.
#[derive(Debug, PartialEq)]
pub(crate) enum Filled {
    /// The reply still waits for other parts (or the part matched no reply).
    NotYet,
    /// The reply is complete, with these `items`; `promoted` is true when the
    /// output grew (this reply, and any ready ones behind it, were next in line).
    Ready { items: Vec<Item>, promoted: bool },
}

#[derive(Default)]
pub(crate) struct ReplyQueue {
    replies: VecDeque<Reply>,
    /// Sequence number of `replies.front()`.
    first_seq: u64,
    /// Framed replies not yet written; `output[written..]` is pending.
    output: Vec<u8>,
    written: usize,
    /// Capacity of the framed replies waiting in `replies` behind a waiting one.
    ready_bytes: usize,
}

impl ReplyQueue {
    /// Requests accepted but not yet fully answered into the output buffer.
    pub(crate) fn in_flight(&self) -> usize {
        self.replies.len()
    }

    pub(crate) fn pending_output(&self) -> usize {
        self.output.len() - self.written
    }

    /// Bytes of memory this queue holds for output: the output buffer's
    /// capacity and the framed replies waiting behind an unanswered one. What
    /// the reactor counts against `server.max_buffered_bytes`.
    pub(crate) fn buffered(&self) -> usize {
        self.output.capacity() + self.ready_bytes
    }

    /// Nothing owed and nothing left to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.replies.is_empty() && self.pending_output() == 0
    }

    /// Queues a reply that is ready now. When nothing is owed before it (the
    /// common case) it is encoded straight into the output buffer: no extra
    /// allocation or copy on the hot path.
    pub(crate) fn push_ready(&mut self, framing: Framing, encode: impl FnOnce(&mut Vec<u8>)) {
        if self.replies.is_empty() {
            self.reset_if_written();
            encode_frame_with(framing, &mut self.output, encode);
            self.first_seq += 1;
        } else {
            let mut framed = Vec::with_capacity(128);
            encode_frame_with(framing, &mut framed, encode);
            self.ready_bytes += framed.capacity();
            self.replies.push_back(Reply::Ready(framed));
        }
    }

    /// Reserves the place of a reply that will come in `parts` parts; returns
    /// its sequence number.
    pub(crate) fn reserve(&mut self, cmd: i64, id: Option<Value>, parts: usize) -> u64 {
        let seq = self.first_seq + self.replies.len() as u64;
        self.replies.push_back(Reply::Waiting {
            cmd,
            id,
            items: (0..parts).map(|_| None).collect(),
            missing: parts,
        });
        seq
    }

    /// Stores one part of reply `seq`. A part for a reply that is not waiting,
    /// or for an index out of range, is ignored; a second part for the same
    /// index replaces the first.
    pub(crate) fn fill(&mut self, framing: Framing, seq: u64, part: Part) -> Filled {
        let Some(pos) = seq.checked_sub(self.first_seq) else {
            return Filled::NotYet;
        };
        let Some(reply) = self.replies.get_mut(pos as usize) else {
            return Filled::NotYet;
        };
        let Reply::Waiting {
            cmd,
            id,
            items,
            missing,
        } = reply
        else {
            return Filled::NotYet;
        };
        match part {
            Part::File { index, item } => {
                if let Some(slot) = items.get_mut(index) {
                    if slot.is_none() {
                        *missing -= 1;
                    }
                    *slot = Some(item);
                }
            }
            Part::Whole(whole) => {
                *items = whole.into_iter().map(Some).collect();
                *missing = 0;
            }
        }
        if *missing > 0 {
            return Filled::NotYet;
        }
        let done: Vec<Item> = items.drain(..).flatten().collect();
        let mut framed = Vec::with_capacity(64 + 96 * done.len());
        encode_frame_with(framing, &mut framed, |out| {
            encode_response(*cmd, &done, id.as_ref(), out)
        });
        self.ready_bytes += framed.capacity();
        *reply = Reply::Ready(framed);
        Filled::Ready {
            items: done,
            promoted: self.promote(),
        }
    }

    /// Moves ready replies from the front of the queue into the output
    /// buffer. Returns true when anything moved.
    fn promote(&mut self) -> bool {
        let mut moved = false;
        while let Some(Reply::Ready(_)) = self.replies.front() {
            if let Some(Reply::Ready(bytes)) = self.replies.pop_front() {
                self.ready_bytes -= bytes.capacity();
                self.reset_if_written();
                self.output.extend_from_slice(&bytes);
                self.first_seq += 1;
                moved = true;
            }
        }
        moved
    }

    fn reset_if_written(&mut self) {
        if self.pending_output() == 0 {
            self.output.clear();
            self.written = 0;
        }
    }

    /// Writes pending output until done or WouldBlock. Returns Ok(true) when
    /// everything was written.
    pub(crate) fn write_to(&mut self, w: &mut impl Write) -> io::Result<bool> {
        while self.written < self.output.len() {
            match w.write(&self.output[self.written..]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    const LINES: Framing = Framing::JsonStream;

    fn now(q: &mut ReplyQueue, text: &str) {
        q.push_ready(LINES, |out| out.extend_from_slice(text.as_bytes()));
    }

    fn named(name: &str) -> Item {
        Item::ok(Some(name.to_owned()))
    }

    fn drain(q: &mut ReplyQueue) -> String {
        let mut out = Vec::new();
        assert!(q.write_to(&mut out).unwrap());
        String::from_utf8(out).unwrap()
    }

    fn file_names(text: &str) -> Vec<String> {
        text.lines()
            .flat_map(|line| {
                let v: Value = serde_json::from_str(line).unwrap();
                let items = v["response_data"].as_array().cloned().unwrap_or_default();
                items
                    .into_iter()
                    .map(|i| i["file_name"].as_str().unwrap_or("-").to_owned())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn ready_replies_wait_behind_a_waiting_one() {
        let mut q = ReplyQueue::default();
        now(&mut q, "{\"a\":1}");
        let seq = q.reserve(2, None, 1);
        now(&mut q, "{\"c\":3}");
        assert_eq!(q.in_flight(), 2);
        assert_eq!(drain(&mut q), "{\"a\":1}\n");
        let filled = q.fill(LINES, seq, Part::Whole(vec![named("b")]));
        assert_eq!(
            filled,
            Filled::Ready {
                items: vec![named("b")],
                promoted: true
            }
        );
        let text = drain(&mut q);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains("\"b\""), "{text}");
        assert_eq!(lines[1], "{\"c\":3}");
        assert!(q.is_empty());
    }

    #[test]
    fn later_replies_leave_in_request_order_whatever_order_they_finish() {
        let mut q = ReplyQueue::default();
        let first = q.reserve(2, None, 2);
        let second = q.reserve(4, None, 1);
        // The second finishes first: ready, but not promoted past the first.
        assert_eq!(
            q.fill(LINES, second, Part::Whole(vec![named("z")])),
            Filled::Ready {
                items: vec![named("z")],
                promoted: false
            }
        );
        assert_eq!(q.pending_output(), 0);
        // The first's parts arrive out of order; the reply keeps the index order.
        let x1 = Part::File {
            index: 1,
            item: named("x1"),
        };
        assert_eq!(q.fill(LINES, first, x1), Filled::NotYet);
        let x0 = Part::File {
            index: 0,
            item: named("x0"),
        };
        assert!(matches!(
            q.fill(LINES, first, x0),
            Filled::Ready { promoted: true, .. }
        ));
        assert_eq!(file_names(&drain(&mut q)), ["x0", "x1", "z"]);
        assert_eq!(q.in_flight(), 0);
    }

    #[test]
    fn stray_parts_are_ignored() {
        let mut q = ReplyQueue::default();
        let seq = q.reserve(2, None, 1);
        let bad_index = Part::File {
            index: 5,
            item: named("nope"),
        };
        assert_eq!(q.fill(LINES, seq, bad_index), Filled::NotYet);
        assert_eq!(q.fill(LINES, seq + 1, Part::Whole(vec![])), Filled::NotYet);
        let busy = Item::failed(Some("a".into()), ErrorCode::Busy, "busy");
        let part = Part::File {
            index: 0,
            item: busy,
        };
        assert!(matches!(q.fill(LINES, seq, part), Filled::Ready { .. }));
        // The reply has left the queue: a late duplicate matches nothing.
        assert_eq!(q.fill(LINES, seq, Part::Whole(vec![])), Filled::NotYet);
        assert_eq!(file_names(&drain(&mut q)), ["a"]);
    }

    #[test]
    fn buffered_counts_replies_waiting_their_turn_until_written() {
        let mut q = ReplyQueue::default();
        assert_eq!(q.buffered(), 0);
        let first = q.reserve(2, None, 1);
        now(&mut q, "{\"later\":1}");
        // Framed and waiting behind `first`: counted, though not in the output.
        assert_eq!(q.pending_output(), 0);
        let waiting = q.buffered();
        assert!(waiting >= "{\"later\":1}\n".len(), "{waiting}");
        q.fill(LINES, first, Part::Whole(vec![named("a")]));
        // Both moved into the output buffer: only its capacity is counted.
        assert_eq!(q.buffered(), q.output.capacity());
        let text = drain(&mut q);
        assert_eq!(file_names(&text), ["a"]);
        assert!(text.ends_with("{\"later\":1}\n"), "{text}");
        assert!(q.buffered() <= KEEP_CAPACITY);
    }

    #[test]
    fn a_short_writer_keeps_the_rest_pending() {
        struct Short(Vec<u8>);
        impl Write for Short {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.0.len() >= 4 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = buf.len().min(4 - self.0.len());
                self.0.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut q = ReplyQueue::default();
        now(&mut q, "{\"a\":1}");
        let mut w = Short(Vec::new());
        assert!(!q.write_to(&mut w).unwrap());
        assert_eq!(q.pending_output(), 4);
        now(&mut q, "{\"b\":2}");
        assert_eq!(drain(&mut q), ":1}\n{\"b\":2}\n");
    }
}
