//! `parse_request`: one HTTP/1.1 request head (RFC 9112 2-5), strict, in one pass.
//!
//! ```text
//! HTTP-message   = start-line CRLF *( field-line CRLF ) CRLF [ message-body ]
//! request-line   = method SP request-target SP HTTP-version
//! field-line     = field-name ":" OWS field-value OWS
//! ```
//!
//! The exact grammar, the order of the limit checks and the header information computed
//! here are the contract of `doc/codec.md`; `PAGI::Server::Protocol::HTTP1::PP` is the
//! reference implementation and `t/30-codec-differential.t` compares the two.
//!
//! Results are [`Span`]s: offsets into the input buffer or into the parser's scratch
//! buffer (lowercased names, the percent-decoded path, merged cookies), so a parse makes
//! no allocation once the scratch vectors have grown.

use crate::chars::{self, contains_ignore_ascii_case, is, is_ows, is_tchar, trim_ows, HEX, TARGET, VALUE};
use crate::error::ErrorKind;
use memchr::memchr;

/// The limits a server passes in (doc/codec.md: defaults 16384, 100, 8192).
///
/// They are signed because they come from Perl scalars: a negative limit rejects
/// everything, exactly like the numeric `>` of the Perl implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the head, from the request line to the final `\n` inclusive.
    pub max_header_size: i64,
    /// Header lines (before cookie merging).
    pub max_headers: i64,
    /// Bytes of the request line without its terminator.
    pub max_line: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_header_size: 16384, max_headers: 100, max_line: 8192 }
    }
}

/// `n > limit` with Perl's numeric semantics for a negative limit.
#[inline(always)]
fn over(n: usize, limit: i64) -> bool {
    limit < 0 || n as u64 > limit as u64
}

/// Complete or not yet (httparse's `Status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status<T> {
    Complete(T),
    Partial,
}

impl<T> Status<T> {
    pub fn is_partial(&self) -> bool {
        matches!(self, Status::Partial)
    }
    pub fn complete(self) -> Option<T> {
        match self {
            Status::Complete(t) => Some(t),
            Status::Partial => None,
        }
    }
}

/// A byte range of the input (`scratch == false`) or of the parser's scratch buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub len: usize,
    pub scratch: bool,
}

impl Span {
    #[inline(always)]
    fn input(start: usize, end: usize) -> Span {
        Span { start, len: end - start, scratch: false }
    }
}

/// A parsed head. Byte values are [`Span`]s, resolved with [`Parser::bytes`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Head {
    /// Bytes up to and including the empty line's `\n` (skipped empty lines included).
    pub consumed: usize,
    pub method: Span,
    /// The percent-decoded path (bytes).
    pub path: Span,
    /// The path has a byte >= 0x80 and is well-formed UTF-8 (RFC 3629): the Perl value
    /// is a character string (`utf8::decode`); otherwise it stays bytes.
    pub path_utf8: bool,
    pub raw_path: Span,
    pub query_string: Span,
    /// 1 for `HTTP/1.1`, 0 for `HTTP/1.0`.
    pub http_minor: u8,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub keep_alive: bool,
    pub upgrade: Option<Span>,
    pub ws_key: Option<Span>,
    pub ws_version: Option<Span>,
    pub sse: bool,
    pub expect_continue: bool,
    pub host: Option<Span>,
}

/// A reusable parser: only scratch space, no state between calls.
#[derive(Debug, Default)]
pub struct Parser {
    scratch: Vec<u8>,
    headers: Vec<(Span, Span)>,
    cookies: Vec<Span>,
}

/// What the header lines say, gathered while they are read.
#[derive(Default)]
struct Info {
    host: Option<Span>,
    host_count: usize,
    content_length: Option<u64>,
    cl_error: Option<ErrorKind>,
    te_present: bool,
    te_count: usize,
    te_chunked: bool,
    conn_close: bool,
    conn_keep_alive: bool,
    conn_upgrade: bool,
    upgrade: Option<Span>,
    ws_key: Option<Span>,
    ws_version: Option<Span>,
    sse: bool,
    expect_continue: bool,
    cookie_at: Option<usize>,
}

/// The request line's pieces (offsets into the input).
struct RequestLine {
    method: Span,
    /// None: absolute-form without a path, whose raw_path is "/".
    raw_path: Option<Span>,
    query_string: Span,
    http_minor: u8,
}

/// Where the path of an absolute-form target starts, if `target` is one:
/// `scheme "://" authority [path]`, scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
/// `Some(None)` is absolute-form without a path (the path is then `/`).
fn absolute_form_path(target: &[u8]) -> Option<Option<usize>> {
    let first = *target.first()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    let mut i = 1;
    while i < target.len() && (target[i].is_ascii_alphanumeric() || matches!(target[i], b'+' | b'-' | b'.')) {
        i += 1;
    }
    if !target[i..].starts_with(b"://") {
        return None;
    }
    let authority = i + 3;
    Some(memchr(b'/', &target[authority..]).map(|p| authority + p))
}

/// request-line = method SP request-target SP HTTP-version, on `buf[s..e]` (no terminator).
fn parse_request_line(buf: &[u8], s: usize, e: usize) -> Result<RequestLine, ErrorKind> {
    let line = &buf[s..e];
    let n = line.len();

    // method = token
    let mut i = 0;
    while i < n && is_tchar(line[i]) {
        i += 1;
    }
    if i == 0 || i == n || line[i] != b' ' {
        return Err(ErrorKind::BadRequestLine);
    }
    let method = Span::input(s, s + i);

    // request-target: 1*( %x21-7E / %x80-FF )
    i += 1;
    let t0 = i;
    while i < n && is(line[i], TARGET) {
        i += 1;
    }
    if i == t0 || i == n || line[i] != b' ' {
        return Err(ErrorKind::BadRequestLine);
    }
    let t1 = i;

    // HTTP-version = "HTTP/" DIGIT "." DIGIT; only 1.1 and 1.0 are served
    let version = &line[i + 1..];
    let http_minor = match version {
        b"HTTP/1.1" => 1,
        b"HTTP/1.0" => 0,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            return Err(ErrorKind::UnsupportedVersion)
        }
        _ => return Err(ErrorKind::BadRequestLine),
    };

    // Target forms (RFC 9112 3.2): origin, asterisk, absolute; authority-form is refused
    let target = &line[t0..t1];
    let p0 = if target[0] == b'/' || target == b"*" {
        s + t0
    } else {
        match absolute_form_path(target) {
            Some(Some(p)) => s + t0 + p,
            Some(None) => {
                let end = Span::input(s + t1, s + t1);
                return Ok(RequestLine { method, raw_path: None, query_string: end, http_minor });
            }
            None => return Err(ErrorKind::BadRequestLine),
        }
    };
    // raw_path ends at the first "?"; the query is everything after it
    let p1 = s + t1;
    let (raw_path, query_string) = match memchr(b'?', &buf[p0..p1]) {
        Some(q) => (Span::input(p0, p0 + q), Span::input(p0 + q + 1, p1)),
        None => (Span::input(p0, p1), Span::input(p1, p1)),
    };
    Ok(RequestLine { method, raw_path: Some(raw_path), query_string, http_minor })
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// The bytes of a span of the last successful parse of `buf`.
    #[inline]
    pub fn bytes<'a>(&'a self, buf: &'a [u8], span: Span) -> &'a [u8] {
        let src = if span.scratch { &self.scratch[..] } else { buf };
        &src[span.start..span.start + span.len]
    }

    /// The header list of the last successful parse: `(lowercased name, value)`, in order,
    /// all `cookie` fields merged into the first.
    #[inline]
    pub fn headers(&self) -> &[(Span, Span)] {
        &self.headers
    }

    /// The scratch buffer that `scratch` spans point into.
    #[inline]
    pub fn scratch(&self) -> &[u8] {
        &self.scratch
    }

    /// Parses one request head at the start of `buf`.
    pub fn parse(&mut self, buf: &[u8], limits: &Limits) -> Result<Status<Head>, ErrorKind> {
        self.scratch.clear();
        self.headers.clear();
        self.cookies.clear();

        // Empty lines before the request line are skipped (RFC 9112 2.2)
        let mut start = 0;
        loop {
            match buf.get(start) {
                Some(b'\n') => start += 1,
                Some(b'\r') if buf.get(start + 1) == Some(&b'\n') => start += 2,
                _ => break,
            }
        }

        // 1. No complete request line yet
        let Some(rl) = memchr(b'\n', &buf[start..]) else {
            let have = buf.len() - start;
            if over(have, limits.max_line) {
                return Err(ErrorKind::UriTooLong);
            }
            if over(have, limits.max_header_size) {
                return Err(ErrorKind::HeadersTooLarge);
            }
            return Ok(Status::Partial);
        };
        let nl = start + rl;
        let line_end = if nl > start && buf[nl - 1] == b'\r' { nl - 1 } else { nl };

        // 2. The request line is checked as soon as it is complete
        if over(line_end - start, limits.max_line) {
            return Err(ErrorKind::UriTooLong);
        }
        let line = parse_request_line(buf, start, line_end)?;

        // 3-5. Header lines up to the empty line; limits before validity
        let mut info = Info::default();
        let mut pos = nl + 1;
        let mut count = 0usize;
        let mut bad = false;
        let head_end = loop {
            let Some(off) = memchr(b'\n', &buf[pos..]) else {
                if over(buf.len() - start, limits.max_header_size) {
                    return Err(ErrorKind::HeadersTooLarge);
                }
                return Ok(Status::Partial);
            };
            let lnl = pos + off;
            let le = if lnl > pos && buf[lnl - 1] == b'\r' { lnl - 1 } else { lnl };
            if le == pos {
                break lnl + 1;
            }
            // Past the size limit the answer is the same whether or not the head is complete
            if over(lnl + 1 - start, limits.max_header_size) {
                return Err(ErrorKind::HeadersTooLarge);
            }
            count += 1;
            if !bad && !over(count, limits.max_headers) && !self.field_line(buf, pos, le, &mut info) {
                bad = true;
            }
            pos = lnl + 1;
        };
        if over(head_end - start, limits.max_header_size) || over(count, limits.max_headers) {
            return Err(ErrorKind::HeadersTooLarge);
        }
        if bad {
            return Err(ErrorKind::BadHeader);
        }

        // 6. Semantics: host, then message length (RFC 9112 3.2, 6.3)
        let http10 = line.http_minor == 0;
        if if http10 { info.host_count > 1 } else { info.host_count != 1 } {
            return Err(ErrorKind::BadHost);
        }
        if let Some(e) = info.cl_error {
            return Err(e);
        }
        let mut chunked = false;
        if info.te_present {
            if info.content_length.is_some() {
                return Err(ErrorKind::ConflictingLength);
            }
            if info.te_count == 0 {
                return Err(ErrorKind::BadTransferEncoding);
            }
            if info.te_count != 1 || !info.te_chunked {
                return Err(ErrorKind::UnsupportedTransferEncoding);
            }
            chunked = true;
        }

        self.merge_cookies(buf, &info);
        let upgrade = match (info.conn_upgrade, info.upgrade) {
            (true, Some(u)) => Some(self.lowercased(buf, u)),
            _ => None,
        };
        let raw_path = match line.raw_path {
            Some(span) => span,
            None => self.push_scratch(b"/"),
        };
        let (path, path_utf8) = self.decode_path(buf, raw_path);

        Ok(Status::Complete(Head {
            consumed: head_end,
            method: line.method,
            path,
            path_utf8,
            raw_path,
            query_string: line.query_string,
            http_minor: line.http_minor,
            content_length: info.content_length,
            chunked,
            keep_alive: !info.conn_close && (!http10 || info.conn_keep_alive),
            upgrade,
            ws_key: info.ws_key,
            ws_version: info.ws_version,
            sse: info.sse,
            expect_continue: info.expect_continue,
            host: info.host,
        }))
    }

    /// One field line `buf[s..e]` (no terminator); false when it is not a valid field-line.
    #[inline]
    fn field_line(&mut self, buf: &[u8], s: usize, e: usize, info: &mut Info) -> bool {
        let line = &buf[s..e];
        // field-name ":" with nothing between them (RFC 9112 5.1); obs-fold is refused
        let mut i = 0;
        while i < line.len() && is_tchar(line[i]) {
            i += 1;
        }
        if i == 0 || i == line.len() || line[i] != b':' {
            return false;
        }
        let mut v0 = i + 1;
        while v0 < line.len() && is_ows(line[v0]) {
            v0 += 1;
        }
        let mut v1 = line.len();
        while v1 > v0 && is_ows(line[v1 - 1]) {
            v1 -= 1;
        }
        if !line[v0..v1].iter().all(|&b| is(b, VALUE)) {
            return false;
        }
        let value = Span::input(s + v0, s + v1);

        let n0 = self.scratch.len();
        self.scratch.extend(line[..i].iter().map(u8::to_ascii_lowercase));
        let name = Span { start: n0, len: i, scratch: true };
        let v = &buf[s + v0..s + v1];
        match &self.scratch[n0..] {
            b"cookie" => {
                self.cookies.push(value);
                if info.cookie_at.is_some() {
                    self.scratch.truncate(n0);
                    return true;
                }
                info.cookie_at = Some(self.headers.len());
            }
            b"host" => {
                info.host_count += 1;
                info.host.get_or_insert(value);
            }
            b"content-length" => content_length(v, info),
            b"transfer-encoding" => {
                info.te_present = true;
                for coding in v.split(|&b| b == b',').map(trim_ows).filter(|c| !c.is_empty()) {
                    info.te_count += 1;
                    if info.te_count == 1 {
                        info.te_chunked = coding.eq_ignore_ascii_case(b"chunked");
                    }
                }
            }
            b"connection" => {
                for token in v.split(|&b| b == b',').map(trim_ows) {
                    if token.eq_ignore_ascii_case(b"close") {
                        info.conn_close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        info.conn_keep_alive = true;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        info.conn_upgrade = true;
                    }
                }
            }
            b"upgrade" => info.upgrade = Some(value),
            b"sec-websocket-key" => info.ws_key = Some(value),
            b"sec-websocket-version" => info.ws_version = Some(value),
            b"accept" => info.sse |= contains_ignore_ascii_case(v, b"text/event-stream"),
            b"expect" => info.expect_continue |= v.eq_ignore_ascii_case(b"100-continue"),
            _ => {}
        }
        self.headers.push((name, value));
        true
    }

    /// All `cookie` fields become one, at the first one's place, joined with "; ".
    fn merge_cookies(&mut self, buf: &[u8], info: &Info) {
        let Some(at) = info.cookie_at else { return };
        if self.cookies.len() < 2 {
            return;
        }
        let c0 = self.scratch.len();
        for (k, &c) in self.cookies.iter().enumerate() {
            if k > 0 {
                self.scratch.extend_from_slice(b"; ");
            }
            self.scratch.extend_from_slice(&buf[c.start..c.start + c.len]);
        }
        self.headers[at].1 = Span { start: c0, len: self.scratch.len() - c0, scratch: true };
    }

    fn push_scratch(&mut self, bytes: &[u8]) -> Span {
        let s0 = self.scratch.len();
        self.scratch.extend_from_slice(bytes);
        Span { start: s0, len: bytes.len(), scratch: true }
    }

    fn lowercased(&mut self, buf: &[u8], span: Span) -> Span {
        let s0 = self.scratch.len();
        self.scratch.extend(buf[span.start..span.start + span.len].iter().map(u8::to_ascii_lowercase));
        Span { start: s0, len: span.len, scratch: true }
    }

    /// path = raw_path with each `%XX` decoded; character semantics only for well-formed
    /// UTF-8 with a non-ASCII byte.
    fn decode_path(&mut self, buf: &[u8], raw: Span) -> (Span, bool) {
        if raw.scratch {
            // Only the "/" of an absolute-form target without a path lives there
            return (raw, false);
        }
        let bytes = &buf[raw.start..raw.start + raw.len];
        if memchr(b'%', bytes).is_none() {
            let utf8 = !bytes.is_ascii() && std::str::from_utf8(bytes).is_ok();
            return (raw, utf8);
        }
        let s0 = self.scratch.len();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'%' && i + 2 < bytes.len() && is(bytes[i + 1], HEX) && is(bytes[i + 2], HEX) {
                self.scratch.push(chars::hex_value(bytes[i + 1]) << 4 | chars::hex_value(bytes[i + 2]));
                i += 3;
            } else {
                self.scratch.push(b);
                i += 1;
            }
        }
        let decoded = &self.scratch[s0..];
        let utf8 = !decoded.is_ascii() && std::str::from_utf8(decoded).is_ok();
        (Span { start: s0, len: self.scratch.len() - s0, scratch: true }, utf8)
    }
}

/// content-length = 1*DIGIT, possibly as a list of equal values (RFC 9110 8.6): each
/// element at most 18 digits; the first problem, in order, is the error.
fn content_length(v: &[u8], info: &mut Info) {
    for element in v.split(|&b| b == b',').map(trim_ows) {
        if element.is_empty() || element.len() > 18 || !element.iter().all(u8::is_ascii_digit) {
            info.cl_error.get_or_insert(ErrorKind::BadContentLength);
            continue;
        }
        let n = element.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        match info.content_length {
            Some(cl) if cl != n => {
                info.cl_error.get_or_insert(ErrorKind::ConflictingLength);
            }
            _ => info.content_length = Some(n),
        }
    }
}

/// An owned parse result: convenient for tests and tools, not used by the XS glue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub consumed: usize,
    pub method: Vec<u8>,
    pub path: Vec<u8>,
    pub path_utf8: bool,
    pub raw_path: Vec<u8>,
    pub query_string: Vec<u8>,
    pub http_version: &'static str,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub keep_alive: bool,
    pub upgrade: Option<Vec<u8>>,
    pub ws_key: Option<Vec<u8>>,
    pub ws_version: Option<Vec<u8>>,
    pub sse: bool,
    pub expect_continue: bool,
    pub host: Option<Vec<u8>>,
}

/// [`Parser::parse`] with a fresh parser and owned results.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Status<Request>, ErrorKind> {
    let mut p = Parser::new();
    let head = match p.parse(buf, limits)? {
        Status::Partial => return Ok(Status::Partial),
        Status::Complete(h) => h,
    };
    let get = |s: Span| p.bytes(buf, s).to_vec();
    Ok(Status::Complete(Request {
        consumed: head.consumed,
        method: get(head.method),
        path: get(head.path),
        path_utf8: head.path_utf8,
        raw_path: get(head.raw_path),
        query_string: get(head.query_string),
        http_version: if head.http_minor == 1 { "1.1" } else { "1.0" },
        headers: p.headers().iter().map(|&(n, v)| (get(n), get(v))).collect(),
        content_length: head.content_length,
        chunked: head.chunked,
        keep_alive: head.keep_alive,
        upgrade: head.upgrade.map(get),
        ws_key: head.ws_key.map(get),
        ws_version: head.ws_version.map(get),
        sse: head.sse,
        expect_continue: head.expect_continue,
        host: head.host.map(get),
    }))
}
