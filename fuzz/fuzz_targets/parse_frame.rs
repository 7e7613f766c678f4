//! parse_frame on arbitrary bytes: no panic; a frame lies within the input and its
//! payload unmasks back to what masking it again gives; a prefix of a complete frame is
//! partial; a prefix of an error is partial or the same error; build_frame's output
//! round-trips once masked; utf8_check agrees with std on the payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagi_server::request::Status;
use pagi_server::ws::{build_frame, mask_into, parse_frame, utf8_check, UTF8_VALID};

fuzz_target!(|input: &[u8]| {
    let Some((&limit, buf)) = input.split_first() else { return };
    // Limits around the 7/16-bit boundaries, negative ones and none at all
    let max: i64 = match limit {
        0 => -1,
        1 => i64::MAX,
        n => i64::from(n) * 300,
    };
    let result = parse_frame(buf, max);
    match result {
        Ok(Status::Complete(f)) => {
            assert!(f.consumed <= buf.len() && f.payload_offset + f.payload_len == f.consumed);
            assert!(f.payload_len as i128 <= i128::from(max));
            assert!(matches!(f.opcode, 0 | 1 | 2 | 8 | 9 | 10));
            assert!(f.opcode < 8 || (f.fin && f.payload_len <= 125));
            let payload = f.payload(buf);
            let mut again = vec![0; payload.len()];
            mask_into(&payload, &f.key, &mut again);
            assert_eq!(again, f.masked_payload(buf));
            // every prefix is partial
            for cut in [0, 1, f.payload_offset.saturating_sub(1), f.consumed - 1] {
                if cut < f.consumed {
                    assert_eq!(parse_frame(&buf[..cut], max), Ok(Status::Partial), "cut {cut}");
                }
            }
            // what the server would send back, once masked like a client's, parses the same
            let mut echo = build_frame(f.opcode, &payload, f.fin);
            let hlen = echo.len() - payload.len();
            echo[1] |= 0x80;
            let mut masked = vec![0; payload.len()];
            mask_into(&payload, &f.key, &mut masked);
            echo.truncate(hlen);
            echo.extend_from_slice(&f.key);
            echo.extend(masked);
            match parse_frame(&echo, max) {
                Ok(Status::Complete(g)) => assert_eq!((g.fin, g.opcode, g.payload(&echo)), (f.fin, f.opcode, payload.clone())),
                other => panic!("echo: {other:?}"),
            }
            let v = utf8_check(&payload);
            assert_eq!(v == UTF8_VALID, std::str::from_utf8(&payload).is_ok());
        }
        Ok(Status::Partial) => {
            for cut in 0..buf.len().min(14) {
                assert_eq!(parse_frame(&buf[..cut], max), Ok(Status::Partial));
            }
        }
        Err(e) => {
            for cut in 0..buf.len() {
                match parse_frame(&buf[..cut], max) {
                    Ok(Status::Partial) => {}
                    Err(e2) => assert_eq!(e2, e, "cut {cut}"),
                    Ok(Status::Complete(_)) => panic!("a prefix of an error is a frame"),
                }
            }
        }
    }
});
