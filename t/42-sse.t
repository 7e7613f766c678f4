use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use Future::AsyncAwait;
use Time::HiRes ();
use lib 't/lib';
use PAGI::Test::Server qw(:all);

# Server-Sent Events (spec section 5) over loopback with a raw client: detection by
# Accept for GET and POST (the body arrives in sse.request), sse.start's headers,
# sse.send's wire format (event, multi-line data split on CRLF/CR/LF, id, retry),
# sse.comment, sse.keepalive, sse.close (later sends raise, a second close is
# ignored), returning, declining with sse.http.response.*, sse.disconnect on a client
# drop, HTTP/1.0, and what bad events get (a newline in event or id fails the send).

my %route;
my $app = async sub ($scope, $receive, $send) {
  return if $scope->{type} eq 'lifespan';
  if ($scope->{type} eq 'http') {
    await $receive->();
    await $send->({type => 'http.response.start', status => 200, headers => []});
    await $send->({type => 'http.response.body', body => "plain http\n"});
    return;
  }
  my $h = $route{$scope->{path}} or die "no route for $scope->{path}\n";
  await $h->($scope, $receive, $send);
};

$route{'/scope'} = async sub ($scope, $receive, $send) {
  my @events;
  while (1) {
    my $ev = await $receive->();
    push @events, $ev;
    last unless $ev->{type} eq 'sse.request' && $ev->{more};
  }
  report(case => 'scope', events => \@events, has_connection => exists $scope->{'pagi.connection'} ? 1 : 0,
    buffered => $scope->{'pagi.transport'} ? $scope->{'pagi.transport'}->buffered_amount : 'none',
    map { $_ => $scope->{$_} } qw(type method path query_string http_version scheme headers pagi));
  await $send->({type => 'sse.start'});
  await $send->({type => 'sse.send', data => 'hi'});
};

$route{'/events'} = async sub ($scope, $receive, $send) {
  await $receive->();
  my %r;
  $r{before_start} = await attempt($send, {type => 'sse.send', data => 'early'});
  await $send->({type => 'sse.start', headers => [['X-Stream', 'yes']]});
  $r{start_twice} = await attempt($send, {type => 'sse.start'});
  await $send->({type => 'sse.send', data => 'plain'});
  await $send->({type => 'sse.send', event => 'update', id => '42', retry => 3000,
    data => "line1\r\nline2\rline3\nline4"});
  await $send->({type => 'sse.send', data => "caf\x{e9} \x{2603}", event => "\x{e9}v"});
  await $send->({type => 'sse.send', data => '', id => ''});
  await $send->({type => 'sse.send', data => "trailing\n"});
  await $send->({type => 'sse.comment', comment => 'a comment'});
  await $send->({type => 'sse.comment', comment => ":already\nsecond"});
  $r{event_nl} = await attempt($send, {type => 'sse.send', data => 'x', event => "a\nb"});
  $r{event_cr} = await attempt($send, {type => 'sse.send', data => 'x', event => "a\rb"});
  $r{id_nl} = await attempt($send, {type => 'sse.send', data => 'x', id => "1\n2"});
  $r{retry_bad} = await attempt($send, {type => 'sse.send', data => 'x', retry => 'soon'});
  $r{retry_neg} = await attempt($send, {type => 'sse.send', data => 'x', retry => -1});
  $r{no_data} = await attempt($send, {type => 'sse.send', event => 'x'});
  $r{ref_data} = await attempt($send, {type => 'sse.send', data => ['x']});
  $r{no_comment} = await attempt($send, {type => 'sse.comment'});
  $r{decline_after_start} = await attempt($send, {type => 'sse.http.response.start', status => 204});
  $r{unknown} = await attempt($send, {type => 'sse.frobnicate'});
  $r{http_event} = await attempt($send, {type => 'http.response.body', body => 'x'});
  await $send->({type => 'sse.send', data => 'last'});
  $r{close} = await attempt($send, {type => 'sse.close'});
  $r{send_after_close} = await attempt($send, {type => 'sse.send', data => 'late'});
  $r{comment_after_close} = await attempt($send, {type => 'sse.comment', comment => 'late'});
  $r{keepalive_after_close} = await attempt($send, {type => 'sse.keepalive', interval => 1});
  $r{close_again} = await attempt($send, {type => 'sse.close'});
  report(case => 'events', results => \%r);
};

$route{'/keepalive'} = async sub ($scope, $receive, $send) {
  await $receive->();
  await $send->({type => 'sse.start'});
  my $bad = await attempt($send, {type => 'sse.keepalive', interval => 'often'});
  my $interval = $scope->{query_string} =~ s/\Afast-//r ne $scope->{query_string} ? 0.2 : 1;
  await $send->({type => 'sse.keepalive', interval => $interval, comment => $scope->{query_string}});
  report(case => 'keepalive', bad => $bad);
  my $ev = await $receive->();    # until the client leaves
  report(case => 'keepalive-end', ev => $ev);
};

$route{'/disconnect'} = async sub ($scope, $receive, $send) {
  await $receive->();
  await $send->({type => 'sse.start'});
  await $send->({type => 'sse.send', data => 'hello'});
  my $ev = await $receive->();
  my $after = await attempt($send, {type => 'sse.send', data => 'into the void'});
  report(case => 'disconnect', ev => $ev, after => $after);
};

$route{'/return'} = async sub ($scope, $receive, $send) {
  await $receive->();
  await $send->({type => 'sse.start'});
  for my $i (1 .. 3) { await $send->({type => "sse.send", data => $i}) }
};

$route{'/decline'} = async sub ($scope, $receive, $send) {
  await $receive->();
  my ($status) = $scope->{query_string} =~ /status=([0-9]+)/;
  my %r;
  $r{start} = await attempt($send, {type => 'sse.http.response.start', status => $status,
    headers => [['Content-Type', 'text/plain']]});
  $r{body} = await attempt($send, {type => 'sse.http.response.body',
    body => $status == 204 ? '' : 'go away'});
  $r{send_after} = await attempt($send, {type => 'sse.send', data => 'x'});
  $r{start_after} = await attempt($send, {type => 'sse.start'});
  report(case => 'decline', status => $status, results => \%r);
};

$route{'/bad-header'} = async sub ($scope, $receive, $send) {
  await $receive->();
  my $evil = ['X-Evil', "a\r\nInjected: 1"];
  my @r;
  if ($scope->{query_string} eq 'start') {
    push @r, await attempt($send, {type => 'sse.start', headers => [$evil]});
  }
  elsif ($scope->{query_string} eq 'shape') {
    push @r, await attempt($send, {type => 'sse.start', headers => [['X-A', '1', 'Injected']]});
  }
  else {
    push @r, await attempt($send, {type => 'sse.http.response.start', status => 403, headers => [$evil]});
    push @r, await attempt($send, {type => 'sse.http.response.body', body => 'Injected body'});
  }
  report(case => 'bad-header', mode => $scope->{query_string}, results => \@r);
};

$route{'/flood'} = async sub ($scope, $receive, $send) {
  await $receive->();
  await $send->({type => 'sse.start'});
  my $data = 'x' x 1024;
  for my $i (1 .. 30000) { await $send->({type => 'sse.send', data => $data}) }
  my $ev = await $receive->();
  report(case => 'flood', ev => $ev);
};

# Dies after an event, never suspending: the event still reaches the client
$route{'/die-mid-stream'} = async sub ($scope, $receive, $send) {
  await $receive->();
  await $send->({type => 'sse.start'});
  await $send->({type => 'sse.send', data => 'one'});
  die "sse boom mid stream\n";
};

$route{'/die'} = async sub ($scope, $receive, $send) { await $receive->(); die "sse boom\n" };

my $srv = start_server(app => $app, shutdown_timeout => 10);
ok($srv->port, 'server started') or BAIL_OUT('server did not start: ' . $srv->log);
my $port = $srv->port;

sub sse_request ($path, %opt) {
  my $method = $opt{method} // 'GET';
  my $version = $opt{version} // '1.1';
  my $body = $opt{body} // '';
  my $req = "$method $path HTTP/$version\r\nHost: 127.0.0.1\r\n"
    . ($opt{no_accept} ? '' : 'Accept: ' . ($opt{accept} // 'text/event-stream') . "\r\n");
  $req .= "$_->[0]: $_->[1]\r\n" for @{$opt{headers} || []};
  $req .= 'Content-Length: ' . length($body) . "\r\n" if length $body && !$opt{chunked};
  $req .= "Transfer-Encoding: chunked\r\n" if $opt{chunked};
  return "$req\r\n" . ($opt{chunked} ? $opt{chunked} : $body);
}

# A streaming response as it stands: ($head, $body so far, $complete).
# Chunked bodies are decoded; a close-delimited one is complete once the server closed.
sub stream_of ($c) {
  my $buf = $c->buffer;
  my $end = index($buf, "\r\n\r\n");
  return ('', '', 0) if $end < 0;
  my $head = substr($buf, 0, $end + 4);
  my $rest = substr($buf, $end + 4);
  return ($head, $rest, $c->closed ? 1 : 0) unless $head =~ /^transfer-encoding: *chunked\r$/mi;
  my $body = '';
  while ($rest =~ s/\A([0-9a-f]+)\r\n//i) {
    my $size = hex $1;
    return ($head, $body, 1) if $size == 0 && $rest =~ /\A\r\n/;
    if (length($rest) < $size + 2) { $rest = ''; last }
    $body .= substr($rest, 0, $size);
    substr($rest, 0, $size + 2, '');
  }
  return ($head, $body, 0);
}

# Reads until the body matches $re (or the stream ends, or $timeout)
sub read_until ($c, $re, $timeout = 5) {
  my ($head, $body, $done);
  wait_for(sub {
    $c->pause(0.02);
    ($head, $body, $done) = stream_of($c);
    $body =~ $re || $done || $c->closed;
  }, $timeout);
  return ($head, $body, $done);
}

subtest 'detection and scope: GET, POST with a body, plain HTTP without Accept' => sub {
  my $c = http_connect($port);
  $c->send(sse_request('/scope?q=1', accept => 'text/html, TEXT/Event-Stream;q=0.9'));
  my ($head, $body) = read_until($c, qr/data: hi/);
  like($head, qr{\AHTTP/1\.1 200 OK\r\n}, 'GET with Accept: text/event-stream streams');
  my ($r) = $srv->reports_of('scope');
  is($r->{type}, 'sse', 'scope type sse');
  is($r->{method}, 'GET', 'method');
  is($r->{path}, '/scope', 'path');
  is($r->{query_string}, 'q=1', 'query_string');
  is($r->{has_connection}, 0, 'no pagi.connection in an sse scope');
  like($r->{buffered}, qr/\A[0-9]+\z/, 'pagi.transport, with buffered_amount');
  is($r->{pagi}{version}, '0.3', 'pagi version');
  is_deeply($r->{events}, [{type => 'sse.request', body => '', more => 0}], 'a GET gives one sse.request');

  $c = http_connect($port);
  $c->send(sse_request('/scope', method => 'POST', body => 'a=1&b=2'));
  read_until($c, qr/data: hi/);
  ($r) = ($srv->reports_of('scope', 2))[1];
  is($r->{method}, 'POST', 'POST with Accept: text/event-stream is SSE too');
  is(join('', map { $_->{body} } @{$r->{events}}), 'a=1&b=2', 'its body arrives in sse.request');
  is($r->{events}[-1]{more}, 0, '... ending with more => 0');

  $c = http_connect($port);
  $c->send(sse_request('/scope', method => 'POST', chunked => "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"));
  read_until($c, qr/data: hi/);
  ($r) = ($srv->reports_of('scope', 3))[2];
  is(join('', map { $_->{body} } @{$r->{events}}), 'abcde', 'a chunked POST body too');
  is_deeply([map { $_->{type} } @{$r->{events}}], [('sse.request') x @{$r->{events}}], 'all sse.request');

  my ($res) = http_exchange($port, sse_request('/scope', no_accept => 1));
  is($res->[0]{body}, "plain http\n", 'without the Accept header it is an http scope');
};

subtest 'sse.start, sse.send, sse.comment, sse.close' => sub {
  my $c = http_connect($port);
  $c->send(sse_request('/events'));
  my ($head, $body, $done) = read_until($c, qr/data: last\n\n/);
  my ($res) = PAGI::Test::Server::parse_response($head . "0\r\n\r\n", 0);
  is($res->{status}, 200, 'status 200');
  is($res->{h}{'content-type'}, 'text/event-stream', 'Content-Type: text/event-stream added');
  is($res->{h}{'cache-control'}, 'no-cache', 'Cache-Control: no-cache added');
  is($res->{h}{'transfer-encoding'}, 'chunked', 'chunked on HTTP/1.1');
  ok(!defined $res->{h}{'content-length'}, 'no Content-Length');
  ok(defined $res->{h}{date}, 'Date');
  is($res->{h}{'x-stream'}, 'yes', "the app's header");
  my $want = join '',
    "data: plain\n\n",
    "event: update\ndata: line1\ndata: line2\ndata: line3\ndata: line4\nid: 42\nretry: 3000\n\n",
    "event: \xc3\xa9v\ndata: caf\xc3\xa9 \xe2\x98\x83\n\n",
    "data: \nid: \n\n",
    "data: trailing\ndata: \n\n",
    ":a comment\n\n",
    ":already\n:second\n\n",
    "data: last\n\n";
  is($body, $want, 'the event stream, byte for byte (data split on CRLF, CR and LF; UTF-8)');
  ok(wait_for(sub { $c->pause(0.02); (stream_of($c))[2] }, 5), 'sse.close ends the chunked stream');
  ok($c->wait_closed(5), 'and the connection closes');
  my ($r) = $srv->reports_of('events');
  my $x = $r->{results};
  like($x->{before_start}, qr/error: sse.send before sse.start/, 'sse.send before sse.start fails');
  like($x->{start_twice}, qr/error: sse.start after the response started/, 'sse.start twice fails');
  like($x->{event_nl}, qr/error: sse.send: event must not contain a newline/, 'LF in event fails');
  like($x->{event_cr}, qr/error: sse.send: event must not contain a newline/, 'CR in event fails');
  like($x->{id_nl}, qr/error: sse.send: id must not contain a newline/, 'LF in id fails');
  like($x->{retry_bad}, qr/error: sse.send: retry must be an integer/, 'a non-integer retry fails');
  like($x->{retry_neg}, qr/error: sse.send: retry must be an integer >= 0/, 'a negative retry fails');
  like($x->{no_data}, qr/error: sse.send: data is required/, 'data is required');
  like($x->{ref_data}, qr/error: sse.send: data must be a string/, 'data must be a string');
  like($x->{no_comment}, qr/error: sse.comment: comment is required/, 'comment is required');
  like($x->{decline_after_start}, qr/error: sse.http.response.start after sse.start/,
    'declining after sse.start fails');
  like($x->{unknown}, qr/error: unknown event type 'sse.frobnicate'/, 'unknown event type fails');
  like($x->{http_event}, qr/error: unknown event type 'http.response.body' for an sse scope/,
    'http events are not sse events');
  is($x->{close}, 'ok', 'sse.close');
  like($x->{send_after_close}, qr/error: sse.send after sse.close/, 'sse.send after sse.close raises');
  like($x->{comment_after_close}, qr/error: sse.comment after sse.close/, 'sse.comment too');
  like($x->{keepalive_after_close}, qr/error: sse.keepalive after sse.close/, 'sse.keepalive too');
  is($x->{close_again}, 'ok', 'a second sse.close is ignored');
  unlike($body, qr/late|x\n/, 'nothing from the failed sends reached the wire');
};

subtest 'sse.keepalive' => sub {
  my $c = http_connect($port);
  $c->send(sse_request('/keepalive?ka'));
  my $t0 = Time::HiRes::time();
  my ($head, $body) = read_until($c, qr/(?::ka\n\n){2}/, 5);
  is($body, ":ka\n\n:ka\n\n", 'keepalive comments arrive on the interval');
  my ($r) = $srv->reports_of('keepalive');
  like($r->{bad}, qr/error: sse.keepalive: interval must be a number/, 'a bad interval fails');
  $c->close;
  my ($end) = $srv->reports_of('keepalive-end');
  is_deeply($end->{ev}, {type => 'sse.disconnect', reason => 'client_closed'}, 'then the client leaves');

  $c = http_connect($port);
  $c->send(sse_request('/keepalive'));
  ($head, $body) = read_until($c, qr/:\n\n/, 5);
  is($body, ":\n\n", 'an empty keepalive comment is ":"');
};

subtest 'sse.keepalive below a second: interval 0.2 gives about five comments a second' => sub {
  my $c = http_connect($port);
  $c->send(sse_request('/keepalive?fast-ka'));
  my $count = sub { scalar(() = (stream_of($c))[1] =~ /:fast-ka\n\n/g) };
  read_until($c, qr/:fast-ka\n\n/, 5);    # the first one: the stream is open and ticking
  my $before = $count->();
  $c->pause(1.0);
  my $n = $count->() - $before;
  cmp_ok($n, '>=', 3, "at least 3 comments in 1 s (got $n)");
  cmp_ok($n, '<=', 7, "at most 7 comments in 1 s (got $n)");
  $c->close;
};

subtest 'client disconnect: sse.disconnect client_closed' => sub {
  my $c = http_connect($port);
  $c->send(sse_request('/disconnect'));
  read_until($c, qr/data: hello/);
  $c->close;
  my ($r) = $srv->reports_of('disconnect');
  is_deeply($r->{ev}, {type => 'sse.disconnect', reason => 'client_closed'}, 'sse.disconnect client_closed');
  is($r->{after}, 'ok', 'a send after the client left is a silent no-op');
};

subtest 'returning ends the stream' => sub {
  my $c = http_connect($port);
  $c->send(sse_request('/return'));
  my ($head, $body, $done) = read_until($c, qr/NEVER/, 5);
  is($body, "data: 1\n\ndata: 2\n\ndata: 3\n\n", 'the events');
  ok($done, 'the chunked stream is terminated');
  ok($c->wait_closed(5), 'the connection closes');
};

subtest 'HTTP/1.0: close-delimited' => sub {
  my $c = http_connect($port);
  $c->send(sse_request('/return', version => '1.0'));
  ok($c->wait_closed(5), 'closed at the end');
  my ($head, $body) = stream_of($c);
  unlike($head, qr/transfer-encoding/i, 'no chunking for HTTP/1.0');
  is($body, "data: 1\n\ndata: 2\n\ndata: 3\n\n", 'the events, raw');
};

subtest 'decline with sse.http.response.*' => sub {
  for my $status (204, 401) {
    my ($res) = http_exchange($port, sse_request("/decline?status=$status"));
    my $r = $res->[0];
    is($r->{status}, $status, "declined with $status");
    is($r->{body}, $status == 204 ? '' : 'go away', 'its body');
    is($r->{h}{'content-type'}, 'text/plain', "the app's Content-Type, not text/event-stream");
    my ($rep) = grep { $_->{status} == $status } $srv->reports_of('decline', $status == 204 ? 1 : 2);
    is($rep->{results}{start}, 'ok', 'start ok');
    is($rep->{results}{body}, 'ok', 'body ok');
    like($rep->{results}{send_after}, qr/error: sse.send after a declined/, 'sse.send after a decline raises');
    like($rep->{results}{start_after}, qr/error: sse.start after the response started/, 'sse.start too');
  }
};

subtest 'a header with CR/LF in sse.start or a decline: the send fails' => sub {
  for my $mode (qw(start decline)) {
    my $c = http_connect($port);
    $c->send(sse_request("/bad-header?$mode"));
    my $bytes = $c->read_all(3);
    my ($r) = grep { $_->{mode} eq $mode } $srv->reports_of('bad-header', $mode eq 'start' ? 1 : 2);
    like($r->{results}[0], qr/error: .*invalid header value for X-Evil/, "$mode: the start send fails");
    unlike($bytes, qr/Injected/, "$mode: the bad bytes never reach the wire");
    ok($c->closed, "$mode: the connection is closed");
  }
  my $c = http_connect($port);
  $c->send(sse_request('/bad-header?shape'));
  my $bytes = $c->read_all(3);
  my ($r) = grep { $_->{mode} eq 'shape' } $srv->reports_of('bad-header', 3);
  is($r->{results}[0], 'error: sse.start: headers must be an array of [name, value] pairs',
    'headers of the wrong shape: sse.start fails');
  unlike($bytes, qr/Injected/, 'shape: nothing of it reaches the wire');
};

subtest 'a client that stops reading: sse.disconnect write_timeout' => sub {
  my $s2 = start_server(app => $app, request_timeout => 1);
  my $c = http_connect($s2->port);
  $c->send(sse_request('/flood'));
  # Read nothing: the server's writes back up until the write timeout
  my @r;
  wait_for(sub { @r = grep { $_->{case} eq 'flood' } $s2->reports; @r }, 15);
  is_deeply($r[0]{ev}, {type => 'sse.disconnect', reason => 'write_timeout'},
    'the app is told write_timeout (its sends waited, then became no-ops)');
  $c->close;
  is($s2->stop, 0, 'server exits 0');
};

subtest 'the app dies before sse.start: 500' => sub {
  my ($res) = http_exchange($port, sse_request('/die'));
  is($res->[0]{status}, 500, 'status 500');
  like($srv->log, qr/application error: sse boom/, 'logged');
};

subtest 'the app dies mid-stream: the events sent reach the client, then a close without the end' => sub {
  my $c = http_connect($port);
  $c->send(sse_request('/die-mid-stream'));
  my $bytes = $c->read_all(3);
  ok($c->closed, 'connection closed');
  like($bytes, qr/\AHTTP\/1\.1 200 OK\r\n(?:[^\r\n]+\r\n)*\r\nb\r\ndata: one\n\n\r\n\z/,
    'exactly the head and the event, without the last chunk');
  ok($srv->wait_log(qr/application error: sse boom mid stream/), 'logged');
};

subtest 'graceful shutdown ends open streams: sse.disconnect server_shutdown' => sub {
  my $c = http_connect($port);
  $c->send(sse_request('/disconnect'));
  read_until($c, qr/data: hello/);
  my $t0 = Time::HiRes::time();
  kill 'TERM', $srv->pid;
  ok(wait_for(sub { $c->pause(0.02); (stream_of($c))[2] }, 5), 'the stream is terminated cleanly');
  ok($c->wait_closed(5), 'and the connection closed');
  my ($r) = ($srv->reports_of('disconnect', 2))[1];
  is_deeply($r->{ev}, {type => 'sse.disconnect', reason => 'server_shutdown'}, 'the app sees server_shutdown');
  is($srv->wait_exit, 0, 'server exits 0');
  cmp_ok(Time::HiRes::time() - $t0, '<', 5, 'without waiting for shutdown_timeout');
};

unlike($srv->log, qr/PAGI-TEST-CHILD-DIED/, 'no crash in the server');
unlike($srv->log, qr/ at \S+ line \d+/, 'no Perl warning or error in the server log');
done_testing;
