//! `serialize_response`, `serialize_chunk` and `serialize_trailers` (RFC 9112 4, 6, 7.1).
//!
//! ```text
//! status-line = HTTP-version SP status-code SP [ reason-phrase ]
//! field-line  = field-name ":" OWS field-value OWS
//! chunk       = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! ```
//!
//! Input comes from the application, so invalid input is an error for the app
//! ([`AppError`]), never a panic. The framing rules are doc/codec.md's.

use crate::chars::{is_token, trim_ows};
use crate::date::IMF_FIXDATE_LEN;
use crate::status::reason_phrase;

/// `$flags` bit: the request was HEAD.
pub const FLAG_HEAD: u32 = 1;
/// `$flags` bit: close the connection after this response.
pub const FLAG_CLOSE: u32 = 2;
/// `$flags` bit: the client speaks HTTP/1.0.
pub const FLAG_HTTP10: u32 = 4;
/// `$flags` bit: the response switches the connection to another protocol (a 101 for
/// a WebSocket upgrade): `Connection: Upgrade`, and the connection stays open.
pub const FLAG_UPGRADE: u32 = 8;

/// No body follows (1xx, 204, 304, HEAD).
pub const MODE_NONE: u8 = 0;
/// A Content-Length delimited body follows.
pub const MODE_LENGTH: u8 = 1;
/// A chunked body follows.
pub const MODE_CHUNKED: u8 = 2;
/// The body ends when the connection closes.
pub const MODE_CLOSE: u8 = 3;

/// One application header. `*_wide` says the Perl string had a character above 0xFF
/// (then the bytes do not matter: it is invalid).
#[derive(Debug, Clone, Copy, Default)]
pub struct HeaderIn<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
    pub name_wide: bool,
    pub value_wide: bool,
}

impl<'a> HeaderIn<'a> {
    pub fn new(name: &'a [u8], value: &'a [u8]) -> HeaderIn<'a> {
        HeaderIn { name, value, name_wide: false, value_wide: false }
    }
}

include!(concat!(env!("OUT_DIR"), "/errors_app.rs"));

/// Invalid application input. The glue turns it into the contract's message (the
/// `app` rows of the error table, [`AppErrorKind`]), using the name (or value) exactly
/// as the application gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppError {
    /// `invalid status`
    Status,
    /// `invalid header name: <name>` for the header at this index
    Name(usize),
    /// `invalid header value for <name>` for the header at this index
    Value(usize),
    /// `invalid content-length: <value>` for the header at this index
    ContentLength(usize),
    /// `conflicting content-length`
    ConflictingLength,
}

impl AppError {
    /// The kind of the error (its row of the table), and the index of the header it is
    /// about (0 when it is not about one).
    pub fn kind(self) -> (AppErrorKind, usize) {
        match self {
            AppError::Status => (AppErrorKind::BadStatus, 0),
            AppError::Name(i) => (AppErrorKind::BadName, i),
            AppError::Value(i) => (AppErrorKind::BadValue, i),
            AppError::ContentLength(i) => (AppErrorKind::BadLength, i),
            AppError::ConflictingLength => (AppErrorKind::ConflictingLength, 0),
        }
    }
}

/// How the response is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// One of the `MODE_*` values.
    pub mode: u8,
    /// Close the connection after this response.
    pub close: bool,
    /// The caller appends the body it has (defined body and mode not NONE).
    pub append_body: bool,
    /// The body bytes the framing announces when `mode` is [`MODE_LENGTH`] (the app's
    /// Content-Length, else the body's length); None otherwise.
    pub length: Option<u64>,
}

/// What the application's headers say, once they are validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppHeaders {
    /// The app sent `Date`.
    pub date: bool,
    /// The app sent `Server`.
    pub server: bool,
    /// The app's Content-Length (all of its fields agree).
    pub content_length: Option<u64>,
    /// A `Connection` field has a `close` token.
    pub close: bool,
}

/// A status is three digits, 100-999 (given as a number or a string).
pub fn parse_status(status: &[u8]) -> Option<u16> {
    match status {
        [a @ b'1'..=b'9', b @ b'0'..=b'9', c @ b'0'..=b'9'] => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

/// A field value must not contain CR, LF or NUL (RFC 9110 5.5).
#[inline]
fn valid_value(v: &[u8]) -> bool {
    !v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
}

/// Validates one header as the contract says: the name first, then the value.
#[inline]
fn check(i: usize, h: &HeaderIn<'_>) -> Result<(), AppError> {
    if h.name_wide || !is_token(h.name) {
        return Err(AppError::Name(i));
    }
    if h.value_wide || !valid_value(h.value) {
        return Err(AppError::Value(i));
    }
    Ok(())
}

/// An app content-length = 1*DIGIT, at most 18 digits (so it fits in an i64 and in a
/// Perl IV); None otherwise.
#[inline]
fn app_content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Validates the application's headers exactly as [`serialize_response`] does, in order:
/// each name, then its value, then (for `content-length`) the number and its agreement
/// with earlier ones. Dropped headers (`transfer-encoding`, `connection`) are validated
/// too, but their values are not lengths. `write` is called with each header that goes
/// on the wire.
#[inline]
fn scan_headers<'a>(
    headers: impl IntoIterator<Item = HeaderIn<'a>>,
    mut write: impl FnMut(&HeaderIn<'a>),
) -> Result<AppHeaders, AppError> {
    let mut seen = AppHeaders::default();
    for (i, h) in headers.into_iter().enumerate() {
        let h = &h;
        check(i, h)?;
        let name = h.name;
        // Only these lengths can be one of the special names: skip the comparisons
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"date") => seen.date = true,
            6 if name.eq_ignore_ascii_case(b"server") => seen.server = true,
            10 if name.eq_ignore_ascii_case(b"connection") => {
                seen.close |= h.value.split(|&b| b == b',').any(|t| trim_ows(t).eq_ignore_ascii_case(b"close"));
                continue;
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                let n = app_content_length(h.value).ok_or(AppError::ContentLength(i))?;
                if seen.content_length.is_some_and(|cl| cl != n) {
                    return Err(AppError::ConflictingLength);
                }
                seen.content_length = Some(n);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => continue,
            _ => {}
        }
        write(h);
    }
    Ok(seen)
}

/// `check_headers`: the application's headers validated as [`serialize_response`]
/// validates them (names, values, content-length), nothing built.
pub fn check_headers(headers: &[HeaderIn<'_>]) -> Result<AppHeaders, AppError> {
    scan_headers(headers.iter().copied(), |_| {})
}

/// [`check_headers`] over headers made on the fly (the C ABI's, without a `Vec`).
pub fn check_headers_iter<'a>(headers: impl IntoIterator<Item = HeaderIn<'a>>) -> Result<(), AppError> {
    scan_headers(headers, |_| {}).map(|_| ())
}

#[inline]
fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Decimal digits of `n`.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Writes the response head into `out` (cleared first). `body_len` is the length of the
/// body the app gave (None: streaming). The caller appends the body when
/// `append_body`. `date` is the IMF-fixdate to send unless the app sent its own;
/// `server` the `Server` field's value to send unless the app sent its own (empty:
/// none; a valid field value, as [`check_headers`] checks one).
pub fn serialize_response(
    out: &mut Vec<u8>,
    status: &[u8],
    headers: &[HeaderIn<'_>],
    flags: u32,
    body_len: Option<usize>,
    date: &[u8; IMF_FIXDATE_LEN],
    server: &[u8],
) -> Result<Framing, AppError> {
    out.clear();
    let code = parse_status(status).ok_or(AppError::Status)?;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status);
    out.push(b' ');
    out.extend_from_slice(reason_phrase(code).as_bytes());
    out.extend_from_slice(b"\r\n");

    // App headers as given, except the hop-by-hop ones this server owns
    let seen = scan_headers(headers.iter().copied(), |h| push_field(out, h.name, h.value))?;
    if !seen.date {
        push_field(out, b"Date", date);
    }
    if !seen.server && !server.is_empty() {
        push_field(out, b"Server", server);
    }

    // Framing (RFC 9112 6.3 from the server's side)
    let head = flags & FLAG_HEAD != 0;
    let http10 = flags & FLAG_HTTP10 != 0;
    let (mode, length) = if code < 200 || code == 204 || code == 304 {
        (MODE_NONE, None)
    } else if let Some(n) = seen.content_length {
        (if head { MODE_NONE } else { MODE_LENGTH }, Some(n))
    } else if let Some(n) = body_len {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, n as u64);
        out.extend_from_slice(b"\r\n");
        (if head { MODE_NONE } else { MODE_LENGTH }, Some(n as u64))
    } else if !http10 {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        (if head { MODE_NONE } else { MODE_CHUNKED }, None)
    } else {
        // HTTP/1.0 streaming: the body ends with the connection; after HEAD none follows
        (if head { MODE_NONE } else { MODE_CLOSE }, None)
    };
    let length = if mode == MODE_LENGTH { length } else { None };
    let upgrade = flags & FLAG_UPGRADE != 0;
    let close = !upgrade && (seen.close || flags & FLAG_CLOSE != 0 || mode == MODE_CLOSE);
    if upgrade {
        out.extend_from_slice(b"Connection: Upgrade\r\n");
    } else if close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Framing { mode, close, append_body: body_len.is_some() && mode != MODE_NONE, length })
}

/// The chunk header for `len` data bytes: `<hex>\r\n` (empty data is no chunk at all: the
/// caller sends nothing, since a zero size would end the body).
pub fn chunk_prefix(out: &mut Vec<u8>, len: usize) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = len as u64;
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(n & 15) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// `serialize_chunk` on bytes: the whole chunk, or nothing for empty data.
pub fn serialize_chunk(out: &mut Vec<u8>, data: &[u8]) {
    out.clear();
    if data.is_empty() {
        return;
    }
    chunk_prefix(out, data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Trailer fields validated as `serialize_trailers` validates them: each name, then its
/// value (no Content-Length rules).
pub fn check_trailers(trailers: &[HeaderIn<'_>]) -> Result<(), AppError> {
    trailers.iter().enumerate().try_for_each(|(i, h)| check(i, h))
}

/// The end of a chunked body: the last chunk, the trailer fields, the final CRLF.
pub fn serialize_trailers(out: &mut Vec<u8>, trailers: &[HeaderIn<'_>]) -> Result<(), AppError> {
    check_trailers(trailers)?;
    out.clear();
    out.extend_from_slice(b"0\r\n");
    for h in trailers {
        push_field(out, h.name, h.value);
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}
