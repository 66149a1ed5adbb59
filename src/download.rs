//! Model download (0x20): fetch an `.onnx` over http(s) into the model folder, with limits.
//!
//! This module owns one thing: turning a client-supplied URL into at most one new,
//! complete, validated `.onnx` file in the model folder. It runs on a rayon worker
//! (it blocks on the network), never on the reactor.
//!
//! What it must never do:
//! - write, rename or delete anything outside the model folder. The only name it
//!   creates comes from [`target_name`] (one plain component, checked by
//!   [`crate::paths::new_file_in`]); the temp file is created with `O_EXCL` (so it
//!   never follows a planted symlink) and the final name is made with `link(2)`,
//!   which never replaces an existing file or symlink;
//! - overwrite an existing model ([`DownloadError::AlreadyExists`]);
//! - leave anything behind on failure: the temp file is removed on every error path
//!   (and on a panic inside `validate`, through a drop guard);
//! - connect where the host rules forbid. The rules are checked inside the
//!   resolver that `ureq` uses for every connection, redirect hops included, on the
//!   very addresses it then connects to, so there is no gap between "checked" and
//!   "connected" (no DNS-rebinding window);
//! - read more than [`DownloadLimits::max_bytes`] or take longer than
//!   [`DownloadLimits::timeout`];
//! - decompress anything (no `Accept-Encoding` is sent, so no decompression bomb);
//! - use a proxy from the environment.
//!
//! Redirects: at most [`MAX_REDIRECTS`] are followed; every hop goes through the
//! same host rules. The saved name always comes from the URL the client sent, not
//! from where it redirected to.
//!
//! Known limit: `ureq` 2 cannot tell a chunked body cut inside a chunk from its end.
//! Such a truncated file is still caught by `validate` (the ONNX test load), which is
//! why a download is renamed into place only after `validate` accepts it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::protocol::ErrorCode;

/// Redirect hops followed at most (a 4th redirect fails the download).
pub const MAX_REDIRECTS: u32 = 3;

/// Default for [`DownloadLimits::max_bytes`]: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Default for [`DownloadLimits::timeout`]: 60 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 8 * 1024;

/// Limits and host rules for one download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadLimits {
    /// Largest body accepted, in bytes (checked from `Content-Length` up front and
    /// while streaming).
    pub max_bytes: u64,
    /// The whole transfer: DNS, connect, redirects, headers and body. Also used as
    /// the connect and per-read timeouts.
    pub timeout: Duration,
    /// `model.download_allow_hosts`. When `Some`, only these hosts may be contacted
    /// (on every redirect hop), and they may be private addresses.
    pub allow_hosts: Option<Vec<String>>,
    /// When false, hosts not explicitly in `allow_hosts` are refused if any of their
    /// resolved addresses is loopback, private, link-local, unspecified or otherwise
    /// not globally routable (IPv4 and IPv6, IPv4-mapped included).
    pub allow_private: bool,
}

impl Default for DownloadLimits {
    fn default() -> Self {
        DownloadLimits {
            max_bytes: DEFAULT_MAX_BYTES,
            timeout: DEFAULT_TIMEOUT,
            allow_hosts: None,
            allow_private: false,
        }
    }
}

/// Why a download failed. Whatever the variant, nothing was left in the model folder.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("bad url: {0}")]
    BadUrl(String),
    #[error("not an .onnx file name: {0:?}")]
    NotOnnx(String),
    #[error("a model with this name already exists: {0:?}")]
    AlreadyExists(String),
    #[error("host refused: {0}")]
    HostRefused(String),
    #[error("http status {0}")]
    Http(u16),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("download larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("download timed out")]
    Timeout,
    #[error("download interrupted: {0}")]
    Interrupted(String),
    #[error("downloaded file is not a usable model: {0}")]
    Invalid(String),
    #[error("i/o error in the model folder: {0}")]
    Io(#[from] io::Error),
}

impl DownloadError {
    /// The wire error code (SPEC §1): the request itself was unacceptable →
    /// `InvalidMessage`; the transfer ran out of time → `Timeout`; anything else →
    /// `ResourceNotFound`.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            DownloadError::BadUrl(_)
            | DownloadError::NotOnnx(_)
            | DownloadError::AlreadyExists(_)
            | DownloadError::HostRefused(_) => ErrorCode::InvalidMessage,
            DownloadError::Timeout => ErrorCode::Timeout,
            DownloadError::Http(_)
            | DownloadError::Connect(_)
            | DownloadError::TooLarge { .. }
            | DownloadError::Interrupted(_)
            | DownloadError::Invalid(_)
            | DownloadError::Io(_) => ErrorCode::ResourceNotFound,
        }
    }
}

/// Parses `url` and checks it is http(s) with a host; the parsed form is what gets
/// requested.
fn parse_url(url: &str) -> Result<url::Url, DownloadError> {
    if url.len() > MAX_URL_LEN {
        return Err(DownloadError::BadUrl(format!(
            "longer than {MAX_URL_LEN} bytes"
        )));
    }
    let parsed = url::Url::parse(url).map_err(|e| DownloadError::BadUrl(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => {
            return Err(DownloadError::BadUrl(format!(
                "scheme {other:?} (only http and https)"
            )))
        }
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(DownloadError::BadUrl("no host".into()));
    }
    Ok(parsed)
}

/// Strict percent-decoding to UTF-8: a malformed escape or invalid UTF-8 is an error.
fn percent_decode(s: &str) -> Option<String> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The file name a download of `url` is saved under.
///
/// Only the URL's file name is used: its last path segment, percent-decoded, which
/// must end in `.onnx` (any case), have a non-empty stem, not be hidden (a leading
/// `.` is reserved for temp files), contain no control characters, and pass
/// [`crate::paths::new_file_in`] (so `..`, `/` and NUL are refused even when encoded).
/// Query and fragment are ignored. Only `http` and `https` URLs are accepted.
pub fn target_name(url: &str) -> Result<String, DownloadError> {
    let parsed = parse_url(url)?;
    let segment = parsed
        .path_segments()
        .and_then(|mut segments| segments.next_back())
        .unwrap_or("");
    if segment.is_empty() {
        return Err(DownloadError::BadUrl("the url names no file".into()));
    }
    let name = percent_decode(segment)
        .ok_or_else(|| DownloadError::BadUrl(format!("bad percent-encoding in {segment:?}")))?;
    let lower = name.to_ascii_lowercase();
    if !lower.ends_with(".onnx") || lower.len() == ".onnx".len() {
        return Err(DownloadError::NotOnnx(name));
    }
    if name.starts_with('.') {
        return Err(DownloadError::BadUrl(format!("hidden file name {name:?}")));
    }
    if name.chars().any(char::is_control) {
        return Err(DownloadError::BadUrl(format!(
            "control character in file name {name:?}"
        )));
    }
    crate::paths::new_file_in(Path::new("."), &name)
        .map_err(|e| DownloadError::BadUrl(e.to_string()))?;
    Ok(name)
}

/// True for addresses that must not be reached when `allow_private` is false: anything
/// not globally routable.
pub fn is_non_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_non_public_v4(v4),
        IpAddr::V6(v6) => is_non_public_v6(v6),
    }
}

fn is_non_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn is_non_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_non_public_v4(v4);
    }
    let seg = ip.segments();
    // IPv4-compatible (deprecated, ::a.b.c.d) and NAT64 (64:ff9b::/96) embed an IPv4
    // address in the low 32 bits; judge them by it.
    let embedded = Ipv4Addr::new(
        (seg[6] >> 8) as u8,
        seg[6] as u8,
        (seg[7] >> 8) as u8,
        seg[7] as u8,
    );
    if seg[..6] == [0; 6] && !ip.is_unspecified() && !ip.is_loopback() {
        return is_non_public_v4(embedded);
    }
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_non_public_v4(embedded);
    }
    // 6to4 (2002::/16) embeds an IPv4 address in bits 16..48.
    if seg[0] == 0x2002 {
        let v4 = Ipv4Addr::new(
            (seg[1] >> 8) as u8,
            seg[1] as u8,
            (seg[2] >> 8) as u8,
            seg[2] as u8,
        );
        return is_non_public_v4(v4);
    }
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (seg[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (seg[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
        || (seg[0] == 0x0100 && seg[1..4] == [0, 0, 0]) // discard-only 100::/64
}

/// Lower-cases and drops a trailing dot and IPv6 brackets, so host names compare equal.
fn normalize_host(host: &str) -> String {
    let host = host.trim_end_matches('.');
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.to_ascii_lowercase()
}

/// Host rules, applied inside ureq's resolver so they run for every connection
/// (redirect hops included) on the exact addresses that are then connected to.
struct GuardedResolver {
    allow_hosts: Option<Vec<String>>,
    allow_private: bool,
    /// Why the last refusal happened, so the caller can tell a refusal from a DNS
    /// failure (ureq wraps both as a DNS error).
    refused: Arc<Mutex<Option<String>>>,
}

impl GuardedResolver {
    fn refuse(&self, why: String) -> io::Error {
        if let Ok(mut slot) = self.refused.lock() {
            *slot = Some(why.clone());
        }
        io::Error::new(io::ErrorKind::PermissionDenied, why)
    }
}

impl ureq::Resolver for GuardedResolver {
    fn resolve(&self, netloc: &str) -> io::Result<Vec<SocketAddr>> {
        // netloc is "host:port" with IPv6 literals bracketed.
        let host = match netloc.rsplit_once(':') {
            Some((host, _port)) => host,
            None => netloc,
        };
        let host = normalize_host(host);
        let explicitly_allowed = match &self.allow_hosts {
            Some(list) => {
                if !list.iter().any(|allowed| normalize_host(allowed) == host) {
                    return Err(self.refuse(format!("{host} is not in download_allow_hosts")));
                }
                true
            }
            None => false,
        };
        let addrs: Vec<SocketAddr> = netloc.to_socket_addrs()?.collect();
        if !explicitly_allowed && !self.allow_private {
            if let Some(bad) = addrs.iter().find(|a| is_non_public(a.ip())) {
                return Err(self.refuse(format!(
                    "{host} resolves to a non-public address ({})",
                    bad.ip()
                )));
            }
        }
        Ok(addrs)
    }
}

/// Removes the temp file when dropped, unless disarmed.
struct TempGuard {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = fs::remove_file(&self.path) {
                if e.kind() != io::ErrorKind::NotFound {
                    log::warn!("could not remove temp file {}: {e}", self.path.display());
                }
            }
        }
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A hidden temp name that never ends in `.onnx` (so 0x24 never lists it) and stays
/// well under NAME_MAX whatever the target name's length.
fn temp_name(name: &str) -> String {
    let mut prefix_len = name.len().min(64);
    while !name.is_char_boundary(prefix_len) {
        prefix_len -= 1;
    }
    format!(
        ".{}.part-{}-{}",
        &name[..prefix_len],
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn is_timeout_kind(kind: io::ErrorKind) -> bool {
    matches!(kind, io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
}

/// True when `err` or anything in its source chain is an I/O timeout.
fn chain_has_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(io_err) = e.downcast_ref::<io::Error>() {
            if is_timeout_kind(io_err.kind()) {
                return true;
            }
        }
        current = e.source();
    }
    false
}

fn map_ureq_error(
    err: ureq::Error,
    refused: &Mutex<Option<String>>,
    deadline: Instant,
) -> DownloadError {
    if let Some(why) = refused.lock().ok().and_then(|mut slot| slot.take()) {
        return DownloadError::HostRefused(why);
    }
    match err {
        ureq::Error::Status(code, _) => DownloadError::Http(code),
        ureq::Error::Transport(t) => {
            if chain_has_timeout(&t) || Instant::now() >= deadline {
                return DownloadError::Timeout;
            }
            let detail = t.to_string();
            match t.kind() {
                ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => {
                    DownloadError::BadUrl(detail)
                }
                _ => DownloadError::Connect(detail),
            }
        }
    }
}

/// Downloads `url` (http or https only) into `model_folder` under [`target_name`].
///
/// Streams to a hidden temp file in the model folder, enforcing `max_bytes` (up front
/// from `Content-Length` and while streaming) and the timeout; then calls
/// `validate(&temp_path)`; only if that succeeds is the temp file linked to its final
/// name, which never overwrites an existing file ([`DownloadError::AlreadyExists`]).
/// Any failure removes the temp file. Returns the saved file name.
///
/// Blocks: call it from a worker thread, never from the reactor.
pub fn download_model(
    url: &str,
    model_folder: &Path,
    limits: &DownloadLimits,
    validate: &dyn Fn(&Path) -> Result<(), String>,
) -> Result<String, DownloadError> {
    let name = target_name(url)?;
    let parsed = parse_url(url)?;
    let folder = model_folder.canonicalize()?;
    let final_path = crate::paths::new_file_in(&folder, &name)
        .map_err(|e| DownloadError::BadUrl(e.to_string()))?;
    // Fail early, before any traffic. `symlink_metadata` so a dangling symlink counts.
    if fs::symlink_metadata(&final_path).is_ok() {
        return Err(DownloadError::AlreadyExists(name));
    }

    let started = Instant::now();
    let deadline = started + limits.timeout;
    let refused = Arc::new(Mutex::new(None));
    let agent = ureq::AgentBuilder::new()
        .resolver(GuardedResolver {
            allow_hosts: limits.allow_hosts.clone(),
            allow_private: limits.allow_private,
            refused: Arc::clone(&refused),
        })
        .timeout(limits.timeout)
        .timeout_connect(limits.timeout)
        .timeout_read(limits.timeout)
        .timeout_write(limits.timeout)
        // ureq 2 counts the final response too: n allows n - 1 redirect hops.
        .redirects(MAX_REDIRECTS + 1)
        .try_proxy_from_env(false)
        .max_idle_connections(0)
        .user_agent(concat!("pear-server/", env!("CARGO_PKG_VERSION")))
        .build();

    let response = agent
        .request_url("GET", &parsed)
        .call()
        .map_err(|e| map_ureq_error(e, &refused, deadline))?;
    let status = response.status();
    if !(200..300).contains(&status) {
        return Err(DownloadError::Http(status));
    }
    if let Some(length) = response.header("content-length") {
        match length.trim().parse::<u64>() {
            Ok(n) if n > limits.max_bytes => {
                return Err(DownloadError::TooLarge {
                    limit: limits.max_bytes,
                })
            }
            Ok(_) => {}
            Err(_) => {
                return Err(DownloadError::Interrupted(format!(
                    "bad Content-Length {length:?}"
                )))
            }
        }
    }

    let temp_path = folder.join(temp_name(&name));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp_path)?;
    let guard = TempGuard {
        path: temp_path,
        armed: true,
    };

    let mut reader = response.into_reader();
    stream_body(&mut reader, &mut file, limits.max_bytes, deadline)?;
    file.sync_all()?;
    drop(file);

    validate(&guard.path).map_err(DownloadError::Invalid)?;

    // link(2) never replaces an existing file or symlink, so a concurrent download or
    // a file created meanwhile is not overwritten.
    match fs::hard_link(&guard.path, &final_path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(DownloadError::AlreadyExists(name))
        }
        Err(e) => return Err(DownloadError::Io(e)),
    }
    // The guard now removes only the temp name; the final name keeps the data.
    drop(guard);
    log::info!(
        "downloaded model {name} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(name)
}

/// Copies the body to `out`, refusing more than `max_bytes` and stopping at `deadline`.
fn stream_body(
    reader: &mut dyn Read,
    out: &mut File,
    max_bytes: u64,
    deadline: Instant,
) -> Result<u64, DownloadError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    loop {
        if Instant::now() >= deadline {
            return Err(DownloadError::Timeout);
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout_kind(e.kind()) || Instant::now() >= deadline => {
                return Err(DownloadError::Timeout)
            }
            Err(e) => return Err(DownloadError::Interrupted(e.to_string())),
        };
        total = total.saturating_add(n as u64);
        if total > max_bytes {
            return Err(DownloadError::TooLarge { limit: max_bytes });
        }
        out.write_all(&buf[..n])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(target_name("http://h/m/a.onnx").ok(), Some("a.onnx".into()));
        assert_eq!(
            target_name("https://h/A.ONNX?x=1#y").ok(),
            Some("A.ONNX".into())
        );
        assert_eq!(
            target_name("http://h/my%20model.onnx").ok(),
            Some("my model.onnx".into())
        );
        assert!(matches!(
            target_name("http://h/a.txt"),
            Err(DownloadError::NotOnnx(_))
        ));
        assert!(matches!(
            target_name("http://h/.onnx"),
            Err(DownloadError::NotOnnx(_))
        ));
        assert!(matches!(
            target_name("http://h/"),
            Err(DownloadError::BadUrl(_))
        ));
        assert!(matches!(
            target_name("http://h/.x.onnx"),
            Err(DownloadError::BadUrl(_))
        ));
        assert!(matches!(
            target_name("http://h/%2e%2e%2fx.onnx"),
            Err(DownloadError::BadUrl(_))
        ));
        assert!(matches!(
            target_name("http://h/a%2Fb.onnx"),
            Err(DownloadError::BadUrl(_))
        ));
        assert!(matches!(
            target_name("http://h/a%00.onnx"),
            Err(DownloadError::BadUrl(_))
        ));
        assert!(matches!(
            target_name("http://h/a%0a.onnx"),
            Err(DownloadError::BadUrl(_))
        ));
        assert!(matches!(
            target_name("http://h/a%ff.onnx"),
            Err(DownloadError::BadUrl(_))
        ));
        assert!(matches!(
            target_name("http://h/a%2.onnx"),
            Err(DownloadError::BadUrl(_))
        ));
        assert!(matches!(
            target_name("ftp://h/a.onnx"),
            Err(DownloadError::BadUrl(_))
        ));
        assert!(matches!(
            target_name("file:///a.onnx"),
            Err(DownloadError::BadUrl(_))
        ));
        assert!(matches!(
            target_name("a.onnx"),
            Err(DownloadError::BadUrl(_))
        ));
        let long = format!("http://h/{}.onnx", "a".repeat(300));
        assert!(matches!(target_name(&long), Err(DownloadError::BadUrl(_))));
    }

    #[test]
    fn address_classes() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "::127.0.0.1",
        ] {
            let ip: IpAddr = private.parse().expect("test literal");
            assert!(is_non_public(ip), "{private} should be non-public");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            let ip: IpAddr = public.parse().expect("test literal");
            assert!(!is_non_public(ip), "{public} should be public");
        }
    }

    #[test]
    fn temp_names_are_hidden_short_and_not_onnx() {
        let long = format!("{}é.onnx", "a".repeat(63));
        let t = temp_name(&long);
        assert!(t.starts_with('.'));
        assert!(!t.to_ascii_lowercase().ends_with(".onnx"));
        assert!(t.len() < 120);
    }

    #[test]
    fn codes() {
        assert_eq!(
            DownloadError::BadUrl(String::new()).error_code(),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            DownloadError::HostRefused(String::new()).error_code(),
            ErrorCode::InvalidMessage
        );
        assert_eq!(DownloadError::Timeout.error_code(), ErrorCode::Timeout);
        assert_eq!(
            DownloadError::Http(404).error_code(),
            ErrorCode::ResourceNotFound
        );
        assert_eq!(
            DownloadError::TooLarge { limit: 1 }.error_code(),
            ErrorCode::ResourceNotFound
        );
    }
}
