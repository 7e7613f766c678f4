package PAGI::Server::Protocol::HTTP2::XS;
use v5.32;
use warnings;

our $VERSION = '0.001';

# The HTTP/2 session over nghttp2 (Rust, src/h2.rs), through XS. Same methods, same
# results as ::PP where doc/codec.md says so.
our @FUNCTIONS = qw(new_session);

# Its XSUBs are more packages of the HTTP/1.1 codec's object: loading that one defines
# them (and checks the object's version and layout)
require PAGI::Server::Protocol::HTTP1::XS;

sub new_session {
  require PAGI::Server::Protocol::HTTP2;
  return _new(PAGI::Server::Protocol::HTTP2::session_settings($_[0]));
}

1;

=head1 NAME

PAGI::Server::Protocol::HTTP2::XS - the HTTP/2 session over nghttp2, through XS

=head1 DESCRIPTION

C<new_session> and the methods of C<PAGI::Server::Protocol::HTTP2::XS::Session>
(C<feed>, C<events>, C<error>, C<output>, C<respond>, C<send_data>, C<send_trailers>,
C<buffered>, C<consumed>, C<reset>, C<goaway>, C<want_write>, C<is_closed>,
C<open_streams>, C<last_stream_id>), as F<doc/codec.md> describes them. The protocol is
nghttp2's (1.68.1, built into the XS object by the C<libnghttp2-sys> crate), driven
sans-IO from Rust (F<src/h2.rs>): nghttp2's callbacks only record events in the Rust
session, and Perl takes them in one call per read. A Rust panic becomes a croak naming
the method; the session is unusable afterwards.

=head1 SEE ALSO

L<PAGI::Server::Protocol::HTTP2>, L<PAGI::Server::Protocol::HTTP2::PP>, F<doc/codec.md>.

=cut
