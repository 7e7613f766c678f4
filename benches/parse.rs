//! `cargo bench`: the Rust core alone, without Perl (compare with benches/codec.pl).

use pagi_server::chunked::decode_chunked;
use pagi_server::request::{Limits, Parser};
use pagi_server::response::{serialize_response, HeaderIn};
use std::hint::black_box;
use std::time::Instant;

const BROWSER: &[u8] = b"GET /articles/2024/rust-and-perl.html?utm_source=feed HTTP/1.1\r\n\
Host: www.example.org\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8\r\n\
Accept-Language: en-GB,en;q=0.7,fr;q=0.3\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.org/articles/\r\n\
Connection: keep-alive\r\n\
Cookie: session=4f2a9c1e8b7d6a5f; theme=dark; consent=yes\r\n\r\n";
const WRK: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost:5000\r\n\r\n";

fn bench(name: &str, bytes: usize, mut f: impl FnMut()) {
    // `cargo bench --bench parse -- wrk` runs only the cases whose name contains "wrk"
    if let Some(filter) = std::env::args().skip(1).find(|a| !a.starts_with('-')) {
        if !name.contains(filter.as_str()) {
            return;
        }
    }
    // PAGI_BENCH_ITERS=N: exactly N calls and no timing (for callgrind's counts)
    if let Some(n) = std::env::var("PAGI_BENCH_ITERS").ok().and_then(|v| v.parse::<u64>().ok()) {
        for _ in 0..n {
            f();
        }
        return;
    }
    for _ in 0..10_000 {
        f();
    }
    let mut n = 1_000u64;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        let e = t.elapsed();
        if e.as_millis() >= 500 {
            let ns = e.as_nanos() as f64 / n as f64;
            let rate = if bytes > 0 { format!(", {:.2} GB/s", bytes as f64 / ns) } else { String::new() };
            println!("{name:<40} {ns:>8.1} ns/iter ({:.2} M/s{rate})", 1e3 / ns);
            return;
        }
        n *= 2;
    }
}

fn main() {
    let limits = Limits::default();
    let mut p = Parser::new();
    bench("parse_request browser GET (468 B)", BROWSER.len(), || {
        black_box(p.parse(black_box(BROWSER), &limits).unwrap());
    });
    bench("parse_request wrk GET (40 B)", WRK.len(), || {
        black_box(p.parse(black_box(WRK), &limits).unwrap());
    });
    let body: Vec<u8> = (0..16).flat_map(|_| b"1000\r\n".iter().copied().chain(std::iter::repeat_n(b'x', 4096)).chain(*b"\r\n")).chain(*b"0\r\n\r\n").collect();
    let mut ranges = Vec::new();
    bench("decode_chunked 16 x 4 KiB", body.len(), || {
        ranges.clear();
        black_box(decode_chunked(black_box(&body), -1, 16384, &mut ranges).unwrap());
    });
    let headers = [
        HeaderIn::new(b"Content-Type", b"text/plain; charset=utf-8"),
        HeaderIn::new(b"Cache-Control", b"no-cache"),
        HeaderIn::new(b"X-Request-Id", b"b7c3f0e2-41d9-4b8a-9e57-2f6c1a0d3e88"),
    ];
    let mut out = Vec::new();
    let date = *b"Sun, 06 Nov 1994 08:49:37 GMT";
    bench("serialize_response 3 headers + body", 0, || {
        black_box(serialize_response(&mut out, b"200", black_box(&headers), 0, Some(13), &date, b"PAGI-Server").unwrap());
    });
}
