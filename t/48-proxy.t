use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use lib 't/lib';
use File::Temp ();
use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM AF_INET6 inet_pton);
use PAGI::Test::Server qw(start_server http_connect parse_response);
use PAGI::Test::WebSocket qw(ws_connect);
use PAGI::Server;

# Behind a proxy, served (on the active backend): proxy_headers (a trusted peer's
# X-Forwarded-For, X-Forwarded-Proto and Forwarded set client and scheme of http, sse,
# websocket and HTTP/2 scopes, and the access log's client; a peer not trusted, a
# spoofing client, gets nothing) and proxy_protocol (the PROXY header of each
# connection, v1 and v2, before HTTP, TLS and the HTTP/2 preface; refused, bad, cut
# short and late headers close the connection with a log line and no answer). The
# header's parser alone: t/14; the rule alone: t/15; real proxies: t/62.

my $dir = File::Temp->newdir;
my $http2 = PAGI::Server->has_http2 && `curl --version 2>/dev/null` =~ /nghttp2/;

my $app = sub ($scope, $receive, $send) {
  return Future->fail("no lifespan\n") if $scope->{type} eq 'lifespan';
  my $path = $scope->{path} // '';
  PAGI::Test::Server::report(case => $path, type => $scope->{type}, client => $scope->{client},
    scheme => $scope->{scheme}, server => $scope->{server}, version => $scope->{http_version});
  if ($scope->{type} eq 'websocket') {
    return $receive->()->then(sub { $send->({type => 'websocket.accept'}) })
      ->then(sub { $send->({type => 'websocket.close'}) });
  }
  if ($scope->{type} eq 'sse') {
    return $send->({type => 'sse.start'})->then(sub { $send->({type => 'sse.send', data => 'one'}) })
      ->then(sub { $send->({type => 'sse.close'}) });
  }
  return PAGI::Test::Server::respond($send, 200, "ok $path\n", ['content-type', 'text/plain']);
};

# A request's bytes, with more header fields
sub request ($path, @fields) {
  my $head = "GET $path HTTP/1.1\r\nHost: x\r\n";
  $head .= "$_->[0]: $_->[1]\r\n" for @fields;
  return "$head\r\n";
}

# Sends $bytes on a new connection and reads one response: (response or undef, client)
sub exchange ($port, $bytes, %opt) {
  my $c = http_connect($port, timeout => $opt{timeout} // 5);
  $c->send($bytes);
  my ($r) = $c->read_responses(n => 1);
  return ($r, $c);
}

# What the app saw for a path (its report)
sub seen ($srv, $path) {
  my ($r) = $srv->reports_of($path, 1, 5);
  return $r ? [@$r{qw(type client scheme)}] : ['no report'];
}

subtest 'proxy_headers: a trusted peer (127.0.0.1 by default)' => sub {
  my $log = "$dir/access-1.log";
  my $srv = start_server(app => $app, proxy_headers => 1, access_log_file => $log, http2 => $http2 ? 1 : 0);
  my ($r, $c) = exchange($srv->port, request('/xff', ['X-Forwarded-For', '203.0.113.9, 10.0.0.1, 127.0.0.1'],
    ['X-Forwarded-Proto', 'https']));
  is($r && $r->{status}, 200, 'answered');
  is_deeply(seen($srv, '/xff'), ['http', ['10.0.0.1', 0], 'https'],
    'client: the right-most address not trusted (10.0.0.1 is not, by default); scheme https');
  # the next request on the same connection has no such headers
  $c->send(request('/again'));
  $c->read_responses(n => 1);
  is_deeply(seen($srv, '/again')->[1][0], '127.0.0.1', 'nothing carries over to the next request');
  ($r) = exchange($srv->port, request('/fwd', ['Forwarded', 'for="[2001:db8::7]:4711";proto=https']));
  is_deeply(seen($srv, '/fwd'), ['http', ['2001:db8::7', 4711], 'https'], 'Forwarded (RFC 7239)');
  my ($ws, $res) = ws_connect($srv->port, path => '/ws', headers => [['X-Forwarded-For', '198.51.100.4'],
    ['X-Forwarded-Proto', 'https']]);
  is($res && $res->{status}, 101, 'a WebSocket');
  is_deeply(seen($srv, '/ws'), ['websocket', ['198.51.100.4', 0], 'wss'], '... its scheme wss, its client');
  ($ws, $res) = ws_connect($srv->port, path => '/ws-plain', headers => [['X-Forwarded-Proto', 'http']]);
  is_deeply(seen($srv, '/ws-plain'), ['websocket', ['127.0.0.1', $ws->local_port], 'ws'],
    'X-Forwarded-Proto http: ws; no X-Forwarded-For: the peer');
  ($r) = exchange($srv->port, request('/sse', ['Accept', 'text/event-stream'], ['X-Forwarded-For', '198.51.100.5'],
    ['X-Forwarded-Proto', 'https']));
  is($r && $r->{status}, 200, 'an event stream');
  is_deeply(seen($srv, '/sse'), ['sse', ['198.51.100.5', 0], 'https'], '... its client and scheme');
  SKIP: {
    skip 'HTTP/2 (the codec, or curl with nghttp2) is not here', 2 unless $http2;
    my $out = `curl -s --http2-prior-knowledge -H 'X-Forwarded-For: 192.0.2.33' -H 'X-Forwarded-Proto: https' http://127.0.0.1:${\ $srv->port}/h2`;
    is($out, "ok /h2\n", 'HTTP/2 (h2c)');
    my ($s) = $srv->reports_of('/h2');
    is_deeply([@$s{qw(version client scheme)}], ['2', ['192.0.2.33', 0], 'https'], '... its stream\'s scope');
  }
  is($srv->stop, 0, 'stops');
  my $lines = PAGI::Test::Server::slurp($log);
  like($lines, qr{^10\.0\.0\.1 .*"GET /xff HTTP/1\.1" 200}m, 'the access log shows the forwarded client');
  like($lines, qr{^198\.51\.100\.4 .*"GET /ws HTTP/1\.1"}m, '... for a WebSocket too');
  like($lines, qr{^127\.0\.0\.1 .*"GET /again }m, '... and the peer without forwarded headers');
};

subtest 'proxy_headers: a peer not trusted, a spoofing client, gets nothing' => sub {
  my $srv = start_server(app => $app, proxy_headers => 1, forwarded_allow_ips => '10.0.0.0/8, ::1',
    http2 => $http2 ? 1 : 0);
  my @spoof = (['X-Forwarded-For', '10.0.0.1'], ['X-Forwarded-Proto', 'https'], ['Forwarded', 'for=10.0.0.2;proto=https']);
  my ($r, $c) = exchange($srv->port, request('/spoof', @spoof));
  is($r && $r->{status}, 200, 'answered');
  is_deeply(seen($srv, '/spoof'), ['http', ['127.0.0.1', $c->local_port], 'http'],
    'client stays the peer, scheme http');
  my ($ws) = ws_connect($srv->port, path => '/spoof-ws', headers => \@spoof);
  is_deeply([@{seen($srv, '/spoof-ws')}[0, 2]], ['websocket', 'ws'], 'a WebSocket: ws');
  is(seen($srv, '/spoof-ws')->[1][0], '127.0.0.1', '... from the peer');
  exchange($srv->port, request('/spoof-sse', ['Accept', 'text/event-stream'], @spoof));
  is_deeply([seen($srv, '/spoof-sse')->[1][0], seen($srv, '/spoof-sse')->[2]], ['127.0.0.1', 'http'], 'an event stream');
  SKIP: {
    skip 'HTTP/2 (the codec, or curl with nghttp2) is not here', 1 unless $http2;
    `curl -s --http2-prior-knowledge -H 'X-Forwarded-For: 10.0.0.3' -H 'X-Forwarded-Proto: https' http://127.0.0.1:${\ $srv->port}/spoof-h2`;
    my ($s) = $srv->reports_of('/spoof-h2');
    is_deeply([@$s{qw(version scheme)}, $s->{client}[0]], ['2', 'http', '127.0.0.1'], 'HTTP/2');
  }
  is($srv->stop, 0, 'stops');
  my $off = start_server(app => $app);
  exchange($off->port, request('/off', @spoof));
  is_deeply([seen($off, '/off')->[1][0], seen($off, '/off')->[2]], ['127.0.0.1', 'http'],
    'proxy_headers off (the default): the headers are the app\'s business');
  $off->stop;
};

sub unix_exchange ($path, $bytes) {
  my $s = IO::Socket::UNIX->new(Peer => $path, Type => SOCK_STREAM) or return undef;
  print {$s} $bytes;
  local $/;
  my $buf = <$s> // '';
  my ($r) = eval { parse_response($buf, 0, closed => 1) };
  return $r;
}

subtest 'proxy_headers on a Unix socket: trusted by default (unix), not without it' => sub {
  my $sock = "$dir/h.sock";
  my $srv = start_server(app => $app, proxy_headers => 1, socket => $sock);
  my $r = unix_exchange($sock, request('/unix', ['X-Forwarded-For', '192.0.2.8'], ['Connection', 'close']));
  is($r && $r->{status}, 200, 'answered');
  is_deeply(seen($srv, '/unix'), ['http', ['192.0.2.8', 0], 'http'], 'the forwarded client');
  $srv->stop;
  $srv = start_server(app => $app, proxy_headers => 1, socket => $sock, forwarded_allow_ips => '127.0.0.1');
  unix_exchange($sock, request('/unix-no', ['X-Forwarded-For', '192.0.2.8'], ['Connection', 'close']));
  is_deeply(seen($srv, '/unix-no'), ['http', undef, 'http'], 'without unix in the list: no client, as always');
  $srv->stop;
};

# ---- the PROXY protocol ----------------------------------------------------------------

use constant V2_SIG => "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A";
sub v2 ($cmd, $fam, $rest) { V2_SIG . pack('C C n', $cmd, $fam, length $rest) . $rest }
sub v2_tcp4 ($src, $dst, $sp, $dp, $tlvs = '') {
  v2(0x21, 0x11, pack('C4 C4 n n', split(/\./, $src), split(/\./, $dst), $sp, $dp) . $tlvs);
}
sub v2_tcp6 ($src, $dst, $sp, $dp) { v2(0x21, 0x21, inet_pton(AF_INET6, $src) . inet_pton(AF_INET6, $dst) . pack('n n', $sp, $dp)) }

sub server_of ($srv, $path) { my ($r) = $srv->reports_of($path, 1, 5); $r ? $r->{server} : 'no report' }

subtest 'proxy_protocol: v1 and v2, the scope\'s client and server' => sub {
  my $srv = start_server(app => $app, proxy_protocol => 1, http2 => $http2 ? 1 : 0);
  my $port = $srv->port;
  my ($r, $c) = exchange($port, "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n" . request('/v1'));
  is($r && $r->{status}, 200, 'v1 TCP4, then a request, in one write');
  is_deeply(seen($srv, '/v1'), ['http', ['192.0.2.1', 56324], 'http'], '... the client');
  is_deeply(server_of($srv, '/v1'), ['198.51.100.2', 443], '... the server');
  $c->send(request('/v1-again'));
  $c->read_responses(n => 1);
  is_deeply(seen($srv, '/v1-again')->[1], ['192.0.2.1', 56324], 'the next request on the connection: the same');
  exchange($port, "PROXY TCP6 2001:db8::1 2001:db8::2 1000 8443\r\n" . request('/v1-6'));
  is_deeply([seen($srv, '/v1-6')->[1], server_of($srv, '/v1-6')], [['2001:db8::1', 1000], ['2001:db8::2', 8443]],
    'v1 TCP6');
  exchange($port, "PROXY UNKNOWN\r\n" . request('/unknown'));
  is(seen($srv, '/unknown')->[1][0], '127.0.0.1', 'v1 UNKNOWN: the socket\'s addresses');
  is_deeply(server_of($srv, '/unknown'), ['127.0.0.1', $port], '... both');
  exchange($port, v2_tcp4('203.0.113.50', '10.1.2.3', 40000, 80, pack('C n', 0x01, 2) . 'h2') . request('/v2'));
  is_deeply([seen($srv, '/v2')->[1], server_of($srv, '/v2')], [['203.0.113.50', 40000], ['10.1.2.3', 80]],
    'v2 TCP4 (a TLV skipped)');
  exchange($port, v2_tcp6('2001:db8::99', '::1', 5, 6) . request('/v2-6'));
  is_deeply(seen($srv, '/v2-6')->[1], ['2001:db8::99', 5], 'v2 TCP6');
  exchange($port, v2(0x21, 0x31, pack('a108 a108', '/run/client', '/run/pagi.sock')) . request('/v2-unix'));
  is_deeply([seen($srv, '/v2-unix')->[1], server_of($srv, '/v2-unix')], [undef, ['/run/pagi.sock', undef]],
    'v2 UNIX: no client, the server\'s path');
  exchange($port, v2(0x20, 0x00, '') . request('/local'));
  is(seen($srv, '/local')->[1][0], '127.0.0.1', 'v2 LOCAL (a health check): the socket\'s addresses');
  exchange($port, v2_tcp4('203.0.113.51', '10.1.2.3', 1, 443, pack('C n C N', 0x20, 5, 0x01, 0)) . request('/ssl'));
  is_deeply(seen($srv, '/ssl'), ['http', ['203.0.113.51', 1], 'https'], 'v2 PP2_TYPE_SSL: https');
  # The header in pieces (a slow proxy): read as it comes, nothing of the request lost
  $c = http_connect($port);
  $c->send_slowly([substr(V2_SIG, 0, 5), substr(V2_SIG, 5) . "\x21", "\x11\x00\x0C\xC0\x00\x02",
    "\x07\xC0\x00\x02\x08\x00\x01\x00\x02GET /slow", " HTTP/1.1\r\nHost: x\r\n\r\n"], 0.1);
  ($r) = $c->read_responses(n => 1);
  is($r && $r->{body}, "ok /slow\n", 'a header in pieces');
  is_deeply(seen($srv, '/slow')->[1], ['192.0.2.7', 1], '... read whole');
  SKIP: {
    skip 'HTTP/2 (the codec, or curl with nghttp2) is not here', 3 unless $http2;
    my $out = `curl -s --haproxy-protocol --http2-prior-knowledge http://127.0.0.1:$port/curl-h2`;
    is($out, "ok /curl-h2\n", 'curl --haproxy-protocol, h2c: the header before the HTTP/2 preface');
    my ($s) = $srv->reports_of('/curl-h2');
    is($s->{version}, '2', '... HTTP/2');
    is($s->{client}[0], '127.0.0.1', '... the client curl named');
  }
  my $out = `curl -s --haproxy-protocol http://127.0.0.1:$port/curl`;
  is($out, "ok /curl\n", 'curl --haproxy-protocol');
  is($srv->stop, 0, 'stops');
};

subtest 'proxy_protocol with proxy_headers: the headers judged by the header\'s client' => sub {
  my $srv = start_server(app => $app, proxy_protocol => 1, proxy_headers => 1,
    forwarded_allow_ips => '127.0.0.1, 10.0.0.0/8');
  my $xff = ['X-Forwarded-For', '198.51.100.77'];
  exchange($srv->port, "PROXY TCP4 10.9.9.9 10.0.0.1 1 80\r\n" . request('/trusted', $xff, ['X-Forwarded-Proto', 'https']));
  is_deeply(seen($srv, '/trusted'), ['http', ['198.51.100.77', 0], 'https'], 'a trusted proxy behind it: counted');
  exchange($srv->port, "PROXY TCP4 203.0.113.6 10.0.0.1 1 80\r\n" . request('/client', $xff, ['X-Forwarded-Proto', 'https']));
  is_deeply(seen($srv, '/client'), ['http', ['203.0.113.6', 1], 'http'], 'a client: its headers are not');
  $srv->stop;
};

subtest 'proxy_protocol: refused, bad, cut short, late: closed without an answer' => sub {
  my $srv = start_server(app => $app, proxy_protocol => 1, keepalive_timeout => 1);
  my $port = $srv->port;
  my %bad = (
    'plain HTTP (no header)' => [request('/none'), qr/invalid PROXY protocol header \(bad_signature/],
    'a bad v1 line' => ["PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n" . request('/bad'), qr/\(bad_line: invalid proxy protocol v1 line\)/],
    'a bad v1 address' => ["PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n" . request('/bad'), qr/\(bad_address/],
    'v2 with a bad length' => [V2_SIG . "\x21\x11\x00\x04abcd" . request('/bad'), qr/\(bad_length/],
    'v2 with a bad TLV' => [v2_tcp4('1.2.3.4', '5.6.7.8', 1, 2, "\x01\x00\x09") . request('/bad'), qr/\(bad_tlv/],
    'v2 UDP' => [v2(0x21, 0x12, "\0" x 12) . request('/bad'), qr/\(bad_family/],
    'v2 version 3' => [v2(0x31, 0x11, "\0" x 12) . request('/bad'), qr/\(bad_version/],
  );
  for my $name (sort keys %bad) {
    my ($bytes, $re) = @{$bad{$name}};
    my $c = http_connect($port);
    $c->send($bytes);
    ok($c->wait_closed(3), "$name: closed");
    is($c->buffer, '', '... nothing written');
    ok($srv->wait_log($re, 3), '... logged');
  }
  my $c = http_connect($port);
  $c->send("PROXY TCP4 1.2.3.4");
  $c->shutdown_write;
  ok($c->wait_closed(3), 'cut short (the client stops sending): closed');
  ok($srv->wait_log(qr/closed inside its PROXY protocol header/, 3), '... logged');
  $c = http_connect($port);
  $c->send(substr(V2_SIG, 0, 7));
  my $t0 = time;
  ok($c->wait_closed(5), 'a header that does not come whole within keepalive_timeout: closed');
  ok(time - $t0 <= 3, '... within the timeout and the tick');
  is($c->buffer, '', '... nothing written');
  ok($srv->wait_log(qr/127\.0\.0\.1:\d+: no PROXY protocol header in time; closed/, 3), '... logged');
  ($c) = exchange($port, "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n" . request('/fine'));
  is(seen($srv, '/fine')->[1][0], '192.0.2.1', 'the server serves on');
  is($srv->stop, 0, 'stops');
  unlike($srv->log, qr/\[error\]/, 'no errors logged');

  my $strict = start_server(app => $app, proxy_protocol => 1, forwarded_allow_ips => '10.0.0.0/8');
  $c = http_connect($strict->port);
  $c->send("PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n" . request('/refused'));
  ok($c->wait_closed(3), 'a peer not in forwarded_allow_ips: closed');
  is($c->buffer, '', '... nothing written');
  ok($strict->wait_log(qr/127\.0\.0\.1:\d+: not in forwarded_allow_ips, may not send a PROXY protocol header; closed/, 3),
    '... logged');
  is_deeply([$strict->reports_of('/refused', 1, 0.5)], [], '... the app never saw it');
  $strict->stop;
};

subtest 'proxy_protocol on a Unix socket' => sub {
  my $sock = "$dir/p.sock";
  my $srv = start_server(app => $app, proxy_protocol => 1, socket => $sock);
  my $r = unix_exchange($sock, "PROXY TCP4 192.0.2.9 192.0.2.10 7 8\r\n" . request('/pu', ['Connection', 'close']));
  is($r && $r->{status}, 200, 'answered (unix is in forwarded_allow_ips by default)');
  is_deeply([seen($srv, '/pu')->[1], server_of($srv, '/pu')], [['192.0.2.9', 7], ['192.0.2.10', 8]], '... the header\'s addresses');
  $r = unix_exchange($sock, v2(0x20, 0, '') . request('/pu-local', ['Connection', 'close']));
  is_deeply([seen($srv, '/pu-local')->[1], server_of($srv, '/pu-local')], [undef, [$sock, undef]], 'LOCAL: the socket\'s');
  $srv->stop;
};

SKIP: {
  skip 'IO::Socket::SSL or openssl is not here', 1
    unless eval { require IO::Socket::SSL; 1 } && system('openssl version >/dev/null 2>&1') == 0;
  subtest 'proxy_protocol before TLS' => sub {
    my ($key, $pem) = ("$dir/k.pem", "$dir/c.pem");
    system("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $key -out $pem "
      . "-days 2 -subj /CN=localhost >/dev/null 2>&1") == 0 or return fail('openssl');
    my $srv = start_server(app => $app, proxy_protocol => 1, ssl_cert => $pem, ssl_key => $key);
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $srv->port) or return fail("connect: $!");
    print {$s} "PROXY TCP4 192.0.2.20 192.0.2.21 5 443\r\n";
    IO::Socket::SSL->start_SSL($s, SSL_verify_mode => 0, Timeout => 5) or return fail('TLS: ' . IO::Socket::SSL::errstr());
    print {$s} request('/tls', ['Connection', 'close']);
    local $/;
    my $buf = <$s> // '';
    like($buf, qr{\AHTTP/1\.1 200 .*ok /tls\n\z}s, 'TLS after the header');
    is_deeply(seen($srv, '/tls'), ['http', ['192.0.2.20', 5], 'https'], '... the header\'s client, https');
    $srv->stop;
  };
}

done_testing;
