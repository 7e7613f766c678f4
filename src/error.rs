//! The closed set of peer-input errors (doc/codec.md, "Error kinds").
//!
//! The kind strings and messages are part of the contract: the Perl glue puts them,
//! unchanged, into `{error => KIND, message => TEXT}`. The HTTP status for each kind
//! lives once, in the Perl facade (`PAGI::Server::Protocol::HTTP1::error_status`);
//! [`ErrorKind::status`] is only for documentation and tests.

/// A peer-input error. The discriminants are the codes that cross the C ABI
/// (`0` means "no error" there, so they start at 1).
use std::ffi::CStr;

fn without_nul(s: &'static str) -> &'static str {
    &s[..s.len() - 1]
}

fn as_cstr(s: &'static str) -> &'static CStr {
    // The tables below end every string with exactly one NUL (tested)
    CStr::from_bytes_with_nul(s.as_bytes()).unwrap_or(c"")
}

#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    BadRequestLine = 1,
    BadHeader = 2,
    BadHost = 3,
    BadContentLength = 4,
    ConflictingLength = 5,
    BadTransferEncoding = 6,
    BadChunk = 7,
    BodyTooLarge = 8,
    UriTooLong = 9,
    HeadersTooLarge = 10,
    UnsupportedTransferEncoding = 11,
    UnsupportedVersion = 12,
}

impl ErrorKind {
    /// Every kind, in code order.
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::BadRequestLine,
        ErrorKind::BadHeader,
        ErrorKind::BadHost,
        ErrorKind::BadContentLength,
        ErrorKind::ConflictingLength,
        ErrorKind::BadTransferEncoding,
        ErrorKind::BadChunk,
        ErrorKind::BodyTooLarge,
        ErrorKind::UriTooLong,
        ErrorKind::HeadersTooLarge,
        ErrorKind::UnsupportedTransferEncoding,
        ErrorKind::UnsupportedVersion,
    ];

    /// The code used across the C ABI.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The kind for an ABI code, if it is one.
    pub fn from_code(code: i32) -> Option<ErrorKind> {
        ErrorKind::ALL.iter().copied().find(|k| k.code() == code)
    }

    /// The `error` value: a short lowercase identifier.
    pub fn kind(self) -> &'static str {
        without_nul(self.kind_nul())
    }

    /// The `message` value: a short lowercase description.
    pub fn message(self) -> &'static str {
        without_nul(self.message_nul())
    }

    /// [`ErrorKind::kind`] as a C string.
    pub fn kind_c(self) -> &'static CStr {
        as_cstr(self.kind_nul())
    }

    /// [`ErrorKind::message`] as a C string.
    pub fn message_c(self) -> &'static CStr {
        as_cstr(self.message_nul())
    }

    fn kind_nul(self) -> &'static str {
        match self {
            ErrorKind::BadRequestLine => "bad_request_line\0",
            ErrorKind::BadHeader => "bad_header\0",
            ErrorKind::BadHost => "bad_host\0",
            ErrorKind::BadContentLength => "bad_content_length\0",
            ErrorKind::ConflictingLength => "conflicting_length\0",
            ErrorKind::BadTransferEncoding => "bad_transfer_encoding\0",
            ErrorKind::BadChunk => "bad_chunk\0",
            ErrorKind::BodyTooLarge => "body_too_large\0",
            ErrorKind::UriTooLong => "uri_too_long\0",
            ErrorKind::HeadersTooLarge => "headers_too_large\0",
            ErrorKind::UnsupportedTransferEncoding => "unsupported_transfer_encoding\0",
            ErrorKind::UnsupportedVersion => "unsupported_version\0",
        }
    }

    fn message_nul(self) -> &'static str {
        match self {
            ErrorKind::BadRequestLine => "invalid request line\0",
            ErrorKind::BadHeader => "invalid header field\0",
            ErrorKind::BadHost => "missing or duplicate host header\0",
            ErrorKind::BadContentLength => "invalid content-length\0",
            ErrorKind::ConflictingLength => "conflicting message length\0",
            ErrorKind::BadTransferEncoding => "invalid transfer-encoding\0",
            ErrorKind::BadChunk => "invalid chunked encoding\0",
            ErrorKind::BodyTooLarge => "request body too large\0",
            ErrorKind::UriTooLong => "request line too long\0",
            ErrorKind::HeadersTooLarge => "request header fields too large\0",
            ErrorKind::UnsupportedTransferEncoding => "unsupported transfer-encoding\0",
            ErrorKind::UnsupportedVersion => "http version not supported\0",
        }
    }

    /// The HTTP status the facade answers with (kept in sync with its table by tests).
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BodyTooLarge => 413,
            ErrorKind::UriTooLong => 414,
            ErrorKind::HeadersTooLarge => 431,
            ErrorKind::UnsupportedTransferEncoding => 501,
            ErrorKind::UnsupportedVersion => 505,
            _ => 400,
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ErrorKind {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_distinct() {
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.code(), i as i32 + 1);
            assert_eq!(ErrorKind::from_code(k.code()), Some(*k));
        }
        assert_eq!(ErrorKind::from_code(0), None);
        assert_eq!(ErrorKind::from_code(13), None);
    }

    #[test]
    fn table_matches_the_contract() {
        let table: &[(&str, u16, &str)] = &[
            ("bad_request_line", 400, "invalid request line"),
            ("bad_header", 400, "invalid header field"),
            ("bad_host", 400, "missing or duplicate host header"),
            ("bad_content_length", 400, "invalid content-length"),
            ("conflicting_length", 400, "conflicting message length"),
            ("bad_transfer_encoding", 400, "invalid transfer-encoding"),
            ("bad_chunk", 400, "invalid chunked encoding"),
            ("body_too_large", 413, "request body too large"),
            ("uri_too_long", 414, "request line too long"),
            ("headers_too_large", 431, "request header fields too large"),
            ("unsupported_transfer_encoding", 501, "unsupported transfer-encoding"),
            ("unsupported_version", 505, "http version not supported"),
        ];
        for (k, (kind, status, msg)) in ErrorKind::ALL.iter().zip(table) {
            assert_eq!(k.kind(), *kind);
            assert_eq!(k.status(), *status);
            assert_eq!(k.message(), *msg);
            assert_eq!(k.to_string(), *msg);
            assert_eq!(k.kind_c().to_str().unwrap(), *kind);
            assert_eq!(k.message_c().to_str().unwrap(), *msg);
        }
    }
}
