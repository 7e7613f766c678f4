//! The flat C ABI the XS glue (`perl/XS.xs`) calls. Declared for C in
//! `perl/pagi_server.h`; the two must change together.
//!
//! Rules of this boundary:
//! - every entry runs inside `guard` (`catch_unwind`): a panic becomes
//!   [`PAGI_PANIC`] and the glue croaks; nothing unwinds into C;
//! - results are plain structs of integers and `(pointer, length)` pairs that point into
//!   the caller's input or into per-thread scratch space owned by this module, valid until
//!   the next call on the same thread;
//! - no Perl, no IO (except `pagi_connection_info` and `pagi_accept`).

use crate::chunked::decode_chunked;
use crate::conninfo::{accept, connection_info, Endpoint};
use crate::date::http_date;
use crate::deflate;
use crate::error::ErrorKind;
use crate::h2::{self, Event, H2Error, H2Refusal, SendError};
use crate::request::{Limits, Parser, Span, Status};
use crate::response::{
    check_headers, check_headers_iter, chunk_prefix, parse_status, serialize_response, serialize_trailers, AppError, AppErrorKind, Framing, HeaderIn,
};
use crate::status::reason_phrase;
use crate::ws::{self, WsError};
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

/// A Rust panic was caught; the glue croaks.
pub const PAGI_PANIC: c_int = -1;
/// Need more bytes.
pub const PAGI_PARTIAL: c_int = 0;
/// Success.
pub const PAGI_DONE: c_int = 1;
/// Invalid input: the `error` field says which kind.
pub const PAGI_ERROR: c_int = 2;

/// Declares the structs shared with C (`#[repr(C)]`) and [`LAYOUT`], every struct's size
/// and every field's offset and size as this crate lays them out, from the same
/// declarations, so the list cannot leave a field out. `perl/pagi_server.h` declares
/// the C side and its own list (`PAGI_LAYOUT`); the glue's BOOT hands that list to
/// [`pagi_abi_check`], which compares the two row by row.
macro_rules! abi_structs {
    ($(
        $(#[$meta:meta])*
        pub struct $name:ident as $cname:literal {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    )*) => {
        $(
            $(#[$meta])*
            #[repr(C)]
            pub struct $name {
                $( $(#[$fmeta])* pub $field: $ty ),*
            }
        )*

        /// `(C name, offset, size)`: each shared struct (offset 0, its size), then each of
        /// its fields, in declaration order.
        pub const LAYOUT: &[(&str, usize, usize)] = &[
            $(
                ($cname, 0, std::mem::size_of::<$name>()),
                $( (concat!($cname, ".", stringify!($field)), std::mem::offset_of!($name, $field), std::mem::size_of::<$ty>()), )*
            )*
        ];
    };
}

abi_structs! {
    /// Bytes: `ptr == NULL` means undef.
    #[derive(Debug, Clone, Copy)]
    pub struct PagiSpan as "pagi_span" {
        pub ptr: *const u8,
        pub len: usize,
    }

    /// One header of a parsed request.
    #[derive(Debug, Clone, Copy)]
    pub struct PagiField as "pagi_field" {
        pub name: PagiSpan,
        pub value: PagiSpan,
        /// The name's id in the known-string table (`pagi_known_string`), 0 if unknown.
        pub name_id: u32,
    }

    /// The result of `pagi_parse_request`.
    #[derive(Debug)]
    pub struct PagiRequest as "pagi_request" {
        pub method: PagiSpan,
        pub path: PagiSpan,
        pub raw_path: PagiSpan,
        pub query_string: PagiSpan,
        pub upgrade: PagiSpan,
        pub ws_key: PagiSpan,
        pub ws_version: PagiSpan,
        pub host: PagiSpan,
        pub headers: *const PagiField,
        pub n_headers: usize,
        pub consumed: usize,
        /// -1: undef.
        pub content_length: i64,
        /// The method's id in the known-string table, 0 if unknown.
        pub method_id: u32,
        /// An error kind code (`PAGI_ERROR`), else 0.
        pub error: i32,
        pub http_minor: u8,
        pub chunked: u8,
        pub keep_alive: u8,
        pub sse: u8,
        pub expect_continue: u8,
        /// The path is well-formed UTF-8 with a non-ASCII byte: make it a character string.
        pub path_utf8: u8,
    }

    /// A range of the input.
    #[derive(Debug, Clone, Copy)]
    pub struct PagiRange as "pagi_range" {
        pub start: usize,
        pub len: usize,
    }

    /// The result of `pagi_decode_chunked`.
    #[derive(Debug)]
    pub struct PagiChunked as "pagi_chunked" {
        pub ranges: *const PagiRange,
        pub n_ranges: usize,
        /// Sum of the ranges' lengths.
        pub data_len: usize,
        pub consumed: usize,
        pub state: i64,
        pub error: i32,
    }

    /// One header given by the application. `wide`: bit 1 the name, bit 2 the value had a
    /// character above 0xFF.
    #[derive(Debug, Clone, Copy)]
    pub struct PagiFieldIn as "pagi_field_in" {
        pub name: *const u8,
        pub name_len: usize,
        pub value: *const u8,
        pub value_len: usize,
        pub wide: u32,
    }

    /// The result of `pagi_serialize_response` / `pagi_serialize_trailers` /
    /// `pagi_check_headers`.
    #[derive(Debug)]
    pub struct PagiResponse as "pagi_response" {
        pub head: *const u8,
        pub head_len: usize,
        /// `PAGI_ERROR`: one of the `PAGI_BAD_*` / `PAGI_CONFLICTING_LENGTH` codes (about
        /// header `error_index` where that applies).
        pub error: i32,
        pub error_index: usize,
        /// The body length the framing announces when `mode` is 1; -1 (undef) otherwise.
        pub length: i64,
        pub mode: i32,
        pub close: u8,
        pub append_body: u8,
    }

    /// One end of a connection: kind 0 other family, 1 inet (`text` = host, `port`), 2 unix
    /// (`text` = path).
    #[derive(Debug)]
    pub struct PagiEndpoint as "pagi_endpoint" {
        pub kind: i32,
        pub port: i32,
        pub len: usize,
        pub text: [u8; 112],
    }

    /// The result of `pagi_connection_info`.
    #[derive(Debug)]
    pub struct PagiConnInfo as "pagi_conninfo" {
        pub peer: PagiEndpoint,
        pub local: PagiEndpoint,
    }

    /// The result of `pagi_accept`: the new descriptor and its ends, or the errno.
    #[derive(Debug)]
    pub struct PagiAccepted as "pagi_accepted" {
        pub fd: i32,
        pub err: i32,
        pub peer: PagiEndpoint,
        pub local: PagiEndpoint,
    }

    /// The result of `pagi_ws_parse_frame`: where the (masked) payload is in the input.
    #[derive(Debug)]
    pub struct PagiWsFrame as "pagi_ws_frame" {
        pub payload_offset: usize,
        pub payload_len: usize,
        pub consumed: usize,
        /// A WebSocket error code (`PAGI_ERROR`), else 0.
        pub error: i32,
        pub fin: u8,
        pub opcode: u8,
        /// RSV1: a compressed message's first frame (only when allowed).
        pub rsv1: u8,
        pub key: [u8; 4],
    }

    /// `pagi_h2_new`'s settings (doc/codec.md, HTTP/2 `new_session`).
    #[derive(Debug)]
    pub struct PagiH2Settings as "pagi_h2_settings" {
        pub rst_burst: u64,
        pub rst_rate: u64,
        pub max_headers: u64,
        /// The HTTP2-Settings value of an h2c upgrade; NULL: no upgrade.
        pub upgrade: PagiSpan,
        pub max_concurrent_streams: u32,
        pub initial_window_size: u32,
        pub max_frame_size: u32,
        pub max_header_list_size: u32,
        pub enable_connect_protocol: u8,
        pub enable_push: u8,
        pub upgrade_head: u8,
    }

    /// One HTTP/2 event (`PAGI_H2_EV_*`). A request's parts are set for
    /// `PAGI_H2_EV_REQUEST` without a refusal; `fields` for a request and trailers.
    #[derive(Debug)]
    pub struct PagiH2Event as "pagi_h2_event" {
        pub data: PagiSpan,
        pub method: PagiSpan,
        pub path: PagiSpan,
        pub raw_path: PagiSpan,
        pub query_string: PagiSpan,
        pub scheme: PagiSpan,
        pub protocol: PagiSpan,
        pub fields: *const PagiField,
        pub n_fields: usize,
        /// -1: undef.
        pub content_length: i64,
        pub kind: i32,
        /// The stream id; the last stream id for GOAWAY.
        pub stream_id: i32,
        /// RESET, GOAWAY: the error code; ERROR: an h2 kind code; REQUEST: an h2req
        /// kind code when the request is refused, else 0.
        pub code: u32,
        pub end_stream: u8,
        pub sse: u8,
        pub expect_continue: u8,
        pub path_utf8: u8,
    }

    /// `pagi_deflate_new`'s parameters (doc/codec.md, permessage-deflate `new_deflate`).
    #[derive(Debug, Clone, Copy)]
    pub struct PagiDeflateParams as "pagi_deflate_params" {
        pub level: i32,
        pub mem_level: i32,
        pub server_max_window_bits: u8,
        pub server_no_context_takeover: u8,
        pub client_no_context_takeover: u8,
    }

    /// One row of a layout list (see [`LAYOUT`]).
    #[derive(Debug, Clone, Copy)]
    pub struct PagiLayout as "pagi_layout" {
        pub name: *const c_char,
        pub offset: usize,
        pub size: usize,
    }
}

/// `pagi_error_info`: the HTTP/1.1 codec's table ([`ErrorKind`]).
pub const PAGI_TABLE_HTTP: c_int = 0;
/// `pagi_error_info`: the WebSocket codec's table ([`WsError`]).
pub const PAGI_TABLE_WS: c_int = 1;
/// `pagi_error_info`: the HTTP/2 connection and stream errors ([`H2Error`]).
pub const PAGI_TABLE_H2: c_int = 2;
/// `pagi_error_info`: the HTTP/2 request refusals ([`H2Refusal`]).
pub const PAGI_TABLE_H2REQ: c_int = 3;

/// `pagi_error_info`: the application misuse the codecs report ([`AppErrorKind`]).
pub const PAGI_TABLE_APP: c_int = 4;

// `PagiResponse.error`: an `app` row of the error table (its ABI code; the glue reads
// its message through `pagi_error_info(PAGI_TABLE_APP, ...)`); `error_index` is the
// header it is about. perl/pagi_server.h names the same codes.
/// Invalid status.
pub const PAGI_BAD_STATUS: i32 = AppErrorKind::BadStatus as i32;
/// Invalid name of header `error_index`.
pub const PAGI_BAD_NAME: i32 = AppErrorKind::BadName as i32;
/// Invalid value of header `error_index`.
pub const PAGI_BAD_VALUE: i32 = AppErrorKind::BadValue as i32;
/// Header `error_index` is a content-length that is not 1*18DIGIT.
pub const PAGI_BAD_LENGTH: i32 = AppErrorKind::BadLength as i32;
/// Two content-length headers disagree.
pub const PAGI_CONFLICTING_LENGTH: i32 = AppErrorKind::ConflictingLength as i32;
/// (HTTP/2) the stream is not open.
pub const PAGI_H2_STREAM_CLOSED: i32 = AppErrorKind::StreamClosed as i32;
/// (HTTP/2) a final response was already started.
pub const PAGI_H2_ALREADY_STARTED: i32 = AppErrorKind::ResponseStarted as i32;
/// (HTTP/2) no final response was started.
pub const PAGI_H2_NOT_STARTED: i32 = AppErrorKind::ResponseNotStarted as i32;
/// (HTTP/2) the response body already ended.
pub const PAGI_H2_ALREADY_ENDED: i32 = AppErrorKind::ResponseEnded as i32;

impl PagiSpan {
    const UNDEF: PagiSpan = PagiSpan { ptr: std::ptr::null(), len: 0 };
}

impl PagiRequest {
    const EMPTY: PagiRequest = PagiRequest {
        method: PagiSpan::UNDEF,
        path: PagiSpan::UNDEF,
        raw_path: PagiSpan::UNDEF,
        query_string: PagiSpan::UNDEF,
        upgrade: PagiSpan::UNDEF,
        ws_key: PagiSpan::UNDEF,
        ws_version: PagiSpan::UNDEF,
        host: PagiSpan::UNDEF,
        headers: std::ptr::null(),
        n_headers: 0,
        consumed: 0,
        content_length: -1,
        method_id: 0,
        error: 0,
        http_minor: 0,
        chunked: 0,
        keep_alive: 0,
        sse: 0,
        expect_continue: 0,
        path_utf8: 0,
    };
}

impl PagiChunked {
    const EMPTY: PagiChunked =
        PagiChunked { ranges: std::ptr::null(), n_ranges: 0, data_len: 0, consumed: 0, state: 0, error: 0 };
}

impl PagiResponse {
    const EMPTY: PagiResponse = PagiResponse {
        head: std::ptr::null(),
        head_len: 0,
        error: 0,
        error_index: 0,
        length: -1,
        mode: 0,
        close: 0,
        append_body: 0,
    };
}

impl PagiEndpoint {
    const EMPTY: PagiEndpoint = PagiEndpoint { kind: 0, port: 0, len: 0, text: [0; 112] };
}

impl PagiAccepted {
    const EMPTY: PagiAccepted = PagiAccepted { fd: -1, err: 0, peer: PagiEndpoint::EMPTY, local: PagiEndpoint::EMPTY };
}

impl PagiWsFrame {
    const EMPTY: PagiWsFrame =
        PagiWsFrame { payload_offset: 0, payload_len: 0, consumed: 0, error: 0, fin: 0, opcode: 0, rsv1: 0, key: [0; 4] };
}

/// The skeleton of every entry that fills a result struct: runs `f` under `guard` and
/// writes its result through `out` as a whole (never forming a reference to memory the
/// caller may not have initialised), returning its code; `PAGI_PANIC` (with `empty`
/// written) after a panic, and for a NULL `out`.
///
/// # Safety
/// `out` is NULL, or aligned and writable for a `T`.
unsafe fn fill<T>(out: *mut T, empty: T, f: impl FnOnce() -> (c_int, T)) -> c_int {
    if out.is_null() {
        return PAGI_PANIC;
    }
    let (rc, value) = guard((PAGI_PANIC, empty), f);
    // SAFETY: not NULL; the caller guarantees the rest.
    unsafe { out.write(value) };
    rc
}

/// Per-thread scratch space behind the pointers handed out.
#[derive(Debug, Default)]
struct Scratch {
    parser: Parser,
    fields: Vec<PagiField>,
    ranges: Vec<(usize, usize)>,
    c_ranges: Vec<PagiRange>,
    out: Vec<u8>,
    /// permessage-deflate's last result (`pagi_deflate_compress`/`_decompress`): one
    /// buffer for all the thread's contexts, not one per connection.
    deflated: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
    /// The `Server` field's value of every response this process serializes
    /// (`pagi_set_server`; empty: none).
    static SERVER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Runs `f` with this thread's scratch space.
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}

static QUIET_HOOK: Once = Once::new();

/// Records a panic's message for `pagi_last_panic` instead of printing it.
fn install_quiet_hook() {
    QUIET_HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let payload = info.payload();
            let what = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            let text = match info.location() {
                Some(l) => format!("{what} at {}:{}", l.file(), l.line()),
                None => what.to_string(),
            };
            let _ = LAST_PANIC.try_with(|p| {
                if let Ok(mut p) = p.try_borrow_mut() {
                    *p = text;
                }
            });
        }));
    });
}

/// Runs `f`, turning a panic into `on_panic`.
fn guard<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    install_quiet_hook();
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(on_panic)
}

/// A byte slice from C; NULL is the empty slice.
///
/// # Safety
/// Unless `ptr` is NULL it must point to `len` readable bytes that outlive the use.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    // SAFETY: guaranteed by the caller.
    unsafe { slice_in(ptr, len) }
}

/// A slice of `n` `T` from C; NULL (or `n == 0`) is the empty slice.
///
/// # Safety
/// Unless `ptr` is NULL it must point to `n` readable `T` that outlive the use.
unsafe fn slice_in<'a, T>(ptr: *const T, n: usize) -> &'a [T] {
    if ptr.is_null() || n == 0 {
        &[]
    } else {
        // SAFETY: the caller guarantees `n` readable entries at `ptr`.
        unsafe { std::slice::from_raw_parts(ptr, n) }
    }
}

fn span_ptr(bytes: &[u8]) -> PagiSpan {
    PagiSpan { ptr: bytes.as_ptr(), len: bytes.len() }
}

/// The glue's BOOT passes C's layout list (`PAGI_LAYOUT` in `perl/pagi_server.h`, made
/// with `offsetof`/`sizeof`): 1 when it equals [`LAYOUT`] row by row (names, offsets,
/// sizes), else 0 with the first differing row's name in `*mismatch` (the glue then
/// refuses to load: `perl/pagi_server.h` and this file have drifted apart).
///
/// # Safety
/// `layout` points to `n` readable rows whose names are NUL-terminated strings that
/// outlive the call's use of `*mismatch`; `mismatch` is writable or NULL.
#[no_mangle]
pub unsafe extern "C" fn pagi_abi_check(layout: *const PagiLayout, n: usize, mismatch: *mut *const c_char) -> c_int {
    // SAFETY: the caller guarantees `n` readable rows.
    let rows = unsafe { slice_in(layout, n) };
    let differs = guard(Some(c"(panic)".as_ptr()), || {
        (0..rows.len().max(LAYOUT.len())).find_map(|i| {
            let c = rows.get(i);
            // SAFETY: the caller guarantees NUL-terminated names.
            let c_name = c.map(|r| unsafe { CStr::from_ptr(r.name) }.to_bytes());
            let same = match (c, c_name, LAYOUT.get(i)) {
                (Some(r), Some(name), Some(&(rust, offset, size))) => {
                    name == rust.as_bytes() && r.offset == offset && r.size == size
                }
                _ => false,
            };
            (!same).then(|| c.map_or(c"(the end of the C list)".as_ptr(), |r| r.name))
        })
    });
    if let (Some(name), false) = (differs, mismatch.is_null()) {
        // SAFETY: `mismatch` is not NULL; the caller guarantees it is writable.
        unsafe { *mismatch = name };
    }
    c_int::from(differs.is_none())
}

/// Installs the quiet panic hook (the glue's BOOT calls this once).
#[no_mangle]
pub extern "C" fn pagi_init() {
    guard((), install_quiet_hook);
}

/// Parses one request head. Returns `PAGI_PARTIAL`, `PAGI_DONE`, `PAGI_ERROR` (kind in
/// `out.error`) or `PAGI_PANIC`.
///
/// # Safety
/// `buf` points to `len` readable bytes (or is NULL with `len == 0`); `out` is writable.
/// The spans written to `out` stay valid until the next call into this module on this
/// thread and while `buf` is unchanged.
#[no_mangle]
pub unsafe extern "C" fn pagi_parse_request(
    buf: *const u8,
    len: usize,
    max_header_size: i64,
    max_headers: i64,
    max_line: i64,
    out: *mut PagiRequest,
) -> c_int {
    // SAFETY: the caller guarantees the buffer (see above).
    let buf = unsafe { bytes(buf, len) };
    let work = || {
        with_scratch(|s| {
            let limits = Limits { max_header_size, max_headers, max_line };
            let head = match s.parser.parse(buf, &limits) {
                Err(kind) => return (PAGI_ERROR, PagiRequest { error: kind.code(), ..PagiRequest::EMPTY }),
                Ok(Status::Partial) => return (PAGI_PARTIAL, PagiRequest::EMPTY),
                Ok(Status::Complete(head)) => head,
            };
            let p = &s.parser;
            let span = |span| span_ptr(p.bytes(buf, span));
            let opt = |o: Option<Span>| o.map_or(PagiSpan::UNDEF, span);
            s.fields.clear();
            s.fields.extend(p.headers().iter().map(|f| PagiField {
                name: span(f.name),
                value: span(f.value),
                name_id: u32::from(f.id),
            }));
            let r = PagiRequest {
                method: span(head.method),
                path: span(head.path),
                raw_path: span(head.raw_path),
                query_string: span(head.query_string),
                upgrade: opt(head.upgrade),
                ws_key: opt(head.ws_key),
                ws_version: opt(head.ws_version),
                host: opt(head.host),
                headers: s.fields.as_ptr(),
                n_headers: s.fields.len(),
                consumed: head.consumed,
                content_length: head.content_length.map_or(-1, |n| n as i64),
                method_id: u32::from(head.method_id),
                error: 0,
                http_minor: head.http_minor,
                chunked: head.chunked as u8,
                keep_alive: head.keep_alive as u8,
                sse: head.sse as u8,
                expect_continue: head.expect_continue as u8,
                path_utf8: head.path_utf8 as u8,
            };
            (PAGI_DONE, r)
        })
    };
    // SAFETY: the caller guarantees `out` (see above).
    unsafe { fill(out, PagiRequest::EMPTY, work) }
}

/// Decodes chunked data. Returns `PAGI_DONE` (progress in `out`), `PAGI_ERROR` (kind in
/// `out.error`) or `PAGI_PANIC`.
///
/// # Safety
/// As `pagi_parse_request`: `buf`/`len` readable, `out` writable; the ranges stay valid
/// until the next call on this thread.
#[no_mangle]
pub unsafe extern "C" fn pagi_decode_chunked(
    buf: *const u8,
    len: usize,
    state: i64,
    max_trailer_size: i64,
    out: *mut PagiChunked,
) -> c_int {
    // SAFETY: the caller guarantees the buffer.
    let buf = unsafe { bytes(buf, len) };
    let work = || {
        with_scratch(|s| {
            s.ranges.clear();
            match decode_chunked(buf, state, max_trailer_size, &mut s.ranges) {
                Err(e) => (PAGI_ERROR, PagiChunked { error: e.kind.code(), state: e.state, ..PagiChunked::EMPTY }),
                Ok(p) => {
                    s.c_ranges.clear();
                    s.c_ranges.extend(s.ranges.iter().map(|&(start, len)| PagiRange { start, len }));
                    let c = PagiChunked {
                        ranges: s.c_ranges.as_ptr(),
                        n_ranges: s.c_ranges.len(),
                        data_len: s.ranges.iter().map(|r| r.1).sum(),
                        consumed: p.consumed,
                        state: p.state,
                        error: 0,
                    };
                    (PAGI_DONE, c)
                }
            }
        })
    };
    // SAFETY: the caller guarantees `out` (see above).
    unsafe { fill(out, PagiChunked::EMPTY, work) }
}

/// The application's headers as the serializers take them.
///
/// # Safety
/// `headers` points to `n` readable `PagiFieldIn` whose byte pointers are readable, all
/// outliving the iterator.
unsafe fn fields_in<'a>(headers: *const PagiFieldIn, n: usize) -> impl Iterator<Item = HeaderIn<'a>> + Clone {
    // SAFETY: the caller guarantees `n` readable entries.
    let raw = unsafe { slice_in(headers, n) };
    raw.iter().map(|f| HeaderIn {
        // SAFETY: the caller guarantees the name and value bytes.
        name: unsafe { bytes(f.name, f.name_len) },
        // SAFETY: as above.
        value: unsafe { bytes(f.value, f.value_len) },
        name_wide: f.wide & 1 != 0,
        value_wide: f.wide & 2 != 0,
    })
}

fn app_error(e: AppError) -> (c_int, PagiResponse) {
    let (kind, error_index) = e.kind();
    (PAGI_ERROR, PagiResponse { error: kind.code(), error_index, ..PagiResponse::EMPTY })
}

/// Builds a response head (the glue appends the body when `out.append_body`).
/// `has_body`/`body_len`: the body's presence and its length as Perl's `length`.
/// Returns `PAGI_DONE`, `PAGI_ERROR` (`out.error`, `out.error_index`) or `PAGI_PANIC`.
///
/// # Safety
/// `status` points to `status_len` readable bytes; `headers` to `n` readable entries;
/// `out` is writable. `out.head` stays valid until the next call on this thread.
#[no_mangle]
pub unsafe extern "C" fn pagi_serialize_response(
    status: *const u8,
    status_len: usize,
    headers: *const PagiFieldIn,
    n: usize,
    flags: u32,
    has_body: c_int,
    body_len: usize,
    out: *mut PagiResponse,
) -> c_int {
    // SAFETY: the caller guarantees the status bytes.
    let status = unsafe { bytes(status, status_len) };
    let work = || {
        // SAFETY: the caller guarantees the header entries.
        let fields: Vec<HeaderIn> = unsafe { fields_in(headers, n) }.collect();
        with_scratch(|s| SERVER.with(|server| {
            let body = (has_body != 0).then_some(body_len);
            match serialize_response(&mut s.out, status, &fields, flags, body, &http_date(), &server.borrow()) {
                Err(e) => app_error(e),
                Ok(Framing { mode, close, append_body, length }) => {
                    let r = PagiResponse {
                        head: s.out.as_ptr(),
                        head_len: s.out.len(),
                        error: 0,
                        error_index: 0,
                        // At most 18 digits (or a Perl string's length): fits
                        length: length.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)),
                        mode: i32::from(mode),
                        close: close as u8,
                        append_body: append_body as u8,
                    };
                    (PAGI_DONE, r)
                }
            }
        }))
    };
    // SAFETY: the caller guarantees `out` (see above).
    unsafe { fill(out, PagiResponse::EMPTY, work) }
}

/// Sets the `Server` field's value of the responses this process serializes from now
/// on, HTTP/1.1 ones and HTTP/2 sessions made afterwards (empty: none). Returns
/// `PAGI_DONE`, `PAGI_ERROR` (not a valid field value: nothing changes) or `PAGI_PANIC`.
///
/// # Safety
/// `value` points to `len` readable bytes (or is NULL: none).
#[no_mangle]
pub unsafe extern "C" fn pagi_set_server(value: *const u8, len: usize) -> c_int {
    // SAFETY: the caller guarantees the bytes.
    let value = unsafe { bytes(value, len) };
    guard(PAGI_PANIC, || {
        if check_headers(&[HeaderIn::new(b"server", value)]).is_err() {
            return PAGI_ERROR;
        }
        SERVER.with(|v| *v.borrow_mut() = value.to_vec());
        PAGI_DONE
    })
}

/// Validates a response status as `pagi_serialize_response` does (three digits,
/// 100-999): `PAGI_DONE`, `PAGI_ERROR` (the `bad_status` kind) or `PAGI_PANIC`.
///
/// # Safety
/// `status` points to `len` readable bytes (or is NULL: none, which is invalid).
#[no_mangle]
pub unsafe extern "C" fn pagi_check_status(status: *const u8, len: usize) -> c_int {
    // SAFETY: the caller guarantees the bytes.
    let status = unsafe { bytes(status, len) };
    guard(PAGI_PANIC, || if parse_status(status).is_some() { PAGI_DONE } else { PAGI_ERROR })
}

/// Validates application headers as `pagi_serialize_response` does, building nothing.
/// Returns `PAGI_DONE`, `PAGI_ERROR` (`out.error`, `out.error_index`) or `PAGI_PANIC`.
///
/// # Safety
/// `headers` points to `n` readable entries; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn pagi_check_headers(headers: *const PagiFieldIn, n: usize, out: *mut PagiResponse) -> c_int {
    let work = || {
        // No Vec: this runs on every http.response.start.
        // SAFETY: the caller guarantees the header entries.
        let fields = unsafe { fields_in(headers, n) };
        match check_headers_iter(fields) {
            Err(e) => app_error(e),
            Ok(()) => (PAGI_DONE, PagiResponse::EMPTY),
        }
    };
    // SAFETY: the caller guarantees `out` (see above).
    unsafe { fill(out, PagiResponse::EMPTY, work) }
}

/// Builds the end of a chunked body with trailers. Returns as `pagi_serialize_response`.
///
/// # Safety
/// As `pagi_serialize_response`.
#[no_mangle]
pub unsafe extern "C" fn pagi_serialize_trailers(headers: *const PagiFieldIn, n: usize, out: *mut PagiResponse) -> c_int {
    let work = || {
        // SAFETY: the caller guarantees the header entries.
        let fields: Vec<HeaderIn> = unsafe { fields_in(headers, n) }.collect();
        with_scratch(|s| {
            match serialize_trailers(&mut s.out, &fields) {
                Err(e) => app_error(e),
                Ok(()) => (PAGI_DONE, PagiResponse { head: s.out.as_ptr(), head_len: s.out.len(), ..PagiResponse::EMPTY }),
            }
        })
    };
    // SAFETY: the caller guarantees `out` (see above).
    unsafe { fill(out, PagiResponse::EMPTY, work) }
}

/// Writes `<hex len>\r\n` into `out` (room for 18 bytes) and returns its length, or 0
/// after a panic.
///
/// # Safety
/// `out` points to at least 18 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pagi_chunk_prefix(len: usize, out: *mut u8) -> usize {
    if out.is_null() {
        return 0;
    }
    guard(0, || {
        let mut v = Vec::with_capacity(18);
        chunk_prefix(&mut v, len);
        // SAFETY: at most 16 hex digits + CRLF = 18 bytes, and the caller provides 18.
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), out, v.len()) };
        v.len()
    })
}

fn endpoint(e: &Endpoint) -> PagiEndpoint {
    let (kind, port, text): (i32, i32, &[u8]) = match e {
        Endpoint::Inet { host, port } => (1, i32::from(*port), host.as_bytes()),
        Endpoint::Unix(path) => (2, 0, path),
        Endpoint::Other => (0, 0, &[]),
    };
    let mut out = PagiEndpoint { kind, port, ..PagiEndpoint::EMPTY };
    let n = text.len().min(out.text.len());
    out.len = n;
    out.text[..n].copy_from_slice(&text[..n]);
    out
}

/// Both ends of socket `fd`: 1 and `out` filled; 0 when it is not a connected socket;
/// `PAGI_PANIC`.
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn pagi_connection_info(fd: c_int, out: *mut PagiConnInfo) -> c_int {
    let empty = PagiConnInfo { peer: PagiEndpoint::EMPTY, local: PagiEndpoint::EMPTY };
    let work = || match connection_info(fd) {
        None => (0, PagiConnInfo { peer: PagiEndpoint::EMPTY, local: PagiEndpoint::EMPTY }),
        Some(info) => (1, PagiConnInfo { peer: endpoint(&info.peer), local: endpoint(&info.local) }),
    };
    // SAFETY: the caller guarantees `out` (see above).
    unsafe { fill(out, empty, work) }
}

/// Accepts a connection on listening socket `lfd` (conninfo::accept): `PAGI_DONE` and
/// `out` filled (`fd`, `peer`, and `local` when `want_local`, else kind 0);
/// `PAGI_ERROR` with the errno in `out.err` (EAGAIN: none waiting); `PAGI_PANIC`.
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn pagi_accept(lfd: c_int, nodelay: c_int, want_local: c_int, out: *mut PagiAccepted) -> c_int {
    let work = || match accept(lfd, nodelay != 0, want_local != 0) {
        Err(err) => (PAGI_ERROR, PagiAccepted { err, ..PagiAccepted::EMPTY }),
        Ok((fd, p, l)) => (
            PAGI_DONE,
            PagiAccepted {
                fd,
                err: 0,
                peer: endpoint(&p),
                local: l.as_ref().map_or(PagiEndpoint::EMPTY, endpoint),
            },
        ),
    };
    // SAFETY: the caller guarantees `out` (see above).
    unsafe { fill(out, PagiAccepted::EMPTY, work) }
}

/// Parses one client WebSocket frame, RSV1 allowed on a data message's first frame when
/// `rsv1_ok` is not 0. Returns `PAGI_PARTIAL`, `PAGI_DONE` (the glue unmasks
/// `payload_len` bytes at `buf + payload_offset` with `pagi_ws_mask`), `PAGI_ERROR` (kind
/// in `out.error`) or `PAGI_PANIC`.
///
/// # Safety
/// `buf` points to `len` readable bytes (or is NULL with `len == 0`); `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn pagi_ws_parse_frame(
    buf: *const u8,
    len: usize,
    max_payload: i64,
    rsv1_ok: c_int,
    out: *mut PagiWsFrame,
) -> c_int {
    // SAFETY: the caller guarantees the buffer.
    let buf = unsafe { bytes(buf, len) };
    let work = || match ws::parse_frame_with(buf, max_payload, rsv1_ok != 0) {
        Err(e) => (PAGI_ERROR, PagiWsFrame { error: e.code(), ..PagiWsFrame::EMPTY }),
        Ok(Status::Partial) => (PAGI_PARTIAL, PagiWsFrame::EMPTY),
        Ok(Status::Complete(f)) => (
            PAGI_DONE,
            PagiWsFrame {
                payload_offset: f.payload_offset,
                payload_len: f.payload_len,
                consumed: f.consumed,
                error: 0,
                fin: u8::from(f.fin),
                opcode: f.opcode,
                rsv1: u8::from(f.rsv1),
                key: f.key,
            },
        ),
    };
    // SAFETY: the caller guarantees `out` (see above).
    unsafe { fill(out, PagiWsFrame::EMPTY, work) }
}

/// `dst = src XOR key` repeated, as `mask_payload` computes it (any key length; a
/// 4-byte key is the WebSocket mask). Returns `PAGI_DONE` or `PAGI_PANIC`.
///
/// # Safety
/// `src` and `key` point to `len` / `key_len` readable bytes, `dst` to `len` writable
/// bytes that do not overlap `src` (any may be NULL when its length is 0).
#[no_mangle]
pub unsafe extern "C" fn pagi_ws_mask(src: *const u8, len: usize, key: *const u8, key_len: usize, dst: *mut u8) -> c_int {
    if len == 0 {
        return PAGI_DONE;
    }
    if dst.is_null() || src.is_null() {
        return PAGI_PANIC;
    }
    // SAFETY: the caller guarantees `len` readable bytes at `src`, `key_len` at `key`.
    let (src, key) = unsafe { (bytes(src, len), bytes(key, key_len)) };
    // SAFETY: `dst` is not NULL; the caller guarantees `len` writable bytes there that
    // no other reference (in particular not `src`) covers.
    let dst = unsafe { std::slice::from_raw_parts_mut(dst, len) };
    guard(PAGI_PANIC, || {
        ws::mask_payload_into(src, key, dst);
        PAGI_DONE
    })
}

/// Writes the header of a server frame with first byte `byte0` and a payload of `len`
/// bytes into `out` (room for 10 bytes); returns its length, 0 after a panic.
///
/// # Safety
/// `out` points to at least 10 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pagi_ws_frame_header(byte0: u8, len: u64, out: *mut u8) -> usize {
    if out.is_null() {
        return 0;
    }
    guard(0, || {
        let mut header = [0u8; 10];
        let n = ws::frame_header(byte0, len, &mut header);
        // SAFETY: `n <= 10` bytes, and the caller provides 10.
        unsafe { std::ptr::copy_nonoverlapping(header.as_ptr(), out, n) };
        n
    })
}

/// `utf8_check`: 1 valid, 2 valid but ending inside a character, 0 invalid;
/// `PAGI_PANIC`.
///
/// # Safety
/// `p` points to `len` readable bytes (or is NULL with `len == 0`).
#[no_mangle]
pub unsafe extern "C" fn pagi_ws_utf8_check(p: *const u8, len: usize) -> c_int {
    // SAFETY: the caller guarantees the bytes.
    let b = unsafe { bytes(p, len) };
    guard(PAGI_PANIC, || ws::utf8_check(b))
}

/// The `error` kind and `message` (static C strings) of error `code` of `table`
/// ([`PAGI_TABLE_HTTP`], [`PAGI_TABLE_WS`], [`PAGI_TABLE_H2`], [`PAGI_TABLE_H2REQ`]), and
/// its number as the return value (the HTTP status, the close code, the RFC 9113 error
/// code); 0 and nothing written for an unknown table or code (or an error code 0).
///
/// # Safety
/// `kind` and `message` are writable or NULL.
#[no_mangle]
pub unsafe extern "C" fn pagi_error_info(table: c_int, code: c_int, kind: *mut *const c_char, message: *mut *const c_char) -> c_int {
    let found = guard(None, || match table {
        PAGI_TABLE_HTTP => ErrorKind::from_code(code).map(|k| (k.kind_c(), k.message_c(), k.status())),
        PAGI_TABLE_WS => WsError::from_code(code).map(|k| (k.kind_c(), k.message_c(), k.close_code())),
        PAGI_TABLE_H2 => H2Error::from_code(code).map(|k| (k.kind_c(), k.message_c(), k.error_code())),
        PAGI_TABLE_H2REQ => H2Refusal::from_code(code).map(|k| (k.kind_c(), k.message_c(), k.status())),
        PAGI_TABLE_APP => AppErrorKind::from_code(code).map(|k| (k.kind_c(), k.message_c(), k.status())),
        _ => None,
    });
    let Some((k, m, number)) = found else { return 0 };
    if !kind.is_null() {
        // SAFETY: not NULL; the caller guarantees it is writable.
        unsafe { *kind = k.as_ptr() };
    }
    if !message.is_null() {
        // SAFETY: as above.
        unsafe { *message = m.as_ptr() };
    }
    c_int::from(number)
}

/// The reason phrase of a status (static; `*len` set), `""` when unknown.
///
/// # Safety
/// `len` is writable.
#[no_mangle]
pub unsafe extern "C" fn pagi_reason_phrase(status: c_int, len: *mut usize) -> *const u8 {
    let r = guard("", || u16::try_from(status).map_or("", reason_phrase));
    if !len.is_null() {
        // SAFETY: the caller guarantees `len` is writable.
        unsafe { *len = r.len() };
    }
    r.as_ptr()
}

/// A known string (header name or method) by id, with `*len`; NULL for an unknown id.
/// The glue makes one shared Perl string of each at boot.
///
/// # Safety
/// `len` is writable.
#[no_mangle]
pub unsafe extern "C" fn pagi_known_string(id: u32, len: *mut usize) -> *const u8 {
    let s = guard(None, || u16::try_from(id).ok().and_then(crate::known::known));
    if !len.is_null() {
        // SAFETY: the caller guarantees `len` is writable.
        unsafe { *len = s.map_or(0, str::len) };
    }
    s.map_or(std::ptr::null(), str::as_ptr)
}

/// The last caught panic's message on this thread (for the croak); `*len` set.
///
/// # Safety
/// `len` is writable. The bytes stay valid until the next panic on this thread.
#[no_mangle]
pub unsafe extern "C" fn pagi_last_panic(len: *mut usize) -> *const u8 {
    let (ptr, n) = LAST_PANIC
        .try_with(|p| p.try_borrow().map(|s| (s.as_ptr(), s.len())).unwrap_or((std::ptr::null(), 0)))
        .unwrap_or((std::ptr::null(), 0));
    if !len.is_null() {
        // SAFETY: the caller guarantees `len` is writable.
        unsafe { *len = n };
    }
    ptr
}

/// Panics on purpose inside the guard: the glue's test hook that a panic becomes a croak.
#[no_mangle]
pub extern "C" fn pagi_debug_panic(code: c_int) -> c_int {
    guard(PAGI_PANIC, || {
        if code >= 0 {
            panic!("pagi_debug_panic({code}) called");
        }
        code
    })
}

// ---- HTTP/2 (src/h2.rs) ------------------------------------------------------------------

/// `PagiH2Event.kind`: a request head (or its refusal).
pub const PAGI_H2_EV_REQUEST: i32 = 1;
/// `PagiH2Event.kind`: request body bytes.
pub const PAGI_H2_EV_DATA: i32 = 2;
/// `PagiH2Event.kind`: request trailers.
pub const PAGI_H2_EV_TRAILERS: i32 = 3;
/// `PagiH2Event.kind`: a stream closed with an error code.
pub const PAGI_H2_EV_RESET: i32 = 4;
/// `PagiH2Event.kind`: a stream closed normally.
pub const PAGI_H2_EV_CLOSED: i32 = 5;
/// `PagiH2Event.kind`: the peer's GOAWAY.
pub const PAGI_H2_EV_GOAWAY: i32 = 6;
/// `PagiH2Event.kind`: the session reset a stream because of the peer.
pub const PAGI_H2_EV_ERROR: i32 = 7;

/// `pagi_h2_call` operations: `buffered(id)`.
pub const PAGI_H2_BUFFERED: c_int = 1;
/// `consumed(id, arg)`.
pub const PAGI_H2_CONSUMED: c_int = 2;
/// `reset(id, arg)`.
pub const PAGI_H2_RESET: c_int = 3;
/// `goaway(arg, graceful = id)`.
pub const PAGI_H2_GOAWAY: c_int = 4;
/// `want_write()`.
pub const PAGI_H2_WANT_WRITE: c_int = 5;
/// `is_closed()`.
pub const PAGI_H2_IS_CLOSED: c_int = 6;
/// `open_streams()`.
pub const PAGI_H2_OPEN_STREAMS: c_int = 7;
/// `last_stream_id()`.
pub const PAGI_H2_LAST_STREAM_ID: c_int = 8;
/// `error()`: the H2 kind code of the connection error, 0 when none.
pub const PAGI_H2_ERROR: c_int = 9;

/// An HTTP/2 session as C holds it (opaque to C): the session, and the last batch of
/// events in the C layout (valid until the next call on the same handle).
#[derive(Debug)]
pub struct PagiH2 {
    session: h2::Session,
    events: Vec<Event>,
    c_events: Vec<PagiH2Event>,
    c_fields: Vec<PagiField>,
    out: Vec<u8>,
}

impl PagiH2Event {
    const EMPTY: PagiH2Event = PagiH2Event {
        data: PagiSpan::UNDEF,
        method: PagiSpan::UNDEF,
        path: PagiSpan::UNDEF,
        raw_path: PagiSpan::UNDEF,
        query_string: PagiSpan::UNDEF,
        scheme: PagiSpan::UNDEF,
        protocol: PagiSpan::UNDEF,
        fields: std::ptr::null(),
        n_fields: 0,
        content_length: -1,
        kind: 0,
        stream_id: 0,
        code: 0,
        end_stream: 0,
        sse: 0,
        expect_continue: 0,
        path_utf8: 0,
    };
}

impl PagiH2 {
    /// Takes the session's events and lays them out for C in `c_events` (pointing into
    /// `events`, which they borrow until the next batch).
    fn batch(&mut self) {
        self.events = self.session.take_events();
        self.c_fields.clear();
        for ev in &self.events {
            let fields = match ev {
                Event::Request { request: Ok(r), .. } => &r.headers,
                Event::Trailers { headers, .. } => headers,
                _ => continue,
            };
            self.c_fields.extend(fields.iter().map(|(n, v)| PagiField {
                name: span_ptr(n),
                value: span_ptr(v),
                name_id: u32::from(crate::known::name_id(n)),
            }));
        }
        self.c_events.clear();
        let mut at = 0;
        let fields = self.c_fields.as_ptr();
        let mut fields_of = |n: usize| {
            // SAFETY: `at + n <= c_fields.len()`: the same walk as above.
            let p = unsafe { fields.add(at) };
            at += n;
            p
        };
        for ev in &self.events {
            let mut c = PagiH2Event::EMPTY;
            match ev {
                Event::Request { id, request, end_stream } => {
                    c.kind = PAGI_H2_EV_REQUEST;
                    c.stream_id = *id;
                    c.end_stream = u8::from(*end_stream);
                    match request {
                        Err(refusal) => c.code = refusal.code() as u32,
                        Ok(r) => {
                            c.method = span_ptr(&r.method);
                            c.path = span_ptr(&r.path);
                            c.path_utf8 = u8::from(r.path_utf8);
                            c.raw_path = span_ptr(&r.raw_path);
                            c.query_string = span_ptr(&r.query_string);
                            c.scheme = span_ptr(&r.scheme);
                            c.protocol = r.protocol.as_deref().map_or(PagiSpan::UNDEF, span_ptr);
                            c.content_length = r.content_length.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
                            c.sse = u8::from(r.sse);
                            c.expect_continue = u8::from(r.expect_continue);
                            c.n_fields = r.headers.len();
                            c.fields = fields_of(r.headers.len());
                        }
                    }
                }
                Event::Data { id, data, end_stream } => {
                    c.kind = PAGI_H2_EV_DATA;
                    c.stream_id = *id;
                    c.data = span_ptr(data);
                    c.end_stream = u8::from(*end_stream);
                }
                Event::Trailers { id, headers } => {
                    c.kind = PAGI_H2_EV_TRAILERS;
                    c.stream_id = *id;
                    c.n_fields = headers.len();
                    c.fields = fields_of(headers.len());
                }
                Event::Reset { id, code } => {
                    (c.kind, c.stream_id, c.code) = (PAGI_H2_EV_RESET, *id, *code);
                }
                Event::Closed { id } => {
                    (c.kind, c.stream_id) = (PAGI_H2_EV_CLOSED, *id);
                }
                Event::Goaway { last_stream_id, code } => {
                    (c.kind, c.stream_id, c.code) = (PAGI_H2_EV_GOAWAY, *last_stream_id, *code);
                }
                Event::Error { id, kind } => {
                    (c.kind, c.stream_id, c.code) = (PAGI_H2_EV_ERROR, *id, kind.code() as u32);
                }
            }
            self.c_events.push(c);
        }
    }
}

/// The handle behind a pointer from `pagi_h2_new` or `pagi_deflate_new`.
///
/// # Safety
/// `h` is NULL or a live handle from its `new` that no other call uses now.
unsafe fn handle<'a, T>(h: *mut T) -> Option<&'a mut T> {
    // SAFETY: guaranteed by the caller.
    unsafe { h.as_mut() }
}

/// A new session in `*out`: `PAGI_DONE`; `PAGI_ERROR` with the H2 kind code in `*error`
/// (an invalid HTTP2-Settings value); `PAGI_PANIC`.
///
/// # Safety
/// `s` is readable (its `upgrade` span too); `out` and `error` are writable.
#[no_mangle]
pub unsafe extern "C" fn pagi_h2_new(s: *const PagiH2Settings, out: *mut *mut PagiH2, error: *mut i32) -> c_int {
    if s.is_null() || out.is_null() || error.is_null() {
        return PAGI_PANIC;
    }
    // SAFETY: the caller guarantees `s` and the bytes of its span.
    let (s, upgrade) = unsafe { (&*s, (!(*s).upgrade.ptr.is_null()).then(|| bytes((*s).upgrade.ptr, (*s).upgrade.len))) };
    let settings = h2::Settings {
        max_concurrent_streams: s.max_concurrent_streams,
        initial_window_size: s.initial_window_size,
        max_frame_size: s.max_frame_size,
        max_header_list_size: s.max_header_list_size,
        enable_connect_protocol: s.enable_connect_protocol != 0,
        enable_push: s.enable_push != 0,
        rst_burst: s.rst_burst,
        rst_rate: s.rst_rate,
        max_headers: s.max_headers,
        upgrade: upgrade.map(<[u8]>::to_vec),
        upgrade_head: s.upgrade_head != 0,
        server: SERVER.with(|v| v.borrow().clone()),
    };
    let made = guard(None, || Some(h2::Session::new(&settings)));
    let (rc, handle, code) = match made {
        None => (PAGI_PANIC, std::ptr::null_mut(), 0),
        Some(Err(kind)) => (PAGI_ERROR, std::ptr::null_mut(), kind.code()),
        Some(Ok(session)) => {
            let h = PagiH2 { session, events: Vec::new(), c_events: Vec::new(), c_fields: Vec::new(), out: Vec::new() };
            (PAGI_DONE, Box::into_raw(Box::new(h)), 0)
        }
    };
    // SAFETY: not NULL; the caller guarantees they are writable.
    unsafe {
        *out = handle;
        *error = code;
    }
    rc
}

/// Frees a session (NULL is ignored).
///
/// # Safety
/// `h` is NULL or a handle from `pagi_h2_new`, not used again.
#[no_mangle]
pub unsafe extern "C" fn pagi_h2_free(h: *mut PagiH2) {
    if !h.is_null() {
        // SAFETY: a handle from Box::into_raw, freed once.
        let h = unsafe { Box::from_raw(h) };
        guard((), move || drop(h));
    }
}

/// Feeds bytes, then takes the batch of events (`*events`, `*n`, valid until the next
/// call on `h`) and the connection error's H2 kind code (`*error`, 0 when none).
/// `PAGI_DONE` or `PAGI_PANIC`.
///
/// # Safety
/// `h` is a live handle; `buf` points to `len` readable bytes (or is NULL with `len`
/// 0); `events`, `n`, `error` are writable.
#[no_mangle]
pub unsafe extern "C" fn pagi_h2_feed(
    h: *mut PagiH2,
    buf: *const u8,
    len: usize,
    events: *mut *const PagiH2Event,
    n: *mut usize,
    error: *mut i32,
) -> c_int {
    // SAFETY: the caller guarantees the buffer and the handle.
    let (input, Some(h)) = (unsafe { bytes(buf, len) }, unsafe { handle(h) }) else { return PAGI_PANIC };
    if events.is_null() || n.is_null() || error.is_null() {
        return PAGI_PANIC;
    }
    let ok = guard(false, || {
        let fed = h.session.feed(input).is_ok();
        h.batch();
        fed
    });
    // SAFETY: not NULL; the caller guarantees it is writable.
    unsafe { *error = h.session.error().map_or(0, H2Error::code) };
    // SAFETY: the caller guarantees `events` and `n`.
    unsafe { hand_out(h, ok, events, n) }
}

/// Writes the batch's address and length (none after a panic) and the return code.
///
/// # Safety
/// `events` and `n` are writable (not NULL).
unsafe fn hand_out(h: &PagiH2, ok: bool, events: *mut *const PagiH2Event, n: *mut usize) -> c_int {
    // SAFETY: guaranteed by the caller.
    unsafe {
        *events = h.c_events.as_ptr();
        *n = if ok { h.c_events.len() } else { 0 };
    }
    if ok {
        PAGI_DONE
    } else {
        PAGI_PANIC
    }
}

/// The events made since the last batch without a feed (writing frames closes streams).
/// As `pagi_h2_feed` without input or error.
///
/// # Safety
/// As `pagi_h2_feed`.
#[no_mangle]
pub unsafe extern "C" fn pagi_h2_events(h: *mut PagiH2, events: *mut *const PagiH2Event, n: *mut usize) -> c_int {
    // SAFETY: the caller guarantees the handle.
    let Some(h) = (unsafe { handle(h) }) else { return PAGI_PANIC };
    if events.is_null() || n.is_null() {
        return PAGI_PANIC;
    }
    let ok = guard(false, || {
        h.batch();
        true
    });
    // SAFETY: not NULL; the caller guarantees they are writable.
    unsafe { hand_out(h, ok, events, n) }
}

/// Up to `max` bytes to write (`*out`, valid until the next call on `h`). `PAGI_DONE` or
/// `PAGI_PANIC`.
///
/// # Safety
/// `h` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn pagi_h2_output(h: *mut PagiH2, max: usize, out: *mut PagiSpan) -> c_int {
    // SAFETY: the caller guarantees the handle.
    let Some(h) = (unsafe { handle(h) }) else { return PAGI_PANIC };
    if out.is_null() {
        return PAGI_PANIC;
    }
    let ok = guard(false, || match h.session.output(max) {
        Ok(bytes) => {
            h.out = bytes;
            true
        }
        Err(_) => false,
    });
    // SAFETY: not NULL; the caller guarantees it is writable.
    unsafe { out.write(if ok { span_ptr(&h.out) } else { PagiSpan::UNDEF }) };
    if ok {
        PAGI_DONE
    } else {
        PAGI_PANIC
    }
}

/// A send's refusal as a `PagiResponse`.
fn send_error(e: SendError) -> (c_int, PagiResponse) {
    let code = match e {
        SendError::App(app) => return app_error(app),
        SendError::StreamClosed => PAGI_H2_STREAM_CLOSED,
        SendError::AlreadyStarted => PAGI_H2_ALREADY_STARTED,
        SendError::NotStarted => PAGI_H2_NOT_STARTED,
        SendError::AlreadyEnded => PAGI_H2_ALREADY_ENDED,
        SendError::Panicked => return (PAGI_PANIC, PagiResponse::EMPTY),
    };
    (PAGI_ERROR, PagiResponse { error: code, ..PagiResponse::EMPTY })
}

/// Submits a response head. `PAGI_DONE` (`out.length`: the app's Content-Length or -1),
/// `PAGI_ERROR` (`out.error`, `out.error_index`) or `PAGI_PANIC`.
///
/// # Safety
/// `h` is a live handle; `status`/`headers` readable as for `pagi_serialize_response`;
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn pagi_h2_respond(
    h: *mut PagiH2,
    id: i32,
    status: *const u8,
    status_len: usize,
    headers: *const PagiFieldIn,
    n: usize,
    end_stream: c_int,
    out: *mut PagiResponse,
) -> c_int {
    // SAFETY: the caller guarantees the status bytes and the handle.
    let (status, Some(h)) = (unsafe { bytes(status, status_len) }, unsafe { handle(h) }) else { return PAGI_PANIC };
    let work = || {
        // SAFETY: the caller guarantees the header entries.
        let fields: Vec<HeaderIn> = unsafe { fields_in(headers, n) }.collect();
        match h.session.respond(id, status, &fields, end_stream != 0) {
            Err(e) => send_error(e),
            Ok(length) => (
                PAGI_DONE,
                PagiResponse { length: length.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX)), ..PagiResponse::EMPTY },
            ),
        }
    };
    // SAFETY: the caller guarantees `out`.
    unsafe { fill(out, PagiResponse::EMPTY, work) }
}

/// Queues response body bytes. `PAGI_DONE`, `PAGI_ERROR` (`out.error`) or `PAGI_PANIC`.
///
/// # Safety
/// `h` is a live handle; `data` points to `len` readable bytes (or is NULL with `len`
/// 0); `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn pagi_h2_send_data(
    h: *mut PagiH2,
    id: i32,
    data: *const u8,
    len: usize,
    end: c_int,
    out: *mut PagiResponse,
) -> c_int {
    // SAFETY: the caller guarantees the bytes and the handle.
    let (data, Some(h)) = (unsafe { bytes(data, len) }, unsafe { handle(h) }) else { return PAGI_PANIC };
    let work = || match h.session.send_data(id, data, end != 0) {
        Err(e) => send_error(e),
        Ok(()) => (PAGI_DONE, PagiResponse::EMPTY),
    };
    // SAFETY: the caller guarantees `out`.
    unsafe { fill(out, PagiResponse::EMPTY, work) }
}

/// Ends a response body with trailers. As `pagi_h2_respond` (no length).
///
/// # Safety
/// As `pagi_h2_respond`.
#[no_mangle]
pub unsafe extern "C" fn pagi_h2_send_trailers(
    h: *mut PagiH2,
    id: i32,
    headers: *const PagiFieldIn,
    n: usize,
    out: *mut PagiResponse,
) -> c_int {
    // SAFETY: the caller guarantees the handle.
    let Some(h) = (unsafe { handle(h) }) else { return PAGI_PANIC };
    let work = || {
        // SAFETY: the caller guarantees the header entries.
        let fields: Vec<HeaderIn> = unsafe { fields_in(headers, n) }.collect();
        match h.session.send_trailers(id, &fields) {
            Err(e) => send_error(e),
            Ok(()) => (PAGI_DONE, PagiResponse::EMPTY),
        }
    };
    // SAFETY: the caller guarantees `out`.
    unsafe { fill(out, PagiResponse::EMPTY, work) }
}

/// The session's small operations and queries (`PAGI_H2_BUFFERED` ...), the answer in
/// `*result` (0 for the operations). `PAGI_DONE`, `PAGI_ERROR` (an unknown `op`) or
/// `PAGI_PANIC`.
///
/// # Safety
/// `h` is a live handle; `result` is writable.
#[no_mangle]
pub unsafe extern "C" fn pagi_h2_call(h: *mut PagiH2, op: c_int, id: i32, arg: u64, result: *mut i64) -> c_int {
    // SAFETY: the caller guarantees the handle.
    let Some(h) = (unsafe { handle(h) }) else { return PAGI_PANIC };
    if result.is_null() {
        return PAGI_PANIC;
    }
    let s = &mut h.session;
    let answer = guard(Err(PAGI_PANIC), || {
        Ok(match op {
            PAGI_H2_BUFFERED => s.buffered(id) as i64,
            PAGI_H2_CONSUMED => {
                s.consumed(id, usize::try_from(arg).unwrap_or(usize::MAX));
                0
            }
            PAGI_H2_RESET => {
                s.reset(id, u32::try_from(arg).unwrap_or(h2::INTERNAL_ERROR));
                0
            }
            PAGI_H2_GOAWAY => {
                s.goaway(u32::try_from(arg).unwrap_or(h2::INTERNAL_ERROR), id != 0);
                0
            }
            PAGI_H2_WANT_WRITE => i64::from(s.want_write()),
            PAGI_H2_IS_CLOSED => i64::from(s.is_closed()),
            PAGI_H2_OPEN_STREAMS => s.open_streams() as i64,
            PAGI_H2_LAST_STREAM_ID => i64::from(s.last_stream_id()),
            PAGI_H2_ERROR => i64::from(s.error().map_or(0, H2Error::code)),
            _ => return Err(PAGI_ERROR),
        })
    });
    let (rc, value) = match answer {
        Ok(v) => (PAGI_DONE, v),
        Err(rc) => (rc, 0),
    };
    // SAFETY: not NULL; the caller guarantees it is writable.
    unsafe { *result = value };
    rc
}

// ---- permessage-deflate (src/deflate.rs) ---------------------------------------------------

/// A compression context as C holds it (opaque to C). Its results go to the thread's
/// scratch space (`Scratch::deflated`), so that an idle connection holds no buffer.
#[derive(Debug)]
pub struct PagiDeflate {
    context: deflate::Context,
}

/// A new context in `*out`: `PAGI_DONE`; `PAGI_ERROR` when a parameter is out of range
/// (the facade checked them: misuse); `PAGI_PANIC`.
///
/// # Safety
/// `p` is readable; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn pagi_deflate_new(p: *const PagiDeflateParams, out: *mut *mut PagiDeflate) -> c_int {
    if p.is_null() || out.is_null() {
        return PAGI_PANIC;
    }
    // SAFETY: not NULL; the caller guarantees it is readable.
    let p = unsafe { *p };
    let params = deflate::Params {
        server_no_context_takeover: p.server_no_context_takeover != 0,
        client_no_context_takeover: p.client_no_context_takeover != 0,
        server_max_window_bits: p.server_max_window_bits,
        level: p.level,
        mem_level: p.mem_level,
    };
    let made = guard(Err(PAGI_PANIC), || deflate::Context::new(params).ok_or(PAGI_ERROR));
    let (rc, handle) = match made {
        Ok(context) => (PAGI_DONE, Box::into_raw(Box::new(PagiDeflate { context }))),
        Err(rc) => (rc, std::ptr::null_mut()),
    };
    // SAFETY: not NULL; the caller guarantees it is writable.
    unsafe { *out = handle };
    rc
}

/// Frees a context (NULL is ignored).
///
/// # Safety
/// `h` is NULL or a handle from `pagi_deflate_new`, not used again.
#[no_mangle]
pub unsafe extern "C" fn pagi_deflate_free(h: *mut PagiDeflate) {
    if !h.is_null() {
        // SAFETY: a handle from Box::into_raw, freed once.
        let h = unsafe { Box::from_raw(h) };
        guard((), move || drop(h));
    }
}

/// What the thread keeps of its result buffer once the result was taken: a thread that
/// once handled a large message does not hold its size for the rest of its life.
const DEFLATE_KEEP: usize = 64 * 1024;

/// The glue took the last result: the thread's result buffer is dropped when larger than
/// [`DEFLATE_KEEP`].
#[no_mangle]
pub extern "C" fn pagi_deflate_taken() {
    guard((), || {
        with_scratch(|s| {
            if s.deflated.capacity() > DEFLATE_KEEP {
                s.deflated = Vec::new();
            }
        })
    });
}

/// Compresses a whole message: its frame's payload in `*out` (the thread's scratch space,
/// valid until the next call on this thread). `PAGI_DONE` or `PAGI_PANIC`.
///
/// # Safety
/// `h` is a live handle; `buf` points to `len` readable bytes (or is NULL with `len` 0);
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn pagi_deflate_compress(h: *mut PagiDeflate, buf: *const u8, len: usize, out: *mut PagiSpan) -> c_int {
    // SAFETY: the caller guarantees the bytes and the handle.
    let (input, Some(h)) = (unsafe { bytes(buf, len) }, unsafe { handle(h) }) else { return PAGI_PANIC };
    // SAFETY: the caller guarantees `out` is writable (fill checks it is not NULL).
    unsafe {
        fill(out, PagiSpan::UNDEF, || {
            with_scratch(|s| {
                h.context.compress_message(input, &mut s.deflated);
                (PAGI_DONE, span_ptr(&s.deflated))
            })
        })
    }
}

/// Inflates a frame's payload of the message being received (`fin`: its last frame;
/// `max`: the whole message's limit): `PAGI_DONE` with the bytes in `*out` (the thread's
/// scratch space, valid until the next call on this thread), `PAGI_ERROR` with a WebSocket error code in `*error`
/// (`bad_deflate`, `inflated_too_large`), or `PAGI_PANIC`.
///
/// # Safety
/// `h` is a live handle; `buf` points to `len` readable bytes (or is NULL with `len` 0);
/// `out` and `error` are writable.
#[no_mangle]
pub unsafe extern "C" fn pagi_deflate_decompress(
    h: *mut PagiDeflate,
    buf: *const u8,
    len: usize,
    max: i64,
    fin: c_int,
    out: *mut PagiSpan,
    error: *mut i32,
) -> c_int {
    // SAFETY: the caller guarantees the bytes and the handle.
    let (input, Some(h)) = (unsafe { bytes(buf, len) }, unsafe { handle(h) }) else { return PAGI_PANIC };
    if out.is_null() || error.is_null() {
        return PAGI_PANIC;
    }
    let done = guard(None, || {
        with_scratch(|s| Some(h.context.decompress(input, max, fin != 0, &mut s.deflated).map(|()| span_ptr(&s.deflated))))
    });
    let (rc, span, code) = match done {
        None => (PAGI_PANIC, PagiSpan::UNDEF, 0),
        Some(Err(e)) => (PAGI_ERROR, PagiSpan::UNDEF, e.code()),
        Some(Ok(span)) => (PAGI_DONE, span, 0),
    };
    // SAFETY: not NULL; the caller guarantees they are writable.
    unsafe {
        out.write(span);
        *error = code;
    }
    rc
}
