use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use Future::AsyncAwait;
use Scalar::Util qw(refaddr);
use Time::HiRes ();
use lib 't/lib';
use PAGI::Test::Server qw(:all);

# The http scope as the app sees it, the request events, and the pagi.connection
# object on clean ends and on client disconnects. The app runs in the server child
# and reports what it saw through the server log.

my $ORDER = 0;
my @KEPT_CONNECTIONS;

my $app = async sub ($scope, $receive, $send) {
  if ($scope->{type} eq 'lifespan') {
    my $ev = await $receive->();
    $scope->{state}{greeting} = 'hello';
    $scope->{state}{shared}   = {hits => 0};
    await $send->({type => 'lifespan.startup.complete'});
    $ev = await $receive->();
    await $send->({type => 'lifespan.shutdown.complete'});
    return;
  }
  die "unsupported scope type $scope->{type}\n" unless $scope->{type} eq 'http';
  my $conn = $scope->{'pagi.connection'};
  my $route = $scope->{raw_path};

  if ($route =~ m{\A/scope}) {
    my %copy = map { $_ => $scope->{$_} } grep { $_ ne 'pagi.connection' && $_ ne 'pagi.transport' } keys %$scope;
    # (an unknown key of the pagi hash reads as undef, no error)
    $copy{pagi_unknown} = exists $scope->{pagi}{is_worker} ? 'exists' : $scope->{pagi}{is_worker} // 'undef';
    my $ev = await $receive->();
    report(
      scope        => \%copy,
      keys         => [sort keys %$scope],
      path_chars   => [map { ord } split //, $scope->{path}],
      path_is_utf8 => utf8::is_utf8($scope->{path}) ? 1 : 0,
      raw_is_utf8  => utf8::is_utf8($scope->{raw_path}) ? 1 : 0,
      conn_class   => ref $conn,
      conn_can     => [grep { $conn->can($_) } qw(is_connected disconnect_reason on_disconnect
        response_started on_complete response_complete disconnect_future)],
      first_event  => $ev,
    );
    # The pagi hash is this request's own: an unknown key reads as undef, and a
    # change does not reach the next request
    $scope->{pagi}{added_by_app} = 1;
    # Shallow copy: top-level changes stay in this request, shared values do not
    $scope->{state}{greeting} = 'changed';
    $scope->{state}{added}    = 1;
    $scope->{state}{shared}{hits}++ if $scope->{state}{shared};
    return await respond($send, 200, 'ok', ['content-type', 'text/plain']);
  }

  if ($route eq '/lifecycle') {
    # The connection object through one clean request
    # (kept alive here so that a later object cannot reuse the address refaddr
    # reports: the next request's object must be another one, not a recycled one)
    push @KEPT_CONNECTIONS, $conn;
    my %r = (conn_id => refaddr($conn));
    $r{connected_start}  = $conn->is_connected;
    $r{reason_start}     = $conn->disconnect_reason;
    $r{started_before}   = $conn->response_started;
    $r{complete_before}  = $conn->response_complete;
    my $df = $conn->disconnect_future;
    $r{df_is_future} = ref $df && $df->can('is_ready') ? 1 : 0;
    my @seen;
    $conn->on_complete(sub { push @seen, 'complete1:' . $conn->response_complete });
    $conn->on_complete(sub { push @seen, 'complete2' });
    $conn->on_disconnect(sub { push @seen, "disconnect:@_" });
    my $ev = await $receive->();
    $r{event} = $ev;
    await $send->({type => 'http.response.start', status => 200,
      headers => [['content-length', 4]]});
    $r{started_after_start}  = $conn->response_started;
    $r{complete_after_start} = $conn->response_complete;
    $r{seen_before_final}    = [@seen];
    await $send->({type => 'http.response.body', body => 'done'});
    $r{complete_after_final} = $conn->response_complete;
    $r{seen_after_final}     = [@seen];
    $conn->on_complete(sub { push @seen, 'late-complete' });
    $conn->on_disconnect(sub { push @seen, 'late-disconnect' });
    $r{seen_after_late} = [@seen];
    $r{reason_end}      = $conn->disconnect_reason;
    $r{df_ready_end}    = $df->is_ready ? 1 : 0;
    my $next = await Future->wait_any($receive->(), delay(2)->then_done('timeout'));
    $r{event_after_response} = $next;
    report(%r);
    return;
  }

  if ($route eq '/drop-mid-body') {
    # The client sends part of the body and goes away
    my (@order, %r);
    $conn->disconnect_future->on_done(sub ($reason) {
      push @order, "future:$reason:connected=" . $conn->is_connected . ':reason=' . ($conn->disconnect_reason // 'undef');
    });
    $conn->on_disconnect(sub ($reason) {
      push @order, "callback1:$reason:connected=" . $conn->is_connected;
    });
    $conn->on_disconnect(sub ($reason) { push @order, "callback2:$reason" });
    $conn->on_complete(sub { push @order, 'complete' });
    my @events;
    while (1) {
      my $ev = await Future->wait_any($receive->(), delay(5)->then_done({type => 'timeout'}));
      push @events, $ev;
      push @order, "event:$ev->{type}";
      last if $ev->{type} ne 'http.request' || !$ev->{more};
    }
    $conn->on_disconnect(sub ($reason) { push @order, "late:$reason" });
    $r{events}     = [map { {type => $_->{type}, (exists $_->{body} ? (len => length $_->{body}, more => $_->{more}) : ())} } @events];
    $r{order}      = \@order;
    $r{connected}  = $conn->is_connected;
    $r{reason}     = $conn->disconnect_reason;
    $r{started}    = $conn->response_started;
    $r{complete}   = $conn->response_complete;
    my $sent = $send->({type => 'http.response.start', status => 200, headers => []});
    $r{send_after_disconnect} = $sent->is_done ? 'done' : $sent->is_failed ? 'failed' : 'pending';
    my $again = await Future->wait_any($receive->(), delay(2)->then_done({type => 'timeout'}));
    $r{receive_again} = $again->{type};
    report(%r);
    # Returning without a response after the client left: no 500, no error log
    return;
  }

  if ($route eq '/drop-while-busy') {
    # The whole request arrived; the client leaves while the app works
    my $ev = await $receive->();
    await delay(0.5);
    my %r = (connected => $conn->is_connected, reason => $conn->disconnect_reason);
    my $f = $send->({type => 'http.response.start', status => 200, headers => []});
    $r{start} = $f->is_done ? 'done' : 'not done';
    $f = $send->({type => 'http.response.body', body => 'late'});
    $r{body} = $f->is_done ? 'done' : 'not done';
    $r{next} = (await $receive->())->{type};
    report(%r);
    return;
  }

  if ($route eq '/die-after-drop') {
    my $ev = await $receive->();
    await delay(0.5);
    die "this error must not be logged\n";
  }

  if ($route eq '/stream-until-gone') {
    # Streams until the client is gone; the sends must neither fail nor hang
    await $send->({type => 'http.response.start', status => 200, headers => []});
    my ($sends, $failed) = (0, 0);
    # (a variable, not a folded constant: Future::AsyncAwait 0.63 on a threaded perl
    # can lose large constants of an async sub after a suspended await)
    my $chunk = 'z' x 65536;
    while ($conn->is_connected && $sends < 2000) {
      my $ok = eval { await $send->({type => 'http.response.body', body => $chunk, more => 1}); 1 };
      $failed++ unless $ok;
      $sends++;
    }
    my $ev = await $receive->();
    report(stream => {sends => $sends, failed => $failed, reason => $conn->disconnect_reason,
      event => $ev->{type}, complete => $conn->response_complete});
    return;
  }

  if ($route eq '/length-stream') {
    # A Content-Length stream that ends with an empty final body, sends waiting on the socket
    my $chunk = 'y' x 65536;
    await $send->({type => 'http.response.start', status => 200, headers => [['content-length', 64 * 65536]]});
    for my $i (1 .. 64) { await $send->({type => 'http.response.body', body => $chunk, more => 1}) }
    await $send->({type => 'http.response.body', body => ''});
    return;
  }

  return await respond($send, 200, "plain $route");
};

my $srv = start_server(app => $app);
ok($srv->port, 'server started') or BAIL_OUT('no server: ' . $srv->log);

subtest 'http scope contents' => sub {
  my $c = http_connect($srv->port);
  $c->send("GET /scope/a%20b?x=1&y=%20 HTTP/1.1\r\nHost: example.com\r\nX-Dup: 1\r\n"
    . "Cookie: a=1\r\nX-Dup: 2\r\ncookie: b=2\r\nUser-Agent: T/1.0\r\nX-Bytes: caf\xc3\xa9\xff\r\n\r\n");
  my ($res) = $c->read_responses;
  is($res->{status}, 200, 'response 200');
  my ($rep) = $srv->wait_reports(1);
  my $s = $rep->{scope};
  is($s->{type}, 'http', 'type');
  is_deeply($s->{pagi}, {version => '0.3', spec_version => '0.3'}, 'pagi: version and spec_version 0.3');
  like($srv->log, qr/"pagi":\{"spec_version":"0\.3","version":"0\.3"\}/, 'the versions are strings');
  is($s->{http_version}, '1.1', 'http_version');
  is($s->{method}, 'GET', 'method');
  is($s->{scheme}, 'http', 'scheme');
  is($s->{path}, '/scope/a b', 'path is percent-decoded');
  is($s->{raw_path}, '/scope/a%20b', 'raw_path is as sent');
  is($s->{query_string}, 'x=1&y=%20', 'query_string is still encoded');
  is($s->{root_path}, '', 'root_path defaults to empty');
  is_deeply($s->{headers}, [['host', 'example.com'], ['x-dup', '1'], ['cookie', 'a=1; b=2'], ['x-dup', '2'],
    ['user-agent', 'T/1.0'], ['x-bytes', "caf\xc3\xa9\xff"]],
    'headers: lowercase names, order, duplicates, Cookie merged with "; ", bytes kept');
  is_deeply($s->{client}, ['127.0.0.1', $c->local_port], 'client is [host, port] of our socket');
  is_deeply($s->{server}, ['127.0.0.1', $srv->port], 'server is [host, port] it listens on');
  is_deeply($s->{extensions}, {}, 'extensions: none advertised');
  is($s->{state}{greeting}, 'hello', 'state carries what lifespan startup set');
  my @required = qw(type pagi http_version method scheme path raw_path query_string root_path
    headers client server state extensions pagi.connection);
  my %have = map { $_ => 1 } @{$rep->{keys}};
  is_deeply([grep { !$have{$_} } @required], [], 'every required key is present');
  is_deeply($rep->{keys}, [sort @required, 'pagi.transport'], '... and no other key');
  is($rep->{conn_class}, 'PAGI::Server::ConnectionState', 'pagi.connection object');
  is(scalar @{$rep->{conn_can}}, 7, 'pagi.connection has all seven methods');
  is_deeply($rep->{first_event}, {type => 'http.request', body => '', more => 0},
    'a bodiless request yields one http.request with body "" and more 0');
  is($rep->{path_is_utf8}, 0, 'an ASCII path has no UTF-8 flag');
};

subtest 'path decoding: UTF-8 to characters, invalid UTF-8 kept as bytes' => sub {
  my $c = http_connect($srv->port);
  $c->send("GET /scope/caf%C3%A9/%E2%98%BA HTTP/1.1\r\nHost: a\r\n\r\n"
    . "GET /scope/%FF%FEx%C3 HTTP/1.1\r\nHost: a\r\n\r\n"
    . "GET /scope/r\xc3\xa9 HTTP/1.0\r\n\r\n");
  my @res = $c->read_responses(n => 3);
  is(scalar(grep { $_->{status} == 200 } @res), 3, 'three responses 200');
  my @rep = $srv->wait_reports(4);
  my ($utf8, $bad, $raw) = @rep[1 .. 3];
  is_deeply($utf8->{path_chars}, [map { ord } split //, "/scope/caf\x{e9}/\x{263a}"],
    'valid UTF-8: decoded to characters (U+00E9, U+263A)');
  is($utf8->{path_is_utf8}, 1, '... a character string');
  is($utf8->{scope}{raw_path}, '/scope/caf%C3%A9/%E2%98%BA', '... raw_path keeps the encoding');
  is_deeply($bad->{path_chars}, [map { ord } split //, "/scope/\xff\xfex\xc3"],
    'invalid UTF-8: the percent-decoded bytes, no U+FFFD');
  is($bad->{path_is_utf8}, 0, '... a byte string');
  is_deeply($raw->{path_chars}, [map { ord } split //, "/scope/r\x{e9}"], 'raw UTF-8 bytes in the target decode too');
  is($raw->{raw_is_utf8}, 0, '... raw_path stays bytes');
  is($raw->{scope}{http_version}, '1.0', 'http_version 1.0');
  ok($c->wait_closed(3), 'the HTTP/1.0 request closed the connection');
};

subtest 'the parser\'s facts (body, close, expect, accept) stay out of the scope' => sub {
  my @before = $srv->reports;
  my $c = http_connect($srv->port);
  $c->send("POST /scope/facts HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n"
    . "Accept: text/html\r\nConnection: close\r\n\r\nhi");
  my ($res) = $c->read_responses;
  is($res->{status}, 200, 'response 200');
  my $rep = ($srv->wait_reports(@before + 1))[-1];
  is_deeply($rep->{keys}, [sort qw(type pagi http_version method scheme path raw_path query_string
    root_path headers client server state extensions pagi.connection pagi.transport)],
    'an HTTP/1.0 POST with a body and Connection: close: the same scope keys');
  is_deeply($rep->{first_event}, {type => 'http.request', body => 'hi', more => 0}, 'its body');
};

subtest 'state: a shallow copy per request' => sub {
  my @before = $srv->reports;
  my $c = http_connect($srv->port);
  $c->send("GET /scope/1 HTTP/1.1\r\nHost: a\r\n\r\n");
  $c->read_responses;
  $c->send("GET /scope/2 HTTP/1.1\r\nHost: a\r\n\r\n");
  $c->read_responses;
  my @rep = $srv->wait_reports(@before + 2);
  my ($one, $two) = @rep[-2, -1];
  is($two->{scope}{state}{greeting}, 'hello', 'a top-level change in one request does not reach the next');
  ok(!exists $two->{scope}{state}{added}, 'a key added in one request does not reach the next');
  is($two->{scope}{pagi_unknown}, 'undef', 'reading a key the pagi hash does not have gives undef');
  is_deeply($two->{scope}{pagi}, {version => '0.3', spec_version => '0.3'},
    'a key an app added to pagi does not reach the next request');
  is($two->{scope}{state}{shared}{hits}, $one->{scope}{state}{shared}{hits} + 1,
    'nested values are shared (shallow copy)');
};

subtest 'root_path option' => sub {
  my $s2 = start_server(app => $app, root_path => '/mnt/app');
  my ($res) = http_exchange($s2->port, "GET /scope HTTP/1.1\r\nHost: a\r\n\r\n");
  is($res->[0]{status}, 200, 'served');
  my ($rep) = $s2->wait_reports(1);
  is($rep->{scope}{root_path}, '/mnt/app', 'root_path comes from the server option');
  is($rep->{scope}{path}, '/scope', 'path is the full path');
  is($s2->stop, 0, 'second server exits 0');
};

subtest 'pagi.connection through a clean request' => sub {
  my @before = $srv->reports;
  my $c = http_connect($srv->port);
  $c->send("POST /lifecycle HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
  my ($res) = $c->read_responses;
  is($res->{body}, 'done', 'response body');
  $c->send("POST /lifecycle HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz");
  ($res) = $c->read_responses;
  is($res->{body}, 'done', 'second response on the same connection');
  my @rep = $srv->wait_reports(@before + 2, 8);
  my ($r, $r2) = @rep[-2, -1];
  is($r->{connected_start}, 1, 'is_connected while serving');
  is($r->{reason_start}, undef, 'disconnect_reason undef while open');
  is($r->{started_before}, 0, 'response_started 0 before start');
  is($r->{complete_before}, 0, 'response_complete 0 before the response');
  is($r->{df_is_future}, 1, 'disconnect_future is a Future');
  is_deeply($r->{event}, {type => 'http.request', body => 'abc', more => 0}, 'the body in one event');
  is($r->{started_after_start}, 1, 'response_started 1 once start is processed');
  is($r->{complete_after_start}, 0, 'response_complete 0 after start');
  is_deeply($r->{seen_before_final}, [], 'no callback before the final body');
  is($r->{complete_after_final}, 1, 'response_complete 1 after the final body');
  is_deeply($r->{seen_after_final}, ['complete1:1', 'complete2'],
    'on_complete callbacks ran in order, once, after completion');
  is_deeply($r->{seen_after_late}, ['complete1:1', 'complete2', 'late-complete'],
    'a late on_complete runs at once; on_disconnect never runs on a clean end');
  is($r->{reason_end}, undef, 'disconnect_reason stays undef after a clean end');
  is($r->{df_ready_end}, 0, 'disconnect_future does not resolve on a clean end');
  is_deeply($r->{event_after_response}, {type => 'http.disconnect'},
    'after the response, receive gives http.disconnect');
  isnt($r->{conn_id}, $r2->{conn_id}, 'a new pagi.connection object for the next keep-alive request');
};

subtest 'client drops mid-body: http.disconnect, reason client_closed, in the spec order' => sub {
  my @before = $srv->reports;
  my $c = http_connect($srv->port);
  $c->send("POST /drop-mid-body HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789");
  $c->pause(0.3);
  $c->close;
  my @rep = $srv->wait_reports(@before + 1, 8);
  my $r = $rep[-1];
  is_deeply($r->{events}, [{type => 'http.request', len => 10, more => 1}, {type => 'http.disconnect'}],
    'the app got the partial body (more => 1), then http.disconnect');
  is($r->{connected}, 0, 'is_connected is false');
  is($r->{reason}, 'client_closed', 'disconnect_reason is client_closed');
  is($r->{started}, 0, 'response_started 0');
  is($r->{complete}, 0, 'response_complete 0');
  is_deeply($r->{order}, ['event:http.request', 'future:client_closed:connected=0:reason=client_closed',
    'callback1:client_closed:connected=0', 'callback2:client_closed', 'event:http.disconnect',
    'late:client_closed'],
    'order: not connected, reason, future, callbacks in order, then the event; a late on_disconnect runs at once; no on_complete');
  is($r->{send_after_disconnect}, 'done', 'a send after the disconnect is a silent no-op');
  is($r->{receive_again}, 'http.disconnect', 'receive keeps giving http.disconnect');
  my ($res) = http_exchange($srv->port, "GET /after HTTP/1.1\r\nHost: a\r\n\r\n");
  is($res->[0]{body}, 'plain /after', 'the server still answers afterwards');
  is_deeply([$srv->log_grep(qr/\[error\]/)], [], 'no error logged for an app that returns after its client left');
};

subtest 'client leaves while the app works: sends are no-ops, no error' => sub {
  my @before = $srv->reports;
  my $c = http_connect($srv->port);
  $c->send("GET /drop-while-busy HTTP/1.1\r\nHost: a\r\n\r\n");
  $c->pause(0.1);
  $c->close;
  my @rep = $srv->wait_reports(@before + 1, 8);
  is_deeply({%{$rep[-1]}}, {connected => 0, reason => 'client_closed', start => 'done', body => 'done',
    next => 'http.disconnect'}, 'not connected, client_closed, both sends done silently, then http.disconnect');
  my $c2 = http_connect($srv->port);
  $c2->send("GET /die-after-drop HTTP/1.1\r\nHost: a\r\n\r\n");
  $c2->pause(0.1);
  $c2->close;
  Time::HiRes::sleep(0.8);
  my ($res) = http_exchange($srv->port, "GET /after2 HTTP/1.1\r\nHost: a\r\n\r\n");
  is($res->[0]{status}, 200, 'the server still answers');
  is_deeply([$srv->log_grep(qr/must not be logged|\[error\]/)], [], 'an app that dies after its client left is not logged as an error');
};

subtest 'client leaves during a streamed response: write side reasons, no hang' => sub {
  my @before = $srv->reports;
  my $c = http_connect($srv->port);
  $c->send("GET /stream-until-gone HTTP/1.1\r\nHost: a\r\n\r\n");
  ok(wait_for(sub { $c->pause(0.02); length($c->buffer) > 200_000 }, 5), 'the stream is flowing');
  $c->close;
  my @rep = $srv->wait_reports(@before + 1, 10);
  my $r = $rep[-1]{stream};
  ok($r, 'the app noticed and finished') or return;
  cmp_ok($r->{sends}, '<', 2000, "it stopped streaming ($r->{sends} sends)");
  is($r->{failed}, 0, 'no send failed (sends after a disconnect are no-ops)');
  like($r->{reason}, qr/\A(?:client_closed|write_error|read_error)\z/, "disconnect_reason is a disconnect token ($r->{reason})");
  is($r->{event}, 'http.disconnect', 'receive gives http.disconnect');
  is($r->{complete}, 0, 'response_complete 0');
};

subtest 'a response that finishes while the socket drains, then closes' => sub {
  my $c = http_connect($srv->port, timeout => 10);
  $c->send("GET /length-stream HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  Time::HiRes::sleep(0.3);    # let the server's sends wait for the socket
  my ($r) = $c->read_responses(until_close => 1);
  is(length($r->{body}), 64 * 65536, 'the whole body');
  ok($c->closed, 'then the close');
  Time::HiRes::sleep(0.2);
  is_deeply([$srv->log_grep(qr/uninitialized/)], [], 'no warning from closing in the middle of a write callback');
};

is($srv->stop, 0, 'server exits 0 on SIGTERM');
is_deeply([$srv->log_grep(qr/PAGI-TEST-CHILD-DIED|Deep recursion|uninitialized/)], [], 'no crash or warning in the log');

done_testing;
