//! decode_chunked against doc/codec.md.

use pagi_server::chunked::{decode_chunked_vec, ChunkError, Progress, STATE_DATA_END, STATE_DONE, STATE_SIZE, STATE_TRAILER};
use pagi_server::ErrorKind::{self, *};

fn dec(buf: &[u8], state: i64) -> (Vec<u8>, usize, i64) {
    let (d, Progress { consumed, state }) = decode_chunked_vec(buf, state, 1024).unwrap();
    (d, consumed, state)
}

fn bad(buf: &[u8], state: i64, max: i64) -> ErrorKind {
    decode_chunked_vec(buf, state, max).unwrap_err().kind
}

/// Feeds `body` in pieces of `step` bytes the way the connection does: keep the
/// unconsumed rest, append the next piece.
fn incremental(body: &[u8], step: usize) -> (Vec<u8>, usize, i64) {
    let (mut pending, mut data, mut state, mut total) = (Vec::new(), Vec::new(), STATE_SIZE, 0);
    for piece in body.chunks(step.max(1)) {
        pending.extend_from_slice(piece);
        let (d, p) = decode_chunked_vec(&pending, state, 1024).unwrap();
        data.extend(d);
        pending.drain(..p.consumed);
        total += p.consumed;
        state = p.state;
        if state == STATE_DONE {
            break;
        }
    }
    (data, total, state)
}

const BODY: &[u8] = b"5\r\nhello\r\n6;name=\"v\"\r\n world\r\nA \t\r\n0123456789\n0\r\nX-T: 1\r\n\r\nNEXT";

#[test]
fn whole_body() {
    let (d, c, s) = dec(BODY, STATE_SIZE);
    assert_eq!(d, b"hello world0123456789");
    assert_eq!(c, BODY.len() - 4);
    assert_eq!(s, STATE_DONE);
}

#[test]
fn every_split_and_every_step() {
    for step in 1..BODY.len() {
        assert_eq!(incremental(BODY, step), (b"hello world0123456789".to_vec(), BODY.len() - 4, STATE_DONE), "step {step}");
    }
    for cut in 0..BODY.len() {
        let (d, c, s) = dec(&BODY[..cut], STATE_SIZE);
        assert!(c <= cut);
        assert!(BODY.starts_with(&d[..0]));
        assert!(s != STATE_DONE || cut >= BODY.len() - 4, "cut {cut}");
    }
}

#[test]
fn states() {
    assert_eq!(dec(b"", STATE_SIZE), (vec![], 0, STATE_SIZE));
    assert_eq!(dec(b"abc", 5), (b"abc".to_vec(), 3, 2));
    assert_eq!(dec(b"abc", 3), (b"abc".to_vec(), 3, STATE_DATA_END));
    assert_eq!(dec(b"\r", STATE_DATA_END), (vec![], 0, STATE_DATA_END));
    assert_eq!(dec(b"\r\n", STATE_DATA_END), (vec![], 2, STATE_SIZE));
    assert_eq!(dec(b"\n0\n\n", STATE_DATA_END), (vec![], 4, STATE_DONE));
    assert_eq!(dec(b"X: y\r\n", STATE_TRAILER), (vec![], 6, STATE_TRAILER));
    assert_eq!(dec(b"X: y\r", STATE_TRAILER), (vec![], 0, STATE_TRAILER));
    assert_eq!(dec(b"anything", STATE_DONE), (vec![], 0, STATE_DONE));
    assert_eq!(dec(b"anything", 0), (vec![], 0, 0));
    assert_eq!(dec(b"anything", -9), (vec![], 0, -9));
    assert_eq!(dec(b"0\r\n\r\n", STATE_SIZE), (vec![], 5, STATE_DONE));
    assert_eq!(dec(b"000;x\r\n\r\n", STATE_SIZE), (vec![], 9, STATE_DONE));
    assert_eq!(dec(b"fffffffffffffff\r\nab", STATE_SIZE), (b"ab".to_vec(), 19, 0xfff_ffff_ffff_fffd));
    assert_eq!(dec(b"1 ; a=b;c\t\x80\r\nx", STATE_SIZE).0, b"x");
}

#[test]
fn bad_chunks() {
    for line in [&b"\r\n"[..], b"\n", b"g\r\n", b" 5\r\n", b"5 x\r\n", b"5;\x01\r\n", b"5;\x7f\r\n", b"0000000000000001\r\n", b"5\r\r\n", b"-1\r\n", b"5\rx\n"] {
        assert_eq!(bad(line, STATE_SIZE, 1024), BadChunk, "{line:?}");
    }
    assert_eq!(bad(b"5\r\nhelloX", STATE_SIZE, 1024), BadChunk);
    assert_eq!(bad(b"\rX", STATE_DATA_END, 1024), BadChunk);
    assert_eq!(bad(b"X: a\rb\r\n", STATE_TRAILER, 1024), BadChunk);
    assert_eq!(bad(b"X: a\r\r\n", STATE_TRAILER, 1024), BadChunk);
    // A size line is at most 4096 bytes, complete or not
    let mut long = b"1;".to_vec();
    long.extend(std::iter::repeat_n(b'a', 4094));
    assert_eq!(dec(&long, STATE_SIZE), (vec![], 0, STATE_SIZE));
    // ... an incomplete one's final "\r" does not count (it may start the terminator)
    assert_eq!(dec(&[&long[..], b"\r"].concat(), STATE_SIZE), (vec![], 0, STATE_SIZE));
    assert_eq!(dec(&[&long[..], b"\r\nx"].concat(), STATE_SIZE).0, b"x");
    assert_eq!(dec(&[&long[..], b"\nx"].concat(), STATE_SIZE).0, b"x");
    long.push(b'a');
    assert_eq!(bad(&long, STATE_SIZE, 1024), BadChunk);
    assert_eq!(bad(&[&long[..], b"\r"].concat(), STATE_SIZE, 1024), BadChunk);
    assert_eq!(bad(&[&long[..], b"\r\nx"].concat(), STATE_SIZE, 1024), BadChunk);
    assert_eq!(bad(&[&long[..], b"\nx"].concat(), STATE_SIZE, 1024), BadChunk);
    // ... whichever chunk it sizes
    assert_eq!(
        decode_chunked_vec(&[&b"1\r\na\r\n"[..], &long, b"\r\n"].concat(), STATE_SIZE, 1024).unwrap_err(),
        ChunkError { kind: BadChunk, state: STATE_SIZE }
    );
    // An error consumes nothing even after good chunks; it reports the state reached
    assert_eq!(decode_chunked_vec(b"1\r\na\r\nzz\r\n", STATE_SIZE, 1024).unwrap_err(), ChunkError { kind: BadChunk, state: STATE_SIZE });
    assert_eq!(decode_chunked_vec(b"5\r\nhelloX", STATE_SIZE, 1024).unwrap_err(), ChunkError { kind: BadChunk, state: STATE_DATA_END });
    assert_eq!(decode_chunked_vec(b"0\r\nA: 1\r\n\r\n", STATE_SIZE, 5).unwrap_err(), ChunkError { kind: HeadersTooLarge, state: STATE_TRAILER });
}

#[test]
fn trailer_limit() {
    // Each line, raw (its terminator included), must fit in what is left of the budget,
    // the final empty line too: "A: 1\r\n" is 6 bytes, "\r\n" 2
    assert_eq!(decode_chunked_vec(b"0\r\nA: 1\r\n\r\n", STATE_SIZE, 9).unwrap().1.state, STATE_DONE);
    assert_eq!(decode_chunked_vec(b"0\r\nA: 1\r\n\r\n", STATE_SIZE, 8).unwrap().1.state, STATE_DONE);
    assert_eq!(bad(b"0\r\nA: 1\r\n\r\n", STATE_SIZE, 7), HeadersTooLarge);
    assert_eq!(bad(b"0\r\nA: 1\r\n\r\n", STATE_SIZE, 5), HeadersTooLarge);
    assert_eq!(bad(b"0\r\nA: 1\r\n\r\n", STATE_SIZE, 6), HeadersTooLarge);
    assert_eq!(decode_chunked_vec(b"0\nA: 1\n\n", STATE_SIZE, 6).unwrap().1.state, STATE_DONE);
    assert_eq!(bad(b"0\nA: 1\n\n", STATE_SIZE, 5), HeadersTooLarge);
    assert_eq!(bad(b"0\r\nA: 1\r\nB: 2\r\n\r\n", STATE_SIZE, 13), HeadersTooLarge);
    assert_eq!(decode_chunked_vec(b"0\r\nA: 1\r\nB: 2\r\n\r\n", STATE_SIZE, 14).unwrap().1.state, STATE_DONE);
    // The budget is per call: a second call starts afresh (its state carries no count)
    let (_, p) = decode_chunked_vec(b"0\r\nA: 1\r\n", STATE_SIZE, 7).unwrap();
    assert_eq!(p, Progress { consumed: 9, state: STATE_TRAILER });
    assert_eq!(decode_chunked_vec(b"B: 2\r\n\r\n", STATE_TRAILER, 8).unwrap().1.state, STATE_DONE);
    assert_eq!(bad(b"0\r\n\r\n", STATE_SIZE, 1), HeadersTooLarge);
    assert_eq!(decode_chunked_vec(b"0\r\n\n", STATE_SIZE, 1).unwrap().1.state, STATE_DONE);
    // An incomplete line too
    assert_eq!(bad(b"0\r\nA: 12345", STATE_SIZE, 7), HeadersTooLarge);
    assert_eq!(decode_chunked_vec(b"0\r\nA: 1234", STATE_SIZE, 7).unwrap().1, Progress { consumed: 3, state: STATE_TRAILER });
    assert_eq!(bad(b"x", STATE_TRAILER, -1), HeadersTooLarge);
}
