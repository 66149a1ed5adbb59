//! The framer under arbitrary bytes and arbitrary TCP splits, in all three styles.
//!
//! Input layout: byte 0 picks the mode (auto/json/length) and the size limit;
//! byte 1 is n, then n bytes of chunk sizes; the rest is the stream.
//! Fed once whole and once in chunks (keeping unconsumed bytes and dropping
//! skipped whitespace as the reactor does), it must:
//! - never panic, never hand out a range outside the buffer, never a payload
//!   over the limit, and consume at least the payload;
//! - frame the same messages either way (framing does not depend on how TCP
//!   split the bytes), and fail the same way unless the failure is a run of
//!   whitespace over the limit (which discarding whitespace legitimately avoids);
//! - once failed, keep failing with the same error.
//!
//! Also: any payload framed with the length styles comes back unchanged, and
//! reading requests with `Framer::next_request` (framing and the envelope fast
//! path fused) gives the same frames, requests and error as `next_frame`
//! followed by the general parse, whole and split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pear_server_fuzz::protocol::framing::{encode_frame, Framer, Framing, FramingMode};
use pear_server_fuzz::protocol::message::parse_general;
use pear_server_fuzz::protocol::{BadRequest, FrameError, Framed, Request};

fn setup(b: u8) -> (FramingMode, usize) {
    let mode = match b % 3 {
        0 => FramingMode::Auto,
        1 => FramingMode::Json,
        _ => FramingMode::Length,
    };
    let limit = match (b / 3) % 4 {
        0 => 1,
        1 => 17,
        2 => 300,
        _ => 1 << 20,
    };
    (mode, limit)
}

type Outcome = (Vec<Vec<u8>>, Option<FrameError>);

fn feed(mode: FramingMode, limit: usize, input: &[u8], sizes: &[u8], discard: bool) -> Outcome {
    let mut framer = Framer::new(mode, limit);
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut k = 0;
    while at < input.len() {
        let n = if sizes.is_empty() {
            input.len()
        } else {
            (sizes[k % sizes.len()] as usize).max(1)
        };
        k += 1;
        let end = (at + n).min(input.len());
        buf.extend_from_slice(&input[at..end]);
        at = end;
        loop {
            match framer.next_frame(&buf) {
                Ok(Some(frame)) => {
                    assert!(frame.payload.start <= frame.payload.end);
                    assert!(frame.payload.end <= frame.consumed, "{frame:?}");
                    assert!(frame.consumed <= buf.len(), "{frame:?} of {}", buf.len());
                    assert!(frame.payload.len() <= limit, "payload over the limit");
                    assert!(frame.consumed > 0);
                    out.push(buf[frame.payload.clone()].to_vec());
                    buf.drain(..frame.consumed);
                }
                Ok(None) => break,
                Err(e) => {
                    // Sticky: the same error again, whatever the buffer.
                    assert_eq!(framer.next_frame(&buf), Err(e.clone()));
                    assert_eq!(framer.next_frame(&[]), Err(e.clone()));
                    return (out, Some(e));
                }
            }
        }
        if discard {
            let skipped = framer.discard_whitespace();
            assert!(skipped <= buf.len());
            assert!(buf[..skipped].iter().all(|b| b" \t\r\n".contains(b)));
            buf.drain(..skipped);
        }
    }
    (out, None)
}

type Read = (Vec<(Vec<u8>, usize, Result<Request, BadRequest>)>, Option<FrameError>);

/// Reads requests like the reactor, with `next_request` (`fused`) or with
/// `next_frame` then `parse_general`.
fn read(mode: FramingMode, limit: usize, input: &[u8], sizes: &[u8], fused: bool) -> Read {
    const DEPTH: usize = 4;
    let mut framer = Framer::new(mode, limit);
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut k = 0;
    while at < input.len() {
        let n = if sizes.is_empty() {
            input.len()
        } else {
            (sizes[k % sizes.len()] as usize).max(1)
        };
        k += 1;
        let end = (at + n).min(input.len());
        buf.extend_from_slice(&input[at..end]);
        at = end;
        loop {
            let next = if fused {
                framer.next_request(&buf, DEPTH)
            } else {
                framer.next_frame(&buf).map(|f| {
                    f.map(|frame| Framed {
                        request: parse_general(&buf[frame.payload.clone()], DEPTH),
                        frame,
                    })
                })
            };
            match next {
                Ok(Some(Framed { frame, request })) => {
                    out.push((buf[frame.payload.clone()].to_vec(), frame.consumed, request));
                    buf.drain(..frame.consumed);
                }
                Ok(None) => {
                    let skipped = framer.discard_whitespace();
                    buf.drain(..skipped);
                    break;
                }
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (mode, limit) = setup(data[0]);
    let n = (data[1] as usize).min(data.len() - 2);
    let sizes = &data[2..2 + n];
    let stream = &data[2 + n..];

    let (whole, whole_err) = feed(mode, limit, stream, &[], false);
    let (split, split_err) = feed(mode, limit, stream, sizes, true);
    let whitespace_limit = |e: &Option<FrameError>| matches!(e, Some(FrameError::TooLarge { .. }));
    if whitespace_limit(&whole_err) || whitespace_limit(&split_err) {
        let (short, long) = if whole.len() <= split.len() {
            (&whole, &split)
        } else {
            (&split, &whole)
        };
        assert_eq!(
            &long[..short.len()],
            &short[..],
            "frames differ before a size error"
        );
    } else {
        assert_eq!(whole, split, "frames depend on the TCP split");
        assert_eq!(whole_err, split_err, "errors depend on the TCP split");
    }

    for split in [&[][..], sizes] {
        assert_eq!(
            read(mode, limit, stream, split, true),
            read(mode, limit, stream, split, false),
            "fused reading differs from framing then parsing"
        );
    }

    // Length-style round trip of the stream bytes as one payload.
    if !stream.is_empty() && stream.len() <= limit && mode != FramingMode::Json {
        for framing in [Framing::BinaryLength, Framing::DecimalHeader] {
            let mut framed = Vec::new();
            encode_frame(framing, stream, &mut framed);
            let (got, err) = feed(FramingMode::Length, limit, &framed, sizes, true);
            assert_eq!(err, None, "{framing:?}");
            assert_eq!(got, vec![stream.to_vec()], "{framing:?}");
        }
    }
});
