//! parse_request on arbitrary bytes and limits: no panic, and the results hold together.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagi_server::request::{parse_request, Limits, Status};

fuzz_target!(|input: &[u8]| {
    // The first three bytes choose the limits (small ones make every limit bite)
    let (limits, buf) = match input {
        [a, b, c, rest @ ..] if a & 1 == 1 => (
            Limits { max_header_size: i64::from(*a) * 4, max_headers: i64::from(*b) % 16, max_line: i64::from(*c) },
            rest,
        ),
        _ => (Limits::default(), input),
    };
    match parse_request(buf, &limits) {
        Ok(Status::Complete(r)) => {
            assert!(r.consumed <= buf.len());
            assert!(buf[..r.consumed].ends_with(b"\n"));
            // The head alone parses the same
            assert_eq!(parse_request(&buf[..r.consumed], &limits), Ok(Status::Complete(r.clone())));
            // Any shorter prefix is incomplete
            let cut = r.consumed.saturating_sub(1 + buf.len() % 7);
            assert_eq!(parse_request(&buf[..cut], &limits), Ok(Status::Partial));
            assert!(r.http_version == "1.1" || r.http_version == "1.0");
            assert!(!r.method.is_empty());
            assert!(r.headers.iter().all(|(n, _)| !n.is_empty() && !n.iter().any(u8::is_ascii_uppercase)));
            if r.path_utf8 {
                assert!(std::str::from_utf8(&r.path).is_ok());
            }
        }
        Ok(Status::Partial) => {}
        Err(_) => {}
    }
});
