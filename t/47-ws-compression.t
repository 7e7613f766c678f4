use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use Future::AsyncAwait;
use Compress::Raw::Zlib qw(Z_OK Z_SYNC_FLUSH Z_STREAM_END Z_BUF_ERROR);
use JSON::PP ();
use lib 't/lib';
use PAGI::Test::Server qw(:all);
use PAGI::Test::WebSocket qw(ws_connect client_frame);
use PAGI::Server::Protocol::WebSocket;

# permessage-deflate (RFC 7692) end to end, on the active backend: the negotiation as
# the 101 answers it (offers declined, parameters answered, the option turning it off,
# an app answering the header itself), the scope's extension, compressed messages
# both ways (with our own zlib client here, whose bytes the server never made:
# whole, fragmented, uncompressed ones in between, the context kept), and what bad
# input gets: RSV1 without the extension or on a continuation (1002), a corrupt
# DEFLATE stream (1007), a small message inflating past the message limit (1009, the
# app sees 1006). Python's websockets, a client nobody here wrote, with its default
# compression, is t/43; Chromium is t/44.

use constant {WS_TEXT => 1, WS_BINARY => 2, WS_CONTINUATION => 0, WS_CLOSE => 8, RSV1 => 4};
my $json = JSON::PP->new->canonical;

my $app = async sub ($scope, $receive, $send) {
  return if $scope->{type} eq 'lifespan';
  await $receive->();
  report(extension => $scope->{extensions}{'permessage-deflate'} // 'none');
  my %accept = (type => 'websocket.accept');
  $accept{headers} = [['sec-websocket-extensions', 'x-own']] if $scope->{path} eq '/own';
  await $send->(\%accept);
  while (1) {
    my $ev = await $receive->();
    if ($ev->{type} eq 'websocket.disconnect') { report(disconnect => $ev->{code}); last }
    if (defined $ev->{text}) { await $send->({type => 'websocket.send', text => "echo: $ev->{text}"}) }
    else { await $send->({type => 'websocket.send', bytes => "echo: $ev->{bytes}"}) }
  }
};

# Our client's side of the extension: a raw deflater and inflater (15-bit windows)
# whose contexts are kept across messages, as a client without no_context_takeover does
sub client_zlib () {
  my ($d) = Compress::Raw::Zlib::Deflate->new(-WindowBits => -15, -AppendOutput => 1);
  my ($i) = Compress::Raw::Zlib::Inflate->new(-WindowBits => -15, -AppendOutput => 1, -ConsumeInput => 1,
    -LimitOutput => 0);
  return {
    deflate => sub ($msg) {
      my $out = '';
      $d->deflate($msg, $out) == Z_OK or die 'deflate';
      $d->flush($out, Z_SYNC_FLUSH) == Z_OK or die 'flush';
      $out =~ s/\x00\x00\xff\xff\z// or die 'no sync flush tail';
      return $out;
    },
    inflate => sub ($payload) {
      my ($in, $out) = ($payload . "\x00\x00\xff\xff", '');
      my $st = $i->inflate($in, $out);
      die "inflate: $st" unless $st == Z_OK || $st == Z_STREAM_END || $st == Z_BUF_ERROR;
      return $out;
    },
  };
}

# The app's next report with $key (each is taken once)
my %taken;
sub next_report ($srv, $key) {
  my $n = ++$taken{$srv->port}{$key};
  my @r;
  wait_for(sub { @r = grep { exists $_->{$key} } $srv->reports; @r >= $n }, 5);
  return $r[$n - 1] // {};
}

sub open_ws ($srv, $offer, %opt) {
  my ($ws, $res) = ws_connect($srv->port, path => $opt{path} // '/',
    headers => [defined $offer ? (['Sec-WebSocket-Extensions', $offer]) : ()]);
  my ($ext) = map { $_->[1] } grep { lc $_->[0] eq 'sec-websocket-extensions' } @{$res->{headers} || []};
  return ($ws, $res, $ext);
}

# The next message: [rsv of its first frame, opcode, payload inflated when RSV1]
sub read_msg ($ws, $z) {
  my ($rsv, $op, $data);
  while (my $f = $ws->read_frame) {
    next if $f->{opcode} >= 8 && $f->{opcode} != WS_CLOSE;
    return ['close', unpack('n', $f->{payload})] if $f->{opcode} == WS_CLOSE;
    $rsv //= $f->{rsv};
    $op //= $f->{opcode};
    $data .= $f->{payload};
    last if $f->{fin};
  }
  return undef unless defined $op;
  $data = $z->{inflate}->($data) if $rsv & RSV1;
  return [$rsv, $op, $data];
}

my $srv = start_server(app => $app, max_ws_message_size => 1 << 20);
ok($srv->port, 'server started') or BAIL_OUT($srv->log);

subtest 'negotiation: the 101 and the scope' => sub {
  my ($ws, $res, $ext) = open_ws($srv, 'permessage-deflate; client_max_window_bits');
  is($res->{status}, 101, 'a client offering permessage-deflate is upgraded');
  is($ext, 'permessage-deflate; server_max_window_bits=12', '... and answered with our window (12 bits, the default)');
  is_deeply(next_report($srv, 'extension')->{extension}, {server_no_context_takeover => 0, client_no_context_takeover => 0,
    server_max_window_bits => 12, client_max_window_bits => 15}, 'the scope shows the agreed parameters');
  $ws->send_close(1000);
  $ws->read_close;

  ($ws, $res, $ext) = open_ws($srv, 'permessage-deflate; server_no_context_takeover; server_max_window_bits=10');
  is($ext, 'permessage-deflate; server_no_context_takeover; server_max_window_bits=10',
    'server_no_context_takeover and a smaller window are honoured (RFC 7692 7.1.1.1, 7.1.2.1)');
  $ws->send_close(1000);
  $ws->read_close;

  ($ws, $res, $ext) = open_ws($srv, 'permessage-deflate; x-unknown=1, permessage-deflate; server_max_window_bits=8,'
    . ' permessage-deflate; client_no_context_takeover');
  is($ext, 'permessage-deflate; client_no_context_takeover; server_max_window_bits=12',
    'offers we cannot honour (an unknown parameter, an 8-bit window) are passed over for the next one');
  $ws->send_close(1000);
  $ws->read_close;
  next_report($srv, 'extension') for 1 .. 2;

  ($ws, $res, $ext) = open_ws($srv, 'x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=16');
  is($res->{status}, 101, 'nothing acceptable offered: upgraded all the same');
  is($ext, undef, '... without the extension');
  is(next_report($srv, 'extension')->{extension}, 'none', '... and no extension in the scope');
  $ws->send_close(1000);
  $ws->read_close;

  ($ws, $res, $ext) = open_ws($srv, 'permessage-deflate', path => '/own');
  is($ext, 'x-own', 'an app answering Sec-WebSocket-Extensions itself: its answer, not ours');
  $ws->send_frame(WS_TEXT, client_zlib()->{deflate}->('hello'), rsv => RSV1);
  my ($code) = $ws->read_close;
  is($code, 1002, '... and compressed frames are then a protocol error (1002)');
};

subtest 'compressed messages both ways' => sub {
  my ($ws, $res, $ext) = open_ws($srv, 'permessage-deflate');
  ok($ext, 'negotiated') or return;
  my $z = client_zlib();
  my $doc = $json->encode({items => [map { {id => $_, name => "item $_", tags => [qw(a b c)]} } 1 .. 20]});
  $ws->send_frame(WS_TEXT, $z->{deflate}->($doc), rsv => RSV1);
  my $m = read_msg($ws, $z);
  is_deeply([@$m[0, 1]], [RSV1, WS_TEXT], 'the echo is compressed (RSV1 on its frame)');
  is($m->[2], "echo: $doc", '... and inflates to the echo of what we sent, compressed');
  $ws->send_frame(WS_TEXT, $z->{deflate}->($doc), rsv => RSV1);
  is(read_msg($ws, $z)->[2], "echo: $doc", 'the same again (both contexts kept across messages)');

  my $random = join '', map { chr int rand 256 } 1 .. 1024;
  $ws->send_frame(WS_BINARY, $z->{deflate}->($random), rsv => RSV1);
  is(read_msg($ws, $z)->[2], "echo: $random", 'incompressible bytes');

  $ws->send_frame(WS_TEXT, "plain \xe2\x98\x83");
  is(read_msg($ws, $z)->[2], "echo: plain \xe2\x98\x83", 'an uncompressed message between compressed ones (RSV1 clear)');

  my $payload = $z->{deflate}->("frag" x 1000 . " \xe2\x98\x83");
  my $third = int(length($payload) / 3);
  $ws->send_frame(WS_TEXT, substr($payload, 0, $third), rsv => RSV1, fin => 0);
  $ws->send_frame(WS_CONTINUATION, substr($payload, $third, $third), fin => 0);
  $ws->send_frame(WS_CONTINUATION, substr($payload, 2 * $third), fin => 1);
  is(read_msg($ws, $z)->[2], "echo: " . "frag" x 1000 . " \xe2\x98\x83",
    'a compressed message in three frames (RSV1 on the first only)');

  my $big = 'x' x 500_000;
  $ws->send_frame(WS_TEXT, $z->{deflate}->($big), rsv => RSV1);
  is(read_msg($ws, $z)->[2], "echo: $big", 'a 500 kB message (a few hundred bytes compressed)');

  $ws->send_close(1000);
  my ($code) = $ws->read_close;
  is($code, 1000, 'the close handshake');
};

subtest 'bad input' => sub {
  my ($ws) = open_ws($srv, undef);
  $ws->send_frame(WS_TEXT, client_zlib()->{deflate}->('hi'), rsv => RSV1);
  my ($code) = $ws->read_close;
  is($code, 1002, 'RSV1 without the extension: 1002');

  ($ws) = open_ws($srv, 'permessage-deflate');
  my $z = client_zlib();
  $ws->send_frame(WS_TEXT, 'abc', fin => 0);
  $ws->send_frame(WS_CONTINUATION, $z->{deflate}->('def'), rsv => RSV1);
  ($code) = $ws->read_close;
  is($code, 1002, 'RSV1 on a continuation frame: 1002');

  ($ws) = open_ws($srv, 'permessage-deflate');
  $ws->send_frame(WS_TEXT, "\xff\xff\xff\xff", rsv => RSV1);
  ($code) = $ws->read_close;
  is($code, 1007, 'a corrupt DEFLATE stream: 1007 (data not consistent with the message, RFC 6455 7.4.1)');

  ($ws) = open_ws($srv, 'permessage-deflate');
  my $bomb = client_zlib()->{deflate}->("\0" x (8 << 20));
  cmp_ok(length $bomb, '<', 16384, 'a bomb: 8 MiB in ' . length($bomb) . ' bytes');
  $ws->send_frame(WS_BINARY, $bomb, rsv => RSV1);
  ($code) = $ws->read_close;
  is($code, 1009, 'inflating past max_ws_message_size (1 MiB): 1009');
  my @d;
  wait_for(sub { @d = map { $_->{disconnect} // () } $srv->reports; @d && $d[-1] == 1006 }, 5);
  is($d[-1], 1006, '... the app sees 1006 (PAGI spec: a message over the limit)');
  like($srv->log, qr/websocket closed with 1009/, '... logged');
};

is($srv->stop, 0, 'server exits 0');

subtest 'the options' => sub {
  my $off = start_server(app => $app, ws_compression => 0);
  my ($ws, $res, $ext) = open_ws($off, 'permessage-deflate');
  is($res->{status}, 101, '--no-ws-compression: upgraded');
  is($ext, undef, '... without the extension');
  $ws->send_close(1000);
  $ws->read_close;
  is($off->stop, 0, '... exits 0');

  my $tuned = start_server(app => $app, ws_compression_window_bits => 9, ws_compression_level => 1,
    ws_compression_no_context_takeover => 1);
  ($ws, $res, $ext) = open_ws($tuned, 'permessage-deflate');
  is($ext, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9',
    'window bits and no context takeover answered as configured');
  # Without takeover each message stands alone: a fresh inflater for each reads them
  for my $n (1, 2) {
    $ws->send_frame(WS_TEXT, client_zlib()->{deflate}->("msg $n " x 50), rsv => RSV1);
    my $m = read_msg($ws, client_zlib());
    is($m->[2], "echo: " . "msg $n " x 50, "message $n inflates on its own");
  }
  $ws->send_close(1000);
  $ws->read_close;
  is($tuned->stop, 0, '... exits 0');

  ok(!eval { PAGI::Server->new(app => $app, ws_compression_window_bits => 8); 1 }, 'a window of 8 bits is refused');
  like($@, qr/ws_compression_window_bits must be from 9 to 15/, '... saying why');
};

done_testing;
