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
//! The DEFLATE engine is zlib itself, the same as the pure-Perl backend's
//! (Compress::Raw::Zlib), through the `libz-sys` crate built from the zlib sources it
//! bundles (its `static` feature: compiled with `cc`, linked into our static library, no
//! system zlib needed). zlib honours memLevel (its hash table is 2^(memLevel+7)
//! entries, where zlib-rs and zlib-ng always allocate 64K), so a deflater at the
//! defaults (window 12 bits, memLevel 5) holds about 38 KiB instead of zlib-rs's 161
//! KiB; for the same input and settings both backends usually write the same bytes
//! (doc/codec.md, "What the backends share", says when they do not). Every call
//! into zlib is in this file, in [`Stream`]; zlib allocates through [`zalloc`] and
//! [`zfree`], that is through Rust's global allocator.

use crate::ws::WsError;
use libz_sys::{
    deflate, deflateBound, deflateEnd, deflateInit2_, deflateReset, inflate, inflateEnd, inflateInit2_, inflateReset, uInt, voidpf, z_stream,
    uLong, zlibVersion, Z_BUF_ERROR, Z_DEFAULT_STRATEGY, Z_DEFLATED, Z_MEM_ERROR, Z_NO_FLUSH, Z_OK, Z_STREAM_END, Z_SYNC_FLUSH,
};
use std::alloc::{alloc, dealloc, Layout};
use std::cell::RefCell;
use std::ffi::c_int;

/// The empty stored block a sync flush ends with (RFC 7692 7.2.1), removed from each
/// compressed message and appended again before inflating it.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The inflater's window: always the largest. A window at least as large as the
/// sender's decodes its stream; this one never depends on what the client announced
/// (a zlib client asked for `client_max_window_bits=8` deflates with 9), and it makes
/// "invalid distance too far back" depend only on how many bytes the stream produced,
/// not on how the output was buffered, so both backends find the same errors. zlib
/// allocates the 32 KiB window at the first output.
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

/// The bytes before each block zlib allocates: its size, for [`zfree`] (zlib's free
/// callback gets no size, Rust's deallocation needs it). Sixteen, malloc's alignment
/// on 64-bit systems, keeps the block as aligned as zlib's own malloc would.
const ZALLOC_HEADER: usize = 16;

/// zlib's allocator: Rust's global one (one allocator for all our memory, and what
/// `tests/ws_deflate.rs` counts). NULL on overflow or failure, which zlib reports as
/// `Z_MEM_ERROR`. It never panics: a panic cannot unwind out of an `extern "C"` function
/// (it would abort the process), and nothing here can panic.
extern "C" fn zalloc(_opaque: voidpf, items: uInt, size: uInt) -> voidpf {
    let Some(total) = (items as usize).checked_mul(size as usize).and_then(|n| n.checked_add(ZALLOC_HEADER)) else {
        return std::ptr::null_mut();
    };
    let Ok(layout) = Layout::from_size_align(total, ZALLOC_HEADER) else { return std::ptr::null_mut() };
    // SAFETY: the layout's size is at least ZALLOC_HEADER, not zero.
    let block = unsafe { alloc(layout) };
    if block.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: the block has `total` >= ZALLOC_HEADER writable bytes and is aligned to
    // 16, so its start holds a usize and ZALLOC_HEADER bytes in is still inside it.
    unsafe {
        block.cast::<usize>().write(total);
        block.add(ZALLOC_HEADER).cast()
    }
}

/// zlib's deallocator, for blocks from [`zalloc`].
///
/// # Safety
/// `address` is NULL or a pointer [`zalloc`] returned, not freed yet (zlib's contract).
unsafe extern "C" fn zfree(_opaque: voidpf, address: voidpf) {
    if address.is_null() {
        return;
    }
    // SAFETY: `address` is ZALLOC_HEADER bytes into a block that zalloc allocated with
    // the size written at its start and ZALLOC_HEADER's alignment, which made a valid
    // Layout then.
    unsafe {
        let block = address.cast::<u8>().sub(ZALLOC_HEADER);
        let total = block.cast::<usize>().read();
        dealloc(block, Layout::from_size_align_unchecked(total, ZALLOC_HEADER));
    }
}

/// Which way a [`Stream`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Deflate,
    Inflate,
}

/// What makes two streams interchangeable once reset: the way, and for a deflater the
/// level, window bits and memLevel (an inflater's are always the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kind {
    way: Way,
    level: i32,
    window_bits: u8,
    mem_level: i32,
}

impl Kind {
    fn of(way: Way, p: Params) -> Kind {
        match way {
            Way::Deflate => Kind { way, level: p.level, window_bits: p.server_max_window_bits, mem_level: p.mem_level },
            Way::Inflate => Kind { way, level: 0, window_bits: INFLATE_WINDOW_BITS, mem_level: 0 },
        }
    }
}

/// One zlib stream, initialised, freed (`deflateEnd`/`inflateEnd`) when dropped. Boxed:
/// zlib's state points back to its `z_stream`, which must not move.
struct Stream {
    z: Box<z_stream>,
    kind: Kind,
}

/// How many released streams a thread keeps ([`SPARE`]): one a direction is what a
/// thread that handles one message at a time reuses; a few more cover a mix of settings
/// (a client that asked for a smaller window) and messages received in fragments on
/// several connections at once.
const SPARE_MAX: usize = 4;

thread_local! {
    /// Streams let go after a message without context takeover, reset, for the next
    /// such message of any context on this thread: so an idle connection holds no zlib
    /// state, and zlib's blocks are not handed back to malloc after every message.
    /// (Freed, the pages zlib had written went on to back other connections' buffers,
    /// the mostly untouched 64 KiB ones a read makes, and stayed resident there: 15 to
    /// 26 KiB a connection with nothing allocated, `benches/ws_memory.pl`.)
    static SPARE: RefCell<Vec<Stream>> = const { RefCell::new(Vec::new()) };
}

// SAFETY: the z_stream and the zlib state behind it belong to this value alone (no
// other pointer to them is kept outside zlib), and zlib has no thread-affine state: its
// allocator is Rust's global one. Moving the stream to another thread is safe.
unsafe impl Send for Stream {}

/// What one call of [`Stream::run`] did.
struct Ran {
    /// zlib's return code.
    rc: c_int,
    /// Input bytes consumed.
    used: usize,
    /// Output bytes written.
    made: usize,
    /// Whether the output room was filled (zlib may have more to write).
    full: bool,
}

impl Stream {
    /// A new stream: a raw deflater for `p` or a raw inflater with
    /// [`INFLATE_WINDOW_BITS`]. The parameters were checked ([`Params::valid`]), so zlib
    /// refuses only when out of memory: a panic, as any failed allocation in Rust.
    fn new(kind: Kind) -> Stream {
        let mut z = Box::new(z_stream {
            next_in: std::ptr::null_mut(),
            avail_in: 0,
            total_in: 0,
            next_out: std::ptr::null_mut(),
            avail_out: 0,
            total_out: 0,
            msg: std::ptr::null_mut(),
            state: std::ptr::null_mut(),
            zalloc,
            zfree,
            opaque: std::ptr::null_mut(),
            data_type: 0,
            adler: 0,
            reserved: 0,
        });
        let size = std::mem::size_of::<z_stream>() as c_int;
        // SAFETY: `z` is a z_stream with the allocator callbacks set and no state yet,
        // at an address that stays put (boxed); zlibVersion() is zlib's static version
        // string, and `size` the size of the struct we pass, which zlib checks against
        // its own.
        let rc = unsafe {
            match kind.way {
                Way::Deflate => deflateInit2_(
                    &mut *z,
                    kind.level,
                    Z_DEFLATED,
                    -c_int::from(kind.window_bits),
                    kind.mem_level,
                    Z_DEFAULT_STRATEGY,
                    zlibVersion(),
                    size,
                ),
                Way::Inflate => inflateInit2_(&mut *z, -c_int::from(kind.window_bits), zlibVersion(), size),
            }
        };
        // (after a failed init zlib has freed what it allocated: nothing to end)
        assert!(rc == Z_OK, "{:?}Init2: zlib error {rc}", kind.way);
        Stream { z, kind }
    }

    /// A stream for `way` and `p`: a spare one of this thread's ([`SPARE`]) when one
    /// fits, else a new one.
    fn take(way: Way, p: Params) -> Stream {
        let kind = Kind::of(way, p);
        let spare = SPARE.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            spare.iter().rposition(|s| s.kind == kind).map(|i| spare.remove(i))
        });
        spare.ok().flatten().unwrap_or_else(|| Stream::new(kind))
    }

    /// Resets the stream and keeps it as a spare for this thread (the oldest spare is
    /// freed when there are [`SPARE_MAX`]).
    fn release(mut self) {
        self.reset();
        // (when the thread is ending, the stream is simply freed)
        let _ = SPARE.try_with(move |spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() >= SPARE_MAX {
                spare.remove(0);
            }
            spare.push(self);
        });
    }

    /// One call of `deflate` or `inflate` with `flush`, on `input`, appending at most
    /// `room` bytes of output to `out` (within its spare capacity).
    fn run(&mut self, input: &[u8], out: &mut Vec<u8>, room: usize, flush: c_int) -> Ran {
        // zlib counts in 32 bits: larger buffers go in several calls
        let avail_in = input.len().min(uInt::MAX as usize);
        let avail_out = room.min(out.capacity() - out.len()).min(uInt::MAX as usize);
        let z = &mut *self.z;
        // (zlib never writes through next_in: the cast to *mut is its API's)
        z.next_in = input.as_ptr().cast_mut();
        z.avail_in = avail_in as uInt;
        z.next_out = out.spare_capacity_mut().as_mut_ptr().cast();
        z.avail_out = avail_out as uInt;
        // SAFETY: an initialised stream (Stream::new), whose next_in points to avail_in
        // readable bytes and next_out to avail_out writable bytes (out's spare capacity),
        // both alive for the call; zlib's callbacks (zalloc/zfree) never unwind.
        let rc = unsafe {
            match self.kind.way {
                Way::Deflate => deflate(z, flush),
                Way::Inflate => inflate(z, flush),
            }
        };
        let used = avail_in - z.avail_in as usize;
        let made = avail_out - z.avail_out as usize;
        // (no pointer into our buffers stays behind in zlib's struct)
        z.next_in = std::ptr::null_mut();
        z.next_out = std::ptr::null_mut();
        // SAFETY: zlib wrote `made` bytes at the start of the spare capacity (it
        // advances next_out by what it writes), within the capacity.
        unsafe { out.set_len(out.len() + made) };
        Ran { rc, used, made, full: z.avail_out == 0 }
    }

    /// The most a deflater makes of `len` bytes with its own settings (zlib's
    /// `deflateBound`: its tight bound holds only for a 15-bit window and memLevel 8),
    /// and the few bytes of a sync flush's empty stored block.
    fn bound(&mut self, len: usize) -> usize {
        let len = len.min(uLong::MAX as usize) as uLong;
        // SAFETY: an initialised deflate stream (Stream::new); deflateBound only reads
        // its settings and state.
        let bound = unsafe { deflateBound(&mut *self.z, len) };
        (bound as usize).saturating_add(16)
    }

    /// `deflateReset`/`inflateReset`: the stream starts again as if new, without the
    /// window's contents (its memory is kept).
    fn reset(&mut self) {
        // SAFETY: an initialised stream.
        let rc = unsafe {
            match self.kind.way {
                Way::Deflate => deflateReset(&mut *self.z),
                Way::Inflate => inflateReset(&mut *self.z),
            }
        };
        assert!(rc == Z_OK, "{:?}Reset: zlib error {rc}", self.kind.way);
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: an initialised stream, ended once; zfree never unwinds. (Z_DATA_ERROR,
        // a stream ended in the middle of a message, still frees everything.)
        unsafe {
            match self.kind.way {
                Way::Deflate => deflateEnd(&mut *self.z),
                Way::Inflate => inflateEnd(&mut *self.z),
            };
        }
    }
}

/// One connection's compression context: a deflater for what the server sends and an
/// inflater for what the client sends, each made on first use (a connection that never
/// sends, or never receives, a compressed message holds no zlib state for it) and, in a
/// direction without context takeover, let go after each message to the thread's
/// spares ([`SPARE`]; an idle connection holds none).
pub struct Context {
    params: Params,
    deflate: Option<Stream>,
    inflate: Option<Stream>,
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

    /// Compresses one whole message into `out` (cleared first): the payload of its frame
    /// (sent with RSV1), the trailing `00 00 ff ff` removed. The deflater keeps its
    /// window for the next message unless `server_no_context_takeover` (then it is
    /// reset and let go to the thread's spares, where the next message takes one).
    pub fn compress_message(&mut self, data: &[u8], out: &mut Vec<u8>) {
        out.clear();
        let p = self.params;
        let deflater = self.deflate.get_or_insert_with(|| Stream::take(Way::Deflate, p));
        // Room for the whole result at once: a sync flush that fills the output exactly
        // would be followed by a second, empty one (zlib's "avail_out > 6" advice)
        out.reserve(deflater.bound(data.len()));
        // The message, then the flush as a call of its own, as zlib's users do
        // (Compress::Raw::Zlib's flush): zlib skips a sync flush without input right
        // after another one, so an empty message flushed in one call would come out
        // empty instead of as its 0x00 octet
        let mut input = data;
        for flush in [Z_NO_FLUSH, Z_SYNC_FLUSH] {
            loop {
                let ran = deflater.run(input, out, usize::MAX, flush);
                input = &input[ran.used..];
                // Z_BUF_ERROR: nothing to do (an empty message's first call); anything
                // else is a broken state, not peer input
                assert!(ran.rc == Z_OK || ran.rc == Z_BUF_ERROR, "deflate: zlib error {}", ran.rc);
                if input.is_empty() && !ran.full {
                    break;
                }
                assert!(ran.used > 0 || ran.made > 0, "deflate: no progress");
                if ran.full {
                    out.reserve(out.capacity());
                }
            }
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if p.server_no_context_takeover {
            // Nothing carries over: the state goes, reset, to the thread's spares (the
            // next message takes one), so an idle connection holds none
            if let Some(deflater) = self.deflate.take() {
                deflater.release();
            }
        }
    }

    /// Inflates the next frame's payload of the message being received into `out`
    /// (cleared first). `fin`: this is the message's last frame (the `00 00 ff ff` tail is
    /// appended; the message ends: the inflater goes to the spares when
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
            // state goes to the spares, as the deflater's does
            if self.params.client_no_context_takeover {
                if let Some(inflater) = self.inflate.take() {
                    inflater.release();
                }
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
        let p = self.params;
        let inflater = self.inflate.get_or_insert_with(|| Stream::take(Way::Inflate, p));
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
            let ran = inflater.run(input, out, room, Z_SYNC_FLUSH);
            input = &input[ran.used..];
            self.inflated += ran.made as u64;
            // The bytes before an error count: too many of them is the first finding
            if i128::from(self.inflated) > i128::from(max) {
                return Err(WsError::InflatedTooLarge);
            }
            match ran.rc {
                Z_STREAM_END => {
                    inflater.reset();
                    full = false;
                }
                Z_OK | Z_BUF_ERROR if ran.used == 0 && ran.made == 0 => {
                    // No progress with input left cannot happen with room to write;
                    // refuse rather than loop
                    if !input.is_empty() {
                        return Err(WsError::BadDeflate);
                    }
                    full = false;
                }
                Z_OK | Z_BUF_ERROR => full = ran.full,
                // (zlib's window, allocated at the first output: not peer input)
                Z_MEM_ERROR => panic!("inflate: out of memory"),
                // Z_DATA_ERROR, and what a raw stream cannot give (Z_NEED_DICT)
                _ => return Err(WsError::BadDeflate),
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
