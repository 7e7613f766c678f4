package PAGI::Server::Protocol::WebSocket::PP;
use strict;
use warnings;
use Carp ();

our $VERSION = '0.001';

# The pure-Perl WebSocket frame codec: the reference semantics of doc/codec.md.

use PAGI::Server::Protocol::Errors;

my %OPCODE = map { $_ => 1 } 0, 1, 2, 8, 9, 10;

# {error => KIND, message => TEXT}, the message from the one table
sub _error { return ({error => $_[0], message => $PAGI::Server::Protocol::Errors::WS{$_[0]}[1]}, 0) }

# RSV1 is permessage-deflate's "compressed" bit (RFC 7692 6): allowed when $rsv1_ok,
# on a data message's first frame only
sub parse_frame {
  my ($buf, $max_payload, $rsv1_ok) = @_;
  my $have = length $buf;
  return (undef, 0) if $have < 2;
  my ($b0, $b1) = unpack 'CC', $buf;
  my $opcode = $b0 & 0x0f;
  my $len    = $b1 & 0x7f;
  my $rsv1   = ($b0 & 0x40) ? 1 : 0;
  return _error('rsv_bits')    if $b0 & 0x30 || $rsv1 && !$rsv1_ok;
  return _error('bad_opcode')  unless $OPCODE{$opcode};
  return _error('bad_rsv1')    if $rsv1 && ($opcode == 0 || $opcode >= 8);
  return _error('bad_control') if $opcode >= 8 && (!($b0 & 0x80) || $len > 125);
  return _error('unmasked')    unless $b1 & 0x80;
  my $pos = 2;
  if ($len == 126) {
    return (undef, 0) if $have < 4;
    $len = unpack 'n', substr($buf, 2, 2);
    $pos = 4;
  }
  elsif ($len == 127) {
    return (undef, 0) if $have < 10;
    my ($hi, $lo) = unpack 'NN', substr($buf, 2, 8);
    return _error('bad_length') if $hi & 0x80000000;
    $len = $hi * 4294967296 + $lo;
    $pos = 10;
  }
  return _error('too_large') if $len > $max_payload;
  return (undef, 0) if $have < $pos + 4 + $len;
  my $key = substr($buf, $pos, 4);
  my $payload = substr($buf, $pos + 4, $len);
  $payload ^= substr($key x (($len >> 2) + 1), 0, $len) if $len;
  return ([($b0 & 0x80) ? 1 : 0, $opcode, $payload, $rsv1], $pos + 4 + $len);
}

sub build_frame {
  my ($opcode, $payload, $fin, $rsv1) = @_;
  $payload = '' unless defined $payload;
  utf8::downgrade($payload, 1)
    or Carp::croak('build_frame: payload must be bytes, not characters');
  my $len = length $payload;
  my $b0 = ($fin ? 0x80 : 0) | ($rsv1 ? 0x40 : 0) | $opcode;
  return pack('CC', $b0, $len) . $payload if $len < 126;
  return pack('CCn', $b0, 126, $len) . $payload if $len < 65536;
  return pack('CCNN', $b0, 127, int($len / 4294967296), $len % 4294967296) . $payload;
}

# One well-formed character or a run of ASCII (RFC 3629)
my $CHAR = qr/[\x00-\x7f]+|[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]
  |[\xe1-\xec\xee\xef][\x80-\xbf]{2}|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}
  |[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2}/x;
# The start of a character that more bytes could still complete
my $PARTIAL = qr/\A(?:[\xc2-\xdf]|\xe0[\xa0-\xbf]?|[\xe1-\xec\xee\xef][\x80-\xbf]?|\xed[\x80-\x9f]?
  |\xf0(?:[\x90-\xbf][\x80-\xbf]?)?|[\xf1-\xf3](?:[\x80-\xbf][\x80-\xbf]?)?
  |\xf4(?:[\x80-\x8f][\x80-\xbf]?)?)\z/x;

sub utf8_check {
  my ($s) = @_;
  return 1 unless $s =~ /[\x80-\xff]/;
  pos($s) = 0;
  # Bounded repeats: a long (?:...)* would hit perl's regex recursion limit
  1 while $s =~ /\G(?:$CHAR){1,4096}/gc;
  my $p = pos($s) // 0;
  return 1 if $p == length $s;
  return 2 if length($s) - $p < 4 && substr($s, $p) =~ $PARTIAL;
  return 0;
}

sub mask_payload {
  my ($payload, $key) = @_;
  my $len = length $payload;
  return $payload unless $len;
  return $payload ^ substr($key x (($len >> 2) + 1), 0, $len);
}

1;
