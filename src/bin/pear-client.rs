//! `pear-client`: a command-line client that speaks every pear-server command.
//!
//! Owns the command line (clap), building one request, sending it with the chosen
//! framing over a blocking `TcpStream`, reading exactly one framed response (with the
//! library's [`Framer`]) and showing it as a table or as JSON. Exit code: 0 when every
//! response item has `error_code` 0, 1 when any does not, 2 for usage, connection,
//! timeout and protocol errors. It never retries, and never sends more than one request.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use pear_server::cli::FramingArg;
use pear_server::protocol::{
    encode_frame, Command, ErrorCode, FrameError, Framer, Framing, FramingMode,
};
use serde_json::{json, Value};

/// Largest response accepted (a status reply or a long classification is far smaller).
const MAX_RESPONSE: usize = 64 << 20;

const EXAMPLES: &str = "\
Examples:
  pear-client classify normal_01.jpg bruise_02.png   # 0x01 classify images in the image folder
  pear-client stop                                   # 0x03 cancel this connection's pending work
  pear-client model                                  # 0x22 current classifier file
  pear-client models                                 # 0x24 list .onnx files in the model folder
  pear-client use classifier_v2.onnx                 # 0x26 switch the classifier
  pear-client delete old.onnx                        # 0x28 delete a model file
  pear-client download https://example.com/m.onnx    # 0x20 download a model
  pear-client folder                                 # 0x32 current image folder
  pear-client folder /data/pears                     # 0x30 change the image folder
  pear-client model-folder /data/models              # 0x34 change the model folder
  pear-client status                                 # 0x40 server status
  pear-client raw '{\"cmd\": 0x22, \"request_data\": null}'
  pear-client --addr 10.0.0.5:9090 --framing binary --json models

Exit code: 0 if every item has error_code 0, 1 otherwise, 2 for usage or connection errors.";

/// Command-line client for pear-server.
#[derive(Debug, Parser)]
#[command(name = "pear-client", version, after_help = EXAMPLES)]
struct Cli {
    /// Server address.
    #[arg(long, global = true, default_value = "127.0.0.1:9090")]
    addr: String,
    /// Request framing.
    #[arg(long, global = true, value_enum, default_value_t = FramingArg::Json)]
    framing: FramingArg,
    /// Seconds to wait for the connection and the response.
    #[arg(long, global = true, default_value_t = 60.0)]
    timeout: f64,
    /// Print the server's response as one JSON line instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Classify images (0x01); names are relative to the server's image folder.
    #[command(after_help = "Example:\n  pear-client classify normal_01.jpg bruise_02.png")]
    Classify {
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Cancel this connection's classification work not yet started (0x03).
    #[command(after_help = "Example:\n  pear-client stop")]
    Stop,
    /// Show the current classifier model (0x22).
    #[command(after_help = "Example:\n  pear-client model")]
    Model,
    /// List the .onnx files in the model folder (0x24).
    #[command(after_help = "Example:\n  pear-client models")]
    Models,
    /// Switch the classifier to NAME from the model folder (0x26).
    #[command(after_help = "Example:\n  pear-client use classifier_v2.onnx")]
    Use { name: String },
    /// Delete NAME from the model folder (0x28).
    #[command(after_help = "Example:\n  pear-client delete old.onnx")]
    Delete { name: String },
    /// Download a model into the model folder (0x20).
    #[command(after_help = "Example:\n  pear-client download https://example.com/models/m.onnx")]
    Download { url: String },
    /// Show the image folder (0x32), or change it to PATH (0x30).
    #[command(after_help = "Examples:\n  pear-client folder\n  pear-client folder /data/pears")]
    Folder { path: Option<String> },
    /// Change the model folder to PATH (0x34).
    #[command(after_help = "Example:\n  pear-client model-folder /data/models")]
    ModelFolder { path: String },
    /// Show server status (0x40).
    #[command(after_help = "Example:\n  pear-client status")]
    Status,
    /// Send MESSAGE as it is (hex literals allowed) and show the response.
    #[command(
        after_help = "Example:\n  pear-client raw '{\"cmd\": 0x22, \"request_data\": null}'"
    )]
    Raw { message: String },
}

/// Everything that ends the client with exit code 2.
#[derive(Debug, thiserror::Error)]
enum ClientError {
    #[error("--timeout must be a positive number of seconds")]
    BadTimeout,
    #[error("cannot resolve {addr}: {source}")]
    Resolve { addr: String, source: io::Error },
    #[error("{addr} resolves to no address")]
    NoAddress { addr: String },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("talking to the server: {0}")]
    Io(#[from] io::Error),
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("the server closed the connection before a complete response")]
    Closed,
    #[error("cannot frame the response: {0}")]
    Frame(#[from] FrameError),
    #[error("the response is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(all_ok) => {
            if all_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("pear-client: {e}");
            ExitCode::from(2)
        }
    }
}

/// The request text for a subcommand.
fn request(cmd: &Cmd) -> String {
    let (command, data) = match cmd {
        Cmd::Raw { message } => return message.trim().to_owned(),
        Cmd::Classify { files } => (Command::Classify, json!(files)),
        Cmd::Stop => (Command::StopClassification, Value::Null),
        Cmd::Model => (Command::CurrentModel, Value::Null),
        Cmd::Models => (Command::ListModels, Value::Null),
        Cmd::Use { name } => (Command::ChangeModel, json!([name])),
        Cmd::Delete { name } => (Command::DeleteModel, json!([name])),
        Cmd::Download { url } => (Command::DownloadModel, json!([url])),
        Cmd::Folder { path: None } => (Command::CurrentImageFolder, Value::Null),
        Cmd::Folder { path: Some(p) } => (Command::ChangeImageFolder, json!([p])),
        Cmd::ModelFolder { path } => (Command::ChangeModelFolder, json!([path])),
        Cmd::Status => (Command::ServerStatus, Value::Null),
    };
    json!({"cmd": command.code(), "request_data": data}).to_string()
}

fn run(cli: &Cli) -> Result<bool, ClientError> {
    if !(cli.timeout > 0.0 && cli.timeout <= 86_400.0) {
        return Err(ClientError::BadTimeout);
    }
    let timeout = Duration::from_secs_f64(cli.timeout);
    let deadline = Instant::now() + timeout;
    let text = request(&cli.command);
    let payload = exchange(
        &cli.addr,
        cli.framing.framing(),
        text.as_bytes(),
        timeout,
        deadline,
    )?;
    let response: Value = serde_json::from_slice(&payload)?;
    let ok = all_ok(&response);
    let mut out = io::stdout().lock();
    let shown = if cli.json {
        writeln!(out, "{}", String::from_utf8_lossy(&payload))
    } else {
        write!(out, "{}", render(&response))
    };
    // A closed stdout (`| head`) does not change the verdict.
    let _ = shown.and_then(|()| out.flush());
    Ok(ok)
}

/// Sends one framed request and returns the payload of the one response.
fn exchange(
    addr: &str,
    framing: Framing,
    request: &[u8],
    timeout: Duration,
    deadline: Instant,
) -> Result<Vec<u8>, ClientError> {
    let target = addr
        .to_socket_addrs()
        .map_err(|source| ClientError::Resolve {
            addr: addr.to_owned(),
            source,
        })?
        .next()
        .ok_or_else(|| ClientError::NoAddress {
            addr: addr.to_owned(),
        })?;
    let mut stream = TcpStream::connect_timeout(&target, timeout).map_err(|source| {
        if source.kind() == io::ErrorKind::TimedOut {
            ClientError::Timeout(timeout)
        } else {
            ClientError::Connect {
                addr: target,
                source,
            }
        }
    })?;
    stream.set_nodelay(true)?;
    let mut wire = Vec::with_capacity(request.len() + 64);
    encode_frame(framing, request, &mut wire);
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(&wire).map_err(|e| timed_out(e, timeout))?;

    let mut framer = Framer::new(FramingMode::Auto, MAX_RESPONSE);
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(frame) = framer.next_frame(&buf)? {
            return Ok(buf.get(frame.payload).unwrap_or_default().to_vec());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ClientError::Timeout(timeout));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err(ClientError::Closed),
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(timed_out(e, timeout)),
        }
    }
}

fn timed_out(e: io::Error, timeout: Duration) -> ClientError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout(timeout),
        _ => ClientError::Io(e),
    }
}

/// True when the response has at least one item and every item has `error_code` 0.
fn all_ok(response: &Value) -> bool {
    match response.get("response_data").and_then(Value::as_array) {
        Some(items) if !items.is_empty() => items
            .iter()
            .all(|item| item.get("error_code").and_then(Value::as_i64) == Some(0)),
        _ => false,
    }
}

/// A short, readable cell for a JSON value.
fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.3}"),
            _ => n.to_string(),
        },
        Some(Value::Array(a)) => {
            let parts: Vec<String> = a.iter().map(|x| cell(Some(x))).collect();
            format!("[{}]", parts.join(", "))
        }
        Some(other) => other.to_string(),
    }
}

fn error_cell(v: Option<&Value>) -> String {
    match v.and_then(Value::as_i64) {
        Some(0) => "0".to_owned(),
        Some(code) => match u8::try_from(code).ok().and_then(ErrorCode::from_u8) {
            Some(known) => format!("{code} {}", known.name()),
            None => code.to_string(),
        },
        None => cell(v),
    }
}

/// The response as a table (one row per item), plus object-valued results as
/// `key: value` lines below it.
fn render(response: &Value) -> String {
    let mut out = String::new();
    let cmd = response.get("cmd").and_then(Value::as_i64);
    let items = response
        .get("response_data")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match cmd {
        None => out.push_str("error response\n"),
        Some(c) => {
            let name = Command::from_code(c - 1).map_or("unknown", Command::name);
            out.push_str(&format!(
                "cmd 0x{c:02x} ({name}), {} item(s)\n",
                items.len()
            ));
        }
    }
    let mut rows = vec![[
        "#".to_owned(),
        "FILE".to_owned(),
        "RESULT".to_owned(),
        "ERROR".to_owned(),
        "DETAIL".to_owned(),
    ]];
    let mut objects = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let result = match item.get("result") {
            Some(Value::Object(map)) => {
                objects.push(map.clone());
                "(below)".to_owned()
            }
            other => cell(other),
        };
        let mut detail = Vec::new();
        if let Some(map) = item.as_object() {
            for (k, v) in map {
                if matches!(k.as_str(), "file_name" | "result" | "error_code") {
                    continue;
                }
                detail.push(format!("{k}={}", cell(Some(v))));
            }
        }
        rows.push([
            (i + 1).to_string(),
            cell(item.get("file_name")),
            result,
            error_cell(item.get("error_code")),
            detail.join("  "),
        ]);
    }
    let mut widths = [0usize; 5];
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::new();
        for (i, (w, c)) in widths.iter().zip(row).enumerate() {
            if i + 1 == row.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    for map in objects {
        let w = map.keys().map(|k| k.chars().count()).max().unwrap_or(0);
        for (k, v) in &map {
            out.push_str(&format!("  {k:<w$}  {}\n", cell(Some(v))));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn requests_per_command() {
        let r = |c: Cmd| serde_json::from_str::<Value>(&request(&c)).unwrap();
        assert_eq!(r(Cmd::Model), json!({"cmd": 0x22, "request_data": null}));
        assert_eq!(
            r(Cmd::Classify {
                files: vec!["a.jpg".into(), "b.png".into()]
            }),
            json!({"cmd": 1, "request_data": ["a.jpg", "b.png"]})
        );
        assert_eq!(r(Cmd::Folder { path: None })["cmd"], 0x32);
        assert_eq!(
            r(Cmd::Folder {
                path: Some("/x".into())
            }),
            json!({"cmd": 0x30, "request_data": ["/x"]})
        );
        assert_eq!(
            request(&Cmd::Raw {
                message: " {\"cmd\": 0x22} ".into()
            }),
            "{\"cmd\": 0x22}"
        );
    }

    #[test]
    fn verdict() {
        assert!(all_ok(&json!({"response_data": [{"error_code": 0}]})));
        assert!(!all_ok(
            &json!({"response_data": [{"error_code": 0}, {"error_code": 2}]})
        ));
        assert!(!all_ok(&json!({"response_data": []})));
        assert!(!all_ok(&json!({"cmd": null})));
    }

    #[test]
    fn table_shows_items_and_errors() {
        let t = render(&json!({"cmd": 2, "response_data": [
            {"file_name": "a.jpg", "result": 0, "error_code": 0, "label": "normal", "confidence": 0.91},
            {"file_name": "b.jpg", "result": null, "error_code": 2, "message": "not found"}
        ], "request_data": null}));
        assert!(t.contains("cmd 0x02 (classify)"), "{t}");
        assert!(t.contains("label=normal"), "{t}");
        assert!(t.contains("2 resource_not_found"), "{t}");
        let t = render(&json!({"cmd": 0x41, "response_data": [
            {"file_name": null, "result": {"version": "0.1.0"}, "error_code": 0}
        ]}));
        assert!(t.contains("version  0.1.0"), "{t}");
    }
}
