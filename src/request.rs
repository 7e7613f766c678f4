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

use crate::chars::{self, is, is_ows, is_tchar, trim_ows, HEX};
use crate::error::ErrorKind;
use crate::known;
use memchr::memchr;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The index of the first byte at or after `from` that is below `below` (at most 0x80)
/// or is DEL (0x7F), if any. Eight bytes at a time: in a word, the lowest byte flagged
/// by either test is exact (a borrow only propagates upwards from a true hit).
#[inline(always)]
fn find_ctl(buf: &[u8], mut i: usize, below: u8) -> Option<usize> {
    while i + 8 <= buf.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&buf[i..i + 8]);
        let x = u64::from_le_bytes(word);
        let low = x.wrapping_sub(ONES * u64::from(below)) & !x & HIGH;
        let y = x ^ (ONES * 0x7f);
        let del = y.wrapping_sub(ONES) & !y & HIGH;
        let hits = low | del;
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    buf[i..].iter().position(|&b| b < below || b == 0x7f).map(|p| i + p)
}

/// The ASCII-lowercase form of the token `buf[s..e]` (no byte >= 0x80, at most
/// `out.len() - 7` bytes) in `out`, a word at a time: a byte in `A..=Z` gets its 0x20
/// bit. Whole words are read while `buf` has them (the bytes after the token are
/// lowercased too and ignored).
#[inline(always)]
fn lowercase_token(buf: &[u8], s: usize, e: usize, out: &mut [u8]) {
    let mut i = s;
    while i < e {
        let x = if i + 8 <= buf.len() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&buf[i..i + 8]);
            u64::from_le_bytes(word)
        } else {
            buf[i..e].iter().rev().fold(0u64, |w, &b| w << 8 | u64::from(b))
        };
        // High bit of each byte: >= 'A', and > 'Z' (ASCII only above 0x7F is masked out)
        let ge_a = (x & !HIGH).wrapping_add(ONES * (0x80 - u64::from(b'A')));
        let gt_z = (x & !HIGH).wrapping_add(ONES * (0x7f - u64::from(b'Z')));
        let upper = ge_a & !gt_z & !x & HIGH;
        out[i - s..i - s + 8].copy_from_slice(&(x | (upper >> 2)).to_le_bytes());
        i += 8;
    }
}

/// How a field line ended.
enum Line {
    /// Valid; the index of its `\n`.
    Done(usize),
    /// Not a valid field line (its end is still to be found).
    Bad,
    /// The buffer ends inside it.
    Incomplete,
}

/// `text/event-stream`, ASCII case-insensitively, anywhere in an Accept value: each `/`
/// (found a word at a time) followed by `e`/`E` is a candidate worth comparing.
#[inline]
fn has_event_stream(v: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"text/event-stream";
    let mut from = 4;
    while let Some(slash) = find_byte(v, from, b'/') {
        if slash + (NEEDLE.len() - 4) > v.len() {
            return false;
        }
        if v[slash + 1] | 0x20 == b'e' && v[slash - 4..slash - 4 + NEEDLE.len()].eq_ignore_ascii_case(NEEDLE) {
            return true;
        }
        from = slash + 1;
    }
    false
}

/// The index of the first `byte` at or after `i`: the first 64 bytes a word at a time
/// (cheaper than a SIMD search's setup on the short strings of a request head), the
/// rest with `memchr`.
#[inline(always)]
fn find(buf: &[u8], i: usize, byte: u8) -> Option<usize> {
    let near = buf.len().min(i.saturating_add(64));
    if let Some(p) = find_byte(&buf[..near], i, byte) {
        return Some(p);
    }
    if near >= buf.len() {
        return None;
    }
    memchr(byte, &buf[near..]).map(|p| near + p)
}

/// The index of the first `byte` at or after `i`, a word at a time.
#[inline(always)]
fn find_byte(buf: &[u8], mut i: usize, byte: u8) -> Option<usize> {
    while i + 8 <= buf.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&buf[i..i + 8]);
        let y = u64::from_le_bytes(word) ^ (ONES * u64::from(byte));
        let hits = y.wrapping_sub(ONES) & !y & HIGH;
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    buf.get(i..)?.iter().position(|&b| b == byte).map(|p| i + p)
}

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

/// Where the bytes of a [`Span`] are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Src {
    /// The input buffer.
    #[default]
    Input,
    /// The parser's scratch buffer.
    Scratch,
    /// A [`crate::known`] string: `start` is its id.
    Known,
}

/// A byte range of the input, of the parser's scratch buffer or a known string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub len: usize,
    pub src: Src,
}

impl Span {
    #[inline(always)]
    fn input(start: usize, end: usize) -> Span {
        Span { start, len: end - start, src: Src::Input }
    }

    #[inline(always)]
    fn scratch(start: usize, len: usize) -> Span {
        Span { start, len, src: Src::Scratch }
    }

    /// The span of a known string (id from [`crate::known`]).
    #[inline(always)]
    pub fn known(id: u16) -> Span {
        Span { start: usize::from(id), len: crate::known::known(id).map_or(0, str::len), src: Src::Known }
    }
}

/// One header field of the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Field {
    /// The lowercased name.
    pub name: Span,
    pub value: Span,
    /// The name's [`crate::known`] id, 0 if it is not a known one.
    pub id: u16,
}

/// A parsed head. Byte values are [`Span`]s, resolved with [`Parser::bytes`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Head {
    /// Bytes up to and including the empty line's `\n` (skipped empty lines included).
    pub consumed: usize,
    pub method: Span,
    /// The method's [`crate::known`] id, 0 if it is not a known one.
    pub method_id: u16,
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
    headers: Vec<Field>,
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

    // request-target: 1*( %x21-7E / %x80-FF ), up to the first SP/CTL/DEL
    i += 1;
    let t0 = i;
    i = find_ctl(line, i, 0x21).unwrap_or(n);
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

    // The query is split off the whole target first (so absolute-form keeps it):
    // everything after the first "?"
    let p1 = s + t1;
    let (q0, query_string) = match find(&buf[..p1], s + t0, b'?') {
        Some(q) => (q, Span::input(q + 1, p1)),
        None => (p1, Span::input(p1, p1)),
    };
    // Target forms (RFC 9112 3.2) of the part before it: origin, asterisk, absolute;
    // authority-form is refused
    let path_part = &buf[s + t0..q0];
    let p0 = if path_part.first() == Some(&b'/') || &line[t0..t1] == b"*" {
        s + t0
    } else {
        match absolute_form_path(path_part) {
            Some(Some(p)) => s + t0 + p,
            Some(None) => return Ok(RequestLine { method, raw_path: None, query_string, http_minor }),
            None => return Err(ErrorKind::BadRequestLine),
        }
    };
    let raw_path = Span::input(p0, q0);
    Ok(RequestLine { method, raw_path: Some(raw_path), query_string, http_minor })
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// The bytes of a span of the last successful parse of `buf`.
    #[inline]
    pub fn bytes<'a>(&'a self, buf: &'a [u8], span: Span) -> &'a [u8] {
        match span.src {
            Src::Input => &buf[span.start..span.start + span.len],
            Src::Scratch => &self.scratch[span.start..span.start + span.len],
            Src::Known => crate::known::known(span.start as u16).unwrap_or("").as_bytes(),
        }
    }

    /// The header list of the last successful parse: `(lowercased name, value)`, in order,
    /// all `cookie` fields merged into the first.
    #[inline]
    pub fn headers(&self) -> &[Field] {
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
        let Some(nl) = find(buf, start, b'\n') else {
            let have = buf.len() - start;
            // A final "\r" may be the start of the line's terminator: it does not count
            let line_have = have - usize::from(have > 0 && buf[buf.len() - 1] == b'\r');
            if over(line_have, limits.max_line) {
                return Err(ErrorKind::UriTooLong);
            }
            if over(have, limits.max_header_size) {
                return Err(ErrorKind::HeadersTooLarge);
            }
            return Ok(Status::Partial);
        };
        let line_end = if nl > start && buf[nl - 1] == b'\r' { nl - 1 } else { nl };

        // 2. The request line is checked as soon as it is complete
        if over(line_end - start, limits.max_line) {
            return Err(ErrorKind::UriTooLong);
        }
        let line = parse_request_line(buf, start, line_end)?;

        // 3-5. Header lines up to the empty line; limits before validity. Each line is
        // read once: its end and its validity come from the same scan.
        let mut info = Info::default();
        let mut pos = nl + 1;
        let mut count = 0usize;
        let mut bad = false;
        let head_end = loop {
            match buf.get(pos) {
                Some(b'\n') => break pos + 1,
                Some(b'\r') if buf.get(pos + 1) == Some(&b'\n') => break pos + 2,
                _ => {}
            }
            count += 1;
            // After a bad line, or past the count limit, only the line's end matters
            let line = if bad || over(count, limits.max_headers) { Line::Bad } else { self.field_line(buf, pos, &mut info) };
            let lnl = match line {
                Line::Done(lnl) => Some(lnl),
                Line::Incomplete => None,
                Line::Bad => {
                    bad |= !over(count, limits.max_headers);
                    find(buf, pos, b'\n')
                }
            };
            let Some(lnl) = lnl else {
                if over(buf.len() - start, limits.max_header_size) {
                    return Err(ErrorKind::HeadersTooLarge);
                }
                return Ok(Status::Partial);
            };
            // Past the size limit the answer is the same whether or not the head is complete
            if over(lnl + 1 - start, limits.max_header_size) {
                return Err(ErrorKind::HeadersTooLarge);
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
            method_id: crate::known::method_id(self.bytes(buf, line.method)),
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
            // RFC 9110 10.1.1: a 100-continue expectation in an HTTP/1.0 request
            // MUST be ignored (such a client does not know interim responses)
            expect_continue: info.expect_continue && !http10,
            host: info.host,
        }))
    }

    /// The field line that starts at `s`: validated, its end found and its information
    /// recorded in one scan.
    #[inline]
    fn field_line(&mut self, buf: &[u8], s: usize, info: &mut Info) -> Line {
        let n = buf.len();
        // field-name ":" with nothing between them (RFC 9112 5.1); obs-fold is refused
        let mut i = s;
        while i < n && is_tchar(buf[i]) {
            i += 1;
        }
        if i == n {
            return Line::Incomplete;
        }
        if i == s || buf[i] != b':' {
            return Line::Bad;
        }
        let colon = i;
        // OWS field-value OWS, up to CRLF or LF; HTAB is the only control byte allowed
        let mut v0 = colon + 1;
        while v0 < n && is_ows(buf[v0]) {
            v0 += 1;
        }
        let mut j = v0;
        let (v1, lnl) = loop {
            let Some(c) = find_ctl(buf, j, 0x20) else { return Line::Incomplete };
            match buf[c] {
                b'\t' => j = c + 1,
                b'\n' => break (c, c),
                b'\r' => match buf.get(c + 1) {
                    Some(b'\n') => break (c, c + 1),
                    Some(_) => return Line::Bad,
                    None => return Line::Incomplete,
                },
                _ => return Line::Bad,
            }
        };
        let mut v1 = v1;
        while v1 > v0 && is_ows(buf[v1 - 1]) {
            v1 -= 1;
        }
        let v = &buf[v0..v1];
        let value = Span::input(v0, v1);
        let raw_name = &buf[s..colon];
        let i = raw_name.len();

        // The name, lowercased: a known id, else a copy in the scratch buffer
        let mut lower = [0u8; known::MAX_NAME_LEN + 7];
        let id = if i <= known::MAX_NAME_LEN {
            lowercase_token(buf, s, colon, &mut lower);
            known::name_id(&lower[..i])
        } else {
            0
        };
        let name = if id != 0 {
            Span::known(id)
        } else {
            let n0 = self.scratch.len();
            self.scratch.extend(raw_name.iter().map(u8::to_ascii_lowercase));
            Span::scratch(n0, i)
        };
        match id {
            known::COOKIE => {
                self.cookies.push(value);
                if info.cookie_at.is_some() {
                    return Line::Done(lnl);
                }
                info.cookie_at = Some(self.headers.len());
            }
            known::HOST => {
                info.host_count += 1;
                info.host.get_or_insert(value);
            }
            known::CONTENT_LENGTH => content_length(v, info),
            known::TRANSFER_ENCODING => {
                info.te_present = true;
                for coding in v.split(|&b| b == b',').map(trim_ows).filter(|c| !c.is_empty()) {
                    info.te_count += 1;
                    if info.te_count == 1 {
                        info.te_chunked = coding.eq_ignore_ascii_case(b"chunked");
                    }
                }
            }
            known::CONNECTION => {
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
            known::UPGRADE => info.upgrade = Some(value),
            known::SEC_WEBSOCKET_KEY => info.ws_key = Some(value),
            known::SEC_WEBSOCKET_VERSION => info.ws_version = Some(value),
            known::ACCEPT => info.sse |= has_event_stream(v),
            known::EXPECT => info.expect_continue |= v.eq_ignore_ascii_case(b"100-continue"),
            _ => {}
        }
        self.headers.push(Field { name, value, id });
        Line::Done(lnl)
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
        self.headers[at].value = Span::scratch(c0, self.scratch.len() - c0);
    }

    fn push_scratch(&mut self, bytes: &[u8]) -> Span {
        let s0 = self.scratch.len();
        self.scratch.extend_from_slice(bytes);
        Span::scratch(s0, bytes.len())
    }

    fn lowercased(&mut self, buf: &[u8], span: Span) -> Span {
        let s0 = self.scratch.len();
        self.scratch.extend(buf[span.start..span.start + span.len].iter().map(u8::to_ascii_lowercase));
        Span::scratch(s0, span.len)
    }

    /// path = raw_path with each `%XX` decoded; character semantics only for well-formed
    /// UTF-8 with a non-ASCII byte.
    fn decode_path(&mut self, buf: &[u8], raw: Span) -> (Span, bool) {
        if raw.src != Src::Input {
            // Only the "/" of an absolute-form target without a path lives there
            return (raw, false);
        }
        let bytes = &buf[raw.start..raw.start + raw.len];
        if find(bytes, 0, b'%').is_none() {
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
        (Span::scratch(s0, self.scratch.len() - s0), utf8)
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
        headers: p.headers().iter().map(|f| (get(f.name), get(f.value))).collect(),
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
