use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use Future::AsyncAwait;
use File::Temp ();
use Time::HiRes ();
use lib 't/lib';
use PAGI::Test::Server qw(:all);

# HTTP/1.1 behaviour on real sockets: HTTP/1.0, HEAD, request bodies (chunked,
# streamed), response framing (chunked, trailers, more_body), Expect: 100-continue,
# server headers, Connection: close from either side, file and fh bodies.

my $tmp = File::Temp->new;
my $FILE_DATA = join '', map { chr($_ % 251) } 0 .. 199_999;
print {$tmp} $FILE_DATA;
close $tmp;
my $FILE = $tmp->filename;

async sub read_body_events ($receive) {
  my ($body, @events) = ('');
  while (1) {
    my $ev = await $receive->();
    push @events, {type => $ev->{type}, (exists $ev->{body} ? (len => length $ev->{body}, more => $ev->{more}) : ())};
    last if $ev->{type} ne 'http.request';
    $body .= $ev->{body};
    last unless $ev->{more};
  }
  return ($body, \@events);
}

my %route;
my $app = async sub ($scope, $receive, $send) {
  return if $scope->{type} eq 'lifespan';
  my ($path) = $scope->{path} =~ m{\A(/[^/]*)};
  my $handler = $route{$path} or return await respond($send, 404, 'no route');
  await $handler->($scope, $receive, $send);
};

# Echoes the request body with its length; reports the body events
$route{'/echo'} = async sub ($scope, $receive, $send) {
  my ($body, $events) = await read_body_events($receive);
  report(events => $events, len => length $body);
  await respond($send, 200, "got " . length($body) . ": $body", ['content-type', 'text/plain']);
};

# The same resource for GET and HEAD, in one piece or streamed
$route{'/resource'} = async sub ($scope, $receive, $send) {
  my $text = "resource body\n" x 3;
  if ($scope->{query_string} eq 'stream') {
    await $send->({type => 'http.response.start', status => 200, headers => [['content-type', 'text/plain'], ['etag', '"v1"']]});
    await $send->({type => 'http.response.body', body => substr($text, 0, 10), more => 1});
    await $send->({type => 'http.response.body', body => substr($text, 10)});
    return;
  }
  await respond($send, 200, $text, ['content-type', 'text/plain'], ['etag', '"v1"']);
};

# Streams pieces given in the query (sizes separated by commas), no Content-Length
$route{'/chunks'} = async sub ($scope, $receive, $send) {
  my @sizes = split /,/, $scope->{query_string};
  await $send->({type => 'http.response.start', status => 200, headers => [['content-type', 'text/plain']]});
  my $i = 0;
  for my $n (@sizes) {
    await $send->({type => 'http.response.body', body => chr(ord('a') + $i++ % 26) x $n, more => 1});
  }
  await $send->({type => 'http.response.body', body => '', more => 0});
};

# more_body (ASGI's name) is taken as more
$route{'/more_body'} = async sub ($scope, $receive, $send) {
  await $send->({type => 'http.response.start', status => 200, headers => []});
  await $send->({type => 'http.response.body', body => 'first,', more_body => 1});
  await $send->({type => 'http.response.body', body => 'second', more_body => 0});
};

# Trailers: declared in start, sent after the body
$route{'/trailers'} = async sub ($scope, $receive, $send) {
  my @h = $scope->{query_string} eq 'length' ? (['content-length', 5]) : ();
  await $send->({type => 'http.response.start', status => 200, headers => \@h, trailers => 1});
  await $send->({type => 'http.response.body', body => 'he', more => 1});
  await $send->({type => 'http.response.body', body => 'llo'});
  my $f = $send->({type => 'http.response.trailers', headers => [['X-Checksum', 'abc123'], ['X-Count', '2']]});
  my $ok = eval { await $f; 1 };
  report(trailers => $ok ? 'ok' : "failed: $@");
};

$route{'/undeclared-trailers'} = async sub ($scope, $receive, $send) {
  await $send->({type => 'http.response.start', status => 200, headers => [['content-length', 2]]});
  my $ok = eval { await $send->({type => 'http.response.trailers', headers => []}); 1 };
  report(undeclared => $ok ? 'ok' : 'failed');
  await $send->({type => 'http.response.body', body => 'ok'});
};

# Expect: 100-continue: read after a pause, or answer without reading
$route{'/continue'} = async sub ($scope, $receive, $send) {
  if ($scope->{query_string} eq 'ignore') {
    return await respond($send, 403, 'no thanks');
  }
  await delay(0.5);
  report(reading => 1);
  my ($body) = await read_body_events($receive);
  await respond($send, 200, "got $body");
};

# Connection: close set by the app
$route{'/app-close'} = async sub ($scope, $receive, $send) {
  await respond($send, 200, 'bye', ['Connection', 'close']);
};

# File and fh bodies
$route{'/file'} = async sub ($scope, $receive, $send) {
  my %q = map { split /=/, $_, 2 } split /&/, $scope->{query_string};
  my %ev = (type => 'http.response.body');
  $ev{offset} = $q{offset} if exists $q{offset};
  $ev{length} = $q{length} if exists $q{length};
  my $fh;
  if ($q{via} eq 'fh') {
    open($fh, '<:raw', $FILE) or die $!;
    $ev{fh} = $fh;
  }
  elsif ($q{via} eq 'pipe') {
    pipe(my $r, my $w) or die $!;
    print {$w} "from a pipe\n";
    close $w;
    $ev{fh} = $fh = $r;
  }
  elsif ($q{via} eq 'missing') { $ev{file} = "$FILE.does-not-exist" }
  elsif ($q{via} eq 'badfh')   { $ev{fh} = 'not a handle' }
  else                         { $ev{file} = $FILE }
  await $send->({type => 'http.response.start', status => 200, headers => [['content-type', 'application/octet-stream']]});
  my $ok = eval { await $send->(\%ev); 1 };
  my $err = $@;
  close $fh if $fh;
  report(file => $ok ? 'ok' : "failed: $err");
  await $send->({type => 'http.response.body', body => 'fallback'}) unless $ok;
};

# Answers before the body arrives, with a receive still pending
$route{'/early-answer'} = async sub ($scope, $receive, $send) {
  my $pending = $receive->();
  my $was_ready = $pending->is_ready ? 1 : 0;
  await respond($send, 200, 'early');
  my $ev = await Future->wait_any($pending, delay(3)->then_done({type => 'timeout'}));
  my $again = await Future->wait_any($receive->(), delay(3)->then_done({type => 'timeout'}));
  report(early => {was_ready => $was_ready, pending => $ev->{type}, again => $again->{type}});
};

# A 16 MiB response in 64 KiB sends, counting the sends that completed
my $big_done = 0;
$route{'/big'} = async sub ($scope, $receive, $send) {
  $big_done = 0;
  await $send->({type => 'http.response.start', status => 200, headers => [['content-length', 256 * 65536]]});
  for my $i (1 .. 256) {
    await $send->({type => 'http.response.body', body => chr(64 + $i % 26) x 65536, more => $i < 256 ? 1 : 0});
    $big_done++;
  }
};
$route{'/big-progress'} = async sub ($scope, $receive, $send) { await respond($send, 200, $big_done) };

# Pipelined requests whose apps finish in reverse order
$route{'/sleep'} = async sub ($scope, $receive, $send) {
  my ($ms) = $scope->{query_string} =~ /ms=([0-9]+)/;
  await delay($ms / 1000);
  await respond($send, 200, "slept $ms");
};

my $srv = start_server(app => $app);
ok($srv->port, 'server started') or BAIL_OUT($srv->log);

sub get ($target, %opt) {
  my $version = $opt{version} // '1.1';
  my $method = $opt{method} // 'GET';
  my $extra = join '', map { "$_\r\n" } @{$opt{headers} || []};
  my ($res, $c) = http_exchange($srv->port, "$method $target HTTP/$version\r\nHost: t\r\n$extra\r\n"
    . ($opt{body} // ''), methods => [$method], %{$opt{read} || {}});
  return ($res->[0], $c);
}

subtest 'HTTP/1.0: close by default, keep-alive when asked' => sub {
  my ($r, $c) = get('/resource', version => '1.0');
  is($r->{status}, 200, 'HTTP/1.0 GET: 200');
  is($r->{version}, 'HTTP/1.1', 'the status line says HTTP/1.1');
  is($r->{h}{connection}, 'close', 'Connection: close');
  ok($c->wait_closed(3), 'the server closes the connection');
  ($r, $c) = get('/resource', version => '1.0', headers => ['Connection: keep-alive']);
  is($r->{h}{connection}, 'keep-alive', 'Connection: keep-alive is honoured and answered');
  is($r->{framing}, 'length', 'with a Content-Length');
  $c->send("GET /resource HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  my ($r2) = $c->read_responses;
  is($r2->{status}, 200, 'a second request on the same HTTP/1.0 connection');
  ok(!$c->closed, 'still open');
  ($r, $c) = get('/resource?stream', version => '1.0', headers => ['Connection: keep-alive'],
    read => {until_close => 1});
  is($r->{framing}, 'close', 'HTTP/1.0 streaming response: close-delimited (no chunked for 1.0)');
  is($r->{h}{connection}, 'close', '... with Connection: close');
  is($r->{body}, "resource body\n" x 3, '... and the whole body');
  ok($c->closed, '... the close ends it');
};

subtest 'HEAD: the headers of GET, no body' => sub {
  for my $q ('', '?stream') {
    my ($g) = get("/resource$q");
    my ($h, $c) = get("/resource$q", method => 'HEAD');
    is($h->{status}, 200, "HEAD /resource$q: 200");
    my $strip = sub ($r) { [grep { $_->[0] ne 'date' } @{$r->{headers}}] };
    is_deeply($strip->($h), $strip->($g), '... same headers as GET (but Date)');
    $c->send("GET /resource$q HTTP/1.1\r\nHost: t\r\n\r\n");
    my ($after) = $c->read_responses;
    is($after->{body}, "resource body\n" x 3, '... no body bytes: the next response on the connection parses');
  }
  my ($h, $c) = get('/file?via=file', method => 'HEAD');
  is($h->{h}{'content-length'}, length $FILE_DATA, 'HEAD of a file: its Content-Length');
  $c->send("GET /resource HTTP/1.1\r\nHost: t\r\n\r\n");
  my ($after) = $c->read_responses;
  is($after->{status}, 200, '... and no body bytes');
};

subtest 'request bodies: Content-Length, chunked with extensions and trailers' => sub {
  my $body = join '', map { chr } 0 .. 255;
  my ($r) = get('/echo', method => 'POST', headers => ['Content-Length: 256'], body => $body);
  is($r->{body}, "got 256: $body", 'Content-Length body, all byte values');
  my $chunked = "5;a=b\r\nhello\r\n1\r\n \r\n5 ; x\r\nworld\r\n0\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n";
  my $c;
  ($r, $c) = get('/echo', method => 'POST', headers => ['Transfer-Encoding: chunked'], body => $chunked);
  is($r->{body}, 'got 11: hello world', 'chunked body with extensions and trailers, de-chunked');
  $c->send("GET /resource HTTP/1.1\r\nHost: t\r\n\r\n");
  my ($next) = $c->read_responses;
  is($next->{status}, 200, 'the request after a chunked body with trailers parses');
  ($r) = get('/echo', method => 'POST', headers => ['Transfer-Encoding: chunked'], body => "0\r\n\r\n");
  is($r->{body}, 'got 0: ', 'an empty chunked body');
  ($r) = get('/echo', method => 'POST', headers => ['Content-Length: 0']);
  is($r->{body}, 'got 0: ', 'Content-Length: 0');
};

subtest 'streamed request bodies: events with more => 1, then more => 0' => sub {
  for my $chunked (0, 1) {
    my @before = $srv->reports;
    my $c = http_connect($srv->port);
    my @pieces = ('abc', 'defgh', 'ij');
    my $head = "POST /echo HTTP/1.1\r\nHost: t\r\n" . ($chunked ? "Transfer-Encoding: chunked\r\n" : "Content-Length: 10\r\n") . "\r\n";
    my @send = $chunked ? map({ sprintf("%x\r\n%s\r\n", length, $_) } @pieces) : @pieces;
    push @send, "0\r\n\r\n" if $chunked;
    # Split a chunk-size line across writes too
    @send = ($send[0], substr($send[1], 0, 1), substr($send[1], 1), @send[2 .. $#send]) if $chunked;
    ok($c->send_slowly([$head, @send], 0.15), 'sent in pieces');
    my ($r) = $c->read_responses;
    is($r->{body}, 'got 10: abcdefghij', ($chunked ? 'chunked' : 'Content-Length') . ': the whole body');
    my ($rep) = ($srv->wait_reports(@before + 1))[-1];
    my @ev = @{$rep->{events}};
    cmp_ok(scalar @ev, '>=', 2, 'several http.request events');
    is_deeply([map { $_->{more} } @ev], [(1) x $#ev, 0], 'more => 1 on all but the last');
    is(scalar(grep { $_->{len} == 0 && $_->{more} } @ev), 0, 'no empty event with more => 1');
  }
};

subtest 'chunked responses when the app gives no Content-Length' => sub {
  my ($r) = get('/chunks?3,1000,0,5');
  is($r->{h}{'transfer-encoding'}, 'chunked', 'Transfer-Encoding: chunked');
  ok(!exists $r->{h}{'content-length'}, 'no Content-Length');
  ok($r->{body} eq 'aaa' . ('b' x 1000) . 'ddddd', 'the body');
  is_deeply($r->{chunks}, [3, 1000, 5], 'one chunk per non-empty send; an empty send writes nothing');
  ($r) = get('/more_body');
  is($r->{body}, 'first,second', 'more_body is accepted as an alias of more');
  is($r->{framing}, 'chunked', '... streamed');
};

subtest 'trailers' => sub {
  my @before = $srv->reports;
  my ($r, $c) = get('/trailers', headers => ['TE: trailers']);
  is($r->{body}, 'hello', 'body');
  is_deeply($r->{trailers}, [['x-checksum', 'abc123'], ['x-count', '2']], 'trailers after the last chunk');
  my @rep = $srv->wait_reports(@before + 1);
  is($rep[-1]{trailers}, 'ok', 'the trailers send succeeded');
  $c->send("GET /resource HTTP/1.1\r\nHost: t\r\n\r\n");
  ($r) = $c->read_responses;
  is($r->{status}, 200, 'the connection is reusable after trailers');

  ($r, $c) = get('/trailers?length');
  is($r->{body}, 'hello', "with the app's Content-Length: the body");
  @rep = $srv->wait_reports(@before + 2);
  is($rep[-1]{trailers}, 'ok', '... the trailers event is accepted (and dropped: no chunked framing)');
  $c->send("GET /resource HTTP/1.1\r\nHost: t\r\n\r\n");
  ($r) = $c->read_responses;
  is($r->{status}, 200, '... and the connection goes on');

  ($r, $c) = get('/trailers', version => '1.0', read => {until_close => 1});
  is($r->{body}, 'hello', 'HTTP/1.0: close-delimited body');
  @rep = $srv->wait_reports(@before + 3);
  is($rep[-1]{trailers}, 'ok', '... the trailers event is accepted');

  ($r) = get('/undeclared-trailers');
  @rep = $srv->wait_reports(@before + 4);
  is($rep[-1]{undeclared}, 'failed', 'trailers without trailers => 1 in start: the send fails');
  is($r->{body}, 'ok', '... and the response goes on');
};

subtest 'Expect: 100-continue' => sub {
  my @before = $srv->reports;
  my $c = http_connect($srv->port);
  $c->send("POST /continue HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
  $c->pause(0.25);
  is($c->buffer, '', 'no 100 before the app reads');
  ok(wait_for(sub { $c->pause(0.02); $c->buffer =~ /\AHTTP\/1\.1 100 Continue\r\n\r\n\z/ }, 3),
    '"HTTP/1.1 100 Continue" once the app calls receive');
  my @rep = $srv->wait_reports(@before + 1);
  is($rep[-1]{reading}, 1, '... which the app did after its pause');
  $c->send('data');
  my ($r) = $c->read_responses;
  is($r->{status}, 200, 'final response');
  is($r->{body}, 'got data', 'with the body sent after the 100');
  is(scalar @{$r->{interim}}, 1, 'exactly one interim response');
  $c->send("POST /continue HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
  ok(wait_for(sub { $c->pause(0.02); $c->buffer =~ /\AHTTP\/1\.1 100 Continue\r\n\r\n\z/ }, 3),
    'a second Expect: 100-continue request on the same connection gets its own 100');
  $c->send('more');
  ($r) = $c->read_responses;
  is($r->{body}, 'got more', '... and its response');

  $c = http_connect($srv->port);
  $c->send("POST /continue?ignore HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
  ($r) = $c->read_responses;
  is($r->{status}, 403, 'the app answers without reading');
  is_deeply($r->{interim}, [], 'no 100 Continue was sent');
  is($r->{h}{connection}, 'close', 'Connection: close (the unsent body would desync the connection)');
  ok($c->wait_closed(3), 'the server closes');

  # RFC 9110 10.1.1: a server MUST ignore a 100-continue expectation in an HTTP/1.0
  # request (its client knows no interim responses: a 100 would be its final response)
  $c = http_connect($srv->port);
  $c->send("POST /continue HTTP/1.0\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
  ok(!wait_for(sub { $c->pause(0.02); length $c->buffer }, 1.0), 'HTTP/1.0: no 100 Continue while the app reads');
  $c->send('data');
  ($r) = $c->read_responses;
  is($r->{version}, 'HTTP/1.1', '... the final response');
  is($r->{status}, 200, '... is the first thing the client gets');
  is_deeply($r->{interim}, [], '... with no interim response before it');
  is($r->{body}, 'got data', '... and the body sent without waiting was read');
};

subtest 'Date and Server headers' => sub {
  my ($r) = get('/resource');
  like($r->{h}{date}, qr/\A(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT\z/,
    'Date in IMF-fixdate');
  is($r->{h}{server}, "PAGI::Server/$PAGI::Server::VERSION", 'Server: PAGI::Server/VERSION, as upstream sends');
};

subtest 'Connection: close from either side' => sub {
  my ($r, $c) = get('/resource', headers => ['Connection: close']);
  is($r->{status}, 200, 'client Connection: close: answered');
  is($r->{h}{connection}, 'close', '... with Connection: close');
  ok($c->wait_closed(3), '... then closed');
  $c = http_connect($srv->port);
  $c->send("GET /resource HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /resource HTTP/1.1\r\nHost: t\r\n\r\n");
  my @r = $c->read_responses(n => 2, until_close => 1);
  is(scalar @r, 1, '... a request pipelined after it is not answered');
  ($r, $c) = get('/app-close');
  is($r->{body}, 'bye', 'app-set Connection: close: answered');
  is($r->{h}{connection}, 'close', '... one Connection: close header');
  is(scalar(grep { $_->[0] eq 'connection' } @{$r->{headers}}), 1, '... not two');
  ok($c->wait_closed(3), '... then closed');
};

subtest 'file and fh bodies' => sub {
  my @cases = (
    ['via=file', $FILE_DATA, 'a whole file'],
    ['via=file&offset=1000&length=5000', substr($FILE_DATA, 1000, 5000), 'file with offset and length'],
    ['via=file&offset=199990', substr($FILE_DATA, 199990), 'file with offset, to EOF'],
    ['via=file&offset=500000', '', 'an offset past EOF: 0 bytes'],
    ['via=file&length=0', '', 'length 0'],
    ['via=fh', $FILE_DATA, 'a whole fh'],
    ['via=fh&offset=7&length=70000', substr($FILE_DATA, 7, 70000), 'fh with offset and length'],
  );
  for my $case (@cases) {
    my ($q, $want, $name) = @$case;
    my ($r) = get("/file?$q", read => {timeout => 10});
    is($r->{status}, 200, "$name: 200");
    is($r->{framing}, 'length', "$name: Content-Length framing");
    is($r->{h}{'content-length'}, length $want, "$name: Content-Length " . length $want);
    ok($r->{body} eq $want, "$name: the bytes");
  }
  my ($r) = get('/file?via=pipe');
  is($r->{framing}, 'chunked', 'a pipe fh (unknown length): chunked');
  is($r->{body}, "from a pipe\n", '... its bytes');
  my @before = $srv->reports;
  ($r) = get('/file?via=missing');
  my @rep = $srv->wait_reports(@before + 1);
  like($rep[-1]{file}, qr/^failed: .*cannot open/, 'a file that cannot be opened: the send fails');
  is($r->{body}, 'fallback', '... before anything was written: the app can still answer');
  ($r) = get('/file?via=badfh');
  @rep = $srv->wait_reports(@before + 2);
  like($rep[-1]{file}, qr/^failed: .*fh/, 'an invalid fh: the send fails at once');
  my $c = http_connect($srv->port);
  $c->send(join '', map { "GET /file?via=file&offset=$_&length=3 HTTP/1.1\r\nHost: t\r\n\r\n" } 0 .. 9);
  my @r = $c->read_responses(n => 10);
  is_deeply([map { $_->{body} } @r], [map { substr($FILE_DATA, $_, 3) } 0 .. 9], 'pipelined file responses, in order');
};

subtest 'a receive pending when the response completes gets http.disconnect' => sub {
  my @before = $srv->reports;
  my $c = http_connect($srv->port);
  $c->send("POST /early-answer HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n");
  my ($r) = $c->read_responses;
  is($r->{body}, 'early', 'the early answer');
  $c->send('0123456789');
  my @rep = $srv->wait_reports(@before + 1, 8);
  is_deeply($rep[-1]{early}, {was_ready => 0, pending => 'http.disconnect', again => 'http.disconnect'},
    'the pending receive resolves with http.disconnect, and so does the next one');
  $c->send("GET /resource HTTP/1.1\r\nHost: t\r\n\r\n");
  ($r) = $c->read_responses;
  is($r->{status}, 200, 'the unread body was dropped; the connection goes on');
};

subtest 'flow control: sends wait while the client does not read' => sub {
  my $c = http_connect($srv->port, timeout => 20);
  $c->send("GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
  Time::HiRes::sleep(0.7);    # not reading
  my ($progress) = get('/big-progress');
  cmp_ok($progress->{body}, '<', 256, "while the client is not reading, sends wait ($progress->{body} of 256 done)");
  my ($r) = $c->read_responses(timeout => 20);
  is(length($r->{body}), 256 * 65536, 'then the whole 16 MiB arrives');
  ok($r->{body} eq join('', map { chr(64 + $_ % 26) x 65536 } 1 .. 256), '... intact and in order');
};

subtest 'pipelined requests answered in order even when later apps finish first' => sub {
  my $c = http_connect($srv->port);
  my @ms = (300, 200, 100, 0, 50);
  $c->send(join '', map { "GET /sleep?ms=$_ HTTP/1.1\r\nHost: t\r\n\r\n" } @ms);
  my @r = $c->read_responses(n => scalar @ms, timeout => 8);
  is_deeply([map { $_->{body} } @r], [map { "slept $_" } @ms], 'responses in request order');
};

is($srv->stop, 0, 'server exits 0 on SIGTERM');
is_deeply([$srv->log_grep(qr/PAGI-TEST-CHILD-DIED|Deep recursion|uninitialized/)], [], 'no crash or warning in the log');

done_testing;
