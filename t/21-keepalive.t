use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use Future::AsyncAwait;
use lib 't/lib';
use PAGI::Test::Server qw(:all);

# 1000 mixed requests (GET, HEAD, POST with Content-Length and chunked bodies, empty
# PUT) over one keep-alive connection, first one at a time, then pipelined (all written
# at once). Every response's status, headers, body and order are checked: per-request
# state must not leak from one request into the next.

use constant N => 1000;

# The app echoes what it got: method, path, body length and checksum. Every third
# response streams (chunked), the others go out in one piece.
my $app = async sub ($scope, $receive, $send) {
  return if $scope->{type} eq 'lifespan';
  my $body = await read_body($receive);
  my ($seq) = map { $_->[1] } grep { $_->[0] eq 'x-seq' } @{$scope->{headers}};
  my $echo = sprintf '%s %s %d %d', $scope->{method}, $scope->{path}, length $body,
    unpack('%32C*', $body);
  my @h = (['content-type', 'text/plain'], ['x-seq', $seq // '-']);
  if ($scope->{path} =~ m{/([0-9]+)\z} && $1 % 3 == 0) {
    await $send->({type => 'http.response.start', status => 200, headers => \@h});
    await $send->({type => 'http.response.body', body => substr($echo, 0, 4), more => 1});
    await $send->({type => 'http.response.body', body => substr($echo, 4), more => 1});
    await $send->({type => 'http.response.body', body => ''});
    return;
  }
  await $send->({type => 'http.response.start', status => 200,
    headers => [@h, ['content-length', length $echo]]});
  await $send->({type => 'http.response.body', body => $echo});
};

# Request $i: its bytes, its method and the body the app must echo
sub request ($i, $tag) {
  my $kind = $i % 5;
  my $path = "/$tag/$i";
  my $body = join '', map { chr(($i * 31 + $_ * 7) % 256) } 0 .. ($i * 13) % 700;
  $body .= "\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n" if $i % 7 == 0;    # request-like bytes inside a body
  my $head = "Host: localhost\r\nX-Seq: $i\r\n";
  return ("GET $path HTTP/1.1\r\n$head\r\n", 'GET', '') if $kind == 0;
  return ("HEAD $path HTTP/1.1\r\n$head\r\n", 'HEAD', '') if $kind == 2;
  return ("PUT $path HTTP/1.1\r\n${head}Content-Length: 0\r\n\r\n", 'PUT', '') if $kind == 4;
  return ("POST $path HTTP/1.1\r\n${head}Content-Length: " . length($body) . "\r\n\r\n$body", 'POST', $body)
    if $kind == 1;
  # Chunked, in pieces of varying size, with an extension and a trailer now and then
  my $chunked = '';
  my $rest = $body;
  my $n = 0;
  while (length $rest) {
    my $piece = substr($rest, 0, 1 + ($i + $n++ * 17) % 97, '');
    $chunked .= sprintf('%x', length $piece) . ($n % 4 ? '' : ';ext=1') . "\r\n$piece\r\n";
  }
  $chunked .= "0\r\n" . ($i % 2 ? "X-Trailer: $i\r\n" : '') . "\r\n";
  return ("POST $path HTTP/1.1\r\n${head}Transfer-Encoding: chunked\r\n\r\n$chunked", 'POST', $body);
}

# Checks one response against request $i; returns a failure description or ''
sub check ($res, $i, $tag, $method, $body) {
  return "response $i missing" unless $res;
  my $echo = sprintf '%s /%s/%d %d %d', $method, $tag, $i, length $body, unpack('%32C*', $body);
  return "response $i: status $res->{status}" unless $res->{status} == 200;
  return "response $i: x-seq '$res->{h}{'x-seq'}'" unless $res->{h}{'x-seq'} eq $i;
  return "response $i: connection header '$res->{h}{connection}'" if exists $res->{h}{connection};
  my $chunked = $i % 3 == 0;
  my $want = $chunked ? 'chunked' : 'length';
  if ($method eq 'HEAD') {
    return "response $i (HEAD): has a body" if length $res->{body};
    return "response $i (HEAD): framing header missing"
      unless $chunked ? $res->{h}{'transfer-encoding'} : $res->{h}{'content-length'} == length $echo;
    return '';
  }
  return "response $i: framing $res->{framing}, expected $want" unless $res->{framing} eq $want;
  return "response $i: body '$res->{body}', expected '$echo'" unless $res->{body} eq $echo;
  return '';
}

my $srv = start_server(app => $app);
ok($srv->port, 'server started') or BAIL_OUT($srv->log);

subtest 'sequential: 1000 requests, one at a time, one connection' => sub {
  my $c = http_connect($srv->port);
  my @fail;
  for my $i (0 .. N - 1) {
    my ($bytes, $method, $body) = request($i, 'seq');
    $c->send($bytes);
    my ($res) = $c->read_responses(methods => [$method]);
    my $err = check($res, $i, 'seq', $method, $body);
    push @fail, $err if $err;
    last if @fail > 5 || $c->closed;
  }
  is_deeply(\@fail, [], 'every response matches its request');
  ok(!$c->closed, 'the connection is still open');
  is($c->buffer, '', 'no stray bytes after the last response');
};

subtest 'pipelined: 1000 requests written at once, one connection' => sub {
  my $c = http_connect($srv->port, timeout => 20);
  my ($all, @methods, @bodies) = ('');
  for my $i (0 .. N - 1) {
    my ($bytes, $method, $body) = request($i, 'pipe');
    $all .= $bytes;
    push @methods, $method;
    push @bodies, $body;
  }
  note(sprintf 'writing %d bytes of requests', length $all);
  ok($c->send($all, timeout => 20), 'all requests written');
  my @res = $c->read_responses(n => N, methods => \@methods, timeout => 20);
  is(scalar @res, N, 'N responses');
  my @fail = grep { length } map { check($res[$_], $_, 'pipe', $methods[$_], $bodies[$_]) } 0 .. N - 1;
  is_deeply([@fail[0 .. ($#fail < 5 ? $#fail : 4)]], [], 'every response matches its request, in order');
  ok(!$c->closed, 'the connection is still open');
  is($c->buffer, '', 'no stray bytes after the last response');
};

subtest 'pipelined in small random pieces' => sub {
  srand(42);
  my $c = http_connect($srv->port, timeout => 10);
  my ($all, @methods, @bodies) = ('');
  for my $i (0 .. 199) {
    my ($bytes, $method, $body) = request($i, 'bits');
    $all .= $bytes;
    push @methods, $method;
    push @bodies, $body;
  }
  while (length $all) {
    $c->send(substr($all, 0, 1 + int rand 300, ''));
    $c->pause(0.001) if rand() < 0.05;
  }
  my @res = $c->read_responses(n => 200, methods => \@methods, timeout => 10);
  my @fail = grep { length } map { check($res[$_], $_, 'bits', $methods[$_], $bodies[$_]) } 0 .. 199;
  is_deeply([@fail[0 .. ($#fail < 5 ? $#fail : 4)]], [], '200 responses match, whatever the split points');
};

is($srv->stop, 0, 'server exits 0 on SIGTERM');
my $log = $srv->log;
unlike($log, qr/Deep recursion|uninitialized|PAGI-TEST-CHILD-DIED/, 'no warnings or crash in the server log');
unlike($log, qr/\[(?:error|warn)\]/, 'no errors or warnings logged');
like($log, qr/stopped after ([0-9]+) request/, 'the server counted its requests');
my ($served) = $log =~ /stopped after ([0-9]+) request/;
is($served, 2 * N + 200, 'every request was served exactly once');

done_testing;
