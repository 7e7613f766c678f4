//! The HTTP/2 server session (RFC 9113): nghttp2 (through `libnghttp2-sys`, which builds
//! the pinned nghttp2 1.68.1 from source) driven sans-IO, so that this module stays
//! free of IO and of Perl like the rest of `src/`.
//!
//! ```text
//! bytes in  --feed-->   nghttp2_session_mem_recv2 --callbacks--> State.events
//! app calls --respond/send_data/send_trailers--> per-stream buffers (State.streams)
//! bytes out <--output-- nghttp2_session_mem_send2 <--data source-- per-stream buffers
//! ```
//!
//! nghttp2's callbacks only record: they turn what it parsed into [`Event`]s kept in the
//! session ([`State`]), which the caller takes in one batch per read ([`Session::take_events`]);
//! nothing outside this module runs from inside nghttp2. Response bodies wait in Rust
//! buffers per stream, pulled by nghttp2's data-source callback, which answers
//! `NGHTTP2_ERR_DEFERRED` while a buffer is empty and not ended (a later `send_data`
//! resumes it). The contract (events, limits, error kinds, what the pure-Perl backend
//! does differently) is doc/codec.md's HTTP/2 section.
//!
//! Every callback is an `extern "C"` function called by C: each runs under
//! `catch_unwind`, and a panic becomes `NGHTTP2_ERR_CALLBACK_FAILURE`, which makes the
//! session fail as a whole ([`Panicked`]); nothing unwinds into nghttp2.

use crate::chars::trim_ows;
use crate::request::{has_event_stream, percent_decode};
use crate::response::{parse_status, AppError, HeaderIn};
use libnghttp2_sys as ng;
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

include!(concat!(env!("OUT_DIR"), "/errors_h2.rs"));
include!(concat!(env!("OUT_DIR"), "/errors_h2req.rs"));

/// The connection preface a client sends first (RFC 9113 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How many bytes of control frames (everything but DATA) a `feed` moves out of nghttp2
/// into the session's output buffer at most ([`Session::feed`]): beyond it, frames stay
/// queued in nghttp2, whose own flood limits then apply to a peer that does not read.
pub const PROBE_CAP: usize = 65536;

/// RFC 9113 7 error codes used here by name.
pub const NO_ERROR: u32 = 0;
pub const PROTOCOL_ERROR: u32 = 1;
pub const INTERNAL_ERROR: u32 = 2;
pub const REFUSED_STREAM: u32 = 7;
pub const ENHANCE_YOUR_CALM: u32 = 11;

/// A session's configuration (doc/codec.md "new_session").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_concurrent_streams: u32,
    /// SETTINGS_INITIAL_WINDOW_SIZE: each stream's receive window.
    pub initial_window_size: u32,
    /// SETTINGS_MAX_FRAME_SIZE.
    pub max_frame_size: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE, also enforced: a larger request is refused (431).
    pub max_header_list_size: u32,
    /// SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441).
    pub enable_connect_protocol: bool,
    /// false: the server's SETTINGS say SETTINGS_ENABLE_PUSH = 0; true: the setting is
    /// left out. Nothing is ever pushed.
    pub enable_push: bool,
    /// RST_STREAM rate limit (CVE-2023-44487): a bucket of `rst_burst`, refilled by
    /// `rst_rate` per second.
    pub rst_burst: u64,
    pub rst_rate: u64,
    /// The most regular header fields a request may have (all `cookie` fields count as
    /// one): more is a 431 refusal.
    pub max_headers: u64,
    /// h2c by `Upgrade: h2c`: the HTTP2-Settings header value (base64url).
    pub upgrade: Option<Vec<u8>>,
    /// The upgraded request was HEAD.
    pub upgrade_head: bool,
    /// The `server` field of each response head, unless the app gives one (empty: none;
    /// a valid field value).
    pub server: Vec<u8>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_concurrent_streams: 100,
            initial_window_size: 65535,
            max_frame_size: 16384,
            max_header_list_size: 65536,
            enable_connect_protocol: true,
            enable_push: false,
            rst_burst: 1000,
            rst_rate: 33,
            max_headers: 100,
            upgrade: None,
            upgrade_head: false,
            server: Vec::new(),
        }
    }
}

/// A request as the connection builds its scope from it (the shape of
/// `parse_request`'s result, doc/codec.md).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    pub method: Vec<u8>,
    /// `raw_path` percent-decoded; `path_utf8`: it is well-formed UTF-8 with a byte >= 0x80.
    pub path: Vec<u8>,
    pub path_utf8: bool,
    pub raw_path: Vec<u8>,
    pub query_string: Vec<u8>,
    pub scheme: Vec<u8>,
    /// Regular fields in order, `host` from `:authority`, cookies merged.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub content_length: Option<u64>,
    pub sse: bool,
    pub expect_continue: bool,
    /// `:protocol` of an extended CONNECT (RFC 8441).
    pub protocol: Option<Vec<u8>>,
}

/// What a `feed` (or the writing of frames) produced, in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete request head, or the reason the server refuses it.
    Request { id: i32, request: Result<Request, H2Refusal>, end_stream: bool },
    /// Request body bytes (consecutive chunks of one stream in one batch are merged).
    Data { id: i32, data: Vec<u8>, end_stream: bool },
    /// Request trailers (they end the stream).
    Trailers { id: i32, headers: Vec<(Vec<u8>, Vec<u8>)> },
    /// A stream the application knows closed with an error code.
    Reset { id: i32, code: u32 },
    /// A stream the application knows closed normally.
    Closed { id: i32 },
    /// The peer sent GOAWAY.
    Goaway { last_stream_id: i32, code: u32 },
    /// The session reset a stream because of the peer (logged by the connection).
    Error { id: i32, kind: H2Error },
}

/// A callback panicked: the session is unusable (the glue croaks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Panicked;

/// Why a `respond` / `send_data` / `send_trailers` was refused (an application error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// Invalid status or headers, as `check_headers` says.
    App(AppError),
    /// The stream is not open (never was, was reset, or is closed).
    StreamClosed,
    /// A final response was already started on this stream.
    AlreadyStarted,
    /// No final response was started on this stream yet.
    NotStarted,
    /// The response body already ended.
    AlreadyEnded,
    /// See [`Panicked`].
    Panicked,
}

/// A header block being received.
#[derive(Debug, Default)]
struct Block {
    method: Option<Vec<u8>>,
    path: Option<Vec<u8>>,
    scheme: Option<Vec<u8>>,
    authority: Option<Vec<u8>>,
    protocol: Option<Vec<u8>>,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
    cookie_at: Option<usize>,
    host_at: Option<usize>,
    /// Regular fields counted against `max_headers` (cookies once).
    count: u64,
    /// RFC 9113 6.5.2 size: name + value + 32 per field, pseudo-header fields included.
    size: u64,
    over: bool,
}

/// One stream's state here (nghttp2 keeps the protocol state).
#[derive(Debug, Default)]
struct Stream {
    block: Option<Block>,
    trailer_block: bool,
    /// A request event was made: the application knows this stream.
    delivered: bool,
    /// Its request was refused: its body is consumed here, not reported.
    refused: bool,
    /// Response bytes not yet framed, from `out_pos`.
    out: Vec<u8>,
    out_pos: usize,
    /// A final response was submitted (with a data source unless `no_body`).
    started: bool,
    no_body: bool,
    /// The application ended the body (and maybe gave trailers).
    ended: bool,
    trailers: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    /// nghttp2 holds our data source deferred (resume it when bytes come).
    deferred: bool,
    /// An extended CONNECT (RFC 8441): a tunnel whose two sides end apart.
    tunnel: bool,
}

impl Stream {
    fn pending(&self) -> usize {
        self.out.len() - self.out_pos
    }
}

/// nghttp2's rate limiter (`nghttp2_ratelim`), mirrored to name the GOAWAY nghttp2
/// sends when RST_STREAM frames come faster than the limit ([`H2Error::RapidReset`]).
#[derive(Debug)]
struct RateLimit {
    burst: u64,
    rate: u64,
    val: u64,
    tstamp: u64,
}

impl RateLimit {
    fn new(burst: u64, rate: u64) -> RateLimit {
        RateLimit { burst, rate, val: burst, tstamp: 0 }
    }

    fn update(&mut self, now: u64) {
        if now == self.tstamp {
            return;
        }
        let d = if now > self.tstamp { now - self.tstamp } else { 1 };
        self.tstamp = now;
        self.val = match self.rate.checked_mul(d).and_then(|g| g.checked_add(self.val)) {
            Some(v) => v.min(self.burst),
            None => self.burst,
        };
    }

    /// false when the bucket is empty.
    fn drain(&mut self) -> bool {
        if self.val == 0 {
            return false;
        }
        self.val -= 1;
        true
    }
}

/// The monotonic clock in whole seconds, as nghttp2's `nghttp2_time_now_sec`.
fn now_sec() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc == 0 {
        u64::try_from(ts.tv_sec).unwrap_or(0)
    } else {
        0
    }
}

/// Everything nghttp2's callbacks touch: the session's `user_data`, boxed so that its
/// address stays put.
#[derive(Debug)]
struct State {
    max_headers: u64,
    max_header_list_size: u64,
    events: Vec<Event>,
    streams: HashMap<i32, Stream>,
    /// Output not yet handed out, from `out_pos`.
    out: Vec<u8>,
    out_pos: usize,
    /// While set, the data source defers every stream (a `feed` moves only control
    /// frames out); `probe_deferred` lists the streams it deferred.
    probing: bool,
    probe_deferred: Vec<i32>,
    /// DATA bytes received in this `feed`: the connection window is replenished at once.
    conn_consume: usize,
    /// Bytes of streams nobody will read (refused requests): their windows too.
    stream_consume: Vec<(i32, usize)>,
    /// The connection error (a GOAWAY with an error code that this side did not ask for).
    error: Option<H2Error>,
    /// The code of a GOAWAY the application asked for (so it is not taken for an error).
    own_goaway: Option<u32>,
    rst_limit: RateLimit,
    rapid_reset: bool,
    panicked: bool,
    /// nghttp2 failed as a whole (a fatal return): only `out` is left to write.
    dead: bool,
}

/// `ptr` as the session state.
///
/// # Safety
/// `ptr` is the `user_data` given to nghttp2: a live `State` that nothing else
/// references while nghttp2 runs a callback (the session methods hold no reference to it
/// across their calls into nghttp2).
unsafe fn state<'a>(ptr: *mut c_void) -> &'a mut State {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut *(ptr as *mut State) }
}

/// Runs a callback's body; a panic marks the session and fails it.
fn shield(user_data: *mut c_void, f: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        // SAFETY: the panicking closure's borrow of the state is gone; nghttp2 still
        // holds `user_data` as the live state.
        unsafe { state(user_data) }.panicked = true;
        ng::NGHTTP2_ERR_CALLBACK_FAILURE
    })
}

/// A byte slice from nghttp2 (NULL is empty).
///
/// # Safety
/// Unless NULL, `ptr` points to `len` readable bytes for the callback's duration.
unsafe fn slice<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

impl Block {
    /// Adds one field as nghttp2 validated it (lowercase names, pseudo-header fields
    /// first and once, no connection-specific fields); past a limit only counts.
    fn add(&mut self, name: &[u8], value: &[u8], max_headers: u64, max_size: u64) {
        if self.over {
            return;
        }
        self.size += name.len() as u64 + value.len() as u64 + 32;
        let pseudo = name.first() == Some(&b':');
        if !pseudo && (name != b"cookie" || self.cookie_at.is_none()) {
            self.count += 1;
        }
        if self.size > max_size || self.count > max_headers {
            self.over = true;
            self.fields = Vec::new();
            return;
        }
        let slot = match name {
            b":method" => &mut self.method,
            b":path" => &mut self.path,
            b":scheme" => &mut self.scheme,
            b":authority" => &mut self.authority,
            b":protocol" => &mut self.protocol,
            _ if pseudo => return,
            b"cookie" => {
                if let Some(i) = self.cookie_at {
                    let merged = &mut self.fields[i].1;
                    merged.extend_from_slice(b"; ");
                    merged.extend_from_slice(value);
                } else {
                    self.cookie_at = Some(self.fields.len());
                    self.fields.push((name.to_vec(), value.to_vec()));
                }
                return;
            }
            _ => {
                if name == b"host" {
                    self.host_at = Some(self.fields.len());
                }
                self.fields.push((name.to_vec(), value.to_vec()));
                return;
            }
        };
        *slot = Some(value.to_vec());
    }

    /// The request, or why it is refused, in this order: size, CONNECT, :path, host.
    fn request(self) -> Result<Request, H2Refusal> {
        if self.over {
            return Err(H2Refusal::HeadersTooLarge);
        }
        if self.protocol.is_none() && self.method.as_deref() == Some(b"CONNECT") {
            return Err(H2Refusal::ConnectUnsupported);
        }
        let target = self.path.unwrap_or_default();
        let (raw_path, query_string) = match target.iter().position(|&b| b == b'?') {
            Some(q) => (target[..q].to_vec(), target[q + 1..].to_vec()),
            None => (target.clone(), Vec::new()),
        };
        if !(raw_path.first() == Some(&b'/') || target == b"*") || std::str::from_utf8(&target).is_err() {
            return Err(H2Refusal::BadPath);
        }
        let mut headers = self.fields;
        if let Some(authority) = self.authority {
            match self.host_at {
                Some(i) if !headers[i].1.eq_ignore_ascii_case(&authority) => return Err(H2Refusal::BadHost),
                Some(i) => headers[i].1 = authority,
                None => headers.insert(0, (b"host".to_vec(), authority)),
            }
        }
        let mut path = Vec::with_capacity(raw_path.len());
        let path_utf8 = percent_decode(&raw_path, &mut path);
        let mut req = Request {
            method: self.method.unwrap_or_default(),
            path,
            path_utf8,
            raw_path,
            query_string,
            scheme: self.scheme.unwrap_or_default(),
            protocol: self.protocol,
            ..Request::default()
        };
        for (name, value) in &headers {
            match name.as_slice() {
                // nghttp2 took exactly one 1*DIGIT value that fits an i64
                b"content-length" => req.content_length = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()),
                b"accept" => req.sse |= has_event_stream(value),
                b"expect" => req.expect_continue |= trim_ows(value).eq_ignore_ascii_case(b"100-continue"),
                _ => {}
            }
        }
        req.headers = headers;
        Ok(req)
    }
}

// ---- nghttp2's callbacks --------------------------------------------------------------

/// The frame's header.
///
/// # Safety
/// `frame` points to a frame nghttp2 passed to a callback.
unsafe fn frame_hd<'a>(frame: *const ng::nghttp2_frame) -> &'a ng::nghttp2_frame_hd {
    // SAFETY: every member of the union starts with the frame header.
    unsafe { &(*frame).hd }
}

/// A callback's body about a frame, given the frame's header and the state, under
/// `shield`.
///
/// # Safety
/// `frame` and `user_data` are what nghttp2 passed to the callback.
unsafe fn about_frame(
    frame: *const ng::nghttp2_frame,
    user_data: *mut c_void,
    f: impl FnOnce(&ng::nghttp2_frame_hd, &mut State) -> c_int,
) -> c_int {
    shield(user_data, || {
        // SAFETY: guaranteed by the caller: the frame being handled and our state.
        let (hd, st) = unsafe { (frame_hd(frame), state(user_data)) };
        f(hd, st)
    })
}

unsafe extern "C" fn on_begin_headers(
    _session: *mut ng::nghttp2_session,
    frame: *const ng::nghttp2_frame,
    user_data: *mut c_void,
) -> c_int {
    let body = |hd: &ng::nghttp2_frame_hd, st: &mut State| {
        if u32::from(hd.type_) != ng::NGHTTP2_HEADERS {
            return 0;
        }
        // SAFETY: a HEADERS frame: the union holds `headers`.
        let cat = unsafe { (*frame).headers.cat };
        match cat {
            ng::NGHTTP2_HCAT_REQUEST => {
                st.streams.insert(hd.stream_id, Stream { block: Some(Block::default()), ..Stream::default() });
            }
            ng::NGHTTP2_HCAT_HEADERS => {
                if let Some(s) = st.streams.get_mut(&hd.stream_id) {
                    s.block = Some(Block::default());
                    s.trailer_block = true;
                }
            }
            _ => {}
        }
        0
    };
    // SAFETY: nghttp2 passes the frame being received and our state.
    unsafe { about_frame(frame, user_data, body) }
}

unsafe extern "C" fn on_header(
    _session: *mut ng::nghttp2_session,
    frame: *const ng::nghttp2_frame,
    name: *const u8,
    namelen: usize,
    value: *const u8,
    valuelen: usize,
    _flags: u8,
    user_data: *mut c_void,
) -> c_int {
    shield(user_data, || {
        // SAFETY: nghttp2 passes the frame, the field (valid for the call) and our state.
        let (hd, st, name, value) = unsafe { (frame_hd(frame), state(user_data), slice(name, namelen), slice(value, valuelen)) };
        let (max_headers, max_size) = (st.max_headers, st.max_header_list_size);
        if let Some(block) = st.streams.get_mut(&hd.stream_id).and_then(|s| s.block.as_mut()) {
            block.add(name, value, max_headers, max_size);
        }
        0
    })
}

unsafe extern "C" fn on_frame_recv(
    session: *mut ng::nghttp2_session,
    frame: *const ng::nghttp2_frame,
    user_data: *mut c_void,
) -> c_int {
    let body = |hd: &ng::nghttp2_frame_hd, st: &mut State| {
        let id = hd.stream_id;
        let end_stream = hd.flags & ng::NGHTTP2_FLAG_END_STREAM as u8 != 0;
        match u32::from(hd.type_) {
            ng::NGHTTP2_HEADERS => {
                let Some(s) = st.streams.get_mut(&id) else { return 0 };
                let Some(block) = s.block.take() else { return 0 };
                if s.trailer_block {
                    if s.refused {
                        return 0;
                    }
                    if block.over {
                        st.events.push(Event::Error { id, kind: H2Error::TrailersTooLarge });
                        // SAFETY: the session calling us; submitting from a callback is allowed.
                        unsafe { ng::nghttp2_submit_rst_stream(session, 0, id, ENHANCE_YOUR_CALM) };
                        return 0;
                    }
                    st.events.push(Event::Trailers { id, headers: block.fields });
                    return 0;
                }
                let request = block.request();
                s.delivered = true;
                s.tunnel = matches!(&request, Ok(r) if r.protocol.is_some());
                s.refused = request.is_err();
                st.events.push(Event::Request { id, request, end_stream });
            }
            ng::NGHTTP2_DATA if end_stream => {
                let Some(s) = st.streams.get(&id) else { return 0 };
                if !s.delivered || s.refused {
                    return 0;
                }
                match st.events.last_mut() {
                    Some(Event::Data { id: last, end_stream: e @ false, .. }) if *last == id => *e = true,
                    _ => st.events.push(Event::Data { id, data: Vec::new(), end_stream: true }),
                }
            }
            ng::NGHTTP2_GOAWAY => {
                // SAFETY: a GOAWAY frame: the union holds `goaway`.
                let g = unsafe { &(*frame).goaway };
                st.events.push(Event::Goaway { last_stream_id: g.last_stream_id, code: g.error_code });
            }
            ng::NGHTTP2_RST_STREAM => {
                // nghttp2 counts this one against its limit next (unless it sent GOAWAY)
                if st.own_goaway.is_none() && !st.rapid_reset {
                    st.rst_limit.update(now_sec());
                    if !st.rst_limit.drain() {
                        st.rapid_reset = true;
                    }
                }
            }
            _ => {}
        }
        0
    };
    // SAFETY: nghttp2 passes the frame received and our state.
    unsafe { about_frame(frame, user_data, body) }
}

unsafe extern "C" fn on_data_chunk_recv(
    _session: *mut ng::nghttp2_session,
    _flags: u8,
    stream_id: i32,
    data: *const u8,
    len: usize,
    user_data: *mut c_void,
) -> c_int {
    shield(user_data, || {
        // SAFETY: nghttp2 passes the chunk (valid for the call) and our state.
        let (st, data) = unsafe { (state(user_data), slice(data, len)) };
        st.conn_consume += len;
        let wanted = st.streams.get(&stream_id).is_some_and(|s| s.delivered && !s.refused);
        if !wanted {
            st.stream_consume.push((stream_id, len));
            return 0;
        }
        match st.events.last_mut() {
            Some(Event::Data { id, data: bytes, end_stream: false }) if *id == stream_id => bytes.extend_from_slice(data),
            _ => st.events.push(Event::Data { id: stream_id, data: data.to_vec(), end_stream: false }),
        }
        0
    })
}

unsafe extern "C" fn on_stream_close(
    _session: *mut ng::nghttp2_session,
    stream_id: i32,
    error_code: u32,
    user_data: *mut c_void,
) -> c_int {
    shield(user_data, || {
        // SAFETY: nghttp2 passes our state.
        let st = unsafe { state(user_data) };
        if st.streams.remove(&stream_id).is_some_and(|s| s.delivered) {
            st.events.push(if error_code == NO_ERROR {
                Event::Closed { id: stream_id }
            } else {
                Event::Reset { id: stream_id, code: error_code }
            });
        }
        0
    })
}

unsafe extern "C" fn on_invalid_frame_recv(
    _session: *mut ng::nghttp2_session,
    frame: *const ng::nghttp2_frame,
    lib_error_code: c_int,
    user_data: *mut c_void,
) -> c_int {
    let body = |hd: &ng::nghttp2_frame_hd, st: &mut State| {
        // Only a refused stream is always a stream error (the others nghttp2 reports
        // here may be connection errors, which end the session instead)
        if lib_error_code == ng::NGHTTP2_ERR_REFUSED_STREAM {
            st.events.push(Event::Error { id: hd.stream_id, kind: H2Error::RefusedStream });
        }
        0
    };
    // SAFETY: nghttp2 passes the frame and our state.
    unsafe { about_frame(frame, user_data, body) }
}

unsafe extern "C" fn on_frame_send(
    session: *mut ng::nghttp2_session,
    frame: *const ng::nghttp2_frame,
    user_data: *mut c_void,
) -> c_int {
    let body = |hd: &ng::nghttp2_frame_hd, st: &mut State| {
        let kind = u32::from(hd.type_);
        if (kind == ng::NGHTTP2_DATA || kind == ng::NGHTTP2_HEADERS)
            && hd.flags & ng::NGHTTP2_FLAG_END_STREAM as u8 != 0
            && st.streams.get(&hd.stream_id).is_some_and(|s| !s.tunnel)
        {
            // Our side ended while the client's is open (a response that did not wait
            // for the whole request body): RST_STREAM NO_ERROR tells it to stop sending
            // (RFC 9113 8.1); a tunnel's client ends its own side (RFC 8441 5).
            // SAFETY: the session calling us; the stream was just written.
            unsafe {
                if ng::nghttp2_session_get_stream_remote_close(session, hd.stream_id) == 0 {
                    ng::nghttp2_submit_rst_stream(session, 0, hd.stream_id, NO_ERROR);
                }
            }
        }
        if u32::from(hd.type_) == ng::NGHTTP2_GOAWAY {
            // SAFETY: a GOAWAY frame: the union holds `goaway`.
            let code = unsafe { (*frame).goaway.error_code };
            if code != NO_ERROR && st.own_goaway != Some(code) && st.error.is_none() {
                st.error = Some(if st.rapid_reset && code == INTERNAL_ERROR { H2Error::RapidReset } else { error_for_code(code) });
            }
        }
        0
    };
    // SAFETY: nghttp2 passes the frame sent and our state.
    unsafe { about_frame(frame, user_data, body) }
}

/// The kind named after an RFC 9113 error code (INTERNAL_ERROR for an unknown one).
pub fn error_for_code(code: u32) -> H2Error {
    H2Error::ALL
        .iter()
        .copied()
        .take_while(|k| k.code() <= 13)
        .find(|k| u32::from(k.error_code()) == code)
        .unwrap_or(H2Error::InternalError)
}

/// The data source of every response body: the stream's buffer.
unsafe extern "C" fn read_body(
    session: *mut ng::nghttp2_session,
    stream_id: i32,
    buf: *mut u8,
    length: usize,
    data_flags: *mut u32,
    _source: *mut ng::nghttp2_data_source,
    user_data: *mut c_void,
) -> ng::nghttp2_ssize {
    let rc = shield(user_data, || {
        // SAFETY: nghttp2 passes our state.
        let st = unsafe { state(user_data) };
        let probing = st.probing;
        let Some(s) = st.streams.get_mut(&stream_id) else {
            return ng::NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        };
        if probing {
            s.deferred = true;
            st.probe_deferred.push(stream_id);
            return ng::NGHTTP2_ERR_DEFERRED;
        }
        let n = s.pending().min(length);
        if n > 0 {
            // SAFETY: nghttp2 gives `length` writable bytes at `buf`; n <= length.
            unsafe { std::ptr::copy_nonoverlapping(s.out[s.out_pos..].as_ptr(), buf, n) };
            s.out_pos += n;
            if s.out_pos == s.out.len() {
                s.out.clear();
                s.out_pos = 0;
            }
        }
        if s.pending() == 0 && s.ended {
            let mut flags = ng::NGHTTP2_DATA_FLAG_EOF;
            if let Some(trailers) = s.trailers.take() {
                flags |= ng::NGHTTP2_DATA_FLAG_NO_END_STREAM;
                let nva: Vec<ng::nghttp2_nv> = trailers.iter().map(|(n, v)| nv(n, v)).collect();
                // SAFETY: the session calling us; nghttp2 copies the fields.
                unsafe { ng::nghttp2_submit_trailer(session, stream_id, nva.as_ptr(), nva.len()) };
            }
            // SAFETY: nghttp2 gives a writable flags word.
            unsafe { *data_flags |= flags };
        } else if n == 0 {
            s.deferred = true;
            return ng::NGHTTP2_ERR_DEFERRED;
        }
        n as c_int
    });
    rc as ng::nghttp2_ssize
}

/// A field for nghttp2 (which copies it).
fn nv(name: &[u8], value: &[u8]) -> ng::nghttp2_nv {
    ng::nghttp2_nv {
        name: name.as_ptr() as *mut u8,
        value: value.as_ptr() as *mut u8,
        namelen: name.len(),
        valuelen: value.len(),
        flags: ng::NGHTTP2_NV_FLAG_NONE as u8,
    }
}

// ---- the session ------------------------------------------------------------------------

/// An HTTP/2 server session over one connection.
#[derive(Debug)]
pub struct Session {
    raw: *mut ng::nghttp2_session,
    /// The boxed [`State`] (nghttp2's `user_data`); freed after `raw` in `drop`.
    state: *mut State,
    /// [`Settings::server`].
    server: Vec<u8>,
}

/// RFC 4648 base64url without padding (the HTTP2-Settings header, RFC 7540 3.2.1);
/// padding `=` at the end is tolerated.
fn base64url(s: &[u8]) -> Option<Vec<u8>> {
    let s = match s.iter().position(|&b| b == b'=') {
        Some(p) if s[p..].iter().all(|&b| b == b'=') => &s[..p],
        Some(_) => return None,
        None => s,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &b in s {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    (bits < 6).then_some(out)
}

impl Session {
    /// A server session that has queued its SETTINGS (the server connection preface,
    /// already in the output) and expects the client preface first. With
    /// `settings.upgrade` it takes over an HTTP/1.1 request as stream 1 (half-closed
    /// remote); an HTTP2-Settings value that is not base64url of whole settings is
    /// [`H2Error::BadUpgradeSettings`].
    pub fn new(settings: &Settings) -> Result<Session, H2Error> {
        let upgrade = match &settings.upgrade {
            Some(v) => match base64url(v) {
                Some(payload) if payload.len() % 6 == 0 => Some(payload),
                _ => return Err(H2Error::BadUpgradeSettings),
            },
            None => None,
        };
        let state = Box::into_raw(Box::new(State {
            max_headers: settings.max_headers,
            max_header_list_size: u64::from(settings.max_header_list_size),
            events: Vec::new(),
            streams: HashMap::new(),
            out: Vec::new(),
            out_pos: 0,
            probing: false,
            probe_deferred: Vec::new(),
            conn_consume: 0,
            stream_consume: Vec::new(),
            error: None,
            own_goaway: None,
            rst_limit: RateLimit::new(settings.rst_burst, settings.rst_rate),
            rapid_reset: false,
            panicked: false,
            dead: false,
        }));
        let mut session = Session { raw: std::ptr::null_mut(), state, server: settings.server.clone() };
        // SAFETY: nghttp2's constructors and setters on objects made here and freed here;
        // `state` outlives the session (see Drop).
        unsafe {
            let mut cb: *mut ng::nghttp2_session_callbacks = std::ptr::null_mut();
            let mut opt: *mut ng::nghttp2_option = std::ptr::null_mut();
            if ng::nghttp2_session_callbacks_new(&mut cb) != 0 || ng::nghttp2_option_new(&mut opt) != 0 {
                panic!("nghttp2: out of memory");
            }
            ng::nghttp2_session_callbacks_set_on_begin_headers_callback(cb, Some(on_begin_headers));
            ng::nghttp2_session_callbacks_set_on_header_callback(cb, Some(on_header));
            ng::nghttp2_session_callbacks_set_on_frame_recv_callback(cb, Some(on_frame_recv));
            ng::nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, Some(on_data_chunk_recv));
            ng::nghttp2_session_callbacks_set_on_stream_close_callback(cb, Some(on_stream_close));
            ng::nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, Some(on_invalid_frame_recv));
            ng::nghttp2_session_callbacks_set_on_frame_send_callback(cb, Some(on_frame_send));
            ng::nghttp2_option_set_no_auto_window_update(opt, 1);
            ng::nghttp2_option_set_stream_reset_rate_limit(opt, settings.rst_burst, settings.rst_rate);
            let rc = ng::nghttp2_session_server_new2(&mut session.raw, cb, state as *mut c_void, opt);
            ng::nghttp2_session_callbacks_del(cb);
            ng::nghttp2_option_del(opt);
            if rc != 0 {
                panic!("nghttp2_session_server_new2: {rc}");
            }
            let mut iv = vec![
                entry(ng::NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, settings.max_concurrent_streams),
                entry(ng::NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, settings.initial_window_size),
                entry(ng::NGHTTP2_SETTINGS_MAX_FRAME_SIZE, settings.max_frame_size),
                entry(ng::NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, settings.max_header_list_size),
            ];
            if !settings.enable_push {
                iv.push(entry(ng::NGHTTP2_SETTINGS_ENABLE_PUSH, 0));
            }
            if settings.enable_connect_protocol {
                iv.push(entry(ng::NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1));
            }
            let rc = ng::nghttp2_submit_settings(session.raw, 0, iv.as_ptr(), iv.len());
            if rc != 0 {
                // Values out of range (the facade checks them first)
                panic!("nghttp2_submit_settings: {rc}");
            }
            if let Some(payload) = upgrade {
                let rc = ng::nghttp2_session_upgrade2(
                    session.raw,
                    payload.as_ptr(),
                    payload.len(),
                    c_int::from(settings.upgrade_head),
                    std::ptr::null_mut(),
                );
                if rc != 0 {
                    return Err(H2Error::BadUpgradeSettings);
                }
                (*state).streams.insert(1, Stream { delivered: true, ..Stream::default() });
            }
        }
        // The server preface goes first, whatever comes later
        session.pull(usize::MAX, false).map_err(|_| H2Error::InternalError)?;
        Ok(session)
    }

    /// The state, between calls into nghttp2.
    fn st(&mut self) -> &mut State {
        // SAFETY: `state` lives as long as `self`; no nghttp2 call is running (they are
        // all made by `self`'s methods, which do not hold this borrow across them).
        unsafe { &mut *self.state }
    }

    fn st_ref(&self) -> &State {
        // SAFETY: as `st`.
        unsafe { &*self.state }
    }

    /// After nghttp2 failed as a whole: a GOAWAY written here, nghttp2 left alone.
    fn die(&mut self, kind: H2Error) {
        // SAFETY: a live session; this only reads a counter.
        let last = unsafe { ng::nghttp2_session_get_last_proc_stream_id(self.raw) };
        let st = self.st();
        st.dead = true;
        st.error.get_or_insert(kind);
        st.out.extend_from_slice(&[0, 0, 8, 7, 0, 0, 0, 0, 0]);
        st.out.extend_from_slice(&(last as u32 & 0x7fff_ffff).to_be_bytes());
        st.out.extend_from_slice(&u32::from(kind.error_code()).to_be_bytes());
    }

    fn check_panic(&mut self) -> Result<(), Panicked> {
        if self.st().panicked {
            self.st().dead = true;
            return Err(Panicked);
        }
        Ok(())
    }

    /// Reads `input`: the events it makes are kept for [`Session::take_events`], a
    /// connection error in [`Session::error`] (with its GOAWAY in the output). Then the
    /// control frames nghttp2 has to send (SETTINGS and PING acknowledgements,
    /// RST_STREAM, WINDOW_UPDATE, GOAWAY, response HEADERS; not DATA) move into the
    /// output, up to [`PROBE_CAP`] bytes buffered, so that what they do (a reset
    /// stream closes, a GOAWAY is an error) is known now.
    pub fn feed(&mut self, input: &[u8]) -> Result<(), Panicked> {
        if self.st().dead {
            return Ok(());
        }
        // SAFETY: a live session; `input` is readable for the call; callbacks reach the
        // state through user_data while no borrow of it is held here.
        let rv = unsafe { ng::nghttp2_session_mem_recv2(self.raw, input.as_ptr(), input.len()) };
        self.check_panic()?;
        if rv < 0 {
            let kind = match rv as c_int {
                ng::NGHTTP2_ERR_BAD_CLIENT_MAGIC => H2Error::BadPreface,
                ng::NGHTTP2_ERR_FLOODED => H2Error::Flood,
                ng::NGHTTP2_ERR_TOO_MANY_CONTINUATIONS => H2Error::ContinuationFlood,
                _ => H2Error::InternalError,
            };
            self.die(kind);
            return Ok(());
        }
        let (conn, streams) = {
            let st = self.st();
            (std::mem::take(&mut st.conn_consume), std::mem::take(&mut st.stream_consume))
        };
        // SAFETY: a live session; these only update window counters (and may queue
        // WINDOW_UPDATE); errors (a stream already gone) are of no consequence.
        unsafe {
            if conn > 0 {
                ng::nghttp2_session_consume_connection(self.raw, conn);
            }
            for (id, n) in streams {
                ng::nghttp2_session_consume_stream(self.raw, id, n);
            }
        }
        if self.st().out.len() - self.st().out_pos < PROBE_CAP {
            self.pull(PROBE_CAP, true)?;
        }
        Ok(())
    }

    /// Moves frames from nghttp2 into the output until it holds `max` bytes or nghttp2
    /// has nothing more; with `control_only`, the data sources defer (and are resumed
    /// after).
    fn pull(&mut self, max: usize, control_only: bool) -> Result<(), Panicked> {
        self.st().probing = control_only;
        let result = loop {
            if self.st().dead || self.st().out.len() - self.st().out_pos >= max {
                break Ok(());
            }
            let mut data: *const u8 = std::ptr::null();
            // SAFETY: a live session; `data` is written by nghttp2.
            let n = unsafe { ng::nghttp2_session_mem_send2(self.raw, &mut data) };
            if self.st().panicked {
                break Err(Panicked);
            }
            if n < 0 {
                self.die(H2Error::InternalError);
                break Ok(());
            }
            if n == 0 {
                break Ok(());
            }
            // SAFETY: nghttp2 returned `n` readable bytes at `data`, valid until its next call.
            let bytes = unsafe { slice(data, n as usize) };
            self.st().out.extend_from_slice(bytes);
        };
        self.st().probing = false;
        let deferred = std::mem::take(&mut self.st().probe_deferred);
        for id in deferred {
            self.resume(id);
        }
        if result.is_err() {
            self.st().dead = true;
        }
        result
    }

    /// Puts a deferred data source back in nghttp2's queue when it has something to say.
    fn resume(&mut self, id: i32) {
        let ready = self.st().streams.get(&id).is_some_and(|s| s.deferred && (s.pending() > 0 || s.ended));
        if ready {
            if let Some(s) = self.st().streams.get_mut(&id) {
                s.deferred = false;
            }
            // SAFETY: a live session; resuming an unknown stream only returns an error.
            unsafe { ng::nghttp2_session_resume_data(self.raw, id) };
        }
    }

    /// The events made since the last call, in order.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.st().events)
    }

    /// The connection error, once there is one.
    pub fn error(&self) -> Option<H2Error> {
        self.st_ref().error
    }

    /// Up to `max` bytes to write now (and at most one frame more is pulled from nghttp2
    /// than that: what is not handed out waits for the next call).
    pub fn output(&mut self, max: usize) -> Result<Vec<u8>, Panicked> {
        self.pull(max, false)?;
        let st = self.st();
        let n = (st.out.len() - st.out_pos).min(max);
        let bytes = st.out[st.out_pos..st.out_pos + n].to_vec();
        st.out_pos += n;
        if st.out_pos == st.out.len() {
            st.out.clear();
            st.out_pos = 0;
        }
        Ok(bytes)
    }

    fn open_stream(&mut self, id: i32) -> Result<&mut Stream, SendError> {
        if self.st().dead {
            return Err(SendError::StreamClosed);
        }
        self.st().streams.get_mut(&id).filter(|s| s.delivered).ok_or(SendError::StreamClosed)
    }

    /// Submits a response head: a final one (a body follows unless `end_stream`), or an
    /// interim 1xx one (which ends nothing). Returns the app's Content-Length, if any.
    pub fn respond(
        &mut self,
        id: i32,
        status: &[u8],
        headers: &[HeaderIn<'_>],
        end_stream: bool,
    ) -> Result<Option<u64>, SendError> {
        let code = parse_status(status).filter(|&c| c != 101).ok_or(SendError::App(AppError::Status))?;
        let seen = crate::response::check_headers(headers).map_err(SendError::App)?;
        let length = seen.content_length;
        let s = self.open_stream(id)?;
        if s.started {
            return Err(SendError::AlreadyStarted);
        }
        let interim = code < 200;
        if !interim {
            s.started = true;
            s.no_body = end_stream;
            s.ended = end_stream;
        }
        // The app's fields (check_headers' rules), lowercased, without connection-specific
        // ones, and date and server unless given: borrowed where they can be, as nghttp2
        // copies what it is given (a name that is not lowercase is lowercased here)
        let date = crate::date::http_date();
        let mut lowered: Vec<Vec<u8>> = Vec::new();
        for h in headers {
            if h.name.iter().any(u8::is_ascii_uppercase) {
                lowered.push(h.name.to_ascii_lowercase());
            }
        }
        let mut lowered = lowered.iter();
        let mut nva = Vec::with_capacity(headers.len() + 3);
        nva.push(nv(b":status", status)); // (three digits: parse_status)
        for h in headers {
            let name: &[u8] = if h.name.iter().any(u8::is_ascii_uppercase) {
                lowered.next().map_or(&[][..], Vec::as_slice)
            } else {
                h.name
            };
            if !connection_specific(name, h.value) {
                nva.push(nv(name, h.value));
            }
        }
        if !seen.date {
            nva.push(nv(b"date", &date));
        }
        if !seen.server && !self.server.is_empty() {
            nva.push(nv(b"server", &self.server));
        }
        let provider = ng::nghttp2_data_provider2 {
            source: ng::nghttp2_data_source { ptr: std::ptr::null_mut() },
            read_callback: Some(read_body),
        };
        // SAFETY: a live session; nghttp2 copies the fields and the provider struct.
        let rc = unsafe {
            if interim {
                ng::nghttp2_submit_headers(self.raw, 0, id, std::ptr::null(), nva.as_ptr(), nva.len(), std::ptr::null_mut())
            } else if end_stream {
                ng::nghttp2_submit_response2(self.raw, id, nva.as_ptr(), nva.len(), std::ptr::null())
            } else {
                ng::nghttp2_submit_response2(self.raw, id, nva.as_ptr(), nva.len(), &provider)
            }
        };
        if rc != 0 {
            return Err(SendError::StreamClosed);
        }
        Ok(if interim { None } else { length })
    }

    /// Queues response body bytes (`end`: the body ends with them).
    pub fn send_data(&mut self, id: i32, data: &[u8], end: bool) -> Result<(), SendError> {
        let s = self.open_stream(id)?;
        if !s.started {
            return Err(SendError::NotStarted);
        }
        if s.ended {
            return Err(SendError::AlreadyEnded);
        }
        s.out.extend_from_slice(data);
        s.ended = end;
        self.resume(id);
        Ok(())
    }

    /// Ends the response body with trailer fields (validated as response headers).
    pub fn send_trailers(&mut self, id: i32, headers: &[HeaderIn<'_>]) -> Result<(), SendError> {
        let fields = trailer_fields(headers)?;
        let s = self.open_stream(id)?;
        if !s.started {
            return Err(SendError::NotStarted);
        }
        if s.ended {
            return Err(SendError::AlreadyEnded);
        }
        s.ended = true;
        if !fields.is_empty() {
            s.trailers = Some(fields);
        }
        self.resume(id);
        Ok(())
    }

    /// Response bytes of the stream not yet framed.
    pub fn buffered(&self, id: i32) -> usize {
        self.st_ref().streams.get(&id).map_or(0, Stream::pending)
    }

    /// The application took `n` body bytes of the stream: its receive window may grow.
    pub fn consumed(&mut self, id: i32, n: usize) {
        if n > 0 && !self.st().dead {
            // SAFETY: a live session; an unknown stream only gives an error code.
            unsafe { ng::nghttp2_session_consume_stream(self.raw, id, n) };
        }
    }

    /// Resets a stream (its buffered response is dropped).
    pub fn reset(&mut self, id: i32, code: u32) {
        if self.st().dead {
            return;
        }
        if let Some(s) = self.st().streams.get_mut(&id) {
            s.out = Vec::new();
            s.out_pos = 0;
            s.ended = true;
            s.trailers = None;
        }
        // SAFETY: a live session; an unknown or closed stream only gives an error code.
        unsafe { ng::nghttp2_submit_rst_stream(self.raw, 0, id, code) };
    }

    /// `graceful`: the first step of a graceful shutdown (a GOAWAY with the highest
    /// stream id, RFC 9113 6.8), once; else the final GOAWAY with the last stream id
    /// processed and `code`: with NO_ERROR streams in flight finish, with another code
    /// the session ends once it is written.
    pub fn goaway(&mut self, code: u32, graceful: bool) {
        if self.st().dead {
            return;
        }
        self.st().own_goaway = Some(code);
        // SAFETY: a live session; a repeated or late call only gives an error code.
        unsafe {
            if graceful {
                ng::nghttp2_submit_shutdown_notice(self.raw);
            } else if code == NO_ERROR {
                let last = ng::nghttp2_session_get_last_proc_stream_id(self.raw);
                ng::nghttp2_submit_goaway(self.raw, 0, last, code, std::ptr::null(), 0);
            } else {
                ng::nghttp2_session_terminate_session(self.raw, code);
            }
        }
    }

    /// Something is waiting to be written.
    pub fn want_write(&self) -> bool {
        let st = self.st_ref();
        // SAFETY: a live session; a query.
        st.out.len() > st.out_pos || (!st.dead && unsafe { ng::nghttp2_session_want_write(self.raw) } != 0)
    }

    /// The session will neither read nor write anything more (all output taken).
    pub fn is_closed(&self) -> bool {
        let st = self.st_ref();
        if st.out.len() > st.out_pos {
            return false;
        }
        // SAFETY: a live session; queries.
        st.dead || unsafe { ng::nghttp2_session_want_read(self.raw) == 0 && ng::nghttp2_session_want_write(self.raw) == 0 }
    }

    /// Streams the application knows that are not closed.
    pub fn open_streams(&self) -> usize {
        self.st_ref().streams.values().filter(|s| s.delivered).count()
    }

    /// The highest stream id the session processed (the GOAWAY's last stream id).
    pub fn last_stream_id(&self) -> i32 {
        // SAFETY: a live session; a query.
        unsafe { ng::nghttp2_session_get_last_proc_stream_id(self.raw) }
    }
}

fn entry(id: u32, value: u32) -> ng::nghttp2_settings_entry {
    ng::nghttp2_settings_entry { settings_id: id as i32, value }
}

/// Fields that RFC 9113 8.2.2 forbids in HTTP/2 (connection-specific): dropped from what
/// the application gives, as `te` other than `trailers`.
fn connection_specific(name: &[u8], value: &[u8]) -> bool {
    matches!(name, b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade")
        || (name == b"te" && !trim_ows(value).eq_ignore_ascii_case(b"trailers"))
}

/// Trailer fields as the application gave them, validated as `check_trailers` does,
/// lowercased, without connection-specific fields (kept until the body is written).
fn trailer_fields(headers: &[HeaderIn<'_>]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, SendError> {
    crate::response::check_trailers(headers).map_err(SendError::App)?;
    let mut fields = Vec::with_capacity(headers.len());
    for h in headers {
        let name = h.name.to_ascii_lowercase();
        if !connection_specific(&name, h.value) {
            fields.push((name, h.value.to_vec()));
        }
    }
    Ok(fields)
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: `raw` (if made) is freed once, before the state its callbacks use.
        unsafe {
            if !self.raw.is_null() {
                ng::nghttp2_session_del(self.raw);
            }
            drop(Box::from_raw(self.state));
        }
    }
}
