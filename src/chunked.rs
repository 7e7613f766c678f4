//! `decode_chunked`: an incremental decoder of the chunked transfer coding (RFC 9112 7.1).
//!
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! ```
//!
//! The whole decoder state is one integer (doc/codec.md), so the caller keeps nothing
//! else between calls. A bare `\n` is accepted wherever CRLF is expected.

use crate::chars::{is, is_ows, HEX, VALUE};
use crate::error::ErrorKind;
use memchr::memchr;

/// Expect a chunk-size line.
pub const STATE_SIZE: i64 = -1;
/// Expect the CRLF after chunk data.
pub const STATE_DATA_END: i64 = -2;
/// In the trailer section.
pub const STATE_TRAILER: i64 = -3;
/// The last chunk and the trailer section were consumed.
pub const STATE_DONE: i64 = -4;

/// A chunk-size line (without its terminator; while its `\n` has not arrived, without a
/// final `\r`) longer than this is an error, complete or not.
pub const MAX_CHUNK_LINE: usize = 4096;
/// At most this many HEXDIGs in a chunk-size (so the size fits in 60 bits).
pub const MAX_CHUNK_SIZE_DIGITS: usize = 15;

/// An error, with the state the decoder had reached when it found it (what the
/// reference implementation returns as the third value; nothing is consumed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError {
    pub kind: ErrorKind,
    pub state: i64,
}

/// The result of one call: the decoded data are the `data` ranges of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub consumed: usize,
    pub state: i64,
}

/// chunk-size [ BWS ] [ ";" chunk-ext ] on one line without its terminator; None if invalid.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|&&b| is(b, HEX)).count();
    if digits == 0 || digits > MAX_CHUNK_SIZE_DIGITS {
        return None;
    }
    let mut i = digits;
    while i < line.len() && is_ows(line[i]) {
        i += 1;
    }
    if i < line.len() && (line[i] != b';' || !line[i + 1..].iter().all(|&b| is(b, VALUE))) {
        return None;
    }
    Some(line[..digits].iter().fold(0u64, |n, &d| n << 4 | u64::from(crate::chars::hex_value(d))))
}

/// The line `buf[pos..nl]` without a `\r` right before the `\n`.
#[inline]
fn line_at(buf: &[u8], pos: usize, nl: usize) -> &[u8] {
    let line = &buf[pos..nl];
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Decodes as much of `buf` as possible from `state`. The decoded bytes are appended to
/// `data` as `(start, len)` ranges of `buf`. On error nothing counts as consumed
/// (doc/codec.md: `({error...}, 0, $state)`); the error carries the state reached.
///
/// `max_trailer_size` bounds the raw trailer bytes (terminators included) seen in this
/// call: each complete trailer line (the final empty line included) must fit in what is
/// left of it, checked before it is consumed, and so must an incomplete one.
pub fn decode_chunked(
    buf: &[u8],
    mut state: i64,
    mut max_trailer_size: i64,
    data: &mut Vec<(usize, usize)>,
) -> Result<Progress, ChunkError> {
    let fail = |kind, state| Err(ChunkError { kind, state });
    let len = buf.len();
    let mut pos = 0;
    while pos < len {
        if state > 0 {
            let take = (len - pos).min(usize::try_from(state).unwrap_or(usize::MAX));
            data.push((pos, take));
            pos += take;
            state -= take as i64;
            if state == 0 {
                state = STATE_DATA_END;
            }
        } else if state == STATE_SIZE {
            let Some(off) = memchr(b'\n', &buf[pos..]) else {
                // A final "\r" may start the terminator: it does not count
                let have = len - pos - usize::from(buf[len - 1] == b'\r');
                if have > MAX_CHUNK_LINE {
                    return fail(ErrorKind::BadChunk, state);
                }
                break;
            };
            let nl = pos + off;
            let line = line_at(buf, pos, nl);
            // At most MAX_CHUNK_LINE bytes, complete or not
            if line.len() > MAX_CHUNK_LINE {
                return fail(ErrorKind::BadChunk, state);
            }
            let Some(size) = chunk_size(line) else {
                return fail(ErrorKind::BadChunk, state);
            };
            state = if size == 0 { STATE_TRAILER } else { size as i64 };
            pos = nl + 1;
        } else if state == STATE_DATA_END {
            match buf[pos] {
                b'\n' => {
                    pos += 1;
                    state = STATE_SIZE;
                }
                b'\r' if pos + 1 >= len => break,
                b'\r' if buf[pos + 1] == b'\n' => {
                    pos += 2;
                    state = STATE_SIZE;
                }
                _ => return fail(ErrorKind::BadChunk, state),
            }
        } else if state == STATE_TRAILER {
            let Some(off) = memchr(b'\n', &buf[pos..]) else {
                if (len - pos) as i128 > i128::from(max_trailer_size) {
                    return fail(ErrorKind::HeadersTooLarge, state);
                }
                break;
            };
            let nl = pos + off;
            let line = line_at(buf, pos, nl);
            if memchr(b'\r', line).is_some() {
                return fail(ErrorKind::BadChunk, state);
            }
            // The budget counts raw bytes, terminators included, over this call's lines
            let used = nl + 1 - pos;
            if used as i128 > i128::from(max_trailer_size) {
                return fail(ErrorKind::HeadersTooLarge, state);
            }
            pos = nl + 1;
            if line.is_empty() {
                state = STATE_DONE;
                break;
            }
            max_trailer_size = max_trailer_size.saturating_sub(used as i64);
        } else {
            // STATE_DONE, or a state this decoder never returns: nothing to do
            break;
        }
    }
    Ok(Progress { consumed: pos, state })
}

/// [`decode_chunked`] with the data copied out (tests and tools).
pub fn decode_chunked_vec(buf: &[u8], state: i64, max_trailer_size: i64) -> Result<(Vec<u8>, Progress), ChunkError> {
    let mut ranges = Vec::new();
    let p = decode_chunked(buf, state, max_trailer_size, &mut ranges)?;
    let mut data = Vec::new();
    for (s, l) in ranges {
        data.extend_from_slice(&buf[s..s + l]);
    }
    Ok((data, p))
}
