//! The one home of the process's counters ([`METRICS`]), read by `GET /metrics`
//! and by the 0x40 status command, and their Prometheus text encoding through
//! the `prometheus-client` crate.
//!
//! The hot path only touches plain atomics ([`METRICS`] is a `static`: no
//! lock, no hash map, no allocation per request). A request is counted once,
//! when its reply becomes ready ([`Metrics::reply`]). At scrape time a
//! [`Snapshot`] is copied out of the atomics and encoded through a
//! `prometheus_client` collector into a fresh registry.
//!
//! Owns: the counters, the metric names, labels and bucket bounds. Never: does
//! I/O or blocks; encoding is pure CPU over a few hundred numbers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::protocol::{Command, ErrorCode, Item};

/// Commands plus one slot for requests that never became a command
/// (unparseable, unknown `cmd`).
const CMD_SLOTS: usize = Command::ALL.len() + 1;
const CODE_SLOTS: usize = ErrorCode::ALL.len();

/// Request latency buckets, seconds.
const LATENCY_BOUNDS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];
/// Classifier batch size buckets.
const BATCH_BOUNDS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A histogram of atomics: per-bucket counts (not cumulative), a count and a
/// sum in nanoseconds (or units for batch sizes).
pub struct AtomicHistogram<const N: usize> {
    bounds: [f64; N],
    /// `buckets[N]` is the +Inf bucket.
    buckets: [AtomicU64; 17],
    count: AtomicU64,
    sum_units: AtomicU64,
    /// Units per 1.0 of the observed quantity (1e9 for seconds as ns).
    scale: f64,
}

impl<const N: usize> AtomicHistogram<N> {
    const fn new(bounds: [f64; N], scale: f64) -> Self {
        assert!(N < 17);
        AtomicHistogram {
            bounds,
            buckets: [const { AtomicU64::new(0) }; 17],
            count: AtomicU64::new(0),
            sum_units: AtomicU64::new(0),
            scale,
        }
    }

    pub fn observe(&self, value: f64) {
        let i = self.bounds.iter().position(|&b| value <= b).unwrap_or(N);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_units
            .fetch_add((value * self.scale) as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(N + 1);
        for i in 0..=N {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let bound = if i < N { self.bounds[i] } else { f64::INFINITY };
            buckets.push((bound, cumulative));
        }
        HistogramSnapshot {
            // The count is the +Inf bucket, so the two always agree.
            count: cumulative,
            sum: self.sum_units.load(Ordering::Relaxed) as f64 / self.scale,
            buckets,
        }
    }
}

/// Everything counted, process-wide. See [`METRICS`].
pub struct Metrics {
    started: OnceLock<Instant>,
    /// Several reactors share these: add/sub, never store.
    open_connections: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    requests: [[AtomicU64; CODE_SLOTS]; CMD_SLOTS],
    items: [[AtomicU64; CODE_SLOTS]; CMD_SLOTS],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Buffer bytes held by all connections (every reactor adds and subtracts).
    buffered: AtomicU64,
    /// The highest `buffered` seen since start.
    buffered_peak: AtomicU64,
    /// `server.max_buffered_bytes`.
    buffered_budget: AtomicU64,
    budget_waits: AtomicU64,
    budget_refusals: AtomicU64,
    http_requests: AtomicU64,
    request_latency: AtomicHistogram<16>,
    inference_latency: AtomicHistogram<16>,
    batch_size: AtomicHistogram<9>,
}

/// The process's counters.
pub static METRICS: Metrics = Metrics {
    started: OnceLock::new(),
    open_connections: AtomicU64::new(0),
    accepted: AtomicU64::new(0),
    rejected: AtomicU64::new(0),
    requests: [const { [const { AtomicU64::new(0) }; CODE_SLOTS] }; CMD_SLOTS],
    items: [const { [const { AtomicU64::new(0) }; CODE_SLOTS] }; CMD_SLOTS],
    bytes_in: AtomicU64::new(0),
    bytes_out: AtomicU64::new(0),
    buffered: AtomicU64::new(0),
    buffered_peak: AtomicU64::new(0),
    buffered_budget: AtomicU64::new(0),
    budget_waits: AtomicU64::new(0),
    budget_refusals: AtomicU64::new(0),
    http_requests: AtomicU64::new(0),
    request_latency: AtomicHistogram::new(LATENCY_BOUNDS, 1e9),
    inference_latency: AtomicHistogram::new(LATENCY_BOUNDS, 1e9),
    batch_size: AtomicHistogram::new(BATCH_BOUNDS, 1.0),
};

/// `SLOT[code]`: the table row of the command with that request code (its
/// place in `Command::ALL`), worked out at compile time.
const SLOT: [u8; 256] = {
    let mut slots = [0u8; 256];
    let mut i = 0;
    while i < Command::ALL.len() {
        slots[Command::ALL[i] as usize] = i as u8;
        i += 1;
    }
    slots
};

fn cmd_slot(cmd: Option<Command>) -> usize {
    cmd.map_or(CMD_SLOTS - 1, |c| usize::from(SLOT[usize::from(c as u8)]))
}

fn cmd_label(slot: usize) -> &'static str {
    Command::ALL.get(slot).map_or("none", |c| c.name())
}

impl Metrics {
    /// Marks the server's start (the first call counts): uptime runs from here.
    pub fn mark_started(&self) {
        self.started.get_or_init(Instant::now);
    }

    pub fn uptime(&self) -> Duration {
        self.started.get().map_or(Duration::ZERO, Instant::elapsed)
    }

    /// A reply became ready to send: the one place a request is counted. `code`
    /// is the request-level outcome (an error response's code, or `NoError`
    /// for a normal response, whose `items` are counted one by one); `started`
    /// is when its frame was read. Inlined: it runs once per request.
    #[inline]
    pub fn reply(&self, cmd: Option<Command>, code: ErrorCode, items: &[Item], started: Instant) {
        let slot = cmd_slot(cmd);
        self.requests[slot][usize::from(code.as_u8())].fetch_add(1, Ordering::Relaxed);
        for item in items {
            self.items[slot][usize::from(item.error_code.as_u8())].fetch_add(1, Ordering::Relaxed);
        }
        self.request_latency
            .observe(started.elapsed().as_secs_f64());
    }

    /// Replies made ready so far, of every command and code.
    pub fn requests_served(&self) -> u64 {
        self.requests
            .iter()
            .flatten()
            .map(|v| v.load(Ordering::Relaxed))
            .sum()
    }

    pub fn connection_opened(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.open_connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.open_connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// A connection refused at the connection limit.
    pub fn connection_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn open_connections(&self) -> u64 {
        self.open_connections.load(Ordering::Relaxed)
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    pub fn bytes_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn bytes_out(&self, n: usize) {
        if n > 0 {
            self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// A reactor's buffers went from `before` to `after` bytes (called only
    /// when they changed): moves the process-wide figure and its peak.
    #[inline]
    pub fn buffered_changed(&self, before: usize, after: usize) {
        if after > before {
            let grew = (after - before) as u64;
            let now = self.buffered.fetch_add(grew, Ordering::Relaxed) + grew;
            self.buffered_peak.fetch_max(now, Ordering::Relaxed);
        } else {
            let shrank = (before - after) as u64;
            self.buffered.fetch_sub(shrank, Ordering::Relaxed);
        }
    }

    /// Buffer bytes held by all connections now.
    pub fn buffered(&self) -> u64 {
        self.buffered.load(Ordering::Relaxed)
    }

    pub fn set_buffered_budget(&self, bytes: usize) {
        self.buffered_budget.store(bytes as u64, Ordering::Relaxed);
    }

    /// A connection stopped reading to wait for the memory budget.
    pub fn budget_wait(&self) {
        self.budget_waits.fetch_add(1, Ordering::Relaxed);
    }

    /// A partial message was refused (code 5) for the memory budget.
    pub fn budget_refusal(&self) {
        self.budget_refusals.fetch_add(1, Ordering::Relaxed);
    }

    pub fn http_request(&self) {
        self.http_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// One classifier batch: its size and how long inference took.
    pub fn batch(&self, size: usize, d: Duration) {
        self.batch_size.observe(size as f64);
        self.inference_latency.observe(d.as_secs_f64());
    }
}

#[derive(Debug, Clone)]
struct HistogramSnapshot {
    count: u64,
    sum: f64,
    buckets: Vec<(f64, u64)>,
}

/// The numbers of one scrape, copied out of the atomics.
#[derive(Debug)]
pub struct Snapshot {
    queue_depth: u64,
    queue_capacity: u64,
    ready: bool,
    open_connections: u64,
    accepted: u64,
    rejected: u64,
    uptime_secs: f64,
    requests: Vec<(usize, usize, u64)>,
    items: Vec<(usize, usize, u64)>,
    bytes_in: u64,
    bytes_out: u64,
    buffered: u64,
    buffered_peak: u64,
    buffered_budget: u64,
    budget_waits: u64,
    budget_refusals: u64,
    http_requests: u64,
    request_latency: HistogramSnapshot,
    inference_latency: HistogramSnapshot,
    batch_size: HistogramSnapshot,
}

fn nonzero(table: &[[AtomicU64; CODE_SLOTS]; CMD_SLOTS]) -> Vec<(usize, usize, u64)> {
    let mut out = Vec::new();
    for (c, row) in table.iter().enumerate() {
        for (e, v) in row.iter().enumerate() {
            let v = v.load(Ordering::Relaxed);
            if v > 0 {
                out.push((c, e, v));
            }
        }
    }
    out
}

impl Snapshot {
    /// Copies the counters; the inference queue's level and whether this
    /// server is ready come from their owners.
    pub fn take(queue_depth: usize, queue_capacity: usize, ready: bool) -> Snapshot {
        let m = &METRICS;
        Snapshot {
            queue_depth: queue_depth as u64,
            queue_capacity: queue_capacity as u64,
            ready,
            open_connections: m.open_connections(),
            accepted: m.accepted(),
            rejected: m.rejected(),
            uptime_secs: m.uptime().as_secs_f64(),
            requests: nonzero(&m.requests),
            items: nonzero(&m.items),
            bytes_in: m.bytes_in.load(Ordering::Relaxed),
            bytes_out: m.bytes_out.load(Ordering::Relaxed),
            buffered: m.buffered.load(Ordering::Relaxed),
            buffered_peak: m.buffered_peak.load(Ordering::Relaxed),
            buffered_budget: m.buffered_budget.load(Ordering::Relaxed),
            budget_waits: m.budget_waits.load(Ordering::Relaxed),
            budget_refusals: m.budget_refusals.load(Ordering::Relaxed),
            http_requests: m.http_requests.load(Ordering::Relaxed),
            request_latency: m.request_latency.snapshot(),
            inference_latency: m.inference_latency.snapshot(),
            batch_size: m.batch_size.snapshot(),
        }
    }

    /// The Prometheus text exposition (OpenMetrics text, `# EOF` at the end).
    pub fn encode(self) -> String {
        let mut registry = Registry::with_prefix("pear");
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn gauge_f(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn histogram(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &HistogramSnapshot,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(h.sum, h.count, &h.buckets, None)
}

fn by_cmd_and_code(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(usize, usize, u64)],
) -> std::fmt::Result {
    let mut family = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for &(c, code, v) in rows {
        let labels = [
            ("cmd", cmd_label(c).to_owned()),
            ("error_code", code.to_string()),
        ];
        ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        gauge(
            &mut e,
            "open_connections",
            "Open client connections",
            self.open_connections as i64,
        )?;
        counter(
            &mut e,
            "accepted_connections",
            "Client connections accepted",
            self.accepted,
        )?;
        counter(
            &mut e,
            "rejected_connections",
            "Client connections refused at the connection limit",
            self.rejected,
        )?;
        by_cmd_and_code(
            &mut e,
            "requests",
            "Requests by command and request-level error code (0 = a normal response)",
            &self.requests,
        )?;
        by_cmd_and_code(
            &mut e,
            "response_items",
            "Items of normal responses by command and error code (one per classified file)",
            &self.items,
        )?;
        gauge(
            &mut e,
            "inference_queue_depth",
            "Files waiting for inference",
            self.queue_depth as i64,
        )?;
        gauge(
            &mut e,
            "inference_queue_capacity",
            "Files the inference queue holds before answering busy",
            self.queue_capacity as i64,
        )?;
        counter(
            &mut e,
            "received_bytes",
            "Bytes read from clients",
            self.bytes_in,
        )?;
        counter(
            &mut e,
            "sent_bytes",
            "Bytes written to clients",
            self.bytes_out,
        )?;
        gauge(
            &mut e,
            "buffered_bytes",
            "Input and output buffer bytes held by all client connections",
            self.buffered as i64,
        )?;
        gauge(
            &mut e,
            "buffered_bytes_peak",
            "Highest buffered_bytes since start",
            self.buffered_peak as i64,
        )?;
        gauge(
            &mut e,
            "buffered_bytes_budget",
            "server.max_buffered_bytes: past it reading pauses and partial messages may get code 5",
            self.buffered_budget as i64,
        )?;
        counter(
            &mut e,
            "budget_waits",
            "Times a connection stopped reading to wait for the memory budget",
            self.budget_waits,
        )?;
        counter(
            &mut e,
            "budget_refusals",
            "Partial messages answered code 5 because the memory budget had no room",
            self.budget_refusals,
        )?;
        counter(
            &mut e,
            "http_requests",
            "Requests to the metrics/health listener",
            self.http_requests,
        )?;
        histogram(
            &mut e,
            "request_latency_seconds",
            "From a request being read to its response being ready to send",
            &self.request_latency,
        )?;
        histogram(
            &mut e,
            "inference_latency_seconds",
            "Time of one classifier batch (detector + classifier)",
            &self.inference_latency,
        )?;
        histogram(
            &mut e,
            "inference_batch_size",
            "Images per classifier batch",
            &self.batch_size,
        )?;
        gauge(
            &mut e,
            "ready",
            "1 when the model is loaded and the server accepts connections",
            i64::from(self.ready),
        )?;
        gauge_f(
            &mut e,
            "uptime_seconds",
            "Seconds since the server started",
            self.uptime_secs,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = AtomicHistogram::new([1.0, 2.0], 1.0);
        h.observe(0.5);
        h.observe(1.5);
        h.observe(9.0);
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets, vec![(1.0, 1), (2.0, 2), (f64::INFINITY, 3)]);
    }

    #[test]
    fn encodes_prometheus_text() {
        let now = Instant::now();
        METRICS.reply(Some(Command::CurrentModel), ErrorCode::NoError, &[], now);
        METRICS.reply(None, ErrorCode::InvalidMessage, &[], now);
        let missing = Item::failed(None, ErrorCode::ResourceNotFound, "missing");
        METRICS.reply(Some(Command::Classify), ErrorCode::NoError, &[missing], now);
        assert!(METRICS.requests_served() >= 3);
        let text = Snapshot::take(0, 7, true).encode();
        assert!(text.contains("pear_open_connections "), "{text}");
        assert!(text.contains("pear_inference_queue_capacity 7"), "{text}");
        assert!(
            text.contains(r#"pear_requests_total{cmd="current_model",error_code="0"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#"pear_requests_total{cmd="none",error_code="1"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#"pear_response_items_total{cmd="classify",error_code="2"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#"pear_request_latency_seconds_bucket{le="0.0001"}"#),
            "{text}"
        );
        assert!(text.contains("pear_ready 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
