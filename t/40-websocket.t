use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use Future::AsyncAwait;
use lib 't/lib';
use PAGI::Test::Server qw(:all);
use PAGI::Test::WebSocket qw(ws_connect accept_for);

# WebSocket at the PAGI level (spec section 4): the scope, the handshake (completed only
# on websocket.accept), denial, refusal (403 on close/return before accept, 500 on die),
# handshake validation (426 / 400), text and bytes both ways, close codes both ways,
# and what misuse of $send gets. A raw client (t/lib/PAGI/Test/WebSocket.pm) on
# loopback; runs on whichever backend PAGI_SERVER_BACKEND selects.

# The app: one behaviour per path; each reports what it saw
my %route;
my $app = async sub ($scope, $receive, $send) {
  return if $scope->{type} eq 'lifespan';
  if ($scope->{type} eq 'http') {
    await $send->({type => 'http.response.start', status => 200, headers => []});
    return await $send->({type => 'http.response.body', body => 'plain'});
  }
  die "unexpected scope $scope->{type}\n" unless $scope->{type} eq 'websocket';
  my $h = $route{$scope->{path}} or die "no route for $scope->{path}\n";
  await $h->($scope, $receive, $send);
};

$route{'/scope'} = async sub ($scope, $receive, $send) {
  my $first = await $receive->();
  report(case => 'scope', first => $first->{type}, has_method => exists $scope->{method} ? 1 : 0,
    has_connection => exists $scope->{'pagi.connection'} ? 1 : 0,
    buffered => $scope->{'pagi.transport'} ? $scope->{'pagi.transport'}->buffered_amount : 'none',
    map { $_ => $scope->{$_} } qw(type scheme subprotocols http_version path raw_path
      query_string root_path headers client server state extensions pagi));
  await $send->({type => 'websocket.accept', subprotocol => 'superchat',
    headers => [['X-Extra', 'yes'], ['Set-Cookie', 'a=1']]});
  my $ev = await $receive->();
  report(case => 'scope-end', ev => $ev);
};

# Echoes; reports every event it receives
$route{'/echo'} = async sub ($scope, $receive, $send) {
  await $receive->();
  await $send->({type => 'websocket.accept'});
  while (1) {
    my $ev = await $receive->();
    my $after = $ev->{type} eq 'websocket.disconnect'
      ? await attempt($send, {type => 'websocket.send', text => 'into the void'}) : undef;
    report(case => 'echo', ev => $ev, after => $after,
      chars => defined $ev->{text} ? length $ev->{text} : undef,
      byte_len => defined $ev->{bytes} ? length $ev->{bytes} : undef);
    last if $ev->{type} eq 'websocket.disconnect';
    if (defined $ev->{text}) { await $send->({type => 'websocket.send', text => "echo: $ev->{text}"}) }
    else { await $send->({type => 'websocket.send', bytes => "echo: $ev->{bytes}"}) }
  }
};

# The server closes with a code and reason, then sees the peer's answer
$route{'/server-close'} = async sub ($scope, $receive, $send) {
  await $receive->();
  await $send->({type => 'websocket.accept'});
  await $send->({type => 'websocket.send', text => 'bye'});
  await $send->({type => 'websocket.close', code => 4000, reason => "done \x{2603}"});
  my $again = await attempt($send, {type => 'websocket.close'});
  my $after = await attempt($send, {type => 'websocket.send', text => 'late'});
  my $ev = await $receive->();
  report(case => 'server-close', ev => $ev, again => $again, after => $after);
};

$route{'/bad-accept'} = async sub ($scope, $receive, $send) {
  await $receive->();
  my @r;
  push @r, await attempt($send, {type => 'websocket.accept', headers => [['X-Bad', "a\r\nb"]]});
  push @r, await attempt($send, {type => 'websocket.accept', headers => [['X-Bad', "a\nb"]]});
  push @r, await attempt($send, {type => 'websocket.accept', headers => [["X-B\rad", 'v']]});
  push @r, await attempt($send, {type => 'websocket.accept', headers => 'nope'});
  push @r, await attempt($send, {type => 'websocket.accept', subprotocol => "chat\r\nX-Injected: 1"});
  report(case => 'bad-accept', results => \@r);
  # Still unanswered: closing now refuses the handshake (403)
  await $send->({type => 'websocket.close'});
};

$route{'/close-first'} = async sub ($scope, $receive, $send) {
  await $receive->();
  await $send->({type => 'websocket.close'});
  report(case => 'close-first');
};
$route{'/return-first'} = async sub ($scope, $receive, $send) { await $receive->(); return };
$route{'/die-first'} = async sub ($scope, $receive, $send) { await $receive->(); die "boom\n" };
$route{'/die-after'} = async sub ($scope, $receive, $send) {
  await $receive->();
  await $send->({type => 'websocket.accept'});
  die "boom after accept\n";
};
$route{'/return-after'} = async sub ($scope, $receive, $send) {
  await $receive->();
  await $send->({type => 'websocket.accept'});
};

$route{'/deny'} = async sub ($scope, $receive, $send) {
  await $receive->();
  my @r;
  push @r, await attempt($send, {type => 'websocket.http.response.start', status => 401,
    headers => [['Content-Type', 'text/plain'], ['WWW-Authenticate', 'Basic realm="x"']]});
  push @r, await attempt($send, {type => 'websocket.http.response.body', body => 'no ', more => 1});
  push @r, await attempt($send, {type => 'websocket.http.response.body', body => 'entry'});
  push @r, await attempt($send, {type => 'websocket.accept'});
  my $ev = eval { await $receive->() };
  push @r, $ev ? "event: $ev->{type}" : "error: $@" =~ s/\s+\z//r;
  report(case => 'deny', results => \@r);
};

$route{'/deny-unfinished'} = async sub ($scope, $receive, $send) {
  await $receive->();
  await $send->({type => 'websocket.http.response.start', status => 401});
  await $send->({type => 'websocket.http.response.body', body => 'part', more => 1})
    if $scope->{query_string} eq 'body';
  return;
};

$route{'/deny-bad-header'} = async sub ($scope, $receive, $send) {
  await $receive->();
  my @r;
  push @r, await attempt($send, {type => 'websocket.http.response.start', status => 403,
    headers => [['X-Evil', "a\r\nInjected: 1"]]});
  push @r, await attempt($send, {type => 'websocket.http.response.body', body => 'Injected body'});
  report(case => 'deny-bad-header', results => \@r);
};

$route{'/misuse'} = async sub ($scope, $receive, $send) {
  await $receive->();
  my %r;
  $r{send_before_accept} = await attempt($send, {type => 'websocket.send', text => 'x'});
  $r{accept} = await attempt($send, {type => 'websocket.accept'});
  $r{accept_twice} = await attempt($send, {type => 'websocket.accept'});
  $r{both} = await attempt($send, {type => 'websocket.send', text => 'x', bytes => 'y'});
  $r{neither} = await attempt($send, {type => 'websocket.send'});
  $r{wide_bytes} = await attempt($send, {type => 'websocket.send', bytes => "\x{263a}"});
  $r{unknown} = await attempt($send, {type => 'websocket.frobnicate'});
  $r{not_a_hash} = await attempt($send, 'websocket.send');
  $r{bad_code} = await attempt($send, {type => 'websocket.close', code => 1005});
  $r{long_reason} = await attempt($send, {type => 'websocket.close', reason => 'x' x 124});
  $r{deny_after_accept} = await attempt($send, {type => 'websocket.http.response.start', status => 403});
  $r{keepalive_bad} = await attempt($send, {type => 'websocket.keepalive', interval => 'soon'});
  $r{keepalive_timeout_bad} = await attempt($send, {type => 'websocket.keepalive', interval => 1,
    timeout => 'never'});
  $r{send_ok} = await attempt($send, {type => 'websocket.send', text => 'still open'});
  report(case => 'misuse', results => \%r);
  await $send->({type => 'websocket.close', code => 1000});
  my $ev = await $receive->();
  report(case => 'misuse-end', ev => $ev);
};

my $srv = start_server(app => $app, ws_close_timeout => 2);
ok($srv->port, 'server started') or BAIL_OUT('server did not start: ' . $srv->log);
my $port = $srv->port;

subtest 'scope and accept with subprotocol and headers' => sub {
  my ($ws, $res) = ws_connect($port, path => '/scope?x=1&y=%20', protocols => ' chat , superchat,,v2 ',
    headers => [['Sec-WebSocket-Protocol', 'extra'], ['X-Custom', 'Value']]);
  is($res->{status}, 101, '101 Switching Protocols');
  is($res->{h}{'sec-websocket-accept'}, accept_for($ws->key), 'Sec-WebSocket-Accept matches the key');
  is(lc $res->{h}{upgrade}, 'websocket', 'Upgrade: websocket');
  is($res->{h}{connection}, 'Upgrade', 'one Connection: Upgrade');
  is($res->{h}{'sec-websocket-protocol'}, 'superchat', 'the chosen subprotocol');
  is($res->{h}{'x-extra'}, 'yes', 'extra accept header');
  is($res->{h}{'set-cookie'}, 'a=1', 'Set-Cookie in accept headers');
  ok(!exists $res->{h}{'content-length'} && !exists $res->{h}{'transfer-encoding'},
    'no body framing on a 101');
  my ($r) = $srv->reports_of('scope');
  is($r->{first}, 'websocket.connect', 'the first event is websocket.connect');
  is($r->{type}, 'websocket', 'type websocket');
  is($r->{has_method}, 0, 'no method key');
  is($r->{has_connection}, 0, 'no pagi.connection');
  like($r->{buffered}, qr/\A[0-9]+\z/, 'pagi.transport, with buffered_amount');
  is($r->{scheme}, 'ws', 'scheme ws');
  is($r->{http_version}, '1.1', 'http_version 1.1');
  is_deeply($r->{subprotocols}, [qw(chat superchat v2 extra)], 'subprotocols split, trimmed, empties dropped');
  is($r->{path}, '/scope', 'path');
  is($r->{query_string}, 'x=1&y=%20', 'query_string kept encoded');
  is($r->{root_path}, '', 'root_path');
  is($r->{pagi}{version}, '0.3', 'pagi version 0.3');
  my %h = map { ($_->[0] => $_->[1]) } @{$r->{headers}};
  is($h{'x-custom'}, 'Value', 'handshake headers in the scope, names lowercased');
  ok($h{'sec-websocket-key'} && $h{'sec-websocket-version'} && $h{upgrade}, 'including the upgrade headers');
  is($r->{client}[0], '127.0.0.1', 'client host');
  is($r->{client}[1], $ws->local_port, 'client port');
  is_deeply($r->{server}, ['127.0.0.1', $port], 'server address');
  is_deeply($r->{state}, {}, 'state is a hash');
  is_deeply($r->{extensions}, {'websocket.http.response' => {}}, 'denial extension advertised');
  $ws->send_close(1000);
  my ($code) = $ws->read_close;
  is($code, 1000, 'close handshake');
  my ($end) = $srv->reports_of('scope-end');
  is_deeply($end->{ev}, {type => 'websocket.disconnect', code => 1000, reason => ''}, 'disconnect 1000');
};

subtest 'text and bytes both ways; the peer closes with a code and reason' => sub {
  my ($ws, $res) = ws_connect($port, path => '/echo');
  is($res->{status}, 101, 'accepted');
  $ws->send_text("h\x{e9}llo \x{2603}");
  is_deeply($ws->read_message, {text => "echo: h\x{e9}llo \x{2603}"}, 'text echoed, as UTF-8 characters');
  $ws->send_binary("\x00\xff\x80\xc3");
  is_deeply($ws->read_message, {bytes => "echo: \x00\xff\x80\xc3"}, 'bytes echoed unchanged');
  $ws->send_text('');
  is_deeply($ws->read_message, {text => 'echo: '}, 'empty text message');
  my $big = join '', map { chr(0x400 + $_ % 200) } 1 .. 70000;
  $ws->send_text($big);
  is_deeply($ws->read_message, {text => "echo: $big"}, 'a 64-bit-length text message both ways');
  $ws->send_close(4001, "bye \x{2603}");
  my ($code, $reason) = $ws->read_close;
  is($code, 4001, 'the server echoes the close code');
  ok($ws->wait_closed(5), 'and closes the TCP connection');
  my @r = $srv->reports_of('echo', 5);
  is($r[0]{ev}{text}, "h\x{e9}llo \x{2603}", 'the app receives decoded text');
  is($r[0]{chars}, 7, '... as characters (7, not 10 bytes)');
  is($r[1]{ev}{bytes}, "\x00\xff\x80\xc3", 'the app receives bytes as bytes');
  is($r[1]{byte_len}, 4, '... 4 of them');
  ok(!exists $r[1]{ev}{text} && !exists $r[0]{ev}{bytes}, 'exactly one of text and bytes');
  is($r[3]{chars}, 70000, 'the big message arrives whole');
  is_deeply($r[4]{ev}, {type => 'websocket.disconnect', code => 4001, reason => "bye \x{2603}"},
    "disconnect carries the peer's code and decoded reason");
};

subtest 'a Close frame without a code: 1005' => sub {
  my ($ws) = ws_connect($port, path => '/echo');
  my $n = () = $srv->reports_of('echo', 0);
  $ws->send_close;
  my ($code, $reason) = $ws->read_close;
  ok(!defined $code && $reason eq '', 'the echoed Close has no code either');
  my @r = $srv->reports_of('echo', $n + 1);
  is_deeply($r[-1]{ev}, {type => 'websocket.disconnect', code => 1005, reason => ''}, 'app sees 1005');
};

subtest 'the app closes with a code and reason' => sub {
  my ($ws) = ws_connect($port, path => '/server-close');
  is_deeply($ws->read_message, {text => 'bye'}, 'message before the close');
  my ($code, $reason) = $ws->read_close;
  is($code, 4000, 'close code 4000');
  is($reason, "done \xe2\x98\x83", 'reason as UTF-8');
  $ws->send_close(4000);
  ok($ws->wait_closed(5), 'server closes the TCP connection after the handshake');
  my ($r) = $srv->reports_of("server-close");
  is_deeply($r->{ev}, {type => 'websocket.disconnect', code => 4000, reason => ''},
    "disconnect after the peer's answer");
  like($r->{again}, qr/error: websocket.close sent twice/, 'a second close fails');
  like($r->{after}, qr/error: websocket.send after websocket.close/, 'a send after close fails');
};

subtest 'a header with CR/LF makes accept fail' => sub {
  my ($ws, $res) = ws_connect($port, path => '/bad-accept');
  is($res->{status}, 403, 'the handshake is refused (the app closes after the failed accepts)');
  my ($r) = $srv->reports_of('bad-accept');
  like($r->{results}[0], qr/error: websocket.accept: invalid header value for X-Bad/, 'CRLF in a value fails');
  like($r->{results}[1], qr/error: websocket.accept: invalid header value/, 'LF in a value fails');
  like($r->{results}[2], qr/error: websocket.accept: invalid header name/, 'CR in a name fails');
  like($r->{results}[3], qr/error: websocket.accept: headers must be an array/, 'non-array headers fail');
  like($r->{results}[4], qr/error: websocket.accept: invalid header value for Sec-WebSocket-Protocol/,
    'a subprotocol with CRLF fails');
  unlike($res->{raw}, qr/X-Bad/, 'nothing of the bad header reached the wire');
};

subtest 'refusals: close, return or die before accept' => sub {
  for my $case (['/close-first', 403], ['/return-first', 403], ['/die-first', 500]) {
    my ($path, $status) = @$case;
    my ($ws, $res) = ws_connect($port, path => $path);
    is($res->{status}, $status, "$path: $status");
    is($res->{h}{connection}, 'close', "$path: Connection: close");
    ok(!exists $res->{h}{'sec-websocket-accept'}, "$path: no Sec-WebSocket-Accept");
    ok($ws->wait_closed(5), "$path: connection closed");
  }
  ok($srv->reports_of('close-first'), 'close before accept resolves the send');
  like($srv->log, qr/application error: boom/, 'the die is logged');
};

subtest 'the app ends after accept: 1000 on return, 1011 on die' => sub {
  for my $case (['/return-after', 1000], ['/die-after', 1011]) {
    my ($path, $want) = @$case;
    my ($ws, $res) = ws_connect($port, path => $path);
    is($res->{status}, 101, "$path: accepted");
    my ($code) = $ws->read_close;
    is($code, $want, "$path: server closes with $want");
    $ws->send_close($code);
    ok($ws->wait_closed(5), "$path: and closes the connection");
  }
};

subtest 'denial via websocket.http.response' => sub {
  my ($ws, $res) = ws_connect($port, path => '/deny');
  is($res->{status}, 401, 'the app\'s status');
  is($res->{body}, 'no entry', 'the app\'s body (two parts)');
  is($res->{h}{'www-authenticate'}, 'Basic realm="x"', 'the app\'s headers');
  is($res->{h}{'content-length'}, 8, 'Content-Length');
  ok(!exists $res->{h}{'sec-websocket-accept'}, 'no handshake');
  ok($ws->wait_closed(5), 'connection closed');
  my ($r) = $srv->reports_of('deny');
  is_deeply([@{$r->{results}}[0 .. 2]], [qw(ok ok ok)], 'the denial sends succeed');
  like($r->{results}[3], qr/error: websocket.accept: the handshake is already answered/,
    'accept after a denial fails');
  like($r->{results}[4], qr/error: websocket: the handshake was denied/,
    'no websocket.disconnect after a denial: receiving fails instead');
};

subtest 'an unfinished denial: 500' => sub {
  for my $q ('start', 'body') {
    my ($ws, $res) = ws_connect($port, path => "/deny-unfinished?$q");
    is($res->{status}, 500, "denial started ($q) but not finished when the app returns: 500");
    ok($ws->wait_closed(5), '... and the connection closes');
  }
};

subtest 'a denial header with CR/LF: the send fails' => sub {
  my ($ws, $res) = ws_connect($port, path => '/deny-bad-header');
  is($res->{status}, 403, 'no denial started; the app returned without accepting: 403');
  unlike($res->{raw} . $ws->read_all(2), qr/Injected/, 'the bad bytes never reach the wire');
  my ($r) = $srv->reports_of('deny-bad-header');
  like($r->{results}[0], qr/error: websocket.http.response.start: invalid header value for X-Evil/,
    'the start fails at once, naming the header (as http.response.start does)');
  like($r->{results}[1], qr/error: websocket.http.response.body before websocket.http.response.start/,
    '... so the body has no start');
};

subtest 'handshake validation: 426 and 400' => sub {
  my $before = () = $srv->reports;
  for my $case (
    [{version => 8}, 426, 'Sec-WebSocket-Version 8'],
    [{version => undef}, 426, 'no Sec-WebSocket-Version'],
    [{version => '13, 8'}, 426, 'a version list'],
    [{key => undef}, 400, 'no Sec-WebSocket-Key'],
    [{key => 'abc'}, 400, 'a key that is not 16 bytes of base64'],
    [{key => 'dGhlIHNhbXBsZSBub25jZQ='}, 400, 'a key with one = short'],
  ) {
    my ($opt, $status, $name) = @$case;
    my ($ws, $res) = ws_connect($port, path => '/echo', %$opt);
    is($res->{status}, $status, "$name: $status");
    is($res->{h}{'sec-websocket-version'}, '13', "$name: Sec-WebSocket-Version: 13")
      if $status == 426;
    ok($ws->wait_closed(5), "$name: closed");
  }
  my $after = () = $srv->reports;
  is($after, $before, 'the app is not called for a bad handshake');
  # An upgrade the server does not do (not websocket, or POST) is plain HTTP
  my ($ws, $res) = ws_connect($port, path => '/echo', headers => [['Content-Length', '5']]);
  is($res->{status}, 400, 'a handshake with a body: 400');
};

subtest 'misuse of $send' => sub {
  my ($ws, $res) = ws_connect($port, path => '/misuse');
  is($res->{status}, 101, 'accepted');
  is_deeply($ws->read_message, {text => 'still open'}, 'the connection survives misuse');
  my ($code) = $ws->read_close;
  is($code, 1000, 'app close 1000');
  $ws->send_close(1000);
  my ($r) = $srv->reports_of('misuse');
  my $x = $r->{results};
  like($x->{send_before_accept}, qr/error: websocket.send before websocket.accept/, 'send before accept');
  is($x->{accept}, 'ok', 'accept');
  like($x->{accept_twice}, qr/error: websocket.accept: the handshake is already answered/, 'accept twice');
  like($x->{both}, qr/error: websocket.send: only one of bytes and text/, 'bytes and text');
  like($x->{neither}, qr/error: websocket.send needs bytes or text/, 'neither');
  like($x->{wide_bytes}, qr/error: websocket.send: bytes must be bytes/, 'wide characters as bytes');
  like($x->{unknown}, qr/error: unknown event type 'websocket.frobnicate'/, 'unknown type');
  like($x->{not_a_hash}, qr/error: unknown event type/, 'not a hash');
  like($x->{bad_code}, qr/error: websocket.close: invalid code 1005/, 'close with 1005');
  like($x->{long_reason}, qr/error: websocket.close: reason longer than 123 bytes/, 'reason too long');
  is($x->{deny_after_accept}, 'ok', 'denial after accept is ignored');
  like($x->{keepalive_bad}, qr/error: websocket.keepalive: interval/, 'bad keepalive interval');
  like($x->{keepalive_timeout_bad}, qr/error: websocket.keepalive: timeout/, 'bad keepalive timeout');
  is($x->{send_ok}, 'ok', 'a good send after all that');
  my ($end) = $srv->reports_of('misuse-end');
  is_deeply($end->{ev}, {type => 'websocket.disconnect', code => 1000, reason => ''}, 'disconnect');
};

subtest 'abrupt TCP drop: 1006 client_closed' => sub {
  my ($ws) = ws_connect($port, path => '/echo');
  $ws->send_text('one');
  is_deeply($ws->read_message, {text => 'echo: one'}, 'open');
  my $n = () = $srv->reports_of('echo', 0);
  $ws->close;
  my @r = $srv->reports_of('echo', $n + 1);
  is_deeply($r[-1]{ev}, {type => 'websocket.disconnect', code => 1006, reason => 'client_closed'},
    'disconnect 1006 client_closed');
  is($r[-1]{after}, 'ok', 'a send after the client left is a silent no-op');
};

subtest 'an upgrade on a keep-alive connection after an HTTP request' => sub {
  my $c = http_connect($port);
  $c->send("GET /plain HTTP/1.1\r\nHost: x\r\n\r\n");
  my ($r) = $c->read_responses(n => 1);
  is($r->{status}, 200, 'first an HTTP response');
  my ($ws) = bless $c, 'PAGI::Test::WebSocket';
  $ws->send((PAGI::Test::WebSocket::ws_request(path => '/echo'))[0]);
  ok(wait_for(sub { $ws->pause(0.02); $ws->buffer =~ /\r\n\r\n/ }, 5), 'then the upgrade is answered');
  my ($res, $pos) = parse_response($ws->buffer, 0);
  is($res->{status}, 101, 'status 101');
  $ws->{pos} += $pos;
  $ws->send_text('again');
  is_deeply($ws->read_message, {text => 'echo: again'}, 'and the socket works');
  $ws->send_close(1000);
  is(($ws->read_close)[0], 1000, 'close');
};

subtest 'graceful shutdown: Close 1001' => sub {
  my ($ws) = ws_connect($port, path => '/echo');
  $ws->send_text('x');
  is_deeply($ws->read_message, {text => 'echo: x'}, 'open');
  my $n = () = $srv->reports_of('echo', 0);
  kill 'TERM', $srv->pid;
  my ($code) = $ws->read_close(5);
  is($code, 1001, 'SIGTERM: the server sends Close 1001 (going away)');
  $ws->send_close(1001);
  ok($ws->wait_closed(5), 'and closes once answered');
  my @r = $srv->reports_of('echo', $n + 1);
  is_deeply($r[-1]{ev}, {type => 'websocket.disconnect', code => 1001, reason => ''}, 'the app sees 1001');
};

is($srv->wait_exit, 0, 'server exits 0');
unlike($srv->log, qr/PAGI-TEST-CHILD-DIED/, 'no crash in the server');
unlike($srv->log, qr/ at \S+ line \d+/, 'no Perl warning or error in the server log');
done_testing;
