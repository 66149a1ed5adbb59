//! Pieces shared by the command-line tools (`pear-client`, `pear-bench`).
//!
//! Never used by the server itself.

use clap::ValueEnum;

use crate::protocol::Framing;

/// `--framing` as the tools spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FramingArg {
    /// JSON stream: the request, then a newline.
    Json,
    /// 4-byte big-endian length prefix.
    Binary,
    /// 64-byte decimal length header.
    Decimal,
}

impl FramingArg {
    pub fn framing(self) -> Framing {
        match self {
            FramingArg::Json => Framing::JsonStream,
            FramingArg::Binary => Framing::BinaryLength,
            FramingArg::Decimal => Framing::DecimalHeader,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FramingArg::Json => "json",
            FramingArg::Binary => "binary",
            FramingArg::Decimal => "decimal",
        }
    }
}
