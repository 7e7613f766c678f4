//! The HTTP/2 session on arbitrary bytes, read in arbitrary pieces, with an application
//! that answers every request: no panic, no callback failure; output(max) never hands
//! out more than max; once there is a connection error nothing more is read; every
//! event is about a stream the session reported (request before data/trailers/closing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagi_server::h2::{Event, Session, Settings, PREFACE};
use pagi_server::response::HeaderIn;
use std::collections::HashSet;

fuzz_target!(|input: &[u8]| {
    let Some((&knobs, rest)) = input.split_first() else { return };
    let settings = Settings {
        max_concurrent_streams: u32::from(knobs & 7) + 1,
        initial_window_size: if knobs & 8 != 0 { 100 } else { 65535 },
        max_headers: if knobs & 16 != 0 { 3 } else { 100 },
        rst_burst: 5,
        rst_rate: 0,
        ..Settings::default()
    };
    let Ok(mut s) = Session::new(&settings) else { return };
    assert!(!s.output(usize::MAX).unwrap().is_empty(), "the server preface");
    // Mostly valid starts: the preface, then the fuzzer's frames
    let mut bytes = if knobs & 32 != 0 { PREFACE.to_vec() } else { Vec::new() };
    bytes.extend_from_slice(rest);
    let mut known: HashSet<i32> = HashSet::new();
    let mut errored = false;
    let piece = usize::from(knobs >> 6) * 7 + 1;
    for chunk in bytes.chunks(piece) {
        s.feed(chunk).expect("no callback failure");
        if errored {
            assert!(s.take_events().is_empty(), "nothing is read after a connection error");
        }
        for ev in s.take_events() {
            match &ev {
                &Event::Request { id, ref request, end_stream } => {
                    assert!(known.insert(id), "one request per stream");
                    let status: &[u8] = if request.is_ok() { b"200" } else { b"431" };
                    let _ = s.respond(id, status, &[HeaderIn::new(b"x", b"y")], end_stream && request.is_err());
                    let _ = s.send_data(id, b"body", end_stream);
                }
                Event::Data { id, .. } | Event::Trailers { id, .. } => assert!(known.contains(id), "data of a known stream"),
                Event::Reset { id, .. } | Event::Closed { id } => assert!(known.remove(id), "a known stream ends once"),
                Event::Error { .. } | Event::Goaway { .. } => {}
            }
            if let Event::Data { id, data, .. } = ev {
                s.consumed(id, data.len());
            }
        }
        errored |= s.error().is_some();
        let max = usize::from(chunk.first().copied().unwrap_or(0)) * 64 + 1;
        assert!(s.output(max).expect("no callback failure").len() <= max);
    }
    while !s.output(1 << 16).expect("no callback failure").is_empty() {}
    let _ = s.take_events();
    assert!(s.open_streams() <= settings.max_concurrent_streams as usize);
});
