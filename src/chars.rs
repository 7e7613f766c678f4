//! Byte classes of RFC 9110/9112, as one 256-entry table.

/// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" /
///         "~" / DIGIT / ALPHA  (RFC 9110 5.6.2)
pub const TCHAR: u8 = 1;
/// A request-target byte as the codec accepts it: 0x21-0x7E / 0x80-0xFF.
pub const TARGET: u8 = 2;
/// A field-value (and chunk-ext) byte: HTAB / SP / 0x21-0x7E / 0x80-0xFF
/// (field-vchar / obs-text plus the whitespace RFC 9110 5.5 allows inside).
pub const VALUE: u8 = 4;
/// HEXDIG.
pub const HEX: u8 = 8;

const fn class_of(b: u8) -> u8 {
    let mut c = 0;
    if matches!(b, b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^'
        | b'_' | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
    {
        c |= TCHAR;
    }
    if matches!(b, 0x21..=0x7e | 0x80..=0xff) {
        c |= TARGET;
    }
    if matches!(b, b'\t' | 0x20..=0x7e | 0x80..=0xff) {
        c |= VALUE;
    }
    if b.is_ascii_hexdigit() {
        c |= HEX;
    }
    c
}

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = class_of(i as u8);
        i += 1;
    }
    t
};

#[inline(always)]
pub fn is(b: u8, class: u8) -> bool {
    CLASS[b as usize] & class != 0
}

#[inline(always)]
pub fn is_tchar(b: u8) -> bool {
    is(b, TCHAR)
}

/// 1*tchar.
#[inline]
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// SP / HTAB.
#[inline(always)]
pub fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The slice without leading and trailing SP/HTAB.
#[inline]
pub fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ows(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ows(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// The value of one HEXDIG.
#[inline]
pub fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// The index of the first `byte` in `hay`: a word at a time (the targets and values of a
/// request head are short: cheaper so than a SIMD search's set-up), `memchr` past 64
/// bytes.
#[inline(always)]
pub fn find(hay: &[u8], byte: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let near = hay.len().min(64);
    let mut i = 0;
    while i + 8 <= near {
        let mut word = [0u8; 8];
        word.copy_from_slice(&hay[i..i + 8]);
        let y = u64::from_le_bytes(word) ^ (ONES * u64::from(byte));
        // The lowest flagged byte is exact (a borrow only propagates upwards from a hit)
        let hits = y.wrapping_sub(ONES) & !y & HIGH;
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    match hay[i..near].iter().position(|&b| b == byte) {
        Some(p) => Some(i + p),
        None if hay.len() > near => memchr::memchr(byte, &hay[near..]).map(|p| near + p),
        None => None,
    }
}

/// The token `buf[start..start + len]` (ASCII: a field-name httparse has read)
/// lowercased into `out` (whose length is a multiple of 8), a word at a time; None when
/// it does not fit. Whole words are read from `buf` while it has them (the bytes after
/// the token are lowercased too, and ignored): a word loaded from the bytes just copied
/// would stall on store forwarding.
#[inline(always)]
pub fn lowercase_token<'a, const N: usize>(buf: &[u8], start: usize, len: usize, out: &'a mut [u8; N]) -> Option<&'a [u8]> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    if len > N {
        return None;
    }
    let mut i = 0;
    while i < len {
        let at = start + i;
        let x = match buf.get(at..at + 8) {
            Some(word) => u64::from_le_bytes(word.try_into().unwrap_or([0; 8])),
            None => buf[at..start + len].iter().rev().fold(0u64, |w, &b| w << 8 | u64::from(b)),
        };
        // High bit of each byte: >= 'A' and not > 'Z' (bytes >= 0x80 are masked out)
        let ge_a = (x & !HIGH).wrapping_add(ONES * u64::from(0x80 - b'A'));
        let gt_z = (x & !HIGH).wrapping_add(ONES * u64::from(0x7f - b'Z'));
        let upper = ge_a & !gt_z & !x & HIGH;
        out[i..i + 8].copy_from_slice(&(x | (upper >> 2)).to_le_bytes());
        i += 8;
    }
    Some(&out[..len])
}

/// ASCII case-insensitive substring test.
pub fn contains_ignore_ascii_case(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    hay.len() >= needle.len() && hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tchar_set() {
        let tchars: Vec<u8> = (0..=255u8).filter(|&b| is_tchar(b)).collect();
        let expected: Vec<u8> = b"!#$%&'*+-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ^_`abcdefghijklmnopqrstuvwxyz|~".to_vec();
        assert_eq!(tchars, expected);
    }

    #[test]
    fn target_and_value_sets() {
        for b in 0..=255u8 {
            assert_eq!(is(b, TARGET), (0x21..=0x7e).contains(&b) || b >= 0x80, "target {b:#x}");
            assert_eq!(is(b, VALUE), b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80, "value {b:#x}");
            assert_eq!(is(b, HEX), b.is_ascii_hexdigit());
        }
    }

    #[test]
    fn find_in_every_position() {
        for len in 0..150 {
            for at in 0..=len {
                let mut hay = vec![b'a'; len];
                if at < len {
                    hay[at] = b'?';
                }
                // a later hit and bytes next to the needle's value must not confuse it
                if at + 3 < len {
                    hay[at + 3] = b'?';
                }
                hay.iter_mut().take(at).step_by(5).for_each(|b| *b = b'>');
                assert_eq!(find(&hay, b'?'), (at < len).then_some(at), "len {len} at {at}");
            }
        }
    }

    #[test]
    fn lowercase_every_byte_in_every_position() {
        let mut out = [0u8; 32];
        for b in 0..=255u8 {
            for at in 0..32 {
                let mut t = vec![b'x'; at + 1];
                t[at] = b;
                let want: Vec<u8> = t.iter().map(u8::to_ascii_lowercase).collect();
                // the token alone, and followed by more bytes in its buffer
                for tail in [&b""[..], b": Value", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"] {
                    let mut buf = b"Xx".to_vec();
                    buf.extend_from_slice(&t);
                    buf.extend_from_slice(tail);
                    out.fill(0xAA);
                    assert_eq!(lowercase_token(&buf, 2, t.len(), &mut out), Some(&want[..]), "{b:#x} at {at}");
                }
            }
        }
        assert_eq!(lowercase_token(&[b'A'; 40], 0, 33, &mut out), None);
        assert_eq!(lowercase_token(b"", 0, 0, &mut out), Some(&b""[..]));
    }

    #[test]
    fn helpers() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b""), b"");
        assert!(is_token(b"X-Foo"));
        assert!(!is_token(b""));
        assert!(!is_token(b"X Foo"));
        assert_eq!(hex_value(b'f'), 15);
        assert_eq!(hex_value(b'A'), 10);
        assert!(contains_ignore_ascii_case(b"a, TEXT/Event-Stream;q=1", b"text/event-stream"));
        assert!(!contains_ignore_ascii_case(b"text/event", b"text/event-stream"));
    }
}
