//! The WebSocket frame codec against doc/codec.md (WebSocket part) and RFC 6455.

use pagi_server::request::Status;
use pagi_server::ws::*;

/// A client frame: byte 0 as given, the MASK bit, the length in `enc` bits (7, 16, 64),
/// the key and the masked payload.
fn frame(b0: u8, payload: &[u8], enc: u8, masked: bool, key: [u8; 4]) -> Vec<u8> {
    let m = if masked { 0x80 } else { 0 };
    let len = payload.len() as u64;
    let mut out = vec![b0];
    match enc {
        7 => out.push(m | len as u8),
        16 => {
            out.push(m | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&key);
        let mut masked = vec![0; payload.len()];
        mask_into(payload, &key, &mut masked);
        out.extend(masked);
    } else {
        out.extend_from_slice(payload);
    }
    out
}

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn parsed(buf: &[u8], max: i64) -> (bool, u8, Vec<u8>, usize) {
    match parse_frame(buf, max) {
        Ok(Status::Complete(f)) => (f.fin, f.opcode, f.payload(buf), f.consumed),
        other => panic!("{buf:?}: {other:?}"),
    }
}

fn err(buf: &[u8], max: i64) -> WsError {
    parse_frame(buf, max).unwrap_err()
}

#[test]
fn rfc6455_examples() {
    // 5.7: a single-frame masked text message "Hello"
    let buf = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
    assert_eq!(parsed(buf, 125), (true, WS_TEXT, b"Hello".to_vec(), 11));
    // a fragmented one, first part
    assert_eq!(parsed(b"\x01\x83\x37\xfa\x21\x3d\x7f\x9f\x4d", 125), (false, WS_TEXT, b"Hel".to_vec(), 9));
    // what the server sends: unmasked
    assert_eq!(build_frame(WS_TEXT, b"Hello", true), b"\x81\x05Hello");
    assert_eq!(build_frame(WS_TEXT, b"Hel", false), b"\x01\x03Hel");
    assert_eq!(build_frame(WS_PING, b"Hello", true), b"\x89\x05Hello");
    let big = build_frame(WS_BINARY, &[0; 256], true);
    assert_eq!(&big[..4], b"\x82\x7e\x01\x00");
    let huge = build_frame(WS_BINARY, &vec![0; 65536], true);
    assert_eq!(&huge[..10], b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00");
}

#[test]
fn every_opcode_length_and_encoding() {
    for op in [WS_CONTINUATION, WS_TEXT, WS_BINARY, WS_CLOSE, WS_PING, WS_PONG] {
        for len in [0usize, 1, 4, 7, 8, 9, 125, 126, 127, 65535, 65536, 70000] {
            if op >= WS_CLOSE && len > 125 {
                continue;
            }
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
            for fin in [true, false] {
                if op >= WS_CLOSE && !fin {
                    continue;
                }
                for enc in [7u8, 16, 64] {
                    if enc == 7 && len > 125 || enc == 16 && len > 65535 || op >= WS_CLOSE && enc != 7 {
                        continue;
                    }
                    let b0 = if fin { 0x80 } else { 0 } | op;
                    let mut buf = frame(b0, &payload, enc, true, KEY);
                    let whole = buf.len();
                    buf.extend_from_slice(b"\x81\x80");
                    assert_eq!(parsed(&buf, 1 << 20), (fin, op, payload.clone(), whole), "op {op} len {len} enc {enc}");
                }
            }
        }
    }
}

#[test]
fn errors_in_order() {
    for rsv in 1..8u8 {
        assert_eq!(err(&[0x81 | rsv << 4, 0x80], 10), WsError::RsvBits);
    }
    for op in (3..8).chain(11..16) {
        assert_eq!(err(&[0x80 | op, 0x80], 10), WsError::BadOpcode, "{op}");
    }
    assert_eq!(err(&[0x09, 0x80], 10), WsError::BadControl); // fragmented ping
    assert_eq!(err(&[0x88, 0xfe], 1000), WsError::BadControl); // close with a 16-bit length
    assert_eq!(err(&[0x8a, 0xff], 1000), WsError::BadControl);
    assert_eq!(err(&[0x81, 0x05], 10), WsError::Unmasked);
    assert_eq!(err(&[0x89, 0x00], 10), WsError::Unmasked);
    assert_eq!(err(b"\x82\xff\x80\0\0\0\0\0\0\x01", 10), WsError::BadLength);
    assert_eq!(err(b"\x82\xff\xff\xff\xff\xff\xff\xff\xff\xff", i64::MAX), WsError::BadLength);
    assert_eq!(err(b"\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff", i64::MAX - 1), WsError::TooLarge);
    assert_eq!(err(b"\x82\xfe\x01\x00", 255), WsError::TooLarge);
    assert_eq!(err(&[0x82, 0x85], 4), WsError::TooLarge);
    // the order: RSV, opcode, control, mask, then length
    assert_eq!(err(&[0xf3, 0x00], 10), WsError::RsvBits);
    assert_eq!(err(&[0x0b, 0x7e], 10), WsError::BadOpcode);
    assert_eq!(err(&[0x09, 0x7e], 10), WsError::BadControl);
    assert_eq!(err(&[0x82, 0x7f], 0), WsError::Unmasked);
    // each check as soon as its bytes are there: the length needs its extension
    assert_eq!(parse_frame(b"\x82\xff\x80\0\0", 10), Ok(Status::Partial));
    assert_eq!(parse_frame(b"\x82\xfe\x01", 10), Ok(Status::Partial));
    // a 7-bit length is checked against the limit at once
    assert_eq!(err(&[0x82, 0x85], 4), WsError::TooLarge);
    // limits: equal is fine; a negative limit refuses everything, even empty frames
    assert_eq!(parsed(&frame(0x82, b"abcd", 7, true, KEY), 4).2, b"abcd");
    assert_eq!(err(&frame(0x82, b"", 7, true, KEY), -1), WsError::TooLarge);
    assert_eq!(parsed(&frame(0x82, b"", 7, true, KEY), 0).2, b"");
    // non-minimal encodings are accepted
    assert_eq!(parsed(&frame(0x82, b"ab", 64, true, KEY), 10).2, b"ab");
    assert_eq!(parsed(&frame(0x82, b"ab", 16, true, KEY), 10).2, b"ab");
}

#[test]
fn every_prefix_is_partial() {
    for (payload, enc) in [(&b""[..], 7u8), (b"hello", 7), (&[7u8; 300][..], 16), (&[9u8; 300][..], 64)] {
        let buf = frame(0x82, payload, enc, true, KEY);
        for cut in 0..buf.len() {
            assert_eq!(parse_frame(&buf[..cut], 1 << 20), Ok(Status::Partial), "{enc} {cut}");
        }
        assert!(parse_frame(&buf, 1 << 20).unwrap().complete().is_some());
    }
}

/// What the checks of doc/codec.md say about a frame's first two bytes (limit 100),
/// written out independently of the parser.
fn first_two_bytes(b0: u8, b1: u8, rsv1_ok: bool) -> Option<WsError> {
    let (fin, rsv1, op, len7) = (b0 & 0x80 != 0, b0 & 0x40 != 0, b0 & 15, b1 & 0x7f);
    if b0 & 0x30 != 0 || rsv1 && !rsv1_ok {
        Some(WsError::RsvBits)
    } else if !matches!(op, 0 | 1 | 2 | 8 | 9 | 10) {
        Some(WsError::BadOpcode)
    } else if rsv1 && !matches!(op, 1 | 2) {
        Some(WsError::BadRsv1)
    } else if op >= 8 && (!fin || len7 > 125) {
        Some(WsError::BadControl)
    } else if b1 & 0x80 == 0 {
        Some(WsError::Unmasked)
    } else if len7 < 126 && len7 > 100 {
        Some(WsError::TooLarge)
    } else {
        None
    }
}

#[test]
fn every_first_two_bytes() {
    // With RSV1 allowed (permessage-deflate negotiated) and not; parse_frame is the latter
    for rsv1_ok in [false, true] {
        for b0 in 0..=255u8 {
            for b1 in 0..=255u8 {
                let want = first_two_bytes(b0, b1, rsv1_ok);
                let got = parse_frame_with(&[b0, b1], 100, rsv1_ok);
                if !rsv1_ok {
                    assert_eq!(parse_frame(&[b0, b1], 100), got);
                }
                match (got, want) {
                    (Err(e), Some(w)) => assert_eq!(e, w, "{b0:#x} {b1:#x} {rsv1_ok}"),
                    (Ok(Status::Partial), None) => {}
                    (got, want) => panic!("{b0:#x} {b1:#x} {rsv1_ok}: {got:?}, want {want:?}"),
                }
            }
        }
    }
}

#[test]
fn build_frame_lengths() {
    for len in (0..300).chain(65530..65541).chain([70000, 1 << 20]) {
        let payload = vec![b'p'; len];
        let f = build_frame(WS_BINARY, &payload, true);
        let (hlen, n) = match f[1] {
            126 => (4, u64::from(u16::from_be_bytes([f[2], f[3]]))),
            127 => (10, u64::from_be_bytes(f[2..10].try_into().unwrap())),
            n => (2, u64::from(n)),
        };
        assert_eq!(n, len as u64);
        assert_eq!(hlen, if len < 126 { 2 } else if len < 65536 { 4 } else { 10 }, "minimal encoding for {len}");
        assert_eq!(f[0], 0x82);
        assert_eq!(&f[hlen..], &payload[..]);
    }
    let mut h = [0u8; 10];
    assert_eq!(frame_header(0x0f, u64::MAX >> 1, &mut h), 10);
    assert_eq!(h, [0x0f, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
}

#[test]
fn masking() {
    let src: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
    for len in [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 999] {
        let mut d = vec![0; len];
        mask_into(&src[..len], &KEY, &mut d);
        assert!(d.iter().enumerate().all(|(i, b)| *b == src[i] ^ KEY[i % 4]), "{len}");
        // unmasking is masking again
        let mut back = vec![0; len];
        mask_into(&d, &KEY, &mut back);
        assert_eq!(back, &src[..len]);
    }
    // mask_payload with other key lengths: as Perl's `$p ^ substr($key x (($len >> 2) + 1), 0, $len)`
    let perl = |p: &[u8], key: &[u8]| -> Vec<u8> {
        let rep: Vec<u8> = key.iter().copied().cycle().take(key.len() * ((p.len() >> 2) + 1)).collect();
        let mask = &rep[..rep.len().min(p.len())];
        p.iter().enumerate().map(|(i, b)| b ^ mask.get(i).copied().unwrap_or(0)).collect()
    };
    for key in [&b""[..], b"a", b"ab", b"abc", b"abcd", b"abcde", b"abcdefgh"] {
        for len in 0..40 {
            let mut d = vec![0; len];
            mask_payload_into(&src[..len], key, &mut d);
            assert_eq!(d, perl(&src[..len], key), "key {key:?} len {len}");
        }
    }
}

/// RFC 3629's table, byte by byte: the length of the valid character at the start of
/// `s`, Err(true) when `s` ends inside a character that could still be completed, and
/// Err(false) when it is invalid.
fn rfc3629(s: &[u8]) -> Result<usize, bool> {
    let b0 = s[0];
    let (n, lo, hi) = match b0 {
        0x00..=0x7f => return Ok(1),
        0xc2..=0xdf => (2, 0x80, 0xbf),
        0xe0 => (3, 0xa0, 0xbf),
        0xe1..=0xec | 0xee | 0xef => (3, 0x80, 0xbf),
        0xed => (3, 0x80, 0x9f),
        0xf0 => (4, 0x90, 0xbf),
        0xf1..=0xf3 => (4, 0x80, 0xbf),
        0xf4 => (4, 0x80, 0x8f),
        _ => return Err(false),
    };
    for i in 1..n {
        let Some(&b) = s.get(i) else { return Err(true) };
        let (l, h) = if i == 1 { (lo, hi) } else { (0x80, 0xbf) };
        if b < l || b > h {
            return Err(false);
        }
    }
    Ok(n)
}

fn reference(mut s: &[u8]) -> i32 {
    while !s.is_empty() {
        match rfc3629(s) {
            Ok(n) => s = &s[n..],
            Err(true) => return UTF8_PARTIAL,
            Err(false) => return UTF8_INVALID,
        }
    }
    UTF8_VALID
}

#[test]
fn utf8_check_against_rfc3629() {
    assert_eq!(utf8_check(b""), UTF8_VALID);
    assert_eq!(utf8_check(b"Hello"), UTF8_VALID);
    assert_eq!(utf8_check("café €😀".as_bytes()), UTF8_VALID);
    assert_eq!(utf8_check(b"\xf4\x8f\xbf\xbf"), UTF8_VALID); // U+10FFFF
    assert_eq!(utf8_check(b"\xf0\x9f\x98"), UTF8_PARTIAL);
    assert_eq!(utf8_check(b"a\xe2\x82"), UTF8_PARTIAL);
    for bad in [&b"\xc0\x80"[..], b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xf5", b"\xff", b"\x80", b"\xe0\x80", b"\xf0\x8f"] {
        assert_eq!(utf8_check(bad), UTF8_INVALID, "{bad:?}");
    }
    // every sequence of up to three bytes, after ASCII and after a valid character
    let mut seqs: Vec<Vec<u8>> = Vec::new();
    for a in 0..=255u8 {
        seqs.push(vec![a]);
        for b in 0..=255u8 {
            seqs.push(vec![a, b]);
        }
    }
    for a in 0xc0..=0xffu8 {
        for b in 0x70..=0xc5u8 {
            for c in [0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xe0, 0xf0, 0xff] {
                seqs.push(vec![a, b, c]);
                for d in [0x41, 0x80, 0xbf, 0xc0, 0xf0] {
                    seqs.push(vec![a, b, c, d]);
                }
            }
        }
    }
    for s in &seqs {
        assert_eq!(utf8_check(s), reference(s), "{s:x?}");
        let mut t = b"ab\xc3\xa9".to_vec();
        t.extend_from_slice(s);
        assert_eq!(utf8_check(&t), reference(&t), "{t:x?}");
    }
    // long inputs
    let long = "😀".repeat(100_000).into_bytes();
    assert_eq!(utf8_check(&long), UTF8_VALID);
    assert_eq!(utf8_check(&long[..long.len() - 1]), UTF8_PARTIAL);
    let mut bad = long.clone();
    bad[200_001] = b'a';
    assert_eq!(utf8_check(&bad), UTF8_INVALID);
}

#[test]
fn rsv1_when_compression_is_negotiated() {
    // (every first two bytes with RSV1 allowed: every_first_two_bytes)
    // RSV1 without the extension stays rsv_bits; with it, a text or binary first frame
    // (FIN set or not) is marked compressed
    let hello = frame(0xc1, b"Hello", 7, true, KEY);
    assert_eq!(parse_frame(&hello, 125), Err(WsError::RsvBits));
    assert_eq!(parse_frame_with(&hello, 125, false), Err(WsError::RsvBits));
    for b0 in [0xc1u8, 0xc2, 0x41, 0x42] {
        let buf = frame(b0, b"Hello", 7, true, KEY);
        let f = parse_frame_with(&buf, 125, true).unwrap().complete().unwrap();
        assert_eq!((f.fin, f.rsv1, f.opcode, f.payload(&buf)), (b0 & 0x80 != 0, true, b0 & 15, b"Hello".to_vec()));
        // the same frame without RSV1 is not compressed, allowed or not
        let plain = frame(b0 & !0x40, b"Hello", 7, true, KEY);
        for ok in [false, true] {
            assert!(!parse_frame_with(&plain, 125, ok).unwrap().complete().unwrap().rsv1);
        }
    }
    // on a continuation or control frame it is bad_rsv1 (RFC 7692 6)
    for b0 in [0x40u8, 0xc0, 0xc8, 0xc9, 0xca] {
        assert_eq!(parse_frame_with(&frame(b0, b"x", 7, true, KEY), 125, true), Err(WsError::BadRsv1), "{b0:#x}");
    }
    // RSV2 and RSV3 stay errors
    for b0 in [0xe1u8, 0xd1, 0xa1, 0x91] {
        assert_eq!(parse_frame_with(&frame(b0, b"x", 7, true, KEY), 125, true), Err(WsError::RsvBits), "{b0:#x}");
    }
    // build_frame_with sets RSV1
    assert_eq!(build_frame_with(WS_TEXT, b"\xf2\x48\xcd\xc9\xc9\x07\x00", true, true), b"\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00");
    assert_eq!(build_frame_with(WS_BINARY, b"ab", false, true), b"\x42\x02ab");
    assert_eq!(build_frame_with(WS_BINARY, b"ab", true, false), build_frame(WS_BINARY, b"ab", true));
}
