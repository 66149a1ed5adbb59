//! Wire protocol: framing, hex literals, request/response messages, error codes.
