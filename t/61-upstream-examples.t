use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use IO::Socket::IP;
use lib 't/lib';
use PAGI::Test::Server qw(:all);

# Applications written for upstream PAGI::Server (its own examples, unchanged: see
# t/upstream-examples/README.md) run here with the command line upstream documents:
# pagi-server --app examples/NN-name/app.pl --port PORT (a free port instead of 5000).
# Streaming with trailers and Future::IO sleeps, lifespan state, and Server-Sent Events.

eval { require Future::IO; 1 } or plan skip_all => 'Future::IO is not installed (script/install-deps)';
my $EX = ROOT . '/t/upstream-examples';

sub free_port () {
  my $s = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0, Listen => 1) or die $@;
  return $s->sockport;
}

sub example ($name) {
  my $port = free_port();
  my $srv = start_cli(args => ['--app', "$EX/$name/app.pl", '--port', $port]);
  is($srv->port, $port, "$name: listening on --port $port") or diag $srv->log;
  return $srv;
}

subtest '02-streaming-response: chunks and trailers (Future::IO->sleep between them)' => sub {
  my $srv = example('02-streaming-response');
  my ($r) = http_exchange($srv->port, "GET / HTTP/1.1\r\nHost: t\r\nTE: trailers\r\n\r\n", timeout => 10);
  is($r->[0]{status}, 200, 'status 200');
  is($r->[0]{framing}, 'chunked', 'chunked');
  is($r->[0]{body}, "Chunk 1\nChunk 2\nChunk 3\n", 'the three chunks');
  is_deeply($r->[0]{trailers}, [['x-stream-complete', '1']], 'the trailer');
  is($srv->stop, 0, 'exit 0');
  unlike($srv->log, qr/error|Future::IO backend/i, 'no error logged');
};

subtest '06-lifespan-state: state set at startup, read per request' => sub {
  my $srv = example('06-lifespan-state');
  my ($r) = http_exchange($srv->port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
  is($r->[0]{body}, 'Hello from lifespan via shared state', 'the greeting from lifespan state');
  my ($p) = http_exchange($srv->port, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
  is($p->[0]{body}, 'Hello from lifespan via shared state', 'a POST (its body drained) too');
  is($srv->stop, 0, 'exit 0 (lifespan shutdown answered)');
  unlike($srv->log, qr/does not support lifespan/, 'lifespan was used');
};

subtest '05-sse-broadcaster: three events (Future::IO->sleep between them)' => sub {
  my $srv = example('05-sse-broadcaster');
  my $c = http_connect($srv->port, timeout => 10);
  $c->send("GET /events HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n");
  my ($r) = $c->read_responses(timeout => 10);
  is($r->{status}, 200, 'status 200');
  like($r->{h}{'content-type'}, qr{\Atext/event-stream}, 'text/event-stream');
  is($r->{body}, "event: tick\ndata: 1\n\nevent: tick\ndata: 2\n\nevent: done\ndata: finished\n\n",
    'tick 1, tick 2, done');
  is($srv->stop, 0, 'exit 0');
};

done_testing;
