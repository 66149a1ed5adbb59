//! The metrics/health HTTP listener (`metrics.listen`), served by the reactor
//! itself: no second runtime. Deliberately minimal: `GET` only, a request head
//! of at most 8 KiB, one request per connection, `Connection: close`, at most
//! [`MAX_CONNS`] connections, each closed after [`TIMEOUT`].
//!
//! Owns: the HTTP listener, its connections, routing and response framing;
//! the request head is parsed by `httparse`. The response bodies come from the reactor
//! ([`Route`]), which knows whether it is draining.
//!
//! Never: blocks, touches the disk, or keeps a connection after its answer.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;

/// Tokens at or above this belong to HTTP connections (peer tokens are slab
/// keys, far below it).
pub const HTTP_BASE: usize = usize::MAX / 2;
/// Largest request head accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// HTTP connections open at once; more are closed at once.
pub const MAX_CONNS: usize = 64;
/// A connection that has not sent its head (or read its answer) by then is closed.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// What a path maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Metrics,
    Healthz,
    Readyz,
    NotFound,
}

impl Route {
    fn of(path: &str) -> Route {
        // Ignore a query string: `/metrics?x=1` is still `/metrics`.
        match path.split('?').next().unwrap_or("") {
            "/metrics" => Route::Metrics,
            "/healthz" => Route::Healthz,
            "/readyz" => Route::Readyz,
            _ => Route::NotFound,
        }
    }
}

/// An answer: status code, content type, body.
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    pub fn text(status: u16, body: impl Into<String>) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

struct Conn {
    stream: TcpStream,
    head: Vec<u8>,
    out: Vec<u8>,
    written: usize,
    opened: Instant,
    answered: bool,
}

pub struct HttpEndpoint {
    listener: TcpListener,
    listener_token: Token,
    conns: Slab<Conn>,
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("metrics.listen {addr}: {source}")]
pub struct HttpBindError {
    pub addr: String,
    pub source: io::Error,
}

impl HttpEndpoint {
    pub fn bind(
        addr: &str,
        registry: &Registry,
        listener_token: Token,
    ) -> Result<HttpEndpoint, HttpBindError> {
        let err = |source| HttpBindError {
            addr: addr.to_owned(),
            source,
        };
        let parsed: SocketAddr = addr
            .parse()
            .map_err(|_| err(io::Error::new(io::ErrorKind::InvalidInput, "bad address")))?;
        let std_listener = super::accept::bind_listener(parsed, 128).map_err(err)?;
        let mut listener = TcpListener::from_std(std_listener);
        registry
            .register(&mut listener, listener_token, Interest::READABLE)
            .map_err(err)?;
        Ok(HttpEndpoint {
            listener,
            listener_token,
            conns: Slab::new(),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Handles one event for the listener or a connection.
    pub fn event(&mut self, token: Token, registry: &Registry, answer: &dyn Fn(Route) -> Answer) {
        if token == self.listener_token {
            self.accept_all(registry);
        } else {
            self.drive(token.0 - HTTP_BASE, registry, answer);
        }
    }

    fn accept_all(&mut self, registry: &Registry) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if self.conns.len() >= MAX_CONNS {
                        continue; // dropped: closed at once
                    }
                    let entry = self.conns.vacant_entry();
                    let token = Token(HTTP_BASE + entry.key());
                    if registry
                        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                        .is_ok()
                    {
                        entry.insert(Conn {
                            stream,
                            head: Vec::new(),
                            out: Vec::new(),
                            written: 0,
                            opened: Instant::now(),
                            answered: false,
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("metrics accept: {e}");
                    return;
                }
            }
        }
    }

    fn drive(&mut self, key: usize, registry: &Registry, answer: &dyn Fn(Route) -> Answer) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut done = false;
        if !conn.answered {
            let mut chunk = [0u8; 2048];
            loop {
                match conn.stream.read(&mut chunk) {
                    Ok(0) => {
                        done = true;
                        break;
                    }
                    Ok(n) => {
                        conn.head.extend_from_slice(&chunk[..n]);
                        if conn.head.len() > MAX_HEAD {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        done = true;
                        break;
                    }
                }
            }
            let reply = if conn.head.len() > MAX_HEAD {
                Some(Answer::text(431, "request head too large\n"))
            } else {
                respond(&conn.head, answer)
            };
            if let Some(reply) = reply {
                crate::metrics::METRICS.http_request();
                conn.out = frame(&reply);
                conn.answered = true;
                done = false;
            }
        }
        if conn.answered {
            // Finished (all written) or broken: either way, close.
            done = flush(conn).unwrap_or(true);
        }
        if done {
            self.close(key, registry);
        }
    }

    /// Closes connections older than [`TIMEOUT`].
    pub fn sweep(&mut self, registry: &Registry) {
        let now = Instant::now();
        let old: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| now.duration_since(c.opened) >= TIMEOUT)
            .map(|(k, _)| k)
            .collect();
        for key in old {
            self.close(key, registry);
        }
    }

    fn close(&mut self, key: usize, registry: &Registry) {
        if self.conns.contains(key) {
            let mut conn = self.conns.remove(key);
            let _ = registry.deregister(&mut conn.stream);
        }
    }
}

/// Headers read at most; a head with more is answered 431.
const MAX_HEADERS: usize = 32;

/// Parses the request head (with `httparse`) and picks the answer; `None`
/// while the head is incomplete.
fn respond(head: &[u8], answer: &dyn Fn(Route) -> Answer) -> Option<Answer> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return None,
        Err(httparse::Error::TooManyHeaders) => {
            return Some(Answer::text(431, "too many header fields\n"))
        }
        Err(_) => return Some(Answer::text(400, "bad request\n")),
    }
    let (Some(method), Some(path)) = (request.method, request.path) else {
        return Some(Answer::text(400, "bad request\n"));
    };
    if method != "GET" {
        return Some(Answer::text(405, "only GET\n"));
    }
    Some(match Route::of(path) {
        Route::NotFound => Answer::text(404, "not found\n"),
        route => answer(route),
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn frame(a: &Answer) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
        a.status,
        reason(a.status),
        a.content_type,
        a.body.len()
    )
    .into_bytes();
    out.extend_from_slice(a.body.as_bytes());
    out
}

/// Writes what the socket takes; Ok(true) when everything is out.
fn flush(conn: &mut Conn) -> io::Result<bool> {
    while conn.written < conn.out.len() {
        match conn.stream.write(&conn.out[conn.written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => conn.written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(route: Route) -> Answer {
        Answer::text(200, format!("{route:?}"))
    }

    fn status(head: &[u8]) -> Option<u16> {
        respond(head, &ok).map(|a| a.status)
    }

    #[test]
    fn routes_and_errors() {
        let body = |head: &[u8]| respond(head, &ok).map(|a| a.body);
        assert_eq!(
            body(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").as_deref(),
            Some("Healthz")
        );
        assert_eq!(
            body(b"GET /metrics?name=x HTTP/1.0\r\n\r\n").as_deref(),
            Some("Metrics")
        );
        assert_eq!(body(b"GET /readyz HTTP/1.1\n\n").as_deref(), Some("Readyz"));
        assert_eq!(status(b"GET /nope HTTP/1.1\r\n\r\n"), Some(404));
        assert_eq!(status(b"POST /metrics HTTP/1.1\r\n\r\n"), Some(405));
        assert_eq!(status(b"garbage\r\n\r\n"), Some(400));
        assert_eq!(status(b"GET / SPDY/3\r\n\r\n"), Some(400));
        assert_eq!(status(&[0xff, b' ', b'\n', b'\n']), Some(400));
    }

    #[test]
    fn waits_for_the_whole_head() {
        assert_eq!(status(b""), None);
        assert_eq!(status(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), None);
        let mut many = b"GET /metrics HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(status(&many), Some(431));
    }

    #[test]
    fn framing_says_close() {
        let bytes = frame(&Answer::text(503, "draining\n"));
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\ndraining\n"));
    }
}
