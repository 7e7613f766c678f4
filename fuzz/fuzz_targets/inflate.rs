//! permessage-deflate's inflate path (src/deflate.rs) on arbitrary bytes: no panic; a
//! message never inflates to more than its limit (and an error hands out nothing);
//! after an error every call gives the same error; cutting a message into frames
//! anywhere changes nothing (the same bytes, or the same error); and the input,
//! compressed by a context, inflates back to itself, within a limit of its size and
//! not within one byte less.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagi_server::deflate::{Context, Params};
use pagi_server::ws::WsError;

/// The message in frames cut at `cuts` (positions, in any order): its bytes,
/// or the first error.
fn inflate(c: &mut Context, msg: &[u8], cuts: &[usize], max: i64) -> Result<Vec<u8>, WsError> {
    let (mut all, mut out, mut at) = (Vec::new(), Vec::new(), 0);
    let mut ends: Vec<usize> = cuts.iter().copied().filter(|&c| c > 0 && c < msg.len()).chain([msg.len()]).collect();
    ends.sort_unstable();
    ends.dedup();
    for (i, &end) in ends.iter().enumerate() {
        let fin = i + 1 == ends.len();
        match c.decompress(&msg[at..end], max, fin, &mut out) {
            Ok(()) => all.extend_from_slice(&out),
            Err(e) => {
                assert!(out.is_empty(), "an error hands out nothing");
                return Err(e);
            }
        }
        at = end;
    }
    Ok(all)
}

fuzz_target!(|input: &[u8]| {
    let [knobs, more, data @ ..] = input else { return };
    let (knobs, more) = (*knobs, *more);
    let params = Params {
        server_no_context_takeover: knobs & 1 != 0,
        client_no_context_takeover: knobs & 2 != 0,
        server_max_window_bits: 9 + (knobs >> 2 & 7).min(6),
        level: i32::from(more & 15).min(9),
        mem_level: 1 + i32::from(more >> 4 & 7).min(8),
    };
    let max: i64 = match knobs >> 6 {
        0 => 64,
        1 => 4096,
        2 => 1 << 20,
        _ => -1,
    };
    // The first bytes choose cut points; the rest is the message
    let cut_bytes = data.len().min(usize::from(knobs >> 5 & 3));
    let (cut_at, msg) = data.split_at(cut_bytes);
    let cuts: Vec<usize> = cut_at.iter().map(|&b| usize::from(b) * msg.len() / 256).collect();

    // Arbitrary bytes as a compressed message: whole, then cut, the same outcome
    let mut whole = Context::new(params).unwrap();
    let a = inflate(&mut whole, msg, &[], max);
    if let Ok(bytes) = &a {
        assert!(bytes.len() as i128 <= i128::from(max));
    }
    let mut cut = Context::new(params).unwrap();
    let b = inflate(&mut cut, msg, &cuts, max);
    assert_eq!(a, b, "cut at {cuts:?}");
    // After an error the context stays broken; after a message it takes the next one
    let mut out = Vec::new();
    match a {
        Err(e) => assert_eq!(whole.decompress(b"\x00", 1 << 20, true, &mut out), Err(e)),
        Ok(_) => {
            let again = whole.decompress(b"\x00", 1 << 20, true, &mut out);
            assert!(again.is_ok() || again == Err(WsError::BadDeflate), "{again:?}");
        }
    }

    // The message compressed, twice (the second time with the window), inflates back
    // (the peer's compressor: without context takeover when the inflater goes without)
    let mut tx = Context::new(Params { server_no_context_takeover: params.client_no_context_takeover, ..params }).unwrap();
    let mut rx = Context::new(params).unwrap();
    for round in 0..2 {
        let mut z = Vec::new();
        tx.compress_message(msg, &mut z);
        let zcuts: Vec<usize> = cut_at.iter().map(|&b| usize::from(b) * z.len() / 256).collect();
        assert_eq!(inflate(&mut rx, &z, &zcuts, msg.len() as i64).as_deref(), Ok(msg));
        // one byte less is too large (the first message stands alone: a fresh context)
        if round == 0 && !msg.is_empty() {
            let mut small = Context::new(params).unwrap();
            assert_eq!(inflate(&mut small, &z, &zcuts, msg.len() as i64 - 1), Err(WsError::InflatedTooLarge));
        }
    }
});
