//! serialize_response, serialize_chunk, serialize_trailers against doc/codec.md.

use pagi_server::response::*;

const DATE: &[u8; 29] = b"Sun, 06 Nov 1994 08:49:37 GMT";
const SERVER: &[u8] = b"PAGI-Server";

fn ser(status: &str, headers: &[(&str, &str)], flags: u32, body: Option<usize>) -> Result<(String, u8, bool, bool), AppError> {
    let h: Vec<HeaderIn> = headers.iter().map(|(n, v)| HeaderIn::new(n.as_bytes(), v.as_bytes())).collect();
    let mut out = Vec::new();
    let f = serialize_response(&mut out, status.as_bytes(), &h, flags, body, DATE, SERVER)?;
    Ok((String::from_utf8(out).unwrap(), f.mode, f.close, f.append_body))
}

const STD: &str = "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: PAGI-Server\r\n";

#[test]
fn simple_bodies() {
    let (h, mode, close, body) = ser("200", &[("Content-Type", "text/plain")], 0, Some(5)).unwrap();
    assert_eq!(h, format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n{STD}Content-Length: 5\r\n\r\n"));
    assert_eq!((mode, close, body), (MODE_LENGTH, false, true));
    let (h, mode, close, body) = ser("200", &[], FLAG_HEAD, Some(5)).unwrap();
    assert_eq!(h, format!("HTTP/1.1 200 OK\r\n{STD}Content-Length: 5\r\n\r\n"));
    assert_eq!((mode, close, body), (MODE_NONE, false, false));
    let (h, mode, ..) = ser("404", &[], 0, None).unwrap();
    assert_eq!(h, format!("HTTP/1.1 404 Not Found\r\n{STD}Transfer-Encoding: chunked\r\n\r\n"));
    assert_eq!(mode, MODE_CHUNKED);
    let (h, mode, ..) = ser("200", &[], FLAG_HEAD, None).unwrap();
    assert_eq!(h, format!("HTTP/1.1 200 OK\r\n{STD}Transfer-Encoding: chunked\r\n\r\n"));
    assert_eq!(mode, MODE_NONE);
}

#[test]
fn http10() {
    let (h, mode, close, _) = ser("200", &[], FLAG_HTTP10, Some(2)).unwrap();
    assert_eq!(h, format!("HTTP/1.1 200 OK\r\n{STD}Content-Length: 2\r\nConnection: keep-alive\r\n\r\n"));
    assert_eq!((mode, close), (MODE_LENGTH, false));
    let (h, mode, close, _) = ser("200", &[], FLAG_HTTP10, None).unwrap();
    assert_eq!(h, format!("HTTP/1.1 200 OK\r\n{STD}Connection: close\r\n\r\n"));
    assert_eq!((mode, close), (MODE_CLOSE, true));
    // HEAD over HTTP/1.0 without a length: no body follows, so nothing forces a close
    let (h, mode, close, _) = ser("200", &[], FLAG_HTTP10 | FLAG_HEAD, None).unwrap();
    assert_eq!(h, format!("HTTP/1.1 200 OK\r\n{STD}Connection: keep-alive\r\n\r\n"));
    assert_eq!((mode, close), (MODE_NONE, false));
    let (h, mode, close, _) = ser("200", &[], FLAG_HTTP10 | FLAG_HEAD | FLAG_CLOSE, None).unwrap();
    assert_eq!(h, format!("HTTP/1.1 200 OK\r\n{STD}Connection: close\r\n\r\n"));
    assert_eq!((mode, close), (MODE_NONE, true));
    let (_, mode, close, _) = ser("200", &[("Connection", "close")], FLAG_HTTP10 | FLAG_HEAD, None).unwrap();
    assert_eq!((mode, close), (MODE_NONE, true));
}

/// The framing's announced length: `Framing::length`.
fn length(status: &str, headers: &[(&str, &str)], flags: u32, body: Option<usize>) -> Result<(u8, Option<u64>), AppError> {
    let h: Vec<HeaderIn> = headers.iter().map(|(n, v)| HeaderIn::new(n.as_bytes(), v.as_bytes())).collect();
    let f = serialize_response(&mut Vec::new(), status.as_bytes(), &h, flags, body, DATE, SERVER)?;
    Ok((f.mode, f.length))
}

#[test]
fn announced_length() {
    assert_eq!(length("200", &[], 0, Some(5)), Ok((MODE_LENGTH, Some(5))));
    assert_eq!(length("200", &[], 0, Some(0)), Ok((MODE_LENGTH, Some(0))));
    assert_eq!(length("200", &[], FLAG_HTTP10, Some(5)), Ok((MODE_LENGTH, Some(5))));
    // the app's Content-Length wins over the body's length (the connection checks them)
    assert_eq!(length("200", &[("Content-Length", "10")], 0, Some(3)), Ok((MODE_LENGTH, Some(10))));
    assert_eq!(length("200", &[("content-length", "007")], 0, None), Ok((MODE_LENGTH, Some(7))));
    assert_eq!(length("200", &[("Content-Length", "999999999999999999")], 0, None), Ok((MODE_LENGTH, Some(999_999_999_999_999_999))));
    // no length unless mode 1
    assert_eq!(length("200", &[], 0, None), Ok((MODE_CHUNKED, None)));
    assert_eq!(length("200", &[], FLAG_HTTP10, None), Ok((MODE_CLOSE, None)));
    assert_eq!(length("200", &[], FLAG_HEAD, Some(5)), Ok((MODE_NONE, None)));
    assert_eq!(length("200", &[("Content-Length", "5")], FLAG_HEAD, None), Ok((MODE_NONE, None)));
    assert_eq!(length("204", &[("Content-Length", "5")], 0, Some(5)), Ok((MODE_NONE, None)));
    assert_eq!(length("304", &[], 0, Some(5)), Ok((MODE_NONE, None)));
}

#[test]
fn app_content_length() {
    use AppError::*;
    for bad in ["", " 5", "5 ", "+5", "-1", "0x5", "5, 5", "4.5", "1e3", "\u{b2}", "1000000000000000000"] {
        assert_eq!(length("200", &[("X", "1"), ("Content-Length", bad)], 0, None), Err(ContentLength(1)), "{bad:?}");
        let h = [HeaderIn::new(b"X", b"1"), HeaderIn::new(b"Content-Length", bad.as_bytes())];
        assert_eq!(check_headers(&h), Err(ContentLength(1)), "{bad:?}");
    }
    // equal as numbers is agreement; different is a conflict, found in order
    assert_eq!(length("200", &[("content-length", "5"), ("CONTENT-LENGTH", "05")], 0, None), Ok((MODE_LENGTH, Some(5))));
    assert_eq!(length("200", &[("content-length", "5"), ("Content-Length", "6")], 0, None), Err(ConflictingLength));
    assert_eq!(length("200", &[("content-length", "5"), ("Content-Length", "6"), ("Content-Length", "x")], 0, None), Err(ConflictingLength));
    assert_eq!(length("200", &[("content-length", "5"), ("Content-Length", "x"), ("Content-Length", "6")], 0, None), Err(ContentLength(1)));
    // names, then values, then lengths, header by header; the status before all
    assert_eq!(length("200", &[("Content-Length", "x"), ("bad name", "1")], 0, None), Err(ContentLength(0)));
    assert_eq!(length("200", &[("bad name", "1"), ("Content-Length", "x")], 0, None), Err(Name(0)));
    assert_eq!(length("200", &[("Content-Length", "5\n")], 0, None), Err(Value(0)));
    assert_eq!(length("x", &[("Content-Length", "x")], 0, None), Err(Status));
    // validated whatever the status
    assert_eq!(length("204", &[("Content-Length", "x")], 0, None), Err(ContentLength(0)));
    // only content-length itself is a length
    assert!(length("200", &[("Transfer-Encoding", "x"), ("Content-Lengths", "x"), ("Content-Lengt", "y")], 0, Some(1)).is_ok());
}

#[test]
fn check_headers_is_the_serializers_verdict() {
    let sets: &[&[(&str, &str)]] = &[
        &[],
        &[("X", "1"), ("Content-Length", "7"), ("Connection", "close"), ("Date", "d")],
        &[("X Y", "1")],
        &[("X", "a\r\nb")],
        &[("", "")],
        &[("Content-Length", "-1")],
        &[("Content-Length", "1"), ("content-length", "2")],
        &[("Transfer-Encoding", "a\0")],
    ];
    for set in sets {
        let h: Vec<HeaderIn> = set.iter().map(|(n, v)| HeaderIn::new(n.as_bytes(), v.as_bytes())).collect();
        let serialized = serialize_response(&mut Vec::new(), b"200", &h, 0, None, DATE, SERVER).map(|_| ());
        assert_eq!(check_headers(&h).map(|_| ()), serialized, "{set:?}");
        assert_eq!(check_headers_iter(h.iter().copied()), serialized, "{set:?}");
    }
    let seen = check_headers(&[HeaderIn::new(b"date", b"x"), HeaderIn::new(b"Content-Length", b"3"), HeaderIn::new(b"connection", b"a, close")]).unwrap();
    assert_eq!(seen, AppHeaders { date: true, server: false, content_length: Some(3), close: true });
    let wide = [HeaderIn { name: b"Content-Length", value: b"5", name_wide: false, value_wide: true }];
    assert_eq!(check_headers(&wide), Err(AppError::Value(0)));
}

#[test]
fn no_body_statuses() {
    for s in ["100", "101", "199", "204", "304"] {
        let (h, mode, close, body) = ser(s, &[("content-length", "3")], 0, Some(3)).unwrap();
        assert!(!h.contains("Content-Length: 3\r\n") && !h.contains("Transfer-Encoding"), "{s}: {h}");
        assert_eq!((mode, close, body), (MODE_NONE, false, false));
    }
    assert!(ser("101", &[], 0, None).unwrap().0.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
}

#[test]
fn app_headers() {
    let (h, mode, close, body) = ser(
        "201",
        &[("content-length", "3"), ("Transfer-Encoding", "gzip"), ("Connection", "foo, Close "), ("date", "x"), ("SERVER", "y")],
        0,
        Some(99),
    )
    .unwrap();
    assert_eq!(h, "HTTP/1.1 201 Created\r\ncontent-length: 3\r\ndate: x\r\nSERVER: y\r\nConnection: close\r\n\r\n");
    assert_eq!((mode, close, body), (MODE_LENGTH, true, true));
    let (h, _, close, _) = ser("200", &[("connection", "keep-alive")], FLAG_CLOSE, Some(0)).unwrap();
    assert_eq!(h, format!("HTTP/1.1 200 OK\r\n{STD}Content-Length: 0\r\nConnection: close\r\n\r\n"));
    assert!(close);
    let (h, ..) = ser("200", &[("X-Empty", ""), ("X-Tab", "a\tb\x7f")], 0, Some(0)).unwrap();
    assert!(h.contains("X-Empty: \r\nX-Tab: a\tb\x7f\r\n"));
}

#[test]
fn statuses() {
    assert_eq!(ser("599", &[], 0, Some(0)).unwrap().0.lines().next(), Some("HTTP/1.1 599 "));
    assert_eq!(ser("418", &[], 0, Some(0)).unwrap().0.lines().next(), Some("HTTP/1.1 418 I'm a teapot"));
    for bad in ["", "99", "099", "1000", "20a", " 200", "200 ", "+20", "2.0"] {
        assert_eq!(ser(bad, &[], 0, None), Err(AppError::Status), "{bad:?}");
    }
    assert_eq!(parse_status(b"100"), Some(100));
    assert_eq!(parse_status(b"999"), Some(999));
}

#[test]
fn invalid_headers() {
    assert_eq!(ser("200", &[("ok", "1"), ("bad name", "x")], 0, None), Err(AppError::Name(1)));
    assert_eq!(ser("200", &[("", "x")], 0, None), Err(AppError::Name(0)));
    assert_eq!(ser("200", &[("x", "a\rb")], 0, None), Err(AppError::Value(0)));
    assert_eq!(ser("200", &[("x", "a\nb")], 0, None), Err(AppError::Value(0)));
    assert_eq!(ser("200", &[("x", "a\0b")], 0, None), Err(AppError::Value(0)));
    // dropped headers are validated too, names before values, in order
    assert_eq!(ser("200", &[("transfer-encoding", "a\nb"), ("x y", "")], 0, None), Err(AppError::Value(0)));
    assert_eq!(ser("bad", &[("x y", "")], 0, None), Err(AppError::Status));
    let mut out = Vec::new();
    let wide = [HeaderIn { name: b"x", value: b"v", name_wide: false, value_wide: true }];
    assert_eq!(serialize_response(&mut out, b"200", &wide, 0, None, DATE, SERVER), Err(AppError::Value(0)));
    let wide = [HeaderIn { name: b"x", value: b"v\n", name_wide: true, value_wide: false }];
    assert_eq!(serialize_response(&mut out, b"200", &wide, 0, None, DATE, SERVER), Err(AppError::Name(0)));
}

#[test]
fn chunks_and_trailers() {
    let mut out = Vec::new();
    serialize_chunk(&mut out, b"");
    assert_eq!(out, b"");
    serialize_chunk(&mut out, b"hello");
    assert_eq!(out, b"5\r\nhello\r\n");
    serialize_chunk(&mut out, &[b'x'; 255]);
    assert!(out.starts_with(b"ff\r\nxx") && out.ends_with(b"x\r\n"));
    out.clear();
    chunk_prefix(&mut out, usize::MAX);
    assert_eq!(out, b"ffffffffffffffff\r\n");
    serialize_trailers(&mut out, &[]).unwrap();
    assert_eq!(out, b"0\r\n\r\n");
    serialize_trailers(&mut out, &[HeaderIn::new(b"X-Sum", b"abc"), HeaderIn::new(b"transfer-encoding", b"x")]).unwrap();
    assert_eq!(out, b"0\r\nX-Sum: abc\r\ntransfer-encoding: x\r\n\r\n");
    assert_eq!(serialize_trailers(&mut out, &[HeaderIn::new(b"X:", b"a")]), Err(AppError::Name(0)));
    assert_eq!(serialize_trailers(&mut out, &[HeaderIn::new(b"a", b"b"), HeaderIn::new(b"X", b"\r")]), Err(AppError::Value(1)));
}

#[test]
fn decimal() {
    let mut out = Vec::new();
    for n in [0u64, 7, 10, 1234567890, u64::MAX] {
        out.clear();
        push_decimal(&mut out, n);
        assert_eq!(out, n.to_string().as_bytes());
    }
}

#[test]
fn upgrade() {
    // A 101 switching protocols: Connection: Upgrade in the Connection field's place,
    // the app's own Connection dropped, and the connection stays open, close or not
    let (h, mode, close, body) =
        ser("101", &[("Upgrade", "websocket"), ("Connection", "keep-alive")], FLAG_UPGRADE, None).unwrap();
    assert_eq!(h, format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n{STD}Connection: Upgrade\r\n\r\n"));
    assert_eq!((mode, close, body), (MODE_NONE, false, false));
    let (h, _, close, _) = ser("101", &[("Connection", "close")], FLAG_UPGRADE | FLAG_CLOSE | FLAG_HTTP10, None).unwrap();
    assert!(h.ends_with("Connection: Upgrade\r\n\r\n") && !h.contains("close"), "{h}");
    assert!(!close);
}

#[test]
fn the_server_field() {
    let mut out = Vec::new();
    serialize_response(&mut out, b"204", &[], 0, None, DATE, b"").unwrap();
    assert_eq!(String::from_utf8(out.clone()).unwrap(), "HTTP/1.1 204 No Content\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n", "empty: none");
    serialize_response(&mut out, b"204", &[HeaderIn::new(b"server", b"mine")], 0, None, DATE, b"PAGI::Server/1").unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "HTTP/1.1 204 No Content\r\nserver: mine\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n", "the app's own wins");
}
