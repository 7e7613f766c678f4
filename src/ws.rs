//! The WebSocket frame codec (RFC 6455 5): `parse_frame`, `build_frame`, `utf8_check`
//! and `mask_payload`, with the contract of `doc/codec.md` (WebSocket part) and
//! `PAGI::Server::Protocol::WebSocket::PP` as the reference implementation.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! | Masking-key (continued)       |          Payload Data         |
//! +-------------------------------- - - - - - - - - - - - - - - - +
//! ```
//!
//! Pure functions over bytes, like the HTTP/1.1 codec: the connection keeps the state
//! (fragments, the message so far). RSV1 is the "Per-Message Compressed" bit of
//! permessage-deflate (RFC 7692 6): [`parse_frame_with`] accepts it on the first frame of
//! a data message when the extension was negotiated, and [`crate::deflate`] holds the
//! compression context.

use crate::request::Status;

/// Opcodes (RFC 6455 5.2), `WS_*` as in the Perl facade.
pub const WS_CONTINUATION: u8 = 0;
pub const WS_TEXT: u8 = 1;
pub const WS_BINARY: u8 = 2;
pub const WS_CLOSE: u8 = 8;
pub const WS_PING: u8 = 9;
pub const WS_PONG: u8 = 10;

// WsError: the `ws` rows of lib/PAGI/Server/Protocol/errors.tsv (see crate::error)
include!(concat!(env!("OUT_DIR"), "/errors_ws.rs"));

/// A complete client frame: where its (masked) payload is in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// RSV1: the message is compressed (only ever set by [`parse_frame_with`] allowing it).
    pub rsv1: bool,
    pub opcode: u8,
    /// The masking key.
    pub key: [u8; 4],
    /// Where the payload starts in the input (2, 4 or 10 header bytes + 4 key bytes).
    pub payload_offset: usize,
    pub payload_len: usize,
    /// The whole frame's length: `payload_offset + payload_len`.
    pub consumed: usize,
}

impl Frame {
    /// The masked payload bytes of this frame in `buf` (the buffer it was parsed from).
    pub fn masked_payload<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.payload_offset..self.consumed]
    }

    /// The unmasked payload.
    pub fn payload(&self, buf: &[u8]) -> Vec<u8> {
        let mut out = vec![0; self.payload_len];
        mask_into(self.masked_payload(buf), &self.key, &mut out);
        out
    }
}

/// Parses one client-to-server frame at the start of `buf`; every check is made as
/// soon as the bytes it needs are there, in the order of doc/codec.md. Any RSV bit is
/// an error (`parse_frame_with(buf, max_payload, false)`).
///
/// `max_payload` is signed because it comes from a Perl number: a negative limit
/// refuses every frame, like the Perl `>`.
pub fn parse_frame(buf: &[u8], max_payload: i64) -> Result<Status<Frame>, WsError> {
    parse_frame_with(buf, max_payload, false)
}

/// [`parse_frame`], with RSV1 allowed when `rsv1_ok` (permessage-deflate negotiated):
/// on the first frame of a data message (text, binary) it marks the message compressed
/// ([`Frame::rsv1`]); on a control or continuation frame it is [`WsError::BadRsv1`]
/// (RFC 7692 6: "An endpoint MUST NOT set the "Per-Message Compressed" bit of control
/// frames and non-first fragments of a data message"). RSV2 and RSV3, and RSV1 without
/// `rsv1_ok`, stay [`WsError::RsvBits`] (RFC 6455 5.2).
pub fn parse_frame_with(buf: &[u8], max_payload: i64, rsv1_ok: bool) -> Result<Status<Frame>, WsError> {
    let [b0, b1, ..] = *buf else { return Ok(Status::Partial) };
    let fin = b0 & 0x80 != 0;
    let rsv1 = b0 & 0x40 != 0;
    let opcode = b0 & 0x0f;
    let len7 = b1 & 0x7f;
    // 1. The first two bytes
    if b0 & 0x30 != 0 || rsv1 && !rsv1_ok {
        return Err(WsError::RsvBits);
    }
    if !matches!(opcode, WS_CONTINUATION | WS_TEXT | WS_BINARY | WS_CLOSE | WS_PING | WS_PONG) {
        return Err(WsError::BadOpcode);
    }
    if rsv1 && !matches!(opcode, WS_TEXT | WS_BINARY) {
        return Err(WsError::BadRsv1);
    }
    if opcode >= WS_CLOSE && (!fin || len7 > 125) {
        return Err(WsError::BadControl);
    }
    if b1 & 0x80 == 0 {
        return Err(WsError::Unmasked);
    }
    // 2. The length: 7 bits, or 16 or 64 more (non-minimal encodings are accepted)
    let (len, pos): (u64, usize) = match len7 {
        126 => {
            let Some(ext) = buf.get(2..4) else { return Ok(Status::Partial) };
            (u64::from(u16::from_be_bytes([ext[0], ext[1]])), 4)
        }
        127 => {
            let Some(ext) = buf.get(2..10) else { return Ok(Status::Partial) };
            let mut word = [0u8; 8];
            word.copy_from_slice(ext);
            let len = u64::from_be_bytes(word);
            if len >> 63 != 0 {
                return Err(WsError::BadLength);
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    // len < 2^63 here, so both sides fit in an i128 exactly
    if i128::from(len) > i128::from(max_payload) {
        return Err(WsError::TooLarge);
    }
    // 3. The masking key and the whole payload
    let payload_offset = pos + 4;
    if buf.len() < payload_offset || ((buf.len() - payload_offset) as u64) < len {
        return Ok(Status::Partial);
    }
    let payload_len = len as usize; // <= buf.len()
    let mut key = [0u8; 4];
    key.copy_from_slice(&buf[pos..payload_offset]);
    Ok(Status::Complete(Frame { fin, rsv1, opcode, key, payload_offset, payload_len, consumed: payload_offset + payload_len }))
}

/// The header of a server-to-client frame (unmasked): byte 0 as given (FIN, RSV,
/// opcode), then the minimal length encoding. Writes at most 10 bytes into `out` and
/// returns how many.
pub fn frame_header(byte0: u8, len: u64, out: &mut [u8; 10]) -> usize {
    out[0] = byte0;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len < 65536 {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&len.to_be_bytes());
        10
    }
}

/// `build_frame`: a whole server-to-client frame.
pub fn build_frame(opcode: u8, payload: &[u8], fin: bool) -> Vec<u8> {
    build_frame_with(opcode, payload, fin, false)
}

/// [`build_frame`], with RSV1 set when `rsv1` (the first frame of a compressed message).
pub fn build_frame_with(opcode: u8, payload: &[u8], fin: bool, rsv1: bool) -> Vec<u8> {
    let mut header = [0u8; 10];
    let byte0 = if fin { 0x80 } else { 0 } | if rsv1 { 0x40 } else { 0 } | opcode;
    let n = frame_header(byte0, payload.len() as u64, &mut header);
    let mut out = Vec::with_capacity(n + payload.len());
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(payload);
    out
}

/// `dst = src XOR key` repeated (RFC 6455 5.3), for a 4-byte key; `src` and `dst` have
/// the same length. Eight bytes at a time (the compiler widens the loop further).
pub fn mask_into(src: &[u8], key: &[u8; 4], dst: &mut [u8]) {
    assert_eq!(src.len(), dst.len(), "mask_into: lengths differ");
    let k = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut s = src.chunks_exact(8);
    let mut d = dst.chunks_exact_mut(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let mut w = [0u8; 8];
        w.copy_from_slice(s);
        d.copy_from_slice(&(u64::from_ne_bytes(w) ^ k).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so at key byte 0
    for (i, (d, s)) in d.into_remainder().iter_mut().zip(s.remainder()).enumerate() {
        *d = s ^ key[i & 3];
    }
}

/// `mask_payload` for any key, exactly as the reference computes it: `$payload ^
/// substr($key x (($len >> 2) + 1), 0, $len)`. With a 4-byte key that is the WebSocket
/// mask; with another length only the first `key.len() * ((len >> 2) + 1)` bytes are
/// masked (Perl's `^` leaves the rest of the longer string as it is).
pub fn mask_payload_into(src: &[u8], key: &[u8], dst: &mut [u8]) {
    assert_eq!(src.len(), dst.len(), "mask_payload_into: lengths differ");
    if let Ok(k) = <&[u8; 4]>::try_from(key) {
        return mask_into(src, k, dst);
    }
    let masked = if key.is_empty() { 0 } else { key.len().saturating_mul((src.len() >> 2) + 1).min(src.len()) };
    for (i, (d, s)) in dst.iter_mut().zip(src).enumerate() {
        *d = if i < masked { s ^ key[i % key.len()] } else { *s };
    }
}

/// `utf8_check` results.
pub const UTF8_INVALID: i32 = 0;
pub const UTF8_VALID: i32 = 1;
/// Valid, but ending inside a character that more bytes can still complete.
pub const UTF8_PARTIAL: i32 = 2;

/// Strict UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF),
/// as `std::str::from_utf8` checks it: [`UTF8_VALID`], [`UTF8_PARTIAL`] when the bytes
/// end inside a character that can still be completed validly (`error_len()` is None
/// only then), else [`UTF8_INVALID`].
pub fn utf8_check(bytes: &[u8]) -> i32 {
    match std::str::from_utf8(bytes) {
        Ok(_) => UTF8_VALID,
        Err(e) if e.error_len().is_none() => UTF8_PARTIAL,
        Err(_) => UTF8_INVALID,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_every_length_and_alignment() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let src: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        for start in 0..8 {
            for len in 0..(src.len() - start) {
                let s = &src[start..start + len];
                let mut d = vec![0; len];
                mask_into(s, &key, &mut d);
                let want: Vec<u8> = s.iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
                assert_eq!(d, want, "start {start} len {len}");
            }
        }
    }
}
