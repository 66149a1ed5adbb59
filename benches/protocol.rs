//! Criterion benches for the protocol path: framing + parsing (the fused fast path and
//! the general path side by side), hex scanning, encoding.
//!
//! Run: `cargo bench --bench protocol -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pear_server::protocol::message::parse_general;
use pear_server::protocol::{
    encode_frame, encode_frame_with, encode_response, parse_request, rewrite_hex_literals,
    ErrorCode, Framer, Framing, FramingMode, Item,
};
use serde_json::json;

const MAX_MESSAGE: usize = 1 << 20;
const MAX_DEPTH: usize = 32;
const TYPICAL: &str = r#"{"cmd": 0x01, "request_data": ["a.jpg", "b.png"]}"#;
/// The P1 request (`tools/bench.sh`, `tools/p1-callgrind.sh`).
const CURRENT_MODEL: &str = r#"{"cmd": 0x22, "request_data": null}"#;

/// A classify request of about 64 KiB: many image names.
fn big_request() -> String {
    let mut s = String::from(r#"{"cmd": 0x01, "request_data": ["#);
    let mut i = 0;
    while s.len() < 64 * 1024 - 40 {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!("\"line3/batch_{i:06}/pear_0x{i:x}.jpg\""));
        i += 1;
    }
    s.push_str("], \"id\": 0x2a}");
    s
}

const FRAMINGS: [Framing; 3] = [
    Framing::JsonStream,
    Framing::BinaryLength,
    Framing::DecimalHeader,
];

fn frame_and_parse(c: &mut Criterion) {
    let big = big_request();
    let mut group = c.benchmark_group("frame_parse");
    for (label, body) in [("typical", TYPICAL), ("64KiB", big.as_str())] {
        for framing in FRAMINGS {
            let mut wire = Vec::new();
            encode_frame(framing, body.as_bytes(), &mut wire);
            group.throughput(Throughput::Bytes(wire.len() as u64));
            group.bench_with_input(BenchmarkId::new(label, framing.name()), &wire, |b, wire| {
                b.iter(|| {
                    let mut framer = Framer::new(FramingMode::Auto, MAX_MESSAGE);
                    let frame = framer.next_frame(black_box(wire)).unwrap().unwrap();
                    let req = parse_request(&wire[frame.payload], MAX_DEPTH).unwrap();
                    black_box(req)
                })
            });
        }
    }
    group.finish();

    // The 64 KiB message arriving one byte at a time (must stay O(n)).
    let mut group = c.benchmark_group("frame_bytewise");
    for framing in FRAMINGS {
        let mut wire = Vec::new();
        encode_frame(framing, big.as_bytes(), &mut wire);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("64KiB", framing.name()),
            &wire,
            |b, wire| {
                b.iter(|| {
                    let mut framer = Framer::new(FramingMode::Auto, MAX_MESSAGE);
                    let mut got = None;
                    for n in 1..=wire.len() {
                        got = framer.next_frame(&wire[..n]).unwrap();
                        if got.is_some() {
                            break;
                        }
                    }
                    black_box(got.unwrap())
                })
            },
        );
    }
    group.finish();
}

/// One read of 16 pipelined requests, framed and parsed as the reactor does:
/// `Framer::next_request` (fused, envelope fast path) against `next_frame` followed by
/// the general parse, in the same run.
fn pipelined(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline16");
    for (label, body) in [("0x22", CURRENT_MODEL), ("typical", TYPICAL)] {
        let wire = format!("{body}\n").repeat(16).into_bytes();
        group.throughput(Throughput::Elements(16));
        group.bench_with_input(BenchmarkId::new("fused", label), &wire, |b, wire| {
            b.iter(|| {
                let mut framer = Framer::new(FramingMode::Auto, MAX_MESSAGE);
                let mut start = 0;
                let mut n = 0;
                while let Some(read) = framer.next_request(&wire[start..], MAX_DEPTH).unwrap() {
                    start += read.frame.consumed;
                    n += black_box(read.request).is_ok() as usize;
                }
                assert_eq!(n, 16);
            })
        });
        group.bench_with_input(BenchmarkId::new("general", label), &wire, |b, wire| {
            b.iter(|| {
                let mut framer = Framer::new(FramingMode::Auto, MAX_MESSAGE);
                let mut start = 0;
                let mut n = 0;
                while let Some(frame) = framer.next_frame(&wire[start..]).unwrap() {
                    let payload = &wire[start + frame.payload.start..start + frame.payload.end];
                    n += black_box(parse_general(payload, MAX_DEPTH)).is_ok() as usize;
                    start += frame.consumed;
                }
                assert_eq!(n, 16);
            })
        });
    }
    group.finish();
}

fn hex_scan(c: &mut Criterion) {
    let big = big_request();
    let no_hex = TYPICAL.replace("0x01", "1");
    let many: String = format!(
        "[{}]",
        (0..1000)
            .map(|i| format!("0x{i:x}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut group = c.benchmark_group("hex_rewrite");
    for (label, text) in [
        ("typical", TYPICAL),
        ("typical_no_hex", no_hex.as_str()),
        ("64KiB_strings", big.as_str()),
        ("1000_literals", many.as_str()),
    ] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(label, text, |b, text| {
            b.iter(|| black_box(rewrite_hex_literals(black_box(text))))
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let items = vec![
        Item::ok(Some("a.jpg".into()))
            .with_result(json!(0))
            .with("label", json!("normal"))
            .with("confidence", json!(0.9731))
            .with("bbox", json!([12, 40, 388, 402])),
        Item::ok(Some("b.png".into()))
            .with_result(json!(3))
            .with("label", json!("bruise"))
            .with("confidence", json!(0.8125))
            .with("bbox", json!([0, 7, 640, 480])),
    ];
    let id = json!(42);
    let mut group = c.benchmark_group("encode");
    let mut out = Vec::with_capacity(4096);
    group.bench_function("classify_response_2_items", |b| {
        b.iter(|| {
            out.clear();
            encode_frame_with(Framing::JsonStream, &mut out, |out| {
                encode_response(0x02, black_box(&items), Some(&id), out)
            });
            black_box(out.len())
        })
    });
    let current = [Item::ok(Some("pear_classifier.onnx".into()))];
    group.bench_function("current_model_response", |b| {
        b.iter(|| {
            out.clear();
            encode_frame_with(Framing::BinaryLength, &mut out, |out| {
                encode_response(0x23, black_box(&current), None, out)
            });
            black_box(out.len())
        })
    });
    group.bench_function("error_response", |b| {
        b.iter(|| {
            out.clear();
            encode_frame_with(Framing::DecimalHeader, &mut out, |out| {
                pear_server::protocol::encode_error(
                    ErrorCode::NotExistCommand,
                    black_box("unknown command 0x99"),
                    None,
                    out,
                )
            });
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, frame_and_parse, pipelined, hex_scan, encode);
criterion_main!(benches);
