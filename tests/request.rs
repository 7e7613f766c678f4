//! parse_request against doc/codec.md.

use pagi_server::request::{parse_request, Limits, Parser, Request, Status};
use pagi_server::ErrorKind::{self, *};

const LIM: Limits = Limits { max_header_size: 16384, max_headers: 100, max_line: 8192 };

fn parse(buf: &[u8]) -> Result<Status<Request>, ErrorKind> {
    parse_request(buf, &LIM)
}

fn ok(buf: &[u8]) -> Request {
    match parse(buf) {
        Ok(Status::Complete(r)) => r,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn err(buf: &[u8]) -> ErrorKind {
    match parse(buf) {
        Err(e) => e,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn err_with(buf: &[u8], lim: Limits) -> ErrorKind {
    match parse_request(buf, &lim) {
        Err(e) => e,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn hdrs(r: &Request) -> Vec<(String, String)> {
    r.headers
        .iter()
        .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), String::from_utf8_lossy(v).into_owned()))
        .collect()
}

const BROWSER: &[u8] = b"GET /index.html?a=1&b=2 HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Connection: keep-alive\r\n\
Cookie: session=abc123; theme=dark\r\n\
Upgrade-Insecure-Requests: 1\r\n\r\n";

#[test]
fn browser_get() {
    let r = ok(BROWSER);
    assert_eq!(r.consumed, BROWSER.len());
    assert_eq!(r.method, b"GET");
    assert_eq!(r.path, b"/index.html");
    assert_eq!(r.raw_path, b"/index.html");
    assert_eq!(r.query_string, b"a=1&b=2");
    assert_eq!(r.http_version, "1.1");
    assert_eq!(r.headers.len(), 8);
    assert_eq!(hdrs(&r)[0], ("host".into(), "www.example.com".into()));
    assert_eq!(hdrs(&r)[6], ("cookie".into(), "session=abc123; theme=dark".into()));
    assert_eq!(r.content_length, None);
    assert!(!r.chunked && r.keep_alive && !r.sse && !r.expect_continue && !r.path_utf8);
    assert_eq!(r.upgrade, None);
    assert_eq!(r.ws_key, None);
    assert_eq!(r.ws_version, None);
    assert_eq!(r.host.as_deref(), Some(&b"www.example.com"[..]));
}

#[test]
fn wrk_get_bare_lf_and_trailing_bytes() {
    let buf = b"GET / HTTP/1.1\nHost: localhost:8080\n\nGET / HTTP/1.1\r\n";
    let r = ok(buf);
    assert_eq!(r.consumed, 37);
    assert_eq!(r.path, b"/");
    assert_eq!(r.query_string, b"");
}

#[test]
fn leading_empty_lines_are_consumed() {
    let buf = b"\r\n\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(ok(buf).consumed, buf.len());
    assert_eq!(parse(b"\r\n\r\n\n"), Ok(Status::Partial));
    assert_eq!(parse(b"\r"), Ok(Status::Partial));
    assert_eq!(parse(b""), Ok(Status::Partial));
    // A lone CR before the request line is part of it
    assert_eq!(err(b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n"), BadRequestLine);
}

#[test]
fn post_with_body_and_chunked() {
    let r = ok(b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 0005\r\n\r\nhello");
    assert_eq!(r.content_length, Some(5));
    assert!(!r.chunked);
    let r = ok(b"POST /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked \r\n\r\n");
    assert!(r.chunked);
    assert_eq!(r.content_length, None);
    let r = ok(b"POST /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked,\r\nTransfer-Encoding:\r\n\r\n");
    assert!(r.chunked);
}

#[test]
fn websocket_and_sse_and_expect() {
    let r = ok(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    assert_eq!(r.upgrade.as_deref(), Some(&b"websocket"[..]));
    assert_eq!(r.ws_key.as_deref(), Some(&b"dGhlIHNhbXBsZSBub25jZQ=="[..]));
    assert_eq!(r.ws_version.as_deref(), Some(&b"13"[..]));
    assert!(r.keep_alive);
    // Upgrade without "Connection: upgrade" is ignored
    let r = ok(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
    assert_eq!(r.upgrade, None);
    // The last upgrade field counts
    let r = ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\nUpgrade: WS\xC0\r\n\r\n");
    assert_eq!(r.upgrade.as_deref(), Some(&b"ws\xC0"[..]));
    let r = ok(b"GET /e HTTP/1.1\r\nHost: a\r\nAccept: text/html\r\nAccept: Text/Event-Stream\r\n\r\n");
    assert!(r.sse);
    let r = ok(b"PUT /e HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n");
    assert!(r.expect_continue);
    let r = ok(b"PUT /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, foo\r\n\r\n");
    assert!(!r.expect_continue);
    // RFC 9110 10.1.1: ignored in HTTP/1.0
    let r = ok(b"PUT /e HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    assert!(!r.expect_continue);
}

#[test]
fn keep_alive_rules() {
    assert!(!ok(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    assert!(!ok(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
    assert!(ok(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").keep_alive);
    assert!(!ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo\r\nConnection: CLOSE \r\n\r\n").keep_alive);
    let r = ok(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(r.http_version, "1.0");
    assert_eq!(r.host, None);
}

#[test]
fn target_forms() {
    let r = ok(b"GET http://example.com:8080/a/b?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!((r.raw_path.as_slice(), r.query_string.as_slice()), (&b"/a/b"[..], &b"x=1"[..]));
    let r = ok(b"GET https://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!((r.raw_path.as_slice(), r.path.as_slice(), r.query_string.as_slice()), (&b"/"[..], &b"/"[..], &b""[..]));
    // The query is split off the whole target first: absolute-form keeps it, and a "/"
    // in it is not the path's
    let r = ok(b"GET h+t.t-p://host?q=/x?y HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!((r.raw_path.as_slice(), r.query_string.as_slice()), (&b"/"[..], &b"q=/x?y"[..]));
    let r = ok(b"GET http://host?q HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!((r.raw_path.as_slice(), r.query_string.as_slice()), (&b"/"[..], &b"q"[..]));
    let r = ok(b"GET http://h? HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!((r.raw_path.as_slice(), r.query_string.as_slice()), (&b"/"[..], &b""[..]));
    let r = ok(b"GET http://h/p/%C3%A9?u=http://x/y HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!((r.raw_path.as_slice(), r.query_string.as_slice()), (&b"/p/%C3%A9"[..], &b"u=http://x/y"[..]));
    assert_eq!((r.path.as_slice(), r.path_utf8), ("/p/é".as_bytes(), true));
    // ... so "?" ends the authority too
    let r = ok(b"GET http://user?x@h/p HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!((r.raw_path.as_slice(), r.query_string.as_slice()), (&b"/"[..], &b"x@h/p"[..]));
    let r = ok(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!((r.raw_path.as_slice(), r.path.as_slice()), (&b"*"[..], &b"*"[..]));
    let r = ok(b"GET /p#frag?q HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!((r.raw_path.as_slice(), r.query_string.as_slice()), (&b"/p#frag"[..], &b"q"[..]));
    let r = ok(b"GET /?? HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!((r.raw_path.as_slice(), r.query_string.as_slice()), (&b"/"[..], &b"?"[..]));
    for bad in [
        &b"CONNECT host:443 HTTP/1.1"[..],
        b"GET *x HTTP/1.1",
        b"OPTIONS *?x HTTP/1.1",
        b"GET ?x HTTP/1.1",
        b"GET http:?x HTTP/1.1",
        b"GET 1http://a/ HTTP/1.1",
        b"GET http:/a HTTP/1.1",
        b"GET a HTTP/1.1",
        b"GET ://a/ HTTP/1.1",
    ] {
        let mut buf = bad.to_vec();
        buf.extend_from_slice(b"\r\nHost: a\r\n\r\n");
        assert_eq!(err(&buf), BadRequestLine, "{}", String::from_utf8_lossy(bad));
    }
    // method case is kept
    assert_eq!(ok(b"get / HTTP/1.1\r\nHost: a\r\n\r\n").method, b"get");
}

#[test]
fn path_decoding() {
    let r = ok(b"GET /caf%C3%A9%2fx%zz%4 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(r.path, "/café/x%zz%4".as_bytes());
    assert_eq!(r.raw_path, b"/caf%C3%A9%2fx%zz%4");
    assert!(r.path_utf8);
    let r = ok(b"GET /caf\xC3\xA9 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(r.path_utf8);
    // Strict RFC 3629: U+10FFFF and noncharacters are characters ...
    for p in [&b"/%F4%8F%BF%BF"[..], b"/%EF%BF%BE", b"/%EF%B7%90", b"/\xF0\x9F\x98\x80"] {
        let mut buf = b"GET ".to_vec();
        buf.extend_from_slice(p);
        buf.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(ok(&buf).path_utf8, "{p:?}");
    }
    // ... invalid UTF-8 (a lone byte, overlong forms, surrogates, above U+10FFFF, perl's
    // extended forms, a truncated character) stays bytes
    for p in [
        &b"/%E9"[..],
        b"/%C0%AF",
        b"/%E0%80%AF",
        b"/%F0%80%80%AF",
        b"/%ED%A0%80",
        b"/%ED%A0%BD%ED%B8%80",
        b"/%F4%90%80%80",
        b"/%F5%80%80%80",
        b"/%F8%88%80%80%80",
        b"/%FF%80%80%80%80%80%80%81%80%80%80%80%80",
        b"/a%F0%9F%98",
        b"/%80a",
        b"/%FF",
    ] {
        let mut buf = b"GET ".to_vec();
        buf.extend_from_slice(p);
        buf.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(!ok(&buf).path_utf8, "{p:?}");
    }
    // Raw bytes >= 0x80 in the target only as well-formed UTF-8 (the whole target,
    // query included), judged when the SP after the target arrives
    for p in [&b"/\xFF"[..], b"/\xF4\x90\x80\x80", b"/\xC3%A9", b"/?\xE9", b"/\xED\xA0\x80"] {
        let mut buf = b"GET ".to_vec();
        buf.extend_from_slice(p);
        assert_eq!(parse(&buf), Ok(Status::Partial), "{p:?}");
        buf.extend_from_slice(b" H");
        assert_eq!(parse(&buf), Err(BadRequestLine), "{p:?}");
    }
    let r = ok(b"GET /\xC3\xA9?\xE2\x82\xAC HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!((r.path.as_slice(), r.path_utf8, r.query_string.as_slice()), ("/é".as_bytes(), true, "€".as_bytes()));
    assert!(!ok(b"GET /%41 HTTP/1.1\r\nHost: a\r\n\r\n").path_utf8);
    assert_eq!(ok(b"GET /%41 HTTP/1.1\r\nHost: a\r\n\r\n").path, b"/A");
    assert_eq!(ok(b"GET /%00%25%2541 HTTP/1.1\r\nHost: a\r\n\r\n").path, b"/\0%%41");
}

#[test]
fn headers_order_and_cookies() {
    let r = ok(b"GET / HTTP/1.1\r\ncookie: a=1\r\nHost: h\r\nX-A:  x y \t\r\nCOOKIE: b=2\r\nX-A:\r\nCookie: \r\n\r\n");
    assert_eq!(
        hdrs(&r),
        vec![
            ("cookie".into(), "a=1; b=2; ".into()),
            ("host".into(), "h".into()),
            ("x-a".into(), "x y".into()),
            ("x-a".into(), "".into()),
        ]
    );
    // Values may hold obs-text and tabs inside
    let r = ok(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\tb\x80\xff\r\n\r\n");
    assert_eq!(r.headers[1].1, b"a\tb\x80\xff");
}

#[test]
fn bad_request_lines() {
    for line in [
        &b"GET  / HTTP/1.1"[..],
        b"GET /  HTTP/1.1",
        b"GET / HTTP/1.1 ",
        b" GET / HTTP/1.1",
        b"GET\t/ HTTP/1.1",
        b"GET / http/1.1",
        b"GET / HTTP/1.1x",
        b"GET / HTTP/11",
        b"GET /\x7f HTTP/1.1",
        b"GET /\x00 HTTP/1.1",
        b"GET / HTTP/1.1\r",
        b"G(T / HTTP/1.1",
        b"GET /",
        b"GET / ",
        b"GET",
    ] {
        let mut buf = line.to_vec();
        buf.extend_from_slice(b"\r\nHost: a\r\n\r\n");
        assert_eq!(err(&buf), BadRequestLine, "{:?}", String::from_utf8_lossy(line));
    }
    assert_eq!(err(b"GET / HTTP/2.0\r\n"), UnsupportedVersion);
    assert_eq!(err(b"GET / HTTP/0.9\r\nHost: a\r\n\r\n"), UnsupportedVersion);
    assert_eq!(err(b"GET / HTTP/2.0\n"), UnsupportedVersion);
    // Another major version is only known with the line's end: wait for it
    for prefix in [&b"GET / HTTP/2"[..], b"GET / HTTP/2.", b"GET / HTTP/2.0", b"GET / HTTP/2.0\r", b"GET / HTTP/1.", b"GET / HTTP/1.2\r"] {
        assert_eq!(parse(prefix), Ok(Status::Partial), "{:?}", String::from_utf8_lossy(prefix));
    }
    assert_eq!(err(b"GET / HTTP/2.0x"), BadRequestLine);
    assert_eq!(err(b"GET / HTTP/2.0\rx"), BadRequestLine);
    assert_eq!(err(b"GET / HTTP/2x"), BadRequestLine);
    // HTTP/1.x above 1.1 is served as HTTP/1.1 (RFC 9110 2.5)
    let r = ok(b"GET /v HTTP/1.2\r\nHost: a\r\nX: y\r\n\r\n");
    assert_eq!((r.http_version, r.path.as_slice(), hdrs(&r).len(), r.keep_alive), ("1.1", &b"/v"[..], 2, true));
    assert_eq!(ok(b"GET / HTTP/1.9\nHost: a\n\nrest").consumed, 24);
    assert_eq!(err(b"GET / HTTP/1.2\r\n\r\n"), BadHost);
    assert_eq!(err(b"GET / HTTP/1.2\r\nX : a\r\n"), BadHeader);
    assert_eq!(parse(b"GET / HTTP/1.2\r\nHost: a\r\n"), Ok(Status::Partial));
    // The target is judged when its SP arrives: its form before the version
    assert_eq!(err(b"CONNECT a:1 HTTP/1.2\r\n"), BadRequestLine);
    assert_eq!(err(b"CONNECT a:1 HTTP/2.0\r\n"), BadRequestLine);
    assert_eq!(err(b"CONNECT a:1 "), BadRequestLine);
    assert_eq!(parse(b"CONNECT a:1"), Ok(Status::Partial));
    // The first byte no valid request line could have is an error at once
    assert_eq!(err(b"GET  / HTTP/1.1\r\nHost"), BadRequestLine);
    for bad in [&b"GET  "[..], b"G(", b" ", b"\t", b"GET /\x01", b"GET / X", b"GET / HTTP/1.1 ", b"GET / HTTP/1.1\r\r", b"\rG", b"\r\r"] {
        assert_eq!(err(bad), BadRequestLine, "{:?}", String::from_utf8_lossy(bad));
    }
    for ok_so_far in [&b"G"[..], b"GET", b"GET ", b"GET /", b"GET / H", b"GET / HTTP/1.1", b"GET / HTTP/1.1\r", b"\r"] {
        assert_eq!(parse(ok_so_far), Ok(Status::Partial), "{:?}", String::from_utf8_lossy(ok_so_far));
    }
}

#[test]
fn bad_headers() {
    for line in [
        &b"Host : a"[..],
        b" Host: a",
        b"\tX: a",
        b": a",
        b"Host",
        b"X: a\0b",
        b"X: a\x7fb",
        b"X: a\rb",
        b"X: a\r",
        b"X\x01: a",
        b"X: \x1b",
        b"\r",
    ] {
        let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        buf.extend_from_slice(line);
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(err(&buf), BadHeader, "{:?}", String::from_utf8_lossy(line));
    }
    // bad_header comes before the semantic checks
    assert_eq!(err(b"GET / HTTP/1.1\r\nX : y\r\n\r\n"), BadHeader);
    // and is reported at the first bad byte, the head complete or not
    assert_eq!(err(b"GET / HTTP/1.1\r\nX : y\r\n"), BadHeader);
    for bad in [&b"X "[..], b" ", b"X: a\x01", b"X: a\rb", b"\rX", b":"] {
        let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        buf.extend_from_slice(bad);
        assert_eq!(err(&buf), BadHeader, "{:?}", String::from_utf8_lossy(bad));
    }
    for ok_so_far in [&b"X"[..], b"X:", b"X: a", b"X: a\r", b"\r"] {
        let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        buf.extend_from_slice(ok_so_far);
        assert_eq!(parse(&buf), Ok(Status::Partial), "{:?}", String::from_utf8_lossy(ok_so_far));
    }
}

#[test]
fn host_rules() {
    assert_eq!(err(b"GET / HTTP/1.1\r\n\r\n"), BadHost);
    assert_eq!(err(b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"), BadHost);
    assert_eq!(err(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), BadHost);
    assert_eq!(ok(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").host.as_deref(), Some(&b""[..]));
    // host comes before the length checks
    assert_eq!(err(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), BadHost);
}

#[test]
fn content_length_rules() {
    let p = |v: &str| parse(format!("POST / HTTP/1.1\r\nHost: a\r\n{v}\r\n\r\n").as_bytes());
    let cl = |v: &str| p(v).map(|s| s.complete().unwrap().content_length);
    assert_eq!(cl("Content-Length: 5, 5 ,005"), Ok(Some(5)));
    assert_eq!(cl("Content-Length: 5\r\nContent-Length: 5"), Ok(Some(5)));
    assert_eq!(cl("Content-Length: 999999999999999999"), Ok(Some(999_999_999_999_999_999)));
    assert_eq!(cl("Content-Length: 0000000000000000000"), Err(BadContentLength));
    assert_eq!(cl("Content-Length: 1000000000000000000"), Err(BadContentLength));
    assert_eq!(cl("Content-Length: -1"), Err(BadContentLength));
    assert_eq!(cl("Content-Length: +1"), Err(BadContentLength));
    assert_eq!(cl("Content-Length: 1 2"), Err(BadContentLength));
    assert_eq!(cl("Content-Length: 0x10"), Err(BadContentLength));
    assert_eq!(cl("Content-Length: 5,"), Err(BadContentLength));
    assert_eq!(cl("Content-Length: ,5"), Err(BadContentLength));
    assert_eq!(cl("Content-Length:"), Err(BadContentLength));
    assert_eq!(cl("Content-Length: 5, 6"), Err(ConflictingLength));
    assert_eq!(cl("Content-Length: 5\r\nContent-Length: 6"), Err(ConflictingLength));
    // The first problem in order decides
    assert_eq!(cl("Content-Length: 5, 6, x"), Err(ConflictingLength));
    assert_eq!(cl("Content-Length: 5, x, 6"), Err(BadContentLength));
    assert_eq!(cl("Content-Length: 5\r\nTransfer-Encoding: chunked"), Err(ConflictingLength));
    assert_eq!(cl("Transfer-Encoding: gzip\r\nContent-Length: 5"), Err(ConflictingLength));
    assert_eq!(cl("Transfer-Encoding: chunked\r\nContent-Length: x"), Err(BadContentLength));
}

#[test]
fn transfer_encoding_rules() {
    let te = |v: &str| parse(format!("POST / HTTP/1.1\r\nHost: a\r\n{v}\r\n\r\n").as_bytes()).map(|s| s.complete().unwrap().chunked);
    assert_eq!(te("Transfer-Encoding: chunked"), Ok(true));
    assert_eq!(te("Transfer-Encoding: CHUNKED"), Ok(true));
    assert_eq!(te("Transfer-Encoding:"), Err(BadTransferEncoding));
    assert_eq!(te("Transfer-Encoding: , ,"), Err(BadTransferEncoding));
    assert_eq!(te("Transfer-Encoding: gzip, chunked"), Err(UnsupportedTransferEncoding));
    assert_eq!(te("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"), Err(UnsupportedTransferEncoding));
    assert_eq!(te("Transfer-Encoding: gzip"), Err(UnsupportedTransferEncoding));
    assert_eq!(te("Transfer-Encoding: chunked;q=1"), Err(UnsupportedTransferEncoding));
}

#[test]
fn limits_in_order() {
    let lim = |h: i64, n: i64, l: i64| Limits { max_header_size: h, max_headers: n, max_line: l };
    // 1. no request line yet
    assert_eq!(err_with(b"GET /aaaaaaaa", lim(100, 10, 12)), UriTooLong);
    assert_eq!(err_with(b"GET /aaaaaaaa", lim(12, 10, 100)), HeadersTooLarge);
    assert_eq!(parse_request(b"GET /aaaaaaa", &lim(12, 10, 12)), Ok(Status::Partial));
    // a final "\r" may start the terminator: it does not count towards max_line ...
    assert_eq!(parse_request(b"GET / HTTP/1.1\r", &lim(100, 10, 14)), Ok(Status::Partial));
    assert_eq!(err_with(b"GET / HTTP/1.1\r", lim(100, 10, 13)), UriTooLong);
    // (inside the target it is a bad byte at once, once the limits are met)
    assert_eq!(err_with(b"GET /aaaaaaa\r", lim(100, 10, 12)), BadRequestLine);
    assert_eq!(err_with(b"GET /aaaaaaaa\r", lim(100, 10, 12)), UriTooLong);
    assert_eq!(err_with(b"GET /aaaaaaa\r\r", lim(100, 10, 12)), UriTooLong);
    // ... but it does towards max_header_size
    assert_eq!(err_with(b"GET /aaaaaaa\r", lim(12, 10, 100)), HeadersTooLarge);
    assert_eq!(parse_request(b"\r\n\r", &lim(100, 10, 0)), Ok(Status::Partial));
    assert_eq!(err_with(b"\r\n\r", lim(100, 10, -1)), UriTooLong);
    // the skipped empty lines do not count
    assert_eq!(parse_request(b"\r\n\r\nGET /aaaaaaa", &lim(12, 10, 12)), Ok(Status::Partial));
    // 2. request line too long, terminator not counted
    assert_eq!(err_with(b"GET / HTTP/1.1\r\n", lim(100, 10, 13)), UriTooLong);
    assert_eq!(parse_request(b"GET / HTTP/1.1\r\n", &lim(100, 10, 14)), Ok(Status::Partial));
    // the limits come before the syntax: the head size before a bad request line
    assert_eq!(err_with(b"GET / HTTP/1.1 \r\nHost: aaaaaaaaaaaaaaaaaa", lim(20, 10, 100)), HeadersTooLarge);
    assert_eq!(err_with(b"GET / HTTP/1.1 \r\nHost: aaaaaaaaaaaaaaaaa", lim(40, 10, 100)), BadRequestLine);
    assert_eq!(err_with(b"G(T /aaaaaaaaaaaaaaaa", lim(100, 10, 12)), UriTooLong);
    assert_eq!(err_with(b"G(T /aaaaaaa", lim(100, 10, 12)), BadRequestLine);
    // 3. incomplete head over the limit
    assert_eq!(err_with(b"GET / HTTP/1.1\r\nHost: aaaaaaaa", lim(29, 10, 100)), HeadersTooLarge);
    assert_eq!(parse_request(b"GET / HTTP/1.1\r\nHost: aaaaaaa", &lim(29, 10, 100)), Ok(Status::Partial));
    // 4. complete head: size (final LF included) and count
    let buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"; // 27 bytes
    assert_eq!(err_with(buf, lim(26, 10, 100)), HeadersTooLarge);
    assert!(parse_request(buf, &lim(27, 10, 100)).unwrap().complete().is_some());
    assert_eq!(err_with(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", lim(26, 10, 100)), HeadersTooLarge);
    assert!(parse_request(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &lim(27, 10, 100)).unwrap().complete().is_some());
    let two = b"GET / HTTP/1.1\r\nHost: a\r\nCookie: a\r\nCookie: b\r\n\r\n";
    assert_eq!(err_with(two, lim(1000, 2, 100)), HeadersTooLarge);
    assert!(parse_request(two, &lim(1000, 3, 100)).unwrap().complete().is_some());
    // size and count before bad_header
    assert_eq!(err_with(b"GET / HTTP/1.1\r\nX : a\r\nHost: a\r\n\r\n", lim(1000, 1, 100)), HeadersTooLarge);
    // incomplete: the field lines complete so far count
    assert_eq!(err_with(b"GET / HTTP/1.1\r\nA: a\r\nB: b\r\n", lim(1000, 1, 100)), HeadersTooLarge);
    assert_eq!(parse_request(b"GET / HTTP/1.1\r\nA: a\r\nB: b", &lim(1000, 1, 100)), Ok(Status::Partial));
    // ... whatever their syntax
    assert_eq!(err_with(b"GET / HTTP/1.1\r\nA : a\r\nB: b\r\n", lim(1000, 1, 100)), HeadersTooLarge);
    assert_eq!(err_with(b"GET / HTTP/1.1\r\nA : a\r\nB: b\r\n", lim(1000, 2, 100)), BadHeader);
    // negative limits refuse everything
    assert_eq!(err_with(b"G", lim(10, 10, -1)), UriTooLong);
    assert_eq!(err_with(b"GET / HTTP/1.0\r\n\r\n", lim(10, -1, 100)), HeadersTooLarge);
    assert_eq!(parse_request(b"", &lim(-1, -1, -1)), Err(UriTooLong));
}

#[test]
fn every_prefix_of_valid_requests_is_partial() {
    for req in [BROWSER, b"GET / HTTP/1.1\nHost: a\n\n", b"\r\n\r\nGET / HTTP/1.0\r\n\r\n"] {
        let full = ok(req);
        for cut in 0..req.len() {
            assert_eq!(parse(&req[..cut]), Ok(Status::Partial), "cut {cut}");
        }
        assert_eq!(full.consumed, req.len());
    }
}

#[test]
fn parser_reuse_and_spans() {
    let mut p = Parser::new();
    let a = b"GET /%41 HTTP/1.1\r\nHost: a\r\nCookie: x\r\nCookie: y\r\n\r\n";
    let h = p.parse(a, &LIM).unwrap().complete().unwrap();
    assert_eq!(p.bytes(a, h.path), b"/A");
    assert_eq!(p.bytes(a, p.headers()[1].value), b"x; y");
    assert_eq!(p.bytes(a, p.headers()[1].name), b"cookie");
    assert_eq!(p.headers()[1].id, pagi_server::known::COOKIE);
    assert_eq!(h.method_id, pagi_server::known::FIRST_METHOD);
    assert_eq!(p.headers().len(), 2);
    let b = b"GET /b HTTP/1.0\r\n\r\n";
    let h = p.parse(b, &LIM).unwrap().complete().unwrap();
    assert_eq!(p.bytes(b, h.path), b"/b");
    assert!(p.headers().is_empty());
    assert_eq!(p.parse(b"GET / HTTP/1.1\r\nA", &LIM), Ok(Status::Partial));
}

#[test]
fn long_inputs() {
    let mut buf = b"GET /".to_vec();
    buf.extend(std::iter::repeat_n(b'a', 100_000));
    buf.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
    let big = Limits { max_header_size: 1 << 20, max_headers: 100, max_line: 1 << 20 };
    assert_eq!(parse_request(&buf, &big).unwrap().complete().unwrap().path.len(), 100_001);
    assert_eq!(err(&buf), UriTooLong);
    let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..5000 {
        many.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(err(&many), HeadersTooLarge);
    let lots = Limits { max_header_size: 1 << 20, max_headers: 10_000, max_line: 100 };
    assert_eq!(parse_request(&many, &lots).unwrap().complete().unwrap().headers.len(), 5001);
}

#[test]
fn field_value_bytes_in_every_word_position() {
    // Each invalid byte at each offset of a long value (the validation works in words)
    for bad in [0u8, 1, 0x08, 0x0b, 0x0d, 0x1f, 0x7f] {
        for at in 0..20 {
            let mut v = vec![b'a'; 20];
            v[at] = bad;
            let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
            buf.extend_from_slice(&v);
            buf.extend_from_slice(b"\r\n\r\n");
            assert_eq!(parse(&buf), Err(BadHeader), "{bad:#x} at {at}");
        }
    }
    for good in [b'\t', b' ', 0x20, 0x21, 0x7e, 0x80, 0xff] {
        for at in 1..19 {
            let mut v = vec![b'a'; 20];
            v[at] = good;
            let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
            buf.extend_from_slice(&v);
            buf.extend_from_slice(b"\r\n\r\n");
            assert_eq!(ok(&buf).headers[1].1, v, "{good:#x} at {at}");
        }
    }
}

#[test]
fn event_stream_anywhere() {
    let sse = |v: &str| ok(format!("GET / HTTP/1.1\r\nHost: a\r\nAccept: {v}\r\n\r\n").as_bytes()).sse;
    assert!(sse("text/event-stream"));
    assert!(sse("a/b, TEXT/EVENT-STREAM;q=1"));
    assert!(sse("xtext/event-streamy"));
    assert!(!sse("text/event-strea"));
    assert!(!sse("ext/event-stream"));
    assert!(!sse("text/html, /event-stream"));
    assert!(!sse("/"));
}

#[test]
fn names_lowercased_whatever_their_case() {
    for name in ["CONTENT-TYPE", "Content-Type", "cOnTeNt-tYpE", "X-Custom-Header-With-A-Long-Name", "ABCDEFGHIJKLMNOPQRSTUVWXYZ-@", "!#$%&'*+-.^_`|~09azAZ"] {
        if name.contains('@') {
            continue;
        }
        let buf = format!("GET / HTTP/1.1\r\nHost: a\r\n{name}: v\r\n\r\n");
        let r = ok(buf.as_bytes());
        assert_eq!(r.headers[1].0, name.to_ascii_lowercase().as_bytes(), "{name}");
    }
    let all: String = (b'A'..=b'Z').map(char::from).collect();
    let r = ok(format!("GET / HTTP/1.1\r\nHost: a\r\n{all}: v\r\n\r\n").as_bytes());
    assert_eq!(r.headers[1].0, all.to_ascii_lowercase().as_bytes());
}
