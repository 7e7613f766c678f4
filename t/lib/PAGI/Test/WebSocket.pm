package PAGI::Test::WebSocket;
use strict;
use warnings;
use experimental 'signatures';
use Exporter 'import';
use MIME::Base64 ();
use Digest::SHA ();
use Time::HiRes ();
use PAGI::Test::Server ();
our @ISA = ('PAGI::Test::Client');

# A raw RFC 6455 client for tests, built on PAGI::Test::Client (same socket, buffer and
# bounded waits). It writes whatever frames a test asks for, well-formed or not, and
# reads the server's frames without interpreting them. Independent of the server's
# codec: it does not use PAGI::Server::Protocol::WebSocket.

our @EXPORT_OK = qw(ws_connect ws_request client_frame accept_for);

use constant {
  WS_CONTINUATION => 0, WS_TEXT => 1, WS_BINARY => 2,
  WS_CLOSE => 8, WS_PING => 9, WS_PONG => 10,
};

sub accept_for ($key) {
  MIME::Base64::encode_base64(Digest::SHA::sha1($key . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'), '');
}

# The bytes of an upgrade request. Options: path ('/'), key (random), version (13;
# undef omits the header), protocols (a Sec-WebSocket-Protocol value), headers
# ([[name, value], ...] added at the end), omit (names of default headers to leave out)
sub ws_request (%opt) {
  my $key = exists $opt{key} ? $opt{key}
    : MIME::Base64::encode_base64(join('', map { chr int rand 256 } 1 .. 16), '');
  my $version = exists $opt{version} ? $opt{version} : 13;
  my %omit = map { lc($_) => 1 } @{$opt{omit} || []};
  my @h = (['Host', '127.0.0.1'], ['Upgrade', 'websocket'], ['Connection', 'Upgrade']);
  push @h, ['Sec-WebSocket-Key', $key] if defined $key;
  push @h, ['Sec-WebSocket-Version', $version] if defined $version;
  push @h, ['Sec-WebSocket-Protocol', $opt{protocols}] if defined $opt{protocols};
  push @h, @{$opt{headers} || []};
  my $req = 'GET ' . ($opt{path} // '/') . " HTTP/1.1\r\n";
  $req .= "$_->[0]: $_->[1]\r\n" for grep { !$omit{lc $_->[0]} } @h;
  return ("$req\r\n", $key);
}

# ws_connect($port, %ws_request_options, timeout => 5, local => ADDR to connect from)
# Sends the upgrade request and reads the response head. Returns ($ws, $response):
# $response as PAGI::Test::Server::parse_response gives it (undef on timeout); on a
# 101, what follows the head stays in $ws's buffer for read_frame.
sub ws_connect ($port, %opt) {
  my $self = PAGI::Test::Client->new($port, timeout => $opt{timeout} // 5, local => $opt{local});
  bless $self, __PACKAGE__;
  my ($bytes, $key) = ws_request(%opt);
  $self->{key} = $key;
  $self->send($bytes);
  # A 101 is final here (read_responses would wait for a response after it)
  my $res;
  my $try = sub {
    my ($r, $p) = PAGI::Test::Server::parse_response($self->{in}, $self->{pos},
      closed => $self->{closed});
    return 0 unless $r;
    ($res, $self->{pos}) = ($r, $p);
    return 1;
  };
  $self->_pump(Time::HiRes::time() + $self->{timeout}, sub { $try->() || $self->{closed} && ($try->(), 1) });
  $self->{response} = $res;
  return ($self, $res);
}

sub response ($self) { $self->{response} }
sub key ($self)      { $self->{key} }

# One client frame. Options: fin (1), mask (1), rsv (0..7), key (4 bytes, random)
sub client_frame ($opcode, $payload = '', %opt) {
  my $fin  = $opt{fin} // 1;
  my $mask = $opt{mask} // 1;
  my $b0 = ($fin ? 0x80 : 0) | (($opt{rsv} // 0) << 4) | $opcode;
  my $len = length $payload;
  my $mbit = $mask ? 0x80 : 0;
  my $head = $len < 126 ? pack('CC', $b0, $mbit | $len)
    : $len < 65536 ? pack('CCn', $b0, $mbit | 126, $len)
    : pack('CCNN', $b0, $mbit | 127, int($len / 4294967296), $len % 4294967296);
  return $head . $payload unless $mask;
  my $key = $opt{key} // pack('N', int rand 4294967296);
  my $masked = $len ? $payload ^ substr($key x (int($len / 4) + 1), 0, $len) : '';
  return $head . $key . $masked;
}

sub send_frame ($self, $opcode, $payload = '', %opt) {
  return $self->send(client_frame($opcode, $payload, %opt));
}

# Text is given as characters and sent as UTF-8
sub send_text ($self, $text, %opt) {
  utf8::encode($text);
  return $self->send_frame(WS_TEXT, $text, %opt);
}
sub send_binary ($self, $bytes, %opt) { $self->send_frame(WS_BINARY, $bytes, %opt) }
sub send_ping ($self, $payload = '')  { $self->send_frame(WS_PING, $payload) }

# A Close frame; no code means an empty payload
sub send_close ($self, $code = undef, $reason = '') {
  utf8::encode($reason) if utf8::is_utf8($reason);
  return $self->send_frame(WS_CLOSE, defined $code ? pack('n', $code) . $reason : '');
}

# Parses one server frame from the buffer: {fin, rsv, opcode, masked, payload}, or
# undef after $timeout seconds without a complete frame (or once the server closed)
sub read_frame ($self, $timeout = $self->{timeout}) {
  my $frame;
  my $try = sub {
    my $have = length($self->{in}) - $self->{pos};
    return 0 if $have < 2;
    my ($b0, $b1) = unpack 'CC', substr($self->{in}, $self->{pos}, 2);
    my $len = $b1 & 0x7f;
    my $p = 2;
    if ($len == 126) {
      return 0 if $have < 4;
      $len = unpack 'n', substr($self->{in}, $self->{pos} + 2, 2);
      $p = 4;
    }
    elsif ($len == 127) {
      return 0 if $have < 10;
      my ($hi, $lo) = unpack 'NN', substr($self->{in}, $self->{pos} + 2, 8);
      $len = $hi * 4294967296 + $lo;
      $p = 10;
    }
    my $masked = $b1 & 0x80 ? 1 : 0;
    my $key = '';
    if ($masked) {
      return 0 if $have < $p + 4;
      $key = substr($self->{in}, $self->{pos} + $p, 4);
      $p += 4;
    }
    return 0 if $have < $p + $len;
    my $payload = substr($self->{in}, $self->{pos} + $p, $len);
    $payload ^= substr($key x (int($len / 4) + 1), 0, $len) if $masked && $len;
    $frame = {fin => $b0 & 0x80 ? 1 : 0, rsv => ($b0 >> 4) & 7, opcode => $b0 & 0x0f,
      masked => $masked, payload => $payload};
    $self->{pos} += $p + $len;
    return 1;
  };
  my $deadline = Time::HiRes::time() + $timeout;
  $self->_pump($deadline, sub { $try->() || $self->{closed} && ($try->(), 1) });
  return $frame;
}

# Reads frames until a Close frame; returns ($code, $reason, \@frames_before)
# ($code undef for an empty Close payload; () when no Close came within $timeout)
sub read_close ($self, $timeout = $self->{timeout}) {
  my $deadline = Time::HiRes::time() + $timeout;
  my @before;
  while (1) {
    my $left = $deadline - Time::HiRes::time();
    my $f = $self->read_frame($left > 0 ? $left : 0) or return;
    if ($f->{opcode} == WS_CLOSE) {
      my $p = $f->{payload};
      return (undef, '', \@before) if length $p < 2;
      return (unpack('n', $p), substr($p, 2), \@before);
    }
    push @before, $f;
  }
}

# The payload of the next data frame (text decoded), skipping control frames
sub read_message ($self, $timeout = $self->{timeout}) {
  my $deadline = Time::HiRes::time() + $timeout;
  my ($op, $msg);
  while (1) {
    my $left = $deadline - Time::HiRes::time();
    my $f = $self->read_frame($left > 0 ? $left : 0) or return;
    next if $f->{opcode} >= 8 && $f->{opcode} != WS_CLOSE;
    return {close => $f->{payload}} if $f->{opcode} == WS_CLOSE;
    $op //= $f->{opcode};
    $msg .= $f->{payload};
    next unless $f->{fin};
    if ($op == WS_TEXT) { utf8::decode($msg); return {text => $msg} }
    return {bytes => $msg};
  }
}

# Bytes received and not yet parsed as frames
sub pending ($self) { substr($self->{in}, $self->{pos}) }

1;

=head1 NAME

PAGI::Test::WebSocket - a raw WebSocket client for PAGI::Server tests

=head1 SYNOPSIS

  use PAGI::Test::Server qw(:all);
  use PAGI::Test::WebSocket qw(ws_connect client_frame);

  my ($ws, $res) = ws_connect($srv->port, path => '/chat', protocols => 'a, b');
  is $res->{status}, 101;
  $ws->send_text("héllo");
  is $ws->read_message->{text}, "héllo";
  $ws->send_frame(1, "x", fin => 0);            # any frame, valid or not
  my ($code, $reason) = $ws->read_close;

=head1 DESCRIPTION

A L<PAGI::Test::Client> that speaks RFC 6455 frames: C<ws_connect> does the upgrade
handshake, C<client_frame>/C<send_frame> build masked (or, with C<< mask => 0 >>,
unmasked) frames with any FIN, RSV and opcode, C<read_frame> returns the server's
frames raw, C<read_close> waits for a Close frame. Every wait is bounded.

=cut
