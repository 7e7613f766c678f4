//! permessage-deflate (RFC 7692): the per-connection compression context, one DEFLATE
//! stream per direction, with the contract of doc/codec.md ("permessage-deflate") and
//! `PAGI::Server::Protocol::WebSocket::PP::Deflate` (Compress::Raw::Zlib) as the
//! reference implementation. The negotiation is Perl's (the facade's
//! `negotiate_deflate`); this module only gets its outcome, [`Params`].
//!
//! RFC 7692 7.2.1, compressing a message: "Compress all the octets of the payload of the
//! message using DEFLATE", flush to a byte boundary with an empty stored block
//! (`Z_SYNC_FLUSH`), and "remove 4 octets (that are 0x00 0x00 0xff 0xff) from the tail
//! end". 7.2.2, decompressing: "Append 4 octets of 0x00 0x00 0xff 0xff to the tail end
//! of the payload of the message" and inflate. With context takeover (the default) each
//! direction's LZ77 window carries over from message to message; `*_no_context_takeover`
//! resets it after each message.
//!
//! The DEFLATE engine is the `zlib-rs` crate (a Rust port of zlib-ng): raw streams
//! (`window_bits` negative), `mem_level` settable, safe API. Its compressed bytes differ
//! from zlib's (the pure-Perl backend's) for the same input and level; both inflate each
//! other's output, and inflating is the same function of the input in both, which is
//! what the differential test compares.

use crate::ws::WsError;
use zlib_rs::{compress_bound, Deflate, DeflateConfig, DeflateFlush, Inflate, InflateFlush, Status};

/// The empty stored block a sync flush ends with (RFC 7692 7.2.1), removed from each
/// compressed message and appended again before inflating it.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The inflater's window: always the largest. A window at least as large as the
/// sender's decodes its stream; this one never depends on what the client announced
/// (a zlib client asked for `client_max_window_bits=8` deflates with 9), and it makes
/// "invalid distance too far back" depend only on how many bytes the stream produced,
/// not on how the output was buffered, so both backends find the same errors. zlib-rs
/// allocates the 32 KiB window whatever the value.
pub const INFLATE_WINDOW_BITS: u8 = 15;

/// The parameters of a context: what the handshake agreed on, and the server's own
/// compression level and memory level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Reset the deflater after each message (RFC 7692 7.1.1.1).
    pub server_no_context_takeover: bool,
    /// Reset the inflater after each message (RFC 7692 7.1.1.2).
    pub client_no_context_takeover: bool,
    /// The deflater's LZ77 window, 9..=15 (RFC 7692 7.1.2.1; zlib cannot deflate with 8).
    pub server_max_window_bits: u8,
    /// zlib's compression level, 0..=9.
    pub level: i32,
    /// zlib's memLevel, 1..=9: the deflater's hash table and symbol buffer.
    pub mem_level: i32,
}

impl Params {
    /// Whether every value is in its range (what [`Context::new`] requires).
    pub fn valid(&self) -> bool {
        (9..=15).contains(&self.server_max_window_bits) && (0..=9).contains(&self.level) && (1..=9).contains(&self.mem_level)
    }
}

/// One connection's compression context: a deflater for what the server sends and an
/// inflater for what the client sends, each made on first use (a connection that never
/// sends, or never receives, a compressed message holds no zlib state for it) and, in a
/// direction without context takeover, dropped after each message (an idle connection
/// holds none).
pub struct Context {
    params: Params,
    deflate: Option<Deflate>,
    inflate: Option<Inflate>,
    /// Bytes inflated so far of the message being received.
    inflated: u64,
    /// The error that broke the inflater: returned again by every later call.
    failed: Option<WsError>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("params", &self.params)
            .field("deflating", &self.deflate.is_some())
            .field("inflating", &self.inflate.is_some())
            .field("inflated", &self.inflated)
            .field("failed", &self.failed)
            .finish()
    }
}

impl Context {
    /// A context for `params`, or None when a value is out of range.
    pub fn new(params: Params) -> Option<Context> {
        params.valid().then_some(Context { params, deflate: None, inflate: None, inflated: 0, failed: None })
    }

    /// The parameters.
    pub fn params(&self) -> Params {
        self.params
    }

    /// Compresses one whole message into `out` (cleared first): the payload of its frame
    /// (sent with RSV1), the trailing `00 00 ff ff` removed. The deflater keeps its
    /// window for the next message unless `server_no_context_takeover` (then it is
    /// dropped, and made again for the next message).
    pub fn compress_message(&mut self, data: &[u8], out: &mut Vec<u8>) {
        out.clear();
        let p = self.params;
        let deflate = self.deflate.get_or_insert_with(|| {
            Deflate::new_with_config(DeflateConfig {
                level: p.level,
                window_bits: -i32::from(p.server_max_window_bits),
                mem_level: p.mem_level,
                ..DeflateConfig::default()
            })
        });
        // Room for the whole result at once: a sync flush that fills the output exactly
        // would be followed by a second, empty one (zlib's "avail_out > 6" advice)
        out.resize(compress_bound(data.len()) + 16, 0);
        let mut len = 0;
        // The message, then the flush as a call of its own, as zlib's users do
        // (Compress::Raw::Zlib's flush): zlib skips a sync flush without input right
        // after another one, so an empty message flushed in one call would come out
        // empty instead of as its 0x00 octet
        let mut input = data;
        for flush in [DeflateFlush::NoFlush, DeflateFlush::SyncFlush] {
            loop {
                let (in0, out0) = (deflate.total_in(), deflate.total_out());
                let status = deflate.compress(input, &mut out[len..], flush);
                input = &input[(deflate.total_in() - in0) as usize..];
                len += (deflate.total_out() - out0) as usize;
                // (a stream error is a broken state, not peer input)
                status.unwrap_or_else(|e| panic!("deflate: {}", e.as_str()));
                if len < out.len() && input.is_empty() {
                    break;
                }
                out.resize(out.len() * 2, 0);
            }
        }
        out.truncate(len);
        if out.ends_with(&TAIL) {
            out.truncate(len - TAIL.len());
        }
        if p.server_no_context_takeover {
            // Nothing carries over: let the state go (made again, as a reset would
            // clear it, for the next message), so an idle connection holds none
            self.deflate = None;
        }
    }

    /// Inflates the next frame's payload of the message being received into `out`
    /// (cleared first). `fin`: this is the message's last frame (the `00 00 ff ff` tail is
    /// appended; the message ends: the inflater is dropped when
    /// `client_no_context_takeover`). `max`: the most bytes the whole message may inflate
    /// to, this frame's and the message's earlier frames' together; inflating stops as
    /// soon as they exceed it ([`WsError::InflatedTooLarge`]), so `out` never holds more
    /// than `max + 1` bytes. A payload that is not DEFLATE data is
    /// [`WsError::BadDeflate`]. A block with BFINAL set ends zlib's stream but not the
    /// message: what follows it starts a new stream, without the window (RFC 7692
    /// 7.2.3.4: such a message ends with a 0x00 octet that, with the appended tail, is an
    /// empty stored block). After an error the context stays broken: every later call
    /// returns the same error (the connection fails anyway).
    ///
    /// `max` is signed because it comes from a Perl number: a negative limit refuses
    /// every message, even an empty one, like `parse_frame`'s.
    pub fn decompress(&mut self, payload: &[u8], max: i64, fin: bool, out: &mut Vec<u8>) -> Result<(), WsError> {
        out.clear();
        if let Some(e) = self.failed {
            return Err(e);
        }
        let mut done = self.inflate_part(payload, max, out);
        if fin && done.is_ok() {
            done = self.inflate_part(&TAIL, max, out);
        }
        if let Err(e) = done {
            out.clear();
            self.failed = Some(e);
            self.inflate = None;
            return Err(e);
        }
        if fin {
            // Without context takeover the next message starts without the window: the
            // state goes, as the deflater's does
            if self.params.client_no_context_takeover {
                self.inflate = None;
            }
            self.inflated = 0;
        }
        Ok(())
    }

    /// Feeds `input` to the inflater, appending to `out`, within the message's limit.
    fn inflate_part(&mut self, mut input: &[u8], max: i64, out: &mut Vec<u8>) -> Result<(), WsError> {
        if i128::from(self.inflated) > i128::from(max) {
            return Err(WsError::InflatedTooLarge);
        }
        let inflate = self.inflate.get_or_insert_with(|| Inflate::new(false, INFLATE_WINDOW_BITS));
        let mut full = false;
        while !input.is_empty() || full {
            // At most one byte more than the limit allows: producing it is the error
            let allowed = i128::from(max) + 1 - i128::from(self.inflated);
            let want = input.len().saturating_mul(4).max(out.len()).clamp(256, 1 << 20);
            let room = usize::try_from(allowed).map_or(want, |a| a.min(want));
            let start = out.len();
            // Grow by doubling, but never past what the limit lets this call produce
            if out.capacity() < start + room {
                let ceiling = usize::try_from(allowed).map_or(usize::MAX, |a| start.saturating_add(a));
                let target = (start + room).max(out.capacity().saturating_mul(2)).min(ceiling);
                out.reserve_exact(target - start);
            }
            out.resize(start + room, 0);
            let (in0, out0) = (inflate.total_in(), inflate.total_out());
            let status = inflate.decompress(input, &mut out[start..], InflateFlush::SyncFlush);
            let used = (inflate.total_in() - in0) as usize;
            let made = (inflate.total_out() - out0) as usize;
            out.truncate(start + made);
            input = &input[used..];
            self.inflated += made as u64;
            // The bytes before an error count: too many of them is the first finding
            if i128::from(self.inflated) > i128::from(max) {
                return Err(WsError::InflatedTooLarge);
            }
            match status {
                Err(_) => return Err(WsError::BadDeflate),
                Ok(Status::StreamEnd) => {
                    // (zlib-rs's reset keeps raw 15-bit windows: INFLATE_WINDOW_BITS)
                    inflate.reset(false);
                    full = false;
                }
                Ok(_) if used == 0 && made == 0 => {
                    // No progress with input left cannot happen with room to write;
                    // refuse rather than loop
                    if !input.is_empty() {
                        return Err(WsError::BadDeflate);
                    }
                    full = false;
                }
                Ok(_) => full = made == room,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            level: 6,
            mem_level: 8,
        }
    }

    #[test]
    fn rfc7692_examples() {
        // 7.2.3.1: "Hello" compressed is f2 48 cd c9 c9 07 00
        let mut c = Context::new(params()).unwrap();
        let mut out = Vec::new();
        c.decompress(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100, true, &mut out).unwrap();
        assert_eq!(out, b"Hello");
        // 7.2.3.2: the second "Hello" with context takeover refers to the first
        c.decompress(&[0xf2, 0x00, 0x11, 0x00, 0x00], 100, true, &mut out).unwrap();
        assert_eq!(out, b"Hello");
        let mut d = Context::new(params()).unwrap();
        d.compress_message(b"Hello", &mut out);
        assert_eq!(out, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        d.compress_message(b"Hello", &mut out);
        assert_eq!(out, [0xf2, 0x00, 0x11, 0x00, 0x00]);
    }
}
