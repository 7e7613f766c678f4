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
