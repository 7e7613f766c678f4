//! The serializers on arbitrary headers: no panic, an accepted header can never inject
//! a line (no CR, LF or NUL gets through), check_headers gives the serializer's verdict
//! and the announced length is there exactly in mode 1.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagi_server::response::{check_headers, serialize_response, serialize_trailers, AppError, HeaderIn, MODE_LENGTH};

fuzz_target!(|input: &[u8]| {
    let Some((&flags, rest)) = input.split_first() else { return };
    // Fields separated by 0xFE, names from values by 0xFD
    let fields: Vec<(&[u8], &[u8])> = rest
        .split(|&b| b == 0xfe)
        .map(|f| match f.iter().position(|&b| b == 0xfd) {
            Some(p) => (&f[..p], &f[p + 1..]),
            None => (f, &f[..0]),
        })
        .collect();
    let (status, headers) = match fields.split_first() {
        Some((s, h)) => (s.0, h),
        None => return,
    };
    let headers: Vec<HeaderIn> = headers.iter().map(|(n, v)| HeaderIn::new(n, v)).collect();
    let mut out = Vec::new();
    let date = *b"Sun, 06 Nov 1994 08:49:37 GMT";
    let body = (flags & 8 != 0).then_some(usize::from(flags));
    let checked = check_headers(&headers);
    let result = serialize_response(&mut out, status, &headers, u32::from(flags & 7), body, &date, b"PAGI-Server");
    match (&result, &checked) {
        (Err(AppError::Status), _) => {}
        (Err(e), c) => assert_eq!(c.map(|_| ()), Err(*e)),
        (Ok(_), c) => assert!(c.is_ok()),
    }
    if let (Ok(f), Ok(seen)) = (result, checked) {
        assert_eq!(f.length.is_some(), f.mode == MODE_LENGTH);
        if let Some(n) = f.length {
            assert_eq!(Some(n), seen.content_length.or(body.map(|b| b as u64)));
        }
        assert!(out.ends_with(b"\r\n\r\n"));
        // Every line of the head is CRLF-terminated and has no stray CR, LF or NUL
        let head = &out[..out.len() - 2];
        for line in head.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            assert!(line.ends_with(b"\r"));
            assert!(!line[..line.len() - 1].iter().any(|&b| b == b'\r' || b == 0));
        }
        assert!(f.mode <= 3);
    }
    if serialize_trailers(&mut out, &headers).is_ok() {
        assert!(out.starts_with(b"0\r\n") && out.ends_with(b"\r\n\r\n"));
    }
});
