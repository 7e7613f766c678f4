package PAGI::Server::Protocol::WebSocket;
use strict;
use warnings;
use Digest::SHA ();
use MIME::Base64 ();
use PAGI::Server::Protocol::HTTP1;

our $VERSION = '0.001';

# The WebSocket codec seam: the same functions from ::PP or ::XS, following the
# backend the HTTP/1.1 codec chose.
our @FUNCTIONS = qw(parse_frame build_frame utf8_check mask_payload);
our $IMPLEMENTATION = $PAGI::Server::Protocol::HTTP1::IMPLEMENTATION;
our $LOAD_ERROR;

# The backend asked for, as PAGI::Server::Protocol::HTTP1 reads it: xs, pp or auto
sub _wanted {
  my $want = $ENV{PAGI_SERVER_BACKEND};
  $want = $PAGI::Server::BACKEND if !defined $want || $want eq '' || lc $want eq 'auto';
  return lc($want // 'auto') || 'auto';
}

{
  my $impl = "PAGI::Server::Protocol::WebSocket::$IMPLEMENTATION";
  if (!eval "require $impl; 1") {
    # An XS object built before the WebSocket codec existed still serves WebSocket
    # with PP, unless XS was demanded: then say how to fix it
    die $@ if $IMPLEMENTATION ne 'XS';
    $LOAD_ERROR = $@;
    die "PAGI::Server: the XS backend was requested (PAGI_SERVER_BACKEND=xs) but its"
      . " WebSocket codec cannot be loaded; rebuild with 'perl Makefile.PL && make' or use"
      . " PAGI_SERVER_BACKEND=pp.\nThe load error was: $LOAD_ERROR"
      if _wanted() eq 'xs';
    $IMPLEMENTATION = 'PP';
    $impl = 'PAGI::Server::Protocol::WebSocket::PP';
    require PAGI::Server::Protocol::WebSocket::PP;
  }
  no strict 'refs';
  for my $f (@FUNCTIONS) {
    my $code = $impl->can($f) or die "$impl does not implement $f\n";
    *{$f} = $code;
  }
}

use constant {
  WS_CONTINUATION => 0, WS_TEXT => 1, WS_BINARY => 2,
  WS_CLOSE => 8, WS_PING => 9, WS_PONG => 10,
};

# Close codes for the codec's error kinds, in one table
our %ERROR_CLOSE = (
  rsv_bits => 1002, bad_opcode => 1002, bad_control => 1002,
  unmasked => 1002, bad_length => 1002, too_large => 1009,
);

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

# A Close frame's payload: (code, reason) or (undef, close code to answer with)
sub parse_close {
  my ($payload) = @_;
  my $len = length $payload;
  return (1005, '') if $len == 0;
  return (undef, 1002) if $len == 1;
  my $code = unpack 'n', $payload;
  return (undef, 1002) unless valid_close_code($code);
  my $reason = substr($payload, 2);
  return (undef, 1007) unless utf8_check($reason) == 1;
  utf8::decode($reason);
  return ($code, $reason);
}

1;

=head1 NAME

PAGI::Server::Protocol::WebSocket - the WebSocket frame codec facade (pure Perl or Rust)

=head1 DESCRIPTION

C<parse_frame>, C<build_frame>, C<utf8_check> and C<mask_payload>, from
L<PAGI::Server::Protocol::WebSocket::XS> (Rust) or C<::PP>, whichever backend
L<PAGI::Server::Protocol::HTTP1> selected; contract in F<doc/codec.md>. Also the
handshake and Close-frame helpers (C<accept_key>, C<valid_key>, C<parse_close>), which
run once per connection and are written once, in Perl.

C<$IMPLEMENTATION> says which codec is in use. When the HTTP/1.1 codec is XS, the
WebSocket codec is L<PAGI::Server::Protocol::WebSocket::XS>, whose functions live in
the same XS object. If that object was built before the WebSocket codec existed, the
WebSocket codec falls back to the pure-Perl one (C<$LOAD_ERROR> keeps the reason) -
unless C<PAGI_SERVER_BACKEND=xs> demanded XS: then loading dies, saying to rebuild.

=cut
