use v5.32;
use warnings;
use experimental 'signatures';
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use Protocol::HTTP2::Client;
use PAGI::Server::Protocol::HTTP2;
use PAGI::Server::Protocol::HTTP1;
use PAGI::Test::H2 qw(frame settings hello get post DATA HEADERS SETTINGS ACK WINDOW_UPDATE END_STREAM);

# The HTTP/2 codec through its facade, on the active backend (PAGI_SERVER_BACKEND), with
# Protocol::HTTP2::Client as a client we did not write: the request hash the connection
# builds its scope from, bodies both ways, streaming, flow control by what the app
# consumed, resets, graceful shutdown, h2c by Upgrade, and the facade's own functions.

my $H2 = 'PAGI::Server::Protocol::HTTP2';
note "backend: $PAGI::Server::Protocol::HTTP2::IMPLEMENTATION";

# Moves bytes both ways until neither side has anything to say; $on_event gets each
# server event (and may respond). Returns the events.
sub pump ($client, $s, $on_event = sub { }) {
  my @all;
  for (1 .. 50) {
    my $to_server = '';
    while (my $f = $client->next_frame) { $to_server .= $f }
    my ($events, $error) = $s->feed($to_server);
    die "connection error: $error->{error}\n" if $error;
    for my $ev (@$events, @{$s->events}) { push @all, $ev; $on_event->($ev) }
    my $to_client = $s->output(1 << 20);
    push @all, @{$s->events};
    last if $to_server eq '' && $to_client eq '' && !@$events;
    $client->feed($to_client) if length $to_client;
  }
  return \@all;
}

sub session (%settings) {
  my ($s, $e) = PAGI::Server::Protocol::HTTP2::new_session(\%settings);
  die "new_session: $e->{error}\n" unless $s;
  return $s;
}

subtest 'the facade' => sub {
  is($H2->can('new_session'), "PAGI::Server::Protocol::HTTP2::$PAGI::Server::Protocol::HTTP2::IMPLEMENTATION"->can('new_session'),
    'new_session is the backend\'s own');
  isa_ok(session(), $PAGI::Server::Protocol::HTTP2::SESSION_CLASS);
  is(PAGI::Server::Protocol::HTTP2::is_preface($_->[0]), $_->[1], "is_preface('" . ($_->[0] =~ s/\r\n/\\r\\n/gr) . "')")
    for ["PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 1], ["PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0", 1], ['PRI *', undef],
    ['', undef], ['GET / HTTP/1.1', 0], ["PRI * HTTP/2.1\r\n", 0];
  for my $bad ([{bogus => 1}, qr/unknown setting\(s\): bogus/], [{max_frame_size => 100}, qr/max_frame_size must be an integer from 16384/],
    [{initial_window_size => 2**31}, qr/initial_window_size must be/], [{max_headers => -1}, qr/max_headers must be/],
    [{rst_rate_limit => [1]}, qr/rst_rate_limit must be \[burst, rate\]/], ['x', qr/settings must be a hash reference/]) {
    ok(!eval { PAGI::Server::Protocol::HTTP2::new_session($bad->[0]); 1 }, 'misuse croaks');
    like($@, $bad->[1], "... $bad->[1]");
  }
  my ($none, $e) = PAGI::Server::Protocol::HTTP2::new_session({upgrade => 'not base64!'});
  is($none, undef, 'a bad HTTP2-Settings value: no session');
  is_deeply($e, {error => 'bad_upgrade_settings', message => 'invalid http2-settings header'}, '... and why');
  is(PAGI::Server::Protocol::HTTP2::error_status('headers_too_large'), 431, 'error_status');
  is(PAGI::Server::Protocol::HTTP2::error_code('rapid_reset'), 2, 'error_code');
  is(PAGI::Server::Protocol::HTTP2::H2_CANCEL(), 8, 'the error code constants');
};

subtest 'a GET from Protocol::HTTP2::Client' => sub {
  # (a session takes the codec's Server field when it is made)
  PAGI::Server::Protocol::HTTP1::set_server_header('PAGI-Server');
  my $s = session();
  my $c = Protocol::HTTP2::Client->new;
  my $got;
  $c->request(':scheme' => 'http', ':authority' => 'localhost:5000', ':path' => '/caf%C3%A9?x=1', ':method' => 'GET',
    headers => ['accept' => 'text/event-stream', 'cookie' => 'a=1', 'cookie' => 'b=2'],
    on_done => sub ($headers, $data) { $got = [$headers, $data] });
  my $events = pump($c, $s, sub ($ev) {
    return unless $ev->[0] eq 'request';
    $s->respond($ev->[1], 200, [['Content-Type', 'text/plain']], 0);
    $s->send_data($ev->[1], 'hello, h2', 1);
  });
  my ($req) = grep { $_->[0] eq 'request' } @$events;
  is($req->[1], 1, 'stream 1');
  is($req->[3], 1, 'end_stream: no body');
  my $r = $req->[2];
  is_deeply([sort keys %$r], [qw(headers http_version method path query_string raw_path scheme sse)],
    'the keys: the scope\'s, and the facts that are set');
  is($r->{path}, "/caf\x{e9}", 'path: percent-decoded, then UTF-8 decoded');
  ok(utf8::is_utf8($r->{path}), '... a character string');
  is_deeply([@$r{qw(method raw_path query_string http_version scheme sse)}], ['GET', '/caf%C3%A9', 'x=1', '2', 'http', 1], 'the others');
  is_deeply($r->{headers}, [['host', 'localhost:5000'], ['accept', 'text/event-stream'], ['cookie', 'a=1; b=2']],
    'headers: host from :authority, cookies merged');
  ok($got, 'the client got the response');
  my %h = @{$got->[0]};
  is($h{':status'}, 200, ':status 200');
  is($h{'content-type'}, 'text/plain', 'the app\'s header, lowercased');
  is($h{server}, 'PAGI-Server', 'server added');
  like($h{date}, qr/\A\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\z/, 'date added');
  is($got->[1], 'hello, h2', 'the body');
  ok((grep { $_->[0] eq 'closed' && $_->[1] == 1 } @$events), 'a closed event once the response is written');
  is($s->open_streams, 0, 'no stream open');
};

subtest 'a POST body, consumed by the app; concurrent streams' => sub {
  my $s = session(initial_window_size => 16384);
  my $c = Protocol::HTTP2::Client->new;
  my $body = join '', map { chr(97 + $_ % 26) x 1000 } 0 .. 39;    # 40 000 bytes
  my %done;
  for my $path ('/a', '/b') {
    $c->request(':scheme' => 'http', ':authority' => 'h', ':path' => $path, ':method' => 'POST',
      headers => ['content-length' => length $body], data => $body,
      on_done => sub ($headers, $data) { $done{$path} = $data });
  }
  my (%got, %ended);
  pump($c, $s, sub ($ev) {
    if ($ev->[0] eq 'request') { is($ev->[2]{content_length}, 40000, "stream $ev->[1]: content_length") }
    if ($ev->[0] eq 'data') {
      $got{$ev->[1]} .= $ev->[2];
      # the app takes what it got: only then may the client send more
      $s->consumed($ev->[1], length $ev->[2]);
      if ($ev->[3]) {
        $ended{$ev->[1]} = 1;
        $s->respond($ev->[1], 200, [], 0);
        $s->send_data($ev->[1], "got " . length $got{$ev->[1]}, 1);
      }
    }
  });
  is_deeply([sort keys %ended], [1, 3], 'both bodies ended');
  is($got{$_}, $body, "stream $_: the whole body") for 1, 3;
  is_deeply(\%done, {'/a' => 'got 40000', '/b' => 'got 40000'}, 'both responses arrived');
};

subtest 'flow control follows the app' => sub {
  my $s = session(initial_window_size => 1000);
  my $c = PAGI::Test::H2->new;
  my $reader = PAGI::Test::H2->new;
  $reader->read($s->output);
  $s->feed(hello() . frame(SETTINGS, ACK, 0) . $c->headers(1, [post('/up')]));
  $reader->read($s->output);
  my ($ev) = $s->feed(frame(DATA, 0, 1, 'x' x 1000));
  is(length $ev->[0][2], 1000, 'a full window of body');
  my @frames = $reader->read($s->output);
  ok(!grep({ $_->[0] eq 'WINDOW_UPDATE' && $_->[2] == 1 } @frames), 'the stream window is not reopened while the app holds it');
  ok((grep { $_->[0] eq 'WINDOW_UPDATE' && $_->[2] == 0 } @frames) || 1, '(the connection window is, at its own pace)');
  my (undef, $error) = $s->feed(frame(DATA, 0, 1, 'y'));
  is($error && $error->{error}, 'flow_control_error', 'a byte more is a flow-control error');

  $s = session(initial_window_size => 1000);
  $reader = PAGI::Test::H2->new;
  $c = PAGI::Test::H2->new;
  $reader->read($s->output);
  $s->feed(hello() . frame(SETTINGS, ACK, 0) . $c->headers(1, [post('/up')]) . frame(DATA, 0, 1, 'x' x 600));
  $reader->read($s->output);
  $s->consumed(1, 600);
  @frames = $reader->read($s->output);
  is_deeply([grep { $_->[0] eq 'WINDOW_UPDATE' && $_->[2] == 1 } @frames], [['WINDOW_UPDATE', 0, 1, 600]],
    'once the app consumed half the window, a WINDOW_UPDATE for what it took');
};

subtest 'streaming a response, backpressure, trailers, resets' => sub {
  my $s = session();
  my $c = PAGI::Test::H2->new;
  my $reader = PAGI::Test::H2->new;
  $reader->read($s->output);
  $s->feed(hello(4 => 100) . $c->headers(1, [get('/stream', te => 'trailers')], END_STREAM) . $c->headers(3, [get('/other')], END_STREAM));
  is_deeply([$s->respond(1, 200, [['content-length', '250']], 0)], [1, 250], 'respond gives the app\'s content-length');
  is_deeply([$s->send_data(1, 'a' x 150, 0)], [1], 'send_data');
  is($s->buffered(1), 150, 'buffered: not yet framed');
  my @frames = $reader->read($s->output);
  is_deeply([map { [$_->[0], $_->[2], ref $_->[3] ? 'fields' : length $_->[3]] } @frames],
    [['SETTINGS', 0, 'fields'], ['HEADERS', 1, 'fields'], ['DATA', 1, 100]], 'the client\'s window lets 100 bytes out');
  is($s->buffered(1), 50, 'the rest waits');
  $s->feed(frame(WINDOW_UPDATE, 0, 1, pack 'N', 1000));
  $s->send_data(1, 'b' x 100, 0);
  is_deeply([$s->send_trailers(1, [['x-checksum', 'abc']])], [1], 'send_trailers');
  @frames = $reader->read($s->output);
  is_deeply([map { [$_->[0], $_->[1], $_->[2]] } @frames], [['DATA', 0, 1], ['HEADERS', 1, 1]], 'the body, then the trailers ending it');
  is_deeply($frames[1][3], [['x-checksum', 'abc']], '... the trailers');
  is_deeply($s->events, [['closed', 1]], 'closed');
  is_deeply([$s->send_data(1, 'x', 0)], [undef, 'stream closed'], 'a closed stream takes nothing');

  is_deeply([$s->respond(3, 200, [], 0)], [1, undef], 'stream 3');
  $s->send_data(3, 'partial', 0);
  my ($events) = $s->feed(frame(3, 0, 3, pack 'N', 8));
  is_deeply($events, [['reset', 3, 8]], 'the client resets stream 3: a reset event (the app gets a disconnect)');
  is($s->buffered(3), 0, '... its buffered body is gone');
};

subtest 'a response before the whole request body; a tunnel ends each side apart' => sub {
  my $s = session();
  my $c = PAGI::Test::H2->new;
  my $reader = PAGI::Test::H2->new;
  $reader->read($s->output);
  $s->feed(hello() . $c->headers(1, [post('/upload')]) . frame(DATA, 0, 1, 'part'));
  $s->respond(1, 413, [], 0);
  $s->send_data(1, 'too large', 1);
  my @frames = grep { $_->[0] ne 'SETTINGS' } $reader->read($s->output);
  is_deeply([map { [$_->[0], $_->[1], $_->[2]] } @frames], [['HEADERS', 0, 1], ['DATA', 1, 1], ['RST_STREAM', 0, 1]],
    'the response ends its side while the body is still coming: RST_STREAM follows END_STREAM (RFC 9113 8.1)');
  is($frames[2][3], 0, '... with NO_ERROR');
  is_deeply($s->events, [['closed', 1]], '... and the stream is closed, not reset');
  my ($events, $error) = $s->feed(frame(DATA, END_STREAM, 1, 'late'));
  is($error, undef, 'the body\'s late frames are no connection error');

  $s->feed($c->headers(3, [':method' => 'CONNECT', ':protocol' => 'websocket', ':scheme' => 'http',
    ':authority' => 'h', ':path' => '/ws', 'sec-websocket-version' => '13']));
  $s->respond(3, 200, [], 0);
  $s->send_data(3, "\x88\x02\x03\xe8", 1);
  @frames = $reader->read($s->output);
  is_deeply([map { [$_->[0], $_->[2]] } @frames], [['HEADERS', 3], ['DATA', 3]],
    'a WebSocket (extended CONNECT): our END_STREAM, no RST_STREAM (RFC 8441 5: the client ends its side)');
  is_deeply($s->events, [], '... the stream stays half-closed');
  ($events) = $s->feed(frame(DATA, END_STREAM, 3, "\x88\x82abcd" . "\x62\xea"));
  is_deeply([grep { $_->[0] ne 'data' } @$events, @{$s->events}], [['closed', 3]], 'the client\'s END_STREAM closes it');
};

subtest 'graceful shutdown' => sub {
  my $s = session();
  my $c = Protocol::HTTP2::Client->new;
  my @done;
  $c->request(':scheme' => 'http', ':authority' => 'h', ':path' => "/$_", ':method' => 'GET', on_done => sub { push @done, $_[1] })
    for 1, 2;
  my @pending;
  pump($c, $s, sub ($ev) { push @pending, $ev->[1] if $ev->[0] eq 'request' });
  $s->goaway(0, 1);
  $s->goaway(0, 0);
  ok(!$s->is_closed, 'in-flight streams keep the session open');
  for my $id (@pending) { $s->respond($id, 200, [], 0); $s->send_data($id, "r$id", 1) }
  pump($c, $s);
  is_deeply([sort @done], ['r1', 'r3'], 'the streams in flight finished');
  ok($s->is_closed, 'then the session is closed');
  is($s->last_stream_id, 3, 'last_stream_id');
};

subtest 'h2c by Upgrade: stream 1 is the HTTP/1.1 request' => sub {
  # (as curl sends it: the SETTINGS payload, base64url; Protocol::HTTP2::Client puts a
  # whole frame there, which RFC 7540 3.2.1 does not allow: refused)
  my $http1 = "GET /up HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    . "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";
  my ($req) = PAGI::Server::Protocol::HTTP1::parse_request($http1, 16384, 100, 8192);
  is($req->{upgrade}, 'h2c', 'an HTTP/1.1 request with Upgrade: h2c');
  my ($settings) = map { $_->[1] } grep { $_->[0] eq 'http2-settings' } @{$req->{headers}};
  my $s = session(upgrade => $settings);
  is($s->open_streams, 1, 'stream 1 is open (half-closed: the request is complete)');
  my $reader = PAGI::Test::H2->new;
  my $c = PAGI::Test::H2->new;
  is(($reader->read($s->output))[0][0], 'SETTINGS', 'the server\'s SETTINGS first (after the 101)');
  my ($events) = $s->feed(hello() . $c->headers(3, [get('/next')], END_STREAM));
  is_deeply([map { [$_->[0], $_->[1]] } @$events], [['request', 3]], 'the client\'s next request is stream 3');
  $s->respond(1, 200, [], 0);
  $s->send_data(1, 'upgraded', 1);
  my @frames = $reader->read($s->output);
  is_deeply([map { [$_->[0], $_->[2]] } grep { $_->[2] } @frames], [['HEADERS', 1], ['DATA', 1]], 'the response on stream 1');
  is($frames[-1][3], 'upgraded', '... its body');
  is_deeply($s->events, [['closed', 1]], 'stream 1 closes');
  my $broken = "AAAABAAAAAAA";    # what Protocol::HTTP2::Client sends
  my (undef, $e) = PAGI::Server::Protocol::HTTP2::new_session({upgrade => $broken});
  is($e && $e->{error}, 'bad_upgrade_settings', 'a whole frame in HTTP2-Settings is refused');
};

done_testing;
