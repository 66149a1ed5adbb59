//! The worker-side queue on the tiny fixture models: file outcomes, Busy, cancellation,
//! time limit, panic isolation and model swap. Each test uses its own 1-thread pool so
//! it can hold the only worker with the test hook and reason about the queue.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use image::{Rgb, RgbImage};
use pear_server::inference::{
    CancelSource, CancelToken, ClassifyJob, FileOutcome, InferenceQueue, Pipeline, PipelineOptions,
    QueueConfig, SubmitError,
};

const WAIT: Duration = Duration::from_secs(20);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name)
}

fn pipeline(classes: Option<&str>) -> Pipeline {
    let opts = PipelineOptions {
        sessions: 1,
        classes: (0..8)
            .map(|i| format!("{}{i}", classes.unwrap_or("c")))
            .collect(),
        ..PipelineOptions::default()
    };
    let classifier = if classes.is_some() {
        "tiny_classifier_nometa.onnx"
    } else {
        "tiny_classifier.onnx"
    };
    Pipeline::load(
        &fixture(classifier),
        Some(&fixture("tiny_detector.onnx")),
        &opts,
    )
    .expect("load")
}

fn images() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut img = RgbImage::from_pixel(120, 90, Rgb([10, 20, 200]));
    for y in 20..70 {
        for x in 30..80 {
            img.put_pixel(x, y, Rgb([230, 210, 30]));
        }
    }
    img.save(dir.path().join("good.png")).expect("save png");
    img.save(dir.path().join("good.jpg")).expect("save jpg");
    std::fs::write(
        dir.path().join("bad.jpg"),
        b"\xff\xd8 definitely not a jpeg",
    )
    .expect("write");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    dir
}

fn service(cfg: QueueConfig, p: Pipeline) -> InferenceQueue {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    InferenceQueue::with_pool(cfg, p, Arc::new(pool))
}

fn job(
    folder: &Path,
    name: &str,
    cancel: CancelToken,
    tx: &Sender<(String, FileOutcome)>,
) -> ClassifyJob {
    let (tx, n) = (tx.clone(), name.to_owned());
    ClassifyJob {
        folder: folder.canonicalize().expect("canonical"),
        name: name.to_owned(),
        cancel,
        done: Box::new(move |o| {
            let _ = tx.send((n, o));
        }),
    }
}

fn collect(rx: &Receiver<(String, FileOutcome)>, n: usize) -> Vec<(String, FileOutcome)> {
    let mut v: Vec<_> = (0..n)
        .map(|_| rx.recv_timeout(WAIT).expect("outcome in time"))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// A hook that parks the job named `name` until the returned sender is dropped or
/// sent to, and reports on `started` when it parked.
fn blocker(svc: &InferenceQueue, name: &'static str) -> (Sender<()>, Receiver<()>) {
    let (release_tx, release_rx) = channel::<()>();
    let (started_tx, started_rx) = channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let started_tx = Mutex::new(started_tx);
    svc.set_test_hook(Some(Arc::new(move |n: &str| {
        if n == name {
            let _ = started_tx.lock().map(|t| t.send(()));
            let _ = release_rx.lock().map(|r| r.recv_timeout(WAIT));
        }
    })));
    (release_tx, started_rx)
}

#[test]
fn good_missing_undecodable_and_escaping_files() {
    let dir = images();
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("secret.png"), b"x").expect("write");
    std::os::unix::fs::symlink(
        outside.path().join("secret.png"),
        dir.path().join("link.png"),
    )
    .expect("symlink");
    let svc = service(QueueConfig::default(), pipeline(None));
    assert!(
        svc.backend().starts_with("onnxruntime 1.31"),
        "{}",
        svc.backend()
    );
    let (tx, rx) = channel();
    let src = CancelSource::new();
    for n in [
        "good.png",
        "good.jpg",
        "missing.png",
        "bad.jpg",
        "link.png",
        "sub",
    ] {
        svc.submit(job(dir.path(), n, src.token(), &tx))
            .expect("queued");
    }
    let got = collect(&rx, 6);
    let by = |n: &str| {
        got.iter()
            .find(|(k, _)| k == n)
            .map(|(_, o)| o.clone())
            .expect("outcome")
    };
    for n in ["good.png", "good.jpg"] {
        match by(n) {
            FileOutcome::Verdict(v) => {
                assert!(v.class < 8 && v.bbox.is_some(), "{n}: {v:?}");
            }
            o => panic!("{n}: {o:?}"),
        }
    }
    assert!(matches!(by("missing.png"), FileOutcome::NotFound(_)));
    assert!(matches!(by("bad.jpg"), FileOutcome::Undecodable(_)));
    assert!(
        matches!(by("link.png"), FileOutcome::NotFound(_)),
        "symlink escaping the folder"
    );
    assert!(
        matches!(by("sub"), FileOutcome::NotFound(_)),
        "a directory is not an image"
    );
    assert_eq!(svc.queue_depth(), 0);
}

#[test]
fn full_queue_hands_the_job_back() {
    let dir = images();
    let cfg = QueueConfig {
        queue_capacity: 2,
        ..QueueConfig::default()
    };
    let svc = service(cfg, pipeline(None));
    let (release, started) = blocker(&svc, "good.jpg");
    let (tx, rx) = channel();
    let src = CancelSource::new();
    svc.submit(job(dir.path(), "good.jpg", src.token(), &tx))
        .expect("first");
    started.recv_timeout(WAIT).expect("worker parked");
    svc.submit(job(dir.path(), "good.png", src.token(), &tx))
        .expect("queued 1");
    svc.submit(job(dir.path(), "good.png", src.token(), &tx))
        .expect("queued 2");
    assert_eq!(svc.queue_depth(), 2);
    match svc.submit(job(dir.path(), "missing.png", src.token(), &tx)) {
        Err(SubmitError::Busy(j)) => assert_eq!(j.name, "missing.png"),
        Ok(()) => panic!("queue over capacity"),
    }
    drop(release);
    let got = collect(&rx, 3);
    assert!(
        got.iter()
            .all(|(_, o)| matches!(o, FileOutcome::Verdict(_))),
        "{got:?}"
    );
    // The handed-back job was never run.
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
}

#[test]
fn cancel_pending_cancels_queued_jobs_only() {
    let dir = images();
    let svc = service(QueueConfig::default(), pipeline(None));
    let (release, started) = blocker(&svc, "good.jpg");
    let (tx, rx) = channel();
    let conn_a = CancelSource::new();
    let conn_b = CancelSource::new();
    svc.submit(job(dir.path(), "good.jpg", conn_a.token(), &tx))
        .expect("running");
    started.recv_timeout(WAIT).expect("worker parked");
    svc.submit(job(dir.path(), "a1.png", conn_a.token(), &tx))
        .expect("q");
    svc.submit(job(dir.path(), "a2.png", conn_a.token(), &tx))
        .expect("q");
    svc.submit(job(dir.path(), "b1.png", conn_b.token(), &tx))
        .expect("q");
    conn_a.cancel_pending();
    // Issued after the cancel: runs (and is simply not found).
    svc.submit(job(dir.path(), "a3.png", conn_a.token(), &tx))
        .expect("q");
    drop(release);
    let got = collect(&rx, 5);
    let outcomes: Vec<(&str, &FileOutcome)> = got.iter().map(|(n, o)| (n.as_str(), o)).collect();
    assert_eq!(outcomes[0], ("a1.png", &FileOutcome::Cancelled));
    assert_eq!(outcomes[1], ("a2.png", &FileOutcome::Cancelled));
    assert!(
        matches!(outcomes[2], ("a3.png", FileOutcome::NotFound(_))),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[3], ("b1.png", FileOutcome::NotFound(_))),
        "{outcomes:?}"
    );
    // The job already running when 0x03 came finishes normally.
    assert!(
        matches!(outcomes[4], ("good.jpg", FileOutcome::Verdict(_))),
        "{outcomes:?}"
    );
}

#[test]
fn time_limit_on_start_and_on_finish() {
    let dir = images();
    // Starts late: everything queued behind a parked job for longer than the limit.
    let cfg = QueueConfig {
        time_limit: Duration::from_millis(300),
        ..QueueConfig::default()
    };
    let svc = service(cfg, pipeline(None));
    let (tx, rx) = channel();
    let src = CancelSource::new();
    let (started_tx, started_rx) = channel::<()>();
    let started_tx = Mutex::new(started_tx);
    svc.set_test_hook(Some(Arc::new(move |n: &str| {
        if n == "good.jpg" {
            let _ = started_tx.lock().map(|t| t.send(()));
            // Slow work (not synchronisation): twice the time limit.
            std::thread::sleep(Duration::from_millis(600));
        }
    })));
    svc.submit(job(dir.path(), "good.jpg", src.token(), &tx))
        .expect("slow");
    // good.jpg is on the worker before good.png is queued.
    started_rx
        .recv_timeout(WAIT)
        .expect("worker started good.jpg");
    svc.submit(job(dir.path(), "good.png", src.token(), &tx))
        .expect("queued");
    let got = collect(&rx, 2);
    // Finishes late (slow inside the job) and starts late (waited behind it).
    assert_eq!(got[0], ("good.jpg".to_owned(), FileOutcome::Timeout));
    assert_eq!(got[1], ("good.png".to_owned(), FileOutcome::Timeout));
    // Without the slow hook the same service answers in time.
    svc.set_test_hook(None);
    svc.submit(job(dir.path(), "good.png", src.token(), &tx))
        .expect("queued");
    assert!(matches!(collect(&rx, 1)[0].1, FileOutcome::Verdict(_)));
}

#[test]
fn panic_in_a_job_is_internal_and_the_service_lives_on() {
    let dir = images();
    let svc = service(QueueConfig::default(), pipeline(None));
    svc.set_test_hook(Some(Arc::new(|n: &str| {
        if n == "good.jpg" {
            panic!("injected failure");
        }
    })));
    let (tx, rx) = channel();
    let src = CancelSource::new();
    svc.submit(job(dir.path(), "good.jpg", src.token(), &tx))
        .expect("q");
    svc.submit(job(dir.path(), "good.png", src.token(), &tx))
        .expect("q");
    let got = collect(&rx, 2);
    assert!(
        matches!(&got[0].1, FileOutcome::Internal(m) if m.contains("injected failure")),
        "{got:?}"
    );
    assert!(matches!(got[1].1, FileOutcome::Verdict(_)), "{got:?}");
    // A panicking completion callback does not kill the worker either.
    let boom = ClassifyJob {
        folder: dir.path().canonicalize().expect("canonical"),
        name: "good.png".into(),
        cancel: src.token(),
        done: Box::new(|_| panic!("callback panics")),
    };
    svc.submit(boom).expect("q");
    svc.submit(job(dir.path(), "good.png", src.token(), &tx))
        .expect("q");
    assert!(matches!(collect(&rx, 1)[0].1, FileOutcome::Verdict(_)));
}

#[test]
fn swap_while_a_job_runs() {
    let dir = images();
    let svc = service(QueueConfig::default(), pipeline(None));
    let (release, started) = blocker(&svc, "good.jpg");
    let (tx, rx) = channel();
    let src = CancelSource::new();
    svc.submit(job(dir.path(), "good.jpg", src.token(), &tx))
        .expect("running");
    started.recv_timeout(WAIT).expect("worker parked");
    // New model: no label metadata, labels from config ("new0".."new7").
    svc.swap(pipeline(Some("new")));
    assert_eq!(svc.current().labels()[0], "new0");
    svc.submit(job(dir.path(), "good.png", src.token(), &tx))
        .expect("queued");
    drop(release);
    let got = collect(&rx, 2);
    let label = |i: usize| match &got[i].1 {
        FileOutcome::Verdict(v) => v.label.clone(),
        o => panic!("{o:?}"),
    };
    let old_labels = [
        "normal", "bruise", "rot", "scab", "crack", "insect", "deform", "spot",
    ];
    assert!(
        old_labels.contains(&label(0).as_str()),
        "running job finished on the old model: {}",
        label(0)
    );
    assert!(
        label(1).starts_with("new"),
        "later job uses the new model: {}",
        label(1)
    );
}

#[test]
fn batches_across_jobs() {
    let dir = images();
    let cfg = QueueConfig {
        max_batch: 4,
        ..QueueConfig::default()
    };
    let svc = service(cfg, pipeline(None));
    let (release, started) = blocker(&svc, "good.jpg");
    let (tx, rx) = channel();
    let src = CancelSource::new();
    let multi_before = batches_over_one();
    svc.submit(job(dir.path(), "good.jpg", src.token(), &tx))
        .expect("running");
    started.recv_timeout(WAIT).expect("worker parked");
    for _ in 0..10 {
        svc.submit(job(dir.path(), "good.png", src.token(), &tx))
            .expect("q");
    }
    drop(release);
    let got = collect(&rx, 11);
    let verdicts: Vec<_> = got
        .iter()
        .filter_map(|(n, o)| match o {
            FileOutcome::Verdict(v) if n == "good.png" => Some(v.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(verdicts.len(), 10);
    // Batched runs give the same answer as each other.
    assert!(verdicts
        .windows(2)
        .all(|w| w[0].class == w[1].class && w[0].bbox == w[1].bbox));
    assert_eq!(svc.queue_depth(), 0);
    // The 10 jobs queued behind the parked one ran in batches of more than one
    // image (other tests of this binary may add some too; without batching no
    // test here forms one).
    let formed = batches_over_one() - multi_before;
    assert!(formed >= 1, "no classifier batch > 1 formed ({formed})");
}

/// Classifier batches of more than one image so far in this process, from the
/// metrics the server exposes (`pear_inference_batch_size`).
fn batches_over_one() -> u64 {
    let text = pear_server::metrics::Snapshot::take(0, 0, true).encode();
    let value = |prefix: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} in the metrics:\n{text}")) as u64
    };
    value("pear_inference_batch_size_count ")
        - value("pear_inference_batch_size_bucket{le=\"1.0\"} ")
}
