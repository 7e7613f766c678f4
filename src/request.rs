//! `parse_request`: one HTTP/1.1 request head (RFC 9112 2-5), strict.
//!
//! ```text
//! HTTP-message   = start-line CRLF *( field-line CRLF ) CRLF [ message-body ]
//! request-line   = method SP request-target SP HTTP-version
//! field-line     = field-name ":" OWS field-value OWS
//! ```
//!
//! The `httparse` crate tokenizes the head (request line, field lines, the header-count
//! limit) and finds the first byte no valid head could have there. This module keeps what
//! PAGI needs on top: the size limits httparse has not got and their order, the
//! request-target forms and the percent-decoded path, versions other than 1.0/1.1,
//! lowercased names with their known-string ids, merged cookies, and the facts the
//! connection acts on (message length, keep-alive, upgrade, SSE, 100-continue).
//!
//! The exact grammar, the order of the checks and the header information computed here
//! are the contract of `doc/codec.md`; `PAGI::Server::Protocol::HTTP1::PP` is the
//! reference implementation and `t/30-codec-differential.t` compares the two.
//!
//! Results are [`Span`]s: offsets into the input buffer or into the parser's scratch
//! buffer (lowercased names, the percent-decoded path, merged cookies), so a parse makes
//! no allocation once the scratch vectors have grown.

use crate::chars::{self, find, is, trim_ows, HEX};
use crate::error::ErrorKind;
use crate::known;
use httparse::Header;
use memchr::memchr;
use std::mem::MaybeUninit;

/// Header slots httparse fills on the stack; a larger `max_headers` allocates them.
const STACK_HEADERS: usize = 128;

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

/// `text/event-stream`, ASCII case-insensitively, anywhere in an Accept value: each `/`
/// followed by `e`/`E` is a candidate worth comparing.
#[inline]
pub fn has_event_stream(v: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"text/event-stream";
    let mut from = 4;
    while let Some(slash) = v.get(from..).and_then(|rest| find(rest, b'/')).map(|p| from + p) {
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

/// A limit as a length bound (a negative one admits nothing).
#[inline(always)]
fn cap(limit: i64) -> usize {
    usize::try_from(limit).unwrap_or(0)
}

/// `part`'s offset in `s` (a subslice of it).
#[inline(always)]
fn offset(s: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - s.as_ptr() as usize
}

/// What the limits measure, found without judging the syntax (doc/codec.md, "Limits"):
/// the request line's length without its terminator (so far: without a final `\r`), the
/// head's length (up to the first empty line, else all the bytes) and the count of
/// complete field lines.
#[derive(Debug, Clone, Copy)]
struct Extent {
    line: usize,
    head: usize,
    lines: usize,
}

impl Extent {
    /// Measured on `s` (the bytes after skipped empty lines). Only on paths where
    /// httparse's answer does not give the numbers (an error, a head cut by the size
    /// limit).
    fn of(s: &[u8]) -> Extent {
        let Some(nl) = memchr(b'\n', s) else {
            return Extent { line: s.len() - usize::from(s.last() == Some(&b'\r')), head: s.len(), lines: 0 };
        };
        let line = nl - usize::from(nl > 0 && s[nl - 1] == b'\r');
        let (mut p, mut lines) = (nl, 0);
        loop {
            match (s.get(p + 1), s.get(p + 2)) {
                (Some(b'\n'), _) => return Extent { line, head: p + 2, lines },
                (Some(b'\r'), Some(b'\n')) => return Extent { line, head: p + 3, lines },
                _ => {}
            }
            match memchr(b'\n', &s[p + 1..]) {
                Some(q) => {
                    p += 1 + q;
                    lines += 1;
                }
                None => return Extent { line, head: s.len(), lines },
            }
        }
    }

    /// The limits, in order: request line, head size, field-line count.
    fn check(self, limits: &Limits) -> Result<(), ErrorKind> {
        if over(self.line, limits.max_line) {
            return Err(ErrorKind::UriTooLong);
        }
        if over(self.head, limits.max_header_size) || over(self.lines, limits.max_headers) {
            return Err(ErrorKind::HeadersTooLarge);
        }
        Ok(())
    }
}

/// The request-target's parts (RFC 9112 3.2), as offsets in the target.
struct Target {
    /// None: absolute-form without a path, whose raw_path is "/".
    raw_path: Option<(usize, usize)>,
    query: (usize, usize),
}

/// Splits a request-target: the query is everything after the first `?` of the whole
/// target (so absolute-form keeps it; `#` is not special); the part before it must be
/// origin-form, the asterisk, or absolute-form. Authority-form is refused.
fn split_target(t: &[u8]) -> Result<Target, ErrorKind> {
    let (q0, query) = match find(t, b'?') {
        Some(q) => (q, (q + 1, t.len())),
        None => (t.len(), (t.len(), t.len())),
    };
    let path_part = &t[..q0];
    let raw_path = if path_part.first() == Some(&b'/') || t == b"*" {
        Some((0, q0))
    } else {
        match absolute_form_path(path_part) {
            Some(Some(p)) => Some((p, q0)),
            Some(None) => None,
            None => return Err(ErrorKind::BadRequestLine),
        }
    };
    Ok(Target { raw_path, query })
}

/// Where a version httparse refused stands: HTTP-version = "HTTP/" DIGIT "." DIGIT, then
/// the line's end (RFC 9112 2.3).
enum Version {
    /// A prefix of that: wait for the rest.
    Partial,
    /// Not that.
    Bad,
    /// The major version digit, and the offset just after the line's terminator.
    Complete(u8, usize),
}

fn version_at(s: &[u8], at: usize) -> Version {
    let v = &s[at.min(s.len())..];
    for (i, &want) in b"HTTP/9.9".iter().enumerate() {
        let Some(&b) = v.get(i) else { return Version::Partial };
        if !(b == want || want == b'9' && b.is_ascii_digit()) {
            return Version::Bad;
        }
    }
    let major = v[5] - b'0';
    match (v.get(8), v.get(9)) {
        (None, _) | (Some(b'\r'), None) => Version::Partial,
        (Some(b'\n'), _) => Version::Complete(major, at + 9),
        (Some(b'\r'), Some(b'\n')) => Version::Complete(major, at + 10),
        _ => Version::Bad,
    }
}

/// What httparse (and the version rule on top) made of the bytes.
enum Tokens<'b, 'h> {
    Complete { len: usize, minor: u8, headers: &'h [Header<'b>] },
    Partial,
    Error(ErrorKind),
}

/// A field-line error as the contract names it.
fn header_error(e: httparse::Error) -> ErrorKind {
    match e {
        httparse::Error::TooManyHeaders => ErrorKind::HeadersTooLarge,
        _ => ErrorKind::BadHeader,
    }
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
        let s = &buf[start..];

        // httparse reads at most max_header_size bytes: a head not complete within them
        // is too large, whatever follows. It gets max_headers slots, but never more than
        // those bytes can fill (a field line takes at least 3), so a huge limit costs
        // nothing.
        let view = &s[..s.len().min(cap(limits.max_header_size))];
        let n_slots = cap(limits.max_headers).min(view.len() / 3 + 1);
        let mut stack = [const { MaybeUninit::<Header>::uninit() }; STACK_HEADERS];
        let mut heap: Vec<Header> = Vec::new();
        let slots: &mut [MaybeUninit<Header>] = if n_slots <= STACK_HEADERS {
            &mut stack[..n_slots]
        } else {
            heap.reserve_exact(n_slots);
            &mut heap.spare_capacity_mut()[..n_slots]
        };
        let mut again: Vec<Header> = Vec::new();
        let mut req = httparse::Request::new(&mut []);
        let result = req.parse_with_uninit_headers(view, slots);
        let (method, path) = (req.method.unwrap_or(""), req.path);
        // The request line's length once httparse has read the version
        let path_end = path.map(|p| offset(s, p.as_bytes()) + p.len());
        let mut version_end = req.version.and(path_end).map(|e| e + 1 + 8);
        let tokens = match result {
            Ok(httparse::Status::Complete(len)) => {
                Tokens::Complete { len, minor: req.version.unwrap_or(1), headers: &*std::mem::take(&mut req.headers) }
            }
            Ok(httparse::Status::Partial) => Tokens::Partial,
            // A version httparse does not serve: HTTP/1.x above 1.1 is read as HTTP/1.1
            // (RFC 9110 2.5), another major version is 505, anything else 400
            Err(httparse::Error::Version) => match version_at(view, path_end.unwrap_or(0) + 1) {
                Version::Partial => Tokens::Partial,
                Version::Bad => Tokens::Error(ErrorKind::BadRequestLine),
                Version::Complete(1, line_end) => {
                    version_end = path_end.map(|e| e + 1 + 8);
                    again.resize(n_slots, httparse::EMPTY_HEADER);
                    match httparse::parse_headers(&view[line_end..], &mut again) {
                        Ok(httparse::Status::Complete((n, headers))) => {
                            Tokens::Complete { len: line_end + n, minor: 1, headers }
                        }
                        Ok(httparse::Status::Partial) => Tokens::Partial,
                        Err(e) => Tokens::Error(header_error(e)),
                    }
                }
                Version::Complete(..) => Tokens::Error(ErrorKind::UnsupportedVersion),
            },
            // After the version, a bad terminator is the request line's; else a field line's
            Err(httparse::Error::NewLine) if version_end.is_some_and(|e| {
                let t = &view[e..];
                t.starts_with(b"\n") || t.starts_with(b"\r\n")
            }) => Tokens::Error(ErrorKind::BadHeader),
            Err(e @ (httparse::Error::HeaderName | httparse::Error::HeaderValue | httparse::Error::TooManyHeaders)) => {
                Tokens::Error(header_error(e))
            }
            Err(_) => Tokens::Error(ErrorKind::BadRequestLine),
        };

        // 1. The limits, on what the bytes measure; 2. the syntax (httparse's verdict and
        // the target form, judged as soon as the target's SP has arrived); 3. semantics
        let (len, minor, fields) = match tokens {
            Tokens::Complete { len, minor, headers } => {
                // (the head fits in the view, so in max_header_size)
                Extent { line: version_end.unwrap_or(0), head: len, lines: headers.len() }.check(limits)?;
                (len, minor, headers)
            }
            Tokens::Partial => {
                let extent = if view.len() < s.len() {
                    Extent::of(s)
                } else {
                    // Partial: no field line beyond the slots, so beyond max_headers
                    let so_far = s.len() - usize::from(s.last() == Some(&b'\r'));
                    Extent { line: version_end.unwrap_or(so_far), head: s.len(), lines: 0 }
                };
                extent.check(limits)?;
                if let Some(p) = path {
                    split_target(p.as_bytes())?;
                }
                return Ok(Status::Partial);
            }
            Tokens::Error(kind) => {
                Extent::of(s).check(limits)?;
                if let Some(p) = path {
                    split_target(p.as_bytes())?;
                }
                return Err(kind);
            }
        };
        let target = path.unwrap_or("").as_bytes();
        let t0 = start + offset(s, target);
        let parts = split_target(target)?;

        let mut info = Info::default();
        for h in fields {
            self.field(buf, h, &mut info);
        }

        // Semantics: host, then message length (RFC 9112 3.2, 6.3)
        let http10 = minor == 0;
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
        // path = raw_path percent-decoded; characters when it has a byte >= 0x80 (then
        // well-formed UTF-8, as httparse checked the target) or decodes to UTF-8
        let (raw_path, (path, path_utf8)) = match parts.raw_path {
            Some((a, b)) => {
                let (raw, bytes) = (Span::input(t0 + a, t0 + b), &buf[t0 + a..t0 + b]);
                (raw, if find(bytes, b'%').is_none() { (raw, !bytes.is_ascii()) } else { self.decode_path(bytes) })
            }
            None => {
                // absolute-form without a path
                let slash = self.push_scratch(b"/");
                (slash, (slash, false))
            }
        };
        let method_span = Span::input(start + offset(s, method.as_bytes()), start + offset(s, method.as_bytes()) + method.len());

        Ok(Status::Complete(Head {
            consumed: start + len,
            method: method_span,
            method_id: crate::known::method_id(method.as_bytes()),
            path,
            path_utf8,
            raw_path,
            query_string: Span::input(t0 + parts.query.0, t0 + parts.query.1),
            http_minor: minor.min(1),
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

    /// One field line httparse read: its name lowercased (a known id, else a copy in the
    /// scratch buffer) and its information recorded.
    #[inline]
    fn field(&mut self, buf: &[u8], h: &Header, info: &mut Info) {
        let raw = h.name.as_bytes();
        let v = h.value;
        let at = offset(buf, v);
        let value = Span::input(at, at + v.len());
        let mut lower = [0u8; 32];
        let id = match chars::lowercase_token(buf, offset(buf, raw), raw.len(), &mut lower) {
            Some(l) if l.len() <= known::MAX_NAME_LEN => known::name_id(l),
            _ => 0,
        };
        let name = if id != 0 {
            Span::known(id)
        } else {
            let n0 = self.scratch.len();
            self.scratch.extend(raw.iter().map(u8::to_ascii_lowercase));
            Span::scratch(n0, raw.len())
        };
        match id {
            known::COOKIE => {
                self.cookies.push(value);
                if info.cookie_at.is_some() {
                    return;
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
    }

    /// All `cookie` fields become one, at the first one's place, joined with "; ".
    #[inline]
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

    /// `raw` (a raw path with a `%`) with each `%XX` decoded, in the scratch buffer;
    /// character semantics only for well-formed UTF-8 with a non-ASCII byte.
    fn decode_path(&mut self, raw: &[u8]) -> (Span, bool) {
        let s0 = self.scratch.len();
        let utf8 = percent_decode(raw, &mut self.scratch);
        (Span::scratch(s0, self.scratch.len() - s0), utf8)
    }
}

/// Appends `raw` to `out` with each `%XX` (two hex digits, either case) decoded to its
/// byte; a `%` without two hex digits stays literal. Returns whether the decoded bytes
/// have a non-ASCII byte and are well-formed UTF-8 (the path is then a character
/// string). doc/codec.md: the `path` of both codecs, HTTP/1.1 and HTTP/2.
pub fn percent_decode(raw: &[u8], out: &mut Vec<u8>) -> bool {
    let s0 = out.len();
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' && i + 2 < raw.len() && is(raw[i + 1], HEX) && is(raw[i + 2], HEX) {
            out.push(chars::hex_value(raw[i + 1]) << 4 | chars::hex_value(raw[i + 2]));
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    let decoded = &out[s0..];
    !decoded.is_ascii() && std::str::from_utf8(decoded).is_ok()
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
