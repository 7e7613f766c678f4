use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use Time::HiRes ();
use Future::AsyncAwait;
use lib 't/lib';
use PAGI::Test::Server qw(:all);
use PAGI::Test::WebSocket qw(ws_connect ws_request client_frame);

# RFC 6455 on the wire, with frames built by the test (t/lib/PAGI/Test/WebSocket.pm):
# fragmentation and reassembly, control frames inside fragmented messages, ping/pong,
# the close handshake, and what each protocol violation gets: 1002 (unmasked, RSV bits,
# reserved opcodes, bad control frames, bad continuation, bad close codes), 1007
# (invalid UTF-8, also across fragments and failing fast, and in close reasons), 1009
# (message over max_ws_message_size; the app sees 1006), 1006 (TCP drop, keepalive
# timeout), plus websocket.keepalive pings. Runs on either backend.

use constant {WS_CONT => 0, WS_TEXT => 1, WS_BINARY => 2, WS_CLOSE => 8, WS_PING => 9, WS_PONG => 10};
use constant MAX_MESSAGE => 1000;

my $app = async sub ($scope, $receive, $send) {
  return if $scope->{type} eq 'lifespan';
  my $id = $scope->{query_string};
  await $receive->();
  await $send->({type => 'websocket.accept'});
  if ($scope->{path} eq '/slow') {
    # Not reading for a while: the server queues, then stops reading the socket
    require IO::Async::Loop;
    await IO::Async::Loop->new->delay_future(after => 1);
  }
  if ($scope->{path} eq '/flood') {
    my $data = 'x' x 1024;
    for my $i (1 .. 30000) { await $send->({type => 'websocket.send', bytes => $data}) }
  }
  if ($scope->{path} eq '/keepalive') {
    my ($interval, $timeout) = split /,/, $id;
    await $send->({type => 'websocket.keepalive', interval => $interval,
      ($timeout ? (timeout => $timeout) : ())});
  }
  while (1) {
    my $ev = await $receive->();
    report(id => $id, ev => $ev);
    last if $ev->{type} eq 'websocket.disconnect';
    await $send->({type => 'websocket.send',
      defined $ev->{text} ? (text => $ev->{text}) : (bytes => $ev->{bytes})});
  }
};

my $srv = start_server(app => $app, max_ws_message_size => MAX_MESSAGE, ws_close_timeout => 2);
ok($srv->port, 'server started') or BAIL_OUT('server did not start: ' . $srv->log);
my $port = $srv->port;

my $n = 0;
sub connect_ws ($path = '/echo', $id = ++$n) {
  my ($ws, $res) = ws_connect($port, path => "$path?$id");
  die "handshake failed\n" unless $res && $res->{status} == 101;
  return ($ws, $id);
}

# The app's events on connection $id, waiting until one of them is a disconnect
sub events_of ($id, $timeout = 5) {
  my @ev;
  wait_for(sub {
    @ev = map { $_->{ev} } grep { $_->{id} eq $id } $srv->reports;
    grep { $_->{type} eq 'websocket.disconnect' } @ev;
  }, $timeout);
  return @ev;
}

# Sends $frames (bytes), expects a Close with $code and the connection closed, and
# the app's disconnect with $app_code and $reason
sub violation ($name, $frames, $code, $app_code = $code, $reason = 'protocol_error') {
  my ($ws, $id) = connect_ws();
  $ws->send(ref $frames ? join('', @$frames) : $frames);
  my ($got) = $ws->read_close;
  is($got, $code, "$name: Close $code");
  ok($ws->wait_closed(5), "$name: connection closed");
  my @ev = events_of($id);
  is_deeply($ev[-1], {type => 'websocket.disconnect', code => $app_code, reason => $reason},
    "$name: the app sees $app_code $reason");
  return @ev;
}

subtest 'fragmentation and reassembly' => sub {
  my ($ws, $id) = connect_ws();
  $ws->send(client_frame(WS_TEXT, 'Hel', fin => 0) . client_frame(WS_CONT, 'lo', fin => 0)
    . client_frame(WS_CONT, ' world'));
  is_deeply($ws->read_message, {text => 'Hello world'}, 'three text fragments make one message');
  $ws->send(client_frame(WS_BINARY, "\x00\x01", fin => 0) . client_frame(WS_CONT, "\xff"));
  is_deeply($ws->read_message, {bytes => "\x00\x01\xff"}, 'binary fragments');
  # A character split across fragments, and empty fragments
  $ws->send(client_frame(WS_TEXT, "snow \xe2", fin => 0) . client_frame(WS_CONT, "\x98", fin => 0)
    . client_frame(WS_CONT, '', fin => 0) . client_frame(WS_CONT, "\x83!"));
  is_deeply($ws->read_message, {text => "snow \x{2603}!"}, 'a UTF-8 character split across fragments');
  $ws->send(join '', map({ client_frame($_ ? WS_CONT : WS_TEXT, $_ == 3 ? "\x{80}" : substr("\xf0\x9f\x98", $_, 1), fin => 0) } 0 .. 3),
    client_frame(WS_CONT, "\xf0\x9f", fin => 0), client_frame(WS_CONT, "\x98\x80"));
  is_deeply($ws->read_message, {text => "\x{1f600}\x{1f600}"}, 'a 4-byte character one byte per fragment, and 2+2');
  # One byte at a time, and frames coalesced with the handshake are covered below
  ok($ws->send_slowly([split //, client_frame(WS_TEXT, 'slow')], 0.001), 'sent byte by byte');
  is_deeply($ws->read_message, {text => 'slow'}, 'a frame trickled in byte by byte');
  $ws->send_close(1000);
  is(($ws->read_close)[0], 1000, 'close');
  my @ev = events_of($id);
  is_deeply([map { $_->{text} // $_->{bytes} // $_->{code} } @ev],
    ['Hello world', "\x00\x01\xff", "snow \x{2603}!", "\x{1f600}\x{1f600}", 'slow', 1000],
    'the app saw whole messages');
};

subtest 'frames sent together with the handshake' => sub {
  my $c = PAGI::Test::Server::http_connect($port);
  bless $c, 'PAGI::Test::WebSocket';
  my ($req) = ws_request(path => '/echo?pipelined');
  $c->send($req . client_frame(WS_TEXT, 'early') . client_frame(WS_PING, 'p'));
  wait_for(sub { $c->pause(0.05); $c->buffer =~ /\r\n\r\n/ }, 5);
  my ($res, $pos) = PAGI::Test::Server::parse_response($c->buffer, 0);
  is($res->{status}, 101, 'handshake answered with 101');
  $c->{pos} += $pos;
  my $f = $c->read_frame;
  is_deeply([$f->{opcode}, $f->{payload}], [WS_PONG, 'p'], 'pong for the early ping');
  is_deeply($c->read_message, {text => 'early'}, 'the early message is delivered after accept');
};

subtest 'control frames inside a fragmented message; ping/pong' => sub {
  my ($ws, $id) = connect_ws();
  $ws->send(client_frame(WS_TEXT, 'frag', fin => 0) . client_frame(WS_PING, 'in the middle')
    . client_frame(WS_PONG, 'unsolicited') . client_frame(WS_CONT, 'ment'));
  my $f = $ws->read_frame;
  is($f->{opcode}, WS_PONG, 'a pong arrives first');
  is($f->{payload}, 'in the middle', 'with the ping payload');
  is($f->{fin}, 1, 'FIN set');
  is($f->{masked}, 0, 'server frames are not masked');
  is_deeply($ws->read_message, {text => 'fragment'}, 'then the reassembled message');
  for my $payload ('', 'x' x 125, "\x00\xff") {
    $ws->send_ping($payload);
    my $p = $ws->read_frame;
    is_deeply([$p->{opcode}, $p->{payload}], [WS_PONG, $payload], 'pong echoes a ' . length($payload) . '-byte ping');
  }
  $ws->send_close(1001, 'going');
  my ($code, $reason) = $ws->read_close;
  is($code, 1001, 'the close handshake echoes the code');
  my @ev = events_of($id);
  is_deeply($ev[-1], {type => 'websocket.disconnect', code => 1001, reason => 'going'}, 'app sees 1001');
  is(scalar(grep { $_->{type} eq 'websocket.receive' } @ev), 1, 'pings and pongs are not app events');
};

subtest 'protocol errors: 1002' => sub {
  violation('unmasked frame', client_frame(WS_TEXT, 'x', mask => 0), 1002);
  violation("RSV$_ bit", client_frame(WS_TEXT, 'x', rsv => $_ == 3 ? 1 : $_ == 2 ? 2 : 4), 1002) for 1 .. 3;
  violation("reserved opcode $_", client_frame($_, 'x'), 1002) for 3, 7, 0xB, 0xF;
  violation('ping over 125 bytes', client_frame(WS_PING, 'x' x 126), 1002);
  violation('close over 125 bytes', client_frame(WS_CLOSE, pack('n', 1000) . 'x' x 124), 1002);
  violation('fragmented ping', client_frame(WS_PING, 'x', fin => 0), 1002);
  violation('continuation without a start', client_frame(WS_CONT, 'x'), 1002);
  violation('new message inside a fragmented one',
    [client_frame(WS_TEXT, 'a', fin => 0), client_frame(WS_TEXT, 'b')], 1002);
  violation('new binary message inside a fragmented text one',
    [client_frame(WS_TEXT, 'a', fin => 0), client_frame(WS_BINARY, 'b', fin => 0)], 1002);
  violation("close code $_", client_frame(WS_CLOSE, pack('n', $_)), 1002)
    for 0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000;
  violation('close payload of 1 byte', client_frame(WS_CLOSE, "\x03"), 1002);
  violation('64-bit length with the top bit set',
    pack('CCNN', 0x81, 0xff, 0x80000000, 1) . 'mask', 1002);
};

subtest 'invalid UTF-8: 1007' => sub {
  violation('0xff in text', client_frame(WS_TEXT, "ok \xff"), 1007);
  violation('overlong /', client_frame(WS_TEXT, "\xc0\xaf"), 1007);
  violation('surrogate', client_frame(WS_TEXT, "\xed\xa0\x80"), 1007);
  violation('above U+10FFFF', client_frame(WS_TEXT, "\xf4\x90\x80\x80"), 1007);
  violation('truncated at the end of the message', client_frame(WS_TEXT, "ab\xe2\x98"), 1007);
  violation('invalid across fragments',
    [client_frame(WS_TEXT, "a\xc3", fin => 0), client_frame(WS_CONT, "\x28b")], 1007);
  violation('invalid across three fragments',
    [client_frame(WS_TEXT, "ok\xf0", fin => 0), client_frame(WS_CONT, "\x9f", fin => 0),
     client_frame(WS_CONT, "\x98A")], 1007);
  violation('a valid message, then an invalid fragment',
    [client_frame(WS_TEXT, "\xc3\xa9" x 10, fin => 0), client_frame(WS_CONT, "\xc3\xa9\xed\xbf\xbf")], 1007);
  violation('close reason', client_frame(WS_CLOSE, pack('n', 1000) . "bad \xff"), 1007);
  # Fail fast: the 1007 comes before the final fragment is sent
  my ($ws, $id) = connect_ws();
  $ws->send(client_frame(WS_TEXT, "fine", fin => 0) . client_frame(WS_CONT, "\xf8\x88", fin => 0));
  my ($code) = $ws->read_close(5);
  is($code, 1007, 'a non-final fragment with invalid UTF-8 gets 1007 at once');
  # Binary messages are not checked
  ($ws, $id) = connect_ws();
  $ws->send_binary("\xff\xfe");
  is_deeply($ws->read_message, {bytes => "\xff\xfe"}, 'binary is not UTF-8 checked');
};

subtest 'a text message in many fragments is checked in linear time' => sub {
  # Rechecking the whole message per fragment made 1000 fragments of 2 KB take ~40 s
  my $big = start_server(app => $app);
  my ($ws, $res) = ws_connect($big->port, path => '/echo?linear', timeout => 60);
  my $chunk = "\xd0\x96" x 1024;
  my $t0 = Time::HiRes::time();
  $ws->send(join('', map { client_frame($_ == 1 ? WS_TEXT : WS_CONT, $chunk, fin => 0) } 1 .. 1000)
    . client_frame(WS_CONT, 'end'));
  my $m = $ws->read_message(60) || {};
  my $took = Time::HiRes::time() - $t0;
  is(length($m->{text} // ''), 1024 * 1000 + 3, 'the 2 MB message arrives');
  cmp_ok($took, '<', 8, sprintf('in %.2fs', $took));
  $big->stop;
};

subtest 'message size limit: 1009 on the wire, 1006 for the app' => sub {
  violation('one frame over the limit', client_frame(WS_BINARY, 'x' x (MAX_MESSAGE + 1)), 1009, 1006);
  violation('fragments adding up to over the limit',
    [client_frame(WS_TEXT, 'x' x 600, fin => 0), client_frame(WS_CONT, 'y' x 600)], 1009, 1006);
  my ($ws) = connect_ws();
  $ws->send_binary('z' x MAX_MESSAGE);
  is(length(($ws->read_message || {})->{bytes} // ''), MAX_MESSAGE, 'exactly the limit is fine');
};

subtest 'an app that reads slowly: nothing lost, order kept' => sub {
  my ($ws, $id) = connect_ws('/slow');
  my $count = 300;
  $ws->send(join '', map { client_frame(WS_TEXT, "m$_ " . ('x' x 900)) } 1 .. $count);
  my @got;
  while (@got < $count) {
    my $m = $ws->read_message(5) or last;
    push @got, $m->{text} =~ /\Am([0-9]+) / ? $1 : 'bad';
  }
  is_deeply(\@got, [1 .. $count], "all $count messages echoed, in order");
  $ws->send_close(1000);
};

subtest 'random bytes after the handshake: no crash, no warning' => sub {
  srand(6455);
  my $closed = 0;
  for my $i (1 .. 40) {
    my ($ws) = connect_ws();
    my $garbage = join '', map { chr int rand 256 } 1 .. 1 + int rand 300;
    $ws->send($garbage);
    $closed++ if $ws->wait_closed(0.3);
    $ws->close;
  }
  note "$closed of 40 garbage connections were closed by the server";
  cmp_ok($closed, '>', 20, 'most garbage is refused at once (the rest waits for more bytes)');
  my ($ws) = connect_ws();
  $ws->send_text('still here');
  is_deeply($ws->read_message, {text => 'still here'}, 'the server still serves');
  $ws->send_close(1000);
  unlike($srv->log, qr/ at \S+ line \d+/, 'no Perl warning or error in the server log');
};

subtest 'a client that stops reading: 1006 write_timeout' => sub {
  my $s2 = start_server(app => $app, request_timeout => 1);
  my ($ws) = ws_connect($s2->port, path => '/flood?flood');
  my @ev;
  wait_for(sub { @ev = map { $_->{ev} } grep { $_->{id} eq 'flood' } $s2->reports; @ev }, 15);
  is_deeply($ev[0], {type => 'websocket.disconnect', code => 1006, reason => 'write_timeout'},
    'the app is told 1006 write_timeout');
  $ws->close;
  is($s2->stop, 0, 'server exits 0');
};

subtest 'abrupt TCP drop: 1006 client_closed' => sub {
  my ($ws, $id) = connect_ws();
  $ws->send(client_frame(WS_TEXT, 'half', fin => 0) . substr(client_frame(WS_CONT, 'rest'), 0, 3));
  $ws->pause(0.1);
  $ws->close;
  my @ev = events_of($id);
  is_deeply($ev[-1], {type => 'websocket.disconnect', code => 1006, reason => 'client_closed'},
    'a drop mid-message is 1006 client_closed');
};

subtest 'websocket.keepalive' => sub {
  my ($ws, $id) = connect_ws('/keepalive', '1');
  my @pings;
  my $deadline = time + 5;
  while (@pings < 2 && time < $deadline) {
    my $f = $ws->read_frame(1) or next;
    next unless $f->{opcode} == WS_PING;
    push @pings, $f;
    $ws->send_frame(WS_PONG, $f->{payload});
  }
  is(scalar @pings, 2, 'pings arrive on the interval');
  $ws->send_text('alive');
  is_deeply($ws->read_message, {text => 'alive'}, 'still open after answering them');
  $ws->send_close(1000);
  ($ws, $id) = connect_ws('/keepalive', '1,1');
  ok($ws->wait_closed(6), 'no pong within the timeout: the server drops the connection');
  my @ev = events_of($id);
  is_deeply($ev[-1], {type => 'websocket.disconnect', code => 1006, reason => 'keepalive_timeout'},
    'the app sees 1006 keepalive_timeout');
};

subtest 'websocket.keepalive below a second: interval 0.2, timeout 0.3' => sub {
  my ($ws, $id) = connect_ws('/keepalive', '0.2');
  my $pings = 0;
  my $t0 = Time::HiRes::time();
  while (Time::HiRes::time() - $t0 < 1.0) {
    my $f = $ws->read_frame(0.1) or next;
    next unless $f->{opcode} == WS_PING;
    $pings++;
    $ws->send_frame(WS_PONG, $f->{payload});
  }
  cmp_ok($pings, '>=', 3, "at least 3 pings in 1 s (got $pings)");
  cmp_ok($pings, '<=', 7, "at most 7 pings in 1 s (got $pings)");
  $ws->send_close(1000);

  ($ws, $id) = connect_ws('/keepalive', '0.2,0.3');
  $t0 = Time::HiRes::time();
  ok($ws->wait_closed(3), 'pings unanswered: dropped');
  my $took = Time::HiRes::time() - $t0;
  cmp_ok($took, '<', 1.5, sprintf('after the first ping and its 0.3 s timeout, not a whole-second tick (%.2f s)', $took));
  my @ev = events_of($id);
  is_deeply($ev[-1], {type => 'websocket.disconnect', code => 1006, reason => 'keepalive_timeout'},
    'the app sees 1006 keepalive_timeout');
};

is($srv->stop, 0, 'server exits 0');

subtest 'shutdown: a peer that never answers the 1001 gets dropped (1006 server_shutdown)' => sub {
  my $s2 = start_server(app => $app, shutdown_timeout => 1, ws_close_timeout => 30);
  my ($ws, $res) = ws_connect($s2->port, path => '/echo?shutdown');
  is($res->{status}, 101, 'open');
  kill 'TERM', $s2->pid;
  is(($ws->read_close(5))[0], 1001, 'Close 1001 first');
  ok($ws->wait_closed(5), 'then, unanswered, the connection is dropped after shutdown_timeout');
  is($s2->wait_exit(10), 0, 'server exits 0');
  my ($ev) = map { $_->{ev} } grep { $_->{id} eq 'shutdown' } $s2->reports;
  is_deeply($ev, {type => 'websocket.disconnect', code => 1006, reason => 'server_shutdown'},
    'the app sees 1006 server_shutdown');
};
unlike($srv->log, qr/PAGI-TEST-CHILD-DIED/, 'no crash in the server');
done_testing;
