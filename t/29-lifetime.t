use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use Future::AsyncAwait;
use File::Temp ();
use lib 't/lib';
use PAGI::Test::Server qw(:all);
use PAGI::Test::WebSocket qw(ws_connect);

# Connection objects are freed once their connection is over. The connection's
# callbacks hold it strongly (no weak references: see PAGI::Server::Connection), so
# each way a connection ends must break those cycles. The app runs in the server's
# process and reports $PAGI::Server::Connection::LIVE, the number of connection
# objects alive; after every kind of connection below has ended, only the one
# asking is left.

my $big = File::Temp->new;
print {$big} 'x' x (4 << 20);
close $big;

my $app = async sub ($scope, $receive, $send) {
  return if $scope->{type} eq 'lifespan';
  my $path = $scope->{path};
  if ($scope->{type} eq 'websocket') {
    await $receive->();    # websocket.connect
    await $send->({type => 'websocket.accept'});
    while (1) {
      my $ev = await $receive->();
      last if $ev->{type} ne 'websocket.receive';
      await $send->({type => 'websocket.send', text => $ev->{text} // ''});
    }
    return;
  }
  if ($scope->{type} eq 'sse') {
    await $receive->();    # sse.request
    await $send->({type => 'sse.start'});
    await $send->({type => 'sse.send', data => 'one'});
    my $ev = await $receive->();    # waits for the client to go
    return;
  }
  if ($path eq '/live') {
    my $n = do { no warnings 'once'; $PAGI::Server::Connection::LIVE };
    return await respond($send, 200, "live=$n", ['content-type', 'text/plain']);
  }
  if ($path eq '/slow') {
    await delay(0.5);    # its client has gone by then
    return await respond($send, 200, 'late', ['content-type', 'text/plain']);
  }
  if ($path eq '/die') { die "on purpose\n" }
  if ($path eq '/file') {
    await $send->({type => 'http.response.start', status => 200, headers => []});
    return await $send->({type => 'http.response.body', file => $big->filename});
  }
  my $body = await read_body($receive);
  my $buffered = $scope->{'pagi.transport'}->buffered_amount;
  await respond($send, 200, 'got ' . length($body), ['content-type', 'text/plain']);
};

my $srv = start_server(app => $app);
ok($srv->port, 'server started') or BAIL_OUT('no server: ' . $srv->log);

sub live () {
  my $c = http_connect($srv->port);
  $c->send("GET /live HTTP/1.1\r\nHost: t\r\n\r\n");
  my ($r) = $c->read_responses;
  return $r && $r->{body} =~ /\Alive=([0-9]+)\z/ ? $1 : "no answer";
}

is(live(), 1, 'at the start, only the connection asking');

# Keep-alive requests, pipelined, with bodies, closed by the client afterwards
for (1 .. 5) {
  my $c = http_connect($srv->port);
  $c->send("GET /a HTTP/1.1\r\nHost: t\r\n\r\n" x 3
    . "POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
  my @r = $c->read_responses(n => 4);
  is(scalar @r, 4, 'four responses on a keep-alive connection') if $_ == 1;
  $c->close;
}
# Connection: close, HTTP/1.0, a chunked body
http_exchange($srv->port, "GET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
http_exchange($srv->port, "GET /d HTTP/1.0\r\n\r\n");
http_exchange($srv->port, "POST /e HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
  . "Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
# The app dies (500); a malformed request (400); a client gone before its answer
http_exchange($srv->port, "GET /die HTTP/1.1\r\nHost: t\r\n\r\n");
http_exchange($srv->port, "GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n");
{
  my $c = http_connect($srv->port);
  $c->send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
  $c->close;
}
# A client that goes away in the middle of a body, and in the middle of a big file
{
  my $c = http_connect($srv->port);
  $c->send("POST /f HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\npartial");
  $c->pause(0.1);
  $c->close;
  my $f = http_connect($srv->port);
  $f->send("GET /file HTTP/1.1\r\nHost: t\r\n\r\n");
  $f->pause(0.2);    # the server is blocked on a full socket by now
  $f->close;
}
# An SSE stream and a WebSocket session, each ended by its client
{
  my $c = http_connect($srv->port);
  $c->send("GET /events HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n");
  $c->pause(0.2);
  $c->close;
  my ($ws, $res) = ws_connect($srv->port, path => '/ws');
  is($res->{status}, 101, 'websocket upgraded');
  $ws->send_text('ping');
  is($ws->read_message->{text}, 'ping', 'websocket echo');
  $ws->send_close(1000);
  $ws->read_close;
  $ws->close;
}

# The slow app finishes after 0.5 s; then every connection but the asking one is gone
my $live;
wait_for(sub { ($live = live()) eq '1' }, 5);
is($live, 1, 'after all of them, only the connection asking is alive');
unlike($srv->log, qr/PAGI-TEST-CHILD-DIED/, 'the server did not die');

done_testing;
