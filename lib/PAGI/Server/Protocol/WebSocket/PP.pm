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

# A permessage-deflate context (::Deflate below) for the agreed parameters
sub new_deflate {
  require PAGI::Server::Protocol::WebSocket;
  return PAGI::Server::Protocol::WebSocket::PP::Deflate->_new(PAGI::Server::Protocol::WebSocket::deflate_params($_[0]));
}

# permessage-deflate (RFC 7692): one connection's DEFLATE streams, through
# Compress::Raw::Zlib (zlib; in Perl's core). The reference semantics of doc/codec.md;
# the XS backend's src/deflate.rs does the same over zlib (the copy libz-sys bundles).
package PAGI::Server::Protocol::WebSocket::PP::Deflate;
use strict;
use warnings;
use Carp ();
use Compress::Raw::Zlib ();

# The context's fields: the parameters, the deflater and the inflater (each made on
# first use), the bytes inflated so far of the message being received, the error kind
# that broke the inflater
use constant { PARAMS => 0, DEFLATER => 1, INFLATER => 2, INFLATED => 3, FAILED => 4 };

# The empty stored block a sync flush ends with (RFC 7692 7.2.1)
use constant TAIL => "\x00\x00\xff\xff";
# The inflater's window: always 15, whatever the client announced (src/deflate.rs,
# INFLATE_WINDOW_BITS, says why)
use constant INFLATE_WINDOW_BITS => 15;
# How much output one inflate call may make before the limit is checked again
use constant INFLATE_STEP => 16384;
# How many streams let go without context takeover the process keeps (@SPARE)
use constant SPARE_MAX => 4;

# Streams let go after a message without context takeover, reset, for the next such
# message of any context ([kind, object]): so an idle connection holds no zlib state,
# and without making Compress::Raw::Zlib objects for every message (27 to 36 us each,
# more than compressing the message). src/deflate.rs keeps the same spares (SPARE).
my @SPARE;

# A spare stream of this kind, or undef
sub _take {
  my ($kind) = @_;
  for my $i (reverse 0 .. $#SPARE) {
    return (splice @SPARE, $i, 1)->[1] if $SPARE[$i][0] eq $kind;
  }
  return undef;
}

# Keeps a reset stream as a spare (the oldest goes when there are SPARE_MAX)
sub _release {
  my ($kind, $z) = @_;
  shift @SPARE if @SPARE >= SPARE_MAX;
  push @SPARE, [$kind, $z];
}

# What makes two deflaters interchangeable once reset (inflaters always are: 'i')
sub _deflate_kind { "d $_[0]{level} $_[0]{mem_level} $_[0]{server_max_window_bits}" }

sub _new {
  my ($class, $params) = @_;
  return bless [$params, undef, undef, 0, undef], $class;
}

sub _deflater {
  my ($p) = @_;
  my ($d, $status) = Compress::Raw::Zlib::Deflate->new(-Level => $p->{level}, -MemLevel => $p->{mem_level},
    -WindowBits => -$p->{server_max_window_bits}, -AppendOutput => 0);
  die "PAGI::Server::Protocol::WebSocket::PP::Deflate: deflateInit2 failed: $status\n" unless $d;
  return $d;
}

sub _inflater {
  my ($i, $status) = Compress::Raw::Zlib::Inflate->new(-WindowBits => -INFLATE_WINDOW_BITS, -LimitOutput => 1,
    -ConsumeInput => 1, -AppendOutput => 1, -Bufsize => INFLATE_STEP);
  die "PAGI::Server::Protocol::WebSocket::PP::Deflate: inflateInit2 failed: $status\n" unless $i;
  return $i;
}

sub compress_message {
  my ($self, $message) = @_;
  $message //= '';
  utf8::downgrade($message, 1)
    or Carp::croak('compress_message: the message must be bytes, not characters');
  # The empty message is the flush's empty stored block alone, 0x00 once its tail is
  # removed: the stream is byte-aligned after each message. (Compress::Raw::Zlib's
  # deflate does not call zlib without input, so zlib would take this flush for a
  # repeat of the last one and write nothing.)
  return "\x00" unless length $message;
  my $p = $self->[PARAMS];
  my $d = $self->[DEFLATER] //= _take(_deflate_kind($p)) // _deflater($p);
  my $out = '';
  my $status = $d->deflate($message, $out);
  die "PAGI::Server::Protocol::WebSocket::PP::Deflate: deflate failed: $status\n" unless $status == Compress::Raw::Zlib::Z_OK();
  # The flush's buffer has room to spare: a sync flush that fills its output exactly
  # is followed by a second, empty one (zlib's "avail_out > 6" advice)
  my $flushed = "\0" x (length($message) + (length($message) >> 8) + 64);
  $status = $d->flush($flushed, Compress::Raw::Zlib::Z_SYNC_FLUSH());
  die "PAGI::Server::Protocol::WebSocket::PP::Deflate: flush failed: $status\n" unless $status == Compress::Raw::Zlib::Z_OK();
  $out .= $flushed;
  substr($out, -4, 4, '') if substr($out, -4) eq TAIL;
  # Without context takeover nothing carries over: the stream goes, reset, to the spares
  if ($p->{server_no_context_takeover}) {
    $self->[DEFLATER] = undef;
    $d->deflateReset;
    _release(_deflate_kind($p), $d);
  }
  return $out;
}

# The inflated bytes of this frame of the message being received, or {error, message}
sub decompress_message {
  my ($self, $payload, $max, $fin) = @_;
  $fin = 1 if @_ < 4;
  return (PAGI::Server::Protocol::WebSocket::PP::_error($self->[FAILED]))[0] if $self->[FAILED];
  $payload //= '';
  utf8::downgrade($payload, 1)
    or Carp::croak('decompress_message: the payload must be bytes, not characters');
  my $out = '';
  my $kind = $self->_inflate($payload, $max, \$out);
  $kind //= $self->_inflate(TAIL, $max, \$out) if $fin;
  if ($kind) {
    $self->[FAILED] = $kind;
    $self->[INFLATER] = undef;
    return (PAGI::Server::Protocol::WebSocket::PP::_error($kind))[0];
  }
  if ($fin) {
    # Without context takeover the next message starts without the window: the stream
    # goes, reset, to the spares
    if ($self->[INFLATER] && $self->[PARAMS]{client_no_context_takeover}) {
      my $i = $self->[INFLATER];
      $self->[INFLATER] = undef;
      $i->inflateReset;
      _release('i', $i);
    }
    $self->[INFLATED] = 0;
  }
  return $out;
}

# Feeds $input to the inflater, appending to $$out within the message's limit: undef,
# or the error kind
sub _inflate {
  my ($self, $input, $max, $out) = @_;
  return 'inflated_too_large' if $self->[INFLATED] > $max;
  my $i = $self->[INFLATER] //= _take('i') // _inflater();
  my $full = 0;
  while (length $input || $full) {
    my ($had, $before) = (length $input, length $$out);
    my $status = $i->inflate($input, $$out);
    my $made = length($$out) - $before;
    $self->[INFLATED] += $made;
    # The bytes before an error count: too many of them is the first finding
    return 'inflated_too_large' if $self->[INFLATED] > $max;
    if ($status == Compress::Raw::Zlib::Z_STREAM_END()) {
      # A block with BFINAL ends zlib's stream, not the message: what follows starts a
      # new one, without the window (RFC 7692 7.2.3.4)
      $i->inflateReset;
      $full = 0;
      next;
    }
    return 'bad_deflate'
      unless $status == Compress::Raw::Zlib::Z_OK() || $status == Compress::Raw::Zlib::Z_BUF_ERROR();
    if ($made == 0 && $had == length $input) {
      # No progress with input left cannot happen with room to write; refuse rather
      # than loop
      return 'bad_deflate' if length $input;
      $full = 0;
      next;
    }
    # (with LimitOutput, Z_BUF_ERROR after output: the buffer is full, more may follow)
    $full = $made && $status == Compress::Raw::Zlib::Z_BUF_ERROR();
  }
  return undef;
}

1;
