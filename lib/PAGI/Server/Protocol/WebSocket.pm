package PAGI::Server::Protocol::WebSocket;
use strict;
use warnings;
use Digest::SHA ();
use MIME::Base64 ();
use PAGI::Server::Protocol::Backend;
use PAGI::Server::Protocol::Errors;

our $VERSION = '0.001';

# The WebSocket codec seam: the same functions from ::PP or ::XS, whichever backend
# PAGI::Server::Protocol::Backend chose for both codecs (::XS lives in the HTTP/1.1
# codec's XS object).
our @FUNCTIONS = qw(parse_frame build_frame utf8_check mask_payload);
our $IMPLEMENTATION = PAGI::Server::Protocol::Backend::install(__PACKAGE__, @FUNCTIONS);

use constant {
  WS_CONTINUATION => 0, WS_TEXT => 1, WS_BINARY => 2,
  WS_CLOSE => 8, WS_PING => 9, WS_PONG => 10,
};
# Close codes (RFC 6455 7.4.1) the server sends or reports itself; the ones that end a
# session on bad input come with their kind from the one table (errors.tsv: ws, wsclose)
use constant {
  WS_CLOSE_NORMAL => 1000, WS_CLOSE_GOING_AWAY => 1001, WS_CLOSE_NO_STATUS => 1005,
  WS_CLOSE_ABNORMAL => 1006, WS_CLOSE_TOO_BIG => 1009, WS_CLOSE_INTERNAL_ERROR => 1011,
};

# The close code and message of a kind: the codec's (ws rows) or the session's
# (wsclose rows) of the one table, errors.tsv
our %ERROR_CLOSE = map { $_ => $PAGI::Server::Protocol::Errors::WS{$_}[0] } keys %PAGI::Server::Protocol::Errors::WS;
sub close_error { @{$PAGI::Server::Protocol::Errors::WS{$_[0]} // $PAGI::Server::Protocol::Errors::WSCLOSE{$_[0]}} }

my $GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

# Sec-WebSocket-Accept for a client's key (RFC 6455 4.2.2)
sub accept_key { MIME::Base64::encode_base64(Digest::SHA::sha1($_[0] . $GUID), '') }

# A client key must be base64 of 16 bytes (RFC 6455 4.1)
sub valid_key {
  my ($key) = @_;
  return defined $key && $key =~ m{\A[A-Za-z0-9+/]{22}==\z} ? 1 : 0;
}

# Close codes a peer may send (RFC 6455 7.4)
sub valid_close_code {
  my ($c) = @_;
  return ($c >= 1000 && $c <= 1003) || ($c >= 1007 && $c <= 1014) || ($c >= 3000 && $c <= 4999);
}

# A Close frame's payload: (code, reason) or (undef, the error kind to close with)
sub parse_close {
  my ($payload) = @_;
  my $len = length $payload;
  return (WS_CLOSE_NO_STATUS, '') if $len == 0;
  return (undef, 'bad_close') if $len == 1;
  my $code = unpack 'n', $payload;
  return (undef, 'bad_close') unless valid_close_code($code);
  my $reason = substr($payload, 2);
  return (undef, 'bad_close_reason') unless utf8_check($reason) == 1;
  utf8::decode($reason);
  return ($code, $reason);
}

1;

=head1 NAME

PAGI::Server::Protocol::WebSocket - the WebSocket frame codec facade (pure Perl or Rust)

=head1 DESCRIPTION

C<parse_frame>, C<build_frame>, C<utf8_check> and C<mask_payload>, from
L<PAGI::Server::Protocol::WebSocket::XS> (Rust) or C<::PP>, whichever backend
L<PAGI::Server::Protocol::Backend> selected; contract in F<doc/codec.md>. Also the
handshake and Close-frame helpers (C<accept_key>, C<valid_key>, C<parse_close>), which
run once per connection and are written once, in Perl.

C<$IMPLEMENTATION> says which codec is in use: always the same as the HTTP/1.1
codec's, since L<PAGI::Server::Protocol::Backend> chooses once for both (the XS
functions live in the same XS object, L<PAGI::Server::Protocol::WebSocket::XS>).
C<%ERROR_CLOSE> maps the codec's error kinds to close codes (from
L<PAGI::Server::Protocol::Errors>).

=cut
