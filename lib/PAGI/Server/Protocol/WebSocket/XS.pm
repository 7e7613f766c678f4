package PAGI::Server::Protocol::WebSocket::XS;
use v5.32;
use warnings;

our $VERSION = '0.001';

# The Rust WebSocket frame codec, through XS. Same functions, same results as ::PP.
our @FUNCTIONS = qw(parse_frame build_frame utf8_check mask_payload new_deflate);

# Its XSUBs are a second package of the HTTP/1.1 codec's object: loading that one
# defines them (and checks the object's version and layout)
require PAGI::Server::Protocol::HTTP1::XS;

# A permessage-deflate context (src/deflate.rs) for the agreed parameters
sub new_deflate {
  require PAGI::Server::Protocol::WebSocket;
  return _new_deflate(PAGI::Server::Protocol::WebSocket::deflate_params($_[0]));
}

# A new thread gets no copy of a context (the copy would share, then free, the Rust one)
sub PAGI::Server::Protocol::WebSocket::XS::Deflate::CLONE_SKIP { 1 }

1;

=head1 NAME

PAGI::Server::Protocol::WebSocket::XS - the WebSocket frame codec in Rust, through XS

=head1 SYNOPSIS

  # Normally through the facade (the backend is chosen once for both codecs):
  use PAGI::Server::Protocol::WebSocket;
  print $PAGI::Server::Protocol::WebSocket::IMPLEMENTATION;    # "XS"

  # Directly:
  require PAGI::Server::Protocol::WebSocket::XS;
  my ($frame, $consumed) = PAGI::Server::Protocol::WebSocket::XS::parse_frame($buf, 1 << 20);

=head1 DESCRIPTION

The native implementation of the functions described in the WebSocket part of
F<doc/codec.md>: C<parse_frame>, C<build_frame>, C<utf8_check>, C<mask_payload> and
C<new_deflate>, whose permessage-deflate contexts
(C<PAGI::Server::Protocol::WebSocket::XS::Deflate>: C<compress_message>,
C<decompress_message>) run F<src/deflate.rs> over zlib (the copy the C<libz-sys> crate
bundles, compiled in). They inflate exactly as the PP contexts (Compress::Raw::Zlib,
zlib too) do; their compressed bytes are in practice the same, though not promised
(the PP backend runs whichever zlib Compress::Raw::Zlib was built with), which
F<t/32-ws-differential.t> allows for.
Their results are identical to those of L<PAGI::Server::Protocol::WebSocket::PP>
(F<t/32-ws-differential.t> checks it on valid frames of every kind, every error, every
split point, a seeded random mutation run and a UTF-8 corpus); only the speed differs:
unmasking is a word-at-a-time XOR and C<utf8_check> is Rust's C<std::str::from_utf8>.
Nothing is exported.

The XSUBs live in the same shared object as L<PAGI::Server::Protocol::HTTP1::XS>
(F<perl/XS.xs>, a second C<PACKAGE> section); this module loads that object.

=head1 FUNCTIONS

See F<doc/codec.md>. Differences that only concern API misuse, never peer input: a
buffer given to C<parse_frame> or a string given to C<utf8_check> with a character
above 0xFF croaks (the PP code answers as if the characters were bytes of some kind);
a payload or key with such a character croaks in both backends, with different
messages.

=head1 DEBUGGING

C<PAGI_SERVER_BACKEND=pp> forces the pure-Perl codecs; C<=xs> demands these and dies
with the load error when they are not built.

=head1 SEE ALSO

L<PAGI::Server::Protocol::WebSocket>, L<PAGI::Server::Protocol::WebSocket::PP>,
L<PAGI::Server::Protocol::HTTP1::XS>, F<doc/codec.md>.

=cut
