//! decode_chunked on arbitrary bytes: no panic, and feeding in two pieces decodes the
//! same data as feeding at once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagi_server::chunked::{decode_chunked_vec, STATE_DONE, STATE_SIZE};

fuzz_target!(|input: &[u8]| {
    let Some((&split, body)) = input.split_first() else { return };
    let max_trailer = i64::from(split) * 8;
    let whole = decode_chunked_vec(body, STATE_SIZE, max_trailer);
    if let Ok((_, p)) = &whole {
        assert!(p.consumed <= body.len());
        assert!(p.state >= STATE_DONE && p.state != 0);
    }
    // In two pieces, the way a connection feeds it
    let cut = usize::from(split) % (body.len() + 1);
    let mut data = Vec::new();
    let mut state = STATE_SIZE;
    let mut pending = body[..cut].to_vec();
    let mut total = 0;
    let mut error = false;
    for piece in [&body[..0], &body[cut..]] {
        pending.extend_from_slice(piece);
        match decode_chunked_vec(&pending, state, max_trailer) {
            Ok((d, p)) => {
                data.extend(d);
                pending.drain(..p.consumed);
                total += p.consumed;
                state = p.state;
            }
            Err(_) => {
                error = true;
                break;
            }
        }
    }
    // The trailer budget is per call, so only error-free whole runs must agree
    if let (Ok((d, p)), false) = (&whole, error) {
        if p.state == STATE_DONE {
            assert_eq!(&data, d);
            assert_eq!(total, p.consumed);
            assert_eq!(state, STATE_DONE);
        }
    }
});
