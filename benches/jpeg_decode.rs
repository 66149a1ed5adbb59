//! Criterion bench of JPEG decoding of one 2048×1536 line photo (`tests/fixtures/real`),
//! libjpeg-turbo (through `mozjpeg`, C without SIMD, as built for the server) against
//! jpeg-decoder, at full size and at 1/4 scale (DCT-domain reduced IDCT):
//!
//!     cargo bench --bench jpeg_decode
//!
//! Full size through libjpeg-turbo is what models exported from the Python original get
//! (`DecodePlan::LikeOpenCv`); 1/4 through libjpeg-turbo is what the line models get for
//! this photo (`DecodePlan::Scaled`, minimum short side 374; jpeg-decoder's 1/4 was
//! that path before, and stays here as the baseline).
//! Compare ratios within one run: the machine is shared.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use pear_server::inference::decode::DecodePlan;

const PHOTO: &str = "class6__619_70000583033920250924_133859-0.jpg";

fn photo() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/real")
        .join(PHOTO);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// jpeg-decoder at 1/`factor` (1 = full size), RGB bytes.
fn jpeg_decoder(bytes: &[u8], factor: u16) -> Vec<u8> {
    let mut dec = jpeg_decoder::Decoder::new(bytes);
    if factor > 1 {
        dec.scale(2048 / factor, 1536 / factor).expect("scale");
    }
    dec.decode().expect("jpeg-decoder")
}

/// libjpeg-turbo at `eighths`/8 (8 = full size), islow IDCT, fancy upsampling, RGB.
fn libjpeg(bytes: &[u8], eighths: u8) -> Vec<u8> {
    let mut d = mozjpeg::Decompress::new_mem(bytes).expect("header");
    d.scale(eighths);
    d.dct_method(mozjpeg::DctMethod::IntegerSlow);
    let mut started = d.rgb().expect("start");
    let pixels: Vec<u8> = started.read_scanlines().expect("pixels");
    started.finish().expect("finish");
    pixels
}

fn decode(c: &mut Criterion) {
    let bytes = photo();
    // Same sizes from both decoders, before timing anything.
    assert_eq!(libjpeg(&bytes, 8).len(), jpeg_decoder(&bytes, 1).len());
    assert_eq!(libjpeg(&bytes, 2).len(), jpeg_decoder(&bytes, 4).len());
    assert_eq!(libjpeg(&bytes, 2).len(), 512 * 384 * 3);

    let mut g = c.benchmark_group("decode 2048x1536");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    g.bench_function("full/libjpeg-turbo (LikeOpenCv path)", |b| {
        b.iter(|| {
            DecodePlan::LikeOpenCv
                .decode(black_box(&bytes))
                .expect("decode")
        })
    });
    g.bench_function("full/jpeg-decoder", |b| {
        b.iter(|| jpeg_decoder(black_box(&bytes), 1))
    });
    g.bench_function("quarter/libjpeg-turbo (Scaled path)", |b| {
        b.iter(|| {
            DecodePlan::Scaled {
                min_short_side: 374,
            }
            .decode(black_box(&bytes))
            .expect("decode")
        })
    });
    g.bench_function("quarter/jpeg-decoder (the Scaled path before)", |b| {
        b.iter(|| jpeg_decoder(black_box(&bytes), 4))
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
