//! Numeric vocabulary of the wire protocol: error codes and command codes.
//!
//! Owns the mapping between the numbers clients send/receive and typed values.
//! Must never know what a command *does*: that is `crate::service`.

use std::fmt;

/// Declares a wire enum from one table, a row per value: the variant, its
/// wire number as the discriminant (implicit: numbered from 0 in table order),
/// and its snake-case name. Generates the enum, `ALL` (table order) and
/// `name()`, so the number and the name of a value stand on one line.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $enum:ident {
            $( $(#[$row_meta:meta])* $variant:ident $(= $code:literal)? => $name:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $enum {
            $( $(#[$row_meta])* $variant $(= $code)?, )+
        }

        impl $enum {
            /// Every value, in table order.
            pub const ALL: [$enum; [$($enum::$variant),+].len()] = [$($enum::$variant),+];

            /// Snake-case name, for logs, metrics and config keys.
            pub fn name(self) -> &'static str {
                match self {
                    $( $enum::$variant => $name, )+
                }
            }
        }
    };
}

wire_enum! {
    /// `error_code` values of SPEC §1, numbered from 0 in this order (the
    /// test `error_code_numbers_match_spec` pins them). Codes 0–4 are the
    /// Python original's, 5–6 are ours. `name()` is the key of the code in the
    /// config's `ERROR_CODE` section.
    pub enum ErrorCode {
        NoError => "no_error",
        InvalidMessage => "invalid_message",
        ResourceNotFound => "resource_not_found",
        NotExistCommand => "not_exist_command",
        Timeout => "timeout",
        Busy => "busy",
        InternalError => "internal_error",
    }
}

impl ErrorCode {
    /// The number sent on the wire.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The inverse of [`ErrorCode::as_u8`].
    pub fn from_u8(code: u8) -> Option<ErrorCode> {
        ErrorCode::ALL.get(usize::from(code)).copied()
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_u8())
    }
}

wire_enum! {
    /// The request commands of SPEC §1: the discriminant is the request `cmd`
    /// value, and the response to a command carries `code() + 1`.
    ///
    /// Adding a command: one row here, in code order; what it does goes in
    /// `crate::service`.
    pub enum Command {
        Classify = 0x01 => "classify",
        StopClassification = 0x03 => "stop_classification",
        DownloadModel = 0x20 => "download_model",
        CurrentModel = 0x22 => "current_model",
        ListModels = 0x24 => "list_models",
        ChangeModel = 0x26 => "change_model",
        DeleteModel = 0x28 => "delete_model",
        ChangeImageFolder = 0x30 => "change_image_folder",
        CurrentImageFolder = 0x32 => "current_image_folder",
        ChangeModelFolder = 0x34 => "change_model_folder",
        /// Ours, not in the original.
        ServerStatus = 0x40 => "server_status",
    }
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
