package PAGI::Server::Protocol::WebSocket;
use strict;
use warnings;
use Digest::SHA ();
use MIME::Base64 ();
use Carp ();
use PAGI::Server::Protocol::Backend;
use PAGI::Server::Protocol::Errors;

our $VERSION = '0.001';

# The WebSocket codec seam: the same functions from ::PP or ::XS, whichever backend
# PAGI::Server::Protocol::Backend chose for both codecs (::XS lives in the HTTP/1.1
# codec's XS object). new_deflate makes a permessage-deflate context, an object of
# ::PP::Deflate or ::XS::Deflate with the same methods (@DEFLATE_METHODS).
our @FUNCTIONS = qw(parse_frame build_frame utf8_check mask_payload new_deflate);
our @DEFLATE_METHODS = qw(compress_message decompress_message);
our $IMPLEMENTATION = PAGI::Server::Protocol::Backend::install(__PACKAGE__, @FUNCTIONS);
our $DEFLATE_CLASS = "PAGI::Server::Protocol::WebSocket::${IMPLEMENTATION}::Deflate";
for my $m (@DEFLATE_METHODS) {
  die "$DEFLATE_CLASS does not implement $m\n" unless $DEFLATE_CLASS->can($m);
}

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

# ---- permessage-deflate (RFC 7692) ------------------------------------------------

# The server's settings for negotiate_deflate and their defaults (the option table's
# options are meant to feed them). A 4 KiB window and memLevel 5, as Python's
# websockets chose: for chat-sized JSON about the ratio of zlib's defaults (15, 8) at
# half the time and less than half the memory (doc/codec.md, permessage-deflate)
# server_no_context_takeover / client_no_context_takeover ask for no takeover even when
# the client did not offer it (RFC 7692 7.1.1.1 and 7.1.1.2 allow both): a direction
# without takeover holds no zlib state between messages, at some ratio and some CPU.
our %DEFLATE_SETTINGS = (
  enabled                    => 1,
  server_max_window_bits     => 12,
  server_no_context_takeover => 0,
  client_no_context_takeover => 0,
  level                      => 6,
  mem_level                  => 5,
);

# What each number may be: windows of 9 to 15 bits (zlib cannot deflate with 8; the
# offer's 8 is declined, see negotiate_deflate), zlib's level and memLevel
my %DEFLATE_RANGE = (
  server_max_window_bits => [9, 15],
  client_max_window_bits => [8, 15],
  level                  => [0, 9],
  mem_level              => [1, 9],
);

# The parameters of a context (new_deflate): what negotiate_deflate agreed on
my @DEFLATE_PARAMS = qw(server_no_context_takeover client_no_context_takeover server_max_window_bits
  client_max_window_bits level mem_level);

# A hash of numbers checked against %DEFLATE_RANGE (flags made 0/1); misuse croaks,
# naming the public function
sub _deflate_checked {
  my ($fn, $given, $known, $defaults) = @_;
  $given //= {};
  Carp::croak("$fn: the settings must be a hash reference") unless ref $given eq 'HASH';
  my @unknown = grep { !$known->{$_} } sort keys %$given;
  Carp::croak("$fn: unknown setting(s): @unknown") if @unknown;
  my %s = (%$defaults, %$given);
  for my $k (sort keys %s) {
    my $range = $DEFLATE_RANGE{$k} or do { $s{$k} = $s{$k} ? 1 : 0; next };
    my ($min, $max) = @$range;
    Carp::croak("$fn: $k must be an integer from $min to $max")
      unless defined $s{$k} && $s{$k} =~ /\A[0-9]+\z/ && $s{$k} >= $min && $s{$k} <= $max;
    $s{$k} += 0;
  }
  return \%s;
}

# new_deflate's parameters, completed as negotiate_deflate would for a bare
# "permessage-deflate" offer under the default settings
sub deflate_params {
  my %defaults = (server_no_context_takeover => 0, client_no_context_takeover => 0,
    server_max_window_bits => $DEFLATE_SETTINGS{server_max_window_bits}, client_max_window_bits => 15,
    level => $DEFLATE_SETTINGS{level}, mem_level => $DEFLATE_SETTINGS{mem_level});
  return _deflate_checked('new_deflate', $_[0], {map { $_ => 1 } @DEFLATE_PARAMS}, \%defaults);
}

# Sec-WebSocket-Extensions (RFC 6455 9.1): extension = token *( ";" param ), param =
# token [ "=" ( token / quoted-string ) ], lists separated by commas
my $TOKEN  = qr/[!#\$%&'*+\-.^_`|~0-9A-Za-z]+/;
my $QUOTED = qr/"((?:[^"\\]|\\[\x00-\xff])*)"/;

# The offers of a list of Sec-WebSocket-Extensions values, in order: [name, [[param,
# value or undef], ...]] each. A field that stops parsing gives the offers before the
# fault only.
sub _extension_offers {
  my @offers;
  FIELD: for my $field (@_) {
    next unless defined $field;
    pos($field) = 0;
    while (1) {
      $field =~ /\G[\s,]*/gc;
      last if pos($field) == length $field;
      last unless $field =~ /\G($TOKEN)/gc;
      my ($name, @params) = ($1);
      while ($field =~ /\G\s*;\s*($TOKEN)/gc) {
        my ($param, $value) = ($1);
        if ($field =~ /\G\s*=\s*/gc) {
          if ($field =~ /\G($TOKEN)/gc) { $value = $1 }
          elsif ($field =~ /\G$QUOTED/gc) {
            # RFC 6455 9.1: "the value after quoted-string unescaping MUST conform to the
            # token ABNF"
            ($value = $1) =~ s/\\(.)/$1/gs;
            $value = "\0invalid" unless $value =~ /\A$TOKEN\z/;
          }
          else { next FIELD }
        }
        push @params, [$param, $value];
      }
      next FIELD unless $field =~ /\G\s*(?:,|\z)/gc;
      push @offers, [$name, \@params];
    }
  }
  return @offers;
}

# A window-bits value: a decimal integer from 8 to 15 without leading zeros (RFC 7692
# 7.1.2.1)
sub _window_bits { defined $_[0] && $_[0] =~ /\A(?:[89]|1[0-5])\z/ ? $_[0] + 0 : undef }

# Negotiates permessage-deflate (RFC 7692 7) from the values of the client's
# Sec-WebSocket-Extensions fields and the server's settings: (\%params, the response's
# extension value) for the first offer it accepts, (undef, undef) when it accepts none
sub negotiate_deflate {
  my ($values, $settings) = @_;
  Carp::croak('negotiate_deflate: the header values must be an array reference') unless ref $values eq 'ARRAY';
  my $s = _deflate_checked('negotiate_deflate', $settings, {map { $_ => 1 } keys %DEFLATE_SETTINGS}, \%DEFLATE_SETTINGS);
  return (undef, undef) unless $s->{enabled};
  OFFER: for my $offer (_extension_offers(@$values)) {
    my ($name, $params) = @$offer;
    next unless $name eq 'permessage-deflate';
    my %p;
    for my $pv (@$params) {
      my ($k, $v) = @$pv;
      # Declined: a parameter twice, an unknown one, a value where none belongs, a bad
      # value (RFC 7692 7: "A server MUST decline an extension negotiation offer ...")
      next OFFER if exists $p{$k};
      if ($k eq 'server_no_context_takeover' || $k eq 'client_no_context_takeover') {
        next OFFER if defined $v;
        $p{$k} = 1;
      }
      elsif ($k eq 'server_max_window_bits') { $p{$k} = _window_bits($v) // next OFFER }
      elsif ($k eq 'client_max_window_bits') {
        $p{$k} = defined $v ? _window_bits($v) // next OFFER : 15;
      }
      else { next OFFER }
    }
    # Our deflater cannot honour a 256-byte window: zlib refuses windowBits -8 (since
    # 1.2.9) and deflating with 9 instead could refer further back than the client's
    # inflater keeps ("The server doesn't support the offered configuration")
    next OFFER if ($p{server_max_window_bits} // 15) < 9;
    my $window = $p{server_max_window_bits} // 15;
    $window = $s->{server_max_window_bits} if $s->{server_max_window_bits} < $window;
    my %agreed = (
      server_no_context_takeover => $p{server_no_context_takeover} || $s->{server_no_context_takeover} ? 1 : 0,
      client_no_context_takeover => $p{client_no_context_takeover} || $s->{client_no_context_takeover} ? 1 : 0,
      server_max_window_bits     => $window,
      # (the client's window is never answered: the inflater takes 15 bits anyway)
      client_max_window_bits     => $p{client_max_window_bits} // 15,
      level                      => $s->{level},
      mem_level                  => $s->{mem_level},
    );
    my $response = 'permessage-deflate';
    $response .= '; server_no_context_takeover' if $agreed{server_no_context_takeover};
    $response .= '; client_no_context_takeover' if $agreed{client_no_context_takeover};
    # Must answer one that was offered (with the same or a smaller value); may answer
    # a smaller one that was not (RFC 7692 7.1.2.1)
    $response .= "; server_max_window_bits=$window" if exists $p{server_max_window_bits} || $window < 15;
    return (\%agreed, $response);
  }
  return (undef, undef);
}

1;

=head1 NAME

PAGI::Server::Protocol::WebSocket - the WebSocket frame codec facade (pure Perl or Rust)

=head1 DESCRIPTION

C<parse_frame>, C<build_frame>, C<utf8_check>, C<mask_payload> and C<new_deflate>,
from L<PAGI::Server::Protocol::WebSocket::XS> (Rust) or C<::PP>, whichever backend
L<PAGI::Server::Protocol::Backend> selected; contract in F<doc/codec.md>. Also the
handshake and Close-frame helpers (C<accept_key>, C<valid_key>, C<parse_close>) and
permessage-deflate's negotiation (C<negotiate_deflate>, C<deflate_params>), which run
once per connection and are written once, in Perl.

=head2 permessage-deflate (RFC 7692)

  my ($params, $value) = PAGI::Server::Protocol::WebSocket::negotiate_deflate(
    \@sec_websocket_extensions_values, {server_max_window_bits => 12});
  # $value: the response's Sec-WebSocket-Extensions; undef: no compression
  my $ctx = PAGI::Server::Protocol::WebSocket::new_deflate($params);
  my $payload = $ctx->compress_message($bytes);     # send with RSV1 (build_frame's 4th)
  my $bytes = $ctx->decompress_message($payload, $max_size, $fin);
  # or {error => 'bad_deflate' | 'inflated_too_large', message => ...}

C<negotiate_deflate> picks the first acceptable offer and answers it;
C<%DEFLATE_SETTINGS> holds the server's settings' defaults. C<new_deflate> makes the
per-connection context, an object of C<$DEFLATE_CLASS> with the methods of
C<@DEFLATE_METHODS>: C<compress_message> (a whole message) and C<decompress_message>
(frame by frame, stopping as soon as the message inflates past C<$max_size>). See
F<doc/codec.md>, "permessage-deflate", for the rules, the memory it costs and how the
connection is meant to use it.

C<$IMPLEMENTATION> says which codec is in use: always the same as the HTTP/1.1
codec's, since L<PAGI::Server::Protocol::Backend> chooses once for both (the XS
functions live in the same XS object, L<PAGI::Server::Protocol::WebSocket::XS>).
C<%ERROR_CLOSE> maps the codec's error kinds to close codes (from
L<PAGI::Server::Protocol::Errors>).

=cut
