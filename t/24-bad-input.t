use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use Future::AsyncAwait;
use Socket qw(SOL_SOCKET SO_LINGER);
use Time::HiRes ();
use lib 't/lib';
use PAGI::Test::Server qw(:all);

# Bad input from clients and from apps, and what the client gets for each: the
# server's own error responses (close-delimited, text/plain, Connection: close),
# 500s for broken apps, closes for broken streams, timeouts, and clients that vanish.

my %route;
# A plain sub, so that what a handler returns (or throws) reaches the server as is
my $app = sub ($scope, $receive, $send) {
  return Future->done if $scope->{type} eq 'lifespan';
  my $handler = $route{$scope->{path}} or return respond($send, 200, "ok $scope->{path}");
  return $handler->($scope, $receive, $send);
};

$route{'/read'} = async sub ($scope, $receive, $send) {
  my ($body, @types) = ('');
  while (1) {
    my $ev = await $receive->();
    push @types, $ev->{type};
    last if $ev->{type} ne 'http.request';
    $body .= $ev->{body};
    last unless $ev->{more};
  }
  my $conn = $scope->{'pagi.connection'};
  report(types => \@types, len => length $body, reason => $conn->disconnect_reason);
  await respond($send, 200, 'read ' . length $body);
};

$route{'/die-before'} = async sub ($scope, $receive, $send) { die "boom before start\n" };
$route{'/return-before'} = async sub ($scope, $receive, $send) { return };
$route{'/not-a-future'} = sub ($scope, $receive, $send) { return 42 };
$route{'/die-sync'} = sub ($scope, $receive, $send) { die "sync boom\n" };
$route{'/die-after-start'} = async sub ($scope, $receive, $send) {
  await $send->({type => 'http.response.start', status => 200, headers => [['content-length', 10]]});
  die "boom after start\n";
};
$route{'/die-mid-body'} = async sub ($scope, $receive, $send) {
  await $send->({type => 'http.response.start', status => 200, headers => []});
  await $send->({type => 'http.response.body', body => 'partial', more => 1});
  await delay(0.1);
  die "boom mid body\n";
};
$route{'/return-mid-body'} = async sub ($scope, $receive, $send) {
  await $send->({type => 'http.response.start', status => 200, headers => []});
  await $send->({type => 'http.response.body', body => 'partial', more => 1});
  return;
};
# The same without ever suspending: the app ends inside the read of its request
$route{'/die-mid-body-sync'} = async sub ($scope, $receive, $send) {
  await $send->({type => 'http.response.start', status => 200, headers => []});
  await $send->({type => 'http.response.body', body => 'partial', more => 1});
  die "sync boom mid body\n";
};
$route{'/return-mid-length'} = async sub ($scope, $receive, $send) {
  await $send->({type => 'http.response.start', status => 200, headers => [['content-length', 20]]});
  await $send->({type => 'http.response.body', body => 'only 9 by', more => 1});
  return;
};
# A filehandle body whose read fails after a first piece
{
  package FailingHandle;
  sub TIEHANDLE ($class) { my $n = 0; bless \$n, $class }
  sub READ {    # ($self, $buffer, $length): the buffer is $_[1]
    my $self = shift;
    if ($$self++) { $! = 5; return undef }    # EIO
    $_[0] = 'first piece';
    return length $_[0];
  }
  sub FILENO { 0 }
  sub CLOSE { 1 }
}
$route{'/fh-fails'} = async sub ($scope, $receive, $send) {
  tie *FAILING, 'FailingHandle';
  await $send->({type => 'http.response.start', status => 200, headers => []});
  my $err = await attempt($send, {type => 'http.response.body', fh => \*FAILING});
  report(case => 'fh-fails', error => $err);
};

# A 4 MiB streamed response, for clients that leave without reading it
$route{'/big'} = async sub ($scope, $receive, $send) {
  await $send->({type => 'http.response.start', status => 200, headers => []});
  for my $i (1 .. 64) { await $send->({type => 'http.response.body', body => 'x' x 65536, more => 1}) }
  await $send->({type => 'http.response.body', body => ''});
};

# Malformed events: each send must fail, and a correct response can follow
$route{'/misuse'} = async sub ($scope, $receive, $send) {
  my @results;
  my $try = async sub ($name, $ev) {
    my $ok = eval { await $send->($ev); 1 };
    push @results, [$name, $ok ? 'ok' : 'failed'];
  };
  await $try->('body before start', {type => 'http.response.body', body => 'x'});
  await $try->('start without status', {type => 'http.response.start', headers => []});
  await $try->('start with status abc', {type => 'http.response.start', status => 'abc'});
  await $try->('start with headers not an array', {type => 'http.response.start', status => 200, headers => {a => 1}});
  await $try->('start with a header of 3 elements', {type => 'http.response.start', status => 200, headers => [['a', 'b', 'c']]});
  await $try->('unknown event type', {type => 'http.response.nope'});
  await $try->('http.fullflush (not advertised)', {type => 'http.fullflush'});
  await $try->('an event that is not a hash', ['http.response.start', 200]);
  await $try->('valid start', {type => 'http.response.start', status => 200, headers => [['content-type', 'text/plain']]});
  await $try->('start twice', {type => 'http.response.start', status => 201, headers => []});
  await $try->('body with characters over 0xFF', {type => 'http.response.body', body => "\x{263a}", more => 1});
  my $latin1 = "caf\xe9";
  utf8::upgrade($latin1);
  await $try->('body upgraded but all <= 0xFF', {type => 'http.response.body', body => $latin1, more => 1});
  await $try->('final body', {type => 'http.response.body', body => '!'});
  await $try->('body after completion', {type => 'http.response.body', body => 'late'});
  report(misuse => \@results);
};

# A declared Content-Length the body does not match
$route{'/cl-more'} = async sub ($scope, $receive, $send) {
  await respond($send, 200, 'hello world', ['content-length', 5]);
};
$route{'/cl-less'} = async sub ($scope, $receive, $send) {
  await respond($send, 200, 'hi', ['content-length', 5]);
};
# The same, streamed: the extra bytes are dropped; a short body closes the connection
$route{'/cl-more-stream'} = async sub ($scope, $receive, $send) {
  await $send->({type => 'http.response.start', status => 200, headers => [['content-length', 5]]});
  await $send->({type => 'http.response.body', body => 'hel', more => 1});
  my $ok = eval { await $send->({type => 'http.response.body', body => 'lo world', more => 1}); 1 };
  report(case => 'cl-more-stream', failed => $ok ? 0 : 1, error => $@ =~ s/\s+\z//r);
  await $send->({type => 'http.response.body', body => ''});
};
$route{'/cl-less-stream'} = async sub ($scope, $receive, $send) {
  await $send->({type => 'http.response.start', status => 200, headers => [['content-length', 5]]});
  await $send->({type => 'http.response.body', body => 'hi', more => 1});
  await $send->({type => 'http.response.body', body => ''});
};

# Headers (or trailers) with bytes that must never reach the wire
my %bad_header = (
  'value-crlf' => ['X-Evil', "a\r\nInjected: 1"],
  'value-lf'   => ['X-Evil', "a\nInjected: 1"],
  'value-cr'   => ['X-Evil', "a\rInjected: 1"],
  'value-nul'  => ['X-Evil', "a\0Injected: 1"],
  'name-crlf'  => ["X-Evil\r\nInjected", '1'],
  'name-nul'   => ["X-Evil\0Injected", '1'],
  'name-colon' => ["Injected: 1\r\nX", 'v'],
);
for my $case (keys %bad_header) {
  for my $mode (qw(fast stream)) {
    $route{"/bad-header/$case/$mode"} = async sub ($scope, $receive, $send) {
      my @results;
      for my $ev ({type => 'http.response.start', status => 200, headers => [['X-Ok', '1'], $bad_header{$case}]},
        {type => 'http.response.body', body => 'Injected body', more => $mode eq 'stream' ? 1 : 0}) {
        my $f = $send->($ev);
        my $ok = eval { await $f; 1 };
        push @results, $ok ? 'ok' : 'failed: ' . ($@ =~ s/\s+\z//r);
      }
      report(case => $case, mode => $mode, results => \@results);
      return;
    };
  }
}
# Response headers that are not a list of [name, value] pairs
my %bad_shape = (
  'hash'       => {'X-A' => 'Injected'},
  'string'     => 'X-A: Injected',
  'pair-short' => [['X-A']],
  'pair-long'  => [['X-A', '1', 'Injected']],
  'not-a-pair' => [['X-Ok', '1'], 'X-A: Injected'],
);
for my $case (keys %bad_shape) {
  $route{"/bad-shape/$case"} = async sub ($scope, $receive, $send) {
    my $ok = eval {
      await $send->({type => 'http.response.start', status => 200, headers => $bad_shape{$case}});
      1;
    };
    report(shape => $case, result => $ok ? 'ok' : 'failed: ' . ($@ =~ s/\s+\z//r));
    return;
  };
}
$route{'/bad-trailer'} = async sub ($scope, $receive, $send) {
  await $send->({type => 'http.response.start', status => 200, headers => [], trailers => 1});
  await $send->({type => 'http.response.body', body => 'body'});
  my $ok = eval { await $send->({type => 'http.response.trailers', headers => [['X-T', "v\r\nInjected: 1"]]}); 1 };
  report(trailer => $ok ? 'ok' : 'failed');
  return;
};

my %limits = (max_header_size => 1024, max_headers => 20, max_line => 256, max_body_size => 1000);
my $srv = start_server(app => $app, %limits);
ok($srv->port, 'server started') or BAIL_OUT($srv->log);
# Timeouts are checked by a once-a-second tick: only the timeout tests get short ones
my $fast = start_server(app => $app, %limits, header_timeout => 1, keepalive_timeout => 1, request_timeout => 1);
ok($fast->port, 'server with 1 s timeouts started') or BAIL_OUT($fast->log);

# Sends raw bytes; checks the server's error response and the close that follows
sub wire_error_is ($bytes, $status, $name, %opt) {
  subtest "$name -> $status and close" => sub {
    my $c = http_connect($srv->port);
    $c->send($bytes);
    my ($r) = $c->read_responses(until_close => 1, timeout => $opt{timeout} // 5);
    ok($r, 'a response') or return;
    is($r->{status}, $status, "status $status");
    is($r->{h}{'content-type'}, 'text/plain; charset=utf-8', 'text/plain');
    is($r->{h}{connection}, 'close', 'Connection: close');
    is($r->{framing}, 'length', 'with a Content-Length');
    is($r->{body}, "$r->{reason}\n", "body is the reason phrase ($r->{reason})");
    ok($c->closed, 'the server closed the connection');
    is($c->buffer, '', 'nothing after the response');
  };
}

my $H = "Host: t\r\n";
wire_error_is("GET /\r\n\r\n", 400, 'malformed request line (no version)');
wire_error_is("GET  / HTTP/1.1\r\n$H\r\n", 400, 'malformed request line (two spaces)');
wire_error_is("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, 'TLS handshake bytes on the plain port');
wire_error_is("GET / HTTP/1.1\r\n${H}Bad Header: x\r\n\r\n", 400, 'bad header line (space in name)');
wire_error_is("GET / HTTP/1.1\r\n$H folded\r\n\r\n", 400, 'bad header line (obs-fold)');
wire_error_is("GET / HTTP/1.1\r\n${H}X: a\0b\r\n\r\n", 400, 'bad header line (NUL in value)');
wire_error_is("POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
  'both Content-Length and Transfer-Encoding');
wire_error_is("POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400,
  'conflicting Content-Lengths');
wire_error_is("POST / HTTP/1.1\r\n${H}Content-Length: -5\r\n\r\n", 400, 'negative Content-Length');
wire_error_is("POST /read HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400,
  'bad chunk size');
wire_error_is("GET / HTTP/1.1\r\n$H" . ('X-Pad: ' . ('p' x 100) . "\r\n") x 12 . "\r\n", 431,
  'header block over max_header_size (1024)');
wire_error_is("GET / HTTP/1.1\r\n$H" . ('X-Pad: ' . ('p' x 100) . "\r\n") x 12, 431,
  'incomplete header block already over max_header_size');
wire_error_is("GET / HTTP/1.1\r\n$H" . ("X: 1\r\n" x 20) . "\r\n", 431, 'too many headers (21, max 20)');
wire_error_is('GET /' . ('a' x 300) . " HTTP/1.1\r\n$H\r\n", 414, 'request line over max_line (256)');
wire_error_is('GET /' . ('a' x 300), 414, 'incomplete request line already over max_line');
wire_error_is("POST /read HTTP/1.1\r\n${H}Content-Length: 1001\r\n\r\n", 413, 'Content-Length over max_body_size');
wire_error_is("POST /read HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n" . ("64\r\n" . ('x' x 100) . "\r\n") x 11
  . "0\r\n\r\n", 413, 'chunked body over max_body_size');
wire_error_is("POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\n\r\n", 501, 'unsupported Transfer-Encoding (gzip)');
wire_error_is("GET / HTTP/2.0\r\n$H\r\n", 505, 'HTTP/2.0 request line');
wire_error_is("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, 'HTTP/2 connection preface');
wire_error_is("GET / HTTP/1.1\r\n\r\n", 400, 'missing Host on HTTP/1.1');
wire_error_is("GET / HTTP/1.1\r\n${H}Host: u\r\n\r\n", 400, 'two Host headers');

like($srv->log, qr/\[warn\] 127\.0\.0\.1:[0-9]+: 400 invalid request line/,
  'wire errors log one warning with the peer address and the reason');

subtest 'bad input after a good request on the same connection' => sub {
  my $c = http_connect($srv->port);
  $c->send("GET /first HTTP/1.1\r\n$H\r\nGARBAGE\r\n\r\n");
  my @r = $c->read_responses(n => 2, until_close => 1);
  is($r[0]{body}, 'ok /first', 'the good request is answered');
  is($r[1]{status}, 400, 'then 400 for the garbage');
  ok($c->closed, 'then close');
};

subtest 'bad chunk size after the app started reading: 400, the app sees a disconnect' => sub {
  my @before = $srv->reports;
  my $c = http_connect($srv->port);
  $c->send("POST /read HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
  $c->pause(0.2);
  $c->send("nothex\r\n");
  my ($r) = $c->read_responses(until_close => 1);
  is($r->{status}, 400, 'client gets 400');
  ok($c->closed, 'and a close');
  my @rep = $srv->wait_reports(@before + 1);
  is_deeply($rep[-1]{types}, ['http.request', 'http.disconnect'], 'the app got the first chunk, then http.disconnect');
  is($rep[-1]{reason}, 'protocol_error', 'disconnect_reason protocol_error');
};

subtest 'chunked body growing over max_body_size while the app reads: 413' => sub {
  my @before = $srv->reports;
  my $c = http_connect($srv->port);
  $c->send("POST /read HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n200\r\n" . ('x' x 512) . "\r\n");
  $c->pause(0.2);
  $c->send("200\r\n" . ('y' x 512) . "\r\n");
  my ($r) = $c->read_responses(until_close => 1);
  is($r->{status}, 413, 'client gets 413');
  my @rep = $srv->wait_reports(@before + 1);
  is($rep[-1]{reason}, 'body_too_large', 'the app sees disconnect reason body_too_large');
};

subtest 'app errors before the response: 500 and an error log line' => sub {
  for my $case (['/die-before', qr/\[error\] application error: boom before start/, 'app dies'],
    ['/return-before', qr/\[error\] PAGI application returned without starting a response/, 'app returns without responding'],
    ['/not-a-future', qr/\[error\] application error: application returned a non-Future value/, 'app returns a non-Future'],
    ['/die-sync', qr/\[error\] application error: sync boom/, 'app dies before returning a Future']) {
    my ($path, $log_re, $name) = @$case;
    my $c = http_connect($srv->port);
    $c->send("GET $path HTTP/1.1\r\n$H\r\n");
    my ($r) = $c->read_responses(until_close => 1);
    is($r->{status}, 500, "$name: client gets 500");
    is($r->{body}, "Internal Server Error\n", "$name: plain body");
    is($r->{h}{connection}, 'close', "$name: Connection: close");
    ok($c->closed, "$name: and a close");
    ok($srv->wait_log($log_re), "$name: error logged");
  }
};

subtest 'app errors after the response started: 500 if nothing is written yet, else a cut, logged' => sub {
  my $c = http_connect($srv->port);
  $c->send("GET /die-after-start HTTP/1.1\r\n$H\r\n");
  my ($r) = $c->read_responses(until_close => 1);
  ok($c->closed, 'dies after start: connection closed');
  is($r && $r->{status}, 500, 'dies after start, before any byte of the response was written: a 500');
  is($r && $r->{body}, "Internal Server Error\n", '... the server\'s own (not the app\'s Content-Length: 10)');
  ok($srv->wait_log(qr/\[error\] application error: boom after start/), 'error logged');

  $c = http_connect($srv->port);
  $c->send("GET /die-mid-body HTTP/1.1\r\n$H\r\n");
  my $bytes = $c->read_all(3);
  ok($c->closed, 'dies mid-body: connection closed');
  like($bytes, qr/\AHTTP\/1\.1 200 OK\r\n.*\r\n\r\n7\r\npartial\r\n\z/s, 'the partial chunked body, no last-chunk');
  ok($srv->wait_log(qr/\[error\] application error: boom mid body/), 'error logged');

  # What the app sent reaches the client in order; the missing end of the framing
  # (no last chunk, fewer bytes than the Content-Length) and the close tell it that the
  # response was cut short. Also when the app never suspends (all of it happens inside
  # the server's read of the request, whose output is collected for one write).
  my $head = qr/HTTP\/1\.1 200 OK\r\n(?:[^\r\n]+\r\n)*\r\n/;
  for my $case (['/return-mid-body', qr/\A${head}7\r\npartial\r\n\z/,
      qr/application finished without completing its response/],
    ['/die-mid-body-sync', qr/\A${head}7\r\npartial\r\n\z/, qr/application error: sync boom mid body/],
    ['/return-mid-length', qr/\A${head}only 9 by\z/, qr/application finished without completing/]) {
    my ($path, $want, $log_re) = @$case;
    $c = http_connect($srv->port);
    $c->send("GET $path HTTP/1.1\r\n$H\r\n");
    $bytes = $c->read_all(3);
    ok($c->closed, "$path: connection closed");
    like($bytes, $want, "$path: exactly what the app sent, without the end of the framing");
    ok($srv->wait_log(qr/\[error\] $log_re/), "$path: error logged");
  }
  like($bytes, qr/content-length: 20\r\n/i, '(the head announced 20 bytes)');

  $c = http_connect($srv->port);
  $c->send("GET /fh-fails HTTP/1.1\r\n$H\r\n");
  $bytes = $c->read_all(3);
  ok($c->closed, 'a filehandle body that fails partway: connection closed');
  like($bytes, qr/\A${head}b\r\nfirst piece\r\n\z/, '... after the piece read before the failure');
  my ($rep) = $srv->reports_of('fh-fails');
  like($rep && $rep->{error}, qr/read failed/, '... and the send fails');
  ok($srv->wait_log(qr/\[error\] response body: reading the file failed/), '... logged');
};

subtest 'response headers with CR, LF or NUL: the send fails, nothing reaches the wire' => sub {
  for my $case (sort keys %bad_header) {
    for my $mode (qw(fast stream)) {
      my @before = $srv->reports;
      my $c = http_connect($srv->port);
      $c->send("GET /bad-header/$case/$mode HTTP/1.1\r\n$H\r\n");
      my $bytes = $c->read_all(3);
      my @rep = $srv->wait_reports(@before + 1);
      my $res = $rep[-1]{results};
      like($res->[0], qr/\Afailed: http\.response\.start: invalid header (?:name|value)/,
        "$case ($mode): the start send fails, naming the header");
      like($res->[1], qr/\Afailed: http\.response\.body before http\.response\.start/,
        "$case ($mode): so the body send fails too");
      unlike($bytes, qr/Injected/, "$case ($mode): the bad bytes never reach the wire");
      like($bytes, qr{\AHTTP/1\.1 500 }, "$case ($mode): the app returned without a response: 500");
      ok($c->closed, "$case ($mode): the connection is closed");
    }
  }
  for my $case (sort keys %bad_shape) {
    my @before = $srv->reports;
    my $c = http_connect($srv->port);
    $c->send("GET /bad-shape/$case HTTP/1.1\r\n$H\r\n");
    my $bytes = $c->read_all(3);
    my @rep = $srv->wait_reports(@before + 1);
    is($rep[-1]{result}, 'failed: http.response.start: headers must be an array of [name, value] pairs',
      "headers of the wrong shape ($case): the start send fails");
    like($bytes, qr{\AHTTP/1\.1 500 }, "$case: then the app returned without a response: 500");
    unlike($bytes, qr/Injected/, "$case: nothing of it reaches the wire");
  }
  my @before = $srv->reports;
  my $c = http_connect($srv->port);
  $c->send("GET /bad-trailer HTTP/1.1\r\n$H\r\n");
  my $bytes = $c->read_all(3);
  my @rep = $srv->wait_reports(@before + 1);
  is($rep[-1]{trailer}, 'failed', 'a trailer with CRLF: the trailers send fails');
  unlike($bytes, qr/Injected/, '... and its bytes never reach the wire');
  unlike($bytes, qr/0\r\n\r\n\z/, '... the body is left unterminated');
  ok($c->closed, '... the connection is closed');
};

subtest 'malformed events from the app: each send fails' => sub {
  my @before = $srv->reports;
  my $c = http_connect($srv->port);
  $c->send("GET /misuse HTTP/1.1\r\n$H\r\n");
  my ($r) = $c->read_responses;
  my @rep = $srv->wait_reports(@before + 1);
  is_deeply($rep[-1]{misuse}, [
    ['body before start', 'failed'], ['start without status', 'failed'], ['start with status abc', 'failed'],
    ['start with headers not an array', 'failed'], ['start with a header of 3 elements', 'failed'],
    ['unknown event type', 'failed'], ['http.fullflush (not advertised)', 'failed'],
    ['an event that is not a hash', 'failed'], ['valid start', 'ok'], ['start twice', 'failed'],
    ['body with characters over 0xFF', 'failed'], ['body upgraded but all <= 0xFF', 'ok'], ['final body', 'ok'],
    ['body after completion', 'failed']], 'every malformed send fails; the valid ones work');
  is($r->{status}, 200, 'the valid response goes out');
  is($r->{body}, "caf\xe9!", 'its body, as bytes');
  is_deeply([$srv->log_grep(qr/Wide character/)], [], 'no wide character warning');
};

subtest 'an app body that does not match its Content-Length never desynchronises the connection' => sub {
  for my $case (['/cl-more', 'more bytes than declared'], ['/cl-less', 'fewer bytes than declared'],
    ['/cl-more-stream', 'more bytes than declared, streamed'],
    ['/cl-less-stream', 'fewer bytes than declared, streamed']) {
    my ($path, $name) = @$case;
    my $c = http_connect($srv->port);
    $c->send("GET $path HTTP/1.1\r\n$H\r\nGET /next HTTP/1.1\r\n$H\r\n");
    my $bytes = $c->read_all(2);
    my ($pos, @r) = (0);
    my $garbage = !eval {
      while (my ($r, $p) = parse_response($bytes, $pos, closed => 1)) { push @r, $r; $pos = $p }
      1;
    };
    ok(!$garbage && (@r < 2 || $r[1]{body} eq 'ok /next'), "$name: no garbage is read as the next response");
    ok($c->closed, "$name: the connection is closed after it");
    if ($path eq '/cl-more-stream') {
      is(scalar @r, 1, "$name: one response");
      is($r[0] && $r[0]{body}, 'hello', "$name: exactly the declared 5 bytes");
      my ($rep) = grep { ($_->{case} // '') eq 'cl-more-stream' } $srv->wait_reports(1);
      like($rep && $rep->{error}, qr/beyond the Content-Length/, "$name: the overflowing send fails");
    }
    if ($path eq '/cl-less' || $path eq '/cl-more') {
      is(scalar @r, 1, "$name (fast path): none of the app's response is written, ...");
      is($r[0] && $r[0]{status}, 500, "$name (fast path): ... the server's 500 instead");
      ok($srv->wait_log(qr/application error: .*bytes of body for a Content-Length of 5/),
        "$name (fast path): the send fails and the app's error is logged");
    }
    if ($path eq '/cl-less-stream') {
      ok($srv->wait_log(qr/\[error\] response body ended 3 bytes short of its Content-Length/),
        "$name: logged");
    }
  }
};

subtest 'slowloris: a head trickled slower than header_timeout gets 408 and close' => sub {
  my $c = http_connect($fast->port);
  my $t0 = Time::HiRes::time();
  my $head = "GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " . ('s' x 40);
  for my $byte (split //, $head) {
    last if $c->closed || Time::HiRes::time() - $t0 > 6;
    $c->send($byte);
    $c->pause(0.1);
  }
  my ($r) = $c->read_responses(until_close => 1, timeout => 4);
  my $took = Time::HiRes::time() - $t0;
  is($r && $r->{status}, 408, 'client gets 408');
  ok($c->closed, 'and a close');
  cmp_ok($took, '<', 7, sprintf('within a few seconds of header_timeout=1 (%.1fs)', $took));
};

subtest 'a request body stalled longer than timeout: 408, the app sees client_timeout' => sub {
  my @before = $fast->reports;
  my $c = http_connect($fast->port);
  $c->send("POST /read HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\nabc");
  my ($r) = $c->read_responses(until_close => 1, timeout => 5);
  is($r && $r->{status}, 408, 'client gets 408');
  my @rep = $fast->wait_reports(@before + 1);
  is($rep[-1]{reason}, 'client_timeout', 'the app sees disconnect reason client_timeout');
};

subtest 'idle connections are closed after keepalive_timeout' => sub {
  my $c = http_connect($fast->port);
  $c->send("GET / HTTP/1.1\r\n$H\r\n");
  my ($r) = $c->read_responses;
  is($r->{status}, 200, 'a response');
  my $t0 = Time::HiRes::time();
  ok($c->wait_closed(8), 'idle keep-alive connection: closed by the server');
  my $took = Time::HiRes::time() - $t0;
  cmp_ok($took, '>=', 0.5, sprintf('not at once (%.1fs)', $took));
  cmp_ok($took, '<', 7, sprintf('within a few seconds of keepalive_timeout=1 (%.1fs)', $took));
  my $c2 = http_connect($fast->port);
  ok($c2->wait_closed(5), 'a connection that never sends a byte: closed too');
  is($c2->buffer, '', '... without a response');
};

subtest 'clients that vanish never kill the server' => sub {
  my @abuse = (
    sub ($c) { $c->send("GET / HTT"); $c->close },
    sub ($c) { $c->send("POST /read HTTP/1.1\r\n${H}Content-Length: 100\r\n\r\nabc"); $c->close },
    sub ($c) { $c->send("GET /big HTTP/1.1\r\n$H\r\n"); $c->close },
    sub ($c) { $c->send("GET /die-mid-body HTTP/1.1\r\n$H\r\n"); $c->close },
    sub ($c) {    # RST instead of FIN
      $c->send("POST /read HTTP/1.1\r\n${H}Content-Length: 100\r\n\r\nabc");
      setsockopt($c->sock, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
      $c->close;
    },
    sub ($c) { $c->send(join '', map { "GET /$_ HTTP/1.1\r\n$H\r\n" } 1 .. 200); $c->close },
    sub ($c) { $c->shutdown_write; $c->pause(0.1); $c->close },
  );
  for my $i (0 .. $#abuse) {
    my $c = http_connect($srv->port);
    $abuse[$i]->($c);
  }
  Time::HiRes::sleep(0.5);
  ok(!$srv->exited, 'the server process is alive');
  my ($r) = http_exchange($srv->port, "GET /still HTTP/1.1\r\n$H\r\n");
  is($r->[0]{body}, 'ok /still', 'and still answers');
};

is($srv->stop, 0, 'server exits 0 on SIGTERM');
is($fast->stop, 0, 'the server with short timeouts exits 0 too');
is_deeply([$fast->log_grep(qr/PAGI-TEST-CHILD-DIED|Deep recursion|uninitialized|Use of /)], [], '... and logged no crash or warning');
is_deeply([$srv->log_grep(qr/PAGI-TEST-CHILD-DIED|Deep recursion|uninitialized|Use of /)], [], 'no crash or Perl warning in the log');

done_testing;
