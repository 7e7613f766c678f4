//! permessage-deflate's compression context (src/deflate.rs) against RFC 7692 and
//! doc/codec.md: the RFC's examples, round trips over every level, window and memLevel,
//! context takeover and its absence, fragmented messages, the size limit while
//! inflating, corrupt streams; and what a context costs in memory (this test binary
//! counts its own thread's allocations).

use pagi_server::deflate::{Context, Params, TAIL};
use pagi_server::ws::WsError;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts the bytes each thread holds, so that a test can measure what it allocates
/// while the other tests run on their own threads.
struct Counting;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
}

// SAFETY: every call is passed on to the system allocator unchanged; the counter is a
// const-initialised thread-local Cell (no allocation, no destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = HELD.try_with(|h| h.set(h.get() + layout.size() as isize));
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = HELD.try_with(|h| h.set(h.get() - layout.size() as isize));
        // SAFETY: a pointer from `alloc` with its layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = HELD.try_with(|h| h.set(h.get() + new_size as isize - layout.size() as isize));
        // SAFETY: as GlobalAlloc::realloc requires, from our caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn held() -> isize {
    HELD.with(Cell::get)
}

const DEFAULT: Params =
    Params { server_no_context_takeover: false, client_no_context_takeover: false, server_max_window_bits: 15, level: 6, mem_level: 8 };

fn context(p: Params) -> Context {
    Context::new(p).expect("valid parameters")
}

fn compress(c: &mut Context, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    c.compress_message(data, &mut out);
    out
}

/// A whole message, one frame.
fn inflate(c: &mut Context, payload: &[u8], max: i64) -> Result<Vec<u8>, WsError> {
    let mut out = Vec::new();
    c.decompress(payload, max, true, &mut out).map(|()| out)
}

/// A message in frames: the bytes of all of them, or the first error.
fn inflate_frames(c: &mut Context, frames: &[&[u8]], max: i64) -> Result<Vec<u8>, WsError> {
    let (mut all, mut out) = (Vec::new(), Vec::new());
    for (i, f) in frames.iter().enumerate() {
        c.decompress(f, max, i + 1 == frames.len(), &mut out)?;
        all.extend_from_slice(&out);
    }
    Ok(all)
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// Deterministic test data: JSON-like text, and bytes that do not compress.
fn json(i: usize) -> Vec<u8> {
    format!(
        r#"{{"id":{i},"user":"user{}","text":"{}","tags":["chat","room{}"],"ts":{}}}"#,
        i % 7,
        "hello world ".repeat(i % 9),
        i % 3,
        1_700_000_000 + i * 37
    )
    .into_bytes()
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn rfc7692_examples() {
    let mut c = context(DEFAULT);
    // 7.2.3.1: "Hello", in one frame and in two
    assert_eq!(compress(&mut c, b"Hello"), hex("f2 48 cd c9 c9 07 00"));
    assert_eq!(inflate(&mut context(DEFAULT), &hex("f2 48 cd c9 c9 07 00"), 100).unwrap(), b"Hello");
    assert_eq!(inflate_frames(&mut context(DEFAULT), &[&hex("f2 48 cd"), &hex("c9 c9 07 00")], 100).unwrap(), b"Hello");
    // 7.2.3.2: the same message again, with and without the LZ77 window
    assert_eq!(compress(&mut c, b"Hello"), hex("f2 00 11 00 00"));
    let mut r = context(DEFAULT);
    assert_eq!(inflate(&mut r, &hex("f2 48 cd c9 c9 07 00"), 100).unwrap(), b"Hello");
    assert_eq!(inflate(&mut r, &hex("f2 00 11 00 00"), 100).unwrap(), b"Hello");
    let mut once = context(Params { server_no_context_takeover: true, ..DEFAULT });
    for _ in 0..3 {
        assert_eq!(compress(&mut once, b"Hello"), hex("f2 48 cd c9 c9 07 00"));
    }
    // 7.2.3.3: a stored block
    assert_eq!(inflate(&mut context(DEFAULT), &hex("00 05 00 fa ff 48 65 6c 6c 6f 00"), 100).unwrap(), b"Hello");
    // 7.2.3.4: a block with BFINAL set, then the octet that makes the appended tail an
    // empty stored block; the next message starts a new stream
    let mut r = context(DEFAULT);
    assert_eq!(inflate(&mut r, &hex("f3 48 cd c9 c9 07 00 00"), 100).unwrap(), b"Hello");
    assert_eq!(inflate(&mut r, &hex("f2 48 cd c9 c9 07 00"), 100).unwrap(), b"Hello");
    // 7.2.3.5: two DEFLATE blocks in one message
    assert_eq!(inflate(&mut context(DEFAULT), &hex("f2 48 05 00 00 00 ff ff ca c9 c9 07 00"), 100).unwrap(), b"Hello");
    // 7.2.3.6: a sender that flushed at the end of its first frame ends with an empty one
    let frames: [&[u8]; 2] = [&hex("f2 48 cd c9 c9 07 00 00 00 ff ff"), b""];
    assert_eq!(inflate_frames(&mut context(DEFAULT), &frames, 100).unwrap(), b"Hello");
    // An empty message is one 0x00 octet (the flush's block header)
    assert_eq!(compress(&mut context(DEFAULT), b""), [0x00]);
    assert_eq!(inflate(&mut context(DEFAULT), &[0x00], 0).unwrap(), b"");
    assert_eq!(inflate(&mut context(DEFAULT), b"", 0).unwrap(), b"");
}

#[test]
fn round_trips_over_every_setting() {
    let messages: Vec<Vec<u8>> = (0..40)
        .map(|i| match i % 5 {
            0 => noise(i * 50, i as u64),
            1 => vec![b'a'; i * 1000],
            _ => json(i),
        })
        .chain([Vec::new(), noise(70_000, 9), json(1).repeat(3000)])
        .collect();
    for level in 0..=9 {
        for window in 9..=15u8 {
            for mem_level in [1, 5, 8, 9] {
                for takeover in [true, false] {
                    let p = Params {
                        server_no_context_takeover: !takeover,
                        client_no_context_takeover: !takeover,
                        server_max_window_bits: window,
                        level,
                        mem_level,
                    };
                    let (mut tx, mut rx) = (context(p), context(p));
                    for (i, m) in messages.iter().enumerate() {
                        let z = compress(&mut tx, m);
                        assert!(!z.ends_with(&TAIL) || z.len() < 4, "the tail is removed");
                        let got = inflate(&mut rx, &z, 1 << 30);
                        assert!(got.as_ref() == Ok(m), "{p:?}, message {i} of {} bytes: {:?}", m.len(), got.map(|g| g.len()));
                        if !takeover {
                            // each message stands alone
                            let alone = inflate(&mut context(p), &z, 1 << 30);
                            assert!(alone.as_ref() == Ok(m), "alone: {p:?}, {} bytes: {:?}", m.len(), alone.map(|g| g.len()));
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn context_takeover() {
    // With takeover the second message refers to the first: alone it is corrupt
    let mut tx = context(DEFAULT);
    let first = compress(&mut tx, b"the same words, the same words");
    let second = compress(&mut tx, b"the same words, the same words");
    assert!(second.len() < first.len());
    assert_eq!(inflate(&mut context(DEFAULT), &second, 100), Err(WsError::BadDeflate));
    let mut rx = context(DEFAULT);
    inflate(&mut rx, &first, 100).unwrap();
    assert_eq!(inflate(&mut rx, &second, 100).unwrap(), b"the same words, the same words");
    // client_no_context_takeover: the inflater forgets after each message, so a client
    // that took over anyway is caught
    let mut strict = context(Params { client_no_context_takeover: true, ..DEFAULT });
    inflate(&mut strict, &first, 100).unwrap();
    assert_eq!(inflate(&mut strict, &second, 100), Err(WsError::BadDeflate));
    // server_no_context_takeover: every message compresses alone
    let mut tx = context(Params { server_no_context_takeover: true, ..DEFAULT });
    let a = compress(&mut tx, b"the same words, the same words");
    let b = compress(&mut tx, b"the same words, the same words");
    assert_eq!((a.clone(), inflate(&mut context(DEFAULT), &b, 100).unwrap()), (first, b"the same words, the same words".to_vec()));
    assert_eq!(a, b);
}

#[test]
fn fragmented_messages() {
    let mut tx = context(DEFAULT);
    let messages = [json(3), json(4), noise(3000, 1), vec![b'z'; 5000], json(5)];
    let compressed: Vec<Vec<u8>> = messages.iter().map(|m| compress(&mut tx, m)).collect();
    // Every way to cut each message in two, and three pieces at many points; the
    // context carries over from message to message however they were cut
    let mut rx = context(DEFAULT);
    for (m, z) in messages.iter().zip(&compressed) {
        for cut in 0..=z.len() {
            let mut alone = context(DEFAULT);
            for (prev, pz) in messages.iter().zip(&compressed).take_while(|(_, pz)| *pz != z) {
                assert_eq!(&inflate(&mut alone, pz, 1 << 20).unwrap(), prev);
            }
            assert_eq!(&inflate_frames(&mut alone, &[&z[..cut], &z[cut..]], 1 << 20).unwrap(), m, "cut {cut}");
        }
        let thirds = [&z[..z.len() / 3], &z[z.len() / 3..z.len() / 2], &z[z.len() / 2..]];
        assert_eq!(&inflate_frames(&mut rx, &thirds, 1 << 20).unwrap(), m);
    }
    // Empty fragments anywhere
    let z = compress(&mut context(DEFAULT), b"Hello, Hello, Hello");
    let frames: [&[u8]; 5] = [b"", &z[..3], b"", &z[3..], b""];
    assert_eq!(inflate_frames(&mut context(DEFAULT), &frames, 100).unwrap(), b"Hello, Hello, Hello");
}

#[test]
fn the_size_limit_while_inflating() {
    // A message of exactly the limit is fine; one byte more is not
    let m = noise(5000, 3);
    let z = compress(&mut context(DEFAULT), &m);
    assert_eq!(inflate(&mut context(DEFAULT), &z, 5000).unwrap(), m);
    assert_eq!(inflate(&mut context(DEFAULT), &z, 4999), Err(WsError::InflatedTooLarge));
    // The limit is the whole message's, over its frames
    let frames: [&[u8]; 2] = [&z[..2500], &z[2500..]];
    assert_eq!(inflate_frames(&mut context(DEFAULT), &frames, 5000).unwrap(), m);
    assert_eq!(inflate_frames(&mut context(DEFAULT), &frames, 4999), Err(WsError::InflatedTooLarge));
    // ... and starts again with the next message
    let mut rx = context(DEFAULT);
    let mut tx = context(DEFAULT);
    for _ in 0..5 {
        let z = compress(&mut tx, &m);
        assert_eq!(inflate(&mut rx, &z, 5000).unwrap(), m);
    }
    // A negative limit refuses everything, even an empty message; fractions of a Perl
    // number arrive floored
    assert_eq!(inflate(&mut context(DEFAULT), &[0x00], -1), Err(WsError::InflatedTooLarge));
    assert_eq!(inflate(&mut context(DEFAULT), &[0x00], i64::MIN), Err(WsError::InflatedTooLarge));
    assert_eq!(inflate(&mut context(DEFAULT), &z, i64::MAX).unwrap().len(), 5000);
}

#[test]
fn a_bomb_stops_at_the_limit() {
    // 64 MiB of zeros in about 64 KiB of DEFLATE: inflating stops right after the
    // limit, holding about the limit, in milliseconds
    let mut bomb = Vec::new();
    context(Params { level: 9, ..DEFAULT }).compress_message(&vec![0u8; 64 << 20], &mut bomb);
    assert!(bomb.len() < 100_000, "{} bytes", bomb.len());
    for max in [0i64, 1, 1000, 1 << 20, (1 << 26) - 1] {
        let mut rx = context(DEFAULT);
        let before = held();
        let mut out = Vec::new();
        let t = std::time::Instant::now();
        assert_eq!(rx.decompress(&bomb, max, true, &mut out), Err(WsError::InflatedTooLarge), "max {max}");
        let peak = out.capacity() as i64;
        assert!(peak <= max + (1 << 21), "max {max}: the output grew to {peak}");
        assert!(t.elapsed().as_secs() < 5);
        drop(out);
        // the broken context let go of its inflater; every later call says the same
        assert!(held() - before < 1024, "max {max}: {} bytes still held", held() - before);
        let mut out = Vec::new();
        assert_eq!(rx.decompress(&[0x00], max, true, &mut out), Err(WsError::InflatedTooLarge));
    }
    // the same bomb in 1000 frames: stopped in the frame that crosses the limit
    let mut rx = context(DEFAULT);
    let mut out = Vec::new();
    let mut total = 0;
    let mut stopped = None;
    for (i, f) in bomb.chunks(bomb.len() / 1000 + 1).enumerate() {
        match rx.decompress(f, 1 << 22, false, &mut out) {
            Ok(()) => total += out.len(),
            Err(e) => {
                stopped = Some((i, e));
                break;
            }
        }
    }
    assert!(matches!(stopped, Some((_, WsError::InflatedTooLarge))), "{stopped:?}");
    assert!(total <= 1 << 22);
}

#[test]
fn corrupt_streams() {
    for (what, payload) in [
        ("reserved block type 11", hex("07")),
        ("reserved block type, BFINAL", hex("ff")),
        ("stored block lengths that disagree", hex("00 05 00 00 00")),
        ("stored block, NLEN off by one", hex("01 00")),
        ("a bad code lengths set", hex("05 e0 ff ff ff ff")),
    ] {
        assert_eq!(inflate(&mut context(DEFAULT), &payload, 1 << 20), Err(WsError::BadDeflate), "{what}");
    }
    // A distance before the start of the stream (RFC 7692 7.2.3.2's second message alone)
    assert_eq!(inflate(&mut context(DEFAULT), &hex("f2 00 11 00 00"), 100), Err(WsError::BadDeflate));
    // Corrupt in a later frame; then the context stays broken
    let mut rx = context(DEFAULT);
    let mut out = Vec::new();
    rx.decompress(&hex("f2 48 05 00 00 00 ff ff"), 100, false, &mut out).unwrap();
    assert_eq!(out, b"He");
    assert_eq!(rx.decompress(&hex("07"), 100, true, &mut out), Err(WsError::BadDeflate));
    assert!(out.is_empty());
    assert_eq!(inflate(&mut rx, &hex("f2 48 cd c9 c9 07 00"), 100), Err(WsError::BadDeflate));
    // Bytes that are not a deflate stream of any kind never panic, and an error leaves
    // nothing behind
    for seed in 0..2000u64 {
        let junk = noise((seed % 300) as usize, seed);
        let mut c = context(DEFAULT);
        let mut out = Vec::new();
        if c.decompress(&junk, 1 << 16, seed % 2 == 0, &mut out).is_err() {
            assert!(out.is_empty());
        }
        assert!(out.len() <= 1 << 16);
    }
    // What comes first counts: output over the limit before the corrupt part is too large
    let mut z = compress(&mut context(DEFAULT), &noise(3000, 5));
    z.extend_from_slice(&hex("07"));
    assert_eq!(inflate(&mut context(DEFAULT), &z, 100), Err(WsError::InflatedTooLarge));
    assert_eq!(inflate(&mut context(DEFAULT), &z, 1 << 20), Err(WsError::BadDeflate));
}

#[test]
fn parameters_in_range_only() {
    assert!(Context::new(DEFAULT).is_some());
    for bad in [
        Params { server_max_window_bits: 8, ..DEFAULT },
        Params { server_max_window_bits: 16, ..DEFAULT },
        Params { level: -1, ..DEFAULT },
        Params { level: 10, ..DEFAULT },
        Params { mem_level: 0, ..DEFAULT },
        Params { mem_level: 10, ..DEFAULT },
    ] {
        assert!(Context::new(bad).is_none(), "{bad:?}");
    }
}

/// What a context holds once each direction was used (zlib allocates through Rust's
/// allocator, src/deflate.rs's zalloc, so this counts it); printed for doc/codec.md,
/// against zlib's documented formula.
#[test]
fn memory_per_connection() {
    let mut rows = Vec::new();
    // (once first: whatever the first use of the crate sets up for good)
    let mut warm = context(DEFAULT);
    let z = compress(&mut warm, &json(1));
    inflate(&mut warm, &z, 1 << 20).unwrap();
    drop((warm, z));
    for (window, mem_level) in [(15u8, 8), (15, 9), (15, 5), (12, 5), (12, 8), (10, 4), (9, 1)] {
        let p = Params { server_max_window_bits: window, mem_level, ..DEFAULT };
        let (mut out, mut back) = (Vec::with_capacity(1 << 16), Vec::with_capacity(1 << 16));
        let start = held();
        let mut c = context(p);
        let empty = held() - start;
        c.compress_message(&json(1), &mut out);
        let deflate = held() - start;
        c.decompress(&out, 1 << 20, true, &mut back).unwrap();
        let inflate = held() - start - deflate;
        let zlib_deflate = (1isize << (window + 2)) + (1 << (mem_level + 9));
        drop(c);
        assert_eq!(held() - start, 0, "freed with the context");
        rows.push((window, mem_level, empty, deflate, inflate, zlib_deflate));
    }
    // Without context takeover a direction holds nothing between messages: its state
    // goes, reset, to the thread's spares, and the next message (of any context) takes
    // it back. Many idle contexts hold nothing; the thread keeps one stream a direction.
    let p = Params { server_no_context_takeover: true, client_no_context_takeover: true, ..DEFAULT };
    let (mut out, mut back) = (Vec::with_capacity(1 << 16), Vec::with_capacity(1 << 16));
    let start = held();
    let mut c = context(p);
    c.compress_message(&json(1), &mut out);
    c.decompress(&out, 1 << 20, true, &mut back).unwrap();
    let spares = held() - start;
    let (deflater, inflater) = (rows[0].3, rows[0].4);
    // (and the list of spares, a few bytes)
    assert!((0..256).contains(&(spares - deflater - inflater)), "one spare a direction: {spares}");
    let mut idle = Vec::with_capacity(100);
    let list = held() - start - spares;
    for i in 0..100 {
        let mut c = context(p);
        for _ in 0..3 {
            c.compress_message(&json(i), &mut out);
            c.decompress(&out, 1 << 20, true, &mut back).unwrap();
            assert_eq!(held() - start - list, spares, "no state kept by a context");
        }
        idle.push(c);
    }
    assert_eq!(held() - start - list, spares, "100 idle contexts");
    drop(idle);
    // the spares are reset: a stream taken from them compresses as a new one
    let mut fresh = Vec::new();
    context(Params { server_no_context_takeover: false, ..p }).compress_message(&json(7), &mut fresh);
    c.compress_message(&json(7), &mut out);
    assert_eq!(out, fresh);
    // A message being received holds its inflater: a second one received at the same
    // time on another context makes its own
    let (mut out, mut out2) = (Vec::with_capacity(1 << 16), Vec::with_capacity(1 << 16));
    c.decompress(b"\xf2\x48", 1 << 20, false, &mut out).unwrap();
    let start = held();
    let mut c2 = context(p);
    c2.decompress(b"\xf2\x48", 1 << 20, false, &mut out2).unwrap();
    assert_eq!(held() - start, inflater, "the inflater lives while a message is being received");
    c.decompress(b"\xcd\xc9\xc9\x07\x00", 1 << 20, true, &mut out).unwrap();
    c2.decompress(b"\xcd\xc9\xc9\x07\x00", 1 << 20, true, &mut out2).unwrap();
    assert_eq!((&out[..], &out2[..]), (&b"ello"[..], &b"ello"[..]));
    assert_eq!(held() - start, inflater, "both inflaters are spares now");
    for &(window, mem_level, empty, deflate, inflate, zlib_deflate) in &rows {
        eprintln!(
            "window {window}, memLevel {mem_level}: context {empty} B, deflater {deflate} B \
             (zlib's formula {zlib_deflate} B), inflater {inflate} B (zlib: {} B + state)",
            1 << 15
        );
    }
    for (window, mem_level, empty, deflate, inflate, zlib_deflate) in rows {
        assert_eq!(empty, 0, "nothing before first use");
        // zlib's formula ("memory footprint" in zconf.h: two windows, prev and a
        // 2^(memLevel+7)-entry hash head, and a pending buffer of 4 * 2^(memLevel+6)
        // bytes), then its state and zalloc's 16-byte headers: under 8 KiB more
        assert!(deflate >= zlib_deflate && deflate < zlib_deflate + (8 << 10), "{window}/{mem_level}: {deflate} vs {zlib_deflate}");
        // the inflater: a 32 KiB window (INFLATE_WINDOW_BITS) and its state
        assert!((1 << 15..(1 << 15) + (8 << 10)).contains(&inflate), "{window}/{mem_level}: {inflate}");
    }
}


#[test]
fn one_reserve_for_an_incompressible_message() {
    // The output is reserved once, at zlib's bound for the stream's own settings: a
    // message that does not compress (deflate's stored blocks make it a little larger)
    // never makes the buffer grow again, at the server's defaults (window 12, memLevel
    // 5, where zlib's tight compressBound is too small) or at zlib's own.
    for p in [Params { server_max_window_bits: 12, mem_level: 5, ..DEFAULT }, DEFAULT] {
        let data = noise(1 << 20, 3);
        let mut out = Vec::new();
        context(p).compress_message(&data, &mut out);
        assert!(out.len() > data.len(), "random bytes grow: {} -> {}", data.len(), out.len());
        assert!(out.capacity() < data.len() + data.len() / 5, "one reservation: capacity {} for {} bytes", out.capacity(), out.len());
        assert_eq!(inflate(&mut context(p), &out, 2 << 20).unwrap(), data);
    }
}
