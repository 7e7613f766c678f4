use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use IO::Socket::IP;
use lib 't/lib';
use PAGI::Test::Server qw(:all);

# Applications written the way upstream PAGI::Server's examples are (t/apps/upstream-style,
# our own code: the app file's last value is \&app or an async sub, Future::IO sleeps
# that the runner must set up, trailers, lifespan state, an event stream) run here with
# the command line upstream documents: pagi-server --app FILE --port PORT.

eval { require Future::IO; 1 } or plan skip_all => 'Future::IO is not installed (script/install-deps)';
my $EX = ROOT . '/t/apps/upstream-style';

sub free_port () {
  my $s = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0, Listen => 1) or die $@;
  return $s->sockport;
}

sub example ($name) {
  my $port = free_port();
  my $srv = start_cli(args => ['--app', "$EX/$name.pl", '--port', $port]);
  is($srv->port, $port, "$name: listening on --port $port") or diag $srv->log;
  return $srv;
}

subtest 'streaming: chunks and a trailer (Future::IO->sleep between them)' => sub {
  my $srv = example('streaming');
  my ($r) = http_exchange($srv->port, "GET / HTTP/1.1\r\nHost: t\r\nTE: trailers\r\n\r\n", timeout => 10);
  is($r->[0]{status}, 200, 'status 200');
  is($r->[0]{framing}, 'chunked', 'chunked');
  is($r->[0]{body}, "part 1\npart 2\npart 3\n", 'the three parts');
  is_deeply($r->[0]{trailers}, [['x-parts', '3']], 'the trailer');
  is($srv->stop, 0, 'exit 0');
  unlike($srv->log, qr/error|Future::IO backend/i, 'no error logged');
};

subtest 'lifespan-state: state set at startup, read per request' => sub {
  my $srv = example('lifespan-state');
  my ($r) = http_exchange($srv->port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
  is($r->[0]{body}, 'state set at startup', 'the value from lifespan state');
  my ($p) = http_exchange($srv->port, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
  is($p->[0]{body}, 'state set at startup', 'a POST (its body drained) too');
  is($srv->stop, 0, 'exit 0 (lifespan shutdown answered)');
  unlike($srv->log, qr/does not support lifespan/, 'lifespan was used');
};

subtest 'sse: three events (Future::IO->sleep between them)' => sub {
  my $srv = example('sse');
  my $c = http_connect($srv->port, timeout => 10);
  $c->send("GET /events HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n");
  my ($r) = $c->read_responses(timeout => 10);
  is($r->{status}, 200, 'status 200');
  like($r->{h}{'content-type'}, qr{\Atext/event-stream}, 'text/event-stream');
  is($r->{body}, "event: count\ndata: 1\n\nevent: count\ndata: 2\n\nevent: end\ndata: bye\n\n",
    'count 1, count 2, end');
  is($srv->stop, 0, 'exit 0');
};

done_testing;
