//! Criterion bench of the inference path: decode, preprocessing (ours vs `image`'s
//! resize), detector, classifier and the whole pipeline, at batch 1 and 8.
//!
//!     cargo bench --bench pipeline
//!
//! Uses the shipped models in `models/` and stops with a message when one is missing.
//! One ONNX Runtime session per model, intra-op threads 1 (as in the server), so the
//! numbers are per worker thread.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use image::imageops::FilterType;
use image::RgbImage;
use pear_server::inference::preprocess::{
    letterbox_into, rect_window, resize_normalize_window_into, ChwTarget, Letterbox, Normalize,
    Rect, IMAGENET_MEAN, IMAGENET_STD,
};
use pear_server::inference::queue::decode_image;
use pear_server::inference::{
    CancelSource, ClassifyJob, FileOutcome, InferenceQueue, Pipeline, PipelineOptions, QueueConfig,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped models. Missing ones stop the bench: figures from other models
/// must never pass for the shipped ones' (it used to fall back to the tiny
/// fixtures without a word).
fn models() -> (PathBuf, PathBuf) {
    let shipped = (
        root().join("models/pear_classifier.onnx"),
        root().join("models/pear_detector.onnx"),
    );
    for path in [&shipped.0, &shipped.1] {
        assert!(
            path.is_file(),
            "benches/pipeline: shipped model {} is missing; this bench measures the shipped \
             models only (restore models/ from git)",
            path.display()
        );
    }
    shipped
}

/// `samples/` (JPEG, as shipped) or the parity fixtures (PNG).
fn sample(name: &str) -> Vec<u8> {
    let dir = if name.ends_with(".png") {
        "tests/fixtures/parity"
    } else {
        "samples"
    };
    std::fs::read(root().join(dir).join(name)).expect("sample image")
}

/// The `image` crate way: resize to a new buffer (Triangle = bilinear), then normalise.
fn image_crate_letterbox(src: &RgbImage, size: u32, out: &mut [f32]) {
    let lb = Letterbox::new(src.width(), src.height(), size, size);
    let resized = image::imageops::resize(src, lb.new_w, lb.new_h, FilterType::Triangle);
    out.iter_mut().for_each(|v| *v = 114.0 / 255.0);
    let plane = (size * size) as usize;
    for (x, y, p) in resized.enumerate_pixels() {
        let i = ((y + lb.top) * size + x + lb.left) as usize;
        for c in 0..3 {
            out[c * plane + i] = f32::from(p[c]) / 255.0;
        }
    }
}

fn bench(c: &mut Criterion) {
    let jpg = sample("dark_spot_01.jpg");
    let png = sample("scab_01.png");
    let img = decode_image(&jpg).expect("decode").to_rgb8();

    let mut g = c.benchmark_group("decode");
    g.bench_function("jpeg_480x360", |b| {
        b.iter(|| decode_image(black_box(&jpg)).expect("decode"))
    });
    g.bench_function("png_480x360", |b| {
        b.iter(|| decode_image(black_box(&png)).expect("decode"))
    });
    g.finish();

    let (cls_path, det_path) = models();
    let opts = PipelineOptions {
        sessions: 1,
        ..PipelineOptions::default()
    };
    let pipeline = Pipeline::load(&cls_path, Some(&det_path), &opts).expect("load models");
    let det = pipeline.detector().expect("detector");
    let cls = pipeline.classifier();
    let (dsize, csize) = (det.model.input_w as usize, cls.model.input_w as usize);
    eprintln!(
        "models: {} ({dsize}px), {} ({csize}px)",
        det_path.display(),
        cls_path.display()
    );

    let mut g = c.benchmark_group("preprocess");
    let mut buf = vec![0f32; 3 * dsize * dsize];
    g.bench_function("letterbox_fused", |b| {
        b.iter(|| {
            letterbox_into(
                black_box(&img),
                &mut ChwTarget {
                    data: &mut buf,
                    width: dsize,
                    height: dsize,
                },
            )
        })
    });
    g.bench_function("letterbox_image_crate", |b| {
        b.iter(|| image_crate_letterbox(black_box(&img), dsize as u32, &mut buf))
    });
    let crop = Rect {
        x: 200,
        y: 100,
        w: 180,
        h: 220,
    };
    let norm = Normalize::mean_std(IMAGENET_MEAN, IMAGENET_STD);
    let mut cbuf = vec![0f32; 3 * csize * csize];
    g.bench_function("crop_resize_fused", |b| {
        b.iter(|| {
            let mut t = ChwTarget {
                data: &mut cbuf,
                width: csize,
                height: csize,
            };
            resize_normalize_window_into(
                black_box(&img),
                rect_window(crop),
                csize,
                csize,
                &norm,
                &mut t,
                0,
                0,
            )
        })
    });
    g.bench_function("crop_resize_image_crate", |b| {
        b.iter(|| {
            let view = image::imageops::crop_imm(black_box(&img), crop.x, crop.y, crop.w, crop.h)
                .to_image();
            let r =
                image::imageops::resize(&view, csize as u32, csize as u32, FilterType::Triangle);
            let plane = csize * csize;
            for (i, p) in r.pixels().enumerate() {
                for ch in 0..3 {
                    cbuf[ch * plane + i] = f32::from(p[ch]) * norm.scale[ch] + norm.bias[ch];
                }
            }
        })
    });
    g.finish();

    for batch in [1usize, 8] {
        let imgs: Vec<&RgbImage> = vec![&img; batch];
        let dyn_imgs: Vec<image::DynamicImage> =
            vec![image::DynamicImage::ImageRgb8(img.clone()); batch];
        let (dbuf, _) = det.preprocess(&imgs);
        let regions: Vec<(&RgbImage, Rect)> = vec![(&img, crop); batch];
        let cbuf = cls.preprocess(&regions);
        for (name, f) in [
            (
                "detector",
                Box::new(|| drop(det.run(&dbuf, batch, 0.5).expect("run"))) as Box<dyn Fn()>,
            ),
            (
                "classifier",
                Box::new(|| drop(cls.run(&cbuf, batch).expect("run"))),
            ),
            (
                "pipeline",
                Box::new(|| drop(pipeline.classify_batch(&dyn_imgs))),
            ),
        ] {
            let mut g = c.benchmark_group(name);
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_function(BenchmarkId::new("batch", batch), |b| b.iter(&f));
            g.finish();
        }
    }
}

/// Service throughput: `jobs` files through the queue on a `threads`-thread pool with
/// `max_batch`, from submit to the last callback (file read + decode included).
fn service_round(svc: &InferenceQueue, folder: &std::path::Path, jobs: usize) {
    let (tx, rx) = std::sync::mpsc::channel();
    let src = CancelSource::new();
    for i in 0..jobs {
        let tx = tx.clone();
        let name = if i % 2 == 0 {
            "dark_spot_01.jpg"
        } else {
            "normal_01.jpg"
        };
        let job = ClassifyJob {
            folder: folder.to_path_buf(),
            name: name.to_owned(),
            cancel: src.token(),
            done: Box::new(move |o| {
                let _ = tx.send(o);
            }),
        };
        if svc.submit(job).is_err() {
            panic!("queue full");
        }
    }
    for _ in 0..jobs {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(FileOutcome::Verdict(_)) => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
}

fn bench_service(c: &mut Criterion) {
    let (cls_path, det_path) = models();
    let folder = root().join("samples").canonicalize().expect("samples");
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let jobs = 32;
    let mut g = c.benchmark_group("service");
    g.throughput(Throughput::Elements(jobs as u64));
    for max_batch in [1usize, 8] {
        let opts = PipelineOptions {
            sessions: threads,
            ..PipelineOptions::default()
        };
        let pipeline = Pipeline::load(&cls_path, Some(&det_path), &opts).expect("load models");
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        let cfg = QueueConfig {
            max_batch,
            ..QueueConfig::default()
        };
        let svc = InferenceQueue::with_pool(cfg, pipeline, std::sync::Arc::new(pool));
        g.bench_function(
            BenchmarkId::new(format!("{threads}threads_max_batch"), max_batch),
            |b| b.iter(|| service_round(&svc, &folder, jobs)),
        );
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = bench, bench_service }
criterion_main!(benches);
