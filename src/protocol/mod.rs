//! Wire protocol of SPEC §1: framing, hex literals, request/response messages, codes.
//!
//! Owns everything about bytes on the wire: detecting a connection's framing style and
//! cutting its byte stream into messages ([`framing`]), rewriting hex literals outside
//! strings ([`hexlit`]), turning a payload into a [`Request`] or a [`BadRequest`] and
//! encoding responses ([`message`]), the one-pass fast path for the common request
//! envelope (`envelope`) and the call that frames and parses with it ([`reader`]),
//! and the numeric codes ([`codes`]).
//!
//! It is pure: it must never do I/O (no sockets, no files, no clock), never block, never
//! keep per-connection buffers (the reactor owns them and passes slices in), never
//! decide what a command does, and never panic on anything a client sends.

pub mod codes;
mod envelope;
pub mod framing;
pub mod hexlit;
pub mod message;
pub mod reader;
mod scan;

pub use codes::{Command, ErrorCode};
pub use framing::{
    encode_frame, encode_frame_with, Frame, FrameError, Framer, Framing, FramingMode,
    UnknownFramingMode,
};
pub use hexlit::rewrite_hex_literals;
pub use message::{encode_error, encode_response, BadRequest, Item, ParseError, Request};
pub use reader::{parse_request, Framed};

#[cfg(test)]
mod proptests;
