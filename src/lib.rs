//! The HTTP/1.1, WebSocket and HTTP/2 codec core of PAGI-Server.
//!
//! Pure functions over bytes, the same contract as the Perl reference implementation
//! (`PAGI::Server::Protocol::HTTP1::PP`, described in `doc/codec.md`):
//!
//! - [`request::Parser::parse`] / [`request::parse_request`]: one request head;
//! - [`chunked::decode_chunked`]: the chunked transfer coding, incrementally;
//! - [`response::serialize_response`], [`response::check_headers`],
//!   [`response::serialize_chunk`], [`response::serialize_trailers`]: what the server
//!   writes;
//! - [`conninfo::connection_info`]: both ends of a socket (the only OS call);
//! - [`status::reason_phrase`]: THE reason-phrase table;
//! - [`error::ErrorKind`]: the closed set of peer-input errors;
//! - [`ws`]: the WebSocket frame codec (`parse_frame`, `build_frame`, `utf8_check`,
//!   `mask_payload`) and its error kinds, [`ws::WsError`];
//! - [`deflate`]: permessage-deflate's per-connection compression context (RFC 7692);
//! - [`h2`]: the HTTP/2 server session (nghttp2 driven sans-IO: bytes in, events and
//!   bytes out) and its error kinds, [`h2::H2Error`], [`h2::H2Refusal`].
//!
//! [`ffi`] is the flat C ABI the XS glue in `perl/` calls. Nothing here knows Perl.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_debug_implementations)]

pub mod chars;
pub mod chunked;
pub mod conninfo;
pub mod date;
pub mod deflate;
pub mod error;
pub mod h2;
pub mod known;
pub mod ffi;
pub mod request;
pub mod response;
pub mod status;
pub mod ws;

pub use error::ErrorKind;
