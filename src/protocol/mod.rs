//! Wire protocol of SPEC §1: framing, hex literals, request/response messages, codes.
//!
//! Owns everything about bytes on the wire: detecting a connection's framing style and
//! cutting its byte stream into messages ([`framing`]), rewriting hex literals outside
//! strings ([`hexlit`]), turning a payload into a [`Request`] or a [`BadRequest`] and
//! encoding responses ([`message`]), and the numeric codes ([`codes`]).
//!
//! It is pure: it must never do I/O (no sockets, no files, no clock), never block, never
//! keep per-connection buffers (the reactor owns them and passes slices in), never
//! decide what a command does, and never panic on anything a client sends.

pub mod codes;
pub mod framing;
pub mod hexlit;
pub mod message;
mod scan;

pub use codes::{Command, ErrorCode};
pub use framing::{
    encode_frame, encode_frame_with, Frame, FrameError, Framer, Framing, FramingMode,
    UnknownFramingMode,
};
pub use hexlit::rewrite_hex_literals;
pub use message::{
    encode_error, encode_response, parse_request, BadRequest, Item, ParseError, Request,
};

#[cfg(test)]
mod proptests;
