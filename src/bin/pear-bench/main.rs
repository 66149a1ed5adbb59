//! `pear-bench`: a closed-loop load generator for pear-server (and redis-server, as the
//! baseline), built on `mio` like the server itself; `--raw-pipeline` runs the server's
//! classification work in process instead, the baseline for images/s (see `raw`).
//!
//! Owns the command line, the split of connections over threads, idle connections, and
//! the report: one JSON line on stdout (`mode, conns, pipeline, rps, p50_us, p90_us,
//! p99_us, p999_us, max_us, errors, requests` and a few more) and one human line on
//! stderr. Must never target anything but a loopback address, never run longer than
//! warm-up + duration (+ a short grace for replies owed), and never exceed its request
//! budget.
//!
//! ```text
//! pear-bench --addr 127.0.0.1:9090 --conns 64 --pipeline 16 --duration 5 --warmup 1
//! pear-bench --redis --addr 127.0.0.1:6379 --conns 64
//! pear-bench --idle-only --idle 19000 --duration 60     # prints a line once all are open
//! pear-bench --raw-pipeline --config config/server_config.yaml \
//!     --payload '{"cmd":1,"request_data":["normal_01.jpg"]}'   # no server: see `raw`
//! ```

mod idle;
mod load;
mod raw;
mod sys;

use std::io::Write;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Parser;
use pear_server::cli::FramingArg;
use pear_server::protocol::encode_frame;
use serde::Serialize;

use idle::{IdleError, IdleSet};
use load::{LoadError, Outcome, Plan, Wire};

/// Longest run (warm-up + duration) accepted, in seconds.
const MAX_SECONDS: f64 = 3600.0;
/// Most active connections accepted.
const MAX_CONNS: usize = 10_000;
/// Most idle connections one process may hold.
const MAX_IDLE: usize = 200_000;
/// Deepest pipeline accepted.
const MAX_PIPELINE: usize = 1024;
/// Most payload lines read from a file.
const MAX_PAYLOADS: usize = 100_000;
/// File descriptors kept spare for the poll instances, stdio and the like.
const SPARE_FDS: u64 = 64;

/// Closed-loop load generator for pear-server (loopback only).
#[derive(Debug, Parser)]
#[command(
    name = "pear-bench",
    version,
    after_help = "Examples:\n  \
        pear-bench --conns 64 --pipeline 1 --duration 5 --warmup 1\n  \
        pear-bench --payload '{\"cmd\":1,\"request_data\":[\"normal_01.jpg\"]}' --conns 8\n  \
        pear-bench --redis --addr 127.0.0.1:6379 --conns 64 --pipeline 16\n  \
        pear-bench --idle 19000 --conns 64          # active load with idle connections held\n  \
        pear-bench --idle-only --idle 19000 --duration 120\n  \
        pear-bench --photos tests/fixtures/real --conns 4      # every photo of a folder, round-robin\n  \
        pear-bench --raw-pipeline --config config/server_config.yaml \
        --payload '{\"cmd\":1,\"request_data\":[\"normal_01.jpg\"]}'\n\n\
        Output: one JSON line on stdout, one human-readable line on stderr."
)]
struct Args {
    /// Server address (must be a loopback address).
    #[arg(long, default_value = "127.0.0.1:9090")]
    addr: String,
    /// Active connections (closed loop).
    #[arg(long, default_value_t = 64)]
    conns: usize,
    /// Requests kept outstanding per connection.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// The request to send (hex literals allowed, as the server accepts them).
    #[arg(long, conflicts_with = "payload_file")]
    payload: Option<String>,
    /// A file of requests, one per line, used round-robin.
    #[arg(long)]
    payload_file: Option<PathBuf>,
    /// A folder of photos: one 0x01 request per image file in it (.jpg, .jpeg, .png, any
    /// case; sorted by name), used round-robin. The names are sent as the folder holds
    /// them, so the server's (or --raw-pipeline config's) img_path must be this folder.
    #[arg(long, conflicts_with_all = ["payload", "payload_file", "redis"])]
    photos: Option<PathBuf>,
    /// Request framing.
    #[arg(long, value_enum, default_value_t = FramingArg::Json)]
    framing: FramingArg,
    /// Measured seconds.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of load before measuring starts (not counted).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Load threads, each with its own mio poll.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Extra idle connections held open for the whole run (source addresses rotate over
    /// 127.0.0.2..=127.0.0.250).
    #[arg(long, default_value_t = 0)]
    idle: usize,
    /// Only open the idle connections, print a JSON line once they are open, and hold
    /// them for --duration seconds (or until killed).
    #[arg(long)]
    idle_only: bool,
    /// Benchmark redis-server instead: inline `PING\r\n`, expecting `+PONG\r\n`.
    #[arg(long)]
    redis: bool,
    /// No server: run the raw pipeline in process (the server's models, image folder and
    /// inference.workers from --config; read + decode + classify each file of the 0x01
    /// payload, one image at a time per worker). Reports images/s as mode "raw".
    #[arg(long, conflicts_with_all = ["redis", "idle_only", "idle"])]
    raw_pipeline: bool,
    /// With --raw-pipeline: the server config to take models, image folder and workers from.
    #[arg(long, default_value = "config/server_config.yaml")]
    config: PathBuf,
    /// Most requests sent in total (warm-up included).
    #[arg(long, default_value_t = 1_000_000_000)]
    max_requests: u64,
}

/// Why a run could not happen. Exit code 2.
#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot resolve {addr}: {source}")]
    Resolve {
        addr: String,
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    PayloadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("raising RLIMIT_NOFILE: {0}")]
    Rlimit(#[source] std::io::Error),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Idle(#[from] IdleError),
    #[error(transparent)]
    Raw(#[from] raw::RawError),
    #[error("a load thread panicked")]
    ThreadPanic,
}

/// The JSON report of an active run.
#[derive(Debug, Serialize)]
struct Report {
    mode: &'static str,
    conns: usize,
    pipeline: usize,
    rps: f64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    errors: u64,
    requests: u64,
    io_errors: u64,
    threads: usize,
    framing: &'static str,
    duration_s: f64,
    warmup_s: f64,
    idle: usize,
    idle_connected: usize,
    idle_closed: usize,
}

/// The JSON report of idle-only mode.
#[derive(Debug, Serialize)]
struct IdleReport {
    mode: &'static str,
    idle: usize,
    connected: usize,
    failed: usize,
    closed_by_peer: usize,
    open_ms: u128,
    first_error: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pear-bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn seconds(v: f64, what: &str) -> Result<Duration, BenchError> {
    if !(0.0..=MAX_SECONDS).contains(&v) {
        return Err(BenchError::Usage(format!(
            "--{what} must be between 0 and {MAX_SECONDS} seconds"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

/// Resolves `addr` and insists on an IPv4 loopback address.
fn loopback_target(addr: &str) -> Result<SocketAddr, BenchError> {
    let addrs = addr
        .to_socket_addrs()
        .map_err(|source| BenchError::Resolve {
            addr: addr.to_owned(),
            source,
        })?;
    let mut any = false;
    for a in addrs {
        any = true;
        if let IpAddr::V4(v4) = a.ip() {
            if v4.is_loopback() {
                return Ok(a);
            }
        }
    }
    Err(BenchError::Usage(if any {
        format!("{addr} is not an IPv4 loopback address; pear-bench only targets loopback")
    } else {
        format!("{addr} resolves to nothing")
    }))
}

fn payloads(args: &Args) -> Result<Vec<String>, BenchError> {
    if args.redis {
        return Ok(vec!["PING".to_owned()]);
    }
    if let Some(dir) = &args.photos {
        return photo_payloads(dir);
    }
    if let Some(path) = &args.payload_file {
        let text = std::fs::read_to_string(path).map_err(|source| BenchError::PayloadFile {
            path: path.clone(),
            source,
        })?;
        let lines: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .take(MAX_PAYLOADS)
            .map(str::to_owned)
            .collect();
        if lines.is_empty() {
            return Err(BenchError::Usage(format!(
                "{} holds no request",
                path.display()
            )));
        }
        return Ok(lines);
    }
    Ok(vec![args.payload.clone().unwrap_or_else(|| {
        r#"{"cmd":0x22,"request_data":null}"#.to_owned()
    })])
}

/// One `{"cmd":1,"request_data":[NAME]}` per image file of `dir`, sorted by name.
fn photo_payloads(dir: &std::path::Path) -> Result<Vec<String>, BenchError> {
    let entries = std::fs::read_dir(dir).map_err(|source| BenchError::PayloadFile {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            let lower = n.to_ascii_lowercase();
            [".jpg", ".jpeg", ".png"]
                .iter()
                .any(|ext| lower.ends_with(ext))
        })
        .collect();
    names.sort();
    names.truncate(MAX_PAYLOADS);
    if names.is_empty() {
        return Err(BenchError::Usage(format!(
            "{} holds no .jpg, .jpeg or .png file",
            dir.display()
        )));
    }
    Ok(names
        .iter()
        .map(|n| serde_json::json!({"cmd": 1, "request_data": [n]}).to_string())
        .collect())
}

fn wire(args: &Args) -> Result<Wire, BenchError> {
    let frames = payloads(args)?
        .into_iter()
        .map(|p| {
            if args.redis {
                format!("{p}\r\n").into_bytes()
            } else {
                let mut out = Vec::with_capacity(p.len() + 64);
                encode_frame(args.framing.framing(), p.as_bytes(), &mut out);
                out
            }
        })
        .collect();
    Ok(Wire {
        frames,
        redis: args.redis,
    })
}

fn check(args: &Args) -> Result<(), BenchError> {
    let bad = |m: String| Err(BenchError::Usage(m));
    if args.threads == 0 || args.threads > 64 {
        return bad("--threads must be 1..=64".into());
    }
    if !args.idle_only && (args.conns == 0 || args.conns > MAX_CONNS) {
        return bad(format!("--conns must be 1..={MAX_CONNS}"));
    }
    if args.pipeline == 0 || args.pipeline > MAX_PIPELINE {
        return bad(format!("--pipeline must be 1..={MAX_PIPELINE}"));
    }
    if args.idle > MAX_IDLE {
        return bad(format!("--idle must be at most {MAX_IDLE}"));
    }
    if args.idle_only && args.idle == 0 {
        return bad("--idle-only needs --idle N".into());
    }
    if seconds(args.duration, "duration")? + seconds(args.warmup, "warmup")?
        > Duration::from_secs_f64(MAX_SECONDS)
    {
        return bad(format!(
            "warm-up + duration must be at most {MAX_SECONDS} s"
        ));
    }
    Ok(())
}

fn run(args: &Args) -> Result<(), BenchError> {
    check(args)?;
    let duration = seconds(args.duration, "duration")?;
    let warmup = seconds(args.warmup, "warmup")?;
    if args.raw_pipeline {
        return run_raw(args, duration, warmup);
    }
    let target = loopback_target(&args.addr)?;

    let active = if args.idle_only { 0 } else { args.conns };
    let needed = (active + args.idle) as u64 + SPARE_FDS;
    if needed > 1024 {
        let limit = sys::raise_nofile().map_err(BenchError::Rlimit)?;
        if needed > limit {
            return Err(BenchError::Usage(format!(
                "{} connections need about {needed} file descriptors but this process may \
                 open only {limit}; split the idle connections over several \
                 `pear-bench --idle-only` processes",
                active + args.idle
            )));
        }
    }

    let mut idle = if args.idle > 0 {
        let deadline = Instant::now() + Duration::from_secs(120);
        Some(IdleSet::open(target, args.idle, deadline)?)
    } else {
        None
    };

    if args.idle_only {
        let Some(set) = idle.as_mut() else {
            return Ok(());
        };
        print_json(&idle_report("idle", set));
        let stop = AtomicBool::new(false);
        set.hold(Instant::now() + duration, &stop)?;
        print_json(&idle_report("idle-done", set));
        return Ok(());
    }

    let wire = Arc::new(wire(args)?);
    let stop = Arc::new(AtomicBool::new(false));
    let holder = idle.take().map(|mut set| {
        let stop = Arc::clone(&stop);
        let until = Instant::now() + warmup + duration + Duration::from_secs(5);
        std::thread::spawn(move || {
            let res = set.hold(until, &stop);
            (set, res)
        })
    });

    let threads = args.threads.min(args.conns);
    let barrier = Arc::new(Barrier::new(threads));
    let per_thread_budget = args.max_requests.div_ceil(threads as u64);
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let conns = args.conns / threads + usize::from(t < args.conns % threads);
        let plan = Plan {
            target,
            conns,
            pipeline: args.pipeline,
            warmup,
            duration,
            max_requests: per_thread_budget,
            first_payload: t * 7919,
        };
        let wire = Arc::clone(&wire);
        let barrier = Arc::clone(&barrier);
        handles.push(std::thread::spawn(move || {
            let slots = load::connect_all(&plan, &wire);
            barrier.wait();
            load::run(&plan, &wire, slots?)
        }));
    }
    let mut outcomes = Vec::with_capacity(threads);
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(o)) => outcomes.push(o),
            Ok(Err(e)) => {
                first_err.get_or_insert(BenchError::Load(e));
            }
            Err(_) => {
                first_err.get_or_insert(BenchError::ThreadPanic);
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (idle_connected, idle_closed) = match holder.map(|h| h.join()) {
        Some(Ok((set, res))) => {
            res?;
            (set.connected, set.closed_by_peer)
        }
        Some(Err(_)) => return Err(BenchError::ThreadPanic),
        None => (0, 0),
    };
    if let Some(e) = first_err {
        return Err(e);
    }
    let report = summarize(
        args,
        &outcomes,
        duration,
        warmup,
        idle_connected,
        idle_closed,
    )?;
    print_json(&report);
    eprintln!(
        "{} {} conns x{} ({}): {:.0} req/s, p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us, \
         {} requests, {} errors, {} lost connections{}",
        report.mode,
        report.conns,
        report.pipeline,
        report.framing,
        report.rps,
        report.p50_us,
        report.p99_us,
        report.p999_us,
        report.max_us,
        report.requests,
        report.errors,
        report.io_errors,
        if report.idle > 0 {
            format!(
                ", idle {} held ({} closed by server)",
                report.idle_connected, report.idle_closed
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

/// `--raw-pipeline`: the in-process baseline, reported like a network run (mode "raw",
/// conns = threads = the server's inference workers, one "request" = one image).
fn run_raw(args: &Args, duration: Duration, warmup: Duration) -> Result<(), BenchError> {
    let plan = raw::RawPlan {
        config: args.config.clone(),
        payloads: payloads(args)?,
        warmup,
        duration,
        max_requests: args.max_requests,
    };
    let run = raw::run(&plan)?;
    let mut report = summarize(args, &run.outcomes, duration, warmup, 0, 0)?;
    report.mode = "raw";
    report.conns = run.workers;
    report.pipeline = 1;
    report.threads = run.workers;
    report.framing = "none";
    print_json(&report);
    eprintln!(
        "raw pipeline, {} workers ({}{}): {:.1} images/s, p50 {:.1} ms, p99 {:.1} ms, \
         max {:.1} ms, {} images, {} errors",
        run.workers,
        run.model,
        if run.detector { " + detector" } else { "" },
        report.rps,
        report.p50_us / 1000.0,
        report.p99_us / 1000.0,
        report.max_us / 1000.0,
        report.requests,
        report.errors,
    );
    Ok(())
}

fn summarize(
    args: &Args,
    outcomes: &[Outcome],
    duration: Duration,
    warmup: Duration,
    idle_connected: usize,
    idle_closed: usize,
) -> Result<Report, BenchError> {
    let mut hist = load::new_histogram()?;
    let (mut requests, mut errors, mut io_errors) = (0, 0, 0);
    for o in outcomes {
        // Same bounds on both sides, so adding cannot fail; ignore it if it ever did.
        let _ = hist.add(&o.hist);
        requests += o.requests;
        errors += o.errors;
        io_errors += o.io_errors;
    }
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let round = |v: f64| (v * 10.0).round() / 10.0;
    // A run cut short by --max-requests measured less than --duration.
    let secs = outcomes
        .iter()
        .map(|o| o.measured)
        .max()
        .unwrap_or(duration)
        .as_secs_f64();
    Ok(Report {
        mode: if args.redis { "redis" } else { "pear" },
        conns: args.conns,
        pipeline: args.pipeline,
        rps: if secs > 0.0 {
            round(requests as f64 / secs)
        } else {
            0.0
        },
        p50_us: round(us(0.5)),
        p90_us: round(us(0.9)),
        p99_us: round(us(0.99)),
        p999_us: round(us(0.999)),
        max_us: round(hist.max() as f64 / 1000.0),
        errors: errors + io_errors,
        requests,
        io_errors,
        threads: args.threads.min(args.conns),
        framing: if args.redis {
            "redis-inline"
        } else {
            args.framing.name()
        },
        duration_s: secs,
        warmup_s: warmup.as_secs_f64(),
        idle: args.idle,
        idle_connected,
        idle_closed,
    })
}

fn idle_report(mode: &'static str, set: &IdleSet) -> IdleReport {
    IdleReport {
        mode,
        idle: set.wanted,
        connected: set.open_now(),
        failed: set.failed,
        closed_by_peer: set.closed_by_peer,
        open_ms: set.open_time.as_millis(),
        first_error: set.first_error.clone(),
    }
}

fn print_json<T: Serialize>(v: &T) {
    let line = serde_json::to_string(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) is not worth a panic.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn photo_folder_gives_one_request_per_image_sorted() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["b.JPG", "a.png", "c.jpeg", "notes.txt"] {
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        std::fs::create_dir(dir.path().join("d.jpg")).expect("mkdir");
        let got = photo_payloads(dir.path()).expect("payloads");
        assert_eq!(
            got,
            vec![
                r#"{"cmd":1,"request_data":["a.png"]}"#,
                r#"{"cmd":1,"request_data":["b.JPG"]}"#,
                r#"{"cmd":1,"request_data":["c.jpeg"]}"#,
            ]
        );
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(photo_payloads(empty.path()).is_err());
    }
}
