//! Numeric vocabulary of the wire protocol: error codes and command codes.
//!
//! Owns the mapping between the numbers clients send/receive and typed values.
//! Must never know what a command *does*: that is `crate::service`.

use std::fmt;

/// `error_code` values of SPEC §1. Codes 0–4 are the Python original's, 5–6 are ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ErrorCode {
    NoError = 0,
    InvalidMessage = 1,
    ResourceNotFound = 2,
    NotExistCommand = 3,
    Timeout = 4,
    Busy = 5,
    InternalError = 6,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 7] = [
        ErrorCode::NoError,
        ErrorCode::InvalidMessage,
        ErrorCode::ResourceNotFound,
        ErrorCode::NotExistCommand,
        ErrorCode::Timeout,
        ErrorCode::Busy,
        ErrorCode::InternalError,
    ];

    /// The number sent on the wire.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The inverse of [`ErrorCode::as_u8`].
    pub fn from_u8(code: u8) -> Option<ErrorCode> {
        ErrorCode::ALL.get(usize::from(code)).copied()
    }

    /// The key used for this code in the config's `ERROR_CODE` section (`"invalid_message"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::NoError => "no_error",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::ResourceNotFound => "resource_not_found",
            ErrorCode::NotExistCommand => "not_exist_command",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Busy => "busy",
            ErrorCode::InternalError => "internal_error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_u8())
    }
}

/// The request commands of SPEC §1: the discriminant is the request `cmd`
/// value, and the response to a command carries `code() + 1`.
///
/// Adding a command: a variant with its code here, its place in [`Command::ALL`]
/// and its [`Command::name`]; what it does goes in `crate::service`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Command {
    Classify = 0x01,
    StopClassification = 0x03,
    DownloadModel = 0x20,
    CurrentModel = 0x22,
    ListModels = 0x24,
    ChangeModel = 0x26,
    DeleteModel = 0x28,
    ChangeImageFolder = 0x30,
    CurrentImageFolder = 0x32,
    ChangeModelFolder = 0x34,
    /// Ours, not in the original.
    ServerStatus = 0x40,
}

/// `BY_CODE[code]` is the command with that request code: [`Command::ALL`]
/// turned around once, at compile time.
const BY_CODE: [Option<Command>; 256] = {
    let mut table = [None; 256];
    let mut i = 0;
    while i < Command::ALL.len() {
        table[Command::ALL[i] as usize] = Some(Command::ALL[i]);
        i += 1;
    }
    table
};

impl Command {
    /// Every command, in code order.
    pub const ALL: [Command; 11] = [
        Command::Classify,
        Command::StopClassification,
        Command::DownloadModel,
        Command::CurrentModel,
        Command::ListModels,
        Command::ChangeModel,
        Command::DeleteModel,
        Command::ChangeImageFolder,
        Command::CurrentImageFolder,
        Command::ChangeModelFolder,
        Command::ServerStatus,
    ];

    /// The command for a request `cmd` value; `None` for anything unknown
    /// (including the odd response codes and negative numbers).
    pub fn from_code(code: i64) -> Option<Command> {
        usize::try_from(code)
            .ok()
            .and_then(|i| BY_CODE.get(i).copied().flatten())
    }

    /// The request `cmd` value.
    pub fn code(self) -> i64 {
        i64::from(self as u8)
    }

    /// The response `cmd` value: request code + 1.
    pub fn response_code(self) -> i64 {
        self.code() + 1
    }

    /// Snake-case name for logs and metrics (`"classify"`, `"current_model"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Command::Classify => "classify",
            Command::StopClassification => "stop_classification",
            Command::DownloadModel => "download_model",
            Command::CurrentModel => "current_model",
            Command::ListModels => "list_models",
            Command::ChangeModel => "change_model",
            Command::DeleteModel => "delete_model",
            Command::ChangeImageFolder => "change_image_folder",
            Command::CurrentImageFolder => "current_image_folder",
            Command::ChangeModelFolder => "change_model_folder",
            Command::ServerStatus => "server_status",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:02x})", self.name(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_numbers_match_spec() {
        let expected = [0u8, 1, 2, 3, 4, 5, 6];
        for (code, n) in ErrorCode::ALL.iter().zip(expected) {
            assert_eq!(code.as_u8(), n);
            assert_eq!(ErrorCode::from_u8(n), Some(*code));
        }
        assert_eq!(ErrorCode::from_u8(7), None);
        assert_eq!(ErrorCode::InvalidMessage.name(), "invalid_message");
        assert_eq!(ErrorCode::Busy.name(), "busy");
    }

    #[test]
    fn command_codes_match_spec() {
        let table: [(i64, &str); 11] = [
            (0x01, "classify"),
            (0x03, "stop_classification"),
            (0x20, "download_model"),
            (0x22, "current_model"),
            (0x24, "list_models"),
            (0x26, "change_model"),
            (0x28, "delete_model"),
            (0x30, "change_image_folder"),
            (0x32, "current_image_folder"),
            (0x34, "change_model_folder"),
            (0x40, "server_status"),
        ];
        for (code, name) in table {
            let cmd = Command::from_code(code).expect("known code");
            assert_eq!(cmd.code(), code);
            assert_eq!(cmd.response_code(), code + 1);
            assert_eq!(cmd.name(), name);
        }
        assert_eq!(Command::ALL.len(), table.len());
        // In code order, each once: `BY_CODE` relies on it.
        assert!(Command::ALL.windows(2).all(|w| w[0].code() < w[1].code()));
    }

    #[test]
    fn unknown_command_codes() {
        for code in [0, 2, 0x21, 0x23, 0x41, -1, i64::MIN, i64::MAX, 0x101] {
            assert_eq!(Command::from_code(code), None, "code {code}");
        }
    }
}
