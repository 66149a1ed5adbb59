//! Reading requests: framing and parsing behind one call, with the envelope fast path
//! in front of the general path.
//!
//! Owns the choice between the two paths and nothing else: [`Framer::next_request`]
//! lets the envelope reader (`envelope.rs`) frame and parse a JSON-stream message
//! in one pass over the caller's buffer, and falls back to [`Framer::next_frame`] plus
//! [`parse_request`] for anything else; [`parse_request`] tries the envelope on a framed
//! payload before the general parse. It must never give an answer the general path
//! ([`super::message::parse_general`] after [`Framer::next_frame`]) would not give for
//! the same bytes, never keep bytes, and never do I/O.

use super::envelope::{parse_envelope, read_envelope};
use super::framing::{Frame, FrameError, Framer};
use super::message::{parse_general, BadRequest, Request};

/// One message cut from the stream and what it asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Framed {
    /// Where the message lies in the buffer, and how many bytes to drop.
    pub frame: Frame,
    /// The parsed request, or why it is not one (answered with code 1; the stream
    /// stays usable).
    pub request: Result<Request, BadRequest>,
}

/// Parses one framed payload: the envelope fast path when the payload has its shape,
/// else the general path ([`parse_general`]), which gives every error.
pub fn parse_request(payload: &[u8], max_depth: usize) -> Result<Request, BadRequest> {
    match parse_envelope(payload, max_depth) {
        Some(request) => Ok(request),
        None => parse_general(payload, max_depth),
    }
}

impl Framer {
    /// Like [`Framer::next_frame`], and parses the message found: the same frames, the
    /// same errors, and for each frame what [`parse_request`] gives for its payload.
    /// A JSON-stream envelope whose bytes are all in `buf` is framed and parsed in one
    /// pass; anything else goes through the framer's scan and then `parse_request`.
    pub fn next_request(
        &mut self,
        buf: &[u8],
        max_depth: usize,
    ) -> Result<Option<Framed>, FrameError> {
        if let Some(window) = self.json_message_at(buf) {
            let start = window.start;
            let fast = buf
                .get(window)
                .and_then(|bytes| read_envelope(bytes, max_depth));
            if let Some((len, request)) = fast {
                self.message_read();
                let end = start + len;
                let frame = Frame {
                    payload: start..end,
                    consumed: end,
                };
                return Ok(Some(Framed {
                    frame,
                    request: Ok(request),
                }));
            }
        }
        let Some(frame) = self.next_frame(buf)? else {
            return Ok(None);
        };
        let payload = buf.get(frame.payload.clone()).unwrap_or_default();
        let request = parse_request(payload, max_depth);
        Ok(Some(Framed { frame, request }))
    }
}
