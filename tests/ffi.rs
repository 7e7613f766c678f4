//! The C ABI, called as the XS glue calls it.

use pagi_server::ffi::*;
use std::ffi::{c_int, CStr};
use std::mem::MaybeUninit;

unsafe fn span<'a>(s: PagiSpan) -> Option<&'a [u8]> {
    if s.ptr.is_null() {
        None
    } else {
        // SAFETY: spans from the module point to `len` readable bytes until the next call.
        Some(unsafe { std::slice::from_raw_parts(s.ptr, s.len) })
    }
}

fn parse(buf: &[u8]) -> (i32, PagiRequest) {
    // Uninitialised, as C callers leave it: every entry writes the whole result
    let mut out = MaybeUninit::<PagiRequest>::uninit();
    // SAFETY: a valid buffer and a writable result struct.
    let rc = unsafe { pagi_parse_request(buf.as_ptr(), buf.len(), 16384, 100, 8192, out.as_mut_ptr()) };
    // SAFETY: the call wrote a whole PagiRequest, whatever its outcome.
    (rc, unsafe { out.assume_init() })
}

#[test]
fn parse_request_abi() {
    let buf = b"GET /caf%C3%A9?q HTTP/1.1\r\nHost: h\r\nCookie: a\r\nCookie: b\r\nUpgrade: WS\r\nConnection: upgrade\r\n\r\n";
    let (rc, r) = parse(buf);
    assert_eq!(rc, PAGI_DONE);
    // SAFETY: spans of the result just returned.
    unsafe {
        assert_eq!(span(r.method), Some(&b"GET"[..]));
        assert_eq!(span(r.path), Some("/café".as_bytes()));
        assert_eq!(span(r.raw_path), Some(&b"/caf%C3%A9"[..]));
        assert_eq!(span(r.query_string), Some(&b"q"[..]));
        assert_eq!(span(r.upgrade), Some(&b"ws"[..]));
        assert_eq!(span(r.ws_key), None);
        assert_eq!(span(r.host), Some(&b"h"[..]));
        let h = std::slice::from_raw_parts(r.headers, r.n_headers);
        assert_eq!(h.len(), 4);
        assert_eq!(span(h[1].name), Some(&b"cookie"[..]));
        assert_eq!(span(h[1].value), Some(&b"a; b"[..]));
    }
    assert_eq!((r.consumed, r.content_length, r.http_minor, r.path_utf8, r.keep_alive), (buf.len(), -1, 1, 1, 1));

    let (rc, _) = parse(b"GET / HTTP/1.1\r\n");
    assert_eq!(rc, PAGI_PARTIAL);
    let (rc, r) = parse(b"GET / HTTP/3.0\r\n");
    assert_eq!((rc, r.error), (PAGI_ERROR, 12));
    // SAFETY: a NULL buffer with length 0 is the empty input.
    let rc = unsafe { pagi_parse_request(std::ptr::null(), 0, 1, 1, 1, MaybeUninit::zeroed().as_mut_ptr()) };
    assert_eq!(rc, PAGI_PARTIAL);
    // SAFETY: a NULL result pointer is refused, not written.
    assert_eq!(unsafe { pagi_parse_request(b"x".as_ptr(), 1, 1, 1, 1, std::ptr::null_mut()) }, PAGI_PANIC);
}

#[test]
fn decode_chunked_abi() {
    let buf = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    let mut out = MaybeUninit::<PagiChunked>::zeroed();
    // SAFETY: valid buffer, writable result.
    let rc = unsafe { pagi_decode_chunked(buf.as_ptr(), buf.len(), -1, 100, out.as_mut_ptr()) };
    // SAFETY: initialised by zeroing and the call.
    let out = unsafe { out.assume_init() };
    assert_eq!(rc, PAGI_DONE);
    assert_eq!((out.consumed, out.state, out.data_len, out.n_ranges), (buf.len(), -4, 5, 2));
    let mut out = MaybeUninit::<PagiChunked>::zeroed();
    // SAFETY: as above.
    let rc = unsafe { pagi_decode_chunked(b"z\r\n".as_ptr(), 3, -1, 100, out.as_mut_ptr()) };
    // SAFETY: as above.
    let out = unsafe { out.assume_init() };
    assert_eq!((rc, out.error, out.consumed, out.state), (PAGI_ERROR, 7, 0, -1));
}

#[test]
fn serialize_abi() {
    let fields = [
        PagiFieldIn { name: b"X".as_ptr(), name_len: 1, value: b"1".as_ptr(), value_len: 1, wide: 0 },
        PagiFieldIn { name: b"Y".as_ptr(), name_len: 1, value: b"2".as_ptr(), value_len: 1, wide: 2 },
    ];
    // The Server field is the one set (none until then); an invalid value changes nothing
    // SAFETY: readable bytes.
    assert_eq!(unsafe { pagi_set_server(b"PAGI-Server".as_ptr(), 11) }, PAGI_DONE);
    // SAFETY: readable bytes.
    assert_eq!(unsafe { pagi_set_server(b"a\r\nb".as_ptr(), 4) }, PAGI_ERROR);
    let mut out = MaybeUninit::<PagiResponse>::zeroed();
    // SAFETY: valid status bytes, 1 readable field, writable result.
    let rc = unsafe { pagi_serialize_response(b"200".as_ptr(), 3, fields.as_ptr(), 1, 4, 1, 3, out.as_mut_ptr()) };
    // SAFETY: initialised.
    let out = unsafe { out.assume_init() };
    assert_eq!(rc, PAGI_DONE);
    // SAFETY: the head stays valid until the next call on this thread.
    let head = unsafe { std::slice::from_raw_parts(out.head, out.head_len) };
    let head = String::from_utf8(head.to_vec()).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\nX: 1\r\nDate: "), "{head}");
    assert!(head.ends_with(" GMT\r\nServer: PAGI-Server\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n"), "{head}");
    assert_eq!((out.mode, out.close, out.append_body, out.length), (1, 0, 1, 3));
    let mut out = MaybeUninit::<PagiResponse>::zeroed();
    // SAFETY: two readable fields.
    let rc = unsafe { pagi_serialize_response(b"200".as_ptr(), 3, fields.as_ptr(), 2, 0, 0, 0, out.as_mut_ptr()) };
    // SAFETY: initialised.
    let out = unsafe { out.assume_init() };
    assert_eq!((rc, out.error, out.error_index), (PAGI_ERROR, 3, 1));
    let mut out = MaybeUninit::<PagiResponse>::zeroed();
    // SAFETY: as above.
    let rc = unsafe { pagi_serialize_trailers(fields.as_ptr(), 1, out.as_mut_ptr()) };
    // SAFETY: initialised.
    let out = unsafe { out.assume_init() };
    assert_eq!(rc, PAGI_DONE);
    // SAFETY: valid until the next call.
    assert_eq!(unsafe { std::slice::from_raw_parts(out.head, out.head_len) }, b"0\r\nX: 1\r\n\r\n");
    // check_headers: the same verdicts, nothing built
    let cl = |v: &'static [u8]| PagiFieldIn { name: b"Content-Length".as_ptr(), name_len: 14, value: v.as_ptr(), value_len: v.len(), wide: 0 };
    let check = |f: &[PagiFieldIn]| {
        let mut out = MaybeUninit::<PagiResponse>::uninit();
        // SAFETY: `f.len()` readable fields, writable result.
        let rc = unsafe { pagi_check_headers(f.as_ptr(), f.len(), out.as_mut_ptr()) };
        // SAFETY: every entry writes the whole result.
        let out = unsafe { out.assume_init() };
        (rc, out.error, out.error_index)
    };
    assert_eq!(check(&fields[..1]), (PAGI_DONE, 0, 0));
    assert_eq!(check(&fields), (PAGI_ERROR, PAGI_BAD_VALUE, 1));
    assert_eq!(check(&[fields[0], cl(b"12x")]), (PAGI_ERROR, PAGI_BAD_LENGTH, 1));
    assert_eq!(check(&[cl(b"1"), cl(b"2")]), (PAGI_ERROR, PAGI_CONFLICTING_LENGTH, 0));
    assert_eq!(check(&[]), (PAGI_DONE, 0, 0));
    // SAFETY: a NULL list of length 0 is no headers; a NULL result is refused.
    unsafe {
        assert_eq!(pagi_check_headers(std::ptr::null(), 0, MaybeUninit::zeroed().as_mut_ptr()), PAGI_DONE);
        assert_eq!(pagi_check_headers(fields.as_ptr(), 1, std::ptr::null_mut()), PAGI_PANIC);
    }
    // the app's length is announced; none without mode 1
    let mut out = MaybeUninit::<PagiResponse>::uninit();
    // SAFETY: one readable field, writable result.
    let rc = unsafe { pagi_serialize_response(b"200".as_ptr(), 3, [cl(b"42")].as_ptr(), 1, 0, 0, 0, out.as_mut_ptr()) };
    // SAFETY: written whole.
    let out = unsafe { out.assume_init() };
    assert_eq!((rc, out.mode, out.length), (PAGI_DONE, 1, 42));
    let mut out = MaybeUninit::<PagiResponse>::uninit();
    // SAFETY: no fields, writable result.
    let rc = unsafe { pagi_serialize_response(b"200".as_ptr(), 3, std::ptr::null(), 0, 5, 0, 0, out.as_mut_ptr()) };
    // SAFETY: written whole.
    let out = unsafe { out.assume_init() };
    assert_eq!((rc, out.mode, out.close, out.length), (PAGI_DONE, 0, 0, -1));

    let mut buf = [0u8; 18];
    // SAFETY: 18 writable bytes.
    let n = unsafe { pagi_chunk_prefix(0x1abc, buf.as_mut_ptr()) };
    assert_eq!(&buf[..n], b"1abc\r\n");
}

#[test]
fn tables_abi() {
    let info = |table, code| {
        let (mut kind, mut message) = (std::ptr::null(), std::ptr::null());
        // SAFETY: both pointers are writable.
        let number = unsafe { pagi_error_info(table, code, &mut kind, &mut message) };
        if number == 0 {
            assert!(kind.is_null() && message.is_null());
            return None;
        }
        // SAFETY: static NUL-terminated strings.
        let text = |p| unsafe { CStr::from_ptr(p) }.to_str().unwrap();
        Some((text(kind), text(message), number))
    };
    assert_eq!(info(PAGI_TABLE_HTTP, 9), Some(("uri_too_long", "request line too long", 414)));
    assert_eq!(info(PAGI_TABLE_HTTP, 0), None);
    assert_eq!(info(PAGI_TABLE_HTTP, 13), None);
    assert_eq!(info(PAGI_TABLE_WS, 6), Some(("too_large", "frame too large", 1009)));
    assert_eq!(info(PAGI_TABLE_WS, 4), Some(("unmasked", "client frame not masked", 1002)));
    assert_eq!(info(PAGI_TABLE_WS, 8), Some(("bad_deflate", "invalid compressed data", 1007)));
    assert_eq!(info(PAGI_TABLE_WS, 10), None);
    assert_eq!(info(7, 1), None);
    // NULL outputs are allowed
    // SAFETY: NULL pointers are not written.
    assert_eq!(unsafe { pagi_error_info(PAGI_TABLE_HTTP, 1, std::ptr::null_mut(), std::ptr::null_mut()) }, 400);
    let mut len = 0;
    // SAFETY: `len` is writable; the phrase is static.
    let p = unsafe { pagi_reason_phrase(431, &mut len) };
    // SAFETY: `len` bytes at `p`.
    assert_eq!(unsafe { std::slice::from_raw_parts(p, len) }, b"Request Header Fields Too Large");
    // SAFETY: as above.
    unsafe { pagi_reason_phrase(70000, &mut len) };
    assert_eq!(len, 0);
}

#[test]
fn panics_are_caught_and_reported() {
    pagi_init();
    assert_eq!(pagi_debug_panic(-5), -5);
    assert_eq!(pagi_debug_panic(7), PAGI_PANIC);
    let mut len = 0;
    // SAFETY: `len` writable; the message stays valid until the next panic on this thread.
    let msg = unsafe { std::slice::from_raw_parts(pagi_last_panic(&mut len), len) };
    let msg = String::from_utf8_lossy(msg);
    assert!(msg.starts_with("pagi_debug_panic(7) called at src/ffi.rs:"), "{msg}");
    // And everything still works afterwards
    assert_eq!(parse(b"GET / HTTP/1.0\r\n\r\n").0, PAGI_DONE);
}

#[test]
fn connection_info_abi() {
    use std::os::fd::AsRawFd;
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut out = MaybeUninit::<PagiConnInfo>::zeroed();
    // SAFETY: writable result.
    assert_eq!(unsafe { pagi_connection_info(a.as_raw_fd(), out.as_mut_ptr()) }, 1);
    // SAFETY: initialised.
    let out = unsafe { out.assume_init() };
    assert_eq!((out.local.kind, out.local.len, out.peer.kind), (2, 0, 2));
    let mut out = MaybeUninit::<PagiConnInfo>::zeroed();
    // SAFETY: writable result.
    assert_eq!(unsafe { pagi_connection_info(-1, out.as_mut_ptr()) }, 0);
}

#[test]
fn websocket_abi() {
    let buf = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58\x89";
    let mut out = MaybeUninit::<PagiWsFrame>::uninit();
    // SAFETY: valid buffer, writable result.
    let rc = unsafe { pagi_ws_parse_frame(buf.as_ptr(), buf.len(), 125, 0, out.as_mut_ptr()) };
    // SAFETY: every entry writes the whole result.
    let f = unsafe { out.assume_init() };
    assert_eq!(rc, PAGI_DONE);
    assert_eq!((f.fin, f.opcode, f.rsv1, f.payload_offset, f.payload_len, f.consumed, f.key), (1, 1, 0, 6, 5, 11, [0x37, 0xfa, 0x21, 0x3d]));
    let mut payload = [0u8; 5];
    // SAFETY: 5 readable bytes at the payload, a 4-byte key, 5 writable bytes elsewhere.
    let rc = unsafe { pagi_ws_mask(buf[6..].as_ptr(), 5, f.key.as_ptr(), 4, payload.as_mut_ptr()) };
    assert_eq!((rc, &payload), (PAGI_DONE, b"Hello"));

    let parse = |b: &[u8], max: i64, rsv1_ok: c_int| {
        let mut out = MaybeUninit::<PagiWsFrame>::uninit();
        // SAFETY: valid buffer, writable result.
        let rc = unsafe { pagi_ws_parse_frame(b.as_ptr(), b.len(), max, rsv1_ok, out.as_mut_ptr()) };
        // SAFETY: written whole.
        let f = unsafe { out.assume_init() };
        (rc, f.error, f.rsv1)
    };
    assert_eq!(parse(&buf[..10], 125, 0), (PAGI_PARTIAL, 0, 0));
    assert_eq!(parse(buf, 4, 0), (PAGI_ERROR, 6, 0));
    assert_eq!(parse(b"\x81\x05", 125, 0), (PAGI_ERROR, 4, 0));
    // RSV1: an error (rsv_bits) unless allowed; then it marks a data message's first
    // frame, and on a continuation or control frame it is bad_rsv1
    let mut compressed = buf.to_vec();
    compressed[0] |= 0x40;
    assert_eq!(parse(&compressed, 125, 0), (PAGI_ERROR, 1, 0));
    assert_eq!(parse(&compressed, 125, 1), (PAGI_DONE, 0, 1));
    assert_eq!(parse(b"\x40\x80", 125, 1), (PAGI_ERROR, 7, 0));
    assert_eq!(parse(b"\xc9\x80", 125, 1), (PAGI_ERROR, 7, 0));
    // SAFETY: NULL with length 0 is the empty buffer; a NULL result is refused.
    unsafe {
        assert_eq!(pagi_ws_parse_frame(std::ptr::null(), 0, 1, 0, MaybeUninit::zeroed().as_mut_ptr()), PAGI_PARTIAL);
        assert_eq!(pagi_ws_parse_frame(buf.as_ptr(), 2, 1, 0, std::ptr::null_mut()), PAGI_PANIC);
    }

    let mut h = [0u8; 10];
    // SAFETY: 10 writable bytes.
    assert_eq!(unsafe { pagi_ws_frame_header(0x82, 70000, h.as_mut_ptr()) }, 10);
    assert_eq!(h, [0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    // SAFETY: as above; NULL is refused.
    assert_eq!(unsafe { pagi_ws_frame_header(0x82, 5, std::ptr::null_mut()) }, 0);

    // SAFETY: readable bytes of the given lengths.
    unsafe {
        assert_eq!(pagi_ws_utf8_check("é".as_ptr(), 2), 1);
        assert_eq!(pagi_ws_utf8_check("é".as_ptr(), 1), 2);
        assert_eq!(pagi_ws_utf8_check(b"\xff".as_ptr(), 1), 0);
        assert_eq!(pagi_ws_utf8_check(std::ptr::null(), 0), 1);
        // an empty mask is a no-op, even with NULL pointers
        assert_eq!(pagi_ws_mask(std::ptr::null(), 0, std::ptr::null(), 0, std::ptr::null_mut()), PAGI_DONE);
        assert_eq!(pagi_ws_mask(b"x".as_ptr(), 1, std::ptr::null(), 0, std::ptr::null_mut()), PAGI_PANIC);
    }
}

#[test]
fn abi_check_compares_every_row() {
    let names: Vec<std::ffi::CString> = LAYOUT.iter().map(|r| std::ffi::CString::new(r.0).unwrap()).collect();
    let rows: Vec<PagiLayout> =
        LAYOUT.iter().zip(&names).map(|(r, n)| PagiLayout { name: n.as_ptr(), offset: r.1, size: r.2 }).collect();
    let check = |rows: &[PagiLayout]| {
        let mut mismatch = std::ptr::null();
        // SAFETY: readable rows with NUL-terminated names; `mismatch` is writable.
        let ok = unsafe { pagi_abi_check(rows.as_ptr(), rows.len(), &mut mismatch) };
        // SAFETY: a name from `rows` or a static string.
        (ok, (!mismatch.is_null()).then(|| unsafe { CStr::from_ptr(mismatch) }.to_str().unwrap().to_owned()))
    };
    assert_eq!(check(&rows), (1, None));
    // Every struct and every field is listed, each with its own offset
    assert!(LAYOUT.iter().any(|r| r.0 == "pagi_request.path_utf8"));
    assert!(LAYOUT.iter().any(|r| r.0 == "pagi_ws_frame.key" && r.2 == 4));
    assert!(LAYOUT.iter().any(|r| r.0 == "pagi_h2_event.path_utf8" && r.2 == 1));
    assert_eq!(LAYOUT.iter().filter(|r| !r.0.contains('.')).count(), 15);
    // Two fields of the same size swapped: the offsets differ
    let i = LAYOUT.iter().position(|r| r.0 == "pagi_request.http_minor").unwrap();
    let mut swapped = rows.clone();
    swapped[i].offset += 1;
    swapped[i + 1].offset -= 1;
    assert_eq!(check(&swapped), (0, Some("pagi_request.http_minor".into())));
    // A size, a name, a missing or an extra row
    let mut wrong = rows.clone();
    wrong[0].size += 8;
    assert_eq!(check(&wrong), (0, Some("pagi_span".into())));
    let other = std::ffi::CString::new("pagi_span.pointer").unwrap();
    let mut wrong = rows.clone();
    wrong[1].name = other.as_ptr();
    assert_eq!(check(&wrong), (0, Some("pagi_span.pointer".into())));
    assert_eq!(check(&rows[..rows.len() - 1]), (0, Some("(the end of the C list)".into())));
    let mut more = rows.clone();
    more.push(rows[0]);
    assert_eq!(check(&more), (0, Some("pagi_span".into())));
}

#[test]
fn h2_session_abi() {
    let settings = PagiH2Settings {
        rst_burst: 1000,
        rst_rate: 33,
        max_headers: 100,
        upgrade: PagiSpan { ptr: std::ptr::null(), len: 0 },
        max_concurrent_streams: 100,
        initial_window_size: 65535,
        max_frame_size: 16384,
        max_header_list_size: 65536,
        enable_connect_protocol: 1,
        enable_push: 0,
        upgrade_head: 0,
    };
    let (mut h, mut error) = (std::ptr::null_mut(), -1);
    // SAFETY: readable settings, writable results.
    assert_eq!(unsafe { pagi_h2_new(&settings, &mut h, &mut error) }, PAGI_DONE);
    assert!(!h.is_null() && error == 0);
    let mut out = PagiSpan { ptr: std::ptr::null(), len: 0 };
    // SAFETY: a live handle; the span is read before the next call on it.
    unsafe {
        assert_eq!(pagi_h2_output(h, 1 << 20, &mut out), PAGI_DONE);
        assert_eq!(std::slice::from_raw_parts(out.ptr, out.len)[3], 4, "the server's SETTINGS");
    }
    let (mut events, mut n) = (std::ptr::null(), 99);
    // SAFETY: a live handle, readable input, writable results.
    assert_eq!(unsafe { pagi_h2_feed(h, b"GET / HTTP/1.1\r\n".as_ptr(), 16, &mut events, &mut n, &mut error) }, PAGI_DONE);
    assert_eq!((n, error), (0, pagi_server::h2::H2Error::BadPreface.code()));
    let mut closed = -1;
    // SAFETY: a live handle; an unknown operation is refused.
    unsafe {
        assert_eq!(pagi_h2_call(h, PAGI_H2_IS_CLOSED, 0, 0, &mut closed), PAGI_DONE);
        assert_eq!(closed, 0, "the GOAWAY is not written yet");
        assert_eq!(pagi_h2_call(h, 99, 0, 0, &mut closed), PAGI_ERROR);
        assert_eq!(pagi_h2_call(std::ptr::null_mut(), PAGI_H2_IS_CLOSED, 0, 0, &mut closed), PAGI_PANIC);
    }
    // A bad HTTP2-Settings value
    let bad = b"!!";
    let up = PagiH2Settings { upgrade: PagiSpan { ptr: bad.as_ptr(), len: bad.len() }, ..settings };
    let mut h2 = std::ptr::null_mut();
    // SAFETY: readable settings, writable results.
    assert_eq!(unsafe { pagi_h2_new(&up, &mut h2, &mut error) }, PAGI_ERROR);
    assert!(h2.is_null());
    assert_eq!(error, pagi_server::h2::H2Error::BadUpgradeSettings.code());
    // SAFETY: the handle from pagi_h2_new, freed once; NULL is ignored.
    unsafe {
        pagi_h2_free(h);
        pagi_h2_free(std::ptr::null_mut());
    }
}

#[test]
fn deflate_abi() {
    let params = PagiDeflateParams {
        level: 6,
        mem_level: 8,
        server_max_window_bits: 15,
        server_no_context_takeover: 0,
        client_no_context_takeover: 0,
    };
    let mut h = std::ptr::null_mut();
    // SAFETY: readable parameters, a writable handle.
    assert_eq!(unsafe { pagi_deflate_new(&params, &mut h) }, PAGI_DONE);
    assert!(!h.is_null());
    let mut out = PagiSpan { ptr: std::ptr::null(), len: 0 };
    // SAFETY: a live handle, 5 readable bytes, a writable span.
    assert_eq!(unsafe { pagi_deflate_compress(h, b"Hello".as_ptr(), 5, &mut out) }, PAGI_DONE);
    // SAFETY: the span points into the thread's scratch space until the next call.
    let compressed = unsafe { std::slice::from_raw_parts(out.ptr, out.len) }.to_vec();
    assert_eq!(compressed, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    pagi_deflate_taken();
    let mut error = -1;
    // SAFETY: as above.
    let rc = unsafe { pagi_deflate_decompress(h, compressed.as_ptr(), compressed.len(), 100, 1, &mut out, &mut error) };
    // SAFETY: as above.
    assert_eq!((rc, error, unsafe { std::slice::from_raw_parts(out.ptr, out.len) }), (PAGI_DONE, 0, &b"Hello"[..]));
    // Over the limit, then a broken context: inflated_too_large (9), again
    for _ in 0..2 {
        // SAFETY: as above.
        let rc = unsafe { pagi_deflate_decompress(h, compressed.as_ptr(), compressed.len(), 4, 1, &mut out, &mut error) };
        assert_eq!((rc, error, out.ptr.is_null()), (PAGI_ERROR, 9, true));
    }
    // NULL arguments are refused, not dereferenced
    // SAFETY: NULL handles and results are checked first.
    unsafe {
        assert_eq!(pagi_deflate_compress(std::ptr::null_mut(), b"x".as_ptr(), 1, &mut out), PAGI_PANIC);
        assert_eq!(pagi_deflate_compress(h, b"x".as_ptr(), 1, std::ptr::null_mut()), PAGI_PANIC);
        assert_eq!(pagi_deflate_decompress(h, b"x".as_ptr(), 1, 9, 1, &mut out, std::ptr::null_mut()), PAGI_PANIC);
        pagi_deflate_free(h);
        pagi_deflate_free(std::ptr::null_mut());
    }
    // Out-of-range parameters: PAGI_ERROR and no handle
    for bad in [
        PagiDeflateParams { server_max_window_bits: 8, ..params },
        PagiDeflateParams { server_max_window_bits: 16, ..params },
        PagiDeflateParams { level: 10, ..params },
        PagiDeflateParams { level: -1, ..params },
        PagiDeflateParams { mem_level: 0, ..params },
    ] {
        let mut h = std::ptr::dangling_mut();
        // SAFETY: readable parameters, a writable handle.
        assert_eq!(unsafe { pagi_deflate_new(&bad, &mut h) }, PAGI_ERROR);
        assert!(h.is_null());
    }
    // SAFETY: NULL is refused.
    assert_eq!(unsafe { pagi_deflate_new(std::ptr::null(), &mut h) }, PAGI_PANIC);
}
