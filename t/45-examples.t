use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use JSON::PP ();
use lib 't/lib';
use PAGI::Test::Server qw(:all);
use PAGI::Test::WebSocket qw(ws_connect);

# The examples a user copies, driven by raw clients (t/44-browser.t drives them from a
# real browser): examples/chat/app.pl (the page, broadcast to every client, join and
# leave notices, unknown WebSocket paths refused with 403) and examples/feed/app.pl
# (the page, numbered tick events with ids, Last-Event-ID honoured, unknown SSE paths
# declined with 404).

require PAGI::Server;
my $json = JSON::PP->new;

subtest 'examples/chat/app.pl' => sub {
  my $srv = start_server(app => PAGI::Server->load_app(ROOT . '/examples/chat/app.pl'));
  ok($srv->port, 'server started') or return diag $srv->log;
  my $port = $srv->port;
  my ($res) = http_exchange($port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  is($res->[0]{status}, 200, 'GET / serves the page');
  like($res->[0]{h}{'content-type'}, qr{text/html}, 'as HTML');
  like($res->[0]{body}, qr/new WebSocket\(/, 'which opens a WebSocket');

  my $next = sub ($ws) { my $m = $ws->read_message(5) or return; $json->decode($m->{text}) };
  my ($alice, $r1) = ws_connect($port, path => '/ws?name=alice');
  is($r1->{status}, 101, 'alice connects');
  is_deeply($next->($alice), {type => 'join', name => 'alice'}, 'alice sees her own join');
  my ($bob) = ws_connect($port, path => '/ws?name=b%C3%B6b');
  is_deeply($next->($alice), {type => 'join', name => "b\x{f6}b"}, 'alice sees bob join (name decoded)');
  is_deeply($next->($bob), {type => 'join', name => "b\x{f6}b"}, 'bob sees his join');
  $alice->send_text($json->encode({text => "hi \x{2603}"}));
  for my $who ([alice => $alice], [bob => $bob]) {
    is_deeply($next->($who->[1]), {type => 'message', name => 'alice', text => "hi \x{2603}"},
      "$who->[0] gets alice's message");
  }
  $bob->send_text('plain text works too');
  is($next->($alice)->{text}, 'plain text works too', 'a non-JSON message is sent as it is');
  $next->($bob);
  $bob->send_close(1000);
  is_deeply($next->($alice), {type => 'leave', name => "b\x{f6}b"}, 'alice sees bob leave');
  my ($other, $r2) = ws_connect($port, path => '/elsewhere');
  is($r2->{status}, 403, 'a WebSocket to another path is refused');
  is($srv->stop, 0, 'server exits 0');
};

subtest 'examples/feed/app.pl' => sub {
  local $ENV{FEED_INTERVAL} = 0.2;
  my $srv = start_server(app => PAGI::Server->load_app(ROOT . '/examples/feed/app.pl'));
  ok($srv->port, 'server started') or return diag $srv->log;
  my $port = $srv->port;
  my ($res) = http_exchange($port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  is($res->[0]{status}, 200, 'GET / serves the page');
  like($res->[0]{body}, qr/new EventSource\('\/events'\)/, 'which opens an EventSource');

  my $events = sub (@headers) {
    my $c = http_connect($port);
    $c->send("GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
      . join('', map { "$_\r\n" } @headers) . "\r\n");
    my @ev;
    wait_for(sub {
      $c->pause(0.05);
      @ev = $c->buffer =~ /event: tick\ndata: tick ([0-9]+)\nid: ([0-9]+)\n/g;
      @ev >= 6;
    }, 5);
    my $head = $c->buffer =~ s/\r\n\r\n.*//sr;
    $c->close;
    return ($head, @ev);
  };
  my ($head, @ev) = $events->();
  like($head, qr{^content-type: text/event-stream}mi, 'the feed is an event stream');
  is_deeply([@ev[0 .. 5]], [1, 1, 2, 2, 3, 3], 'numbered tick events with matching ids');
  (undef, @ev) = $events->('Last-Event-ID: 41');
  is_deeply([@ev[0 .. 5]], [42, 42, 43, 43, 44, 44], 'Last-Event-ID: 41 resumes at 42');
  ($res) = http_exchange($port, "GET /nope HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n");
  is($res->[0]{status}, 404, 'an event stream at another path is declined with 404');
  is($srv->stop, 0, 'server exits 0');
};

done_testing;
