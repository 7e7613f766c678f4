use v5.32;
use warnings;
use experimental 'signatures';
use Test::More;
use File::Temp ();
use JSON::PP ();
use IO::Socket::IP;
use IO::Select;
use FindBin;
use lib "$FindBin::Bin/lib";
use PAGI::Test::Server qw(:all);
use POSIX ();

# HTTP/2 served (--http2), on the active backend, with clients nobody here wrote: curl
# (h2c by prior knowledge and by Upgrade, h2 over TLS by ALPN), nghttp, h2load and
# Python's h2 library (t/lib/h2_client.py: RFC 8441 WebSockets, flow control, 100
# continue, resets, backpressure, a graceful stop). Every scope type over HTTP/2:
# http (http_version 2), sse, websocket.

my $curl = `curl --version 2>/dev/null`;
plan skip_all => 'curl with HTTP/2 (nghttp2) is needed' unless $curl =~ /nghttp2/;
my ($python) = grep { system("$_ -c 'import h2' 2>/dev/null") == 0 } 'python3', '/usr/bin/python3';

my $dir = File::Temp->newdir;
my $APP = "$dir/app.pl";
open(my $fh, '>', $APP) or die $!;
print {$fh} <<'APP';
use strict;
use warnings;
use experimental 'signatures';
use Future::AsyncAwait;
use IO::Async::Loop;
use JSON::PP ();
use IO::Socket::IP;
use IO::Select;

my $json = JSON::PP->new->canonical;
my $loop = IO::Async::Loop->new;
my ($release, %report, $big, $kept);

async sub body ($receive) {
  my $body = '';
  while (1) {
    my $ev = await $receive->();
    return undef if $ev->{type} ne 'http.request';
    $body .= $ev->{body};
    return $body unless $ev->{more};
  }
}

async sub respond ($send, $status, $body, @headers) {
  await $send->({type => 'http.response.start', status => $status,
    headers => [['content-type', 'text/plain'], ['content-length', length $body], @headers]});
  await $send->({type => 'http.response.body', body => $body});
}

async sub websocket ($scope, $receive, $send) {
  my $ev = await $receive->();
  await $send->({type => 'websocket.accept', subprotocol => $scope->{subprotocols}[0]});
  while (1) {
    $ev = await $receive->();
    last if $ev->{type} eq 'websocket.disconnect';
    await $send->({type => 'websocket.send', text => "echo $ev->{text} over HTTP/$scope->{http_version}"});
  }
}

async sub sse ($scope, $receive, $send) {
  await $send->({type => 'sse.start'});
  for my $n (1 .. 3) { await $send->({type => 'sse.send', event => 'n', data => "$n of $scope->{http_version}"}) }
  await $send->({type => 'sse.close'});
}

async sub {
  my ($scope, $receive, $send) = @_;
  return if $scope->{type} eq 'lifespan';
  return await websocket($scope, $receive, $send) if $scope->{type} eq 'websocket';
  return await sse($scope, $receive, $send) if $scope->{type} eq 'sse';
  my $path = $scope->{path};
  if ($path eq '/echo') {
    my $body = await body($receive);
    return await respond($send, 200, "got $body");
  }
  if ($path eq '/slowread') {
    await($release //= $loop->new_future);
    my $body = await body($receive);
    return await respond($send, 200, 'read ' . length($body));
  }
  if ($path eq '/release') {
    ($release //= $loop->new_future)->done unless $release && $release->is_ready;
    return await respond($send, 200, 'released');
  }
  if ($path eq '/wait-disconnect') {
    while (1) {
      my $ev = await $receive->();
      if ($ev->{type} eq 'http.disconnect') { $report{disconnect} = 1; return }
    }
  }
  if ($path eq '/reported') { return await respond($send, 200, $json->encode(\%report)) }
  if ($path eq '/linger') {
    # The response is complete, and the stream closed by the time the app returns
    $kept = $scope->{'pagi.connection'};
    await respond($send, 200, 'done');
    await $loop->delay_future(after => 0.3);
    return;
  }
  if ($path eq '/kept') {
    return await respond($send, 200, $json->encode({connected => $kept->is_connected ? 1 : 0,
      reason => $kept->disconnect_reason}));
  }
  if ($path eq '/delay') {
    my ($s, $i) = $scope->{query_string} =~ /s=([0-9.]+)&i=(\w+)/;
    await $loop->delay_future(after => $s) if $s > 0;
    return await respond($send, 200, "i=$i");
  }
  if ($path eq '/big') {
    # 1 MiB in 16 KiB pieces, each send waiting as the stream's buffer says
    # (the piece is made once: Future::AsyncAwait 0.63 loses a constant folded into a
    # hash built after an await, such as 'b' x 16384)
    $big = 0;
    my $piece = 'b' x 16384;
    await $send->({type => 'http.response.start', status => 200, headers => [['content-type', 'text/plain']]});
    for my $n (1 .. 64) {
      await $send->({type => 'http.response.body', body => $piece, more => 1});
      $big += 16384;
    }
    return await $send->({type => 'http.response.body', body => ''});
  }
  if ($path eq '/transport-report') {
    return await respond($send, 200, "big sent $big of 1048576, high water "
      . $scope->{'pagi.transport'}->high_water_mark);
  }
  if ($path eq '/trailers') {
    await $send->({type => 'http.response.start', status => 200, trailers => 1,
      headers => [['content-type', 'application/grpc']]});
    await $send->({type => 'http.response.body', body => 'part1', more => 1});
    await $send->({type => 'http.response.body', body => 'part2', more => 1});
    return await $send->({type => 'http.response.trailers', headers => [['grpc-status', '0'], ['grpc-message', 'ok']]});
  }
  my $body = await body($receive);
  my $c = $scope->{'pagi.connection'};
  await respond($send, 200, $json->encode({http_version => $scope->{http_version}, method => $scope->{method},
    path => $path, raw_path => $scope->{raw_path}, query_string => $scope->{query_string}, scheme => $scope->{scheme},
    host => (map { $_->[1] } grep { $_->[0] eq 'host' } @{$scope->{headers}})[0],
    header_names => [map { $_->[0] } @{$scope->{headers}}], client => ref $scope->{client},
    connection => ref $c, connected => $c->is_connected, transport => ref $scope->{'pagi.transport'},
    tls => $scope->{extensions}{tls} ? 1 : 0, body => $body}));
};
APP
close $fh;

my $json = JSON::PP->new;
sub curl (@args) {
  my $out = `curl -s -S --max-time 10 @args 2>&1`;
  return $out;
}
sub scope_of ($text) { my $r = eval { $json->decode($text) }; return $r // {raw => $text} }

my $srv = start_cli(args => [$APP, '--port', 0, '--http2', '--access-log', "$dir/access.log"]);
my $port = $srv->port or BAIL_OUT('the server did not start: ' . $srv->log);
my $url = "http://127.0.0.1:$port";

subtest 'h2c by prior knowledge: the http scope' => sub {
  my $s = scope_of(curl('--http2-prior-knowledge', "'$url/a%20b?x=1&y=%20'"));
  is($s->{http_version}, '2', 'http_version 2');
  is($s->{method}, 'GET', 'method');
  is($s->{path}, '/a b', 'path decoded');
  is($s->{raw_path}, '/a%20b', 'raw_path as sent');
  is($s->{query_string}, 'x=1&y=%20', 'query_string');
  is($s->{scheme}, 'http', 'scheme');
  is($s->{host}, "127.0.0.1:$port", 'host from :authority');
  ok(!grep({ /\A:/ } @{$s->{header_names}}), 'no pseudo-header fields in headers');
  is($s->{connection}, 'PAGI::Server::ConnectionState', 'pagi.connection (per stream)');
  is($s->{transport}, 'PAGI::Server::Transport', 'pagi.transport (per stream)');
  is($s->{client}, 'ARRAY', 'client address');
  $s = scope_of(curl('--http2-prior-knowledge', '--data-binary', 'hello-body', "$url/post"));
  is($s->{method}, 'POST', 'a POST');
  is($s->{body}, 'hello-body', 'its body arrives');
  my $head = curl('--http2-prior-knowledge', '-I', "$url/");
  like($head, qr{\AHTTP/2 200}, 'HEAD: 200');
  like($head, qr/content-length: \d+/i, '... with the app\'s content-length');
  my $big = 'z' x 300_000;
  open(my $b, '>', "$dir/big.bin") or die $!;
  print {$b} $big;
  close $b;
  is(curl('--http2-prior-knowledge', '--data-binary', "\@$dir/big.bin", "$url/echo"), "got $big",
    'a 300 KB body (more than a window) arrives whole');
};

subtest 'h2c by Upgrade: the request is stream 1' => sub {
  my $out = curl('-v', '--http2', "$url/up");
  like($out, qr{< HTTP/1\.1 101 Switching Protocols}, '101 Switching Protocols');
  like($out, qr{< Upgrade: h2c}i, '... Upgrade: h2c');
  like($out, qr{< HTTP/2 200}, 'then the response over HTTP/2');
  my ($json_body) = $out =~ /(\{.*\})/;
  my $s = scope_of($json_body);
  is($s->{http_version}, '2', "the upgraded request's scope says 2");
  ok(!grep({ $_ eq 'http2-settings' || $_ eq 'upgrade' } @{$s->{header_names}}), '... without the upgrade fields');
  # With a body, the upgrade is ignored: served as HTTP/1.1
  $out = curl('-v', '--http2', '--data-binary', 'xyz', "$url/echo");
  unlike($out, qr/101 Switching/, 'a request with a body is not upgraded');
  like($out, qr/got xyz/, '... and served as HTTP/1.1');
  like(curl("$url/plain"), qr/"http_version":"1\.1"/, 'plain HTTP/1.1 still served on the port');
  # A bad HTTP2-Settings: no 101 at all, the request is served as HTTP/1.1, also when
  # it was pipelined behind a request the app answers later (no read under way then)
  my $c = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $port) or die "connect: $!";
  my $upgrade = "GET /plain HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    . "Upgrade: h2c\r\nHTTP2-Settings: !!not base64url!!\r\n\r\n";
  print {$c} "GET /delay?s=0.2&i=first HTTP/1.1\r\nHost: x\r\n\r\n" . $upgrade
    . "GET /delay?s=0&i=last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  my $got = '';
  while (1) {
    my $r = IO::Select->new($c)->can_read(5) ? sysread($c, $got, 65536, length $got) : 0;
    last unless $r;
  }
  unlike($got, qr/101 Switching/, 'a bad HTTP2-Settings, pipelined behind a delayed response: no 101');
  is(scalar(() = $got =~ m{HTTP/1\.1 200 }g), 3, '... three HTTP/1.1 responses on the connection');
  like($got, qr/"http_version":"1\.1"/, '... the upgrade request served as HTTP/1.1');
  like($got, qr/i=first.*"http_version".*i=last/s, '... in order');
};

subtest 'a clean end is no disconnect, also when the stream closed before the app returned' => sub {
  # (one connection that stays open until the app has returned: a slower stream beside it)
  my $out = `nghttp $url/linger '$url/delay?s=0.8&i=beside' 2>&1`;
  like($out, qr/done/, 'the response');
  like($out, qr/i=beside/, '... and the stream beside it, on the same connection');
  is_deeply($json->decode(curl('--http2-prior-knowledge', "$url/kept")), {connected => 1, reason => undef},
    'its pagi.connection: still is_connected, no disconnect_reason (as after a clean end on HTTP/1.1)');
};

subtest 'multiplexed streams, answered as each is ready' => sub {
  plan skip_all => "Python's h2 is not installed" unless $python;
  my $r = $json->decode(`$python $FindBin::Bin/lib/h2_client.py many $port 20`);
  is_deeply($r->{bodies}, [map { "i=$_" } 0 .. 19], 'twenty streams on one connection, each its own body');
  my @fast = grep { $_ % 4 == 3 } @{$r->{order}};
  my ($first_slow) = grep { $r->{order}[$_] % 4 == 1 } 0 .. $#{$r->{order}};
  ok($first_slow >= 10, 'the fast ones finished before the slow ones (no head-of-line blocking)')
    or diag "order @{$r->{order}}";
};

subtest 'response streaming with trailers (gRPC style)' => sub {
  my $out = `nghttp -v $url/trailers 2>&1`;
  like($out, qr/part1part2/, 'the body pieces');
  like($out, qr/recv \(stream_id=\d+\) grpc-status: 0/, 'the trailers: grpc-status');
  like($out, qr/recv \(stream_id=\d+\) grpc-message: ok/, '... grpc-message');
};

subtest 'flow control follows what the app received' => sub {
  plan skip_all => "Python's h2 is not installed" unless $python;
  my $r = $json->decode(`$python $FindBin::Bin/lib/h2_client.py flow $port 300000`);
  cmp_ok($r->{stalled_at}, '<=', 65535, "before the app read, the client could send one window ($r->{stalled_at} bytes)");
  is($r->{sent}, 300000, 'once it read, the rest went through');
  is($r->{response}{body}, 'read 300000', 'the app got all of it');
};

subtest 'Expect: 100-continue' => sub {
  plan skip_all => "Python's h2 is not installed" unless $python;
  my $r = $json->decode(`$python $FindBin::Bin/lib/h2_client.py continue $port`);
  ok($r->{interim_before_body}, 'an interim 100 when the app reads');
  is($r->{response}{body}, 'got hello', 'then the body');
};

subtest 'a stream reset by the client: the app gets http.disconnect' => sub {
  plan skip_all => "Python's h2 is not installed" unless $python;
  my $r = $json->decode(`$python $FindBin::Bin/lib/h2_client.py reset $port`);
  is($r->{after}{body}, '{"disconnect":1}', 'the app saw the disconnect; the connection went on');
};

subtest 'backpressure per stream (pagi.transport)' => sub {
  plan skip_all => "Python's h2 is not installed" unless $python;
  my $r = $json->decode(`$python $FindBin::Bin/lib/h2_client.py backpressure $port`);
  cmp_ok($r->{got_before}, '<=', 1024, 'a client that does not read gets no more than its window');
  my ($sent) = $r->{other}{body} =~ /big sent ([0-9]+)/;
  ok(defined $sent && $sent < 1048576, 'the app\'s sends waited (sent ' . ($sent // '?') . ' of 1 MiB)');
  like($r->{other}{body}, qr/high water 262144/, 'another stream was answered meanwhile, with its own transport');
  is($r->{big_length}, 1048576, 'once read, the whole body came');
  ok($r->{big_ended}, '... and ended');
};

subtest 'SSE over HTTP/2' => sub {
  my $out = curl('--http2-prior-knowledge', '-H', "'Accept: text/event-stream'", "$url/events");
  is($out, "event: n\ndata: 1 of 2\n\nevent: n\ndata: 2 of 2\n\nevent: n\ndata: 3 of 2\n\n",
    'the events, then the end of the stream');
};

subtest 'WebSocket over HTTP/2 (RFC 8441)' => sub {
  plan skip_all => "Python's h2 is not installed" unless $python;
  my $r = $json->decode(`$python $FindBin::Bin/lib/h2_client.py websocket $port /ws`);
  is($r->{connect_protocol}, 1, 'SETTINGS_ENABLE_CONNECT_PROTOCOL = 1');
  is($r->{status}, 200, 'the extended CONNECT is accepted with 200');
  is($r->{headers}{'sec-websocket-protocol'}, 'chat', 'the chosen subprotocol');
  is_deeply($r->{frames}, [[1, "echo h\x{e9}llo over HTTP/2"], [10, 'pi']],
    'a text message echoed, a ping answered with its pong');
  is($r->{close}, 1000, 'the close handshake');
  ok($r->{stream_ended}, 'the stream ends after it');
};

subtest 'h2load: many requests, many streams per connection, no failure' => sub {
  my $out = `h2load -n 20000 -c 10 -m 10 $url/delay?s=0\\&i=x 2>&1`;
  like($out, qr/requests: 20000 total, 20000 started, 20000 done, 20000 succeeded, 0 failed, 0 errored, 0 timeout/,
    '20000 requests, all answered') or diag $out;
  like($out, qr/status codes: 20000 2xx/, '... 200 each');
};

subtest 'the access log' => sub {
  like(slurp("$dir/access.log"), qr{"GET /a%20b\?x=1&y=%20 HTTP/2" 200 }, 'HTTP/2 requests are logged as such');
};

subtest 'bad input: a connection error, the server goes on' => sub {
  my $c = http_connect($port);
  $c->send("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" . "\0\0\4\4\0\0\0\0\0" . "\0\0\1\x99\0\0\0\0\0");    # SETTINGS of a wrong length, then junk
  my $got = $c->read_all(3);
  like($got, qr/\x07\0\0\0\0/, 'a GOAWAY') ;
  ok($c->closed, '... then the connection closes');
  like(curl('--http2-prior-knowledge', "$url/after"), qr/"http_version":"2"/, 'the server still serves');
};

subtest 'graceful stop: GOAWAY, the stream in flight finishes' => sub {
  # nghttp (Python's h2 closes its side at the first GOAWAY, the graceful notice included)
  my $out = "$dir/nghttp.out";
  my $pid = fork // die "fork: $!";
  if (!$pid) { exec("nghttp -v '$url/delay?s=3&i=slow' > $out 2>&1") or POSIX::_exit(127) }
  wait_for(sub { -s $out && slurp($out) =~ /send HEADERS frame/ }, 5);
  select(undef, undef, undef, 0.2);
  kill 'TERM', $srv->pid;
  waitpid($pid, 0);
  my $got = slurp($out);
  like($got, qr/recv GOAWAY frame <[^>]*>\s*\(last_stream_id=2147483647, error_code=NO_ERROR/,
    'first the GOAWAY notice (RFC 9113 6.8)');
  like($got, qr/recv GOAWAY frame <[^>]*>\s*\(last_stream_id=(1[0-9]), error_code=NO_ERROR/,
    'then the GOAWAY with the last stream') or diag $got;
  like($got, qr/i=slow/, 'the slow response completed');
  is($srv->wait_exit, 0, 'the server exits 0');
};

subtest 'limits: body size, concurrent streams, idle connection' => sub {
  plan skip_all => "Python's h2 is not installed" unless $python;
  my $lim = start_cli(args => [$APP, '--port', 0, '--http2', '--max-body-size', 1000,
    '--h2-max-concurrent-streams', 2, '--timeout', 1]);
  my $lport = $lim->port or return fail('the server did not start: ' . $lim->log);
  my $r = $json->decode(`$python $FindBin::Bin/lib/h2_client.py limits $lport`);
  my @c = @{$r->{concurrent}};
  is_deeply([map { $_->{body} } @c[0, 1]], ['i=0', 'i=1'], 'two streams at once are served');
  is($c[2]{reset}, 7, 'a third is refused: RST_STREAM REFUSED_STREAM (RFC 9113 5.1.2)');
  is($r->{announced}{status}, 413, 'a body announced too big (content-length): 413');
  is($r->{announced}{reset}, 0, '... then RST_STREAM NO_ERROR: stop sending (RFC 9113 8.1)');
  is($r->{grown}{status}, 413, 'a body that grows too big while the app reads it: 413');
  is($r->{grown}{reset}, 0, '... then RST_STREAM NO_ERROR');
  is($r->{after}{body}, 'got small', 'the connection goes on');
  is($r->{idle_goaway}{code}, 0, 'idle for the keep-alive timeout: GOAWAY NO_ERROR');
  cmp_ok($r->{idle_seconds}, '<', 4, '... after about a second');
  ok($r->{closed}, '... then the connection closes');
  like($lim->log, qr/stream \d+: 413 request body too large/, 'the 413s are logged');
  is($lim->stop, 0, 'exit 0');
};

subtest 'h2c on a Unix socket: no client in the scope' => sub {
  my $sock = "$dir/h2.sock";
  my $u = start_cli(args => [$APP, '--socket', $sock, '--http2']);
  wait_for(sub { -S $sock }, 10) or return fail('the socket: ' . $u->log);
  my $s = scope_of(curl('--unix-socket', $sock, '--http2-prior-knowledge', 'http://localhost/unix'));
  is($s->{http_version}, '2', 'HTTP/2 over the Unix socket');
  is($s->{client}, '', 'no client key (as on HTTP/1.1 there)');
  is($u->stop, 0, 'exit 0');
};

subtest 'h2 over TLS by ALPN, with workers' => sub {
  plan skip_all => 'openssl is needed' unless `openssl version 2>/dev/null`;
  system("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $dir/k.pem "
    . "-out $dir/c.pem -subj /CN=localhost -days 1 2>/dev/null") == 0 or return fail('a certificate');
  my $tls = start_cli(args => [$APP, '--port', 0, '--http2', '--ssl-cert', "$dir/c.pem", '--ssl-key', "$dir/k.pem",
    '--workers', 2]);
  my ($tport) = $tls->log =~ m{listening on https://[^/\s]*:([0-9]+)/};
  $tport //= do { wait_for(sub { ($tport) = $tls->log =~ m{https://[^/\s]*:([0-9]+)/}; $tport }, 10); $tport };
  ok($tport, 'listening') or return diag $tls->log;
  my $out = curl('-k', '-v', "https://127.0.0.1:$tport/tls");
  like($out, qr/ALPN: server accepted h2/, 'ALPN chose h2');
  my ($body) = $out =~ /(\{.*\})/;
  my $s = scope_of($body);
  is_deeply([@$s{qw(http_version scheme tls)}], ['2', 'https', 1], 'http_version 2, scheme https, the tls extension');
  like(curl('-k', '--http1.1', "https://127.0.0.1:$tport/one"), qr/"http_version":"1\.1"/, 'http/1.1 on the same port');
  $out = `h2load -n 5000 -c 4 -m 10 https://127.0.0.1:$tport/delay?s=0\\&i=x 2>&1`;
  like($out, qr/5000 succeeded, 0 failed/, 'h2load over TLS, two workers: no failure') or diag $out;
  is($tls->stop, 0, 'exit 0');
};

done_testing;
