use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use Future::AsyncAwait;
use lib 't/lib';
use PAGI::Test::Server qw(:all);

# A client that half-closes (shutdown(SHUT_WR), `nc -N`) after sending a complete
# request still gets its response; the app is told the client has gone (PAGI: FIN is
# a disconnect). A half-close in the middle of a body is a plain disconnect.

my $app = async sub ($scope, $receive, $send) {
  return if $scope->{type} eq 'lifespan';
  my $conn = $scope->{'pagi.connection'};
  my $body = await read_body($receive);
  if ($scope->{path} eq '/slow') {
    my $ev = await $receive->();    # the next event: the disconnect, on FIN
    report(event => $ev->{type}, connected => $conn->is_connected,
      reason => $conn->disconnect_reason);
  }
  await respond($send, 200, "body " . length($body), ['content-type', 'text/plain']);
};

my $srv = start_server(app => $app);

{
  my $c = http_connect($srv->port);
  $c->send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
  $c->shutdown_write;
  my ($r) = $c->read_responses(n => 1, timeout => 5);
  ok($r, 'half-closed client after a complete request: a response arrives');
  is($r && $r->{status}, 200, '... with status 200');
  is($r && $r->{body}, 'body 0', '... and the body');
  ok($r && lc($r->{h}{connection} // '') eq 'close', '... saying Connection: close');
  ok($c->wait_closed(5), '... then the server closes');
  my ($rep) = $srv->wait_reports(1);
  is_deeply($rep, {event => 'http.disconnect', connected => 0, reason => 'client_closed'},
    'the app saw http.disconnect with reason client_closed');
}

{
  my $c = http_connect($srv->port);
  $c->send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nabcd");
  $c->shutdown_write;
  my ($r) = $c->read_responses(n => 1, timeout => 5);
  is($r && $r->{body}, 'body 4', 'half-close after a complete POST body: answered');
}

{
  my $c = http_connect($srv->port);
  $c->send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabcd");
  $c->shutdown_write;
  my @r = $c->read_responses(n => 1, timeout => 3);
  is(scalar @r, 0, 'half-close in the middle of a body: no response, the request is abandoned');
  ok($c->wait_closed(5), '... and the connection is closed');
}

is($srv->stop, 0, 'server exits 0');
done_testing;
