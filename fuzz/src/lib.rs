//! The server's protocol module, compiled on its own for fuzzing. It is the very
//! same source file tree as `pear_server::protocol` (`src/protocol/`), included by
//! path, so the fuzzers exercise the code the server runs.

#[path = "../../src/protocol/mod.rs"]
pub mod protocol;
