//! The HTTP/2 session driven with hand-built frames (header blocks from nghttp2's own
//! HPACK deflater, responses read back with its inflater).

use libnghttp2_sys as ng;
use pagi_server::h2::{Event, H2Error, H2Refusal, Request, SendError, Session, Settings, PREFACE};
use pagi_server::response::HeaderIn;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const ACK: u8 = 1;
const END_HEADERS: u8 = 4;

fn frame(kind: u8, flags: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let p: Vec<u8> = pairs.iter().flat_map(|&(k, v)| k.to_be_bytes().into_iter().chain(v.to_be_bytes())).collect();
    frame(SETTINGS, 0, 0, &p)
}

/// A frame read back: (type, flags, stream id, payload).
type Frame = (u8, u8, u32, Vec<u8>);

fn frames(mut b: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    while b.len() >= 9 {
        let len = (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]);
        let id = u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff;
        out.push((b[3], b[4], id, b[9..9 + len].to_vec()));
        b = &b[9 + len..];
    }
    assert!(b.is_empty(), "a partial frame");
    out
}

/// A test client: an HPACK deflater for requests, an inflater for responses.
struct Client {
    deflater: *mut ng::nghttp2_hd_deflater,
    inflater: *mut ng::nghttp2_hd_inflater,
}

impl Client {
    fn new() -> Client {
        let mut c = Client { deflater: std::ptr::null_mut(), inflater: std::ptr::null_mut() };
        // SAFETY: constructors writing the pointers.
        unsafe {
            assert_eq!(ng::nghttp2_hd_deflate_new(&mut c.deflater, 4096), 0);
            assert_eq!(ng::nghttp2_hd_inflate_new(&mut c.inflater), 0);
        }
        c
    }

    fn block(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        let nva: Vec<ng::nghttp2_nv> = fields
            .iter()
            .map(|(n, v)| ng::nghttp2_nv {
                name: n.as_ptr() as *mut u8,
                value: v.as_ptr() as *mut u8,
                namelen: n.len(),
                valuelen: v.len(),
                flags: 0,
            })
            .collect();
        // SAFETY: a live deflater and fields that outlive the calls.
        unsafe {
            let mut buf = vec![0u8; ng::nghttp2_hd_deflate_bound(self.deflater, nva.as_ptr(), nva.len())];
            let n = ng::nghttp2_hd_deflate_hd(self.deflater, buf.as_mut_ptr(), buf.len(), nva.as_ptr(), nva.len());
            assert!(n >= 0);
            buf.truncate(n as usize);
            buf
        }
    }

    fn decode(&mut self, block: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut input = block;
        loop {
            let mut nv = std::mem::MaybeUninit::<ng::nghttp2_nv>::zeroed();
            let mut flags = 0;
            // SAFETY: a live inflater, readable input, a writable nv.
            let n = unsafe { ng::nghttp2_hd_inflate_hd2(self.inflater, nv.as_mut_ptr(), &mut flags, input.as_ptr(), input.len(), 1) };
            assert!(n >= 0, "inflate: {n}");
            input = &input[n as usize..];
            if flags & ng::NGHTTP2_HD_INFLATE_EMIT as i32 != 0 {
                // SAFETY: an emitted field points into the inflater or the input.
                let nv = unsafe { nv.assume_init() };
                // SAFETY: the name and value of an emitted field are readable for their lengths.
                let (name, value) = unsafe {
                    (std::slice::from_raw_parts(nv.name, nv.namelen), std::slice::from_raw_parts(nv.value, nv.valuelen))
                };
                out.push((String::from_utf8_lossy(name).into_owned(), String::from_utf8_lossy(value).into_owned()));
            }
            if flags & ng::NGHTTP2_HD_INFLATE_FINAL as i32 != 0 {
                // SAFETY: a live inflater.
                unsafe { ng::nghttp2_hd_inflate_end_headers(self.inflater) };
                break;
            }
            if input.is_empty() && flags & ng::NGHTTP2_HD_INFLATE_EMIT as i32 == 0 {
                break;
            }
        }
        out
    }

    fn headers(&mut self, id: u32, fields: &[(&str, &str)], end_stream: bool) -> Vec<u8> {
        let block = self.block(fields);
        frame(HEADERS, END_HEADERS | if end_stream { END_STREAM } else { 0 }, id, &block)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // SAFETY: made in new, freed once.
        unsafe {
            ng::nghttp2_hd_deflate_del(self.deflater);
            ng::nghttp2_hd_inflate_del(self.inflater);
        }
    }
}

fn get(path: &str) -> Vec<(&str, &str)> {
    vec![(":method", "GET"), (":scheme", "https"), (":authority", "example.com"), (":path", path)]
}

/// A session past the handshake (preface, the client's SETTINGS, the server's
/// SETTINGS acknowledged), its output so far read.
fn open(settings: &Settings) -> Session {
    let mut s = Session::new(settings).unwrap();
    let mut hello = PREFACE.to_vec();
    hello.extend(self::settings(&[]));
    hello.extend(frame(SETTINGS, ACK, 0, &[]));
    s.feed(&hello).unwrap();
    assert_eq!(s.take_events(), vec![]);
    s.output(1 << 20).unwrap();
    s
}

fn feed(s: &mut Session, bytes: &[u8]) -> Vec<Event> {
    s.feed(bytes).unwrap();
    s.take_events()
}

fn out(s: &mut Session) -> Vec<Frame> {
    frames(&s.output(1 << 24).unwrap())
}

fn request(ev: &Event) -> &Request {
    match ev {
        Event::Request { request: Ok(r), .. } => r,
        other => panic!("not a request: {other:?}"),
    }
}

#[test]
fn preface_and_settings() {
    let mut s = Session::new(&Settings::default()).unwrap();
    let f = out(&mut s);
    assert_eq!(f.len(), 1);
    let (kind, flags, id, payload) = &f[0];
    assert_eq!((*kind, *flags, *id), (SETTINGS, 0, 0));
    let pairs: Vec<(u16, u32)> = payload
        .chunks(6)
        .map(|c| (u16::from_be_bytes([c[0], c[1]]), u32::from_be_bytes([c[2], c[3], c[4], c[5]])))
        .collect();
    assert_eq!(pairs, vec![(3, 100), (4, 65535), (5, 16384), (6, 65536), (2, 0), (8, 1)]);
    // The client's preface and SETTINGS: an acknowledgement
    let mut hello = PREFACE.to_vec();
    hello.extend(settings(&[(4, 1000)]));
    assert_eq!(feed(&mut s, &hello), vec![]);
    assert_eq!(out(&mut s), vec![(SETTINGS, ACK, 0, vec![])]);
    assert!(!s.is_closed());
    // SETTINGS without push and without the extended CONNECT
    let s2 = Session::new(&Settings { enable_push: true, enable_connect_protocol: false, ..Settings::default() });
    let f = out(&mut s2.unwrap());
    assert_eq!(f[0].3.len(), 4 * 6);
}

#[test]
fn a_request_and_its_response() {
    let mut s = open(&Settings { server: b"PAGI-Server".to_vec(), ..Settings::default() });
    let mut c = Client::new();
    let mut fields = get("/caf%C3%A9/a%2Fb?x=1&y");
    fields.extend([("cookie", "a=1"), ("accept", "text/event-stream"), ("cookie", "b=2"), ("user-agent", "t")]);
    let ev = feed(&mut s, &c.headers(1, &fields, true));
    assert_eq!(ev.len(), 1);
    assert!(matches!(ev[0], Event::Request { id: 1, end_stream: true, .. }));
    let r = request(&ev[0]);
    assert_eq!(r.method, b"GET");
    assert_eq!(r.path, "/café/a/b".as_bytes());
    assert!(r.path_utf8);
    assert_eq!((r.raw_path.as_slice(), r.query_string.as_slice()), (&b"/caf%C3%A9/a%2Fb"[..], &b"x=1&y"[..]));
    assert_eq!(r.scheme, b"https");
    let h: Vec<(&[u8], &[u8])> = r.headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())).collect();
    assert_eq!(
        h,
        vec![
            (&b"host"[..], &b"example.com"[..]),
            (b"cookie", b"a=1; b=2"),
            (b"accept", b"text/event-stream"),
            (b"user-agent", b"t"),
        ]
    );
    assert!(r.sse && !r.expect_continue && r.content_length.is_none() && r.protocol.is_none());

    // The response: head, body in two pieces, trailers
    let length = s.respond(1, b"200", &[HeaderIn::new(b"Content-Type", b"text/plain"), HeaderIn::new(b"Connection", b"x")], false);
    assert_eq!(length, Ok(None));
    assert_eq!(s.send_data(1, b"hello ", false), Ok(()));
    assert_eq!(s.buffered(1), 6);
    assert_eq!(s.send_data(1, b"world", false), Ok(()));
    assert_eq!(s.send_trailers(1, &[HeaderIn::new(b"Grpc-Status", b"0")]), Ok(()));
    assert_eq!(s.send_data(1, b"late", false), Err(SendError::AlreadyEnded));
    assert!(s.want_write());
    let f = out(&mut s);
    assert_eq!(s.buffered(1), 0);
    assert_eq!(f.iter().map(|f| (f.0, f.1, f.2)).collect::<Vec<_>>(), vec![
        (HEADERS, END_HEADERS, 1),
        (DATA, 0, 1),
        (HEADERS, END_HEADERS | END_STREAM, 1),
    ]);
    let head = c.decode(&f[0].3);
    assert_eq!(head[0], (":status".into(), "200".into()));
    assert_eq!(head[1], ("content-type".into(), "text/plain".into()));
    assert_eq!(head[2].0, "date");
    assert_eq!(head[3], ("server".into(), "PAGI-Server".into()));
    assert_eq!(head.len(), 4, "connection is dropped");
    assert_eq!(f[1].3, b"hello world");
    assert_eq!(c.decode(&f[2].3), vec![("grpc-status".into(), "0".into())]);
    // Written: the stream is closed
    assert_eq!(s.take_events(), vec![Event::Closed { id: 1 }]);
    assert_eq!(s.open_streams(), 0);
    assert_eq!(s.send_data(1, b"x", false), Err(SendError::StreamClosed));
    assert_eq!(s.last_stream_id(), 1);
}

#[test]
fn request_body_and_flow_control() {
    let mut s = open(&Settings { initial_window_size: 1000, ..Settings::default() });
    let mut c = Client::new();
    let mut fields = vec![(":method", "POST"), (":scheme", "http"), (":authority", "h"), (":path", "/up")];
    fields.extend([("content-length", "1500"), ("expect", "100-continue")]);
    let ev = feed(&mut s, &c.headers(1, &fields, false));
    let r = request(&ev[0]);
    assert_eq!((r.content_length, r.expect_continue), (Some(1500), true));
    assert!(matches!(ev[0], Event::Request { end_stream: false, .. }));
    // An interim response ends nothing
    assert_eq!(s.respond(1, b"100", &[], false), Ok(None));
    assert_eq!(out(&mut s).len(), 1);
    // Two frames in one read: one event
    let mut bytes = frame(DATA, 0, 1, &[b'a'; 400]);
    bytes.extend(frame(DATA, 0, 1, &[b'b'; 500]));
    assert_eq!(feed(&mut s, &bytes), vec![Event::Data { id: 1, data: [vec![b'a'; 400], vec![b'b'; 500]].concat(), end_stream: false }]);
    // The connection window was replenished at receipt; the stream's waits for the app
    let f = out(&mut s);
    assert!(f.iter().all(|f| f.0 != WINDOW_UPDATE || f.2 == 0), "{f:?}");
    // Beyond the stream's window: a flow-control error
    s.consumed(1, 900);
    let f = out(&mut s);
    assert!(f.contains(&(WINDOW_UPDATE, 0, 1, 900u32.to_be_bytes().to_vec())), "{f:?}");
    let ev = feed(&mut s, &frame(DATA, END_STREAM, 1, &[b'c'; 600]));
    assert_eq!(ev, vec![Event::Data { id: 1, data: vec![b'c'; 600], end_stream: true }]);
    assert_eq!(s.respond(1, b"204", &[HeaderIn::new(b"X", b"y")], true), Ok(None));
    out(&mut s);
    assert_eq!(s.take_events(), vec![Event::Closed { id: 1 }]);
}

#[test]
fn content_length_is_held() {
    let mut s = open(&Settings::default());
    let mut c = Client::new();
    let fields = [(":method", "POST"), (":scheme", "http"), (":authority", "h"), (":path", "/"), ("content-length", "3")];
    feed(&mut s, &c.headers(1, &fields, false));
    s.feed(&frame(DATA, END_STREAM, 1, b"abcd")).unwrap();
    assert_eq!(s.error(), Some(H2Error::ProtocolError));
    let f = out(&mut s);
    assert_eq!(f.last().map(|f| (f.0, f.3[4..8].to_vec())), Some((GOAWAY, vec![0, 0, 0, 1])));
    assert!(s.is_closed());
}

#[test]
fn refusals() {
    let mut c = Client::new();
    let mut s = open(&Settings { max_headers: 3, ..Settings::default() });
    let mut fields = get("/");
    fields.extend([("a", "1"), ("cookie", "x"), ("cookie", "y"), ("b", "2"), ("c", "3")]);
    assert!(matches!(&feed(&mut s, &c.headers(1, &fields, true))[..],
        [Event::Request { id: 1, request: Err(H2Refusal::HeadersTooLarge), .. }]));
    fields.pop();
    assert!(matches!(&feed(&mut s, &c.headers(3, &fields, true))[..], [Event::Request { id: 3, request: Ok(_), .. }]));
    // A refused request's body is not reported (and its window is kept open)
    let mut fields = get("/");
    fields.extend([("d", "4"), ("e", "5"), ("f", "6"), ("g", "7")]);
    let mut bytes = c.headers(5, &fields, false);
    bytes.extend(frame(DATA, END_STREAM, 5, b"body"));
    assert_eq!(feed(&mut s, &bytes).len(), 1);
    assert_eq!(s.respond(5, b"431", &[], true), Ok(None));

    // HPACK bomb: one large entry in the dynamic table, referenced again and again
    let mut s = open(&Settings::default());
    let mut c = Client::new();
    let big = "x".repeat(3000);
    let mut fields = get("/");
    fields.extend(std::iter::repeat_n(("bomb", big.as_str()), 40));
    let block = c.headers(1, &fields, true);
    assert!(block.len() < 3200, "{}", block.len());
    assert!(matches!(&feed(&mut s, &block)[..], [Event::Request { request: Err(H2Refusal::HeadersTooLarge), .. }]));
    // host against :authority
    let mut fields = get("/");
    fields.push(("host", "other.example"));
    assert!(matches!(&feed(&mut s, &c.headers(3, &fields, true))[..], [Event::Request { request: Err(H2Refusal::BadHost), .. }]));
    let mut fields = get("/");
    fields.push(("host", "EXAMPLE.com"));
    let ev = feed(&mut s, &c.headers(5, &fields, true));
    assert_eq!(request(&ev[0]).headers, vec![(b"host".to_vec(), b"example.com".to_vec())]);
    // CONNECT without :protocol; a path that is not UTF-8
    let ev = feed(&mut s, &c.headers(7, &[(":method", "CONNECT"), (":authority", "h:443")], false));
    assert!(matches!(&ev[..], [Event::Request { request: Err(H2Refusal::ConnectUnsupported), .. }]));
    let ev = feed(&mut s, &c.headers(9, &get("/\u{e9}"), true));
    assert!(request(&ev[0]).path_utf8);
    let mut bad = c.block(&[(":method", "GET"), (":scheme", "http"), (":authority", "h")]);
    bad.extend([0x04, 0x02, b'/', 0xff]); // :path "/\xff", literal without indexing
    let ev = feed(&mut s, &frame(HEADERS, END_HEADERS | END_STREAM, 11, &bad));
    assert!(matches!(&ev[..], [Event::Request { request: Err(H2Refusal::BadPath), .. }]), "{ev:?}");
    assert_eq!(s.error(), None);
}

#[test]
fn extended_connect() {
    let mut s = open(&Settings::default());
    let mut c = Client::new();
    let fields = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"), (":authority", "h"),
        (":path", "/chat"), ("sec-websocket-version", "13")];
    let ev = feed(&mut s, &c.headers(1, &fields, false));
    let r = request(&ev[0]);
    assert_eq!((r.method.as_slice(), r.protocol.as_deref()), (&b"CONNECT"[..], Some(&b"websocket"[..])));
    assert_eq!(s.respond(1, b"200", &[], false), Ok(None));
    s.send_data(1, b"\x81\x02hi", false).unwrap();
    let f = out(&mut s);
    assert_eq!((f[1].0, f[1].3.as_slice()), (DATA, &b"\x81\x02hi"[..]));
    // Without SETTINGS_ENABLE_CONNECT_PROTOCOL, :protocol is malformed
    let mut s = open(&Settings { enable_connect_protocol: false, ..Settings::default() });
    let mut c = Client::new();
    feed(&mut s, &c.headers(1, &fields, false));
    assert_eq!(s.error(), Some(H2Error::ProtocolError));
}

#[test]
fn app_errors() {
    let mut s = open(&Settings::default());
    let mut c = Client::new();
    feed(&mut s, &c.headers(1, &get("/"), true));
    assert_eq!(s.send_data(1, b"x", false), Err(SendError::NotStarted));
    assert_eq!(s.respond(1, b"99", &[], true), Err(SendError::App(pagi_server::response::AppError::Status)));
    assert_eq!(s.respond(1, b"101", &[], true), Err(SendError::App(pagi_server::response::AppError::Status)));
    assert_eq!(s.respond(1, b"200", &[HeaderIn::new(b"a b", b"")], true), Err(SendError::App(pagi_server::response::AppError::Name(0))));
    assert_eq!(s.respond(1, b"200", &[HeaderIn::new(b"content-length", b"x")], true),
        Err(SendError::App(pagi_server::response::AppError::ContentLength(0))));
    assert_eq!(s.respond(3, b"200", &[], true), Err(SendError::StreamClosed));
    assert_eq!(s.respond(1, b"200", &[HeaderIn::new(b"Content-Length", b"5")], false), Ok(Some(5)));
    assert_eq!(s.respond(1, b"200", &[], true), Err(SendError::AlreadyStarted));
    assert_eq!(s.send_trailers(1, &[HeaderIn::new(b"x", b"a\nb")]), Err(SendError::App(pagi_server::response::AppError::Value(0))));
}

#[test]
fn peer_resets_and_goaway() {
    let mut s = open(&Settings::default());
    let mut c = Client::new();
    feed(&mut s, &c.headers(1, &get("/"), false));
    let ev = feed(&mut s, &frame(RST_STREAM, 0, 1, &8u32.to_be_bytes()));
    assert_eq!(ev, vec![Event::Reset { id: 1, code: 8 }]);
    // (a client's last stream id names a server-initiated stream: none here)
    let goaway = [0u8; 8];
    assert_eq!(feed(&mut s, &frame(GOAWAY, 0, 0, &goaway)), vec![Event::Goaway { last_stream_id: 0, code: 0 }]);
    assert_eq!(s.error(), None);
    assert!(s.is_closed());
    // Our own reset
    let mut s = open(&Settings::default());
    let mut c = Client::new();
    feed(&mut s, &c.headers(1, &get("/"), true));
    s.respond(1, b"200", &[], false).unwrap();
    s.send_data(1, b"partial", false).unwrap();
    s.reset(1, 8);
    assert_eq!(s.buffered(1), 0);
    let f = out(&mut s);
    assert!(f.contains(&(RST_STREAM, 0, 1, vec![0, 0, 0, 8])), "{f:?}");
    assert_eq!(s.take_events(), vec![Event::Reset { id: 1, code: 8 }]);
}

#[test]
fn graceful_shutdown() {
    let mut s = open(&Settings::default());
    let mut c = Client::new();
    feed(&mut s, &c.headers(1, &get("/"), true));
    s.goaway(0, true);
    let f = out(&mut s);
    assert_eq!(f[0].0, GOAWAY);
    assert_eq!(f[0].3[..8], [0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    feed(&mut s, &c.headers(3, &get("/b"), true));
    s.goaway(0, false);
    let f = out(&mut s);
    assert_eq!(f[0].3[..8], [0, 0, 0, 3, 0, 0, 0, 0]);
    assert!(!s.is_closed(), "streams 1 and 3 in flight");
    assert_eq!(s.error(), None);
    // A stream after the final GOAWAY is ignored
    assert_eq!(feed(&mut s, &c.headers(5, &get("/c"), true)), vec![]);
    for id in [1, 3] {
        s.respond(id, b"200", &[], true).unwrap();
    }
    out(&mut s);
    assert_eq!(s.take_events(), vec![Event::Closed { id: 1 }, Event::Closed { id: 3 }]);
    assert!(s.is_closed());
}

#[test]
fn connection_errors() {
    let cases: Vec<(Vec<u8>, H2Error, u32)> = vec![
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), H2Error::BadPreface, 1),
        ([PREFACE, &frame(PING, 0, 0, &[0; 8])].concat(), H2Error::ProtocolError, 1),
        ([PREFACE, &settings(&[]), &frame(PING, 0, 0, &[0; 7])].concat(), H2Error::FrameSizeError, 6),
        ([PREFACE, &settings(&[]), &frame(DATA, 0, 0, b"x")].concat(), H2Error::ProtocolError, 1),
        ([PREFACE, &settings(&[(4, 1 << 31)])].concat(), H2Error::FlowControlError, 3),
        ([PREFACE, &settings(&[]), &frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0xff, 0xff, 0x7f])].concat(),
            H2Error::CompressionError, 9),
        ([PREFACE, &settings(&[]), &frame(WINDOW_UPDATE, 0, 0, &0u32.to_be_bytes())].concat(), H2Error::ProtocolError, 1),
        ([PREFACE, &settings(&[]), &frame(DATA, 0, 1, &[0; 20000])].concat(), H2Error::FrameSizeError, 6),
    ];
    for (input, kind, code) in cases {
        let mut s = Session::new(&Settings::default()).unwrap();
        out(&mut s);
        s.feed(&input).unwrap();
        assert_eq!(s.error(), Some(kind), "{:?}", String::from_utf8_lossy(&input));
        let f = out(&mut s);
        let goaway = f.iter().find(|f| f.0 == GOAWAY).unwrap_or_else(|| panic!("{kind:?}: {f:?}"));
        assert_eq!(u32::from_be_bytes(goaway.3[4..8].try_into().unwrap()), code, "{kind:?}");
        assert!(s.is_closed(), "{kind:?}");
        // More input is ignored
        s.feed(b"anything").unwrap();
        assert_eq!(s.take_events().len(), 0);
    }
    // An upper-case field name is malformed: nghttp2 makes it a connection error
    let mut s = open(&Settings::default());
    let mut c = Client::new();
    let mut fields = get("/");
    fields.push(("X-Upper", "1"));
    feed(&mut s, &c.headers(1, &fields, true));
    assert_eq!(s.error(), Some(H2Error::ProtocolError));
}

#[test]
fn concurrent_streams() {
    let mut c = Client::new();
    // Before our SETTINGS are acknowledged: REFUSED_STREAM
    let mut s = Session::new(&Settings { max_concurrent_streams: 2, ..Settings::default() }).unwrap();
    out(&mut s);
    let mut bytes = [PREFACE, &settings(&[])].concat();
    for id in [1, 3, 5] {
        bytes.extend(c.headers(id, &get("/"), false));
    }
    let ev = feed(&mut s, &bytes);
    assert_eq!(ev.len(), 3, "{ev:?}");
    assert_eq!(ev[2], Event::Error { id: 5, kind: H2Error::RefusedStream });
    assert!(out(&mut s).contains(&(RST_STREAM, 0, 5, vec![0, 0, 0, 7])));
    // After: a connection error
    let mut s = open(&Settings { max_concurrent_streams: 2, ..Settings::default() });
    let mut c = Client::new();
    for id in [1, 3, 5] {
        feed(&mut s, &c.headers(id, &get("/"), false));
    }
    assert_eq!(s.error(), Some(H2Error::ProtocolError));
}

#[test]
fn floods() {
    let mut c = Client::new();
    // Rapid reset: streams opened and reset faster than the limit
    let mut s = open(&Settings { rst_burst: 10, rst_rate: 1, ..Settings::default() });
    let mut bytes = Vec::new();
    for i in 0..20u32 {
        bytes.extend(c.headers(2 * i + 1, &get("/"), false));
        bytes.extend(frame(RST_STREAM, 0, 2 * i + 1, &8u32.to_be_bytes()));
    }
    s.feed(&bytes).unwrap();
    assert_eq!(s.error(), Some(H2Error::RapidReset));
    let f = out(&mut s);
    assert!(f.iter().any(|f| f.0 == GOAWAY && f.3[4..8] == [0, 0, 0, 2]));

    // CONTINUATION flood
    let mut s = open(&Settings::default());
    let block = c.block(&get("/"));
    let mut bytes = frame(HEADERS, 0, 1, &block[..1]);
    for _ in 0..20 {
        bytes.extend(frame(CONTINUATION, 0, 1, &[]));
    }
    s.feed(&bytes).unwrap();
    assert_eq!(s.error(), Some(H2Error::ContinuationFlood));
    assert!(out(&mut s).iter().any(|f| f.0 == GOAWAY && f.3[4..8] == [0, 0, 0, 11]));

    // PING flood from a client that never reads: the output stays bounded
    let mut s = open(&Settings::default());
    let pings: Vec<u8> = (0..2000).flat_map(|_| frame(PING, 0, 0, &[1; 8])).collect();
    for _ in 0..10 {
        s.feed(&pings).unwrap();
        if s.error().is_some() {
            break;
        }
    }
    assert_eq!(s.error(), Some(H2Error::Flood));
    let total = s.output(usize::MAX).unwrap().len();
    assert!(total < 4 * pagi_server::h2::PROBE_CAP, "{total}");
}

#[test]
fn zero_window_and_bounded_output() {
    let mut c = Client::new();
    // The client grants no window: the body waits in the stream's buffer
    let mut s = Session::new(&Settings::default()).unwrap();
    out(&mut s);
    let mut hello = [PREFACE, &settings(&[(4, 0)])].concat();
    hello.extend(c.headers(1, &get("/"), true));
    feed(&mut s, &hello);
    s.respond(1, b"200", &[], false).unwrap();
    s.send_data(1, &[b'z'; 5000], true).unwrap();
    let f = out(&mut s);
    assert!(f.iter().all(|f| f.0 != DATA), "{f:?}");
    assert_eq!(s.buffered(1), 5000);
    feed(&mut s, &frame(WINDOW_UPDATE, 0, 1, &3000u32.to_be_bytes()));
    let f = out(&mut s);
    assert_eq!(f.iter().filter(|f| f.0 == DATA).map(|f| f.3.len()).sum::<usize>(), 3000);
    assert_eq!(s.buffered(1), 2000);

    // output(max) hands out at most max bytes; the rest waits
    let mut s = open(&Settings::default());
    let mut c = Client::new();
    feed(&mut s, &[settings(&[(4, 1 << 20)]), frame(WINDOW_UPDATE, 0, 0, &(1u32 << 20).to_be_bytes()), c.headers(1, &get("/"), true)].concat());
    s.respond(1, b"200", &[], false).unwrap();
    s.send_data(1, &vec![b'q'; 100_000], true).unwrap();
    let mut got = Vec::new();
    loop {
        let chunk = s.output(1000).unwrap();
        assert!(chunk.len() <= 1000);
        if chunk.is_empty() {
            break;
        }
        got.extend(chunk);
    }
    let data: usize = frames(&got).iter().filter(|f| f.0 == DATA && f.2 == 1).map(|f| f.3.len()).sum();
    assert_eq!(data, 100_000);
}

#[test]
fn upgrade() {
    // HTTP2-Settings: SETTINGS_MAX_CONCURRENT_STREAMS = 100, base64url without padding
    let mut s = Session::new(&Settings { upgrade: Some(b"AAMAAABkAAQAAP__".to_vec()), ..Settings::default() }).unwrap();
    assert_eq!(out(&mut s)[0].0, SETTINGS);
    assert_eq!(s.open_streams(), 1);
    let mut c = Client::new();
    let mut hello = [PREFACE, &settings(&[])].concat();
    hello.extend(c.headers(3, &get("/next"), true));
    let ev = feed(&mut s, &hello);
    assert_eq!(ev.len(), 1);
    s.respond(1, b"200", &[], true).unwrap();
    let f = out(&mut s);
    assert!(f.iter().any(|f| f.0 == HEADERS && f.2 == 1 && f.1 & END_STREAM != 0));
    assert_eq!(s.take_events(), vec![Event::Closed { id: 1 }]);
    for bad in [&b"AAMAAABk!"[..], b"AAMAAAB", b"A=A"] {
        assert_eq!(Session::new(&Settings { upgrade: Some(bad.to_vec()), ..Settings::default() }).err(), Some(H2Error::BadUpgradeSettings));
    }
}

#[test]
fn split_points() {
    // The same bytes in one read and one byte at a time: the same events
    let mut c = Client::new();
    let mut bytes = [PREFACE, &settings(&[])].concat();
    let mut fields = get("/split");
    fields.push(("content-length", "5"));
    bytes.extend(c.headers(1, &fields, false));
    bytes.extend(frame(DATA, 0, 1, b"ab"));
    bytes.extend(frame(DATA, END_STREAM, 1, b"cde"));
    let whole = {
        let mut s = Session::new(&Settings::default()).unwrap();
        feed(&mut s, &bytes)
    };
    let mut s = Session::new(&Settings::default()).unwrap();
    let mut parts = Vec::new();
    for b in &bytes {
        parts.extend(feed(&mut s, std::slice::from_ref(b)));
    }
    let body: Vec<u8> = parts.iter().filter_map(|e| match e { Event::Data { data, .. } => Some(data.clone()), _ => None }).flatten().collect();
    assert_eq!(body, b"abcde");
    assert!(matches!(parts.last(), Some(Event::Data { end_stream: true, .. })));
    assert_eq!(whole[0], parts[0]);
    assert_eq!(whole[1], Event::Data { id: 1, data: b"abcde".to_vec(), end_stream: true });
}
